/* alloc_fail_shim.c: preloaded (LD_PRELOAD) by test_allocation_failure.py. Once armed, the
 * allocations made from the library under test (the caller's return address inside
 * [lo, hi)) are counted, and the n-th fails the way an allocator out of memory fails. The
 * library's malloc/calloc blocks still live (allocated, not yet freed by the library) are
 * counted too, so a call that leaks one shows. Every other caller (Python, numpy, the C
 * runtime) is passed through untouched. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t n);
extern void *__libc_memalign(size_t alignment, size_t n);
extern void __libc_free(void *p);

static _Atomic uintptr_t g_lo, g_hi;
static atomic_long g_fail_at, g_count;

/* the library's malloc/calloc blocks not yet freed (a call makes a few dozen at most) */
enum { MAX_LIVE = 1024 };
static void *g_live[MAX_LIVE];
static long g_n_live, g_untracked;
static atomic_int g_count_aligned;
static atomic_flag g_live_lock = ATOMIC_FLAG_INIT;

static void lock_live(void) {
    while (atomic_flag_test_and_set_explicit(&g_live_lock, memory_order_acquire)) {
    }
}
static void unlock_live(void) { atomic_flag_clear_explicit(&g_live_lock, memory_order_release); }

/* fail_at = 0 counts without failing */
void alloc_fail_arm(uintptr_t lo, uintptr_t hi, long fail_at) {
    atomic_store(&g_count, 0);
    lock_live();
    g_n_live = g_untracked = 0;
    unlock_live();
    atomic_store(&g_fail_at, fail_at);
    atomic_store(&g_lo, lo);
    atomic_store(&g_hi, hi);
}

void alloc_fail_disarm(void) { atomic_store(&g_hi, 0); }

/* count the posix_memalign blocks too (the thread pool's scratch): for a check that
   unloading the library frees everything it holds */
void alloc_fail_count_aligned(int on) { atomic_store(&g_count_aligned, on); }

long alloc_fail_count(void) { return atomic_load(&g_count); }

/* the library's malloc/calloc blocks since the last arm that it has not freed (the thread
   pool's posix_memalign scratch is kept between calls by design and is counted only after
   alloc_fail_count_aligned(1)); -1 when there were too many to track */
long alloc_fail_live(void) {
    lock_live();
    const long n = g_untracked ? -1 : g_n_live;
    unlock_live();
    return n;
}

static int from_library(const void *caller) {
    const uintptr_t a = (uintptr_t)caller;
    return a >= atomic_load_explicit(&g_lo, memory_order_relaxed) &&
           a < atomic_load_explicit(&g_hi, memory_order_relaxed);
}

static int should_fail(const void *caller) {
    if (!from_library(caller)) return 0;
    return atomic_fetch_add(&g_count, 1) + 1 == atomic_load(&g_fail_at);
}

static void *counted(const void *caller, void *p) {
    if (!p || !from_library(caller)) return p;
    lock_live();
    if (g_n_live < MAX_LIVE)
        g_live[g_n_live++] = p;
    else
        g_untracked = 1;
    unlock_live();
    return p;
}

void *malloc(size_t n) {
    const void *caller = __builtin_return_address(0);
    if (should_fail(caller)) {
        errno = ENOMEM;
        return NULL;
    }
    return counted(caller, __libc_malloc(n));
}

void *calloc(size_t count, size_t n) {
    const void *caller = __builtin_return_address(0);
    if (should_fail(caller)) {
        errno = ENOMEM;
        return NULL;
    }
    return counted(caller, __libc_calloc(count, n));
}

void free(void *p) {
    if (p) {
        lock_live();
        for (long i = 0; i < g_n_live; ++i)
            if (g_live[i] == p) {
                g_live[i] = g_live[--g_n_live];
                break;
            }
        unlock_live();
    }
    __libc_free(p);
}

int posix_memalign(void **p, size_t alignment, size_t n) {
    const void *caller = __builtin_return_address(0);
    if (should_fail(caller)) return ENOMEM;
    void *q = __libc_memalign(alignment, n);
    if (!q) return ENOMEM;
    *p = atomic_load(&g_count_aligned) ? counted(caller, q) : q;
    return 0;
}
