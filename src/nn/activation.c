/* Elementwise activations: gelu (erf / tanh), relu, silu, swiglu. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f
#define GELU_C 0.044715f

void nn_gelu_forward(float *y, const float *x, size_t n, int mode) {
    if (mode == NN_GELU_TANH) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float z = x[i];
            y[i] = 0.5f * z * (1.0f + nn_vtanh(SQRT_2_OVER_PI * (z + GELU_C * z * z * z)));
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float z = x[i];
            y[i] = 0.5f * z * (1.0f + nn_verf(z * INV_SQRT_2));
        }
    }
}

void nn_gelu_backward(float *dx, const float *dy, const float *x, size_t n, int mode) {
    if (mode == NN_GELU_TANH) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float z = x[i];
            float u = SQRT_2_OVER_PI * (z + GELU_C * z * z * z);
            float t = nn_vtanh(u);
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * z * z);
            dx[i] += dy[i] * (0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du);
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float z = x[i];
            float cdf = 0.5f * (1.0f + nn_verf(z * INV_SQRT_2));
            float pdf = INV_SQRT_2PI * nn_vexp(-0.5f * z * z);
            dx[i] += dy[i] * (cdf + z * pdf);
        }
    }
}

void nn_relu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void nn_relu_backward(float *dx, const float *dy, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}


void nn_silu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * nn_vsigmoid(x[i]);
}

void nn_silu_backward(float *dx, const float *dy, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float s = nn_vsigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void nn_swiglu_forward(float *y, const float *gate, const float *up, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = gate[i] * nn_vsigmoid(gate[i]) * up[i];
}

void nn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                        const float *up, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= NN_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s = nn_vsigmoid(g);
        if (dgate) dgate[i] += dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup) dup[i] += dy[i] * g * s;
    }
}
