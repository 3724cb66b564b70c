/* act.h: the contract's activation functions (docs/numerics.md, "Activation functions"). */
#ifndef IQ1M_ACT_H
#define IQ1M_ACT_H

#include <stdint.h>

#include "ukernel.h"

/* The scalar definition (act.c). */
/* e^a for a <= 0 (or NaN), binary64, exactly the contract's operation sequence. */
double iq1m_exp_nonpos(double a);
float iq1m_silu(float x);
float iq1m_gelu(float x);

/* out[i] = act(x[i]) (up == NULL) or up[i] * act(x[i]) for i < n; act is IQ1M_ACT_SILU or
 * IQ1M_ACT_GELU (must be valid); out may alias up or x. ukernel is an ISA's activation
 * micro-kernel (a kernel set's act entry; NULL: none): it does the prefix it handles and the
 * scalar definition the rest, with the same bits, so which one handles an element never
 * depends on where a call's range starts or ends. */
void iq1m_act_run(iq1m_act_ukernel_fn ukernel, int32_t act, const float *up, const float *x,
                  float *out, int64_t n);

#endif /* IQ1M_ACT_H */
