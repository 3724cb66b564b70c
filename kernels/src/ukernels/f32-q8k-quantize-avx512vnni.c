/* f32-q8k-quantize-avx512vnni.c: Q8_K quantization of activations, AVX-512 (F/BW/VL/DQ);
 * the same bytes as the scalar definition iq1m_q8k_quantize (src/q8k.c, ggml's
 * quantize_row_q8_K_ref): max = the signed value of the first element with the strictly
 * largest |x| (vector max of |x|, then the first lane equal to it); iscale = -127.f/max;
 * q = min(127, round_half_even(iscale*x)) (one float32 product, vrndscaleps to nearest
 * even: nearbyintf in the default rounding mode); bsums = 16-element sums; d = 1.f/iscale.
 * All-zero and tiny (iscale = +-inf) blocks take the scalar definition. Input is finite
 * (checked by the caller). */
#include <immintrin.h>
#include <stdint.h>

#include "../q8k.h"

void iq1m_q8k_quantize_avx512vnni(const float *x, iq1m_block_q8K *y, int64_t nb);
void iq1m_q8k_quantize_avx512vnni(const float *x, iq1m_block_q8K *y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b) {
        const float *xb = x + b * IQ1M_QK_K;
        iq1m_block_q8K *yb = y + b;
        __m512 v[16];
        __m512 am = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
            v[i] = _mm512_loadu_ps(xb + 16 * i);
            am = _mm512_max_ps(am, _mm512_abs_ps(v[i]));
        }
        const float amax = _mm512_reduce_max_ps(am);
        if (amax == 0.0f) {
            iq1m_q8k_quantize(xb, yb, 1);
            continue;
        }
        const __m512 amv = _mm512_set1_ps(amax);
        int first = -1;
        for (int i = 0; i < 16 && first < 0; ++i) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(v[i]), amv, _CMP_EQ_OQ);
            if (m) first = 16 * i + __builtin_ctz((unsigned)m);
        }
        const float iscale = -127.f / xb[first];
        if (__builtin_isinf(iscale)) {
            iq1m_q8k_quantize(xb, yb, 1);
            continue;
        }
        const __m512 is = _mm512_set1_ps(iscale);
        const __m512i lim = _mm512_set1_epi32(127);
        int32_t sums[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
            const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(is, v[i]),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(r), lim);
            _mm_storeu_si128((__m128i *)(yb->qs + 16 * i), _mm512_cvtepi32_epi8(q));
            sums[i] = _mm512_reduce_add_epi32(q);
        }
        _mm256_storeu_si256((__m256i *)yb->bsums,
                            _mm512_cvtepi32_epi16(_mm512_loadu_si512(sums)));
        yb->d = 1.f / iscale;
    }
}
