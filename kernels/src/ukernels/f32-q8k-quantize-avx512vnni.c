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

/* lane i = the sum of the 16 lanes of q[i]: a transpose-and-add tree (45 instructions, not
   16 separate reductions of 8 each) */
static inline __attribute__((always_inline)) __m512i iq1m_sum16(const __m512i q[16]) {
    __m512i a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) /* 128-bit lane L: partial sums of q[2i], q[2i+1], twice */
        a[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(q[2 * i], q[2 * i + 1]),
                                _mm512_unpackhi_epi32(q[2 * i], q[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) /* lane L: the lane-L sums of q[4i] .. q[4i+3] */
        b[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]),
                                _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) /* lanes: b[2i] L0+L1, L2+L3, then b[2i+1] L0+L1, L2+L3 */
        c[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(b[2 * i], b[2 * i + 1], 0xDD));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(c[0], c[1], 0x88),
                            _mm512_shuffle_i32x4(c[0], c[1], 0xDD));
}

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
        __m512i q[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
            const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(is, v[i]),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q[i] = _mm512_min_epi32(_mm512_cvtps_epi32(r), lim);
            _mm_storeu_si128((__m128i *)(yb->qs + 16 * i), _mm512_cvtepi32_epi8(q[i]));
        }
        _mm256_storeu_si256((__m256i *)yb->bsums, _mm512_cvtepi32_epi16(iq1m_sum16(q)));
        yb->d = 1.f / iscale;
    }
}
