/*
 * store.c — mod_roster's statements (tables in mod_roster.c's migrations).
 *
 * Loading an account is three reads on its home worker: the account and its roster version, its
 * items (tombstones and stored requests included), its blocklist. Writes go through the
 * account's write queue (state.c); an item is always written whole, with the account's version
 * in the same statement, so the version and the items never disagree.
 *
 * Groups are stored in one text column joined by U+001F, a character XML 1.0 cannot carry, so
 * it never occurs in a group name.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "roster.h"

#define GROUP_SEP '\x1f'

static sd_stmt *st_account, *st_items, *st_blocked, *st_save, *st_delete, *st_compact,
    *st_block_add, *st_block_del, *st_block_clear, *st_all_blocked, *st_contacts_of;

int store_prepare(sd_module *m)
{
    st_account = sd_db_prepare(m,
                               "SELECT a.id, v.ver, v.epoch, v.floor FROM accounts a "
                               "LEFT JOIN roster_version v ON v.account_id = a.id "
                               "WHERE a.host = $1 AND a.username = $2",
                               2);
    st_items = sd_db_prepare(m,
                             "SELECT jid, name, groups, sub, ask, pending_in, approved, "
                             "in_roster, ver, pending_xml "
                             "FROM roster_items WHERE account_id = $1",
                             1);
    st_blocked =
        sd_db_prepare(m, "SELECT jid FROM roster_blocked WHERE account_id = $1 ORDER BY jid", 1);
    st_save = sd_db_prepare(
        m,
        "WITH v AS (INSERT INTO roster_version (account_id, ver, epoch, floor) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE "
        "SET ver = EXCLUDED.ver, floor = EXCLUDED.floor) "
        "INSERT INTO roster_items (account_id, jid, name, groups, sub, ask, pending_in, "
        "approved, in_roster, ver, pending_xml) "
        "VALUES ($1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
        "ON CONFLICT (account_id, jid) DO UPDATE SET name = EXCLUDED.name, "
        "groups = EXCLUDED.groups, sub = EXCLUDED.sub, ask = EXCLUDED.ask, "
        "pending_in = EXCLUDED.pending_in, approved = EXCLUDED.approved, "
        "in_roster = EXCLUDED.in_roster, ver = EXCLUDED.ver, "
        "pending_xml = EXCLUDED.pending_xml",
        14);
    st_delete = sd_db_prepare(m, "DELETE FROM roster_items WHERE account_id = $1 AND jid = $2", 2);
    st_compact = sd_db_prepare(m,
                               "WITH v AS (UPDATE roster_version SET floor = $2 "
                               "WHERE account_id = $1) "
                               "DELETE FROM roster_items WHERE account_id = $1 "
                               "AND NOT in_roster AND NOT pending_in",
                               2);
    st_block_add = sd_db_prepare(m,
                                 "INSERT INTO roster_blocked (account_id, jid) VALUES ($1, $2) "
                                 "ON CONFLICT DO NOTHING",
                                 2);
    st_block_del =
        sd_db_prepare(m, "DELETE FROM roster_blocked WHERE account_id = $1 AND jid = $2", 2);
    st_block_clear = sd_db_prepare(m, "DELETE FROM roster_blocked WHERE account_id = $1", 1);
    st_all_blocked = sd_db_prepare(m,
                                   "SELECT a.username || '@' || a.host, b.jid "
                                   "FROM roster_blocked b JOIN accounts a ON a.id = b.account_id "
                                   "ORDER BY b.account_id, b.jid",
                                   0);
    /* Local accounts with jid in their roster in some subscription state (roster_items_jid). */
    st_contacts_of = sd_db_prepare(m,
                                   "SELECT a.username || '@' || a.host FROM roster_items r "
                                   "JOIN accounts a ON a.id = r.account_id WHERE r.jid = $1 "
                                   "AND (r.sub <> 0 OR r.ask OR r.pending_in)",
                                   1);
    return st_account && st_items && st_blocked && st_save && st_delete && st_compact &&
                   st_block_add && st_block_del && st_block_clear && st_all_blocked &&
                   st_contacts_of
               ? 0
               : -1;
}

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static uint32_t random_epoch(void)
{
    uint32_t e = 0;
    if (getrandom(&e, sizeof(e), GRND_NONBLOCK) != (ssize_t)sizeof(e))
        e = (uint32_t)(sd_now_ms() * 2654435761u);
    return e ? e : 1;
}

/* ---- stored subscription requests ----
 *
 * A request is kept complete (RFC 6121 §3.1.3: status, nick, any extension) as the XML the
 * server's serialiser writes for its <presence/> element, and read back with sd_stanza_parse
 * when the account is loaded again. A request larger than REQUEST_MAX is kept with its status
 * and nick only. */

#define REQUEST_MAX 16384

static char *request_xml(sd_stanza *pin)
{
    char *xml = sd_el_to_string(sd_stanza_el(pin));
    if (xml != NULL && strlen(xml) <= REQUEST_MAX)
        return xml;
    free(xml);
    sd_stanza *small = sd_stanza_new(SD_PRESENCE, "subscribe");
    if (small == NULL)
        return NULL;
    sd_el *root = sd_stanza_el(pin);
    const char *status = sd_el_child_text(pin, root, NS_CLIENT, "status");
    const char *nick = sd_el_child_text(pin, root, NS_NICK, "nick");
    if (status != NULL && strlen(status) < REQUEST_MAX / 2)
        sd_el_add_text_child(small, sd_stanza_el(small), NS_CLIENT, "status", status);
    if (nick != NULL && strlen(nick) < REQUEST_MAX / 4)
        sd_el_add_text_child(small, sd_stanza_el(small), NS_NICK, "nick", nick);
    xml = sd_el_to_string(sd_stanza_el(small));
    sd_stanza_free(&small);
    return xml;
}

/* The request stored as xml, read back; NULL when there is none or it does not parse. */
static sd_stanza *request_parse(const char *xml)
{
    if (xml == NULL || xml[0] == '\0')
        return NULL;
    sd_stanza *st = sd_stanza_parse(xml, strlen(xml));
    if (st != NULL && sd_stanza_kind(st) != SD_PRESENCE)
        sd_stanza_free(&st);
    if (st != NULL)
        sd_stanza_set_type(st, "subscribe");
    return st;
}

/* ---- loading ---- */

static void loaded_blocked(sd_dbres *r, void *ud)
{
    struct account *a = ud;
    if (sd_dbres_status(r) != SD_DB_OK) {
        sd_log(roster_mod, SD_LOG_WARN, "cannot load the blocklist of %s: %s", a->bare,
               sd_dbres_error(r));
        acct_loaded(a, false);
        return;
    }
    int n = sd_dbres_rows(r);
    if (n > 0) {
        a->blocked = calloc((size_t)n, sizeof(char *));
        if (a->blocked == NULL)
            abort();
        for (int i = 0; i < n; i++) {
            const char *j = sd_dbres_value(r, i, 0);
            if (j != NULL)
                a->blocked[a->nblocked++] = dup_or_null(j);
        }
    }
    a->state = A_READY;
    acct_loaded(a, true);
}

static bool is_true(const char *v)
{
    return v != NULL && v[0] == 't';
}

static void parse_groups(struct item *it, const char *v)
{
    if (v == NULL || v[0] == '\0')
        return;
    size_t n = 1;
    for (const char *p = v; *p; p++)
        n += *p == GROUP_SEP;
    it->groups = calloc(n, sizeof(char *));
    if (it->groups == NULL)
        abort();
    const char *start = v;
    for (const char *p = v;; p++) {
        if (*p == GROUP_SEP || *p == '\0') {
            char *g = malloc((size_t)(p - start) + 1);
            if (g == NULL)
                abort();
            memcpy(g, start, (size_t)(p - start));
            g[p - start] = '\0';
            it->groups[it->ngroups++] = g;
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
}

static void loaded_items(sd_dbres *r, void *ud)
{
    struct account *a = ud;
    if (sd_dbres_status(r) != SD_DB_OK) {
        sd_log(roster_mod, SD_LOG_WARN, "cannot load the roster of %s: %s", a->bare,
               sd_dbres_error(r));
        acct_loaded(a, false);
        return;
    }
    int n = sd_dbres_rows(r);
    for (int i = 0; i < n; i++) {
        const char *jid = sd_dbres_value(r, i, 0);
        if (jid == NULL || item_find(a, jid) != NULL)
            continue;
        struct item *it = item_new(a, jid);
        it->name = dup_or_null(sd_dbres_value(r, i, 1));
        parse_groups(it, sd_dbres_value(r, i, 2));
        int64_t v = 0;
        sd_dbres_int64(r, i, 3, &v);
        it->sub = (unsigned)v & (SUB_TO | SUB_FROM);
        it->ask = is_true(sd_dbres_value(r, i, 4));
        it->pending_in = is_true(sd_dbres_value(r, i, 5));
        it->approved = is_true(sd_dbres_value(r, i, 6));
        it->in_roster = is_true(sd_dbres_value(r, i, 7));
        sd_dbres_int64(r, i, 8, &it->ver);
        if (it->pending_in)
            it->pin = request_parse(sd_dbres_value(r, i, 9));
        item_account(a, it);
    }
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    const char *p[] = {id};
    if (sd_db_exec(st_blocked, p, 1, loaded_blocked, a) < 0)
        acct_loaded(a, false);
}

static void loaded_account(sd_dbres *r, void *ud)
{
    struct account *a = ud;
    if (sd_dbres_status(r) != SD_DB_OK) {
        sd_log(roster_mod, SD_LOG_WARN, "cannot load the account %s: %s", a->bare,
               sd_dbres_error(r));
        acct_loaded(a, false);
        return;
    }
    if (sd_dbres_rows(r) != 1) {
        a->state = A_MISSING;
        acct_loaded(a, true);
        return;
    }
    sd_dbres_int64(r, 0, 0, &a->id);
    int64_t v;
    if (sd_dbres_value(r, 0, 1) != NULL) {
        sd_dbres_int64(r, 0, 1, &a->ver);
        v = 0;
        sd_dbres_int64(r, 0, 2, &v);
        a->epoch = (uint32_t)v;
        sd_dbres_int64(r, 0, 3, &a->floor);
    } else {
        /* No version row yet: written with the first change. */
        a->ver = 0;
        a->floor = 0;
        a->epoch = random_epoch();
    }
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    const char *p[] = {id};
    if (sd_db_exec(st_items, p, 1, loaded_items, a) < 0)
        acct_loaded(a, false);
}

void store_load(struct account *a)
{
    const char *p[] = {a->host, a->local};
    if (sd_db_exec(st_account, p, 2, loaded_account, a) < 0)
        acct_loaded(a, false);
}

/* ---- writes ---- */

void store_save_item(struct account *a, const struct item *it, db_done_fn done, void *ud)
{
    char id[24], ver[24], epoch[24], floor[24], sub[8], iver[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    snprintf(ver, sizeof(ver), "%" PRId64, a->ver);
    snprintf(epoch, sizeof(epoch), "%" PRIu32, a->epoch);
    snprintf(floor, sizeof(floor), "%" PRId64, a->floor);
    snprintf(sub, sizeof(sub), "%u", it->sub);
    snprintf(iver, sizeof(iver), "%" PRId64, it->ver);
    char *pin = it->pending_in && it->pin ? request_xml(it->pin) : NULL;
    size_t len = 1;
    for (size_t i = 0; i < it->ngroups; i++)
        len += strlen(it->groups[i]) + 1;
    char *groups = malloc(len);
    if (groups == NULL)
        abort();
    groups[0] = '\0';
    size_t at = 0;
    for (size_t i = 0; i < it->ngroups; i++) {
        if (i > 0)
            groups[at++] = GROUP_SEP;
        size_t n = strlen(it->groups[i]);
        memcpy(groups + at, it->groups[i], n + 1);
        at += n;
    }
    const char *p[] = {id,
                       ver,
                       epoch,
                       floor,
                       it->jid,
                       it->name,
                       groups,
                       sub,
                       it->ask ? "t" : "f",
                       it->pending_in ? "t" : "f",
                       it->approved ? "t" : "f",
                       it->in_roster ? "t" : "f",
                       iver,
                       pin};
    acct_db(a, st_save, p, 14, done, ud);
    free(groups);
    free(pin);
}

void store_delete_item(struct account *a, const char *jid, db_done_fn done, void *ud)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    const char *p[] = {id, jid};
    acct_db(a, st_delete, p, 2, done, ud);
}

void store_compact(struct account *a)
{
    char id[24], floor[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    snprintf(floor, sizeof(floor), "%" PRId64, a->floor);
    const char *p[] = {id, floor};
    acct_db(a, st_compact, p, 2, NULL, NULL);
}

void store_block_add(struct account *a, const char *jid, db_done_fn done, void *ud)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    const char *p[] = {id, jid};
    acct_db(a, st_block_add, p, 2, done, ud);
}

void store_block_del(struct account *a, const char *jid, db_done_fn done, void *ud)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    const char *p[] = {id, jid};
    acct_db(a, st_block_del, p, 2, done, ud);
}

void store_block_clear(struct account *a, db_done_fn done, void *ud)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, a->id);
    const char *p[] = {id};
    acct_db(a, st_block_clear, p, 1, done, ud);
}

int store_all_blocked(store_rows_fn fn, void *ud)
{
    return sd_db_exec(st_all_blocked, NULL, 0, fn, ud);
}

int store_contacts_of(const char *jid, store_rows_fn fn, void *ud)
{
    const char *p[] = {jid};
    return sd_db_exec(st_contacts_of, p, 1, fn, ud);
}
