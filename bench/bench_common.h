/* Shared by the bench programs: the machine's reference figure, OpenBLAS sgemm GFLOP/s,
 * measured in the same run as the thing being benchmarked, and the options table. */
#ifndef DEEPREC_BENCH_COMMON_H
#define DEEPREC_BENCH_COMMON_H

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "deeprec/base.h"

/* Best of 5 C[M,N] = A[M,K] B[N,K]^T, timed with clock (wall or CPU seconds); 0 when out of
 * memory. */
static inline double bench_sgemm_gflops_clock(int M, int N, int K, double (*clock)(void)) {
    /* OpenBLAS's kernels follow OPENBLAS_CORETYPE when it is set (one machine here had Haswell
     * forced on an AVX-512 CPU, half the sgemm figure): say which ran, once */
    static int told;
    if (!told++) {
        const char *forced = getenv("OPENBLAS_CORETYPE");
        fprintf(stderr, "sgemm reference: OpenBLAS core %s%s%s\n", openblas_get_corename(),
                forced ? ", OPENBLAS_CORETYPE=" : "", forced ? forced : "");
    }
    float *a = dr_aligned_alloc((size_t)M * K * 4), *b = dr_aligned_alloc((size_t)N * K * 4),
          *c = dr_aligned_alloc((size_t)M * N * 4);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 7) * 0.01f;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = clock();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            double g = 2.0 * M * N * K / (clock() - t0) / 1e9;
            if (g > best) best = g;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* The same on the wall clock. */
static inline double bench_sgemm_gflops(int M, int N, int K) { return bench_sgemm_gflops_clock(M, N, K, dr_now); }

/* A bench program's options, as a table: each flag fills a string, an int or a switch. An
 * unknown option or a flag without its value prints the usage line; the caller returns 2. */
typedef enum { BENCH_STR, BENCH_INT, BENCH_SWITCH } bench_arg_kind;
typedef struct {
    const char *flag;
    bench_arg_kind kind;
    void *dst; /* const char **, int * or int * (set to 1) */
} bench_arg;

static inline int bench_parse_args(int argc, char **argv, const bench_arg *args, int n_args, const char *usage) {
    for (int i = 1; i < argc; i++) {
        const bench_arg *a = NULL;
        for (int k = 0; k < n_args && !a; k++)
            if (!strcmp(argv[i], args[k].flag)) a = &args[k];
        if (!a || (a->kind != BENCH_SWITCH && i + 1 >= argc)) {
            fprintf(stderr, "%s: %s %s\nusage: %s\n", argv[0], a ? "no value after" : "unknown option", argv[i], usage);
            return 2;
        }
        if (a->kind == BENCH_SWITCH) *(int *)a->dst = 1;
        else if (a->kind == BENCH_INT) *(int *)a->dst = atoi(argv[++i]);
        else *(const char **)a->dst = argv[++i];
    }
    return 0;
}

/* qsort's order of doubles, and the median of n (sorted in place). */
static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
