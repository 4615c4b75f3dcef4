/*
 * roster.h — what the files of mod_roster share (not a public header).
 *
 * Files: mod_roster.c (descriptor, settings, schema, hooks on the session's worker, tasks to the
 * home worker), state.c (per-account state on its home worker: loading, queued operations,
 * resources, the per-account database write queue, unloading), store.c (statements), roster.c
 * (items, roster get/set, pushes, versioning), subscription.c (RFC 6121 §3 and Appendix A),
 * presence.c (broadcast, probes, delivery to resources), blocking.c (XEP-0191: the shared
 * lookup table, the iqs, enforcement).
 *
 * Threads. Everything about an account lives on its home worker, sd_worker_for(bare), and is
 * touched only there. Handlers running elsewhere copy what they need into a struct task and
 * post it home (task_post). The only state shared between workers is the blocklist table of
 * blocking.c (sharded, behind reader-writer locks) and the module's read-only globals.
 */
#ifndef MOD_ROSTER_H
#define MOD_ROSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stanzad/stanzad.h>

#define NS_ROSTER          "jabber:iq:roster"
#define NS_BLOCKING        "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define NS_ROSTERVER       "urn:xmpp:features:rosterver"
#define NS_PREAPPROVAL     "urn:xmpp:features:pre-approval"
#define NS_NICK            "http://jabber.org/protocol/nick"
#define NS_CLIENT          "jabber:client"

/* ---- settings (mod_roster.c) ---- */

struct rconf {
    int64_t max_items;        /* contacts per roster */
    int64_t max_name_length;  /* characters in an item's name */
    int64_t max_group_length; /* characters in a group name */
    int64_t max_groups;       /* groups per item */
    int64_t max_blocked;      /* blocklist entries */
    int64_t max_pending;      /* stored requests from JIDs not in the roster */
    int pre_approval;         /* RFC 6121 §3.4 */
    int versioning;           /* RFC 6121 §2.6 */
    int64_t unload_after_ms;  /* keep an idle account's state this long */
};

extern sd_module *roster_mod;
const struct rconf *rconf(const char *host);

/* ---- a small intrusive hash map keyed by strings (state.c) ---- */

struct hent {
    struct hent *next;
    uint64_t h;
    const char *key;
};

struct hmap {
    struct hent **b;
    size_t nb, n;
};

uint64_t hash_str(const char *s);
struct hent *hmap_get(const struct hmap *m, const char *key);
/* e->key must be set; the key must not be present. */
void hmap_put(struct hmap *m, struct hent *e);
void hmap_del(struct hmap *m, struct hent *e);
void hmap_free(struct hmap *m);
/* Visits every entry; fn may not modify the map. */
void hmap_each(const struct hmap *m, void (*fn)(struct hent *e, void *ud), void *ud);
/* The entries as an array (malloc'd, *n set); NULL when empty. */
struct hent **hmap_list(const struct hmap *m, size_t *n);

#define CONTAINER(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ---- accounts (state.c) ---- */

enum { SUB_TO = 1, SUB_FROM = 2 }; /* subscription bits: "to" = the user sees the contact */

struct item {
    struct hent he; /* key: jid */
    char *jid;      /* prepared */
    char *name;     /* NULL: none */
    char **groups;
    size_t ngroups;
    unsigned sub;    /* SUB_TO | SUB_FROM */
    bool ask;        /* pending out: the user asked the contact */
    bool pending_in; /* the contact asked the user (request stored) */
    bool approved;   /* pre-approved (§3.4) */
    bool in_roster;  /* visible in the roster; false: a tombstone and/or a stored request */
    int64_t ver;     /* roster version of its last visible change; 0: never visible */
    sd_stanza *pin;  /* the stored request, complete (RFC 6121 §3.1.3), from the bare JID */
};

struct res {
    struct res *next;
    char *name, *full;
    uint64_t sid; /* the session's token (mod_roster.c), tells a new session from an old one */
    bool available;
    bool interested;     /* asked for the roster: gets roster pushes */
    bool blk_interested; /* asked for the blocklist: gets blocklist pushes */
    int priority;
    sd_stanza *last; /* last broadcast available presence, without 'to' */
};

enum { A_LOADING, A_READY, A_MISSING };

struct op;
struct dbop;
struct wstate;

struct account {
    struct hent he; /* key: bare */
    struct wstate *ws;
    char *bare, *local, *host;
    int state;
    bool dead; /* deleted, or dropped: freed when its database queue is empty */
    int64_t id;
    int64_t ver, floor;
    uint32_t epoch;
    struct hmap items;
    size_t n_visible, n_hidden, n_tomb; /* in the roster / stored requests only / tombstones */
    char **blocked;                     /* sorted, prepared JIDs */
    size_t nblocked;
    struct res *res;
    struct op *ops, **ops_tail;
    struct dbop *db, **db_tail;
    bool db_busy;
    int busy; /* being worked on up the stack: not freed before it returns */
    struct account *idle_prev, *idle_next;
    uint64_t idle_since;
};

typedef void (*acct_fn)(struct account *a, void *ud);
typedef void (*db_done_fn)(struct account *a, bool ok, void *ud);

/* On the account's home worker. Runs fn(a, ud) when the account's state is ready (at once, or
 * after loading, in the order asked). With load false, an account not in memory gives
 * fn(NULL, ud); with load true, NULL means loading failed. a->state is A_MISSING for a JID that
 * is no account of ours. */
void acct_with(const char *bare, bool load, acct_fn fn, void *ud);
/* Queues a write (statement with text parameters, copied) behind the account's earlier ones:
 * writes of one account run one at a time, in order. done may be NULL. */
void acct_db(struct account *a, sd_stmt *stmt, const char *const *vals, int n, db_done_fn done,
             void *ud);
/* After an operation: an account with nothing going on becomes a candidate for unloading. */
void acct_settle(struct account *a);
/* Frees the account (deleted): now, or when its writes are done. */
void acct_drop(struct account *a);
/* Called by store.c when loading ends (ok false: failed). */
void acct_loaded(struct account *a, bool ok);
/* Unloads accounts idle for long enough (on every task). */
void state_sweep(void);
/* Frees every worker's state (unload, workers stopped). */
void state_free_all(void);

struct res *res_find(struct account *a, const char *name);
/* The resource record for name/sid, created when missing (replacing the record of an older
 * session with that resource); NULL when a newer session holds the resource (session tokens
 * only grow). */
struct res *res_get(struct account *a, const char *name, uint64_t sid);
void res_remove(struct account *a, struct res *r);
bool acct_has_available(const struct account *a);

struct item *item_find(struct account *a, const char *jid);
/* A new hidden item (not in the roster, no state), in the map. */
struct item *item_new(struct account *a, const char *jid);
void item_free(struct item *it);
/* Counters: call before changing an item, then item_commit (which counts it again). */
void item_unaccount(struct account *a, const struct item *it);
void item_account(struct account *a, const struct item *it);

/* The push counter of this worker, for iq ids. */
uint64_t next_seq(void);

/* ---- tasks (mod_roster.c) ---- */

enum task_kind {
    T_BOUND,
    T_CLOSED,
    T_PRESENCE,
    T_SUB_OUT,
    T_SUB_IN,
    T_PROBE,
    T_IQ_ROSTER,
    T_IQ_BLOCK,
    T_DELETED,
};

struct task {
    enum task_kind kind;
    char *bare; /* the account it is for */
    char *res;  /* the client's resource (client tasks) */
    uint64_t sid;
    sd_stanza *st; /* an owned copy */
    sd_pending *pending;
    int origin; /* the worker the pending belongs to */
};

void task_free(struct task *t);
/* Finishes t's deferred iq on its own worker: with reply (consumed) when err < 0, else with the
 * error. The task itself is freed. */
void task_finish(struct task *t, sd_stanza *reply, int err, const char *text);

/* ---- store.c ---- */

int store_prepare(sd_module *m);
/* Starts loading a (A_LOADING): calls acct_loaded when done. */
void store_load(struct account *a);
/* Writes the item (or deletes its row) together with the account's version. */
void store_save_item(struct account *a, const struct item *it, db_done_fn done, void *ud);
void store_delete_item(struct account *a, const char *jid, db_done_fn done, void *ud);
void store_compact(struct account *a);
void store_block_add(struct account *a, const char *jid, db_done_fn done, void *ud);
void store_block_del(struct account *a, const char *jid, db_done_fn done, void *ud);
void store_block_clear(struct account *a, db_done_fn done, void *ud);
/* Every account's blocklist, once, on the calling worker (blocking.c's start-up fill). */
typedef void (*store_rows_fn)(sd_dbres *r, void *ud);
int store_all_blocked(store_rows_fn fn, void *ud);
/* The accounts that have jid in their roster with some subscription state. */
int store_contacts_of(const char *jid, store_rows_fn fn, void *ud);

/* ---- roster.c ---- */

/* A change to it is done: bumps the version and pushes when visible, persists, frees an item
 * left with nothing. done (may be NULL) runs when the write is done. */
void item_commit(struct account *a, struct item *it, bool visible, db_done_fn done, void *ud);
/* The visible state of an item, to compare before/after a change. */
unsigned item_visible_state(const struct item *it);
void roster_iq(struct account *a, struct task *t);
char *ver_string(const struct account *a, int64_t ver, char *buf, size_t n);

/* ---- subscription.c ---- */

void sub_outbound(struct account *a, struct task *t);
void sub_inbound(struct account *a, struct task *t);
/* RFC 6121 §2.5.2: what removing an item sends (before the item goes). */
void sub_remove_item(struct account *a, struct item *it);
bool is_subscription_type(const char *type);

/* ---- presence.c ---- */

/* A routed copy of st with from/to replaced; st is borrowed. */
void send_copy(const sd_stanza *st, const char *from, const char *to);
void deliver_copy(const sd_stanza *st, const char *from, const char *to);
void send_presence(const char *type, const char *from, const char *to);
/* Broadcast presence st (no 'to') of resource r. */
void pres_update(struct account *a, struct res *r, sd_stanza *st);
/* Resource r ended (or was replaced): unavailable to the contacts, if it was available. */
void pres_gone(struct account *a, struct res *r);
/* Each available resource's last presence, from its full JID, to `to` (a bare JID). */
void pres_current_to(struct account *a, const char *to);
/* Unavailable presence from each available resource to `to`. */
void pres_unavailable_to(struct account *a, const char *to);
/* A probe from a->bare to `to`. */
void pres_probe(struct account *a, const char *to);
/* The account answers a probe (RFC 6121 §4.3.2). */
void pres_probe_in(struct account *a, struct task *t);
/* Copies of st to each available resource (and, with also_interested, each interested one). */
void deliver_to_resources(struct account *a, const sd_stanza *st, bool also_interested);

/* ---- blocking.c ---- */

int blocking_register(sd_module *m);
void blocking_start(void); /* the first event on a worker: fills the shared table once */
void block_iq(struct account *a, struct task *t);
/* The account's blocklist was loaded: publish it to the shared table. */
void blocking_loaded(struct account *a);
/* Does the list (sorted) match jid (XEP-0191 §"JID matching")? */
bool blocklist_match(char *const *v, size_t n, const char *jid);
void blocking_account_deleted(const char *bare);
void blocking_free_all(void);

#endif
