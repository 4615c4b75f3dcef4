/*
 * mod_test_accounts — a test-only module for include/stanzad/accounts.h: the four calls through
 * iq requests from a logged-in client, and a record of the account events it receives. Driven
 * by test/integration/test_accounts.py.
 *
 * Requests, iq set to the host in urn:stanzad:test:accounts (host attribute: the host of the
 * account, default the iq's host):
 *   <create user='u' password='p'>[<info xmlns='urn:stanzad:test:accounts:info'>…</info>]</create>
 *   <exists user='u'/>   <set-password user='u' password='p'/>   <delete user='u'/>
 * answered, once the call's callback ran, with
 *   <status name='OK|EXISTS|NOT_FOUND|BAD_NAME|UNAVAILABLE|ERROR' started='w' worker='w'
 *           event-before='0|1'/>
 * where started/worker are the workers of the call and of the callback, and event-before says
 * whether the matching event (created / deleted) had reached this module, on the callback's
 * worker, before the callback. <create early='1' …/> answers at once (the stanza holding the
 * info element is freed right away) and records the final status as an event of type "result".
 *   <clear/>  forgets the recorded events.
 * iq get <events/> answers <events><event type='created|deleted|result' jid='…' worker='w'
 * [holder='iq' payload='create' info='<xml>'] [status='…']/>…</events>.
 *
 * A migration creates test_accounts_notes keyed by accounts(id) ON DELETE CASCADE, so the test
 * can check that a deletion takes module rows with it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <stanzad/stanzad.h>

#define NS      "urn:stanzad:test:accounts"
#define NS_INFO "urn:stanzad:test:accounts:info"

static const sd_migration tacc_migrations[] = {
    {1, "CREATE TABLE test_accounts_notes ("
        "  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,"
        "  note text NOT NULL)"},
    SD_MIGRATIONS_END,
};

static sd_module *tacc_mod;

/* ---- the record of events (any worker, under a lock: this is a test module) ---- */

#define MAX_EVENTS 512

struct rec {
    char type[16];
    char jid[128];
    int worker;
    char holder[16];
    char payload[32];
    char *info;
    char status[16];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rec events[MAX_EVENTS];
static int n_events;

static void record(const char *type, const char *jid, const char *holder, const char *payload,
                   char *info, const char *status)
{
    pthread_mutex_lock(&lock);
    if (n_events < MAX_EVENTS) {
        struct rec *r = &events[n_events++];
        memset(r, 0, sizeof(*r));
        snprintf(r->type, sizeof(r->type), "%s", type);
        snprintf(r->jid, sizeof(r->jid), "%s", jid ? jid : "");
        r->worker = sd_worker_current();
        snprintf(r->holder, sizeof(r->holder), "%s", holder ? holder : "");
        snprintf(r->payload, sizeof(r->payload), "%s", payload ? payload : "");
        r->info = info;
        snprintf(r->status, sizeof(r->status), "%s", status ? status : "");
        info = NULL;
    }
    pthread_mutex_unlock(&lock);
    free(info);
}

static int event_count(void)
{
    pthread_mutex_lock(&lock);
    int n = n_events;
    pthread_mutex_unlock(&lock);
    return n;
}

/* Was an event of type for jid recorded on this worker since index `since`? */
static int seen_since(int since, const char *type, const char *jid)
{
    int found = 0;
    int w = sd_worker_current();
    pthread_mutex_lock(&lock);
    for (int i = since; i < n_events && !found; i++)
        found = strcmp(events[i].type, type) == 0 && strcasecmp(events[i].jid, jid) == 0 &&
                events[i].worker == w;
    pthread_mutex_unlock(&lock);
    return found;
}

static void clear_events(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_events; i++)
        free(events[i].info);
    n_events = 0;
    pthread_mutex_unlock(&lock);
}

static void on_event(sd_hctx *h, sd_event *ev, void *ud)
{
    (void)h;
    (void)ud;
    int created = sd_event_kind(ev) == SD_EV_ACCOUNT_CREATED;
    sd_stanza *holder = sd_event_stanza(ev);
    sd_el *el = sd_event_el(ev);
    const char *kind = NULL, *payload = NULL;
    if (holder != NULL) {
        kind = sd_stanza_kind(holder) == SD_IQ ? "iq" : "other";
        sd_el *p = sd_stanza_payload(holder);
        payload = p != NULL ? sd_el_name(p) : NULL;
    }
    record(created ? "created" : "deleted", sd_event_jid(ev), kind, payload,
           el != NULL ? sd_el_to_string(el) : NULL, NULL);
}

/* ---- requests ---- */

static const char *status_name(sd_account_status s)
{
    switch (s) {
    case SD_ACCOUNT_OK:
        return "OK";
    case SD_ACCOUNT_EXISTS:
        return "EXISTS";
    case SD_ACCOUNT_NOT_FOUND:
        return "NOT_FOUND";
    case SD_ACCOUNT_BAD_NAME:
        return "BAD_NAME";
    case SD_ACCOUNT_UNAVAILABLE:
        return "UNAVAILABLE";
    case SD_ACCOUNT_ERROR:
        return "ERROR";
    case SD_ACCOUNT_BAD_PASSWORD:
        return "BAD_PASSWORD";
    }
    return "?";
}

struct req {
    sd_pending *p; /* NULL in early mode */
    int started;
    int since;
    char event[16]; /* the event this call should raise, or "" */
    char jid[128];
};

static void on_done(sd_account_status status, void *ud)
{
    struct req *r = ud;
    int before = r->event[0] != '\0' && seen_since(r->since, r->event, r->jid);
    if (r->p == NULL) {
        record("result", r->jid, NULL, NULL, NULL, status_name(status));
        free(r);
        return;
    }
    sd_stanza *reply = sd_stanza_result(sd_pending_stanza(r->p));
    sd_el *s = sd_el_add(reply, sd_stanza_el(reply), NS, "status");
    char buf[16];
    sd_el_set_attr(reply, s, "name", status_name(status));
    snprintf(buf, sizeof(buf), "%d", r->started);
    sd_el_set_attr(reply, s, "started", buf);
    snprintf(buf, sizeof(buf), "%d", sd_worker_current());
    sd_el_set_attr(reply, s, "worker", buf);
    sd_el_set_attr(reply, s, "event-before", before ? "1" : "0");
    sd_pending_reply(&r->p, &reply);
    free(r);
}

static sd_verdict answer_events(sd_hctx *h, sd_stanza *st)
{
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *list = sd_el_add(reply, sd_stanza_el(reply), NS, "events");
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_events; i++) {
        const struct rec *r = &events[i];
        sd_el *e = sd_el_add(reply, list, NS, "event");
        char buf[16];
        sd_el_set_attr(reply, e, "type", r->type);
        sd_el_set_attr(reply, e, "jid", r->jid);
        snprintf(buf, sizeof(buf), "%d", r->worker);
        sd_el_set_attr(reply, e, "worker", buf);
        if (r->holder[0])
            sd_el_set_attr(reply, e, "holder", r->holder);
        if (r->payload[0])
            sd_el_set_attr(reply, e, "payload", r->payload);
        if (r->info)
            sd_el_set_attr(reply, e, "info", r->info);
        if (r->status[0])
            sd_el_set_attr(reply, e, "status", r->status);
    }
    pthread_mutex_unlock(&lock);
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict tacc_request(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    sd_el *q = sd_stanza_payload(st);
    const char *op = sd_el_name(q);
    if (strcmp(sd_stanza_type(st), "get") == 0) {
        if (strcmp(op, "events") == 0)
            return answer_events(h, st);
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "unknown request");
    }
    if (strcmp(op, "clear") == 0) {
        clear_events();
        return sd_reply_result(h, st);
    }
    const char *user = sd_el_attr(q, "user");
    const char *password = sd_el_attr(q, "password");
    const char *host = sd_el_attr(q, "host");
    const char *early = sd_el_attr(q, "early");
    if (host == NULL)
        host = sd_hctx_host(h);
    if (user == NULL)
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "user missing");

    struct req *r = calloc(1, sizeof(*r));
    r->started = sd_worker_current();
    r->since = event_count();
    snprintf(r->jid, sizeof(r->jid), "%s@%s", user, host);
    int rc;
    if (strcmp(op, "create") == 0 && password != NULL) {
        snprintf(r->event, sizeof(r->event), "created");
        sd_el *info = sd_el_child(q, NS_INFO, "info");
        if (early != NULL && strcmp(early, "1") == 0) {
            /* The stanza holding info is freed when this handler returns; the core must have
             * kept its own copy for the event. */
            rc = sd_account_create(tacc_mod, host, user, password, st, info, on_done, r);
            if (rc < 0) {
                free(r);
                return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "call refused");
            }
            sd_stanza *reply = sd_stanza_result(st);
            sd_el_add(reply, sd_stanza_el(reply), NS, "started");
            sd_reply(h, &reply);
            return SD_DONE;
        }
        r->p = sd_hctx_defer(h);
        rc = sd_account_create(tacc_mod, host, user, password, sd_pending_stanza(r->p), info,
                               on_done, r);
    } else if (strcmp(op, "exists") == 0) {
        r->p = sd_hctx_defer(h);
        rc = sd_account_exists(tacc_mod, host, user, on_done, r);
    } else if (strcmp(op, "set-password") == 0 && password != NULL) {
        r->p = sd_hctx_defer(h);
        rc = sd_account_set_password(tacc_mod, host, user, password, on_done, r);
    } else if (strcmp(op, "delete") == 0) {
        snprintf(r->event, sizeof(r->event), "deleted");
        r->p = sd_hctx_defer(h);
        rc = sd_account_delete(tacc_mod, host, user, on_done, r);
    } else {
        free(r);
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "unknown request");
    }
    if (rc < 0) {
        sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, "call refused");
        free(r);
    }
    return SD_LATER;
}

static int tacc_load(sd_module *m, const char **error_r)
{
    tacc_mod = m;
    /* NULL arguments are refused with -1, and the callback is never called. */
    if (sd_account_exists(m, NULL, "x", on_done, NULL) != -1 ||
        sd_account_create(m, "localhost", "x", "pw", NULL, NULL, on_done, NULL) != -1) {
        *error_r = "an account call off the workers did not return -1";
        return -1;
    }
    if (sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, NULL, 0, tacc_request, NULL) < 0 ||
        sd_hook_event(m, SD_EV_ACCOUNT_CREATED, 0, on_event, NULL) < 0 ||
        sd_hook_event(m, SD_EV_ACCOUNT_DELETED, 0, on_event, NULL) < 0) {
        *error_r = "cannot register the handlers";
        return -1;
    }
    return 0;
}

static void tacc_unload(sd_module *m)
{
    (void)m;
    clear_events();
}

SD_MODULE(.name = "test_accounts", .version = "test", .migrations = tacc_migrations,
          .load = tacc_load, .unload = tacc_unload);
