/* gemm_packed.c: repacked-path loop nest: columns in chunks of up to IQ1M_MAX_NC, each chunk
 * against every panel of the block (panels stay hot in cache, columns are streamed). */
#include "gemm.h"

static int chunk_want(int64_t rem) { return rem > IQ1M_MAX_NC ? IQ1M_MAX_NC : (int)rem; }

void iq1m_gemm_packed_tile(const iq1m_kernels *k, int64_t nb, const iq1m_packed_block *panels,
                           int64_t n_panels, const iq1m_block_q8K *const *cols, int64_t nc,
                           float *tile, int64_t ts, iq1m_prefetch_stream *pf) {
    for (int64_t c = 0; c < nc;) {
        const int want = chunk_want(nc - c);
        iq1m_packed_ukernel_fn fn = k->packed[want];
        for (int64_t p = 0; p < n_panels; ++p) {
            /* mutate: off (a prefetch hint: no output can observe it) */
            iq1m_prefetch_step(pf);
            /* mutate: on */
            fn(nb, panels + p * nb, cols + c, tile + c * ts + p * IQ1M_PACK_ROWS, ts);
        }
        c += k->packed_nc[want];
    }
}

/* mutate: off (it only sizes the prefetch slices) */
int64_t iq1m_gemm_packed_calls(const iq1m_kernels *k, int64_t n_panels, int64_t nc) {
    int64_t calls = 0;
    for (int64_t c = 0; c < nc; c += k->packed_nc[chunk_want(nc - c)]) calls += n_panels;
    return calls;
}
/* mutate: on */
