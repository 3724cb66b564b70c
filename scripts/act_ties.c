/* act_ties.c: every float32 input x with 2^-4 <= |x| < 128 whose SiLU or GELU binary64
 * value (the contract's sequence, kernels/src/act.c, before the one rounding to float32)
 * lies within 2^LIMIT_LOG2 float32 ulps of a rounding midpoint. Built and run by
 * scripts/gen_act_edges.py, which then evaluates the candidates with the numpy reference.
 *
 * Why a scan of every input: the last terms of the exp polynomial (C11, C12) move the
 * binary64 value by 2^-25 float32 ulps or less, so they decide the rounding of about one
 * input in 2^24; a random sample of tens of millions finds none. Below 2^-4 the reduced
 * argument is too small for those terms to matter.
 *
 *     act_ties silu|gelu LIMIT_LOG2   prints "0x%08x distance" lines */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"

#define TWO_K0 1.5957691216057308

static double binary64(int gelu, float x) {
    double X = (double)x;
    double z = gelu ? TWO_K0 * (X + 0.044715 * ((X * X) * X)) : X;
    double e = iq1m_exp_nonpos(z >= 0 ? -z : z);
    double num = z >= 0 ? X : (e == 0.0 ? -0.0 : X * e);
    return num / (1.0 + e);
}

/* |v - nearest float32 rounding midpoint| in ulps of the float32 result */
static double tie_distance(double v) {
    float f = (float)v;
    if (isinf(f)) return 1.0;
    float other = nextafterf(f, (double)f > v ? -INFINITY : INFINITY);
    double step = fabs((double)other - (double)f);
    double mid = ((double)f + (double)other) / 2;
    return fabs(v - mid) / step;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "silu") && strcmp(argv[1], "gelu"))) {
        fprintf(stderr, "usage: %s silu|gelu LIMIT_LOG2\n", argv[0]);
        return 2;
    }
    int gelu = strcmp(argv[1], "gelu") == 0;
    double limit = ldexp(1.0, atoi(argv[2]));
    const uint32_t from = 0x3d800000u, below = 0x43000000u; /* bit patterns of 2^-4, 128.0f */
    for (uint32_t sign = 0; sign <= 1; ++sign)
        for (uint32_t mag = from; mag < below; ++mag) {
            uint32_t bits = mag | sign << 31;
            float x;
            memcpy(&x, &bits, sizeof x);
            double d = tie_distance(binary64(gelu, x));
            if (d < limit) printf("0x%08x %.3e\n", bits, d);
        }
    return 0;
}
