/* y[n x rows] = x[n x cols] W^T for weights in F32 / F16 / BF16 / Q8_0.
 *
 * Small batches (decode) read the compact weights directly: each thread takes blocks
 * of rows, converts 8 weights at a time to fp32 in registers and multiplies them
 * with up to 4 activation rows (fp32 FMA), so the weights are read from memory once
 * per call. Larger batches (prefill) convert tiles of rows to fp32 and call sgemm. */
#include "deeprec/llm.h"
#include "deeprec/gguf.h"
#include "llm_internal.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define LLM_AVX2 1
#endif

#define Q8_BLOCK 32
#ifndef LLM_DECODE_ROWS
#define LLM_DECODE_ROWS 4 /* rows per tile at batch 1 */
#endif
#ifndef LLM_PREFETCH
#define LLM_PREFETCH 4096 /* bytes ahead in each row's stream for batch <= 2 (measured: 1024 < 2048 < 4096) */
#endif
#define Q8_BYTES 34

static inline float half_to_f32(uint16_t h) {
#ifdef LLM_AVX2
    return _cvtsh_ss(h);
#else
    return dr_f16_to_f32(h);
#endif
}

void llm_mat_row(const llm_mat *w, int r, float *dst) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
    int n = w->cols;
    switch (w->type) {
    case GGML_TYPE_F32: memcpy(dst, row, (size_t)n * sizeof(float)); break;
    case GGML_TYPE_F16: {
        const uint16_t *h = (const uint16_t *)row;
        int i = 0;
#ifdef LLM_AVX2
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
        for (; i < n; i++) dst[i] = half_to_f32(h[i]);
        break;
    }
    case GGML_TYPE_BF16: {
        const uint16_t *h = (const uint16_t *)row;
        int i = 0;
#ifdef LLM_AVX2
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(
                                          _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i))), 16)));
#endif
        for (; i < n; i++) {
            uint32_t u = (uint32_t)h[i] << 16;
            memcpy(dst + i, &u, 4);
        }
        break;
    }
    case GGML_TYPE_Q8_0: {
        for (int b = 0; b < n / Q8_BLOCK; b++) {
            const uint8_t *blk = row + (size_t)b * Q8_BYTES;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            float d = half_to_f32(dh);
            const int8_t *q = (const int8_t *)(blk + 2);
            for (int i = 0; i < Q8_BLOCK; i++) dst[b * Q8_BLOCK + i] = d * (float)q[i];
        }
        break;
    }
    default:
        if (w->packed) llm_packed_row_f32(w, r, dst);
        else if (dr_dequantize(w->type, row, dst, (uint64_t)n))
            memset(dst, 0, (size_t)n * sizeof(float));
        break;
    }
}

/* ---------------------------------------------------------------- direct kernels */
#ifdef LLM_AVX2
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 weights of row starting at element k (k % 8 == 0; for Q8_0 the block scale is passed). */
static inline __attribute__((always_inline)) __m256 load_w8(uint32_t type, const uint8_t *row, int k, __m256 d) {
    switch (type) {
    case GGML_TYPE_F32: return _mm256_loadu_ps((const float *)row + k);
    case GGML_TYPE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    case GGML_TYPE_BF16:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k))), 16));
    default: { /* Q8_0 */
        const int8_t *q = (const int8_t *)(row + (size_t)(k / Q8_BLOCK) * Q8_BYTES + 2) + (k % Q8_BLOCK);
        __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
        return _mm256_mul_ps(f, d);
    }
    }
}

static inline __attribute__((always_inline)) __m256 q8_scale(uint32_t type, const uint8_t *row, int k) {
    if (type != GGML_TYPE_Q8_0) return _mm256_setzero_ps();
    uint16_t dh;
    memcpy(&dh, row + (size_t)(k / Q8_BLOCK) * Q8_BYTES, 2);
    return _mm256_set1_ps(_cvtsh_ss(dh));
}

/* Prefetch each of the R rows' stream LLM_PREFETCH bytes ahead of element k (memory-bound shapes). */
static inline __attribute__((always_inline)) void prefetch_rows(uint32_t type, const uint8_t *w, size_t rb, int R,
                                                               int k) {
    for (int r = 0; r < R; r++) {
        size_t off = type == GGML_TYPE_Q8_0 ? (size_t)(k / Q8_BLOCK) * Q8_BYTES
                                            : (size_t)k * (type == GGML_TYPE_F32 ? 4 : 2);
        _mm_prefetch((const char *)(w + r * rb + off + LLM_PREFETCH), _MM_HINT_T0);
    }
}

/* s plus row[kk] * x[kk] for kk in [k, cols), one at a time in order: the columns a kernel's vector
 * loop left over (float types only; Q8_0 rows are whole blocks). */
static inline __attribute__((always_inline)) float dot_tail(uint32_t type, const uint8_t *row, const float *x, int k,
                                                           int cols, float s) {
    for (int kk = k; kk < cols; kk++) {
        float wk;
        if (type == GGML_TYPE_F32) wk = ((const float *)row)[kk];
        else if (type == GGML_TYPE_F16) wk = _cvtsh_ss(((const uint16_t *)row)[kk]);
        else {
            uint32_t u = (uint32_t)((const uint16_t *)row)[kk] << 16;
            memcpy(&wk, &u, 4);
        }
        s += wk * x[kk];
    }
    return s;
}

/* R rows x J activation rows; out[j * ldy + r]. R, J are compile-time constants at each call. */
static inline __attribute__((always_inline)) void tile(uint32_t type, const uint8_t *w, size_t rb, const int R,
                                                      const float *x, int ldx, const int J, int cols, float *y, int ldy) {
    __m256 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) acc[r][j] = _mm256_setzero_ps();
    int k = 0;
    int kend = cols & ~(Q8_BLOCK - 1);
    for (; k < kend; k += Q8_BLOCK) {
        __m256 d[4];
        if (J <= 2) prefetch_rows(type, w, rb, R, k);
        for (int r = 0; r < R; r++) d[r] = q8_scale(type, w + r * rb, k);
        for (int s = 0; s < Q8_BLOCK; s += 8) {
            __m256 wv[4];
            for (int r = 0; r < R; r++) wv[r] = load_w8(type, w + r * rb, k + s, d[r]);
            for (int j = 0; j < J; j++) {
                __m256 xv = _mm256_loadu_ps(x + (size_t)j * ldx + k + s);
                for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
            }
        }
    }
    for (; k + 8 <= cols; k += 8) { /* float types only (Q8_0 rows are whole blocks) */
        __m256 wv[4];
        for (int r = 0; r < R; r++) wv[r] = load_w8(type, w + r * rb, k, _mm256_setzero_ps());
        for (int j = 0; j < J; j++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)j * ldx + k);
            for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) {
            y[(size_t)j * ldy + r] = dot_tail(type, w + r * rb, x + (size_t)j * ldx, k, cols, hsum256(acc[r][j]));
        }
}

#define DEF_KERNEL(NAME, TYPE)                                                                          \
    __attribute__((unused)) static void NAME(const uint8_t *w, size_t rb, int R, const float *x, int ldx, int J, int cols,     \
                     float *y, int ldy) {                                                              \
        if (R == 4 && J == 1) tile(TYPE, w, rb, 4, x, ldx, 1, cols, y, ldy);                           \
        else if (R == 2 && J == 4) tile(TYPE, w, rb, 2, x, ldx, 4, cols, y, ldy);                      \
        else if (R == 2 && J == 3) tile(TYPE, w, rb, 2, x, ldx, 3, cols, y, ldy);                      \
        else if (R == 2 && J == 2) tile(TYPE, w, rb, 2, x, ldx, 2, cols, y, ldy);                      \
        else if (R == 2 && J == 1) tile(TYPE, w, rb, 2, x, ldx, 1, cols, y, ldy);                      \
        else                                                                                            \
            for (int r_ = 0; r_ < R; r_++)                                                              \
                for (int j_ = 0; j_ < J; j_++)                                                          \
                    tile(TYPE, w + r_ * rb, rb, 1, x + (size_t)j_ * ldx, ldx, 1, cols, y + (size_t)j_ * ldy + r_, ldy); \
    }
DEF_KERNEL(kern_f32, GGML_TYPE_F32)
DEF_KERNEL(kern_f16, GGML_TYPE_F16)
DEF_KERNEL(kern_bf16, GGML_TYPE_BF16)
DEF_KERNEL(kern_q8_0, GGML_TYPE_Q8_0)

#if defined(__AVX512F__) && defined(__AVX512BW__)
/* AVX-512: 16 weights at a time, up to 4 rows x 4 activation rows in registers. */
#define LLM_AVX512 1
static inline __attribute__((always_inline)) __m512 load_w16(uint32_t type, const uint8_t *row, int k, __m512 d) {
    switch (type) {
    case GGML_TYPE_F32: return _mm512_loadu_ps((const float *)row + k);
    case GGML_TYPE_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k)));
    case GGML_TYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k))), 16));
    default: {
        const int8_t *q = (const int8_t *)(row + (size_t)(k / Q8_BLOCK) * Q8_BYTES + 2) + (k % Q8_BLOCK);
        __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
        return _mm512_mul_ps(f, d);
    }
    }
}

static inline __attribute__((always_inline)) void tile512(uint32_t type, const uint8_t *w, size_t rb, const int R,
                                                         const float *x, int ldx, const int J, int cols, float *y,
                                                         int ldy) {
    __m512 acc[4][8];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) acc[r][j] = _mm512_setzero_ps();
    int k = 0;
    int kend = cols & ~(Q8_BLOCK - 1);
    for (; k < kend; k += Q8_BLOCK) {
        __m512 d[4];
        if (J <= 2) prefetch_rows(type, w, rb, R, k); /* memory-bound shapes */
        for (int r = 0; r < R; r++) {
            if (type == GGML_TYPE_Q8_0) {
                uint16_t dh;
                memcpy(&dh, w + r * rb + (size_t)(k / Q8_BLOCK) * Q8_BYTES, 2);
                d[r] = _mm512_set1_ps(_cvtsh_ss(dh));
            } else {
                d[r] = _mm512_setzero_ps();
            }
        }
        for (int s = 0; s < Q8_BLOCK; s += 16) {
            __m512 wv[4];
            for (int r = 0; r < R; r++) wv[r] = load_w16(type, w + r * rb, k + s, d[r]);
            for (int j = 0; j < J; j++) {
                __m512 xv = _mm512_loadu_ps(x + (size_t)j * ldx + k + s);
                for (int r = 0; r < R; r++) acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < J; j++) {
            y[(size_t)j * ldy + r] =
                dot_tail(type, w + r * rb, x + (size_t)j * ldx, k, cols, _mm512_reduce_add_ps(acc[r][j]));
        }
}

/* Batch 1: one row at a time, a single forward stream per thread, 4 independent
 * accumulators (2 blocks of 32 per iteration) and prefetch: memory-bound. */
static inline __attribute__((always_inline)) float row1_512(uint32_t type, const uint8_t *row, const float *x, int cols,
                                                            const int perm) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    const int kend2 = cols & ~(2 * Q8_BLOCK - 1), kend = cols & ~(Q8_BLOCK - 1);
    const size_t esz = type == GGML_TYPE_F32 ? 4 : 2;
#define OFF(kk) (type == GGML_TYPE_Q8_0 ? (size_t)((kk) / Q8_BLOCK) * Q8_BYTES : (size_t)(kk) * esz)
#define SCALE(kk) (type == GGML_TYPE_Q8_0 ? _mm512_set1_ps(_cvtsh_ss(*(const uint16_t *)(row + OFF(kk)))) : _mm512_setzero_ps())
    for (; k < kend2; k += 2 * Q8_BLOCK) {
        _mm_prefetch((const char *)(row + OFF(k) + LLM_PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(row + OFF(k) + LLM_PREFETCH + 64), _MM_HINT_T0);
        if (type == GGML_TYPE_BF16 && perm) { /* x permuted per block of 32: 16 even-, then 16 odd-indexed values;
                                               * even bf16 become fp32 by a shift, odd ones by a mask */
            const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
            __m512i v0 = _mm512_loadu_si512((const void *)(row + (size_t)k * 2));
            __m512i v1 = _mm512_loadu_si512((const void *)(row + (size_t)k * 2 + 64));
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(x + k), a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, hi)), _mm512_loadu_ps(x + k + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), _mm512_loadu_ps(x + k + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v1, hi)), _mm512_loadu_ps(x + k + 48), a3);
            continue;
        }
        __m512 d0 = SCALE(k), d1 = SCALE(k + Q8_BLOCK);
        a0 = _mm512_fmadd_ps(load_w16(type, row, k, d0), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(load_w16(type, row, k + 16, d0), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(load_w16(type, row, k + 32, d1), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(load_w16(type, row, k + 48, d1), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k < kend; k += Q8_BLOCK) {
        if (type == GGML_TYPE_BF16 && perm) {
            __m512i v0 = _mm512_loadu_si512((const void *)(row + (size_t)k * 2));
            a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(x + k), a0);
            a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v0, _mm512_set1_epi32((int)0xFFFF0000u))),
                                 _mm512_loadu_ps(x + k + 16), a1);
            continue;
        }
        __m512 d0 = SCALE(k);
        a0 = _mm512_fmadd_ps(load_w16(type, row, k, d0), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(load_w16(type, row, k + 16, d0), _mm512_loadu_ps(x + k + 16), a1);
    }
#undef OFF
#undef SCALE
    return dot_tail(type, row, x, k, cols,
                    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))));
}

#define DEF_KERNEL512(NAME, TYPE)                                                                       \
    static void NAME(const uint8_t *w, size_t rb, int R, const float *x, int ldx, int J, int cols,     \
                     float *y, int ldy) {                                                              \
        if (J == 1 && R <= 4) {                                                                         \
            for (int r_ = 0; r_ < R; r_++) y[r_] = row1_512(TYPE, w + r_ * rb, x, cols, 0);                   \
        } else if (R == 3 && J == 8) tile512(TYPE, w, rb, 3, x, ldx, 8, cols, y, ldy);                 \
        else if (R == 3 && J == 4) tile512(TYPE, w, rb, 3, x, ldx, 4, cols, y, ldy);                   \
        else if (R == 3 && J == 2) tile512(TYPE, w, rb, 3, x, ldx, 2, cols, y, ldy);                   \
        else if (R == 3 && J == 1) tile512(TYPE, w, rb, 3, x, ldx, 1, cols, y, ldy);                   \
        else if (R == 4 && J == 4) tile512(TYPE, w, rb, 4, x, ldx, 4, cols, y, ldy);                   \
        else if (R == 4 && J == 3) tile512(TYPE, w, rb, 4, x, ldx, 3, cols, y, ldy);                   \
        else if (R == 4 && J == 2) tile512(TYPE, w, rb, 4, x, ldx, 2, cols, y, ldy);                   \
        else if (R == 4 && J == 1) tile512(TYPE, w, rb, 4, x, ldx, 1, cols, y, ldy);                   \
        else if (R == 2 && J == 1) tile512(TYPE, w, rb, 2, x, ldx, 1, cols, y, ldy);                   \
        else                                                                                            \
            for (int r_ = 0; r_ < R; r_++)                                                              \
                for (int j_ = 0; j_ < J; j_++)                                                          \
                    tile512(TYPE, w + r_ * rb, rb, 1, x + (size_t)j_ * ldx, ldx, 1, cols, y + (size_t)j_ * ldy + r_, ldy); \
    }
DEF_KERNEL512(kern512_f32, GGML_TYPE_F32)
DEF_KERNEL512(kern512_f16, GGML_TYPE_F16)
DEF_KERNEL512(kern512_bf16, GGML_TYPE_BF16)
DEF_KERNEL512(kern512_q8_0, GGML_TYPE_Q8_0)
/* BF16 at batch 1 with x permuted (see row1_512). */
static void kern512_bf16_perm(const uint8_t *w, size_t rb, int R, const float *x, int ldx, int J, int cols, float *y,
                              int ldy) {
    for (int r = 0; r < R; r++) y[r] = row1_512(GGML_TYPE_BF16, w + r * rb, x, cols, 1);
}
#endif

typedef void (*kern_fn)(const uint8_t *, size_t, int, const float *, int, int, int, float *, int);

static void matmul_direct(const llm_mat *w, const float *x, int n, float *y) {
#ifdef LLM_AVX512
    kern_fn k = w->type == GGML_TYPE_F32 ? kern512_f32
              : w->type == GGML_TYPE_F16 ? kern512_f16
              : w->type == GGML_TYPE_BF16 ? kern512_bf16 : kern512_q8_0;
    const int R = n == 1 ? LLM_DECODE_ROWS : 3, JB = n == 1 ? 1 : 8;
#else
    kern_fn k = w->type == GGML_TYPE_F32 ? kern_f32
              : w->type == GGML_TYPE_F16 ? kern_f16
              : w->type == GGML_TYPE_BF16 ? kern_bf16 : kern_q8_0;
    const int R = n == 1 ? 4 : 2, JB = 4;
#endif
    const int rows = w->rows, cols = w->cols;
    const int nblk = (rows + R - 1) / R;
    const uint8_t *base = (const uint8_t *)w->data;
#ifdef LLM_AVX512
    float *xp = NULL;
    if (w->type == GGML_TYPE_BF16 && n == 1) { /* even/odd permutation per block of 32 (tail as is) */
        xp = malloc((size_t)n * cols * sizeof(float));
        if (!xp) { /* no memory: plain per-row conversion */
            float *row = malloc((size_t)cols * sizeof(float));
            for (int r = 0; row && r < rows; r++) {
                llm_mat_row(w, r, row);
                for (int j = 0; j < n; j++) {
                    float sum = 0;
                    for (int kk = 0; kk < cols; kk++) sum += row[kk] * x[(size_t)j * cols + kk];
                    y[(size_t)j * rows + r] = sum;
                }
            }
            free(row);
            return;
        }
        const int kend = cols & ~(Q8_BLOCK - 1);
        for (int j = 0; j < n; j++) {
            const float *src = x + (size_t)j * cols;
            float *dst = xp + (size_t)j * cols;
            for (int kb = 0; kb < kend; kb += 32)
                for (int i = 0; i < 16; i++) {
                    dst[kb + i] = src[kb + 2 * i];
                    dst[kb + 16 + i] = src[kb + 2 * i + 1];
                }
            for (int kk = kend; kk < cols; kk++) dst[kk] = src[kk];
        }
        x = xp;
        k = kern512_bf16_perm;
    }
#endif
    double work = (double)rows * cols * n;
#pragma omp parallel for schedule(static) if (work > 65536)
    for (int b = 0; b < nblk; b++) {
        int r0 = b * R, rr = rows - r0 < R ? rows - r0 : R;
        const uint8_t *wr = base + (size_t)r0 * w->row_bytes;
        for (int j = 0; j < n; j += JB) {
            int jj = n - j < JB ? n - j : JB;
            k(wr, w->row_bytes, rr, x + (size_t)j * cols, cols, jj, cols, y + (size_t)j * rows + r0, rows);
        }
    }
#ifdef LLM_AVX512
    free(xp);
#endif
}
#else
static void matmul_direct(const llm_mat *w, const float *x, int n, float *y) {
    const int rows = w->rows, cols = w->cols;
    /* on each worker's stack: a failed malloc here had no way to reach the caller */
#pragma omp parallel
    {
        float row[cols];
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            llm_mat_row(w, r, row);
            for (int j = 0; j < n; j++) {
                const float *xj = x + (size_t)j * cols;
                float s = 0;
                for (int k = 0; k < cols; k++) s += row[k] * xj[k];
                y[(size_t)j * rows + r] = s;
            }
        }
    }
}
#endif

/* ---------------------------------------------------------------- sgemm path */
/* Below this batch the direct kernels win: the sgemm path first converts the whole matrix
 * to fp32 (3x the weight bytes of memory traffic). Measured crossover ~64 with AVX-512. */
#ifdef LLM_AVX512
#define SGEMM_MIN_N 64
#else
#define SGEMM_MIN_N 16
#endif

static void matmul_sgemm(const llm_mat *w, const float *x, int n, float *y) {
    const int rows = w->rows, cols = w->cols;
    if (w->type == GGML_TYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols, (const float *)w->data, cols,
                    0.0f, y, rows);
        return;
    }
    /* Tiles of about 2M floats (8 MB) converted to fp32, then sgemm on each. */
    int tr = (int)((2u << 20) / (unsigned)cols);
    if (tr < 64) tr = 64;
    if (tr > rows) tr = rows;
    float *buf = malloc((size_t)tr * cols * sizeof(float));
    if (!buf) { /* no memory for a tile: fall back to the direct kernel */
        matmul_direct(w, x, n, y);
        return;
    }
    for (int r0 = 0; r0 < rows; r0 += tr) {
        int rr = rows - r0 < tr ? rows - r0 : tr;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rr; r++) llm_mat_row(w, r0 + r, buf + (size_t)r * cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rr, cols, 1.0f, x, cols, buf, cols, 0.0f, y + r0, rows);
    }
    free(buf);
}

int llm_sgemm_min_n(void) { return SGEMM_MIN_N; }

static int direct_type(uint32_t t) {
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 || t == GGML_TYPE_Q8_0;
}

void llm_matmul(const llm_mat *w, const float *x, int n, float *y) {
    if (n <= 0 || w->rows <= 0) return;
    if (n >= SGEMM_MIN_N) {
        if (llm_f32gemm(w, x, n, y)) matmul_sgemm(w, x, n, y);
    }
    else if (direct_type(w->type)) matmul_direct(w, x, n, y);
    else llm_matmul_rows_exact(w, x, n, y);
}

void llm_matmul_fast(const llm_mat *w, const float *x, int n, float *y) {
    if (n <= 0 || w->rows <= 0) return;
    if (w->type == GGML_TYPE_BF16 && llm_matmul_bf16dp(w, x, n, y) == 0) return;
    if (n < SGEMM_MIN_N && dr_unpack_supported(w->type) && llm_matmul_q8act(w, x, n, y) == 0) return;
    if (n >= SGEMM_MIN_N && dr_unpack_supported(w->type) && llm_matmul_bf16dp(w, x, n, y) == 0) return;
    llm_matmul(w, x, n, y);
}

void llm_matmul_fast_group(const llm_mat *const *w, int nw, const float *x, int n, float *const *y) {
    if (n == 1 && w[0]->type == GGML_TYPE_BF16 && llm_matmul_bf16dp_group(w, nw, x, y) == 0) return;
    if (n < SGEMM_MIN_N && llm_matmul_q8act_group(w, nw, x, n, y) == 0) return;
    for (int k = 0; k < nw; k++) llm_matmul_fast(w[k], x, n, y[k]);
}
