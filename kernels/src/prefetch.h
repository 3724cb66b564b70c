/* prefetch.h: a weight range prefetched a slice at a time.
 *
 * The repacked path reads a thread's next block of weight rows in one burst (its repack), and
 * that burst waits for memory: at N = 16 about a third of the call went to it. The loop nest
 * instead spreads the prefetch of the next block's rows over the current block's micro-kernel
 * calls, which are compute-bound and leave the memory system idle; the repack then reads
 * from L2. Prefetches are hints: a wrong or missing one costs time, never bits.
 */
#ifndef IQ1M_PREFETCH_H
#define IQ1M_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#define IQ1M_CACHE_LINE 64

typedef struct {
    const uint8_t *base; /* NULL: nothing to prefetch */
    size_t done, bytes, step;
} iq1m_prefetch_stream;

/* Prefetch bytes from p over the next `calls` calls of iq1m_prefetch_step. */
static inline void iq1m_prefetch_start(iq1m_prefetch_stream *s, const uint8_t *p, size_t bytes,
                                       int64_t calls) {
    const size_t per = calls > 0 ? (bytes + (size_t)calls - 1) / (size_t)calls : bytes;
    s->base = p;
    s->done = 0;
    s->bytes = p ? bytes : 0;
    s->step = (per + IQ1M_CACHE_LINE - 1) / IQ1M_CACHE_LINE * IQ1M_CACHE_LINE;
}

static inline void iq1m_prefetch_step(iq1m_prefetch_stream *s) {
    if (!s || s->done >= s->bytes) return;
    const size_t stop = s->bytes - s->done < s->step ? s->bytes : s->done + s->step;
    for (; s->done < stop; s->done += IQ1M_CACHE_LINE)
        __builtin_prefetch(s->base + s->done, 0, 2); /* read, keep in L2 */
}

#endif /* IQ1M_PREFETCH_H */
