/*
 * mod_test_db — a test-only module for the database API: migrations, prepared statements with
 * text and NULL parameters, errors with their SQLSTATE, and the per-account key/value helper.
 * Driven by test/integration/test_modules.py.
 *
 * Schema: two migrations, so the test can see both recorded in schema_versions and the second
 * one applied on top of the first (a column added with a default). Every request is an iq to
 * the host in urn:stanzad:test:db, deferred until its statement's callback, which answers on
 * the same worker; the answer says where the request started and where it finished. The owner
 * of the rows is always the sender's bare JID.
 *   set <put key='k'>v</put>          upsert (attribute null='1': store SQL NULL); 'updated'
 *                                     counts the overwrites
 *   set <insert key='k'>v</insert>    plain INSERT: a second one fails with SQLSTATE 23505,
 *                                     answered as <conflict/> with the SQLSTATE as text
 *   get <get key='k'/>                <item key='k' updated='n' [null='1']>v</item>, or
 *                                     <item-not-found/>
 *   get <count/>                      <count n='N'/> (through sd_dbres_int64)
 *   set <kv-put>v</kv-put>, get <kv-get/>, set <kv-delete/>   sd_kv_* in store "test"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

#define NS "urn:stanzad:test:db"

static const sd_migration tdb_migrations[] = {
    {1, "CREATE TABLE test_db_items ("
        "  owner text NOT NULL,"
        "  k text NOT NULL,"
        "  v text,"
        "  PRIMARY KEY (owner, k))"},
    {2, "ALTER TABLE test_db_items ADD COLUMN updated integer NOT NULL DEFAULT 0"},
    SD_MIGRATIONS_END,
};

static sd_module *tdb_mod;
static sd_stmt *st_put, *st_insert, *st_get, *st_count;

struct req {
    sd_pending *p;
    int started;
    char op[16];
};

static void mark(sd_stanza *reply, sd_el *el, const struct req *r)
{
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", r->started);
    sd_el_set_attr(reply, el, "started", buf);
    snprintf(buf, sizeof(buf), "%d", sd_worker_current());
    sd_el_set_attr(reply, el, "worker", buf);
}

/* Answers with <op/> (plus whatever fill adds) or the error for status. */
static void answer(struct req *r, sd_db_status status, const char *sqlstate, const char *error)
{
    if (status == SD_DB_UNAVAILABLE) {
        sd_pending_error(&r->p, SD_ERR_RESOURCE_CONSTRAINT, "database unavailable");
    } else if (status != SD_DB_OK) {
        int conflict = sqlstate != NULL && strcmp(sqlstate, "23505") == 0;
        sd_log(tdb_mod, SD_LOG_INFO, "%s failed: %s (%s)", r->op, error ? error : "",
               sqlstate ? sqlstate : "");
        sd_pending_error(&r->p, conflict ? SD_ERR_CONFLICT : SD_ERR_INTERNAL_SERVER_ERROR,
                         sqlstate);
    } else {
        sd_stanza *reply = sd_stanza_result(sd_pending_stanza(r->p));
        mark(reply, sd_el_add(reply, sd_stanza_el(reply), NS, r->op), r);
        sd_pending_reply(&r->p, &reply);
    }
    free(r);
}

static void on_write(sd_dbres *res, void *ud)
{
    answer(ud, sd_dbres_status(res), sd_dbres_sqlstate(res), sd_dbres_error(res));
}

static void on_get(sd_dbres *res, void *ud)
{
    struct req *r = ud;
    if (sd_dbres_status(res) != SD_DB_OK) {
        on_write(res, ud);
        return;
    }
    if (sd_dbres_rows(res) == 0) {
        sd_pending_error(&r->p, SD_ERR_ITEM_NOT_FOUND, NULL);
        free(r);
        return;
    }
    sd_stanza *st = sd_pending_stanza(r->p);
    sd_stanza *reply = sd_stanza_result(st);
    const char *v = sd_dbres_value(res, 0, 0);
    sd_el *item = sd_el_add_text_child(reply, sd_stanza_el(reply), NS, "item", v ? v : "");
    sd_el_set_attr(reply, item, "key", sd_el_attr(sd_stanza_payload(st), "key"));
    sd_el_set_attr(reply, item, "updated", sd_dbres_value(res, 0, 1));
    if (v == NULL)
        sd_el_set_attr(reply, item, "null", "1");
    mark(reply, item, r);
    sd_pending_reply(&r->p, &reply);
    free(r);
}

static void on_count(sd_dbres *res, void *ud)
{
    struct req *r = ud;
    int64_t n;
    if (sd_dbres_status(res) != SD_DB_OK || sd_dbres_int64(res, 0, 0, &n) < 0) {
        on_write(res, ud);
        return;
    }
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)n);
    sd_stanza *reply = sd_stanza_result(sd_pending_stanza(r->p));
    sd_el *c = sd_el_add(reply, sd_stanza_el(reply), NS, "count");
    sd_el_set_attr(reply, c, "n", buf);
    mark(reply, c, r);
    sd_pending_reply(&r->p, &reply);
    free(r);
}

static void on_kv_get(sd_db_status status, const char *value, size_t len, void *ud)
{
    struct req *r = ud;
    if (status != SD_DB_OK) {
        answer(r, status, NULL, "kv get");
        return;
    }
    if (value == NULL) {
        sd_pending_error(&r->p, SD_ERR_ITEM_NOT_FOUND, NULL);
        free(r);
        return;
    }
    char *copy = malloc(len + 1);
    memcpy(copy, value, len);
    copy[len] = '\0';
    sd_stanza *reply = sd_stanza_result(sd_pending_stanza(r->p));
    mark(reply, sd_el_add_text_child(reply, sd_stanza_el(reply), NS, "value", copy), r);
    free(copy);
    sd_pending_reply(&r->p, &reply);
    free(r);
}

static void on_kv_done(sd_db_status status, void *ud)
{
    answer(ud, status, NULL, "kv write");
}

static sd_verdict tdb_request(sd_hctx *h, sd_stanza *st, void *ud)
{
    sd_el *q = sd_stanza_payload(st);
    const char *op = sd_el_name(q);
    const sd_jid *from = sd_stanza_from(st);
    if (from == NULL || strlen(op) >= sizeof(((struct req *)0)->op))
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, NULL);
    const char *owner = sd_jid_bare(from);
    const char *key = sd_el_attr(q, "key");
    const char *null = sd_el_attr(q, "null");
    const char *text = null != NULL && strcmp(null, "1") == 0 ? NULL : sd_el_text(st, q);
    int is_set = strcmp(sd_stanza_type(st), "set") == 0;

    enum { PUT, INSERT, GET, COUNT, KV_PUT, KV_GET, KV_DELETE } what;
    if (is_set && strcmp(op, "put") == 0 && key != NULL)
        what = PUT;
    else if (is_set && strcmp(op, "insert") == 0 && key != NULL)
        what = INSERT;
    else if (!is_set && strcmp(op, "get") == 0 && key != NULL)
        what = GET;
    else if (!is_set && strcmp(op, "count") == 0)
        what = COUNT;
    else if (is_set && strcmp(op, "kv-put") == 0)
        what = KV_PUT;
    else if (!is_set && strcmp(op, "kv-get") == 0)
        what = KV_GET;
    else if (is_set && strcmp(op, "kv-delete") == 0)
        what = KV_DELETE;
    else
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "unknown request");

    /* Deferred before the statement starts: its callback may in principle run at once. */
    struct req *r = calloc(1, sizeof(*r));
    snprintf(r->op, sizeof(r->op), "%s", op);
    r->started = sd_worker_current();
    r->p = sd_hctx_defer(h);
    const char *params[3] = {owner, key, text};
    const char *v = sd_el_text(st, q);
    int rc = -1;
    switch (what) {
    case PUT:
        rc = sd_db_exec(st_put, params, 3, on_write, r);
        break;
    case INSERT:
        rc = sd_db_exec(st_insert, params, 3, on_write, r);
        break;
    case GET:
        rc = sd_db_exec(st_get, params, 2, on_get, r);
        break;
    case COUNT:
        rc = sd_db_exec(st_count, params, 1, on_count, r);
        break;
    case KV_PUT:
        rc = sd_kv_put(tdb_mod, "test", owner, v, strlen(v), on_kv_done, r);
        break;
    case KV_GET:
        rc = sd_kv_get(tdb_mod, "test", owner, on_kv_get, r);
        break;
    case KV_DELETE:
        rc = sd_kv_delete(tdb_mod, "test", owner, on_kv_done, r);
        break;
    }
    if (rc < 0) {
        sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, "cannot run the statement");
        free(r);
    }
    return SD_LATER;
}

static int tdb_load(sd_module *m, const char **error_r)
{
    tdb_mod = m;
    st_put = sd_db_prepare(m,
                           "INSERT INTO test_db_items (owner, k, v) VALUES ($1, $2, $3) "
                           "ON CONFLICT (owner, k) DO UPDATE SET v = EXCLUDED.v, "
                           "updated = test_db_items.updated + 1",
                           3);
    st_insert = sd_db_prepare(m, "INSERT INTO test_db_items (owner, k, v) VALUES ($1, $2, $3)", 3);
    st_get =
        sd_db_prepare(m, "SELECT v, updated FROM test_db_items WHERE owner = $1 AND k = $2", 2);
    st_count = sd_db_prepare(m, "SELECT count(*) FROM test_db_items WHERE owner = $1", 1);
    if (st_put == NULL || st_insert == NULL || st_get == NULL || st_count == NULL) {
        *error_r = "cannot prepare the statements";
        return -1;
    }
    if (sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS, NULL, 0, tdb_request, NULL) < 0) {
        *error_r = "cannot register the handler";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "test_db", .version = "test", .migrations = tdb_migrations, .load = tdb_load);
