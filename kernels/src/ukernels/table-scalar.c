/* table-scalar.c: the scalar micro-kernel table (always complete; the fallback of every
 * other ISA). With IQ1M_DIRECT_KERNEL=OFF the direct entries are compiled out (the seed's
 * configuration) and the loop nest uses the plain scalar dot product instead. */
#include "../ukernel.h"

#define DECL(N)                                                                            \
    void iq1m_direct_1x##N##_scalar(int64_t, const uint8_t *, const iq1m_block_q8K *const *, \
                                    float *, int64_t);                                     \
    void iq1m_packed_16x##N##_scalar(int64_t, const iq1m_packed_block *,                   \
                                     const iq1m_block_q8K *const *, float *, int64_t);     \
    void iq1m_prepacked_direct_1x##N##_scalar(int64_t, const uint8_t *,                           \
                                       const iq1m_block_q8K *const *, float *, int64_t);
DECL(1)
DECL(2)
DECL(3)
DECL(4)
DECL(5)
DECL(6)
DECL(7)
DECL(8)

const iq1m_ukernel_table iq1m_ukernels_scalar = {
    "scalar",
#if defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL
    {0},
#else
    {NULL, iq1m_direct_1x1_scalar, iq1m_direct_1x2_scalar, iq1m_direct_1x3_scalar,
     iq1m_direct_1x4_scalar, iq1m_direct_1x5_scalar, iq1m_direct_1x6_scalar,
     iq1m_direct_1x7_scalar, iq1m_direct_1x8_scalar},
#endif
    {NULL, iq1m_packed_16x1_scalar, iq1m_packed_16x2_scalar, iq1m_packed_16x3_scalar,
     iq1m_packed_16x4_scalar, iq1m_packed_16x5_scalar, iq1m_packed_16x6_scalar,
     iq1m_packed_16x7_scalar, iq1m_packed_16x8_scalar},
    NULL /* repack: iq1m_repack_panel (src/repack.c) */,
    NULL /* quantize: iq1m_q8k_quantize (src/q8k.c) */,
#if defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL
    {0},
#else
    {NULL, iq1m_prepacked_direct_1x1_scalar, iq1m_prepacked_direct_1x2_scalar,
     iq1m_prepacked_direct_1x3_scalar, iq1m_prepacked_direct_1x4_scalar,
     iq1m_prepacked_direct_1x5_scalar, iq1m_prepacked_direct_1x6_scalar,
     iq1m_prepacked_direct_1x7_scalar, iq1m_prepacked_direct_1x8_scalar},
#endif
    NULL /* repack_prepacked: iq1m_repack_panel_prepacked (src/repack.c) */,
    NULL /* act: the scalar definition (src/act.c) */,
};
