/*
 * addrlimit.c — per-address connection counts and authentication-failure windows.
 *
 * Entries live in a sharded chained hash keyed by the address text. An entry is dropped when it
 * has no open connection and its failure window has expired, so the table holds only addresses
 * that are connected or misbehaved in the last minute.
 */
#include "addrlimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "worker.h"

#define SHARDS    16
#define BUCKETS   256
#define WINDOW_MS 60000

struct entry {
    struct entry *next;
    char ip[48];
    int conns;
    int failures;
    uint64_t window_start;
};

static struct {
    pthread_mutex_t lock;
    struct entry *b[BUCKETS];
} shards[SHARDS];

static unsigned hash_ip(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void addrlimit_init(void)
{
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&shards[i].lock, NULL);
}

void addrlimit_destroy(void)
{
    for (int i = 0; i < SHARDS; i++) {
        for (int b = 0; b < BUCKETS; b++) {
            struct entry *e = shards[i].b[b];
            while (e) {
                struct entry *n = e->next;
                free(e);
                e = n;
            }
            shards[i].b[b] = NULL;
        }
        pthread_mutex_destroy(&shards[i].lock);
    }
}

static unsigned shard_of(const char *ip)
{
    return hash_ip(ip) % SHARDS;
}

/* The link that points at ip's entry (or at the NULL where it would go); shard lock held. */
static struct entry **slot_for(const char *ip)
{
    unsigned h = hash_ip(ip);
    struct entry **pp = &shards[h % SHARDS].b[(h / SHARDS) % BUCKETS];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    return pp;
}

static struct entry *get_or_add(struct entry **pp, const char *ip)
{
    if (!*pp) {
        struct entry *e = xcalloc(1, sizeof *e);
        snprintf(e->ip, sizeof e->ip, "%s", ip);
        *pp = e;
    }
    return *pp;
}

/* Frees an entry that no longer counts anything. */
static void maybe_drop(struct entry **pp, uint64_t now)
{
    struct entry *e = *pp;
    if (e->conns <= 0 && (e->failures == 0 || now - e->window_start >= WINDOW_MS)) {
        *pp = e->next;
        free(e);
    }
}

bool addrlimit_conn_acquire(const char *ip, int max)
{
    unsigned s = shard_of(ip);
    pthread_mutex_lock(&shards[s].lock);
    struct entry *e = get_or_add(slot_for(ip), ip);
    bool ok = max <= 0 || e->conns < max;
    if (ok)
        e->conns++;
    pthread_mutex_unlock(&shards[s].lock);
    return ok;
}

void addrlimit_conn_release(const char *ip)
{
    unsigned s = shard_of(ip);
    pthread_mutex_lock(&shards[s].lock);
    struct entry **pp = slot_for(ip);
    if (*pp) {
        (*pp)->conns--;
        maybe_drop(pp, monotonic_ms());
    }
    pthread_mutex_unlock(&shards[s].lock);
}

int addrlimit_auth_failures(const char *ip, uint64_t now)
{
    unsigned s = shard_of(ip);
    int n = 0;
    pthread_mutex_lock(&shards[s].lock);
    struct entry **pp = slot_for(ip);
    if (*pp && now - (*pp)->window_start < WINDOW_MS)
        n = (*pp)->failures;
    pthread_mutex_unlock(&shards[s].lock);
    return n;
}

int addrlimit_auth_failed(const char *ip, uint64_t now)
{
    unsigned s = shard_of(ip);
    pthread_mutex_lock(&shards[s].lock);
    struct entry *e = get_or_add(slot_for(ip), ip);
    if (e->failures == 0 || now - e->window_start >= WINDOW_MS) {
        e->failures = 0;
        e->window_start = now;
    }
    int n = ++e->failures;
    pthread_mutex_unlock(&shards[s].lock);
    return n;
}
