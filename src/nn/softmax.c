/* Row softmax and dropout. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

size_t nn_par_min = 32768;

#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

void nn_softmax_row(float *y, const float *x, int C) {
    float sum = nn_expsum(y, x, nn_rowmax(x, C), C);
    float inv = 1.0f / sum;
    for (int c = 0; c < C; c++) y[c] *= inv;
}

void nn_softmax_forward(float *y, const float *x, int N, int C) {
    NN_PAR_FOR((size_t)N * C >= NN_PAR_MIN, for (int n = 0; n < N; n++) {
        nn_softmax_row(y + (size_t)n * C, x + (size_t)n * C, C);
    });
}

void nn_softmax_backward(float *dx, const float *dy, const float *y, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= NN_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *yr = y + (size_t)n * C, *g = dy + (size_t)n * C;
        float *d = dx + (size_t)n * C;
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += g[c] * yr[c];
        for (int c = 0; c < C; c++) d[c] += yr[c] * (g[c] - s);
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
static inline __m512i xo_mul5(__m512i x) { return _mm512_add_epi64(x, _mm512_slli_epi64(x, 2)); }
static inline __m512i xo_mul9(__m512i x) { return _mm512_add_epi64(x, _mm512_slli_epi64(x, 3)); }

/* Rows i0 .. i0+nl-1 (nl <= 8) at once: lane k steps row i0+k's own xoshiro256** stream, the
 * same numbers as dr_rng_u64 one element after another, so the masks are the scalar loop's bit
 * for bit; the scalar loop spends its time in the serial chain of one stream. A draw u keeps
 * the element when float(u >> 40) 2^-24 >= p, i.e. when the integer u >> 40 >= thr. */
static void dropout_rows8(float *y, uint8_t *mask, const float *x, size_t n, size_t row, size_t i0, int nl,
                          uint64_t row0, uint64_t thr, float inv, const dr_rng *rng) {
    uint64_t st[4][8];
    size_t len[8], maxlen = 0;
    for (int k = 0; k < 8; k++) {
        dr_rng r = dr_rng_split(rng, row0 + (uint64_t)(i0 + (size_t)(k < nl ? k : 0)));
        for (int w = 0; w < 4; w++) st[w][k] = r.s[w];
        size_t a = (i0 + (size_t)k) * row;
        len[k] = k < nl ? (n - a < row ? n - a : row) : 0;
        maxlen = len[k] > maxlen ? len[k] : maxlen;
    }
    __m512i s0 = _mm512_loadu_si512(st[0]), s1 = _mm512_loadu_si512(st[1]), s2 = _mm512_loadu_si512(st[2]),
            s3 = _mm512_loadu_si512(st[3]);
    const __m512i vthr = _mm512_set1_epi64((long long)thr), one = _mm512_set1_epi8(1);
    const __m512 vinv = _mm512_set1_ps(inv);
    uint8_t bits[64] = {0};
    for (size_t j0 = 0; j0 < maxlen; j0 += 64) {
        const int nb = maxlen - j0 < 64 ? (int)(maxlen - j0) : 64;
        for (int s = 0; s < nb; s++) {
            __m512i res = xo_mul9(_mm512_rol_epi64(xo_mul5(s1), 7));
            __m512i t = _mm512_slli_epi64(s1, 17);
            s2 = _mm512_xor_si512(s2, s0);
            s3 = _mm512_xor_si512(s3, s1);
            s1 = _mm512_xor_si512(s1, s2);
            s0 = _mm512_xor_si512(s0, s3);
            s2 = _mm512_xor_si512(s2, t);
            s3 = _mm512_rol_epi64(s3, 45);
            bits[s] = (uint8_t)_mm512_cmpge_epu64_mask(_mm512_srli_epi64(res, 40), vthr);
        }
        const __m512i vb = _mm512_loadu_si512(bits);
        for (int k = 0; k < nl; k++) {
            if (j0 >= len[k]) continue;
            size_t m = len[k] - j0 < 64 ? len[k] - j0 : 64, a = (i0 + (size_t)k) * row + j0;
            __mmask64 valid = m == 64 ? ~(__mmask64)0 : (((__mmask64)1 << m) - 1);
            __mmask64 keep = _mm512_test_epi8_mask(vb, _mm512_set1_epi8((char)(1 << k))) & valid;
            _mm512_mask_storeu_epi8(mask + a, valid, _mm512_maskz_mov_epi8(keep, one));
            for (int v = 0; v < 4; v++) {
                __mmask16 vm = (__mmask16)(valid >> (16 * v)), km = (__mmask16)(keep >> (16 * v));
                if (!vm) break;
                __m512 xv = _mm512_maskz_loadu_ps(vm, x + a + 16 * v);
                _mm512_mask_storeu_ps(y + a + 16 * v, vm, _mm512_maskz_mul_ps(km, xv, vinv));
            }
        }
    }
}
#endif

void nn_dropout_forward(float *y, uint8_t *mask, const float *x, size_t n, size_t row, uint64_t row0, float p,
                        const dr_rng *rng) {
    if (p <= 0.0f) {
        if (y != x) memcpy(y, x, sizeof(float) * n);
        if (mask) memset(mask, 1, n);
        return;
    }
    const float inv = 1.0f / (1.0f - p);
    size_t nrow = (n + row - 1) / row;
#if defined(__AVX512F__) && defined(__AVX512BW__)
    /* p 2^24 is exact in float (a power-of-two scale), so the integer threshold is too */
    const uint64_t thr = (uint64_t)ceilf(p * 16777216.0f);
    const size_t ng = (nrow + 7) / 8;
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
    for (size_t g = 0; g < ng; g++)
        dropout_rows8(y, mask, x, n, row, 8 * g, nrow - 8 * g < 8 ? (int)(nrow - 8 * g) : 8, row0, thr, inv, rng);
#else
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < nrow; i++) {
        dr_rng r = dr_rng_split(rng, row0 + (uint64_t)i);
        size_t j1 = (i + 1) * row < n ? (i + 1) * row : n;
        for (size_t j = i * row; j < j1; j++) {
            uint8_t keep = dr_rng_float(&r) >= p;
            mask[j] = keep;
            y[j] = keep ? x[j] * inv : 0.0f;
        }
    }
#endif
}

void nn_dropout_backward(float *dx, const float *dy, const uint8_t *mask, size_t n, float p) {
    if (p <= 0.0f) {
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i];
        return;
    }
    const float inv = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] += mask[i] ? dy[i] * inv : 0.0f;
}
