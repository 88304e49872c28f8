/* BF16 weights times activations rounded to bf16, with AVX512_BF16 (vdpbf16ps: 32 products
 * per instruction, twice fp32 FMA), for the fast path on CPUs that have it (chosen at run time).
 * Prefill batches of the block-quantised types use it too: each block of 64 rows is expanded to
 * fp32 and rounded to bf16 in a per-thread buffer first (the "dequantised tiles" path, with a
 * bf16 product instead of sgemm: measured about twice as fast here).
 *
 * The activations are rounded to bf16 once per call (round to nearest even); each output is
 * the dot product of a weight row with an activation row, accumulated in 16 fp32 lanes and
 * summed at the end. Register tiles of 4 weight rows x up to 6 tokens; blocks of 64 rows per
 * thread keep the weight block in L2 while every 6-token tile of activations streams past. */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && (__GNUC__ >= 10)
#include <immintrin.h>
#define BF_TGT __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define ROWS_PER_BLOCK 64
#define TILE_R 4
#define TILE_J 6

BF_TGT static void to_bf16(const float *x, size_t n, uint16_t *out) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(out + i), (__m512i)v);
    }
    for (; i < n; i++) out[i] = dr_f32_to_bf16(x[i]);
}

/* y[j * ldy + r] = w_r . x_j for r < R, j < J. */
static inline __attribute__((always_inline)) BF_TGT void tile(const uint16_t *w, size_t ldw, const uint16_t *x,
                                                              size_t ldx, const int R, const int J, int K, float *y,
                                                              size_t ldy) {
    __m512 acc[TILE_R][TILE_J];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) acc[r][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512i wv[TILE_R];
        for (int r = 0; r < R; r++) wv[r] = _mm512_loadu_si512((const void *)(w + (size_t)r * ldw + k));
        for (int j = 0; j < J; j++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(x + (size_t)j * ldx + k));
            for (int r = 0; r < R; r++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)wv[r], xv);
        }
    }
    if (k < K) { /* the last K % 32 values, zero-filled on both sides */
        __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
        __m512i wv[TILE_R];
        for (int r = 0; r < R; r++) wv[r] = _mm512_maskz_loadu_epi16(m, w + (size_t)r * ldw + k);
        for (int j = 0; j < J; j++) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + (size_t)j * ldx + k);
            for (int r = 0; r < R; r++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)wv[r], xv);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) y[(size_t)j * ldy + r] = _mm512_reduce_add_ps(acc[r][j]);
}

#define TILE_CASE(RR, JJ) tile(w, ldw, x, ldx, RR, JJ, K, y, ldy)
/* A full tile of 4 rows, J tokens as a constant. */
BF_TGT static void tile4(const uint16_t *w, size_t ldw, const uint16_t *x, size_t ldx, int J, int K, float *y, size_t ldy) {
    switch (J) {
    case 1: TILE_CASE(4, 1); return;
    case 2: TILE_CASE(4, 2); return;
    case 3: TILE_CASE(4, 3); return;
    case 4: TILE_CASE(4, 4); return;
    case 5: TILE_CASE(4, 5); return;
    default: TILE_CASE(4, 6); return;
    }
}
#undef TILE_CASE

/* The last rows of the matrix (fewer than 4), one token. */
BF_TGT static void tail_rows(const uint16_t *w, size_t ldw, const uint16_t *x, int R, int K, float *y) {
    for (int r = 0; r < R; r++) tile(w + (size_t)r * ldw, ldw, x, 0, 1, 1, K, y + r, 0);
}

int llm_bf16dp_available(void) {
    static int have = -1; /* relaxed atomics: racing callers store the same value */
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            llm_cpu_avx512bf16();
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h;
}

int llm_matmul_bf16dp(const llm_mat *w, const float *x, int n, float *y) {
    /* other types: each block of 64 rows is dequantised and rounded to bf16 first (prefill) */
    if (!llm_bf16dp_available() || (w->type != GGML_TYPE_BF16 && !dr_dequantize_supported(w->type))) return -1;
    const int rows = w->rows, K = w->cols, direct = w->type == GGML_TYPE_BF16;
    uint16_t *xb = malloc((size_t)n * K * sizeof *xb);
    if (!xb) return -1;
    to_bf16(x, (size_t)n * K, xb);
    const size_t ldw = direct ? w->row_bytes / 2 : (size_t)K;
    const int nblk = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    double work = (double)rows * K * n;
    int failed = 0;
#pragma omp parallel if (work > 65536)
    {
    uint16_t *blk = NULL;
    float *frow = NULL;
    if (!direct) {
        blk = malloc((size_t)ROWS_PER_BLOCK * K * sizeof *blk);
        frow = malloc((size_t)K * sizeof *frow);
        if (!blk || !frow) {
#pragma omp atomic write
            failed = 1;
        }
    }
#pragma omp for schedule(dynamic, 1)
    for (int b = 0; b < nblk; b++) {
        int r0 = b * ROWS_PER_BLOCK, r1 = r0 + ROWS_PER_BLOCK < rows ? r0 + ROWS_PER_BLOCK : rows;
        const uint16_t *wb = (const uint16_t *)w->data + (size_t)r0 * ldw; /* row r0 */
        if (!direct) {
            if (!blk || !frow) continue;
            for (int r = r0; r < r1; r++) {
                llm_mat_row(w, r, frow);
                to_bf16(frow, (size_t)K, blk + (size_t)(r - r0) * K);
            }
            wb = blk;
        }
        for (int j0 = 0; j0 < n; j0 += TILE_J) {
            int J = n - j0 < TILE_J ? n - j0 : TILE_J;
            const uint16_t *xj = xb + (size_t)j0 * K;
            int r = r0;
            for (; r + TILE_R <= r1; r += TILE_R)
                tile4(wb + (size_t)(r - r0) * ldw, ldw, xj, (size_t)K, J, K, y + (size_t)j0 * rows + r, (size_t)rows);
            for (int j = 0; j < J && r < r1; j++)
                tail_rows(wb + (size_t)(r - r0) * ldw, ldw, xj + (size_t)j * K, r1 - r, K, y + (size_t)(j0 + j) * rows + r);
        }
    }
    free(blk);
    free(frow);
    }
    free(xb);
    return failed ? -1 : 0;
}
#else
int llm_bf16dp_available(void) { return 0; }
int llm_matmul_bf16dp(const llm_mat *w, const float *x, int n, float *y) {
    (void)w, (void)x, (void)n, (void)y;
    return -1;
}
#endif
