/* iq1m-repack-16xK-avx2.c: one 16-row panel of IQ1_M rows -> nb iq1m_packed_block, AVX2 +
 * F16C; the same bytes as the scalar definition iq1m_repack_panel (src/repack.c), which
 * handles partial panels (n_rows < 16) itself.
 *
 * The AVX-512 repack on 8-lane vectors: per block and half panel (8 rows, lane r = row),
 * dword gathers read qs, qh and the scale words column-wise; per group the 8 grid indices
 * are formed in the lanes, 8 qword loads from iq1m_grid_u64 (through GPRs) fetch the grid
 * values, a dword permute and a lane swap split them into q[2g][r] and q[2g+1][r], and
 * w + 9 = 8*(grid+1) + (sign clear ? 2 : 0) is formed bytewise.  mult[j][r] = 2s+1 and d[r]
 * (vcvtph2ps: exact) come from the scale words in the same lanes.
 */
#include <immintrin.h>
#include <stdint.h>

#include "../format.h"
#include "../repack.h"
#include "iq1m-panel-scales-avx2.h"

void iq1m_repack_16xK_avx2(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                           iq1m_packed_block *out);
void iq1m_repack_16xK_avx2(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                           iq1m_packed_block *out) {
    const int64_t row_bytes = nb * IQ1M_BLOCK_BYTES;
    if (n_rows != IQ1M_PACK_ROWS || row_bytes > (INT32_MAX - 64) / IQ1M_PACK_ROWS) {
        iq1m_repack_panel(w, nb, r0, n_rows, out); /* tail panel, or offsets beyond int32 */
        return;
    }
    const long long *G = (const long long *)iq1m_grid_u64;
    const __m256i roff = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)row_bytes));
    const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7); /* low dwords | high */
    const __m256i m8 = _mm256_set1_epi32(0xff), mh = _mm256_set1_epi32(0x700);
    const __m256i sbit = _mm256_set1_epi32(0x800), ones = _mm256_set1_epi8(1);
    const __m256i twos = _mm256_set1_epi8(2);
    const uint8_t *base = w + r0 * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
        iq1m_packed_block *p = out + b;
        __m256i S0[2], S1[2];
        for (int half = 0; half < 2; ++half) {
            const uint8_t *blk = base + (int64_t)(8 * half) * row_bytes + b * IQ1M_BLOCK_BYTES;
            const int r8 = 8 * half;
            __m256i Q[8], H[4];
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i)
                Q[i] = _mm256_i32gather_epi32((const int *)(blk + 4 * i), roff, 1);
#pragma GCC unroll 4
            for (int i = 0; i < 4; ++i)
                H[i] = _mm256_i32gather_epi32((const int *)(blk + 32 + 4 * i), roff, 1);
            S0[half] = _mm256_i32gather_epi32((const int *)(blk + 48), roff, 1);
            S1[half] = _mm256_i32gather_epi32((const int *)(blk + 52), roff, 1);

            iq1m_panel_d_avx2(S0[half], S1[half], half, p);

#pragma GCC unroll 4
            for (int g = 0; g < 32; ++g) {
                const __m256i qs = _mm256_and_si256(_mm256_srli_epi32(Q[g / 4], 8 * (g % 4)), m8);
                const int s = 8 * ((g / 2) % 4) + 4 * (g % 2);
                const __m256i h = s >= 8 ? _mm256_srli_epi32(H[g / 8], s - 8)
                                         : _mm256_slli_epi32(H[g / 8], 8 - s);
                const __m256i idx = _mm256_or_si256(_mm256_and_si256(h, mh), qs);
                /* 2 (sign clear) or 0 per byte of each lane */
                const __m256i plus = _mm256_and_si256(
                    _mm256_cmpeq_epi32(_mm256_and_si256(h, sbit), _mm256_setzero_si256()), twos);
                uint32_t ix[8];
                _mm256_storeu_si256((__m256i *)ix, idx);
                const __m256i v0 = _mm256_permutevar8x32_epi32(
                    _mm256_set_epi64x(G[ix[3]], G[ix[2]], G[ix[1]], G[ix[0]]), split);
                const __m256i v1 = _mm256_permutevar8x32_epi32(
                    _mm256_set_epi64x(G[ix[7]], G[ix[6]], G[ix[5]], G[ix[4]]), split);
                __m256i lo = _mm256_permute2x128_si256(v0, v1, 0x20);
                __m256i hi = _mm256_permute2x128_si256(v0, v1, 0x31);
                lo = _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi8(lo, ones), 3), plus);
                hi = _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi8(hi, ones), 3), plus);
                _mm256_storeu_si256((__m256i *)&p->q[2 * g][r8][0], lo);
                _mm256_storeu_si256((__m256i *)&p->q[2 * g + 1][r8][0], hi);
            }
        }
        iq1m_panel_mult_avx2(S0, S1, p);
    }
}
