/* y[n x rows] = x[n x cols] W^T in fp32 with AVX-512 for prefill batches (the exact path of
 * every weight type), chosen at run time; without AVX-512 the caller takes OpenBLAS sgemm.
 *
 * Why not sgemm: OpenBLAS picks its kernels by the CPU it recognises or by OPENBLAS_CORETYPE,
 * and where that is its 256-bit Haswell kernel on a CPU with full-width AVX-512 (this project's
 * Zen 5 machine runs with OPENBLAS_CORETYPE=Haswell) F32 prefill ran at 0.69-1.00x
 * llama.cpp's (docs/llm.md). This kernel does not depend on that choice.
 *
 * Outer-product form, as BLAS kernels are: each thread takes panels of 32 weight rows, packs
 * one into [k][32] (converting any type to fp32 on the way, so the panel is read from memory
 * once), and for every tile of 12 tokens keeps 2 x 12 accumulators of 16 rows in registers: per
 * k, two loads of the panel and 12 broadcasts of x[j][k], 24 FMAs. The outputs are rows of y
 * already (no horizontal sums). k runs in blocks of KC so that the panel block and the 12 rows
 * of x it meets stay in L1/L2; each output is still summed in k order, one FMA at a time. */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && (__GNUC__ >= 8)
#include <immintrin.h>
#define GM_TGT __attribute__((target("avx512f")))
#define PANEL 32 /* weight rows per panel: two 16-lane registers */
#define TJ 12    /* tokens per register tile: 24 accumulators of 32 registers */
#define KC 512   /* k per block: a 64 KB panel block, 24 KB of x per tile */

/* acc[r][j] += sum over kk < kc of wp[kk][16r ..] * x[j][kk]; J tokens, stored to y rows j
 * (mask m0/m1: the panel's valid rows), from y when add (a later k block), else from zero. */
static inline __attribute__((always_inline)) GM_TGT void tile(const float *wp, const float *x, size_t ldx, int kc,
                                                              const int J, float *y, size_t ldy, __mmask16 m0,
                                                              __mmask16 m1, int add) {
    __m512 a0[TJ], a1[TJ];
    for (int j = 0; j < J; j++) {
        a0[j] = add ? _mm512_maskz_loadu_ps(m0, y + (size_t)j * ldy) : _mm512_setzero_ps();
        a1[j] = add ? _mm512_maskz_loadu_ps(m1, y + (size_t)j * ldy + 16) : _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_loadu_ps(wp + (size_t)k * PANEL), w1 = _mm512_loadu_ps(wp + (size_t)k * PANEL + 16);
        for (int j = 0; j < J; j++) {
            __m512 b = _mm512_set1_ps(x[(size_t)j * ldx + k]);
            a0[j] = _mm512_fmadd_ps(w0, b, a0[j]);
            a1[j] = _mm512_fmadd_ps(w1, b, a1[j]);
        }
    }
    for (int j = 0; j < J; j++) {
        _mm512_mask_storeu_ps(y + (size_t)j * ldy, m0, a0[j]);
        _mm512_mask_storeu_ps(y + (size_t)j * ldy + 16, m1, a1[j]);
    }
}

/* J as a constant for the compiler: the accumulators stay in registers. */
GM_TGT static void tile_j(const float *wp, const float *x, size_t ldx, int kc, int J, float *y, size_t ldy,
                          __mmask16 m0, __mmask16 m1, int add) {
#define T(JJ) tile(wp, x, ldx, kc, JJ, y, ldy, m0, m1, add); return
    switch (J) {
    case 1: T(1); case 2: T(2); case 3: T(3); case 4: T(4); case 5: T(5); case 6: T(6);
    case 7: T(7); case 8: T(8); case 9: T(9); case 10: T(10); case 11: T(11); default: T(12);
    }
#undef T
}

/* Rows r0..r0+nr-1 of w (nr <= PANEL) into wp[k][PANEL], fp32, missing rows zero; row: cols
 * floats of scratch for the types that need converting. */
static void pack_panel(const llm_mat *w, int r0, int nr, float *wp, float *row) {
    const int K = w->cols;
    for (int r = 0; r < PANEL; r++) {
        const float *src = NULL;
        if (r < nr) {
            if (w->type == GGML_TYPE_F32) src = (const float *)((const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes);
            else {
                llm_mat_row(w, r0 + r, row);
                src = row;
            }
        }
        if (src)
            for (int k = 0; k < K; k++) wp[(size_t)k * PANEL + r] = src[k];
        else
            for (int k = 0; k < K; k++) wp[(size_t)k * PANEL + r] = 0;
    }
}

int llm_f32gemm_available(void) {
    static int have = -1; /* relaxed atomics: racing callers store the same value */
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        const char *e = getenv("DEEPREC_GEMM"); /* "blas": OpenBLAS sgemm instead, for comparisons */
        h = __builtin_cpu_supports("avx512f") && !(e && !strcmp(e, "blas"));
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h;
}

int llm_f32gemm(const llm_mat *w, const float *x, int n, float *y) {
    if (!llm_f32gemm_available() || n <= 0) return -1;
    const int rows = w->rows, K = w->cols, np = (rows + PANEL - 1) / PANEL;
    int failed = 0;
#pragma omp parallel
    {
        float *wp = malloc((size_t)K * PANEL * sizeof *wp);
        float *row = w->type == GGML_TYPE_F32 ? NULL : malloc((size_t)K * sizeof *row);
        if (!wp || (w->type != GGML_TYPE_F32 && !row)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int p = 0; p < np; p++) {
            if (!wp || (w->type != GGML_TYPE_F32 && !row)) continue;
            const int r0 = p * PANEL, nr = rows - r0 < PANEL ? rows - r0 : PANEL;
            const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
            const __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : (__mmask16)((1u << (nr - 16)) - 1);
            pack_panel(w, r0, nr, wp, row);
            for (int k0 = 0; k0 < K; k0 += KC) {
                const int kc = K - k0 < KC ? K - k0 : KC;
                for (int j0 = 0; j0 < n; j0 += TJ)
                    tile_j(wp + (size_t)k0 * PANEL, x + (size_t)j0 * K + k0, (size_t)K, kc, n - j0 < TJ ? n - j0 : TJ,
                           y + (size_t)j0 * rows + r0, (size_t)rows, m0, m1, k0 > 0);
            }
        }
        free(wp);
        free(row);
    }
    return failed ? -1 : 0;
}
#else
int llm_f32gemm_available(void) { return 0; }
int llm_f32gemm(const llm_mat *w, const float *x, int n, float *y) {
    (void)w, (void)x, (void)n, (void)y;
    return -1;
}
#endif
