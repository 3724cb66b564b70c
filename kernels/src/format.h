/* format.h: IQ1_M block layout, field decoding, the iq1s grid and exact fp16 -> f32.
 *
 * Everything here is plain C (no F16C), so it runs on any x86-64 and defines the meaning of
 * the bits for every other file (see docs/numerics.md, "Formats").
 */
#ifndef IQ1M_FORMAT_H
#define IQ1M_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "iq1m.h"

#define IQ1M_GRID_SIZE 2048

typedef struct {
    uint8_t qs[IQ1M_QK_K / 8];      /* low 8 bits of the 32 group indices */
    uint8_t qh[IQ1M_QK_K / 16];     /* per group nibble: 3 high index bits + delta sign */
    uint8_t scales[IQ1M_QK_K / 32]; /* 4 LE uint16: 16 x 3-bit scales + fp16 nibbles */
} iq1m_block_iq1_m;

_Static_assert(sizeof(iq1m_block_iq1_m) == IQ1M_BLOCK_BYTES, "IQ1_M block is 56 bytes");
_Static_assert(sizeof(iq1m_block_q8K) == IQ1M_Q8K_BLOCK_BYTES, "Q8_K block is 292 bytes");

/* iq1s_grid (generated into grid.c): entry i holds 8 values in {-1, 0, +1} as the bytes of
 * a little-endian uint64 word (ggml's iq1s_grid layout): value k is byte k. */
extern const uint64_t iq1m_grid_u64[IQ1M_GRID_SIZE];
/* The 8 values of entry i as int8 (a character-type view of the word, no copy). */
static inline const int8_t *iq1m_grid_values(int i) {
    return (const int8_t *)(const void *)&iq1m_grid_u64[i];
}

/* Exact IEEE binary16 -> binary32 (subnormals, inf, nan payload kept), no F16C. */
float iq1m_fp16_to_f32(uint16_t h);

/* The four little-endian uint16 words of an 8-byte scales field. */
static inline void iq1m_scales_words(const uint8_t *s, uint16_t sc[4]) {
    for (int i = 0; i < 4; ++i) sc[i] = (uint16_t)(s[2 * i] | (s[2 * i + 1] << 8));
}
/* ... of the scales field of one 56-byte block. */
static inline void iq1m_scale_words(const uint8_t *blk, uint16_t sc[4]) {
    iq1m_scales_words(blk + 48, sc);
}

/* fp16 bits of the super-scale in an 8-byte scales field. */
uint16_t iq1m_scales_d_bits(const uint8_t *scales);
/* ... of one 56-byte block. */
static inline uint16_t iq1m_block_d_bits(const uint8_t *blk) {
    return iq1m_scales_d_bits(blk + 48);
}

/* The super-scale as float32 (exact). */
static inline float iq1m_block_d(const uint8_t *blk) {
    return iq1m_fp16_to_f32(iq1m_block_d_bits(blk));
}

/* 2s+1 of sub-block j (0..15) from an 8-byte scales field. */
static inline int iq1m_scales_mult(const uint8_t *s, int j) {
    unsigned w = (unsigned)(s[2 * (j / 4)] | (s[2 * (j / 4) + 1] << 8));
    return 2 * (int)((w >> (3 * (j % 4))) & 7) + 1;
}
/* ... of one 56-byte block. */
static inline int iq1m_block_mult(const uint8_t *blk, int j) {
    return iq1m_scales_mult(blk + 48, j);
}

/* Group g (0..31): 11-bit grid index and delta sign (+1 when the bit is clear, -1 set). */
static inline int iq1m_block_group_index(const uint8_t *blk, int g) {
    unsigned nib = (unsigned)(blk[32 + g / 2] >> (4 * (g % 2)));
    return (int)(blk[g] | ((nib & 7u) << 8));
}
static inline int iq1m_block_group_sign(const uint8_t *blk, int g) {
    unsigned nib = (unsigned)(blk[32 + g / 2] >> (4 * (g % 2)));
    return (nib & 8u) ? -1 : 1;
}

/* The 256 weight integers w = 8*grid + sign in {-9,-7,-1,1,7,9} of one block. */
void iq1m_block_weights(const uint8_t *blk, int8_t w[IQ1M_QK_K]);
/* The 16 multipliers 2s+1 of one block. */
void iq1m_block_mults(const uint8_t *blk, uint8_t mult[16]);

/* Dequantize nb blocks into nb*256 floats: d * (float)((2s+1)*w) * 0.125f. */
void iq1m_dequantize_blocks(const uint8_t *blocks, int64_t nb, float *y);

/* Exact integer S_b of one IQ1_M block with one Q8_K block (the contract's S_b). */
int32_t iq1m_block_dot_int(const uint8_t *blk, const iq1m_block_q8K *y);

/* The plain scalar dot product of one row (nb blocks) with one column: 0.125f * acc.
 * This is the fallback used when the direct micro-kernels are compiled out. */
float iq1m_vec_dot_scalar(int64_t nb, const uint8_t *w_row, const iq1m_block_q8K *y);

/* ---- the prepacked encoding (iq1m_prepack; docs/numerics.md, "Prepacked weights") ----
 * The same values as one IQ1_M block, laid out so that a decode needs no grid lookup: four
 * shifts and masks of q2 give all 256 grid values in order. */
typedef struct {
    uint8_t q2[64];     /* bits 2j..2j+1 of byte i: grid value + 1 (0, 1, 2) of weight i + 64j */
    uint8_t plus[4];    /* bit g % 8 of byte g / 8: group g's delta sign is + (IQ1_M bit clear) */
    uint8_t scales[8];  /* the IQ1_M scales field, unchanged */
    uint8_t zero[4];    /* always 0 (keeps blocks 16-byte aligned) */
} iq1m_block_prepacked;
_Static_assert(sizeof(iq1m_block_prepacked) == IQ1M_PREPACKED_BLOCK_BYTES,
               "prepacked block is 80 bytes");

/* One 56-byte IQ1_M block -> its prepacked form. */
void iq1m_block_to_prepacked(const uint8_t *blk, iq1m_block_prepacked *out);
/* The 256 weight integers w = 8*grid + sign of one prepacked block (as iq1m_block_weights). */
void iq1m_prepacked_weights(const iq1m_block_prepacked *b, int8_t w[IQ1M_QK_K]);
/* Exact S_b of one prepacked block with one Q8_K block (equal to iq1m_block_dot_int). */
int32_t iq1m_prepacked_dot_int(const iq1m_block_prepacked *b, const iq1m_block_q8K *y);
/* iq1m_vec_dot_scalar over a row of prepacked blocks. */
float iq1m_vec_dot_prepacked_scalar(int64_t nb, const uint8_t *w_row, const iq1m_block_q8K *y);

#endif /* IQ1M_FORMAT_H */
