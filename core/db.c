/*
 * db.c — the asynchronous query pool: a few non-blocking libpq connections per worker, driven by
 * that worker's epoll loop, and a FIFO of queries waiting for a free connection.
 *
 * Everything here runs on the worker that owns the pool (worker_set_slot(w, WSLOT_DB)), so there
 * is no lock. A query is copied into one allocation (statement, parameters, callback) and queued;
 * an idle connection takes the oldest. On a connection's first use of a statement it sends
 * PQsendPrepare and, once that succeeded, PQsendQueryPrepared; prepared statements are
 * remembered per connection and forgotten when it reconnects. Output is flushed with PQflush,
 * watching EPOLLOUT only while libpq still holds unsent bytes; input is read with
 * PQconsumeInput/PQisBusy/PQgetResult until PQgetResult says the command is complete.
 *
 * A connection that fails or is lost is closed and reopened from a timer, 100 ms after the loss
 * and then twice as long each time up to 5 s (a fresh PQconnectStartParams: the PQresetStart
 * idea, without keeping a broken PGconn around). Connecting is driven by PQconnectPoll; because
 * libpq may close and reopen its socket between steps (trying the next host), the socket is
 * re-registered at every step rather than modified. Queries queued while no connection works
 * stay queued; one timer, armed for the oldest query's deadline (queue order is deadline order),
 * fails those older than db_timeout with DB_UNAVAILABLE. A query already sent when its
 * connection dies also fails with DB_UNAVAILABLE and is not resent: it may have run.
 *
 * A listener (db_listen) is one more connection of one worker, outside the pool: once connected
 * it sends LISTEN and then only reads notifications; it fails and reconnects the same way.
 *
 * Callbacks of successful or refused queries run from the I/O callback that read the result.
 * Every failure the pool decides on itself (timeout, lost connection, shutdown) is delivered from
 * a worker_after callback instead, so a callback never runs inside db_query() and never under
 * the feet of the code that is changing a connection's state.
 */
#include "db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "worker.h"

#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define CONNECT_TIMEOUT_MS 10000 /* a connection attempt not finished by then is abandoned */

struct db_req {
    struct db_req *next;
    const struct db_stmt *stmt;
    db_fn cb;
    void *ud;
    uint64_t deadline; /* worker_now() ms */
    int n;
    const char **values; /* these three point into the same allocation */
    int *lengths;
    int *formats;
    /* for failures decided by the pool */
    enum db_status fail_status;
    char *fail_err;
};

enum conn_state {
    DBC_DOWN,       /* no PGconn; the timer reconnects */
    DBC_CONNECTING, /* PQconnectPoll in progress; the timer abandons it */
    DBC_IDLE,
    DBC_PREPARING, /* PQsendPrepare of req->stmt sent */
    DBC_QUERYING,  /* PQsendQueryPrepared sent */
};

struct db_pool;

struct db_conn {
    struct db_pool *pool;
    int index;
    PGconn *pg;
    struct io io;
    bool registered;
    enum conn_state state;
    struct timer timer;
    unsigned backoff_ms;
    bool failing;       /* in an outage: log further failures at debug level only */
    struct db_req *req; /* in flight */
    PGresult *result;   /* first result of req */
    const struct db_stmt **prepared;
    size_t n_prepared, cap_prepared;
};

struct db_pool {
    struct worker *w;
    struct db_conn *conns;
    int n;
    struct db_req *head, *tail;          /* waiting for a connection */
    struct db_req *failed, *failed_tail; /* decided failures, delivered by fail_after */
    struct after fail_after;
    struct timer sweep;
    bool closed;
    char last_error[256];
};

static struct {
    char *conninfo;
    char where[256]; /* conninfo without secrets, for logs */
    int connections;
    int timeout_ms;
    bool ready;
} dbc;

static void pool_pump(struct db_pool *p);
static void conn_connect(struct db_conn *c);

/* ---- requests ---- */

static struct db_req *req_new(const struct db_stmt *stmt, const struct db_params *params, db_fn cb,
                              void *ud)
{
    int n = params ? params->n : 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        const char *v = params->values[i];
        if (!v)
            continue;
        bool bin = params->binary && params->binary[i] && params->lengths;
        bytes += bin ? (size_t)params->lengths[i] : strlen(v) + 1;
    }
    size_t head = sizeof(struct db_req) + (size_t)n * (sizeof(char *) + 2 * sizeof(int));
    struct db_req *r = xcalloc(1, head + bytes);
    r->stmt = stmt;
    r->cb = cb;
    r->ud = ud;
    r->n = n;
    r->values = (const char **)(r + 1);
    r->lengths = (int *)(r->values + n);
    r->formats = r->lengths + n;
    char *data = (char *)(r->formats + n);
    for (int i = 0; i < n; i++) {
        const char *v = params->values[i];
        if (!v)
            continue;
        bool bin = params->binary && params->binary[i] && params->lengths;
        size_t len = bin ? (size_t)params->lengths[i] : strlen(v) + 1;
        memcpy(data, v, len);
        r->values[i] = data;
        r->lengths[i] = bin ? (int)len : 0;
        r->formats[i] = bin ? 1 : 0;
        data += len;
    }
    return r;
}

static void req_free(struct db_req *r)
{
    free(r->fail_err);
    free(r);
}

/* Queues r's callback with a failure, to run at the end of this loop iteration. */
static void fail_later_run(struct after *a);

static void req_fail(struct db_pool *p, struct db_req *r, enum db_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void req_fail(struct db_pool *p, struct db_req *r, enum db_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->fail_status = st;
    r->fail_err = xstrdup(msg);
    r->next = NULL;
    if (p->failed_tail)
        p->failed_tail->next = r;
    else
        p->failed = r;
    p->failed_tail = r;
    if (worker_self() == p->w)
        worker_after(p->w, &p->fail_after, fail_later_run);
}

static void deliver_failures(struct db_pool *p)
{
    while (p->failed) {
        struct db_req *r = p->failed;
        p->failed = r->next;
        if (!p->failed)
            p->failed_tail = NULL;
        r->cb(r->fail_status, NULL, r->fail_err, r->ud);
        req_free(r);
    }
}

static void fail_later_run(struct after *a)
{
    struct db_pool *p = (struct db_pool *)((char *)a - offsetof(struct db_pool, fail_after));
    deliver_failures(p);
}

/* ---- the waiting queue ---- */

static void sweep_arm(struct db_pool *p)
{
    if (!p->head) {
        worker_timer_stop(p->w, &p->sweep);
        return;
    }
    uint64_t now = worker_now(p->w);
    worker_timer_start(p->w, &p->sweep, p->head->deadline > now ? p->head->deadline - now : 0);
}

static void queue_push_tail(struct db_pool *p, struct db_req *r)
{
    r->next = NULL;
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
}

/* A query whose connection failed before it reached the server goes back to the front. */
static void queue_push_head(struct db_pool *p, struct db_req *r)
{
    r->next = p->head;
    p->head = r;
    if (!p->tail)
        p->tail = r;
}

static struct db_req *queue_pop(struct db_pool *p)
{
    struct db_req *r = p->head;
    if (r) {
        p->head = r->next;
        if (!p->head)
            p->tail = NULL;
        r->next = NULL;
    }
    return r;
}

static void on_sweep(struct timer *t)
{
    struct db_pool *p = t->ud;
    uint64_t now = worker_now(p->w);
    while (p->head && p->head->deadline <= now) {
        struct db_req *r = queue_pop(p);
        req_fail(p, r, DB_UNAVAILABLE, "%s: no database connection within %d s%s%s", r->stmt->name,
                 dbc.timeout_ms / 1000, p->last_error[0] ? ": " : "", p->last_error);
    }
    sweep_arm(p);
}

/* ---- one connection ---- */

static void conn_on_io(struct io *io, uint32_t events);

/* (Re)registers the connection's current socket. libpq may have replaced the socket under the
 * same number, so the old registration is dropped rather than modified. */
static int conn_watch_new(struct db_conn *c, uint32_t events)
{
    if (c->registered)
        worker_io_del(c->pool->w, &c->io);
    c->registered = false;
    int fd = PQsocket(c->pg);
    if (fd < 0 || worker_io_add(c->pool->w, &c->io, fd, events, conn_on_io, c) < 0)
        return -1;
    c->registered = true;
    return 0;
}

static void conn_close(struct db_conn *c)
{
    if (c->registered)
        worker_io_del(c->pool->w, &c->io);
    c->registered = false;
    c->io.fd = -1;
    worker_timer_stop(c->pool->w, &c->timer);
    if (c->result)
        PQclear(c->result);
    c->result = NULL;
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->n_prepared = 0;
    c->state = DBC_DOWN;
}

/* The connection failed (to open, or while open): close it and try again after a pause. */
static void conn_retry(struct db_conn *c, const char *why)
{
    struct db_pool *p = c->pool;
    db_clean_message(dbc.conninfo, why, p->last_error, sizeof p->last_error);
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (c->backoff_ms > BACKOFF_MAX_MS)
        c->backoff_ms = BACKOFF_MAX_MS;
    if (!c->failing)
        log_warn(0, "database connection %d (%s): %s; retrying", c->index, dbc.where,
                 p->last_error);
    else
        log_debug(0, "database connection %d: %s; next attempt in %u ms", c->index, p->last_error,
                  c->backoff_ms);
    c->failing = true;
    conn_close(c);
    if (!p->closed)
        worker_timer_start(p->w, &c->timer, c->backoff_ms);
}

/* An open connection broke. The query in flight fails unless it provably never ran. */
static void conn_lost(struct db_conn *c, const char *why)
{
    struct db_pool *p = c->pool;
    struct db_req *r = c->req;
    enum conn_state was = c->state;
    c->req = NULL;
    conn_retry(c, why && *why ? why : "connection lost");
    if (r) {
        if (was == DBC_PREPARING) {
            queue_push_head(p, r);
            sweep_arm(p);
        } else {
            req_fail(p, r, DB_UNAVAILABLE, "%s: database connection lost during the query: %s",
                     r->stmt->name, p->last_error);
        }
    }
    pool_pump(p);
}

static void conn_flush(struct db_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (worker_io_mod(c->pool->w, &c->io, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN) < 0)
        conn_lost(c, strerror(errno));
}

static bool conn_has_prepared(const struct db_conn *c, const struct db_stmt *s)
{
    /* A linear scan: a connection knows a few dozen statements, and the query this lookup
     * precedes is a network round trip. */
    for (size_t i = 0; i < c->n_prepared; i++)
        if (c->prepared[i] == s)
            return true;
    return false;
}

static void conn_mark_prepared(struct db_conn *c, const struct db_stmt *s)
{
    if (c->n_prepared == c->cap_prepared) {
        c->cap_prepared = c->cap_prepared ? c->cap_prepared * 2 : 16;
        c->prepared = xrealloc(c->prepared, c->cap_prepared * sizeof *c->prepared);
    }
    c->prepared[c->n_prepared++] = s;
}

static void conn_send(struct db_conn *c, struct db_req *r)
{
    c->req = r;
    int ok;
    if (conn_has_prepared(c, r->stmt)) {
        c->state = DBC_QUERYING;
        ok = PQsendQueryPrepared(c->pg, r->stmt->name, r->n, r->values, r->lengths, r->formats, 0);
    } else {
        c->state = DBC_PREPARING;
        ok = PQsendPrepare(c->pg, r->stmt->name, r->stmt->sql, r->stmt->nparams, NULL);
    }
    if (!ok) {
        /* Nothing reached the server: treat it like a failed prepare, so the query is kept. */
        c->state = DBC_PREPARING;
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    conn_flush(c);
}

/* The command of c->req is complete (PQgetResult returned NULL). */
static void conn_complete(struct db_conn *c)
{
    struct db_req *r = c->req;
    PGresult *res = c->result;
    c->result = NULL;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (c->state == DBC_PREPARING && st == PGRES_COMMAND_OK) {
        PQclear(res);
        conn_mark_prepared(c, r->stmt);
        c->state = DBC_QUERYING;
        if (!PQsendQueryPrepared(c->pg, r->stmt->name, r->n, r->values, r->lengths, r->formats,
                                 0)) {
            c->state = DBC_PREPARING; /* not sent: keep the query */
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        conn_flush(c);
        return;
    }

    c->req = NULL;
    c->state = DBC_IDLE;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        r->cb(DB_OK, res, NULL, r->ud);
    } else {
        if (!res)
            res = PQmakeEmptyPGresult(c->pg, PGRES_FATAL_ERROR);
        const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        char clean[400];
        db_clean_message(dbc.conninfo, m ? m : PQerrorMessage(c->pg), clean, sizeof clean);
        char err[512];
        snprintf(err, sizeof err, "%s: %s%s%s%s", r->stmt->name, clean, code ? " (SQLSTATE " : "",
                 code ? code : "", code ? ")" : "");
        r->cb(DB_ERROR, res, err, r->ud);
    }
    PQclear(res);
    req_free(r);
}

/* Reads every result that is complete; hands finished commands to conn_complete. The callback
 * may queue more work, even on this connection, so the state is re-read on every turn. */
static void conn_collect(struct db_conn *c)
{
    while (c->pg && c->req && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (res) {
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                /* Never issued by our statements; the connection cannot be used further. */
                PQclear(res);
                conn_lost(c, "unexpected COPY from a statement");
                return;
            }
            if (!c->result)
                c->result = res;
            else
                PQclear(res);
            continue;
        }
        conn_complete(c);
        if (c->state == DBC_IDLE)
            pool_pump(c->pool);
    }
}

static void conn_established(struct db_conn *c)
{
    worker_timer_stop(c->pool->w, &c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0 || conn_watch_new(c, EPOLLIN) < 0) {
        conn_retry(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = DBC_IDLE;
    c->backoff_ms = 0;
    if (c->failing)
        log_info(0, "database connection %d (%s) is back", c->index, dbc.where);
    else
        log_debug(0, "database connection %d (%s) open", c->index, dbc.where);
    c->failing = false;
    c->pool->last_error[0] = '\0';
    pool_pump(c->pool);
}

static void conn_poll_connect(struct db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        conn_established(c);
        return;
    case PGRES_POLLING_READING:
        if (conn_watch_new(c, EPOLLIN) < 0)
            conn_retry(c, PQerrorMessage(c->pg));
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch_new(c, EPOLLOUT) < 0)
            conn_retry(c, PQerrorMessage(c->pg));
        return;
    default:
        conn_retry(c, PQerrorMessage(c->pg));
        return;
    }
}

static void conn_on_io(struct io *io, uint32_t events)
{
    struct db_conn *c = io->ud;
    switch (c->state) {
    case DBC_DOWN:
        return;
    case DBC_CONNECTING:
        conn_poll_connect(c);
        return;
    default:
        break;
    }
    if ((events & EPOLLOUT) && c->req) {
        conn_flush(c);
        if (!c->pg)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!PQconsumeInput(c->pg)) {
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        PGnotify *nt;
        while ((nt = PQnotifies(c->pg)) != NULL)
            PQfreemem(nt);
        conn_collect(c);
        if (!c->pg)
            return;
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        if (c->req)
            conn_flush(c); /* reading may have unblocked pending output */
        /* A hang-up that libpq has not noticed yet would wake us forever. */
        if (c->pg && !c->req && (events & (EPOLLHUP | EPOLLERR)))
            conn_lost(c, "the server closed the connection");
    }
}

static void conn_on_timer(struct timer *t)
{
    struct db_conn *c = t->ud;
    if (c->state == DBC_DOWN)
        conn_connect(c);
    else if (c->state == DBC_CONNECTING)
        conn_retry(c, "timed out while connecting");
}

static void conn_connect(struct db_conn *c)
{
    if (c->pool->closed)
        return;
    c->pg = db_connect_params(dbc.conninfo, true, 0);
    if (!c->pg) {
        conn_retry(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_retry(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = DBC_CONNECTING;
    /* libpq's rule: after PQconnectStart, wait as if PQconnectPoll had said "writing". */
    if (conn_watch_new(c, EPOLLOUT) < 0) {
        conn_retry(c, PQerrorMessage(c->pg));
        return;
    }
    worker_timer_start(c->pool->w, &c->timer, CONNECT_TIMEOUT_MS);
}

/* ---- LISTEN connections ----
 *
 * A listener is one more connection of its worker, outside the pool: it sends "LISTEN channel"
 * once connected and then only reads, handing each notification to its callback. It connects,
 * fails and reconnects like a pool connection (same backoff, same timeout while connecting).
 */

#define MAX_LISTENERS 4

enum listen_state {
    DBL_DOWN,
    DBL_CONNECTING,
    DBL_SUBSCRIBING, /* LISTEN sent, its result not yet read */
    DBL_LISTENING,
};

struct db_listener {
    int worker;
    char channel[64];
    db_notify_fn fn;
    void *ud;
    struct worker *w; /* set when that worker starts */
    PGconn *pg;
    struct io io;
    bool registered;
    enum listen_state state;
    struct timer timer;
    unsigned backoff_ms;
    bool failing;
    bool closed;
    bool listen_failed; /* the LISTEN command itself was refused */
    char last_error[256];
};

static struct db_listener listeners[MAX_LISTENERS];
static int n_listeners;

static void lis_connect(struct db_listener *l);
static void lis_on_io(struct io *io, uint32_t events);

static int lis_watch_new(struct db_listener *l, uint32_t events)
{
    if (l->registered)
        worker_io_del(l->w, &l->io);
    l->registered = false;
    int fd = PQsocket(l->pg);
    if (fd < 0 || worker_io_add(l->w, &l->io, fd, events, lis_on_io, l) < 0)
        return -1;
    l->registered = true;
    return 0;
}

static void lis_close(struct db_listener *l)
{
    if (l->registered)
        worker_io_del(l->w, &l->io);
    l->registered = false;
    l->io.fd = -1;
    if (l->w)
        worker_timer_stop(l->w, &l->timer);
    if (l->pg)
        PQfinish(l->pg);
    l->pg = NULL;
    l->state = DBL_DOWN;
}

static void lis_retry(struct db_listener *l, const char *why)
{
    db_clean_message(dbc.conninfo, why && *why ? why : "connection lost", l->last_error,
                     sizeof l->last_error);
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (l->backoff_ms > BACKOFF_MAX_MS)
        l->backoff_ms = BACKOFF_MAX_MS;
    if (!l->failing)
        log_warn(0,
                 "database listener on %s (%s): %s; retrying (notifications sent meanwhile "
                 "are lost)",
                 l->channel, dbc.where, l->last_error);
    else
        log_debug(0, "database listener on %s: %s; next attempt in %u ms", l->channel,
                  l->last_error, l->backoff_ms);
    l->failing = true;
    lis_close(l);
    if (!l->closed)
        worker_timer_start(l->w, &l->timer, l->backoff_ms);
}

static void lis_flush(struct db_listener *l)
{
    int r = PQflush(l->pg);
    if (r < 0) {
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
    if (worker_io_mod(l->w, &l->io, r > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN) < 0)
        lis_retry(l, strerror(errno));
}

static void lis_established(struct db_listener *l)
{
    worker_timer_stop(l->w, &l->timer);
    if (PQsetnonblocking(l->pg, 1) != 0 || lis_watch_new(l, EPOLLIN) < 0) {
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
    /* The channel is a checked identifier (db_listen), so the command needs no quoting; LISTEN
     * is a utility command and cannot be prepared. */
    char sql[96];
    snprintf(sql, sizeof sql, "LISTEN %s", l->channel);
    l->listen_failed = false;
    if (!PQsendQuery(l->pg, sql)) {
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
    l->state = DBL_SUBSCRIBING;
    lis_flush(l);
}

static void lis_poll_connect(struct db_listener *l)
{
    switch (PQconnectPoll(l->pg)) {
    case PGRES_POLLING_OK:
        lis_established(l);
        return;
    case PGRES_POLLING_READING:
        if (lis_watch_new(l, EPOLLIN) < 0)
            lis_retry(l, PQerrorMessage(l->pg));
        return;
    case PGRES_POLLING_WRITING:
        if (lis_watch_new(l, EPOLLOUT) < 0)
            lis_retry(l, PQerrorMessage(l->pg));
        return;
    default:
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
}

/* Reads the result of LISTEN; true once the connection is listening (or still waiting). */
static bool lis_subscribed(struct db_listener *l)
{
    while (l->state == DBL_SUBSCRIBING && !PQisBusy(l->pg)) {
        PGresult *res = PQgetResult(l->pg);
        if (!res) {
            if (l->listen_failed) {
                lis_retry(l, l->last_error);
                return false;
            }
            l->state = DBL_LISTENING;
            l->backoff_ms = 0;
            if (l->failing)
                log_info(0, "database listener on %s (%s) is back", l->channel, dbc.where);
            else
                log_debug(0, "database listener on %s (%s) open", l->channel, dbc.where);
            l->failing = false;
            break;
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            db_clean_message(dbc.conninfo, m ? m : "LISTEN failed", l->last_error,
                             sizeof l->last_error);
            l->listen_failed = true;
        }
        PQclear(res);
    }
    return true;
}

static void lis_on_io(struct io *io, uint32_t events)
{
    struct db_listener *l = io->ud;
    switch (l->state) {
    case DBL_DOWN:
        return;
    case DBL_CONNECTING:
        lis_poll_connect(l);
        return;
    default:
        break;
    }
    if (events & EPOLLOUT) {
        lis_flush(l);
        if (!l->pg)
            return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    if (!PQconsumeInput(l->pg)) {
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
    if (!lis_subscribed(l))
        return;
    PGnotify *nt;
    while (l->pg && (nt = PQnotifies(l->pg)) != NULL) {
        if (strcmp(nt->relname, l->channel) == 0)
            l->fn(nt->extra, l->ud);
        PQfreemem(nt);
    }
    if (!l->pg)
        return;
    if (PQstatus(l->pg) == CONNECTION_BAD)
        lis_retry(l, PQerrorMessage(l->pg));
    else if (events & (EPOLLHUP | EPOLLERR))
        lis_retry(l, "the server closed the connection");
}

static void lis_on_timer(struct timer *t)
{
    struct db_listener *l = t->ud;
    if (l->state == DBL_DOWN)
        lis_connect(l);
    else if (l->state == DBL_CONNECTING)
        lis_retry(l, "timed out while connecting");
}

static void lis_connect(struct db_listener *l)
{
    if (l->closed)
        return;
    l->pg = db_connect_params(dbc.conninfo, true, 0);
    if (!l->pg) {
        lis_retry(l, "out of memory");
        return;
    }
    if (PQstatus(l->pg) == CONNECTION_BAD) {
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
    l->state = DBL_CONNECTING;
    if (lis_watch_new(l, EPOLLOUT) < 0) {
        lis_retry(l, PQerrorMessage(l->pg));
        return;
    }
    worker_timer_start(l->w, &l->timer, CONNECT_TIMEOUT_MS);
}

static void listeners_start(struct worker *w)
{
    for (int i = 0; i < n_listeners; i++) {
        struct db_listener *l = &listeners[i];
        if (l->worker != worker_index(w))
            continue;
        l->w = w;
        l->io.fd = -1;
        timer_init(&l->timer, lis_on_timer, l);
        lis_connect(l);
    }
}

static void listeners_stop(struct worker *w)
{
    for (int i = 0; i < n_listeners; i++) {
        struct db_listener *l = &listeners[i];
        if (l->w == w && !l->closed) {
            l->closed = true;
            lis_close(l);
        }
    }
}

int db_listen(int worker, const char *channel, db_notify_fn fn, void *ud)
{
    size_t len = channel ? strlen(channel) : 0;
    bool ok = dbc.ready && fn && len > 0 && len < sizeof listeners[0].channel && worker >= 0 &&
              worker < workers_count() && !(channel[0] >= '0' && channel[0] <= '9');
    for (size_t i = 0; ok && i < len; i++)
        ok = (channel[i] >= 'a' && channel[i] <= 'z') || (channel[i] >= '0' && channel[i] <= '9') ||
             channel[i] == '_';
    if (!ok || n_listeners == MAX_LISTENERS) {
        log_error(0, "db_listen: bad arguments, too many listeners, or called before db_init");
        return -1;
    }
    struct db_listener *l = &listeners[n_listeners++];
    memset(l, 0, sizeof *l);
    l->worker = worker;
    memcpy(l->channel, channel, len + 1);
    l->fn = fn;
    l->ud = ud;
    l->io.fd = -1;
    return 0;
}

/* ---- the pool of one worker ---- */

static void pool_pump(struct db_pool *p)
{
    while (p->head && !p->closed) {
        struct db_conn *idle = NULL;
        for (int i = 0; i < p->n && !idle; i++)
            if (p->conns[i].state == DBC_IDLE)
                idle = &p->conns[i];
        if (!idle)
            break;
        conn_send(idle, queue_pop(p));
    }
    sweep_arm(p);
}

static struct db_pool *pool_get(struct worker *w)
{
    struct db_pool *p = worker_slot(w, WSLOT_DB);
    if (p)
        return p;
    p = xcalloc(1, sizeof *p);
    p->w = w;
    p->n = dbc.connections;
    p->conns = xcalloc((size_t)p->n, sizeof *p->conns);
    timer_init(&p->sweep, on_sweep, p);
    worker_set_slot(w, WSLOT_DB, p);
    for (int i = 0; i < p->n; i++) {
        struct db_conn *c = &p->conns[i];
        c->pool = p;
        c->index = i;
        c->io.fd = -1;
        timer_init(&c->timer, conn_on_timer, c);
        conn_connect(c);
    }
    return p;
}

static void pool_on_worker_start(struct worker *w)
{
    if (dbc.ready) {
        pool_get(w);
        listeners_start(w);
    }
}

/* Closes every connection and moves every query to the failed list. */
static void pool_close(struct db_pool *p)
{
    p->closed = true;
    for (int i = 0; i < p->n; i++) {
        struct db_conn *c = &p->conns[i];
        struct db_req *r = c->req;
        c->req = NULL;
        conn_close(c);
        if (r)
            req_fail(p, r, DB_UNAVAILABLE, "%s: the server is shutting down", r->stmt->name);
    }
    struct db_req *r;
    while ((r = queue_pop(p)) != NULL)
        req_fail(p, r, DB_UNAVAILABLE, "%s: the server is shutting down", r->stmt->name);
    worker_timer_stop(p->w, &p->sweep);
}

/* ---- the interface ---- */

int db_init(const struct config *cfg)
{
    char perr[256];
    const char *conninfo = cfg->db_conninfo ? cfg->db_conninfo : "";
    char *e = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &e);
    if (!o) {
        /* Repeating libpq's parse error could quote a piece of the password. */
        snprintf(perr, sizeof perr, "invalid database connection string");
        log_error(0, "%s", perr);
        PQfreemem(e);
        return -1;
    }
    PQconninfoFree(o);
    free(dbc.conninfo);
    dbc.conninfo = xstrdup(conninfo);
    db_conninfo_describe(conninfo, dbc.where, sizeof dbc.where);
    dbc.connections = cfg->db_connections > 0 ? cfg->db_connections : 1;
    dbc.timeout_ms = (cfg->db_timeout > 0 ? cfg->db_timeout : 0) * 1000;
    dbc.ready = true;
    workers_on_start(pool_on_worker_start);
    return 0;
}

int db_query(const struct db_stmt *stmt, const struct db_params *params, db_fn cb, void *ud)
{
    struct worker *w = worker_self();
    if (!w || !dbc.ready || !stmt || !cb)
        return -1;
    struct db_pool *p = pool_get(w);
    struct db_req *r = req_new(stmt, params, cb, ud);
    if (p->closed) {
        req_fail(p, r, DB_UNAVAILABLE, "%s: the server is shutting down", stmt->name);
        return 0;
    }
    r->deadline = worker_now(w) + (uint64_t)dbc.timeout_ms;
    queue_push_tail(p, r);
    pool_pump(p);
    return 0;
}

void db_worker_stop(struct worker *w)
{
    listeners_stop(w);
    struct db_pool *p = worker_slot(w, WSLOT_DB);
    if (p)
        pool_close(p);
}

void db_shutdown(void)
{
    int n = workers_count();
    for (int i = 0; i < n; i++) {
        struct worker *w = worker_at(i);
        struct db_pool *p = worker_slot(w, WSLOT_DB);
        if (!p)
            continue;
        /* The worker's thread has ended, so touching its epoll set and timer heap from here
         * cannot race it. */
        if (!p->closed)
            pool_close(p);
        deliver_failures(p);
        for (int j = 0; j < p->n; j++)
            free(p->conns[j].prepared);
        free(p->conns);
        free(p);
        worker_set_slot(w, WSLOT_DB, NULL);
    }
    /* Listeners whose worker skipped db_worker_stop: their threads have ended too. */
    for (int i = 0; i < n_listeners; i++) {
        listeners[i].closed = true;
        lis_close(&listeners[i]);
    }
    n_listeners = 0;
    free(dbc.conninfo);
    dbc.conninfo = NULL;
    dbc.ready = false;
}
