/* unit-sources: core/slab.c */
/*
 * test_slab.c — the long-lived object allocator: zeroed memory of the asked size in every
 * class and above, reuse of freed objects, strings, and several threads at once.
 */
#include <pthread.h>
#include <stdint.h>

#include "slab.h"
#include "unit.h"

static void test_sizes_zeroed_and_aligned(void)
{
    static const size_t sizes[] = {1, 15, 16, 17, 31, 100, 500, 1000, 2000, 4000, 5000, 100000};
    void *p[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *m = slab_alloc(sizes[i]);
        UNIT_ASSERT(m != NULL);
        UNIT_ASSERT_INT_EQ((uintptr_t)m % 16, 0);
        for (size_t k = 0; k < sizes[i]; k++)
            UNIT_ASSERT_INT_EQ(m[k], 0);
        memset(m, 0xab, sizes[i]); /* the whole size is ours: ASan would catch an overrun */
        p[i] = m;
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        slab_free(p[i]);
    slab_free(NULL);
}

static void test_freed_memory_is_reused_and_zeroed(void)
{
    unsigned char *a = slab_alloc(200);
    memset(a, 0xff, 200);
    slab_free(a);
    unsigned char *b = slab_alloc(190); /* same class */
#ifndef __SANITIZE_ADDRESS__
    UNIT_ASSERT(a == b); /* LIFO free list */
#endif
    for (int k = 0; k < 190; k++)
        UNIT_ASSERT_INT_EQ(b[k], 0);
    slab_free(b);
}

static void test_strings(void)
{
    char *s = slab_strdup("alice@example.com/phone");
    UNIT_ASSERT_STR_EQ(s, "alice@example.com/phone");
    char *t = slab_strndup("abcdef", 3);
    UNIT_ASSERT_STR_EQ(t, "abc");
    slab_free(s);
    slab_free(t);
}

static void *churn(void *arg)
{
    uintptr_t seed = (uintptr_t)arg;
    void *live[256] = {0};
    for (int i = 0; i < 200000; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        unsigned slot = (unsigned)(seed >> 56);
        size_t n = (size_t)((seed >> 20) % 3000) + 1;
        if (live[slot]) {
            UNIT_ASSERT_INT_EQ(*(unsigned char *)live[slot], slot);
            slab_free(live[slot]);
        }
        live[slot] = slab_alloc(n);
        *(unsigned char *)live[slot] = (unsigned char)slot;
    }
    for (int i = 0; i < 256; i++)
        slab_free(live[i]);
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, churn, (void *)(i + 1));
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
}

UNIT_MAIN(UNIT_TEST(test_sizes_zeroed_and_aligned),
          UNIT_TEST(test_freed_memory_is_reused_and_zeroed), UNIT_TEST(test_strings),
          UNIT_TEST(test_threads))
