/* u8grid.h: the grid with the delta sign folded in, as unsigned bytes: the table behind the
 * SIMD direct kernels' one-lookup-per-group decode (AVX2 and AVX-512 share it). */
#ifndef IQ1M_U8GRID_H
#define IQ1M_U8GRID_H

#include <stdint.h>

#include "format.h"

/* Entry (sign << 11 | index), sign = the group's IQ1_M delta bit (1: -1/8): the 8 weights
 * as bytes w + 9 = 8*(grid+1) + 2 (bit clear) or 8*(grid+1) (bit set), weight k in byte k
 * of the little-endian word. Filled from iq1m_grid_u64 when the library is loaded (a
 * constructor in u8grid.c, plain C: safe on any x86-64), so kernels just read it. */
extern uint64_t iq1m_u8grid[2 * IQ1M_GRID_SIZE];

#endif /* IQ1M_U8GRID_H */
