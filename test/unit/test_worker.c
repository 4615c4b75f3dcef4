/* unit-sources: core/worker.c core/mem.c core/log.c */
/*
 * test_worker.c — the event loop's inbox, timers and end-of-iteration callbacks, with real
 * threads: several producers post to one worker, every post must arrive exactly once and in
 * each producer's order; timers fire in due order; stop waits for held work.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "unit.h"
#include "worker.h"

#define PRODUCERS    3
#define PER_PRODUCER 100000

struct item {
    struct post post;
    int producer;
    int seq;
};

static int last_seq[PRODUCERS];
static atomic_int received;
static atomic_int order_errors;
static atomic_int wrong_thread;
static struct worker *target;

static void on_item(struct post *p)
{
    struct item *it = (struct item *)p;
    if (worker_self() != target)
        atomic_fetch_add(&wrong_thread, 1);
    if (it->seq != last_seq[it->producer] + 1)
        atomic_fetch_add(&order_errors, 1);
    last_seq[it->producer] = it->seq;
    atomic_fetch_add(&received, 1);
    free(it);
}

static void *producer(void *arg)
{
    int id = (int)(long)arg;
    for (int i = 1; i <= PER_PRODUCER; i++) {
        struct item *it = malloc(sizeof *it);
        it->producer = id;
        it->seq = i;
        worker_post(target, &it->post, on_item);
    }
    return NULL;
}

static void test_inbox_many_producers(void)
{
    UNIT_ASSERT_INT_EQ(workers_create(2), 0);
    target = worker_at(1);
    UNIT_ASSERT_INT_EQ(workers_start(), 0);
    pthread_t th[PRODUCERS];
    for (long i = 0; i < PRODUCERS; i++)
        pthread_create(&th[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    for (int spin = 0; spin < 2000 && atomic_load(&received) < PRODUCERS * PER_PRODUCER; spin++)
        usleep(5000);
    workers_stop(NULL);
    workers_destroy();
    UNIT_ASSERT_INT_EQ(atomic_load(&received), PRODUCERS * PER_PRODUCER);
    UNIT_ASSERT_INT_EQ(atomic_load(&order_errors), 0);
    UNIT_ASSERT_INT_EQ(atomic_load(&wrong_thread), 0);
}

/* Timers: armed out of order from the worker itself, they fire in due order; a stopped timer
 * never fires; a re-armed timer fires once, at its new time. */
static int fired[8];
static int n_fired;
static struct timer timers[5];
static struct post start_post;
static atomic_int timers_done;

static void on_timer(struct timer *t)
{
    fired[n_fired++] = (int)(long)t->ud;
    if (n_fired == 3)
        atomic_store(&timers_done, 1);
}

static void arm_timers(struct post *p)
{
    struct worker *w = worker_self();
    static const int delays[5] = {60, 20, 40, 10, 30};
    for (long i = 0; i < 5; i++) {
        timer_init(&timers[i], on_timer, (void *)i);
        worker_timer_start(w, &timers[i], (uint64_t)delays[i]);
    }
    worker_timer_stop(w, &timers[3]);     /* 10 ms: never */
    worker_timer_start(w, &timers[0], 5); /* 60 → 5 ms */
    worker_timer_stop(w, &timers[4]);     /* 30 ms: never */
    UNIT_ASSERT(!timer_armed(&timers[3]));
    UNIT_ASSERT(timer_armed(&timers[1]));
}

static void test_timers_order(void)
{
    UNIT_ASSERT_INT_EQ(workers_create(1), 0);
    UNIT_ASSERT_INT_EQ(workers_start(), 0);
    worker_post(worker_at(0), &start_post, arm_timers);
    for (int spin = 0; spin < 400 && !atomic_load(&timers_done); spin++)
        usleep(5000);
    usleep(100000); /* anything wrongly still armed would fire now */
    workers_stop(NULL);
    workers_destroy();
    UNIT_ASSERT_INT_EQ(n_fired, 3);
    UNIT_ASSERT_INT_EQ(fired[0], 0); /* 5 ms */
    UNIT_ASSERT_INT_EQ(fired[1], 1); /* 20 ms */
    UNIT_ASSERT_INT_EQ(fired[2], 2); /* 40 ms */
}

/* "After" callbacks run once per iteration however often they are queued. */
static struct after after_cb;
static atomic_int after_runs;
static struct post after_post;

static void on_after(struct after *a)
{
    atomic_fetch_add(&after_runs, 1);
}

static void queue_after_thrice(struct post *p)
{
    struct worker *w = worker_self();
    worker_after(w, &after_cb, on_after);
    worker_after(w, &after_cb, on_after);
    worker_after(w, &after_cb, on_after);
}

static void test_after_coalesces(void)
{
    UNIT_ASSERT_INT_EQ(workers_create(1), 0);
    UNIT_ASSERT_INT_EQ(workers_start(), 0);
    worker_post(worker_at(0), &after_post, queue_after_thrice);
    for (int spin = 0; spin < 200 && atomic_load(&after_runs) == 0; spin++)
        usleep(5000);
    usleep(20000);
    workers_stop(NULL);
    workers_destroy();
    UNIT_ASSERT_INT_EQ(atomic_load(&after_runs), 1);
}

/* Offloaded work runs on another thread, its completion back on the submitting worker. */
struct job {
    struct offload o;
    pthread_t worker_thread;
    atomic_int work_on_worker;
    atomic_int done_on_worker;
    atomic_int done;
};
static struct job job;
static struct post job_post;

static void job_work(struct offload *o)
{
    struct job *j = (struct job *)o;
    atomic_store(&j->work_on_worker, pthread_equal(pthread_self(), j->worker_thread));
}

static void job_done(struct offload *o)
{
    struct job *j = (struct job *)o;
    atomic_store(&j->done_on_worker, pthread_equal(pthread_self(), j->worker_thread));
    atomic_store(&j->done, 1);
}

static void submit_job(struct post *p)
{
    job.worker_thread = pthread_self();
    offload_submit(&job.o, job_work, job_done);
}

static void test_offload_roundtrip(void)
{
    UNIT_ASSERT_INT_EQ(workers_create(1), 0);
    UNIT_ASSERT_INT_EQ(offload_start(2), 0);
    UNIT_ASSERT_INT_EQ(workers_start(), 0);
    worker_post(worker_at(0), &job_post, submit_job);
    for (int spin = 0; spin < 400 && !atomic_load(&job.done); spin++)
        usleep(5000);
    workers_stop(NULL);
    offload_stop();
    workers_destroy();
    UNIT_ASSERT_INT_EQ(atomic_load(&job.done), 1);
    UNIT_ASSERT_INT_EQ(atomic_load(&job.work_on_worker), 0);
    UNIT_ASSERT_INT_EQ(atomic_load(&job.done_on_worker), 1);
}

UNIT_MAIN(UNIT_TEST(test_inbox_many_producers), UNIT_TEST(test_timers_order),
          UNIT_TEST(test_after_coalesces), UNIT_TEST(test_offload_roundtrip))
