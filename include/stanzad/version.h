/*
 * stanzad/version.h — the release of the stanzad headers a program or module was built with.
 *
 * This directory holds the public headers: the only files a third-party module needs. The module
 * ABI (descriptor, hooks, stanza access) is added here with its own ABI version numbers; the
 * release version below is for humans and logs.
 */
#ifndef STANZAD_PUBLIC_VERSION_H
#define STANZAD_PUBLIC_VERSION_H

#define SD_VERSION_MAJOR 0
#define SD_VERSION_MINOR 1
#define SD_VERSION_PATCH 0
#define SD_VERSION_STRING "0.1.0"

#endif
