/* q8k.c: Q8_K quantizer, exactly ggml's quantize_row_q8_K_ref (docs/numerics.md):
 * max = signed value of the first element with the strictly largest |x|; iscale = -127.f/max;
 * q = min(127, round_half_even(iscale*x)) (float32 product, nearbyintf in the default
 * rounding mode); bsums = 16-element sums; d = 1.f/iscale; an all-zero block is all zero;
 * a tiny block (iscale = +-inf) has qs = bsums = 0 and d = 1.f/iscale, a signed zero. */
#include "q8k.h"

#include <math.h>
#include <string.h>

void iq1m_q8k_quantize(const float *x, iq1m_block_q8K *y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b) {
        const float *xb = x + b * IQ1M_QK_K;
        iq1m_block_q8K *yb = y + b;
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < IQ1M_QK_K; ++i) {
            float ax = fabsf(xb[i]);
            if (ax > amax) {
                amax = ax;
                max = xb[i];
            }
        }
        if (amax == 0.0f) {
            memset(yb, 0, sizeof *yb);
            continue;
        }
        const float iscale = -127.f / max;
        if (isinf(iscale)) { /* amax < 127/FLT_MAX: ggml's bytes are qs = 0, d = +-0 */
            memset(yb, 0, sizeof *yb);
            yb->d = 1.f / iscale;
            continue;
        }
        for (int i = 0; i < IQ1M_QK_K; ++i) {
            float v = nearbyintf(iscale * xb[i]);
            yb->qs[i] = (int8_t)(v > 127.0f ? 127 : (int)v);
        }
        for (int j = 0; j < IQ1M_QK_K / 16; ++j) {
            int sum = 0;
            for (int i = 0; i < 16; ++i) sum += yb->qs[16 * j + i];
            yb->bsums[j] = (int16_t)sum;
        }
        yb->d = 1.f / iscale;
    }
}

/* NaN and inf are the floats whose exponent bits are all set. Whole chunks are checked
 * branch-free, so the compiler vectorises them, and skipped while clean; from the first
 * chunk that is not, the scan is exact. */
#define NONFINITE_CHUNK 64

static int has_nonfinite(const float *x, int64_t n) {
    uint32_t any = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        memcpy(&u, x + i, sizeof u);
        any |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return any != 0;
}

int64_t iq1m_first_nonfinite(const float *x, int64_t n) {
    int64_t i = 0;
    while (i + NONFINITE_CHUNK <= n && !has_nonfinite(x + i, NONFINITE_CHUNK))
        i += NONFINITE_CHUNK;
    for (; i < n; ++i)
        if (!isfinite(x[i])) return i;
    return -1;
}
