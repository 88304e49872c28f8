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
#include "transpose16.h"
#define BF_TGT __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define ROWS_PER_BLOCK 64
#define TILE_R 4
#define TILE_J 6
#ifndef PANEL_MIN_N
#define PANEL_MIN_N 64 /* batches from which the panels below take over (prefill) */
#endif

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

/* ---- prefill: panels in the outer-product form (as f32gemm.c, with pairs of k)
 * Each thread takes panels of 32 weight rows and packs a block of PKC columns of one as
 * [k / 2][32 rows][2] (a row's pair of bf16 is one 32-bit lane); for every tile of 12 tokens,
 * 2 x 12 accumulators of 16 rows stay in registers: per pair of k, two loads of the panel, 12
 * broadcasts of the token's pair, 24 vdpbf16ps. No horizontal sums (the 4 x 6 tiles above spend
 * a reduction per output over the whole width), and 32 rows share each broadcast. */
#define PANEL 32
#define PJ 12
#define PKC 512 /* k per block, even: a 32 KB packed block */

static inline __attribute__((always_inline)) BF_TGT void ptile(const uint32_t *wp, const uint16_t *x, size_t ldx,
                                                               int kcp, const int J, float *y, size_t ldy,
                                                               __mmask16 m0, __mmask16 m1, int add) {
    __m512 a0[PJ], a1[PJ];
    for (int j = 0; j < J; j++) {
        a0[j] = add ? _mm512_maskz_loadu_ps(m0, y + (size_t)j * ldy) : _mm512_setzero_ps();
        a1[j] = add ? _mm512_maskz_loadu_ps(m1, y + (size_t)j * ldy + 16) : _mm512_setzero_ps();
    }
    for (int kp = 0; kp < kcp; kp++) {
        __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(wp + (size_t)kp * PANEL));
        __m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(wp + (size_t)kp * PANEL + 16));
        for (int j = 0; j < J; j++) {
            int32_t pair;
            memcpy(&pair, x + (size_t)j * ldx + 2 * (size_t)kp, sizeof pair);
            __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
            a0[j] = _mm512_dpbf16_ps(a0[j], w0, b);
            a1[j] = _mm512_dpbf16_ps(a1[j], w1, b);
        }
    }
    for (int j = 0; j < J; j++) {
        _mm512_mask_storeu_ps(y + (size_t)j * ldy, m0, a0[j]);
        _mm512_mask_storeu_ps(y + (size_t)j * ldy + 16, m1, a1[j]);
    }
}

BF_TGT static void ptile_j(const uint32_t *wp, const uint16_t *x, size_t ldx, int kcp, int J, float *y, size_t ldy,
                           __mmask16 m0, __mmask16 m1, int add) {
#define T(JJ) ptile(wp, x, ldx, kcp, JJ, y, ldy, m0, m1, add); return
    switch (J) {
    case 1: T(1); case 2: T(2); case 3: T(3); case 4: T(4); case 5: T(5); case 6: T(6);
    case 7: T(7); case 8: T(8); case 9: T(9); case 10: T(10); case 11: T(11); default: T(12);
    }
#undef T
}

/* Columns k0..k0+kc-1 (k0, kc even) of the panel's bf16 rows src[0..PANEL-1] (NULL: zeros) into
 * wp[kc / 2][PANEL] pairs, 16 pairs of 16 rows transposed at a time in registers. */
BF_TGT static void pack_pairs(const uint16_t *const *src, int k0, int kc, uint32_t *wp) {
    const int np = kc / 2;
    int p = 0;
    for (; p + 16 <= np; p += 16)
        for (int h = 0; h < PANEL; h += 16) {
            __m512 v[16];
            for (int i = 0; i < 16; i++)
                v[i] = src[h + i] ? _mm512_castsi512_ps(_mm512_loadu_si512((const void *)(src[h + i] + k0 + 2 * p)))
                                  : _mm512_setzero_ps();
            llm_transpose16(v);
            for (int i = 0; i < 16; i++) _mm512_storeu_ps((float *)(wp + (size_t)(p + i) * PANEL + h), v[i]);
        }
    for (; p < np; p++)
        for (int r = 0; r < PANEL; r++) {
            uint32_t pr = 0;
            if (src[r]) memcpy(&pr, src[r] + k0 + 2 * p, sizeof pr);
            wp[(size_t)p * PANEL + r] = pr;
        }
}

/* y = x W^T for n >= 1 with xb the bf16 activations; K even. 0, or -1 when out of memory. */
BF_TGT static int panels(const llm_mat *w, const uint16_t *xb, int n, float *y) {
    const int rows = w->rows, K = w->cols, np = (rows + PANEL - 1) / PANEL, direct = w->type == GGML_TYPE_BF16;
    const int ntj = (n + PJ - 1) / PJ;
    int failed = 0;
#pragma omp parallel
    {
        /* wp: one packed block; tmp, frow: the panel's rows expanded and rounded (types other than BF16) */
        uint32_t *wp = malloc((size_t)PKC / 2 * PANEL * sizeof *wp);
        uint16_t *tmp = direct ? NULL : malloc((size_t)K * PANEL * sizeof *tmp);
        float *frow = direct ? NULL : malloc((size_t)K * sizeof *frow);
        const int ok = wp && (direct || (tmp && frow));
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int p = 0; p < np; p++) {
            if (!ok) continue;
            const int r0 = p * PANEL, nr = rows - r0 < PANEL ? rows - r0 : PANEL;
            const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
            const __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : (__mmask16)((1u << (nr - 16)) - 1);
            const uint16_t *src[PANEL];
            for (int r = 0; r < PANEL; r++) {
                src[r] = NULL;
                if (r >= nr) continue;
                if (direct) src[r] = (const uint16_t *)((const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes);
                else {
                    llm_mat_row(w, r0 + r, frow);
                    to_bf16(frow, (size_t)K, tmp + (size_t)r * K);
                    src[r] = tmp + (size_t)r * K;
                }
            }
            for (int k0 = 0; k0 < K; k0 += PKC) {
                const int kc = K - k0 < PKC ? K - k0 : PKC;
                pack_pairs(src, k0, kc, wp);
                for (int t = 0; t < ntj; t++) {
                    const int j0 = t * PJ;
                    ptile_j(wp, xb + (size_t)j0 * K + k0, (size_t)K, kc / 2, n - j0 < PJ ? n - j0 : PJ,
                            y + (size_t)j0 * rows + r0, (size_t)rows, m0, m1, k0 > 0);
                }
            }
        }
        free(wp);
        free(tmp);
        free(frow);
    }
    return failed ? -1 : 0;
}

/* ---- decode, one token: w_r . x one row at a time, so each thread reads one forward stream
 * (its contiguous share of the rows), prefetched BF_AHEAD bytes ahead; the 4-row tiles read 4
 * streams at once, more than the hardware prefetcher follows. */
#define BF_AHEAD 4096
BF_TGT static float row1(const uint16_t *w, const uint16_t *x, int K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch((const char *)(w + k) + BF_AHEAD, LLM_PF_STREAM);
        _mm_prefetch((const char *)(w + k) + BF_AHEAD + 64, LLM_PF_STREAM);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512((const void *)(w + k)),
                              (__m512bh)_mm512_loadu_si512((const void *)(x + k)));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512((const void *)(w + k + 32)),
                              (__m512bh)_mm512_loadu_si512((const void *)(x + k + 32)));
    }
    for (; k < K; k += 32) { /* the last K % 64 values, zero-filled on both sides */
        __mmask32 m = K - k >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (K - k)) - 1);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m, w + k), (__m512bh)_mm512_maskz_loadu_epi16(m, x + k));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
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

/* One token times nw <= 4 BF16 matrices sharing the input (q, k, v; gate, up): the input
 * rounded once and all rows in one parallel region (see llm_matmul_q8act_group); the same
 * row1 sums as one llm_matmul_bf16dp per matrix, bit for bit. -1 (nothing written) otherwise. */
int llm_matmul_bf16dp_group(const llm_mat *const *w, int nw, const float *x, float *const *y) {
    enum { MAXW = 4 };
    if (nw < 1 || nw > MAXW || !llm_bf16dp_available()) return -1;
    const int K = w[0]->cols;
    int first[MAXW + 1] = {0};
    for (int k = 0; k < nw; k++) {
        if (w[k]->type != GGML_TYPE_BF16 || w[k]->cols != K) return -1;
        first[k + 1] = first[k] + w[k]->rows;
    }
    uint16_t *xb = malloc((size_t)K * sizeof *xb);
    if (!xb) return -1;
    to_bf16(x, (size_t)K, xb);
    const int total = first[nw];
    /* guided: the faster vCPU takes more rows (see q4a_tiles in qmatmul.c; static / guided
     * 1.02-1.03 for BF16 decode steps in one process) */
#pragma omp parallel for schedule(guided) if ((double)total * K > 65536)
    for (int t = 0; t < total; t++) {
        int k = 0;
        while (t >= first[k + 1]) k++;
        const int r = t - first[k];
        y[k][r] = row1((const uint16_t *)((const uint8_t *)w[k]->data + (size_t)r * w[k]->row_bytes), xb, K);
    }
    free(xb);
    return 0;
}

int llm_matmul_bf16dp(const llm_mat *w, const float *x, int n, float *y) {
    /* other types: each block of 64 rows is dequantised and rounded to bf16 first (prefill) */
    if (!llm_bf16dp_available() || (w->type != GGML_TYPE_BF16 && !dr_dequantize_supported(w->type))) return -1;
    const int rows = w->rows, K = w->cols, direct = w->type == GGML_TYPE_BF16;
    uint16_t *xb = malloc((size_t)n * K * sizeof *xb);
    if (!xb) return -1;
    to_bf16(x, (size_t)n * K, xb);
    if (n >= PANEL_MIN_N && K % 2 == 0) {
        int rc = panels(w, xb, n, y);
        free(xb);
        return rc;
    }
    if (n == 1 && direct) {
#pragma omp parallel for schedule(guided) if ((double)rows * K > 65536)
        for (int r = 0; r < rows; r++) y[r] = row1((const uint16_t *)((const uint8_t *)w->data + (size_t)r * w->row_bytes), xb, K);
        free(xb);
        return 0;
    }
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
int llm_matmul_bf16dp_group(const llm_mat *const *w, int nw, const float *x, float *const *y) {
    (void)w, (void)nw, (void)x, (void)y;
    return -1;
}
#endif
