/*
 * accounts.c — the SQL of the core's account and credential tables, and the conversion between
 * their rows and struct scram_verifier.
 *
 * Results are read in text format, where bytea arrives as "\x<hex>" (or in the old escape format
 * when a server is configured with bytea_output = escape); PQunescapeBytea reads both. Lengths are
 * checked against the hash size, so a damaged row can never overflow a verifier or pass as one.
 */
#include "accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const struct db_stmt db_stmt_fetch_credentials = {
    "core_fetch_credentials",
    "SELECT c.mechanism, c.salt, c.iterations, c.stored_key, c.server_key FROM credentials c "
    "JOIN accounts a ON a.id = c.account_id WHERE a.host = $1 AND a.username = $2",
    2};

const struct db_stmt db_stmt_create_account = {
    "core_create_account",
    "INSERT INTO accounts (host, username) VALUES ($1, $2) ON CONFLICT (host, username) "
    "DO NOTHING RETURNING id",
    2};

const struct db_stmt db_stmt_find_account = {
    "core_find_account", "SELECT id FROM accounts WHERE host = $1 AND username = $2 FOR UPDATE", 2};

const struct db_stmt db_stmt_set_credential = {
    "core_set_credential",
    "INSERT INTO credentials (account_id, mechanism, salt, iterations, stored_key, server_key) "
    "VALUES ($1::bigint, $2, $3::bytea, $4::int, $5::bytea, $6::bytea) "
    "ON CONFLICT (account_id, mechanism) DO UPDATE SET salt = EXCLUDED.salt, "
    "iterations = EXCLUDED.iterations, stored_key = EXCLUDED.stored_key, "
    "server_key = EXCLUDED.server_key",
    6};

const struct db_stmt db_stmt_delete_account = {
    "core_delete_account", "DELETE FROM accounts WHERE host = $1 AND username = $2", 2};

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

void accounts_credential_params(struct accounts_credential_params *p, const char *account_id,
                                const struct scram_verifier *v)
{
    memset(p, 0, sizeof *p);
    snprintf(p->account_id, sizeof p->account_id, "%s", account_id);
    snprintf(p->iterations, sizeof p->iterations, "%u", v->iterations);
    size_t hl = scram_hash_len(v->hash);
    p->values[0] = p->account_id;
    p->values[1] = scram_mech_name(v->hash);
    p->values[2] = (const char *)v->salt;
    p->lengths[2] = (int)v->salt_len;
    p->binary[2] = 1;
    p->values[3] = p->iterations;
    p->values[4] = (const char *)v->stored_key;
    p->lengths[4] = (int)hl;
    p->binary[4] = 1;
    p->values[5] = (const char *)v->server_key;
    p->lengths[5] = (int)hl;
    p->binary[5] = 1;
    p->params.n = 6;
    p->params.values = p->values;
    p->params.lengths = p->lengths;
    p->params.binary = p->binary;
}
