/* peak.c: the machine's roofline numbers for `iq1m-harness bench` (libiq1m_peak.so, not part
 * of libiq1m's API): int8 dot-product peak (independent vpdpbusd chains, AVX-512 VNNI on
 * 512- and 256-bit vectors; AVX2 vpmaddubsw + vpmaddwd + vpaddd otherwise) and memory read
 * bandwidth (streaming 256-bit loads over a buffer far larger than the caches).
 * One op = one multiply or one add: a u8 x s8 multiply-accumulate counts 2, as in GOP/s of
 * a GEMM (2*M*N*K). Single thread; the caller runs it on each thread count it wants. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define CHAINS 12
#define INNER 1000
/* 12 independent accumulators in named registers (an array would be spilled) */
#define CHAIN12(OP)                                                                        \
    OP(a0) OP(a1) OP(a2) OP(a3) OP(a4) OP(a5) OP(a6) OP(a7) OP(a8) OP(a9) OP(a10) OP(a11)

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), noinline))
static int64_t vnni512(int64_t iters, int32_t *sink) {
    const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
#define INIT(x) __m512i x = _mm512_set1_epi32(++ctr);
#define STEP(x) x = _mm512_dpbusd_epi32(x, a, b);
#define SUM(x) s = _mm512_add_epi32(s, x);
    int ctr = 0;
    CHAIN12(INIT)
    for (int64_t it = 0; it < iters * INNER; ++it) {
        CHAIN12(STEP)
    }
    __m512i s = _mm512_setzero_si512();
    CHAIN12(SUM)
#undef INIT
#undef STEP
#undef SUM
    *sink = _mm512_reduce_add_epi32(s);
    return iters * INNER * CHAINS * 64 * 2;
}

__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"), noinline))
static int64_t vnni256(int64_t iters, int32_t *sink) {
    const __m256i a = _mm256_set1_epi32(0x01020304), b = _mm256_set1_epi32(0x05060708);
#define INIT(x) __m256i x = _mm256_set1_epi32(++ctr);
#define STEP(x) x = _mm256_dpbusd_epi32(x, a, b);
#define SUM(x) s = _mm256_add_epi32(s, x);
    int ctr = 0;
    CHAIN12(INIT)
    for (int64_t it = 0; it < iters * INNER; ++it) {
        CHAIN12(STEP)
    }
    __m256i s = _mm256_setzero_si256();
    CHAIN12(SUM)
#undef INIT
#undef STEP
#undef SUM
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, s);
    *sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return iters * INNER * CHAINS * 32 * 2;
}

__attribute__((target("avx2"), noinline))
static int64_t avx2(int64_t iters, int32_t *sink) {
    __m256i a = _mm256_set1_epi32(0x01020304);
    const __m256i b = _mm256_set1_epi32(0x05060708), one = _mm256_set1_epi16(1);
#define INIT(x) __m256i x = _mm256_set1_epi32(++ctr);
#define STEP(x) x = _mm256_add_epi32(x, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), one));
#define SUM(x) s = _mm256_add_epi32(s, x);
    int ctr = 0;
    CHAIN12(INIT)
    for (int64_t it = 0; it < iters * INNER; ++it) {
        __asm__ volatile("" : "+x"(a)); /* a product per chain and step, not one hoisted */
        CHAIN12(STEP)
    }
    __m256i s = _mm256_setzero_si256();
    CHAIN12(SUM)
#undef INIT
#undef STEP
#undef SUM
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, s);
    *sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return iters * INNER * CHAINS * 32 * 2;
}

/* kind: 0 = AVX-512 VNNI 512-bit, 1 = AVX-512 VNNI 256-bit, 2 = AVX2. Best GOP/s of
 * repeated runs over about `seconds`; 0 when the CPU lacks the instructions. */
EXPORT double iq1m_peak_int8_gops(int kind, double seconds) {
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
    if ((kind <= 1 && !has512) || !__builtin_cpu_supports("avx2")) return 0.0;
    int64_t (*fn)(int64_t, int32_t *) = kind == 0 ? vnni512 : kind == 1 ? vnni256 : avx2;
    int32_t sink = 0;
    double best = 0.0;
    const double t_end = now() + seconds;
    do {
        const double t0 = now();
        const int64_t ops = fn(20, &sink);
        const double g = (double)ops / (now() - t0) * 1e-9;
        if (g > best) best = g;
    } while (now() < t_end);
    return sink == 42 ? best + 1e-300 : best;
}

__attribute__((target("avx2"), noinline))
static uint64_t read_pass(const uint8_t *buf, size_t bytes) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 128 <= bytes; i += 128) {
        s0 = _mm256_xor_si256(s0, _mm256_load_si256((const __m256i *)(buf + i)));
        s1 = _mm256_xor_si256(s1, _mm256_load_si256((const __m256i *)(buf + i + 32)));
        s2 = _mm256_xor_si256(s2, _mm256_load_si256((const __m256i *)(buf + i + 64)));
        s3 = _mm256_xor_si256(s3, _mm256_load_si256((const __m256i *)(buf + i + 96)));
    }
    s0 = _mm256_xor_si256(_mm256_xor_si256(s0, s1), _mm256_xor_si256(s2, s3));
    return (uint64_t)_mm256_extract_epi64(s0, 0);
}

/* Read bandwidth in GB/s (1e9 bytes/s): best pass over a `bytes` buffer (>= 64 MiB
 * recommended) within about `seconds`; -1 when the buffer cannot be allocated. */
EXPORT double iq1m_peak_read_gbs(size_t bytes, double seconds) {
    if (!__builtin_cpu_supports("avx2")) return 0.0;
    bytes &= ~(size_t)127;
    uint8_t *buf = aligned_alloc(64, bytes);
    if (!buf) return -1.0;
    memset(buf, 1, bytes);
    volatile uint64_t sink = 0;
    double best = 0.0;
    const double t_end = now() + seconds;
    do {
        const double t0 = now();
        sink ^= read_pass(buf, bytes);
        const double g = (double)bytes / (now() - t0) * 1e-9;
        if (g > best) best = g;
    } while (now() < t_end);
    free(buf);
    return best;
}
