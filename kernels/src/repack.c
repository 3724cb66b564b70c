/* repack.c: rows -> iq1m_packed_block panels, exactly the layout of docs/numerics.md:
 * d[r] (fp16 -> f32, 0 for padding), mult[j][r] = 2s+1 (1 for padding),
 * q[k/4][r][k%4] = w + 9 in [0, 18] (9, i.e. w = 0, for padding). Lossless. */
#include "repack.h"

#include <string.h>

#include "format.h"

void iq1m_repack_panel(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                       iq1m_packed_block *out) {
    const int64_t row_bytes = nb * IQ1M_BLOCK_BYTES;
    int8_t wt[IQ1M_QK_K];
    uint8_t mult[16];
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_packed_block *p = out + b;
        for (int r = 0; r < IQ1M_PACK_ROWS; ++r) {
            if (r >= n_rows) {
                p->d[r] = 0.0f;
                for (int j = 0; j < 16; ++j) p->mult[j][r] = 1;
                for (int k = 0; k < IQ1M_QK_K; ++k) p->q[k / 4][r][k % 4] = 9;
                continue;
            }
            const uint8_t *blk = w + (r0 + r) * row_bytes + b * IQ1M_BLOCK_BYTES;
            p->d[r] = iq1m_block_d(blk);
            iq1m_block_weights(blk, wt);
            iq1m_block_mults(blk, mult);
#if IQ1M_FAULT_IS(lossy_repack)
            /* FAULT: like upstream Q8_K_R8, (2s+1)*w must fit int8 max 126: |15*9| = 135 is
             * clamped by storing w = +-8 instead of +-9 where the multiplier is 15. */
            for (int k = 0; k < IQ1M_QK_K; ++k)
                if (mult[k / 16] * (wt[k] < 0 ? -wt[k] : wt[k]) > 126)
                    wt[k] = (int8_t)(wt[k] < 0 ? -8 : 8);
#endif
            for (int j = 0; j < 16; ++j) p->mult[j][r] = mult[j];
            for (int k = 0; k < IQ1M_QK_K; ++k) p->q[k / 4][r][k % 4] = (uint8_t)(wt[k] + 9);
        }
    }
}
