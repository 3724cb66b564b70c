/* iq1m-q8k-direct-1xN-avx512vnni.c: direct micro-kernels, one IQ1_M row x N = 1..8 Q8_K
 * columns, AVX-512 (VL/BW) + VNNI + F16C, on 256-bit vectors (on Zen 4 a 256-bit vpdpbusd
 * runs twice per cycle, a 512-bit one once, and the 256-bit decode needs no lane inserts).
 *
 * Per block the row is decoded once into 256 unsigned bytes u = w + 9 in [0,18] (one
 * lookup per group in a 4096-entry table indexed by sign and grid index) and the 16
 * multipliers 2s+1 (all 16 from one vpermw/shift sequence).  Per column: 8 x vpdpbusd (u8 x s8) give 4-value partial sums that fit
 * int16, so two vectors are paired into the int16 halves of each lane and one vpdpwssd
 * applies both (2s+1); the +9 bias is removed with one vpmaddwd of bsums and -9*(2s+1).
 * The 8 lanes are reduced to one exact int32 S_b per column, then the float part runs
 * across the columns in one vector: acc = acc + (dw*dy)*(float)S_b, out = 0.125f*acc
 * (separate mul/add, no FMA).
 * The iq1m_prepacked_ kernels run the same loop over prepacked rows (iq1m_block_prepacked):
 * a table-free decode of the same bytes u.
 */
#include <immintrin.h>
#include <stdint.h>

#include "../format.h"
#include "../u8grid.h"
#include "../ukernel.h"
#include "iq1m-prepacked-unpack-avx2.h"

#define IQ1M_INLINE static inline __attribute__((always_inline))

typedef struct {
    __m256i w[8]; /* u8 w+9 of weights 32t..32t+31 (sub-blocks 2t, 2t+1) */
    __m256i m[4]; /* int32 lane l of m[i]: (2s+1 of w[2i] lane l) | (2s+1 of w[2i+1] lane l)
                     << 16, where lane l of w[t] belongs to sub-block 2t + l/4 */
    __m256i mb;   /* int16 lane j: -9*(2s_j+1) */
    float d;      /* row super-scale */
} iq1m_decv;

/* The 4 grid entries whose indices are the 16-bit fields of ix, as one vector. Merge-masked
   broadcasts from memory, not vmovq/vpinsrq/vinserti128: measured ~10% faster per block on
   Zen 4 at one column, where the decode is the whole cost. */
IQ1M_INLINE __m256i iq1m_grid4(const uint64_t *G, uint64_t ix) {
#define IQ1M_G(sh) _mm_loadl_epi64((const __m128i *)&G[(uint16_t)(ix >> (sh))])
    __m256i x = _mm256_castsi128_si256(IQ1M_G(0));
    x = _mm256_mask_broadcastq_epi64(x, 0x2, IQ1M_G(16));
    x = _mm256_mask_broadcastq_epi64(x, 0x4, IQ1M_G(32));
    return _mm256_mask_broadcastq_epi64(x, 0x8, IQ1M_G(48));
#undef IQ1M_G
}

/* m, mb and d from an 8-byte IQ1_M scales field */
IQ1M_INLINE void iq1m_decode_scales(const uint8_t *sc, iq1m_decv *D) {
    /* The multipliers 2s+1 of all 16 sub-blocks from the 4 scale words at once: each int16
       lane takes its word (vpermw) and shifts its 3-bit field k to bits 13..15 (left by
       13 - 3k); a right shift by 12 leaves field << 1 plus one stray bit, which | 1 sets. */
    const __m128i sw = _mm_loadl_epi64((const __m128i *)sc);
    const __m512i sw512 = _mm512_castsi128_si512(sw);
    const __m512i one16 = _mm512_set1_epi16(1);
    /* int16 lane p of m[0..1] (m[2..3]): word p / 16 (+ 2); int32 lane l = (p % 16) / 2 and
       half h = p % 2 hold field k = (l >= 4) + 2h */
    const __m512i wsel01 = _mm512_set_epi16(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i wsel23 = _mm512_add_epi16(wsel01, _mm512_set1_epi16(2));
    const __m512i shl = _mm512_set_epi16(4, 10, 4, 10, 4, 10, 4, 10, 7, 13, 7, 13, 7, 13, 7, 13,
                                         4, 10, 4, 10, 4, 10, 4, 10, 7, 13, 7, 13, 7, 13, 7, 13);
    const __m512i m01 = _mm512_or_si512(
        _mm512_srli_epi16(_mm512_sllv_epi16(_mm512_permutexvar_epi16(wsel01, sw512), shl), 12),
        one16);
    const __m512i m23 = _mm512_or_si512(
        _mm512_srli_epi16(_mm512_sllv_epi16(_mm512_permutexvar_epi16(wsel23, sw512), shl), 12),
        one16);
    D->m[0] = _mm512_castsi512_si256(m01);
    D->m[1] = _mm512_extracti64x4_epi64(m01, 1);
    D->m[2] = _mm512_castsi512_si256(m23);
    D->m[3] = _mm512_extracti64x4_epi64(m23, 1);
    /* mb: int16 lane j = -9*(2s_j+1) from word j / 4, field j % 4 */
    const __m256i jsel = _mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m256i jshl = _mm256_setr_epi16(13, 10, 7, 4, 13, 10, 7, 4, 13, 10, 7, 4, 13, 10, 7,
                                           4);
    const __m256i sw256 = _mm256_castsi128_si256(sw);
    const __m256i m16 = _mm256_or_si256(
        _mm256_srli_epi16(_mm256_sllv_epi16(_mm256_permutexvar_epi16(jsel, sw256), jshl), 12),
        _mm256_set1_epi16(1));
    D->mb = _mm256_mullo_epi16(m16, _mm256_set1_epi16(-9));
    /* fp16 super-scale: the top nibble of word j is its bits 4j..4j+3 */
    const __m128i t = _mm_madd_epi16(_mm_srli_epi16(sw, 12),
                                     _mm_setr_epi16(1, 16, 256, 4096, 0, 0, 0, 0));
    D->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_add_epi32(t, _mm_srli_epi64(t, 32))));
}

IQ1M_INLINE void iq1m_decode(const uint8_t *blk, iq1m_decv *D) {
    const __m128i qs0 = _mm_loadu_si128((const __m128i *)blk);
    const __m128i qs1 = _mm_loadu_si128((const __m128i *)(blk + 16));
    const __m128i qh = _mm_loadu_si128((const __m128i *)(blk + 32));
    const __m128i qh4 = _mm_srli_epi16(qh, 4);
    /* 12-bit indices sign<<11 | grid index, 8 per xmm (groups 8i..8i+7) */
    const __m128i m15 = _mm_set1_epi8(15);
#if IQ1M_FAULT_IS(avx512_delta_sign)
    /* fault point avx512_delta_sign: the high nibble of qh masked with 7 instead of 15, so
       odd groups lose their delta sign (always +1/8): AVX-512 direct path only */
    const __m128i m15h = _mm_set1_epi8(7);
#else
    const __m128i m15h = m15;
#endif
    const __m128i h0 = _mm_unpacklo_epi8(_mm_and_si128(qh, m15), _mm_and_si128(qh4, m15h));
    const __m128i h1 = _mm_unpackhi_epi8(_mm_and_si128(qh, m15), _mm_and_si128(qh4, m15h));
    const __m128i idx[4] = {_mm_unpacklo_epi8(qs0, h0), _mm_unpackhi_epi8(qs0, h0),
                            _mm_unpacklo_epi8(qs1, h1), _mm_unpackhi_epi8(qs1, h1)};
    const uint64_t *G = iq1m_u8grid;
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        /* indices through GPRs (vmovq/vpextrq + shifts): no store-forwarding round trip */
        const uint64_t a = (uint64_t)_mm_cvtsi128_si64(idx[i]);
        const uint64_t b = (uint64_t)_mm_extract_epi64(idx[i], 1);
        D->w[2 * i] = iq1m_grid4(G, a);
        D->w[2 * i + 1] = iq1m_grid4(G, b);
    }
    iq1m_decode_scales(blk + 48, D);
}

/* The same decode from a prepacked block (iq1m_block_prepacked), without the table */
IQ1M_INLINE void iq1m_decode_prepacked(const iq1m_block_prepacked *blk, iq1m_decv *D) {
    __m256i u[8];
    iq1m_prepacked_grid_u8(blk, u);
    const __m256i two = _mm256_set1_epi8(2);
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
        const __mmask32 plus = _mm256_test_epi8_mask(_mm256_set1_epi8((char)blk->plus[t / 2]),
                                                     iq1m_prepacked_plus_bits(t));
        D->w[t] = _mm256_mask_add_epi8(u[t], plus, u[t], two);
    }
    iq1m_decode_scales(blk->scales, D);
}

/* 8 int32 lanes whose sum is S_b of the decoded block with column block y. */
IQ1M_INLINE __m256i iq1m_coldot(const iq1m_decv *D, const iq1m_block_q8K *y) {
    const __m256i z = _mm256_setzero_si256(), lo = _mm256_set1_epi32(0xffff);
    __m256i s[2];
    s[0] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), D->mb);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        /* 4-value partial sums, |.| <= 4*18*128: exact as int16; pair two vectors into the
           int16 halves of each lane (integer ops only) and apply both multipliers at once */
        const __m256i a = _mm256_dpbusd_epi32(z, D->w[2 * i],
                                              _mm256_loadu_si256((const __m256i *)(y->qs + 64 * i)));
        const __m256i b = _mm256_dpbusd_epi32(
            z, D->w[2 * i + 1], _mm256_loadu_si256((const __m256i *)(y->qs + 64 * i + 32)));
        const __m256i x = _mm256_ternarylogic_epi32(a, _mm256_slli_epi32(b, 16), lo, 0xEC);
        s[i % 2] = i == 1 ? _mm256_madd_epi16(x, D->m[i]) : _mm256_dpwssd_epi32(s[i % 2], x, D->m[i]);
    }
    return _mm256_add_epi32(s[0], s[1]);
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

/* lane c = dy of column c < NC at block b, 0 elsewhere (masked broadcast loads: no
   narrow stores followed by a wide load, which would stall store forwarding) */
IQ1M_INLINE __m256 iq1m_dy8(const iq1m_block_q8K *const *cp, int64_t b, const int NC) {
    __m256 v = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c)
        v = _mm256_mask_mov_ps(v, (__mmask8)(1u << c), _mm256_set1_ps(cp[c][b].d));
    return v;
}

/* (float) of the exact int32 sum of the 8 lanes, without a trip through a GPR */
IQ1M_INLINE float iq1m_hsum256_f(__m256i h) {
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    q = _mm_add_epi32(q, _mm_unpackhi_epi64(q, q));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 1));
    return _mm_cvtss_f32(_mm_cvtepi32_ps(q));
}

/* PREPACKED: w_row is a row of prepacked blocks */
IQ1M_INLINE void iq1m_decode_any(const uint8_t *w_row, int64_t b, iq1m_decv *D,
                                 const int PREPACKED) {
    if (PREPACKED)
        iq1m_decode_prepacked((const iq1m_block_prepacked *)(const void *)w_row + b, D);
    else
        iq1m_decode(w_row + b * IQ1M_BLOCK_BYTES, D);
}

IQ1M_INLINE void iq1m_direct(int64_t nb, const uint8_t *w_row,
                             const iq1m_block_q8K *const *cols, float *out,
                             int64_t out_stride, const int NC, const int PREPACKED) {
    const iq1m_block_q8K *cp[IQ1M_MAX_NC];
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) cp[c] = cols[c];
    if (NC == 1) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
            iq1m_decv D;
            iq1m_decode_any(w_row, b, &D, PREPACKED);
            const float S = iq1m_hsum256_f(iq1m_coldot(&D, cp[0] + b));
            const float p = D.d * cp[0][b].d;
            acc = acc + p * S;
        }
        out[0] = 0.125f * acc;
        return;
    }
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_decv D;
        iq1m_decode_any(w_row, b, &D, PREPACKED);
        __m256i y[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c)
            y[c] = c < NC ? iq1m_coldot(&D, cp[c] + b) : _mm256_setzero_si256();
        const __m256 p = _mm256_mul_ps(_mm256_set1_ps(D.d), iq1m_dy8(cp, b, NC));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(p, _mm256_cvtepi32_ps(iq1m_reduce8(y))));
    }
    float r[8];
    _mm256_storeu_ps(r, _mm256_mul_ps(_mm256_set1_ps(0.125f), acc));
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) out[c * out_stride] = r[c];
}

#define IQ1M_DEF(NC)                                                                       \
    void iq1m_direct_1x##NC##_avx512vnni(int64_t nb, const uint8_t *w_row,                     \
                                     const iq1m_block_q8K *const *cols, float *out,        \
                                     int64_t out_stride) {                                 \
        iq1m_direct(nb, w_row, cols, out, out_stride, NC, 0);                              \
    }                                                                                      \
    void iq1m_prepacked_direct_1x##NC##_avx512vnni(int64_t nb, const uint8_t *w_row,       \
                                                   const iq1m_block_q8K *const *cols,      \
                                                   float *out, int64_t out_stride) {       \
        iq1m_direct(nb, w_row, cols, out, out_stride, NC, 1);                              \
    }
IQ1M_DEF(1)
IQ1M_DEF(2)
IQ1M_DEF(3)
IQ1M_DEF(4)
IQ1M_DEF(5)
IQ1M_DEF(6)
IQ1M_DEF(7)
IQ1M_DEF(8)
