/* iq1m-q8k-packed-16xN-avx512vnni.c: packed micro-kernels, one 16-row repacked panel x
 * N = 1..8 Q8_K columns, AVX-512 (F/BW/VL/DQ) + VNNI + F16C.
 *
 * One zmm of q[k/4] holds 4 weights (u8 w+9) of each of the 16 rows.  Per column and
 * sub-block j: the accumulator starts at -9*bsums[j] (removes the +9 bias), 4 vpdpbusd with
 * the broadcast int32 of 4 q8 bytes give the exact sub-block sum per row (|.| <= 16*9*128,
 * an int16); the sums of sub-blocks j and j+1 are paired into the int16 halves of each lane
 * and one vpdpwssd multiplies them by the rows' 2s+1 and adds them to the block sum S_b.
 * At block end: acc = acc + (d_row * dy) * (float)S_b; finally out = 0.125f * acc.
 * Up to 6 columns per pass (registers); 7 and 8 columns take two passes over the panel.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../ukernel.h"

#define IQ1M_INLINE static inline __attribute__((always_inline))

IQ1M_INLINE int32_t iq1m_ld32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* columns [0, NG) of cols, NG <= 6 (a0, a1, S, acc: 4*NG zmm registers) */
IQ1M_INLINE void iq1m_packed512_part(int64_t nb, const iq1m_packed_block *panel,
                                     const iq1m_block_q8K *const *cols, float *out,
                                     int64_t out_stride, const int NG) {
    const iq1m_block_q8K *cp[6];
#pragma GCC unroll 6
    for (int c = 0; c < NG; ++c) cp[c] = cols[c];
    const __m512i lo16 = _mm512_set1_epi32(0xffff);
    __m512 acc[6];
#pragma GCC unroll 6
    for (int c = 0; c < NG; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const iq1m_packed_block *pb = panel + b;
        int32_t bias[6][16];
#pragma GCC unroll 6
        for (int c = 0; c < NG; ++c) {
            const __m512i bs = _mm512_cvtepi16_epi32(
                _mm256_loadu_si256((const __m256i *)cp[c][b].bsums));
            _mm512_storeu_si512(bias[c], _mm512_mullo_epi32(bs, _mm512_set1_epi32(-9)));
        }
        __m512i S[6];
#pragma GCC unroll 6
        for (int c = 0; c < NG; ++c) S[c] = _mm512_setzero_si512();
        for (int j = 0; j < 16; j += 2) {
            /* int32 lane r: (2s+1 of sub-block j) | (2s+1 of sub-block j+1) << 16 */
            const __m512i m = _mm512_or_si512(
                _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)pb->mult[j])),
                _mm512_slli_epi32(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)pb->mult[j + 1])), 16));
            __m512i a0[6], a1[6];
#pragma GCC unroll 6
            for (int c = 0; c < NG; ++c) {
#if IQ1M_FAULT_IS(avx512_packed_bias)
                /* fault point avx512_packed_bias: the +9 bias of the last sub-block is not
                   removed (off-by-one): AVX-512 repacked path only */
                a0[c] = _mm512_set1_epi32(bias[c][j]);
                a1[c] = _mm512_set1_epi32(j + 1 == 15 ? 0 : bias[c][j + 1]);
#else
                a0[c] = _mm512_set1_epi32(bias[c][j]);
                a1[c] = _mm512_set1_epi32(bias[c][j + 1]);
#endif
            }
#pragma GCC unroll 4
            for (int t = 0; t < 4; ++t) {
                const __m512i w0 = _mm512_loadu_si512(pb->q[4 * j + t]);
                const __m512i w1 = _mm512_loadu_si512(pb->q[4 * j + 4 + t]);
#pragma GCC unroll 6
                for (int c = 0; c < NG; ++c) {
                    a0[c] = _mm512_dpbusd_epi32(
                        a0[c], w0, _mm512_set1_epi32(iq1m_ld32(cp[c][b].qs + 16 * j + 4 * t)));
                    a1[c] = _mm512_dpbusd_epi32(
                        a1[c], w1,
                        _mm512_set1_epi32(iq1m_ld32(cp[c][b].qs + 16 * j + 16 + 4 * t)));
                }
            }
            /* both sub-block sums fit int16: pair them into the halves of each lane, one
               vpdpwssd applies both multipliers */
#pragma GCC unroll 6
            for (int c = 0; c < NG; ++c)
                S[c] = _mm512_dpwssd_epi32(
                    S[c], _mm512_ternarylogic_epi32(a0[c], _mm512_slli_epi32(a1[c], 16), lo16, 0xEC),
                    m);
        }
        const __m512 d = _mm512_loadu_ps(pb->d);
#pragma GCC unroll 6
        for (int c = 0; c < NG; ++c) {
            const __m512 p = _mm512_mul_ps(d, _mm512_set1_ps(cp[c][b].d));
            acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(p, _mm512_cvtepi32_ps(S[c])));
        }
    }
#pragma GCC unroll 6
    for (int c = 0; c < NG; ++c)
        _mm512_storeu_ps(out + c * out_stride, _mm512_mul_ps(_mm512_set1_ps(0.125f), acc[c]));
}

IQ1M_INLINE void iq1m_packed512(int64_t nb, const iq1m_packed_block *panel,
                                const iq1m_block_q8K *const *cols, float *out,
                                int64_t out_stride, const int NC) {
    if (NC <= 6) {
        iq1m_packed512_part(nb, panel, cols, out, out_stride, NC);
    } else { /* 7 = 4 + 3, 8 = 4 + 4 */
        iq1m_packed512_part(nb, panel, cols, out, out_stride, 4);
        iq1m_packed512_part(nb, panel, cols + 4, out + 4 * out_stride, out_stride, NC - 4);
    }
}

#define IQ1M_DEF(NC)                                                                       \
    void iq1m_packed_16x##NC##_avx512vnni(int64_t nb, const iq1m_packed_block *panel,           \
                                     const iq1m_block_q8K *const *cols, float *out,        \
                                     int64_t out_stride) {                                 \
        iq1m_packed512(nb, panel, cols, out, out_stride, NC);                              \
    }
IQ1M_DEF(1)
IQ1M_DEF(2)
IQ1M_DEF(3)
IQ1M_DEF(4)
IQ1M_DEF(5)
IQ1M_DEF(6)
IQ1M_DEF(7)
IQ1M_DEF(8)
