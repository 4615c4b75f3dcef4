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

#include <stdbool.h>
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

/* A field left 0 (or limits NULL) takes the default: 256 KiB, depth 32, 64 attributes. */
struct xmlstream_limits {
    size_t max_stanza_bytes; /* input bytes of one top-level element, the stream header too */
    unsigned max_depth;      /* element nesting below the stream element (a stanza is 1) */
    unsigned max_attrs;      /* attributes (not counting namespace declarations) per element,
                              * the stream header's included */
};

struct xmlstream *xmlstream_new(const struct xmlstream_callbacks *cb, void *ud,
                                const struct xmlstream_limits *limits);
/* Frees the parser and any stanza it has not delivered; clears *xs. NULL-safe. May be called
 * from inside a callback: nothing further is delivered, and xmlstream_feed() returns at once. */
void xmlstream_free(struct xmlstream **xs);

/*
 * Feeds bytes. Callbacks run from inside this call, in document order; a stanza is delivered
 * by the call that supplies its final '>'. Returns 0 when all is well (the bytes may have
 * completed zero or more stanzas), -1 once the stream has failed (the error callback has been
 * called; later calls return -1 and do nothing). After the stream close, later bytes are
 * ignored until xmlstream_reset(). Must not be called from inside one of its callbacks.
 */
int xmlstream_feed(struct xmlstream *xs, const char *data, size_t len);

/*
 * Frees the libxml2 parser of an idle stream (several kilobytes each); the next feed rebuilds
 * it by replaying the stream header's namespace declarations, invisibly to the callbacks.
 * Possible only between top-level elements; returns false (and does nothing) otherwise. Not
 * from inside a callback.
 */
bool xmlstream_hibernate(struct xmlstream *xs);

/*
 * Discards the parser state and expects a new stream header (after STARTTLS or SASL success).
 * May be called from inside a callback: the rest of the bytes of the current xmlstream_feed()
 * call are then dropped — a peer must wait for <proceed/> or <success/> before sending more, and
 * dropping what it sent early defeats plaintext injection before TLS. Also starts a new stream
 * after a stream close; does nothing once the stream has failed.
 */
void xmlstream_reset(struct xmlstream *xs);

#endif
