/*
 * buf.c — growable byte buffers and shared immutable byte strings.
 *
 * A buf is one malloc'd block. Consuming bytes from the front only moves data forward and
 * remembers how far (off), so draining an output queue in pieces never copies what remains.
 * The consumed space is reclaimed when more room is asked for: if the live bytes are no more
 * than the consumed ones they are moved down, which costs at most as much as the bytes already
 * consumed (amortised O(1) per byte); otherwise the block doubles and only the live bytes are
 * copied.
 *
 * shared_bytes is a single allocation holding an atomic reference count, a length and the
 * bytes, so that one serialised stanza can be queued to many connections on many workers.
 */
#include "buf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define BUF_MIN_CAP 256

void buf_free(struct buf *b)
{
    if (b->data != NULL)
        free(b->data - b->off);
    b->data = NULL;
    b->len = b->cap = b->off = 0;
}

void buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return;
    char *base = b->data != NULL ? b->data - b->off : NULL;
    size_t total = b->cap + b->off;
    if (b->off >= b->len && total - b->len >= n) {
        /* Compacting moves no more bytes than were consumed since the last compaction. */
        memmove(base, b->data, b->len);
        b->data = base;
        b->cap = total;
        b->off = 0;
        return;
    }
    size_t want = b->len + n;
    if (want < b->len)
        abort(); /* size_t overflow: no caller can legitimately ask for this */
    size_t cap = total < BUF_MIN_CAP ? BUF_MIN_CAP : total * 2;
    while (cap < want)
        cap = cap * 2 > cap ? cap * 2 : want;
    if (b->off == 0) {
        b->data = xrealloc(b->data, cap);
    } else {
        /* Copy only the live bytes into the new block. */
        char *d = xmalloc(cap);
        memcpy(d, b->data, b->len);
        free(base);
        b->data = d;
        b->off = 0;
    }
    b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = b->data != NULL ? b->data + b->len : NULL;
    size_t room = b->cap - b->len;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        /* Everything is gone: start again at the front of the block for free. */
        if (b->data != NULL) {
            b->data -= b->off;
            b->cap += b->off;
        }
        b->off = 0;
        b->len = 0;
        return;
    }
    b->data += n;
    b->off += n;
    b->cap -= n;
    b->len -= n;
}

const char *buf_cstr(struct buf *b)
{
    buf_reserve(b, 1);
    b->data[b->len] = '\0';
    return b->data;
}

struct shared_bytes *shared_bytes_new(const void *p, size_t len)
{
    struct shared_bytes *s = xmalloc(sizeof(*s) + len + 1);
    atomic_init(&s->refs, 1);
    s->len = len;
    if (len > 0)
        memcpy(s->data, p, len);
    s->data[len] = '\0';
    return s;
}

struct shared_bytes *shared_bytes_ref(struct shared_bytes *s)
{
    /* Taking a reference needs no ordering: the caller already holds one. */
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void shared_bytes_unref(struct shared_bytes **sp)
{
    struct shared_bytes *s = *sp;
    if (s == NULL)
        return;
    *sp = NULL;
    /* Release on every drop and acquire before the free, so that no other thread's reads of
     * the bytes can be ordered after the memory is returned. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_release) == 1) {
        atomic_thread_fence(memory_order_acquire);
        free(s);
    }
}
