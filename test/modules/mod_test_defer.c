/*
 * mod_test_defer — a test-only module for deferral and the runtime: timers, sd_post to another
 * worker and back, sd_offload, and every way to finish a deferred stanza. Driven by
 * test/integration/test_modules.py.
 *
 * An iq set <defer xmlns='urn:stanzad:test:defer' how='...' ms='N'/> to the host is deferred
 * and finished later according to 'how':
 *   timer     a timer of this worker fires after ms and answers;
 *   rearm     a timer armed for 60 s is re-armed for ms (it must fire after ms);
 *   stop      a timer that would answer with an error is stopped, a second one answers;
 *   post      sd_post to the next worker, which posts back to this one, which answers;
 *   offload   sleeps ms on a helper thread (sd_offload), answers when back;
 *   pass      resumes with the next handler (sd_pending_pass, from a later turn of the loop),
 *             which answers <passed/>;
 *   error     answers <not-acceptable/> after ms;
 *   done      finishes without any answer after ms;
 *   gone      like timer, but the test closes its stream first: the completion finds no
 *             session (sd_pending_session() == NULL), says so in the log, and still completes.
 * The answer <done/> says on which worker the stanza was deferred ('started'), where the
 * completion ran ('worker') and, for post, where the hop ran ('via'), so the test can check
 * that completions come back to the worker that started them. Timers are freed from their own
 * callbacks, which the runtime allows. An iq get <now/> is answered at once: sent behind a
 * deferred iq, its answer must come second (RFC 6120 §10.1).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stanzad/stanzad.h>

#define NS "urn:stanzad:test:defer"

static sd_module *td_mod;

struct job {
    sd_pending *p;
    char how[16];
    unsigned ms;
    int started, via;
    sd_timer *t, *t2;
    pthread_t loop_thread;
    int helper_differs;
};

static void job_answer(struct job *j)
{
    sd_stanza *st = sd_pending_stanza(j->p);
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *d = sd_el_add(reply, sd_stanza_el(reply), NS, "done");
    char buf[16];
    sd_el_set_attr(reply, d, "how", j->how);
    snprintf(buf, sizeof(buf), "%d", j->started);
    sd_el_set_attr(reply, d, "started", buf);
    snprintf(buf, sizeof(buf), "%d", sd_worker_current());
    sd_el_set_attr(reply, d, "worker", buf);
    if (strcmp(j->how, "post") == 0) {
        snprintf(buf, sizeof(buf), "%d", j->via);
        sd_el_set_attr(reply, d, "via", buf);
    }
    if (strcmp(j->how, "offload") == 0)
        sd_el_set_attr(reply, d, "helper-thread", j->helper_differs ? "other" : "same");
    sd_pending_reply(&j->p, &reply);
}

static void job_free(struct job *j)
{
    sd_timer_free(&j->t);
    sd_timer_free(&j->t2);
    free(j);
}

static void on_timer(sd_timer *t, void *ud)
{
    struct job *j = ud;
    if (strcmp(j->how, "error") == 0) {
        sd_pending_error(&j->p, SD_ERR_NOT_ACCEPTABLE, "deferred error");
    } else if (strcmp(j->how, "done") == 0) {
        sd_pending_done(&j->p);
    } else {
        if (sd_pending_session(j->p) == NULL)
            sd_log(td_mod, SD_LOG_INFO, "deferred iq completed after its session ended (%s)",
                   j->how);
        job_answer(j);
    }
    job_free(j);
}

static void on_stopped_timer(sd_timer *t, void *ud)
{
    /* Must never run: it was stopped. Answering with an error makes the test fail. */
    struct job *j = ud;
    sd_pending_error(&j->p, SD_ERR_UNDEFINED_CONDITION, "a stopped timer fired");
    job_free(j);
}

static void post_back(void *ud)
{
    struct job *j = ud;
    job_answer(j);
    job_free(j);
}

static void post_hop(void *ud)
{
    struct job *j = ud;
    j->via = sd_worker_current();
    if (sd_post(j->started, post_back, j) < 0)
        sd_log(td_mod, SD_LOG_ERROR, "cannot post back to worker %d", j->started);
}

static void offload_work(void *ud)
{
    struct job *j = ud;
    j->helper_differs = !pthread_equal(pthread_self(), j->loop_thread);
    struct timespec ts = {j->ms / 1000, (long)(j->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void offload_done(void *ud)
{
    post_back(ud);
}

static void pass_later(void *ud)
{
    struct job *j = ud;
    sd_pending_pass(&j->p);
    job_free(j);
}

static sd_verdict td_defer(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_el *q = sd_stanza_payload(st);
    const char *how = sd_el_attr(q, "how"), *ms = sd_el_attr(q, "ms");
    if (how == NULL || strlen(how) >= sizeof(((struct job *)0)->how))
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "how?");
    struct job *j = calloc(1, sizeof(*j));
    snprintf(j->how, sizeof(j->how), "%s", how);
    j->ms = ms != NULL ? (unsigned)strtoul(ms, NULL, 10) : 100;
    j->started = sd_worker_current();
    j->loop_thread = pthread_self();
    j->p = sd_hctx_defer(h);
    if (j->p == NULL) {
        free(j);
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "cannot defer");
    }

    int rc = 0;
    if (strcmp(how, "post") == 0) {
        rc = sd_post((j->started + 1) % sd_worker_count(), post_hop, j);
    } else if (strcmp(how, "offload") == 0) {
        rc = sd_offload(td_mod, offload_work, offload_done, j);
    } else if (strcmp(how, "pass") == 0) {
        rc = sd_post(-1, pass_later, j);
    } else if (strcmp(how, "rearm") == 0) {
        j->t = sd_timer_new(td_mod, on_timer, j);
        sd_timer_start(j->t, 60000);
        sd_timer_start(j->t, j->ms);
    } else if (strcmp(how, "stop") == 0) {
        j->t2 = sd_timer_new(td_mod, on_stopped_timer, j);
        sd_timer_start(j->t2, j->ms / 2);
        sd_timer_stop(j->t2);
        j->t = sd_timer_new(td_mod, on_timer, j);
        sd_timer_start(j->t, j->ms);
    } else if (strcmp(how, "timer") == 0 || strcmp(how, "error") == 0 || strcmp(how, "done") == 0 ||
               strcmp(how, "gone") == 0) {
        j->t = sd_timer_new(td_mod, on_timer, j);
        sd_timer_start(j->t, j->ms);
    } else {
        sd_pending_error(&j->p, SD_ERR_BAD_REQUEST, "unknown how");
        job_free(j);
        return SD_LATER;
    }
    if (rc < 0) {
        sd_pending_error(&j->p, SD_ERR_INTERNAL_SERVER_ERROR, "cannot start the job");
        job_free(j);
    }
    return SD_LATER;
}

/* After a deferred handler passes: the next one by priority. */
static sd_verdict td_after_pass(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *how = sd_el_attr(sd_stanza_payload(st), "how");
    if (how == NULL || strcmp(how, "pass") != 0)
        return SD_PASS;
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *p = sd_el_add(reply, sd_stanza_el(reply), NS, "passed");
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", sd_worker_current());
    sd_el_set_attr(reply, p, "worker", buf);
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict td_now(sd_hctx *h, sd_stanza *st, void *ud)
{
    return sd_reply_result(h, st);
}

static int td_load(sd_module *m, const char **error_r)
{
    td_mod = m;
    if (sd_hook_iq(m, SD_TO_HOST, SD_IQ_SET, NS, "defer", 10, td_defer, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_SET, NS, "defer", 0, td_after_pass, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS, "now", 0, td_now, NULL) < 0) {
        *error_r = "a registration failed";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "test_defer", .version = "test", .load = td_load);
