/*
 * mod_vcard — vcard-temp (XEP-0054) and the vCard-based avatar hash (XEP-0153).
 *
 * Storage. A vCard is stored as the text sd_el_to_string() makes of it, in vcard_cards, with the
 * SHA-1 of its decoded PHOTO/BINVAL and a version that grows at every change. The fields people
 * search for — full name (FN, or GIVEN and FAMILY), given name, family name, nickname, e-mail —
 * are copied on every change into vcard_search, a narrow table with the account's host and
 * username and a `findable` choice (NULL: the account never chose, the search module's default
 * applies). vcard_search and its indexes belong to this module, next to the data they index;
 * mod_search only reads them (and writes `findable`), which is why it requires this module. Both
 * tables reference accounts(id) ON DELETE CASCADE, so a deleted account takes its vCard along.
 * Registration extras with no place in a vCard (gender, age, ...) go to vcard_extra.
 *
 * Protocol. An iq get/set with <vCard xmlns='vcard-temp'/> and no 'to' (or to one's own bare JID)
 * reads or replaces one's own vCard; none stored yet reads as an empty <vCard/> (XEP-0054 §3.1
 * allows that or <item-not-found/>; clients handle the empty one best). A get to another
 * account's bare JID is answered by the server for the account; no vCard, and no such account,
 * both give <service-unavailable/> (XEP-0054 1.3 §3.3: one answer for both, against directory
 * harvesting). A set to another account's JID gets <forbidden/>. A vCard larger than `max_size`
 * (as stored) gets <not-acceptable/> with the limit in the text: the request is understood but
 * does not meet this server's criteria (RFC 6120 §8.3.3.9), and the client can send a smaller
 * one; <policy-violation/> is for content the service prohibits. A PHOTO/BINVAL that is not
 * base64 gets <bad-request/>.
 *
 * New accounts. On SD_EV_ACCOUNT_CREATED with a registration element (XEP-0077 <query/>, legacy
 * fields and/or a jabber:x:data form), the first vCard is made from it: email -> EMAIL/USERID,
 * nick or nickname -> NICKNAME, name or fullname -> FN, first/last -> N/GIVEN and N/FAMILY,
 * url -> URL, phone -> TEL/NUMBER, address/city/state/zip -> ADR. Other fields are kept in
 * vcard_extra (field, value), except credentials and tokens (username, password..., FORM_TYPE,
 * hidden and text-private fields, names with token/captcha/invite/secret). A vCard the user
 * already set is never overwritten by this.
 *
 * Avatar hash (XEP-0153). Every session has a small record (session data) with the photo hash of
 * its account, loaded when the resource is bound; the records of one worker are also in a hash
 * table by bare JID. An SD_FILTER_IN filter replaces any <x xmlns='vcard-temp:x:update'/> of the
 * session's available presence (broadcast or directed) with the server's own:
 * <photo>sha1</photo>, or an empty <photo/> when the vCard has no photo (XEP-0153 §3.2: "no
 * avatar"). No database query per presence. While the record is still loading, the presence
 * waits (deferred) for it. When the vCard changes, the new hash goes to the records of that
 * account on every worker (sd_post); the version keeps an older answer from overwriting a newer
 * one. The server does not re-send presence itself: XEP-0153 §3.1 has the client that uploaded
 * a new avatar publish presence, which then carries the new hash, and every later presence of
 * any resource of the account does too.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stanzad/stanzad.h>

#include "vcard_text.h"
#include "vcard_util.h"

#define NS_VCARD    "vcard-temp"
#define NS_UPDATE   "vcard-temp:x:update"
#define NS_REGISTER "jabber:iq:register"
#define NS_DATA     "jabber:x:data"

/* Longest value copied into a search column (bytes, cut at a character boundary). */
#define FIELD_MAX 256
/* Registration extras kept: at most this many, values cut at this length. */
#define EXTRA_MAX       32
#define EXTRA_VALUE_MAX 1024

struct vcard_conf {
    int64_t max_size;
    int from_registration;
};

static const sd_setting vcard_settings[] = {
    {"max_size", SD_SETTING_SIZE, offsetof(struct vcard_conf, max_size), "128K", 1024,
     16 * 1024 * 1024, NULL,
     "largest vCard accepted, in bytes as stored (a 64 KiB photo takes about 88 KB); keep it "
     "below limits.max_stanza_size"},
    {"from_registration", SD_SETTING_BOOL, offsetof(struct vcard_conf, from_registration), "true",
     0, 0, NULL, "make a new account's first vCard from its registration form"},
    SD_SETTINGS_END,
};

static const sd_migration vcard_migrations[] = {
    {1, "CREATE EXTENSION IF NOT EXISTS pg_trgm;"
        /* The vCards: what the client sent, as stored text. */
        "CREATE TABLE vcard_cards ("
        "  account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,"
        "  xml text NOT NULL,"
        "  photo_hash text," /* SHA-1 hex of the decoded PHOTO/BINVAL; NULL: no photo */
        "  version bigint NOT NULL,"
        "  updated_at timestamptz NOT NULL DEFAULT now());"
        /* What mod_search searches. host and username are the account's (they never change);
         * findable NULL means the account did not choose (the search default applies). */
        "CREATE TABLE vcard_search ("
        "  account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,"
        "  host text NOT NULL,"
        "  username text NOT NULL,"
        "  fullname text NOT NULL DEFAULT '',"
        "  given text NOT NULL DEFAULT '',"
        "  family text NOT NULL DEFAULT '',"
        "  nickname text NOT NULL DEFAULT '',"
        "  email text NOT NULL DEFAULT '',"
        "  findable boolean);"
        /* Case-insensitive substring and prefix matching: one trigram index per field, so any
         * field can drive a search; fastupdate off keeps search time even (vCards change
         * rarely). Whole e-mail addresses: a b-tree. */
        "CREATE INDEX vcard_search_fullname ON vcard_search"
        "  USING gin (lower(fullname) gin_trgm_ops) WITH (fastupdate = off);"
        "CREATE INDEX vcard_search_given ON vcard_search"
        "  USING gin (lower(given) gin_trgm_ops) WITH (fastupdate = off);"
        "CREATE INDEX vcard_search_family ON vcard_search"
        "  USING gin (lower(family) gin_trgm_ops) WITH (fastupdate = off);"
        "CREATE INDEX vcard_search_nickname ON vcard_search"
        "  USING gin (lower(nickname) gin_trgm_ops) WITH (fastupdate = off);"
        "CREATE INDEX vcard_search_email ON vcard_search"
        "  USING gin (lower(email) gin_trgm_ops) WITH (fastupdate = off);"
        "CREATE INDEX vcard_search_email_exact ON vcard_search (lower(email));"
        /* Registration fields that have no place in a vCard. */
        "CREATE TABLE vcard_extra ("
        "  account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,"
        "  field text NOT NULL,"
        "  value text NOT NULL,"
        "  PRIMARY KEY (account_id, field))"},
    SD_MIGRATIONS_END,
};

static sd_module *vc_mod;
static sd_stmt *st_get;   /* $1 host, $2 username -> xml */
static sd_stmt *st_hash;  /* $1 host, $2 username -> photo_hash, version */
static sd_stmt *st_set;   /* host, username, xml, hash, 5 fields -> version */
static sd_stmt *st_init;  /* the same, but only when the account has no vCard yet */
static sd_stmt *st_extra; /* host, username, fields[], values[] */

/* ---- per-session photo hash ---- */

enum { VC_LOADING, VC_KNOWN, VC_FAILED };

struct vc_load;

struct vc_sess {
    struct vc_sess *hnext; /* in the worker's table */
    struct vc_worker *w;
    sd_session *s;
    uint32_t hash;        /* of the bare JID */
    int state;            /* VC_... */
    bool retrying;        /* loading again after a failure: presence does not wait */
    int64_t version;      /* of photo[]; -1: none yet */
    struct vc_load *load; /* the query in flight, or NULL */
    char photo[41];       /* SHA-1 hex, "" when the vCard has no photo */
};

/* A load of a session's photo hash. Outlives the session if it must: the session's free
 * function clears rec; a presence deferred meanwhile is finished by the load. */
struct vc_load {
    struct vc_sess *rec;
    sd_pending *pending;
};

/* The sessions of one worker by bare JID: chained buckets, a power of two. */
struct vc_worker {
    struct vc_sess **buckets;
    size_t nbuckets, n;
};

/* A changed photo hash, on its way to a worker. */
struct vc_note {
    int64_t version;
    uint32_t hash;
    char photo[41];
    char bare[];
};

static uint32_t jid_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct vc_worker *worker_state(bool create)
{
    void **slot = sd_worker_slot(vc_mod);
    if (slot == NULL)
        return NULL;
    if (*slot == NULL && create) {
        struct vc_worker *w = calloc(1, sizeof(*w));
        if (w == NULL || (w->buckets = calloc(64, sizeof(*w->buckets))) == NULL) {
            free(w);
            return NULL;
        }
        w->nbuckets = 64;
        *slot = w;
    }
    return *slot;
}

static void table_grow(struct vc_worker *w)
{
    size_t nb = w->nbuckets * 2;
    struct vc_sess **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < w->nbuckets; i++) {
        struct vc_sess *rec = w->buckets[i], *next;
        for (; rec != NULL; rec = next) {
            next = rec->hnext;
            rec->hnext = b[rec->hash & (nb - 1)];
            b[rec->hash & (nb - 1)] = rec;
        }
    }
    free(w->buckets);
    w->buckets = b;
    w->nbuckets = nb;
}

static void table_insert(struct vc_worker *w, struct vc_sess *rec)
{
    if (w->n >= w->nbuckets)
        table_grow(w);
    struct vc_sess **head = &w->buckets[rec->hash & (w->nbuckets - 1)];
    rec->hnext = *head;
    *head = rec;
    w->n++;
}

/* The session data's free function: at session end, on the session's worker. */
static void vc_sess_free(void *data)
{
    struct vc_sess *rec = data;
    struct vc_worker *w = rec->w;
    for (struct vc_sess **link = &w->buckets[rec->hash & (w->nbuckets - 1)]; *link != NULL;
         link = &(*link)->hnext)
        if (*link == rec) {
            *link = rec->hnext;
            break;
        }
    if (rec->load != NULL)
        rec->load->rec = NULL;
    sd_free(rec);
    if (--w->n == 0) {
        /* The worker's last session: nothing of the module stays behind on it. */
        void **slot = sd_worker_slot(vc_mod);
        if (slot != NULL && *slot == w)
            *slot = NULL;
        free(w->buckets);
        free(w);
    }
}

static void set_photo(struct vc_sess *rec, int64_t version, const char *photo)
{
    rec->version = version;
    snprintf(rec->photo, sizeof(rec->photo), "%s", photo != NULL ? photo : "");
    rec->state = VC_KNOWN;
}

/* A new photo hash of an account, for the sessions of this worker. */
static void apply_note(const struct vc_note *n)
{
    struct vc_worker *w = worker_state(false);
    if (w == NULL)
        return;
    for (struct vc_sess *rec = w->buckets[n->hash & (w->nbuckets - 1)]; rec != NULL;
         rec = rec->hnext)
        if (rec->hash == n->hash && n->version > rec->version &&
            strcmp(sd_session_bare(rec->s), n->bare) == 0)
            set_photo(rec, n->version, n->photo);
}

static void note_posted(void *ud)
{
    apply_note(ud);
    free(ud);
}

/* Tells every worker's sessions of bare about a new photo hash (this worker's right away). */
static void notify_all(const char *bare, int64_t version, const char *photo)
{
    size_t blen = strlen(bare) + 1;
    int self = sd_worker_current();
    for (int i = 0; i < sd_worker_count(); i++) {
        struct vc_note *n = malloc(sizeof(*n) + blen);
        if (n == NULL)
            continue;
        n->version = version;
        n->hash = jid_hash(bare);
        snprintf(n->photo, sizeof(n->photo), "%s", photo != NULL ? photo : "");
        memcpy(n->bare, bare, blen);
        if (i == self) {
            note_posted(n);
        } else if (sd_post(i, note_posted, n) < 0) {
            free(n);
        }
    }
}

/* Replaces the presence's vcard-temp:x:update with the server's knowledge. */
static void put_update(sd_stanza *st, const struct vc_sess *rec)
{
    sd_el *pres = sd_stanza_el(st), *x;
    while ((x = sd_el_child(pres, NS_UPDATE, "x")) != NULL)
        sd_el_remove(pres, x);
    x = sd_el_add(st, pres, NS_UPDATE, "x");
    if (rec->photo[0] != '\0')
        sd_el_add_text_child(st, x, NULL, "photo", rec->photo);
    else
        sd_el_add(st, x, NULL, "photo");
}

static void hash_loaded(sd_dbres *res, void *ud)
{
    struct vc_load *load = ud;
    struct vc_sess *rec = load->rec;
    if (rec != NULL) {
        rec->load = NULL;
        if (sd_dbres_status(res) == SD_DB_OK) {
            int64_t version = 0;
            const char *photo = NULL;
            if (sd_dbres_rows(res) == 1) {
                photo = sd_dbres_value(res, 0, 0);
                sd_dbres_int64(res, 0, 1, &version);
            }
            /* A newer hash may have come meanwhile (a change on another worker). */
            if (version > rec->version)
                set_photo(rec, version, photo);
        } else {
            sd_log(vc_mod, SD_LOG_WARN, "cannot load the photo hash of %s: %s",
                   sd_session_full(rec->s), sd_dbres_error(res));
            if (rec->state == VC_LOADING)
                rec->state = VC_FAILED;
        }
    }
    if (load->pending != NULL) {
        if (sd_pending_session(load->pending) == NULL) {
            sd_pending_done(&load->pending); /* the session is gone: nothing to broadcast */
        } else {
            if (rec != NULL && rec->state == VC_KNOWN)
                put_update(sd_pending_stanza(load->pending), rec);
            sd_pending_pass(&load->pending);
        }
    }
    free(load);
}

/* Splits a bare JID into its parts, as a parsed JID (free with sd_jid_free). */
static sd_jid *bare_parts(const char *bare)
{
    sd_jid *j = sd_jid_new(bare);
    if (j != NULL && sd_jid_local(j) == NULL)
        sd_jid_free(&j);
    return j;
}

/* Asks the database for the photo hash of rec's account (state VC_LOADING, or VC_FAILED when
 * the query cannot even be sent). */
static void start_load(struct vc_sess *rec)
{
    struct vc_load *load = calloc(1, sizeof(*load));
    sd_jid *j = bare_parts(sd_session_bare(rec->s));
    rec->state = VC_FAILED;
    if (load != NULL && j != NULL) {
        const char *params[] = {sd_jid_domain(j), sd_jid_local(j)};
        load->rec = rec;
        rec->load = load;
        rec->state = VC_LOADING;
        if (sd_db_exec(st_hash, params, 2, hash_loaded, load) < 0) {
            rec->load = NULL;
            rec->state = VC_FAILED;
            free(load);
        }
    } else {
        free(load);
    }
    sd_jid_free(&j);
}

static void vc_bound(sd_hctx *h, sd_event *ev, void *ud)
{
    sd_session *s = sd_event_session(ev);
    struct vc_worker *w = worker_state(true);
    if (w == NULL)
        return;
    struct vc_sess *rec = sd_alloc(sizeof(*rec));
    rec->w = w;
    rec->s = s;
    rec->hash = jid_hash(sd_session_bare(s));
    rec->version = -1;
    rec->state = VC_LOADING;
    /* Another session of the account on this worker already knows the hash. */
    for (struct vc_sess *o = w->buckets[rec->hash & (w->nbuckets - 1)]; o != NULL; o = o->hnext)
        if (o->hash == rec->hash && o->state == VC_KNOWN &&
            strcmp(sd_session_bare(o->s), sd_session_bare(s)) == 0) {
            set_photo(rec, o->version, o->photo);
            break;
        }
    table_insert(w, rec);
    sd_session_set_data(s, vc_mod, rec, vc_sess_free);
    if (rec->state != VC_KNOWN)
        start_load(rec);
}

/* Available presence from a session: the photo hash goes in. */
static sd_verdict vc_presence_in(sd_hctx *h, sd_stanza *st, void *ud)
{
    if (sd_stanza_kind(st) != SD_PRESENCE || sd_stanza_type(st) != NULL)
        return SD_PASS;
    sd_session *s = sd_hctx_session(h);
    struct vc_sess *rec = s != NULL ? sd_session_get_data(s, vc_mod) : NULL;
    if (rec == NULL)
        return SD_PASS;
    if (rec->state == VC_KNOWN) {
        put_update(st, rec);
    } else if (rec->state == VC_LOADING && !rec->retrying && rec->load != NULL &&
               rec->load->pending == NULL) {
        /* Wait for the hash; the client's later stanzas wait behind this one. */
        sd_log(vc_mod, SD_LOG_DEBUG, "presence of %s waits for its photo hash", sd_session_full(s));
        rec->load->pending = sd_hctx_defer(h);
        return SD_LATER;
    } else if (rec->state == VC_FAILED) {
        /* The database failed us at bind: this presence goes without, the next one may not
         * (it does not wait: presence must not depend on the database being up). */
        rec->retrying = true;
        start_load(rec);
    }
    return SD_PASS;
}

/* ---- reading a vCard's searchable fields ---- */

struct vc_fields {
    char *fullname, *given, *family, *nickname, *email;
};

static void fields_free(struct vc_fields *f)
{
    free(f->fullname);
    free(f->given);
    free(f->family);
    free(f->nickname);
    free(f->email);
}

/* Stored search columns are cut at FIELD_MAX bytes. */
static char *clean(const char *s)
{
    return vc_clean_text(s, FIELD_MAX);
}

/* The text of ns/name under el, cleaned (never NULL unless out of memory). */
static char *child_clean(sd_stanza *st, const sd_el *el, const char *name)
{
    return clean(el != NULL ? sd_el_child_text(st, el, NS_VCARD, name) : NULL);
}

static int vcard_fields(sd_stanza *st, sd_el *vc, struct vc_fields *f)
{
    memset(f, 0, sizeof(*f));
    sd_el *n = sd_el_child(vc, NS_VCARD, "N");
    f->given = child_clean(st, n, "GIVEN");
    f->family = child_clean(st, n, "FAMILY");
    f->nickname = child_clean(st, vc, "NICKNAME");
    f->fullname = child_clean(st, vc, "FN");
    if (f->given == NULL || f->family == NULL || f->nickname == NULL || f->fullname == NULL)
        return -1;
    if (f->fullname[0] == '\0' && (f->given[0] != '\0' || f->family[0] != '\0')) {
        char both[2 * FIELD_MAX + 2];
        snprintf(both, sizeof(both), "%s %s", f->given, f->family);
        free(f->fullname);
        if ((f->fullname = clean(both)) == NULL)
            return -1;
    }
    /* E-mail: the preferred address, else the first; USERID, or the element's own text from
     * clients that put it there. */
    const char *email = NULL;
    for (sd_el *e = sd_el_child(vc, NS_VCARD, "EMAIL"); e != NULL;
         e = sd_el_next(e, NS_VCARD, "EMAIL")) {
        const char *a = sd_el_child_text(st, e, NS_VCARD, "USERID");
        if (a == NULL && sd_el_child(e, NULL, NULL) == NULL)
            a = sd_el_text(st, e);
        if (a == NULL || a[strspn(a, " \t\r\n")] == '\0')
            continue;
        if (email == NULL || sd_el_child(e, NS_VCARD, "PREF") != NULL)
            email = a;
        if (sd_el_child(e, NS_VCARD, "PREF") != NULL)
            break;
    }
    f->email = clean(email);
    return f->email != NULL ? 0 : -1;
}

/* The XEP-0153 hash of the vCard's PHOTO/BINVAL into out ("" when there is no photo). -1 when
 * BINVAL is not base64. */
static int photo_hash(sd_stanza *st, sd_el *vc, char out[41])
{
    out[0] = '\0';
    sd_el *photo = sd_el_child(vc, NS_VCARD, "PHOTO");
    const char *b64 = photo != NULL ? sd_el_child_text(st, photo, NS_VCARD, "BINVAL") : NULL;
    if (b64 == NULL || b64[strspn(b64, " \t\r\n")] == '\0')
        return 0;
    size_t len;
    unsigned char *bin = vc_base64_decode(b64, &len);
    if (bin == NULL)
        return -1;
    vc_sha1_hex(bin, len, out);
    free(bin);
    return 0;
}

/* ---- iq handlers ---- */

/* A request waiting for the database. */
struct vc_req {
    sd_pending *p;
    char *bare;
    char photo[41];
};

static void req_free(struct vc_req *r)
{
    free(r->bare);
    free(r);
}

static void db_failed(sd_pending **p, sd_dbres *res, const char *what)
{
    sd_log(vc_mod, SD_LOG_WARN, "%s: %s", what, sd_dbres_error(res));
    sd_pending_error(p,
                     sd_dbres_status(res) == SD_DB_UNAVAILABLE ? SD_ERR_RESOURCE_CONSTRAINT
                                                               : SD_ERR_INTERNAL_SERVER_ERROR,
                     NULL);
}

static void got_vcard(sd_dbres *res, void *ud)
{
    struct vc_req *r = ud;
    sd_stanza *iq = sd_pending_stanza(r->p);
    if (sd_dbres_status(res) != SD_DB_OK) {
        db_failed(&r->p, res, "cannot read a vCard");
    } else if (sd_dbres_rows(res) == 0) {
        /* Own vCard: none yet reads as an empty one. Someone else's: no vCard and no account
         * look the same (XEP-0054 1.3 §3.3). */
        if (r->bare == NULL) {
            sd_stanza *reply = sd_stanza_result(iq);
            if (reply != NULL)
                sd_el_add(reply, sd_stanza_el(reply), NS_VCARD, "vCard");
            sd_pending_reply(&r->p, &reply);
        } else {
            sd_pending_error(&r->p, SD_ERR_SERVICE_UNAVAILABLE, NULL);
        }
    } else {
        const char *xml = sd_dbres_value(res, 0, 0);
        sd_stanza *reply = sd_stanza_result(iq);
        if (reply == NULL || xml == NULL ||
            vc_xml_parse_into(reply, sd_stanza_el(reply), xml, strlen(xml)) == NULL) {
            sd_log(vc_mod, SD_LOG_ERROR, "a stored vCard does not parse (for %s)",
                   sd_stanza_to_str(iq) ? sd_stanza_to_str(iq) : sd_stanza_from_str(iq));
            sd_stanza_free(&reply);
            sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
        } else {
            sd_pending_reply(&r->p, &reply);
        }
    }
    req_free(r);
}

static sd_verdict read_vcard(sd_hctx *h, sd_stanza *st, const sd_jid *who, bool own)
{
    struct vc_req *r = calloc(1, sizeof(*r));
    if (r == NULL || (!own && (r->bare = strdup(sd_jid_bare(who))) == NULL)) {
        free(r);
        return sd_reply_error(h, st, SD_ERR_RESOURCE_CONSTRAINT, NULL);
    }
    const char *params[] = {sd_jid_domain(who), sd_jid_local(who)};
    r->p = sd_hctx_defer(h);
    if (sd_db_exec(st_get, params, 2, got_vcard, r) < 0) {
        sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
        req_free(r);
    }
    return SD_LATER;
}

static sd_verdict vc_get_own(sd_hctx *h, sd_stanza *st, void *ud)
{
    const sd_jid *from = sd_stanza_from(st);
    if (from == NULL || sd_jid_local(from) == NULL)
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, NULL);
    return read_vcard(h, st, from, true);
}

static sd_verdict vc_get_other(sd_hctx *h, sd_stanza *st, void *ud)
{
    const sd_jid *to = sd_stanza_to(st);
    if (to == NULL || sd_jid_local(to) == NULL)
        return SD_PASS;
    return read_vcard(h, st, to, false);
}

static sd_verdict vc_set_other(sd_hctx *h, sd_stanza *st, void *ud)
{
    return sd_reply_error(h, st, SD_ERR_FORBIDDEN, "only your own vCard can be changed");
}

static void vcard_stored(sd_dbres *res, void *ud)
{
    struct vc_req *r = ud;
    int64_t version = 0;
    if (sd_dbres_status(res) != SD_DB_OK) {
        db_failed(&r->p, res, "cannot store a vCard");
    } else if (sd_dbres_rows(res) != 1 || sd_dbres_int64(res, 0, 0, &version) < 0) {
        sd_pending_error(&r->p, SD_ERR_ITEM_NOT_FOUND, "no such account");
    } else {
        /* The sessions first: a presence the client sends after our result carries the new
         * hash (this worker's sessions are updated before the reply leaves). */
        notify_all(r->bare, version, r->photo);
        sd_stanza *reply = sd_stanza_result(sd_pending_stanza(r->p));
        sd_pending_reply(&r->p, &reply);
    }
    req_free(r);
}

static sd_verdict vc_set_own(sd_hctx *h, sd_stanza *st, void *ud)
{
    const sd_jid *from = sd_stanza_from(st);
    sd_el *vc = sd_stanza_payload(st);
    const struct vcard_conf *c = sd_module_config(vc_mod, sd_hctx_host(h));
    if (from == NULL || sd_jid_local(from) == NULL || vc == NULL || c == NULL)
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, NULL);
    char *xml = sd_el_to_string(vc);
    if (xml == NULL)
        return sd_reply_error(h, st, SD_ERR_RESOURCE_CONSTRAINT, NULL);
    size_t len = strlen(xml);
    if ((int64_t)len > c->max_size) {
        char text[160];
        snprintf(text, sizeof(text), "the vCard is %zu bytes; this server takes at most %" PRId64,
                 len, c->max_size);
        free(xml);
        return sd_reply_error(h, st, SD_ERR_NOT_ACCEPTABLE, text);
    }
    struct vc_req *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->bare = strdup(sd_jid_bare(from))) == NULL) {
        free(r);
        free(xml);
        return sd_reply_error(h, st, SD_ERR_RESOURCE_CONSTRAINT, NULL);
    }
    if (photo_hash(st, vc, r->photo) < 0) {
        req_free(r);
        free(xml);
        return sd_reply_error(h, st, SD_ERR_BAD_REQUEST, "PHOTO/BINVAL is not base64");
    }
    struct vc_fields f;
    if (vcard_fields(st, vc, &f) < 0) {
        fields_free(&f);
        req_free(r);
        free(xml);
        return sd_reply_error(h, st, SD_ERR_RESOURCE_CONSTRAINT, NULL);
    }
    const char *params[] = {sd_jid_domain(from),
                            sd_jid_local(from),
                            xml,
                            r->photo[0] != '\0' ? r->photo : NULL,
                            f.fullname,
                            f.given,
                            f.family,
                            f.nickname,
                            f.email};
    r->p = sd_hctx_defer(h);
    if (sd_db_exec(st_set, params, 9, vcard_stored, r) < 0) {
        sd_pending_error(&r->p, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
        req_free(r);
    }
    fields_free(&f); /* the parameters were copied */
    free(xml);
    return SD_LATER;
}

/* ---- a new account's first vCard, from its registration ---- */

/* What a registration told about the person. Strings are borrowed from the event's stanza. */
struct reg_info {
    const char *fn, *given, *family, *nick, *email, *url, *phone;
    const char *street, *locality, *region, *pcode;
    const char *extra_field[EXTRA_MAX], *extra_value[EXTRA_MAX];
    int nextra;
};

/* Fields that are never kept: credentials, and anything that looks like a secret. */
static bool secret_field(const char *name)
{
    static const char *const exact[] = {"username",   "FORM_TYPE",    "key", "remove",
                                        "registered", "instructions", NULL};
    static const char *const parts[] = {"password", "token",     "captcha", "invite",
                                        "secret",   "challenge", NULL};
    for (int i = 0; exact[i] != NULL; i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    for (int i = 0; parts[i] != NULL; i++)
        if (strcasestr(name, parts[i]) != NULL)
            return true;
    return false;
}

static void reg_field(struct reg_info *ri, const char *name, const char *value)
{
    if (value == NULL || value[strspn(value, " \t\r\n")] == '\0' || secret_field(name))
        return;
    static const struct {
        const char *name;
        size_t off;
    } map[] = {
        {"email", offsetof(struct reg_info, email)},
        {"nick", offsetof(struct reg_info, nick)},
        {"nickname", offsetof(struct reg_info, nick)},
        {"name", offsetof(struct reg_info, fn)},
        {"fullname", offsetof(struct reg_info, fn)},
        {"first", offsetof(struct reg_info, given)},
        {"given", offsetof(struct reg_info, given)},
        {"last", offsetof(struct reg_info, family)},
        {"family", offsetof(struct reg_info, family)},
        {"url", offsetof(struct reg_info, url)},
        {"phone", offsetof(struct reg_info, phone)},
        {"address", offsetof(struct reg_info, street)},
        {"city", offsetof(struct reg_info, locality)},
        {"state", offsetof(struct reg_info, region)},
        {"zip", offsetof(struct reg_info, pcode)},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(name, map[i].name) == 0) {
            const char **slot = (const char **)((char *)ri + map[i].off);
            if (*slot == NULL)
                *slot = value;
            return;
        }
    for (int i = 0; i < ri->nextra; i++)
        if (strcmp(ri->extra_field[i], name) == 0)
            return;
    if (ri->nextra < EXTRA_MAX) {
        ri->extra_field[ri->nextra] = name;
        ri->extra_value[ri->nextra++] = value;
    }
}

static void reg_read(sd_stanza *st, sd_el *query, struct reg_info *ri)
{
    memset(ri, 0, sizeof(*ri));
    /* The form first: it is what a form-capable client filled in. */
    sd_el *x = sd_el_child(query, NS_DATA, "x");
    for (sd_el *f = x != NULL ? sd_el_child(x, NS_DATA, "field") : NULL; f != NULL;
         f = sd_el_next(f, NS_DATA, "field")) {
        const char *var = sd_el_attr(f, "var"), *type = sd_el_attr(f, "type");
        if (var == NULL ||
            (type != NULL && (strcmp(type, "hidden") == 0 || strcmp(type, "text-private") == 0)))
            continue;
        reg_field(ri, var, sd_el_child_text(st, f, NS_DATA, "value"));
    }
    for (sd_el *c = sd_el_child(query, NS_REGISTER, NULL); c != NULL;
         c = sd_el_next(c, NS_REGISTER, NULL))
        if (sd_el_child(c, NULL, NULL) == NULL)
            reg_field(ri, sd_el_name(c), sd_el_text(st, c));
}

static void add_text(sd_stanza *st, sd_el *parent, const char *name, const char *text)
{
    if (text != NULL) {
        char *t = clean(text);
        if (t != NULL && t[0] != '\0')
            sd_el_add_text_child(st, parent, NULL, name, t);
        free(t);
    }
}

/* The vCard for a registration, under parent; NULL when there is nothing to put in it. */
static sd_el *reg_vcard(sd_stanza *st, sd_el *parent, const struct reg_info *ri)
{
    if (!ri->fn && !ri->given && !ri->family && !ri->nick && !ri->email && !ri->url && !ri->phone &&
        !ri->street && !ri->locality && !ri->region && !ri->pcode)
        return NULL;
    sd_el *vc = sd_el_add(st, parent, NS_VCARD, "vCard");
    if (ri->fn != NULL) {
        add_text(st, vc, "FN", ri->fn);
    } else if (ri->given != NULL || ri->family != NULL) {
        char both[2 * EXTRA_VALUE_MAX];
        snprintf(both, sizeof(both), "%s %s", ri->given ? ri->given : "",
                 ri->family ? ri->family : "");
        add_text(st, vc, "FN", both);
    }
    if (ri->given != NULL || ri->family != NULL) {
        sd_el *n = sd_el_add(st, vc, NULL, "N");
        add_text(st, n, "FAMILY", ri->family);
        add_text(st, n, "GIVEN", ri->given);
    }
    add_text(st, vc, "NICKNAME", ri->nick);
    add_text(st, vc, "URL", ri->url);
    if (ri->phone != NULL) {
        sd_el *tel = sd_el_add(st, vc, NULL, "TEL");
        sd_el_add(st, tel, NULL, "VOICE");
        add_text(st, tel, "NUMBER", ri->phone);
    }
    if (ri->street || ri->locality || ri->region || ri->pcode) {
        sd_el *adr = sd_el_add(st, vc, NULL, "ADR");
        sd_el_add(st, adr, NULL, "HOME");
        add_text(st, adr, "STREET", ri->street);
        add_text(st, adr, "LOCALITY", ri->locality);
        add_text(st, adr, "REGION", ri->region);
        add_text(st, adr, "PCODE", ri->pcode);
    }
    if (ri->email != NULL) {
        sd_el *e = sd_el_add(st, vc, NULL, "EMAIL");
        sd_el_add(st, e, NULL, "INTERNET");
        sd_el_add(st, e, NULL, "PREF");
        add_text(st, e, "USERID", ri->email);
    }
    return vc;
}

/* Appends s as an element of a PostgreSQL array literal ("...", with \ and " escaped), cut at
 * max bytes on a character boundary. */
static void array_put(char **buf, size_t *len, size_t *cap, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    if (*cap - *len < 2 * n + 4) {
        size_t ncap = (*cap + 2 * n + 4) * 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return;
        *buf = nb;
        *cap = ncap;
    }
    char *o = *buf + *len;
    if (*len > 1)
        *o++ = ',';
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *o++ = '\\';
        *o++ = s[i];
    }
    *o++ = '"';
    *len = (size_t)(o - *buf);
}

static char *array_literal(const char *const *items, int n, size_t max)
{
    size_t len = 1, cap = 64;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    buf[0] = '{';
    for (int i = 0; i < n; i++)
        array_put(&buf, &len, &cap, items[i], max);
    if (cap - len < 2) {
        char *nb = realloc(buf, len + 2);
        if (nb == NULL) {
            free(buf);
            return NULL;
        }
        buf = nb;
    }
    buf[len++] = '}';
    buf[len] = '\0';
    return buf;
}

static void init_done(sd_dbres *res, void *ud)
{
    char *bare = ud;
    if (sd_dbres_status(res) != SD_DB_OK)
        sd_log(vc_mod, SD_LOG_WARN, "cannot store the registration profile of %s: %s", bare,
               sd_dbres_error(res));
    free(bare);
}

static void exec_logged(sd_stmt *stmt, const char *const *params, int n, const char *bare)
{
    char *copy = strdup(bare);
    if (copy != NULL && sd_db_exec(stmt, params, n, init_done, copy) < 0)
        free(copy);
}

static void vc_account_created(sd_hctx *h, sd_event *ev, void *ud)
{
    sd_el *query = sd_event_el(ev);
    sd_stanza *st = sd_event_stanza(ev);
    const char *bare = sd_event_jid(ev);
    if (query == NULL || st == NULL || bare == NULL)
        return; /* created by an administrator: no profile to keep */
    sd_jid *j = bare_parts(bare);
    const struct vcard_conf *c = j != NULL ? sd_module_config(vc_mod, sd_jid_domain(j)) : NULL;
    if (c == NULL || !c->from_registration) {
        sd_jid_free(&j);
        return;
    }
    struct reg_info ri;
    reg_read(st, query, &ri);
    /* The vCard is built in a stanza of its own, as scratch space. */
    sd_stanza *scratch = sd_stanza_new(SD_IQ, "set");
    sd_el *vc = scratch != NULL ? reg_vcard(scratch, sd_stanza_el(scratch), &ri) : NULL;
    if (vc != NULL) {
        char *xml = sd_el_to_string(vc);
        struct vc_fields f = {0};
        if (xml != NULL && vcard_fields(scratch, vc, &f) == 0) {
            const char *params[] = {sd_jid_domain(j), sd_jid_local(j), xml,      NULL,
                                    f.fullname,       f.given,         f.family, f.nickname,
                                    f.email};
            exec_logged(st_init, params, 9, bare);
        }
        fields_free(&f);
        free(xml);
    }
    if (ri.nextra > 0) {
        char *fields = array_literal(ri.extra_field, ri.nextra, FIELD_MAX);
        char *values = array_literal(ri.extra_value, ri.nextra, EXTRA_VALUE_MAX);
        if (fields != NULL && values != NULL) {
            const char *params[] = {sd_jid_domain(j), sd_jid_local(j), fields, values};
            exec_logged(st_extra, params, 4, bare);
        }
        free(fields);
        free(values);
    }
    sd_stanza_free(&scratch);
    sd_jid_free(&j);
}

/* ---- loading ---- */

static int vcard_load(sd_module *m, const char **error_r)
{
    vc_mod = m;
    st_get = sd_db_prepare(m,
                           "SELECT c.xml FROM vcard_cards c JOIN accounts a ON a.id = c.account_id"
                           " WHERE a.host = $1 AND a.username = $2",
                           2);
    st_hash = sd_db_prepare(m,
                            "SELECT c.photo_hash, c.version FROM vcard_cards c"
                            " JOIN accounts a ON a.id = c.account_id"
                            " WHERE a.host = $1 AND a.username = $2",
                            2);
    /* One statement, so the vCard and its search fields change together. */
    st_set = sd_db_prepare(
        m,
        "WITH a AS (SELECT id, host, username FROM accounts WHERE host = $1 AND username = $2),"
        " c AS (INSERT INTO vcard_cards AS c (account_id, xml, photo_hash, version)"
        "  SELECT id, $3, $4, 1 FROM a"
        "  ON CONFLICT (account_id) DO UPDATE SET xml = EXCLUDED.xml,"
        "   photo_hash = EXCLUDED.photo_hash, version = c.version + 1, updated_at = now()"
        "  RETURNING c.version),"
        " s AS (INSERT INTO vcard_search AS s"
        "   (account_id, host, username, fullname, given, family, nickname, email)"
        "  SELECT id, host, username, $5, $6, $7, $8, $9 FROM a"
        "  ON CONFLICT (account_id) DO UPDATE SET fullname = EXCLUDED.fullname,"
        "   given = EXCLUDED.given, family = EXCLUDED.family, nickname = EXCLUDED.nickname,"
        "   email = EXCLUDED.email)"
        " SELECT version FROM c",
        9);
    st_init = sd_db_prepare(
        m,
        "WITH a AS (SELECT id, host, username FROM accounts WHERE host = $1 AND username = $2),"
        " c AS (INSERT INTO vcard_cards (account_id, xml, photo_hash, version)"
        "  SELECT id, $3, $4, 1 FROM a ON CONFLICT (account_id) DO NOTHING RETURNING account_id)"
        " INSERT INTO vcard_search"
        "  (account_id, host, username, fullname, given, family, nickname, email)"
        " SELECT a.id, a.host, a.username, $5, $6, $7, $8, $9 FROM a JOIN c ON c.account_id = a.id"
        " ON CONFLICT (account_id) DO UPDATE SET fullname = EXCLUDED.fullname,"
        "  given = EXCLUDED.given, family = EXCLUDED.family, nickname = EXCLUDED.nickname,"
        "  email = EXCLUDED.email",
        9);
    st_extra =
        sd_db_prepare(m,
                      "INSERT INTO vcard_extra (account_id, field, value)"
                      " SELECT a.id, x.f, x.v FROM accounts a,"
                      "  unnest($3::text[], $4::text[]) AS x (f, v)"
                      " WHERE a.host = $1 AND a.username = $2"
                      " ON CONFLICT (account_id, field) DO UPDATE SET value = EXCLUDED.value",
                      4);
    if (st_get == NULL || st_hash == NULL || st_set == NULL || st_init == NULL ||
        st_extra == NULL) {
        *error_r = "cannot prepare the statements";
        return -1;
    }
    if (sd_add_feature(m, SD_DISCO_SERVER | SD_DISCO_ACCOUNT, NS_VCARD) < 0 ||
        sd_hook_iq(m, SD_TO_SELF, SD_IQ_GET, NS_VCARD, "vCard", 0, vc_get_own, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_SELF, SD_IQ_SET, NS_VCARD, "vCard", 0, vc_set_own, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_BARE, SD_IQ_GET, NS_VCARD, "vCard", 0, vc_get_other, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_BARE, SD_IQ_SET, NS_VCARD, "vCard", 0, vc_set_other, NULL) < 0 ||
        sd_hook_filter(m, SD_FILTER_IN, 0, vc_presence_in, NULL) < 0 ||
        sd_hook_event(m, SD_EV_SESSION_BOUND, 0, vc_bound, NULL) < 0 ||
        sd_hook_event(m, SD_EV_ACCOUNT_CREATED, 0, vc_account_created, NULL) < 0) {
        *error_r = "cannot register the handlers";
        return -1;
    }
    return 0;
}

SD_MODULE(.name = "vcard", .version = SD_VERSION_STRING, .settings = vcard_settings,
          .config_size = sizeof(struct vcard_conf), .migrations = vcard_migrations,
          .load = vcard_load);
