/*
 * vcard_util.c — SHA-1, base64 decoding and the XML reader of mod_vcard (see vcard_util.h).
 */
#include "vcard_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- SHA-1 (RFC 3174) ---- */

struct sha1 {
    uint32_t h[5];
    uint64_t bytes;
    unsigned char block[64];
    size_t fill;
};

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_compress(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdcu;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6u;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1_init(struct sha1 *s)
{
    static const uint32_t iv[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
    memcpy(s->h, iv, sizeof(iv));
    s->bytes = 0;
    s->fill = 0;
}

static void sha1_update(struct sha1 *s, const unsigned char *p, size_t n)
{
    s->bytes += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == 64) {
            sha1_compress(s->h, s->block);
            s->fill = 0;
        }
    }
}

void vc_sha1_hex(const void *data, size_t len, char out[41])
{
    struct sha1 s;
    sha1_init(&s);
    sha1_update(&s, data, len);
    uint64_t bits = s.bytes * 8;
    unsigned char pad[72] = {0x80};
    size_t padlen = (s.fill < 56 ? 56 : 120) - s.fill;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(&s, pad, padlen + 8);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 20; i++) {
        unsigned char byte = (unsigned char)(s.h[i / 4] >> (24 - 8 * (i % 4)));
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
    out[40] = '\0';
}

/* ---- base64 ---- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

unsigned char *vc_base64_decode(const char *s, size_t *len_r)
{
    size_t n = strlen(s);
    unsigned char *out = malloc(n / 4 * 3 + 3);
    if (out == NULL)
        return NULL;
    size_t o = 0, sig = 0, pads = 0;
    uint32_t acc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (is_space(*p))
            continue;
        if (*p == '=') {
            pads++;
            continue;
        }
        int v = b64_value(*p);
        if (v < 0 || pads > 0) /* a stray byte, or data after the padding */
            goto bad;
        acc = acc << 6 | (uint32_t)v;
        if (++sig % 4 == 0) {
            out[o++] = (unsigned char)(acc >> 16);
            out[o++] = (unsigned char)(acc >> 8);
            out[o++] = (unsigned char)acc;
            acc = 0;
        }
    }
    switch (sig % 4) {
    case 0:
        if (pads != 0)
            goto bad;
        break;
    case 1:
        goto bad;
    case 2: /* 12 bits: one byte */
        if (pads != 0 && pads != 2)
            goto bad;
        out[o++] = (unsigned char)(acc >> 4);
        break;
    case 3: /* 18 bits: two bytes */
        if (pads > 1)
            goto bad;
        out[o++] = (unsigned char)(acc >> 10);
        out[o++] = (unsigned char)(acc >> 2);
        break;
    }
    *len_r = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---- reading XML back ---- */

#define MAX_DEPTH 64

struct sbuf {
    char *d;
    size_t n, cap;
};

static int sb_put(struct sbuf *b, const char *p, size_t n)
{
    if (b->cap - b->n <= n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n <= n)
            cap *= 2;
        char *d = realloc(b->d, cap);
        if (d == NULL)
            return -1;
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
    b->d[b->n] = '\0';
    return 0;
}

/* A namespace prefix declared on an element in scope. */
struct nsdecl {
    const char *prefix; /* NUL-terminated */
    const char *uri;
    const struct nsdecl *up;
};

struct reader {
    sd_stanza *st;
    const char *p, *end;
    struct sbuf text; /* character data not yet added */
};

static int at(const struct reader *r, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(r->end - r->p) >= n && memcmp(r->p, lit, n) == 0;
}

static void skip_space(struct reader *r)
{
    while (r->p < r->end && is_space((unsigned char)*r->p))
        r->p++;
}

static int name_byte(unsigned char c)
{
    return !is_space(c) && c != '=' && c != '>' && c != '/' && c != '<' && c != '\'' && c != '"' &&
           c != '&';
}

/* A name at r->p as a malloc'd string, or NULL. */
static char *read_name(struct reader *r)
{
    const char *s = r->p;
    while (r->p < r->end && name_byte((unsigned char)*r->p))
        r->p++;
    if (r->p == s)
        return NULL;
    return strndup(s, (size_t)(r->p - s));
}

static int put_utf8(struct sbuf *b, unsigned long cp)
{
    char u[4];
    size_t n;
    if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sb_put(b, u, n);
}

/* A reference at r->p (on the '&'), decoded into b. */
static int read_ref(struct reader *r, struct sbuf *b)
{
    static const struct {
        const char *name, *text;
    } named[] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        if (at(r, named[i].name)) {
            r->p += strlen(named[i].name);
            return sb_put(b, named[i].text, 1);
        }
    if (!at(r, "&#"))
        return -1;
    r->p += 2;
    int base = 10;
    if (r->p < r->end && *r->p == 'x') {
        base = 16;
        r->p++;
    }
    unsigned long cp = 0;
    const char *digits = r->p;
    while (r->p < r->end && *r->p != ';') {
        char c = *r->p++;
        int v = c >= '0' && c <= '9'                 ? c - '0'
                : base == 16 && c >= 'a' && c <= 'f' ? c - 'a' + 10
                : base == 16 && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                     : -1;
        if (v < 0 || cp > 0x10ffff)
            return -1;
        cp = cp * (unsigned long)base + (unsigned long)v;
    }
    if (r->p == r->end || r->p == digits)
        return -1;
    r->p++; /* ';' */
    return put_utf8(b, cp);
}

/* Adds the pending character data to el. */
static void flush_text(struct reader *r, sd_el *el)
{
    if (r->text.n > 0) {
        sd_el_add_text(r->st, el, r->text.d);
        r->text.n = 0;
    }
}

/* Skips up to and past lit; -1 when the text ends first. */
static int skip_past(struct reader *r, const char *lit)
{
    size_t n = strlen(lit);
    while ((size_t)(r->end - r->p) >= n) {
        if (memcmp(r->p, lit, n) == 0) {
            r->p += n;
            return 0;
        }
        r->p++;
    }
    return -1;
}

struct attr {
    char *name;
    struct sbuf value;
};

static void free_attrs(struct attr *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].name);
        free(a[i].value.d);
    }
    free(a);
}

/* The namespace of a prefix in scope, or NULL. */
static const char *lookup(const struct nsdecl *scope, const char *prefix, size_t plen)
{
    if (plen == 3 && memcmp(prefix, "xml", 3) == 0)
        return "http://www.w3.org/XML/1998/namespace";
    for (; scope != NULL; scope = scope->up)
        if (strlen(scope->prefix) == plen && memcmp(scope->prefix, prefix, plen) == 0)
            return scope->uri;
    return NULL;
}

/* One element at r->p (on its '<'), added under parent; dflt is the default namespace in
 * scope. */
static sd_el *read_element(struct reader *r, sd_el *parent, const char *dflt,
                           const struct nsdecl *scope, int depth)
{
    if (depth > MAX_DEPTH || !at(r, "<"))
        return NULL;
    r->p++;
    char *qname = read_name(r);
    struct attr *attrs = NULL;
    size_t nattrs = 0;
    struct nsdecl *decls = NULL;
    sd_el *el = NULL, *result = NULL;
    if (qname == NULL)
        return NULL;
    /* attributes */
    for (;;) {
        const char *before = r->p;
        skip_space(r);
        if (r->p >= r->end)
            goto out;
        if (*r->p == '>' || at(r, "/>"))
            break;
        if (r->p == before) /* attributes must be separated by white space */
            goto out;
        struct attr *grown = realloc(attrs, (nattrs + 1) * sizeof(*attrs));
        if (grown == NULL)
            goto out;
        attrs = grown;
        struct attr *a = &attrs[nattrs++];
        memset(a, 0, sizeof(*a));
        if ((a->name = read_name(r)) == NULL)
            goto out;
        skip_space(r);
        if (!at(r, "="))
            goto out;
        r->p++;
        skip_space(r);
        if (r->p >= r->end || (*r->p != '\'' && *r->p != '"'))
            goto out;
        char quote = *r->p++;
        if (sb_put(&a->value, "", 0) < 0)
            goto out;
        while (r->p < r->end && *r->p != quote) {
            if (*r->p == '<')
                goto out;
            if (*r->p == '&') {
                if (read_ref(r, &a->value) < 0)
                    goto out;
            } else if (sb_put(&a->value, r->p++, 1) < 0) {
                goto out;
            }
        }
        if (r->p >= r->end)
            goto out;
        r->p++;
    }
    /* namespace declarations */
    size_t ndecls = 0;
    decls = calloc(nattrs ? nattrs : 1, sizeof(*decls));
    if (decls == NULL)
        goto out;
    const struct nsdecl *inner = scope;
    for (size_t i = 0; i < nattrs; i++) {
        if (strcmp(attrs[i].name, "xmlns") == 0) {
            dflt = attrs[i].value.d;
        } else if (strncmp(attrs[i].name, "xmlns:", 6) == 0) {
            decls[ndecls] = (struct nsdecl){attrs[i].name + 6, attrs[i].value.d, inner};
            inner = &decls[ndecls++];
        }
    }
    /* the element itself */
    const char *colon = strchr(qname, ':');
    const char *ns = dflt, *local = qname;
    if (colon != NULL) {
        ns = lookup(inner, qname, (size_t)(colon - qname));
        local = colon + 1;
        if (ns == NULL || *local == '\0')
            goto out;
    }
    if ((el = sd_el_add(r->st, parent, ns, local)) == NULL)
        goto out;
    for (size_t i = 0; i < nattrs; i++)
        if (strchr(attrs[i].name, ':') == NULL && strcmp(attrs[i].name, "xmlns") != 0)
            sd_el_set_attr(r->st, el, attrs[i].name, attrs[i].value.d);
    if (at(r, "/>")) {
        r->p += 2;
        result = el;
        goto out;
    }
    r->p++; /* '>' */
    /* content */
    r->text.n = 0;
    for (;;) {
        if (r->p >= r->end)
            goto out;
        if (at(r, "</")) {
            r->p += 2;
            size_t qlen = strlen(qname);
            if ((size_t)(r->end - r->p) < qlen || memcmp(r->p, qname, qlen) != 0)
                goto out;
            r->p += qlen;
            skip_space(r);
            if (!at(r, ">"))
                goto out;
            r->p++;
            flush_text(r, el);
            result = el;
            goto out;
        } else if (at(r, "<!--")) {
            if (skip_past(r, "-->") < 0)
                goto out;
        } else if (at(r, "<![CDATA[")) {
            r->p += 9;
            const char *s = r->p;
            if (skip_past(r, "]]>") < 0 || sb_put(&r->text, s, (size_t)(r->p - 3 - s)) < 0)
                goto out;
        } else if (at(r, "<?")) {
            if (skip_past(r, "?>") < 0)
                goto out;
        } else if (at(r, "<!")) {
            goto out; /* a DTD inside an element: never written by us */
        } else if (at(r, "<")) {
            flush_text(r, el);
            if (read_element(r, el, dflt, inner, depth + 1) == NULL)
                goto out;
        } else if (*r->p == '&') {
            if (read_ref(r, &r->text) < 0)
                goto out;
        } else {
            const char *s = r->p;
            while (r->p < r->end && *r->p != '<' && *r->p != '&')
                r->p++;
            if (sb_put(&r->text, s, (size_t)(r->p - s)) < 0)
                goto out;
        }
    }
out:
    free(decls);
    free_attrs(attrs, nattrs);
    free(qname);
    return result;
}

sd_el *vc_xml_parse_into(sd_stanza *st, sd_el *parent, const char *text, size_t len)
{
    struct reader r = {.st = st, .p = text, .end = text + len};
    skip_space(&r);
    sd_el *el = read_element(&r, parent, sd_el_ns(parent), NULL, 0);
    if (el != NULL) {
        skip_space(&r);
        if (r.p != r.end)
            el = NULL;
    }
    free(r.text.d);
    return el;
}
