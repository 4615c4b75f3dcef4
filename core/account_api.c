/*
 * account_api.c — include/stanzad/accounts.h: modules create, check, re-key and delete accounts;
 * and the events of account changes, this process's and other processes'.
 *
 * A call first prepares the name (jid_make: Nodeprep for the username, Nameprep for the host) and
 * checks that the host is ours; a refused name is answered through the calling worker's own
 * inbox, so the callback never runs inside the call. A password is copied, turned into
 * SCRAM-SHA-1 and SCRAM-SHA-256 verifiers (SCRAM_DEFAULT_ITERATIONS, as stanzactl) on the
 * offload pool, and the copy is wiped there. The write is then one statement (accounts.h: the
 * account, its verifiers and the notification together; a deletion with everything that
 * cascades), queued on the calling worker. Its completion, on that worker, raises the event —
 * created or deleted — and then calls the module back. After a deletion every session of the
 * account is ended with <not-authorized/>, wherever it lives (sd_session_end posts there).
 *
 * The element handed along with a creation (`info`, typically a registration form) is copied at
 * call time, with the whole stanza that holds it, into a stanza of this request: the caller's
 * stanza may be gone (a pending finished, a handler returned) when the database answers.
 *
 * Other processes' changes (stanzactl, another server on the same database) arrive as
 * notifications on ACCOUNTS_CHANNEL, read by a listener connection of worker 0 (db_listen) and
 * raised there. A notification carrying this process's own token is skipped: this process
 * raised that event already, on the worker that made the change.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "db.h"
#include "dispatch.h"
#include "jid.h"
#include "log.h"
#include "mem.h"
#include "modules.h"
#include "scram.h"
#include "server.h"
#include "session.h"
#include "stanza.h"
#include "stanzad/accounts.h"
#include "stanzad/hooks.h"
#include "worker.h"

enum acct_op { OP_CREATE, OP_EXISTS, OP_SET_PASSWORD, OP_DELETE };

static const char *const op_names[] = {"create", "exists", "set_password", "delete"};

struct acct_req {
    struct offload off; /* first: the hashing job; its post also carries early answers */
    enum acct_op op;
    struct sd_module *m;
    sd_account_fn cb;
    void *ud;
    struct jid *jid; /* prepared; NULL when refused */
    sd_account_status early;
    char *password; /* wiped and freed on the helper thread */
    size_t pwlen;
    int hash_rc;
    struct scram_verifier v[SCRAM_HASH_COUNT];
    struct stanza *info_st; /* our copy of the creator's stanza, and the element in it */
    struct xml_el *info;
};

static void req_free(struct acct_req *r)
{
    if (r->password) {
        explicit_bzero(r->password, r->pwlen);
        free(r->password);
    }
    explicit_bzero(r->v, sizeof r->v);
    jid_free(&r->jid);
    stanza_free(&r->info_st);
    free(r);
}

/* ---- ending the sessions of a deleted account ---- */

static void end_sessions(const char *bare)
{
    struct session *small[16];
    struct session **v = small;
    size_t cap = sizeof small / sizeof small[0];
    for (;;) {
        size_t n = session_find_bare(bare, PICK_ALL, v, cap);
        if (n < cap) {
            if (n > 0)
                log_info(0, "ending %zu session%s of the deleted account %s", n, n == 1 ? "" : "s",
                         bare);
            for (size_t i = 0; i < n; i++) {
                sd_session_end((sd_session *)v[i], SD_STREAM_NOT_AUTHORIZED, "account deleted");
                session_unref(&v[i]);
            }
            break;
        }
        for (size_t i = 0; i < n; i++)
            session_unref(&v[i]);
        cap *= 2;
        v = v == small ? xmalloc(cap * sizeof *v) : xrealloc(v, cap * sizeof *v);
    }
    if (v != small)
        free(v);
}

/* ---- completion ---- */

static void finish(struct acct_req *r, sd_account_status status)
{
    if (status == SD_ACCOUNT_OK && r->op == OP_CREATE) {
        log_info(0, "account %s created (module %s)", r->jid->bare, r->m->name);
        dispatch_account_event(SD_EV_ACCOUNT_CREATED, r->jid->domain, r->jid->bare, r->info_st,
                               r->info);
    } else if (status == SD_ACCOUNT_OK && r->op == OP_DELETE) {
        log_info(0, "account %s deleted (module %s)", r->jid->bare, r->m->name);
        dispatch_account_event(SD_EV_ACCOUNT_DELETED, r->jid->domain, r->jid->bare, NULL, NULL);
        end_sessions(r->jid->bare);
    } else if (status == SD_ACCOUNT_OK && r->op == OP_SET_PASSWORD) {
        log_info(0, "password of %s changed (module %s)", r->jid->bare, r->m->name);
    }
    r->cb(status, r->ud);
    req_free(r);
}

static void db_done(enum db_status st, PGresult *res, const char *err, void *ud)
{
    struct acct_req *r = ud;
    sd_account_status status;
    if (st == DB_OK) {
        bool row = PQntuples(res) > 0;
        status = row                  ? SD_ACCOUNT_OK
                 : r->op == OP_CREATE ? SD_ACCOUNT_EXISTS
                                      : SD_ACCOUNT_NOT_FOUND;
    } else if (st == DB_UNAVAILABLE) {
        log_warn(0, "[%s] account %s of %s: %s", r->m->name, op_names[r->op], r->jid->bare,
                 err ? err : "database unavailable");
        status = SD_ACCOUNT_UNAVAILABLE;
    } else {
        const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (code && strcmp(code, "23505") == 0 && r->op == OP_CREATE) {
            status = SD_ACCOUNT_EXISTS; /* unique_violation: created concurrently */
        } else if (code && strcmp(code, "23503") == 0 && r->op == OP_SET_PASSWORD) {
            status = SD_ACCOUNT_NOT_FOUND; /* foreign_key_violation: deleted concurrently */
        } else {
            log_error(0, "[%s] account %s of %s: %s", r->m->name, op_names[r->op], r->jid->bare,
                      err ? err : "database error");
            status = SD_ACCOUNT_ERROR;
        }
    }
    finish(r, status);
}

static void early_run(struct post *p)
{
    struct acct_req *r = (struct acct_req *)p;
    finish(r, r->early);
}

/* Answers without the database, from the calling worker's inbox (never inside the call). */
static void answer_later(struct acct_req *r, sd_account_status status)
{
    r->early = status;
    worker_post(worker_self(), &r->off.post, early_run);
}

/* Queues the statement of r; on failure (only when the workers are gone) answers at once: the
 * call that queued it has returned long ago. */
static void run_query(struct acct_req *r, const struct db_stmt *stmt, const struct db_params *p)
{
    if (db_query(stmt, p, db_done, r) != 0)
        finish(r, SD_ACCOUNT_UNAVAILABLE);
}

static void run_simple(struct acct_req *r, const struct db_stmt *stmt, bool with_payload,
                       bool created)
{
    char payload[ACCOUNTS_PAYLOAD_MAX];
    const char *values[3] = {r->jid->domain, r->jid->local, NULL};
    if (with_payload)
        values[2] = accounts_notify_payload(payload, sizeof payload, created, r->jid->domain,
                                            r->jid->local);
    struct db_params p = {.n = stmt->nparams, .values = values};
    run_query(r, stmt, &p);
}

/* ---- hashing on the offload pool ---- */

static void hash_work(struct offload *o)
{
    struct acct_req *r = (struct acct_req *)o;
    r->hash_rc = 0;
    for (int h = 0; h < SCRAM_HASH_COUNT && r->hash_rc == 0; h++)
        if (scram_new_verifier((enum scram_hash)h, r->password, SCRAM_DEFAULT_ITERATIONS,
                               &r->v[h]) < 0)
            r->hash_rc = -1;
    explicit_bzero(r->password, r->pwlen);
    free(r->password);
    r->password = NULL;
}

static void hash_done(struct offload *o)
{
    struct acct_req *r = (struct acct_req *)o;
    if (r->hash_rc < 0) {
        log_info(0,
                 "[%s] account %s of %s: the password is not acceptable (not UTF-8, or it "
                 "fails SASLprep)",
                 r->m->name, op_names[r->op], r->jid->bare);
        finish(r, SD_ACCOUNT_BAD_PASSWORD);
        return;
    }
    char payload[ACCOUNTS_PAYLOAD_MAX];
    bool create = r->op == OP_CREATE;
    if (create)
        accounts_notify_payload(payload, sizeof payload, true, r->jid->domain, r->jid->local);
    struct accounts_write_params p;
    accounts_write_params(&p, r->jid->domain, r->jid->local, create ? payload : NULL, r->v);
    run_query(r, create ? &db_stmt_account_create : &db_stmt_account_set_password,
              &p.params); /* may free r */
}

/* ---- the calls ---- */

/* The element of dst that sits where el sits in src (same child positions), or NULL. */
static struct xml_el *same_element(const struct xml_el *src_root, const struct xml_el *el,
                                   struct xml_el *dst_root)
{
    size_t path[64];
    size_t depth = 0;
    for (const struct xml_el *e = el; e != src_root; e = e->parent) {
        if (!e->parent || depth == sizeof path / sizeof path[0])
            return NULL;
        size_t i = 0;
        const struct xml_node *n = e->parent->children;
        for (; n && n != &e->node; n = n->next)
            i++;
        if (!n)
            return NULL;
        path[depth++] = i;
    }
    struct xml_el *d = dst_root;
    while (depth > 0) {
        struct xml_node *n = d->children;
        for (size_t i = 0; n && i < path[depth - 1]; i++)
            n = n->next;
        if (!n || n->kind != XML_NODE_ELEMENT)
            return NULL;
        d = (struct xml_el *)n;
        depth--;
    }
    return d;
}

static void copy_info(struct acct_req *r, const struct stanza *st, const struct xml_el *info)
{
    if (!info)
        return;
    if (st) {
        struct stanza *c = stanza_copy(st);
        struct xml_el *el = same_element(st->el, info, c->el);
        if (el) {
            r->info_st = c;
            r->info = el;
            return;
        }
        stanza_free(&c);
    }
    /* Not an element of st (a caller's mistake): hand along a copy of the element alone. */
    struct arena *a = arena_new(0);
    r->info_st = stanza_wrap(a, xml_el_copy(a, info));
    r->info = r->info_st->el;
}

/* A request, or NULL when the arguments are refused (the call returns -1). A name that fails
 * preparation or a foreign host leaves r->jid NULL: the caller answers SD_ACCOUNT_BAD_NAME. */
static struct acct_req *req_new(enum acct_op op, sd_module *m, const char *host,
                                const char *username, sd_account_fn cb, void *ud)
{
    if (!m || !host || !username || !cb || !worker_self())
        return NULL;
    struct acct_req *r = xcalloc(1, sizeof *r);
    r->op = op;
    r->m = m;
    r->cb = cb;
    r->ud = ud;
    const char *why = NULL;
    r->jid = jid_make(NULL, username, host, NULL, &why);
    if (r->jid && (!r->jid->local || !server_is_local_host(r->jid->domain))) {
        why = "not a host of this server";
        jid_free(&r->jid);
    }
    if (!r->jid)
        log_debug(0, "[%s] account %s: refused name: %s", m->name, op_names[op],
                  why ? why : "invalid");
    return r;
}

/* Create and set_password: the password is copied for the helper thread. */
static int start_with_password(struct acct_req *r, const char *password)
{
    if (!r->jid) {
        answer_later(r, SD_ACCOUNT_BAD_NAME);
        return 0;
    }
    if (!*password) {
        log_info(0, "[%s] account %s of %s: an empty password is refused", r->m->name,
                 op_names[r->op], r->jid->bare);
        answer_later(r, SD_ACCOUNT_BAD_PASSWORD);
        return 0;
    }
    r->pwlen = strlen(password);
    r->password = xstrdup(password);
    offload_submit(&r->off, hash_work, hash_done);
    return 0;
}

int sd_account_create(sd_module *m, const char *host, const char *username, const char *password,
                      sd_stanza *info_st, const sd_el *info, sd_account_fn cb, void *ud)
{
    if (!password)
        return -1;
    struct acct_req *r = req_new(OP_CREATE, m, host, username, cb, ud);
    if (!r)
        return -1;
    if (r->jid)
        copy_info(r, (const struct stanza *)info_st, (const struct xml_el *)info);
    return start_with_password(r, password);
}

int sd_account_set_password(sd_module *m, const char *host, const char *username,
                            const char *password, sd_account_fn cb, void *ud)
{
    if (!password)
        return -1;
    struct acct_req *r = req_new(OP_SET_PASSWORD, m, host, username, cb, ud);
    if (!r)
        return -1;
    return start_with_password(r, password);
}

int sd_account_exists(sd_module *m, const char *host, const char *username, sd_account_fn cb,
                      void *ud)
{
    struct acct_req *r = req_new(OP_EXISTS, m, host, username, cb, ud);
    if (!r)
        return -1;
    if (!r->jid)
        answer_later(r, SD_ACCOUNT_BAD_NAME);
    else
        run_simple(r, &db_stmt_account_exists, false, false);
    return 0;
}

int sd_account_delete(sd_module *m, const char *host, const char *username, sd_account_fn cb,
                      void *ud)
{
    struct acct_req *r = req_new(OP_DELETE, m, host, username, cb, ud);
    if (!r)
        return -1;
    if (!r->jid)
        answer_later(r, SD_ACCOUNT_BAD_NAME);
    else
        run_simple(r, &db_stmt_account_delete, true, false);
    return 0;
}

/* ---- changes made by other processes ---- */

static void on_account_notice(const char *payload, void *ud)
{
    (void)ud;
    char buf[ACCOUNTS_PAYLOAD_MAX];
    size_t len = strlen(payload);
    struct accounts_notice n;
    if (len >= sizeof buf) {
        log_warn(0, "account notification too long (%zu bytes): ignored", len);
        return;
    }
    memcpy(buf, payload, len + 1);
    if (accounts_notify_parse(buf, &n) < 0) {
        log_warn(0, "malformed account notification ignored");
        return;
    }
    if (strcmp(n.token, accounts_instance_token()) == 0)
        return; /* ours: raised already */
    /* Anyone who may write to the database may also NOTIFY: take only prepared names of our
     * hosts, exactly as they would be stored. */
    struct jid *j = jid_make(NULL, n.username, n.host, NULL, NULL);
    if (!j || !j->local || strcmp(j->local, n.username) != 0 || strcmp(j->domain, n.host) != 0) {
        log_warn(0, "account notification with an unprepared name ignored");
        jid_free(&j);
        return;
    }
    if (!server_is_local_host(j->domain)) {
        log_debug(0, "account %s %s elsewhere: not a host of ours", j->bare,
                  n.created ? "created" : "deleted");
        jid_free(&j);
        return;
    }
    log_info(0, "account %s %s by another process", j->bare, n.created ? "created" : "deleted");
    dispatch_account_event(n.created ? SD_EV_ACCOUNT_CREATED : SD_EV_ACCOUNT_DELETED, j->domain,
                           j->bare, NULL, NULL);
    if (!n.created)
        end_sessions(j->bare);
    jid_free(&j);
}

int accounts_events_init(void)
{
    accounts_instance_token();
    return db_listen(0, ACCOUNTS_CHANNEL, on_account_notice, NULL);
}
