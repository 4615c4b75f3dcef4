/*
 * stanzad/db.h — PostgreSQL for modules: prepared statements, asynchronous only.
 *
 * A module prepares its statements in load(); at run time it executes them with text
 * parameters and gets the result in a callback on the same worker. There is no call that takes
 * SQL text at run time and no escaping function: parameters ($1, $2, ...) are the only way values
 * reach SQL. Tables are the module's own (prefixed with its name) and created by its migrations
 * (module.h).
 *
 * When the database is unreachable, queued statements fail after the configured timeout with
 * sd_dbres_status() == SD_DB_UNAVAILABLE; a module should answer its client with a 'wait' error
 * (SD_ERR_RESOURCE_CONSTRAINT or SD_ERR_INTERNAL_SERVER_ERROR).
 */
#ifndef STANZAD_PUBLIC_DB_H
#define STANZAD_PUBLIC_DB_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_stmt sd_stmt;
typedef struct sd_dbres sd_dbres;

typedef enum sd_db_status {
    SD_DB_OK = 0,
    SD_DB_UNAVAILABLE = 1, /* no connection within the timeout */
    SD_DB_ERROR = 2,       /* the statement failed (constraint, syntax...): see sd_dbres_error */
} sd_db_status;

typedef void (*sd_db_fn)(sd_dbres *r, void *ud);

/* Prepares sql with nparams parameters ($1..$n). load() only. NULL and a log line on error. */
SD_API sd_stmt *sd_db_prepare(sd_module *m, const char *sql, int nparams);
/* Executes with text parameters (values[i] NULL = SQL NULL; n must equal nparams). The callback
 * runs exactly once, on the calling worker, unless -1 is returned (not on a worker). */
SD_API int sd_db_exec(sd_stmt *s, const char *const *values, int n, sd_db_fn cb, void *ud);

/* Results: borrowed for the callback only. */
SD_API sd_db_status sd_dbres_status(const sd_dbres *r);
SD_API const char *sd_dbres_error(const sd_dbres *r); /* one line, for logs; "" when ok */
/* For a constraint violation etc.: the SQLSTATE ("23505"), or "" */
SD_API const char *sd_dbres_sqlstate(const sd_dbres *r);
SD_API int sd_dbres_rows(const sd_dbres *r);
SD_API int sd_dbres_cols(const sd_dbres *r);
/* Rows affected by INSERT/UPDATE/DELETE. */
SD_API int64_t sd_dbres_affected(const sd_dbres *r);
/* A value as text (bytea as \x hex), NULL for SQL NULL or out of range. */
SD_API const char *sd_dbres_value(const sd_dbres *r, int row, int col);
SD_API int sd_dbres_int64(const sd_dbres *r, int row, int col, int64_t *out); /* 0 or -1 */

/* ---- per-account key/value: small XML blobs (vCard, private storage) ---- */

/*
 * Values are stored per (module, store, account bare JID) in a core table; deleted with the
 * account. get calls back with the value (NULL when absent) borrowed for the call.
 */
typedef void (*sd_kv_get_fn)(sd_db_status status, const char *value, size_t len, void *ud);
typedef void (*sd_kv_done_fn)(sd_db_status status, void *ud);
SD_API int sd_kv_get(sd_module *m, const char *store, const char *account, sd_kv_get_fn cb,
                     void *ud);
SD_API int sd_kv_put(sd_module *m, const char *store, const char *account, const char *value,
                     size_t len, sd_kv_done_fn cb, void *ud);
SD_API int sd_kv_delete(sd_module *m, const char *store, const char *account, sd_kv_done_fn cb,
                        void *ud);

#ifdef __cplusplus
}
#endif

#endif
