/*
 * accounts.c — the SQL of the core's account and credential tables, and the conversion between
 * their rows and struct scram_verifier.
 *
 * Every write is a single statement (see accounts.h); the notification payloads and this
 * process's instance token are made here too.
 *
 * Results are read in text format, where bytea arrives as "\x<hex>" (or in the old escape format
 * when a server is configured with bytea_output = escape); PQunescapeBytea reads both. Lengths are
 * checked against the hash size, so a damaged row can never overflow a verifier or pass as one.
 */
#include "accounts.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

const struct db_stmt db_stmt_fetch_credentials = {
    "core_fetch_credentials",
    "SELECT c.mechanism, c.salt, c.iterations, c.stored_key, c.server_key FROM credentials c "
    "JOIN accounts a ON a.id = c.account_id WHERE a.host = $1 AND a.username = $2",
    2};

const struct db_stmt db_stmt_account_exists = {
    "core_account_exists", "SELECT id FROM accounts WHERE host = $1 AND username = $2", 2};

/* The verifiers of one write as a VALUES list: per mechanism (in enum scram_hash order) its name,
 * salt, iterations, StoredKey and ServerKey, from parameter $(first) on. */
#define VERIFIER_ROWS(a, b, c, d, e, f, g, h, i, j)                                                \
    "(VALUES ($" a "::text, $" b "::bytea, $" c "::int, $" d "::bytea, $" e "::bytea), "           \
    "($" f "::text, $" g "::bytea, $" h "::int, $" i "::bytea, $" j "::bytea)) "                   \
    "AS v (mechanism, salt, iterations, stored_key, server_key)"

_Static_assert(SCRAM_HASH_COUNT == 2, "the statements below write exactly two verifiers");

/* Data-modifying CTEs all run to completion, and the foreign key of credentials is checked at
 * the end of the statement, when the account row exists; pg_notify runs once, only for a row
 * actually inserted, and its notification is delivered only if the statement commits. */
const struct db_stmt db_stmt_account_create = {
    "core_account_create",
    "WITH a AS (INSERT INTO accounts (host, username) VALUES ($1, $2) "
    "ON CONFLICT (host, username) DO NOTHING RETURNING id), "
    "c AS (INSERT INTO credentials (account_id, mechanism, salt, iterations, stored_key, "
    "server_key) SELECT a.id, v.mechanism, v.salt, v.iterations, v.stored_key, v.server_key "
    "FROM a, " VERIFIER_ROWS("4", "5", "6", "7", "8", "9", "10", "11", "12",
                             "13") ") "
                                   "SELECT a.id, pg_notify('" ACCOUNTS_CHANNEL
                                   "', $3::text) FROM a",
    13};

/* FOR UPDATE: a concurrent delete either happens first (no row: not found) or waits. */
const struct db_stmt db_stmt_account_set_password = {
    "core_account_set_password",
    "WITH a AS (SELECT id FROM accounts WHERE host = $1 AND username = $2 FOR UPDATE) "
    "INSERT INTO credentials (account_id, mechanism, salt, iterations, stored_key, server_key) "
    "SELECT a.id, v.mechanism, v.salt, v.iterations, v.stored_key, v.server_key "
    "FROM a, " VERIFIER_ROWS(
        "3", "4", "5", "6", "7", "8", "9", "10", "11",
        "12") " "
              "ON CONFLICT (account_id, mechanism) DO UPDATE SET salt = EXCLUDED.salt, "
              "iterations = EXCLUDED.iterations, stored_key = EXCLUDED.stored_key, "
              "server_key = EXCLUDED.server_key RETURNING account_id",
    12};

const struct db_stmt db_stmt_account_delete = {
    "core_account_delete",
    "WITH d AS (DELETE FROM accounts WHERE host = $1 AND username = $2 RETURNING id) "
    "SELECT d.id, pg_notify('" ACCOUNTS_CHANNEL "', $3::text) FROM d",
    3};

const struct db_stmt db_stmt_list_accounts = {
    "core_list_accounts",
    "SELECT host, username FROM accounts WHERE $1::text IS NULL OR host = $1 "
    "ORDER BY host, username",
    1};

/* Decodes a text-format bytea into out; returns its length, or -1 when it is not between 1 and
 * cap bytes. */
static long bytea_from_text(const char *text, unsigned char *out, size_t cap)
{
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)text, &n);
    if (!raw)
        return -1;
    long r = -1;
    if (n > 0 && n <= cap) {
        memcpy(out, raw, n);
        r = (long)n;
    }
    PQfreemem(raw);
    return r;
}

size_t accounts_verifiers_from_result(const PGresult *res, struct scram_verifier *out, size_t cap)
{
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 5)
        return 0;
    size_t n = 0;
    int rows = PQntuples(res);
    for (int i = 0; i < rows && n < cap; i++) {
        struct scram_verifier v;
        memset(&v, 0, sizeof v);
        const char *mech = PQgetvalue(res, i, 0);
        int h = scram_hash_from_name(mech);
        if (h < 0) {
            log_warn(0, "credentials: skipping a verifier of unknown mechanism %.40s", mech);
            continue;
        }
        v.hash = (enum scram_hash)h;
        size_t hl = scram_hash_len(v.hash);
        char *end = NULL;
        unsigned long it = strtoul(PQgetvalue(res, i, 2), &end, 10);
        long salt_len = bytea_from_text(PQgetvalue(res, i, 1), v.salt, sizeof v.salt);
        unsigned char key[SCRAM_MAX_HASH_LEN];
        bool ok = PQfformat(res, 1) == 0 && end && *end == '\0' && it >= 1 && it <= 100000000 &&
                  salt_len > 0 &&
                  bytea_from_text(PQgetvalue(res, i, 3), v.stored_key, sizeof key) == (long)hl &&
                  bytea_from_text(PQgetvalue(res, i, 4), v.server_key, sizeof key) == (long)hl;
        if (!ok) {
            log_warn(0, "credentials: skipping a malformed %s verifier", mech);
            continue;
        }
        v.iterations = (unsigned)it;
        v.salt_len = (size_t)salt_len;
        out[n++] = v;
    }
    return n;
}

void accounts_write_params(struct accounts_write_params *p, const char *host, const char *username,
                           const char *payload, const struct scram_verifier v[SCRAM_HASH_COUNT])
{
    memset(p, 0, sizeof *p);
    int n = 0;
    p->values[n++] = host;
    p->values[n++] = username;
    if (payload)
        p->values[n++] = payload;
    for (int h = 0; h < SCRAM_HASH_COUNT; h++) {
        size_t hl = scram_hash_len(v[h].hash);
        snprintf(p->iterations[h], sizeof p->iterations[h], "%u", v[h].iterations);
        p->values[n++] = scram_mech_name(v[h].hash);
        p->values[n] = (const char *)v[h].salt;
        p->lengths[n] = (int)v[h].salt_len;
        p->binary[n++] = 1;
        p->values[n++] = p->iterations[h];
        p->values[n] = (const char *)v[h].stored_key;
        p->lengths[n] = (int)hl;
        p->binary[n++] = 1;
        p->values[n] = (const char *)v[h].server_key;
        p->lengths[n] = (int)hl;
        p->binary[n++] = 1;
    }
    p->params.n = n;
    p->params.values = p->values;
    p->params.lengths = p->lengths;
    p->params.binary = p->binary;
}

/* ---- notifications ---- */

static pthread_once_t token_once = PTHREAD_ONCE_INIT;
static char token[33];

static void token_make(void)
{
    unsigned char rnd[16];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < sizeof rnd) {
        /* Cannot happen on Linux ≥ 3.17; a token only has to differ between processes. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(token, sizeof token, "%08x%08lx%016lx", (unsigned)getpid(), (long)ts.tv_sec,
                 (long)ts.tv_nsec);
        return;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
}

const char *accounts_instance_token(void)
{
    pthread_once(&token_once, token_make);
    return token;
}

const char *accounts_notify_payload(char *out, size_t cap, bool created, const char *host,
                                    const char *username)
{
    snprintf(out, cap, "%s %s %s %s", created ? "created" : "deleted", accounts_instance_token(),
             host, username);
    return out;
}

int accounts_notify_parse(char *payload, struct accounts_notice *out)
{
    /* Prepared hosts and localparts contain no space (Nameprep and Nodeprep refuse it), so the
     * four fields split on single spaces; the username is the rest, whatever it holds. */
    char *f[4];
    char *p = payload;
    for (int i = 0; i < 3; i++) {
        char *sp = strchr(p, ' ');
        if (!sp || sp == p)
            return -1;
        *sp = '\0';
        f[i] = p;
        p = sp + 1;
    }
    f[3] = p;
    if (!*f[3])
        return -1;
    if (strcmp(f[0], "created") == 0)
        out->created = true;
    else if (strcmp(f[0], "deleted") == 0)
        out->created = false;
    else
        return -1;
    out->token = f[1];
    out->host = f[2];
    out->username = f[3];
    return 0;
}
