/* bench.c: mul_mat throughput, GOP/s = 2*M*N*K / time, at K = M = 4096 and
 * N in {1, 8, 32, 512}, 1 and 2 threads, for every available SIMD level (the library's
 * default repack threshold, IQ1M_DEFAULT_REPACK_THRESHOLD = 8, so N >= 8 uses the repacked
 * path). Median (and best) of several runs.
 * Usage: iq1m_bench [max_seconds_per_point (default 2)] [isa name to restrict to] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iq1m.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const double budget = argc > 1 ? atof(argv[1]) : 2.0;
    const char *only = argc > 2 ? argv[2] : NULL;
    const int64_t K = 4096, M = 4096, nb = K / 256;
    const int64_t Ns[] = {1, 8, 32, 512};
    uint8_t *w = malloc((size_t)(M * nb * IQ1M_BLOCK_BYTES));
    float *x = malloc(sizeof(float) * (size_t)(512 * K));
    float *out = malloc(sizeof(float) * (size_t)(512 * M));
    if (!w || !x || !out) return 1;
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < M * nb * IQ1M_BLOCK_BYTES; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        w[i] = (uint8_t)s;
    }
    for (int64_t i = 0; i < M * nb; ++i) { /* sane fp16 scales: exponent 12..15 */
        uint8_t *sc = w + i * IQ1M_BLOCK_BYTES + 48;
        uint16_t d = (uint16_t)(0x3000 | (i & 0x3ff));
        for (int j = 0; j < 4; ++j) sc[2 * j + 1] = (uint8_t)((sc[2 * j + 1] & 0x0f) | (((d >> (4 * j)) & 0xf) << 4));
    }
    for (int64_t i = 0; i < 512 * K; ++i) x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;

    printf("iq1m %s (%s)\n", iq1m_version(), iq1m_build_info());
    printf("%-11s %7s %4s %9s %10s %9s %10s %5s\n", "isa", "threads", "N", "median_ms",
           "GOP/s", "best_ms", "best_GOP/s", "runs");
    for (int32_t isa = IQ1M_ISA_SCALAR; isa <= IQ1M_ISA_AVX512VNNI; ++isa) {
        if (!((iq1m_available_isas() >> isa) & 1u)) continue;
        if (only && strcmp(only, iq1m_isa_name(isa)) != 0) continue;
        for (int th = 1; th <= 2; ++th)
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ++ni) {
                const int64_t N = Ns[ni];
                iq1m_options o;
                iq1m_default_options(&o);
                o.isa = isa;
                o.n_threads = th;
                double t[15];
                int runs = 0;
                double start = now();
                if (iq1m_mul_mat(w, M, K, x, N, out, &o) != IQ1M_OK) { /* warm-up */
                    fprintf(stderr, "error: %s\n", iq1m_last_error());
                    return 1;
                }
                while (runs < 15 && (runs < 3 || now() - start < budget)) {
                    double t0 = now();
                    iq1m_mul_mat(w, M, K, x, N, out, &o);
                    t[runs++] = now() - t0;
                }
                qsort(t, (size_t)runs, sizeof t[0], cmp_double);
                const double med = t[runs / 2], best = t[0];
                const double ops = 2.0 * (double)M * (double)N * (double)K;
                printf("%-11s %7d %4lld %9.2f %10.2f %9.2f %10.2f %5d\n", iq1m_isa_name(isa), th,
                       (long long)N, med * 1e3, ops / med / 1e9, best * 1e3, ops / best / 1e9,
                       runs);
                fflush(stdout);
            }
    }
    free(w);
    free(x);
    free(out);
    return 0;
}
