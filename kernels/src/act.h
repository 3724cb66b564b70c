/* act.h: the contract's activation functions (docs/numerics.md, "Activation functions"). */
#ifndef IQ1M_ACT_H
#define IQ1M_ACT_H

#include <stdint.h>

/* e^a for a <= 0 (or NaN), binary64, exactly the contract's operation sequence. */
double iq1m_exp_nonpos(double a);
float iq1m_silu(float x);
float iq1m_gelu(float x);
/* act: IQ1M_ACT_SILU or IQ1M_ACT_GELU (must be valid). y may equal x. */
void iq1m_act_apply(int32_t act, const float *x, float *y, int64_t n);
/* out[i] = up[i] * act(gate[i]); out may alias up or gate. */
void iq1m_act_mul(int32_t act, const float *up, const float *gate, float *out, int64_t n);

/* AVX-512 versions (act-avx512vnni.c): process the largest multiple of 8 elements with
 * bit-identical results and return how many were done; only call when AVX-512 VNNI runs. */
int64_t iq1m_act_apply_avx512(int32_t act, const float *x, float *y, int64_t n);
int64_t iq1m_act_mul_avx512(int32_t act, const float *up, const float *gate, float *out,
                            int64_t n);

#endif /* IQ1M_ACT_H */
