/* iq1m-repack-16xK-avx512vnni.c: one 16-row panel of IQ1_M rows -> nb iq1m_packed_block,
 * AVX-512 (F/BW/VL) + F16C; the same bytes as the scalar definition iq1m_repack_panel
 * (src/repack.c), which handles partial panels (n_rows < 16) itself.
 *
 * Per block the 16 rows are read column-wise with dword gathers (lane r = row r): the
 * 32 qs bytes (8 gathers), 16 qh bytes (4) and the 4 scale words (2).  Then per group g
 * the 16 grid indices are formed in the lanes, 16 qword loads from iq1m_grid_u64 (8
 * bytes in {-1, 0, 1}; 16 KiB, half of L1, where the sign-folded table would fill all of
 * it) fetch the 16 rows' grid values, two dword permutes split them into q[2g][r] (weights
 * 8g..8g+3) and q[2g+1][r] (8g+4..8g+7), and w + 9 = 8*(grid+1) + (sign clear ? 2 : 0) is
 * formed bytewise (no carries: at most 18): 128 contiguous bytes of the panel block.  mult[j][r] = 2s+1 and d[r]
 * (fp16 -> f32 with vcvtph2ps: exact) come from the scale words in the same lanes.
 */
#include <immintrin.h>
#include <stdint.h>

#include "../format.h"
#include "../repack.h"


void iq1m_repack_16xK_avx512vnni(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                 iq1m_packed_block *out);
void iq1m_repack_16xK_avx512vnni(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                 iq1m_packed_block *out) {
    const int64_t row_bytes = nb * IQ1M_BLOCK_BYTES;
    if (n_rows != IQ1M_PACK_ROWS || row_bytes > (INT32_MAX - 64) / IQ1M_PACK_ROWS) {
        iq1m_repack_panel(w, nb, r0, n_rows, out); /* tail panel, or offsets beyond int32 */
        return;
    }
    const long long *G = (const long long *)iq1m_grid_u64;
    const __m512i roff = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)row_bytes));
    const __m512i pe = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i po = _mm512_add_epi32(pe, _mm512_set1_epi32(1));
    const __m512i m8 = _mm512_set1_epi32(0xff), mh = _mm512_set1_epi32(0x700);
    const __m512i sbit = _mm512_set1_epi32(0x800), ones = _mm512_set1_epi8(1);
    const __m512i twos = _mm512_set1_epi8(2);
    const __m512i m14 = _mm512_set1_epi32(14), one = _mm512_set1_epi32(1);
    const uint8_t *base = w + r0 * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t *blk = base + b * IQ1M_BLOCK_BYTES;
        iq1m_packed_block *p = out + b;
        __m512i Q[8], H[4];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) Q[i] = _mm512_i32gather_epi32(roff, blk + 4 * i, 1);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) H[i] = _mm512_i32gather_epi32(roff, blk + 32 + 4 * i, 1);
        const __m512i S0 = _mm512_i32gather_epi32(roff, blk + 48, 1); /* words 0, 1 */
        const __m512i S1 = _mm512_i32gather_epi32(roff, blk + 52, 1); /* words 2, 3 */

        /* super-scale: the top nibbles of the four words */
        const __m512i bits = _mm512_or_si512(
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(S0, 12), _mm512_set1_epi32(0xf)),
                            _mm512_and_si512(_mm512_srli_epi32(S0, 24), _mm512_set1_epi32(0xf0))),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(S1, 4), _mm512_set1_epi32(0xf00)),
                            _mm512_and_si512(_mm512_srli_epi32(S1, 16), _mm512_set1_epi32(0xf000))));
        _mm512_storeu_ps(p->d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(bits)));

        /* 2s+1 of sub-block j: field at bit 16*((j%8)/4) + 3*(j%4) of S0 (j < 8) or S1 */
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
            const __m512i src = j < 8 ? S0 : S1;
            const int sh = 16 * ((j % 8) / 4) + 3 * (j % 4);
            const __m512i t = sh ? _mm512_srli_epi32(src, sh - 1) : _mm512_slli_epi32(src, 1);
            _mm_storeu_si128((__m128i *)p->mult[j],
                             _mm512_cvtepi32_epi8(_mm512_ternarylogic_epi32(t, m14, one, 0xEA)));
        }

        /* weights, group by group */
#pragma GCC unroll 4
        for (int g = 0; g < 32; ++g) {
            const __m512i qs = _mm512_and_si512(_mm512_srli_epi32(Q[g / 4], 8 * (g % 4)), m8);
            const int s = 8 * ((g / 2) % 4) + 4 * (g % 2); /* nibble position in H[g / 8] */
            const __m512i h = s >= 8 ? _mm512_srli_epi32(H[g / 8], s - 8)
                                     : _mm512_slli_epi32(H[g / 8], 8 - s);
            const __m512i idx = _mm512_ternarylogic_epi32(h, mh, qs, 0xEA); /* (h & mh) | qs */
            const __mmask16 plus = _mm512_testn_epi32_mask(h, sbit); /* delta sign clear */
            uint32_t ix[16]; /* table loads through GPRs: cheaper than qword gathers on Zen 4 */
            _mm512_storeu_si512(ix, idx);
            const __m512i v0 = _mm512_set_epi64(G[ix[7]], G[ix[6]], G[ix[5]], G[ix[4]], G[ix[3]], G[ix[2]], G[ix[1]], G[ix[0]]);
            const __m512i v1 = _mm512_set_epi64(G[ix[15]], G[ix[14]], G[ix[13]], G[ix[12]], G[ix[11]], G[ix[10]], G[ix[9]], G[ix[8]]);
            __m512i lo = _mm512_slli_epi32(_mm512_add_epi8(_mm512_permutex2var_epi32(v0, pe, v1), ones), 3);
            __m512i hi = _mm512_slli_epi32(_mm512_add_epi8(_mm512_permutex2var_epi32(v0, po, v1), ones), 3);
            lo = _mm512_mask_or_epi32(lo, plus, lo, twos);
            hi = _mm512_mask_or_epi32(hi, plus, hi, twos);
            _mm512_storeu_si512(p->q[2 * g], lo);
            _mm512_storeu_si512(p->q[2 * g + 1], hi);
        }
    }
}
