/* isa_detect_test.c: ISA detection (src/dispatch.c) on CPUs this host pretends to be. With
 * CPUID faulting (arch_prctl ARCH_SET_CPUID, Intel since Ivy Bridge, where the kernel offers
 * it) every CPUID instruction traps, and a SIGSEGV handler answers it from the host's own
 * answers, edited: the OS has not enabled XSAVE, the CPU lacks F16C, or CPUID has no leaf 1.
 * Each must leave the scalar kernels alone available; the unedited answers must give the
 * host's own detection. Each CPU runs in a forked child, since detection runs once per
 * process. (libgcc's __builtin_cpu_supports has read the real CPUID before main, and XGETBV
 * does not trap, so the other inputs of the detection cannot be faked.)
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

enum { N_LEAVES = 2, UNSUPPORTED = 100 };

typedef struct {
    unsigned leaf, a, b, c, d;
} cpuid_answer;

static cpuid_answer g_answers[N_LEAVES]; /* leaves 0 and 1; any other leaf reads as zeros */

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
        if (g_answers[i].leaf == (unsigned)r[REG_RAX]) x = g_answers[i];
    r[REG_RAX] = x.a;
    r[REG_RBX] = x.b;
    r[REG_RCX] = x.c;
    r[REG_RDX] = x.d;
    r[REG_RIP] += 2;
}

typedef struct {
    const char *name;
    int edit_max_leaf; /* replace leaf 0 EAX, the highest leaf, by max_leaf */
    unsigned max_leaf;
    int edit_leaf1_ecx; /* replace leaf 1 ECX by ecx1 */
    unsigned ecx1;
} fake_cpu;

/* (available mask | best ISA << 8) detected in a child on the faked CPU; UNSUPPORTED when
   the host cannot fault CPUID; -1 when the child died */
static int detect_on(const fake_cpu *cpu) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        for (unsigned leaf = 0; leaf < N_LEAVES; ++leaf) {
            cpuid_answer *x = &g_answers[leaf];
            x->leaf = leaf;
            __cpuid(leaf, x->a, x->b, x->c, x->d);
        }
        if (cpu->edit_max_leaf) g_answers[0].a = cpu->max_leaf;
        if (cpu->edit_leaf1_ecx) g_answers[1].c = cpu->ecx1;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = answer_cpuid;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) _exit(UNSUPPORTED);
        const uint32_t mask = iq1m_dispatch_available();
        _exit((int)(mask | (uint32_t)iq1m_dispatch_best() << 4) & 0x7f);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    const int code = WEXITSTATUS(status);
    return code == UNSUPPORTED ? UNSUPPORTED : (code & 0xf) | (code >> 4) << 8;
}

int main(void) {
    const unsigned osxsave = 1u << 27, f16c = 1u << 29;
    const int scalar_only = 1 << IQ1M_ISA_SCALAR | IQ1M_ISA_SCALAR << 8;
    const fake_cpu as_is = {"the host's own answers", 0, 0, 0, 0};
    const fake_cpu cpus[] = {
        /* every other ECX bit set, so reading a neighbouring bit is seen */
        {"OS without XSAVE (leaf 1 ECX bit 27 clear)", 0, 0, 1, ~osxsave},
        {"no F16C (leaf 1 ECX bit 29 clear)", 0, 0, 1, ~f16c},
        {"CPUID without leaf 1 (leaf 0 says the highest is 0)", 1, 0, 0, 0},
    };
    const int host = detect_on(&as_is);
    if (host == UNSUPPORTED) {
        printf("isa_detect_test: skipped (this host cannot fault CPUID)\n");
        return 0;
    }
    int fails = 0;
    for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; ++i) {
        const int got = detect_on(&cpus[i]);
        if (got != scalar_only) {
            if (got < 0)
                printf("FAIL %s: the detecting child died\n", cpus[i].name);
            else
                printf("FAIL %s: detected mask %#x best %d, want the scalar ISA alone\n", cpus[i].name, got & 0xff,
                       got >> 8);
            ++fails;
        } else {
            printf("  %s: the scalar ISA alone\n", cpus[i].name);
        }
    }
    /* only now: a child forked after the detection ran would inherit its result */
    const int want_host = (int)iq1m_dispatch_available() | iq1m_dispatch_best() << 8;
    if (host != want_host) {
        printf("FAIL %s: detected mask %#x best %d, the unfaked process %#x best %d\n", as_is.name, host & 0xff,
               host >> 8, want_host & 0xff, want_host >> 8);
        ++fails;
    }
    if (fails) {
        printf("isa_detect_test: %d check(s) failed\n", fails);
        return 1;
    }
    printf("isa_detect_test: all passed\n");
    return 0;
}
