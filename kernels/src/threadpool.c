/* threadpool.c: a persistent pthread pool, created lazily, grown when more threads are asked
 * for, reused across calls and joined by a destructor. One job runs at a time (a global
 * mutex serialises callers); the calling thread is worker 0. Synchronisation is a plain
 * mutex + condition variables so ThreadSanitizer understands every hand-over.
 *
 * Wake-up latency: a worker sleeping in the kernel can take a long time to run again on a
 * virtual machine (hundreds of microseconds), which costs a 1 ms operation (one token) all
 * of its second thread. So after a job, workers spin for a short, bounded while (about
 * IQ1M_SPIN_ITERS pauses, well under a millisecond) watching an atomic copy of the job
 * generation before they block on the condition variable, and the caller spins on an
 * atomic copy of the pending count before it blocks. The atomics only say "look now": the
 * job itself is still handed over under g_lock. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    void *ptr;
    size_t size;
} scratch_buf;

static pthread_mutex_t g_call_lock = PTHREAD_MUTEX_INITIALIZER; /* serialises jobs */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;      /* guards the fields below */
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_done = PTHREAD_COND_INITIALIZER;
static pthread_t g_threads[IQ1M_MAX_THREADS];
static int g_n_workers; /* started workers: ids 1..g_n_workers */
static unsigned long g_generation;
static int g_job_nth;
static iq1m_task_fn g_job_fn;
static void *g_job_arg;
static int g_pending;
static int g_shutdown;
static unsigned long g_start_gen[IQ1M_MAX_THREADS];
static scratch_buf g_scratch[IQ1M_MAX_THREADS][IQ1M_SCRATCH_SLOTS];

/* copies of g_generation / g_pending / g_shutdown for spinning without the lock */
static atomic_ulong g_generation_hint;
static atomic_int g_pending_hint;
static atomic_int g_shutdown_hint;
static atomic_int g_spin_iters; /* 0 when the job has more threads than online CPUs */

#define IQ1M_SPIN_ITERS 20000 /* x86 pause: tens of cycles each, so ~0.1-0.4 ms */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    const int id = (int)(intptr_t)p;
    pthread_mutex_lock(&g_lock);
    unsigned long seen = g_start_gen[id]; /* jobs after creation are ours to see */
    for (;;) {
        if (!g_shutdown && g_generation == seen) { /* spin briefly before sleeping */
            pthread_mutex_unlock(&g_lock);
            /* mutate: off (a spin: timing only, the wait that follows is under the lock) */
            const int iters = atomic_load_explicit(&g_spin_iters, memory_order_relaxed);
            for (int i = 0; i < iters; ++i) {
                if (atomic_load_explicit(&g_generation_hint, memory_order_acquire) != seen ||
                    atomic_load_explicit(&g_shutdown_hint, memory_order_acquire))
                    break;
                cpu_relax();
            }
            /* mutate: on */
            pthread_mutex_lock(&g_lock);
        }
        while (!g_shutdown && g_generation == seen) pthread_cond_wait(&g_wake, &g_lock);
        if (g_shutdown) break;
        seen = g_generation;
        if (id >= g_job_nth) continue;
        iq1m_task_fn fn = g_job_fn;
        void *arg = g_job_arg;
        int nth = g_job_nth;
        pthread_mutex_unlock(&g_lock);
        fn(arg, id, nth);
        pthread_mutex_lock(&g_lock);
        if (--g_pending == 0) pthread_cond_signal(&g_done);
        atomic_store_explicit(&g_pending_hint, g_pending, memory_order_release);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static int grow(int n_workers) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return -1;
    pthread_attr_setstacksize(&attr, (size_t)1 << 20);
    int rc = 0;
    while (g_n_workers < n_workers) {
        int id = g_n_workers + 1;
        g_start_gen[id] = g_generation; /* published to the thread by pthread_create */
        if (pthread_create(&g_threads[id], &attr, worker_main, (void *)(intptr_t)id) != 0) {
            rc = -1;
            break;
        }
        pthread_mutex_lock(&g_lock);
        g_n_workers = id;
        pthread_mutex_unlock(&g_lock);
    }
    pthread_attr_destroy(&attr);
    return rc;
}

int iq1m_pool_run(int nth, iq1m_task_fn fn, void *arg) {
    if (nth < 1) nth = 1;
    if (nth > IQ1M_MAX_THREADS) return -1;
    pthread_mutex_lock(&g_call_lock);
    if (nth == 1) {
        fn(arg, 0, 1);
        pthread_mutex_unlock(&g_call_lock);
        return 0;
    }
    if (g_n_workers < nth - 1 && grow(nth - 1) != 0) {
        pthread_mutex_unlock(&g_call_lock);
        return -1;
    }
    pthread_mutex_lock(&g_lock);
    g_job_fn = fn;
    g_job_arg = arg;
    g_job_nth = nth;
    g_pending = nth - 1;
    atomic_store_explicit(&g_pending_hint, g_pending, memory_order_release);
    /* mutate: off (the spins' length: timing only) */
    { /* spinning only pays when every thread has a CPU of its own */
        static long ncpu;
        if (!ncpu) ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        atomic_store_explicit(&g_spin_iters, ncpu > 0 && nth <= ncpu ? IQ1M_SPIN_ITERS : 0,
                              memory_order_relaxed);
    }
    /* mutate: on */
    ++g_generation;
    atomic_store_explicit(&g_generation_hint, g_generation, memory_order_release);
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_lock);

    fn(arg, 0, nth);

    /* mutate: off (a spin: timing only, the wait that follows is under the lock) */
    const int iters = atomic_load_explicit(&g_spin_iters, memory_order_relaxed);
    for (int i = 0; i < iters; ++i) { /* spin briefly before sleeping */
        if (atomic_load_explicit(&g_pending_hint, memory_order_acquire) == 0) break;
        cpu_relax();
    }
    /* mutate: on */
    pthread_mutex_lock(&g_lock);
    while (g_pending > 0) pthread_cond_wait(&g_done, &g_lock);
    g_job_fn = NULL;
    g_job_arg = NULL;
    pthread_mutex_unlock(&g_lock);
    pthread_mutex_unlock(&g_call_lock);
    return 0;
}

void *iq1m_pool_scratch(int tid, int slot, size_t bytes) {
    if (tid < 0 || tid >= IQ1M_MAX_THREADS || slot < 0 || slot >= IQ1M_SCRATCH_SLOTS)
        return NULL;
    scratch_buf *s = &g_scratch[tid][slot];
    if (s->size >= bytes && s->ptr) return s->ptr;
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz < 4096) sz = 4096;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz) != 0) return NULL;
    free(s->ptr);
    s->ptr = p;
    s->size = sz;
    return p;
}

/* A forked child has none of the parent's workers: start from an empty pool. */
static void pool_atfork_child(void) {
    pthread_mutex_init(&g_call_lock, NULL);
    pthread_mutex_init(&g_lock, NULL);
    pthread_cond_init(&g_wake, NULL);
    pthread_cond_init(&g_done, NULL);
    g_n_workers = 0;
    g_pending = 0;
    g_shutdown = 0;
    atomic_store(&g_pending_hint, 0);
    atomic_store(&g_shutdown_hint, 0);
}

__attribute__((constructor)) static void pool_init(void) {
    pthread_atfork(NULL, NULL, pool_atfork_child);
}

__attribute__((destructor)) static void pool_shutdown(void) {
    pthread_mutex_lock(&g_call_lock);
    pthread_mutex_lock(&g_lock);
    g_shutdown = 1;
    atomic_store_explicit(&g_shutdown_hint, 1, memory_order_release);
    pthread_cond_broadcast(&g_wake);
    int n = g_n_workers;
    pthread_mutex_unlock(&g_lock);
    for (int i = 1; i <= n; ++i) pthread_join(g_threads[i], NULL);
    pthread_mutex_lock(&g_lock);
    g_n_workers = 0;
    g_shutdown = 0;
    atomic_store_explicit(&g_shutdown_hint, 0, memory_order_release);
    pthread_mutex_unlock(&g_lock);
    for (int t = 0; t < IQ1M_MAX_THREADS; ++t)
        for (int s = 0; s < IQ1M_SCRATCH_SLOTS; ++s) {
            free(g_scratch[t][s].ptr);
            g_scratch[t][s].ptr = NULL;
            g_scratch[t][s].size = 0;
        }
    pthread_mutex_unlock(&g_call_lock);
}
