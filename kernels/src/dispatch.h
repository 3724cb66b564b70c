/* dispatch.h: CPU feature detection, ISA resolution and the resolved kernel set. */
#ifndef IQ1M_DISPATCH_H
#define IQ1M_DISPATCH_H

#include <stdint.h>

#include "ukernel.h"

/* Kernels for one ISA with the per-nc fallback already applied: fn[nc] processes
 * cols_of[nc] (<= nc, >= 1) columns per call; direct fn[] all NULL means "use the plain
 * scalar dot product" (direct kernels compiled out). */
typedef struct {
    int32_t isa;
    iq1m_direct_ukernel_fn direct[IQ1M_MAX_NC + 1];
    int direct_nc[IQ1M_MAX_NC + 1];
    iq1m_packed_ukernel_fn packed[IQ1M_MAX_NC + 1];
    int packed_nc[IQ1M_MAX_NC + 1];
    iq1m_repack_fn repack;     /* never NULL */
    iq1m_quantize_fn quantize; /* never NULL */
    /* prepacked weights (iq1m_block_prepacked): the same fallback rules */
    iq1m_direct_ukernel_fn direct_prepacked[IQ1M_MAX_NC + 1];
    int direct_prepacked_nc[IQ1M_MAX_NC + 1];
    iq1m_repack_fn repack_prepacked;  /* never NULL */
    iq1m_act_ukernel_fn act; /* NULL: the scalar definition (act.h, iq1m_act_run) */
} iq1m_kernels;

uint32_t iq1m_dispatch_available(void);
int32_t iq1m_dispatch_best(void);
/* isa: an iq1m_isa value (AUTO allowed). Returns NULL when unknown or unavailable. */
const iq1m_kernels *iq1m_dispatch_get(int32_t isa);

#endif /* IQ1M_DISPATCH_H */
