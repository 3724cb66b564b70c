/* iq1m-prepacked-unpack-avx2.h: the table-free weight decode of one prepacked block
 * (iq1m_block_prepacked), shared by the AVX2 and AVX-512 direct kernels (AVX2 instructions
 * only). Include after <immintrin.h>. */
#ifndef IQ1M_PREPACKED_UNPACK_AVX2_H
#define IQ1M_PREPACKED_UNPACK_AVX2_H

#include "../format.h"

/* u[t] = 8*(grid+1) of weights 32t..32t+31: the 2-bit field moved to bits 3..4 (q2 byte i
   holds weights i, i+64, i+128, i+192). Adding 2 in the bytes of groups whose delta sign is
   + gives w + 9; each ISA does that its own way (AVX-512 mask registers measured faster). */
static inline __attribute__((always_inline)) void
iq1m_prepacked_grid_u8(const iq1m_block_prepacked *blk, __m256i u[8]) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)blk->q2);        /* 0..31 (+64j) */
    const __m256i hi = _mm256_loadu_si256((const __m256i *)(blk->q2 + 32)); /* 32..63 (+64j) */
    const __m256i m18 = _mm256_set1_epi8(0x18);
    u[0] = _mm256_and_si256(_mm256_slli_epi16(lo, 3), m18);
    u[1] = _mm256_and_si256(_mm256_slli_epi16(hi, 3), m18);
    u[2] = _mm256_and_si256(_mm256_slli_epi16(lo, 1), m18);
    u[3] = _mm256_and_si256(_mm256_slli_epi16(hi, 1), m18);
    u[4] = _mm256_and_si256(_mm256_srli_epi16(lo, 1), m18);
    u[5] = _mm256_and_si256(_mm256_srli_epi16(hi, 1), m18);
    u[6] = _mm256_and_si256(_mm256_srli_epi16(lo, 3), m18);
    u[7] = _mm256_and_si256(_mm256_srli_epi16(hi, 3), m18);
}

/* the plus-bit selector of w[t]: byte b belongs to group 4t + b/8, bit (4t + b/8) % 8 of plus
   byte t/2 */
static inline __attribute__((always_inline)) __m256i iq1m_prepacked_plus_bits(int t) {
    const __m256i even = _mm256_setr_epi64x(0x0101010101010101ll, 0x0202020202020202ll,
                                            0x0404040404040404ll, 0x0808080808080808ll);
    return t % 2 ? _mm256_slli_epi64(even, 4) : even;
}

#endif /* IQ1M_PREPACKED_UNPACK_AVX2_H */
