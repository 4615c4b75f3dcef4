/*
 * jid.h — JID parsing and preparation (RFC 7622 syntax and limits).
 *
 * Preparation uses libidn's stringprep profiles: Nodeprep for the localpart, Nameprep (plus
 * lower-casing and removal of a trailing dot) for the domainpart, Resourceprep for the
 * resourcepart. Pure-ASCII input takes a fast path that gives the same result without calling
 * libidn (the routing hot path parses a 'to' on every stanza). IP literals ("[::1]", "127.0.0.1")
 * are accepted as domainparts.
 */
#ifndef STANZAD_JID_H
#define STANZAD_JID_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

struct jid {
    const char *local;    /* prepared localpart, NULL when absent */
    const char *domain;   /* prepared domainpart, never NULL */
    const char *resource; /* prepared resourcepart, NULL when absent */
    const char *bare;     /* "local@domain" or "domain" */
    const char *full;     /* "bare/resource" or bare */
};

/* Longest part in bytes after preparation (RFC 7622 §3.2, §3.3, §3.4). */
#define JID_PART_MAX 1023

/*
 * Parses and prepares s[0..len). With an arena the result lives in it; with a == NULL it is one
 * malloc'd block to free with jid_free(). Returns NULL for an invalid JID and sets *why_r (if not
 * NULL) to a static English reason ("empty localpart", "localpart fails Nodeprep", ...).
 */
struct jid *jid_parse(struct arena *a, const char *s, size_t len, const char **why_r);
/* Builds from parts (local and resource may be NULL), preparing each; same results as parse. */
struct jid *jid_make(struct arena *a, const char *local, const char *domain, const char *resource,
                     const char **why_r);
/* Frees a JID made with a == NULL; clears *j. NULL-safe. */
void jid_free(struct jid **j);
/* Copy (into a, or malloc'd when a is NULL). */
struct jid *jid_copy(struct arena *a, const struct jid *j);

/* Prepares a single localpart / resourcepart (for account names given to stanzactl, resources
 * requested in bind). Returns a new string in a (malloc'd if a is NULL) or NULL if invalid. */
char *jid_prep_local(struct arena *a, const char *s, const char **why_r);
char *jid_prep_resource(struct arena *a, const char *s, const char **why_r);
char *jid_prep_domain(struct arena *a, const char *s, const char **why_r);

#endif
