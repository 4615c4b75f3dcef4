/*
 * log.c — levelled log lines with worker and connection ids.
 *
 * A line is formatted into a stack buffer and written with a single write(2) (or syslog(3)), so
 * lines from several workers never interleave and no lock is needed. The target is swapped under
 * a mutex only when it changes (start-up, SIGHUP); writers read the current fd atomically.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

int log_current_level = LOGL_INFO;

static _Atomic int log_fd = 2;
static _Atomic int log_to_syslog = 0;
static pthread_mutex_t log_swap_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int log_worker = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return LOGL_WARN;
    return -1;
}

const char *log_level_name(enum log_level l)
{
    return (unsigned)l < 4 ? level_names[l] : "?";
}

int log_open(const char *target, enum log_level level)
{
    int fd = -1, use_syslog = 0;
    if (target == NULL || strcmp(target, "stderr") == 0) {
        fd = 2;
    } else if (strcmp(target, "syslog") == 0) {
        use_syslog = 1;
        openlog("stanzad", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    } else {
        fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
            return -1;
    }
    pthread_mutex_lock(&log_swap_lock);
    int old = atomic_exchange(&log_fd, fd);
    int old_syslog = atomic_exchange(&log_to_syslog, use_syslog);
    pthread_mutex_unlock(&log_swap_lock);
    /* A writer may still hold the old fd for one write; closing a file fd under it at worst
     * loses that line. stderr is never closed. */
    if (old > 2)
        close(old);
    if (old_syslog && !use_syslog)
        closelog();
    log_current_level = (int)level;
    return 0;
}

void log_close(void)
{
    int old = atomic_exchange(&log_fd, 2);
    if (old > 2)
        close(old);
    if (atomic_exchange(&log_to_syslog, 0))
        closelog();
}

void log_set_thread_worker(int worker)
{
    log_worker = worker;
}

void log_write(enum log_level level, uint64_t conn_id, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;

    if (!atomic_load(&log_to_syslog)) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000,
                              log_level_name(level));
    }
    if (log_worker >= 0)
        n += (size_t)snprintf(line + n, sizeof line - n, "w%d ", log_worker);
    else
        n += (size_t)snprintf(line + n, sizeof line - n, "main ");
    if (conn_id)
        n += (size_t)snprintf(line + n, sizeof line - n, "c%llu ", (unsigned long long)conn_id);

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n >= sizeof line - 1) {
        n = sizeof line - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    }
    /* Control characters from peer-supplied text must not forge extra log lines. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20)
            line[i] = ' ';

    if (atomic_load(&log_to_syslog)) {
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog(prio[level], "%.*s", (int)n, line);
        return;
    }
    line[n++] = '\n';
    int fd = atomic_load(&log_fd);
    ssize_t w;
    do {
        w = write(fd, line, n);
    } while (w < 0 && errno == EINTR);
}
