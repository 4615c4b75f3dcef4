/*
 * worker.h — the worker threads: each one an epoll loop with its own timer heap and inbox.
 *
 * A connection, its TLS state, parser and session belong to one worker for life; code that
 * touches them runs on that worker and needs no lock. The only door between workers is
 * worker_post(): a lock-free multi-producer queue plus an eventfd, with wake-ups coalesced (a
 * worker that is already awake, or already signalled, is not signalled again).
 *
 * One loop iteration, in order: compute the wait from the nearest timer; epoll_wait; run the I/O
 * callbacks; drain the inbox; run due timers; run "after" callbacks (deferred work queued during
 * this iteration, e.g. flushing output buffers once per iteration instead of once per stanza).
 */
#ifndef STANZAD_WORKER_H
#define STANZAD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;

/* ---- I/O ---- */
struct io;
typedef void (*io_fn)(struct io *io, uint32_t events); /* EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP */
struct io {
    int fd;
    uint32_t events;
    io_fn fn;
    void *ud;
};
/* Registers fd with this worker's epoll (level-triggered). Caller owns io and keeps it alive. */
int worker_io_add(struct worker *w, struct io *io, int fd, uint32_t events, io_fn fn, void *ud);
int worker_io_mod(struct worker *w, struct io *io, uint32_t events);
void worker_io_del(struct worker *w, struct io *io);

/* ---- timers (millisecond resolution, monotonic) ---- */
struct timer;
typedef void (*timer_fn)(struct timer *t);
struct timer {
    uint64_t due;    /* monotonic ms */
    size_t heap_idx; /* position in the heap, SIZE_MAX when not armed */
    timer_fn fn;
    void *ud;
};
#define TIMER_INIT                                                                                 \
    {                                                                                              \
        0, SIZE_MAX, NULL, NULL                                                                    \
    }
void timer_init(struct timer *t, timer_fn fn, void *ud);
/* (Re)arms t to fire once after ms milliseconds. */
void worker_timer_start(struct worker *w, struct timer *t, uint64_t ms);
void worker_timer_stop(struct worker *w, struct timer *t); /* no-op when not armed */
bool timer_armed(const struct timer *t);
/* Monotonic milliseconds, cached once per loop iteration. */
uint64_t worker_now(struct worker *w);
uint64_t monotonic_ms(void);

/* ---- inbox: crossing threads ---- */
struct post;
typedef void (*post_fn)(struct post *p);
/* Embed a struct post in whatever you send; the receiving worker calls fn with it. */
struct post {
    struct post *_Atomic next;
    post_fn fn;
};
/* Queues p for w; fn(p) will run on w's thread. Safe from any thread, never blocks, never
 * fails (the queue is unbounded in entries; senders are bounded by their own buffers). */
void worker_post(struct worker *w, struct post *p, post_fn fn);

/* ---- "after" callbacks: run once at the end of this iteration ---- */
struct after;
typedef void (*after_fn)(struct after *a);
struct after {
    struct after *next;
    after_fn fn;
    bool queued;
};
/* Queues a (once; a second call before it ran does nothing). Current worker only. */
void worker_after(struct worker *w, struct after *a, after_fn fn);

/* ---- the pool ---- */
/* Creates n workers (not yet running). */
int workers_create(int n);
/* Starts their threads; each runs until workers_stop(). */
int workers_start(void);
/* Asks every worker to leave its loop after running stop_fn (if not NULL) on its own thread
 * (used for the <system-shutdown/> broadcast); returns when all threads have joined. */
void workers_stop(void (*stop_fn)(struct worker *w));
void workers_destroy(void);
int workers_count(void);
struct worker *worker_at(int index);
int worker_index(const struct worker *w);
/* The worker running on this thread, NULL on other threads. */
struct worker *worker_self(void);
/* Per-worker slots for subsystems (db, session table...): up to WORKER_SLOTS. */
#define WORKER_SLOTS 16
enum worker_slot {
    WSLOT_DB = 0,
    WSLOT_SESSIONS = 1,
    WSLOT_C2S = 2,
    WSLOT_OFFLOAD = 3,
    WSLOT_DISPATCH = 4,
};
void *worker_slot(struct worker *w, int slot);
void worker_set_slot(struct worker *w, int slot, void *p);
/* Something (a connection) that must be let finish before the worker exits at shutdown. */
void worker_hold(struct worker *w);
void worker_release(struct worker *w);
/* True once workers_stop() reached this worker: refuse new work, finish what is in flight. */
bool worker_stopping(const struct worker *w);
/* Runs fn(w) on every worker's own thread at start, before the loop (for per-worker setup). */
void workers_on_start(void (*fn)(struct worker *w));

/* ---- offload: blocking or CPU-heavy work on helper threads ---- */
struct offload;
typedef void (*offload_fn)(struct offload *o);
struct offload {
    struct post post; /* completion travels back through the inbox */
    struct worker *origin;
    offload_fn work; /* runs on a helper thread: may block, must not touch worker state */
    offload_fn done; /* runs back on origin's thread */
    struct offload *next_job;
};
int offload_start(int threads);
void offload_stop(void);
/* Runs o->work on a helper thread, then o->done on the calling worker. */
void offload_submit(struct offload *o, offload_fn work, offload_fn done);

#endif
