/* q8k.h: Q8_K quantization of activations (ggml quantize_row_q8_K_ref semantics). */
#ifndef IQ1M_Q8K_H
#define IQ1M_Q8K_H

#include <stdint.h>

#include "iq1m.h"

/* x: nb*256 finite floats -> nb blocks. Never fails (finiteness is checked by the caller). */
void iq1m_q8k_quantize(const float *x, iq1m_block_q8K *y, int64_t nb);

/* Index of the first non-finite value among n floats, or -1. */
int64_t iq1m_first_nonfinite(const float *x, int64_t n);

#endif /* IQ1M_Q8K_H */
