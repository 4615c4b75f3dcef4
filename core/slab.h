/*
 * slab.h — memory for what lives as long as a connection or a session.
 *
 * A login allocates and frees tens of kilobytes of short-lived memory (parser contexts, SASL
 * state, database results) around the few hundred bytes that stay for hours (the connection,
 * the stream, the session). From one heap, every page ends up holding some long-lived byte and
 * none can be given back: an idle connection then costs several times what it uses. Long-lived
 * objects therefore come from these size-class slabs (pages of their own, obtained with mmap),
 * and the ordinary heap is left with short-lived memory only, which it can return.
 *
 * Thread-safe (a mutex per size class; used on connection set-up and tear-down, never per
 * stanza). Allocation never fails: out of memory aborts, as xmalloc does.
 */
#ifndef STANZAD_SLAB_H
#define STANZAD_SLAB_H

#include <stddef.h>

/* n zeroed bytes, aligned for any scalar type. Sizes above the largest class use malloc. */
void *slab_alloc(size_t n);
/* NULL-safe. Any thread. */
void slab_free(void *p);
char *slab_strdup(const char *s);
char *slab_strndup(const char *s, size_t n);
/* Bytes held in slab pages (for tests and logs). */
size_t slab_pages_bytes(void);

#endif
