/*
 * serialize.c — writes an element tree as XML into a buf.
 *
 * This runs once for every stanza that leaves the server, so it is a plain recursive walk that
 * appends to the output buffer and never allocates anything but buffer growth. Escaping scans
 * runs of ordinary bytes with a 256-entry class table and copies each run in one go.
 *
 * Output rules. An element gets xmlns='…' only when its namespace differs from the one in
 * scope (the parent's, or default_ns at the top). xml:* attributes are written with the
 * predefined xml prefix; an attribute in any other namespace gets a prefix ns0, ns1, … declared
 * on the same element, so no declaration can leak into or clash with another element. Text
 * escapes & < > and a carriage return (which a parser would otherwise turn into a line feed);
 * attribute values also escape both quotes, tab and line feed (which attribute-value
 * normalisation would otherwise turn into spaces). Control characters that XML 1.0 cannot
 * carry at all are dropped, so a builder's bad string cannot make the output ill-formed; the
 * parser never produces them. Attributes named xmlns or xmlns:* are skipped: namespaces are
 * the serializer's business, and emitting such an attribute could duplicate a declaration.
 */
#include <string.h>

#include "stanza.h"

enum { ESC_TEXT = 1, ESC_ATTR = 2, ESC_DROP = 4 };

/* Which bytes need attention in text and in attribute values. */
static const unsigned char esc_class[256] = {
    [0x00] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x01] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x02] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x03] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x04] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x05] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x06] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x07] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x08] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    ['\t'] = ESC_ATTR,
    ['\n'] = ESC_ATTR,
    [0x0b] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x0c] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    ['\r'] = ESC_TEXT | ESC_ATTR,
    [0x0e] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x0f] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x10] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x11] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x12] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x13] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x14] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x15] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x16] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x17] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x18] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x19] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x1a] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x1b] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x1c] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x1d] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x1e] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    [0x1f] = ESC_TEXT | ESC_ATTR | ESC_DROP,
    ['&'] = ESC_TEXT | ESC_ATTR,
    ['<'] = ESC_TEXT | ESC_ATTR,
    ['>'] = ESC_TEXT | ESC_ATTR,
    ['"'] = ESC_ATTR,
    ['\''] = ESC_ATTR,
};

static inline void put(struct buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n)
        buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void put_char(struct buf *b, char c)
{
    if (b->cap == b->len)
        buf_reserve(b, 1);
    b->data[b->len++] = c;
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

static void escape(struct buf *b, const char *s, size_t len, unsigned mask)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && !(esc_class[*p] & mask))
            p++;
        if (p > run)
            put(b, run, (size_t)(p - run));
        if (p == end)
            break;
        switch (*p++) {
        case '&':
            PUT_LIT(b, "&amp;");
            break;
        case '<':
            PUT_LIT(b, "&lt;");
            break;
        case '>':
            PUT_LIT(b, "&gt;");
            break;
        case '"':
            PUT_LIT(b, "&quot;");
            break;
        case '\'':
            PUT_LIT(b, "&apos;");
            break;
        case '\t':
            PUT_LIT(b, "&#9;");
            break;
        case '\n':
            PUT_LIT(b, "&#10;");
            break;
        case '\r':
            PUT_LIT(b, "&#13;");
            break;
        default:
            break; /* a control character XML cannot represent */
        }
    }
}

void xml_escape(struct buf *out, const char *s, size_t len)
{
    escape(out, s, len, ESC_ATTR);
}

static void put_attr_value(struct buf *b, const char *v)
{
    PUT_LIT(b, "='");
    escape(b, v, strlen(v), ESC_ATTR);
    put_char(b, '\'');
}

static void put_prefix(struct buf *b, unsigned idx)
{
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + idx % 10);
        idx /= 10;
    } while (idx > 0);
    PUT_LIT(b, "ns");
    while (n > 0)
        put_char(b, tmp[--n]);
}

#define NS_XMLNS "http://www.w3.org/2000/xmlns/"

/* A namespace declaration disguised as an attribute, which must not be written as one. */
static bool is_declaration(const struct xml_attr *at)
{
    if (at->ns != NULL && at->ns[0] != '\0')
        return strcmp(at->ns, NS_XMLNS) == 0;
    return strncmp(at->name, "xmlns", 5) == 0 && (at->name[5] == '\0' || at->name[5] == ':');
}

/* The prefix number of a namespaced attribute: the count of distinct namespaces (other than
 * xml) among the attributes before the first one in the same namespace. Elements have few
 * attributes, so the quadratic scan beats any bookkeeping. */
static bool needs_prefix(const struct xml_attr *at)
{
    return at->ns != NULL && at->ns[0] != '\0' && strcmp(at->ns, NS_XML) != 0 &&
           strcmp(at->ns, NS_XMLNS) != 0;
}

static unsigned prefix_index(const struct xml_attr *first, const struct xml_attr *at, bool *new_r)
{
    unsigned distinct = 0;
    for (const struct xml_attr *p = first; p != at; p = p->next) {
        if (!needs_prefix(p))
            continue;
        bool seen = false;
        for (const struct xml_attr *q = first; q != p; q = q->next)
            if (needs_prefix(q) && strcmp(q->ns, p->ns) == 0) {
                seen = true;
                break;
            }
        if (seen)
            continue;
        if (strcmp(p->ns, at->ns) == 0) {
            *new_r = false;
            return distinct;
        }
        distinct++;
    }
    *new_r = true;
    return distinct;
}

static void put_attrs(struct buf *b, const struct xml_attr *first)
{
    for (const struct xml_attr *at = first; at != NULL; at = at->next) {
        if (is_declaration(at))
            continue;
        put_char(b, ' ');
        if (at->ns == NULL || at->ns[0] == '\0') {
            /* unqualified */
        } else if (strcmp(at->ns, NS_XML) == 0) {
            PUT_LIT(b, "xml:");
        } else {
            bool is_new;
            unsigned idx = prefix_index(first, at, &is_new);
            if (is_new) {
                PUT_LIT(b, "xmlns:");
                put_prefix(b, idx);
                put_attr_value(b, at->ns);
                put_char(b, ' ');
            }
            put_prefix(b, idx);
            put_char(b, ':');
        }
        put(b, at->name, strlen(at->name));
        put_attr_value(b, at->value);
    }
}

static void serialize_el(struct buf *b, const struct xml_el *el, const char *scope_ns)
{
    size_t name_len = strlen(el->name);
    put_char(b, '<');
    put(b, el->name, name_len);
    if (el->ns != scope_ns && strcmp(el->ns, scope_ns) != 0) {
        PUT_LIT(b, " xmlns");
        put_attr_value(b, el->ns);
    }
    if (el->attrs != NULL)
        put_attrs(b, el->attrs);
    if (el->children == NULL) {
        PUT_LIT(b, "/>");
        return;
    }
    put_char(b, '>');
    for (const struct xml_node *n = el->children; n != NULL; n = n->next) {
        if (n->kind == XML_NODE_ELEMENT) {
            serialize_el(b, (const struct xml_el *)n, el->ns);
        } else {
            const struct xml_text *t = (const struct xml_text *)n;
            escape(b, t->text, t->len, ESC_TEXT);
        }
    }
    PUT_LIT(b, "</");
    put(b, el->name, name_len);
    put_char(b, '>');
}

void xml_serialize(struct buf *out, const struct xml_el *el, const char *default_ns)
{
    serialize_el(out, el, default_ns != NULL ? default_ns : "");
}
