/*
 * blocking.c — the blocking command (XEP-0191, urn:xmpp:blocking).
 *
 * The blocklist of an account is kept with the rest of its state on its home worker (the iqs,
 * the pushes, the presence consequences run there) and stored in roster_blocked. Enforcement,
 * though, happens wherever a stanza is routed, on any worker, synchronously: so every
 * blocklist is also published in a module-wide table, sharded by bare JID, each shard behind a
 * reader-writer lock, holding per account an immutable sorted array of JIDs that a new array
 * replaces. A router takes one shard's read lock for a binary search or four; a server where
 * nobody blocks anyone skips even that (a counter of non-empty lists).
 *
 * The table holds every account's list, not only loaded ones (a blocked contact must not reach
 * an offline user either): it is filled once from the database by the first worker event
 * (stream features or a bound session), and kept current by the home workers. Until that first
 * read completes (milliseconds after the first connection) only lists loaded since count.
 *
 * Rules (XEP-0191 §3.3): from a blocked JID, presence is dropped silently, a message and an iq
 * get/set get <service-unavailable/>, other iqs are dropped; to a blocked JID, the user's own
 * stanzas get <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/>, and presence
 * the server sends on the user's behalf is dropped. Blocking a contact that receives the user's
 * presence sends it unavailable presence first; unblocking sends the current presence and a
 * probe (the contact's presence was dropped meanwhile). The user's own resources are never
 * blocked from each other.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

/* ---- JID matching (XEP-0191 §"JID Matching", in the order of XEP-0016) ---- */

static int cmp_strp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static bool has(char *const *v, size_t n, const char *s)
{
    const char *key = s;
    return n > 0 && bsearch(&key, v, n, sizeof(*v), cmp_strp) != NULL;
}

bool blocklist_match(char *const *v, size_t n, const char *jid)
{
    if (n == 0 || jid == NULL)
        return false;
    /* A prepared JID: local@domain/resource; neither local nor domain holds '@' or '/'. */
    const char *slash = strchr(jid, '/');
    const char *at = strchr(jid, '@');
    if (at != NULL && slash != NULL && at > slash)
        at = NULL; /* an '@' in the resource */
    size_t len = strlen(jid);
    size_t bare_len = slash ? (size_t)(slash - jid) : len;
    const char *domain = at ? at + 1 : jid;
    size_t domain_len = (size_t)(jid + bare_len - domain);
    char buf[3200];
    if (len >= sizeof(buf))
        return false;
    /* <user@domain/resource> */
    if (has(v, n, jid))
        return true;
    /* <user@domain> */
    if (slash != NULL) {
        memcpy(buf, jid, bare_len);
        buf[bare_len] = '\0';
        if (has(v, n, buf))
            return true;
    }
    /* <domain/resource> */
    if (at != NULL && slash != NULL) {
        size_t rest = len - (size_t)(domain - jid);
        memcpy(buf, domain, rest + 1);
        if (has(v, n, buf))
            return true;
    }
    /* <domain>, and the domains it is a subdomain of ("an address containing a subdomain") */
    memcpy(buf, domain, domain_len);
    buf[domain_len] = '\0';
    if ((at != NULL || slash != NULL) && has(v, n, buf))
        return true;
    for (const char *d = strchr(buf, '.'); d != NULL; d = strchr(d + 1, '.'))
        if (d[1] != '\0' && has(v, n, d + 1))
            return true;
    return false;
}

/* ---- the shared table ---- */

#define SHARDS 64

struct snap {
    size_t n;
    char **v; /* sorted; owned */
};

struct bentry {
    struct hent he; /* key: bare */
    char *bare;
    struct snap *snap; /* never NULL */
};

struct shard {
    pthread_rwlock_t lock;
    struct hmap map;
};

static struct shard shards[SHARDS];
static atomic_size_t nonempty; /* entries with a non-empty list */
static atomic_flag fill_started = ATOMIC_FLAG_INIT;
static sd_module *blk_mod;

static struct shard *shard_of(const char *bare, uint64_t *h)
{
    *h = hash_str(bare);
    return &shards[(*h >> 32) % SHARDS];
}

static struct snap *snap_new(char *const *v, size_t n)
{
    struct snap *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    if (n > 0) {
        s->v = calloc(n, sizeof(char *));
        if (s->v == NULL)
            abort();
        for (size_t i = 0; i < n; i++)
            if ((s->v[i] = strdup(v[i])) == NULL)
                abort();
        qsort(s->v, n, sizeof(*s->v), cmp_strp);
    }
    s->n = n;
    return s;
}

static void snap_free(struct snap *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    free(s);
}

enum { PUB_ALWAYS, PUB_IF_ABSENT, PUB_IF_PRESENT_OR_NONEMPTY };

/* Publishes bare's list (copied). */
static void publish(const char *bare, char *const *v, size_t n, int mode)
{
    uint64_t h;
    struct shard *sh = shard_of(bare, &h);
    struct snap *old = NULL;
    pthread_rwlock_wrlock(&sh->lock);
    struct hent *e = hmap_get(&sh->map, bare);
    struct bentry *b = e ? CONTAINER(e, struct bentry, he) : NULL;
    if ((b != NULL && mode == PUB_IF_ABSENT) ||
        (b == NULL && n == 0 && mode == PUB_IF_PRESENT_OR_NONEMPTY)) {
        pthread_rwlock_unlock(&sh->lock);
        return;
    }
    struct snap *s = snap_new(v, n);
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL || (b->bare = strdup(bare)) == NULL)
            abort();
        b->he.key = b->bare;
        hmap_put(&sh->map, &b->he);
    } else {
        old = b->snap;
    }
    b->snap = s;
    if ((old == NULL || old->n == 0) && n > 0)
        atomic_fetch_add(&nonempty, 1);
    else if (old != NULL && old->n > 0 && n == 0)
        atomic_fetch_sub(&nonempty, 1);
    pthread_rwlock_unlock(&sh->lock);
    snap_free(old); /* no reader holds it: they hold the lock while they look */
}

/* Does account `bare` block `jid`? Any worker. */
static bool blocks(const char *bare, const char *jid)
{
    if (atomic_load_explicit(&nonempty, memory_order_relaxed) == 0)
        return false;
    uint64_t h;
    struct shard *sh = shard_of(bare, &h);
    bool r = false;
    pthread_rwlock_rdlock(&sh->lock);
    struct hent *e = hmap_get(&sh->map, bare);
    if (e != NULL) {
        struct snap *s = CONTAINER(e, struct bentry, he)->snap;
        r = blocklist_match(s->v, s->n, jid);
    }
    pthread_rwlock_unlock(&sh->lock);
    return r;
}

void blocking_loaded(struct account *a)
{
    publish(a->bare, a->blocked, a->nblocked, PUB_IF_PRESENT_OR_NONEMPTY);
}

void blocking_account_deleted(const char *bare)
{
    publish(bare, NULL, 0, PUB_IF_PRESENT_OR_NONEMPTY);
}

static void filled(sd_dbres *r, void *ud)
{
    (void)ud;
    if (sd_dbres_status(r) != SD_DB_OK) {
        sd_log(blk_mod, SD_LOG_ERROR, "cannot read the blocklists: %s", sd_dbres_error(r));
        atomic_flag_clear(&fill_started); /* the next event tries again */
        return;
    }
    int n = sd_dbres_rows(r);
    int i = 0;
    while (i < n) {
        const char *bare = sd_dbres_value(r, i, 0);
        int j = i;
        while (j < n && strcmp(sd_dbres_value(r, j, 0), bare) == 0)
            j++;
        char **v = calloc((size_t)(j - i), sizeof(char *));
        if (v == NULL)
            abort();
        for (int k = i; k < j; k++)
            v[k - i] = (char *)sd_dbres_value(r, k, 1);
        publish(bare, v, (size_t)(j - i), PUB_IF_ABSENT);
        free(v);
        i = j;
    }
    sd_log(blk_mod, SD_LOG_DEBUG, "%d blocklist entries loaded", n);
}

void blocking_start(void)
{
    if (atomic_flag_test_and_set(&fill_started))
        return;
    if (store_all_blocked(filled, NULL) < 0)
        atomic_flag_clear(&fill_started);
}

static void free_entry(struct hent *e, void *ud)
{
    (void)ud;
    struct bentry *b = CONTAINER(e, struct bentry, he);
    snap_free(b->snap);
    free(b->bare);
    free(b);
}

void blocking_free_all(void)
{
    for (int i = 0; i < SHARDS; i++) {
        hmap_each(&shards[i].map, free_entry, NULL);
        hmap_free(&shards[i].map);
    }
    atomic_store(&nonempty, 0);
}

/* ---- enforcement ---- */

/* Inbound (every stanza to a local account, any worker). */
static sd_verdict blk_inbound(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    if (atomic_load_explicit(&nonempty, memory_order_relaxed) == 0)
        return SD_PASS;
    const sd_jid *to = sd_stanza_to(st);
    const sd_jid *from = sd_stanza_from(st);
    if (to == NULL || from == NULL || strcmp(sd_jid_bare(to), sd_jid_bare(from)) == 0)
        return SD_PASS;
    sd_kind kind = sd_stanza_kind(st);
    const char *type = sd_stanza_type(st);
    if (blocks(sd_jid_bare(to), sd_jid_full(from))) {
        bool is_error = type != NULL && strcmp(type, "error") == 0;
        if (kind == SD_MESSAGE && !is_error)
            return sd_reply_error(h, st, SD_ERR_SERVICE_UNAVAILABLE, NULL);
        if (kind == SD_IQ && type != NULL && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0))
            return sd_reply_error(h, st, SD_ERR_SERVICE_UNAVAILABLE, NULL);
        return SD_DONE; /* presence (notifications, subscriptions, probes), other iqs */
    }
    /* Presence a local account sends (the server on its behalf) to a JID it blocks. */
    if (kind == SD_PRESENCE && sd_jid_local(from) != NULL &&
        blocks(sd_jid_bare(from), sd_jid_full(to)))
        return SD_DONE;
    return SD_PASS;
}

/* Outbound (every stanza from a client, on its worker). */
static sd_verdict blk_outbound(sd_hctx *h, sd_stanza *st, void *ud)
{
    (void)ud;
    if (atomic_load_explicit(&nonempty, memory_order_relaxed) == 0)
        return SD_PASS;
    sd_session *s = sd_hctx_session(h);
    sd_kind kind = sd_stanza_kind(st);
    if (s == NULL || kind == SD_OTHER || sd_stanza_to_str(st) == NULL)
        return SD_PASS;
    const sd_jid *to = sd_stanza_to(st);
    const char *bare = sd_session_bare(s);
    if (to == NULL || strcmp(sd_jid_bare(to), bare) == 0 || !blocks(bare, sd_jid_full(to)))
        return SD_PASS;
    const char *type = sd_stanza_type(st);
    if (type != NULL &&
        (strcmp(type, "error") == 0 || (kind == SD_IQ && strcmp(type, "result") == 0)))
        return SD_DONE; /* not routed, and no error answers an answer */
    sd_stanza *err = sd_stanza_error(st, SD_ERR_NOT_ACCEPTABLE, NULL);
    if (err == NULL)
        return SD_DONE;
    sd_el *e = sd_el_child(sd_stanza_el(err), NS_CLIENT, "error");
    if (e != NULL) {
        sd_el_set_attr(err, e, "type", "cancel"); /* as XEP-0191's example */
        sd_el_add(err, e, NS_BLOCKING_ERRORS, "blocked");
    }
    sd_reply(h, &err);
    return SD_DONE;
}

/* ---- the iqs (home worker) ---- */

struct batch {
    struct task *t;
    int left;
    bool ok;
    sd_stanza *reply;
};

static void batch_done(struct account *a, bool ok, void *ud)
{
    (void)a;
    struct batch *b = ud;
    b->ok = b->ok && ok;
    if (--b->left > 0)
        return;
    if (b->ok) {
        task_finish(b->t, b->reply, -1, NULL);
    } else {
        sd_stanza_free(&b->reply);
        task_finish(b->t, NULL, SD_ERR_INTERNAL_SERVER_ERROR, "the blocklist could not be saved");
    }
    free(b);
}

static void push_blocking(struct account *a, const char *what, char *const *v, size_t n)
{
    for (struct res *r = a->res; r; r = r->next) {
        if (!r->blk_interested)
            continue;
        sd_stanza *st = sd_stanza_new(SD_IQ, "set");
        if (st == NULL)
            continue;
        char id[32];
        snprintf(id, sizeof(id), "push%llu", (unsigned long long)next_seq());
        sd_stanza_set_id(st, id);
        sd_stanza_set_from(st, a->bare);
        sd_stanza_set_to(st, r->full);
        sd_el *el = sd_el_add(st, sd_stanza_el(st), NS_BLOCKING, what);
        for (size_t i = 0; i < n; i++)
            sd_el_set_attr(st, sd_el_add(st, el, NS_BLOCKING, "item"), "jid", v[i]);
        sd_route(&st);
    }
}

/* The item JIDs of a block/unblock, prepared; NULL with *err set when one is bad. */
static char **collect(struct task *t, sd_el *cmd, size_t *n, int *err)
{
    *n = 0;
    *err = -1;
    size_t cap = 0;
    for (sd_el *i = sd_el_child(cmd, NS_BLOCKING, "item"); i;
         i = sd_el_next(i, NS_BLOCKING, "item"))
        cap++;
    char **v = cap ? calloc(cap, sizeof(char *)) : NULL;
    if (cap && v == NULL)
        abort();
    for (sd_el *i = sd_el_child(cmd, NS_BLOCKING, "item"); i;
         i = sd_el_next(i, NS_BLOCKING, "item")) {
        const char *s = sd_el_attr(i, "jid");
        sd_jid *j = s ? sd_jid_new(s) : NULL;
        if (j == NULL) {
            *err = s ? SD_ERR_JID_MALFORMED : SD_ERR_BAD_REQUEST;
            for (size_t k = 0; k < *n; k++)
                free(v[k]);
            free(v);
            *n = 0;
            return NULL;
        }
        char *p = strdup(sd_jid_full(j));
        sd_jid_free(&j);
        if (p == NULL)
            abort();
        bool dup = false;
        for (size_t k = 0; k < *n; k++)
            dup = dup || strcmp(v[k], p) == 0;
        if (dup)
            free(p);
        else
            v[(*n)++] = p;
    }
    (void)t;
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

struct match_ctx {
    struct account *a;
    char *const *changed; /* the JIDs blocked or unblocked now */
    size_t nchanged;
    bool unblock;
};

static void contact_cb(struct hent *e, void *ud)
{
    struct match_ctx *m = ud;
    struct item *it = CONTAINER(e, struct item, he);
    if (!it->in_roster || !blocklist_match(m->changed, m->nchanged, it->jid))
        return;
    if (!m->unblock) {
        if ((it->sub & SUB_FROM) && !blocklist_match(m->a->blocked, m->a->nblocked, it->jid))
            pres_unavailable_to(m->a, it->jid);
        return;
    }
    /* Unblocked, unless another entry still blocks it. */
    if (blocklist_match(m->a->blocked, m->a->nblocked, it->jid))
        return;
    if (it->sub & SUB_FROM)
        pres_current_to(m->a, it->jid);
    if (it->sub & SUB_TO)
        pres_probe(m->a, it->jid);
}

static sd_stanza *result_for(struct account *a, struct task *t)
{
    sd_stanza *reply = sd_stanza_result(t->st);
    if (reply != NULL)
        sd_stanza_set_from(reply, a->bare);
    return reply;
}

static void do_block(struct account *a, struct task *t, sd_el *cmd)
{
    size_t n;
    int err;
    char **v = collect(t, cmd, &n, &err);
    if (v == NULL && err < 0)
        err = SD_ERR_BAD_REQUEST; /* XEP-0191 §3.3: at least one item */
    if (err >= 0) {
        task_finish(t, NULL, err, err == SD_ERR_BAD_REQUEST ? "no or bad items" : NULL);
        return;
    }
    /* The new ones. */
    char **add = calloc(n, sizeof(char *));
    if (add == NULL)
        abort();
    size_t nadd = 0;
    for (size_t i = 0; i < n; i++)
        if (!has(a->blocked, a->nblocked, v[i]))
            add[nadd++] = v[i];
    const struct rconf *c = rconf(a->host);
    if (c != NULL && a->nblocked + nadd > (size_t)c->max_blocked) {
        free(add);
        free_list(v, n);
        task_finish(t, NULL, SD_ERR_POLICY_VIOLATION, "the blocklist is full");
        return;
    }
    /* Unavailable to contacts that see the user, while they still may receive it. */
    if (nadd > 0 && acct_has_available(a)) {
        struct match_ctx m = {a, add, nadd, false};
        hmap_each(&a->items, contact_cb, &m);
    }
    char **nb = realloc(a->blocked, (a->nblocked + nadd) * sizeof(char *) + 1);
    if (nb == NULL)
        abort();
    a->blocked = nb;
    for (size_t i = 0; i < nadd; i++)
        if ((a->blocked[a->nblocked++] = strdup(add[i])) == NULL)
            abort();
    qsort(a->blocked, a->nblocked, sizeof(char *), cmp_strp);
    publish(a->bare, a->blocked, a->nblocked, PUB_ALWAYS);
    push_blocking(a, "block", v, n);
    struct batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        abort();
    b->t = t;
    b->ok = true;
    b->reply = result_for(a, t);
    b->left = (int)nadd + 1;
    for (size_t i = 0; i < nadd; i++)
        store_block_add(a, add[i], batch_done, b);
    free(add);
    free_list(v, n);
    batch_done(a, true, b); /* the +1 */
}

static void do_unblock(struct account *a, struct task *t, sd_el *cmd)
{
    size_t n;
    int err;
    char **v = collect(t, cmd, &n, &err);
    if (err >= 0) {
        task_finish(t, NULL, err, NULL);
        return;
    }
    char **gone;
    size_t ngone = 0;
    struct batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        abort();
    b->t = t;
    b->ok = true;
    b->reply = result_for(a, t);
    b->left = 1;
    if (n == 0) {
        /* §3.5: unblock all. */
        gone = a->blocked;
        ngone = a->nblocked;
        a->blocked = NULL;
        a->nblocked = 0;
        b->left++;
        store_block_clear(a, batch_done, b);
    } else {
        gone = calloc(n, sizeof(char *));
        if (gone == NULL)
            abort();
        size_t keep = 0;
        for (size_t i = 0; i < a->nblocked; i++) {
            bool drop = false;
            for (size_t k = 0; k < n && !drop; k++)
                drop = strcmp(a->blocked[i], v[k]) == 0;
            if (drop)
                gone[ngone++] = a->blocked[i];
            else
                a->blocked[keep++] = a->blocked[i];
        }
        a->nblocked = keep;
        for (size_t i = 0; i < ngone; i++) {
            b->left++;
            store_block_del(a, gone[i], batch_done, b);
        }
    }
    publish(a->bare, a->blocked, a->nblocked, PUB_ALWAYS);
    if (ngone > 0) {
        struct match_ctx m = {a, gone, ngone, true};
        hmap_each(&a->items, contact_cb, &m);
    }
    push_blocking(a, "unblock", v, n);
    free_list(gone, ngone);
    free_list(v, n);
    batch_done(a, true, b);
}

void block_iq(struct account *a, struct task *t)
{
    sd_el *cmd = sd_stanza_payload(t->st);
    struct res *r = res_get(a, t->res, t->sid);
    const char *name = cmd ? sd_el_name(cmd) : "";
    if (strcmp(name, "blocklist") == 0) {
        if (r != NULL)
            r->blk_interested = true;
        sd_stanza *reply = result_for(a, t);
        if (reply == NULL) {
            task_finish(t, NULL, SD_ERR_INTERNAL_SERVER_ERROR, NULL);
            return;
        }
        sd_el *bl = sd_el_add(reply, sd_stanza_el(reply), NS_BLOCKING, "blocklist");
        for (size_t i = 0; i < a->nblocked; i++)
            sd_el_set_attr(reply, sd_el_add(reply, bl, NS_BLOCKING, "item"), "jid", a->blocked[i]);
        task_finish(t, reply, -1, NULL);
    } else if (strcmp(name, "block") == 0) {
        do_block(a, t, cmd);
    } else if (strcmp(name, "unblock") == 0) {
        do_unblock(a, t, cmd);
    } else {
        task_finish(t, NULL, SD_ERR_BAD_REQUEST, NULL);
    }
}

/* ---- registration ---- */

int blocking_register(sd_module *m)
{
    blk_mod = m;
    for (int i = 0; i < SHARDS; i++)
        if (pthread_rwlock_init(&shards[i].lock, NULL) != 0)
            return -1;
    /* Before everything else that looks at a stanza to an account. */
    if (sd_hook_inbound(m, SD_KIND_MESSAGE | SD_KIND_PRESENCE | SD_KIND_IQ, 1000, blk_inbound,
                        NULL) < 0 ||
        sd_hook_filter(m, SD_FILTER_IN, 1000, blk_outbound, NULL) < 0 ||
        sd_add_feature(m, SD_DISCO_SERVER, NS_BLOCKING) < 0)
        return -1;
    return 0;
}
