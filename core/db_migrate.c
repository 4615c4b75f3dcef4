/*
 * db_migrate.c — the synchronous side of storage: connecting at start-up, schema migrations, the
 * core schema, and the helpers that keep connection secrets out of messages.
 *
 * Only start-up code and stanzactl use this file, so it may block. db_connect_blocking() retries
 * every 200 ms until its deadline because the database often comes up at the same time as the
 * server (a boot, a container, the quick start).
 *
 * db_migrate() runs in one transaction per owner: it first takes a transaction-scoped advisory
 * lock, so when several processes start at once the second waits for the first and then finds
 * nothing left to do. schema_versions is created inside that lock too, because two concurrent
 * CREATE TABLE IF NOT EXISTS can still collide on the catalog. A step's SQL is run with PQexec
 * (it may hold several statements); the bookkeeping goes through PQexecParams. A database that
 * holds a version newer than any step this binary knows is refused: an older binary cannot know
 * what that step changed.
 */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "worker.h"

/* pg_advisory_xact_lock key shared by every owner's migration: "stanzad\0" as a bigint. */
#define MIGRATE_LOCK_KEY "8319381538787648512"

#define RETRY_MS 200

/* ---- messages without secrets ---- */

const char *db_conninfo_describe(const char *conninfo, char *out, size_t outlen)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
    if (outlen == 0)
        goto done;
    out[0] = '\0';
    if (!opts) {
        snprintf(out, outlen, "unparsable connection string");
        goto done;
    }
    size_t len = 0;
    for (size_t k = 0; k < sizeof shown / sizeof shown[0]; k++) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (strcmp(o->keyword, shown[k]) != 0 || !o->val || !o->val[0])
                continue;
            int m =
                snprintf(out + len, outlen - len, "%s%s=%s", len ? " " : "", o->keyword, o->val);
            if (m < 0 || (size_t)m >= outlen - len) {
                len = strlen(out);
                goto done;
            }
            len += (size_t)m;
        }
    }
    if (len == 0)
        snprintf(out, outlen, "libpq defaults");
done:
    if (opts)
        PQconninfoFree(opts);
    if (perr)
        PQfreemem(perr);
    return out;
}

/*
 * libpq does not put the password into its messages, but a server or a proxy could echo it and
 * this is the one place every message passes through on its way to a log, so it is masked here
 * as a second line of defence. Very short "passwords" are not masked: hiding every "a" of a
 * message would make it unreadable and protect nothing.
 */
void db_clean_message(const char *conninfo, const char *msg, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    const char *pw = NULL;
    PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, NULL) : NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && strlen(o->val) >= 4)
            pw = o->val;
    size_t pwlen = pw ? strlen(pw) : 0;

    size_t n = 0;
    const char *p = msg ? msg : "";
    while (*p && n + 1 < outlen) {
        if (pw && strncmp(p, pw, pwlen) == 0) {
            for (int i = 0; i < 3 && n + 1 < outlen; i++)
                out[n++] = '*';
            p += pwlen;
            continue;
        }
        /* One line for logs: libpq ends messages with '\n' and adds DETAIL/HINT lines. */
        char ch = *p++;
        if (ch == '\n' || ch == '\r' || ch == '\t')
            ch = ' ';
        if (ch == ' ' && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = ch;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    if (opts)
        PQconninfoFree(opts);
}

/* ---- connecting ---- */

/* libpq prints NOTICEs ("relation ... already exists, skipping") on stderr by default; they are
 * chatter, so they go to the debug log instead. */
static void notice_to_log(void *arg, const char *message)
{
    char clean[512];
    db_clean_message(NULL, message, clean, sizeof clean);
    log_debug(0, "database notice: %s", clean);
}

PGconn *db_connect_params(const char *conninfo, bool nonblocking_start, int connect_timeout_s)
{
    /*
     * Defaults go before "dbname" (which expands the whole connection string), so anything the
     * administrator wrote wins. Keepalives matter for the pool: without them a server that
     * vanished from the network would leave a query waiting for hours.
     */
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", connect_timeout_s > 0 ? connect_timeout_s : 10);
    const char *const keys[] = {"connect_timeout",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "fallback_application_name",
                                "dbname",
                                NULL};
    const char *const vals[] = {timeout, "30", "10", "3", "stanzad", conninfo, NULL};
    PGconn *c =
        nonblocking_start ? PQconnectStartParams(keys, vals, 1) : PQconnectdbParams(keys, vals, 1);
    if (c)
        PQsetNoticeProcessor(c, notice_to_log, NULL);
    return c;
}

/* Whether libpq can read the string at all; a syntax error is not worth retrying. */
static bool conninfo_valid(const char *conninfo, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (opts) {
        PQconninfoFree(opts);
        return true;
    }
    /* libpq's parse errors can quote a fragment of the string, which may be the password; only
     * the "unknown keyword" case is safe and common enough to repeat. */
    if (perr && strncmp(perr, "invalid connection option", 25) == 0) {
        char clean[256];
        db_clean_message(NULL, perr, clean, sizeof clean);
        snprintf(err, errlen, "invalid database connection string: %s", clean);
    } else {
        snprintf(err, errlen,
                 "invalid database connection string (expected key=value pairs or a "
                 "postgresql:// URI)");
    }
    if (perr)
        PQfreemem(perr);
    return false;
}

PGconn *db_connect_blocking(const char *conninfo, int timeout_s, char *err, size_t errlen)
{
    if (!conninfo)
        conninfo = "";
    if (!conninfo_valid(conninfo, err, errlen))
        return NULL;
    uint64_t deadline = monotonic_ms() + (uint64_t)(timeout_s > 0 ? timeout_s : 0) * 1000u;
    char last[512] = "";
    for (;;) {
        uint64_t now = monotonic_ms();
        int left_s = now < deadline ? (int)((deadline - now) / 1000u) : 0;
        PGconn *c = db_connect_params(conninfo, false, left_s < 2 ? 2 : left_s);
        if (c && PQstatus(c) == CONNECTION_OK)
            return c;
        db_clean_message(conninfo, c ? PQerrorMessage(c) : "out of memory", last, sizeof last);
        PQfinish(c);
        if (monotonic_ms() + RETRY_MS > deadline)
            break;
        struct timespec ts = {0, RETRY_MS * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    char where[256];
    db_conninfo_describe(conninfo, where, sizeof where);
    snprintf(err, errlen, "cannot connect to the database (%s): %s", where,
             last[0] ? last : "unknown error");
    return NULL;
}

/* ---- migrations ---- */

/* The server's message for a failed result, on one line. */
static void result_message(PGconn *c, const PGresult *r, char *out, size_t outlen)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    db_clean_message(NULL, m ? m : PQerrorMessage(c), out, outlen);
}

/* Runs sql; true when it succeeded. On failure writes "<what>: <server message>" into err. */
static bool exec_ok(PGconn *c, PGresult *r, const char *what, char *err, size_t errlen)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[512];
        result_message(c, r, msg, sizeof msg);
        snprintf(err, errlen, "%s: %s", what, msg);
    }
    PQclear(r);
    return ok;
}

int db_migrate(PGconn *c, const char *owner, const struct db_migration *steps, size_t n, char *err,
               size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (steps[i].version <= 0 || (i > 0 && steps[i].version <= steps[i - 1].version)) {
            snprintf(err, errlen, "schema of %s: migration versions must increase from 1", owner);
            return -1;
        }
    }
    if (!exec_ok(c, PQexec(c, "BEGIN"), "cannot start a transaction", err, errlen))
        return -1;

    char what[128];
    const char *params[2] = {owner, NULL};
    PGresult *r;
    if (!exec_ok(c, PQexec(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")"),
                 "cannot take the migration lock", err, errlen))
        goto fail;
    if (!exec_ok(c,
                 PQexec(c, "CREATE TABLE IF NOT EXISTS schema_versions ("
                           "owner text NOT NULL, version int NOT NULL, "
                           "applied_at timestamptz NOT NULL DEFAULT now(), "
                           "PRIMARY KEY (owner, version))"),
                 "cannot create schema_versions", err, errlen))
        goto fail;

    r = PQexecParams(c, "SELECT version FROM schema_versions WHERE owner = $1 ORDER BY version", 1,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        exec_ok(c, r, "cannot read schema_versions", err, errlen);
        goto fail;
    }
    int rows = PQntuples(r);
    int *applied = calloc((size_t)rows + 1, sizeof *applied);
    if (!applied) {
        PQclear(r);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < rows; i++)
        applied[i] = atoi(PQgetvalue(r, i, 0));
    PQclear(r);

    int known = n ? steps[n - 1].version : 0;
    if (rows > 0 && applied[rows - 1] > known) {
        snprintf(err, errlen,
                 "the database schema of %s is at version %d but this build knows only up to %d "
                 "(a newer stanzad used this database)",
                 owner, applied[rows - 1], known);
        free(applied);
        goto fail;
    }
    int j = 0;
    for (size_t i = 0; i < n; i++) {
        while (j < rows && applied[j] < steps[i].version)
            j++;
        if (j < rows && applied[j] == steps[i].version)
            continue;
        snprintf(what, sizeof what, "schema migration of %s to version %d failed", owner,
                 steps[i].version);
        if (!exec_ok(c, PQexec(c, steps[i].sql), what, err, errlen)) {
            free(applied);
            goto fail;
        }
        char version[16];
        snprintf(version, sizeof version, "%d", steps[i].version);
        params[1] = version;
        if (!exec_ok(c,
                     PQexecParams(c,
                                  "INSERT INTO schema_versions (owner, version) "
                                  "VALUES ($1, $2::int)",
                                  2, NULL, params, NULL, NULL, 0),
                     what, err, errlen)) {
            free(applied);
            goto fail;
        }
    }
    free(applied);
    if (!exec_ok(c, PQexec(c, "COMMIT"), "cannot commit the schema migration", err, errlen))
        goto fail;
    return 0;

fail:
    PQclear(PQexec(c, "ROLLBACK"));
    return -1;
}

/* ---- the core schema ---- */

const struct db_migration db_core_migrations[] = {
    {1, "CREATE TABLE accounts ("
        "  id bigserial PRIMARY KEY,"
        "  host text NOT NULL,"
        "  username text NOT NULL,"
        "  created_at timestamptz NOT NULL DEFAULT now(),"
        "  UNIQUE (host, username));"
        "CREATE TABLE credentials ("
        "  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,"
        "  mechanism text NOT NULL CHECK (mechanism IN ('SCRAM-SHA-1', 'SCRAM-SHA-256')),"
        "  salt bytea NOT NULL,"
        "  iterations int NOT NULL CHECK (iterations >= 4096),"
        "  stored_key bytea NOT NULL,"
        "  server_key bytea NOT NULL,"
        "  PRIMARY KEY (account_id, mechanism));"},
    /* The per-account key/value store of the module API (sd_kv_*): small XML blobs, gone with
     * the account. */
    {2, "CREATE TABLE kv ("
        "  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,"
        "  module text NOT NULL,"
        "  store text NOT NULL,"
        "  value text NOT NULL,"
        "  PRIMARY KEY (account_id, module, store));"},
};
const size_t db_core_migrations_count = sizeof db_core_migrations / sizeof db_core_migrations[0];
