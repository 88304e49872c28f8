/* Row softmax and dropout. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>
#include <string.h>

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
#pragma omp parallel for schedule(static) if ((size_t)N * C >= NN_PAR_MIN)
    for (int n = 0; n < N; n++) nn_softmax_row(y + (size_t)n * C, x + (size_t)n * C, C);
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

void nn_dropout_forward(float *y, uint8_t *mask, const float *x, size_t n, size_t row, uint64_t row0, float p,
                        const dr_rng *rng) {
    if (p <= 0.0f) {
        if (y != x) memcpy(y, x, sizeof(float) * n);
        if (mask) memset(mask, 1, n);
        return;
    }
    const float inv = 1.0f / (1.0f - p);
    size_t nrow = (n + row - 1) / row;
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
