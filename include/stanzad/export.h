/*
 * stanzad/export.h — symbol visibility for the public API.
 *
 * libstanzad is built with hidden visibility: only functions marked SD_API are exported (and a
 * linker version script pins them to the version node of the ABI minor that introduced them).
 * A module is built with -fvisibility=hidden as well and exports exactly one symbol, its entry
 * function, marked SD_MODULE_EXPORT by the SD_MODULE() macro.
 */
#ifndef STANZAD_EXPORT_H
#define STANZAD_EXPORT_H

#define SD_API           __attribute__((visibility("default")))
#define SD_MODULE_EXPORT __attribute__((visibility("default"), used))
#define SD_PRINTF(f, a)  __attribute__((format(printf, f, a)))

#endif
