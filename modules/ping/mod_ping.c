/*
 * mod_ping — XMPP Ping (XEP-0199), both directions.
 *
 * Answering: an iq get with <ping xmlns='urn:xmpp:ping'/> to a served host, to the sender's own
 * bare JID or without 'to' (which the server answers on the account's behalf, RFC 6120 §10.3.3)
 * gets an empty result.
 *
 * Pinging: a client that has sent nothing for `interval` is pinged from its host; when no answer
 * (result or error: an error still proves the client is there) arrives within `timeout`, its
 * stream is closed with <connection-timeout/>. There is no call to enumerate sessions, so each
 * worker keeps its own list of the sessions it owns, fed by SD_EV_SESSION_BOUND and emptied
 * when a session ends (the per-session record is the module's session data, whose free
 * function unlinks it; SD_EV_SESSION_CLOSED triggers that early). Events, timers and iq
 * results all run on the session's worker, so the list needs no lock. One timer per worker
 * sweeps the list every quarter of the shortest interval of the hosts served; it exists only
 * while the worker has sessions, so nothing of it is left when the last stream closes at
 * shutdown.
 *
 * A ping in flight is a probe owned by the worker: its session may end before the answer or the
 * timeout comes back, so the session record and the probe point at each other and whichever
 * goes first clears the other's pointer. Probes still waiting at shutdown (the core drops
 * unanswered requests without calling back) are freed by unload(), which finds every worker's
 * state on a list kept under a mutex: the only lock, taken once per worker.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <stanzad/stanzad.h>

#define NS_PING "urn:xmpp:ping"

struct ping_conf {
    int64_t interval_ms;
    int64_t timeout_ms;
};

static const sd_setting ping_settings[] = {
    {"interval", SD_SETTING_DURATION, offsetof(struct ping_conf, interval_ms), "5m", 10000,
     INT64_C(7) * 24 * 3600 * 1000, NULL, "ping a client that has been silent this long"},
    {"timeout", SD_SETTING_DURATION, offsetof(struct ping_conf, timeout_ms), "60s", 1000,
     3600 * 1000, NULL, "close the stream of a client that does not answer a ping this long"},
    SD_SETTINGS_END,
};

struct ping_probe;

/* A session of this worker. */
struct ping_sess {
    struct ping_sess *prev, *next;
    struct ping_worker *w;
    sd_session *s;
    struct ping_probe *probe; /* the ping in flight, or NULL */
    uint64_t interval_ms, timeout_ms;
};

/* A ping in flight. */
struct ping_probe {
    struct ping_probe *prev, *next;
    struct ping_sess *sess; /* NULL once the session has ended */
};

struct ping_worker {
    struct ping_worker *all_next; /* on ping_all */
    struct ping_sess sessions;    /* circular list heads */
    struct ping_probe probes;
    sd_timer *timer; /* while n_sessions > 0 */
    size_t n_sessions;
};

static sd_module *ping_mod;
static uint64_t ping_sweep_ms;
/* Every worker's state, for unload(). */
static pthread_mutex_t ping_all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ping_worker *ping_all;

static void probe_unlink(struct ping_probe *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
}

static void ping_sweep(sd_timer *t, void *ud);

static struct ping_worker *ping_worker_get(void)
{
    void **slot = sd_worker_slot(ping_mod);
    if (slot == NULL)
        return NULL;
    if (*slot != NULL)
        return *slot;
    struct ping_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->sessions.prev = w->sessions.next = &w->sessions;
    w->probes.prev = w->probes.next = &w->probes;
    pthread_mutex_lock(&ping_all_lock);
    w->all_next = ping_all;
    ping_all = w;
    pthread_mutex_unlock(&ping_all_lock);
    *slot = w;
    return w;
}

/* The answer to a ping, or NULL when the timeout came first. */
static void ping_answered(sd_stanza *result, void *ud)
{
    struct ping_probe *p = ud;
    struct ping_sess *rec = p->sess;
    probe_unlink(p);
    free(p);
    if (rec == NULL)
        return; /* the session ended meanwhile */
    rec->probe = NULL;
    if (result == NULL) {
        sd_log(ping_mod, SD_LOG_INFO, "%s did not answer a ping within %llu ms, closing",
               sd_session_full(rec->s), (unsigned long long)rec->timeout_ms);
        /* Last: ending the session may free rec right away. */
        sd_session_end(rec->s, SD_STREAM_CONNECTION_TIMEOUT, "no answer to ping");
    }
}

static void ping_send(struct ping_worker *w, struct ping_sess *rec)
{
    struct ping_probe *p = calloc(1, sizeof(*p));
    sd_stanza *iq = sd_stanza_new(SD_IQ, "get");
    if (p == NULL || iq == NULL) {
        free(p);
        sd_stanza_free(&iq);
        return;
    }
    sd_stanza_set_from(iq, sd_session_host(rec->s));
    sd_stanza_set_to(iq, sd_session_full(rec->s));
    sd_el_add(iq, sd_stanza_el(iq), NS_PING, "ping");
    p->sess = rec;
    p->next = &w->probes;
    p->prev = w->probes.prev;
    w->probes.prev->next = p;
    w->probes.prev = p;
    rec->probe = p;
    /* p may be gone when this returns (an immediate answer runs the callback): not used after. */
    if (sd_send_iq(ping_mod, &iq, (unsigned)rec->timeout_ms, ping_answered, p) < 0) {
        probe_unlink(p);
        free(p);
        rec->probe = NULL;
        sd_stanza_free(&iq);
    }
}

static void ping_sweep(sd_timer *t, void *ud)
{
    struct ping_worker *w = ud;
    struct ping_sess *rec, *next;
    for (rec = w->sessions.next; rec != &w->sessions; rec = next) {
        next = rec->next; /* pinging may end rec's session, never another one */
        if (rec->probe == NULL && sd_session_idle_ms(rec->s) >= rec->interval_ms)
            ping_send(w, rec);
    }
    /* Pinging may have ended the last session, and with it freed this timer. */
    if (w->timer != NULL)
        sd_timer_start(w->timer, ping_sweep_ms);
}

/* The session's data free function: at session end (or when replaced), on its worker. */
static void ping_sess_free(void *data)
{
    struct ping_sess *rec = data;
    rec->prev->next = rec->next;
    rec->next->prev = rec->prev;
    if (--rec->w->n_sessions == 0)
        sd_timer_free(&rec->w->timer);
    if (rec->probe != NULL)
        rec->probe->sess = NULL;
    sd_free(rec);
}

static void ping_bound(sd_hctx *h, sd_event *ev, void *ud)
{
    sd_session *s = sd_event_session(ev);
    struct ping_worker *w = ping_worker_get();
    const struct ping_conf *c = sd_module_config(ping_mod, sd_session_host(s));
    struct ping_sess *rec = w != NULL && c != NULL ? sd_alloc(sizeof(*rec)) : NULL;
    if (rec != NULL && w->timer == NULL) {
        if ((w->timer = sd_timer_new(ping_mod, ping_sweep, w)) != NULL) {
            sd_timer_start(w->timer, ping_sweep_ms);
        } else {
            sd_free(rec);
            rec = NULL;
        }
    }
    if (rec == NULL) {
        sd_log(ping_mod, SD_LOG_WARN, "out of memory: %s will not be pinged", sd_session_full(s));
        return;
    }
    rec->w = w;
    rec->s = s;
    rec->interval_ms = (uint64_t)c->interval_ms;
    rec->timeout_ms = (uint64_t)c->timeout_ms;
    rec->next = &w->sessions;
    rec->prev = w->sessions.prev;
    w->sessions.prev->next = rec;
    w->sessions.prev = rec;
    w->n_sessions++;
    sd_session_set_data(s, ping_mod, rec, ping_sess_free);
}

static void ping_closed(sd_hctx *h, sd_event *ev, void *ud)
{
    /* Replacing the data runs ping_sess_free now: no ping is sent to a closing stream. */
    sd_session_set_data(sd_event_session(ev), ping_mod, NULL, NULL);
}

static sd_verdict ping_reply(sd_hctx *h, sd_stanza *st, void *ud)
{
    return sd_reply_result(h, st);
}

static int ping_load(sd_module *m, const char **error_r)
{
    ping_mod = m;
    /* Sweep four times per shortest interval: a client is pinged after at most 1.25 intervals. */
    int64_t shortest = 0;
    for (unsigned i = 0; sd_host_at(i) != NULL; i++) {
        const char *host = sd_host_at(i);
        const struct ping_conf *c = sd_module_config(m, host);
        if (sd_module_enabled(m, host) && c != NULL && (shortest == 0 || c->interval_ms < shortest))
            shortest = c->interval_ms;
    }
    ping_sweep_ms = shortest > 0 ? (uint64_t)shortest / 4 : 60000;
    if (sd_add_feature(m, SD_DISCO_SERVER | SD_DISCO_ACCOUNT, NS_PING) < 0 ||
        sd_hook_iq(m, SD_TO_HOST | SD_TO_SELF, SD_IQ_GET, NS_PING, "ping", 0, ping_reply, NULL) <
            0 ||
        sd_hook_event(m, SD_EV_SESSION_BOUND, 0, ping_bound, NULL) < 0 ||
        sd_hook_event(m, SD_EV_SESSION_CLOSED, 0, ping_closed, NULL) < 0) {
        *error_r = "cannot register the ping handlers";
        return -1;
    }
    return 0;
}

/* After the workers stopped: every session has ended (so every record and timer is gone);
 * what is left are probes whose answer never came and the per-worker states. */
static void ping_unload(sd_module *m)
{
    pthread_mutex_lock(&ping_all_lock);
    while (ping_all != NULL) {
        struct ping_worker *w = ping_all;
        ping_all = w->all_next;
        while (w->probes.next != &w->probes) {
            struct ping_probe *p = w->probes.next;
            probe_unlink(p);
            free(p);
        }
        free(w);
    }
    pthread_mutex_unlock(&ping_all_lock);
}

SD_MODULE(.name = "ping", .version = SD_VERSION_STRING, .settings = ping_settings,
          .config_size = sizeof(struct ping_conf), .load = ping_load, .unload = ping_unload);
