/*
 * log.h — levelled logging with the worker and connection on every line.
 *
 *   2026-11-21T10:15:02.123Z info  w1 c42 authenticated as alice@example.org
 *
 * Messages never carry passwords or SASL payloads; stanza contents only at debug level. The
 * target (stderr, a file, or syslog) and level can be changed at run time (SIGHUP); a line is
 * written with one write(2) so lines from different workers do not interleave.
 */
#ifndef STANZAD_LOG_H
#define STANZAD_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOGL_ERROR = 0, LOGL_WARN = 1, LOGL_INFO = 2, LOGL_DEBUG = 3 };

extern int log_current_level;

/* Parses "error", "warn", "info", "debug"; -1 if unknown. */
int log_level_parse(const char *s);
const char *log_level_name(enum log_level l);
/* target: "stderr", "syslog" or a file path (appended). Returns 0, or -1 with errno set. */
int log_open(const char *target, enum log_level level);
void log_close(void);
/* The worker index printed on lines from this thread (-1: main thread). */
void log_set_thread_worker(int worker);

void log_write(enum log_level level, uint64_t conn_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_AT(level, conn_id, ...)                                                                \
    do {                                                                                           \
        if ((int)(level) <= log_current_level)                                                     \
            log_write((level), (conn_id), __VA_ARGS__);                                            \
    } while (0)

/* conn_id 0 means "no connection". */
#define log_error(cid, ...) LOG_AT(LOGL_ERROR, cid, __VA_ARGS__)
#define log_warn(cid, ...)  LOG_AT(LOGL_WARN, cid, __VA_ARGS__)
#define log_info(cid, ...)  LOG_AT(LOGL_INFO, cid, __VA_ARGS__)
#define log_debug(cid, ...) LOG_AT(LOGL_DEBUG, cid, __VA_ARGS__)

#endif
