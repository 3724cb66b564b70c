/* iq1m-repack-16xK-avx512vnni.c: one 16-row panel of IQ1_M rows -> nb iq1m_packed_block,
 * AVX-512 (F/BW/VL) + F16C; the same bytes as the scalar definition iq1m_repack_panel
 * (src/repack.c), which handles partial panels (n_rows < 16) itself.
 *
 * Per block the 16 rows are turned column-wise (lane r = row r): two 32-byte loads per row
 * (bytes 0-31 and 24-55) and two 8x8 dword transposes per 256-bit half give the 32 qs
 * bytes, 16 qh bytes and 4 scale words in 14 vectors (dword gathers were slower).  Per group g
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
#include "iq1m-panel-scales-avx512vnni.h"


/* In each 256-bit half independently: x[r] dword i -> x[i] dword r (8x8 dword transpose;
   the low halves hold rows 0-7, the high halves rows 8-15). */
static inline __attribute__((always_inline)) void iq1m_transpose8x8_halves(__m512i x[8]) {
    __m512i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* u[k] (k < 4): 128-bit lane L of rows 0-3 holds dword k + 4*(L%2) of each row;
       u[4 + k] the same for rows 4-7; join them per 256-bit half */
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
        x[k] = _mm512_permutex2var_epi64(u[k], lo, u[4 + k]);
        x[k + 4] = _mm512_permutex2var_epi64(u[k], hi, u[4 + k]);
    }
}

void iq1m_repack_16xK_avx512vnni(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                 iq1m_packed_block *out);
void iq1m_repack_16xK_avx512vnni(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                 iq1m_packed_block *out) {
    const int64_t row_bytes = nb * IQ1M_BLOCK_BYTES;
    if (n_rows != IQ1M_PACK_ROWS) {
        iq1m_repack_panel(w, nb, r0, n_rows, out); /* tail panel: the scalar definition */
        return;
    }
    const long long *G = (const long long *)iq1m_grid_u64;
    const __m512i pe = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i po = _mm512_add_epi32(pe, _mm512_set1_epi32(1));
    const __m512i m8 = _mm512_set1_epi32(0xff), mh = _mm512_set1_epi32(0x700);
    const __m512i sbit = _mm512_set1_epi32(0x800), ones = _mm512_set1_epi8(1);
    const __m512i twos = _mm512_set1_epi8(2);
    const uint8_t *base = w + r0 * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t *blk = base + b * IQ1M_BLOCK_BYTES;
        iq1m_packed_block *p = out + b;
        /* column-wise view of the 16 rows: Q[i] lane r = qs dword i of row r, H[i] = qh
           dword i, S0/S1 = scale words 0-1 / 2-3 (two 32-byte loads per row, transposed) */
        __m512i A[8], B[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) {
            const uint8_t *x0 = blk + (int64_t)r * row_bytes, *x1 = x0 + 8 * row_bytes;
            A[r] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x0)),
                                      _mm256_loadu_si256((const __m256i *)x1), 1);
            B[r] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x0 + 24))),
                _mm256_loadu_si256((const __m256i *)(x1 + 24)), 1);
        }
        iq1m_transpose8x8_halves(A);
        iq1m_transpose8x8_halves(B);
        __m512i Q[8], H[4];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) Q[i] = A[i];
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) H[i] = B[2 + i];
        const __m512i S0 = B[6]; /* words 0, 1 */
        const __m512i S1 = B[7]; /* words 2, 3 */

        iq1m_panel_scales_avx512(S0, S1, p);

        /* weights, group by group */
#pragma GCC unroll 4
        for (int g = 0; g < 32; ++g) {
            const __m512i qs = _mm512_and_si512(_mm512_srli_epi32(Q[g / 4], 8 * (g % 4)), m8);
            const int s = 8 * ((g / 2) % 4) + 4 * (g % 2); /* nibble position in H[g / 8] */
            const __m512i h = s >= 8 ? _mm512_srli_epi32(H[g / 8], s - 8)
                                     : _mm512_slli_epi32(H[g / 8], 8 - s);
            const __m512i idx = _mm512_ternarylogic_epi32(h, mh, qs, 0xEA); /* (h & mh) | qs */
            const __mmask16 plus = _mm512_testn_epi32_mask(h, sbit); /* delta sign clear */
            uint64_t ix[8]; /* index pairs; table loads through GPRs (cheaper than gathers) */
            _mm512_storeu_si512(ix, idx);
#define IQ1M_GRID_PAIR(i) G[ix[i] >> 32], G[(uint32_t)ix[i]]
            const __m512i v0 = _mm512_set_epi64(IQ1M_GRID_PAIR(3), IQ1M_GRID_PAIR(2),
                                                IQ1M_GRID_PAIR(1), IQ1M_GRID_PAIR(0));
            const __m512i v1 = _mm512_set_epi64(IQ1M_GRID_PAIR(7), IQ1M_GRID_PAIR(6),
                                                IQ1M_GRID_PAIR(5), IQ1M_GRID_PAIR(4));
#undef IQ1M_GRID_PAIR
            __m512i lo = _mm512_slli_epi32(_mm512_add_epi8(_mm512_permutex2var_epi32(v0, pe, v1), ones), 3);
            __m512i hi = _mm512_slli_epi32(_mm512_add_epi8(_mm512_permutex2var_epi32(v0, po, v1), ones), 3);
            lo = _mm512_mask_or_epi32(lo, plus, lo, twos);
            hi = _mm512_mask_or_epi32(hi, plus, hi, twos);
            _mm512_storeu_si512(p->q[2 * g], lo);
            _mm512_storeu_si512(p->q[2 * g + 1], hi);
        }
    }
}
