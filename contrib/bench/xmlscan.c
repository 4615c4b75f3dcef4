/*
 * xmlscan.c — a tiny XML scanner, just enough for the generator's side of an XMPP stream.
 *
 * It finds the stream header, the stream's end and each complete top-level element (a stanza
 * or a negotiation element) in a byte buffer, and answers a few questions about an element: its
 * local name, an attribute's raw value, the text of a named child. It does not build a tree,
 * check well-formedness beyond what finding element boundaries needs, decode entities or
 * resolve namespaces: the generator only ever compares values it produced itself (sequence
 * numbers, JIDs) or short protocol tokens, so a full parser would spend the CPU that should go
 * to the server under test. It does honour quoted attribute values (which may contain '>'),
 * comments, CDATA sections and processing instructions, so no legal input misplaces a boundary.
 */
#include "bench.h"

#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The '>' that ends the tag whose body starts at p, skipping quoted attribute values. */
static const char *tag_end(const char *p, const char *e)
{
    char quote = 0;
    for (; p < e; p++) {
        char c = *p;
        if (quote) {
            if (c == quote)
                quote = 0;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '>') {
            return p;
        }
    }
    return NULL;
}

/* Fills name and attributes of the start tag <...> spanning p..gt (gt at '>'). */
static void describe_tag(struct xs_item *it, const char *p, const char *gt)
{
    const char *n = p + 1, *ne = n;
    while (ne < gt && !is_space(*ne) && *ne != '/' && *ne != '>')
        ne++;
    const char *colon = memchr(n, ':', (size_t)(ne - n));
    it->name = colon ? colon + 1 : n;
    it->name_len = (size_t)(ne - it->name);
    const char *ae = gt;
    if (ae > ne && ae[-1] == '/')
        ae--;
    it->attrs = ne;
    it->attrs_len = (size_t)(ae - ne);
}

/* Skips a comment, CDATA section or processing instruction starting at q. Returns the byte
 * after it, NULL when it is not complete yet, or e + 1 when it is not one of those. */
static const char *skip_special(const char *q, const char *e)
{
    if (q[1] == '?') {
        const char *end = memmem(q + 2, (size_t)(e - q - 2), "?>", 2);
        return end ? end + 2 : NULL;
    }
    if (e - q < 4)
        return NULL;
    if (memcmp(q, "<!--", 4) == 0) {
        const char *end = memmem(q + 4, (size_t)(e - q - 4), "-->", 3);
        return end ? end + 3 : NULL;
    }
    if (e - q < 9)
        return memcmp(q, "<![CDATA[", (size_t)(e - q)) == 0 ? NULL : e + 1;
    if (memcmp(q, "<![CDATA[", 9) == 0) {
        const char *end = memmem(q + 9, (size_t)(e - q - 9), "]]>", 3);
        return end ? end + 3 : NULL;
    }
    return e + 1;
}

/* One complete top-level element starting at p, or XS_MORE / XS_ERROR. */
static enum xs_kind scan_element(const char *p, const char *e, struct xs_item *it,
                                 const char **after)
{
    const char *q = p;
    int level = 0;
    bool first = true;
    while (q < e) {
        if (*q != '<') {
            q = memchr(q, '<', (size_t)(e - q));
            if (!q)
                break;
            continue;
        }
        if (e - q < 2)
            break;
        if (q[1] == '/') {
            const char *gt = memchr(q, '>', (size_t)(e - q));
            if (!gt)
                break;
            if (--level == 0) {
                it->inner_len = (size_t)(q - it->inner);
                *after = gt + 1;
                return XS_ELEMENT;
            }
            q = gt + 1;
            continue;
        }
        if (q[1] == '!' || q[1] == '?') {
            if (first)
                return XS_ERROR;
            const char *n = skip_special(q, e);
            if (!n)
                break;
            if (n == e + 1)
                return XS_ERROR;
            q = n;
            continue;
        }
        const char *gt = tag_end(q + 1, e);
        if (!gt)
            break;
        bool self_closing = gt[-1] == '/';
        if (first) {
            describe_tag(it, q, gt);
            it->inner = gt + 1;
            it->inner_len = 0;
            first = false;
        }
        q = gt + 1;
        if (!self_closing)
            level++;
        if (level == 0) {
            *after = q;
            return XS_ELEMENT;
        }
    }
    return e - p > XS_MAX_ELEMENT ? XS_ERROR : XS_MORE;
}

enum xs_kind xs_next(struct xscan *s, const char *buf, size_t len, size_t *pos, struct xs_item *it)
{
    const char *p = buf + *pos, *e = buf + len;
    for (;;) {
        /* Text between top-level elements is whitespace keepalive: skipped. */
        const char *lt = memchr(p, '<', (size_t)(e - p));
        if (!lt) {
            *pos = len;
            return XS_MORE;
        }
        p = lt;
        *pos = (size_t)(p - buf);
        if (e - p < 2)
            return XS_MORE;
        if (p[1] == '?' || p[1] == '!') {
            const char *n = skip_special(p, e);
            if (!n)
                return e - p > XS_MAX_ELEMENT ? XS_ERROR : XS_MORE;
            if (n == e + 1)
                return XS_ERROR;
            p = n;
            continue;
        }
        it->start = p;
        if (s->depth == 0) {
            if (p[1] == '/')
                return XS_ERROR;
            const char *gt = tag_end(p + 1, e);
            if (!gt)
                return e - p > XS_MAX_ELEMENT ? XS_ERROR : XS_MORE;
            describe_tag(it, p, gt);
            if (!xs_name_is(it, "stream"))
                return XS_ERROR;
            it->len = (size_t)(gt + 1 - p);
            it->inner = gt + 1;
            it->inner_len = 0;
            s->depth = 1;
            *pos = (size_t)(gt + 1 - buf);
            return XS_OPEN;
        }
        if (p[1] == '/') {
            const char *gt = memchr(p, '>', (size_t)(e - p));
            if (!gt)
                return XS_MORE;
            s->depth = 0;
            it->len = (size_t)(gt + 1 - p);
            *pos = (size_t)(gt + 1 - buf);
            return XS_CLOSE;
        }
        const char *after = NULL;
        enum xs_kind k = scan_element(p, e, it, &after);
        if (k == XS_ELEMENT) {
            it->len = (size_t)(after - p);
            *pos = (size_t)(after - buf);
        }
        return k;
    }
}

bool xs_name_is(const struct xs_item *it, const char *name)
{
    size_t n = strlen(name);
    return it->name_len == n && memcmp(it->name, name, n) == 0;
}

bool xs_attr(const struct xs_item *it, const char *name, const char **val, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = it->attrs, *e = it->attrs + it->attrs_len;
    for (;;) {
        while (p < e && is_space(*p))
            p++;
        if (p >= e)
            return false;
        const char *an = p;
        while (p < e && *p != '=' && !is_space(*p))
            p++;
        size_t al = (size_t)(p - an);
        while (p < e && is_space(*p))
            p++;
        if (p >= e || *p != '=')
            return false;
        p++;
        while (p < e && is_space(*p))
            p++;
        if (p >= e || (*p != '\'' && *p != '"'))
            return false;
        char quote = *p++;
        const char *v = p;
        const char *ve = memchr(p, quote, (size_t)(e - p));
        if (!ve)
            return false;
        if (al == nl && memcmp(an, name, nl) == 0) {
            *val = v;
            *vlen = (size_t)(ve - v);
            return true;
        }
        p = ve + 1;
    }
}

bool xs_attr_is(const struct xs_item *it, const char *name, const char *value)
{
    const char *v;
    size_t vl;
    return xs_attr(it, name, &v, &vl) && vl == strlen(value) && memcmp(v, value, vl) == 0;
}

/* The next start tag <name ...> at or after q: its '<' in *lt and its '>' returned; NULL when
 * there is none or it is cut off. */
static const char *find_start_tag(const char *q, const char *e, const char *name, const char **lt)
{
    size_t nl = strlen(name);
    while (q < e && (q = memchr(q, '<', (size_t)(e - q))) != NULL) {
        if ((size_t)(e - q) > nl + 1 && memcmp(q + 1, name, nl) == 0) {
            char c = q[1 + nl];
            if (c == '>' || c == '/' || is_space(c)) {
                *lt = q;
                return tag_end(q + 1 + nl, e);
            }
        }
        q++;
    }
    return NULL;
}

bool xs_child_text(const char *p, size_t len, size_t *off, const char *name, const char **text,
                   size_t *tlen)
{
    const char *e = p + len, *lt;
    const char *gt = find_start_tag(p + *off, e, name, &lt);
    if (!gt)
        return false;
    if (gt[-1] == '/') {
        *text = gt + 1;
        *tlen = 0;
        *off = (size_t)(gt + 1 - p);
        return true;
    }
    const char *t = gt + 1;
    const char *te = memchr(t, '<', (size_t)(e - t));
    if (!te)
        return false;
    *text = t;
    *tlen = (size_t)(te - t);
    *off = (size_t)(te - p);
    return true;
}

bool xs_has_child(const char *p, size_t len, const char *name)
{
    size_t off = 0;
    const char *t;
    size_t tl;
    return xs_child_text(p, len, &off, name, &t, &tl);
}

bool xs_next_tag(const char *p, size_t len, size_t *off, const char *name, struct xs_item *tag)
{
    const char *q;
    const char *gt = find_start_tag(p + *off, p + len, name, &q);
    if (!gt)
        return false;
    describe_tag(tag, q, gt);
    tag->start = q;
    tag->len = (size_t)(gt + 1 - q);
    tag->inner = gt + 1;
    tag->inner_len = 0;
    *off = (size_t)(gt + 1 - p);
    return true;
}
