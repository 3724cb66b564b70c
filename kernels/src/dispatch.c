/* dispatch.c: which ISAs can run here (CPUID feature bits plus OS XSAVE state, so AVX /
 * AVX-512 registers are really enabled), and per-ISA kernel sets where a NULL entry for a
 * column count falls back to the largest smaller count of the same ISA, then to the scalar
 * table. Never aborts. */
#include "dispatch.h"

#include <cpuid.h>
#include <pthread.h>

#include "q8k.h"
#include "repack.h"

static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

/* Every feature bit is read from CPUID itself (not libgcc's __builtin_cpu_supports, which
   caches what it read before main), so a test can fake any CPU by trapping CPUID. */
static uint32_t detect(void) {
    uint32_t mask = 1u << IQ1M_ISA_SCALAR;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return mask;
    const int osxsave = (c >> 27) & 1;
    if (!osxsave) return mask;
    const int avx_fma_f16c = ((c >> 28) & 1) && ((c >> 12) & 1) && ((c >> 29) & 1);
    const uint64_t xcr0 = xgetbv0();
    const int os_avx = (xcr0 & 0x6) == 0x6;
    const int os_avx512 = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return mask;
    const int avx2 = os_avx && avx_fma_f16c && ((b >> 5) & 1);
    if (avx2) mask |= 1u << IQ1M_ISA_AVX2;
    const unsigned avx512_f_dq_bw_vl = 1u << 16 | 1u << 17 | 1u << 30 | 1u << 31; /* leaf 7 EBX */
    if (avx2 && os_avx512 && (b & avx512_f_dq_bw_vl) == avx512_f_dq_bw_vl && ((c >> 11) & 1) /* VNNI */)
        mask |= 1u << IQ1M_ISA_AVX512VNNI;
    return mask;
}

static uint32_t g_mask;
static iq1m_kernels g_kernels[4];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* fn[nc] = the table's kernel for nc columns, else its largest smaller one, else the
   scalar table's kernel for nc (which exists unless direct kernels are compiled out) */
static void resolve_direct(iq1m_direct_ukernel_fn fn[], int fn_nc[],
                           const iq1m_direct_ukernel_fn own[],
                           const iq1m_direct_ukernel_fn scalar[]) {
    for (int nc = 1; nc <= IQ1M_MAX_NC; ++nc) {
        fn[nc] = NULL;
        fn_nc[nc] = nc;
#if !(defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL)
        for (int m = nc; m >= 1 && !fn[nc]; --m)
            if (own[m]) {
                fn[nc] = own[m];
                fn_nc[nc] = m;
            }
        if (!fn[nc] && scalar[nc]) fn[nc] = scalar[nc];
#else
        (void)own;
        (void)scalar;
#endif
    }
}

static void resolve(iq1m_kernels *k, int32_t isa, const iq1m_ukernel_table *t) {
    const iq1m_ukernel_table *s = &iq1m_ukernels_scalar;
    k->isa = isa;
    resolve_direct(k->direct, k->direct_nc, t->direct, s->direct);
    resolve_direct(k->direct_prepacked, k->direct_prepacked_nc, t->direct_prepacked,
                   s->direct_prepacked);
    for (int nc = 1; nc <= IQ1M_MAX_NC; ++nc) {
        k->packed[nc] = NULL;
        k->packed_nc[nc] = nc;
        for (int m = nc; m >= 1 && !k->packed[nc]; --m)
            if (t->packed[m]) {
                k->packed[nc] = t->packed[m];
                k->packed_nc[nc] = m;
            }
        if (!k->packed[nc]) k->packed[nc] = s->packed[nc];
    }
    /* lossy_repack is a fault of the scalar repack: every ISA uses it then (FAULTS.md) */
#if IQ1M_FAULT_IS(lossy_repack)
    k->repack = iq1m_repack_panel;
#else
    k->repack = t->repack ? t->repack : iq1m_repack_panel;
#endif
    k->repack_prepacked = t->repack_prepacked ? t->repack_prepacked : iq1m_repack_panel_prepacked;
    k->quantize = t->quantize ? t->quantize : iq1m_q8k_quantize;
    k->act = t->act;
}

static void init_once(void) {
    g_mask = detect();
    resolve(&g_kernels[IQ1M_ISA_SCALAR], IQ1M_ISA_SCALAR, &iq1m_ukernels_scalar);
    resolve(&g_kernels[IQ1M_ISA_AVX2], IQ1M_ISA_AVX2, &iq1m_ukernels_avx2);
    resolve(&g_kernels[IQ1M_ISA_AVX512VNNI], IQ1M_ISA_AVX512VNNI, &iq1m_ukernels_avx512vnni);
}

uint32_t iq1m_dispatch_available(void) {
    pthread_once(&g_once, init_once);
    return g_mask;
}

int32_t iq1m_dispatch_best(void) {
    uint32_t m = iq1m_dispatch_available();
    if (m & (1u << IQ1M_ISA_AVX512VNNI)) return IQ1M_ISA_AVX512VNNI;
    if (m & (1u << IQ1M_ISA_AVX2)) return IQ1M_ISA_AVX2;
    return IQ1M_ISA_SCALAR;
}

const iq1m_kernels *iq1m_dispatch_get(int32_t isa) {
    uint32_t m = iq1m_dispatch_available();
    if (isa == IQ1M_ISA_AUTO) isa = iq1m_dispatch_best();
    if (isa < IQ1M_ISA_SCALAR || isa > IQ1M_ISA_AVX512VNNI) return NULL;
    if (!(m & (1u << isa))) return NULL;
    return &g_kernels[isa];
}
