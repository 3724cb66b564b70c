/* gemm_direct.c: direct-path loop nest: for each weight row, the columns in chunks of up to
 * IQ1M_MAX_NC through the resolved kernel for that chunk size (which may itself cover fewer
 * columns per call); the plain scalar dot product when direct kernels are compiled out.
 * IQ1_M rows and prepacked rows differ only in block size and kernel set. */
#include "gemm.h"

#include "format.h"

void iq1m_gemm_direct_tile(const iq1m_kernels *k, int prepacked, int64_t nb, const uint8_t *w,
                           int64_t r0, int64_t nr, const iq1m_block_q8K *const *cols,
                           int64_t nc, float *tile, int64_t ts) {
    const int64_t row_bytes = nb * (prepacked ? IQ1M_PREPACKED_BLOCK_BYTES : IQ1M_BLOCK_BYTES);
    iq1m_direct_ukernel_fn const *fns = prepacked ? k->direct_prepacked : k->direct;
    const int *fn_nc = prepacked ? k->direct_prepacked_nc : k->direct_nc;
    for (int64_t r = 0; r < nr; ++r) {
        const uint8_t *w_row = w + (r0 + r) * row_bytes;
        int64_t c = 0;
        while (c < nc) {
            int64_t rem = nc - c;
            int want = rem > IQ1M_MAX_NC ? IQ1M_MAX_NC : (int)rem;
            iq1m_direct_ukernel_fn fn = fns[want];
            if (!fn) { /* direct kernels compiled out: plain dot product */
                tile[c * ts + r] = prepacked ? iq1m_vec_dot_prepacked_scalar(nb, w_row, cols[c])
                                             : iq1m_vec_dot_scalar(nb, w_row, cols[c]);
                c += 1;
                continue;
            }
            fn(nb, w_row, cols + c, tile + c * ts + r, ts);
            c += fn_nc[want];
        }
    }
}
