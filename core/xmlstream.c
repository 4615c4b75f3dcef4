/*
 * xmlstream.c — an XMPP stream parser on libxml2's SAX2 push parser.
 *
 * One libxml2 push context per stream (a stream restart makes a new one). The SAX callbacks
 * build the tree of each top-level element straight into a fresh arena, so the only memory a
 * stanza costs is its arena; character data is gathered in a scratch buffer owned by the
 * stream and copied into the arena once per text node.
 *
 * The SAX callbacks never call the user. What they finish — the stream header, stanzas in
 * order, the stream close, an error — is queued in the stream and delivered in that order once
 * xmlParseChunk() has returned, with no libxml2 frame on the stack, so a user callback may
 * reset or free the stream. libxml2's push parser acts on a tag as soon as a '>' follows its
 * last '<' outside quotes, so a stanza is delivered by the same xmlstream_feed() call that
 * supplied its final '>'. A reset from a callback drops whatever was queued after the stanza
 * that asked for it, together with the rest of the input.
 *
 * The byte limit counts a top-level element from its first byte (the first non-blank byte
 * after the previous one ended; blank keepalives in between count for nothing) to the last
 * byte fed, whether libxml2 has parsed it yet or not. Input is handed to libxml2 in pieces no
 * longer than what the element under way may still take, so an endless text, attribute or
 * element is refused the moment it would pass the limit, before libxml2 sees the excess. When
 * elements end inside a piece, libxml2's byte position in the callback (xmlByteConsumed(),
 * just after the final '>') tells where, and the next element is found from there in the
 * piece, which is still at hand.
 *
 * Restricted XML (RFC 6120 §11) is enforced through SAX callbacks that libxml2 calls before it
 * would act on the construct: internalSubset/externalSubset (any DOCTYPE), the declaration
 * callbacks, getEntity (a reference to anything but the five predefined entities, which
 * libxml2 resolves without asking), comment and processingInstruction. The XML declaration is
 * not a processing instruction to libxml2 and is accepted. Entities are never substituted and
 * nothing is loaded: no DTD options, XML_PARSE_NONET, and resolveEntity refuses. Errors reach a
 * structured handler set on the context (never stderr); warnings are ignored, errors end the
 * stream with not-well-formed. Two guards against quadratic rescans in libxml2 2.9's push
 * parser are described at guard_pending().
 */
#include "xmlstream.h"

#include "slab.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_STANZA_BYTES (256 * 1024)
#define DEFAULT_MAX_DEPTH        32
#define DEFAULT_MAX_ATTRS        64
/* libxml2 interns every element, attribute and prefix name and every namespace URI of a stream
 * in a dictionary that lives as long as the context. Its own cap is 10 MB; a peer inventing
 * names is stopped far earlier. */
#define DICT_LIMIT (1024 * 1024)
/* xmlParseChunk() takes an int. */
#define MAX_PIECE (1 << 30)

enum xs_state { XS_OPEN, XS_CLOSED, XS_FAILED };

/* A finished stanza waiting for delivery; lives in the stanza's own arena. */
struct ready {
    struct stanza *st;
    struct ready *next;
};

struct xmlstream {
    xmlParserCtxtPtr ctxt;
    struct xmlstream_callbacks cb;
    void *ud;
    struct xmlstream_limits lim;
    enum xs_state state; /* as the user sees it: changes when the close or error is delivered */

    bool in_feed;       /* inside xmlstream_feed(): user callbacks may run */
    bool free_pending;  /* xmlstream_free() was called from a callback */
    bool reset_in_feed; /* xmlstream_reset() was called from a callback */

    /* Parser side. Once halted, the SAX callbacks ignore everything. */
    bool halted;
    unsigned depth; /* open elements, the stream element included */
    struct arena *arena;
    struct xml_el *root, *cur;
    struct buf text; /* character data not yet attached to cur */

    /* Queued for delivery, in this order. */
    bool hdr_ready;
    struct xmlstream_header hdr;
    struct arena *hdr_arena;
    struct ready *queue, **queue_tail;
    bool close_ready;
    bool error_ready;
    enum stream_error err;
    char err_text[128];

    /* Byte accounting, in offsets from the start of the current context's input. */
    uint64_t fed;        /* bytes given to libxml2 */
    bool unit_ended;     /* a top-level element ended during the last xmlParseChunk() */
    uint64_t last_end;   /* offset just after the last top-level element that ended */
    bool unit_open;      /* a top-level element (or the header, or garbage) has begun */
    uint64_t unit_start; /* its first byte */
    unsigned bom;        /* bytes of a UTF-8 byte order mark skipped at the start */

    /* Hibernation (see xmlstream_hibernate()): the stream header's namespace declarations,
     * replayed to a new context when an idle stream wakes up. */
    char *resume; /* slab memory: it lives as long as the stream */
    size_t resume_len;
    bool resuming; /* the header being parsed is the replay: no callback, no checks */

    /* Long-tag guard for libxml2 before 2.11 (see guard_pending()). */
    bool tag_active;     /* a long tag is pending in libxml2 and tracked here */
    uint64_t tag_origin; /* offset of its '<' */
    char tag_quote;      /* quote open at the end of what was tracked, or 0 */
    bool tag_flushed;    /* the tracked tag was found complete and given to libxml2 */
    struct buf hold;     /* input held back while the tag is incomplete */
};

static pthread_once_t libxml_once = PTHREAD_ONCE_INIT;

static void libxml_init(void)
{
    xmlInitParser();
}

/* The few libxml2 messages that do not go through the per-context handler use the per-thread
 * generic one, which is silenced on every thread that parses. */
static void silent(void *ctx, const char *msg, ...)
{
}

static void silence_thread(void)
{
    static _Thread_local bool done;
    if (!done) {
        xmlSetGenericErrorFunc(NULL, silent);
        done = true;
    }
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t count_blanks(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_blank((unsigned char)p[i]))
        i++;
    return i;
}

/* ---- failure ---- */

/* Records the stream's error (the first one wins) and stops building anything further. */
static void fail(struct xmlstream *xs, enum stream_error cond, const char *text)
{
    if (xs->halted)
        return;
    xs->halted = true;
    xs->error_ready = true;
    xs->err = cond;
    xs->err_text[0] = '\0';
    if (text != NULL) {
        /* One line: libxml2 messages end in a newline and some carry a second line of bytes. */
        size_t n = strcspn(text, "\n");
        if (n > sizeof(xs->err_text) - 1)
            n = sizeof(xs->err_text) - 1;
        memcpy(xs->err_text, text, n);
        while (n > 0 && text[n - 1] == ' ')
            n--;
        xs->err_text[n] = '\0';
    }
}

/* Failure detected in a SAX callback: libxml2 must not go on with this piece. */
static void fail_parse(struct xmlstream *xs, enum stream_error cond, const char *text)
{
    fail(xs, cond, text);
    xmlStopParser(xs->ctxt);
}

static void on_structured_error(void *ud, xmlErrorPtr e)
{
    struct xmlstream *xs = ud;
    if (e == NULL || e->level == XML_ERR_WARNING || xs->halted)
        return;
    /* libxml2 checks that namespace names parse as URIs and reports a failure as an error, but
     * the Namespaces recommendation does not make such a document ill-formed. */
    if (e->code == XML_WAR_NS_URI || e->code == XML_WAR_NS_URI_RELATIVE)
        return;
    enum stream_error cond = STRERR_NOT_WELL_FORMED;
    const char *text = e->message;
    const xmlParserInputPtr in = xs->ctxt->input;
    if (e->code == XML_ERR_NO_MEMORY) {
        /* In practice the dictionary limit: a peer sending ever new names. */
        cond = STRERR_POLICY_VIOLATION;
        text = "too many distinct names in one stream";
    } else if (e->code == XML_NS_ERR_UNDEFINED_NAMESPACE && xs->depth == 0) {
        cond = STRERR_BAD_NAMESPACE_PREFIX;
    } else if (in != NULL && in->cur != NULL && in->end - in->cur >= 2 && in->cur[0] == '<' &&
               in->cur[1] == '!') {
        /* Inside the stream libxml2 has no state for markup declarations (<!DOCTYPE,
         * <!ENTITY, ...) and calls them broken content; restricted-xml says more. A broken
         * CDATA section is only broken. */
        if (in->end - in->cur < 3 || in->cur[2] != '[') {
            cond = STRERR_RESTRICTED_XML;
            text = "markup declaration in content";
        }
    }
    /* Fatal errors disable SAX by themselves; the feed loop stops after this piece. */
    fail(xs, cond, text);
}

/* ---- restricted XML ---- */

static void on_internal_subset(void *ud, const xmlChar *name, const xmlChar *ext_id,
                               const xmlChar *system_id)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "document type declaration");
}

static void on_entity_decl(void *ud, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "entity declaration");
}

static void on_notation_decl(void *ud, const xmlChar *name, const xmlChar *public_id,
                             const xmlChar *system_id)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "notation declaration");
}

static void on_attribute_decl(void *ud, const xmlChar *elem, const xmlChar *fullname, int type,
                              int def, const xmlChar *default_value, xmlEnumerationPtr tree)
{
    xmlFreeEnumeration(tree); /* the callee owns it */
    fail_parse(ud, STRERR_RESTRICTED_XML, "attribute declaration");
}

static void on_element_decl(void *ud, const xmlChar *name, int type, xmlElementContentPtr content)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "element declaration");
}

static void on_unparsed_entity_decl(void *ud, const xmlChar *name, const xmlChar *public_id,
                                    const xmlChar *system_id, const xmlChar *notation)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "entity declaration");
}

static xmlEntityPtr on_get_entity(void *ud, const xmlChar *name)
{
    /* libxml2 resolves the predefined entities before asking; this is a guard in case. */
    xmlEntityPtr e = xmlGetPredefinedEntity(name);
    if (e == NULL)
        fail_parse(ud, STRERR_RESTRICTED_XML, "entity reference");
    return e;
}

static xmlEntityPtr on_get_parameter_entity(void *ud, const xmlChar *name)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "parameter entity reference");
    return NULL;
}

static xmlParserInputPtr on_resolve_entity(void *ud, const xmlChar *public_id,
                                           const xmlChar *system_id)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "external entity");
    return NULL;
}

static void on_comment(void *ud, const xmlChar *value)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "comment");
}

static void on_pi(void *ud, const xmlChar *target, const xmlChar *data)
{
    fail_parse(ud, STRERR_RESTRICTED_XML, "processing instruction");
}

/* ---- tree building ---- */

/* A top-level element (or the header, or the close) ended; pos is just after its '>'. */
static void unit_end(struct xmlstream *xs, uint64_t pos)
{
    xs->unit_ended = true;
    xs->last_end = pos;
}

static uint64_t parse_pos(const struct xmlstream *xs)
{
    long pos = xmlByteConsumed(xs->ctxt);
    return pos > 0 ? (uint64_t)pos : 0;
}

static void flush_text(struct xmlstream *xs)
{
    if (xs->text.len == 0)
        return;
    struct xml_text *t = arena_alloc(xs->arena, sizeof(*t));
    t->node.kind = XML_NODE_TEXT;
    t->text = arena_memdup(xs->arena, xs->text.data, xs->text.len);
    t->len = xs->text.len;
    struct xml_el *el = xs->cur;
    if (el->last_child != NULL)
        el->last_child->next = &t->node;
    else
        el->children = &t->node;
    el->last_child = &t->node;
    xs->text.len = 0;
}

static void on_characters(void *ud, const xmlChar *ch, int len)
{
    struct xmlstream *xs = ud;
    if (xs->halted || len <= 0)
        return;
    if (xs->depth >= 2) {
        buf_append(&xs->text, ch, (size_t)len);
        return;
    }
    /* Between stanzas only whitespace (keepalives) may appear. */
    for (int i = 0; i < len; i++)
        if (!is_blank(ch[i])) {
            fail_parse(xs, STRERR_BAD_FORMAT, "text at stream level");
            return;
        }
}

/* Attribute values come from libxml2 with every '&' (from &amp; or &#38;) re-encoded as
 * "&#38;", because entities are not substituted; nothing else can produce a '&'. */
static const char *attr_value(struct arena *a, const xmlChar *v, const xmlChar *end)
{
    size_t len = (size_t)(end - v);
    const char *amp = memchr(v, '&', len);
    if (amp == NULL)
        return arena_memdup(a, v, len);
    char *out = arena_memdup(a, v, len), *w = out + (amp - (const char *)v);
    for (const char *r = amp; r < (const char *)end;) {
        if (*r == '&' && (const char *)end - r >= 5 && memcmp(r, "&#38;", 5) == 0) {
            *w++ = '&';
            r += 5;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return out;
}

/* The namespace of an element: shared with its parent when equal (the common case), the
 * static string for the two stanza namespaces, otherwise a copy. */
static const char *ns_string(struct arena *a, const struct xml_el *parent, const xmlChar *uri)
{
    const char *u = (const char *)uri;
    if (u == NULL)
        return "";
    if (parent != NULL && strcmp(parent->ns, u) == 0)
        return parent->ns;
    if (strcmp(u, NS_CLIENT) == 0)
        return NS_CLIENT;
    if (strcmp(u, NS_SERVER) == 0)
        return NS_SERVER;
    return arena_strdup(a, u);
}

static void start_header(struct xmlstream *xs, const xmlChar *localname, const xmlChar *prefix,
                         const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                         int nb_attributes, const xmlChar **attributes)
{
    if (uri == NULL || strcmp((const char *)uri, NS_STREAMS) != 0) {
        fail_parse(xs, STRERR_INVALID_NAMESPACE, "stream element not in the streams namespace");
        return;
    }
    if (strcmp((const char *)localname, "stream") != 0) {
        fail_parse(xs, STRERR_BAD_FORMAT, "root element is not a stream");
        return;
    }
    if (xs->resuming) {
        xs->resuming = false;
        xs->depth = 1;
        const xmlParserInputPtr rin = xs->ctxt->input;
        uint64_t rpos = parse_pos(xs);
        unit_end(xs, rin->cur < rin->end && rin->cur[0] == '>' ? rpos + 1 : rpos);
        return;
    }
    /* What a replayed header needs: the element with the same prefix and every namespace
     * declaration in scope for the stanzas that follow. */
    struct buf r = BUF_INIT;
    buf_append_str(&r, "<");
    if (prefix != NULL) {
        buf_append_str(&r, (const char *)prefix);
        buf_append_str(&r, ":");
    }
    buf_append_str(&r, "stream");
    for (int i = 0; i < nb_namespaces; i++) {
        const char *np = (const char *)namespaces[2 * i], *nu = (const char *)namespaces[2 * i + 1];
        buf_append_str(&r, np != NULL ? " xmlns:" : " xmlns");
        if (np != NULL)
            buf_append_str(&r, np);
        buf_append_str(&r, "='");
        xml_escape(&r, nu != NULL ? nu : "", nu != NULL ? strlen(nu) : 0);
        buf_append_str(&r, "'");
    }
    buf_append_str(&r, ">");
    slab_free(xs->resume);
    xs->resume = slab_strndup(r.data, r.len);
    xs->resume_len = r.len;
    buf_free(&r);

    struct arena *a = arena_new(512);
    struct xmlstream_header *h = &xs->hdr;
    memset(h, 0, sizeof(*h));
    h->prefix = prefix != NULL ? arena_strdup(a, (const char *)prefix) : NULL;
    h->ns = NS_STREAMS;
    for (int i = 0; i < nb_namespaces; i++)
        if (namespaces[2 * i] == NULL && namespaces[2 * i + 1] != NULL)
            h->default_ns = arena_strdup(a, (const char *)namespaces[2 * i + 1]);
    for (int i = 0; i < nb_attributes; i++) {
        const xmlChar **at = attributes + 5 * i;
        const char *name = (const char *)at[0], *ns = (const char *)at[2];
        const char *value = attr_value(a, at[3], at[4]);
        if (ns != NULL) {
            if (strcmp(ns, NS_XML) == 0 && strcmp(name, "lang") == 0)
                h->lang = value;
        } else if (strcmp(name, "to") == 0) {
            h->to = value;
        } else if (strcmp(name, "from") == 0) {
            h->from = value;
        } else if (strcmp(name, "id") == 0) {
            h->id = value;
        } else if (strcmp(name, "version") == 0) {
            h->version = value;
        }
    }
    xs->hdr_arena = a;
    xs->hdr_ready = true;
    xs->depth = 1;
    /* libxml2 calls this with the '>' of the start tag not yet consumed. */
    const xmlParserInputPtr in = xs->ctxt->input;
    uint64_t pos = parse_pos(xs);
    unit_end(xs, in->cur < in->end && in->cur[0] == '>' ? pos + 1 : pos);
}

static void on_start_element(void *ud, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                             int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    struct xmlstream *xs = ud;
    if (xs->halted)
        return;
    if ((unsigned)nb_attributes > xs->lim.max_attrs) {
        fail_parse(xs, STRERR_POLICY_VIOLATION, "too many attributes");
        return;
    }
    if (xs->depth == 0) {
        start_header(xs, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                     attributes);
        return;
    }
    if (xs->depth > xs->lim.max_depth) {
        fail_parse(xs, STRERR_POLICY_VIOLATION, "elements nested too deeply");
        return;
    }
    struct xml_el *parent = xs->cur;
    if (parent == NULL)
        xs->arena = arena_new(0);
    else
        flush_text(xs);
    struct arena *a = xs->arena;
    struct xml_el *el = arena_alloc(a, sizeof(*el));
    el->node.kind = XML_NODE_ELEMENT;
    el->name = arena_strdup(a, (const char *)localname);
    el->ns = ns_string(a, parent, uri);
    struct xml_attr **tail = &el->attrs;
    for (int i = 0; i < nb_attributes; i++) {
        const xmlChar **at = attributes + 5 * i;
        struct xml_attr *attr = arena_alloc(a, sizeof(*attr));
        attr->name = arena_strdup(a, (const char *)at[0]);
        if (at[2] != NULL)
            attr->ns = strcmp((const char *)at[2], NS_XML) == 0
                           ? NS_XML
                           : arena_strdup(a, (const char *)at[2]);
        attr->value = attr_value(a, at[3], at[4]);
        *tail = attr;
        tail = &attr->next;
    }
    if (parent == NULL) {
        xs->root = el;
    } else {
        el->parent = parent;
        if (parent->last_child != NULL)
            parent->last_child->next = &el->node;
        else
            parent->children = &el->node;
        parent->last_child = &el->node;
    }
    xs->cur = el;
    xs->depth++;
}

static void on_end_element(void *ud, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri)
{
    struct xmlstream *xs = ud;
    if (xs->halted)
        return;
    if (xs->depth == 1) {
        /* </stream:stream>: nothing after it is read. */
        xs->depth = 0;
        xs->close_ready = true;
        xs->halted = true;
        unit_end(xs, parse_pos(xs));
        xmlStopParser(xs->ctxt);
        return;
    }
    flush_text(xs);
    xs->depth--;
    if (xs->depth > 1) {
        xs->cur = xs->cur->parent;
        return;
    }
    struct arena *a = xs->arena;
    struct ready *r = arena_alloc(a, sizeof(*r));
    r->st = stanza_wrap(a, xs->root);
    *xs->queue_tail = r;
    xs->queue_tail = &r->next;
    xs->arena = NULL;
    xs->root = xs->cur = NULL;
    unit_end(xs, parse_pos(xs));
}

static xmlSAXHandler sax_handler = {
    .initialized = XML_SAX2_MAGIC,
    .startElementNs = on_start_element,
    .endElementNs = on_end_element,
    .characters = on_characters,
    .ignorableWhitespace = on_characters,
    .internalSubset = on_internal_subset,
    .externalSubset = on_internal_subset,
    .entityDecl = on_entity_decl,
    .notationDecl = on_notation_decl,
    .attributeDecl = on_attribute_decl,
    .elementDecl = on_element_decl,
    .unparsedEntityDecl = on_unparsed_entity_decl,
    .getEntity = on_get_entity,
    .getParameterEntity = on_get_parameter_entity,
    .resolveEntity = on_resolve_entity,
    .comment = on_comment,
    .processingInstruction = on_pi,
    .serror = on_structured_error,
};

/* ---- stream life ---- */

static xmlParserCtxtPtr new_context(struct xmlstream *xs)
{
    xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(&sax_handler, xs, NULL, 0, NULL);
    if (ctxt == NULL) {
        /* libxml2 only fails here when malloc does, and running out of memory aborts everywhere
         * else in stanzad too. */
        fputs("stanzad: out of memory (creating an XML parser)\n", stderr);
        abort();
    }
    /* No entity substitution, no DTD loading, no network; CDATA arrives as characters; any
     * encoding declaration is ignored (XMPP is UTF-8, RFC 6120 §11.6). */
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_IGNORE_ENC |
                                XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    /* Decide the encoding now, so that libxml2 does not sniff the first bytes for UTF-16. */
    xmlSwitchEncoding(ctxt, XML_CHAR_ENCODING_UTF8);
    if (ctxt->dict != NULL)
        xmlDictSetLimit(ctxt->dict, DICT_LIMIT);
    return ctxt;
}

/* Drops everything parsed but not delivered, and the element being built. */
static void discard_pending(struct xmlstream *xs)
{
    arena_free(&xs->arena);
    xs->root = xs->cur = NULL;
    xs->text.len = 0;
    while (xs->queue != NULL) {
        struct stanza *st = xs->queue->st;
        xs->queue = xs->queue->next; /* read before the arena holding it goes */
        stanza_free(&st);
    }
    xs->queue_tail = &xs->queue;
    xs->hdr_ready = false;
    arena_free(&xs->hdr_arena);
    xs->close_ready = false;
}

static void restart(struct xmlstream *xs)
{
    discard_pending(xs);
    xs->error_ready = false;
    if (xs->ctxt != NULL)
        xmlFreeParserCtxt(xs->ctxt);
    xs->ctxt = new_context(xs);
    xs->resuming = false;
    xs->halted = false;
    xs->depth = 0;
    xs->fed = 0;
    xs->unit_ended = false;
    xs->unit_open = false;
    xs->bom = 0;
    xs->tag_active = xs->tag_flushed = false;
    xs->hold.len = 0;
    xs->state = XS_OPEN;
}

struct xmlstream *xmlstream_new(const struct xmlstream_callbacks *cb, void *ud,
                                const struct xmlstream_limits *limits)
{
    pthread_once(&libxml_once, libxml_init);
    silence_thread();
    struct xmlstream *xs = slab_alloc(sizeof(*xs));
    xs->cb = *cb;
    xs->ud = ud;
    if (limits != NULL)
        xs->lim = *limits;
    if (xs->lim.max_stanza_bytes == 0)
        xs->lim.max_stanza_bytes = DEFAULT_MAX_STANZA_BYTES;
    if (xs->lim.max_depth == 0)
        xs->lim.max_depth = DEFAULT_MAX_DEPTH;
    if (xs->lim.max_attrs == 0)
        xs->lim.max_attrs = DEFAULT_MAX_ATTRS;
    xs->queue_tail = &xs->queue;
    xs->ctxt = new_context(xs);
    return xs;
}

static void destroy(struct xmlstream *xs)
{
    discard_pending(xs);
    if (xs->ctxt != NULL)
        xmlFreeParserCtxt(xs->ctxt);
    buf_free(&xs->text);
    buf_free(&xs->hold);
    slab_free(xs->resume);
    slab_free(xs);
}

void xmlstream_free(struct xmlstream **xsp)
{
    struct xmlstream *xs = *xsp;
    if (xs == NULL)
        return;
    *xsp = NULL;
    if (xs->in_feed)
        xs->free_pending = true; /* xmlstream_feed() frees it when the callback returns */
    else
        destroy(xs);
}

void xmlstream_reset(struct xmlstream *xs)
{
    if (xs->state == XS_FAILED || xs->free_pending)
        return;
    restart(xs);
    if (xs->in_feed)
        xs->reset_in_feed = true;
}

/* Outcome of delivering a user callback. */
enum delivery { GO_ON, STOP_CHUNK, FREED_OK, FREED_FAILED };

/* After a user callback: did it free or reset the stream? */
static enum delivery after_callback(struct xmlstream *xs)
{
    if (xs->free_pending) {
        bool failed = xs->state == XS_FAILED;
        destroy(xs);
        return failed ? FREED_FAILED : FREED_OK;
    }
    if (xs->reset_in_feed) {
        xs->reset_in_feed = false;
        return STOP_CHUNK;
    }
    return GO_ON;
}

/* Delivers what the parser queued, in document order. */
static enum delivery deliver(struct xmlstream *xs)
{
    enum delivery d;
    if (xs->hdr_ready) {
        xs->hdr_ready = false;
        if (xs->cb.stream_open != NULL)
            xs->cb.stream_open(xs->ud, &xs->hdr);
        arena_free(&xs->hdr_arena); /* already gone if the callback reset the stream */
        if ((d = after_callback(xs)) != GO_ON)
            return d;
    }
    while (xs->queue != NULL) {
        struct ready *r = xs->queue;
        struct stanza *st = r->st;
        xs->queue = r->next; /* r lives in the stanza's arena, which now goes to the user */
        if (xs->queue == NULL)
            xs->queue_tail = &xs->queue;
        if (xs->cb.stanza != NULL)
            xs->cb.stanza(xs->ud, st);
        else
            stanza_free(&st);
        if ((d = after_callback(xs)) != GO_ON)
            return d;
    }
    if (xs->close_ready) {
        xs->close_ready = false;
        xs->state = XS_CLOSED;
        if (xs->cb.stream_close != NULL)
            xs->cb.stream_close(xs->ud);
        d = after_callback(xs);
        return d == GO_ON ? STOP_CHUNK : d;
    }
    if (xs->error_ready) {
        xs->error_ready = false;
        xs->state = XS_FAILED;
        discard_pending(xs);
        xmlStopParser(xs->ctxt);
        if (xs->cb.error != NULL)
            xs->cb.error(xs->ud, xs->err, xs->err_text[0] != '\0' ? xs->err_text : NULL);
        d = after_callback(xs);
        return d == GO_ON ? STOP_CHUNK : d;
    }
    return GO_ON;
}

/*
 * libxml2 before 2.11 rescans a pending tag, comment or processing instruction from its '<'
 * every time a chunk with a '>' arrives, so a peer that drips a long tag full of quoted '>'
 * (or an endless comment) a few bytes at a time costs quadratic time within the size limit.
 * Two guards keep the work linear:
 *  - a comment, processing instruction or DTD that libxml2 is waiting to complete is already
 *    restricted XML, so the stream fails as soon as one has begun;
 *  - once a pending tag is longer than LONG_TAG, its bytes are tracked here (quotes and the
 *    closing '>', resumable across feeds). Input whose every '>' is inside quotes is held
 *    back, and handed over with the piece that closes the tag, so libxml2 scans the tag once.
 *    For well-formed input libxml2 then always parses the tag; if it does not, the tag was
 *    broken in a way libxml2 has not reported yet, and the stream fails with not-well-formed.
 * Newer libxml2 resumes its scans and needs neither.
 */
#define LONG_TAG 1024

/* Tracks tag bytes; returns true with *end_r at the '>' that closes the tag. */
static bool track_tag(struct xmlstream *xs, const char *p, size_t n, size_t *end_r)
{
    char q = xs->tag_quote;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (q != 0) {
            if (c == q)
                q = 0;
        } else if (c == '\'' || c == '"') {
            q = c;
        } else if (c == '>' || c == '<') {
            /* '<' cannot be in a tag: handing it over lets libxml2 report the error. */
            xs->tag_quote = 0;
            *end_r = i;
            return true;
        }
    }
    xs->tag_quote = q;
    return false;
}

/* After libxml2 has returned: fail early on restricted constructs, start tracking a long
 * pending tag, and catch a tag libxml2 would not parse although it is complete. */
static void guard_pending(struct xmlstream *xs)
{
#if LIBXML_VERSION < 21100
    xmlParserCtxtPtr c = xs->ctxt;
    if (xs->halted)
        return;
    if (c->progressive == XML_PARSER_COMMENT) {
        fail(xs, STRERR_RESTRICTED_XML, "comment");
        return;
    }
    if (c->progressive == XML_PARSER_PI) {
        fail(xs, STRERR_RESTRICTED_XML, "processing instruction");
        return;
    }
    if (c->progressive == XML_PARSER_DTD || c->instate == XML_PARSER_DTD) {
        fail(xs, STRERR_RESTRICTED_XML, "document type declaration");
        return;
    }
    bool in_tag = c->instate == XML_PARSER_START_TAG || c->instate == XML_PARSER_END_TAG;
    uint64_t origin = in_tag ? parse_pos(xs) : 0;
    if (xs->tag_flushed && in_tag && origin == xs->tag_origin) {
        fail(xs, STRERR_NOT_WELL_FORMED, "malformed tag");
        return;
    }
    xs->tag_flushed = false;
    if (!in_tag || xs->tag_active || xs->fed - origin <= LONG_TAG)
        return;
    /* Start tracking: the tag so far is what libxml2 holds after its '<'. */
    const xmlParserInputPtr in = c->input;
    size_t end;
    xs->tag_quote = 0;
    if (track_tag(xs, (const char *)in->cur + 1, (size_t)(in->end - in->cur - 1), &end)) {
        fail(xs, STRERR_NOT_WELL_FORMED, "malformed tag");
        return;
    }
    xs->tag_active = true;
    xs->tag_origin = origin;
#else
    (void)xs;
#endif
}

/*
 * Feeds one piece of input (at most what the element under way may still take) and updates
 * the accounting: if top-level elements ended inside the piece, the next one starts at the
 * first non-blank byte after the last end.
 */
static void parse_piece(struct xmlstream *xs, const char *p, size_t n)
{
    uint64_t start = xs->fed;
    xs->unit_ended = false;
    xmlParseChunk(xs->ctxt, p, (int)n, 0);
    xs->fed += n;
    if (!xs->unit_ended)
        return;
    uint64_t end = xs->last_end;
    if (end < start)
        end = start; /* cannot happen: the end was parsed in this piece */
    if (end > xs->fed)
        end = xs->fed;
    size_t off = (size_t)(end - start);
    size_t i = off + count_blanks(p + off, n - off);
    xs->unit_open = i < n;
    xs->unit_start = start + i;
}

/*
 * Before the first byte of a stream reaches libxml2: blanks (which would make libxml2 reject
 * an XML declaration after a restart) and a UTF-8 byte order mark are dropped, possibly split
 * over several feeds; the first bytes of UTF-16 or UTF-32 input are refused, since XMPP is
 * UTF-8 only (RFC 6120 §11.6). Returns where parsing starts.
 */
static const char *stream_start(struct xmlstream *xs, const char *p, const char *end)
{
    static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (xs->bom > 0 && xs->bom < 3) {
            if (c != bom[xs->bom]) {
                fail(xs, STRERR_NOT_WELL_FORMED, "broken byte order mark");
                return p;
            }
            xs->bom++;
        } else if (c == bom[0] && xs->bom == 0) {
            xs->bom = 1;
        } else if (c == 0x00 || c == 0xfe || c == 0xff) {
            fail(xs, STRERR_UNSUPPORTED_ENCODING, "stream is not UTF-8");
            return p;
        } else if (!is_blank(c)) {
            return p;
        }
        p++;
    }
    return p;
}

bool xmlstream_hibernate(struct xmlstream *xs)
{
    if (xs->ctxt == NULL)
        return true;
    /* Only between top-level elements of an open stream, with nothing pending anywhere: then
     * the whole parser state is "inside the stream element", which the replayed header
     * restores exactly. Blanks libxml2 may still hold are keepalives and can go. */
    if (xs->in_feed || xs->state != XS_OPEN || xs->halted || xs->depth != 1 || xs->unit_open ||
        xs->tag_active || xs->hold.len > 0 || xs->text.len > 0 || xs->queue != NULL ||
        xs->hdr_ready || xs->resume == NULL)
        return false;
    xmlFreeParserCtxt(xs->ctxt);
    xs->ctxt = NULL;
    buf_free(&xs->text);
    buf_free(&xs->hold);
    return true;
}

/* Wakes a hibernated stream: a new context that has parsed the replayed header. */
static void wake(struct xmlstream *xs)
{
    xs->ctxt = new_context(xs);
    xs->fed = 0;
    xs->depth = 0;
    xs->unit_open = false;
    xs->unit_ended = false;
    xs->resuming = true;
    parse_piece(xs, xs->resume, xs->resume_len);
    xs->unit_open = false; /* the replay is not the peer's input */
}

int xmlstream_feed(struct xmlstream *xs, const char *data, size_t len)
{
    if (xs->state == XS_FAILED)
        return -1;
    silence_thread();
    if (xs->ctxt == NULL && xs->state == XS_OPEN)
        wake(xs);
    xs->in_feed = true;
    const char *p = data, *end = data + len;
    while (p < end && xs->state == XS_OPEN && !xs->halted) {
        if (xs->fed == 0) {
            p = stream_start(xs, p, end);
            if (p == end || xs->halted)
                break;
        }
        size_t n = (size_t)(end - p);
        uint64_t taken = xs->fed + xs->hold.len; /* bytes accepted so far */
        if (!xs->unit_open) {
            size_t i = count_blanks(p, n);
            if (i < n) {
                xs->unit_open = true;
                xs->unit_start = taken + i;
            }
        }
        if (xs->unit_open) {
            uint64_t limit_end = xs->unit_start + xs->lim.max_stanza_bytes;
            if (taken >= limit_end) {
                fail(xs, STRERR_POLICY_VIOLATION, "top-level element exceeds the size limit");
                break;
            }
            if (n > limit_end - taken)
                n = (size_t)(limit_end - taken);
        }
        if (n > MAX_PIECE)
            n = MAX_PIECE;
        size_t tag_end;
        if (!xs->tag_active) {
            parse_piece(xs, p, n);
        } else if (track_tag(xs, p, n, &tag_end)) {
            /* The tracked tag is complete: hand over what was held and this piece at once. */
            xs->tag_active = false;
            xs->tag_flushed = true;
            if (xs->hold.len > 0) {
                buf_append(&xs->hold, p, n);
                parse_piece(xs, xs->hold.data, xs->hold.len);
                xs->hold.len = 0;
            } else {
                parse_piece(xs, p, n);
            }
        } else if (xs->hold.len > 0 || memchr(p, '>', n) != NULL) {
            buf_append(&xs->hold, p, n); /* a quoted '>' would make libxml2 rescan the tag */
        } else {
            parse_piece(xs, p, n); /* no '>' at all: libxml2 only appends it */
        }
        p += n;
        guard_pending(xs);
        enum delivery d = deliver(xs);
        if (d == FREED_OK || d == FREED_FAILED)
            return d == FREED_OK ? 0 : -1;
        if (d == STOP_CHUNK)
            break;
    }
    /* A failure found outside libxml2 (the size limit) is delivered here. */
    enum delivery d = deliver(xs);
    if (d == FREED_OK || d == FREED_FAILED)
        return d == FREED_OK ? 0 : -1;
    xs->in_feed = false;
    return xs->state == XS_FAILED ? -1 : 0;
}
