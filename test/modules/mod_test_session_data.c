/*
 * mod_test_session_data — a test-only module for per-session data (sd_session_set_data /
 * sd_session_get_data) and its free function. Driven by test/integration/test_modules.py.
 *
 * Each bound session gets a record holding its JID and a value; the record's free function
 * counts the frees and writes "freed session data of JID (value V, REASON)" to the log at info
 * level, so the test sees that it ran, once, for the right session, when the session ended or
 * when the record was replaced. Requests (iq to the host, urn:stanzad:test:sessdata):
 *   set <set value='v'/>       changes the value in place
 *   set <replace value='v'/>   replaces the record (the old one is freed at once)
 *   get <get/>                 <data jid='...' value='...'/> of the sender's own session
 *   get <counters/>            <counters made='n' freed='n'/>
 * It also hooks the ordering iq of mod_test_hooks (urn:stanzad:test:hooks <order/>) at
 * priority 0, to show that equal priorities run in module load order across modules.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

#define NS       "urn:stanzad:test:sessdata"
#define NS_HOOKS "urn:stanzad:test:hooks"

static sd_module *tsd_mod;
static atomic_long tsd_made, tsd_freed;

struct rec {
    char *jid;
    char *value;
    const char *why_freed; /* "replaced" once it was replaced, else "session end" */
};

static void rec_free(void *data)
{
    struct rec *r = data;
    atomic_fetch_add(&tsd_freed, 1);
    sd_log(tsd_mod, SD_LOG_INFO, "freed session data of %s (value %s, %s)", r->jid, r->value,
           r->why_freed ? r->why_freed : "session end");
    free(r->jid);
    free(r->value);
    free(r);
}

static struct rec *rec_new(const char *jid, const char *value)
{
    struct rec *r = calloc(1, sizeof(*r));
    r->jid = strdup(jid);
    r->value = strdup(value);
    atomic_fetch_add(&tsd_made, 1);
    return r;
}

static void on_bound(sd_hctx *h, sd_event *ev, void *ud)
{
    sd_session *s = sd_event_session(ev);
    sd_session_set_data(s, tsd_mod, rec_new(sd_session_full(s), "initial"), rec_free);
}

static sd_verdict tsd_request(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_session *s = sd_hctx_session(h);
    sd_el *q = sd_stanza_payload(st);
    const char *op = sd_el_name(q), *value = sd_el_attr(q, "value");
    int is_set = strcmp(sd_stanza_type(st), "set") == 0;
    if (!is_set && strcmp(op, "counters") == 0) {
        char buf[32];
        sd_stanza *reply = sd_stanza_result(st);
        sd_el *c = sd_el_add(reply, sd_stanza_el(reply), NS, "counters");
        snprintf(buf, sizeof(buf), "%ld", atomic_load(&tsd_made));
        sd_el_set_attr(reply, c, "made", buf);
        snprintf(buf, sizeof(buf), "%ld", atomic_load(&tsd_freed));
        sd_el_set_attr(reply, c, "freed", buf);
        sd_reply(h, &reply);
        return SD_DONE;
    }
    struct rec *r = s != NULL ? sd_session_get_data(s, tsd_mod) : NULL;
    if (r == NULL)
        return sd_reply_error(h, st, SD_ERR_ITEM_NOT_FOUND, "no session data");
    if (is_set && strcmp(op, "set") == 0 && value != NULL) {
        free(r->value);
        r->value = strdup(value);
        return sd_reply_result(h, st);
    }
    if (is_set && strcmp(op, "replace") == 0 && value != NULL) {
        r->why_freed = "replaced";
        sd_session_set_data(s, tsd_mod, rec_new(sd_session_full(s), value), rec_free);
        return sd_reply_result(h, st);
    }
    if (!is_set && strcmp(op, "get") == 0) {
        sd_stanza *reply = sd_stanza_result(st);
        sd_el *d = sd_el_add(reply, sd_stanza_el(reply), NS, "data");
        sd_el_set_attr(reply, d, "jid", r->jid);
        sd_el_set_attr(reply, d, "value", r->value);
        sd_reply(h, &reply);
        return SD_DONE;
    }
    return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "unknown request");
}

static sd_verdict tsd_order(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_el *q = sd_stanza_payload(st);
    sd_el_set_attr(st, sd_el_add(st, q, NS_HOOKS, "step"), "name", "sd0");
    return SD_PASS;
}

static int tsd_load(sd_module *m, const char **error_r)
{
    tsd_mod = m;
    if (sd_hook_event(m, SD_EV_SESSION_BOUND, 0, on_bound, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, NULL, 0, tsd_request, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS_HOOKS, "order", 0, tsd_order, NULL) <
            0) {
        *error_r = "a registration failed";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "test_session_data", .version = "test", .load = tsd_load);
