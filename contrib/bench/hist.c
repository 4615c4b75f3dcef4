/*
 * hist.c — latency histograms with bounded relative error, cheap enough for every message.
 *
 * Values (microseconds) below 128 have a bucket each; above, every power of two is split into
 * 64 buckets, so a percentile is off by at most 1/128 of its value (reported at the bucket's
 * middle). Recording is a count-leading-zeros and an increment; each worker keeps its own and
 * they are merged at the end, so nothing is shared on the hot path. Minimum, maximum and sum are
 * kept exactly.
 */
#include "bench.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
    unsigned sub = (unsigned)(v >> (e - HIST_SUBBITS)) & ((1u << HIST_SUBBITS) - 1);
    return HIST_LINEAR + (e - 7) * (1u << HIST_SUBBITS) + sub;
}

/* The middle of bucket i. */
static uint64_t bucket_value(unsigned i)
{
    if (i < HIST_LINEAR)
        return i;
    unsigned k = i - HIST_LINEAR;
    unsigned e = k / (1u << HIST_SUBBITS) + 7;
    uint64_t sub = k % (1u << HIST_SUBBITS);
    uint64_t lo = ((1ull << HIST_SUBBITS) + sub) << (e - HIST_SUBBITS);
    return lo + (1ull << (e - HIST_SUBBITS)) / 2;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_percentile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bucket_value(i);
            /* The middle of a bucket can lie outside what was actually seen. */
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}
