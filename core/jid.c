/*
 * jid.c — parsing and preparation of XMPP addresses (RFC 7622 syntax, stringprep profiles).
 *
 * A JID is split the RFC 7622 §3.1 way: the resourcepart is everything after the first '/', and
 * the localpart is what precedes the first '@' before that '/'. Each part is then prepared into a
 * stack buffer: Nodeprep for the localpart, Nameprep plus hostname rules for the domainpart,
 * Resourceprep for the resourcepart. Plain ASCII (the overwhelming case, parsed for every routed
 * stanza) takes a fast path that produces exactly what libidn would produce — for ASCII those
 * profiles only case-fold A-Z (local, domain) and prohibit a few characters — so libidn is only
 * called when a part has a byte >= 0x80.
 *
 * The result is one allocation: the struct followed by the "full", "bare" and "local" strings;
 * the domain points into "bare" and the resource into "full" (they are their tails), and one
 * free() or the arena releases it all.
 */
#include "jid.h"

#include <arpa/inet.h>
#include <punycode.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

/* Raw parts longer than this are refused before preparation: preparation can shrink a part
 * (characters mapped to nothing) but not by this much for any real name, and the cap bounds the
 * work libidn does on hostile input. */
#define JID_RAW_MAX (4 * JID_PART_MAX)
#define LABEL_MAX   63

static bool has_non_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

/* The ASCII characters Nodeprep prohibits besides space and controls (RFC 6122 appendix A.5). */
static bool local_forbidden_ascii(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || c == '"' || c == '&' || c == '\'' || c == '/' || c == ':' ||
           c == '<' || c == '>' || c == '@';
}

/*
 * Runs a libidn profile on s[0..len) (which holds a non-ASCII byte) and copies the result to
 * out[JID_PART_MAX + 1]. Unassigned code points are refused for local and domain parts, which
 * name accounts and hosts and must compare the same under later Unicode versions; they are
 * allowed in resources, where clients put device names (often with newer symbols).
 */
static bool run_profile(const char *profile, int flags, const char *s, size_t len, char *out,
                        size_t *outlen, const char **why, const char *why_fail,
                        const char *why_long)
{
    char in[JID_RAW_MAX + 1];
    memcpy(in, s, len);
    in[len] = '\0';
    char *res = NULL;
    int rc = stringprep_profile(in, &res, profile, (Stringprep_profile_flags)flags);
    if (rc != STRINGPREP_OK || res == NULL) {
        free(res);
        *why = why_fail;
        return false;
    }
    size_t n = strlen(res);
    if (n > JID_PART_MAX) {
        free(res);
        *why = why_long;
        return false;
    }
    memcpy(out, res, n + 1);
    free(res);
    *outlen = n;
    return true;
}

static bool prep_local(const char *s, size_t len, char *out, size_t *outlen, const char **why)
{
    if (len == 0) {
        *why = "empty localpart";
        return false;
    }
    if (len > JID_RAW_MAX) {
        *why = "localpart too long";
        return false;
    }
    if (memchr(s, '\0', len) != NULL) {
        *why = "localpart fails Nodeprep";
        return false;
    }
    if (!has_non_ascii(s, len)) {
        if (len > JID_PART_MAX) {
            *why = "localpart too long";
            return false;
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (local_forbidden_ascii(c)) {
                *why = "localpart fails Nodeprep";
                return false;
            }
            out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        out[len] = '\0';
        *outlen = len;
        return true;
    }
    if (!run_profile("Nodeprep", STRINGPREP_NO_UNASSIGNED, s, len, out, outlen, why,
                     "localpart fails Nodeprep", "localpart too long"))
        return false;
    if (*outlen == 0) {
        *why = "empty localpart";
        return false;
    }
    return true;
}

static bool prep_resource(const char *s, size_t len, char *out, size_t *outlen, const char **why)
{
    if (len == 0) {
        *why = "empty resourcepart";
        return false;
    }
    if (len > JID_RAW_MAX) {
        *why = "resourcepart too long";
        return false;
    }
    if (memchr(s, '\0', len) != NULL) {
        *why = "resourcepart fails Resourceprep";
        return false;
    }
    if (!has_non_ascii(s, len)) {
        if (len > JID_PART_MAX) {
            *why = "resourcepart too long";
            return false;
        }
        /* Resourceprep keeps ASCII as is (space included) but prohibits the controls. */
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f) {
                *why = "resourcepart fails Resourceprep";
                return false;
            }
        }
        memcpy(out, s, len);
        out[len] = '\0';
        *outlen = len;
        return true;
    }
    if (!run_profile("Resourceprep", 0, s, len, out, outlen, why, "resourcepart fails Resourceprep",
                     "resourcepart too long"))
        return false;
    if (*outlen == 0) {
        *why = "empty resourcepart";
        return false;
    }
    return true;
}

/* Length of the A-label ("xn--" + Punycode) of a non-ASCII label, or SIZE_MAX if not encodable. */
static size_t ace_length(const char *label, size_t len)
{
    size_t n = 0;
    uint32_t *ucs = stringprep_utf8_to_ucs4(label, (ssize_t)len, &n);
    if (ucs == NULL)
        return SIZE_MAX;
    char enc[LABEL_MAX + 1];
    size_t enclen = sizeof enc - 4;
    int rc = punycode_encode(n, ucs, NULL, &enclen, enc);
    free(ucs);
    return rc == PUNYCODE_SUCCESS ? enclen + 4 : SIZE_MAX;
}

/*
 * Hostname rules applied to the prepared domain: ASCII characters limited to letters, digits,
 * '-', '_' and the dot (Nameprep itself lets any ASCII through, including '@', '/' and space);
 * no empty label; each label at most 63 bytes in its ASCII (A-label) form.
 */
static bool check_labels(const char *d, size_t len, const char **why)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && d[i] != '.') {
            unsigned char c = (unsigned char)d[i];
            if (c < 0x80 &&
                !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
                *why = "domainpart contains an invalid character";
                return false;
            }
            continue;
        }
        size_t llen = i - start;
        if (llen == 0) {
            *why = "domainpart has an empty label";
            return false;
        }
        bool too_long = has_non_ascii(d + start, llen) ? ace_length(d + start, llen) > LABEL_MAX
                                                       : llen > LABEL_MAX;
        if (too_long) {
            *why = "domainpart label longer than 63 bytes";
            return false;
        }
        start = i + 1;
    }
    return true;
}

static bool prep_domain(const char *s, size_t len, char *out, size_t *outlen, const char **why)
{
    if (len > JID_RAW_MAX) {
        *why = "domainpart too long";
        return false;
    }
    if (memchr(s, '\0', len) != NULL) {
        *why = "domainpart fails Nameprep";
        return false;
    }
    bool ascii = !has_non_ascii(s, len);
    char mapped[JID_RAW_MAX + 1];
    if (!ascii) {
        /* IDNA label separators other than '.' (U+3002, U+FF0E, U+FF61) become '.' first. */
        size_t m = 0;
        for (size_t i = 0; i < len; i++) {
            const unsigned char *u = (const unsigned char *)s + i;
            if (i + 2 < len && ((u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x82) ||
                                (u[0] == 0xef && u[1] == 0xbc && u[2] == 0x8e) ||
                                (u[0] == 0xef && u[1] == 0xbd && u[2] == 0xa1))) {
                mapped[m++] = '.';
                i += 2;
            } else {
                mapped[m++] = s[i];
            }
        }
        s = mapped;
        len = m;
    }
    if (len > 0 && s[len - 1] == '.')
        len--; /* RFC 7622 §3.2: one trailing dot is stripped */
    if (len == 0) {
        *why = "empty domainpart";
        return false;
    }
    if (ascii && s[0] == '[') {
        /* IP-literal (RFC 3986); only IPv6 addresses, lower-cased. */
        char addr[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (len < 4 || s[len - 1] != ']' || len - 2 >= sizeof addr) {
            *why = "invalid IPv6 literal";
            return false;
        }
        memcpy(addr, s + 1, len - 2);
        addr[len - 2] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1) {
            *why = "invalid IPv6 literal";
            return false;
        }
    } else if (!ascii) {
        if (!run_profile("Nameprep", STRINGPREP_NO_UNASSIGNED, s, len, out, outlen, why,
                         "domainpart fails Nameprep", "domainpart too long"))
            return false;
        if (*outlen == 0) {
            *why = "empty domainpart";
            return false;
        }
        return check_labels(out, *outlen, why);
    }
    if (len > JID_PART_MAX) {
        *why = "domainpart too long";
        return false;
    }
    /* Nameprep of ASCII is lower-casing; an IPv4 address is a run of digit labels and passes
     * the label rules unchanged. */
    for (size_t i = 0; i < len; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    out[len] = '\0';
    *outlen = len;
    return s[0] == '[' || check_labels(out, len, why);
}

/* One block: struct, then full ("l@d/r"), bare ("l@d") and local ("l") strings. */
static struct jid *build(struct arena *a, const char *l, size_t llen, const char *d, size_t dlen,
                         const char *r, size_t rlen)
{
    size_t bare_len = (l ? llen + 1 : 0) + dlen;
    size_t full_len = bare_len + (r ? rlen + 1 : 0);
    size_t size = sizeof(struct jid) + full_len + 1 + bare_len + 1 + (l ? llen + 1 : 0);
    struct jid *j = a ? arena_alloc(a, size) : xmalloc(size);
    char *full = (char *)(j + 1);
    char *p = full;
    if (l) {
        memcpy(p, l, llen);
        p += llen;
        *p++ = '@';
    }
    memcpy(p, d, dlen);
    p += dlen;
    if (r) {
        *p++ = '/';
        memcpy(p, r, rlen);
        p += rlen;
    }
    *p++ = '\0';
    char *bare = p;
    memcpy(bare, full, bare_len);
    bare[bare_len] = '\0';
    p = bare + bare_len + 1;
    j->full = full;
    j->bare = bare;
    j->domain = bare + (l ? llen + 1 : 0);
    j->resource = r ? full + bare_len + 1 : NULL;
    if (l) {
        memcpy(p, l, llen);
        p[llen] = '\0';
        j->local = p;
    } else {
        j->local = NULL;
    }
    return j;
}

static void set_why(const char **why_r, const char *why)
{
    if (why_r)
        *why_r = why;
}

struct jid *jid_parse(struct arena *a, const char *s, size_t len, const char **why_r)
{
    const char *why = NULL;
    if (s == NULL || len == 0) {
        set_why(why_r, "empty JID");
        return NULL;
    }
    const char *slash = memchr(s, '/', len);
    size_t head_len = slash ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', head_len);

    char lbuf[JID_PART_MAX + 1], dbuf[JID_PART_MAX + 1], rbuf[JID_PART_MAX + 1];
    size_t llen = 0, dlen = 0, rlen = 0;
    const char *dstart = at ? at + 1 : s;
    size_t draw = head_len - (size_t)(dstart - s);

    if (at && !prep_local(s, (size_t)(at - s), lbuf, &llen, &why))
        goto fail;
    if (draw == 0) {
        why = "empty domainpart";
        goto fail;
    }
    if (!prep_domain(dstart, draw, dbuf, &dlen, &why))
        goto fail;
    if (slash && !prep_resource(slash + 1, len - head_len - 1, rbuf, &rlen, &why))
        goto fail;
    return build(a, at ? lbuf : NULL, llen, dbuf, dlen, slash ? rbuf : NULL, rlen);
fail:
    set_why(why_r, why);
    return NULL;
}

struct jid *jid_make(struct arena *a, const char *local, const char *domain, const char *resource,
                     const char **why_r)
{
    const char *why = NULL;
    char lbuf[JID_PART_MAX + 1], dbuf[JID_PART_MAX + 1], rbuf[JID_PART_MAX + 1];
    size_t llen = 0, dlen = 0, rlen = 0;
    if (local && !prep_local(local, strlen(local), lbuf, &llen, &why))
        goto fail;
    if (domain == NULL) {
        why = "empty domainpart";
        goto fail;
    }
    if (!prep_domain(domain, strlen(domain), dbuf, &dlen, &why))
        goto fail;
    if (resource && !prep_resource(resource, strlen(resource), rbuf, &rlen, &why))
        goto fail;
    return build(a, local ? lbuf : NULL, llen, dbuf, dlen, resource ? rbuf : NULL, rlen);
fail:
    set_why(why_r, why);
    return NULL;
}

void jid_free(struct jid **j)
{
    if (j == NULL)
        return;
    free(*j);
    *j = NULL;
}

struct jid *jid_copy(struct arena *a, const struct jid *j)
{
    if (j == NULL)
        return NULL;
    return build(a, j->local, j->local ? strlen(j->local) : 0, j->domain, strlen(j->domain),
                 j->resource, j->resource ? strlen(j->resource) : 0);
}

typedef bool prep_fn(const char *s, size_t len, char *out, size_t *outlen, const char **why);

static char *prep_one(prep_fn *fn, struct arena *a, const char *s, const char **why_r)
{
    char buf[JID_PART_MAX + 1];
    size_t n = 0;
    const char *why = NULL;
    if (s == NULL) {
        set_why(why_r, "missing part");
        return NULL;
    }
    if (!fn(s, strlen(s), buf, &n, &why)) {
        set_why(why_r, why);
        return NULL;
    }
    return a ? arena_strndup(a, buf, n) : xstrndup(buf, n);
}

char *jid_prep_local(struct arena *a, const char *s, const char **why_r)
{
    return prep_one(prep_local, a, s, why_r);
}

char *jid_prep_resource(struct arena *a, const char *s, const char **why_r)
{
    return prep_one(prep_resource, a, s, why_r);
}

char *jid_prep_domain(struct arena *a, const char *s, const char **why_r)
{
    return prep_one(prep_domain, a, s, why_r);
}
