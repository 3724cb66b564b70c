/* act_exhaustive.c: every one of the 2^32 float32 inputs through iq1m_activation (SiLU and
 * GELU) against a libm binary64 evaluation of the same formula in a stable form. Fails if
 * any finite input has |act(x) - act_true(x)| > ACT_MAX_ULP * ulp(act_true(x)) (float32 ulp
 * at the true value, 2^-149 below 2^-126), or if the NaN / inf rules are broken. Runs on all
 * cores (chunks claimed from an atomic counter); prints the max ulp error per function and
 * the input where it occurs. Every result of a long call (SIMD lanes where available) is also
 * compared bit for bit with calls of fewer than 8 elements (the scalar code). IQ1M_ACT_STRIDE=n in the environment checks every n-th input
 * only (for quick runs; the ctest run checks them all). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iq1m.h"

#define ACT_MAX_ULP 0.501
#define CHUNK (1u << 16)
#define N_CHUNKS (1u << 16)

static atomic_uint g_next;
static uint32_t g_stride = 1;

typedef struct {
    double max_ulp[2];
    uint32_t where[2];
    double max_ulp_normal[2]; /* over inputs whose true value is a float32 normal */
    uint32_t where_normal[2];
    uint64_t bad[2];
    uint64_t path_diff[2]; /* vector (full call) vs scalar (calls of < 8 elements) bits */
    uint32_t first_path_diff[2];
    uint32_t first_bad[2];
    uint64_t checked;
} result_t;

static double true_act(int act, double X) {
    double z = act == IQ1M_ACT_SILU ? X : 1.5957691216057308 * (X + 0.044715 * ((X * X) * X));
    if (z >= 0) return X / (1.0 + exp(-z));
    double e = exp(z);
    return X * e / (1.0 + e);
}

static double ulp_at(double v) {
    v = fabs(v);
    if (v < 0x1p-126) return 0x1p-149;
    int e;
    frexp(v, &e); /* v = m * 2^e, m in [0.5, 1) */
    return ldexp(1.0, e - 24);
}

static void *worker(void *arg) {
    result_t *r = arg;
    float *x = malloc(sizeof(float) * CHUNK), *y = malloc(sizeof(float) * CHUNK);
    float *y2 = malloc(sizeof(float) * CHUNK);
    if (!x || !y || !y2) abort();
    for (;;) {
        unsigned c = atomic_fetch_add(&g_next, 1);
        if (c >= N_CHUNKS) break;
        uint32_t n = 0;
        for (uint64_t b = ((uint64_t)c * CHUNK + g_stride - 1) / g_stride * g_stride;
             b < (uint64_t)(c + 1) * CHUNK; b += g_stride) {
            uint32_t bits = (uint32_t)b;
            memcpy(&x[n++], &bits, 4);
        }
        for (int a = 0; a < 2; ++a) {
            if (iq1m_activation(a, x, y, n) != IQ1M_OK) abort();
            for (uint32_t i = 0; i < n; i += 7) /* pieces shorter than a vector: scalar */
                if (iq1m_activation(a, x + i, y2 + i, n - i < 7 ? n - i : 7) != IQ1M_OK) abort();
            for (uint32_t i = 0; i < n; ++i)
                if (memcmp(&y[i], &y2[i], 4) != 0 && r->path_diff[a]++ == 0)
                    memcpy(&r->first_path_diff[a], &x[i], 4);
            for (uint32_t i = 0; i < n; ++i) {
                double X = x[i], v = y[i];
                uint32_t bits;
                memcpy(&bits, &x[i], 4);
                int ok;
                double err = 0;
                if (isnan(X)) ok = isnan(v);
                else if (isinf(X)) ok = X > 0 ? (v == INFINITY) : (v == 0 && signbit(v));
                else {
                    double t = true_act(a, X);
                    err = fabs(v - t) / ulp_at(t);
                    ok = err <= ACT_MAX_ULP && !isnan(v);
                    if (err > r->max_ulp[a]) {
                        r->max_ulp[a] = err;
                        r->where[a] = bits;
                    }
                    if (fabs(t) >= 0x1p-126 && err > r->max_ulp_normal[a]) {
                        r->max_ulp_normal[a] = err;
                        r->where_normal[a] = bits;
                    }
                }
                if (!ok) {
                    if (r->bad[a]++ == 0) r->first_bad[a] = bits;
                }
            }
        }
        r->checked += n;
    }
    free(x);
    free(y);
    free(y2);
    return NULL;
}

int main(void) {
    const char *s = getenv("IQ1M_ACT_STRIDE");
    if (s && atoi(s) > 1) g_stride = (uint32_t)atoi(s);
    long nth = sysconf(_SC_NPROCESSORS_ONLN);
    if (nth < 1) nth = 1;
    if (nth > 64) nth = 64;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t th[64];
    result_t res[64];
    memset(res, 0, sizeof res);
    for (long i = 0; i < nth; ++i)
        if (pthread_create(&th[i], NULL, worker, &res[i]) != 0) return 2;
    for (long i = 0; i < nth; ++i) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    result_t tot;
    memset(&tot, 0, sizeof tot);
    for (long i = 0; i < nth; ++i) {
        tot.checked += res[i].checked;
        for (int a = 0; a < 2; ++a) {
            if (res[i].max_ulp[a] > tot.max_ulp[a]) {
                tot.max_ulp[a] = res[i].max_ulp[a];
                tot.where[a] = res[i].where[a];
            }
            if (res[i].max_ulp_normal[a] > tot.max_ulp_normal[a]) {
                tot.max_ulp_normal[a] = res[i].max_ulp_normal[a];
                tot.where_normal[a] = res[i].where_normal[a];
            }
            if (res[i].bad[a] && !tot.bad[a]) tot.first_bad[a] = res[i].first_bad[a];
            if (res[i].path_diff[a] && !tot.path_diff[a])
                tot.first_path_diff[a] = res[i].first_path_diff[a];
            tot.path_diff[a] += res[i].path_diff[a];
            tot.bad[a] += res[i].bad[a];
        }
    }
    const char *names[2] = {"silu", "gelu"};
    int fail = 0;
    printf("act_exhaustive: %llu inputs per function (stride %u), %ld threads, %.1f s\n",
           (unsigned long long)tot.checked, g_stride, nth, secs);
    for (int a = 0; a < 2; ++a) {
        float w;
        memcpy(&w, &tot.where[a], 4);
        printf("  %s: max error %.9f ulp at x = %a (0x%08x); %llu failures (limit %.3f ulp)\n",
               names[a], tot.max_ulp[a], (double)w, tot.where[a],
               (unsigned long long)tot.bad[a], ACT_MAX_ULP);
        memcpy(&w, &tot.where_normal[a], 4);
        printf("  %s: max error %.9f ulp where act_true(x) is normal, at x = %a (0x%08x)\n",
               names[a], tot.max_ulp_normal[a], (double)w, tot.where_normal[a]);
        printf("  %s: vector vs scalar path: %llu inputs with different bits\n", names[a],
               (unsigned long long)tot.path_diff[a]);
        if (tot.path_diff[a]) {
            printf("    first differing input 0x%08x\n", tot.first_path_diff[a]);
            fail = 1;
        }
        if (tot.bad[a]) {
            printf("    first failing input 0x%08x\n", tot.first_bad[a]);
            fail = 1;
        }
    }
    return fail;
}
