/* table-avx2.c: placeholder avx2 micro-kernel table with every entry NULL, so the library
 * links and dispatch falls back to the scalar kernels. Replaced by the real avx2 table. */
#include "../ukernel.h"

const iq1m_ukernel_table iq1m_ukernels_avx2 = {
    "avx2",
    {0},
    {0},
};
