/* isa_detect_test.c: ISA detection (src/dispatch.c) on CPUs this host pretends to be. With
 * CPUID faulting (arch_prctl ARCH_SET_CPUID, Intel since Ivy Bridge, where the kernel offers
 * it) every CPUID instruction traps, and a SIGSEGV handler answers it from the host's own
 * answers, edited: one feature bit cleared (XSAVE enabled by the OS, AVX, FMA, F16C, AVX2,
 * each AVX-512 part), or a leaf missing. Each CPU runs in a forked child, since detection
 * runs once per process, and must offer what that CPU has: the scalar kernels alone without
 * AVX2, the host's levels but AVX-512 without a part of it; dispatch_get must agree with the
 * offer. The unedited answers must give the host's own detection. (XGETBV does not trap: the
 * OS's enabled register state cannot be faked.)
 *
 * usage: isa_detect_test [ignored]     exit 0 = all passed, or CPUID faulting unavailable
 */
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "dispatch.h"

enum { N_LEAVES = 3, UNSUPPORTED = 100, INCONSISTENT = 64 };

typedef struct {
    unsigned leaf, r[4]; /* subleaf 0: EAX, EBX, ECX, EDX */
} cpuid_answer;

static const unsigned g_leaves[N_LEAVES] = {0, 1, 7};
static cpuid_answer g_answers[N_LEAVES]; /* leaf 7 has subleaves (ECX): any but 0, and any
                                            other leaf, reads as zeros */

static void answer_cpuid(int sig, siginfo_t *info, void *context) {
    (void)info;
    greg_t *r = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: let it kill the child */
        signal(sig, SIG_DFL);
        return;
    }
    cpuid_answer x = {0};
    for (int i = 0; i < N_LEAVES; ++i)
        if (g_answers[i].leaf == (unsigned)r[REG_RAX] && (g_answers[i].leaf != 7 || (unsigned)r[REG_RCX] == 0))
            x = g_answers[i];
    r[REG_RAX] = x.r[0];
    r[REG_RBX] = x.r[1];
    r[REG_RCX] = x.r[2];
    r[REG_RDX] = x.r[3];
    r[REG_RIP] += 2;
}

enum { EAX, EBX, ECX, EDX };

typedef struct {
    const char *name;
    int leaf_index, reg; /* the answer edited: g_leaves[leaf_index], register reg */
    unsigned clear, set; /* its bits cleared, then set */
    int avx2_stays;      /* the CPU keeps AVX2 (when the host has it) but loses AVX-512 */
} fake_cpu;

/* (available mask | best ISA << 4 | INCONSISTENT when dispatch_get disagrees with the mask)
   detected in a child on the faked CPU; UNSUPPORTED when the host cannot fault CPUID; -1
   when the child died */
static int detect_on(const fake_cpu *cpu) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < N_LEAVES; ++i) {
            cpuid_answer *x = &g_answers[i];
            x->leaf = g_leaves[i];
            __cpuid_count(x->leaf, 0, x->r[0], x->r[1], x->r[2], x->r[3]);
        }
        if (cpu) {
            unsigned *v = &g_answers[cpu->leaf_index].r[cpu->reg];
            *v = (*v & ~cpu->clear) | cpu->set;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = answer_cpuid;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) _exit(UNSUPPORTED);
        const uint32_t mask = iq1m_dispatch_available();
        int inconsistent = 0;
        for (int32_t isa = IQ1M_ISA_SCALAR; isa <= IQ1M_ISA_AVX512VNNI; ++isa)
            inconsistent |= (iq1m_dispatch_get(isa) != NULL) != (int)((mask >> isa) & 1);
        _exit((int)(mask | (uint32_t)iq1m_dispatch_best() << 4) | (inconsistent ? INCONSISTENT : 0));
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static int check(const char *name, int got, int want) {
    if (got == want) {
        printf("  %s: mask %#x, best %d\n", name, want & 0xf, (want >> 4) & 3);
        return 0;
    }
    if (got < 0)
        printf("FAIL %s: the detecting child died\n", name);
    else
        printf("FAIL %s: detected mask %#x best %d%s, want mask %#x best %d\n", name, got & 0xf, (got >> 4) & 3,
               got & INCONSISTENT ? " (and dispatch_get disagrees with it)" : "", want & 0xf, (want >> 4) & 3);
    return 1;
}

int main(void) {
    const unsigned bit27 = 1u << 27;
    const int scalar_only = 1 << IQ1M_ISA_SCALAR | IQ1M_ISA_SCALAR << 4;
    /* leaf 1 ECX edits set every other bit, so a test of a neighbouring bit is seen */
    const fake_cpu cpus[] = {
        {"OS without XSAVE (leaf 1 ECX bit 27)", 1, ECX, ~0u, ~bit27, 0},
        {"no AVX (leaf 1 ECX bit 28)", 1, ECX, ~0u, ~(1u << 28), 0},
        {"no FMA (leaf 1 ECX bit 12)", 1, ECX, ~0u, ~(1u << 12), 0},
        {"no F16C (leaf 1 ECX bit 29)", 1, ECX, ~0u, ~(1u << 29), 0},
        {"no leaf 1 (leaf 0 EAX = 0)", 0, EAX, ~0u, 0, 0},
        {"no leaf 7 (leaf 0 EAX = 6)", 0, EAX, ~0u, 6, 0},
        {"no AVX2 (leaf 7 EBX bit 5)", 2, EBX, 1u << 5, 0, 0},
        {"no AVX-512F (leaf 7 EBX bit 16)", 2, EBX, 1u << 16, 0, 1},
        {"no AVX-512DQ (leaf 7 EBX bit 17)", 2, EBX, 1u << 17, 0, 1},
        {"no AVX-512BW (leaf 7 EBX bit 30)", 2, EBX, 1u << 30, 0, 1},
        {"no AVX-512VL (leaf 7 EBX bit 31)", 2, EBX, 1u << 31, 0, 1},
        {"no AVX-512 VNNI (leaf 7 ECX bit 11)", 2, ECX, 1u << 11, 0, 1},
    };
    const int host = detect_on(NULL);
    if (host == UNSUPPORTED) {
        printf("isa_detect_test: skipped (this host cannot fault CPUID)\n");
        return 0;
    }
    int got[sizeof cpus / sizeof cpus[0]];
    for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; ++i) got[i] = detect_on(&cpus[i]);
    /* only now: a child forked after the detection ran would inherit its result */
    const int mask = (int)iq1m_dispatch_available();
    int fails = check("the host's own answers", host, mask | iq1m_dispatch_best() << 4);
    const int has_avx2 = (mask >> IQ1M_ISA_AVX2) & 1;
    const int avx2_only = has_avx2 ? (1 << IQ1M_ISA_SCALAR | 1 << IQ1M_ISA_AVX2 | IQ1M_ISA_AVX2 << 4) : scalar_only;
    for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; ++i)
        fails += check(cpus[i].name, got[i], cpus[i].avx2_stays ? avx2_only : scalar_only);
    if (fails) {
        printf("isa_detect_test: %d check(s) failed\n", fails);
        return 1;
    }
    printf("isa_detect_test: all passed\n");
    return 0;
}
