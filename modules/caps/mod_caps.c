/*
 * mod_caps — Entity Capabilities (XEP-0115) of the server, in its stream features.
 *
 * After authentication the server's <stream:features/> carry
 *   <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://stanzad.invalid'
 *      ver='...'/>
 * so a client learns what the server supports without asking, and can cache it by 'ver'.
 * 'ver' is the XEP-0115 §5.1 verification string of the host's disco#info, hashed with SHA-1
 * and encoded in base64. To be sure it equals what a client computes from mod_disco's answer,
 * it is computed from a <query/> built the same way mod_disco builds one — the core's registry
 * of identities and features, then sd_disco_info_extend() for what other modules add (XEP-0128
 * forms take part in the hash, §5.4) — rather than from a second reading of the registry.
 * A client may ask disco#info for the node "https://stanzad.invalid#<ver>" (§6.2): this module
 * answers that node with the same <query/>, at the default priority, ahead of mod_disco.
 *
 * The registry is complete once every module has loaded, which is after this module's load(),
 * so 'ver' is computed on first use for each host and then kept: the first worker to finish
 * publishes it with a compare-and-swap, and a worker that computed it at the same time drops
 * its copy. Only authenticated streams get the element: before login a client could not ask
 * the node anyway. SHA-1 comes from GnuTLS; base64 is a few lines here.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include <stanzad/stanzad.h>

#define NS_CAPS       "http://jabber.org/protocol/caps"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DATA       "jabber:x:data"
#define CAPS_NODE     "https://stanzad.invalid"

static sd_module *caps_mod;
/* The verification string per host (index as sd_host_at), NULL until first computed. */
static _Atomic(char *) *caps_vers;
static unsigned caps_nhosts;

/* ---- building the disco#info <query/>, as mod_disco does ---- */

struct fill {
    sd_stanza *st;
    sd_el *query;
};

static void fill_identity(const char *category, const char *type, const char *name, void *ud)
{
    struct fill *f = ud;
    sd_el *id = sd_el_add(f->st, f->query, NULL, "identity");
    sd_el_set_attr(f->st, id, "category", category);
    sd_el_set_attr(f->st, id, "type", type);
    if (name != NULL && name[0] != '\0')
        sd_el_set_attr(f->st, id, "name", name);
}

static void fill_feature(const char *var, void *ud)
{
    struct fill *f = ud;
    sd_el_set_attr(f->st, sd_el_add(f->st, f->query, NULL, "feature"), "var", var);
}

static sd_el *caps_fill_query(sd_hctx *h, sd_stanza *st, const char *host, const char *node)
{
    struct fill f = {st, sd_el_add(st, sd_stanza_el(st), NS_DISCO_INFO, "query")};
    if (node != NULL)
        sd_el_set_attr(st, f.query, "node", node);
    sd_disco_identities(host, SD_DISCO_SERVER, fill_identity, &f);
    sd_disco_features(host, SD_DISCO_SERVER, fill_feature, &f);
    /* Extensions see the root node: the caps node is by definition the same information. */
    sd_disco_info_extend(h, st, f.query, host, NULL);
    return f.query;
}

/* ---- the verification string (XEP-0115 §5.1, §5.4) ---- */

struct strv {
    char **v;
    size_t n, cap;
};

static int strv_push(struct strv *a, char *s)
{
    if (s == NULL)
        return -1;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        char **v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL) {
            free(s);
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = s;
    return 0;
}

static void strv_free(struct strv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    *a = (struct strv){0};
}

/* Octet order, as §5.1 says ("i;octet" collation). */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strv_sort(struct strv *a)
{
    if (a->n > 1)
        qsort(a->v, a->n, sizeof(*a->v), cmp_str);
}

struct buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void buf_add(struct buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc + 1);
    }
    return s;
}

/* A sort key and its part of S: a form (key FORM_TYPE) or one of its fields (key var). */
struct part {
    char *key;
    char *text;
};

static int cmp_part(const void *a, const void *b)
{
    return strcmp(((const struct part *)a)->key, ((const struct part *)b)->key);
}

static void parts_free(struct part *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        free(p[i].text);
    }
    free(p);
}

static int parts_push(struct part **p, size_t *n, char *key, char *text)
{
    struct part *np = key && text ? realloc(*p, (*n + 1) * sizeof(**p)) : NULL;
    if (np == NULL) {
        free(key);
        free(text);
        return -1;
    }
    *p = np;
    np[(*n)++] = (struct part){key, text};
    return 0;
}

/* One field: "var<value<value<" with the values in octet order. */
static char *field_text(sd_stanza *st, const sd_el *f, const char *var)
{
    struct strv values = {0};
    int ok = 1;
    for (sd_el *v = sd_el_child(f, NS_DATA, "value"); v != NULL && ok;
         v = sd_el_next(v, NS_DATA, "value"))
        ok = strv_push(&values, strdup(sd_el_text(st, v))) == 0;
    strv_sort(&values);
    struct buf b = {0};
    buf_add(&b, var);
    buf_add(&b, "<");
    for (size_t i = 0; i < values.n; i++) {
        buf_add(&b, values.v[i]);
        buf_add(&b, "<");
    }
    strv_free(&values);
    if (!ok || b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* A form's part of S ("FORM_TYPE<" then its fields by var), pushed onto forms; a form without
 * a hidden FORM_TYPE is not part of S (§5.4 step 3.6). 0, or -1 when out of memory. */
static int form_add(sd_stanza *st, const sd_el *x, struct part **forms, size_t *nforms)
{
    const char *form_type = NULL;
    struct part *fields = NULL;
    size_t nfields = 0;
    int ok = 1;
    for (sd_el *f = sd_el_child(x, NS_DATA, "field"); f != NULL && ok;
         f = sd_el_next(f, NS_DATA, "field")) {
        const char *var = sd_el_attr(f, "var");
        if (var == NULL)
            continue;
        if (strcmp(var, "FORM_TYPE") == 0) {
            const char *type = sd_el_attr(f, "type");
            if (type != NULL && strcmp(type, "hidden") == 0)
                form_type = sd_el_child_text(st, f, NS_DATA, "value");
            continue;
        }
        ok = parts_push(&fields, &nfields, strdup(var), field_text(st, f, var)) == 0;
    }
    if (ok && form_type != NULL) {
        if (nfields > 1)
            qsort(fields, nfields, sizeof(*fields), cmp_part);
        struct buf b = {0};
        buf_add(&b, form_type);
        buf_add(&b, "<");
        for (size_t i = 0; i < nfields; i++)
            buf_add(&b, fields[i].text);
        if (b.failed) {
            free(b.p);
            ok = 0;
        } else {
            ok = parts_push(forms, nforms, strdup(form_type), b.p) == 0;
        }
    }
    parts_free(fields, nfields);
    return ok ? 0 : -1;
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* The base64 SHA-1 of S for the <query/> q of st; malloc'd, NULL on failure. */
static char *caps_ver_of(sd_stanza *st, const sd_el *q)
{
    struct strv ids = {0}, feats = {0};
    struct part *forms = NULL;
    size_t nforms = 0;
    int ok = 1;
    for (sd_el *c = sd_el_child(q, NULL, NULL); c != NULL && ok; c = sd_el_next(c, NULL, NULL)) {
        const char *ns = sd_el_ns(c), *name = sd_el_name(c);
        if (strcmp(ns, NS_DISCO_INFO) == 0 && strcmp(name, "identity") == 0) {
            const char *cat = sd_el_attr(c, "category"), *type = sd_el_attr(c, "type");
            const char *iname = sd_el_attr(c, "name");
            /* category/type/lang/name; the registry has no xml:lang, so it is empty. */
            char *ct = join3(cat ? cat : "", "/", type ? type : "");
            ok = ct != NULL && strv_push(&ids, join3(ct, "//", iname ? iname : "")) == 0;
            free(ct);
        } else if (strcmp(ns, NS_DISCO_INFO) == 0 && strcmp(name, "feature") == 0) {
            const char *var = sd_el_attr(c, "var");
            if (var != NULL)
                ok = strv_push(&feats, strdup(var)) == 0;
        } else if (strcmp(ns, NS_DATA) == 0 && strcmp(name, "x") == 0) {
            ok = form_add(st, c, &forms, &nforms) == 0;
        }
    }

    char *ver = NULL;
    if (ok) {
        strv_sort(&ids);
        strv_sort(&feats);
        if (nforms > 1)
            qsort(forms, nforms, sizeof(*forms), cmp_part);
        struct buf s = {0};
        for (size_t i = 0; i < ids.n; i++) {
            buf_add(&s, ids.v[i]);
            buf_add(&s, "<");
        }
        for (size_t i = 0; i < feats.n; i++) {
            buf_add(&s, feats.v[i]);
            buf_add(&s, "<");
        }
        for (size_t i = 0; i < nforms; i++)
            buf_add(&s, forms[i].text);
        unsigned char digest[20];
        if (!s.failed && gnutls_hash_fast(GNUTLS_DIG_SHA1, s.p ? s.p : "", s.len, digest) == 0 &&
            (ver = malloc(29)) != NULL)
            base64(digest, sizeof(digest), ver);
        free(s.p);
    }
    strv_free(&ids);
    strv_free(&feats);
    parts_free(forms, nforms);
    return ver;
}

/* The host's verification string (borrowed until unload), computed on first use. */
static const char *caps_ver(sd_hctx *h, const char *host)
{
    unsigned i;
    for (i = 0; i < caps_nhosts; i++)
        if (strcmp(sd_host_at(i), host) == 0)
            break;
    if (i == caps_nhosts)
        return NULL;
    char *ver = atomic_load(&caps_vers[i]);
    if (ver != NULL)
        return ver;

    sd_stanza *st = sd_stanza_new(SD_IQ, "result");
    if (st == NULL)
        return NULL;
    ver = caps_ver_of(st, caps_fill_query(h, st, host, NULL));
    sd_stanza_free(&st);
    if (ver == NULL)
        return NULL;
    char *expected = NULL;
    if (!atomic_compare_exchange_strong(&caps_vers[i], &expected, ver)) {
        free(ver); /* another worker was first; its string is the same */
        ver = expected;
    }
    return ver;
}

/* ---- hooks ---- */

static void caps_features(sd_hctx *h, sd_event *ev, void *ud)
{
    if (!sd_event_authenticated(ev))
        return;
    const char *ver = caps_ver(h, sd_hctx_host(h));
    sd_stanza *st = sd_event_stanza(ev);
    sd_el *features = sd_event_el(ev);
    if (ver == NULL || st == NULL || features == NULL)
        return;
    sd_el *c = sd_el_add(st, features, NS_CAPS, "c");
    sd_el_set_attr(st, c, "hash", "sha-1");
    sd_el_set_attr(st, c, "node", CAPS_NODE);
    sd_el_set_attr(st, c, "ver", ver);
}

/* disco#info for "node#ver" (§6.2); every other query goes on to mod_disco. */
static sd_verdict caps_node_info(sd_hctx *h, sd_stanza *st, void *ud)
{
    const char *node = sd_el_attr(sd_stanza_payload(st), "node");
    const size_t plen = sizeof(CAPS_NODE "#") - 1;
    if (node == NULL || strncmp(node, CAPS_NODE "#", plen) != 0)
        return SD_PASS;
    const char *host = sd_hctx_host(h);
    const char *ver = caps_ver(h, host);
    if (ver == NULL || strcmp(node + plen, ver) != 0)
        return SD_PASS;
    sd_stanza *reply = sd_stanza_result(st);
    if (reply == NULL)
        return sd_reply_error(h, st, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
    caps_fill_query(h, reply, host, node);
    sd_reply(h, &reply);
    return SD_DONE;
}

static int caps_load(sd_module *m, const char **error_r)
{
    caps_mod = m;
    for (caps_nhosts = 0; sd_host_at(caps_nhosts) != NULL; caps_nhosts++)
        ;
    caps_vers = calloc(caps_nhosts ? caps_nhosts : 1, sizeof(*caps_vers));
    if (caps_vers == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    for (unsigned i = 0; i < caps_nhosts; i++)
        atomic_init(&caps_vers[i], NULL);
    if (sd_add_feature(m, SD_DISCO_SERVER, NS_CAPS) < 0 ||
        sd_hook_event(m, SD_EV_STREAM_FEATURES, 0, caps_features, NULL) < 0 ||
        sd_hook_iq(m, SD_TO_HOST, SD_IQ_GET, NS_DISCO_INFO, "query", 0, caps_node_info, NULL) < 0) {
        free(caps_vers);
        caps_vers = NULL;
        *error_r = "cannot register the caps handlers";
        return -1;
    }
    return 0;
}

static void caps_unload(sd_module *m)
{
    for (unsigned i = 0; i < caps_nhosts; i++)
        free(atomic_load(&caps_vers[i]));
    free(caps_vers);
    caps_vers = NULL;
}

static const char *const caps_requires[] = {"disco", NULL};

SD_MODULE(.name = "caps", .version = SD_VERSION_STRING, .requires = caps_requires,
          .load = caps_load, .unload = caps_unload);
