/*
 * stanzad/runtime.h — workers, timers, crossing threads, blocking work.
 *
 * stanzad runs N workers, each an event loop on its own thread. Code registered by a module runs
 * on some worker (see hooks.h for which); these calls let it keep state per worker, act later,
 * move work to the worker that owns an object, and run blocking work off the loops.
 */
#ifndef STANZAD_RUNTIME_H
#define STANZAD_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of workers; the calling worker's index (0..count-1), or -1 off the workers. */
SD_API int sd_worker_count(void);
SD_API int sd_worker_current(void);
/* The worker that is home to a bare JID (a room, an account's shared state): code touching
 * such an object runs there, so it needs no lock. Stable while the server runs. */
SD_API int sd_worker_for(const char *key);

/* The module's slot on the calling worker: one pointer, NULL at first, for the module's
 * per-worker state. NULL off the workers. The module frees what it keeps there (unload or an
 * SD_EV... of its own); the core does not know what it is. */
SD_API void **sd_worker_slot(sd_module *m);

/* Runs fn(ud) on worker `worker` (-1: the calling one, later). Any thread. Returns 0, or -1 for
 * a bad index (fn not called). At shutdown, posts still queued run before the process exits. */
SD_API int sd_post(int worker, void (*fn)(void *ud), void *ud);

/* Runs work(ud) on a helper thread (it may block; it must not call other sd_ functions except
 * sd_log), then done(ud) on the calling worker. Returns 0, or -1 when not called on a worker. */
SD_API int sd_offload(sd_module *m, void (*work)(void *ud), void (*done)(void *ud), void *ud);

/*
 * Memory for what lives as long as a session (per-session records, entries in per-worker
 * lists): n zeroed bytes from the server's long-lived pools, never NULL (out of memory aborts).
 * Small objects kept for hours, allocated with malloc between the short-lived garbage of a
 * login, pin whole pages of the heap; from here they do not. Free with sd_free, any thread.
 */
SD_API void *sd_alloc(size_t n);
SD_API void sd_free(void *p);

/* ---- timers ---- */

typedef struct sd_timer sd_timer;
typedef void (*sd_timer_fn)(sd_timer *t, void *ud);

/* A timer of the calling worker (it fires there). NULL off the workers. */
SD_API sd_timer *sd_timer_new(sd_module *m, sd_timer_fn fn, void *ud);
/* Arms it to fire once after ms milliseconds (re-arming replaces the previous time). */
SD_API void sd_timer_start(sd_timer *t, uint64_t ms);
SD_API void sd_timer_stop(sd_timer *t);
/* Stops and frees; clears *t. On the timer's worker. */
SD_API void sd_timer_free(sd_timer **t);
/* Monotonic milliseconds. */
SD_API uint64_t sd_now_ms(void);

#ifdef __cplusplus
}
#endif

#endif
