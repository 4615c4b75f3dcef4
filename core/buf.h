/*
 * buf.h — growable byte buffers (output queues, serialisation) and reference-counted immutable
 * byte strings (a stanza serialised once and shared by several recipients on several workers).
 */
#ifndef STANZAD_BUF_H
#define STANZAD_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* first byte in use */
    size_t len; /* bytes in use */
    size_t cap; /* bytes available from data on (len of them in use) */
    size_t off; /* bytes consumed in front of data, reclaimed lazily; free with buf_free only */
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void buf_free(struct buf *b);
/* Makes room for n more bytes; data stays where it is only if no growth was needed. */
void buf_reserve(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (consumed output); O(1), the space is reclaimed by a later reserve. */
void buf_consume(struct buf *b, size_t n);
/* Keeps data NUL-terminated after len without counting the NUL. */
const char *buf_cstr(struct buf *b);

/* Shared immutable bytes: one allocation, atomic reference count; data is NUL-terminated. */
struct shared_bytes {
    _Atomic int refs;
    size_t len;
    char data[];
};
struct shared_bytes *shared_bytes_new(const void *p, size_t len);
struct shared_bytes *shared_bytes_ref(struct shared_bytes *s);
void shared_bytes_unref(struct shared_bytes **s);

#endif
