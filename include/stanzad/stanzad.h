/*
 * stanzad/stanzad.h — everything a module needs. Build against it with
 *   cc -fPIC -shared -fvisibility=hidden $(pkg-config --cflags --libs stanzad) -o mod_x.so x.c
 * and read module.h first, then hooks.h.
 */
#ifndef STANZAD_STANZAD_H
#define STANZAD_STANZAD_H

#include "accounts.h"
#include "db.h"
#include "disco.h"
#include "export.h"
#include "hooks.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "stanza.h"
#include "version.h"

#endif
