/*
 * state.c — per-account state on the account's home worker.
 *
 * Each worker keeps, in its module slot, a map from bare JID to struct account for the accounts
 * whose home it is (sd_worker_for(bare)). Nothing else touches them, so there is no lock.
 *
 * Life of an account in memory. It is created by the first operation that needs it (a session
 * bound, a client's stanza, an inbound subscription stanza) and loaded from PostgreSQL (store.c):
 * operations arriving meanwhile are queued in order and run when loading ends. Once nothing is
 * going on — no bound resource, no queued operation, no write in flight — it goes on the
 * worker's idle list, and an account idle for `unload_after` is freed by the sweep that runs at
 * the start of every task on that worker (no timer: nothing of it is left armed at shutdown, and
 * an idle server has nothing to free anyway). An online account is never unloaded, so the
 * presence path never waits for the database.
 *
 * Writes. The database gives each worker several connections, so two statements queued one after
 * the other may run in any order. Writes of one account therefore go through its own queue, one
 * at a time, in order; each write is a full-row upsert, so a failure loses only that change.
 *
 * At shutdown, tasks still in flight may run on the main thread after the loops ended
 * (sd_worker_current() < 0): they only free what they hold. unload() frees every worker's map.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "roster.h"

/* ---- hash map ---- */

uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

struct hent *hmap_get(const struct hmap *m, const char *key)
{
    if (m->nb == 0)
        return NULL;
    uint64_t h = hash_str(key);
    for (struct hent *e = m->b[h & (m->nb - 1)]; e; e = e->next)
        if (e->h == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void hmap_grow(struct hmap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    struct hent **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        abort();
    for (size_t i = 0; i < m->nb; i++) {
        struct hent *e = m->b[i];
        while (e) {
            struct hent *next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

void hmap_put(struct hmap *m, struct hent *e)
{
    if (m->n + 1 > m->nb * 3 / 4)
        hmap_grow(m);
    e->h = hash_str(e->key);
    struct hent **slot = &m->b[e->h & (m->nb - 1)];
    e->next = *slot;
    *slot = e;
    m->n++;
}

void hmap_del(struct hmap *m, struct hent *e)
{
    if (m->nb == 0)
        return;
    for (struct hent **pp = &m->b[e->h & (m->nb - 1)]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            m->n--;
            return;
        }
}

void hmap_free(struct hmap *m)
{
    free(m->b);
    *m = (struct hmap){0};
}

void hmap_each(const struct hmap *m, void (*fn)(struct hent *e, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nb; i++)
        for (struct hent *e = m->b[i], *next; e; e = next) {
            next = e->next;
            fn(e, ud);
        }
}

struct hent **hmap_list(const struct hmap *m, size_t *n)
{
    *n = 0;
    if (m->n == 0)
        return NULL;
    struct hent **v = malloc(m->n * sizeof(*v));
    if (v == NULL)
        abort();
    for (size_t i = 0; i < m->nb; i++)
        for (struct hent *e = m->b[i]; e; e = e->next)
            v[(*n)++] = e;
    return v;
}

/* ---- per-worker state ---- */

struct op {
    struct op *next;
    acct_fn fn;
    void *ud;
};

struct dbop {
    struct dbop *next;
    struct account *a;
    sd_stmt *stmt;
    int n;
    char **vals;
    db_done_fn done;
    void *ud;
};

struct wstate {
    struct wstate *all_next;
    struct hmap accounts;
    struct account idle; /* list head of the idle list (oldest first) */
    uint64_t seq;
};

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wstate *all_states;

static struct wstate *ws_get(void)
{
    void **slot = sd_worker_slot(roster_mod);
    if (slot == NULL)
        return NULL;
    if (*slot == NULL) {
        struct wstate *ws = calloc(1, sizeof(*ws));
        if (ws == NULL)
            abort();
        ws->idle.idle_next = ws->idle.idle_prev = &ws->idle;
        pthread_mutex_lock(&all_lock);
        ws->all_next = all_states;
        all_states = ws;
        pthread_mutex_unlock(&all_lock);
        *slot = ws;
    }
    return *slot;
}

uint64_t next_seq(void)
{
    struct wstate *ws = ws_get();
    return ws ? ++ws->seq : 0;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL)
        abort();
    return d;
}

/* ---- resources ---- */

struct res *res_find(struct account *a, const char *name)
{
    for (struct res *r = a->res; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

static void res_free(struct res *r)
{
    sd_stanza_free(&r->last);
    free(r->name);
    free(r->full);
    free(r);
}

void res_remove(struct account *a, struct res *r)
{
    for (struct res **pp = &a->res; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            res_free(r);
            return;
        }
}

struct res *res_get(struct account *a, const char *name, uint64_t sid)
{
    struct res *r = res_find(a, name);
    if (r != NULL && r->sid == sid)
        return r;
    if (r != NULL && r->sid > sid)
        return NULL; /* from a session that a newer one with this resource replaced */
    if (r != NULL) {
        /* A newer session took the resource before the old one's end reached us. */
        pres_gone(a, r);
        res_remove(a, r);
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->name = xstrdup(name);
    size_t n = strlen(a->bare) + strlen(name) + 2;
    r->full = malloc(n);
    if (r->full == NULL)
        abort();
    memcpy(r->full, a->bare, strlen(a->bare));
    r->full[strlen(a->bare)] = '/';
    memcpy(r->full + strlen(a->bare) + 1, name, strlen(name) + 1);
    r->sid = sid;
    r->next = a->res;
    a->res = r;
    return r;
}

bool acct_has_available(const struct account *a)
{
    for (const struct res *r = a->res; r; r = r->next)
        if (r->available)
            return true;
    return false;
}

/* ---- items ---- */

struct item *item_find(struct account *a, const char *jid)
{
    struct hent *e = hmap_get(&a->items, jid);
    return e ? CONTAINER(e, struct item, he) : NULL;
}

struct item *item_new(struct account *a, const char *jid)
{
    struct item *it = calloc(1, sizeof(*it));
    if (it == NULL)
        abort();
    it->jid = xstrdup(jid);
    it->he.key = it->jid;
    hmap_put(&a->items, &it->he);
    return it;
}

void item_free(struct item *it)
{
    free(it->jid);
    free(it->name);
    for (size_t i = 0; i < it->ngroups; i++)
        free(it->groups[i]);
    free(it->groups);
    sd_stanza_free(&it->pin);
    free(it);
}

void item_unaccount(struct account *a, const struct item *it)
{
    if (it->in_roster)
        a->n_visible--;
    else if (it->pending_in)
        a->n_hidden--;
    if (!it->in_roster && it->ver > 0)
        a->n_tomb--;
}

void item_account(struct account *a, const struct item *it)
{
    if (it->in_roster)
        a->n_visible++;
    else if (it->pending_in)
        a->n_hidden++;
    if (!it->in_roster && it->ver > 0)
        a->n_tomb++;
}

/* ---- accounts ---- */

static void idle_unlink(struct account *a)
{
    if (a->idle_next == NULL)
        return;
    a->idle_prev->idle_next = a->idle_next;
    a->idle_next->idle_prev = a->idle_prev;
    a->idle_next = a->idle_prev = NULL;
}

static void free_item_cb(struct hent *e, void *ud)
{
    (void)ud;
    item_free(CONTAINER(e, struct item, he));
}

static void acct_free(struct account *a)
{
    idle_unlink(a);
    while (a->res) {
        struct res *r = a->res;
        a->res = r->next;
        res_free(r);
    }
    hmap_each(&a->items, free_item_cb, NULL);
    hmap_free(&a->items);
    for (size_t i = 0; i < a->nblocked; i++)
        free(a->blocked[i]);
    free(a->blocked);
    while (a->ops) {
        struct op *o = a->ops;
        a->ops = o->next;
        free(o);
    }
    while (a->db) {
        struct dbop *d = a->db;
        a->db = d->next;
        for (int i = 0; i < d->n; i++)
            free(d->vals[i]);
        free(d->vals);
        free(d);
    }
    free(a->bare);
    free(a->local);
    free(a);
}

static void acct_unmap(struct account *a)
{
    if (a->ws && hmap_get(&a->ws->accounts, a->bare) == &a->he)
        hmap_del(&a->ws->accounts, &a->he);
}

void acct_drop(struct account *a)
{
    acct_unmap(a);
    idle_unlink(a);
    a->dead = true;
    acct_settle(a);
}

void acct_settle(struct account *a)
{
    if (a->busy > 0)
        return; /* the caller up the stack settles it */
    if (a->dead || a->state == A_MISSING) {
        acct_unmap(a);
        idle_unlink(a);
        if (!a->db_busy && a->ops == NULL && a->db == NULL)
            acct_free(a);
        return;
    }
    bool idle = a->res == NULL && a->ops == NULL && !a->db_busy && a->state != A_LOADING;
    if (!idle) {
        idle_unlink(a);
        return;
    }
    /* (Re)enter the idle list at its tail: the list stays ordered by idle_since. */
    idle_unlink(a);
    a->idle_since = sd_now_ms();
    struct account *head = &a->ws->idle;
    a->idle_next = head;
    a->idle_prev = head->idle_prev;
    head->idle_prev->idle_next = a;
    head->idle_prev = a;
}

void state_sweep(void)
{
    struct wstate *ws = ws_get();
    if (ws == NULL)
        return;
    uint64_t now = sd_now_ms();
    while (ws->idle.idle_next != &ws->idle) {
        struct account *a = ws->idle.idle_next;
        const struct rconf *c = rconf(a->host);
        uint64_t after = c ? (uint64_t)c->unload_after_ms : 60000;
        if (now - a->idle_since < after)
            break;
        acct_unmap(a);
        acct_free(a);
    }
}

static void run_ops(struct account *a, bool failed)
{
    a->busy++;
    while (a->ops) {
        struct op *o = a->ops;
        a->ops = o->next;
        if (a->ops == NULL)
            a->ops_tail = &a->ops;
        o->fn(failed || a->dead ? NULL : a, o->ud);
        free(o);
    }
    a->busy--;
}

void acct_loaded(struct account *a, bool ok)
{
    if (ok && a->state == A_READY && !a->dead)
        blocking_loaded(a);
    if (!ok || a->dead) {
        /* Loading failed: everything waiting fails, and the next operation tries again. */
        acct_unmap(a);
        a->dead = true;
        if (a->state == A_LOADING)
            a->state = A_MISSING;
        run_ops(a, true);
        acct_settle(a);
        return;
    }
    run_ops(a, false);
    acct_settle(a);
}

void acct_with(const char *bare, bool load, acct_fn fn, void *ud)
{
    struct wstate *ws = ws_get();
    if (ws == NULL) {
        fn(NULL, ud);
        return;
    }
    struct hent *e = hmap_get(&ws->accounts, bare);
    struct account *a = e ? CONTAINER(e, struct account, he) : NULL;
    if (a == NULL && !load) {
        fn(NULL, ud);
        return;
    }
    bool created = false;
    if (a == NULL) {
        created = true;
        a = calloc(1, sizeof(*a));
        if (a == NULL)
            abort();
        a->ws = ws;
        a->bare = xstrdup(bare);
        a->he.key = a->bare;
        a->ops_tail = &a->ops;
        a->db_tail = &a->db;
        a->state = A_LOADING;
        /* bare is "local@host" (prepared: the local part has no '@'); split into a copy. */
        size_t n = strlen(bare);
        a->local = malloc(n + 1);
        if (a->local == NULL)
            abort();
        memcpy(a->local, bare, n + 1);
        char *at = strchr(a->local, '@');
        if (at != NULL) {
            *at = '\0';
            a->host = at + 1;
        } else {
            a->host = a->local + n; /* "" */
        }
        hmap_put(&ws->accounts, &a->he);
    }
    if (a->state == A_LOADING || a->ops != NULL) {
        struct op *o = calloc(1, sizeof(*o));
        if (o == NULL)
            abort();
        o->fn = fn;
        o->ud = ud;
        *a->ops_tail = o;
        a->ops_tail = &o->next;
        idle_unlink(a);
        if (created)
            store_load(a);
        return;
    }
    idle_unlink(a);
    a->busy++;
    fn(a, ud);
    a->busy--;
    acct_settle(a);
}

/* ---- the write queue ---- */

static void db_next(struct account *a);

static void db_done(sd_dbres *r, void *ud)
{
    struct dbop *d = ud;
    struct account *a = d->a;
    bool ok = sd_dbres_status(r) == SD_DB_OK;
    if (!ok)
        sd_log(roster_mod, SD_LOG_WARN, "cannot save the roster of %s: %s", a->bare,
               sd_dbres_error(r));
    a->db = d->next;
    if (a->db == NULL)
        a->db_tail = &a->db;
    a->db_busy = false;
    a->busy++;
    if (d->done != NULL)
        d->done(a, ok, d->ud);
    for (int i = 0; i < d->n; i++)
        free(d->vals[i]);
    free(d->vals);
    free(d);
    db_next(a);
    a->busy--;
    acct_settle(a);
}

static void db_next(struct account *a)
{
    while (!a->db_busy && a->db != NULL) {
        struct dbop *d = a->db;
        a->db_busy = true;
        if (sd_worker_current() >= 0 &&
            sd_db_exec(d->stmt, (const char *const *)d->vals, d->n, db_done, d) == 0)
            return;
        /* Not on a worker (shutdown): give up on it. */
        a->db_busy = false;
        a->db = d->next;
        if (a->db == NULL)
            a->db_tail = &a->db;
        if (d->done != NULL)
            d->done(NULL, false, d->ud);
        for (int i = 0; i < d->n; i++)
            free(d->vals[i]);
        free(d->vals);
        free(d);
    }
}

void acct_db(struct account *a, sd_stmt *stmt, const char *const *vals, int n, db_done_fn done,
             void *ud)
{
    struct dbop *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    d->a = a;
    d->stmt = stmt;
    d->n = n;
    d->vals = calloc((size_t)n, sizeof(char *));
    if (d->vals == NULL)
        abort();
    for (int i = 0; i < n; i++)
        d->vals[i] = vals[i] ? xstrdup(vals[i]) : NULL;
    d->done = done;
    d->ud = ud;
    *a->db_tail = d;
    a->db_tail = &d->next;
    idle_unlink(a);
    db_next(a);
}

/* ---- shutdown ---- */

static void free_account_cb(struct hent *e, void *ud)
{
    (void)ud;
    acct_free(CONTAINER(e, struct account, he));
}

void state_free_all(void)
{
    pthread_mutex_lock(&all_lock);
    struct wstate *ws = all_states;
    all_states = NULL;
    pthread_mutex_unlock(&all_lock);
    while (ws) {
        struct wstate *next = ws->all_next;
        hmap_each(&ws->accounts, free_account_cb, NULL);
        hmap_free(&ws->accounts);
        free(ws);
        ws = next;
    }
}
