/* AdamW and global-norm gradient clipping. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

void nn_adamw_step(float *param, const float *grad, float *m, float *v, size_t n, int64_t t,
                   float lr, float beta1, float beta2, float eps, float weight_decay) {
    const float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
    const float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
    const float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] * decay - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}

#define NCHUNK 64

float nn_clip_grad_norm(const nn_buf *bufs, int nbufs, float max_norm) {
    double ss = 0.0;
    for (int b = 0; b < nbufs; b++) {
        const float *p = bufs[b].ptr;
        size_t n = bufs[b].len;
        double part[NCHUNK];
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
        for (int c = 0; c < NCHUNK; c++) {
            double acc = 0.0;
            for (size_t i = n * c / NCHUNK; i < n * (c + 1) / NCHUNK; i++) acc += (double)p[i] * p[i];
            part[c] = acc;
        }
        for (int c = 0; c < NCHUNK; c++) ss += part[c];
    }
    double norm = sqrt(ss);
    if (!isfinite(norm)) return (float)norm;
    if (max_norm > 0.0f && norm > max_norm) {
        float coef = (float)(max_norm / (norm + 1e-6));
        for (int b = 0; b < nbufs; b++) {
            float *p = bufs[b].ptr;
            size_t n = bufs[b].len;
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
            for (size_t i = 0; i < n; i++) p[i] *= coef;
        }
    }
    return (float)norm;
}
