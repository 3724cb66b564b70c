/* ukernel.h: the micro-kernel signatures and per-ISA tables (see docs/numerics.md).
 *
 * A micro-kernel computes one tile (one weight row, or one 16-row repacked panel, against
 * 1..IQ1M_MAX_NC activation columns) and nothing else: loop nests, repacking and threading
 * live in their own files and reach kernels only through these tables.
 */
#ifndef IQ1M_UKERNEL_H
#define IQ1M_UKERNEL_H

#include <stdint.h>

#include "iq1m.h"
#include "fault.h" /* IQ1M_FAULT_IS(name): fault-injection switches, see kernels/FAULTS.md */

#define IQ1M_MAX_NC 8
#define IQ1M_PACK_ROWS 16

typedef struct {
    float d[IQ1M_PACK_ROWS];                  /* row super-scale; 0.0f for padding rows */
    uint8_t mult[16][IQ1M_PACK_ROWS];         /* [sub-block][row] = 2s+1; 1 for padding */
    uint8_t q[IQ1M_QK_K / 4][IQ1M_PACK_ROWS][4]; /* [k/4][row][k%4] = w + 9; 9 for padding */
} iq1m_packed_block;

/* out[c * out_stride] = contract result of the row with column c, c < nc. */
typedef void (*iq1m_direct_ukernel_fn)(int64_t nb, const uint8_t *w_row,
                                       const iq1m_block_q8K *const *cols,
                                       float *out, int64_t out_stride);

/* out[c * out_stride + r] for r < IQ1M_PACK_ROWS, c < nc. */
typedef void (*iq1m_packed_ukernel_fn)(int64_t nb, const iq1m_packed_block *panel,
                                       const iq1m_block_q8K *const *cols,
                                       float *out, int64_t out_stride);

/* Repack rows [r0, r0 + n_rows) (n_rows 1..16) of a weight matrix (row stride nb*56 bytes)
   into nb panel blocks; the same bytes as the scalar definition iq1m_repack_panel. */
typedef void (*iq1m_repack_fn)(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                               iq1m_packed_block *out);

/* Quantize nb*256 finite floats to nb Q8_K blocks; the same bytes as iq1m_q8k_quantize. */
typedef void (*iq1m_quantize_fn)(const float *x, iq1m_block_q8K *y, int64_t nb);

/* The activation (act: IQ1M_ACT_SILU or IQ1M_ACT_GELU): out[i] = act(x[i]) when up is NULL,
   else up[i] * act(x[i]), with the bits of the scalar definition (src/act.c), for the
   longest prefix of the n elements the kernel handles: a multiple of its vector width, at
   most 8, so fewer than 8 elements are left. Returns the prefix's length; iq1m_act_run
   (act.h) does the rest with the scalar definition. out may alias up or x. */
typedef int64_t (*iq1m_act_ukernel_fn)(int32_t act, const float *up, const float *x,
                                       float *out, int64_t n);

typedef struct {
    const char *name;
    iq1m_direct_ukernel_fn direct[IQ1M_MAX_NC + 1]; /* index = nc; NULL = missing */
    iq1m_packed_ukernel_fn packed[IQ1M_MAX_NC + 1];
    iq1m_repack_fn repack;                           /* NULL = the scalar repack */
    iq1m_quantize_fn quantize;                       /* NULL = the scalar quantizer */
    /* the same for rows of prepacked blocks (iq1m_block_prepacked, row stride nb*80 bytes) */
    iq1m_direct_ukernel_fn direct_prepacked[IQ1M_MAX_NC + 1];
    iq1m_repack_fn repack_prepacked;                        /* NULL = the scalar repack */
    iq1m_act_ukernel_fn act; /* NULL = the scalar definition does every element */
} iq1m_ukernel_table;

extern const iq1m_ukernel_table iq1m_ukernels_scalar;
extern const iq1m_ukernel_table iq1m_ukernels_avx2;
extern const iq1m_ukernel_table iq1m_ukernels_avx512vnni;

#endif /* IQ1M_UKERNEL_H */
