/* gemm_packed.c: repacked-path loop nest: columns in chunks of up to IQ1M_MAX_NC, each chunk
 * against every panel of the block (panels stay hot in cache, columns are streamed). */
#include "gemm.h"

void iq1m_gemm_packed_tile(const iq1m_kernels *k, int64_t nb, const iq1m_packed_block *panels,
                           int64_t n_panels, const iq1m_block_q8K *const *cols, int64_t nc,
                           float *tile, int64_t ts) {
    int64_t c = 0;
    while (c < nc) {
        int64_t rem = nc - c;
        int want = rem > IQ1M_MAX_NC ? IQ1M_MAX_NC : (int)rem;
        iq1m_packed_ukernel_fn fn = k->packed[want];
        int got = k->packed_nc[want];
        for (int64_t p = 0; p < n_panels; ++p)
            fn(nb, panels + p * nb, cols + c, tile + c * ts + p * IQ1M_PACK_ROWS, ts);
        c += got;
    }
}
