/*
 * stanzad/stanza.h — reading and building stanzas, and JIDs.
 *
 * Memory: a stanza and everything in it (elements, attributes, text, parsed JIDs) lives in one
 * arena owned by the stanza. Strings returned by accessors are borrowed: valid as long as the
 * stanza lives and is not modified at that spot. During dispatch the core owns the stanza and a
 * handler borrows it until it returns; to keep it longer, defer (sd_hctx_defer) or copy
 * (sd_stanza_copy). Functions that consume a stanza take sd_stanza ** and clear the pointer.
 *
 * Elements are addressed by namespace URI and local name; prefixes never matter. A NULL
 * namespace or name in a lookup means "any". New child elements take their parent's namespace
 * when ns is NULL. The serializer escapes every string; pass plain text, never markup.
 *
 * Threads: a stanza is used by one thread at a time (the one it was handed to).
 */
#ifndef STANZAD_PUBLIC_STANZA_H
#define STANZAD_PUBLIC_STANZA_H

#include <stddef.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_stanza sd_stanza;
typedef struct sd_el sd_el;
typedef struct sd_jid sd_jid;

typedef enum sd_kind { SD_MESSAGE = 0, SD_PRESENCE = 1, SD_IQ = 2, SD_OTHER = 3 } sd_kind;

/* RFC 6120 §8.3.3 stanza error conditions (values never change; new ones are appended). */
typedef enum sd_error {
    SD_ERR_BAD_REQUEST = 0,
    SD_ERR_CONFLICT,
    SD_ERR_FEATURE_NOT_IMPLEMENTED,
    SD_ERR_FORBIDDEN,
    SD_ERR_GONE,
    SD_ERR_INTERNAL_SERVER_ERROR,
    SD_ERR_ITEM_NOT_FOUND,
    SD_ERR_JID_MALFORMED,
    SD_ERR_NOT_ACCEPTABLE,
    SD_ERR_NOT_ALLOWED,
    SD_ERR_NOT_AUTHORIZED,
    SD_ERR_POLICY_VIOLATION,
    SD_ERR_RECIPIENT_UNAVAILABLE,
    SD_ERR_REDIRECT,
    SD_ERR_REGISTRATION_REQUIRED,
    SD_ERR_REMOTE_SERVER_NOT_FOUND,
    SD_ERR_REMOTE_SERVER_TIMEOUT,
    SD_ERR_RESOURCE_CONSTRAINT,
    SD_ERR_SERVICE_UNAVAILABLE,
    SD_ERR_SUBSCRIPTION_REQUIRED,
    SD_ERR_UNDEFINED_CONDITION,
    SD_ERR_UNEXPECTED_REQUEST,
} sd_error;

/* ---- reading a stanza ---- */

SD_API sd_kind sd_stanza_kind(const sd_stanza *st);
/* The 'type', 'id', 'to', 'from' attributes as sent (NULL when absent). */
SD_API const char *sd_stanza_type(const sd_stanza *st);
SD_API const char *sd_stanza_id(const sd_stanza *st);
SD_API const char *sd_stanza_to_str(const sd_stanza *st);
SD_API const char *sd_stanza_from_str(const sd_stanza *st);
/* 'to' and 'from' parsed and prepared; NULL when absent or invalid. ('from' of a stanza from a
 * client is always the sender's full JID: the core stamps it.) */
SD_API const sd_jid *sd_stanza_to(sd_stanza *st);
SD_API const sd_jid *sd_stanza_from(sd_stanza *st);
/* The top-level element. */
SD_API sd_el *sd_stanza_el(sd_stanza *st);
/* For an iq get/set: its one payload child, NULL if it has none. */
SD_API sd_el *sd_stanza_payload(sd_stanza *st);

/* ---- reading elements ---- */

SD_API const char *sd_el_name(const sd_el *el);
SD_API const char *sd_el_ns(const sd_el *el);
/* An unqualified attribute, NULL when absent. */
SD_API const char *sd_el_attr(const sd_el *el, const char *name);
/* First child element matching ns/name (NULL: any), or NULL. */
SD_API sd_el *sd_el_child(const sd_el *el, const char *ns, const char *name);
/* The next sibling element after child matching ns/name (NULL: any), or NULL. */
SD_API sd_el *sd_el_next(const sd_el *child, const char *ns, const char *name);
/* The element's own text (its text children joined), "" when none. Borrowed from st. */
SD_API const char *sd_el_text(sd_stanza *st, const sd_el *el);
/* Text of the first child ns/name, or NULL when there is no such child. */
SD_API const char *sd_el_child_text(sd_stanza *st, const sd_el *el, const char *ns,
                                    const char *name);

/* ---- building ---- */

/* A new stanza <message/>, <presence/> or <iq/> in jabber:client; type may be NULL. Free it
 * with sd_stanza_free or hand it to a function that consumes it. */
SD_API sd_stanza *sd_stanza_new(sd_kind kind, const char *type);
/* A deep copy, with its own arena. */
SD_API sd_stanza *sd_stanza_copy(const sd_stanza *st);
/* ABI 1.1. Parses one stanza serialised by sd_el_to_string (a <message/>, <presence/> or <iq/>
 * of jabber:client; elements without xmlns are jabber:client) — e.g. one a module stored to
 * deliver later. The client parser's rules apply (no DTD, comments, processing instructions
 * or entities beyond the five predefined). NULL for anything else: broken XML, not a stanza,
 * or more than one element. Any thread. Free with sd_stanza_free. */
SD_API sd_stanza *sd_stanza_parse(const char *xml, size_t len);
/* Frees st and clears *st. NULL-safe. */
SD_API void sd_stanza_free(sd_stanza **st);
/* Routing attributes; NULL removes. */
SD_API void sd_stanza_set_to(sd_stanza *st, const char *to);
SD_API void sd_stanza_set_from(sd_stanza *st, const char *from);
SD_API void sd_stanza_set_type(sd_stanza *st, const char *type);
SD_API void sd_stanza_set_id(sd_stanza *st, const char *id);
/* The result to an iq get/set: to/from swapped, same id, type='result', no payload. NULL for
 * anything else. */
SD_API sd_stanza *sd_stanza_result(const sd_stanza *iq);
/* The error reply to st (to/from swapped, type='error', the original payload kept, an <error/>
 * with the condition's RFC type and optional English text). NULL when st is itself an error:
 * an error is never answered with an error. */
SD_API sd_stanza *sd_stanza_error(const sd_stanza *st, sd_error cond, const char *text);

/* A new child of parent, last in order; ns NULL = the parent's namespace. */
SD_API sd_el *sd_el_add(sd_stanza *st, sd_el *parent, const char *ns, const char *name);
/* A new child with text: <name>text</name>. */
SD_API sd_el *sd_el_add_text_child(sd_stanza *st, sd_el *parent, const char *ns, const char *name,
                                   const char *text);
/* Sets (replaces) an unqualified attribute; value NULL removes it. */
SD_API void sd_el_set_attr(sd_stanza *st, sd_el *el, const char *name, const char *value);
/* Appends text. */
SD_API void sd_el_add_text(sd_stanza *st, sd_el *el, const char *text);
/* Removes child from parent (it stays allocated until the stanza is freed). */
SD_API void sd_el_remove(sd_el *parent, sd_el *child);
/* Copies el (from any stanza) with its subtree as the last child of parent in st. */
SD_API sd_el *sd_el_copy_into(sd_stanza *st, sd_el *parent, const sd_el *el);
/* Serialises el as XML (jabber:client as the namespace in scope) into a new malloc'd string. */
SD_API char *sd_el_to_string(const sd_el *el);

/* ---- JIDs ---- */

/* Parts of a prepared JID; local and resource are NULL when absent. */
SD_API const char *sd_jid_local(const sd_jid *j);
SD_API const char *sd_jid_domain(const sd_jid *j);
SD_API const char *sd_jid_resource(const sd_jid *j);
SD_API const char *sd_jid_bare(const sd_jid *j);
SD_API const char *sd_jid_full(const sd_jid *j);
/* Parses and prepares (RFC 7622); NULL when invalid. Free with sd_jid_free. */
SD_API sd_jid *sd_jid_new(const char *s);
SD_API void sd_jid_free(sd_jid **j);

#ifdef __cplusplus
}
#endif

#endif
