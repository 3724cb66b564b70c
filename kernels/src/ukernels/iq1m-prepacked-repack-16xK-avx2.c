/* iq1m-prepacked-repack-16xK-avx2.c: one 16-row panel of prepacked rows (iq1m_block_prepacked) ->
 * nb iq1m_packed_block, AVX2 + F16C; the same bytes as the scalar definition
 * iq1m_repack_panel_prepacked (src/repack.c), which handles partial panels (n_rows < 16) and row
 * offsets beyond int32 itself.
 *
 * No table: per block and half (rows 8h..8h+7), dword gathers give the rows' q2 fields
 * column-wise (Q[l] lane r = q2 bytes 4l..4l+3 of row 8h + r, i.e. weights 64j + 4l .. +3
 * in bits 2j..2j+1 for j = 0..3), their plus bits and scale words. One shift and mask per j
 * gives u = 8*(grid + 1) bytewise, plus 2 in the rows whose group has a + delta sign: the
 * 32 bytes of q[16j + l][8h..8h+7]. The scales go through the same code as the IQ1_M repack.
 */
#include <immintrin.h>
#include <stdint.h>

#include "../format.h"
#include "../repack.h"
#include "iq1m-panel-scales-avx2.h"

void iq1m_prepacked_repack_16xK_avx2(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                     iq1m_packed_block *out);
void iq1m_prepacked_repack_16xK_avx2(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                     iq1m_packed_block *out) {
    const int64_t row_bytes = nb * IQ1M_PREPACKED_BLOCK_BYTES;
    if (n_rows != IQ1M_PACK_ROWS || row_bytes > (INT32_MAX - 128) / IQ1M_PACK_ROWS) {
        /* tail panel, or offsets beyond int32 */
        iq1m_repack_panel_prepacked(w, nb, r0, n_rows, out);
        return;
    }
    const __m256i roff = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)row_bytes));
    const __m256i m18 = _mm256_set1_epi32(0x18181818), two = _mm256_set1_epi32(0x02020202);
    const uint8_t *base = w + r0 * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_packed_block *p = out + b;
        __m256i S0[2], S1[2];
        for (int half = 0; half < 2; ++half) {
            const iq1m_block_prepacked *blk = (const iq1m_block_prepacked *)(const void *)(
                base + (int64_t)(8 * half) * row_bytes) + b;
            const int r8 = 8 * half;
            const __m256i P = _mm256_i32gather_epi32((const int *)(const void *)blk->plus, roff, 1);
            S0[half] = _mm256_i32gather_epi32((const int *)(const void *)blk->scales, roff, 1);
            S1[half] = _mm256_i32gather_epi32((const int *)(const void *)(blk->scales + 4), roff, 1);
            iq1m_panel_d_avx2(S0[half], S1[half], half, p);
#pragma GCC unroll 2
            for (int l = 0; l < 16; ++l) {
                const __m256i Q = _mm256_i32gather_epi32((const int *)(const void *)(blk->q2 + 4 * l),
                                                         roff, 1);
#pragma GCC unroll 4
                for (int j = 0; j < 4; ++j) {
                    /* bits 2j..2j+1 of each byte moved to bits 3..4: u = 8*(grid + 1) */
                    const __m256i g = j == 0   ? _mm256_slli_epi32(Q, 3)
                                      : j == 1 ? _mm256_slli_epi32(Q, 1)
                                      : j == 2 ? _mm256_srli_epi32(Q, 1)
                                               : _mm256_srli_epi32(Q, 3);
                    /* + 2 in the rows whose group 8j + l/2 has a + delta sign */
                    const __m256i bit = _mm256_set1_epi32((int)(1u << (8 * j + l / 2)));
                    const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(P, bit), bit);
                    const __m256i u = _mm256_add_epi8(_mm256_and_si256(g, m18),
                                                      _mm256_and_si256(set, two));
                    _mm256_storeu_si256((__m256i *)&p->q[16 * j + l][r8][0], u);
                }
            }
        }
        iq1m_panel_mult_avx2(S0, S1, p);
    }
}
