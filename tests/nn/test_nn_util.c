/* Shared helpers of the nn tests: a per-test allocation arena, random data, and a
 * central-difference gradient check against a double-precision reference objective. */
#include "harness.h"
#include "nn_test.h"
#include "nn/nn_impl.h"
#include <stdlib.h>

/* Run every kernel's parallel path even on the tiny test shapes. */
__attribute__((constructor)) static void nt_parallel_always(void) { nn_par_min = 1; }

#define ARENA_MAX 512
static void *arena[ARENA_MAX];
static int arena_n;

void *nt_alloc(size_t bytes) {
    if (arena_n >= ARENA_MAX) dr_test_fail(__FILE__, __LINE__, "test arena full");
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) dr_test_fail(__FILE__, __LINE__, "out of memory");
    arena[arena_n++] = p;
    return p;
}

void nt_free_all(void) {
    while (arena_n > 0) free(arena[--arena_n]);
}

float *nt_randn(dr_rng *r, size_t n, float scale) {
    float *x = nt_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * dr_rng_normal(r);
    return x;
}

float *nt_zeros(size_t n) { return nt_alloc(n * sizeof(float)); }

double *nt_dzeros(size_t n) { return nt_alloc(n * sizeof(double)); }

double *nt_tod(const float *x, size_t n) {
    double *d = nt_alloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

double nt_dot(const double *r, const double *y, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += r[i] * y[i];
    return s;
}

void nt_check_close(const char *file, int line, const char *what, const float *got, const double *want,
                    size_t n, double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= atol + rtol * fabs(want[i])))
            dr_test_fail(file, line, "%s[%zu]: got %.9g, reference %.9g (|err| %.3g > %.3g + %.3g*|ref|)",
                         what, i, (double)got[i], want[i], err, atol, rtol);
    }
}

void nt_gradcheck(const char *file, int line, const char *what, nt_objective f, void *ctx, double *x,
                  const float *grad, size_t n, size_t step, double atol, double rtol) {
    const double h = 1e-5;
    for (size_t i = 0; i < n; i += step) {
        double xi = x[i];
        x[i] = xi + h;
        double fp = f(ctx);
        x[i] = xi - h;
        double fm = f(ctx);
        x[i] = xi;
        double num = (fp - fm) / (2.0 * h);
        double err = fabs(num - (double)grad[i]);
        if (!(err <= atol + rtol * fabs(num)))
            dr_test_fail(file, line, "gradient %s[%zu]: analytic %.9g, finite difference %.9g (|err| %.3g > %.3g + %.3g*|fd|)",
                         what, i, (double)grad[i], num, err, atol, rtol);
    }
}
