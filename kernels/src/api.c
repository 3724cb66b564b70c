/* api.c: the public entry points. Every argument is validated here (a code plus a message in
 * the thread-local buffer of error.c, never an abort); the work itself is in ops.c and
 * friends. */
#include <string.h>

#include "act.h"
#include "dispatch.h"
#include "error.h"
#include "fault.h"
#include "format.h"
#include "iq1m.h"
#include "ops.h"
#include "q8k.h"
#include "threadpool.h"

#define API __attribute__((visibility("default")))

#ifndef IQ1M_VERSION_STRING
#define IQ1M_VERSION_STRING "0.1.0"
#endif
#ifndef IQ1M_SANITIZE_NAME
#define IQ1M_SANITIZE_NAME "none"
#endif
#if defined(IQ1M_NO_DIRECT_KERNEL) && IQ1M_NO_DIRECT_KERNEL
#define DIRECT_KERNEL_FLAG "0"
#else
#define DIRECT_KERNEL_FLAG "1"
#endif

static _Thread_local int64_t g_path_rows[2]; /* direct, repacked: the last op's */

API void iq1m_default_options(iq1m_options *opt) {
    if (!opt) return;
    opt->n_threads = 1;
    opt->isa = IQ1M_ISA_AUTO;
    opt->repack_threshold = IQ1M_DEFAULT_REPACK_THRESHOLD;
    opt->fused = 1;
    opt->prepacked = 0;
}

API const char *iq1m_version(void) { return IQ1M_VERSION_STRING; }
API uint32_t iq1m_available_isas(void) { return iq1m_dispatch_available(); }
API int32_t iq1m_best_isa(void) { return iq1m_dispatch_best(); }

API const char *iq1m_isa_name(int32_t isa) {
    switch (isa) {
    case IQ1M_ISA_AUTO: return "auto";
    case IQ1M_ISA_SCALAR: return "scalar";
    case IQ1M_ISA_AVX2: return "avx2";
    case IQ1M_ISA_AVX512VNNI: return "avx512vnni";
    default: return "unknown";
    }
}

API const char *iq1m_last_error(void) { return iq1m_error_message(); }

API void iq1m_last_path_rows(int64_t *direct_rows, int64_t *repacked_rows) {
    if (direct_rows) *direct_rows = g_path_rows[0];
    if (repacked_rows) *repacked_rows = g_path_rows[1];
}

API const char *iq1m_build_info(void) {
    return "direct_kernel=" DIRECT_KERNEL_FLAG " fault=" IQ1M_FAULT_NAME
           " sanitize=" IQ1M_SANITIZE_NAME;
}

/* ---- validation helpers ---- */

static int check_k(int64_t k) {
    if (k <= 0 || k % IQ1M_QK_K != 0)
        return iq1m_fail(IQ1M_ERR_SHAPE, "k = %lld must be a positive multiple of %d",
                         (long long)k, IQ1M_QK_K);
    return IQ1M_OK;
}

static int mul_overflows(int64_t a, int64_t b) { /* a, b >= 0 */
    return a != 0 && b > INT64_MAX / a;
}

static int check_activations(const float *x, int64_t n_tokens, int64_t k) {
    for (int64_t t = 0; t < n_tokens; ++t) {
        int64_t i = iq1m_first_nonfinite(x + t * k, k);
        if (i >= 0)
            return iq1m_fail(IQ1M_ERR_NONFINITE,
                             "activation x[%lld][%lld] = %g is not finite (token %lld, index "
                             "%lld)",
                             (long long)t, (long long)i, (double)x[t * k + i], (long long)t,
                             (long long)i);
    }
    return IQ1M_OK;
}

static int resolve_options(const iq1m_options *opt, iq1m_op_config *cfg) {
    iq1m_options o;
    iq1m_default_options(&o);
    if (opt) o = *opt;
    if (o.n_threads < 1 || o.n_threads > IQ1M_MAX_THREADS)
        return iq1m_fail(IQ1M_ERR_THREADS, "n_threads = %d must be in [1, %d]",
                         (int)o.n_threads, IQ1M_MAX_THREADS);
    if (o.isa < IQ1M_ISA_AUTO || o.isa > IQ1M_ISA_AVX512VNNI)
        return iq1m_fail(IQ1M_ERR_ISA, "unknown isa %d", (int)o.isa);
    cfg->k = iq1m_dispatch_get(o.isa);
    if (!cfg->k)
        return iq1m_fail(IQ1M_ERR_ISA, "isa %s is not available on this CPU",
                         iq1m_isa_name(o.isa));
    if (o.repack_threshold < 0)
        return iq1m_fail(IQ1M_ERR_INVALID, "repack_threshold = %d must be >= 0",
                         (int)o.repack_threshold);
    if (o.fused != 0 && o.fused != 1)
        return iq1m_fail(IQ1M_ERR_INVALID, "fused = %d must be 0 or 1", (int)o.fused);
    if (o.prepacked != 0 && o.prepacked != 1)
        return iq1m_fail(IQ1M_ERR_INVALID, "prepacked = %d must be 0 or 1", (int)o.prepacked);
    cfg->n_threads = o.n_threads;
    cfg->threshold = o.repack_threshold;
    cfg->fused = o.fused;
    cfg->prepacked = o.prepacked;
    return IQ1M_OK;
}

/* ---- conversions ---- */

API int iq1m_quantize_q8_K(const float *x, iq1m_block_q8K *y, int64_t k) {
    iq1m_clear_error();
    if (k < 0 || k % IQ1M_QK_K != 0)
        return iq1m_fail(IQ1M_ERR_SHAPE, "k = %lld must be a non-negative multiple of %d",
                         (long long)k, IQ1M_QK_K);
    if (k == 0) return IQ1M_OK;
    if (!x || !y) return iq1m_fail(IQ1M_ERR_NULL, "%s is NULL", !x ? "x" : "y");
    int64_t i = iq1m_first_nonfinite(x, k);
    if (i >= 0)
        return iq1m_fail(IQ1M_ERR_NONFINITE, "x[%lld] = %g is not finite", (long long)i,
                         (double)x[i]);
    iq1m_q8k_quantize(x, y, k / IQ1M_QK_K);
    return IQ1M_OK;
}

API int iq1m_dequantize_iq1_m(const void *blocks, float *y, int64_t k) {
    iq1m_clear_error();
    if (k < 0 || k % IQ1M_QK_K != 0)
        return iq1m_fail(IQ1M_ERR_SHAPE, "k = %lld must be a non-negative multiple of %d",
                         (long long)k, IQ1M_QK_K);
    if (k == 0) return IQ1M_OK;
    if (!blocks || !y) return iq1m_fail(IQ1M_ERR_NULL, "%s is NULL", !blocks ? "blocks" : "y");
    iq1m_dequantize_blocks(blocks, k / IQ1M_QK_K, y);
    return IQ1M_OK;
}

API int iq1m_prepack(const void *w, int64_t n_rows, int64_t k, void *out) {
    iq1m_clear_error();
    int rc;
    if ((rc = check_k(k)) != IQ1M_OK) return rc;
    if (n_rows < 0) return iq1m_fail(IQ1M_ERR_SHAPE, "n_rows = %lld is negative", (long long)n_rows);
    const int64_t nb = k / IQ1M_QK_K;
    if (mul_overflows(n_rows, nb * IQ1M_PREPACKED_BLOCK_BYTES))
        return iq1m_fail(IQ1M_ERR_SHAPE, "sizes overflow");
    if (n_rows == 0) return IQ1M_OK;
    if (!w || !out) return iq1m_fail(IQ1M_ERR_NULL, "%s is NULL", !w ? "w" : "out");
    const uint8_t *src = w;
    iq1m_block_prepacked *dst = out;
    for (int64_t i = 0; i < n_rows * nb; ++i)
        iq1m_block_to_prepacked(src + i * IQ1M_BLOCK_BYTES, dst + i);
    return IQ1M_OK;
}

API int iq1m_activation(int32_t act, const float *x, float *y, int64_t n) {
    iq1m_clear_error();
    if (act != IQ1M_ACT_SILU && act != IQ1M_ACT_GELU)
        return iq1m_fail(IQ1M_ERR_INVALID, "unknown activation %d", (int)act);
    if (n < 0) return iq1m_fail(IQ1M_ERR_SHAPE, "n = %lld is negative", (long long)n);
    if (n == 0) return IQ1M_OK;
    if (!x || !y) return iq1m_fail(IQ1M_ERR_NULL, "%s is NULL", !x ? "x" : "y");
    iq1m_act_run(iq1m_dispatch_get(IQ1M_ISA_AUTO)->act, act, NULL, x, y, n); /* the best ISA */
    return IQ1M_OK;
}

/* ---- GEMM operations ---- */

/* Shared checks of mul_mat_id / moe_up_gate (ids == NULL and n_experts == top_k == 1 for
 * mul_mat). */
static int check_common(const void *w, int64_t n_experts, int64_t rows,
                        int64_t k, const float *x, int64_t n_tokens, const int32_t *ids,
                        int64_t top_k, const float *out, int with_ids, int prepacked) {
    int rc;
    if ((rc = check_k(k)) != IQ1M_OK) return rc;
    if (rows < 0) return iq1m_fail(IQ1M_ERR_SHAPE, "rows = %lld is negative", (long long)rows);
    if (n_tokens < 0)
        return iq1m_fail(IQ1M_ERR_SHAPE, "n_tokens = %lld is negative", (long long)n_tokens);
    if (with_ids) {
        if (n_experts < 1)
            return iq1m_fail(IQ1M_ERR_SHAPE, "n_experts = %lld must be >= 1",
                             (long long)n_experts);
        if (n_tokens > 0 && top_k < 1)
            return iq1m_fail(IQ1M_ERR_SHAPE, "top_k = %lld must be >= 1", (long long)top_k);
        if (top_k < 0)
            return iq1m_fail(IQ1M_ERR_SHAPE, "top_k = %lld is negative", (long long)top_k);
    }
    const int64_t nb = k / IQ1M_QK_K;
    if (mul_overflows(n_experts, rows) || mul_overflows(n_experts * rows,
                      nb * (prepacked ? IQ1M_PREPACKED_BLOCK_BYTES : IQ1M_BLOCK_BYTES)) ||
        mul_overflows(n_tokens, top_k) || mul_overflows(n_tokens * top_k, rows) ||
        mul_overflows(n_tokens, k) || n_tokens * top_k * rows > INT64_MAX / 8)
        return iq1m_fail(IQ1M_ERR_SHAPE, "sizes overflow");
    if (rows > 0 && !w) return iq1m_fail(IQ1M_ERR_NULL, "weights are NULL");
    if (n_tokens > 0 && !x) return iq1m_fail(IQ1M_ERR_NULL, "x is NULL");
    if (n_tokens > 0 && rows > 0 && !out) return iq1m_fail(IQ1M_ERR_NULL, "out is NULL");
    if (with_ids && n_tokens > 0) {
        if (!ids) return iq1m_fail(IQ1M_ERR_NULL, "ids is NULL");
        for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t s = 0; s < top_k; ++s) {
                int32_t e = ids[t * top_k + s];
                if (e < -1 || (int64_t)e >= n_experts)
                    return iq1m_fail(IQ1M_ERR_EXPERT_ID,
                                     "ids[%lld][%lld] = %d is outside [-1, %lld)",
                                     (long long)t, (long long)s, (int)e, (long long)n_experts);
            }
    }
    if (n_tokens > 0 && (rc = check_activations(x, n_tokens, k)) != IQ1M_OK) return rc;
    return IQ1M_OK;
}

API int iq1m_mul_mat(const void *w, int64_t rows, int64_t k, const float *x, int64_t n_tokens,
                     float *out, const iq1m_options *opt) {
    iq1m_clear_error();
    g_path_rows[0] = g_path_rows[1] = 0;
    iq1m_op_config cfg;
    int rc;
    if ((rc = resolve_options(opt, &cfg)) != IQ1M_OK) return rc;
    if ((rc = check_common(w, 1, rows, k, x, n_tokens, NULL, 1, out, 0, cfg.prepacked)) != IQ1M_OK)
        return rc;
    return iq1m_op_run(&cfg, w, NULL, 1, rows, k, x, n_tokens, NULL, 1, IQ1M_ACT_SILU, out,
                       g_path_rows);
}

API int iq1m_mul_mat_id(const void *w, int64_t n_experts, int64_t rows, int64_t k,
                        const float *x, int64_t n_tokens, const int32_t *ids, int64_t top_k,
                        float *out, const iq1m_options *opt) {
    iq1m_clear_error();
    g_path_rows[0] = g_path_rows[1] = 0;
    iq1m_op_config cfg;
    int rc;
    if ((rc = resolve_options(opt, &cfg)) != IQ1M_OK) return rc;
    if ((rc = check_common(w, n_experts, rows, k, x, n_tokens, ids, top_k, out, 1, cfg.prepacked)) !=
        IQ1M_OK)
        return rc;
    return iq1m_op_run(&cfg, w, NULL, n_experts, rows, k, x, n_tokens, ids, top_k,
                       IQ1M_ACT_SILU, out, g_path_rows);
}

API int iq1m_moe_up_gate(const void *w_up, const void *w_gate, int64_t n_experts, int64_t rows,
                         int64_t k, const float *x, int64_t n_tokens, const int32_t *ids,
                         int64_t top_k, int32_t act, float *out, const iq1m_options *opt) {
    iq1m_clear_error();
    g_path_rows[0] = g_path_rows[1] = 0;
    iq1m_op_config cfg;
    int rc;
    if ((rc = resolve_options(opt, &cfg)) != IQ1M_OK) return rc;
    if (act != IQ1M_ACT_SILU && act != IQ1M_ACT_GELU)
        return iq1m_fail(IQ1M_ERR_INVALID, "unknown activation %d", (int)act);
    if (rows > 0 && !w_up) return iq1m_fail(IQ1M_ERR_NULL, "up weights are NULL");
    if (rows > 0 && !w_gate) return iq1m_fail(IQ1M_ERR_NULL, "gate weights are NULL");
    if ((rc = check_common(w_up, n_experts, rows, k, x, n_tokens, ids, top_k, out, 1, cfg.prepacked)) !=
        IQ1M_OK)
        return rc;
    if (rows == 0 || n_tokens == 0) return IQ1M_OK;
    return iq1m_op_run(&cfg, w_up, w_gate, n_experts, rows, k, x, n_tokens, ids, top_k, act,
                       out, g_path_rows);
}
