/* threadpool.h: the persistent worker pool and per-thread scratch memory. */
#ifndef IQ1M_THREADPOOL_H
#define IQ1M_THREADPOOL_H

#include <stddef.h>

typedef void (*iq1m_task_fn)(void *arg, int tid, int nth);

/* Runs fn(arg, tid, nth) for tid = 0..nth-1 (tid 0 on the calling thread) and waits for all.
 * Calls are serialised. Returns 0, or -1 when the pool could not grow to nth threads. */
int iq1m_pool_run(int nth, iq1m_task_fn fn, void *arg);

/* Scratch memory of thread tid (valid inside a task only), at least `bytes`, 64-byte aligned,
 * kept and reused across calls. NULL when the allocation fails. */
void *iq1m_pool_scratch(int tid, int slot, size_t bytes);

#define IQ1M_SCRATCH_SLOTS 4
#define IQ1M_MAX_THREADS 1024

#endif /* IQ1M_THREADPOOL_H */
