/* repack.c: rows -> iq1m_packed_block panels, exactly the layout of docs/numerics.md:
 * d[r] (fp16 -> f32, 0 for padding), mult[j][r] = 2s+1 (1 for padding),
 * q[k/4][r][k%4] = w + 9 in [0, 18] (9, i.e. w = 0, for padding). Lossless. */
#include "repack.h"

#include <string.h>

#include "faults.h"
#include "format.h"

/* 8 weights of one group as bytes w + 9 = 8*(grid+1) + 1 + sign, from the uint64 grid word
 * (bytes 0xff, 0x00, 0x01): grid+1 per byte without carries (SWAR), times 8, plus 0 or 2. */
static inline uint64_t group_bytes(int idx, int sign) {
    const uint64_t g = iq1m_grid_u64[idx];
    const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full, ones = 0x0101010101010101ull;
    const uint64_t g1 = ((g & lo7) + ones) ^ (g & ~lo7); /* bytewise g + 1 in {0, 1, 2} */
    return (g1 << 3) + (sign > 0 ? 2 * ones : 0);
}

/* a padding row: d = 0, 2s+1 = 1, w = 0 */
static void pad_row(iq1m_packed_block *p, int r) {
    p->d[r] = 0.0f;
    for (int j = 0; j < 16; ++j) p->mult[j][r] = 1;
    for (int k4 = 0; k4 < IQ1M_QK_K / 4; ++k4) memset(p->q[k4][r], 9, 4);
}

/* d and 2s+1 of row r from an 8-byte IQ1_M scales field */
static void scale_row(iq1m_packed_block *p, int r, const uint8_t *scales) {
    p->d[r] = iq1m_fp16_to_f32(iq1m_scales_d_bits(scales));
    for (int j = 0; j < 16; ++j) p->mult[j][r] = (uint8_t)iq1m_scales_mult(scales, j);
}

void iq1m_repack_panel(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                       iq1m_packed_block *out) {
    const int64_t row_bytes = nb * IQ1M_BLOCK_BYTES;
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_packed_block *p = out + b;
        for (int r = 0; r < IQ1M_PACK_ROWS; ++r) {
            if (r >= n_rows) {
                pad_row(p, r);
                continue;
            }
            const uint8_t *blk = w + (r0 + r) * row_bytes + b * IQ1M_BLOCK_BYTES;
            scale_row(p, r, blk + 48);
            for (int g = 0; g < 32; ++g) {
                const uint64_t v = group_bytes(iq1m_block_group_index(blk, g),
                                               iq1m_block_group_sign(blk, g));
                memcpy(p->q[2 * g][r], &v, 4); /* little-endian: weights 8g..8g+3 */
                memcpy(p->q[2 * g + 1][r], (const uint8_t *)&v + 4, 4);
            }
            iq1m_fault_repacked_row(p, r);
        }
    }
}

void iq1m_repack_panel_prepacked(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                 iq1m_packed_block *out) {
    const iq1m_block_prepacked *blocks = (const iq1m_block_prepacked *)(const void *)w;
    int8_t wv[IQ1M_QK_K];
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_packed_block *p = out + b;
        for (int r = 0; r < IQ1M_PACK_ROWS; ++r) {
            if (r >= n_rows) {
                pad_row(p, r);
                continue;
            }
            const iq1m_block_prepacked *blk = blocks + (r0 + r) * nb + b;
            scale_row(p, r, blk->scales);
            iq1m_prepacked_weights(blk, wv);
            for (int k = 0; k < IQ1M_QK_K; ++k) p->q[k / 4][r][k % 4] = (uint8_t)(wv[k] + 9);
        }
    }
}
