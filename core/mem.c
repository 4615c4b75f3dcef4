/*
 * mem.c — bump arenas and the allocation wrappers that abort instead of failing.
 *
 * An arena is a singly linked list of chunks obtained from malloc. Allocation moves a pointer
 * forward in the newest chunk; when it does not fit, a new chunk twice the size of the previous
 * one (up to a cap) is linked in front. A request larger than half the next chunk gets a chunk of
 * its own, linked behind the current one, so that one big text node does not waste the free tail
 * of the chunk being filled. The arena header itself lives at the start of the first chunk: a
 * small stanza costs exactly one malloc and one free.
 *
 * Objects are aligned for max_align_t and zeroed; strings are packed without alignment padding
 * and are not zeroed beyond their terminating NUL, since every byte of them is written anyway.
 */
#include "mem.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN         alignof(max_align_t)
#define ARENA_DEFAULT_FIRST 1024
#define ARENA_MAX_CHUNK     (256 * 1024)

struct chunk {
    struct chunk *next;
    /* The payload follows, aligned for max_align_t. */
    alignas(max_align_t) unsigned char data[];
};

struct arena {
    struct chunk *chunks; /* newest first; the last one holds this header */
    unsigned char *ptr;   /* bump pointer in the current chunk */
    unsigned char *end;   /* end of the current chunk */
    size_t next_size;     /* payload size of the next regular chunk */
    size_t used;          /* bytes handed out */
};

static _Noreturn void oom(size_t n)
{
    fprintf(stderr, "stanzad: out of memory (allocating %zu bytes)\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static size_t align_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
}

struct arena *arena_new(size_t first_chunk)
{
    if (first_chunk == 0)
        first_chunk = ARENA_DEFAULT_FIRST;
    size_t header = align_up(sizeof(struct arena));
    if (first_chunk < header + 64)
        first_chunk = header + 64;
    struct chunk *c = xmalloc(sizeof(struct chunk) + first_chunk);
    c->next = NULL;
    struct arena *a = (struct arena *)c->data;
    a->chunks = c;
    a->ptr = c->data + header;
    a->end = c->data + first_chunk;
    a->next_size = first_chunk * 2 > ARENA_MAX_CHUNK ? ARENA_MAX_CHUNK : first_chunk * 2;
    a->used = 0;
    return a;
}

void arena_free(struct arena **ap)
{
    if (ap == NULL || *ap == NULL)
        return;
    struct chunk *c = (*ap)->chunks;
    *ap = NULL;
    /* The header lives in the last chunk of the list, so it is read before that one goes. */
    while (c != NULL) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* Slow path: n bytes with the given alignment do not fit in the current chunk. */
static void *arena_grow(struct arena *a, size_t n, size_t align)
{
    if (n > SIZE_MAX / 2 - sizeof(struct chunk))
        oom(n);
    if (n + align > a->next_size / 2) {
        /* A dedicated chunk, linked behind the current one so that the current one keeps
         * serving small requests. */
        struct chunk *c = xmalloc(sizeof(struct chunk) + n);
        c->next = a->chunks->next;
        a->chunks->next = c;
        return c->data;
    }
    size_t size = a->next_size;
    struct chunk *c = xmalloc(sizeof(struct chunk) + size);
    c->next = a->chunks;
    a->chunks = c;
    a->ptr = c->data + n;
    a->end = c->data + size;
    if (a->next_size < ARENA_MAX_CHUNK)
        a->next_size *= 2;
    return c->data;
}

static inline void *arena_take(struct arena *a, size_t n, size_t align)
{
    uintptr_t p = ((uintptr_t)a->ptr + (align - 1)) & ~(uintptr_t)(align - 1);
    a->used += n;
    if (p <= (uintptr_t)a->end && n <= (uintptr_t)a->end - p) {
        a->ptr = (unsigned char *)p + n;
        return (void *)p;
    }
    return arena_grow(a, n, align);
}

void *arena_alloc(struct arena *a, size_t n)
{
    void *p = arena_take(a, n ? n : 1, ARENA_ALIGN);
    memset(p, 0, n);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = arena_take(a, len + 1, 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_memdup(struct arena *a, const void *p, size_t n)
{
    char *d = arena_take(a, n + 1, 1);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

char *arena_strdup(struct arena *a, const char *s)
{
    size_t len = strlen(s);
    char *p = arena_take(a, len + 1, 1);
    memcpy(p, s, len + 1);
    return p;
}

size_t arena_used(const struct arena *a)
{
    return a->used;
}
