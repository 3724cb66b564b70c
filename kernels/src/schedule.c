/* schedule.c: guided chunks of 16-row panels from one atomic counter (see schedule.h). */
#include "schedule.h"

#include "ukernel.h"

/* Below this many chunks' worth of work per thread, chunks shrink: the last ones are single
 * panels, so threads that start together end within about one panel of each other. */
#define GUIDED_CHUNKS_PER_THREAD 2

void iq1m_schedule_init(iq1m_schedule *s, const int64_t *experts, const int64_t *max_panels,
                        int64_t n_experts, int64_t rows, int nth) {
    s->experts = experts;
    s->max_panels = max_panels;
    s->n_experts = n_experts;
    s->rows = rows;
    s->panels = (rows + IQ1M_PACK_ROWS - 1) / IQ1M_PACK_ROWS;
    s->nth = nth;
    atomic_init(&s->next, 0);
}

int iq1m_schedule_claim(iq1m_schedule *s, iq1m_chunk *c) {
    const int64_t total = s->n_experts * s->panels;
    long long g = atomic_load_explicit(&s->next, memory_order_relaxed);
    for (;;) {
        if (g >= total) return 0;
        const int64_t i = g / s->panels, p = g % s->panels;
        int64_t size = (total - g) / ((int64_t)s->nth * GUIDED_CHUNKS_PER_THREAD);
        if (size > s->max_panels[i]) size = s->max_panels[i];
        if (size > s->panels - p) size = s->panels - p;
        if (size < 1) size = 1;
        if (atomic_compare_exchange_weak_explicit(&s->next, &g, g + size, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            const int64_t r0 = p * IQ1M_PACK_ROWS, r1 = (p + size) * IQ1M_PACK_ROWS;
            c->expert = s->experts[i];
            c->row0 = r0;
            c->nr = (r1 < s->rows ? r1 : s->rows) - r0;
            return 1;
        }
    }
}
