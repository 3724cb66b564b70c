/* f32-act-avx512vnni.c: the activation micro-kernel of the avx512vnni table: SiLU / GELU 8
 * lanes at a time with exactly the operation sequence of the scalar definition (src/act.c:
 * binary64, no FMA; the build uses -ffp-contract=off, which GCC also applies to intrinsics),
 * so every lane gives the scalar function's bits. Compiled with the AVX-512 flags; reached
 * only through the table, i.e. when dispatch reports AVX-512 VNNI (which implies F, DQ, VL)
 * and options.isa allows it. */
#include <immintrin.h>

#include "../ukernel.h"

#define LOG2E 1.4426950408889634
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define TWO_K0 1.5957691216057308

static inline __m512d exp_nonpos8(__m512d a) {
    const __mmask8 under = _mm512_cmp_pd_mask(a, _mm512_set1_pd(-746.0), _CMP_LT_OQ);
    const __m512d sh = _mm512_set1_pd(6755399441055744.0);
    const __m512d t = _mm512_mul_pd(a, _mm512_set1_pd(LOG2E));
    const __m512d n = _mm512_sub_pd(_mm512_add_pd(t, sh), sh);
    const __m512d r = _mm512_sub_pd(_mm512_sub_pd(a, _mm512_mul_pd(n, _mm512_set1_pd(LN2_HI))),
                                    _mm512_mul_pd(n, _mm512_set1_pd(LN2_LO)));
    __m512d p = _mm512_set1_pd(1.0 / 6227020800.0);
#define STEP(c) p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(c))
    STEP(1.0 / 479001600.0);
    STEP(1.0 / 39916800.0);
    STEP(1.0 / 3628800.0);
    STEP(1.0 / 362880.0);
    STEP(1.0 / 40320.0);
    STEP(1.0 / 5040.0);
    STEP(1.0 / 720.0);
    STEP(1.0 / 120.0);
    STEP(1.0 / 24.0);
    STEP(1.0 / 6.0);
    STEP(1.0 / 2.0);
    STEP(1.0);
    STEP(1.0);
#undef STEP
    /* n is an exact integer in [-1077, 0] on the lanes that matter; others are masked */
    const __m512d nc = _mm512_max_pd(n, _mm512_set1_pd(-1100.0));
    const __m512i ni = _mm512_cvtpd_epi64(nc);
    const __m512i k1 = _mm512_srai_epi64(ni, 1);
    const __m512i k2 = _mm512_sub_epi64(ni, k1);
    const __m512i bias = _mm512_set1_epi64(1023);
    const __m512d s1 = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(k1, bias), 52));
    const __m512d s2 = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(k2, bias), 52));
    const __m512d e = _mm512_mul_pd(_mm512_mul_pd(p, s1), s2);
    return _mm512_mask_blend_pd(under, e, _mm512_setzero_pd());
}

/* 8 floats -> act, NaN lanes return the input. */
static inline __m256 act8(int32_t act, __m256 xf) {
    const __m512d X = _mm512_cvtps_pd(xf);
    const __m512d zero = _mm512_setzero_pd();
    const __m512d sign = _mm512_set1_pd(-0.0);
    __m512d z = X;
    if (act == IQ1M_ACT_GELU)
        z = _mm512_mul_pd(_mm512_set1_pd(TWO_K0),
                          _mm512_add_pd(X, _mm512_mul_pd(_mm512_set1_pd(0.044715),
                                                         _mm512_mul_pd(_mm512_mul_pd(X, X), X))));
    const __m512d e = exp_nonpos8(_mm512_or_pd(z, sign)); /* -|z| */
#if IQ1M_FAULT_IS(avx512_act_last_lane)
    /* fault point avx512_act_last_lane: the z >= 0 mask built for 7 lanes, so lane 7 of
       every 8 takes the z < 0 numerator X*e: x * sigmoid(-z) where z >= 0, AVX-512 only */
    const __mmask8 ge = _mm512_cmp_pd_mask(z, zero, _CMP_GE_OQ) & 0x7f;
#else
    const __mmask8 ge = _mm512_cmp_pd_mask(z, zero, _CMP_GE_OQ);
#endif
    const __mmask8 ez = _mm512_cmp_pd_mask(e, zero, _CMP_EQ_OQ);
    __m512d num = _mm512_mul_pd(X, e);
    num = _mm512_mask_blend_pd(ez, num, sign);
    num = _mm512_mask_blend_pd(ge, num, X);
    const __m512d res = _mm512_div_pd(num, _mm512_add_pd(_mm512_set1_pd(1.0), e));
    const __m256 rf = _mm512_cvtpd_ps(res);
    const __mmask8 nan = _mm256_cmp_ps_mask(xf, xf, _CMP_UNORD_Q);
    return _mm256_mask_blend_ps(nan, rf, xf);
}

int64_t iq1m_act_avx512vnni(int32_t act, const float *up, const float *x, float *out,
                            int64_t n);
int64_t iq1m_act_avx512vnni(int32_t act, const float *up, const float *x, float *out,
                            int64_t n) {
    int64_t i = 0;
    if (up) {
        for (; i + 8 <= n; i += 8) {
            const __m256 a = act8(act, _mm256_loadu_ps(x + i));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(up + i), a));
        }
    } else {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, act8(act, _mm256_loadu_ps(x + i)));
    }
    return i;
}
