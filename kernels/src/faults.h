/* faults.h: the hooks through which the core fault-injection points (kernels/FAULTS.md; the
 * names are in kernels/faults.txt) reach the library's code.
 *
 * Each hook is an empty static inline function unless a fault point that uses it is compiled
 * in (CMake -DIQ1M_FAULT=name[,name...]); then it is defined in faults.c. Without a fault
 * the callers compile to exactly what they would be without the hook, so the op code stays
 * free of #if blocks and pays nothing. The SIMD-level points change one ISA's instructions
 * and stay in that kernel's file (IQ1M_FAULT_IS from fault.h).
 */
#ifndef IQ1M_FAULTS_H
#define IQ1M_FAULTS_H

#include <stdint.h>

#include "fault.h"
#include "ops.h"
#include "ukernel.h"

#define IQ1M_HOOK_UNUSED(x) (void)(x)

/* ops.c (at line `line`, which the abort messages name as the failing site, as ggml's
 * would), an expert (or a whole mul_mat) about to run on the direct path with `tokens`
 * tokens: small_expert_segv, small_expert_abort, small_expert_hang, seed_missing_kernel. */
#if IQ1M_FAULT_IS(small_expert_segv) || IQ1M_FAULT_IS(small_expert_abort) ||                 \
    IQ1M_FAULT_IS(small_expert_hang) || IQ1M_FAULT_IS(seed_missing_kernel)
void iq1m_fault_small_expert(int line, int64_t expert, int64_t tokens, int32_t threshold,
                             int fused_op);
#else
static inline void iq1m_fault_small_expert(int line, int64_t expert, int64_t tokens,
                                           int32_t threshold, int fused_op) {
    IQ1M_HOOK_UNUSED(line);
    IQ1M_HOOK_UNUSED(expert);
    IQ1M_HOOK_UNUSED(tokens);
    IQ1M_HOOK_UNUSED(threshold);
    IQ1M_HOOK_UNUSED(fused_op);
}
#endif

/* ops.c, routing: the expert that slot s of token tok goes to (e = ids[tok][s], -1 unused):
 * duplicate_expert. */
#if IQ1M_FAULT_IS(duplicate_expert)
int64_t iq1m_fault_slot_expert(const int32_t *ids, int64_t tok, int64_t top_k, int64_t s,
                               int64_t e);
#else
static inline int64_t iq1m_fault_slot_expert(const int32_t *ids, int64_t tok, int64_t top_k,
                                             int64_t s, int64_t e) {
    IQ1M_HOOK_UNUSED(ids);
    IQ1M_HOOK_UNUSED(tok);
    IQ1M_HOOK_UNUSED(top_k);
    IQ1M_HOOK_UNUSED(s);
    return e;
}
#endif

/* ops.c, after rows [rb, rb + nr) of one column's output o were written from the tile (up,
 * and gate for the fused op, else NULL): tail_activation, drop_tail_rows. */
#if IQ1M_FAULT_IS(tail_activation) || IQ1M_FAULT_IS(drop_tail_rows)
void iq1m_fault_scattered(float *o, const float *up, const float *gate, int64_t rb, int64_t nr,
                          int64_t rows, int32_t act);
#else
static inline void iq1m_fault_scattered(float *o, const float *up, const float *gate,
                                        int64_t rb, int64_t nr, int64_t rows, int32_t act) {
    IQ1M_HOOK_UNUSED(o);
    IQ1M_HOOK_UNUSED(up);
    IQ1M_HOOK_UNUSED(gate);
    IQ1M_HOOK_UNUSED(rb);
    IQ1M_HOOK_UNUSED(nr);
    IQ1M_HOOK_UNUSED(rows);
    IQ1M_HOOK_UNUSED(act);
}
#endif

/* ops.c, a GEMM thread of nth that got no rows (more threads than panels): row_race.
 * w[0..n_mats) are the weight matrices (up, gate), l the op's expert lists. */
#if IQ1M_FAULT_IS(row_race)
void iq1m_fault_idle_thread(int nth, int64_t rows, const uint8_t *const w[2], int n_mats,
                            int64_t nb, int64_t expert_bytes, const iq1m_expert_lists *l,
                            int32_t act);
#else
static inline void iq1m_fault_idle_thread(int nth, int64_t rows, const uint8_t *const w[2],
                                          int n_mats, int64_t nb, int64_t expert_bytes,
                                          const iq1m_expert_lists *l, int32_t act) {
    IQ1M_HOOK_UNUSED(nth);
    IQ1M_HOOK_UNUSED(rows);
    IQ1M_HOOK_UNUSED(w);
    IQ1M_HOOK_UNUSED(n_mats);
    IQ1M_HOOK_UNUSED(nb);
    IQ1M_HOOK_UNUSED(expert_bytes);
    IQ1M_HOOK_UNUSED(l);
    IQ1M_HOOK_UNUSED(act);
}
#endif

/* repack.c, row r of panel block p just repacked from IQ1_M weights: lossy_repack. */
#if IQ1M_FAULT_IS(lossy_repack)
void iq1m_fault_repacked_row(iq1m_packed_block *p, int r);
#else
static inline void iq1m_fault_repacked_row(iq1m_packed_block *p, int r) {
    IQ1M_HOOK_UNUSED(p);
    IQ1M_HOOK_UNUSED(r);
}
#endif

/* format.c, the fp16 bits of a super-scale assembled from the scale words sc: returns the
 * bits to use (d_bits unchanged without a fault): scale_nibble_order. */
#if IQ1M_FAULT_IS(scale_nibble_order)
uint16_t iq1m_fault_scale_d_bits(const uint16_t sc[4], uint16_t d_bits);
#else
static inline uint16_t iq1m_fault_scale_d_bits(const uint16_t sc[4], uint16_t d_bits) {
    IQ1M_HOOK_UNUSED(sc);
    return d_bits;
}
#endif

#endif /* IQ1M_FAULTS_H */
