/* iq1m-panel-scales-avx512vnni.h: the scale part of a 16-row panel block, shared by the
 * AVX-512 repacks (from IQ1_M rows and from prepacked rows): d[r] and mult[j][r] from the
 * rows' four scale words, held column-wise (lane r = row r). Include after <immintrin.h>. */
#ifndef IQ1M_PANEL_SCALES_AVX512VNNI_H
#define IQ1M_PANEL_SCALES_AVX512VNNI_H

#include "../ukernel.h"

/* S0 lane r = scale words 0 (low half) and 1 of row r; S1 = words 2 and 3 */
static inline __attribute__((always_inline)) void iq1m_panel_scales_avx512(__m512i S0,
                                                                          __m512i S1,
                                                                          iq1m_packed_block *p) {
    const __m512i m14 = _mm512_set1_epi32(14), one = _mm512_set1_epi32(1);
    /* super-scale: the top nibbles of the four words (fp16 -> f32 with vcvtph2ps: exact) */
    const __m512i bits = _mm512_or_si512(
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(S0, 12), _mm512_set1_epi32(0xf)),
                        _mm512_and_si512(_mm512_srli_epi32(S0, 24), _mm512_set1_epi32(0xf0))),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(S1, 4), _mm512_set1_epi32(0xf00)),
                        _mm512_and_si512(_mm512_srli_epi32(S1, 16), _mm512_set1_epi32(0xf000))));
    _mm512_storeu_ps(p->d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(bits)));
    /* 2s+1 of sub-block j: field at bit 16*((j%8)/4) + 3*(j%4) of S0 (j < 8) or S1 */
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
        const __m512i src = j < 8 ? S0 : S1;
        const int sh = 16 * ((j % 8) / 4) + 3 * (j % 4);
        const __m512i t = sh ? _mm512_srli_epi32(src, sh - 1) : _mm512_slli_epi32(src, 1);
        _mm_storeu_si128((__m128i *)p->mult[j],
                         _mm512_cvtepi32_epi8(_mm512_ternarylogic_epi32(t, m14, one, 0xEA)));
    }
}

#endif /* IQ1M_PANEL_SCALES_AVX512VNNI_H */
