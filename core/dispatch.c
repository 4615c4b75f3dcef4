/*
 * dispatch.c — module hooks around routing, and the hooks.h half of the public API.
 *
 * Tables. One array of hooks per table (iq, message pre/route/undeliverable, presence
 * pre/route/undeliverable, filters in/out) and one per event type, each kept sorted by
 * priority (highest first), then registration order. Modules register in load(), on the main
 * thread before any worker runs; afterwards the tables are only read, without locks.
 *
 * The pipeline of a client's stanza is a small state machine (struct sd_hctx): a stage (filters
 * in; iq handlers, or pre then route handlers; then the core's rules) and the index of the next
 * hook in that stage. A handler that defers turns the context into an sd_pending that keeps the
 * stanza, a reference to the session and the position, and holds the client's stream so its
 * later stanzas wait (RFC 6120 §10.1). sd_pending_pass resumes the machine where it stopped;
 * the other completions finish it and let the stream go on.
 *
 * sd_send_iq keeps its waiting requests in a table of the worker that sent them; the id says
 * which worker ("sd<worker>.<n>"), so an answer arriving through another worker's client is
 * posted back to the right table. An answer must come from the entity asked.
 */
#include "dispatch.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"
#include "config.h"
#include "jid.h"
#include "log.h"
#include "mem.h"
#include "modules.h"
#include "presence.h"
#include "router.h"
#include "server.h"
#include "session.h"
#include "slab.h"
#include "stanzad/disco.h"
#include "stanzad/runtime.h"
#include "worker.h"

/* ---- tables ---- */

struct hook {
    struct sd_module *m;
    int priority;
    unsigned seq;
    unsigned to_types, iq_types;
    char *xmlns, *element;
    sd_stanza_fn fn;
    sd_event_fn efn;
    void *ud;
};

struct table {
    struct hook *v;
    size_t n, cap;
};

#define MAX_EVENT 16

static struct table tables[TABLE_COUNT];
static struct table event_tables[MAX_EVENT];
static unsigned hook_seq;

static void table_insert(struct table *t, const struct hook *h)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->v = xrealloc(t->v, t->cap * sizeof *t->v);
    }
    size_t i = t->n;
    while (i > 0 && t->v[i - 1].priority < h->priority)
        i--;
    memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof *t->v);
    t->v[i] = *h;
    t->n++;
}

static void table_remove_module(struct table *t, struct sd_module *m)
{
    size_t j = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].m == m) {
            free(t->v[i].xmlns);
            free(t->v[i].element);
        } else {
            t->v[j++] = t->v[i];
        }
    }
    t->n = j;
    if (j == 0) {
        free(t->v);
        t->v = NULL;
        t->cap = 0;
    }
}

int dispatch_add_stanza_hook(struct sd_module *m, int table, unsigned to_types, unsigned iq_types,
                             const char *xmlns, const char *element, int priority, sd_stanza_fn fn,
                             void *ud)
{
    if (!m || !fn || table < 0 || table >= TABLE_COUNT || workers_count() > 0) {
        log_error(0, "[%s] hook registration refused: bad arguments or not in load()",
                  m ? m->name : "?");
        return -1;
    }
    struct hook h = {.m = m,
                     .priority = priority,
                     .seq = hook_seq++,
                     .to_types = to_types,
                     .iq_types = iq_types,
                     .xmlns = xmlns ? xstrdup(xmlns) : NULL,
                     .element = element ? xstrdup(element) : NULL,
                     .fn = fn,
                     .ud = ud};
    table_insert(&tables[table], &h);
    return 0;
}

int dispatch_add_event_hook(struct sd_module *m, sd_event_type type, int priority, sd_event_fn fn,
                            void *ud)
{
    if (!m || !fn || type <= 0 || type >= MAX_EVENT || workers_count() > 0) {
        log_error(0, "[%s] event hook refused: bad arguments or not in load()", m ? m->name : "?");
        return -1;
    }
    struct hook h = {.m = m, .priority = priority, .seq = hook_seq++, .efn = fn, .ud = ud};
    table_insert(&event_tables[type], &h);
    return 0;
}

void dispatch_remove_module_hooks(struct sd_module *m)
{
    for (int i = 0; i < TABLE_COUNT; i++)
        table_remove_module(&tables[i], m);
    for (int i = 0; i < MAX_EVENT; i++)
        table_remove_module(&event_tables[i], m);
}

/* ---- contexts ---- */

enum stage { ST_FILTER_IN, ST_IQ, ST_PRE, ST_ROUTE, ST_CORE, ST_UNDELIVERABLE, ST_END, ST_INBOUND };

struct sd_hctx {
    struct stanza *st;
    struct session *sess; /* origin (or recipient for OUT filters); referenced by a pending */
    const char *host;
    int host_idx;
    unsigned to_type;
    enum stage stage;
    size_t next;
    void (*dflt)(struct stanza *st); /* after the undeliverable handlers */
    struct sd_pending *pending;      /* set by sd_hctx_defer */
    struct sd_event *ev;
    bool preauth;       /* an iq before authentication: sess is the stream's stand-in (c2s.c) */
    struct c2s *stream; /* SD_EV_STREAM_FEATURES: the stream offered them (peer, TLS state) */
};

struct sd_pending {
    struct sd_hctx h;
    bool held;       /* the client's stream waits for us */
    bool in_handler; /* completed from inside the handler that deferred */
    bool finished;   /* ... and how: */
    bool resume;     /* sd_pending_pass */
};

static void run(struct sd_hctx *h);

static int host_index(const char *host)
{
    const struct config *cfg = server_config;
    for (size_t i = 0; host && i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].name, host) == 0)
            return (int)i;
    return -1;
}

static bool module_on(const struct sd_module *m, int host_idx)
{
    return host_idx >= 0 && m->enabled && m->enabled[host_idx];
}

static bool type_is(const struct stanza *st, const char *t)
{
    return st->type != NULL && strcmp(st->type, t) == 0;
}

/* Destination type and host of a stanza from session s ('to' parsed or absent). */
static void classify(struct sd_hctx *h, struct session *s)
{
    struct stanza *st = h->st;
    h->host = s ? s->host : NULL;
    h->to_type = 0;
    if (!st->to) {
        h->to_type = SD_TO_SELF;
    } else if (!server_is_local_host(st->to->domain)) {
        h->to_type = 0; /* remote: only filters apply */
    } else {
        h->host = st->to->domain;
        if (!st->to->local)
            h->to_type = SD_TO_HOST;
        else if (st->to->resource)
            h->to_type = SD_TO_FULL;
        else if (s && strcmp(st->to->bare, s->bare) == 0)
            h->to_type = SD_TO_SELF;
        else
            h->to_type = SD_TO_BARE;
    }
    h->host_idx = host_index(h->host);
}

static bool hook_applies(const struct hook *k, const struct sd_hctx *h)
{
    if (!module_on(k->m, h->host_idx))
        return false;
    if (h->stage == ST_FILTER_IN)
        return true;
    if (!(k->to_types & h->to_type))
        return false;
    if (h->stage == ST_IQ) {
        struct stanza *st = h->st;
        unsigned t = type_is(st, "get") ? SD_IQ_GET : type_is(st, "set") ? SD_IQ_SET : 0;
        if (!(k->iq_types & t))
            return false;
        if (!k->xmlns)
            return true; /* any payload (ABI 1.1) */
        struct xml_el *payload = xml_el_child(st->el, NULL, NULL);
        if (!payload || strcmp(payload->ns, k->xmlns) != 0)
            return false;
        if (k->element && strcmp(payload->name, k->element) != 0)
            return false;
    }
    return true;
}

static const struct table *stage_table(const struct sd_hctx *h)
{
    enum stanza_kind k = h->st->kind;
    switch (h->stage) {
    case ST_FILTER_IN:
        return &tables[TABLE_FILTER_IN];
    case ST_IQ:
        return &tables[TABLE_IQ];
    case ST_PRE:
        return &tables[k == STANZA_MESSAGE ? TABLE_MESSAGE_PRE : TABLE_PRESENCE_PRE];
    case ST_ROUTE:
        return &tables[k == STANZA_MESSAGE ? TABLE_MESSAGE_ROUTE : TABLE_PRESENCE_ROUTE];
    case ST_UNDELIVERABLE:
        return &tables[k == STANZA_MESSAGE ? TABLE_MESSAGE_UNDELIVERABLE
                                           : TABLE_PRESENCE_UNDELIVERABLE];
    default:
        return NULL;
    }
}

static enum stage next_stage(const struct sd_hctx *h)
{
    const struct stanza *st = h->st;
    switch (h->stage) {
    case ST_FILTER_IN:
        if (st->kind == STANZA_IQ)
            return (type_is(st, "get") || type_is(st, "set")) && h->to_type ? ST_IQ : ST_CORE;
        return h->to_type ? ST_PRE : ST_CORE;
    case ST_IQ:
    case ST_ROUTE:
        return ST_CORE;
    case ST_PRE:
        return ST_ROUTE;
    default:
        return ST_END;
    }
}

/* The session's stream, if it still exists on this worker. */
static struct c2s *stream_of(struct session *s)
{
    return s && s->w == worker_self() && !atomic_load(&s->closed) ? s->c2s : NULL;
}

static void pending_release(struct sd_pending *p)
{
    struct c2s *c = p->held ? stream_of(p->h.sess) : NULL;
    if (c)
        c2s_release(c);
    session_unref(&p->h.sess);
    free(p);
}

static void pending_finish(struct sd_pending *p)
{
    stanza_free(&p->h.st);
    pending_release(p);
}

static void pending_resume(struct sd_pending *p)
{
    struct sd_hctx h = p->h; /* carry on from where the deferring handler stood */
    h.pending = NULL;
    p->h.st = NULL; /* run() consumes the stanza */
    run(&h);
    pending_release(p);
}

/* Runs the handlers from where h stands until one takes the stanza or the core does. */
static void run(struct sd_hctx *h)
{
    for (;;) {
        if (h->stage == ST_CORE && h->preauth) {
            /* RFC 6120 §6.4.6 / §7.1: before authentication, what no module took is refused. */
            struct c2s *c = stream_of(h->sess);
            if (c)
                c2s_stream_error(c, STRERR_NOT_AUTHORIZED, "authenticate first");
            stanza_free(&h->st);
            return;
        }
        if (h->stage == ST_CORE) {
            router_from_session_core(h->sess, h->st);
            h->st = NULL;
            return;
        }
        if (h->stage == ST_END) {
            if (h->dflt)
                h->dflt(h->st);
            else
                stanza_free(&h->st);
            h->st = NULL;
            return;
        }
        const struct table *t = stage_table(h);
        while (t && h->next < t->n) {
            const struct hook *k = &t->v[h->next++];
            if (!hook_applies(k, h))
                continue;
            h->pending = NULL;
            sd_verdict v = k->fn(h, (sd_stanza *)h->st, k->ud);
            if (v == SD_PASS && !h->pending)
                continue;
            if (v == SD_DONE && !h->pending) {
                stanza_free(&h->st);
                return;
            }
            struct sd_pending *p = h->pending;
            if (!p) {
                log_error(0,
                          "[%s] a handler returned SD_LATER without sd_hctx_defer(); "
                          "treating it as done",
                          k->m->name);
                stanza_free(&h->st);
                return;
            }
            if (v != SD_LATER)
                log_error(0, "[%s] a handler deferred the stanza but did not return SD_LATER",
                          k->m->name);
            /* The stanza belongs to the pending now. */
            h->st = NULL;
            p->in_handler = false;
            if (!p->finished)
                return; /* the module finishes it later */
            if (p->resume)
                pending_resume(p);
            else
                pending_finish(p);
            return;
        }
        h->stage = h->stage == ST_UNDELIVERABLE ? ST_END : next_stage(h);
        h->next = 0;
    }
}

/* ---- entry points from the core ---- */

void dispatch_from_session(struct session *s, struct stanza *st)
{
    struct sd_hctx h = {.st = st, .sess = s, .stage = ST_FILTER_IN};
    classify(&h, s);
    run(&h);
}

void dispatch_preauth(struct session *stand_in, struct stanza *st)
{
    struct sd_hctx h = {.st = st,
                        .sess = stand_in,
                        .host = stand_in->host,
                        .to_type = SD_TO_PREAUTH,
                        .stage = ST_IQ,
                        .preauth = true};
    h.host_idx = host_index(h.host);
    run(&h);
}

bool dispatch_inbound(struct stanza *st)
{
    const struct table *t = &tables[TABLE_INBOUND];
    if (t->n == 0)
        return false;
    unsigned kind = 1u << (unsigned)st->kind;
    struct sd_hctx h = {.st = st, .host = st->to->domain, .stage = ST_INBOUND};
    h.to_type = st->to->resource ? SD_TO_FULL : SD_TO_BARE;
    h.host_idx = host_index(h.host);
    for (size_t i = 0; i < t->n; i++) {
        const struct hook *k = &t->v[i];
        if (!(k->to_types & kind) || !module_on(k->m, h.host_idx))
            continue;
        if (k->fn(&h, (sd_stanza *)st, k->ud) == SD_DONE) {
            stanza_free(&st);
            return true;
        }
    }
    return false;
}

void dispatch_undeliverable(struct stanza *st, void (*dflt)(struct stanza *st))
{
    struct sd_hctx h = {.st = st, .stage = ST_UNDELIVERABLE, .dflt = dflt};
    h.host = st->to ? st->to->domain : NULL;
    h.host_idx = host_index(h.host);
    h.to_type = st->to && st->to->local ? (st->to->resource ? SD_TO_FULL : SD_TO_BARE) : SD_TO_HOST;
    /* A stanza to oneself that nobody could take is still "to self" for the handlers. */
    if (st->from && st->to && st->to->local && st->from->local &&
        strcmp(st->from->bare, st->to->bare) == 0 && !st->to->resource)
        h.to_type = SD_TO_SELF;
    run(&h);
}

void dispatch_to_session(struct session *s, struct stanza *st)
{
    const struct table *t = &tables[TABLE_FILTER_OUT];
    if (t->n > 0) {
        struct sd_hctx h = {.st = st, .sess = s, .host = s->host, .stage = ST_END};
        h.host_idx = host_index(s->host);
        for (size_t i = 0; i < t->n; i++) {
            const struct hook *k = &t->v[i];
            if (!module_on(k->m, h.host_idx))
                continue;
            h.pending = NULL;
            if (k->fn(&h, (sd_stanza *)st, k->ud) == SD_DONE) {
                stanza_free(&st);
                return;
            }
        }
    }
    if (s->c2s)
        c2s_send(s->c2s, st);
    else
        stanza_free(&st);
}

/* ---- events ---- */

struct sd_event {
    sd_event_type type;
    struct session *sess;
    const char *jid;
    const char *node;
    bool authenticated;
    struct stanza *st;
    struct xml_el *el;
};

static void raise_event_on(struct sd_event *ev, const char *host, struct session *s,
                           struct c2s *stream)
{
    const struct table *t = &event_tables[ev->type];
    if (t->n == 0)
        return;
    struct sd_hctx h = {.sess = s, .host = host, .stage = ST_END, .ev = ev, .stream = stream};
    h.host_idx = host_index(host);
    for (size_t i = 0; i < t->n; i++) {
        const struct hook *k = &t->v[i];
        if (module_on(k->m, h.host_idx))
            k->efn(&h, ev, k->ud);
    }
}

static void raise_event(struct sd_event *ev, const char *host, struct session *s)
{
    raise_event_on(ev, host, s, NULL);
}

void dispatch_session_bound(struct session *s)
{
    struct sd_event ev = {.type = SD_EV_SESSION_BOUND, .sess = s, .jid = s->full};
    raise_event(&ev, s->host, s);
}

void dispatch_session_closed(struct session *s)
{
    struct sd_event ev = {.type = SD_EV_SESSION_CLOSED, .sess = s, .jid = s->full};
    raise_event(&ev, s->host, s);
}

void dispatch_account_event(sd_event_type type, const char *host, const char *bare,
                            struct stanza *holder, struct xml_el *el)
{
    struct sd_event ev = {.type = type, .jid = bare, .st = holder, .el = el};
    raise_event(&ev, host, NULL);
}

void dispatch_stream_features(struct stanza *holder, struct xml_el *el, const char *host,
                              bool authenticated, struct c2s *stream)
{
    struct sd_event ev = {.type = SD_EV_STREAM_FEATURES,
                          .jid = host,
                          .authenticated = authenticated,
                          .st = holder,
                          .el = el};
    raise_event_on(&ev, host, NULL, stream);
}

void sd_disco_info_extend(sd_hctx *h, sd_stanza *st, sd_el *query, const char *jid,
                          const char *node)
{
    struct sd_event ev = {.type = SD_EV_DISCO_INFO,
                          .sess = h ? h->sess : NULL,
                          .jid = jid,
                          .node = node,
                          .st = (struct stanza *)st,
                          .el = (struct xml_el *)query};
    raise_event(&ev, h ? h->host : NULL, h ? h->sess : NULL);
}

int sd_hook_event(sd_module *m, sd_event_type type, int priority, sd_event_fn fn, void *ud)
{
    return dispatch_add_event_hook(m, type, priority, fn, ud);
}

sd_event_type sd_event_kind(const sd_event *ev)
{
    return ev->type;
}

sd_session *sd_event_session(const sd_event *ev)
{
    return (sd_session *)ev->sess;
}

const char *sd_event_jid(const sd_event *ev)
{
    return ev->jid;
}

const char *sd_event_node(const sd_event *ev)
{
    return ev->node;
}

int sd_event_authenticated(const sd_event *ev)
{
    return ev->authenticated;
}

sd_el *sd_event_el(const sd_event *ev)
{
    return (sd_el *)ev->el;
}

sd_stanza *sd_event_stanza(const sd_event *ev)
{
    return (sd_stanza *)ev->st;
}

/* ---- registration API ---- */

static int to_table(sd_phase phase, bool message)
{
    switch (phase) {
    case SD_PRE:
        return message ? TABLE_MESSAGE_PRE : TABLE_PRESENCE_PRE;
    case SD_ROUTE:
        return message ? TABLE_MESSAGE_ROUTE : TABLE_PRESENCE_ROUTE;
    case SD_UNDELIVERABLE:
        return message ? TABLE_MESSAGE_UNDELIVERABLE : TABLE_PRESENCE_UNDELIVERABLE;
    }
    return -1;
}

int sd_hook_iq(sd_module *m, unsigned to_types, unsigned iq_types, const char *xmlns,
               const char *element, int priority, sd_stanza_fn fn, void *ud)
{
    if ((xmlns && !*xmlns) || !iq_types || !to_types) {
        log_error(0,
                  "[%s] sd_hook_iq: iq types and destination types are needed (and a "
                  "namespace, if any, is not empty)",
                  m ? m->name : "?");
        return -1;
    }
    return dispatch_add_stanza_hook(m, TABLE_IQ, to_types, iq_types, xmlns, element, priority, fn,
                                    ud);
}

int sd_hook_message(sd_module *m, unsigned to_types, sd_phase phase, int priority, sd_stanza_fn fn,
                    void *ud)
{
    return dispatch_add_stanza_hook(m, to_table(phase, true), to_types, 0, NULL, NULL, priority, fn,
                                    ud);
}

int sd_hook_presence(sd_module *m, unsigned to_types, sd_phase phase, int priority, sd_stanza_fn fn,
                     void *ud)
{
    return dispatch_add_stanza_hook(m, to_table(phase, false), to_types, 0, NULL, NULL, priority,
                                    fn, ud);
}

int sd_hook_inbound(sd_module *m, unsigned kinds, int priority, sd_stanza_fn fn, void *ud)
{
    if (!(kinds & (SD_KIND_MESSAGE | SD_KIND_PRESENCE | SD_KIND_IQ))) {
        log_error(0, "[%s] sd_hook_inbound: no stanza kind given", m ? m->name : "?");
        return -1;
    }
    return dispatch_add_stanza_hook(m, TABLE_INBOUND, kinds, 0, NULL, NULL, priority, fn, ud);
}

int sd_hook_filter(sd_module *m, unsigned which, int priority, sd_stanza_fn fn, void *ud)
{
    if (!(which & (SD_FILTER_IN | SD_FILTER_OUT)))
        return -1;
    if ((which & SD_FILTER_IN) &&
        dispatch_add_stanza_hook(m, TABLE_FILTER_IN, ~0u, 0, NULL, NULL, priority, fn, ud) < 0)
        return -1;
    if ((which & SD_FILTER_OUT) &&
        dispatch_add_stanza_hook(m, TABLE_FILTER_OUT, ~0u, 0, NULL, NULL, priority, fn, ud) < 0)
        return -1;
    return 0;
}

/* ---- the handler context ---- */

const char *sd_hctx_host(const sd_hctx *h)
{
    return h->host;
}

sd_session *sd_hctx_session(const sd_hctx *h)
{
    return h->preauth ? NULL : (sd_session *)h->sess;
}

const char *sd_hctx_peer(const sd_hctx *h)
{
    struct c2s *c = h->stream ? h->stream : stream_of(h->sess);
    return c ? c2s_peer(c) : NULL;
}

int sd_hctx_secure(const sd_hctx *h)
{
    struct c2s *c = h->stream ? h->stream : stream_of(h->sess);
    return c && c2s_secure(c);
}

void *sd_hctx_alloc(sd_hctx *h, size_t n)
{
    if (h->st)
        return arena_alloc(h->st->arena, n);
    return NULL;
}

/* Fills the addresses of a reply to st that the module left empty. */
static void reply_address(const struct stanza *req, struct stanza *reply, const char *host)
{
    if (!reply->to_str && req->from_str)
        stanza_set_to(reply, req->from_str);
    if (!reply->from_str)
        stanza_set_from(reply, req->to_str ? req->to_str : host);
}

static void send_reply(struct session *origin, const struct stanza *req, const char *host,
                       struct stanza *reply)
{
    if (origin && origin->preauth) {
        /* Before authentication the client has no address: straight back on its stream. */
        struct c2s *c = stream_of(origin);
        if (c)
            c2s_send(c, reply);
        else
            stanza_free(&reply);
        return;
    }
    reply_address(req, reply, host);
    if (origin && reply->to_str && strcmp(reply->to_str, origin->full) == 0) {
        /* To the client that asked: never to a newer session that took its resource. */
        if (atomic_load(&origin->closed))
            stanza_free(&reply);
        else
            router_deliver(origin, reply);
        return;
    }
    router_route(reply);
}

void sd_reply(sd_hctx *h, sd_stanza **reply)
{
    struct stanza *r = (struct stanza *)*reply;
    *reply = NULL;
    if (!r)
        return;
    if (!h->st) {
        stanza_free(&r);
        return;
    }
    send_reply(h->sess, h->st, h->host, r);
}

sd_verdict sd_reply_error(sd_hctx *h, sd_stanza *st, sd_error cond, const char *text)
{
    struct stanza *r = stanza_error_reply((struct stanza *)st, (enum stanza_error)cond, NULL, text);
    if (r)
        send_reply(h->sess, (struct stanza *)st, h->host, r);
    return SD_DONE;
}

sd_verdict sd_reply_result(sd_hctx *h, sd_stanza *st)
{
    struct stanza *r = stanza_iq_result((struct stanza *)st);
    if (r)
        send_reply(h->sess, (struct stanza *)st, h->host, r);
    return SD_DONE;
}

/* ---- deferral ---- */

sd_pending *sd_hctx_defer(sd_hctx *h)
{
    if (!h->st || h->pending || h->ev || h->stage == ST_INBOUND)
        return NULL;
    struct sd_pending *p = xcalloc(1, sizeof *p);
    p->h = *h;
    p->in_handler = true;
    if (p->h.sess)
        session_ref(p->h.sess);
    struct c2s *c = h->stage <= ST_ROUTE ? stream_of(h->sess) : NULL;
    if (c) {
        c2s_hold(c);
        p->held = true;
    }
    h->pending = p;
    return p;
}

sd_stanza *sd_pending_stanza(sd_pending *p)
{
    return (sd_stanza *)p->h.st;
}

sd_session *sd_pending_session(sd_pending *p)
{
    struct session *s = p->h.sess;
    return s && !s->preauth && !atomic_load(&s->closed) ? (sd_session *)s : NULL;
}

/* Common end of reply/error/done: now, or when the deferring handler returns. */
static void pending_complete(struct sd_pending *p)
{
    if (p->in_handler)
        p->finished = true;
    else
        pending_finish(p);
}

void sd_pending_reply(sd_pending **pp, sd_stanza **reply)
{
    struct sd_pending *p = *pp;
    *pp = NULL;
    if (!p)
        return;
    struct stanza *r = reply ? (struct stanza *)*reply : NULL;
    if (reply)
        *reply = NULL;
    if (r)
        send_reply(p->h.sess, p->h.st, p->h.host, r);
    pending_complete(p);
}

void sd_pending_error(sd_pending **pp, sd_error cond, const char *text)
{
    struct sd_pending *p = *pp;
    *pp = NULL;
    if (!p)
        return;
    struct stanza *r = stanza_error_reply(p->h.st, (enum stanza_error)cond, NULL, text);
    if (r)
        send_reply(p->h.sess, p->h.st, p->h.host, r);
    pending_complete(p);
}

void sd_pending_done(sd_pending **pp)
{
    struct sd_pending *p = *pp;
    *pp = NULL;
    if (p)
        pending_complete(p);
}

void sd_pending_pass(sd_pending **pp)
{
    struct sd_pending *p = *pp;
    *pp = NULL;
    if (!p)
        return;
    if (p->in_handler) {
        p->finished = true;
        p->resume = true;
    } else {
        pending_resume(p);
    }
}

/* ---- per-worker state: module slots and waiting iq requests ---- */

struct iq_wait {
    struct iq_wait *next;
    char id[40];
    char *to; /* the entity asked: its answer must come from there */
    sd_iq_result_fn fn;
    void *ud;
    struct timer timer;
    struct dispatch_worker *dw;
};

struct dispatch_worker {
    void **slots; /* [n_modules] */
    struct iq_wait *waits;
    uint64_t counter;
};

void dispatch_worker_init(struct worker *w)
{
    struct dispatch_worker *dw = xcalloc(1, sizeof *dw);
    dw->slots = xcalloc(n_modules ? n_modules : 1, sizeof *dw->slots);
    worker_set_slot(w, WSLOT_DISPATCH, dw);
}

void dispatch_worker_done(struct worker *w)
{
    struct dispatch_worker *dw = worker_slot(w, WSLOT_DISPATCH);
    if (!dw)
        return;
    /* Requests still waiting: the server stops, so they time out now (fn is called once,
     * as promised, and can free what it holds). */
    while (dw->waits) {
        struct iq_wait *iw = dw->waits;
        dw->waits = iw->next;
        iw->fn(NULL, iw->ud);
        free(iw->to);
        free(iw);
    }
    free(dw->slots);
    free(dw);
    worker_set_slot(w, WSLOT_DISPATCH, NULL);
}

void **sd_worker_slot(sd_module *m)
{
    struct worker *w = worker_self();
    if (!w || !m)
        return NULL;
    struct dispatch_worker *dw = worker_slot(w, WSLOT_DISPATCH);
    return dw ? &dw->slots[m->index] : NULL;
}

static void iq_wait_unlink(struct iq_wait *iw)
{
    struct iq_wait **pp = &iw->dw->waits;
    while (*pp && *pp != iw)
        pp = &(*pp)->next;
    if (*pp)
        *pp = iw->next;
}

static void iq_wait_timeout(struct timer *t)
{
    struct iq_wait *iw = t->ud;
    iq_wait_unlink(iw);
    iw->fn(NULL, iw->ud);
    free(iw->to);
    free(iw);
}

int sd_send_iq(sd_module *m, sd_stanza **iqp, unsigned timeout_ms, sd_iq_result_fn fn, void *ud)
{
    struct stanza *iq = (struct stanza *)*iqp;
    *iqp = NULL;
    struct worker *w = worker_self();
    struct dispatch_worker *dw = w ? worker_slot(w, WSLOT_DISPATCH) : NULL;
    if (!iq || !dw || !fn || !iq->to_str) {
        stanza_free(&iq);
        return -1;
    }
    struct iq_wait *iw = xcalloc(1, sizeof *iw);
    snprintf(iw->id, sizeof iw->id, "sd%d.%llu", worker_index(w),
             (unsigned long long)++dw->counter);
    iw->to = xstrdup(iq->to_str);
    iw->fn = fn;
    iw->ud = ud;
    iw->dw = dw;
    iw->next = dw->waits;
    dw->waits = iw;
    timer_init(&iw->timer, iq_wait_timeout, iw);
    worker_timer_start(w, &iw->timer, timeout_ms ? timeout_ms : 60000);
    stanza_set_id(iq, iw->id);
    (void)m;
    router_route(iq);
    return 0;
}

/* The answer must come from the entity asked (full JID asked: that resource; bare: any of the
 * account's; a host: the host). */
static bool answer_from_asked(const struct stanza *st, const char *asked)
{
    const char *from = st->from_str ? st->from_str : "";
    if (strcmp(from, asked) == 0)
        return true;
    size_t n = strlen(asked);
    return strchr(asked, '/') == NULL && strncmp(from, asked, n) == 0 && from[n] == '/';
}

static bool answer_here(struct stanza *st)
{
    struct worker *w = worker_self();
    struct dispatch_worker *dw = w ? worker_slot(w, WSLOT_DISPATCH) : NULL;
    for (struct iq_wait *iw = dw ? dw->waits : NULL; iw; iw = iw->next) {
        if (strcmp(iw->id, st->id) != 0)
            continue;
        if (!answer_from_asked(st, iw->to))
            break;
        iq_wait_unlink(iw);
        worker_timer_stop(w, &iw->timer);
        iw->fn((sd_stanza *)st, iw->ud);
        free(iw->to);
        free(iw);
        stanza_free(&st);
        return true;
    }
    return false;
}

struct forward {
    struct post post;
    struct stanza *st;
};

static void forward_answer(struct post *p)
{
    struct forward *f = (struct forward *)p;
    if (!answer_here(f->st))
        stanza_free(&f->st);
    free(f);
}

bool dispatch_iq_response(struct stanza *st)
{
    if (!st->id || strncmp(st->id, "sd", 2) != 0)
        return false;
    char *end = NULL;
    long wi = strtol(st->id + 2, &end, 10);
    if (end == st->id + 2 || *end != '.' || wi < 0 || wi >= workers_count())
        return false;
    struct worker *w = worker_at((int)wi);
    if (w == worker_self())
        return answer_here(st);
    struct forward *f = xmalloc(sizeof *f);
    f->st = st;
    worker_post(w, &f->post, forward_answer);
    return true;
}

/* ---- per-session data ---- */

void sd_session_set_data(sd_session *ss, sd_module *m, void *data, void (*free_fn)(void *))
{
    struct session *s = (struct session *)ss;
    if (!s || !m || s->w != worker_self())
        return;
    if (!s->mod_data) {
        /* Lives as long as the session: from the slabs, not the heap (see slab.h). */
        s->mod_data = slab_alloc((n_modules ? n_modules : 1) * sizeof *s->mod_data);
        s->mod_free = slab_alloc((n_modules ? n_modules : 1) * sizeof *s->mod_free);
    }
    if (s->mod_data[m->index] && s->mod_free[m->index] && s->mod_data[m->index] != data)
        s->mod_free[m->index](s->mod_data[m->index]);
    s->mod_data[m->index] = data;
    s->mod_free[m->index] = free_fn;
}

void *sd_session_get_data(const sd_session *ss, const sd_module *m)
{
    const struct session *s = (const struct session *)ss;
    return s && m && s->mod_data ? s->mod_data[m->index] : NULL;
}

void dispatch_session_free_data(struct session *s)
{
    if (!s->mod_data)
        return;
    for (size_t i = 0; i < n_modules; i++)
        if (s->mod_data[i] && s->mod_free[i])
            s->mod_free[i](s->mod_data[i]);
    slab_free(s->mod_data);
    slab_free(s->mod_free);
    s->mod_data = NULL;
    s->mod_free = NULL;
}
