/* table-avx512vnni.c: placeholder avx512vnni micro-kernel table with every entry NULL, so the library
 * links and dispatch falls back to the scalar kernels. Replaced by the real avx512vnni table. */
#include "../ukernel.h"

const iq1m_ukernel_table iq1m_ukernels_avx512vnni = {
    "avx512vnni",
    {0},
    {0},
};
