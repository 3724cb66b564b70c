/* table-avx2.c: the avx2 micro-kernel table (AVX2 + FMA + F16C), index = nc. */
#include "../ukernel.h"

#define DECL(N)                                                                            \
    void iq1m_direct_1x##N##_avx2(int64_t, const uint8_t *, const iq1m_block_q8K *const *,  \
                                    float *, int64_t);                                     \
    void iq1m_packed_16x##N##_avx2(int64_t, const iq1m_packed_block *,                    \
                                     const iq1m_block_q8K *const *, float *, int64_t);
#define DECL_PREPACKED(N)                                                                  \
    void iq1m_prepacked_direct_1x##N##_avx2(int64_t, const uint8_t *,                      \
                                            const iq1m_block_q8K *const *, float *, int64_t);
DECL_PREPACKED(1)
DECL_PREPACKED(2)
DECL_PREPACKED(3)
DECL_PREPACKED(4)
DECL_PREPACKED(5)
DECL_PREPACKED(6)
DECL_PREPACKED(7)
DECL_PREPACKED(8)
DECL(1)
DECL(2)
DECL(3)
DECL(4)
DECL(5)
DECL(6)
DECL(7)
DECL(8)

void iq1m_repack_16xK_avx2(const uint8_t *, int64_t, int64_t, int, iq1m_packed_block *);
void iq1m_prepacked_repack_16xK_avx2(const uint8_t *, int64_t, int64_t, int, iq1m_packed_block *);

const iq1m_ukernel_table iq1m_ukernels_avx2 = {
    "avx2",
#if defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL
    {0}, /* direct kernels compiled out (the seed's configuration) */
#else
    {NULL, iq1m_direct_1x1_avx2, iq1m_direct_1x2_avx2, iq1m_direct_1x3_avx2,
     iq1m_direct_1x4_avx2, iq1m_direct_1x5_avx2, iq1m_direct_1x6_avx2,
     iq1m_direct_1x7_avx2, iq1m_direct_1x8_avx2},
#endif
    {NULL, iq1m_packed_16x1_avx2, iq1m_packed_16x2_avx2, iq1m_packed_16x3_avx2,
     iq1m_packed_16x4_avx2, iq1m_packed_16x5_avx2, iq1m_packed_16x6_avx2,
     iq1m_packed_16x7_avx2, iq1m_packed_16x8_avx2},
    iq1m_repack_16xK_avx2,
    NULL /* quantize: the scalar definition (src/q8k.c) */,
#if defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL
    {0},
#else
    {NULL, iq1m_prepacked_direct_1x1_avx2, iq1m_prepacked_direct_1x2_avx2,
     iq1m_prepacked_direct_1x3_avx2, iq1m_prepacked_direct_1x4_avx2,
     iq1m_prepacked_direct_1x5_avx2, iq1m_prepacked_direct_1x6_avx2,
     iq1m_prepacked_direct_1x7_avx2, iq1m_prepacked_direct_1x8_avx2},
#endif
    iq1m_prepacked_repack_16xK_avx2,
    NULL /* act: the scalar definition (src/act.c) */,
};
