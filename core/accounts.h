/*
 * accounts.h — the core's statements on accounts and credentials (tables of db_core_migrations),
 * shared by the server (asynchronously through db_query) and stanzactl (synchronously: PQexecParams
 * with stmt->sql, stmt->nparams and the same parameters).
 *
 * Hosts and usernames are stored prepared (jid_prep_domain / jid_prep_local), so equality in SQL
 * is equality of JIDs.
 *
 * Every write is one statement, so it is atomic without an explicit transaction: an account is
 * created together with its verifiers, and deleted together with everything that references it
 * ON DELETE CASCADE. Creating and deleting also send a notification on ACCOUNTS_CHANNEL, which
 * PostgreSQL delivers to listeners only when the change commits; each running server LISTENs
 * there (account_api.c) and raises SD_EV_ACCOUNT_CREATED / SD_EV_ACCOUNT_DELETED for changes
 * made by other processes. The payload is
 *
 *     created|deleted SP <instance token> SP <host> SP <username>
 *
 * where the token identifies the process that made the change (accounts_instance_token()), so a
 * server can tell its own changes (whose events it already raised) from those of others.
 */
#ifndef STANZAD_ACCOUNTS_H
#define STANZAD_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"
#include "scram.h"

/* The LISTEN/NOTIFY channel of account changes (a plain identifier: no quoting needed). */
#define ACCOUNTS_CHANNEL "stanzad_accounts"

/* $1 host, $2 username → rows (mechanism, salt, iterations, stored_key, server_key); no row for
 * an unknown account. Read the rows with accounts_verifiers_from_result(). */
extern const struct db_stmt db_stmt_fetch_credentials;
/* $1 host, $2 username → one row (id), or none. */
extern const struct db_stmt db_stmt_account_exists;
/* Parameters from accounts_write_params(…, payload, …): creates the account with both verifiers
 * and notifies ACCOUNTS_CHANNEL with the payload → one row (id), or none when the name is taken. */
extern const struct db_stmt db_stmt_account_create;
/* Parameters from accounts_write_params(…, NULL, …): replaces the account's verifiers → one row
 * per verifier written, none when there is no such account. */
extern const struct db_stmt db_stmt_account_set_password;
/* $1 host, $2 username, $3 payload: deletes the account (credentials, kv and module rows go by
 * cascade) and notifies ACCOUNTS_CHANNEL → one row (id), or none when there was no such account. */
extern const struct db_stmt db_stmt_account_delete;
/* $1 host, or NULL for every host → rows (host, username) ordered by host, username. */
extern const struct db_stmt db_stmt_list_accounts;

/*
 * Turns the rows of db_stmt_fetch_credentials (text-format results, as db_query and PQexecParams
 * with resultFormat 0 return them) into verifiers. Rows that are malformed or of a mechanism this
 * build does not know are skipped with a warning in the log. Returns how many were written to out
 * (at most cap).
 */
size_t accounts_verifiers_from_result(const PGresult *res, struct scram_verifier *out, size_t cap);

/* Parameters for db_stmt_account_create (payload given) and db_stmt_account_set_password
 * (payload NULL). The salts and keys are binary parameters that point into v, so v must live as
 * long as p->params is used (db_query copies them). */
#define ACCOUNTS_WRITE_MAX_PARAMS (3 + 5 * SCRAM_HASH_COUNT)
struct accounts_write_params {
    char iterations[SCRAM_HASH_COUNT][16];
    const char *values[ACCOUNTS_WRITE_MAX_PARAMS];
    int lengths[ACCOUNTS_WRITE_MAX_PARAMS];
    int binary[ACCOUNTS_WRITE_MAX_PARAMS];
    struct db_params params;
};
void accounts_write_params(struct accounts_write_params *p, const char *host, const char *username,
                           const char *payload, const struct scram_verifier v[SCRAM_HASH_COUNT]);

/* ---- notifications ---- */

/* This process's random token (32 hex digits), made on first use. Thread-safe. */
const char *accounts_instance_token(void);
/* Writes the payload of a change made by this process; returns out. created: created, else
 * deleted. */
#define ACCOUNTS_PAYLOAD_MAX (16 + 32 + 2 * 1024 + 4)
const char *accounts_notify_payload(char *out, size_t cap, bool created, const char *host,
                                    const char *username);
/* Splits a payload (modified in place) into its parts. Returns 0, or -1 when malformed. */
struct accounts_notice {
    bool created;
    const char *token, *host, *username;
};
int accounts_notify_parse(char *payload, struct accounts_notice *out);

/* ---- the server side (account_api.c) ---- */

/* Makes the server LISTEN on ACCOUNTS_CHANNEL from worker 0 (call after db_init, before the
 * workers start), so account changes of other processes raise their events here. */
int accounts_events_init(void);

#endif
