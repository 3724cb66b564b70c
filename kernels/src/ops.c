/* ops.c: the operations. Activations are quantized to Q8_K once; per-expert column lists are
 * built in order of token then slot; the threads then claim chunks of 16-row panels (of one
 * expert each, in expert order; schedule.h) until none are left, and a row's output is
 * written by the one thread that claimed it, so no barrier is needed. An expert with
 * >= threshold tokens runs on the repacked path (the thread repacks the chunk's panels into
 * a reused per-thread buffer, while the kernel calls on it prefetch the rows of the chunk the
 * thread has already claimed next), below that on the direct path.
 * The fused op computes up and gate tile by tile and applies act; the unfused option runs
 * the two GEMMs and then an activation pass: same bits. */
#include "ops.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "error.h"
#include "fault.h"
#include "format.h"
#include "gemm.h"
#include "q8k.h"
#include "repack.h"
#include "schedule.h"
#include "threadpool.h"

#if IQ1M_FAULT_IS(tail_activation)
#include <math.h>
#endif
#if IQ1M_FAULT_IS(row_race)
#include <time.h>
#endif

#define DIRECT_ROW_BLOCK 64      /* rows per direct-path block */
#define PANEL_BLOCK_BYTES 524288 /* target size of one thread's repacked block */
#define MAX_BLOCK_PANELS 8
#define TILE_STRIDE (MAX_BLOCK_PANELS * IQ1M_PACK_ROWS) /* >= DIRECT_ROW_BLOCK */

typedef struct {
    const iq1m_block_q8K *q8; /* nb blocks of this column (token) */
    float *out;               /* its output vector, indexed by weight row */
} col_t;

typedef struct {
    const iq1m_kernels *k;
    int32_t threshold;
    int32_t act;
    int n_mats;    /* 1 = plain GEMM, 2 = fused up (0) and gate (1) */
    int fused_op;  /* 1 when called for the fused moe_up_gate */
    int prepacked; /* weights are iq1m_block_prepacked rows */
    const uint8_t *w[2];
    int64_t nb, rows, n_experts, expert_bytes, block_panels;
    const int64_t *off; /* [n_experts + 1] into cols */
    const col_t *cols;
    float *const *unused; /* output vectors of unused slots */
    int64_t n_unused;
    iq1m_schedule sched; /* the row blocks, claimed by the threads as they go */
    atomic_llong path_rows[2]; /* rows x matrices on the direct, the repacked path (memset 0) */
    atomic_int err;
} gemm_task;

static void row_range(int64_t rows, int tid, int nth, int64_t *r0, int64_t *r1) {
    const int64_t np = (rows + IQ1M_PACK_ROWS - 1) / IQ1M_PACK_ROWS;
    const int64_t p0 = np * tid / nth, p1 = np * (tid + 1) / nth;
    *r0 = p0 * IQ1M_PACK_ROWS;
    *r1 = p1 * IQ1M_PACK_ROWS < rows ? p1 * IQ1M_PACK_ROWS : rows;
    if (*r0 > *r1) *r0 = *r1;
}

static void small_expert_faults(const gemm_task *t, int64_t e, int64_t cnt) {
    (void)t;
    (void)e;
    (void)cnt;
#if IQ1M_FAULT_IS(small_expert_segv)
    {
        volatile float *volatile bad = NULL;
        bad[cnt] = 1.0f; /* FAULT: write through a NULL pointer */
    }
#endif
#if IQ1M_FAULT_IS(small_expert_abort)
    fprintf(stderr,
            "kernels/src/ops.c:%d: GGML_ASSERT(direct kernel for IQ1_M x Q8_K) failed: "
            "expert %lld has %lld < %d tokens\n",
            __LINE__, (long long)e, (long long)cnt, (int)t->threshold);
    fflush(stderr);
    abort();
#endif
#if IQ1M_FAULT_IS(small_expert_hang)
    for (volatile int spin = 1; spin;) {
    }
#endif
#if IQ1M_FAULT_IS(seed_missing_kernel)
    if (t->fused_op) {
        fprintf(stderr,
                "kernels/src/ops.c:%d: fatal error: MulMat::prepare failed: no IQ1_M kernel "
                "for %lld rows of activations (expert %lld)\n",
                __LINE__, (long long)cnt, (long long)e);
        fflush(stderr);
        abort();
    }
#endif
}

#if IQ1M_FAULT_IS(row_race)
/* FAULT: a thread with no rows computes row 0 anyway, blocks in reverse order and the
 * scales multiplied in another order. */
static void row_race_fault(gemm_task *t) {
    for (int64_t e = 0; e < t->n_experts; ++e)
        for (int64_t i = t->off[e]; i < t->off[e + 1]; ++i) {
            float v[2];
            for (int m = 0; m < t->n_mats; ++m) {
                const uint8_t *w = t->w[m] + e * t->expert_bytes;
                float acc = 0.0f;
                for (int64_t b = t->nb - 1; b >= 0; --b) {
                    const uint8_t *blk = w + b * IQ1M_BLOCK_BYTES;
                    acc = acc + iq1m_block_d(blk) *
                                    ((float)iq1m_block_dot_int(blk, t->cols[i].q8 + b) *
                                     t->cols[i].q8[b].d);
                }
                v[m] = 0.125f * acc;
            }
            t->cols[i].out[0] = t->n_mats == 2 ? v[0] * (t->act == IQ1M_ACT_GELU
                                                             ? iq1m_gelu(v[1])
                                                             : iq1m_silu(v[1]))
                                               : v[0];
        }
}
#endif

#if IQ1M_FAULT_IS(tail_activation)
static float act_f32_expf(int32_t act, float g) { /* FAULT: float32 expf activation */
    float z = act == IQ1M_ACT_GELU ? 1.5957691216057308f * (g + 0.044715f * g * g * g) : g;
    return g / (1.0f + expf(-z));
}
#endif

static void scatter(const gemm_task *t, const float *tile_up, const float *tile_gate,
                    const col_t *cols, int64_t ncols, int64_t rb, int64_t nr) {
    for (int64_t i = 0; i < ncols; ++i) {
        float *o = cols[i].out + rb;
        const float *u = tile_up + i * TILE_STRIDE;
        if (t->n_mats == 2) {
            const float *g = tile_gate + i * TILE_STRIDE;
            iq1m_act_mul(t->act, u, g, o, nr);
#if IQ1M_FAULT_IS(tail_activation)
            const int64_t tail_start = rb + nr - nr % 16; /* rb is panel-aligned */
            for (int64_t r = 0; r < nr; ++r)
                if (rb + r >= tail_start) o[r] = u[r] * act_f32_expf(t->act, g[r]);
#endif
        } else {
            memcpy(o, u, (size_t)nr * sizeof(float));
        }
#if IQ1M_FAULT_IS(drop_tail_rows)
        for (int64_t r = 0; r < nr; ++r) /* FAULT: rows past the last multiple of 16 */
            if (rb + r >= (t->rows / 16) * 16) o[r] = 0.0f;
#endif
    }
}

/* What one thread keeps across its chunks. */
typedef struct {
    int tid;
    float *tile[2];
    iq1m_packed_block *panels[2]; /* allocated at the thread's first repacked chunk */
    iq1m_prefetch_stream pf[2];
} thread_state;

static int is_packed(const gemm_task *t, int64_t e) {
    return t->off[e + 1] - t->off[e] >= (int64_t)t->threshold;
}

/* mutate: off (prefetch hints: no output can observe them) */
/* Start pf[m] on the weight rows of the thread's next chunk when that chunk is repacked (else
 * nothing), spread over the `calls` micro-kernel calls each matrix makes on this chunk. */
static void prefetch_chunk(const gemm_task *t, const iq1m_chunk *next, int64_t calls,
                           iq1m_prefetch_stream pf[2]) {
    const int64_t row_bytes = t->expert_bytes / t->rows;
    const int on = next && is_packed(t, next->expert);
    for (int m = 0; m < t->n_mats; ++m)
        iq1m_prefetch_start(
            &pf[m],
            on ? t->w[m] + next->expert * t->expert_bytes + next->row0 * row_bytes : NULL,
            on ? (size_t)(next->nr * row_bytes) : 0, calls);
}
/* mutate: on */

/* Rows [c->row0, c->row0 + c->nr) of expert c->expert for all its tokens; `next` is the chunk
 * the thread does after this one (NULL: none), whose rows are prefetched meanwhile. */
static int run_chunk(gemm_task *t, const iq1m_chunk *c, const iq1m_chunk *next,
                     thread_state *ts) {
    const int64_t e = c->expert, rb = c->row0, nr = c->nr, nb = t->nb;
    const int64_t cnt = t->off[e + 1] - t->off[e];
    const col_t *ecols = t->cols + t->off[e];
    const int packed = is_packed(t, e);
    const int64_t np = (nr + IQ1M_PACK_ROWS - 1) / IQ1M_PACK_ROWS;
    const uint8_t *we[2] = {t->w[0] + e * t->expert_bytes,
                            t->n_mats == 2 ? t->w[1] + e * t->expert_bytes : NULL};
    const iq1m_block_q8K *qc[IQ1M_MAX_NC];
    if (packed) {
        for (int m = 0; m < t->n_mats; ++m) {
            if (!ts->panels[m])
                ts->panels[m] = iq1m_pool_scratch(
                    ts->tid, m, sizeof(iq1m_packed_block) * (size_t)(nb * t->block_panels));
            if (!ts->panels[m]) return IQ1M_ERR_NOMEM;
        }
        /* mutate: off (prefetch hint) */
        int64_t calls = 0;
        for (int64_t c0 = 0; c0 < cnt; c0 += IQ1M_MAX_NC)
            calls += iq1m_gemm_packed_calls(t->k, np,
                                            cnt - c0 < IQ1M_MAX_NC ? cnt - c0 : IQ1M_MAX_NC);
        prefetch_chunk(t, next, calls, ts->pf);
        /* mutate: on */
        for (int m = 0; m < t->n_mats; ++m)
            for (int64_t p = 0; p < np; ++p) {
                int64_t left = nr - p * IQ1M_PACK_ROWS;
                (t->prepacked ? t->k->repack_prepacked : t->k->repack)(
                    we[m], nb, rb + p * IQ1M_PACK_ROWS,
                    left < IQ1M_PACK_ROWS ? (int)left : IQ1M_PACK_ROWS, ts->panels[m] + p * nb);
            }
    } else {
        small_expert_faults(t, e, cnt);
    }
    for (int64_t c0 = 0; c0 < cnt; c0 += IQ1M_MAX_NC) {
        const int64_t ncc = cnt - c0 < IQ1M_MAX_NC ? cnt - c0 : IQ1M_MAX_NC;
        for (int64_t i = 0; i < ncc; ++i) qc[i] = ecols[c0 + i].q8;
        for (int m = 0; m < t->n_mats; ++m) {
            if (packed)
                iq1m_gemm_packed_tile(t->k, nb, ts->panels[m], np, qc, ncc, ts->tile[m],
                                      TILE_STRIDE, &ts->pf[m]);
            else
                iq1m_gemm_direct_tile(t->k, t->prepacked, nb, we[m], rb, nr, qc, ncc,
                                      ts->tile[m], TILE_STRIDE);
        }
        scatter(t, ts->tile[0], ts->tile[1], ecols + c0, ncc, rb, nr);
    }
    atomic_fetch_add_explicit(&t->path_rows[packed], nr * t->n_mats, memory_order_relaxed);
    return IQ1M_OK;
}

static void gemm_thread(void *arg, int tid, int nth) {
    gemm_task *t = arg;
    int64_t r0, r1;
    row_range(t->rows, tid, nth, &r0, &r1); /* unused slots: a fixed split is enough */
    for (int64_t u = 0; u < t->n_unused; ++u)
        if (r1 > r0) memset(t->unused[u] + r0, 0, (size_t)(r1 - r0) * sizeof(float));
    if (r1 <= r0) { /* more threads than panels: this one is not needed */
#if IQ1M_FAULT_IS(row_race)
        if (t->rows < nth) { /* write early and again late, so the race shows */
            row_race_fault(t);
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
            row_race_fault(t);
        }
#endif
        return;
    }
    iq1m_chunk chunk[2];
    int cur = 0;
    if (!iq1m_schedule_claim(&t->sched, &chunk[cur])) return;
    thread_state ts = {.tid = tid};
    float *tiles = iq1m_pool_scratch(tid, 2, 2 * sizeof(float) * IQ1M_MAX_NC * TILE_STRIDE);
    if (!tiles) {
        atomic_store(&t->err, IQ1M_ERR_NOMEM);
        return;
    }
    ts.tile[0] = tiles;
    ts.tile[1] = tiles + IQ1M_MAX_NC * TILE_STRIDE;
    for (int more = 1; more; cur ^= 1) {
        /* the next chunk is claimed before this one runs, so its rows can be prefetched */
        more = iq1m_schedule_claim(&t->sched, &chunk[cur ^ 1]);
        const int rc = run_chunk(t, &chunk[cur], more ? &chunk[cur ^ 1] : NULL, &ts);
        if (rc != IQ1M_OK) {
            atomic_store(&t->err, rc);
            return;
        }
    }
}

typedef struct {
    const iq1m_kernels *k;
    const float *x;
    iq1m_block_q8K *q8;
    int64_t n_tokens, nb;
} quant_task;

static void quant_thread(void *arg, int tid, int nth) {
    quant_task *q = arg;
    int64_t t0 = q->n_tokens * tid / nth, t1 = q->n_tokens * (tid + 1) / nth;
    if (t1 > t0)
        q->k->quantize(q->x + t0 * q->nb * IQ1M_QK_K, q->q8 + t0 * q->nb, (t1 - t0) * q->nb);
}

typedef struct {
    float *out;
    const float *gate;
    int64_t n;
    int32_t act;
} act_task;

static void act_thread(void *arg, int tid, int nth) {
    act_task *a = arg;
    int64_t i0 = a->n * tid / nth, i1 = a->n * (tid + 1) / nth;
    if (i1 > i0) iq1m_act_mul(a->act, a->out + i0, a->gate + i0, a->out + i0, i1 - i0);
}

static int run_pool(int nth, iq1m_task_fn fn, void *arg) {
    if (iq1m_pool_run(nth, fn, arg) != 0)
        return iq1m_fail(IQ1M_ERR_THREADS, "could not start %d worker threads", nth - 1);
    return IQ1M_OK;
}

int iq1m_op_run(const iq1m_op_config *cfg, const uint8_t *w_up, const uint8_t *w_gate,
                int64_t n_experts, int64_t rows, int64_t k, const float *x, int64_t n_tokens,
                const int32_t *ids, int64_t top_k, int32_t act, float *out,
                int64_t path_rows[2]) {
    if (n_tokens == 0 || rows == 0) return IQ1M_OK;
    const int64_t nb = k / IQ1M_QK_K;
    const int64_t n_slots = n_tokens * top_k;
    int nth = cfg->n_threads;
    int rc = IQ1M_OK;

    iq1m_block_q8K *q8 = malloc(sizeof(iq1m_block_q8K) * (size_t)(n_tokens * nb));
    int64_t *off = calloc((size_t)n_experts + 2, sizeof(int64_t));
    col_t *cols = malloc(sizeof(col_t) * (size_t)n_slots);
    float **unused = malloc(sizeof(float *) * (size_t)n_slots);
    int64_t *active = malloc(sizeof(int64_t) * 2 * (size_t)(n_experts ? n_experts : 1));
    int64_t *active_panels = active ? active + n_experts : NULL;
    float *tmp = NULL;
    if (!q8 || !off || !cols || !unused || !active) {
        rc = iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (activations %lld x %lld blocks)",
                       (long long)n_tokens, (long long)nb);
        goto done;
    }

    /* 1. quantize activations once */
    quant_task qt = {cfg->k, x, q8, n_tokens, nb};
    int qth = n_tokens * nb >= 64 ? (nth < n_tokens ? nth : (int)n_tokens) : 1;
    if ((rc = run_pool(qth, quant_thread, &qt)) != IQ1M_OK) goto done;

    /* 2. per-expert column lists, in order of token then slot */
    int64_t n_unused = 0;
#define SLOT_EXPERT(tok, s) (ids ? (int64_t)ids[(tok) * top_k + (s)] : 0)
    for (int64_t tok = 0; tok < n_tokens; ++tok)
        for (int64_t s = 0; s < top_k; ++s) {
            int64_t e = SLOT_EXPERT(tok, s);
#if IQ1M_FAULT_IS(duplicate_expert)
            for (int64_t s2 = 0; s2 < s && e >= 0; ++s2) /* FAULT: repeat -> zeros */
                if (SLOT_EXPERT(tok, s2) == e) e = -1;
#endif
            if (e >= 0)
                off[e + 1]++;
            else
                unused[n_unused++] = out + (tok * top_k + s) * rows;
        }
    for (int64_t e = 0; e < n_experts; ++e) off[e + 1] += off[e];
    {
        int64_t *fill = calloc((size_t)n_experts, sizeof(int64_t));
        if (!fill) {
            rc = iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (expert lists)");
            goto done;
        }
        for (int64_t tok = 0; tok < n_tokens; ++tok)
            for (int64_t s = 0; s < top_k; ++s) {
                int64_t e = SLOT_EXPERT(tok, s);
#if IQ1M_FAULT_IS(duplicate_expert)
                for (int64_t s2 = 0; s2 < s && e >= 0; ++s2)
                    if (SLOT_EXPERT(tok, s2) == e) e = -1;
#endif
                if (e < 0) continue;
                col_t *c = &cols[off[e] + fill[e]++];
                c->q8 = q8 + tok * nb;
                c->out = out + (tok * top_k + s) * rows;
            }
        free(fill);
    }
#undef SLOT_EXPERT

    /* 3. the GEMM(s) */
    gemm_task t;
    memset(&t, 0, sizeof t);
    t.k = cfg->k;
    t.threshold = cfg->threshold;
    t.act = act;
    t.nb = nb;
    t.rows = rows;
    t.n_experts = n_experts;
    t.prepacked = cfg->prepacked;
    t.expert_bytes = rows * nb * (cfg->prepacked ? IQ1M_PREPACKED_BLOCK_BYTES : IQ1M_BLOCK_BYTES);
    t.off = off;
    t.cols = cols;
    t.unused = unused;
    t.n_unused = n_unused;
    t.fused_op = w_gate != NULL;
    {
        int64_t bp = PANEL_BLOCK_BYTES / (nb * (int64_t)sizeof(iq1m_packed_block));
        t.block_panels = bp < 1 ? 1 : bp > MAX_BLOCK_PANELS ? MAX_BLOCK_PANELS : bp;
    }
    atomic_init(&t.err, IQ1M_OK);
    {
        int64_t n_active = 0;
        for (int64_t e = 0; e < n_experts; ++e) {
            if (off[e + 1] == off[e]) continue;
            active[n_active] = e;
            active_panels[n_active++] =
                is_packed(&t, e) ? t.block_panels : DIRECT_ROW_BLOCK / IQ1M_PACK_ROWS;
        }
        iq1m_schedule_init(&t.sched, active, active_panels, n_active, rows, nth);
    }
    if (w_gate && cfg->fused) {
        t.n_mats = 2;
        t.w[0] = w_up;
        t.w[1] = w_gate;
        if ((rc = run_pool(nth, gemm_thread, &t)) != IQ1M_OK) goto done;
    } else if (w_gate) { /* unfused composition: up -> out, gate -> tmp, then act pass */
        tmp = malloc(sizeof(float) * (size_t)(n_slots * rows));
        float **unused_tmp = malloc(sizeof(float *) * (size_t)(n_unused ? n_unused : 1));
        col_t *cols_tmp = malloc(sizeof(col_t) * (size_t)n_slots);
        if (!tmp || !unused_tmp || !cols_tmp) {
            free(unused_tmp);
            free(cols_tmp);
            rc = iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (unfused gate buffer)");
            goto done;
        }
        t.n_mats = 1;
        t.w[0] = w_up;
        rc = run_pool(nth, gemm_thread, &t);
        if (rc == IQ1M_OK && atomic_load(&t.err) == IQ1M_OK) {
            for (int64_t i = 0; i < n_unused; ++i) unused_tmp[i] = tmp + (unused[i] - out);
            for (int64_t i = 0; i < off[n_experts]; ++i) { /* used slots only */
                cols_tmp[i].q8 = cols[i].q8;
                cols_tmp[i].out = tmp + (cols[i].out - out);
            }
            t.w[0] = w_gate;
            t.cols = cols_tmp;
            t.unused = unused_tmp;
            atomic_store(&t.sched.next, 0);
            rc = run_pool(nth, gemm_thread, &t);
        }
        if (rc == IQ1M_OK && atomic_load(&t.err) == IQ1M_OK) {
            act_task at = {out, tmp, n_slots * rows, act};
            int ath = n_slots * rows >= 4096 ? nth : 1;
            rc = run_pool(ath, act_thread, &at);
        }
        free(unused_tmp);
        free(cols_tmp);
        if (rc != IQ1M_OK) goto done;
    } else {
        t.n_mats = 1;
        t.w[0] = w_up;
        if ((rc = run_pool(nth, gemm_thread, &t)) != IQ1M_OK) goto done;
    }
    if (atomic_load(&t.err) != IQ1M_OK)
        rc = iq1m_fail(atomic_load(&t.err), "out of memory (per-thread scratch buffers)");
    if (rc == IQ1M_OK) {
        path_rows[0] = atomic_load(&t.path_rows[0]);
        path_rows[1] = atomic_load(&t.path_rows[1]);
    }

done:
    free(q8);
    free(off);
    free(cols);
    free(unused);
    free(active);
    free(tmp);
    return rc;
}
