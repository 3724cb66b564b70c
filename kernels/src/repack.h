/* repack.h: IQ1_M rows -> 16-row interleaved panels (iq1m_packed_block, numerics.md). */
#ifndef IQ1M_REPACK_H
#define IQ1M_REPACK_H

#include <stdint.h>

#include "ukernel.h"

/* Repack rows [r0, r0 + n_rows) (n_rows in 1..16; missing rows are padding) of a weight
 * matrix with row stride nb*56 bytes into nb panel blocks at out[0..nb). */
void iq1m_repack_panel(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                       iq1m_packed_block *out);

/* The same panels from rows of prepacked blocks (iq1m_block_prepacked, row stride nb*80 bytes):
 * byte-identical to iq1m_repack_panel of the IQ1_M rows they were made from. */
void iq1m_repack_panel_prepacked(const uint8_t *w, int64_t nb, int64_t r0, int n_rows,
                                 iq1m_packed_block *out);

#endif /* IQ1M_REPACK_H */
