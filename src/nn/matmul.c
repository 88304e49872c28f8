/* Matrix products through OpenBLAS cblas_sgemm, and the linear layer y = x W^T + b. */
#include "deeprec/nn.h"
#include <cblas.h>
#include <string.h>

void nn_matmul(float *C, const float *A, const float *B, int M, int N, int K,
               int transA, int transB, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty product: C = beta C (sgemm rejects a zero leading dimension) */
        for (size_t i = 0; i < (size_t)M * N; i++) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
        return;
    }
    int lda = transA ? M : K; /* A stored [K,M] or [M,K] */
    int ldb = transB ? K : N; /* B stored [N,K] or [K,N] */
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, N);
}

void nn_matmul_backward(float *dA, float *dB, const float *dC, const float *A, const float *B,
                        int M, int N, int K, int transA, int transB, float alpha) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    int lda = transA ? M : K, ldb = transB ? K : N;
    if (dA) {
        if (!transA) /* dA[M,K] += alpha dC op(B)^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasNoTrans : CblasTrans, M, K, N,
                        alpha, dC, N, B, ldb, 1.0f, dA, K);
        else /* dA[K,M] += alpha op(B) dC^T */
            cblas_sgemm(CblasRowMajor, transB ? CblasTrans : CblasNoTrans, CblasTrans, K, M, N,
                        alpha, B, ldb, dC, N, 1.0f, dA, M);
    }
    if (dB) {
        if (!transB) /* dB[K,N] += alpha op(A)^T dC */
            cblas_sgemm(CblasRowMajor, transA ? CblasNoTrans : CblasTrans, CblasNoTrans, K, N, M,
                        alpha, A, lda, dC, N, 1.0f, dB, N);
        else /* dB[N,K] += alpha dC^T op(A) */
            cblas_sgemm(CblasRowMajor, CblasTrans, transA ? CblasTrans : CblasNoTrans, N, K, M,
                        alpha, dC, N, A, lda, 1.0f, dB, K);
    }
}

void nn_linear_forward(float *y, const float *x, const float *W, const float *b,
                       int N, int in, int out) {
    if (N <= 0 || out <= 0) return;
    if (in <= 0) {
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) y[(size_t)n * out + o] = b ? b[o] : 0.0f;
        return;
    }
    if (b) {
        /* start from the bias, then accumulate x W^T. Serial on purpose: an OpenMP region
         * right before sgemm leaves its threads spinning while OpenBLAS's threads work. */
        for (int n = 0; n < N; n++) memcpy(y + (size_t)n * out, b, sizeof(float) * (size_t)out);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in,
                b ? 1.0f : 0.0f, y, out);
}

void nn_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int N, int in, int out) {
    if (N <= 0 || out <= 0) return;
    if (in > 0 && dx) /* dx[N,in] += dy[N,out] W[out,in] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in,
                    1.0f, dx, in);
    if (in > 0 && dW) /* dW[out,in] += dy^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in,
                    1.0f, dW, in);
    if (db) {
        /* rows summed in order (deterministic); serial for the reason given above */
        for (int n = 0; n < N; n++) {
            const float *r = dy + (size_t)n * out;
            for (int o = 0; o < out; o++) db[o] += r[o];
        }
    }
}
