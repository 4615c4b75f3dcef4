/*
 * worker.c — the worker threads: one epoll loop each, with a timer heap, an inbox and a list of
 * end-of-iteration callbacks.
 *
 * The inbox is an intrusive multi-producer single-consumer queue (a linked list whose head
 * producers swap atomically, with a stub node so the consumer never races a producer for the
 * same pointer). A producer that finds the worker's "wake pending" flag clear sets it and writes
 * the eventfd; the consumer clears the flag *before* draining, so a post made while it drains
 * either gets drained now or wakes it again — never lost, and never more than one eventfd write
 * per batch of posts. No lock is taken on this path.
 *
 * Shutdown: workers_stop() posts a stop item to every worker; it runs the caller's stop function
 * on the worker's own thread (which sends <system-shutdown/> to its streams), then the loop keeps
 * running until nothing holds the worker (worker_hold/worker_release, one per connection) or a
 * grace period of two seconds has passed, so that final bytes reach the peers.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

#define MAX_EVENTS     256
#define MAX_START_HOOK 8
#define STOP_GRACE_MS  2000

struct worker {
    int index;
    int epfd;
    int evfd;
    pthread_t thread;
    uint64_t now;

    /* timers: binary min-heap on due */
    struct timer **heap;
    size_t heap_len, heap_cap;

    /* inbox */
    struct post *_Atomic in_head; /* producers swap here */
    struct post *in_tail;         /* consumer only */
    struct post in_stub;
    atomic_int wake_pending;
    struct io ev_io;

    /* end-of-iteration callbacks */
    struct after *after_head, *after_tail;

    void *slots[WORKER_SLOTS];

    /* shutdown */
    struct post stop_post;
    void (*stop_fn)(struct worker *w);
    bool stopping;
    uint64_t stop_deadline;
    int holds;
};

static struct worker **workers;
static int n_workers;
static _Thread_local struct worker *current;
static void (*start_hooks[MAX_START_HOOK])(struct worker *w);
static int n_start_hooks;

uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t worker_now(struct worker *w)
{
    return w ? w->now : monotonic_ms();
}

/* ---- I/O ---- */

int worker_io_add(struct worker *w, struct io *io, int fd, uint32_t events, io_fn fn, void *ud)
{
    io->fd = fd;
    io->events = events;
    io->fn = fn;
    io->ud = ud;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int worker_io_mod(struct worker *w, struct io *io, uint32_t events)
{
    if (io->events == events)
        return 0;
    io->events = events;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(w->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

void worker_io_del(struct worker *w, struct io *io)
{
    if (io->fd >= 0)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fn = NULL;
}

/* ---- timers ---- */

void timer_init(struct timer *t, timer_fn fn, void *ud)
{
    t->due = 0;
    t->heap_idx = SIZE_MAX;
    t->fn = fn;
    t->ud = ud;
}

bool timer_armed(const struct timer *t)
{
    return t->heap_idx != SIZE_MAX;
}

static void heap_swap(struct worker *w, size_t a, size_t b)
{
    struct timer *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_idx = a;
    w->heap[b]->heap_idx = b;
}

static void heap_up(struct worker *w, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p]->due <= w->heap[i]->due)
            break;
        heap_swap(w, i, p);
        i = p;
    }
}

static void heap_down(struct worker *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_len && w->heap[l]->due < w->heap[m]->due)
            m = l;
        if (r < w->heap_len && w->heap[r]->due < w->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(w, i, m);
        i = m;
    }
}

void worker_timer_stop(struct worker *w, struct timer *t)
{
    size_t i = t->heap_idx;
    if (i == SIZE_MAX)
        return;
    t->heap_idx = SIZE_MAX;
    w->heap_len--;
    if (i == w->heap_len)
        return;
    w->heap[i] = w->heap[w->heap_len];
    w->heap[i]->heap_idx = i;
    heap_down(w, i);
    heap_up(w, i);
}

void worker_timer_start(struct worker *w, struct timer *t, uint64_t ms)
{
    worker_timer_stop(w, t);
    if (w->heap_len == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
        w->heap = xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    t->due = monotonic_ms() + ms;
    t->heap_idx = w->heap_len;
    w->heap[w->heap_len++] = t;
    heap_up(w, t->heap_idx);
}

static void run_timers(struct worker *w)
{
    while (w->heap_len > 0 && w->heap[0]->due <= w->now) {
        struct timer *t = w->heap[0];
        worker_timer_stop(w, t);
        t->fn(t);
    }
}

/* ---- inbox ---- */

static void inbox_push(struct worker *w, struct post *p)
{
    atomic_store_explicit(&p->next, NULL, memory_order_relaxed);
    struct post *prev = atomic_exchange_explicit(&w->in_head, p, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, p, memory_order_release);
}

/* Returns the oldest post, or NULL when empty or when a producer is half-way through a push
 * (it will wake us again once done, see the file comment). */
static struct post *inbox_pop(struct worker *w)
{
    struct post *tail = w->in_tail;
    struct post *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &w->in_stub) {
        if (next == NULL)
            return NULL;
        w->in_tail = next;
        tail = next;
        next = atomic_load_explicit(&tail->next, memory_order_acquire);
    }
    if (next) {
        w->in_tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&w->in_head, memory_order_acquire))
        return NULL;
    inbox_push(w, &w->in_stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        w->in_tail = next;
        return tail;
    }
    return NULL;
}

void worker_post(struct worker *w, struct post *p, post_fn fn)
{
    p->fn = fn;
    inbox_push(w, p);
    if (atomic_exchange_explicit(&w->wake_pending, 1, memory_order_acq_rel) == 0) {
        uint64_t one = 1;
        ssize_t r;
        do {
            r = write(w->evfd, &one, sizeof one);
        } while (r < 0 && errno == EINTR);
    }
}

static void drain_inbox(struct worker *w)
{
    struct post *p;
    while ((p = inbox_pop(w)) != NULL)
        p->fn(p);
}

static void on_eventfd(struct io *io, uint32_t events)
{
    struct worker *w = io->ud;
    uint64_t v;
    ssize_t r = read(w->evfd, &v, sizeof v);
    (void)r;
    atomic_store_explicit(&w->wake_pending, 0, memory_order_release);
    drain_inbox(w);
}

/* ---- after callbacks ---- */

void worker_after(struct worker *w, struct after *a, after_fn fn)
{
    if (a->queued)
        return;
    a->queued = true;
    a->fn = fn;
    a->next = NULL;
    if (w->after_tail)
        w->after_tail->next = a;
    else
        w->after_head = a;
    w->after_tail = a;
}

static void run_after(struct worker *w)
{
    while (w->after_head) {
        struct after *a = w->after_head;
        w->after_head = a->next;
        if (!w->after_head)
            w->after_tail = NULL;
        a->queued = false;
        a->fn(a);
    }
}

/* ---- slots, lookup ---- */

void *worker_slot(struct worker *w, int slot)
{
    return w->slots[slot];
}

void worker_set_slot(struct worker *w, int slot, void *p)
{
    w->slots[slot] = p;
}

int workers_count(void)
{
    return n_workers;
}

struct worker *worker_at(int index)
{
    return workers[index];
}

int worker_index(const struct worker *w)
{
    return w->index;
}

struct worker *worker_self(void)
{
    return current;
}

void workers_on_start(void (*fn)(struct worker *w))
{
    if (n_start_hooks < MAX_START_HOOK)
        start_hooks[n_start_hooks++] = fn;
}

void worker_hold(struct worker *w)
{
    w->holds++;
}

void worker_release(struct worker *w)
{
    w->holds--;
}

bool worker_stopping(const struct worker *w)
{
    return w->stopping;
}

/* ---- the loop ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    current = w;
    log_set_thread_worker(w->index);
    w->now = monotonic_ms();
    for (int i = 0; i < n_start_hooks; i++)
        start_hooks[i](w);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        if (w->stopping && (w->holds <= 0 || w->now >= w->stop_deadline))
            break;
        int timeout = -1;
        if (w->heap_len > 0) {
            uint64_t due = w->heap[0]->due;
            timeout = due <= w->now ? 0 : (int)(due - w->now > 60000 ? 60000 : due - w->now);
        }
        if (w->stopping) {
            uint64_t left = w->stop_deadline > w->now ? w->stop_deadline - w->now : 0;
            if (timeout < 0 || (uint64_t)timeout > left)
                timeout = (int)left;
        }
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error(0, "epoll_wait: %s", strerror(errno));
            break;
        }
        w->now = monotonic_ms();
        for (int i = 0; i < n; i++) {
            struct io *io = events[i].data.ptr;
            if (io->fn)
                io->fn(io, events[i].events);
        }
        run_timers(w);
        run_after(w);
    }
    current = NULL;
    return NULL;
}

int workers_create(int n)
{
    workers = xcalloc((size_t)n, sizeof *workers);
    for (int i = 0; i < n; i++) {
        struct worker *w = xcalloc(1, sizeof *w);
        w->index = i;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->epfd < 0 || w->evfd < 0) {
            log_error(0, "cannot create worker %d: %s", i, strerror(errno));
            free(w);
            return -1;
        }
        atomic_store(&w->in_stub.next, NULL);
        atomic_store(&w->in_head, &w->in_stub);
        w->in_tail = &w->in_stub;
        w->now = monotonic_ms();
        worker_io_add(w, &w->ev_io, w->evfd, EPOLLIN, on_eventfd, w);
        workers[i] = w;
        n_workers = i + 1;
    }
    return 0;
}

int workers_start(void)
{
    for (int i = 0; i < n_workers; i++) {
        int rc = pthread_create(&workers[i]->thread, NULL, worker_main, workers[i]);
        if (rc != 0) {
            log_error(0, "cannot start worker thread: %s", strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void on_stop_post(struct post *p)
{
    struct worker *w = (struct worker *)((char *)p - offsetof(struct worker, stop_post));
    w->stopping = true;
    w->stop_deadline = monotonic_ms() + STOP_GRACE_MS;
    if (w->stop_fn)
        w->stop_fn(w);
}

void workers_stop(void (*stop_fn)(struct worker *w))
{
    for (int i = 0; i < n_workers; i++) {
        workers[i]->stop_fn = stop_fn;
        worker_post(workers[i], &workers[i]->stop_post, on_stop_post);
    }
    for (int i = 0; i < n_workers; i++)
        pthread_join(workers[i]->thread, NULL);
}

void workers_destroy(void)
{
    /* Posts that arrived after a loop ended still own memory: run them here, on the main thread,
     * until every inbox is empty (they may post to each other). */
    for (bool again = true; again;) {
        again = false;
        for (int i = 0; i < n_workers; i++) {
            struct post *p;
            while ((p = inbox_pop(workers[i])) != NULL) {
                p->fn(p);
                again = true;
            }
        }
    }
    for (int i = 0; i < n_workers; i++) {
        struct worker *w = workers[i];
        close(w->epfd);
        close(w->evfd);
        free(w->heap);
        free(w);
    }
    free(workers);
    workers = NULL;
    n_workers = 0;
}

/* ---- offload pool ---- */

static pthread_mutex_t off_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t off_cond = PTHREAD_COND_INITIALIZER;
static struct offload *off_head, *off_tail;
static pthread_t *off_threads;
static int off_n;
static bool off_quit;

static void offload_done_post(struct post *p)
{
    struct offload *o = (struct offload *)p;
    o->done(o);
}

static void *offload_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&off_lock);
        while (!off_head && !off_quit)
            pthread_cond_wait(&off_cond, &off_lock);
        if (!off_head) {
            pthread_mutex_unlock(&off_lock);
            return NULL;
        }
        struct offload *o = off_head;
        off_head = o->next_job;
        if (!off_head)
            off_tail = NULL;
        pthread_mutex_unlock(&off_lock);
        o->work(o);
        worker_post(o->origin, &o->post, offload_done_post);
    }
}

int offload_start(int threads)
{
    off_threads = xcalloc((size_t)threads, sizeof *off_threads);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&off_threads[i], NULL, offload_main, NULL) != 0)
            return -1;
        off_n = i + 1;
    }
    return 0;
}

void offload_stop(void)
{
    pthread_mutex_lock(&off_lock);
    off_quit = true;
    pthread_cond_broadcast(&off_cond);
    pthread_mutex_unlock(&off_lock);
    for (int i = 0; i < off_n; i++)
        pthread_join(off_threads[i], NULL);
    free(off_threads);
    off_threads = NULL;
    off_n = 0;
}

void offload_submit(struct offload *o, offload_fn work, offload_fn done)
{
    o->origin = worker_self();
    o->work = work;
    o->done = done;
    o->next_job = NULL;
    pthread_mutex_lock(&off_lock);
    if (off_tail)
        off_tail->next_job = o;
    else
        off_head = o;
    off_tail = o;
    pthread_cond_signal(&off_cond);
    pthread_mutex_unlock(&off_lock);
}
