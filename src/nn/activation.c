/* Elementwise activations: gelu (erf / tanh), relu, silu, swiglu. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f
#define GELU_C 0.044715f

/* Runs the statement (over size_t i) for i in [0, n) as a simd loop: a plain one below
 * NN_PAR_MIN, else blocks of ELEM_BLOCK shared among the threads. Not `omp parallel for simd
 * if (...)`: GCC runs that loop unvectorised when the if is false, about six times slower at
 * a decode step's sizes. */
#define ELEM_BLOCK 4096
#define ELEMWISE(n, ...)                                                                         \
    do {                                                                                         \
        const size_t n_ = (n);                                                                   \
        if (n_ < NN_PAR_MIN) {                                                                   \
            _Pragma("omp simd") for (size_t i = 0; i < n_; i++) __VA_ARGS__                      \
        } else {                                                                                 \
            _Pragma("omp parallel for schedule(static)") for (size_t b_ = 0; b_ < n_;           \
                                                               b_ += ELEM_BLOCK) {              \
                const size_t e_ = b_ + ELEM_BLOCK < n_ ? b_ + ELEM_BLOCK : n_;                   \
                _Pragma("omp simd") for (size_t i = b_; i < e_; i++) __VA_ARGS__                 \
            }                                                                                    \
        }                                                                                        \
    } while (0)

void nn_gelu_forward(float *y, const float *x, size_t n, int mode) {
    if (mode == NN_GELU_TANH)
        ELEMWISE(n, {
            float z = x[i];
            y[i] = 0.5f * z * (1.0f + nn_vtanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z)));
        });
    else
        ELEMWISE(n, {
            float z = x[i];
            y[i] = 0.5f * z * (1.0f + nn_verf(z * INV_SQRT_2));
        });
}

void nn_gelu_backward(float *dx, const float *dy, const float *x, size_t n, int mode) {
    if (mode == NN_GELU_TANH)
        ELEMWISE(n, {
            float z = x[i];
            float u = SQRT_2_OVER_PI * (z + GELU_C * z * z * z);
            float t = nn_vtanh(u);
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * z * z);
            dx[i] += dy[i] * (0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du);
        });
    else
        ELEMWISE(n, {
            float z = x[i];
            float cdf = 0.5f * (1.0f + nn_verf(z * INV_SQRT_2));
            float pdf = INV_SQRT_2PI * nn_vexp(-0.5f * z * z);
            dx[i] += dy[i] * (cdf + z * pdf);
        });
}

void nn_relu_forward(float *y, const float *x, size_t n) {
    ELEMWISE(n, { y[i] = x[i] > 0.0f ? x[i] : 0.0f; });
}

void nn_relu_backward(float *dx, const float *dy, const float *x, size_t n) {
    ELEMWISE(n, { dx[i] += x[i] > 0.0f ? dy[i] : 0.0f; });
}

void nn_silu_forward(float *y, const float *x, size_t n) {
    ELEMWISE(n, { y[i] = x[i] * nn_vsigmoid(x[i]); });
}

void nn_silu_backward(float *dx, const float *dy, const float *x, size_t n) {
    ELEMWISE(n, {
        float s = nn_vsigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    });
}

void nn_swiglu_forward(float *y, const float *gate, const float *up, size_t n) {
    ELEMWISE(n, { y[i] = gate[i] * nn_vsigmoid(gate[i]) * up[i]; });
}

void nn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                        const float *up, size_t n) {
    ELEMWISE(n, {
        float g = gate[i], s = nn_vsigmoid(g);
        if (dgate) dgate[i] += dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup) dup[i] += dy[i] * g * s;
    });
}

void nn_gated_residual_forward(float *y, float *g, const float *pre, const float *branch, const float *base,
                               size_t n) {
    ELEMWISE(n, {
        float s = nn_vsigmoid(pre[i]);
        g[i] = s;
        y[i] = base[i] + s * branch[i];
    });
}

void nn_gated_residual_backward(float *dbranch, float *dpre, const float *dy, const float *g, const float *branch,
                                size_t n) {
    ELEMWISE(n, {
        float s = g[i];
        dbranch[i] += dy[i] * s;
        dpre[i] += dy[i] * branch[i] * s * (1.0f - s);
    });
}
