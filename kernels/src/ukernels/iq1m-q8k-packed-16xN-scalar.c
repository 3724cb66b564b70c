/* iq1m-q8k-packed-16xN-scalar.c: the readable definition of the repacked micro-kernel.
 * One 16-row panel (iq1m_packed_block per super-block, weights stored as w + 9) against nc
 * Q8_K columns. Per sub-block j: sum q8*(w+9) - 9*bsums[j] = sum q8*w (exact), times 2s+1;
 * then the same float32 sequence as the direct path, so both agree bit for bit. */
#include "../ukernel.h"

static inline void packed_16xN(int nc, int64_t nb, const iq1m_packed_block *panel,
                               const iq1m_block_q8K *const *cols, float *out,
                               int64_t out_stride) {
    float acc[IQ1M_MAX_NC][IQ1M_PACK_ROWS];
    for (int c = 0; c < nc; ++c)
        for (int r = 0; r < IQ1M_PACK_ROWS; ++r) acc[c][r] = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const iq1m_packed_block *p = panel + b;
        for (int c = 0; c < nc; ++c) {
            const iq1m_block_q8K *y = cols[c] + b;
            int32_t s[IQ1M_PACK_ROWS] = {0};
            for (int j = 0; j < 16; ++j) {
                /* sj[r] = sum over the 16 weights of sub-block j of q8 * (w + 9) */
                int32_t sj[IQ1M_PACK_ROWS] = {0};
                for (int k4 = 4 * j; k4 < 4 * j + 4; ++k4) {
                    const int32_t y0 = y->qs[4 * k4], y1 = y->qs[4 * k4 + 1],
                                  y2 = y->qs[4 * k4 + 2], y3 = y->qs[4 * k4 + 3];
                    const uint8_t(*q)[4] = p->q[k4];
                    for (int r = 0; r < IQ1M_PACK_ROWS; ++r)
                        sj[r] += y0 * q[r][0] + y1 * q[r][1] + y2 * q[r][2] + y3 * q[r][3];
                }
                const int32_t bias = 9 * (int32_t)y->bsums[j]; /* removes the +9 */
                for (int r = 0; r < IQ1M_PACK_ROWS; ++r)
                    s[r] += (int32_t)p->mult[j][r] * (sj[r] - bias);
            }
            for (int r = 0; r < IQ1M_PACK_ROWS; ++r)
                acc[c][r] = acc[c][r] + (p->d[r] * y->d) * (float)s[r];
        }
    }
    for (int c = 0; c < nc; ++c)
        for (int r = 0; r < IQ1M_PACK_ROWS; ++r) out[c * out_stride + r] = 0.125f * acc[c][r];
}

#define DEFINE_PACKED(N)                                                                   \
    void iq1m_packed_16x##N##_scalar(int64_t nb, const iq1m_packed_block *panel,           \
                                     const iq1m_block_q8K *const *cols, float *out,        \
                                     int64_t out_stride) {                                 \
        packed_16xN(N, nb, panel, cols, out, out_stride);                                  \
    }

DEFINE_PACKED(1)
DEFINE_PACKED(2)
DEFINE_PACKED(3)
DEFINE_PACKED(4)
DEFINE_PACKED(5)
DEFINE_PACKED(6)
DEFINE_PACKED(7)
DEFINE_PACKED(8)
