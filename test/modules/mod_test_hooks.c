/*
 * mod_test_hooks — a test-only module with a hook of every kind, driven by
 * test/integration/test_hooks.py. Nothing here is useful outside the tests.
 *
 * Everything it reacts to carries the namespace urn:stanzad:test:hooks, so it leaves ordinary
 * traffic alone:
 *   - iq <order/> (to the host): four handlers at priorities 10, 0, 0, -5 each add a <step/>
 *     to the request and the last one answers with it, so the reply shows the call order; the
 *     attribute stop='NAME' makes that handler answer instead (the later ones must not run);
 *     stop='none' lets every handler pass, so the core's default answers.
 *   - iq <whoami/>: the worker the sender's session runs on; <counters/>: event counts.
 *   - iq <ask timeout='ms'/>: answers at once, then asks the sender an iq of its own
 *     (sd_send_iq) and reports the outcome (result / error / timeout) in a message. It does not
 *     defer the <ask/>: the client's answer would wait behind it (RFC 6120 §10.1).
 *   - message, SD_PRE: body "drop me" is dropped, "rewrite:X" becomes "rewritten:X".
 *   - message to the host, SD_ROUTE: echoed back as "echo: BODY" (with a copy of its <mark/>,
 *     so the out-filter marks the server's own stanza too); "deliver:JID" / "route:JID" send
 *     JID a message "inbound-tag" with sd_deliver / sd_route instead (ABI 1.1).
 *   - message, SD_UNDELIVERABLE: body "bounce-custom" is answered with a notice from the host
 *     instead of the core's error.
 *   - presence, SD_PRE: <status>hide-me</status> is dropped; presence to the host, SD_ROUTE:
 *     answered with a presence whose status is "pong"; presence, SD_UNDELIVERABLE: status
 *     "where-are-you" is answered with a presence from the host, status "undeliverable: TO".
 *   - filters: a stanza with <mark/> gets <filtered-in worker='N'/> on the way in and
 *     <filtered-out worker='N'/> on the way out; <drop-in/> and <drop-out/> drop it there.
 *   - inbound handlers (ABI 1.1), on every stanza on its way to an account: a message with body
 *     "inbound-refuse" is refused with <not-acceptable/> (text "refused inbound"); one with
 *     body "inbound-tag" gets <inbound to-type='bare|full' session='0|1'/> and goes on;
 *     presence with status "inbound-drop" is dropped; an iq <inbound-answer/> to any resource
 *     is answered by the module, whoever the resource is.
 *   - iq before authentication (SD_TO_PREAUTH, ABI 1.1): <preauth/> get is answered with the
 *     client's address and whether TLS is on; <preauth-later/> set is deferred and answered
 *     from a post on the same worker; other pre-authentication iqs pass (→ <not-authorized/>).
 *   - iq with any payload to oneself (xmlns NULL, ABI 1.1): payload namespace
 *     urn:stanzad:test:any is answered with <any element='NAME'/>; anything else passes.
 *   - iq <parse>TEXT</parse> (to the host, ABI 1.1): TEXT through sd_stanza_parse; the answer
 *     carries the stanza's kind, type, to and its serialisation again, or <bad-request/>.
 *   - events: sessions bound and closed are counted; stream features get <test-feature/>;
 *     disco#info of the server gets two XEP-0128 forms (unsorted fields and values, to test
 *     the entity-capabilities hash), that of an account a feature.
 * Counters are atomics: handlers run on several workers at once.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

#define NS "urn:stanzad:test:hooks"

static sd_module *th_mod;
static atomic_long th_bound, th_closed, th_features, th_disco;

static void set_int_attr(sd_stanza *st, sd_el *el, const char *name, long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", v);
    sd_el_set_attr(st, el, name, buf);
}

/* ---- iq: priorities and order ---- */

static sd_verdict order_step(sd_hctx *h, sd_stanza *st, const char *name, int last)
{
    sd_el *q = sd_stanza_payload(st);
    sd_el *step = sd_el_add(st, q, NS, "step");
    sd_el_set_attr(st, step, "name", name);
    set_int_attr(st, step, "worker", sd_worker_current());
    const char *stop = sd_el_attr(q, "stop");
    int answer = stop != NULL ? strcmp(stop, name) == 0 : last;
    if (!answer)
        return SD_PASS;
    sd_stanza *reply = sd_stanza_result(st);
    sd_el_copy_into(reply, sd_stanza_el(reply), q);
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict order_p10(sd_hctx *h, sd_stanza *st, void *ud)
{
    return order_step(h, st, "p10", 0);
}

static sd_verdict order_p0a(sd_hctx *h, sd_stanza *st, void *ud)
{
    return order_step(h, st, "p0a", 0);
}

static sd_verdict order_p0b(sd_hctx *h, sd_stanza *st, void *ud)
{
    return order_step(h, st, "p0b", 0);
}

static sd_verdict order_m5(sd_hctx *h, sd_stanza *st, void *ud)
{
    return order_step(h, st, "m5", 1);
}

/* ---- iq: introspection ---- */

static sd_verdict th_whoami(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *w = sd_el_add(reply, sd_stanza_el(reply), NS, "whoami");
    set_int_attr(reply, w, "worker", sd_worker_current());
    set_int_attr(reply, w, "workers", sd_worker_count());
    sd_session *s = sd_hctx_session(h);
    if (s != NULL)
        sd_el_set_attr(reply, w, "jid", sd_session_full(s));
    sd_el_set_attr(reply, w, "host", sd_hctx_host(h));
    const char *peer = sd_hctx_peer(h);
    if (peer != NULL)
        sd_el_set_attr(reply, w, "peer", peer);
    set_int_attr(reply, w, "secure", sd_hctx_secure(h));
    sd_reply(h, &reply);
    return SD_DONE;
}

/* ---- ABI 1.1: inbound handlers, iq before authentication, any payload ---- */

static sd_verdict in_message(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *body = sd_el_child_text(st, sd_stanza_el(st), NULL, "body");
    const char *type = sd_stanza_type(st);
    if (type && strcmp(type, "error") == 0)
        return SD_PASS; /* the error we sent carries the body back */
    if (body && strcmp(body, "inbound-refuse") == 0)
        return sd_reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, "refused inbound");
    if (body && strcmp(body, "inbound-tag") == 0) {
        sd_el *mark = sd_el_add(st, sd_stanza_el(st), NS, "inbound");
        sd_el_set_attr(st, mark, "to-type", sd_jid_resource(sd_stanza_to(st)) ? "full" : "bare");
        set_int_attr(st, mark, "session", sd_hctx_session(h) != NULL);
        sd_el_set_attr(st, mark, "host", sd_hctx_host(h));
        /* An inbound handler cannot defer: the core says no. */
        set_int_attr(st, mark, "deferrable", sd_hctx_defer(h) != NULL);
    }
    return SD_PASS;
}

static sd_verdict in_presence(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *status = sd_el_child_text(st, sd_stanza_el(st), NULL, "status");
    return status && strcmp(status, "inbound-drop") == 0 ? SD_DONE : SD_PASS;
}

static sd_verdict in_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_el *p = sd_stanza_payload(st);
    if (!p || strcmp(sd_el_ns(p), NS) != 0 || strcmp(sd_el_name(p), "inbound-answer") != 0)
        return SD_PASS;
    const char *t = sd_stanza_type(st);
    if (!t || (strcmp(t, "get") != 0 && strcmp(t, "set") != 0))
        return SD_PASS;
    sd_stanza *reply = sd_stanza_result(st);
    sd_el_add(reply, sd_stanza_el(reply), NS, "answered-inbound");
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict preauth_get(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *w = sd_el_add(reply, sd_stanza_el(reply), NS, "preauth");
    const char *peer = sd_hctx_peer(h);
    sd_el_set_attr(reply, w, "peer", peer ? peer : "");
    set_int_attr(reply, w, "secure", sd_hctx_secure(h));
    set_int_attr(reply, w, "session", sd_hctx_session(h) != NULL);
    sd_el_set_attr(reply, w, "host", sd_hctx_host(h));
    sd_reply(h, &reply);
    return SD_DONE;
}

static void preauth_finish(void *ud)
{
    sd_pending *p = ud;
    sd_stanza *reply = sd_stanza_result(sd_pending_stanza(p));
    sd_el *w = sd_el_add(reply, sd_stanza_el(reply), NS, "preauth-later");
    set_int_attr(reply, w, "session", sd_pending_session(p) != NULL);
    sd_pending_reply(&p, &reply);
}

static sd_verdict preauth_later(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_pending *p = sd_hctx_defer(h);
    if (!p)
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "could not defer");
    sd_post(-1, preauth_finish, p);
    return SD_LATER;
}

static sd_verdict th_parse(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *text = sd_el_text(st, sd_stanza_payload(st));
    sd_stanza *parsed = sd_stanza_parse(text, strlen(text));
    if (!parsed)
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "not one stanza");
    static const char *const kinds[] = {"message", "presence", "iq", "other"};
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *r = sd_el_add(reply, sd_stanza_el(reply), NS, "parsed");
    sd_el_set_attr(reply, r, "kind", kinds[sd_stanza_kind(parsed)]);
    const char *t = sd_stanza_type(parsed), *to = sd_stanza_to_str(parsed);
    if (t)
        sd_el_set_attr(reply, r, "type", t);
    if (to)
        sd_el_set_attr(reply, r, "to", to);
    char *again = sd_el_to_string(sd_stanza_el(parsed));
    sd_el_add_text(reply, r, again);
    free(again);
    sd_stanza_free(&parsed);
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict any_payload(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_el *p = sd_stanza_payload(st);
    if (!p || strcmp(sd_el_ns(p), "urn:stanzad:test:any") != 0)
        return SD_PASS;
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *a = sd_el_add(reply, sd_stanza_el(reply), NS, "any");
    sd_el_set_attr(reply, a, "element", sd_el_name(p));
    sd_reply(h, &reply);
    return SD_DONE;
}

static sd_verdict th_counters(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_stanza *reply = sd_stanza_result(st);
    sd_el *c = sd_el_add(reply, sd_stanza_el(reply), NS, "counters");
    set_int_attr(reply, c, "bound", atomic_load(&th_bound));
    set_int_attr(reply, c, "closed", atomic_load(&th_closed));
    set_int_attr(reply, c, "features", atomic_load(&th_features));
    set_int_attr(reply, c, "disco", atomic_load(&th_disco));
    sd_reply(h, &reply);
    return SD_DONE;
}

/* ---- iq: sd_send_iq ---- */

/* What the answer's callback needs: copies, since the session may be gone by then. */
struct ask {
    char *full;
    char *host;
    int worker;
};

static void ask_free(struct ask *a)
{
    free(a->full);
    free(a->host);
    free(a);
}

static void ask_done(sd_stanza *result, void *ud)
{
    struct ask *a = ud;
    const char *outcome = result == NULL                                  ? "timeout"
                          : strcmp(sd_stanza_type(result), "result") == 0 ? "result"
                                                                          : "error";
    char body[96];
    snprintf(body, sizeof(body), "asked: %s started=%d worker=%d", outcome, a->worker,
             sd_worker_current());
    sd_stanza *msg = sd_stanza_new(SD_MESSAGE, "normal");
    sd_stanza_set_from(msg, a->host);
    sd_stanza_set_to(msg, a->full);
    sd_el_add_text_child(msg, sd_stanza_el(msg), NULL, "body", body);
    sd_route(&msg);
    ask_free(a);
}

static sd_verdict th_ask(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_session *s = sd_hctx_session(h);
    if (s == NULL)
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "only from a session");
    const char *t = sd_el_attr(sd_stanza_payload(st), "timeout");
    unsigned timeout = t != NULL ? (unsigned)strtoul(t, NULL, 10) : 5000;
    struct ask *a = calloc(1, sizeof(*a));
    a->full = strdup(sd_session_full(s));
    a->host = strdup(sd_hctx_host(h));
    a->worker = sd_worker_current();
    sd_stanza *q = sd_stanza_new(SD_IQ, "get");
    sd_stanza_set_from(q, a->host);
    sd_stanza_set_to(q, a->full);
    sd_el_add(q, sd_stanza_el(q), NS, "question");
    if (sd_send_iq(th_mod, &q, timeout, ask_done, a) < 0) {
        ask_free(a);
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, "sd_send_iq failed");
    }
    return sd_reply_result(h, st);
}

/* ---- messages and presence ---- */

static const char *body_of(sd_stanza *st)
{
    return sd_el_child_text(st, sd_stanza_el(st), NULL, "body");
}

static sd_verdict msg_pre(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *body = body_of(st);
    if (body == NULL)
        return SD_PASS;
    if (strcmp(body, "drop me") == 0)
        return SD_DONE;
    if (strncmp(body, "rewrite:", 8) == 0) {
        char *text = malloc(strlen(body) + 8);
        sprintf(text, "rewritten:%s", body + 8);
        sd_el *root = sd_stanza_el(st);
        sd_el_remove(root, sd_el_child(root, NULL, "body"));
        sd_el_add_text_child(st, root, NULL, "body", text);
        free(text);
    }
    return SD_PASS;
}

static sd_verdict msg_echo(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *body = body_of(st);
    const sd_jid *from = sd_stanza_from(st);
    if (body == NULL || from == NULL)
        return SD_PASS;
    if (strncmp(body, "deliver:", 8) == 0 || strncmp(body, "route:", 6) == 0) {
        /* ABI 1.1: sd_deliver skips the inbound handlers, sd_route does not. */
        int deliver = body[0] == 'd';
        sd_stanza *msg = sd_stanza_new(SD_MESSAGE, "chat");
        sd_stanza_set_from(msg, sd_hctx_host(h));
        sd_stanza_set_to(msg, strchr(body, ':') + 1);
        sd_el_add_text_child(msg, sd_stanza_el(msg), NULL, "body", "inbound-tag");
        if (deliver)
            sd_deliver(&msg);
        else
            sd_route(&msg);
        return SD_DONE;
    }
    char *text = malloc(strlen(body) + 8);
    sprintf(text, "echo: %s", body);
    sd_stanza *msg = sd_stanza_new(SD_MESSAGE, sd_stanza_type(st));
    sd_stanza_set_from(msg, sd_hctx_host(h));
    sd_stanza_set_to(msg, sd_jid_full(from));
    sd_el_add_text_child(msg, sd_stanza_el(msg), NULL, "body", text);
    set_int_attr(msg, sd_el_add(msg, sd_stanza_el(msg), NS, "handled"), "worker",
                 sd_worker_current());
    sd_el *mark = sd_el_child(sd_stanza_el(st), NS, "mark");
    if (mark != NULL)
        sd_el_copy_into(msg, sd_stanza_el(msg), mark);
    free(text);
    sd_reply(h, &msg);
    return SD_DONE;
}

static sd_verdict msg_undeliverable(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *body = body_of(st);
    const sd_jid *from = sd_stanza_from(st);
    const char *to = sd_stanza_to_str(st);
    if (body == NULL || from == NULL || to == NULL || strcmp(body, "bounce-custom") != 0)
        return SD_PASS;
    char *text = malloc(strlen(to) + 32);
    sprintf(text, "undeliverable: %s", to);
    sd_stanza *msg = sd_stanza_new(SD_MESSAGE, "normal");
    sd_stanza_set_from(msg, sd_jid_domain(from));
    sd_stanza_set_to(msg, sd_jid_full(from));
    sd_el_add_text_child(msg, sd_stanza_el(msg), NULL, "body", text);
    free(text);
    sd_reply(h, &msg);
    return SD_DONE;
}

static sd_verdict pres_pre(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *status = sd_el_child_text(st, sd_stanza_el(st), NULL, "status");
    return status != NULL && strcmp(status, "hide-me") == 0 ? SD_DONE : SD_PASS;
}

static sd_verdict pres_to_host(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *status = sd_el_child_text(st, sd_stanza_el(st), NULL, "status");
    const sd_jid *from = sd_stanza_from(st);
    if (status == NULL || strcmp(status, "ping") != 0 || from == NULL)
        return SD_PASS;
    sd_stanza *p = sd_stanza_new(SD_PRESENCE, NULL);
    sd_stanza_set_from(p, sd_hctx_host(h));
    sd_stanza_set_to(p, sd_jid_full(from));
    sd_el_add_text_child(p, sd_stanza_el(p), NULL, "status", "pong");
    sd_reply(h, &p);
    return SD_DONE;
}

static sd_verdict pres_undeliverable(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *status = sd_el_child_text(st, sd_stanza_el(st), NULL, "status");
    const sd_jid *from = sd_stanza_from(st);
    const char *to = sd_stanza_to_str(st);
    if (status == NULL || strcmp(status, "where-are-you") != 0 || from == NULL || to == NULL)
        return SD_PASS;
    char *text = malloc(strlen(to) + 32);
    sprintf(text, "undeliverable: %s", to);
    sd_stanza *p = sd_stanza_new(SD_PRESENCE, NULL);
    sd_stanza_set_from(p, sd_jid_domain(from));
    sd_stanza_set_to(p, sd_jid_full(from));
    sd_el_add_text_child(p, sd_stanza_el(p), NULL, "status", text);
    free(text);
    sd_reply(h, &p);
    return SD_DONE;
}

/* ---- filters ---- */

static sd_verdict filter(sd_stanza *st, const char *drop, const char *mark_name)
{
    sd_el *root = sd_stanza_el(st);
    if (sd_el_child(root, NS, drop) != NULL)
        return SD_DONE;
    if (sd_el_child(root, NS, "mark") != NULL)
        set_int_attr(st, sd_el_add(st, root, NS, mark_name), "worker", sd_worker_current());
    return SD_PASS;
}

static sd_verdict filter_in(sd_hctx *h, sd_stanza *st, void *ud)
{
    return filter(st, "drop-in", "filtered-in");
}

static sd_verdict filter_out(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_verdict v = filter(st, "drop-out", "filtered-out");
    /* The recipient's session: the test compares it with the stanza's 'to'. */
    sd_session *s = sd_hctx_session(h);
    sd_el *mark = sd_el_child(sd_stanza_el(st), NS, "filtered-out");
    if (v == SD_PASS && mark != NULL && s != NULL)
        sd_el_set_attr(st, mark, "session", sd_session_full(s));
    return v;
}

/* ---- events ---- */

static void ev_bound(sd_hctx *h, sd_event *ev, void *ud)
{
    atomic_fetch_add(&th_bound, 1);
    sd_log(th_mod, SD_LOG_INFO, "bound %s on worker %d", sd_session_full(sd_event_session(ev)),
           sd_worker_current());
}

static void ev_closed(sd_hctx *h, sd_event *ev, void *ud)
{
    atomic_fetch_add(&th_closed, 1);
    sd_log(th_mod, SD_LOG_INFO, "closed %s", sd_session_full(sd_event_session(ev)));
}

static void ev_features(sd_hctx *h, sd_event *ev, void *ud)
{
    atomic_fetch_add(&th_features, 1);
    sd_stanza *st = sd_event_stanza(ev);
    sd_el *f = sd_el_add(st, sd_event_el(ev), NS, "test-feature");
    sd_el_set_attr(st, f, "authenticated", sd_event_authenticated(ev) ? "1" : "0");
    sd_el_set_attr(st, f, "host", sd_hctx_host(h));
}

static void add_field(sd_stanza *st, sd_el *x, const char *var, const char *type,
                      const char *const *values)
{
    sd_el *f = sd_el_add(st, x, NULL, "field");
    sd_el_set_attr(st, f, "var", var);
    if (type != NULL)
        sd_el_set_attr(st, f, "type", type);
    for (; *values != NULL; values++)
        sd_el_add_text_child(st, f, NULL, "value", *values);
}

static void ev_disco(sd_hctx *h, sd_event *ev, void *ud)
{
    atomic_fetch_add(&th_disco, 1);
    sd_stanza *st = sd_event_stanza(ev);
    sd_el *q = sd_event_el(ev);
    const char *jid = sd_event_jid(ev);
    if (sd_event_node(ev) != NULL || jid == NULL)
        return;
    if (strchr(jid, '@') != NULL) {
        sd_el_set_attr(st, sd_el_add(st, q, NULL, "feature"), "var", NS ":account");
        return;
    }
    /* Deliberately out of order: the caps hash must sort forms, fields and values. */
    static const char *const t2[] = {NS ":form", NULL}, *const z[] = {"z2", "z1", NULL},
                             *const a[] = {"a", NULL};
    sd_el *x2 = sd_el_add(st, q, "jabber:x:data", "x");
    sd_el_set_attr(st, x2, "type", "result");
    add_field(st, x2, "FORM_TYPE", "hidden", t2);
    add_field(st, x2, "zeta", NULL, z);
    add_field(st, x2, "alpha", NULL, a);
    static const char *const t1[] = {"http://jabber.org/network/serverinfo", NULL},
                             *const admin[] = {"xmpp:admin@localhost", "mailto:admin@localhost",
                                               NULL};
    sd_el *x1 = sd_el_add(st, q, "jabber:x:data", "x");
    sd_el_set_attr(st, x1, "type", "result");
    add_field(st, x1, "FORM_TYPE", "hidden", t1);
    add_field(st, x1, "admin-addresses", NULL, admin);
}

static int th_load(sd_module *m, const char **error_r)
{
    th_mod = m;
    int rc = 0;
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, "order", 10, order_p10, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, "order", 0, order_p0a, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, "order", 0, order_p0b, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, "order", -5, order_m5, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS, "whoami", 0, th_whoami, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS, "counters", 0, th_counters, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_SET, NS, "ask", 0, th_ask, NULL);
    rc |= sd_hook_message(m, SD_TO_BARE | SD_TO_FULL | SD_TO_SELF, SD_PRE, 0, msg_pre, NULL);
    rc |= sd_hook_message(m, SD_TO_HOST, SD_ROUTE, 0, msg_echo, NULL);
    rc |= sd_hook_message(m, SD_TO_BARE | SD_TO_FULL, SD_UNDELIVERABLE, 0, msg_undeliverable, NULL);
    rc |= sd_hook_presence(m, SD_TO_BARE | SD_TO_FULL, SD_PRE, 0, pres_pre, NULL);
    rc |= sd_hook_presence(m, SD_TO_HOST, SD_ROUTE, 0, pres_to_host, NULL);
    rc |=
        sd_hook_presence(m, SD_TO_BARE | SD_TO_FULL, SD_UNDELIVERABLE, 0, pres_undeliverable, NULL);
    rc |= sd_hook_filter(m, SD_FILTER_IN, 0, filter_in, NULL);
    rc |= sd_hook_filter(m, SD_FILTER_OUT, 0, filter_out, NULL);
    rc |= sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS, "parse", 0, th_parse, NULL);
    rc |= sd_hook_inbound(m, SD_KIND_MESSAGE, 0, in_message, NULL);
    rc |= sd_hook_inbound(m, SD_KIND_PRESENCE, 0, in_presence, NULL);
    rc |= sd_hook_inbound(m, SD_KIND_IQ, 0, in_iq, NULL);
    rc |= sd_hook_iq(m, SD_TO_PREAUTH, SD_IQ_GET, NS, "preauth", 0, preauth_get, NULL);
    rc |= sd_hook_iq(m, SD_TO_PREAUTH, SD_IQ_SET, NS, "preauth-later", 0, preauth_later, NULL);
    rc |= sd_hook_iq(m, SD_TO_SELF, SD_IQ_GET | SD_IQ_SET, NULL, NULL, 0, any_payload, NULL);
    rc |= sd_hook_event(m, SD_EV_SESSION_BOUND, 0, ev_bound, NULL);
    rc |= sd_hook_event(m, SD_EV_SESSION_CLOSED, 0, ev_closed, NULL);
    rc |= sd_hook_event(m, SD_EV_STREAM_FEATURES, 0, ev_features, NULL);
    rc |= sd_hook_event(m, SD_EV_DISCO_INFO, 0, ev_disco, NULL);
    rc |= sd_add_feature(m, SD_DISCO_SERVER, NS);
    if (rc != 0) {
        *error_r = "a registration failed";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "test_hooks", .version = "test", .load = th_load);
