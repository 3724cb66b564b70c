/* gemm.h: tile loop nests over the resolved micro-kernels (gemm_direct.c, gemm_packed.c). */
#ifndef IQ1M_GEMM_H
#define IQ1M_GEMM_H

#include <stdint.h>

#include "dispatch.h"
#include "prefetch.h"

/* Direct path: rows [r0, r0+nr) of w (row stride nb*56 bytes, or nb*80 when prepacked)
 * x nc columns -> tile[c * ts + (r - r0)]. Any nc >= 1 (split into calls of the largest
 * available kernel); without direct kernels, the plain scalar dot product. */
void iq1m_gemm_direct_tile(const iq1m_kernels *k, int prepacked, int64_t nb, const uint8_t *w,
                           int64_t r0, int64_t nr, const iq1m_block_q8K *const *cols,
                           int64_t nc, float *tile, int64_t ts);

/* Repacked path: n_panels consecutive panels (each nb iq1m_packed_block) x nc columns ->
 * tile[c * ts + 16*p + r] (ts >= 16*n_panels; all 16 rows of every panel written).
 * One step of pf (may be NULL) before each micro-kernel call: iq1m_gemm_packed_calls. */
void iq1m_gemm_packed_tile(const iq1m_kernels *k, int64_t nb, const iq1m_packed_block *panels,
                           int64_t n_panels, const iq1m_block_q8K *const *cols, int64_t nc,
                           float *tile, int64_t ts, iq1m_prefetch_stream *pf);

/* The number of micro-kernel calls iq1m_gemm_packed_tile makes for n_panels x nc. */
int64_t iq1m_gemm_packed_calls(const iq1m_kernels *k, int64_t n_panels, int64_t nc);

#endif /* IQ1M_GEMM_H */
