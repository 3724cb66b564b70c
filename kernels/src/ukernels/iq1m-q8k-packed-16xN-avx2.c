/* iq1m-q8k-packed-16xN-avx2.c: packed micro-kernels, one 16-row repacked panel x
 * N = 1..8 Q8_K columns, AVX2 + F16C.
 *
 * The panel is processed as two 8-row halves, columns in groups of up to 4 (16 ymm
 * registers).  One ymm of q[k/4] holds 4 weights (u8 w+9) of 8 rows.  Per column and
 * sub-block j: vpmaddubsw with the broadcast int32 of 4 q8 bytes gives 2 int16 per row; the
 * 4 steps of the sub-block are summed in int16 on top of a bias start value (-4*bsums[j],
 * -5*bsums[j]) that removes the +9 (each lane stays below 8*18*128 + 5*16*128 < 2^15), and
 * one vpmaddwd with the row's 2s+1 adds the exact sub-block sum to S_b.
 * At block end: acc = acc + (d_row * dy) * (float)S_b; finally out = 0.125f * acc.
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

/* columns [c0, c0+NG) of rows [8h, 8h+8) */
IQ1M_INLINE void iq1m_packed256_part(int64_t nb, const iq1m_packed_block *panel,
                                     const iq1m_block_q8K *const *cp, float *out,
                                     int64_t out_stride, const int h, const int NG) {
    __m256 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NG; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const iq1m_packed_block *pb = panel + b;
        /* bias pairs per column and sub-block: low int16 -4*bsum, high int16 -5*bsum */
        int32_t bias[4][16];
#pragma GCC unroll 4
        for (int c = 0; c < NG; ++c) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)cp[c][b].bsums);
            const __m256i lo = _mm256_mullo_epi16(bs, _mm256_set1_epi16(-4));
            const __m256i hi = _mm256_mullo_epi16(bs, _mm256_set1_epi16(-5));
            const __m256i u0 = _mm256_unpacklo_epi16(lo, hi); /* j 0..3 | 8..11 */
            const __m256i u1 = _mm256_unpackhi_epi16(lo, hi); /* j 4..7 | 12..15 */
            _mm256_storeu_si256((__m256i *)bias[c], _mm256_permute2x128_si256(u0, u1, 0x20));
            _mm256_storeu_si256((__m256i *)(bias[c] + 8), _mm256_permute2x128_si256(u0, u1, 0x31));
        }
        __m256i S[4];
#pragma GCC unroll 4
        for (int c = 0; c < NG; ++c) S[c] = _mm256_setzero_si256();
        for (int j = 0; j < 16; ++j) {
            /* int16 pairs (2s+1, 2s+1) of the 8 rows */
            const __m256i m = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(
                _mm_loadl_epi64((const __m128i *)(pb->mult[j] + 8 * h)),
                _mm_loadl_epi64((const __m128i *)(pb->mult[j] + 8 * h))));
            __m256i a[4];
#pragma GCC unroll 4
            for (int c = 0; c < NG; ++c) a[c] = _mm256_set1_epi32(bias[c][j]);
#pragma GCC unroll 4
            for (int t = 0; t < 4; ++t) {
                const __m256i wv = _mm256_loadu_si256((const __m256i *)pb->q[4 * j + t][8 * h]);
#pragma GCC unroll 4
                for (int c = 0; c < NG; ++c)
                    a[c] = _mm256_add_epi16(
                        a[c], _mm256_maddubs_epi16(
                                  wv, _mm256_set1_epi32(iq1m_ld32(cp[c][b].qs + 16 * j + 4 * t))));
            }
#pragma GCC unroll 4
            for (int c = 0; c < NG; ++c) S[c] = _mm256_add_epi32(S[c], _mm256_madd_epi16(a[c], m));
        }
        const __m256 d = _mm256_loadu_ps(pb->d + 8 * h);
#pragma GCC unroll 4
        for (int c = 0; c < NG; ++c) {
            const __m256 p = _mm256_mul_ps(d, _mm256_set1_ps(cp[c][b].d));
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(p, _mm256_cvtepi32_ps(S[c])));
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NG; ++c)
        _mm256_storeu_ps(out + c * out_stride + 8 * h,
                         _mm256_mul_ps(_mm256_set1_ps(0.125f), acc[c]));
}

IQ1M_INLINE void iq1m_packed256(int64_t nb, const iq1m_packed_block *panel,
                                const iq1m_block_q8K *const *cols, float *out,
                                int64_t out_stride, const int NC) {
    for (int h = 0; h < 2; ++h) {
        if (NC <= 4) {
            iq1m_packed256_part(nb, panel, cols, out, out_stride, h, NC);
        } else {
            iq1m_packed256_part(nb, panel, cols, out, out_stride, h, 4);
            iq1m_packed256_part(nb, panel, cols + 4, out + 4 * out_stride, out_stride, h,
                                NC - 4);
        }
    }
}

#define IQ1M_DEF(NC)                                                                       \
    void iq1m_packed_16x##NC##_avx2(int64_t nb, const iq1m_packed_block *panel,            \
                                    const iq1m_block_q8K *const *cols, float *out,         \
                                    int64_t out_stride) {                                  \
        iq1m_packed256(nb, panel, cols, out, out_stride, NC);                              \
    }
IQ1M_DEF(1)
IQ1M_DEF(2)
IQ1M_DEF(3)
IQ1M_DEF(4)
IQ1M_DEF(5)
IQ1M_DEF(6)
IQ1M_DEF(7)
IQ1M_DEF(8)
