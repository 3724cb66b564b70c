/* tile_test.c: the tile loop nests (src/gemm_direct.c, src/gemm_packed.c) split any column
 * count into micro-kernel calls the way the kernel set says, and put every result in its tile
 * slot: each (row, column) equals the scalar dot product bit for bit, and nothing else in the
 * tile is written. The kernel sets: every available ISA as resolved, and partial sets made
 * from each, where a column count falls back to a kernel for fewer columns per call (as an
 * ISA whose table lacks entries resolves, dispatch.h): only 1; 1, 2 and 4; 1, 3 and 8; 1 and
 * 5 columns per call. Today's tables are complete, so only these sets make the loops take
 * more than one step for the at most 8 columns the ops pass.
 *
 * usage: tile_test [ignored]     exit 0 = all passed
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dispatch.h"
#include "format.h"
#include "gemm.h"
#include "q8k.h"
#include "repack.h"

enum {
    NB = 2,                 /* K = 512 */
    ROWS = 2 * IQ1M_PACK_ROWS,
    MAX_COLS = 19,          /* more than two full chunks of IQ1M_MAX_NC */
    R0 = 3, NR = 7,         /* the direct tile's rows */
    TS = 2 * IQ1M_PACK_ROWS + 3, /* tile stride: room for both panels, and a gap */
};

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static uint8_t g_w[ROWS][NB * IQ1M_BLOCK_BYTES];
static iq1m_block_prepacked g_wp[ROWS][NB];
static iq1m_packed_block g_panels[2][NB];
static iq1m_block_q8K g_cols[MAX_COLS][NB];
static const iq1m_block_q8K *g_col_ptrs[MAX_COLS];
static float g_want[MAX_COLS][ROWS];
static float g_tile[MAX_COLS * TS];
static long g_fails;

static void make_data(void) {
    for (int r = 0; r < ROWS; ++r) {
        for (int i = 0; i < NB * IQ1M_BLOCK_BYTES; ++i) g_w[r][i] = (uint8_t)rnd32();
        for (int b = 0; b < NB; ++b) { /* super-scale 2^-8 (fp16 0x1c00): a nibble atop each scale word */
            uint8_t *blk = g_w[r] + b * IQ1M_BLOCK_BYTES;
            const uint16_t d = 0x1c00;
            for (int i = 0; i < 4; ++i)
                blk[49 + 2 * i] = (uint8_t)((blk[49 + 2 * i] & 0x0f) | ((d >> (4 * i)) & 0xf) << 4);
            iq1m_block_to_prepacked(blk, &g_wp[r][b]);
        }
    }
    for (int p = 0; p < 2; ++p) iq1m_repack_panel(&g_w[0][0], NB, p * IQ1M_PACK_ROWS, IQ1M_PACK_ROWS, g_panels[p]);
    float x[NB * IQ1M_QK_K];
    for (int c = 0; c < MAX_COLS; ++c) {
        for (int i = 0; i < NB * IQ1M_QK_K; ++i) x[i] = (float)((int)(rnd32() % 2001) - 1000) / 64.0f;
        iq1m_q8k_quantize(x, g_cols[c], NB);
        g_col_ptrs[c] = g_cols[c];
        for (int r = 0; r < ROWS; ++r) g_want[c][r] = iq1m_vec_dot_scalar(NB, g_w[r], g_cols[c]);
    }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static const float SENTINEL = -0x1.5p-3f;

static void fill_tile(void) {
    for (int i = 0; i < MAX_COLS * TS; ++i) g_tile[i] = SENTINEL;
}

/* the tile against g_want for columns < nc and rows [first, first + nr) of each column
   (tile row i holds weight row first + i); every other slot must still hold the sentinel */
static void check_tile(const char *what, int nc, int first, int nr) {
    for (int c = 0; c < MAX_COLS; ++c)
        for (int i = 0; i < TS; ++i) {
            const float got = g_tile[c * TS + i];
            const int inside = c < nc && i < nr;
            const float want = inside ? g_want[c][first + i] : SENTINEL;
            if (!same_bits(got, want) && g_fails++ < 20)
                printf("FAIL %s nc=%d: tile column %d slot %d holds %a, want %a%s\n", what, nc, c, i, (double)got,
                       (double)want, inside ? "" : " (outside the tile: untouched)");
        }
}

/* the set k with only the counts in avail (a 0-terminated list holding 1) callable: count
   nc uses k's kernel for the largest listed m <= nc, which processes k's count for m */
static iq1m_kernels partial(const iq1m_kernels *k, const int *avail) {
    iq1m_kernels p = *k;
    for (int nc = 1; nc <= IQ1M_MAX_NC; ++nc) {
        int m = 1;
        for (const int *a = avail; *a; ++a)
            if (*a <= nc && *a > m) m = *a;
        p.direct[nc] = k->direct[m];
        p.direct_nc[nc] = k->direct_nc[m];
        p.direct_prepacked[nc] = k->direct_prepacked[m];
        p.direct_prepacked_nc[nc] = k->direct_prepacked_nc[m];
        p.packed[nc] = k->packed[m];
        p.packed_nc[nc] = k->packed_nc[m];
    }
    return p;
}

static void check_set(const char *name, const iq1m_kernels *k) {
    char what[96];
    for (int nc = 1; nc <= MAX_COLS; ++nc) {
        fill_tile();
        iq1m_gemm_direct_tile(k, 0, NB, &g_w[0][0], R0, NR, g_col_ptrs, nc, g_tile, TS);
        snprintf(what, sizeof what, "%s direct", name);
        check_tile(what, nc, R0, NR);

        fill_tile();
        iq1m_gemm_direct_tile(k, 1, NB, (const uint8_t *)&g_wp[0][0], R0, NR, g_col_ptrs, nc, g_tile, TS);
        snprintf(what, sizeof what, "%s direct, prepacked rows", name);
        check_tile(what, nc, R0, NR);

        fill_tile();
        iq1m_gemm_packed_tile(k, NB, &g_panels[0][0], 2, g_col_ptrs, nc, g_tile, TS, NULL);
        snprintf(what, sizeof what, "%s packed", name);
        check_tile(what, nc, 0, ROWS);
    }
}

int main(void) {
    static const int only1[] = {1, 0}, pow2[] = {1, 2, 4, 0}, one3eight[] = {1, 3, 8, 0}, one5[] = {1, 5, 0};
    static const struct {
        const char *name;
        const int *avail;
    } partials[] = {{"1 column per call", only1},
                    {"1, 2, 4 columns per call", pow2},
                    {"1, 3, 8 columns per call", one3eight},
                    {"1, 5 columns per call", one5}};
    static const char *const isa_names[] = {"", "scalar", "avx2", "avx512vnni"};
    make_data();
    for (int32_t isa = IQ1M_ISA_SCALAR; isa <= IQ1M_ISA_AVX512VNNI; ++isa) {
        const iq1m_kernels *k = iq1m_dispatch_get(isa);
        if (!k) {
            printf("  %-10s skipped (CPU lacks it)\n", isa_names[isa]);
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "%s as resolved", isa_names[isa]);
        check_set(name, k);
        for (size_t i = 0; i < sizeof partials / sizeof partials[0]; ++i) {
            const iq1m_kernels p = partial(k, partials[i].avail);
            snprintf(name, sizeof name, "%s, %s", isa_names[isa], partials[i].name);
            check_set(name, &p);
        }
        printf("  %-10s %s\n", isa_names[isa], g_fails ? "FAILED" : "every split and slot right");
    }
    if (g_fails) {
        printf("tile_test: %ld check(s) failed\n", g_fails);
        return 1;
    }
    printf("tile_test: all passed\n");
    return 0;
}
