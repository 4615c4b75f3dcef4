/*
 * slab.c — size-class allocator for long-lived objects (see slab.h for why).
 *
 * Each object carries a 16-byte header naming its class, so slab_free needs no size. A class
 * keeps a free list threaded through freed objects and carves new ones from 64 KiB pages taken
 * with mmap. Pages are never returned: the long-lived population is what the server holds at
 * its busiest, and the free lists are reused by the next connections. Objects larger than the
 * biggest class go to malloc with a header that says so, and so does everything in a build
 * with AddressSanitizer, which cannot see inside the slabs.
 */
#include "slab.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE_BYTES (64 * 1024)
#define HEADER     16
#define BIG        0xffffu

static const uint32_t class_size[] = {32,  48,  64,  96,   128,  192,  256,
                                      384, 512, 768, 1024, 1536, 2048, 4096};
#define N_CLASSES (sizeof class_size / sizeof class_size[0])

struct free_obj {
    struct free_obj *next;
};

struct size_class {
    pthread_mutex_t lock;
    struct free_obj *free;
    char *carve; /* next unused byte of the current page */
    char *carve_end;
} __attribute__((aligned(64)));

static struct size_class classes[N_CLASSES] = {
#define C                                                                                          \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL                                                \
    }
    C, C, C, C, C, C, C, C, C, C, C, C, C, C,
#undef C
};
static atomic_size_t pages_bytes;

static void out_of_memory(size_t n)
{
    fprintf(stderr, "stanzad: out of memory (allocating %zu bytes)\n", n);
    abort();
}

static unsigned class_for(size_t n)
{
#ifdef __SANITIZE_ADDRESS__
    /* Under AddressSanitizer every object comes from malloc, so that use-after-free and leaks
     * of long-lived objects are caught like any other. */
    (void)n;
    return BIG;
#endif
    size_t need = n + HEADER;
    for (unsigned i = 0; i < N_CLASSES; i++)
        if (need <= class_size[i])
            return i;
    return BIG;
}

void *slab_alloc(size_t n)
{
    unsigned ci = class_for(n);
    char *obj;
    if (ci == BIG) {
        obj = calloc(1, n + HEADER);
        if (!obj)
            out_of_memory(n);
    } else {
        struct size_class *c = &classes[ci];
        uint32_t sz = class_size[ci];
        pthread_mutex_lock(&c->lock);
        if (c->free) {
            obj = (char *)c->free;
            c->free = c->free->next;
        } else {
            if (c->carve == NULL || c->carve + sz > c->carve_end) {
                void *page = mmap(NULL, PAGE_BYTES, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (page == MAP_FAILED) {
                    pthread_mutex_unlock(&c->lock);
                    out_of_memory(n);
                }
                atomic_fetch_add(&pages_bytes, PAGE_BYTES);
                c->carve = page;
                c->carve_end = (char *)page + PAGE_BYTES;
            }
            obj = c->carve;
            c->carve += sz;
        }
        pthread_mutex_unlock(&c->lock);
        memset(obj, 0, sz);
    }
    *(uint32_t *)obj = ci;
    return obj + HEADER;
}

void slab_free(void *p)
{
    if (!p)
        return;
    char *obj = (char *)p - HEADER;
    unsigned ci = *(uint32_t *)obj;
    if (ci == BIG) {
        free(obj);
        return;
    }
    struct size_class *c = &classes[ci];
    pthread_mutex_lock(&c->lock);
    ((struct free_obj *)obj)->next = c->free;
    c->free = (struct free_obj *)obj;
    pthread_mutex_unlock(&c->lock);
}

char *slab_strndup(const char *s, size_t n)
{
    char *d = slab_alloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *slab_strdup(const char *s)
{
    return slab_strndup(s, strlen(s));
}

size_t slab_pages_bytes(void)
{
    return atomic_load(&pages_bytes);
}
