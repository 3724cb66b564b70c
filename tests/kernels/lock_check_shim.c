/* lock_check_shim.c: preloaded (LD_PRELOAD) by test_lock_discipline.py. Once armed, every
 * pthread mutex operation whose caller's return address lies in the library under test
 * ([lo, hi)) is checked against who holds the mutex: an unlock by a thread that does not
 * hold it, or a lock by a thread that already does, is a violation. A mutex so used is
 * checked from then on whoever the caller seems to be (a tail call from the library shows
 * its caller's return address). The first violation's kind and caller are kept for the
 * report. The threads the library starts are counted too: it may join only those, each
 * once. A condition wait gives the mutex up while it waits, as the real one does. Other
 * callers (Python, numpy, the C runtime) pass through unchecked. A violation rarely changes
 * an output (the unlock of a mutex another thread holds opens a race, not a crash), which
 * is why the outputs alone cannot show it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef int (*mutex_fn)(pthread_mutex_t *);
typedef int (*wait_fn)(pthread_cond_t *, pthread_mutex_t *);
typedef int (*timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
typedef int (*join_fn)(pthread_t, void **);

static mutex_fn real_lock, real_trylock, real_unlock;
static wait_fn real_wait;
static timedwait_fn real_timedwait;
static create_fn real_create;
static join_fn real_join;

static _Atomic uintptr_t g_lo, g_hi;

/* the library's mutexes and their holders (the pool has a handful) */
enum { MAX_MUTEXES = 64 };
static struct {
    pthread_mutex_t *mutex;
    pthread_t holder;
    int held;
} g_table[MAX_MUTEXES];
static int g_n_mutexes;
static atomic_flag g_table_lock = ATOMIC_FLAG_INIT;

static atomic_long g_checked, g_violations;
/* the threads the library started, and whether it joined them */
enum { MAX_THREADS = 2048 };
static struct {
    pthread_t thread;
    int joined;
} g_threads[MAX_THREADS];
static int g_n_threads;

/* 0 none, 1 unlock not held, 2 relock, 3 table full, 4 join of a thread it did not start */
static atomic_int g_first_kind;
static _Atomic uintptr_t g_first_caller;

static void resolve(void) {
    if (real_lock) return;
    real_trylock = (mutex_fn)dlsym(RTLD_NEXT, "pthread_mutex_trylock");
    real_unlock = (mutex_fn)dlsym(RTLD_NEXT, "pthread_mutex_unlock");
    real_wait = (wait_fn)dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.3.2");
    real_timedwait = (timedwait_fn)dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    if (!real_wait) real_wait = (wait_fn)dlsym(RTLD_NEXT, "pthread_cond_wait");
    if (!real_timedwait) real_timedwait = (timedwait_fn)dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    real_create = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
    real_join = (join_fn)dlsym(RTLD_NEXT, "pthread_join");
    real_lock = (mutex_fn)dlsym(RTLD_NEXT, "pthread_mutex_lock");
}

__attribute__((constructor)) static void init(void) { resolve(); }

void lock_check_arm(uintptr_t lo, uintptr_t hi) {
    while (atomic_flag_test_and_set_explicit(&g_table_lock, memory_order_acquire)) {
    }
    g_n_mutexes = 0;
    g_n_threads = 0;
    atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
    atomic_store(&g_checked, 0);
    atomic_store(&g_violations, 0);
    atomic_store(&g_first_kind, 0);
    atomic_store(&g_lo, lo);
    atomic_store(&g_hi, hi);
}

long lock_check_checked(void) { return atomic_load(&g_checked); }
long lock_check_violations(void) { return atomic_load(&g_violations); }
int lock_check_first_kind(void) { return atomic_load(&g_first_kind); }
uintptr_t lock_check_first_caller(void) { return atomic_load(&g_first_caller); }

/* the threads the library started since arming and has not joined */
long lock_check_unjoined(void) {
    long n = 0;
    while (atomic_flag_test_and_set_explicit(&g_table_lock, memory_order_acquire)) {
    }
    for (int i = 0; i < g_n_threads; ++i) n += !g_threads[i].joined;
    atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
    return n;
}

/* the library's mutexes the calling thread holds now */
long lock_check_held_by_me(void) {
    long n = 0;
    while (atomic_flag_test_and_set_explicit(&g_table_lock, memory_order_acquire)) {
    }
    for (int i = 0; i < g_n_mutexes; ++i)
        n += g_table[i].held && pthread_equal(g_table[i].holder, pthread_self());
    atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
    return n;
}

static int from_library(const void *caller) {
    const uintptr_t a = (uintptr_t)caller;
    return a >= atomic_load_explicit(&g_lo, memory_order_relaxed) &&
           a < atomic_load_explicit(&g_hi, memory_order_relaxed);
}

static void violation(int kind, const void *caller) {
    if (atomic_fetch_add(&g_violations, 1) == 0) {
        atomic_store(&g_first_caller, (uintptr_t)caller);
        atomic_store(&g_first_kind, kind);
    }
}

enum { TOOK, GAVE_UP };

/* records that this thread took (TOOK) or gave up (GAVE_UP) mutex m, checking it could: for
   a call from the library, or on a mutex the library has used before, whoever the caller
   seems to be (a tail call from the library shows its caller's return address) */
static void record(pthread_mutex_t *m, int change, const void *caller) {
    const int library = from_library(caller);
    if (!library && !atomic_load_explicit(&g_hi, memory_order_relaxed)) return; /* not armed */
    while (atomic_flag_test_and_set_explicit(&g_table_lock, memory_order_acquire)) {
    }
    int i = 0;
    while (i < g_n_mutexes && g_table[i].mutex != m) ++i;
    int kind = 0;
    if (i == g_n_mutexes) {
        if (!library) {
            atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
            return;
        }
        if (i == MAX_MUTEXES) {
            kind = 3;
            goto out;
        }
        g_table[i].mutex = m;
        g_table[i].held = 0;
        ++g_n_mutexes;
    }
    const int mine = g_table[i].held && pthread_equal(g_table[i].holder, pthread_self());
    if (change == TOOK) {
        if (mine) kind = 2;
        g_table[i].held = 1;
        g_table[i].holder = pthread_self();
    } else {
        if (!mine) kind = 1;
        g_table[i].held = 0;
    }
out:
    atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
    atomic_fetch_add(&g_checked, 1);
    if (kind) violation(kind, caller);
}

int pthread_mutex_lock(pthread_mutex_t *m) {
    resolve();
    const void *caller = __builtin_return_address(0);
    const int rc = real_lock(m);
    if (rc == 0) record(m, TOOK, caller);
    return rc;
}

int pthread_mutex_trylock(pthread_mutex_t *m) {
    resolve();
    const void *caller = __builtin_return_address(0);
    const int rc = real_trylock(m);
    if (rc == 0) record(m, TOOK, caller);
    return rc;
}

int pthread_mutex_unlock(pthread_mutex_t *m) {
    resolve();
    const void *caller = __builtin_return_address(0);
    /* before the real unlock: once it is released, another thread may record taking it */
    record(m, GAVE_UP, caller);
    return real_unlock(m);
}

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
    resolve();
    const void *caller = __builtin_return_address(0);
    record(m, GAVE_UP, caller);
    const int rc = real_wait(c, m);
    record(m, TOOK, caller);
    return rc;
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t) {
    resolve();
    const void *caller = __builtin_return_address(0);
    record(m, GAVE_UP, caller);
    const int rc = real_timedwait(c, m, t);
    record(m, TOOK, caller);
    return rc;
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    resolve();
    const void *caller = __builtin_return_address(0);
    const int rc = real_create(t, attr, fn, arg);
    if (rc == 0 && from_library(caller)) {
        int full = 0;
        while (atomic_flag_test_and_set_explicit(&g_table_lock, memory_order_acquire)) {
        }
        if (g_n_threads < MAX_THREADS) {
            g_threads[g_n_threads].thread = *t;
            g_threads[g_n_threads++].joined = 0;
        } else {
            full = 1;
        }
        atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
        if (full) violation(3, caller);
    }
    return rc;
}

int pthread_join(pthread_t t, void **result) {
    resolve();
    const void *caller = __builtin_return_address(0);
    if (from_library(caller)) {
        int i = 0;
        while (atomic_flag_test_and_set_explicit(&g_table_lock, memory_order_acquire)) {
        }
        while (i < g_n_threads && !(pthread_equal(g_threads[i].thread, t) && !g_threads[i].joined)) ++i;
        const int started = i < g_n_threads;
        if (started) g_threads[i].joined = 1;
        atomic_flag_clear_explicit(&g_table_lock, memory_order_release);
        if (!started) {
            violation(4, caller);
            return ESRCH; /* the real join of an unknown id may crash or wait forever */
        }
    }
    return real_join(t, result);
}
