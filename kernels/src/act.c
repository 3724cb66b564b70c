/* act.c: SiLU and GELU (tanh form) per docs/numerics.md: binary64, the exact operation
 * sequence of the contract, one rounding to float32 at the end. No libm exp, no FMA
 * (the build uses -ffp-contract=off); rint is done with the 1.5*2^52 trick, which rounds
 * half to even in the default rounding mode for |t| < 2^51 (here |t| <= 1077). The SIMD
 * versions are micro-kernels of the ISA tables (ukernels/f32-act-*.c), chosen by
 * options.isa like every other kernel; iq1m_act_run combines one with this definition. */
#include "act.h"

#include <string.h>

#include "iq1m.h"

#define LOG2E 1.4426950408889634
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define TWO_K0 1.5957691216057308

static const double C2 = 1.0 / 2.0, C3 = 1.0 / 6.0, C4 = 1.0 / 24.0, C5 = 1.0 / 120.0,
                    C6 = 1.0 / 720.0, C7 = 1.0 / 5040.0, C8 = 1.0 / 40320.0,
                    C9 = 1.0 / 362880.0, C10 = 1.0 / 3628800.0, C11 = 1.0 / 39916800.0,
                    C12 = 1.0 / 479001600.0, C13 = 1.0 / 6227020800.0;

static inline double pow2i(int k) { /* 2^k for k in [-1022, 1023] */
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

double iq1m_exp_nonpos(double a) {
    if (a < -746.0) return 0.0;
    if (a != a) return a;
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = a * LOG2E;
    double n = (t + shifter) - shifter;
    double r = (a - n * LN2_HI) - n * LN2_LO;
    double p = C13;
    p = p * r + C12;
    p = p * r + C11;
    p = p * r + C10;
    p = p * r + C9;
    p = p * r + C8;
    p = p * r + C7;
    p = p * r + C6;
    p = p * r + C5;
    p = p * r + C4;
    p = p * r + C3;
    p = p * r + C2;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int ni = (int)n;
    int k1 = ni >> 1; /* floor(n/2): arithmetic shift of a non-positive int */
    int k2 = ni - k1;
    return (p * pow2i(k1)) * pow2i(k2);
}

float iq1m_silu(float x) {
    double X = (double)x;
    if (X != X) return x;
    double e = iq1m_exp_nonpos(X >= 0 ? -X : X);
    double num = X >= 0 ? X : (e == 0.0 ? -0.0 : X * e);
    return (float)(num / (1.0 + e));
}

float iq1m_gelu(float x) {
    double X = (double)x;
    if (X != X) return x;
    double z = TWO_K0 * (X + 0.044715 * ((X * X) * X));
    double e = iq1m_exp_nonpos(z >= 0 ? -z : z);
    double num = z >= 0 ? X : (e == 0.0 ? -0.0 : X * e);
    return (float)(num / (1.0 + e));
}

void iq1m_act_run(iq1m_act_ukernel_fn ukernel, int32_t act, const float *up, const float *x,
                  float *out, int64_t n) {
    int64_t i = ukernel ? ukernel(act, up, x, out, n) : 0;
    if (act == IQ1M_ACT_GELU) {
        if (up)
            for (; i < n; ++i) out[i] = up[i] * iq1m_gelu(x[i]);
        else
            for (; i < n; ++i) out[i] = iq1m_gelu(x[i]);
    } else {
        if (up)
            for (; i < n; ++i) out[i] = up[i] * iq1m_silu(x[i]);
        else
            for (; i < n; ++i) out[i] = iq1m_silu(x[i]);
    }
}
