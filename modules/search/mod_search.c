/*
 * mod_search — user directory search (XEP-0055) over the vCards, with paging (XEP-0059).
 *
 * Where. The service is each virtual host itself (to='example.org'), found through its
 * disco#info (identity directory/user, feature jabber:iq:search). A search.<host> subdomain
 * would need the core to route a domain that is not a configured host to a module, which it
 * does not do (such stanzas get <remote-server-not-found/>), and would need a certificate name
 * of its own once federation exists; the host itself needs nothing.
 *
 * Who. Accounts of the host search the directory of their own host; a request to another host
 * of this server gets <forbidden/> (virtual hosts are often separate tenants). Only accounts
 * that are findable appear: their own choice, else the host's `findable_default`.
 *
 * Data. The searched fields are mod_vcard's table vcard_search (full name, given name, family
 * name, nickname, e-mail, and the account's findable choice), filled from every vCard change;
 * its indexes live with it in mod_vcard's migrations, so this module requires vcard and has no
 * tables of its own.
 *
 * Queries. get: instructions, the legacy fields (first, last, nick, email) and a data form
 * (FORM_TYPE jabber:iq:search: first, last, nick, email and a full-name field named in Clark
 * notation, {urn:stanzad:search}fullname, as XEP-0068 asks of fields the XSF did not register).
 * set: the legacy fields or the form; results as <item jid=…/> elements with the legacy fields,
 * or a form of type 'result' with <reported/> and items, whichever the request used. Fields
 * given together must all match. Matching ignores case: a name or nickname of three characters
 * or more matches anywhere in the field, a shorter one at its start; an e-mail address must be
 * complete (`email_match = "exact"`, so the directory cannot be combed for every address of a
 * domain) or, with "substring", matches like a name. A request with no field filled in gets
 * <not-acceptable/>: XEP-0055 does not say, the request is well-formed, and RFC 6120 §8.3.3.9
 * names the condition for a request that lacks what the server needs to process it.
 *
 * Each search is one statement, chosen by the field that drives it (the complete e-mail address
 * when given, else the longest value): that field's index finds the candidates (a pg_trgm GIN
 * index per field, a b-tree for whole addresses), the other fields filter them. Results are in
 * username order, so a page's UIDs (the JIDs) say where the next page starts: <after/>,
 * <before/> (empty: the last page), <index/> and <max/> (capped at `max_results`, which is also
 * the page size when no <max/> is given) all work, with <count/> and <first index=…/>. When a
 * result is cut short without an RSM request, the <set/> is included anyway (XEP-0059 §1).
 *
 * Opting in and out. A private iq to one's host (or to no one),
 *   <visibility xmlns='urn:stanzad:search:visibility'/>,
 * reads the account's setting (get: findable='true|false' and default='true' while the account
 * has not chosen) and changes it (set with findable='true', 'false' or 'default'). It is not
 * part of jabber:iq:register (mod_register's) nor of the vCard (which others can read).
 */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

#include "vcard_text.h"

#define NS_SEARCH     "jabber:iq:search"
#define NS_DATA       "jabber:x:data"
#define NS_RSM        "http://jabber.org/protocol/rsm"
#define NS_VISIBILITY "urn:stanzad:search:visibility"
#define VAR_FULLNAME  "{urn:stanzad:search}fullname"

/* Longest search value accepted, in bytes. */
#define VALUE_MAX 256

struct search_conf {
    int findable_default;
    int64_t max_results;
    int email_match;
};

enum { EMAIL_EXACT, EMAIL_SUBSTRING };
static const char *const email_choices[] = {"exact", "substring", NULL};

static const sd_setting search_settings[] = {
    {"findable_default", SD_SETTING_BOOL, offsetof(struct search_conf, findable_default), "true", 0,
     0, NULL, "accounts that did not choose appear in search results"},
    {"max_results", SD_SETTING_INT, offsetof(struct search_conf, max_results), "50", 1, 1000, NULL,
     "most results in one page (also the page size when the client asks for none)"},
    {"email_match", SD_SETTING_ENUM, offsetof(struct search_conf, email_match), "exact", 0, 0,
     email_choices, "e-mail addresses match only when complete (exact), or anywhere (substring)"},
    SD_SETTINGS_END,
};

static const char *const search_requires[] = {"vcard", NULL};

/* The searchable fields, in the order of the statement parameters $4..$8. */
enum { F_FULLNAME, F_GIVEN, F_FAMILY, F_NICKNAME, F_EMAIL, NFIELDS };
static const char *const field_column[NFIELDS] = {"fullname", "given", "family", "nickname",
                                                  "email"};
/* Legacy element / form var of each field (XEP-0055 §3 and its registry). */
static const char *const field_var[NFIELDS] = {VAR_FULLNAME, "first", "last", "nick", "email"};
static const char *const field_label[NFIELDS] = {"Full name", "Given name", "Family name",
                                                 "Nickname", "E-mail address"};

/* What drives a search: a field's trigram index, or the whole e-mail address. */
enum { DRIVE_EMAIL_EXACT = NFIELDS, NDRIVES };

static sd_module *search_mod;
static sd_stmt *st_forward[NDRIVES], *st_backward[NDRIVES];
static sd_stmt *st_vis_get, *st_vis_set;

/* ---- statements ---- */

static sd_stmt *prepare_search(sd_module *m, int drive, bool backward)
{
    char cond[96];
    if (drive == DRIVE_EMAIL_EXACT)
        snprintf(cond, sizeof(cond), "lower(v.email) = lower($3::text)");
    else
        snprintf(cond, sizeof(cond), "lower(v.%s) LIKE lower($3::text)", field_column[drive]);
    /* $1 host, $2 default findable, $3 the driving value, $4..$8 the fields ('' = any), $9 the
     * cursor (a username, '' = none), $10 offset, $11 page size. One row at least: the counts,
     * with the page's rows (NULL when it is empty). */
    char sql[2048];
    int n = snprintf(
        sql, sizeof(sql),
        "WITH m AS MATERIALIZED ("
        "SELECT v.username, v.fullname, v.given, v.family, v.nickname, v.email"
        " FROM vcard_search v"
        " WHERE %s AND v.host = $1::text AND coalesce(v.findable, $2::boolean)"
        " AND ($4::text = '' OR lower(v.fullname) LIKE lower($4))"
        " AND ($5::text = '' OR lower(v.given) LIKE lower($5))"
        " AND ($6::text = '' OR lower(v.family) LIKE lower($6))"
        " AND ($7::text = '' OR lower(v.nickname) LIKE lower($7))"
        " AND ($8::text = '' OR lower(v.email) LIKE lower($8)))"
        " SELECT n.total, n.before, p.username, p.fullname, p.given, p.family, p.nickname,"
        " p.email FROM (SELECT (SELECT count(*) FROM m) AS total,"
        " (SELECT count(*) FROM m WHERE %s) AS before) n"
        " LEFT JOIN LATERAL (SELECT * FROM m WHERE %s ORDER BY m.username %s"
        " OFFSET $10::bigint LIMIT $11::bigint) p ON true"
        " ORDER BY p.username",
        cond, backward ? "$9::text = '' OR m.username < $9" : "m.username <= $9::text",
        backward ? "$9 = '' OR m.username < $9" : "m.username > $9", backward ? "DESC" : "ASC");
    if (n < 0 || (size_t)n >= sizeof(sql))
        return NULL;
    return sd_db_prepare(m, sql, 11);
}

/* ---- requests ---- */

struct rsm {
    bool present;
    bool has_max, has_before, has_index;
    long max, index;
    const char *after, *before; /* borrowed from the request; NULL when absent */
};

/* A search waiting for the database. */
struct search_req {
    sd_pending *p;
    bool form;          /* answer with a data form */
    bool rsm_requested; /* the request had a <set/> */
    bool backward;
    long offset;
    char *host;
};

static void req_free(struct search_req *r)
{
    free(r->host);
    free(r);
}

/* Trimmed, with runs of white space made one space, as mod_vcard stores the columns: a malloc'd
 * copy ("" for NULL). */
static char *clean(const char *s)
{
    return vc_clean_text(s, 0);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* A LIKE pattern for value: %, _ and \ escaped; anywhere for three characters or more, else at
 * the start (a trigram index cannot look for one or two characters anywhere). */
static char *like_pattern(const char *value)
{
    size_t n = strlen(value);
    char *out = malloc(2 * n + 3), *o = out;
    if (out == NULL)
        return NULL;
    bool anywhere = utf8_chars(value) >= 3;
    if (anywhere)
        *o++ = '%';
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '%';
    *o = '\0';
    return out;
}

/* A non-negative decimal number, or -1. */
static long parse_count(const char *s)
{
    if (s == NULL)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0' && v >= 0 && v < INT_MAX ? v : -1;
}

static const char *rsm_read(sd_stanza *st, sd_el *query, struct rsm *r)
{
    memset(r, 0, sizeof(*r));
    sd_el *set = sd_el_child(query, NS_RSM, "set");
    if (set == NULL)
        return NULL;
    r->present = true;
    const char *t;
    if ((t = sd_el_child_text(st, set, NS_RSM, "max")) != NULL) {
        if ((r->max = parse_count(t)) < 0)
            return "RSM <max/> must be a number";
        r->has_max = true;
    }
    if ((t = sd_el_child_text(st, set, NS_RSM, "index")) != NULL) {
        if ((r->index = parse_count(t)) < 0)
            return "RSM <index/> must be a number";
        r->has_index = true;
    }
    r->after = sd_el_child_text(st, set, NS_RSM, "after");
    r->before = sd_el_child_text(st, set, NS_RSM, "before");
    r->has_before = r->before != NULL;
    if (r->after != NULL && r->after[0] == '\0')
        return "RSM <after/> must not be empty";
    return NULL;
}

/* The username in an RSM UID (the JID we gave out), as a malloc'd string. */
static char *uid_username(const char *uid)
{
    char *u = clean(uid);
    if (u != NULL) {
        char *at = strchr(u, '@');
        if (at != NULL)
            *at = '\0';
    }
    return u;
}

/* The value of a submitted form field (first <value/>), or NULL. */
static const char *form_value(sd_stanza *st, sd_el *x, const char *var)
{
    for (sd_el *f = sd_el_child(x, NS_DATA, "field"); f != NULL;
         f = sd_el_next(f, NS_DATA, "field")) {
        const char *v = sd_el_attr(f, "var");
        if (v != NULL && strcmp(v, var) == 0)
            return sd_el_child_text(st, f, NS_DATA, "value");
    }
    return NULL;
}

static void add_field_value(sd_stanza *st, sd_el *parent, const char *var, const char *value)
{
    sd_el *f = sd_el_add(st, parent, NS_DATA, "field");
    sd_el_set_attr(st, f, "var", var);
    sd_el_add_text_child(st, f, NULL, "value", value != NULL ? value : "");
}

static void add_form_type(sd_stanza *st, sd_el *x)
{
    sd_el *f = sd_el_add(st, x, NS_DATA, "field");
    sd_el_set_attr(st, f, "type", "hidden");
    sd_el_set_attr(st, f, "var", "FORM_TYPE");
    sd_el_add_text_child(st, f, NULL, "value", NS_SEARCH);
}

/* ---- get: the fields ---- */

static sd_verdict search_get(sd_hctx *h, sd_stanza *st, const struct search_conf *c)
{
    sd_stanza *reply = sd_stanza_result(st);
    if (reply == NULL)
        return sd_reply_error(h, st, SD_ERR_RESOURCE_CONSTRAINT, NULL);
    const char *how = c->email_match == EMAIL_EXACT
                          ? "Fill in one or more fields to find users of this server. Case does "
                            "not matter; a name or nickname of three letters or more is found "
                            "anywhere in the field, a shorter one at its start; an e-mail "
                            "address must be complete."
                          : "Fill in one or more fields to find users of this server. Case does "
                            "not matter; a value of three letters or more is found anywhere in "
                            "the field, a shorter one at its start.";
    sd_el *q = sd_el_add(reply, sd_stanza_el(reply), NS_SEARCH, "query");
    sd_el_add_text_child(reply, q, NULL, "instructions", how);
    for (int i = F_GIVEN; i < NFIELDS; i++)
        sd_el_add(reply, q, NULL, field_var[i]);
    sd_el *x = sd_el_add(reply, q, NS_DATA, "x");
    sd_el_set_attr(reply, x, "type", "form");
    sd_el_add_text_child(reply, x, NULL, "title", "User directory");
    sd_el_add_text_child(reply, x, NULL, "instructions", how);
    add_form_type(reply, x);
    for (int i = 0; i < NFIELDS; i++) {
        sd_el *f = sd_el_add(reply, x, NULL, "field");
        sd_el_set_attr(reply, f, "type", "text-single");
        sd_el_set_attr(reply, f, "var", field_var[i]);
        sd_el_set_attr(reply, f, "label", field_label[i]);
    }
    sd_reply(h, &reply);
    return SD_DONE;
}

/* ---- set: searching ---- */

static void add_set(sd_stanza *st, sd_el *q, const char *first, long first_index, const char *last,
                    int64_t total)
{
    char num[32];
    sd_el *set = sd_el_add(st, q, NS_RSM, "set");
    if (first != NULL) {
        sd_el *f = sd_el_add_text_child(st, set, NULL, "first", first);
        snprintf(num, sizeof(num), "%ld", first_index);
        sd_el_set_attr(st, f, "index", num);
        sd_el_add_text_child(st, set, NULL, "last", last);
    }
    snprintf(num, sizeof(num), "%" PRId64, total);
    sd_el_add_text_child(st, set, NULL, "count", num);
}

static void searched(sd_dbres *res, void *ud)
{
    struct search_req *r = ud;
    if (sd_dbres_status(res) != SD_DB_OK) {
        sd_log(search_mod, SD_LOG_WARN, "search failed: %s", sd_dbres_error(res));
        sd_pending_error(&r->p,
                         sd_dbres_status(res) == SD_DB_UNAVAILABLE ? SD_ERR_RESOURCE_CONSTRAINT
                                                                   : SD_ERR_INTERNAL_SERVER_ERROR,
                         NULL);
        req_free(r);
        return;
    }
    sd_stanza *reply = sd_stanza_result(sd_pending_stanza(r->p));
    if (reply == NULL) {
        sd_pending_error(&r->p, SD_ERR_RESOURCE_CONSTRAINT, NULL);
        req_free(r);
        return;
    }
    int64_t total = 0, before = 0;
    if (sd_dbres_rows(res) > 0) {
        sd_dbres_int64(res, 0, 0, &total);
        sd_dbres_int64(res, 0, 1, &before);
    }
    sd_el *q = sd_el_add(reply, sd_stanza_el(reply), NS_SEARCH, "query");
    sd_el *x = NULL;
    if (r->form) {
        x = sd_el_add(reply, q, NS_DATA, "x");
        sd_el_set_attr(reply, x, "type", "result");
        add_form_type(reply, x);
        sd_el *rep = sd_el_add(reply, x, NULL, "reported");
        sd_el *f = sd_el_add(reply, rep, NULL, "field");
        sd_el_set_attr(reply, f, "var", "jid");
        sd_el_set_attr(reply, f, "label", "JID");
        sd_el_set_attr(reply, f, "type", "jid-single");
        for (int i = 0; i < NFIELDS; i++) {
            f = sd_el_add(reply, rep, NULL, "field");
            sd_el_set_attr(reply, f, "var", field_var[i]);
            sd_el_set_attr(reply, f, "label", field_label[i]);
            sd_el_set_attr(reply, f, "type", "text-single");
        }
    }
    char *first = NULL, *last = NULL;
    long items = 0;
    for (int row = 0; row < sd_dbres_rows(res); row++) {
        const char *user = sd_dbres_value(res, row, 2);
        if (user == NULL)
            continue; /* an empty page */
        char jid[1100];
        snprintf(jid, sizeof(jid), "%s@%s", user, r->host);
        if (first == NULL)
            first = strdup(jid);
        free(last);
        last = strdup(jid);
        items++;
        /* columns 3.. are fullname, given, family, nickname, email */
        if (x != NULL) {
            sd_el *item = sd_el_add(reply, x, NULL, "item");
            add_field_value(reply, item, "jid", jid);
            for (int i = 0; i < NFIELDS; i++)
                add_field_value(reply, item, field_var[i], sd_dbres_value(res, row, 3 + i));
        } else {
            sd_el *item = sd_el_add(reply, q, NULL, "item");
            sd_el_set_attr(reply, item, "jid", jid);
            for (int i = F_GIVEN; i < NFIELDS; i++) {
                const char *v = sd_dbres_value(res, row, 3 + i);
                sd_el_add_text_child(reply, item, NULL, field_var[i], v != NULL ? v : "");
            }
        }
    }
    if (r->rsm_requested || total > items) {
        long index = r->backward ? (long)before - items : (long)before + r->offset;
        add_set(reply, q, first, index < 0 ? 0 : index, last, total);
    }
    free(first);
    free(last);
    sd_pending_reply(&r->p, &reply);
    req_free(r);
}

static sd_verdict search_set(sd_hctx *h, sd_stanza *st, sd_el *query, const struct search_conf *c)
{
    char *values[NFIELDS] = {0};
    char *patterns[NFIELDS] = {0};
    char *cursor = NULL;
    char why[80];
    const char *problem = NULL;
    sd_error cond = SD_ERR_BAD_REQUEST;
    bool form = false;
    struct rsm rsm;
    if ((problem = rsm_read(st, query, &rsm)) != NULL)
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, problem);

    sd_el *x = sd_el_child(query, NS_DATA, "x");
    if (x != NULL) {
        const char *type = sd_el_attr(x, "type"), *ft = form_value(st, x, "FORM_TYPE");
        if (type != NULL && strcmp(type, "submit") != 0)
            return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "the form must be of type submit");
        if (ft != NULL && strcmp(ft, NS_SEARCH) != 0)
            return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "FORM_TYPE is not jabber:iq:search");
        form = true;
    }
    int given = 0;
    for (int i = 0; i < NFIELDS && problem == NULL; i++) {
        const char *raw = form ? form_value(st, x, field_var[i])
                               : sd_el_child_text(st, query, NS_SEARCH, field_var[i]);
        if ((values[i] = clean(raw)) == NULL) {
            problem = "out of memory";
            cond = SD_ERR_RESOURCE_CONSTRAINT;
        } else if (strlen(values[i]) > VALUE_MAX) {
            snprintf(why, sizeof(why), "%s: too long (at most %d bytes)",
                     i == F_FULLNAME ? "full name" : field_var[i], VALUE_MAX);
            problem = why;
            cond = SD_ERR_NOT_ACCEPTABLE;
        } else if (values[i][0] != '\0') {
            given++;
        }
    }
    if (problem == NULL && given == 0) {
        problem = "fill in at least one field";
        cond = SD_ERR_NOT_ACCEPTABLE;
    }
    /* The driving field: the whole address when it must match completely, else the longest
     * value (the most trigrams, the fewest candidates). */
    int drive = -1;
    if (problem == NULL && c->email_match == EMAIL_EXACT && values[F_EMAIL][0] != '\0')
        drive = DRIVE_EMAIL_EXACT;
    for (int i = 0; problem == NULL && drive < 0 && i < NFIELDS; i++)
        if (values[i][0] != '\0')
            drive = i;
    for (int i = 0; problem == NULL && drive < DRIVE_EMAIL_EXACT && i < NFIELDS; i++)
        if (utf8_chars(values[i]) > utf8_chars(values[drive]))
            drive = i;
    char *drive_value = NULL;
    for (int i = 0; problem == NULL && i < NFIELDS; i++) {
        if (i == drive) {
            /* Its index finds the candidates: no need to filter them on it again. */
            patterns[i] = strdup("");
            drive_value = like_pattern(values[i]);
        } else if (values[i][0] == '\0' || (i == F_EMAIL && drive == DRIVE_EMAIL_EXACT)) {
            patterns[i] = strdup("");
        } else {
            patterns[i] = like_pattern(values[i]);
        }
        if (patterns[i] == NULL || (i == drive && drive_value == NULL)) {
            problem = "out of memory";
            cond = SD_ERR_RESOURCE_CONSTRAINT;
        }
    }
    struct search_req *r = NULL;
    if (problem == NULL) {
        r = calloc(1, sizeof(*r));
        cursor = uid_username(rsm.has_before ? rsm.before : rsm.after ? rsm.after : "");
        if (r == NULL || cursor == NULL || (r->host = strdup(sd_hctx_host(h))) == NULL) {
            problem = "out of memory";
            cond = SD_ERR_RESOURCE_CONSTRAINT;
        }
    }
    if (problem != NULL) {
        for (int i = 0; i < NFIELDS; i++) {
            free(values[i]);
            free(patterns[i]);
        }
        free(cursor);
        free(drive_value);
        if (r != NULL)
            req_free(r);
        return sd_reply_error(h, st, cond, problem);
    }
    long limit = rsm.has_max && rsm.max < c->max_results ? rsm.max : (long)c->max_results;
    r->form = form;
    r->rsm_requested = rsm.present;
    r->backward = rsm.has_before;
    r->offset = !rsm.has_before && rsm.after == NULL && rsm.has_index ? rsm.index : 0;
    char offset[32], page[32];
    snprintf(offset, sizeof(offset), "%ld", r->offset);
    snprintf(page, sizeof(page), "%ld", limit);
    const char *params[11] = {
        r->host,
        c->findable_default ? "true" : "false",
        drive == DRIVE_EMAIL_EXACT ? values[F_EMAIL] : drive_value,
        patterns[F_FULLNAME],
        patterns[F_GIVEN],
        patterns[F_FAMILY],
        patterns[F_NICKNAME],
        patterns[F_EMAIL],
        cursor,
        offset,
        page,
    };
    r->p = sd_hctx_defer(h);
    sd_stmt *stmt = r->backward ? st_backward[drive] : st_forward[drive];
    if (sd_db_exec(stmt, params, 11, searched, r) < 0) {
        sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
        req_free(r);
    }
    for (int i = 0; i < NFIELDS; i++) {
        free(values[i]);
        free(patterns[i]);
    }
    free(cursor);
    free(drive_value);
    return SD_LATER;
}

/* The requester must be an account of the host searched. */
static bool own_host(sd_hctx *h, sd_stanza *st)
{
    const sd_jid *from = sd_stanza_from(st);
    return from != NULL && sd_jid_local(from) != NULL &&
           strcmp(sd_jid_domain(from), sd_hctx_host(h)) == 0;
}

static sd_verdict search_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    const struct search_conf *c = sd_module_config(search_mod, sd_hctx_host(h));
    sd_el *query = sd_stanza_payload(st);
    if (c == NULL || query == NULL)
        return SD_PASS;
    if (!own_host(h, st))
        return sd_reply_error(h, st, SD_ERR_FORBIDDEN,
                              "this directory is open to accounts of its own server only");
    const char *type = sd_stanza_type(st);
    if (type != NULL && strcmp(type, "get") == 0)
        return search_get(h, st, c);
    return search_set(h, st, query, c);
}

/* ---- opting in and out ---- */

struct vis_req {
    sd_pending *p;
    int findable_default;
};

static void vis_done(sd_dbres *res, void *ud)
{
    struct vis_req *r = ud;
    sd_stanza *iq = sd_pending_stanza(r->p);
    const char *type = sd_stanza_type(iq);
    bool get = type != NULL && strcmp(type, "get") == 0;
    if (sd_dbres_status(res) != SD_DB_OK) {
        sd_log(search_mod, SD_LOG_WARN, "cannot %s the findable setting: %s",
               get ? "read" : "store", sd_dbres_error(res));
        sd_pending_error(&r->p,
                         sd_dbres_status(res) == SD_DB_UNAVAILABLE ? SD_ERR_RESOURCE_CONSTRAINT
                                                                   : SD_ERR_INTERNAL_SERVER_ERROR,
                         NULL);
    } else if (!get) {
        sd_stanza *reply = sd_stanza_result(iq);
        sd_pending_reply(&r->p, &reply);
    } else {
        const char *v = sd_dbres_rows(res) == 1 ? sd_dbres_value(res, 0, 0) : NULL;
        bool chosen = v != NULL;
        bool findable = chosen ? strcmp(v, "t") == 0 : r->findable_default;
        sd_stanza *reply = sd_stanza_result(iq);
        if (reply != NULL) {
            sd_el *vis = sd_el_add(reply, sd_stanza_el(reply), NS_VISIBILITY, "visibility");
            sd_el_set_attr(reply, vis, "findable", findable ? "true" : "false");
            sd_el_set_attr(reply, vis, "default", chosen ? "false" : "true");
        }
        sd_pending_reply(&r->p, &reply);
    }
    free(r);
}

static sd_verdict visibility_iq(sd_hctx *h, sd_stanza *st, void *ud)
{
    const struct search_conf *c = sd_module_config(search_mod, sd_hctx_host(h));
    const sd_jid *from = sd_stanza_from(st);
    if (c == NULL)
        return SD_PASS;
    if (!own_host(h, st))
        return sd_reply_error(h, st, SD_ERR_NOT_ALLOWED,
                              "ask your own server about your own account");
    const char *type = sd_stanza_type(st);
    bool get = type != NULL && strcmp(type, "get") == 0;
    const char *value = NULL;
    if (!get) {
        const char *f = sd_el_attr(sd_stanza_payload(st), "findable");
        if (f == NULL)
            return sd_reply_error(h, st, SD_ERR_BAD_REQUEST,
                                  "findable='true', 'false' or 'default' is required");
        if (strcmp(f, "true") == 0 || strcmp(f, "1") == 0)
            value = "true";
        else if (strcmp(f, "false") == 0 || strcmp(f, "0") == 0)
            value = "false";
        else if (strcmp(f, "default") != 0)
            return sd_reply_error(h, st, SD_ERR_BAD_REQUEST,
                                  "findable must be 'true', 'false' or 'default'");
    }
    struct vis_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return sd_reply_error(h, st, SD_ERR_RESOURCE_CONSTRAINT, NULL);
    r->findable_default = c->findable_default;
    const char *params[] = {sd_jid_domain(from), sd_jid_local(from), value};
    r->p = sd_hctx_defer(h);
    if (sd_db_exec(get ? st_vis_get : st_vis_set, params, get ? 2 : 3, vis_done, r) < 0) {
        sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
        free(r);
    }
    return SD_LATER;
}

/* ---- loading ---- */

static int search_load(sd_module *m, const char **error_r)
{
    search_mod = m;
    for (int d = 0; d < NDRIVES; d++) {
        st_forward[d] = prepare_search(m, d, false);
        st_backward[d] = prepare_search(m, d, true);
        if (st_forward[d] == NULL || st_backward[d] == NULL) {
            *error_r = "cannot prepare the search statements";
            return -1;
        }
    }
    st_vis_get = sd_db_prepare(m,
                               "SELECT findable FROM vcard_search"
                               " WHERE host = $1 AND username = $2",
                               2);
    /* An account without a vCard gets a row with empty fields, just for its choice. */
    st_vis_set =
        sd_db_prepare(m,
                      "INSERT INTO vcard_search (account_id, host, username, findable)"
                      " SELECT id, host, username, $3::boolean FROM accounts"
                      " WHERE host = $1 AND username = $2"
                      " ON CONFLICT (account_id) DO UPDATE SET findable = EXCLUDED.findable",
                      3);
    if (st_vis_get == NULL || st_vis_set == NULL) {
        *error_r = "cannot prepare the statements";
        return -1;
    }
    if (sd_add_identity(m, SD_DISCO_SERVER, "directory", "user", "User directory") < 0 ||
        sd_add_feature(m, SD_DISCO_SERVER, NS_SEARCH) < 0 ||
        sd_add_feature(m, SD_DISCO_SERVER, NS_RSM) < 0 ||
        sd_add_feature(m, SD_DISCO_SERVER, NS_VISIBILITY) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET | SD_IQ_SET, NS_SEARCH, "query", 0, search_iq, NULL) <
            0 ||
        sd_hook_iq(m, SD_TO_HOST | SD_TO_SELF, SD_IQ_GET | SD_IQ_SET, NS_VISIBILITY, "visibility",
                   0, visibility_iq, NULL) < 0) {
        *error_r = "cannot register the handlers";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "search", .version = SD_VERSION_STRING, .requires = search_requires,
          .settings = search_settings, .config_size = sizeof(struct search_conf),
          .load = search_load);
