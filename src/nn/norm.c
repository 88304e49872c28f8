/* LayerNorm and RMSNorm over the last dimension. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int N, int C, float eps) {
    NN_PAR_FOR((size_t)N * C >= NN_PAR_MIN, for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += xr[c];
        float m = (float)(s / C);
        double v = 0.0;
        for (int c = 0; c < C; c++) {
            float d = xr[c] - m;
            v += (double)d * d;
        }
        float rs = (float)(1.0 / sqrt(v / C + (double)eps));
        for (int c = 0; c < C; c++) {
            float y = (xr[c] - m) * rs;
            if (w) y *= w[c];
            if (b) y += b[c];
            o[c] = y;
        }
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = rs;
    });
}

void nn_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                           const float *w, const float *mean, const float *rstd, int N, int C) {
    if (dx) {
        /* dx = rstd * (g - mean(g) - xhat * mean(g .* xhat)), g = dout .* w */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= NN_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *d = dx + (size_t)n * C;
            float m = mean[n], rs = rstd[n];
            float sg = 0.0f, sgx = 0.0f;
            for (int c = 0; c < C; c++) {
                float g = w ? dy[c] * w[c] : dy[c];
                float xh = (xr[c] - m) * rs;
                sg += g;
                sgx += g * xh;
            }
            sg /= C;
            sgx /= C;
            for (int c = 0; c < C; c++) {
                float g = w ? dy[c] * w[c] : dy[c];
                float xh = (xr[c] - m) * rs;
                d[c] += rs * (g - sg - xh * sgx);
            }
        }
    }
    if (dw || db) {
        /* column blocks owned by one thread each; rows summed in order */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= NN_PAR_MIN)
        for (int c0 = 0; c0 < C; c0 += 32) {
            int c1 = c0 + 32 < C ? c0 + 32 : C;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
                float m = mean[n], rs = rstd[n];
                for (int c = c0; c < c1; c++) {
                    if (dw) dw[c] += dy[c] * (xr[c] - m) * rs;
                    if (db) db[c] += dy[c];
                }
            }
        }
    }
}

void nn_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
    NN_PAR_FOR((size_t)N * C >= NN_PAR_MIN, for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float rs = (float)(1.0 / sqrt(ss / C + (double)eps));
        for (int c = 0; c < C; c++) o[c] = w ? xr[c] * rs * w[c] : xr[c] * rs;
        if (rstd) rstd[n] = rs;
    });
}

void nn_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *rstd, int N, int C) {
    if (dx) {
        /* dx = rstd * (g - xhat * mean(g .* xhat)), g = dout .* w, xhat = x * rstd */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= NN_PAR_MIN)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *d = dx + (size_t)n * C;
            float rs = rstd[n];
            float sgx = 0.0f;
            for (int c = 0; c < C; c++) sgx += (w ? dy[c] * w[c] : dy[c]) * xr[c] * rs;
            sgx /= C;
            for (int c = 0; c < C; c++) {
                float g = w ? dy[c] * w[c] : dy[c];
                d[c] += rs * (g - xr[c] * rs * sgx);
            }
        }
    }
    if (dw) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= NN_PAR_MIN)
        for (int c0 = 0; c0 < C; c0 += 32) {
            int c1 = c0 + 32 < C ? c0 + 32 : C;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
                float rs = rstd[n];
                for (int c = c0; c < c1; c++) dw[c] += dy[c] * xr[c] * rs;
            }
        }
    }
}
