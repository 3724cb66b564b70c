/* iq1m-q8k-direct-1xN-scalar.c: the readable definition of the direct micro-kernel.
 * One IQ1_M weight row (nb blocks, decoded on the fly) against nc Q8_K columns:
 *   S_b = sum_i q8[i] * (2s+1) * (8*grid + sign)   exact int32
 *   acc = acc + (dw * dy) * (float)S_b              float32, block order
 *   out[c * out_stride] = 0.125f * acc
 * The iq1m_prepacked_ kernels read rows of prepacked blocks (iq1m_block_prepacked): same
 * values, same bits. */
#include "../format.h"
#include "../ukernel.h"

static inline void direct_1xN(int nc, int prepacked, int64_t nb, const uint8_t *w_row,
                              const iq1m_block_q8K *const *cols, float *out,
                              int64_t out_stride) {
    float acc[IQ1M_MAX_NC];
    int8_t w[IQ1M_QK_K];
    uint8_t mult[16];
    for (int c = 0; c < nc; ++c) acc[c] = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        float dw;
        if (prepacked) {
            const iq1m_block_prepacked *blk = (const iq1m_block_prepacked *)(const void *)w_row + b;
            dw = iq1m_fp16_to_f32(iq1m_scales_d_bits(blk->scales));
            iq1m_prepacked_weights(blk, w);
            for (int j = 0; j < 16; ++j) mult[j] = (uint8_t)iq1m_scales_mult(blk->scales, j);
        } else {
            const uint8_t *blk = w_row + b * IQ1M_BLOCK_BYTES;
            dw = iq1m_block_d(blk);
            iq1m_block_weights(blk, w);
            iq1m_block_mults(blk, mult);
        }
        for (int c = 0; c < nc; ++c) {
            const iq1m_block_q8K *y = cols[c] + b;
            int32_t s = 0;
            for (int j = 0; j < 16; ++j) {
                int32_t sj = 0;
                for (int i = 0; i < 16; ++i) sj += (int32_t)y->qs[16 * j + i] * w[16 * j + i];
                s += (int32_t)mult[j] * sj;
            }
            acc[c] = acc[c] + (dw * y->d) * (float)s;
        }
    }
    for (int c = 0; c < nc; ++c) out[c * out_stride] = 0.125f * acc[c];
}

#define DEFINE_DIRECT(N)                                                                   \
    void iq1m_direct_1x##N##_scalar(int64_t nb, const uint8_t *w_row,                      \
                                    const iq1m_block_q8K *const *cols, float *out,         \
                                    int64_t out_stride) {                                  \
        direct_1xN(N, 0, nb, w_row, cols, out, out_stride);                                \
    }                                                                                      \
    void iq1m_prepacked_direct_1x##N##_scalar(int64_t nb, const uint8_t *w_row,            \
                                              const iq1m_block_q8K *const *cols,           \
                                              float *out, int64_t out_stride) {            \
        direct_1xN(N, 1, nb, w_row, cols, out, out_stride);                                \
    }

DEFINE_DIRECT(1)
DEFINE_DIRECT(2)
DEFINE_DIRECT(3)
DEFINE_DIRECT(4)
DEFINE_DIRECT(5)
DEFINE_DIRECT(6)
DEFINE_DIRECT(7)
DEFINE_DIRECT(8)
