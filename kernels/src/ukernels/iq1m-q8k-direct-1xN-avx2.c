/* iq1m-q8k-direct-1xN-avx2.c: direct micro-kernels, one IQ1_M row x N = 1..8 Q8_K columns,
 * AVX2 + F16C.
 *
 * Per block the row is decoded once into 8 ymm of unsigned bytes u = w + 9 in [0,18] (one
 * lookup per group in a 4096-entry table indexed by sign and grid index) and the
 * multipliers 2s+1 as int16 vectors.  Per column: vpmaddubsw (u8 x s8, pairs; at most
 * 2*18*128, no saturation) and vpmaddwd with the per-sub-block multiplier give exact int32
 * partial sums; one vpmaddwd of bsums with -9*(2s+1) removes the +9 bias.  The lanes are
 * reduced to one exact int32 S_b per column, then the float part runs across the columns:
 * acc = acc + (dw*dy)*(float)S_b, out = 0.125f*acc (separate mul/add, no FMA).
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../format.h"
#include "../u8grid.h"
#include "../ukernel.h"
#include "iq1m-prepacked-unpack-avx2.h"

#define IQ1M_INLINE static inline __attribute__((always_inline))

typedef struct {
    __m256i w[8];  /* u8 w+9 of weights 32t..32t+31 (sub-blocks 2t, 2t+1) */
    __m256i m[8];  /* int16: lanes 0..7 = 2s+1 of sub-block 2t, lanes 8..15 of 2t+1 */
    __m256i mb;    /* int16 lane j: -9*(2s_j+1) */
    float d;       /* row super-scale */
} iq1m_dec256;

/* m, mb and d from an 8-byte IQ1_M scales field */
IQ1M_INLINE void iq1m_decode256_scales(const uint8_t *sc8, iq1m_dec256 *D) {
    /* multipliers 2s+1: int32 lanes j (0..7 from words 0,1; 8..15 from words 2,3) */
    int32_t sc01, sc23;
    memcpy(&sc01, sc8, 4);
    memcpy(&sc23, sc8 + 4, 4);
    const __m256i shv = _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25);
    const __m256i k7 = _mm256_set1_epi32(7), k1 = _mm256_set1_epi32(1);
    __m256i mlo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(sc01), shv), k7);
    __m256i mhi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(sc23), shv), k7);
    mlo = _mm256_or_si256(_mm256_add_epi32(mlo, mlo), k1);
    mhi = _mm256_or_si256(_mm256_add_epi32(mhi, mhi), k1);
    /* int16 lane j = 2s_j+1 */
    const __m256i m16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(mlo, mhi), 0xD8);
    D->mb = _mm256_mullo_epi16(m16, _mm256_set1_epi16(-9));
    /* bytes j of both 128-bit lanes */
    const __m128i m8x = _mm_packus_epi16(_mm256_castsi256_si128(m16),
                                         _mm256_extracti128_si256(m16, 1));
    const __m256i m8y = _mm256_broadcastsi128_si256(m8x);
#pragma GCC unroll 4
    for (int t = 0; t < 8; t += 2) {
        /* low lane: byte 2t x8, byte 2t+1 x8; high lane: 2t+2 x8, 2t+3 x8 */
        const __m256i ctl = _mm256_setr_epi8(
            (char)(2 * t), (char)(2 * t), (char)(2 * t), (char)(2 * t), (char)(2 * t),
            (char)(2 * t), (char)(2 * t), (char)(2 * t), (char)(2 * t + 1), (char)(2 * t + 1),
            (char)(2 * t + 1), (char)(2 * t + 1), (char)(2 * t + 1), (char)(2 * t + 1),
            (char)(2 * t + 1), (char)(2 * t + 1), (char)(2 * t + 2), (char)(2 * t + 2),
            (char)(2 * t + 2), (char)(2 * t + 2), (char)(2 * t + 2), (char)(2 * t + 2),
            (char)(2 * t + 2), (char)(2 * t + 2), (char)(2 * t + 3), (char)(2 * t + 3),
            (char)(2 * t + 3), (char)(2 * t + 3), (char)(2 * t + 3), (char)(2 * t + 3),
            (char)(2 * t + 3), (char)(2 * t + 3));
        const __m256i mm = _mm256_shuffle_epi8(m8y, ctl);
        D->m[t] = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mm));
        D->m[t + 1] = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mm, 1));
    }
    uint64_t sc;
    memcpy(&sc, sc8, 8);
    const uint32_t bits = (uint32_t)(((sc >> 12) & 0xf) | ((sc >> 24) & 0xf0) |
                                     ((sc >> 36) & 0xf00) | ((sc >> 48) & 0xf000));
    D->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)bits)));
}

IQ1M_INLINE void iq1m_decode256(const uint8_t *blk, iq1m_dec256 *D) {
    const __m128i qs0 = _mm_loadu_si128((const __m128i *)blk);
    const __m128i qs1 = _mm_loadu_si128((const __m128i *)(blk + 16));
    const __m128i qh = _mm_loadu_si128((const __m128i *)(blk + 32));
    const __m128i qh4 = _mm_srli_epi16(qh, 4);
    /* 12-bit indices sign<<11 | grid index, 8 per xmm (groups 8i..8i+7) */
    const __m128i m15 = _mm_set1_epi8(15);
    const __m128i h0 = _mm_unpacklo_epi8(_mm_and_si128(qh, m15), _mm_and_si128(qh4, m15));
    const __m128i h1 = _mm_unpackhi_epi8(_mm_and_si128(qh, m15), _mm_and_si128(qh4, m15));
    const __m128i idx[4] = {_mm_unpacklo_epi8(qs0, h0), _mm_unpackhi_epi8(qs0, h0),
                            _mm_unpacklo_epi8(qs1, h1), _mm_unpackhi_epi8(qs1, h1)};
    const uint64_t *G = iq1m_u8grid;
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        /* indices through GPRs (vmovq/vpextrq + shifts): no store-forwarding round trip */
        const uint64_t a = (uint64_t)_mm_cvtsi128_si64(idx[i]);
        const uint64_t b = (uint64_t)_mm_extract_epi64(idx[i], 1);
        D->w[2 * i] = _mm256_set_epi64x((long long)G[a >> 48], (long long)G[(a >> 32) & 0xffff],
                                        (long long)G[(a >> 16) & 0xffff],
                                        (long long)G[a & 0xffff]);
        D->w[2 * i + 1] = _mm256_set_epi64x((long long)G[b >> 48],
                                            (long long)G[(b >> 32) & 0xffff],
                                            (long long)G[(b >> 16) & 0xffff],
                                            (long long)G[b & 0xffff]);
    }
    iq1m_decode256_scales(blk + 48, D);
}

/* The same decode from a prepacked block (iq1m_block_prepacked), without the table */
IQ1M_INLINE void iq1m_decode256_prepacked(const iq1m_block_prepacked *blk, iq1m_dec256 *D) {
    __m256i u[8];
    iq1m_prepacked_grid_u8(blk, u);
    const __m256i two = _mm256_set1_epi8(2);
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
        const __m256i bit = iq1m_prepacked_plus_bits(t);
        const __m256i set = _mm256_cmpeq_epi8(
            _mm256_and_si256(_mm256_set1_epi8((char)blk->plus[t / 2]), bit), bit);
        D->w[t] = _mm256_add_epi8(u[t], _mm256_and_si256(set, two));
    }
    iq1m_decode256_scales(blk->scales, D);
}

/* 8 int32 lanes whose sum is S_b of the decoded block with column block y. */
IQ1M_INLINE __m256i iq1m_coldot256(const iq1m_dec256 *D, const iq1m_block_q8K *y) {
    __m256i s[4];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
        const __m256i p = _mm256_maddubs_epi16(D->w[t], _mm256_loadu_si256((const __m256i *)(y->qs + 32 * t)));
        const __m256i q = _mm256_madd_epi16(p, D->m[t]);
        s[t % 4] = t < 4 ? q : _mm256_add_epi32(s[t % 4], q);
    }
    const __m256i bs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), D->mb);
    return _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]),
                            _mm256_add_epi32(_mm256_add_epi32(s[2], s[3]), bs));
}

/* lane i = sum of the 8 lanes of y[i] */
IQ1M_INLINE __m256i iq1m_reduce8(const __m256i *y) {
    const __m256i h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(y[0], y[1]),
                                            _mm256_hadd_epi32(y[2], y[3]));
    const __m256i h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(y[4], y[5]),
                                            _mm256_hadd_epi32(y[6], y[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

/* PREPACKED: w_row is a row of prepacked blocks */
IQ1M_INLINE void iq1m_direct256(int64_t nb, const uint8_t *w_row,
                                const iq1m_block_q8K *const *cols, float *out,
                                int64_t out_stride, const int NC, const int PREPACKED) {
    const iq1m_block_q8K *cp[IQ1M_MAX_NC];
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) cp[c] = cols[c];
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_dec256 D;
        if (PREPACKED)
            iq1m_decode256_prepacked((const iq1m_block_prepacked *)(const void *)w_row + b, &D);
        else
            iq1m_decode256(w_row + b * IQ1M_BLOCK_BYTES, &D);
        __m256i y[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c)
            y[c] = c < NC ? iq1m_coldot256(&D, cp[c] + b) : _mm256_setzero_si256();
        float dy[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) dy[c] = c < NC ? cp[c][b].d : 0.0f;
        const __m256 p = _mm256_mul_ps(_mm256_set1_ps(D.d), _mm256_loadu_ps(dy));
#if IQ1M_FAULT_IS(simd_fma)
        /* fault point simd_fma: the float update contracted into one FMA (a rounding step
           lost): outputs differ from the contract in the last bits, AVX2 direct path only */
        acc = _mm256_fmadd_ps(p, _mm256_cvtepi32_ps(iq1m_reduce8(y)), acc);
#else
        acc = _mm256_add_ps(acc, _mm256_mul_ps(p, _mm256_cvtepi32_ps(iq1m_reduce8(y))));
#endif
    }
    float r[8];
    _mm256_storeu_ps(r, _mm256_mul_ps(_mm256_set1_ps(0.125f), acc));
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) out[c * out_stride] = r[c];
}

#define IQ1M_DEF(NC)                                                                       \
    void iq1m_direct_1x##NC##_avx2(int64_t nb, const uint8_t *w_row,                       \
                                   const iq1m_block_q8K *const *cols, float *out,          \
                                   int64_t out_stride) {                                   \
        iq1m_direct256(nb, w_row, cols, out, out_stride, NC, 0);                           \
    }                                                                                      \
    void iq1m_prepacked_direct_1x##NC##_avx2(int64_t nb, const uint8_t *w_row,             \
                                             const iq1m_block_q8K *const *cols, float *out, \
                                             int64_t out_stride) {                         \
        iq1m_direct256(nb, w_row, cols, out, out_stride, NC, 1);                           \
    }
IQ1M_DEF(1)
IQ1M_DEF(2)
IQ1M_DEF(3)
IQ1M_DEF(4)
IQ1M_DEF(5)
IQ1M_DEF(6)
IQ1M_DEF(7)
IQ1M_DEF(8)
