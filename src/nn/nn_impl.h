/* Internal to src/nn: elementwise math without libm calls, so that loops over it vectorise
 * (the build has no -ffast-math, so expf/erff/tanhf stay scalar calls). Accuracy is a few
 * fp32 ulps, checked against double precision in tests/nn. */
#ifndef DEEPREC_NN_IMPL_H
#define DEEPREC_NN_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* OpenMP loops run in parallel only from this many elements of work on: below it, starting
 * the team costs more than the loop (decode steps, small batches). 32768 by default; the
 * tests set it to 1 so that the parallel paths run on their small shapes. */
extern size_t nn_par_min;
#define NN_PAR_MIN nn_par_min

/* A loop over rows, in parallel (static schedule) only when cond holds. `#pragma omp parallel
 * for if (cond)` still starts a team of one when cond is false: 1.2 us a call on the
 * development VM (libgomp, against 3.0 us for a team of two), more than a 896-wide RMSNorm or
 * a token's RoPE take, and a one-token LLM decode step made about a hundred such calls. So
 * below the threshold the loop runs with no OpenMP call at all. */
#define NN_PAR_FOR(cond, ...)                                                                   \
    do {                                                                                        \
        if (cond) {                                                                             \
            _Pragma("omp parallel for schedule(static)") __VA_ARGS__                            \
        } else {                                                                                \
            __VA_ARGS__                                                                         \
        }                                                                                       \
    } while (0)

/* Candidates per tile of nn_linear_cross_entropy: a tile of 64 rows' logits (256 KB) and the
 * tile's table rows stay in a core's L2 between the logits and the gradient products. */
#define NN_LCE_COLS 1024

/* exp(x): range reduction x = n ln2 + r (n rounded to nearest with the 1.5*2^23 trick, ln2
 * split in two parts), Cephes' degree-6 polynomial for e^r on [-ln2/2, ln2/2], 2^n built in
 * the exponent bits. Relative error about 2e-7. x < -87.3 (including -INFINITY) gives 0;
 * x is clamped at 88 (e^88 ~ 1.6e38). */
static inline float nn_vexp(float x) {
    float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    xc = xc == xc ? xc : 0.0f; /* NaN (a diverged run): no float-to-int of NaN below; NaN is returned */
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    union { int32_t i; float f; } sc;
    sc.i = ((int32_t)n + 127) << 23;
    return x < -87.3f ? 0.0f : (x == x ? p * sc.f : x);
}

static inline float nn_vsigmoid(float x) { return 1.0f / (1.0f + nn_vexp(-x)); }

/* tanh(u) = 1 - 2 / (1 + e^{2u}); absolute error about 2e-7. */
static inline float nn_vtanh(float u) { return 1.0f - 2.0f / (1.0f + nn_vexp(2.0f * u)); }

/* erf(x), Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), odd extension. */
static inline float nn_verf(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float y = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
    float e = 1.0f - y * nn_vexp(-ax * ax);
    return x < 0.0f ? -e : e;
}

/* max_j x[j] (-INFINITY when n == 0). */
static inline float nn_rowmax(const float *x, int n) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* y[j] = exp(x[j] - shift) (y may equal x); returns the sum. */
static inline float nn_expsum(float *y, const float *x, float shift, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        float e = nn_vexp(x[j] - shift);
        y[j] = e;
        sum += e;
    }
    return sum;
}

/* sum_j exp(x[j] - shift). */
static inline float nn_expsum_only(const float *x, float shift, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) sum += nn_vexp(x[j] - shift);
    return sum;
}

/* d[j] += a * exp(x[j] - shift). */
static inline void nn_expaxpy(float *d, float a, const float *x, float shift, int n) {
#pragma omp simd
    for (int j = 0; j < n; j++) d[j] += a * nn_vexp(x[j] - shift);
}

#endif
