/*
 * session.c — the session directory: bare JID → the account's bound sessions.
 *
 * Shards are small chained hash tables keyed by the bare JID, each under a pthread rwlock; the
 * shard is chosen by the top bits of an FNV-1a hash, the bucket by the low bits, so one hash
 * serves both. An account entry keeps its sessions in bind order (oldest first), which is what
 * the "max sessions per account" rule needs to pick whom to log out.
 */
#include "session.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mem.h"
#include "slab.h"

struct account {
    struct account *next; /* bucket chain */
    uint64_t hash;
    char *bare;
    struct session **sess; /* bind order */
    size_t n, cap;
};

struct shard {
    pthread_rwlock_t lock;
    struct account **buckets;
    size_t n_buckets; /* power of two */
    size_t n_accounts;
    size_t n_sessions;
} __attribute__((aligned(64)));

static struct shard *shards;
static unsigned n_shards;
static unsigned shard_bits;
static atomic_uint_fast64_t bind_counter;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static struct shard *shard_for(uint64_t h)
{
    return &shards[shard_bits ? (h >> (64 - shard_bits)) : 0];
}

void sessions_init(unsigned want)
{
    n_shards = 1;
    shard_bits = 0;
    while (n_shards < want) {
        n_shards <<= 1;
        shard_bits++;
    }
    shards = xcalloc(n_shards, sizeof *shards);
    for (unsigned i = 0; i < n_shards; i++) {
        pthread_rwlock_init(&shards[i].lock, NULL);
        shards[i].n_buckets = 64;
        shards[i].buckets = xcalloc(64, sizeof(struct account *));
    }
}

void sessions_destroy(void)
{
    for (unsigned i = 0; i < n_shards; i++) {
        struct shard *sh = &shards[i];
        for (size_t b = 0; b < sh->n_buckets; b++) {
            struct account *a = sh->buckets[b];
            while (a) {
                struct account *next = a->next;
                for (size_t k = 0; k < a->n; k++)
                    session_unref(&a->sess[k]);
                slab_free(a->sess);
                slab_free(a);
                a = next;
            }
        }
        free(sh->buckets);
        pthread_rwlock_destroy(&sh->lock);
    }
    free(shards);
    shards = NULL;
}

static struct account *shard_lookup(struct shard *sh, uint64_t h, const char *bare)
{
    for (struct account *a = sh->buckets[h & (sh->n_buckets - 1)]; a; a = a->next)
        if (a->hash == h && strcmp(a->bare, bare) == 0)
            return a;
    return NULL;
}

static void shard_grow(struct shard *sh)
{
    size_t nb = sh->n_buckets * 2;
    struct account **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < sh->n_buckets; i++) {
        struct account *a = sh->buckets[i];
        while (a) {
            struct account *next = a->next;
            a->next = b[a->hash & (nb - 1)];
            b[a->hash & (nb - 1)] = a;
            a = next;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->n_buckets = nb;
}

static void shard_remove(struct shard *sh, struct account *acc)
{
    struct account **pp = &sh->buckets[acc->hash & (sh->n_buckets - 1)];
    while (*pp != acc)
        pp = &(*pp)->next;
    *pp = acc->next;
    sh->n_accounts--;
    slab_free(acc->sess);
    slab_free(acc);
}

struct session *session_new(struct worker *w, uint64_t id, const char *local, const char *host,
                            const char *resource)
{
    size_t ll = strlen(local), hl = strlen(host), rl = strlen(resource);
    /* One slab block: the session, then "local\0host\0resource\0", "local@host\0" and
     * "local@host/resource\0". */
    size_t parts = ll + hl + rl + 3, bare = ll + hl + 2, full = ll + hl + rl + 3;
    struct session *s = slab_alloc(sizeof *s + parts + bare + full);
    atomic_init(&s->refs, 1);
    atomic_init(&s->closed, false);
    s->id = id;
    s->w = w;
    s->parts = (char *)(s + 1);
    memcpy(s->parts, local, ll + 1);
    memcpy(s->parts + ll + 1, host, hl + 1);
    memcpy(s->parts + ll + hl + 2, resource, rl + 1);
    s->local = s->parts;
    s->host = s->parts + ll + 1;
    s->resource = s->parts + ll + hl + 2;
    s->bare = s->parts + parts;
    memcpy(s->bare, local, ll);
    s->bare[ll] = '@';
    memcpy(s->bare + ll + 1, host, hl + 1);
    s->full = s->bare + bare;
    memcpy(s->full, s->bare, ll + hl + 1);
    s->full[ll + hl + 1] = '/';
    memcpy(s->full + ll + hl + 2, resource, rl + 1);
    return s;
}

void session_ref(struct session *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void session_unref(struct session **sp)
{
    struct session *s = *sp;
    *sp = NULL;
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n_directed; i++)
        free(s->directed[i]);
    free(s->directed);
    slab_free(s);
}

static void kicked_push(struct session ***arr, size_t *n, size_t *cap, struct session *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *arr = xrealloc(*arr, *cap * sizeof **arr);
    }
    (*arr)[(*n)++] = s; /* the directory's reference moves to the caller */
}

static void account_remove_at(struct account *acc, size_t i)
{
    memmove(&acc->sess[i], &acc->sess[i + 1], (acc->n - i - 1) * sizeof *acc->sess);
    acc->n--;
}

enum bind_result session_bind(struct session *s, int policy, int max_per_account,
                              struct session ***kicked_r, size_t *n_kicked_r)
{
    uint64_t h = hash_str(s->bare);
    struct shard *sh = shard_for(h);
    struct session **kicked = NULL;
    size_t nk = 0, ck = 0;

    pthread_rwlock_wrlock(&sh->lock);
    struct account *acc = shard_lookup(sh, h, s->bare);
    if (!acc) {
        if (sh->n_accounts >= sh->n_buckets)
            shard_grow(sh);
        size_t bl = strlen(s->bare);
        acc = slab_alloc(sizeof *acc + bl + 1);
        acc->hash = h;
        acc->bare = memcpy((char *)(acc + 1), s->bare, bl + 1);
        acc->next = sh->buckets[h & (sh->n_buckets - 1)];
        sh->buckets[h & (sh->n_buckets - 1)] = acc;
        sh->n_accounts++;
    }
    for (size_t i = 0; i < acc->n; i++) {
        if (strcmp(acc->sess[i]->resource, s->resource) != 0)
            continue;
        if (policy == CONFLICT_REFUSE) {
            pthread_rwlock_unlock(&sh->lock);
            *kicked_r = NULL;
            *n_kicked_r = 0;
            return BIND_CONFLICT;
        }
        struct session *old = acc->sess[i];
        atomic_store(&old->closed, true);
        account_remove_at(acc, i);
        sh->n_sessions--;
        kicked_push(&kicked, &nk, &ck, old);
        break;
    }
    while (max_per_account > 0 && acc->n >= (size_t)max_per_account) {
        struct session *old = acc->sess[0];
        atomic_store(&old->closed, true);
        account_remove_at(acc, 0);
        sh->n_sessions--;
        kicked_push(&kicked, &nk, &ck, old);
    }
    if (acc->n == acc->cap) {
        size_t ncap = acc->cap ? acc->cap * 2 : 2;
        struct session **ns = slab_alloc(ncap * sizeof *ns);
        if (acc->n)
            memcpy(ns, acc->sess, acc->n * sizeof *ns);
        slab_free(acc->sess);
        acc->sess = ns;
        acc->cap = ncap;
    }
    s->bound_at = atomic_fetch_add(&bind_counter, 1);
    session_ref(s);
    acc->sess[acc->n++] = s;
    sh->n_sessions++;
    pthread_rwlock_unlock(&sh->lock);

    *kicked_r = kicked;
    *n_kicked_r = nk;
    return BIND_OK;
}

void session_unbind(struct session *s)
{
    uint64_t h = hash_str(s->bare);
    struct shard *sh = shard_for(h);
    struct session *dropped = NULL;

    pthread_rwlock_wrlock(&sh->lock);
    atomic_store(&s->closed, true);
    struct account *acc = shard_lookup(sh, h, s->bare);
    if (acc) {
        for (size_t i = 0; i < acc->n; i++)
            if (acc->sess[i] == s) {
                dropped = s;
                account_remove_at(acc, i);
                sh->n_sessions--;
                break;
            }
        if (acc->n == 0)
            shard_remove(sh, acc);
    }
    pthread_rwlock_unlock(&sh->lock);
    session_unref(&dropped);
}

bool session_resource_taken(const char *bare, const char *resource)
{
    struct session *s = session_find(bare, resource);
    bool taken = s != NULL;
    session_unref(&s);
    return taken;
}

struct session *session_find(const char *bare, const char *resource)
{
    uint64_t h = hash_str(bare);
    struct shard *sh = shard_for(h);
    struct session *found = NULL;

    pthread_rwlock_rdlock(&sh->lock);
    struct account *acc = shard_lookup(sh, h, bare);
    if (acc)
        for (size_t i = 0; i < acc->n; i++)
            if (strcmp(acc->sess[i]->resource, resource) == 0) {
                found = acc->sess[i];
                session_ref(found);
                break;
            }
    pthread_rwlock_unlock(&sh->lock);
    return found;
}

size_t session_find_bare(const char *bare, enum session_pick pick, struct session **out, size_t cap)
{
    uint64_t h = hash_str(bare);
    struct shard *sh = shard_for(h);
    size_t n = 0;

    pthread_rwlock_rdlock(&sh->lock);
    struct account *acc = shard_lookup(sh, h, bare);
    if (acc) {
        int top = -129;
        if (pick == PICK_TOP_PRIORITY)
            for (size_t i = 0; i < acc->n; i++)
                if (acc->sess[i]->available && acc->sess[i]->priority >= 0 &&
                    acc->sess[i]->priority > top)
                    top = acc->sess[i]->priority;
        for (size_t i = 0; i < acc->n && n < cap; i++) {
            struct session *s = acc->sess[i];
            bool take;
            switch (pick) {
            case PICK_TOP_PRIORITY:
                take = s->available && s->priority == top;
                break;
            case PICK_NON_NEGATIVE:
                take = s->available && s->priority >= 0;
                break;
            case PICK_AVAILABLE:
                take = s->available;
                break;
            default:
                take = true;
            }
            if (take) {
                session_ref(s);
                out[n++] = s;
            }
        }
    }
    pthread_rwlock_unlock(&sh->lock);
    return n;
}

bool session_account_online(const char *bare)
{
    uint64_t h = hash_str(bare);
    struct shard *sh = shard_for(h);
    pthread_rwlock_rdlock(&sh->lock);
    bool online = shard_lookup(sh, h, bare) != NULL;
    pthread_rwlock_unlock(&sh->lock);
    return online;
}

void session_set_presence(struct session *s, bool available, int priority)
{
    uint64_t h = hash_str(s->bare);
    struct shard *sh = shard_for(h);
    pthread_rwlock_wrlock(&sh->lock);
    s->available = available;
    s->priority = priority;
    pthread_rwlock_unlock(&sh->lock);
}

size_t sessions_count(void)
{
    size_t n = 0;
    for (unsigned i = 0; i < n_shards; i++) {
        pthread_rwlock_rdlock(&shards[i].lock);
        n += shards[i].n_sessions;
        pthread_rwlock_unlock(&shards[i].lock);
    }
    return n;
}
