/* alloc_fail_shim.c: preloaded (LD_PRELOAD) by test_allocation_failure.py. Once armed, the
 * allocations made from the library under test (the caller's return address inside
 * [lo, hi)) are counted, and the n-th fails the way an allocator out of memory fails.
 * Every other caller (Python, numpy, the C runtime) is passed through untouched. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t n);
extern void *__libc_memalign(size_t alignment, size_t n);

static _Atomic uintptr_t g_lo, g_hi;
static atomic_long g_fail_at, g_count;

/* fail_at = 0 counts without failing */
void alloc_fail_arm(uintptr_t lo, uintptr_t hi, long fail_at) {
    atomic_store(&g_count, 0);
    atomic_store(&g_fail_at, fail_at);
    atomic_store(&g_lo, lo);
    atomic_store(&g_hi, hi);
}

void alloc_fail_disarm(void) { atomic_store(&g_hi, 0); }

long alloc_fail_count(void) { return atomic_load(&g_count); }

static int should_fail(const void *caller) {
    const uintptr_t a = (uintptr_t)caller;
    if (a < atomic_load_explicit(&g_lo, memory_order_relaxed) ||
        a >= atomic_load_explicit(&g_hi, memory_order_relaxed))
        return 0;
    return atomic_fetch_add(&g_count, 1) + 1 == atomic_load(&g_fail_at);
}

void *malloc(size_t n) {
    if (should_fail(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(n);
}

void *calloc(size_t count, size_t n) {
    if (should_fail(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(count, n);
}

int posix_memalign(void **p, size_t alignment, size_t n) {
    if (should_fail(__builtin_return_address(0))) return ENOMEM;
    void *q = __libc_memalign(alignment, n);
    if (!q) return ENOMEM;
    *p = q;
    return 0;
}
