/* iq1m-prepacked-repack-16xK-avx512vnni.c: one 16-row panel of prepacked rows
 * (iq1m_block_prepacked) -> nb iq1m_packed_block, AVX-512 (F/BW/VL) + F16C; the same bytes
 * as the scalar definition iq1m_repack_panel_prepacked (src/repack.c), which handles partial
 * panels (n_rows < 16) itself.
 *
 * No table: per block the 16 rows' q2 fields (16 dwords each) are transposed 16x16, so that
 * lane r of x[l] holds row r's weights 64j + 4l .. +3 for all four j in its 2-bit fields;
 * one shift and mask per j gives u = 8*(grid + 1) bytewise, and a masked add of 2 in the
 * rows whose group has a + delta sign gives u = w + 9 = q[16j + l][r]. The scales go
 * through the same code as the IQ1_M repack.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../format.h"
#include "../repack.h"
#include "iq1m-panel-scales-avx512vnni.h"

/* x[i] dword j -> x[j] dword i (16x16 dwords) */
static inline __attribute__((always_inline)) void iq1m_transpose16x16(__m512i x[16]) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
    }
    /* u[4i + m], 128-bit lane L: rows 4i..4i+3 of column 4L + m */
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* column 4L + m = lane L of u[m], u[4 + m], u[8 + m], u[12 + m]: a 4x4 lane transpose */
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44);
        const __m512i v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xEE);
        x[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        x[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        x[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        x[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

void iq1m_prepacked_repack_16xK_avx512vnni(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                           iq1m_packed_block *out);
void iq1m_prepacked_repack_16xK_avx512vnni(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                           iq1m_packed_block *out) {
    if (n_rows != IQ1M_PACK_ROWS) {
        iq1m_repack_panel_prepacked(w, nb, r0, n_rows, out); /* tail panel: the scalar definition */
        return;
    }
    const iq1m_block_prepacked *rows = (const iq1m_block_prepacked *)(const void *)w + r0 * nb;
    const __m512i m18 = _mm512_set1_epi32(0x18181818), two = _mm512_set1_epi32(0x02020202);
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_packed_block *p = out + b;
        /* q2 column-wise: after the transpose x[l] lane r = q2 bytes 4l..4l+3 of row r, which
           hold weights 64j + 4l .. 64j + 4l + 3 in their bits 2j..2j+1 (j = 0..3) */
        __m512i x[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; ++r) x[r] = _mm512_loadu_si512(rows[r * nb + b].q2);
        iq1m_transpose16x16(x);
        /* plus and scale words column-wise: lane r = row r's plus bits (group g = bit g),
           its scale words 0-1 (S0) and 2-3 (S1) */
        uint32_t pl[16];
        uint64_t sc[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; ++r) {
            memcpy(&pl[r], rows[r * nb + b].plus, 4);
            memcpy(&sc[r], rows[r * nb + b].scales, 8);
        }
        const __m512i P = _mm512_loadu_si512(pl);
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l) {
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                /* bits 2j..2j+1 of each byte moved to bits 3..4: u = 8*(grid + 1) */
                const __m512i g = j == 0   ? _mm512_slli_epi32(x[l], 3)
                                  : j == 1 ? _mm512_slli_epi32(x[l], 1)
                                  : j == 2 ? _mm512_srli_epi32(x[l], 1)
                                           : _mm512_srli_epi32(x[l], 3);
                const __m512i u = _mm512_and_si512(g, m18);
                /* + 2 in the rows whose group 8j + l/2 has a + delta sign */
                const __mmask16 plus = _mm512_test_epi32_mask(P, _mm512_set1_epi32((int)(1u << (8 * j + l / 2))));
                _mm512_storeu_si512(p->q[16 * j + l], _mm512_mask_add_epi32(u, plus, u, two));
            }
        }
        const __m512i lo = _mm512_loadu_si512(sc), hi = _mm512_loadu_si512(sc + 8);
        const __m512i S0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)),
                                              _mm512_cvtepi64_epi32(hi), 1);
        const __m512i S1 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_srli_epi64(lo, 32))),
            _mm512_cvtepi64_epi32(_mm512_srli_epi64(hi, 32)), 1);
        iq1m_panel_scales_avx512(S0, S1, p);
    }
}
