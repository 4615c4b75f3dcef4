/*
 * stanzad/version.h — the release of the stanzad headers a program or module was built with.
 *
 * This directory holds the public headers: the only files a third-party module needs. The
 * release version is for humans and logs; the ABI numbers decide which modules load.
 */
#ifndef STANZAD_PUBLIC_VERSION_H
#define STANZAD_PUBLIC_VERSION_H

#define SD_VERSION_MAJOR 0
#define SD_VERSION_MINOR 1
#define SD_VERSION_PATCH 0
#define SD_VERSION_STRING "0.1.0"

/*
 * The module ABI. A module built against ABI major M, minor n loads on every core with major M
 * and minor >= n. See ABI.md for what changes bump which number.
 */
#define SD_ABI_MAJOR 1
#define SD_ABI_MINOR 1

#endif
