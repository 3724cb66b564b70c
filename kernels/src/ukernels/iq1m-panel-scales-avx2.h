/* iq1m-panel-scales-avx2.h: the scale part of a 16-row panel block, shared by the AVX2
 * repacks (from IQ1_M rows and from prepacked rows): d[r] and mult[j][r] from the rows'
 * four scale words, held column-wise in two halves (lane r = row 8*half + r). Include
 * after <immintrin.h>. */
#ifndef IQ1M_PANEL_SCALES_AVX2_H
#define IQ1M_PANEL_SCALES_AVX2_H

#include "../ukernel.h"

/* d[8*half .. 8*half + 7] from S0 (words 0 and 1 of each row) and S1 (words 2 and 3) */
static inline __attribute__((always_inline)) void iq1m_panel_d_avx2(__m256i S0, __m256i S1,
                                                                   int half,
                                                                   iq1m_packed_block *p) {
    const __m256i bits = _mm256_or_si256(
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(S0, 12), _mm256_set1_epi32(0xf)),
                        _mm256_and_si256(_mm256_srli_epi32(S0, 24), _mm256_set1_epi32(0xf0))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(S1, 4), _mm256_set1_epi32(0xf00)),
                        _mm256_and_si256(_mm256_srli_epi32(S1, 16), _mm256_set1_epi32(0xf000))));
    /* dwords -> 8 halves (values < 2^16: packus is exact); fp16 -> f32 is exact */
    const __m128i h16 = _mm_packus_epi32(_mm256_castsi256_si128(bits),
                                         _mm256_extracti128_si256(bits, 1));
    _mm256_storeu_ps(p->d + 8 * half, _mm256_cvtph_ps(h16));
}

/* mult[j][r] = 2s+1 of all 16 rows from both halves' scale words */
static inline __attribute__((always_inline)) void iq1m_panel_mult_avx2(const __m256i S0[2],
                                                                      const __m256i S1[2],
                                                                      iq1m_packed_block *p) {
    const __m256i m7 = _mm256_set1_epi32(7);
    /* 2s+1 of sub-block j: field at bit 16*((j%8)/4) + 3*(j%4) of S0 (j < 8) or S1 */
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
        const int sh = 16 * ((j % 8) / 4) + 3 * (j % 4);
        __m256i t[2];
        for (int half = 0; half < 2; ++half) {
            const __m256i src = j < 8 ? S0[half] : S1[half];
            t[half] = _mm256_or_si256(
                _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(src, sh), m7), 1),
                _mm256_set1_epi32(1));
        }
        /* 16 dwords (< 16) -> 16 bytes in row order */
        const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(t[0], t[1]), 0xD8);
        const __m128i b8 = _mm_packus_epi16(_mm256_castsi256_si128(w16),
                                            _mm256_extracti128_si256(w16, 1));
        _mm_storeu_si128((__m128i *)p->mult[j], b8);
    }
}

#endif /* IQ1M_PANEL_SCALES_AVX2_H */
