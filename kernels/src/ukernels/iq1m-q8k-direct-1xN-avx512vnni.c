/* iq1m-q8k-direct-1xN-avx512vnni.c: direct micro-kernels, one IQ1_M row x N = 1..8 Q8_K
 * columns, AVX-512 (F/BW/VL/DQ) + VNNI + F16C.
 *
 * Per block the row is decoded once into 256 unsigned bytes u = w + 9 in [0,18]
 * (grid byte -1/0/+1 -> 0/8/16 by pshufb, +2 when the delta sign bit is clear) and the 16
 * multipliers 2s+1.  Per column: 4 x vpdpbusd (u8 x s8) give 4-value partial sums, each
 * sub-block's sum stays within int16, so vpmaddwd / vpdpwssd with the multiplier apply
 * (2s+1) per sub-block and sum; the +9 bias is removed with one vpdpwssd of bsums and
 * -9*(2s+1).  The 16 lanes are reduced to one exact int32 S_b per column, then the float
 * part runs across columns in one vector: acc = acc + (dw*dy)*(float)S_b, out = 0.125f*acc.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../format.h"
#include "../ukernel.h"

#define IQ1M_INLINE static inline __attribute__((always_inline))

typedef struct {
    __m512i w[4]; /* u8 w+9 of weights 64t..64t+63 */
    __m512i m[4]; /* int32 lane l: 2s+1 of sub-block 4t + l/4 (high 16 bits zero) */
    __m512i mb;   /* int16 lane j < 16: -9*(2s_j+1); upper 256 bits zero */
    float d;      /* row super-scale */
} iq1m_dec512;

IQ1M_INLINE void iq1m_decode512(const uint8_t *blk, iq1m_dec512 *D) {
    const __m128i qs0 = _mm_loadu_si128((const __m128i *)blk);
    const __m128i qs1 = _mm_loadu_si128((const __m128i *)(blk + 16));
    const __m128i qh = _mm_loadu_si128((const __m128i *)(blk + 32));
    const __m128i qh4 = _mm_srli_epi16(qh, 4);
    const __m128i m7 = _mm_set1_epi8(7), m8 = _mm_set1_epi8(8);
    const __m128i hl = _mm_and_si128(qh, m7), hh = _mm_and_si128(qh4, m7);
    const __m128i h0 = _mm_unpacklo_epi8(hl, hh); /* high index bits, groups 0..15 */
    const __m128i h1 = _mm_unpackhi_epi8(hl, hh); /* groups 16..31 */
    const __m128i sl = _mm_and_si128(qh, m8), sh = _mm_and_si128(qh4, m8);
    const __m128i s0 = _mm_unpacklo_epi8(sl, sh), s1 = _mm_unpackhi_epi8(sl, sh);
    /* bit g set: delta sign bit of group g clear (w = 8g + 1) */
    const uint32_t clear = (uint32_t)_mm_testn_epi8_mask(s0, s0) |
                           ((uint32_t)_mm_testn_epi8_mask(s1, s1) << 16);
    __m128i idx[4];
    idx[0] = _mm_unpacklo_epi8(qs0, h0);
    idx[1] = _mm_unpackhi_epi8(qs0, h0);
    idx[2] = _mm_unpacklo_epi8(qs1, h1);
    idx[3] = _mm_unpackhi_epi8(qs1, h1);
    const __m512i lut = _mm512_broadcast_i32x4(
        _mm_setr_epi8(8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    const __m512i two = _mm512_set1_epi8(2);
#ifdef IQ1M_AVX512_GATHER
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
        const __m512i g = _mm512_i32gather_epi64(_mm256_cvtepu16_epi32(idx[t]),
                                                 (const void *)iq1m_grid_u64, 8);
        const __m512i u = _mm512_shuffle_epi8(lut, g); /* -1,0,1 -> 0,8,16 */
        D->w[t] = _mm512_mask_add_epi64(u, (__mmask8)(clear >> (8 * t)), u, two);
    }
#else
    uint16_t ix[32];
    for (int t = 0; t < 4; ++t) _mm_storeu_si128((__m128i *)(ix + 8 * t), idx[t]);
    /* read the indices back with scalar loads (load ports) instead of 32 vpextrw */
    __asm__ volatile("" : : "r"(ix) : "memory");
    const uint64_t *G = iq1m_grid_u64;
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
        const uint16_t *x = ix + 8 * t;
        const __m512i g = _mm512_set_epi64((long long)G[x[7]], (long long)G[x[6]],
                                           (long long)G[x[5]], (long long)G[x[4]],
                                           (long long)G[x[3]], (long long)G[x[2]],
                                           (long long)G[x[1]], (long long)G[x[0]]);
        const __m512i u = _mm512_shuffle_epi8(lut, g);
        D->w[t] = _mm512_mask_add_epi64(u, (__mmask8)(clear >> (8 * t)), u, two);
    }
#endif
    /* multipliers: lane j of m16 = 2*((sc[j/4] >> 3*(j%4)) & 7) + 1 */
    uint64_t sc;
    memcpy(&sc, blk + 48, 8);
    const __m512i wsel = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2,
                                          1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i shv = _mm512_set_epi32(9, 6, 3, 0, 9, 6, 3, 0, 9, 6, 3, 0, 9, 6, 3, 0);
    const __m512i x = _mm512_srlv_epi32(
        _mm512_permutexvar_epi16(wsel, _mm512_set1_epi64((long long)(sc << 1))), shv);
    /* (x & 14) | 1 */
    const __m512i m16 =
        _mm512_ternarylogic_epi32(x, _mm512_set1_epi32(14), _mm512_set1_epi32(1), 0xEA);
    D->m[0] = _mm512_permutexvar_epi32(
        _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), m16);
    D->m[1] = _mm512_permutexvar_epi32(
        _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4), m16);
    D->m[2] = _mm512_permutexvar_epi32(
        _mm512_set_epi32(11, 11, 11, 11, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8), m16);
    D->m[3] = _mm512_permutexvar_epi32(
        _mm512_set_epi32(15, 15, 15, 15, 14, 14, 14, 14, 13, 13, 13, 13, 12, 12, 12, 12), m16);
    D->mb = _mm512_zextsi256_si512(
        _mm512_cvtepi32_epi16(_mm512_mullo_epi32(m16, _mm512_set1_epi32(-9))));
    /* fp16 super-scale from the top nibbles of the four scale words */
    const uint32_t bits = (uint32_t)(((sc >> 12) & 0xf) | ((sc >> 24) & 0xf0) |
                                     ((sc >> 36) & 0xf00) | ((sc >> 48) & 0xf000));
    D->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)bits)));
}

/* 16 int32 lanes whose sum is S_b of the decoded block with column block y. */
IQ1M_INLINE __m512i iq1m_coldot512(const iq1m_dec512 *D, const iq1m_block_q8K *y) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i a0 = _mm512_dpbusd_epi32(z, D->w[0], _mm512_loadu_si512(y->qs));
    const __m512i a1 = _mm512_dpbusd_epi32(z, D->w[1], _mm512_loadu_si512(y->qs + 64));
    const __m512i a2 = _mm512_dpbusd_epi32(z, D->w[2], _mm512_loadu_si512(y->qs + 128));
    const __m512i a3 = _mm512_dpbusd_epi32(z, D->w[3], _mm512_loadu_si512(y->qs + 192));
    /* each a lane is a 4-value partial sum, |.| <= 4*18*128: exact as int16 */
    const __m512i bs = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)y->bsums));
    const __m512i s0 = _mm512_dpwssd_epi32(_mm512_madd_epi16(a0, D->m[0]), a2, D->m[2]);
    const __m512i s1 = _mm512_dpwssd_epi32(_mm512_madd_epi16(a1, D->m[1]), a3, D->m[3]);
    return _mm512_add_epi32(s0, _mm512_dpwssd_epi32(s1, bs, D->mb));
}

IQ1M_INLINE __m256i iq1m_half512(__m512i v) {
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
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

IQ1M_INLINE void iq1m_direct512(int64_t nb, const uint8_t *w_row,
                                const iq1m_block_q8K *const *cols, float *out,
                                int64_t out_stride, const int NC) {
    const iq1m_block_q8K *cp[IQ1M_MAX_NC];
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) cp[c] = cols[c];
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    if (NC <= 4) {
        /* two blocks per step: two independent decode/dot chains for the out-of-order core,
           one shared reduction (lanes 0..3 block b, 4..7 block b+1) */
        for (; b + 2 <= nb; b += 2) {
            iq1m_dec512 D0, D1;
            iq1m_decode512(w_row + b * IQ1M_BLOCK_BYTES, &D0);
            iq1m_decode512(w_row + (b + 1) * IQ1M_BLOCK_BYTES, &D1);
            __m256i y[8];
#pragma GCC unroll 4
            for (int c = 0; c < 4; ++c) {
                y[c] = c < NC ? iq1m_half512(iq1m_coldot512(&D0, cp[c] + b)) : _mm256_setzero_si256();
                y[4 + c] = c < NC ? iq1m_half512(iq1m_coldot512(&D1, cp[c] + b + 1))
                                  : _mm256_setzero_si256();
            }
            const __m256 S = _mm256_cvtepi32_ps(iq1m_reduce8(y));
            float dy[8];
#pragma GCC unroll 4
            for (int c = 0; c < 4; ++c) {
                dy[c] = c < NC ? cp[c][b].d : 0.0f;
                dy[4 + c] = c < NC ? cp[c][b + 1].d : 0.0f;
            }
            const __m256 p = _mm256_mul_ps(
                _mm256_setr_m128(_mm_set1_ps(D0.d), _mm_set1_ps(D1.d)), _mm256_loadu_ps(dy));
            const __m256 t = _mm256_mul_ps(p, S);
            acc = _mm256_add_ps(acc, t);                           /* block b   (lanes 0..3) */
            acc = _mm256_add_ps(acc, _mm256_castps128_ps256(_mm256_extractf128_ps(t, 1)));
        }
    }
    for (; b < nb; ++b) {
        iq1m_dec512 D;
        iq1m_decode512(w_row + b * IQ1M_BLOCK_BYTES, &D);
        __m256i y[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c)
            y[c] = c < NC ? iq1m_half512(iq1m_coldot512(&D, cp[c] + b)) : _mm256_setzero_si256();
        float dy[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) dy[c] = c < NC ? cp[c][b].d : 0.0f;
        const __m256 p = _mm256_mul_ps(_mm256_set1_ps(D.d), _mm256_loadu_ps(dy));
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
        iq1m_direct512(nb, w_row, cols, out, out_stride, NC);                              \
    }
IQ1M_DEF(1)
IQ1M_DEF(2)
IQ1M_DEF(3)
IQ1M_DEF(4)
IQ1M_DEF(5)
IQ1M_DEF(6)
IQ1M_DEF(7)
IQ1M_DEF(8)
