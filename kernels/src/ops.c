/* ops.c: mul_mat, mul_mat_id and moe_up_gate, as a sequence of jobs (iq1m_op_run, at the
 * end, reads as the list):
 *   1. quantize the activations to Q8_K, once per op;
 *   2. build the expert lists: each expert's columns (token, slot), in order of token then
 *      slot; unused slots (expert -1) apart;
 *   3. choose each expert's path (repacked when it has >= threshold tokens, else direct) and
 *      plan the chunks the threads will claim (schedule.h);
 *   4. run the GEMM(s): the threads claim chunks of 16-row panels (of one expert each, in
 *      expert order) until none are left, and a row's output is written by the one thread
 *      that claimed it, so no barrier is needed. On the repacked path the thread repacks the
 *      chunk's panels into a reused per-thread buffer, while the kernel calls on it prefetch
 *      the rows of the chunk the thread has already claimed next;
 *   5. the activation: the fused op applies it tile by tile as up and gate come out of the
 *      kernels; the unfused option runs the two GEMMs and then an activation pass: same bits.
 * Fault-injection points reach this file only through the hooks of faults.h. */
#include "ops.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "error.h"
#include "faults.h"
#include "format.h"
#include "gemm.h"
#include "q8k.h"
#include "repack.h"
#include "schedule.h"
#include "threadpool.h"

#define DIRECT_ROW_BLOCK 64      /* rows per direct-path block */
#define PANEL_BLOCK_BYTES 524288 /* target size of one thread's repacked block */
#define MAX_BLOCK_PANELS 8
#define TILE_STRIDE (MAX_BLOCK_PANELS * IQ1M_PACK_ROWS) /* >= DIRECT_ROW_BLOCK */

static int run_pool(int nth, iq1m_task_fn fn, void *arg) {
    if (iq1m_pool_run(nth, fn, arg) != 0)
        return iq1m_fail(IQ1M_ERR_THREADS, "could not start %d worker threads", nth - 1);
    return IQ1M_OK;
}

/* ---- 1. the activations, quantized once ---- */

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

static int quantize_activations(const iq1m_op_config *cfg, const float *x, int64_t n_tokens,
                                int64_t nb, iq1m_block_q8K *q8) {
    quant_task qt = {cfg->k, x, q8, n_tokens, nb};
    const int nth = cfg->n_threads;
    const int qth = n_tokens * nb >= 64 ? (nth < n_tokens ? nth : (int)n_tokens) : 1;
    return run_pool(qth, quant_thread, &qt);
}

/* ---- 2. the expert lists ---- */

/* The op's slots: token tok's slot s goes to expert ids[tok * top_k + s] (ids == NULL: the
 * one expert of a mul_mat), multiplies q8 + tok * nb and writes (tok * top_k + s) * rows
 * floats into an output array. */
typedef struct {
    const int32_t *ids;
    int64_t n_tokens, top_k, nb, rows;
    const iq1m_block_q8K *q8;
} routing;

static int64_t slot_expert(const routing *r, int64_t tok, int64_t s) {
    const int64_t e = r->ids ? (int64_t)r->ids[tok * r->top_k + s] : 0;
    return iq1m_fault_slot_expert(r->ids, tok, r->top_k, s, e);
}

static void free_expert_lists(iq1m_expert_lists *l) {
    free(l->off);
    free(l->cols);
    free(l->unused);
}

/* The lists of the slots with output vectors in out. */
static int build_expert_lists(iq1m_expert_lists *l, int64_t n_experts, const routing *r,
                              float *out) {
    const int64_t n_slots = r->n_tokens * r->top_k;
    l->n_experts = n_experts;
    l->n_unused = 0;
    l->off = calloc((size_t)n_experts + 1, sizeof(int64_t));
    l->cols = malloc(sizeof(iq1m_col) * (size_t)n_slots);
    l->unused = malloc(sizeof(float *) * (size_t)n_slots);
    int64_t *fill = calloc((size_t)n_experts, sizeof(int64_t));
    if (!l->off || !l->cols || !l->unused || !fill) {
        free(fill);
        return iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (expert lists of %lld slots)",
                         (long long)n_slots);
    }
    for (int64_t tok = 0; tok < r->n_tokens; ++tok) /* count, and list the unused slots */
        for (int64_t s = 0; s < r->top_k; ++s) {
            const int64_t e = slot_expert(r, tok, s);
            if (e >= 0)
                l->off[e + 1]++;
            else
                l->unused[l->n_unused++] = out + (tok * r->top_k + s) * r->rows;
        }
    for (int64_t e = 0; e < n_experts; ++e) l->off[e + 1] += l->off[e];
    for (int64_t tok = 0; tok < r->n_tokens; ++tok) /* fill, in order of token then slot */
        for (int64_t s = 0; s < r->top_k; ++s) {
            const int64_t e = slot_expert(r, tok, s);
            if (e < 0) continue;
            iq1m_col *c = &l->cols[l->off[e] + fill[e]++];
            c->q8 = r->q8 + tok * r->nb;
            c->out = out + (tok * r->top_k + s) * r->rows;
        }
    free(fill);
    return IQ1M_OK;
}

/* ---- the GEMM task: what every thread reads ---- */

typedef struct {
    const iq1m_kernels *k;
    int32_t threshold;
    int32_t act;
    int n_mats;    /* 1 = plain GEMM, 2 = fused up (0) and gate (1) */
    int fused_op;  /* 1 when running the fused moe_up_gate */
    int prepacked; /* weights are iq1m_block_prepacked rows */
    const uint8_t *w[2];
    int64_t nb, rows, expert_bytes, block_panels;
    iq1m_expert_lists lists; /* the columns of each expert, the unused slots */
    int64_t *plan;       /* [2 * n_experts]: experts with tokens, their chunk limits */
    iq1m_schedule sched; /* the row blocks, claimed by the threads as they go */
    atomic_llong path_rows[2]; /* rows x matrices on the direct, the repacked path (memset 0) */
    atomic_int err;
} gemm_task;

static void init_task(gemm_task *t, const iq1m_op_config *cfg, int64_t nb, int64_t rows,
                      int32_t act, int fused_op) {
    memset(t, 0, sizeof *t);
    t->k = cfg->k;
    t->threshold = cfg->threshold;
    t->act = act;
    t->fused_op = fused_op;
    t->prepacked = cfg->prepacked;
    t->nb = nb;
    t->rows = rows;
    t->expert_bytes =
        rows * nb * (cfg->prepacked ? IQ1M_PREPACKED_BLOCK_BYTES : IQ1M_BLOCK_BYTES);
    const int64_t bp = PANEL_BLOCK_BYTES / (nb * (int64_t)sizeof(iq1m_packed_block));
    t->block_panels = bp < 1 ? 1 : bp > MAX_BLOCK_PANELS ? MAX_BLOCK_PANELS : bp;
    atomic_init(&t->err, IQ1M_OK);
}

/* ---- 3. the path of each expert and the plan of chunks ---- */

static int is_packed(const gemm_task *t, int64_t e) {
    return t->lists.off[e + 1] - t->lists.off[e] >= (int64_t)t->threshold;
}

static int plan_paths(gemm_task *t, int nth) {
    const int64_t n_experts = t->lists.n_experts;
    t->plan = malloc(sizeof(int64_t) * 2 * (size_t)n_experts);
    if (!t->plan) return iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (expert plan)");
    int64_t *active = t->plan, *max_panels = t->plan + n_experts;
    int64_t n_active = 0;
    for (int64_t e = 0; e < n_experts; ++e) {
        if (t->lists.off[e + 1] == t->lists.off[e]) continue;
        active[n_active] = e;
        max_panels[n_active++] =
            is_packed(t, e) ? t->block_panels : DIRECT_ROW_BLOCK / IQ1M_PACK_ROWS;
    }
    iq1m_schedule_init(&t->sched, active, max_panels, n_active, t->rows, nth);
    return IQ1M_OK;
}

/* ---- 4. the GEMM(s), with 5. the fused activation ---- */

static void row_range(int64_t rows, int tid, int nth, int64_t *r0, int64_t *r1) {
    const int64_t np = (rows + IQ1M_PACK_ROWS - 1) / IQ1M_PACK_ROWS;
    const int64_t p0 = np * tid / nth, p1 = np * (tid + 1) / nth;
    *r0 = p0 * IQ1M_PACK_ROWS;
    *r1 = p1 * IQ1M_PACK_ROWS < rows ? p1 * IQ1M_PACK_ROWS : rows;
    if (*r0 > *r1) *r0 = *r1;
}

/* Rows [rb, rb + nr) of the tile's columns to their output vectors: up * act(gate) in the
 * fused op, else the GEMM's values. */
static void scatter(const gemm_task *t, const float *tile_up, const float *tile_gate,
                    const iq1m_col *cols, int64_t ncols, int64_t rb, int64_t nr) {
    for (int64_t i = 0; i < ncols; ++i) {
        float *o = cols[i].out + rb;
        const float *u = tile_up + i * TILE_STRIDE;
        const float *g = t->n_mats == 2 ? tile_gate + i * TILE_STRIDE : NULL;
        if (g)
            iq1m_act_run(t->k->act, t->act, u, g, o, nr);
        else
            memcpy(o, u, (size_t)nr * sizeof(float));
        iq1m_fault_scattered(o, u, g, rb, nr, t->rows, t->act);
    }
}

/* What one thread keeps across its chunks. */
typedef struct {
    int tid;
    float *tile[2];
    iq1m_packed_block *panels[2]; /* allocated at the thread's first repacked chunk */
    iq1m_prefetch_stream pf[2];
} thread_state;

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
    const int64_t cnt = t->lists.off[e + 1] - t->lists.off[e];
    const iq1m_col *ecols = t->lists.cols + t->lists.off[e];
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
        iq1m_fault_small_expert(__LINE__, e, cnt, t->threshold, t->fused_op);
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
    for (int64_t u = 0; u < t->lists.n_unused; ++u)
        if (r1 > r0) memset(t->lists.unused[u] + r0, 0, (size_t)(r1 - r0) * sizeof(float));
    if (r1 <= r0) { /* more threads than panels: this one is not needed */
        iq1m_fault_idle_thread(nth, t->rows, t->w, t->n_mats, t->nb, t->expert_bytes,
                               &t->lists, t->act);
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

/* One pass over the planned chunks: w_gate == NULL multiplies w alone (into the lists'
 * output vectors), else w (up) and w_gate, fused with the activation. */
static int run_gemm(gemm_task *t, int nth, const uint8_t *w, const uint8_t *w_gate) {
    t->n_mats = w_gate ? 2 : 1;
    t->w[0] = w;
    t->w[1] = w_gate;
    atomic_store(&t->sched.next, 0);
    int rc = run_pool(nth, gemm_thread, t);
    if (rc == IQ1M_OK && atomic_load(&t->err) != IQ1M_OK)
        rc = iq1m_fail(atomic_load(&t->err), "out of memory (per-thread scratch buffers)");
    return rc;
}

/* ---- 5. the activation pass of the unfused composition ---- */

typedef struct {
    iq1m_act_ukernel_fn ukernel;
    float *out;
    const float *gate;
    int64_t n;
    int32_t act;
} act_task;

static void act_thread(void *arg, int tid, int nth) {
    act_task *a = arg;
    int64_t i0 = a->n * tid / nth, i1 = a->n * (tid + 1) / nth;
    if (i1 > i0)
        iq1m_act_run(a->ukernel, a->act, a->out + i0, a->gate + i0, a->out + i0, i1 - i0);
}

/* out[i] = out[i] * act(gate[i]), i < n, with the ISA's activation kernel */
static int run_activation(const iq1m_kernels *k, int nth, int32_t act, float *out,
                          const float *gate, int64_t n) {
    act_task at = {k->act, out, gate, n, act};
    return run_pool(n >= 4096 ? nth : 1, act_thread, &at);
}

/* The unfused composition: up -> out; gate -> tmp, through expert lists of the same slots
 * with their output vectors in tmp; then the activation pass. */
static int run_unfused(gemm_task *t, int nth, const uint8_t *w_up, const uint8_t *w_gate,
                       const routing *r, float *out) {
    const int64_t n_out = r->n_tokens * r->top_k * r->rows;
    const iq1m_expert_lists up = t->lists;
    iq1m_expert_lists gate = {0};
    float *tmp = malloc(sizeof(float) * (size_t)n_out);
    int rc = tmp ? IQ1M_OK : iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (unfused gate buffer)");
    if (rc == IQ1M_OK) rc = run_gemm(t, nth, w_up, NULL);
    if (rc == IQ1M_OK) rc = build_expert_lists(&gate, up.n_experts, r, tmp);
    if (rc == IQ1M_OK) {
        t->lists = gate;
        rc = run_gemm(t, nth, w_gate, NULL);
        t->lists = up;
    }
    if (rc == IQ1M_OK) rc = run_activation(t->k, nth, t->act, out, tmp, n_out);
    free(tmp);
    free_expert_lists(&gate);
    return rc;
}

/* ---- the op ---- */

int iq1m_op_run(const iq1m_op_config *cfg, const uint8_t *w_up, const uint8_t *w_gate,
                int64_t n_experts, int64_t rows, int64_t k, const float *x, int64_t n_tokens,
                const int32_t *ids, int64_t top_k, int32_t act, float *out,
                int64_t path_rows[2]) {
    if (n_tokens == 0 || rows == 0) return IQ1M_OK;
    const int64_t nb = k / IQ1M_QK_K;
    const int nth = cfg->n_threads;
    const int fused = w_gate && cfg->fused;
    gemm_task t;
    init_task(&t, cfg, nb, rows, act, fused);
    iq1m_block_q8K *q8 = malloc(sizeof(iq1m_block_q8K) * (size_t)(n_tokens * nb));
    int rc = q8 ? IQ1M_OK
                : iq1m_fail(IQ1M_ERR_NOMEM, "out of memory (activations %lld x %lld blocks)",
                            (long long)n_tokens, (long long)nb);
    const routing r = {ids, n_tokens, top_k, nb, rows, q8};
    if (rc == IQ1M_OK) rc = quantize_activations(cfg, x, n_tokens, nb, q8);
    if (rc == IQ1M_OK) rc = build_expert_lists(&t.lists, n_experts, &r, out);
    if (rc == IQ1M_OK) rc = plan_paths(&t, nth);
    if (rc == IQ1M_OK) {
        if (!w_gate)
            rc = run_gemm(&t, nth, w_up, NULL); /* mul_mat, mul_mat_id */
        else if (fused)
            rc = run_gemm(&t, nth, w_up, w_gate);
        else
            rc = run_unfused(&t, nth, w_up, w_gate, &r, out);
    }
    if (rc == IQ1M_OK) {
        path_rows[0] = atomic_load(&t.path_rows[0]);
        path_rows[1] = atomic_load(&t.path_rows[1]);
    }
    free(q8);
    free_expert_lists(&t.lists);
    free(t.plan);
    return rc;
}
