/*
 * stanzad/log.h — logging from modules. Lines carry the module's name, the worker and, inside a
 * handler, the connection. Never log passwords or other secrets; log stanza contents only at
 * debug level.
 */
#ifndef STANZAD_PUBLIC_LOG_H
#define STANZAD_PUBLIC_LOG_H

#include "export.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_log_level {
    SD_LOG_ERROR = 0,
    SD_LOG_WARN = 1,
    SD_LOG_INFO = 2,
    SD_LOG_DEBUG = 3,
} sd_log_level;

/* Any thread. */
SD_API void sd_log(const sd_module *m, sd_log_level level, const char *fmt, ...) SD_PRINTF(3, 4);
/* Would a line at this level be written? (Skip building expensive debug text otherwise.) */
SD_API int sd_log_enabled(sd_log_level level);

#ifdef __cplusplus
}
#endif

#endif
