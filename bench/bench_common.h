/* Shared by the bench programs: the machine's reference figure, OpenBLAS sgemm GFLOP/s,
 * measured in the same run as the thing being benchmarked. */
#ifndef DEEPREC_BENCH_COMMON_H
#define DEEPREC_BENCH_COMMON_H

#include <cblas.h>
#include <stdlib.h>
#include "deeprec/base.h"

/* Best of 5 C[M,N] = A[M,K] B[N,K]^T; 0 when out of memory. */
static inline double bench_sgemm_gflops(int M, int N, int K) {
    float *a = dr_aligned_alloc((size_t)M * K * 4), *b = dr_aligned_alloc((size_t)N * K * 4),
          *c = dr_aligned_alloc((size_t)M * N * 4);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 7) * 0.01f;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = dr_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            double g = 2.0 * M * N * K / (dr_now() - t0) / 1e9;
            if (g > best) best = g;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

#endif
