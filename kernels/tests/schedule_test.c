/* schedule_test.c: the chunk schedule (src/schedule.h) hands out every panel of every listed
 * expert exactly once, in chunks that stay inside one expert and within its panel limit, full
 * sized while much work remains and single panels at the end; claimed from 1 thread in order,
 * and from 4 threads at once.
 *
 * usage: schedule_test [rounds] [seed]     exit 0 = all passed
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "schedule.h"
#include "ukernel.h" /* IQ1M_PACK_ROWS */

enum {
    MAX_EXPERTS = 12,
    MAX_ROWS = 4096,
    MAX_CHUNKS = MAX_EXPERTS * (MAX_ROWS / IQ1M_PACK_ROWS + 1), /* chunks are >= 1 panel */
    THREADS = 4
};

static uint64_t g_rng;
static uint32_t rndn(uint32_t n) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((g_rng >> 33) % n);
}

typedef struct {
    int64_t experts[MAX_EXPERTS], max_panels[MAX_EXPERTS];
    int64_t n, rows;
    int nth;
} plan;

static long g_fails;
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            if (g_fails++ < 20) {                                                            \
                fprintf(stderr, "FAIL schedule (%lld experts, %lld rows, %d threads): ",     \
                        (long long)p->n, (long long)p->rows, p->nth);                        \
                fprintf(stderr, __VA_ARGS__);                                                \
                fputc('\n', stderr);                                                         \
            }                                                                                \
        }                                                                                    \
    } while (0)

static int64_t slot_of(const plan *p, int64_t expert) {
    for (int64_t i = 0; i < p->n; ++i)
        if (p->experts[i] == expert) return i;
    return -1;
}

/* Every row of every expert claimed exactly once; every chunk inside its expert, panel-
 * aligned and within the expert's limit. */
static void check_cover(const plan *p, const iq1m_chunk *c, int64_t n_chunks) {
    static int hits[MAX_EXPERTS][MAX_ROWS];
    for (int64_t i = 0; i < p->n; ++i)
        for (int64_t r = 0; r < p->rows; ++r) hits[i][r] = 0;
    for (int64_t k = 0; k < n_chunks; ++k) {
        const int64_t i = slot_of(p, c[k].expert);
        CHECK(i >= 0, "chunk %lld: expert %lld was not listed", (long long)k,
              (long long)c[k].expert);
        if (i < 0) continue;
        CHECK(c[k].row0 % IQ1M_PACK_ROWS == 0, "chunk %lld starts at row %lld", (long long)k,
              (long long)c[k].row0);
        CHECK(c[k].nr >= 1 && c[k].row0 >= 0 && c[k].row0 + c[k].nr <= p->rows,
              "chunk %lld: rows [%lld, +%lld)", (long long)k, (long long)c[k].row0,
              (long long)c[k].nr);
        CHECK(c[k].nr <= p->max_panels[i] * IQ1M_PACK_ROWS,
              "chunk %lld: %lld rows, limit %lld panels", (long long)k, (long long)c[k].nr,
              (long long)p->max_panels[i]);
        for (int64_t r = c[k].row0; r < c[k].row0 + c[k].nr && r < p->rows && r >= 0; ++r)
            hits[i][r]++;
    }
    for (int64_t i = 0; i < p->n; ++i)
        for (int64_t r = 0; r < p->rows; ++r)
            CHECK(hits[i][r] == 1, "expert %lld row %lld claimed %d times",
                  (long long)p->experts[i], (long long)r, hits[i][r]);
}

static int64_t claim_all(iq1m_schedule *s, iq1m_chunk *c) {
    int64_t n = 0;
    while (n < MAX_CHUNKS && iq1m_schedule_claim(s, &c[n])) n++;
    return n;
}

/* One thread: chunks come in order; full size (the expert's limit, or what is left of the
 * expert) while at least nth * 2 limits of work remain; the last chunk is one panel. */
static void check_sequential(const plan *p) {
    static iq1m_chunk c[MAX_CHUNKS + 1];
    iq1m_schedule s;
    iq1m_schedule_init(&s, p->experts, p->max_panels, p->n, p->rows, p->nth);
    const int64_t n = claim_all(&s, c);
    iq1m_chunk extra;
    CHECK(!iq1m_schedule_claim(&s, &extra), "a claim succeeded after the work ran out");
    check_cover(p, c, n);
    const int64_t panels = (p->rows + IQ1M_PACK_ROWS - 1) / IQ1M_PACK_ROWS;
    int64_t done = 0;
    for (int64_t k = 0; k < n; ++k) {
        const int64_t i = slot_of(p, c[k].expert);
        if (i < 0) return;
        const int64_t p0 = c[k].row0 / IQ1M_PACK_ROWS;
        CHECK(i * panels + p0 == done, "chunk %lld out of order", (long long)k);
        const int64_t np = (c[k].nr + IQ1M_PACK_ROWS - 1) / IQ1M_PACK_ROWS;
        const int64_t left = p->n * panels - done, in_expert = panels - p0;
        const int64_t full = p->max_panels[i] < in_expert ? p->max_panels[i] : in_expert;
        if (left >= (int64_t)p->nth * 2 * p->max_panels[i])
            CHECK(np == full, "chunk %lld: %lld panels with %lld left, want %lld",
                  (long long)k, (long long)np, (long long)left, (long long)full);
        done += np;
    }
    if (n > 0)
        CHECK(c[n - 1].nr <= IQ1M_PACK_ROWS, "the last chunk has %lld rows",
              (long long)c[n - 1].nr);
}

typedef struct {
    iq1m_schedule *s;
    iq1m_chunk c[MAX_CHUNKS];
    int64_t n;
} claimer;

static void *claim_thread(void *arg) {
    claimer *cl = arg;
    cl->n = claim_all(cl->s, cl->c);
    return NULL;
}

/* THREADS threads claiming at once still cover everything exactly once. */
static void check_concurrent(const plan *p) {
    static claimer cl[THREADS];
    static iq1m_chunk all[MAX_CHUNKS];
    iq1m_schedule s;
    iq1m_schedule_init(&s, p->experts, p->max_panels, p->n, p->rows, p->nth);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; ++i) {
        cl[i].s = &s;
        if (pthread_create(&th[i], NULL, claim_thread, &cl[i]) != 0) {
            fprintf(stderr, "ERROR: pthread_create\n");
            exit(2);
        }
    }
    int64_t n = 0;
    for (int i = 0; i < THREADS; ++i) {
        pthread_join(th[i], NULL);
        for (int64_t k = 0; k < cl[i].n && n < MAX_CHUNKS; ++k) all[n++] = cl[i].c[k];
    }
    check_cover(p, all, n);
}

static void random_plan(plan *p) {
    p->n = rndn(MAX_EXPERTS + 1);
    p->rows = 1 + rndn(rndn(4) == 0 ? 40 : 300);
    p->nth = 1 + (int)rndn(8);
    int64_t e = rndn(3);
    for (int64_t i = 0; i < p->n; ++i) {
        p->experts[i] = e;
        e += 1 + rndn(3); /* experts without tokens are not listed */
        p->max_panels[i] = 1 + rndn(8);
    }
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 300;
    g_rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 20261127ull;
    plan fixed[] = {
        {{0}, {8}, 1, 4096, 1},       /* mul_mat, 1 thread */
        {{0}, {8}, 1, 4096, 2},       /* mul_mat, 2 threads */
        {{0}, {4}, 1, 17, 2},         /* one partial panel past the first */
        {{0, 3}, {1, 8}, 2, 16, 1},   /* one panel per expert */
        {{0}, {8}, 0, 64, 2},         /* no expert has tokens */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; ++i) {
        check_sequential(&fixed[i]);
        check_concurrent(&fixed[i]);
    }
    for (int r = 0; r < rounds; ++r) {
        plan p;
        random_plan(&p);
        check_sequential(&p);
        check_concurrent(&p);
    }
    if (g_fails)
        printf("FAILED (%ld checks)\n", g_fails);
    else
        printf("PASSED\n");
    return g_fails ? 1 : 0;
}
