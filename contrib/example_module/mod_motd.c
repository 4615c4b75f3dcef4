/*
 * mod_motd — a message of the day, sent to a user when they log in: an example of an
 * out-of-tree stanzad module, built against the installed headers only.
 *
 * When a session is bound (SD_EV_SESSION_BOUND), the module asks the database whether the
 * account has seen the message within the last `interval`; if not, it sends a headline
 * message from the host to the new session. The check and the update are one statement
 * (INSERT ... ON CONFLICT ... DO UPDATE ... WHERE ... RETURNING), so two logins at the same
 * moment on different workers still send it once. The table motd_seen is the module's own,
 * created by its first migration; the row of an account goes when the account is deleted
 * (SD_EV_ACCOUNT_DELETED).
 *
 * It shows the rules every module follows: one exported symbol (SD_MODULE), settings declared in
 * a table and read through sd_module_config (per host, validated by the server before start),
 * SQL only in migrations and statements prepared in load(), nothing blocking in a handler
 * (the database answers in a callback on the same worker), and no pointer to a session kept
 * across that wait: the callback addresses the user by JID through sd_route(), so a user who
 * logged out meanwhile is no problem.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

struct motd_conf {
    const char *text;
    int64_t interval_ms;
};

static const sd_setting motd_settings[] = {
    {"text", SD_SETTING_STRING, offsetof(struct motd_conf, text), "", 0, 0, NULL,
     "the message; empty: send nothing"},
    {"interval", SD_SETTING_DURATION, offsetof(struct motd_conf, interval_ms), "1d", 0,
     INT64_C(366) * 24 * 3600 * 1000, NULL,
     "send it to an account at most once in this period (0: at every login)"},
    SD_SETTINGS_END,
};

static const sd_migration motd_migrations[] = {
    /* Keyed by the core's account id: when an account is deleted (by stanzactl, by in-band
     * cancellation), its row goes with it. */
    {1, "CREATE TABLE motd_seen ("
        "  account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,"
        "  seen_at timestamptz NOT NULL)"},
    SD_MIGRATIONS_END,
};

static sd_module *motd_mod;
static sd_stmt *motd_claim; /* returns a row when the message is due, and records it as sent */

/* What the database callback needs: copies, since the session may be gone by then. */
struct motd_req {
    char *full; /* the session's full JID */
    char *host;
};

static void motd_req_free(struct motd_req *r)
{
    free(r->full);
    free(r->host);
    free(r);
}

static void motd_claimed(sd_dbres *res, void *ud)
{
    struct motd_req *r = ud;
    const struct motd_conf *c = sd_module_config(motd_mod, r->host);
    if (sd_dbres_status(res) != SD_DB_OK) {
        sd_log(motd_mod, SD_LOG_WARN, "cannot check the message of the day for %s: %s", r->full,
               sd_dbres_error(res));
    } else if (sd_dbres_rows(res) == 1 && c != NULL) {
        sd_stanza *msg = sd_stanza_new(SD_MESSAGE, "headline");
        if (msg != NULL) {
            sd_stanza_set_from(msg, r->host);
            sd_stanza_set_to(msg, r->full);
            sd_el_add_text_child(msg, sd_stanza_el(msg), NULL, "subject", "Message of the day");
            sd_el_add_text_child(msg, sd_stanza_el(msg), NULL, "body", c->text);
            sd_route(&msg);
            sd_log(motd_mod, SD_LOG_DEBUG, "message of the day sent to %s", r->full);
        }
    }
    motd_req_free(r);
}

static void motd_bound(sd_hctx *h, sd_event *ev, void *ud)
{
    sd_session *s = sd_event_session(ev);
    const struct motd_conf *c = sd_module_config(motd_mod, sd_session_host(s));
    if (c == NULL || c->text == NULL || c->text[0] == '\0')
        return;
    struct motd_req *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->full = strdup(sd_session_full(s))) == NULL ||
        (r->host = strdup(sd_session_host(s))) == NULL) {
        if (r != NULL)
            motd_req_free(r);
        return;
    }
    char interval[32];
    snprintf(interval, sizeof(interval), "%" PRId64, c->interval_ms);
    sd_jid *bare = sd_jid_new(sd_session_bare(s));
    if (bare == NULL) {
        motd_req_free(r);
        return;
    }
    const char *params[] = {sd_jid_domain(bare), sd_jid_local(bare), interval};
    if (sd_db_exec(motd_claim, params, 3, motd_claimed, r) < 0)
        motd_req_free(r);
    sd_jid_free(&bare); /* the parameters were copied */
}

static int motd_load(sd_module *m, const char **error_r)
{
    motd_mod = m;
    /* $1 host, $2 username (the core's accounts table), $3 the interval in milliseconds.
     * now() is the transaction's start, the same in the INSERT and the WHERE, so interval 0
     * means "every time". */
    motd_claim = sd_db_prepare(m,
                               "INSERT INTO motd_seen AS s (account_id, seen_at) "
                               "SELECT a.id, now() FROM accounts a "
                               "WHERE a.host = $1 AND a.username = $2 "
                               "ON CONFLICT (account_id) DO UPDATE SET seen_at = now() "
                               "WHERE s.seen_at <= now() - $3::bigint * interval '1 millisecond' "
                               "RETURNING account_id",
                               3);
    if (motd_claim == NULL) {
        *error_r = "cannot prepare the statement";
        return -1;
    }
    if (sd_hook_event(m, SD_EV_SESSION_BOUND, 0, motd_bound, NULL) < 0) {
        *error_r = "cannot register the event handler";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "motd", .version = "1.0", .settings = motd_settings,
          .config_size = sizeof(struct motd_conf), .migrations = motd_migrations,
          .load = motd_load);
