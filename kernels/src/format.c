/* format.c: IQ1_M field decoding, exact fp16 -> f32, dequantization and the plain scalar
 * dot product (docs/numerics.md, "Formats" and "GEMM"). */
#include "format.h"

#include "faults.h"

float iq1m_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);       /* inf / nan (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                    /* +-0 */
    } else {
        /* subnormal: value man * 2^-24; normalise into a float32 normal */
        int e = -1;
        do {
            man <<= 1;
            ++e;
        } while (!(man & 0x400u));
        man &= 0x3ffu;
        bits = sign | ((uint32_t)(112 - e) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t iq1m_scales_d_bits(const uint8_t *scales) {
    uint16_t sc[4];
    iq1m_scales_words(scales, sc);
    return iq1m_fault_scale_d_bits(sc, (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                                  ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)));
}

void iq1m_block_weights(const uint8_t *blk, int8_t w[IQ1M_QK_K]) {
    for (int g = 0; g < 32; ++g) {
        const int8_t *gv = iq1m_grid_values(iq1m_block_group_index(blk, g));
        int sign = iq1m_block_group_sign(blk, g);
        for (int i = 0; i < 8; ++i) w[8 * g + i] = (int8_t)(8 * gv[i] + sign);
    }
}

void iq1m_block_mults(const uint8_t *blk, uint8_t mult[16]) {
    for (int j = 0; j < 16; ++j) mult[j] = (uint8_t)iq1m_block_mult(blk, j);
}

void iq1m_dequantize_blocks(const uint8_t *blocks, int64_t nb, float *y) {
    int8_t w[IQ1M_QK_K];
    uint8_t mult[16];
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t *blk = blocks + b * IQ1M_BLOCK_BYTES;
        float d = iq1m_block_d(blk);
        iq1m_block_weights(blk, w);
        iq1m_block_mults(blk, mult);
        for (int i = 0; i < IQ1M_QK_K; ++i)
            y[b * IQ1M_QK_K + i] = d * (float)(mult[i / 16] * w[i]) * 0.125f;
    }
}

int32_t iq1m_block_dot_int(const uint8_t *blk, const iq1m_block_q8K *y) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) {
        int32_t sj = 0;
        for (int h = 0; h < 2; ++h) {
            int g = 2 * j + h;
            const int8_t *gv = iq1m_grid_values(iq1m_block_group_index(blk, g));
            int sign = iq1m_block_group_sign(blk, g);
            const int8_t *q = y->qs + 8 * g;
            for (int i = 0; i < 8; ++i) sj += (int32_t)q[i] * (8 * gv[i] + sign);
        }
        s += iq1m_block_mult(blk, j) * sj;
    }
    return s;
}

float iq1m_vec_dot_scalar(int64_t nb, const uint8_t *w_row, const iq1m_block_q8K *y) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t *blk = w_row + b * IQ1M_BLOCK_BYTES;
        float s = (float)iq1m_block_dot_int(blk, y + b);
        acc = acc + (iq1m_block_d(blk) * y[b].d) * s;
    }
    return 0.125f * acc;
}

/* ---- the prepacked encoding ---- */

void iq1m_block_to_prepacked(const uint8_t *blk, iq1m_block_prepacked *out) {
    /* Group g's 8 weights are k = 8g..8g+7: q2 bytes 8*(g%8)..+7 at bits 2*(g/8), i.e. one
       shifted 64-bit OR of the group's bytes grid+1 into q2 word g%8 (little-endian). */
    uint64_t q2[8] = {0};
    uint8_t plus[4] = {0};
    const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full, ones = 0x0101010101010101ull;
    for (int g = 0; g < 32; ++g) {
        const uint64_t v = iq1m_grid_u64[iq1m_block_group_index(blk, g)]; /* bytes -1, 0, 1 */
        const uint64_t g1 = ((v & lo7) + ones) ^ (v & ~lo7);              /* bytewise + 1 */
        q2[g % 8] |= g1 << (2 * (g / 8));
        if (iq1m_block_group_sign(blk, g) > 0) plus[g / 8] |= (uint8_t)(1u << (g % 8));
    }
    memset(out, 0, sizeof *out);
    memcpy(out->q2, q2, sizeof q2);
    memcpy(out->plus, plus, sizeof plus);
    memcpy(out->scales, blk + 48, 8);
}

void iq1m_prepacked_weights(const iq1m_block_prepacked *b, int8_t w[IQ1M_QK_K]) {
    for (int k = 0; k < IQ1M_QK_K; ++k) {
        const int grid = ((b->q2[k % 64] >> (2 * (k / 64))) & 3) - 1;
        const int g = k / 8;
        w[k] = (int8_t)(8 * grid + ((b->plus[g / 8] >> (g % 8)) & 1 ? 1 : -1));
    }
}

int32_t iq1m_prepacked_dot_int(const iq1m_block_prepacked *b, const iq1m_block_q8K *y) {
    int8_t w[IQ1M_QK_K];
    iq1m_prepacked_weights(b, w);
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) {
        int32_t sj = 0;
        for (int i = 0; i < 16; ++i) sj += (int32_t)y->qs[16 * j + i] * w[16 * j + i];
        s += iq1m_scales_mult(b->scales, j) * sj;
    }
    return s;
}

float iq1m_vec_dot_prepacked_scalar(int64_t nb, const uint8_t *w_row, const iq1m_block_q8K *y) {
    const iq1m_block_prepacked *blocks = (const iq1m_block_prepacked *)(const void *)w_row;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const float s = (float)iq1m_prepacked_dot_int(blocks + b, y + b);
        acc = acc + (iq1m_fp16_to_f32(iq1m_scales_d_bits(blocks[b].scales)) * y[b].d) * s;
    }
    return 0.125f * acc;
}
