/*
 * stanzad/accounts.h — creating, checking, re-keying and deleting accounts (ABI 1.1).
 *
 * Accounts and their credentials belong to the core: a module never sees a stored credential,
 * and a password passed here is turned into SCRAM verifiers (SCRAM-SHA-1 and SCRAM-SHA-256,
 * the configured iteration count) on a helper thread, then forgotten; it is never logged.
 * Usernames are prepared (RFC 7622 localpart) before use, so "Alice" and "alice" are one
 * account; the host must be one this server serves.
 *
 * Every call is asynchronous: it returns 0 and calls cb exactly once, later, on the calling
 * worker; or it returns -1 (not on a worker, or NULL arguments) and cb is never called.
 *
 * Events. When an account is created or deleted — through these calls or by an administrator
 * with stanzactl (another process: the database tells the server) — the core raises
 * SD_EV_ACCOUNT_CREATED or SD_EV_ACCOUNT_DELETED (hooks.h) once, on one worker: the calling
 * worker for these calls, before cb runs; worker 0 for changes made by stanzactl. Deleting an
 * account deletes, in the same transaction, its credentials, its key/value rows and every row
 * of a module table that references accounts(id) ON DELETE CASCADE — which is how a module's
 * tables should be keyed. After the event, every session of a deleted account ends with
 * <not-authorized/>.
 */
#ifndef STANZAD_PUBLIC_ACCOUNTS_H
#define STANZAD_PUBLIC_ACCOUNTS_H

#include "export.h"
#include "module.h"
#include "stanza.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_account_status {
    SD_ACCOUNT_OK = 0,
    SD_ACCOUNT_EXISTS = 1,       /* create: the username is taken */
    SD_ACCOUNT_NOT_FOUND = 2,    /* exists / set_password / delete: no such account */
    SD_ACCOUNT_BAD_NAME = 3,     /* the username fails preparation, or the host is not ours */
    SD_ACCOUNT_UNAVAILABLE = 4,  /* the database did not answer in time: try again later */
    SD_ACCOUNT_ERROR = 5,        /* anything else (logged) */
    SD_ACCOUNT_BAD_PASSWORD = 6, /* create / set_password: empty, or not valid UTF-8 text
                                  * under SASLprep (RFC 4013) */
} sd_account_status;

typedef void (*sd_account_fn)(sd_account_status status, void *ud);

/* Creates username@host. `info` (may be NULL) is an element of `info_st` — typically the
 * registration form — handed to SD_EV_ACCOUNT_CREATED handlers as sd_event_el /
 * sd_event_stanza, so other modules can keep what concerns them (a profile, a nickname). */
SD_API int sd_account_create(sd_module *m, const char *host, const char *username,
                             const char *password, sd_stanza *info_st, const sd_el *info,
                             sd_account_fn cb, void *ud);
/* SD_ACCOUNT_OK when username@host exists, SD_ACCOUNT_NOT_FOUND when not. */
SD_API int sd_account_exists(sd_module *m, const char *host, const char *username, sd_account_fn cb,
                             void *ud);
/* Replaces the account's verifiers with ones for the new password. Sessions stay. */
SD_API int sd_account_set_password(sd_module *m, const char *host, const char *username,
                                   const char *password, sd_account_fn cb, void *ud);
/* Deletes username@host and everything that cascades from it (see above). */
SD_API int sd_account_delete(sd_module *m, const char *host, const char *username, sd_account_fn cb,
                             void *ud);

#ifdef __cplusplus
}
#endif

#endif
