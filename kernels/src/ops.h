/* ops.h: mul_mat, mul_mat_id and moe_up_gate on validated arguments. */
#ifndef IQ1M_OPS_H
#define IQ1M_OPS_H

#include <stdint.h>

#include "dispatch.h"

/* One column of an op's GEMMs: a (token, slot) pair routed to an expert. */
typedef struct {
    const iq1m_block_q8K *q8; /* nb Q8_K blocks of the token's activations */
    float *out;               /* the slot's output vector, indexed by weight row */
} iq1m_col;

/* Which columns each expert multiplies, in order of token then slot. */
typedef struct {
    int64_t n_experts;
    int64_t *off;     /* [n_experts + 1]: expert e's columns are cols[off[e] .. off[e + 1]) */
    iq1m_col *cols;   /* off[n_experts] used slots */
    float **unused;   /* output vectors of the n_unused slots with expert id -1 */
    int64_t n_unused;
} iq1m_expert_lists;

typedef struct {
    const iq1m_kernels *k;
    int n_threads;
    int32_t threshold;
    int32_t fused;
    int32_t prepacked; /* weights are iq1m_block_prepacked rows (80-byte blocks) */
} iq1m_op_config;

/* ids == NULL: plain mul_mat (n_experts = 1, top_k = 1, out [n_tokens][rows]).
 * w_gate == NULL: mul_mat_id; else moe_up_gate with act. Arguments already validated.
 * On success path_rows[0] and [1] receive the weight rows run on the direct and the repacked
 * path (per expert and matrix; see iq1m_last_path_rows); the caller zeroes them first.
 * Returns IQ1M_OK, IQ1M_ERR_NOMEM or IQ1M_ERR_THREADS (message set). */
int iq1m_op_run(const iq1m_op_config *cfg, const uint8_t *w_up, const uint8_t *w_gate,
                int64_t n_experts, int64_t rows, int64_t k, const float *x, int64_t n_tokens,
                const int32_t *ids, int64_t top_k, int32_t act, float *out,
                int64_t path_rows[2]);

#endif /* IQ1M_OPS_H */
