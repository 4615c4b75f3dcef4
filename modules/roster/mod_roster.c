/*
 * mod_roster — contacts and presence: the roster (RFC 6121 §2, with versioning §2.6),
 * presence subscriptions (§3 and Appendix A, pre-approval §3.4), presence broadcast and probes
 * (§4), and the blocking command (XEP-0191). Built on the public module ABI only.
 *
 * Where things run. An account's roster, blocklist and resources (with their last presence)
 * live on its home worker, sd_worker_for(bare), and only code running there touches them
 * (state.c). The hooks below run where the core calls them — a client's stanzas on its
 * session's worker, inbound stanzas on whichever worker routes them — and turn what they see
 * into a struct task: a copy of the stanza plus the account, resource and session token it
 * concerns, posted to the home worker (a client's tasks by way of its session's own inbox, so
 * that they leave after the core has finished with the stanza). Posts from one worker arrive
 * in the order they were made, so a client's stanzas are applied in the order it sent them.
 *
 *   client iq (roster, blocking)  deferred (sd_hctx_defer) on the session's worker, answered
 *                                 from home by posting the reply back (task_finish), since a
 *                                 pending stanza is finished on its own worker;
 *   client presence, no 'to'      copied home (last presence, broadcast, probes) and passed on:
 *                                 the core still sets availability, reflects it to the
 *                                 account's resources and handles directed presence;
 *   client subscription stanza    taken (SD_DONE): applied on the user's home, then routed
 *                                 from the user's bare JID to the contact's bare JID;
 *   inbound subscription / probe  taken (sd_hook_inbound): applied on the recipient's home —
 *                                 delivered, stored, answered there;
 *   session bound / closed        the resource appears / disappears at home (and goes
 *                                 unavailable for the contacts if it was available);
 *   account deleted               its state goes; local contacts that had it in their roster
 *                                 get its subscriptions cancelled as if it had sent
 *                                 unsubscribe and unsubscribed.
 *
 * What this module delivers after handling it as the recipient's side goes out with sd_deliver,
 * past the inbound handlers; an inbound subscription stanza addressed to a full JID is handled
 * as if addressed to the bare JID (§3.1.3).
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

static const sd_setting roster_settings[] = {
    {"max_items", SD_SETTING_INT, offsetof(struct rconf, max_items), "1000", 1, 100000, NULL,
     "contacts a roster may hold (RFC 6121 §2.3.3); beyond: <policy-violation/>"},
    {"max_name_length", SD_SETTING_INT, offsetof(struct rconf, max_name_length), "1000", 1, 65536,
     NULL, "characters in an item's name; beyond: <not-acceptable/>"},
    {"max_group_length", SD_SETTING_INT, offsetof(struct rconf, max_group_length), "1000", 1, 65536,
     NULL, "characters in a group name; beyond: <not-acceptable/>"},
    {"max_groups", SD_SETTING_INT, offsetof(struct rconf, max_groups), "100", 1, 10000, NULL,
     "groups per item; beyond: <not-acceptable/>"},
    {"max_blocked", SD_SETTING_INT, offsetof(struct rconf, max_blocked), "1000", 1, 100000, NULL,
     "JIDs a blocklist may hold; beyond: <policy-violation/>"},
    {"max_pending", SD_SETTING_INT, offsetof(struct rconf, max_pending), "100", 1, 100000, NULL,
     "subscription requests kept from JIDs not in the roster; more are refused "
     "(resource-constraint)"},
    {"pre_approval", SD_SETTING_BOOL, offsetof(struct rconf, pre_approval), "true", 0, 0, NULL,
     "subscription pre-approval (RFC 6121 §3.4), advertised as a stream feature"},
    {"versioning", SD_SETTING_BOOL, offsetof(struct rconf, versioning), "true", 0, 0, NULL,
     "roster versioning (RFC 6121 §2.6), advertised as a stream feature"},
    {"unload_after", SD_SETTING_DURATION, offsetof(struct rconf, unload_after_ms), "60s", 0,
     INT64_C(24) * 3600 * 1000, NULL,
     "keep an account's roster in memory this long after its last session ended"},
    SD_SETTINGS_END,
};

static const sd_migration roster_migrations[] = {
    {1, "CREATE TABLE roster_version ("
        "  account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,"
        "  ver bigint NOT NULL,"
        "  epoch bigint NOT NULL,"
        "  floor bigint NOT NULL);"
        "CREATE TABLE roster_items ("
        "  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,"
        "  jid text NOT NULL,"
        "  name text,"
        "  groups text NOT NULL DEFAULT '',"
        "  sub smallint NOT NULL DEFAULT 0,"
        "  ask boolean NOT NULL DEFAULT false,"
        "  pending_in boolean NOT NULL DEFAULT false,"
        "  approved boolean NOT NULL DEFAULT false,"
        "  in_roster boolean NOT NULL DEFAULT true,"
        "  ver bigint NOT NULL DEFAULT 0,"
        "  pending_xml text,"
        "  PRIMARY KEY (account_id, jid));"
        /* Who has this JID in their roster (account deletion). */
        "CREATE INDEX roster_items_jid ON roster_items (jid);"
        "CREATE TABLE roster_blocked ("
        "  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,"
        "  jid text NOT NULL,"
        "  PRIMARY KEY (account_id, jid));"},
    SD_MIGRATIONS_END,
};

sd_module *roster_mod;
static atomic_uint_fast64_t next_sid;

const struct rconf *rconf(const char *host)
{
    return sd_module_config(roster_mod, host);
}

/* ---- tasks ---- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL)
        abort();
    return d;
}

void task_free(struct task *t)
{
    if (t == NULL)
        return;
    sd_stanza_free(&t->st);
    free(t->bare);
    free(t->res);
    free(t);
}

static struct task *task_new(enum task_kind kind, const char *bare)
{
    struct task *t = calloc(1, sizeof(*t));
    if (t == NULL)
        abort();
    t->kind = kind;
    t->bare = xstrdup(bare);
    t->origin = -1;
    return t;
}

struct finish {
    sd_pending *p;
    sd_stanza *reply;
    int err;
    const char *text;
};

static void finish_now(void *ud)
{
    struct finish *f = ud;
    if (f->err >= 0)
        sd_pending_error(&f->p, (sd_error)f->err, f->text);
    else if (f->reply != NULL)
        sd_pending_reply(&f->p, &f->reply);
    else
        sd_pending_done(&f->p);
    sd_stanza_free(&f->reply);
    free(f);
}

void task_finish(struct task *t, sd_stanza *reply, int err, const char *text)
{
    struct finish *f = calloc(1, sizeof(*f));
    if (f == NULL)
        abort();
    f->p = t->pending;
    f->reply = reply;
    f->err = -1;
    if (err >= 0) {
        /* Built here, to come from the account's bare JID like a result (RFC 6120 §10.3.3). */
        sd_stanza_free(&f->reply);
        f->reply = t->st ? sd_stanza_error(t->st, (sd_error)err, text) : NULL;
        if (f->reply != NULL)
            sd_stanza_set_from(f->reply, t->bare);
        else
            f->err = err;
        f->text = text; /* static strings only */
    }
    int origin = t->origin;
    t->pending = NULL;
    task_free(t);
    if (f->p == NULL) {
        sd_stanza_free(&f->reply);
        free(f);
        return;
    }
    /* A pending stanza is finished on its own worker; here, at once (so that a reply goes out
     * before the pushes that follow it). */
    if (origin == sd_worker_current() || sd_worker_current() < 0 ||
        sd_post(origin, finish_now, f) < 0)
        finish_now(f);
}

/* The home worker's side of every task. */
static void task_apply(struct account *a, void *ud)
{
    struct task *t = ud;
    if (sd_worker_current() < 0) {
        /* Shutdown: the loops ended; only free. */
        if (t->pending != NULL)
            task_finish(t, NULL, SD_ERR_SERVICE_UNAVAILABLE, NULL);
        else
            task_free(t);
        return;
    }
    switch (t->kind) {
    case T_BOUND:
        if (a != NULL && a->state == A_READY)
            res_get(a, t->res, t->sid);
        task_free(t);
        break;
    case T_CLOSED:
        if (a != NULL) {
            struct res *r = res_find(a, t->res);
            if (r != NULL && r->sid == t->sid) {
                pres_gone(a, r);
                res_remove(a, r);
            }
        }
        task_free(t);
        break;
    case T_PRESENCE:
        if (a != NULL && a->state == A_READY) {
            struct res *r = res_get(a, t->res, t->sid);
            if (r != NULL)
                pres_update(a, r, t->st);
        }
        task_free(t);
        break;
    case T_SUB_OUT:
        sub_outbound(a, t);
        break;
    case T_SUB_IN:
        sub_inbound(a, t);
        break;
    case T_PROBE:
        pres_probe_in(a, t);
        break;
    case T_IQ_ROSTER:
    case T_IQ_BLOCK:
        if (a == NULL || a->state != A_READY)
            task_finish(t, NULL, a == NULL ? SD_ERR_INTERNAL_SERVER_ERROR : SD_ERR_ITEM_NOT_FOUND,
                        a == NULL ? "the roster is not available now" : NULL);
        else if (t->kind == T_IQ_ROSTER)
            roster_iq(a, t);
        else
            block_iq(a, t);
        break;
    case T_DELETED:
        if (a != NULL) {
            for (struct res *r = a->res; r; r = r->next)
                pres_gone(a, r);
            acct_drop(a);
        }
        task_free(t);
        break;
    }
}

static void task_run(void *ud)
{
    struct task *t = ud;
    state_sweep();
    bool load = t->kind != T_CLOSED && t->kind != T_PROBE && t->kind != T_DELETED;
    acct_with(t->bare, load, task_apply, t);
}

static void task_post(struct task *t)
{
    if (sd_post(sd_worker_for(t->bare), task_run, t) < 0)
        task_apply(NULL, t);
}

static void client_relay(void *ud)
{
    task_post(ud);
}

/* A task from a client's session goes home by way of the session's own inbox: so it leaves
 * after the core has finished with the stanza (a broadcast presence passed on by our handler
 * makes the session available only after we return, and the answers to the probes this
 * presence causes must find it available), and the session's tasks keep their order. */
static void client_post(struct task *t)
{
    if (sd_post(-1, client_relay, t) < 0)
        task_post(t);
}

/* ---- per-session token ---- */

struct sess_data {
    uint64_t sid;
};

static uint64_t session_sid(sd_session *s)
{
    struct sess_data *d = sd_session_get_data(s, roster_mod);
    return d ? d->sid : 0;
}

static const char *session_resource(sd_session *s)
{
    const char *full = sd_session_full(s);
    const char *slash = strchr(full, '/');
    return slash ? slash + 1 : "";
}

static struct task *client_task(enum task_kind kind, sd_session *s)
{
    struct task *t = task_new(kind, sd_session_bare(s));
    t->res = xstrdup(session_resource(s));
    t->sid = session_sid(s);
    return t;
}

/* ---- events ---- */

static void on_bound(sd_hctx *h, sd_event *ev, void *ud)
{
    (void)h;
    (void)ud;
    sd_session *s = sd_event_session(ev);
    if (s == NULL)
        return;
    blocking_start();
    struct sess_data *d = sd_alloc(sizeof(*d));
    d->sid = atomic_fetch_add(&next_sid, 1) + 1;
    sd_session_set_data(s, roster_mod, d, sd_free);
    client_post(client_task(T_BOUND, s));
}

static void on_closed(sd_hctx *h, sd_event *ev, void *ud)
{
    (void)h;
    (void)ud;
    sd_session *s = sd_event_session(ev);
    if (s == NULL || session_sid(s) == 0)
        return;
    client_post(client_task(T_CLOSED, s));
}

static void on_features(sd_hctx *h, sd_event *ev, void *ud)
{
    (void)h;
    (void)ud;
    blocking_start();
    if (!sd_event_authenticated(ev))
        return;
    const struct rconf *c = rconf(sd_event_jid(ev));
    sd_stanza *st = sd_event_stanza(ev);
    sd_el *el = sd_event_el(ev);
    if (c == NULL || st == NULL || el == NULL)
        return;
    if (c->versioning)
        sd_el_add(st, el, NS_ROSTERVER, "ver");
    if (c->pre_approval)
        sd_el_add(st, el, NS_PREAPPROVAL, "sub");
}

static void contacts_found(sd_dbres *r, void *ud)
{
    char *bare = ud;
    if (sd_dbres_status(r) != SD_DB_OK) {
        sd_log(roster_mod, SD_LOG_WARN, "cannot find the contacts of the deleted account %s: %s",
               bare, sd_dbres_error(r));
        free(bare);
        return;
    }
    int n = sd_dbres_rows(r);
    for (int i = 0; i < n; i++) {
        const char *contact = sd_dbres_value(r, i, 0);
        if (contact == NULL)
            continue;
        /* As if the deleted account had cancelled both directions (Appendix A.3.2, A.3.4). */
        send_presence("unsubscribe", bare, contact);
        send_presence("unsubscribed", bare, contact);
    }
    sd_log(roster_mod, SD_LOG_DEBUG, "account %s deleted: %d contacts told", bare, n);
    free(bare);
}

static void on_deleted(sd_hctx *h, sd_event *ev, void *ud)
{
    (void)h;
    (void)ud;
    const char *bare = sd_event_jid(ev);
    if (bare == NULL)
        return;
    blocking_account_deleted(bare);
    task_post(task_new(T_DELETED, bare));
    char *copy = xstrdup(bare);
    if (store_contacts_of(bare, contacts_found, copy) < 0)
        free(copy);
}

/* ---- a client's stanzas (on its session's worker) ---- */

static sd_verdict defer_to_home(sd_hctx *h, sd_stanza *st, enum task_kind kind)
{
    sd_session *s = sd_hctx_session(h);
    if (s == NULL)
        return SD_PASS;
    struct task *t = client_task(kind, s);
    t->st = sd_stanza_copy(st);
    t->pending = sd_hctx_defer(h);
    t->origin = sd_worker_current();
    if (t->st == NULL || t->pending == NULL) {
        if (t->pending != NULL) {
            sd_pending_error(&t->pending, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
            task_free(t);
            return SD_LATER;
        }
        task_free(t);
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    }
    client_post(t);
    return SD_LATER;
}

static sd_verdict on_roster_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    sd_session *s = sd_hctx_session(h);
    if (s == NULL)
        return SD_PASS;
    const sd_jid *to = sd_stanza_to(st);
    if (to != NULL && strcmp(sd_jid_bare(to), sd_session_bare(s)) != 0)
        /* RFC 6121 §2.3.3 (and §2.1.3 for a get): only the account itself. */
        return sd_reply_error(h, st, SD_ERR_FORBIDDEN, NULL);
    return defer_to_home(h, st, T_IQ_ROSTER);
}

static sd_verdict on_blocking_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    return defer_to_home(h, st, T_IQ_BLOCK);
}

static sd_verdict on_presence_out(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    sd_session *s = sd_hctx_session(h);
    if (s == NULL)
        return SD_PASS;
    const char *type = sd_stanza_type(st);
    if (sd_stanza_to_str(st) == NULL) {
        /* Broadcast presence: the core does its part after us. */
        if (type == NULL || strcmp(type, "unavailable") == 0) {
            struct task *t = client_task(T_PRESENCE, s);
            t->st = sd_stanza_copy(st);
            if (t->st != NULL)
                client_post(t);
            else
                task_free(t);
        }
        return SD_PASS;
    }
    if (!is_subscription_type(type))
        return SD_PASS; /* directed presence: the core's */
    const sd_jid *to = sd_stanza_to(st);
    if (to == NULL || strcmp(sd_jid_bare(to), sd_session_bare(s)) == 0)
        return SD_DONE; /* no subscription to oneself */
    struct task *t = client_task(T_SUB_OUT, s);
    t->st = sd_stanza_copy(st);
    if (t->st != NULL)
        client_post(t);
    else
        task_free(t);
    return SD_DONE;
}

/* ---- inbound (any worker) ---- */

static sd_verdict on_presence_in(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)h;
    (void)ud;
    const char *type = sd_stanza_type(st);
    if (type == NULL)
        return SD_PASS;
    bool probe = strcmp(type, "probe") == 0;
    if (!probe && !is_subscription_type(type))
        return SD_PASS; /* available, unavailable, error: the core delivers */
    const sd_jid *to = sd_stanza_to(st);
    if (to == NULL)
        return SD_PASS;
    struct task *t = task_new(probe ? T_PROBE : T_SUB_IN, sd_jid_bare(to));
    t->st = sd_stanza_copy(st);
    if (t->st != NULL && !probe && sd_jid_resource(to) != NULL)
        sd_stanza_set_to(t->st, sd_jid_bare(to)); /* §3.1.3: as if to the bare JID */
    if (t->st != NULL)
        task_post(t);
    else
        task_free(t);
    return SD_DONE;
}

/* ---- load ---- */

static int roster_load(sd_module *m, const char **error_r)
{
    roster_mod = m;
    if (store_prepare(m) < 0) {
        *error_r = "cannot prepare the statements";
        return -1;
    }
    if (sd_hook_event(m, SD_EV_SESSION_BOUND, 0, on_bound, NULL) < 0 ||
        sd_hook_event(m, SD_EV_SESSION_CLOSED, 0, on_closed, NULL) < 0 ||
        sd_hook_event(m, SD_EV_ACCOUNT_DELETED, 0, on_deleted, NULL) < 0 ||
        sd_hook_event(m, SD_EV_STREAM_FEATURES, 0, on_features, NULL) < 0) {
        *error_r = "cannot register the event handlers";
        return -1;
    }
    if (sd_hook_iq(m, SD_TO_SELF | SD_TO_BARE, SD_IQ_GET | SD_IQ_SET, NS_ROSTER, "query", 0,
                   on_roster_iq, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_SELF, SD_IQ_GET, NS_BLOCKING, "blocklist", 0, on_blocking_iq, NULL) <
            0 ||
        sd_hook_iq(m, SD_TO_SELF, SD_IQ_SET, NS_BLOCKING, "block", 0, on_blocking_iq, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_SELF, SD_IQ_SET, NS_BLOCKING, "unblock", 0, on_blocking_iq, NULL) < 0) {
        *error_r = "cannot register the iq handlers";
        return -1;
    }
    if (sd_hook_presence(m, SD_TO_SELF | SD_TO_BARE | SD_TO_FULL, SD_PRE, 0, on_presence_out,
                         NULL) < 0 ||
        sd_hook_inbound(m, SD_KIND_PRESENCE, 0, on_presence_in, NULL) < 0) {
        *error_r = "cannot register the presence handlers";
        return -1;
    }
    if (blocking_register(m) < 0) {
        *error_r = "cannot register the blocking handlers";
        return -1;
    }
    return 0;
}

static void roster_unload(sd_module *m)
{
    (void)m;
    state_free_all();
    blocking_free_all();
}

SD_MODULE(.name = "roster", .version = SD_VERSION_STRING, .settings = roster_settings,
          .config_size = sizeof(struct rconf), .migrations = roster_migrations, .load = roster_load,
          .unload = roster_unload);
