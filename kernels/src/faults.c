/* faults.c: the core fault-injection points (kernels/FAULTS.md), each a deliberate,
 * realistic bug behind a hook of faults.h. Only the points selected at configure time
 * (-DIQ1M_FAULT=name[,name...]) are compiled; without a fault this file is empty. */
#include "faults.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "act.h"
#include "format.h"

#if IQ1M_FAULT_IS(small_expert_segv) || IQ1M_FAULT_IS(small_expert_abort) ||                 \
    IQ1M_FAULT_IS(small_expert_hang) || IQ1M_FAULT_IS(seed_missing_kernel)
void iq1m_fault_small_expert(int line, int64_t expert, int64_t tokens, int32_t threshold,
                             int fused_op) {
    (void)line;
    (void)expert;
    (void)tokens;
    (void)threshold;
    (void)fused_op;
#if IQ1M_FAULT_IS(small_expert_segv)
    {
        volatile float *volatile bad = NULL;
        bad[tokens] = 1.0f; /* FAULT: write through a NULL pointer */
    }
#endif
#if IQ1M_FAULT_IS(small_expert_abort)
    /* FAULT: the seed's abort (ik_llama.cpp issue 626), in ggml's GGML_ASSERT format */
    fprintf(stderr,
            "kernels/src/ops.c:%d: GGML_ASSERT(direct kernel for IQ1_M x Q8_K) failed: "
            "expert %lld has %lld < %d tokens\n",
            line, (long long)expert, (long long)tokens, (int)threshold);
    fflush(stderr);
    abort();
#endif
#if IQ1M_FAULT_IS(small_expert_hang)
    for (volatile int spin = 1; spin;) { /* FAULT: every thread spins forever */
    }
#endif
#if IQ1M_FAULT_IS(seed_missing_kernel)
    if (fused_op) { /* FAULT: no direct kernel for the fused op, as in ik_llama.cpp */
        fprintf(stderr,
                "kernels/src/ops.c:%d: fatal error: MulMat::prepare failed: no IQ1_M kernel "
                "for %lld rows of activations (expert %lld)\n",
                line, (long long)tokens, (long long)expert);
        fflush(stderr);
        abort();
    }
#endif
}
#endif

#if IQ1M_FAULT_IS(duplicate_expert)
int64_t iq1m_fault_slot_expert(const int32_t *ids, int64_t tok, int64_t top_k, int64_t s,
                               int64_t e) {
    /* FAULT: an expert the token already listed in an earlier slot -> unused (zeros) */
    for (int64_t s2 = 0; ids && s2 < s && e >= 0; ++s2)
        if (ids[tok * top_k + s2] == e) e = -1;
    return e;
}
#endif

#if IQ1M_FAULT_IS(tail_activation) || IQ1M_FAULT_IS(drop_tail_rows)
#if IQ1M_FAULT_IS(tail_activation)
static float act_f32_expf(int32_t act, float g) { /* FAULT: float32 expf activation */
    float z = act == IQ1M_ACT_GELU ? 1.5957691216057308f * (g + 0.044715f * g * g * g) : g;
    return g / (1.0f + expf(-z));
}
#endif

void iq1m_fault_scattered(float *o, const float *up, const float *gate, int64_t rb, int64_t nr,
                          int64_t rows, int32_t act) {
    (void)up;
    (void)gate;
    (void)rows;
    (void)act;
#if IQ1M_FAULT_IS(tail_activation)
    /* FAULT: the last nr % 16 outputs of the thread's slice (rb is panel-aligned) get a
       float32 expf activation, in the fused op */
    if (gate) {
        const int64_t tail_start = rb + nr - nr % 16;
        for (int64_t r = 0; r < nr; ++r)
            if (rb + r >= tail_start) o[r] = up[r] * act_f32_expf(act, gate[r]);
    }
#endif
#if IQ1M_FAULT_IS(drop_tail_rows)
    for (int64_t r = 0; r < nr; ++r) /* FAULT: rows past the last multiple of 16 lost */
        if (rb + r >= (rows / 16) * 16) o[r] = 0.0f;
#endif
}
#endif

#if IQ1M_FAULT_IS(row_race)
/* FAULT: a thread with no rows computes row 0 anyway, blocks in reverse order and the
 * scales multiplied in another order, and writes it over the owner's result. */
static void row_race(const uint8_t *const w[2], int n_mats, int64_t nb, int64_t expert_bytes,
                     const iq1m_expert_lists *l, int32_t act) {
    for (int64_t e = 0; e < l->n_experts; ++e)
        for (int64_t i = l->off[e]; i < l->off[e + 1]; ++i) {
            float v[2];
            for (int m = 0; m < n_mats; ++m) {
                const uint8_t *we = w[m] + e * expert_bytes;
                float acc = 0.0f;
                for (int64_t b = nb - 1; b >= 0; --b) {
                    const uint8_t *blk = we + b * IQ1M_BLOCK_BYTES;
                    acc = acc + iq1m_block_d(blk) *
                                    ((float)iq1m_block_dot_int(blk, l->cols[i].q8 + b) *
                                     l->cols[i].q8[b].d);
                }
                v[m] = 0.125f * acc;
            }
            l->cols[i].out[0] =
                n_mats == 2 ? v[0] * (act == IQ1M_ACT_GELU ? iq1m_gelu(v[1]) : iq1m_silu(v[1]))
                            : v[0];
        }
}

void iq1m_fault_idle_thread(int nth, int64_t rows, const uint8_t *const w[2], int n_mats,
                            int64_t nb, int64_t expert_bytes, const iq1m_expert_lists *l,
                            int32_t act) {
    if (rows < nth) { /* write early and again late, so the race shows */
        row_race(w, n_mats, nb, expert_bytes, l, act);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        row_race(w, n_mats, nb, expert_bytes, l, act);
    }
}
#endif

#if IQ1M_FAULT_IS(lossy_repack)
void iq1m_fault_repacked_row(iq1m_packed_block *p, int r) {
    /* FAULT: like upstream Q8_K_R8, (2s+1)*w must fit int8 max 126: |15*9| = 135 is clamped
       by storing w = +-8 instead of +-9 where the multiplier is 15. */
    for (int k = 0; k < IQ1M_QK_K; ++k) {
        uint8_t *q = &p->q[k / 4][r][k % 4];
        if (p->mult[k / 16][r] == 15 && (*q == 0 || *q == 18)) *q = *q ? 17 : 1;
    }
}
#endif

#if IQ1M_FAULT_IS(scale_nibble_order)
uint16_t iq1m_fault_scale_d_bits(const uint16_t sc[4], uint16_t d_bits) {
    (void)d_bits;
    /* FAULT: the nibbles of words 1 and 2 assembled in swapped order */
    return (uint16_t)((sc[0] >> 12) | ((sc[2] >> 8) & 0x00f0) | ((sc[1] >> 4) & 0x0f00) |
                      (sc[3] & 0xf000));
}
#endif
