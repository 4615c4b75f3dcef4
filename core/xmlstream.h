/*
 * xmlstream.h — an XMPP stream parser on libxml2's SAX2 push parser.
 *
 * Bytes go in as they arrive from the socket, in chunks of any size (one byte at a time works);
 * out come the stream header, each complete top-level element as a struct stanza (owned by the
 * callee from then on), the stream close, or one stream error. Restricted XML (RFC 6120 §11) is
 * enforced: a DTD, an entity declaration or reference to anything but the five predefined
 * entities, a comment or a processing instruction ends the stream with restricted-xml; broken
 * XML ends it with not-well-formed; a stanza whose input exceeds max_stanza_bytes, or that nests
 * deeper than max_depth, or has more than max_attrs attributes on one element, ends it with
 * policy-violation — even when the stanza never closes.
 *
 * Not thread-safe: one parser per connection, used by the connection's worker only.
 */
#ifndef STANZAD_XMLSTREAM_H
#define STANZAD_XMLSTREAM_H

#include <stddef.h>

#include "stanza.h"

struct xmlstream;

struct xmlstream_header {
    const char *prefix;     /* prefix of the stream element ("stream"), NULL if none */
    const char *ns;         /* namespace URI of the stream element */
    const char *default_ns; /* the default namespace declared on it (jabber:client), or NULL */
    const char *to, *from, *id, *version, *lang; /* attributes, NULL when absent */
};

struct xmlstream_callbacks {
    /* The opening stream element; hdr is valid during the call only. */
    void (*stream_open)(void *ud, const struct xmlstream_header *hdr);
    /* A complete top-level element; the callee owns st. Its el->ns is the resolved namespace
     * (a stanza in the default namespace has ns == the declared default namespace). */
    void (*stanza)(void *ud, struct stanza *st);
    /* The peer closed the stream (</stream:stream>). */
    void (*stream_close)(void *ud);
    /* The stream is broken; text is a short English explanation for logs, may be NULL.
     * Called at most once; no further callback follows. */
    void (*error)(void *ud, enum stream_error cond, const char *text);
};

struct xmlstream_limits {
    size_t max_stanza_bytes; /* input bytes of one top-level element */
    unsigned max_depth;      /* element nesting below the stream element */
    unsigned max_attrs;      /* attributes (not counting namespace declarations) per element */
};

struct xmlstream *xmlstream_new(const struct xmlstream_callbacks *cb, void *ud,
                                const struct xmlstream_limits *limits);
void xmlstream_free(struct xmlstream **xs);

/*
 * Feeds bytes. Callbacks run from inside this call. Returns 0 when all is well (the bytes may
 * have completed zero or more stanzas), -1 once the stream has failed (the error callback has
 * been called; later calls return -1 and do nothing).
 */
int xmlstream_feed(struct xmlstream *xs, const char *data, size_t len);

/*
 * Discards the parser state and expects a new stream header (after STARTTLS or SASL success).
 * May be called from inside a callback: the rest of the bytes of the current xmlstream_feed()
 * call are then dropped — a peer must wait for <proceed/> or <success/> before sending more, and
 * dropping what it sent early defeats plaintext injection before TLS.
 */
void xmlstream_reset(struct xmlstream *xs);

#endif
