/*
 * mem.h — arenas: a chain of chunks with a bump pointer. A stanza and everything in it (elements,
 * attributes, text, parsed JIDs) lives in one arena and is freed with one call. Allocation never
 * fails: on out-of-memory the process aborts with a message (there is no sane recovery in the
 * middle of parsing). The arena is not thread-safe; it may be freed on a thread other than the
 * one that allocated it (a routed stanza is freed by the recipient's worker).
 */
#ifndef STANZAD_MEM_H
#define STANZAD_MEM_H

#include <stddef.h>

struct arena;

/* A new arena whose first chunk holds about first_chunk bytes (0 picks a default). */
struct arena *arena_new(size_t first_chunk);
/* Frees every allocation of the arena and the arena; clears *a. NULL-safe. */
void arena_free(struct arena **a);
/* n bytes aligned for any scalar type, zeroed. */
void *arena_alloc(struct arena *a, size_t n);
/* A NUL-terminated copy of the first n bytes of s (s need not be NUL-terminated). */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
/* A copy of exactly n bytes of p (which may contain NULs) followed by a NUL. */
char *arena_memdup(struct arena *a, const void *p, size_t n);
/* Bytes handed out so far (for size limits). */
size_t arena_used(const struct arena *a);

/* malloc/calloc/realloc/strdup that abort with a message instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
