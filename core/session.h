/*
 * session.h — bound client sessions and the directory that finds them by JID.
 *
 * A session is created when a client binds a resource and lives on its connection's worker.
 * The directory maps a bare JID to the sessions of that account. It is sharded by hash of the
 * bare JID, each shard behind its own reader-writer lock: routing a message takes one shard's
 * read lock for a few instructions; binding, unbinding and presence changes take the write lock.
 * There is no global lock. Sessions are reference counted so a stanza can be handed to a session
 * on another worker without the session disappearing underneath; a session that ended is marked
 * closed and its worker treats late deliveries as undeliverable.
 */
#ifndef STANZAD_SESSION_H
#define STANZAD_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct c2s;

struct session {
    atomic_int refs;
    uint64_t id;                         /* the connection id, for logs */
    struct worker *w;                    /* the worker that owns the connection */
    char *full;                          /* "local@host/resource", immutable after bind */
    char *bare;                          /* "local@host" */
    const char *local, *host, *resource; /* point into a private copy */
    uint64_t bound_at;                   /* bind order, oldest first */

    /* Written on w under the shard's write lock; read by routers under the read lock. */
    int priority;
    bool available; /* has sent initial presence and not gone unavailable */
    atomic_bool closed;
    bool preauth; /* a stream's stand-in before authentication: never in the directory */

    /* Worker-local (only touched on w). */
    struct c2s *c2s; /* NULL once the stream is gone */
    char **directed; /* JIDs that received directed available presence */
    size_t n_directed, cap_directed;
    char *parts;               /* storage for local/host/resource */
    void **mod_data;           /* per-module session data (dispatch.c), [n_modules] */
    void (**mod_free)(void *); /* and how to free it */
};

enum session_pick {
    PICK_TOP_PRIORITY, /* available, priority >= 0, only those with the highest priority */
    PICK_NON_NEGATIVE, /* available, priority >= 0 */
    PICK_AVAILABLE,    /* available, any priority */
    PICK_ALL,          /* every bound session */
};

/* Before workers start; shards is rounded up to a power of two. */
void sessions_init(unsigned shards);
void sessions_destroy(void);

struct session *session_new(struct worker *w, uint64_t id, const char *local, const char *host,
                            const char *resource);
void session_ref(struct session *s);
void session_unref(struct session **s);

enum bind_result { BIND_OK = 0, BIND_CONFLICT = 1 };
/*
 * Adds s to the directory under the conflict policy (enum conflict_policy) and the per-account
 * limit (0 = none). Sessions that must end because of it (same resource under "replace", oldest
 * ones beyond the limit) are returned in *kicked_r (malloc'd array of referenced sessions, the
 * caller ends them and unrefs them). BIND_CONFLICT means the resource is taken under "refuse".
 */
enum bind_result session_bind(struct session *s, int conflict_policy, int max_per_account,
                              struct session ***kicked_r, size_t *n_kicked_r);
/* Removes s from the directory and marks it closed. Idempotent. */
void session_unbind(struct session *s);
/* True if bare/resource is bound now (used to pick a free random resource). */
bool session_resource_taken(const char *bare, const char *resource);

/* The session bound to bare/resource, referenced, or NULL. */
struct session *session_find(const char *bare, const char *resource);
/* Sessions of the account chosen by pick, referenced, into out (at most cap); returns count. */
size_t session_find_bare(const char *bare, enum session_pick pick, struct session **out,
                         size_t cap);
/* Does the account have any bound session? */
bool session_account_online(const char *bare);
/* Presence state change on s's own worker. */
void session_set_presence(struct session *s, bool available, int priority);

/* Number of bound sessions (for logs and tests). */
size_t sessions_count(void);

#endif
