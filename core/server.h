/*
 * server.h — process-wide state that every part of the core reads: the configuration the
 * server was started with (immutable while workers run; SIGHUP reloads only certificates and
 * log settings) and a few derived facts.
 */
#ifndef STANZAD_SERVER_H
#define STANZAD_SERVER_H

#include <stdbool.h>

struct config;

extern const struct config *server_config;

/* Is domain one of our virtual hosts (prepared form)? */
bool server_is_local_host(const char *domain);

#endif
