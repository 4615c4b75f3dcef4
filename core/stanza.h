/*
 * stanza.h — the XML element model and the stanza built on it.
 *
 * Elements, attributes and text nodes are allocated in the arena of the stanza that holds them.
 * Names are local names; every element carries its namespace URI (resolved by the parser, "" for
 * none). Attributes in a namespace (xml:lang, or a prefixed attribute of an extension) carry that
 * namespace URI; plain attributes have ns == NULL. Strings are NUL-terminated and borrowed for the
 * lifetime of the arena.
 *
 * The serializer writes an element with the namespace of its parent context as default: a child
 * in the same namespace as its parent gets no xmlns attribute, one in another namespace gets
 * xmlns='…'. Text and attribute values are escaped (&amp; &lt; &gt; &quot; &apos; as needed).
 */
#ifndef STANZAD_STANZA_H
#define STANZAD_STANZA_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "mem.h"

#define NS_CLIENT        "jabber:client"
#define NS_SERVER        "jabber:server"
#define NS_STREAMS       "http://etherx.jabber.org/streams"
#define NS_XML           "http://www.w3.org/XML/1998/namespace"
#define NS_TLS           "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL          "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND          "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION       "urn:ietf:params:xml:ns:xmpp-session"
#define NS_STANZAS       "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_STREAM_ERRORS "urn:ietf:params:xml:ns:xmpp-streams"

enum xml_node_kind { XML_NODE_ELEMENT, XML_NODE_TEXT };

struct xml_node {
    enum xml_node_kind kind;
    struct xml_node *next; /* next sibling */
};

struct xml_attr {
    struct xml_attr *next;
    const char *name;  /* local name */
    const char *ns;    /* namespace URI, or NULL for an unqualified attribute */
    const char *value; /* unescaped */
};

struct xml_el {
    struct xml_node node; /* kind == XML_NODE_ELEMENT; must stay first */
    const char *name;     /* local name */
    const char *ns;       /* namespace URI, "" when none */
    struct xml_attr *attrs;
    struct xml_node *children; /* first child (element or text) */
    struct xml_node *last_child;
    struct xml_el *parent;
};

struct xml_text {
    struct xml_node node; /* kind == XML_NODE_TEXT; must stay first */
    const char *text;     /* unescaped, NUL-terminated */
    size_t len;
};

/* Building. All strings are copied into the arena. */
struct xml_el *xml_el_new(struct arena *a, const char *ns, const char *name);
/* A new child element appended to parent; ns NULL means the parent's namespace. */
struct xml_el *xml_el_add(struct arena *a, struct xml_el *parent, const char *ns, const char *name);
/* Appends an existing element (allocated in the same arena) as the last child. */
void xml_el_append(struct xml_el *parent, struct xml_el *child);
/* Sets (replaces or adds) an unqualified attribute; value NULL removes it. */
void xml_el_set_attr(struct arena *a, struct xml_el *el, const char *name, const char *value);
/* Sets a namespaced attribute (e.g. NS_XML, "lang"). */
void xml_el_set_attr_ns(struct arena *a, struct xml_el *el, const char *ns, const char *name,
                        const char *value);
/* Appends text (escaped on output). */
void xml_el_add_text(struct arena *a, struct xml_el *el, const char *text, size_t len);
/* Removes a child node from el. */
void xml_el_remove(struct xml_el *el, struct xml_node *child);
/* Deep copy of el and its subtree into arena a. */
struct xml_el *xml_el_copy(struct arena *a, const struct xml_el *el);

/* Reading. */
const char *xml_el_attr(const struct xml_el *el,
                        const char *name); /* unqualified; NULL if absent */
const char *xml_el_attr_ns(const struct xml_el *el, const char *ns, const char *name);
/* First child element with that namespace (NULL: any) and name (NULL: any). */
struct xml_el *xml_el_child(const struct xml_el *el, const char *ns, const char *name);
/* Next sibling element after child with the given ns/name filter (NULL: any). */
struct xml_el *xml_el_next(const struct xml_el *child, const char *ns, const char *name);
/* Concatenated text of the element's direct text children, in the arena (never NULL). */
const char *xml_el_text(struct arena *a, const struct xml_el *el);
/* Number of element children. */
size_t xml_el_count_children(const struct xml_el *el);

/*
 * Serialisation. default_ns is the namespace in scope (jabber:client on a c2s stream): the
 * element gets an xmlns attribute only when its namespace differs. Namespaced attributes other
 * than xml:* get a generated prefix declaration.
 */
void xml_serialize(struct buf *out, const struct xml_el *el, const char *default_ns);
/* Escapes text for element content or attribute values (both quote kinds). */
void xml_escape(struct buf *out, const char *s, size_t len);

/* ---- stanzas ---- */

enum stanza_kind { STANZA_MESSAGE, STANZA_PRESENCE, STANZA_IQ, STANZA_OTHER };

struct jid;

struct stanza {
    struct arena *arena;
    struct xml_el *el;     /* the top-level element */
    enum stanza_kind kind; /* from el->name when el->ns is jabber:client or jabber:server */
    /* Routing attributes, read once by stanza_wrap() and kept in sync by the setters below. */
    const char *type; /* NULL when absent */
    const char *id;
    const char *to_str;   /* raw, as sent */
    const char *from_str; /* raw, as sent */
    struct jid *to;       /* parsed and prepared by the router; NULL until then or if absent */
    struct jid *from;
    void *route_link; /* owned by the router while the stanza crosses to another worker */
};

/* Takes ownership of the arena, which must hold el. */
struct stanza *stanza_wrap(struct arena *a, struct xml_el *el);
/* A new empty stanza: <kind type='…'/> in jabber:client; type may be NULL. NULL for
 * STANZA_OTHER, which names no element. */
struct stanza *stanza_new(enum stanza_kind kind, const char *type);
/* Frees the stanza and its arena; clears *st. NULL-safe. */
void stanza_free(struct stanza **st);
/* Deep copy into a new arena (parsed to/from JIDs included; route_link is not copied). */
struct stanza *stanza_copy(const struct stanza *st);

void stanza_set_to(struct stanza *st, const char *to);     /* NULL removes */
void stanza_set_from(struct stanza *st, const char *from); /* NULL removes */
void stanza_set_type(struct stanza *st, const char *type);
void stanza_set_id(struct stanza *st, const char *id);

/* Errors ------------------------------------------------------------------------------------ */

/* RFC 6120 §8.3.3 defined conditions, in the RFC's order. */
enum stanza_error {
    SERR_BAD_REQUEST,
    SERR_CONFLICT,
    SERR_FEATURE_NOT_IMPLEMENTED,
    SERR_FORBIDDEN,
    SERR_GONE,
    SERR_INTERNAL_SERVER_ERROR,
    SERR_ITEM_NOT_FOUND,
    SERR_JID_MALFORMED,
    SERR_NOT_ACCEPTABLE,
    SERR_NOT_ALLOWED,
    SERR_NOT_AUTHORIZED,
    SERR_POLICY_VIOLATION,
    SERR_RECIPIENT_UNAVAILABLE,
    SERR_REDIRECT,
    SERR_REGISTRATION_REQUIRED,
    SERR_REMOTE_SERVER_NOT_FOUND,
    SERR_REMOTE_SERVER_TIMEOUT,
    SERR_RESOURCE_CONSTRAINT,
    SERR_SERVICE_UNAVAILABLE,
    SERR_SUBSCRIPTION_REQUIRED,
    SERR_UNDEFINED_CONDITION,
    SERR_UNEXPECTED_REQUEST,
};
const char *stanza_error_name(enum stanza_error e);         /* "item-not-found" */
const char *stanza_error_default_type(enum stanza_error e); /* "cancel", "modify", "auth", "wait" */

/*
 * Builds the error reply to st: a copy of st with to/from swapped, type='error', and an <error/>
 * child (type from stanza_error_default_type unless type is given; optional text). Returns NULL
 * when st is itself an error (RFC 6120 §8.3.1: never answer an error with an error), and when
 * st is not a message, presence or iq.
 */
struct stanza *stanza_error_reply(const struct stanza *st, enum stanza_error cond, const char *type,
                                  const char *text);
/* An empty iq result to an iq get/set: to/from swapped, same id, same namespace. NULL when iq
 * is not an iq of type get or set. */
struct stanza *stanza_iq_result(const struct stanza *iq);

/* RFC 6120 §4.9.3 stream error conditions. */
enum stream_error {
    STRERR_BAD_FORMAT,
    STRERR_BAD_NAMESPACE_PREFIX,
    STRERR_CONFLICT,
    STRERR_CONNECTION_TIMEOUT,
    STRERR_HOST_GONE,
    STRERR_HOST_UNKNOWN,
    STRERR_IMPROPER_ADDRESSING,
    STRERR_INTERNAL_SERVER_ERROR,
    STRERR_INVALID_FROM,
    STRERR_INVALID_NAMESPACE,
    STRERR_INVALID_XML,
    STRERR_NOT_AUTHORIZED,
    STRERR_NOT_WELL_FORMED,
    STRERR_POLICY_VIOLATION,
    STRERR_REMOTE_CONNECTION_FAILED,
    STRERR_RESET,
    STRERR_RESOURCE_CONSTRAINT,
    STRERR_RESTRICTED_XML,
    STRERR_SEE_OTHER_HOST,
    STRERR_SYSTEM_SHUTDOWN,
    STRERR_UNDEFINED_CONDITION,
    STRERR_UNSUPPORTED_ENCODING,
    STRERR_UNSUPPORTED_FEATURE,
    STRERR_UNSUPPORTED_STANZA_TYPE,
    STRERR_UNSUPPORTED_VERSION,
};
const char *stream_error_name(enum stream_error e); /* "not-well-formed" */

#endif
