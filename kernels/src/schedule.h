/* schedule.h: the row blocks of an operation, handed out to threads as they ask.
 *
 * The work is a sequence of 16-row panels: every panel of every expert that has tokens, in
 * expert order. A thread claims the next chunk (up to a per-expert panel limit, never across
 * an expert) from one atomic counter, so a thread slowed by its core (a busy SMT sibling on
 * a shared host, an interrupt) does less of the work instead of holding the whole call up,
 * as a fixed split would. Chunks shrink towards the end (guided scheduling) so the threads
 * finish together. Which thread computes a row never changes its bits.
 */
#ifndef IQ1M_SCHEDULE_H
#define IQ1M_SCHEDULE_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    int64_t expert;   /* index into the operation's experts */
    int64_t row0, nr; /* rows [row0, row0 + nr) */
} iq1m_chunk;

typedef struct {
    const int64_t *experts;     /* experts with tokens, in order */
    const int64_t *max_panels;  /* [i]: largest chunk of experts[i], >= 1 */
    int64_t n_experts, rows, panels; /* panels = 16-row panels per expert */
    int nth;
    atomic_llong next; /* first unclaimed panel of the whole sequence */
} iq1m_schedule;

void iq1m_schedule_init(iq1m_schedule *s, const int64_t *experts, const int64_t *max_panels,
                        int64_t n_experts, int64_t rows, int nth);

/* Claims the next chunk into *c; 0 when the work is all claimed. Thread-safe. */
int iq1m_schedule_claim(iq1m_schedule *s, iq1m_chunk *c);

#endif /* IQ1M_SCHEDULE_H */
