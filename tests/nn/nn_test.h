/* Helpers shared by the nn test files (tests/nn/test_nn_util.c). */
#ifndef DEEPREC_NN_TEST_H
#define DEEPREC_NN_TEST_H

#include <stddef.h>
#include "deeprec/base.h"
#include "deeprec/nn.h"

/* Allocations live until nt_free_all() (call it at the end of each test). Zeroed. */
void *nt_alloc(size_t bytes);
void nt_free_all(void);
float *nt_randn(dr_rng *r, size_t n, float scale);
float *nt_zeros(size_t n);
double *nt_dzeros(size_t n);
double *nt_tod(const float *x, size_t n);
double nt_dot(const double *r, const double *y, size_t n);

/* |got - want| <= atol + rtol * |want| elementwise. */
void nt_check_close(const char *file, int line, const char *what, const float *got, const double *want,
                    size_t n, double atol, double rtol);
#define CHECK_CLOSE(what, got, want, n, atol, rtol) \
    nt_check_close(__FILE__, __LINE__, what, got, want, n, atol, rtol)

/* Central differences (h = 1e-5) of a double-precision objective f(ctx) with respect to each
 * x[i], compared with the analytic gradient grad[i] from the fp32 backward:
 * |analytic - fd| <= atol + rtol * |fd|. */
typedef double (*nt_objective)(void *ctx);
void nt_gradcheck(const char *file, int line, const char *what, nt_objective f, void *ctx, double *x,
                  const float *grad, size_t n, size_t step, double atol, double rtol);
#define GRADCHECK(what, f, ctx, x, grad, n, atol, rtol) \
    nt_gradcheck(__FILE__, __LINE__, what, f, ctx, x, grad, n, 1, atol, rtol)
/* The same on every step-th element only (large tensors). */
#define GRADCHECK_EVERY(what, f, ctx, x, grad, n, step, atol, rtol) \
    nt_gradcheck(__FILE__, __LINE__, what, f, ctx, x, grad, n, step, atol, rtol)

#endif
