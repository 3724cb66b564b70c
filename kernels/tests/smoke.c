/* smoke.c: known small cases checked bit for bit against values computed here by plain
 * integer arithmetic from hand-built blocks (the test decodes the bits itself; only the
 * generated grid table is shared with the library), on every available ISA, thread counts
 * 1, 2, 3, 7, 16 and repack thresholds 0 / 32 / never; plus the error paths. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iq1m.h"

extern const uint64_t iq1m_grid_u64[2048]; /* src/grid.c, compiled into this test */
/* value j (0..7) of grid entry i: byte j of the little-endian word, as int8 */
static int grid(int i, int j) { return (int)(int8_t)(uint8_t)(iq1m_grid_u64[i] >> (8 * j)); }

static int g_failures;
#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                           \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            if (++g_failures > 50) exit(1);                                                \
        }                                                                                  \
    } while (0)

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2.f - 1.f; }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static int same(float a, float b) { return (isnan(a) && isnan(b)) || fbits(a) == fbits(b); }

/* ---- the test's own decoding ---- */
static float half_to_float(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexpf((float)m, -24);
    else v = ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

typedef struct {
    uint8_t b[56];
} blk_t;

/* Build a block from explicit fields. */
static void make_block(blk_t *blk, const int idx[32], const int neg[32], const int s[16],
                       uint16_t dbits) {
    memset(blk, 0, sizeof *blk);
    for (int g = 0; g < 32; ++g) {
        blk->b[g] = (uint8_t)(idx[g] & 255);
        int nib = ((idx[g] >> 8) & 7) | (neg[g] ? 8 : 0);
        blk->b[32 + g / 2] |= (uint8_t)(nib << (4 * (g % 2)));
    }
    uint16_t sc[4] = {0, 0, 0, 0};
    for (int j = 0; j < 16; ++j) sc[j / 4] |= (uint16_t)(s[j] << (3 * (j % 4)));
    sc[0] |= (uint16_t)((dbits & 0xf) << 12);
    sc[1] |= (uint16_t)(((dbits >> 4) & 0xf) << 12);
    sc[2] |= (uint16_t)(((dbits >> 8) & 0xf) << 12);
    sc[3] |= (uint16_t)(((dbits >> 12) & 0xf) << 12);
    for (int i = 0; i < 4; ++i) {
        blk->b[48 + 2 * i] = (uint8_t)(sc[i] & 255);
        blk->b[49 + 2 * i] = (uint8_t)(sc[i] >> 8);
    }
}

static void random_block(blk_t *blk) {
    int idx[32], neg[32], s[16];
    for (int g = 0; g < 32; ++g) {
        idx[g] = (int)(rnd() % 2048);
        neg[g] = (int)(rnd() & 1);
    }
    for (int j = 0; j < 16; ++j) s[j] = (int)(rnd() % 8);
    /* fp16 exponent 5..20 (about 2^-10 .. 2^5), random sign and mantissa */
    uint16_t d = (uint16_t)(((rnd() & 1) << 15) | ((5 + rnd() % 16) << 10) | (rnd() & 1023));
    make_block(blk, idx, neg, s, d);
}

/* integer fields of block: w[i] = 8*grid + sign, mult[j] = 2s+1, d */
static void decode(const blk_t *blk, int w[256], int mult[16], float *d) {
    for (int g = 0; g < 32; ++g) {
        int nib = (blk->b[32 + g / 2] >> (4 * (g % 2))) & 15;
        int idx = blk->b[g] | ((nib & 7) << 8);
        int sign = (nib & 8) ? -1 : 1;
        for (int i = 0; i < 8; ++i) w[8 * g + i] = 8 * grid(idx, i) + sign;
    }
    uint16_t sc[4];
    for (int i = 0; i < 4; ++i) sc[i] = (uint16_t)(blk->b[48 + 2 * i] | (blk->b[49 + 2 * i] << 8));
    for (int j = 0; j < 16; ++j) mult[j] = 2 * ((sc[j / 4] >> (3 * (j % 4))) & 7) + 1;
    uint16_t db = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0xf0) | ((sc[2] >> 4) & 0xf00) |
                             (sc[3] & 0xf000));
    *d = half_to_float(db);
}

/* reference dot: row (nb blocks) with quantized column */
static float ref_dot(const blk_t *row, const iq1m_block_q8K *y, int nb) {
    float acc = 0.0f;
    for (int b = 0; b < nb; ++b) {
        int w[256], mult[16];
        float d;
        decode(&row[b], w, mult, &d);
        int32_t S = 0;
        for (int i = 0; i < 256; ++i) S += (int32_t)y[b].qs[i] * mult[i / 16] * w[i];
        volatile float dd = d * y[b].d;
        acc = acc + dd * (float)S;
    }
    return 0.125f * acc;
}

static const int32_t g_threads[] = {1, 2, 3, 7, 16};
static const int32_t g_thresholds[] = {0, 32, IQ1M_REPACK_NEVER};

/* ---- tests ---- */

static void test_grid(void) {
    /* spot values of ggml's iq1s_grid and the value set */
    CHECK(grid(0, 0) == -1 && grid(0, 7) == -1, "grid[0]");
    CHECK(grid(1, 0) == 1 && grid(1, 1) == -1, "grid[1]");
    CHECK(grid(2, 0) == 0 && grid(2, 1) == 0 && grid(2, 2) == -1, "grid[2]");
    long sum = 0;
    for (int i = 0; i < 2048; ++i)
        for (int j = 0; j < 8; ++j) {
            CHECK(grid(i, j) >= -1 && grid(i, j) <= 1, "grid value");
            sum += (long)(i % 7 + 1) * (grid(i, j) + 1) * (j + 1);
        }
    printf("grid checksum %ld\n", sum);
}

static void test_quantize(void) {
    float x[256];
    iq1m_block_q8K y;
    memset(x, 0, sizeof x);
    memset(&y, 0x55, sizeof y);
    CHECK(iq1m_quantize_q8_K(x, &y, 256) == IQ1M_OK, "zero quantize");
    CHECK(y.d == 0.0f, "zero d");
    for (int i = 0; i < 256; ++i) CHECK(y.qs[i] == 0, "zero qs");
    for (int j = 0; j < 16; ++j) CHECK(y.bsums[j] == 0, "zero bsums");

    /* max = -127 (first of the largest |x|) -> iscale = 1, d = 1, q = rint half-even */
    x[3] = -127.f;
    x[4] = 127.f;
    x[5] = 2.5f;
    x[6] = 3.5f;
    x[7] = -0.5f;
    x[8] = 1.49f;
    x[20] = -2.5f;
    CHECK(iq1m_quantize_q8_K(x, &y, 256) == IQ1M_OK, "quantize");
    CHECK(y.d == 1.0f, "d = %g", y.d);
    CHECK(y.qs[3] == -127 && y.qs[4] == 127 && y.qs[5] == 2 && y.qs[6] == 4 && y.qs[7] == 0 &&
              y.qs[8] == 1 && y.qs[20] == -2,
          "qs %d %d %d %d %d %d %d", y.qs[3], y.qs[4], y.qs[5], y.qs[6], y.qs[7], y.qs[8],
          y.qs[20]);
    CHECK(y.bsums[0] == -127 + 127 + 2 + 4 + 0 + 1, "bsums0 %d", y.bsums[0]);
    CHECK(y.bsums[1] == -2, "bsums1 %d", y.bsums[1]);
    /* positive max: d negative */
    memset(x, 0, sizeof x);
    x[0] = 4.f;
    x[1] = -4.f;
    CHECK(iq1m_quantize_q8_K(x, &y, 256) == IQ1M_OK, "quantize");
    CHECK(y.qs[0] == -127 && y.qs[1] == 127, "sign %d %d", y.qs[0], y.qs[1]);
    CHECK(y.d == 1.f / (-127.f / 4.f), "d negative %g", y.d);
    x[9] = NAN;
    CHECK(iq1m_quantize_q8_K(x, &y, 256) == IQ1M_ERR_NONFINITE, "nan quantize");
}

static void test_dequantize(void) {
    const uint16_t dbits[] = {0x3c00, 0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00, 0x7e00, 0x0000,
                              0x8000, 0x7bff, 0x0400, 0xb555};
    for (size_t t = 0; t < sizeof dbits / sizeof dbits[0]; ++t) {
        int idx[32], neg[32], s[16];
        for (int g = 0; g < 32; ++g) {
            idx[g] = (int)((g * 67 + t * 13) % 2048);
            neg[g] = (g + (int)t) % 3 == 0;
        }
        for (int j = 0; j < 16; ++j) s[j] = (j + (int)t) % 8;
        blk_t blk;
        make_block(&blk, idx, neg, s, dbits[t]);
        float y[256];
        CHECK(iq1m_dequantize_iq1_m(&blk, y, 256) == IQ1M_OK, "dequantize");
        int w[256], mult[16];
        float d;
        decode(&blk, w, mult, &d);
        CHECK(same(d, half_to_float(dbits[t])), "d decode");
        for (int i = 0; i < 256; ++i) {
            float e = d * (float)(mult[i / 16] * w[i]) * 0.125f;
            CHECK(same(y[i], e), "dequant d=%04x i=%d got %a want %a", dbits[t], i, y[i], e);
        }
    }
}

static int available(int32_t isa) { return (iq1m_available_isas() >> isa) & 1u; }

static void run_mul_mat_case(int rows, int nb, int n_tokens) {
    const int k = nb * 256;
    blk_t *w = malloc(sizeof(blk_t) * (size_t)(rows * nb));
    float *x = malloc(sizeof(float) * (size_t)(n_tokens * k));
    iq1m_block_q8K *q = malloc(sizeof(iq1m_block_q8K) * (size_t)(n_tokens * nb));
    float *want = malloc(sizeof(float) * (size_t)(n_tokens * rows));
    float *got = malloc(sizeof(float) * (size_t)(n_tokens * rows));
    for (int i = 0; i < rows * nb; ++i) random_block(&w[i]);
    for (int i = 0; i < n_tokens * k; ++i) x[i] = rndf() * (float)(1 + i % 5);
    CHECK(iq1m_quantize_q8_K(x, q, (int64_t)n_tokens * k) == IQ1M_OK, "q");
    for (int t = 0; t < n_tokens; ++t)
        for (int r = 0; r < rows; ++r) want[t * rows + r] = ref_dot(w + r * nb, q + t * nb, nb);
    for (int32_t isa = IQ1M_ISA_SCALAR; isa <= IQ1M_ISA_AVX512VNNI; ++isa) {
        if (!available(isa)) continue;
        for (size_t ti = 0; ti < sizeof g_threads / sizeof g_threads[0]; ++ti)
            for (size_t hi = 0; hi < 3; ++hi) {
                iq1m_options o;
                iq1m_default_options(&o);
                o.isa = isa;
                o.n_threads = g_threads[ti];
                o.repack_threshold = g_thresholds[hi];
                for (int i = 0; i < n_tokens * rows; ++i) got[i] = NAN;
                int rc = iq1m_mul_mat(w, rows, k, x, n_tokens, got, &o);
                CHECK(rc == IQ1M_OK, "mul_mat rc %d: %s", rc, iq1m_last_error());
                int bad = 0;
                for (int i = 0; i < n_tokens * rows && bad < 3; ++i)
                    if (!same(got[i], want[i])) {
                        ++bad;
                        CHECK(0, "mul_mat %s th=%d thr=%d rows=%d nb=%d n=%d [t%d r%d] got %a want %a",
                              iq1m_isa_name(isa), o.n_threads, o.repack_threshold, rows, nb,
                              n_tokens, i / rows, i % rows, got[i], want[i]);
                    }
            }
    }
    free(w);
    free(x);
    free(q);
    free(want);
    free(got);
}

static float ref_act(int32_t act, float v) {
    float r;
    iq1m_activation(act, &v, &r, 1);
    return r;
}

static void run_moe_case(int n_experts, int rows, int nb, int n_tokens, int top_k) {
    const int k = nb * 256;
    const size_t eb = (size_t)rows * nb;
    blk_t *wu = malloc(sizeof(blk_t) * eb * n_experts);
    blk_t *wg = malloc(sizeof(blk_t) * eb * n_experts);
    float *x = malloc(sizeof(float) * (size_t)(n_tokens * k));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n_tokens * top_k));
    iq1m_block_q8K *q = malloc(sizeof(iq1m_block_q8K) * (size_t)(n_tokens * nb));
    size_t n_out = (size_t)n_tokens * top_k * rows;
    float *want_id = malloc(sizeof(float) * n_out), *want_ug = malloc(sizeof(float) * n_out);
    float *want_ge = malloc(sizeof(float) * n_out);
    float *got = malloc(sizeof(float) * n_out);
    for (size_t i = 0; i < eb * n_experts; ++i) {
        random_block(&wu[i]);
        random_block(&wg[i]);
    }
    for (int i = 0; i < n_tokens * k; ++i) x[i] = rndf() * 3.f;
    /* expert 0 gets every token (>= 32 when n_tokens >= 32), expert 1 some, others few;
       -1 slots and duplicates included */
    for (int t = 0; t < n_tokens; ++t)
        for (int s = 0; s < top_k; ++s) {
            int32_t e;
            if (s == 0) e = 0;
            else if (s == 1) e = (t % 3 == 0) ? -1 : (int32_t)(1 + t % (n_experts - 1));
            else e = (t % 5 == 0) ? 0 /* duplicate of slot 0 */ : (int32_t)(rnd() % n_experts);
            ids[t * top_k + s] = e;
        }
    CHECK(iq1m_quantize_q8_K(x, q, (int64_t)n_tokens * k) == IQ1M_OK, "q");
    for (int t = 0; t < n_tokens; ++t)
        for (int s = 0; s < top_k; ++s) {
            int32_t e = ids[t * top_k + s];
            for (int r = 0; r < rows; ++r) {
                size_t o = ((size_t)t * top_k + s) * rows + r;
                if (e < 0) {
                    want_id[o] = 0.0f;
                    want_ug[o] = 0.0f;
                    want_ge[o] = 0.0f;
                    continue;
                }
                float u = ref_dot(wu + e * eb + (size_t)r * nb, q + t * nb, nb);
                float g = ref_dot(wg + e * eb + (size_t)r * nb, q + t * nb, nb);
                want_id[o] = u;
                want_ug[o] = u * ref_act(IQ1M_ACT_SILU, g);
                want_ge[o] = u * ref_act(IQ1M_ACT_GELU, g);
            }
        }
    for (int32_t isa = IQ1M_ISA_SCALAR; isa <= IQ1M_ISA_AVX512VNNI; ++isa) {
        if (!available(isa)) continue;
        for (size_t ti = 0; ti < sizeof g_threads / sizeof g_threads[0]; ++ti)
            for (size_t hi = 0; hi < 3; ++hi)
                for (int mode = 0; mode < 5; ++mode) { /* 0 id, 1/3 fused, 2/4 unfused */
                    iq1m_options o;
                    iq1m_default_options(&o);
                    o.isa = isa;
                    o.n_threads = g_threads[ti];
                    o.repack_threshold = g_thresholds[hi];
                    o.fused = mode == 1 || mode == 3;
                    const int32_t act = mode >= 3 ? IQ1M_ACT_GELU : IQ1M_ACT_SILU;
                    for (size_t i = 0; i < n_out; ++i) got[i] = NAN;
                    int rc = mode == 0
                                 ? iq1m_mul_mat_id(wu, n_experts, rows, k, x, n_tokens, ids,
                                                   top_k, got, &o)
                                 : iq1m_moe_up_gate(wu, wg, n_experts, rows, k, x, n_tokens,
                                                    ids, top_k, act, got, &o);
                    CHECK(rc == IQ1M_OK, "moe rc %d: %s", rc, iq1m_last_error());
                    const float *want = mode == 0 ? want_id : mode <= 2 ? want_ug : want_ge;
                    int bad = 0;
                    for (size_t i = 0; i < n_out && bad < 3; ++i)
                        if (!same(got[i], want[i])) {
                            ++bad;
                            CHECK(0, "moe mode %d %s th=%d thr=%d n=%d [%zu] got %a want %a",
                                  mode, iq1m_isa_name(isa), o.n_threads, o.repack_threshold,
                                  n_tokens, i, got[i], want[i]);
                        }
                }
    }
    free(wu);
    free(wg);
    free(x);
    free(ids);
    free(q);
    free(want_id);
    free(want_ug);
    free(want_ge);
    free(got);
}

static void test_activation(void) {
    const int32_t acts[] = {IQ1M_ACT_SILU, IQ1M_ACT_GELU};
    for (int a = 0; a < 2; ++a) {
        float in[6] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f}, out[6];
        CHECK(iq1m_activation(acts[a], in, out, 6) == IQ1M_OK, "act");
        CHECK(fbits(out[0]) == 0, "act(0) = %a", out[0]);
        CHECK(fbits(out[1]) == 0x80000000u, "act(-0) = %a", out[1]);
        CHECK(out[2] == INFINITY, "act(inf)");
        CHECK(fbits(out[3]) == 0x80000000u, "act(-inf) = %a", out[3]);
        CHECK(isnan(out[4]), "act(nan)");
        double e = a == 0 ? 1.0 / (1.0 + exp(-1.0))
                          : 1.0 / (1.0 + exp(-1.5957691216057308 * (1.0 + 0.044715)));
        CHECK(out[5] == (float)e, "act(1) = %a want %a", out[5], (float)e);
    }
}

static void test_errors(void) {
    iq1m_options o;
    iq1m_default_options(&o);
    blk_t w[2];
    random_block(&w[0]);
    random_block(&w[1]);
    float x[256], out[8];
    for (int i = 0; i < 256; ++i) x[i] = rndf();
    int32_t ids[2] = {0, -1};

    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_OK, "ok");
    CHECK(iq1m_last_error()[0] == '\0', "no error message on success");
    CHECK(iq1m_mul_mat(NULL, 2, 256, x, 1, out, &o) == IQ1M_ERR_NULL, "null w");
    CHECK(strlen(iq1m_last_error()) > 0, "message set");
    CHECK(iq1m_mul_mat(w, 2, 256, NULL, 1, out, &o) == IQ1M_ERR_NULL, "null x");
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, NULL, &o) == IQ1M_ERR_NULL, "null out");
    CHECK(iq1m_mul_mat(w, 2, 256, NULL, 0, NULL, &o) == IQ1M_OK, "zero tokens");
    CHECK(iq1m_mul_mat(w, 2, 100, x, 1, out, &o) == IQ1M_ERR_SHAPE, "k%%256");
    CHECK(iq1m_mul_mat(w, 2, 0, x, 1, out, &o) == IQ1M_ERR_SHAPE, "k=0");
    CHECK(iq1m_mul_mat(w, 2, -256, x, 1, out, &o) == IQ1M_ERR_SHAPE, "k<0");
    CHECK(iq1m_mul_mat(w, -1, 256, x, 1, out, &o) == IQ1M_ERR_SHAPE, "rows<0");
    CHECK(iq1m_mul_mat(w, 2, 256, x, -1, out, &o) == IQ1M_ERR_SHAPE, "tokens<0");
    x[17] = INFINITY;
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_ERR_NONFINITE, "inf x");
    CHECK(strstr(iq1m_last_error(), "17") != NULL, "index in message: %s", iq1m_last_error());
    x[17] = 0.5f;
    o.n_threads = 0;
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_ERR_THREADS, "threads 0");
    o.n_threads = 1025;
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_ERR_THREADS, "threads 1025");
    o.n_threads = 1;
    o.isa = 9;
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_ERR_ISA, "isa 9");
    o.isa = IQ1M_ISA_AUTO;
    o.repack_threshold = -1;
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_ERR_INVALID, "threshold");
    o.repack_threshold = 32;
    for (int32_t isa = IQ1M_ISA_SCALAR; isa <= IQ1M_ISA_AVX512VNNI; ++isa)
        if (!available(isa)) {
            o.isa = isa;
            CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, &o) == IQ1M_ERR_ISA, "unavailable isa");
            o.isa = IQ1M_ISA_AUTO;
        }
    CHECK(iq1m_mul_mat_id(w, 1, 2, 256, x, 1, ids, 2, out, &o) == IQ1M_OK, "id ok: %s",
          iq1m_last_error());
    ids[1] = 1;
    CHECK(iq1m_mul_mat_id(w, 1, 2, 256, x, 1, ids, 2, out, &o) == IQ1M_ERR_EXPERT_ID, "id 1");
    ids[1] = -2;
    CHECK(iq1m_mul_mat_id(w, 1, 2, 256, x, 1, ids, 2, out, &o) == IQ1M_ERR_EXPERT_ID, "id -2");
    ids[1] = -1;
    CHECK(iq1m_mul_mat_id(w, 0, 2, 256, x, 1, ids, 2, out, &o) == IQ1M_ERR_SHAPE, "experts 0");
    CHECK(iq1m_mul_mat_id(w, 1, 2, 256, x, 1, ids, 0, out, &o) == IQ1M_ERR_SHAPE, "top_k 0");
    CHECK(iq1m_mul_mat_id(w, 1, 2, 256, x, 1, NULL, 2, out, &o) == IQ1M_ERR_NULL, "ids null");
    CHECK(iq1m_mul_mat_id(w, 1, 2, 256, NULL, 0, NULL, 0, NULL, &o) == IQ1M_OK, "empty id");
    CHECK(iq1m_moe_up_gate(w, NULL, 1, 2, 256, x, 1, ids, 2, IQ1M_ACT_SILU, out, &o) ==
              IQ1M_ERR_NULL,
          "gate null");
    CHECK(iq1m_moe_up_gate(w, w, 1, 2, 256, x, 1, ids, 2, 7, out, &o) == IQ1M_ERR_INVALID,
          "act 7");
    CHECK(iq1m_moe_up_gate(w, w, 1, 2, 256, x, 1, ids, 2, IQ1M_ACT_GELU, out, &o) == IQ1M_OK,
          "ug ok");
    for (int i = 2; i < 4; ++i) CHECK(fbits(out[i]) == 0, "unused slot is +0");
    o.fused = 3;
    CHECK(iq1m_moe_up_gate(w, w, 1, 2, 256, x, 1, ids, 2, IQ1M_ACT_GELU, out, &o) ==
              IQ1M_ERR_INVALID,
          "fused 3");
    CHECK(iq1m_activation(5, x, out, 1) == IQ1M_ERR_INVALID, "act 5");
    CHECK(iq1m_activation(IQ1M_ACT_SILU, NULL, out, 1) == IQ1M_ERR_NULL, "act null");
    CHECK(iq1m_quantize_q8_K(x, NULL, 256) == IQ1M_ERR_NULL, "q null");
    CHECK(iq1m_quantize_q8_K(x, (iq1m_block_q8K *)out, 100) == IQ1M_ERR_SHAPE, "q shape");
    CHECK(iq1m_dequantize_iq1_m(w, x, 7) == IQ1M_ERR_SHAPE, "dq shape");
    CHECK(iq1m_mul_mat(w, 2, 256, x, 1, out, NULL) == IQ1M_OK, "default options");
    CHECK(strcmp(iq1m_isa_name(42), "unknown") == 0, "isa name");
}

int main(void) {
    printf("iq1m %s (%s), isas 0x%x, best %s\n", iq1m_version(), iq1m_build_info(),
           iq1m_available_isas(), iq1m_isa_name(iq1m_best_isa()));
    CHECK(available(IQ1M_ISA_SCALAR), "scalar always available");
    test_grid();
    test_quantize();
    test_dequantize();
    test_activation();
    test_errors();
    /* rows: below, at and above multiples of 16; tokens below/at/above 32 */
    run_mul_mat_case(1, 1, 1);
    run_mul_mat_case(5, 2, 3);
    run_mul_mat_case(3, 3, 4); /* rows < threads: idle threads must not touch outputs */
    run_mul_mat_case(2, 4, 9);
    run_mul_mat_case(16, 1, 8);
    run_mul_mat_case(37, 2, 9);
    run_mul_mat_case(40, 1, 33);
    run_mul_mat_case(130, 3, 40);
    run_moe_case(4, 37, 1, 40, 3);
    run_moe_case(3, 16, 2, 7, 2);
    run_moe_case(6, 21, 1, 70, 4);
    if (g_failures) {
        fprintf(stderr, "%d failure(s)\n", g_failures);
        return 1;
    }
    printf("smoke: all checks passed\n");
    return 0;
}
