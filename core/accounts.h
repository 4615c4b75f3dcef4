/*
 * accounts.h — the core's statements on accounts and credentials (tables of db_core_migrations),
 * shared by the server (asynchronously through db_query) and stanzactl (synchronously: PQexecParams
 * with stmt->sql, stmt->nparams and the same parameters).
 *
 * Hosts and usernames are stored prepared (jid_prep_domain / jid_prep_local), so equality in SQL
 * is equality of JIDs.
 */
#ifndef STANZAD_ACCOUNTS_H
#define STANZAD_ACCOUNTS_H

#include <stddef.h>

#include "db.h"
#include "scram.h"

/* $1 host, $2 username → rows (mechanism, salt, iterations, stored_key, server_key); no row for
 * an unknown account. Read the rows with accounts_verifiers_from_result(). */
extern const struct db_stmt db_stmt_fetch_credentials;
/* $1 host, $2 username → one row (id), or none when the account already exists. */
extern const struct db_stmt db_stmt_create_account;
/* $1 host, $2 username → one row (id) or none. Locks the row (FOR UPDATE) inside a transaction. */
extern const struct db_stmt db_stmt_find_account;
/* Inserts or replaces one verifier; parameters from accounts_credential_params(). */
extern const struct db_stmt db_stmt_set_credential;
/* $1 host, $2 username; deletes the account and, by cascade, its credentials (0 or 1 rows). */
extern const struct db_stmt db_stmt_delete_account;
/* $1 host, or NULL for every host → rows (host, username) ordered by host, username. */
extern const struct db_stmt db_stmt_list_accounts;

/*
 * Turns the rows of db_stmt_fetch_credentials (text-format results, as db_query and PQexecParams
 * with resultFormat 0 return them) into verifiers. Rows that are malformed or of a mechanism this
 * build does not know are skipped with a warning in the log. Returns how many were written to out
 * (at most cap).
 */
size_t accounts_verifiers_from_result(const PGresult *res, struct scram_verifier *out, size_t cap);

/* Parameters for db_stmt_set_credential. The salt and keys are passed as binary parameters that
 * point into *v, so v must live as long as p->params is used (db_query copies them). */
struct accounts_credential_params {
    char account_id[24];
    char iterations[16];
    const char *values[6];
    int lengths[6];
    int binary[6];
    struct db_params params;
};
void accounts_credential_params(struct accounts_credential_params *p, const char *account_id,
                                const struct scram_verifier *v);

#endif
