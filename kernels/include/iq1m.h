/* iq1m.h: the whole public C ABI of the IQ1_M kernel library.
 *
 * Numerics: every result is bit-exact to the contract in docs/numerics.md, whatever the
 * thread count, SIMD level or per-expert token count. No entry point aborts: invalid
 * arguments return an iq1m_status and set a per-thread message (iq1m_last_error()).
 */
#ifndef IQ1M_H
#define IQ1M_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IQ1M_QK_K 256
#define IQ1M_BLOCK_BYTES 56      /* one IQ1_M super-block of 256 weights */
#define IQ1M_Q8K_BLOCK_BYTES 292 /* one Q8_K block: float d, int8 qs[256], int16 bsums[16] */
#define IQ1M_PREPACKED_BLOCK_BYTES 80 /* one IQ1_M block re-encoded by iq1m_prepack */
/* Default repack threshold: the measured crossover of the two paths with the SIMD repack
   (Zen 4, K = 4096: ~8 columns; ik_llama.cpp's 32 is still what the harness tests around). */
#define IQ1M_DEFAULT_REPACK_THRESHOLD 8
#define IQ1M_REPACK_NEVER INT32_MAX

typedef struct {
    float d;
    int8_t qs[IQ1M_QK_K];
    int16_t bsums[IQ1M_QK_K / 16];
} iq1m_block_q8K;

typedef enum {
    IQ1M_OK = 0,
    IQ1M_ERR_NULL = 1,          /* a required pointer is NULL */
    IQ1M_ERR_SHAPE = 2,         /* K % 256 != 0, negative sizes, ... */
    IQ1M_ERR_EXPERT_ID = 3,     /* an id outside [-1, n_experts) */
    IQ1M_ERR_NONFINITE = 4,     /* an activation is NaN or inf */
    IQ1M_ERR_THREADS = 5,       /* n_threads < 1 or too large, or a thread failed to start */
    IQ1M_ERR_ISA = 6,           /* an unknown or unavailable SIMD level was forced */
    IQ1M_ERR_NOMEM = 7,         /* an allocation failed */
    IQ1M_ERR_INVALID = 8        /* any other invalid argument (activation kind, threshold) */
} iq1m_status;

typedef enum {
    IQ1M_ISA_AUTO = 0,          /* the best level the CPU supports */
    IQ1M_ISA_SCALAR = 1,
    IQ1M_ISA_AVX2 = 2,
    IQ1M_ISA_AVX512VNNI = 3
} iq1m_isa;

typedef enum { IQ1M_ACT_SILU = 0, IQ1M_ACT_GELU = 1 } iq1m_act;

typedef struct {
    int32_t n_threads;          /* >= 1; default 1 */
    int32_t isa;                /* iq1m_isa; default IQ1M_ISA_AUTO */
    int32_t repack_threshold;   /* experts (or a whole mul_mat) with >= this many tokens use
                                   the repacked path; 0 = always, IQ1M_REPACK_NEVER = never;
                                   default IQ1M_DEFAULT_REPACK_THRESHOLD (8) */
    int32_t fused;              /* moe_up_gate only: 1 = fused kernel, 0 = the library's own
                                   unfused composition (two mul_mat_id + act); default 1 */
    int32_t prepacked;          /* 1 = the weights are iq1m_prepack output (80 bytes per
                                   block), 0 = IQ1_M blocks (56 bytes); default 0 */
} iq1m_options;

/* Fills *opt with the defaults above. */
void iq1m_default_options(iq1m_options *opt);

const char *iq1m_version(void);
/* Bit mask of usable ISAs: bit (1 << iq1m_isa) set when that level can run here. */
uint32_t iq1m_available_isas(void);
/* The ISA IQ1M_ISA_AUTO resolves to on this CPU. */
int32_t iq1m_best_isa(void);
/* Name of an ISA value ("scalar", "avx2", "avx512vnni"), or "unknown". */
const char *iq1m_isa_name(int32_t isa);
/* The message of the last error returned on the calling thread ("" if none). */
const char *iq1m_last_error(void);
/* Build-time configuration, e.g. "direct_kernel=1 fault=none sanitize=none". */
const char *iq1m_build_info(void);
/* Which kernels the last mul_mat, mul_mat_id or moe_up_gate call on the calling thread ran:
   weight rows computed on the direct path and on the repacked path, each expert's rows
   counted once per weight matrix it multiplies (up and gate count apart). Both 0 after a
   call that failed or had no work. Either pointer may be NULL. */
void iq1m_last_path_rows(int64_t *direct_rows, int64_t *repacked_rows);

/* x: k floats (k % 256 == 0, all finite) -> k/256 Q8_K blocks. */
int iq1m_quantize_q8_K(const float *x, iq1m_block_q8K *y, int64_t k);
/* blocks: k/256 IQ1_M blocks -> k floats. */
int iq1m_dequantize_iq1_m(const void *blocks, float *y, int64_t k);

/* Re-encode n_rows rows of k weights (k/256 IQ1_M blocks per row; all experts' rows of an
   expert tensor count) for a table-free decode, once at load time: out receives
   n_rows * k/256 * IQ1M_PREPACKED_BLOCK_BYTES bytes. Lossless: the ops give the same bits
   on the output as on the IQ1_M input (set options.prepacked = 1). */
int iq1m_prepack(const void *w, int64_t n_rows, int64_t k, void *out);

/* act: IQ1M_ACT_SILU or IQ1M_ACT_GELU, applied elementwise to n floats (in place allowed). */
int iq1m_activation(int32_t act, const float *x, float *y, int64_t n);

/* out[n_tokens][rows] = W[rows][K] x X[n_tokens][K]^T (IQ1_M weights, float activations). */
int iq1m_mul_mat(const void *w, int64_t rows, int64_t k,
                 const float *x, int64_t n_tokens,
                 float *out, const iq1m_options *opt);

/* out[n_tokens][top_k][rows]; w: [n_experts][rows][K]; ids: [n_tokens][top_k], -1 = unused. */
int iq1m_mul_mat_id(const void *w, int64_t n_experts, int64_t rows, int64_t k,
                    const float *x, int64_t n_tokens,
                    const int32_t *ids, int64_t top_k,
                    float *out, const iq1m_options *opt);

/* out[n_tokens][top_k][rows] = up * act(gate), both weights [n_experts][rows][K]. */
int iq1m_moe_up_gate(const void *w_up, const void *w_gate,
                     int64_t n_experts, int64_t rows, int64_t k,
                     const float *x, int64_t n_tokens,
                     const int32_t *ids, int64_t top_k,
                     int32_t act, float *out, const iq1m_options *opt);

#ifdef __cplusplus
}
#endif
#endif /* IQ1M_H */
