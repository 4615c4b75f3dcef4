/*
 * module_api.c — the public API of include/stanzad/ that is not about dispatch: modules and
 * their settings, stanzas and JIDs, sessions, workers, timers, posting and offloading, the
 * database, the disco registry, logging. Each function maps an opaque public handle onto the
 * core's own object (sd_stanza is struct stanza, sd_el is struct xml_el, sd_jid is struct jid,
 * sd_session is struct session) and calls the core; this file is where the ABI surface can be
 * reviewed in one place. The hooks half lives in dispatch.c.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"
#include "config.h"
#include "db.h"
#include "dispatch.h"
#include "jid.h"
#include "log.h"
#include "mem.h"
#include "modules.h"
#include "router.h"
#include "server.h"
#include "session.h"
#include "slab.h"
#include "stanza.h"
#include "stanzad/stanzad.h"
#include "worker.h"
#include "xmlstream.h"

#define ST(x)  ((struct stanza *)(x))
#define CST(x) ((const struct stanza *)(x))
#define EL(x)  ((struct xml_el *)(x))
#define CEL(x) ((const struct xml_el *)(x))
#define SES(x) ((struct session *)(x))

/* ---- modules ---- */

const char *sd_module_name(const sd_module *m)
{
    return m->name;
}

unsigned sd_abi_minor(void)
{
    return SD_ABI_MINOR;
}

const char *sd_server_version(void)
{
    return SD_VERSION_STRING;
}

const char *sd_host_at(unsigned index)
{
    const struct config *cfg = server_config;
    return cfg && index < cfg->n_hosts ? cfg->hosts[index].name : NULL;
}

static int host_idx(const char *host)
{
    const struct config *cfg = server_config;
    for (size_t i = 0; host && cfg && i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].name, host) == 0)
            return (int)i;
    return -1;
}

int sd_module_enabled(const sd_module *m, const char *host)
{
    int i = host_idx(host);
    return i >= 0 && m->enabled && m->enabled[i];
}

const void *sd_module_config(const sd_module *m, const char *host)
{
    if (!m->configs)
        return NULL;
    int i = host_idx(host);
    size_t n_hosts = server_config ? server_config->n_hosts : 0;
    return m->configs[i >= 0 ? (size_t)i : n_hosts];
}

/* ---- logging ---- */

void sd_log(const sd_module *m, sd_log_level level, const char *fmt, ...)
{
    if ((int)level > log_current_level)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_write((enum log_level)level, 0, "[%s] %s", m ? m->name : "?", text);
}

int sd_log_enabled(sd_log_level level)
{
    return (int)level <= log_current_level;
}

/* ---- stanzas ---- */

sd_kind sd_stanza_kind(const sd_stanza *st)
{
    return (sd_kind)CST(st)->kind;
}

const char *sd_stanza_type(const sd_stanza *st)
{
    return CST(st)->type;
}

const char *sd_stanza_id(const sd_stanza *st)
{
    return CST(st)->id;
}

const char *sd_stanza_to_str(const sd_stanza *st)
{
    return CST(st)->to_str;
}

const char *sd_stanza_from_str(const sd_stanza *st)
{
    return CST(st)->from_str;
}

const sd_jid *sd_stanza_to(sd_stanza *sst)
{
    struct stanza *st = ST(sst);
    if (!st->to && st->to_str)
        st->to = jid_parse(st->arena, st->to_str, strlen(st->to_str), NULL);
    return (const sd_jid *)st->to;
}

const sd_jid *sd_stanza_from(sd_stanza *sst)
{
    struct stanza *st = ST(sst);
    if (!st->from && st->from_str)
        st->from = jid_parse(st->arena, st->from_str, strlen(st->from_str), NULL);
    return (const sd_jid *)st->from;
}

sd_el *sd_stanza_el(sd_stanza *st)
{
    return (sd_el *)ST(st)->el;
}

sd_el *sd_stanza_payload(sd_stanza *st)
{
    if (ST(st)->kind != STANZA_IQ)
        return NULL;
    return (sd_el *)xml_el_child(ST(st)->el, NULL, NULL);
}

const char *sd_el_name(const sd_el *el)
{
    return CEL(el)->name;
}

const char *sd_el_ns(const sd_el *el)
{
    return CEL(el)->ns;
}

const char *sd_el_attr(const sd_el *el, const char *name)
{
    return xml_el_attr(CEL(el), name);
}

sd_el *sd_el_child(const sd_el *el, const char *ns, const char *name)
{
    return (sd_el *)xml_el_child(CEL(el), ns, name);
}

sd_el *sd_el_next(const sd_el *child, const char *ns, const char *name)
{
    return (sd_el *)xml_el_next(CEL(child), ns, name);
}

const char *sd_el_text(sd_stanza *st, const sd_el *el)
{
    return xml_el_text(ST(st)->arena, CEL(el));
}

const char *sd_el_child_text(sd_stanza *st, const sd_el *el, const char *ns, const char *name)
{
    struct xml_el *c = xml_el_child(CEL(el), ns, name);
    return c ? xml_el_text(ST(st)->arena, c) : NULL;
}

sd_stanza *sd_stanza_new(sd_kind kind, const char *type)
{
    if (kind > SD_IQ)
        return NULL;
    return (sd_stanza *)stanza_new((enum stanza_kind)kind, type);
}

sd_stanza *sd_stanza_copy(const sd_stanza *st)
{
    return (sd_stanza *)stanza_copy(CST(st));
}

/* sd_stanza_parse: the first complete element of a one-shot stream, and whether it failed. */
struct parse_one {
    struct stanza *st;
    bool failed;
};

static void parse_one_stanza(void *ud, struct stanza *st)
{
    struct parse_one *p = ud;
    if (p->st) {
        p->failed = true; /* more than one element */
        stanza_free(&st);
    } else {
        p->st = st;
    }
}

static void parse_one_error(void *ud, enum stream_error cond, const char *text)
{
    (void)cond;
    (void)text;
    ((struct parse_one *)ud)->failed = true;
}

static void parse_one_ignore(void *ud)
{
    (void)ud;
}

static void parse_one_open(void *ud, const struct xmlstream_header *hdr)
{
    (void)ud;
    (void)hdr;
}

sd_stanza *sd_stanza_parse(const char *xml, size_t len)
{
    /* The client parser, with its restrictions (RFC 6120 §11) and limits, on a stream header
     * that declares jabber:client as the default namespace, as sd_el_to_string assumes. */
    static const char header[] = "<stream:stream xmlns='jabber:client' "
                                 "xmlns:stream='http://etherx.jabber.org/streams'>";
    static const struct xmlstream_callbacks cb = {
        .stream_open = parse_one_open,
        .stanza = parse_one_stanza,
        .stream_close = parse_one_ignore,
        .error = parse_one_error,
    };
    if (!xml)
        return NULL;
    struct parse_one p = {0};
    struct xmlstream_limits lim = {.max_stanza_bytes = len + sizeof header};
    struct xmlstream *xs = xmlstream_new(&cb, &p, &lim);
    if (xmlstream_feed(xs, header, sizeof header - 1) < 0 || xmlstream_feed(xs, xml, len) < 0)
        p.failed = true;
    xmlstream_free(&xs);
    if (p.failed || !p.st || p.st->kind == STANZA_OTHER || strcmp(p.st->el->ns, NS_CLIENT) != 0) {
        stanza_free(&p.st);
        return NULL;
    }
    return (sd_stanza *)p.st;
}

void sd_stanza_free(sd_stanza **st)
{
    struct stanza *s = ST(*st);
    *st = NULL;
    stanza_free(&s);
}

void sd_stanza_set_to(sd_stanza *st, const char *to)
{
    stanza_set_to(ST(st), to);
}

void sd_stanza_set_from(sd_stanza *st, const char *from)
{
    stanza_set_from(ST(st), from);
}

void sd_stanza_set_type(sd_stanza *st, const char *type)
{
    stanza_set_type(ST(st), type);
}

void sd_stanza_set_id(sd_stanza *st, const char *id)
{
    stanza_set_id(ST(st), id);
}

sd_stanza *sd_stanza_result(const sd_stanza *iq)
{
    return (sd_stanza *)stanza_iq_result(CST(iq));
}

sd_stanza *sd_stanza_error(const sd_stanza *st, sd_error cond, const char *text)
{
    return (sd_stanza *)stanza_error_reply(CST(st), (enum stanza_error)cond, NULL, text);
}

sd_el *sd_el_add(sd_stanza *st, sd_el *parent, const char *ns, const char *name)
{
    return (sd_el *)xml_el_add(ST(st)->arena, EL(parent), ns, name);
}

sd_el *sd_el_add_text_child(sd_stanza *st, sd_el *parent, const char *ns, const char *name,
                            const char *text)
{
    struct xml_el *c = xml_el_add(ST(st)->arena, EL(parent), ns, name);
    if (text)
        xml_el_add_text(ST(st)->arena, c, text, strlen(text));
    return (sd_el *)c;
}

void sd_el_set_attr(sd_stanza *st, sd_el *el, const char *name, const char *value)
{
    xml_el_set_attr(ST(st)->arena, EL(el), name, value);
}

void sd_el_add_text(sd_stanza *st, sd_el *el, const char *text)
{
    if (text)
        xml_el_add_text(ST(st)->arena, EL(el), text, strlen(text));
}

void sd_el_remove(sd_el *parent, sd_el *child)
{
    xml_el_remove(EL(parent), (struct xml_node *)child);
}

sd_el *sd_el_copy_into(sd_stanza *st, sd_el *parent, const sd_el *el)
{
    struct xml_el *c = xml_el_copy(ST(st)->arena, CEL(el));
    xml_el_append(EL(parent), c);
    return (sd_el *)c;
}

char *sd_el_to_string(const sd_el *el)
{
    struct buf b = BUF_INIT;
    xml_serialize(&b, CEL(el), NS_CLIENT);
    char *s = xstrndup(b.data ? b.data : "", b.len);
    buf_free(&b);
    return s;
}

/* ---- JIDs ---- */

const char *sd_jid_local(const sd_jid *j)
{
    return ((const struct jid *)j)->local;
}

const char *sd_jid_domain(const sd_jid *j)
{
    return ((const struct jid *)j)->domain;
}

const char *sd_jid_resource(const sd_jid *j)
{
    return ((const struct jid *)j)->resource;
}

const char *sd_jid_bare(const sd_jid *j)
{
    return ((const struct jid *)j)->bare;
}

const char *sd_jid_full(const sd_jid *j)
{
    return ((const struct jid *)j)->full;
}

sd_jid *sd_jid_new(const char *s)
{
    return s ? (sd_jid *)jid_parse(NULL, s, strlen(s), NULL) : NULL;
}

void sd_jid_free(sd_jid **j)
{
    struct jid *x = (struct jid *)*j;
    *j = NULL;
    jid_free(&x);
}

/* ---- sessions ---- */

const char *sd_session_full(const sd_session *s)
{
    return ((const struct session *)s)->full;
}

const char *sd_session_bare(const sd_session *s)
{
    return ((const struct session *)s)->bare;
}

const char *sd_session_host(const sd_session *s)
{
    return ((const struct session *)s)->host;
}

int sd_session_available(const sd_session *s)
{
    return ((const struct session *)s)->available;
}

int sd_session_priority(const sd_session *s)
{
    return ((const struct session *)s)->priority;
}

void sd_route(sd_stanza **st)
{
    struct stanza *x = ST(*st);
    *st = NULL;
    if (!x)
        return;
    if (!x->from_str) {
        log_warn(0, "sd_route: dropping a stanza without 'from'");
        stanza_free(&x);
        return;
    }
    router_route(x);
}

void sd_deliver(sd_stanza **st)
{
    struct stanza *x = ST(*st);
    *st = NULL;
    if (!x)
        return;
    if (!x->from_str) {
        log_warn(0, "sd_deliver: dropping a stanza without 'from'");
        stanza_free(&x);
        return;
    }
    router_route_past_inbound(x);
}

void sd_session_send(sd_session *s, sd_stanza **st)
{
    struct stanza *x = ST(*st);
    *st = NULL;
    if (!x)
        return;
    if (!x->to_str)
        stanza_set_to(x, SES(s)->full);
    router_deliver(SES(s), x);
}

uint64_t sd_session_idle_ms(const sd_session *ss)
{
    const struct session *s = (const struct session *)ss;
    if (!s->c2s || s->w != worker_self())
        return 0;
    uint64_t now = worker_now(s->w), last = c2s_last_input(s->c2s);
    return now > last ? now - last : 0;
}

static enum stream_error stream_error_of(sd_stream_error e)
{
    switch (e) {
    case SD_STREAM_CONFLICT:
        return STRERR_CONFLICT;
    case SD_STREAM_CONNECTION_TIMEOUT:
        return STRERR_CONNECTION_TIMEOUT;
    case SD_STREAM_POLICY_VIOLATION:
        return STRERR_POLICY_VIOLATION;
    case SD_STREAM_NOT_AUTHORIZED:
        return STRERR_NOT_AUTHORIZED;
    case SD_STREAM_RESOURCE_CONSTRAINT:
        return STRERR_RESOURCE_CONSTRAINT;
    default:
        return STRERR_UNDEFINED_CONDITION;
    }
}

struct session_end {
    struct post post;
    struct session *s;
    enum stream_error cond;
    char text[128];
};

static void session_end_here(struct post *p)
{
    struct session_end *e = (struct session_end *)p;
    if (e->s->c2s && !atomic_load(&e->s->closed))
        c2s_stream_error(e->s->c2s, e->cond, e->text[0] ? e->text : NULL);
    session_unref(&e->s);
    free(e);
}

void sd_session_end(sd_session *ss, sd_stream_error cond, const char *text)
{
    struct session *s = SES(ss);
    struct session_end *e = xcalloc(1, sizeof *e);
    session_ref(s);
    e->s = s;
    e->cond = stream_error_of(cond);
    if (text)
        snprintf(e->text, sizeof e->text, "%s", text);
    if (s->w == worker_self())
        session_end_here(&e->post);
    else
        worker_post(s->w, &e->post, session_end_here);
}

/* ---- workers, posting, offloading ---- */

int sd_worker_count(void)
{
    /* During load() the workers do not exist yet, but their number is already decided. */
    int n = workers_count();
    return n > 0 ? n : server_config ? config_worker_count(server_config) : 0;
}

int sd_worker_current(void)
{
    struct worker *w = worker_self();
    return w ? worker_index(w) : -1;
}

int sd_worker_for(const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = key ? key : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    int n = sd_worker_count();
    return n > 0 ? (int)(h % (uint64_t)n) : 0;
}

struct module_post {
    struct post post;
    void (*fn)(void *ud);
    void *ud;
};

static void module_post_run(struct post *p)
{
    struct module_post *mp = (struct module_post *)p;
    mp->fn(mp->ud);
    free(mp);
}

int sd_post(int worker, void (*fn)(void *ud), void *ud)
{
    struct worker *w = worker < 0                 ? worker_self()
                       : worker < workers_count() ? worker_at(worker)
                                                  : NULL;
    if (!w || !fn)
        return -1;
    struct module_post *mp = xmalloc(sizeof *mp);
    mp->fn = fn;
    mp->ud = ud;
    worker_post(w, &mp->post, module_post_run);
    return 0;
}

struct module_job {
    struct offload off; /* must be first */
    void (*work)(void *ud);
    void (*done)(void *ud);
    void *ud;
};

static void module_job_work(struct offload *o)
{
    struct module_job *j = (struct module_job *)o;
    j->work(j->ud);
}

static void module_job_done(struct offload *o)
{
    struct module_job *j = (struct module_job *)o;
    if (j->done)
        j->done(j->ud);
    free(j);
}

int sd_offload(sd_module *m, void (*work)(void *ud), void (*done)(void *ud), void *ud)
{
    (void)m;
    if (!worker_self() || !work)
        return -1;
    struct module_job *j = xcalloc(1, sizeof *j);
    j->work = work;
    j->done = done;
    j->ud = ud;
    offload_submit(&j->off, module_job_work, module_job_done);
    return 0;
}

void *sd_alloc(size_t n)
{
    return slab_alloc(n);
}

void sd_free(void *p)
{
    slab_free(p);
}

/* ---- timers ---- */

struct sd_timer {
    struct timer t;
    struct worker *w;
    sd_timer_fn fn;
    void *ud;
};

static void module_timer_fire(struct timer *t)
{
    struct sd_timer *mt = t->ud;
    mt->fn(mt, mt->ud);
}

sd_timer *sd_timer_new(sd_module *m, sd_timer_fn fn, void *ud)
{
    (void)m;
    struct worker *w = worker_self();
    if (!w || !fn)
        return NULL;
    struct sd_timer *mt = xcalloc(1, sizeof *mt);
    mt->w = w;
    mt->fn = fn;
    mt->ud = ud;
    timer_init(&mt->t, module_timer_fire, mt);
    return mt;
}

void sd_timer_start(sd_timer *t, uint64_t ms)
{
    if (t && t->w == worker_self())
        worker_timer_start(t->w, &t->t, ms);
}

void sd_timer_stop(sd_timer *t)
{
    if (t && t->w == worker_self())
        worker_timer_stop(t->w, &t->t);
}

void sd_timer_free(sd_timer **tp)
{
    struct sd_timer *t = *tp;
    *tp = NULL;
    if (!t)
        return;
    worker_timer_stop(t->w, &t->t);
    free(t);
}

uint64_t sd_now_ms(void)
{
    return monotonic_ms();
}

/* ---- database ---- */

struct sd_stmt {
    struct sd_stmt *next; /* every statement, for removal with its module */
    struct sd_module *m;
    struct db_stmt st;
    char name[64];
};

static struct sd_stmt *statements;
static unsigned stmt_counter;

sd_stmt *sd_db_prepare(sd_module *m, const char *sql, int nparams)
{
    if (!m || !sql || nparams < 0 || nparams > 64 || workers_count() > 0) {
        log_error(0, "[%s] sd_db_prepare: bad arguments, or called outside load()",
                  m ? m->name : "?");
        return NULL;
    }
    struct sd_stmt *s = xcalloc(1, sizeof *s);
    s->m = m;
    snprintf(s->name, sizeof s->name, "m_%s_%u", m->name, ++stmt_counter);
    s->st.name = s->name;
    s->st.sql = xstrdup(sql);
    s->st.nparams = nparams;
    s->next = statements;
    statements = s;
    return s;
}

struct sd_dbres {
    enum db_status status;
    PGresult *res;
    const char *err;
};

struct db_call {
    sd_db_fn cb;
    void *ud;
};

static void db_call_done(enum db_status status, PGresult *res, const char *err, void *ud)
{
    struct db_call *c = ud;
    struct sd_dbres r = {status, res, err};
    c->cb(&r, c->ud);
    free(c);
}

int sd_db_exec(sd_stmt *s, const char *const *values, int n, sd_db_fn cb, void *ud)
{
    if (!s || !cb || n != s->st.nparams || !worker_self())
        return -1;
    struct db_call *c = xmalloc(sizeof *c);
    c->cb = cb;
    c->ud = ud;
    struct db_params p = {.n = n, .values = values};
    if (db_query(&s->st, &p, db_call_done, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

sd_db_status sd_dbres_status(const sd_dbres *r)
{
    return (sd_db_status)r->status;
}

const char *sd_dbres_error(const sd_dbres *r)
{
    return r->status == DB_OK ? "" : r->err ? r->err : "database error";
}

const char *sd_dbres_sqlstate(const sd_dbres *r)
{
    const char *s = r->res ? PQresultErrorField(r->res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

int sd_dbres_rows(const sd_dbres *r)
{
    return r->res && r->status == DB_OK ? PQntuples(r->res) : 0;
}

int sd_dbres_cols(const sd_dbres *r)
{
    return r->res && r->status == DB_OK ? PQnfields(r->res) : 0;
}

int64_t sd_dbres_affected(const sd_dbres *r)
{
    const char *n = r->res ? PQcmdTuples(r->res) : NULL;
    return n && *n ? strtoll(n, NULL, 10) : 0;
}

const char *sd_dbres_value(const sd_dbres *r, int row, int col)
{
    if (!r->res || r->status != DB_OK || row < 0 || col < 0 || row >= PQntuples(r->res) ||
        col >= PQnfields(r->res) || PQgetisnull(r->res, row, col))
        return NULL;
    return PQgetvalue(r->res, row, col);
}

int sd_dbres_int64(const sd_dbres *r, int row, int col, int64_t *out)
{
    const char *v = sd_dbres_value(r, row, col);
    if (!v)
        return -1;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end)
        return -1;
    *out = x;
    return 0;
}

/* Per-account key/value: the core's kv table (db_migrate.c, core schema version 2). */
static const struct db_stmt kv_get_stmt = {
    "core_kv_get",
    "SELECT k.value FROM kv k JOIN accounts a ON a.id = k.account_id "
    "WHERE k.module = $1 AND k.store = $2 AND a.host = $3 AND a.username = $4",
    4};
static const struct db_stmt kv_put_stmt = {
    "core_kv_put",
    "INSERT INTO kv (account_id, module, store, value) "
    "SELECT a.id, $1, $2, $5 FROM accounts a WHERE a.host = $3 AND a.username = $4 "
    "ON CONFLICT (account_id, module, store) DO UPDATE SET value = EXCLUDED.value",
    5};
static const struct db_stmt kv_delete_stmt = {
    "core_kv_delete",
    "DELETE FROM kv k USING accounts a WHERE a.id = k.account_id AND k.module = $1 "
    "AND k.store = $2 AND a.host = $3 AND a.username = $4",
    4};

struct kv_call {
    sd_kv_get_fn get;
    sd_kv_done_fn done;
    void *ud;
};

static void kv_get_done(enum db_status status, PGresult *res, const char *err, void *ud)
{
    struct kv_call *c = ud;
    (void)err;
    if (status == DB_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        c->get(SD_DB_OK, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), c->ud);
    else
        c->get((sd_db_status)status, NULL, 0, c->ud);
    free(c);
}

static void kv_write_done(enum db_status status, PGresult *res, const char *err, void *ud)
{
    struct kv_call *c = ud;
    (void)res;
    (void)err;
    if (c->done)
        c->done((sd_db_status)status, c->ud);
    free(c);
}

/* Splits a bare JID into host and localpart (prepared). */
static struct jid *kv_account(const char *account)
{
    struct jid *j = account ? jid_parse(NULL, account, strlen(account), NULL) : NULL;
    if (j && (!j->local || j->resource))
        jid_free(&j);
    return j;
}

static int kv_call(const struct db_stmt *stmt, sd_module *m, const char *store, const char *account,
                   const char *value, size_t len, struct kv_call *c,
                   void (*done)(enum db_status, PGresult *, const char *, void *))
{
    struct jid *j = kv_account(account);
    if (!m || !store || !j || !worker_self()) {
        jid_free(&j);
        free(c);
        return -1;
    }
    char *v = value ? xstrndup(value, len) : NULL;
    const char *values[5] = {m->name, store, j->domain, j->local, v};
    struct db_params p = {.n = stmt->nparams, .values = values};
    int rc = db_query(stmt, &p, done, c);
    free(v);
    jid_free(&j);
    if (rc != 0)
        free(c);
    return rc;
}

int sd_kv_get(sd_module *m, const char *store, const char *account, sd_kv_get_fn cb, void *ud)
{
    if (!cb)
        return -1;
    struct kv_call *c = xcalloc(1, sizeof *c);
    c->get = cb;
    c->ud = ud;
    return kv_call(&kv_get_stmt, m, store, account, NULL, 0, c, kv_get_done);
}

int sd_kv_put(sd_module *m, const char *store, const char *account, const char *value, size_t len,
              sd_kv_done_fn cb, void *ud)
{
    if (!value)
        return -1;
    struct kv_call *c = xcalloc(1, sizeof *c);
    c->done = cb;
    c->ud = ud;
    return kv_call(&kv_put_stmt, m, store, account, value, len, c, kv_write_done);
}

int sd_kv_delete(sd_module *m, const char *store, const char *account, sd_kv_done_fn cb, void *ud)
{
    struct kv_call *c = xcalloc(1, sizeof *c);
    c->done = cb;
    c->ud = ud;
    return kv_call(&kv_delete_stmt, m, store, account, NULL, 0, c, kv_write_done);
}

/* ---- disco registry ---- */

struct disco_entry {
    struct sd_module *m;
    unsigned where;
    char *a, *b, *c; /* feature: var; identity: category, type, name */
    bool identity;
};

static struct disco_entry *disco;
static size_t n_disco, cap_disco;

static int disco_add(sd_module *m, unsigned where, bool identity, const char *a, const char *b,
                     const char *c)
{
    if (!m || !a || !where || (identity && !b) || workers_count() > 0)
        return -1;
    if (n_disco == cap_disco) {
        cap_disco = cap_disco ? cap_disco * 2 : 16;
        disco = xrealloc(disco, cap_disco * sizeof *disco);
    }
    disco[n_disco++] = (struct disco_entry){
        m, where, xstrdup(a), b ? xstrdup(b) : NULL, c ? xstrdup(c) : NULL, identity};
    return 0;
}

int sd_add_feature(sd_module *m, unsigned where, const char *var)
{
    return disco_add(m, where, false, var, NULL, NULL);
}

int sd_add_identity(sd_module *m, unsigned where, const char *category, const char *type,
                    const char *name)
{
    return disco_add(m, where, true, category, type, name);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int cmp_identity(const void *x, const void *y)
{
    const struct disco_entry *a = *(const struct disco_entry *const *)x;
    const struct disco_entry *b = *(const struct disco_entry *const *)y;
    int r = strcmp(a->a, b->a);
    if (!r)
        r = strcmp(a->b, b->b);
    if (!r)
        r = strcmp(a->c ? a->c : "", b->c ? b->c : "");
    return r;
}

void sd_disco_features(const char *host, unsigned where, void (*fn)(const char *var, void *ud),
                       void *ud)
{
    const char **v = xcalloc(n_disco + 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < n_disco; i++)
        if (!disco[i].identity && (disco[i].where & where) && sd_module_enabled(disco[i].m, host))
            v[n++] = disco[i].a;
    qsort(v, n, sizeof *v, cmp_str);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
            fn(v[i], ud);
    free(v);
}

void sd_disco_identities(const char *host, unsigned where,
                         void (*fn)(const char *category, const char *type, const char *name,
                                    void *ud),
                         void *ud)
{
    const struct disco_entry **v = xcalloc(n_disco + 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < n_disco; i++)
        if (disco[i].identity && (disco[i].where & where) && sd_module_enabled(disco[i].m, host))
            v[n++] = &disco[i];
    qsort(v, n, sizeof *v, cmp_identity);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || cmp_identity(&v[i], &v[i - 1]) != 0)
            fn(v[i]->a, v[i]->b, v[i]->c, ud);
    free(v);
}

/* ---- removal of everything a module registered ---- */

void module_registrations_remove(struct sd_module *m)
{
    dispatch_remove_module_hooks(m);
    size_t j = 0;
    for (size_t i = 0; i < n_disco; i++) {
        if (disco[i].m == m) {
            free(disco[i].a);
            free(disco[i].b);
            free(disco[i].c);
        } else {
            disco[j++] = disco[i];
        }
    }
    n_disco = j;
    if (n_disco == 0) {
        free(disco);
        disco = NULL;
        cap_disco = 0;
    }
    for (struct sd_stmt **pp = &statements; *pp;) {
        struct sd_stmt *s = *pp;
        if (s->m == m) {
            *pp = s->next;
            free((char *)s->st.sql);
            free(s);
        } else {
            pp = &s->next;
        }
    }
}
