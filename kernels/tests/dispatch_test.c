/* dispatch_test.c: the resolved kernel sets (src/dispatch.h) follow the fallback rule for
 * every ISA this CPU has: a column count uses its own ISA's kernel, else that ISA's kernel for
 * the largest smaller count, else the scalar kernel; a missing repack, quantizer or activation
 * falls back to the scalar definition. A wrong resolution gives the same bits (every kernel
 * computes the contract), so no output comparison can see it: only that the SIMD kernels are
 * not used, and an op is several times slower.
 *
 * usage: dispatch_test [ignored]     exit 0 = all passed
 */
#include <stdio.h>

#include "dispatch.h"
#include "fault.h"
#include "q8k.h"
#include "repack.h"

static long g_fails;
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            if (g_fails++ < 40) {                                                            \
                printf("FAIL ");                                                             \
                printf(__VA_ARGS__);                                                         \
                printf("\n");                                                                \
            }                                                                                \
        }                                                                                    \
    } while (0)

typedef void (*any_fn)(void);

/* the documented rule for one kernel kind of one ISA: own[nc], else own[m] for the largest
   m < nc, else scalar[nc] (direct kinds: nothing at all when direct kernels are compiled out) */
static void check_kind(const char *isa, const char *kind, const any_fn got[], const int got_nc[],
                       const any_fn own[], const any_fn scalar[], int compiled_out) {
    for (int nc = 1; nc <= IQ1M_MAX_NC; ++nc) {
        any_fn want = NULL;
        int want_nc = nc;
        if (!compiled_out) {
            for (int m = 1; m <= nc; ++m)
                if (own[m]) {
                    want = own[m];
                    want_nc = m;
                }
            if (!want) want = scalar[nc];
            CHECK(want != NULL, "%s %s nc=%d: neither the ISA nor the scalar table has a kernel", isa, kind,
                  nc);
        }
        CHECK(got[nc] == want, "%s %s nc=%d: resolved to %p, the rule says %p", isa, kind, nc,
              (void *)got[nc], (void *)want);
        CHECK(got_nc[nc] == want_nc, "%s %s nc=%d: resolved column count %d, the rule says %d", isa, kind,
              nc, got_nc[nc], want_nc);
    }
}

#define AS_FNS(arr) ((const any_fn *)(const void *)(arr))

int main(void) {
    static const struct {
        int32_t isa;
        const iq1m_ukernel_table *t;
    } isas[] = {{IQ1M_ISA_SCALAR, &iq1m_ukernels_scalar},
                {IQ1M_ISA_AVX2, &iq1m_ukernels_avx2},
                {IQ1M_ISA_AVX512VNNI, &iq1m_ukernels_avx512vnni}};
    const iq1m_ukernel_table *s = &iq1m_ukernels_scalar;
#if defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL
    const int no_direct = 1;
#else
    const int no_direct = 0;
#endif
    const uint32_t mask = iq1m_dispatch_available();
    CHECK(mask & (1u << IQ1M_ISA_SCALAR), "the scalar ISA is not available (mask %#x)", (unsigned)mask);
    int32_t best = IQ1M_ISA_SCALAR;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; ++i) {
        const iq1m_ukernel_table *t = isas[i].t;
        const iq1m_kernels *k = iq1m_dispatch_get(isas[i].isa);
        if (!(mask & (1u << isas[i].isa))) {
            CHECK(k == NULL, "%s: not available, yet dispatch_get returns a kernel set", t->name);
            printf("  %-10s skipped (CPU lacks it)\n", t->name);
            continue;
        }
        best = isas[i].isa;
        const long fails_before = g_fails;
        if (!k) {
            CHECK(0, "%s: available, yet dispatch_get returns NULL", t->name);
            continue;
        }
        CHECK(k->isa == isas[i].isa, "%s: the kernel set says isa %d", t->name, k->isa);
        check_kind(t->name, "direct", AS_FNS(k->direct), k->direct_nc, AS_FNS(t->direct), AS_FNS(s->direct),
                   no_direct);
        check_kind(t->name, "direct_prepacked", AS_FNS(k->direct_prepacked), k->direct_prepacked_nc,
                   AS_FNS(t->direct_prepacked), AS_FNS(s->direct_prepacked), no_direct);
        check_kind(t->name, "packed", AS_FNS(k->packed), k->packed_nc, AS_FNS(t->packed), AS_FNS(s->packed), 0);
#if !IQ1M_FAULT_IS(lossy_repack) /* that fault makes every ISA use the scalar repack (FAULTS.md) */
        CHECK(k->repack == (t->repack ? t->repack : iq1m_repack_panel), "%s: repack is not its own", t->name);
#endif
        CHECK(k->repack_prepacked == (t->repack_prepacked ? t->repack_prepacked : iq1m_repack_panel_prepacked),
              "%s: repack_prepacked is not its own", t->name);
        CHECK(k->quantize == (t->quantize ? t->quantize : iq1m_q8k_quantize), "%s: quantize is not its own",
              t->name);
        CHECK(k->act == t->act, "%s: act is not its own", t->name);
        if (g_fails == fails_before) printf("  %-10s resolved as documented\n", t->name);
    }
    CHECK(iq1m_dispatch_best() == best, "dispatch_best %d, the best available ISA is %d", iq1m_dispatch_best(),
          best);
    CHECK(iq1m_dispatch_get(IQ1M_ISA_AUTO) == iq1m_dispatch_get(best), "AUTO is not the best available ISA");
    CHECK(iq1m_dispatch_get(-1) == NULL && iq1m_dispatch_get(IQ1M_ISA_AVX512VNNI + 1) == NULL,
          "an unknown ISA number gives a kernel set");
    if (g_fails) {
        printf("dispatch_test: %ld check(s) failed\n", g_fails);
        return 1;
    }
    printf("dispatch_test: all passed\n");
    return 0;
}
