/*
 * db.h — PostgreSQL through libpq, asynchronous, one small pool of connections per worker.
 *
 * Each worker owns db_connections non-blocking libpq connections registered with its own epoll
 * loop; a query is queued on the calling worker and its callback runs on that worker. There is no
 * lock and no thread hand-off. Statements are named and prepared lazily per connection (the first
 * use sends PQsendPrepare). Only prepared, parameterised statements exist: there is no function
 * that takes SQL text at run time and no escaping function.
 *
 * Outages: a lost connection is re-established with exponential backoff (100 ms … 5 s); queued
 * queries wait, and fail with DB_UNAVAILABLE after db_timeout seconds. The message path between
 * online users never calls this.
 *
 * Notifications: db_listen() adds, on one chosen worker, one more connection that only LISTENs
 * on a channel and hands each notification's payload to a callback on that worker.
 */
#ifndef STANZAD_DB_H
#define STANZAD_DB_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

struct worker;
struct config;

/* A statement: name unique in the process, SQL with $1..$n, parameter count. Define statically. */
struct db_stmt {
    const char *name;
    const char *sql;
    int nparams;
};

enum db_status {
    DB_OK = 0,          /* res holds the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK) */
    DB_UNAVAILABLE = 1, /* no connection within the deadline; res is NULL */
    DB_ERROR = 2,       /* the server refused the statement; res holds the error result */
};

/*
 * Result callback; runs on the worker that called db_query. res is borrowed for the call only
 * (NULL when status is DB_UNAVAILABLE); err is a one-line explanation for logs when status != 0.
 */
typedef void (*db_fn)(enum db_status status, PGresult *res, const char *err, void *ud);

/* Text parameters; values[i] may be NULL for SQL NULL. lengths/binary may be NULL (all text). */
struct db_params {
    int n;
    const char *const *values;
    const int *lengths; /* for binary parameters */
    const int *binary;  /* 1 = binary */
};

/*
 * Sets up the per-worker pools (called once after workers_create, before workers_start; cfg must
 * outlive the workers). Each worker opens its connections when it starts. Returns 0, or -1 after
 * logging why (an unparsable connection string).
 *
 * Shutdown, in this order:
 *   1. db_worker_stop(w) on each worker's own thread, from the function given to workers_stop():
 *      queued and in-flight queries fail with DB_UNAVAILABLE (callbacks on that worker, at the
 *      end of the current loop iteration), the connections close, and queries made later on that
 *      worker fail the same way;
 *   2. db_shutdown() on the main thread after workers_stop() returned and before
 *      workers_destroy(): frees what is left. If step 1 was skipped, callbacks of queries still
 *      pending run there, on the main thread (worker_self() == NULL) — better than never, but
 *      make step 1 happen.
 */
int db_init(const struct config *cfg);
void db_worker_stop(struct worker *w);
void db_shutdown(void);
/* Queues a query on the calling worker (worker_self()). Returns 0, or -1 if not on a worker. The
 * callback is always called exactly once when 0 is returned, never from inside db_query itself.
 * params are copied: they need to live only for this call. Results come in text format. A query
 * that was sent and whose connection died before the answer fails with DB_UNAVAILABLE and is not
 * retried (it may or may not have been executed). */
int db_query(const struct db_stmt *stmt, const struct db_params *params, db_fn cb, void *ud);

/*
 * Keeps one extra connection, owned by worker `worker`, LISTENing on `channel` (a lower-case
 * identifier: [a-z_][a-z0-9_]*, at most 63 bytes), and calls fn(payload, ud) on that worker for
 * every notification on it, in the order PostgreSQL sends them (commit order). Call after
 * db_init() and before the workers start. The connection reconnects with the pool's backoff;
 * notifications sent while it is down are lost (PostgreSQL keeps none for absent listeners).
 * Returns 0, or -1 with a log line (bad arguments, too many listeners).
 */
typedef void (*db_notify_fn)(const char *payload, void *ud);
int db_listen(int worker, const char *channel, db_notify_fn fn, void *ud);

/* ---- synchronous use: start-up, migrations, stanzactl ---- */

/* Connects with retries for up to timeout_s seconds; NULL and a message in err on failure. The
 * message never contains the password of the connection string. */
PGconn *db_connect_blocking(const char *conninfo, int timeout_s, char *err, size_t errlen);

/* An ordered schema step of one owner ("core", later each module). */
struct db_migration {
    int version; /* 1, 2, 3 ... */
    const char *sql;
};
/*
 * Applies the missing steps of owner in one transaction, recording them in
 * schema_versions(owner, version). Safe when several processes start at once (advisory lock).
 * Returns 0, or -1 with a message in err.
 */
int db_migrate(PGconn *c, const char *owner, const struct db_migration *steps, size_t n, char *err,
               size_t errlen);
/* The core's own schema (accounts, credentials). */
extern const struct db_migration db_core_migrations[];
extern const size_t db_core_migrations_count;

/* Starts (nonblocking_start: PQconnectStartParams) or makes (PQconnectdbParams) a connection with
 * stanzad's defaults (application name, TCP keepalives, connect_timeout) under whatever the
 * connection string says. Returns what libpq returned. */
PGconn *db_connect_params(const char *conninfo, bool nonblocking_start, int connect_timeout_s);

/* ---- messages without secrets ---- */

/* "host=... port=... dbname=... user=..." (whichever are set) for messages; never the password.
 * Returns out. */
const char *db_conninfo_describe(const char *conninfo, char *out, size_t outlen);
/* Copies a libpq message into out as one line (newlines folded, trailing space removed), with
 * the password of conninfo (when given) masked. */
void db_clean_message(const char *conninfo, const char *msg, char *out, size_t outlen);

#endif
