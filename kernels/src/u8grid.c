/* u8grid.c: builds iq1m_u8grid (u8grid.h) from the grid once, at load time. Compiled
 * without SIMD flags, so the constructor runs on any CPU the library can be loaded on. */
#include "u8grid.h"

_Alignas(64) uint64_t iq1m_u8grid[2 * IQ1M_GRID_SIZE];

__attribute__((constructor)) static void iq1m_u8grid_build(void) {
    for (int sg = 0; sg < 2; ++sg)
        for (int i = 0; i < IQ1M_GRID_SIZE; ++i) {
            uint64_t v = 0;
            for (int k = 0; k < 8; ++k) {
                const int g = iq1m_grid_values(i)[k];
                v |= (uint64_t)(uint8_t)(8 * (g + 1) + (sg ? 0 : 2)) << (8 * k);
            }
            iq1m_u8grid[(sg << 11) | i] = v;
        }
}
