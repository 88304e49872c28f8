/* nn tests: matmul, linear, embedding, layernorm, rmsnorm, activations, softmax, dropout.
 * Forward results are compared with naive double-precision loops; every backward with
 * central finite differences of that double reference (h = 1e-5). */
#include "harness.h"
#include "nn_test.h"
#include <omp.h>
#include <string.h>

/* ---------------- matmul ---------------- */
typedef struct {
    int M, N, K, tA, tB;
    double alpha, beta;
    double *A, *B, *C0, *r, *y;
} mm_ctx;

static void ref_matmul(double *C, const double *A, const double *B, const double *C0, int M, int N, int K,
                       int tA, int tB, double alpha, double beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++) {
                double a = tA ? A[(size_t)p * M + i] : A[(size_t)i * K + p];
                double b = tB ? B[(size_t)j * K + p] : B[(size_t)p * N + j];
                s += a * b;
            }
            C[(size_t)i * N + j] = alpha * s + beta * C0[(size_t)i * N + j];
        }
}

static double mm_obj(void *p) {
    mm_ctx *c = p;
    ref_matmul(c->y, c->A, c->B, c->C0, c->M, c->N, c->K, c->tA, c->tB, c->alpha, c->beta);
    return nt_dot(c->r, c->y, (size_t)c->M * c->N);
}

/* Tolerances: forward |err| <= 1e-5 + 1e-5|ref|; gradients |err| <= 1e-5 + 1e-4|fd|. */
TEST(nn_matmul_all_transposes_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 1);
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            int M = 5, N = 7, K = 3 + 2 * tA + tB;
            float *A = nt_randn(&g, (size_t)M * K, 1), *B = nt_randn(&g, (size_t)K * N, 1);
            float *C = nt_randn(&g, (size_t)M * N, 1), *r = nt_randn(&g, (size_t)M * N, 1);
            mm_ctx c = {M, N, K, tA, tB, 0.7, 0.3, nt_tod(A, (size_t)M * K), nt_tod(B, (size_t)K * N),
                        nt_tod(C, (size_t)M * N), nt_tod(r, (size_t)M * N), nt_dzeros((size_t)M * N)};
            nn_matmul(C, A, B, M, N, K, tA, tB, 0.7f, 0.3f);
            mm_obj(&c);
            CHECK_CLOSE("C", C, c.y, (size_t)M * N, 1e-5, 1e-5);
            float *dA = nt_zeros((size_t)M * K), *dB = nt_zeros((size_t)K * N);
            nn_matmul_backward(dA, dB, r, A, B, M, N, K, tA, tB, 0.7f);
            GRADCHECK("dA", mm_obj, &c, c.A, dA, (size_t)M * K, 1e-5, 1e-4);
            GRADCHECK("dB", mm_obj, &c, c.B, dB, (size_t)K * N, 1e-5, 1e-4);
            /* accumulation: a second backward doubles the gradient */
            float a0 = dA[3];
            nn_matmul_backward(dA, NULL, r, A, B, M, N, K, tA, tB, 0.7f);
            CHECK_NEAR(dA[3], 2 * a0, 1e-5);
        }
    /* beta == 0 ignores NaN in C */
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 0, 0, 1}, C[4] = {NAN, NAN, NAN, NAN};
    nn_matmul(C, A, B, 2, 2, 2, 0, 0, 1.0f, 0.0f);
    CHECK(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);
    /* zero sizes: nothing to do, or C = beta C when K == 0 */
    nn_matmul(C, A, B, 0, 2, 2, 0, 0, 1.0f, 0.0f);
    nn_matmul(C, A, B, 2, 2, 0, 0, 0, 1.0f, 0.5f);
    CHECK(C[0] == 0.5f && C[3] == 2.0f);
    nn_matmul_backward(A, B, C, A, B, 2, 2, 0, 0, 0, 1.0f);
    nt_free_all();
}

/* ---------------- linear ---------------- */
typedef struct {
    int N, in, out;
    double *x, *W, *b, *r, *y;
} lin_ctx;

static double lin_obj(void *p) {
    lin_ctx *c = p;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->out; o++) {
            double s = c->b ? c->b[o] : 0.0;
            for (int i = 0; i < c->in; i++) s += c->x[(size_t)n * c->in + i] * c->W[(size_t)o * c->in + i];
            c->y[(size_t)n * c->out + o] = s;
        }
    return nt_dot(c->r, c->y, (size_t)c->N * c->out);
}

/* Tolerances: forward 1e-5 + 1e-5|ref|; gradients 1e-5 + 1e-4|fd|. */
TEST(nn_linear_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 2);
    int N = 6, in = 5, out = 3;
    float *x = nt_randn(&g, (size_t)N * in, 1), *W = nt_randn(&g, (size_t)out * in, 1);
    float *b = nt_randn(&g, out, 1), *r = nt_randn(&g, (size_t)N * out, 1), *y = nt_zeros((size_t)N * out);
    lin_ctx c = {N, in, out, nt_tod(x, (size_t)N * in), nt_tod(W, (size_t)out * in), nt_tod(b, out),
                 nt_tod(r, (size_t)N * out), nt_dzeros((size_t)N * out)};
    nn_linear_forward(y, x, W, b, N, in, out);
    lin_obj(&c);
    CHECK_CLOSE("y", y, c.y, (size_t)N * out, 1e-5, 1e-5);
    float *dx = nt_zeros((size_t)N * in), *dW = nt_zeros((size_t)out * in), *db = nt_zeros(out);
    nn_linear_backward(dx, dW, db, r, x, W, N, in, out);
    GRADCHECK("dx", lin_obj, &c, c.x, dx, (size_t)N * in, 1e-5, 1e-4);
    GRADCHECK("dW", lin_obj, &c, c.W, dW, (size_t)out * in, 1e-5, 1e-4);
    GRADCHECK("db", lin_obj, &c, c.b, db, out, 1e-5, 1e-4);
    /* without bias */
    c.b = NULL;
    nn_linear_forward(y, x, W, NULL, N, in, out);
    lin_obj(&c);
    CHECK_CLOSE("y (no bias)", y, c.y, (size_t)N * out, 1e-5, 1e-5);
    nt_free_all();
}

/* ---------------- embedding ---------------- */
typedef struct {
    int N, V, D;
    const int32_t *ids;
    double *table, *r;
} emb_ctx;

static double emb_obj(void *p) {
    emb_ctx *c = p;
    double s = 0.0;
    for (int i = 0; i < c->N; i++)
        if (c->ids[i] >= 0)
            for (int d = 0; d < c->D; d++) s += c->r[(size_t)i * c->D + d] * c->table[(size_t)c->ids[i] * c->D + d];
    return s;
}

/* Tolerances: forward exact; gradient 1e-5 + 1e-5|fd|. */
TEST(nn_embedding_forward_grad_and_range) {
    dr_rng g;
    dr_rng_seed(&g, 3);
    int V = 6, D = 37, N = 9;
    int32_t ids[9] = {2, 0, 5, 2, -1, 2, 3, 0, 5}; /* repeats and one padding */
    float *table = nt_randn(&g, (size_t)V * D, 1), *out = nt_zeros((size_t)N * D), *r = nt_randn(&g, (size_t)N * D, 1);
    CHECK_OK(nn_embedding_forward(out, table, ids, N, V, D));
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++)
            CHECK(out[i * D + d] == (ids[i] < 0 ? 0.0f : table[ids[i] * D + d]));
    float *dt = nt_zeros((size_t)V * D);
    CHECK_OK(nn_embedding_backward(dt, r, ids, N, V, D));
    emb_ctx c = {N, V, D, ids, nt_tod(table, (size_t)V * D), nt_tod(r, (size_t)N * D)};
    GRADCHECK("dtable", emb_obj, &c, c.table, dt, (size_t)V * D, 1e-5, 1e-5);
    /* deterministic across thread counts */
    float *dt1 = nt_zeros((size_t)V * D);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK_OK(nn_embedding_backward(dt1, r, ids, N, V, D));
    omp_set_num_threads(nt);
    CHECK(memcmp(dt, dt1, sizeof(float) * V * D) == 0);
    /* out of range */
    int32_t bad[2] = {1, 6};
    CHECK_ERR(nn_embedding_forward(out, table, bad, 2, V, D), DR_ERR_RANGE);
    CHECK_ERR(nn_embedding_backward(dt, r, bad, 2, V, D), DR_ERR_RANGE);
    CHECK(strstr(dr_error_message(), "id 6") != NULL);
    nt_free_all();
}

/* ---------------- layernorm / rmsnorm ---------------- */
typedef struct {
    int N, C, rms;
    double eps;
    double *x, *w, *b, *r, *y;
} norm_ctx;

static double norm_obj(void *p) {
    norm_ctx *c = p;
    for (int n = 0; n < c->N; n++) {
        const double *x = c->x + (size_t)n * c->C;
        double m = 0.0, v = 0.0;
        if (!c->rms) {
            for (int i = 0; i < c->C; i++) m += x[i];
            m /= c->C;
        }
        for (int i = 0; i < c->C; i++) v += (x[i] - m) * (x[i] - m);
        double rs = 1.0 / sqrt(v / c->C + c->eps);
        for (int i = 0; i < c->C; i++)
            c->y[(size_t)n * c->C + i] = (x[i] - m) * rs * (c->w ? c->w[i] : 1.0) + (c->b ? c->b[i] : 0.0);
    }
    return nt_dot(c->r, c->y, (size_t)c->N * c->C);
}

/* Tolerances: forward 1e-5 + 1e-5|ref|; gradients 2e-5 + 1e-3|fd|. */
TEST(nn_layernorm_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 4);
    int N = 5, C = 13;
    for (int affine = 0; affine < 2; affine++) {
        float *x = nt_randn(&g, (size_t)N * C, 2), *w = nt_randn(&g, C, 1), *b = nt_randn(&g, C, 1);
        for (int i = 0; i < N * C; i++) x[i] += 0.5f; /* non-zero mean */
        float *r = nt_randn(&g, (size_t)N * C, 1), *y = nt_zeros((size_t)N * C);
        float *mean = nt_zeros(N), *rstd = nt_zeros(N);
        norm_ctx c = {N, C, 0, 1e-5, nt_tod(x, (size_t)N * C), affine ? nt_tod(w, C) : NULL,
                      affine ? nt_tod(b, C) : NULL, nt_tod(r, (size_t)N * C), nt_dzeros((size_t)N * C)};
        nn_layernorm_forward(y, mean, rstd, x, affine ? w : NULL, affine ? b : NULL, N, C, 1e-5f);
        norm_obj(&c);
        CHECK_CLOSE("layernorm y", y, c.y, (size_t)N * C, 1e-5, 1e-5);
        float *dx = nt_zeros((size_t)N * C), *dw = nt_zeros(C), *db = nt_zeros(C);
        nn_layernorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, r, x, affine ? w : NULL, mean, rstd, N, C);
        GRADCHECK("layernorm dx", norm_obj, &c, c.x, dx, (size_t)N * C, 2e-5, 1e-3);
        if (affine) {
            GRADCHECK("layernorm dw", norm_obj, &c, c.w, dw, C, 2e-5, 1e-3);
            GRADCHECK("layernorm db", norm_obj, &c, c.b, db, C, 2e-5, 1e-3);
        }
    }
    nt_free_all();
}

TEST(nn_rmsnorm_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 5);
    int N = 4, C = 11;
    float *x = nt_randn(&g, (size_t)N * C, 1.5f), *w = nt_randn(&g, C, 1);
    float *r = nt_randn(&g, (size_t)N * C, 1), *y = nt_zeros((size_t)N * C), *rstd = nt_zeros(N);
    norm_ctx c = {N, C, 1, 1e-6, nt_tod(x, (size_t)N * C), nt_tod(w, C), NULL, nt_tod(r, (size_t)N * C),
                  nt_dzeros((size_t)N * C)};
    nn_rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
    norm_obj(&c);
    CHECK_CLOSE("rmsnorm y", y, c.y, (size_t)N * C, 1e-5, 1e-5);
    float *dx = nt_zeros((size_t)N * C), *dw = nt_zeros(C);
    nn_rmsnorm_backward(dx, dw, r, x, w, rstd, N, C);
    GRADCHECK("rmsnorm dx", norm_obj, &c, c.x, dx, (size_t)N * C, 2e-5, 1e-3);
    GRADCHECK("rmsnorm dw", norm_obj, &c, c.w, dw, C, 2e-5, 1e-3);
    nt_free_all();
}

/* ---------------- activations ---------------- */
enum { ACT_GELU_ERF, ACT_GELU_TANH, ACT_RELU, ACT_SILU, ACT_SWIGLU };
typedef struct {
    int kind;
    size_t n;
    double *x, *up, *r;
} act_ctx;

static double act_ref(int kind, double x) {
    switch (kind) {
    case ACT_GELU_ERF: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case ACT_RELU: return x > 0 ? x : 0.0;
    default: return x / (1.0 + exp(-x));
    }
}

static double act_obj(void *p) {
    act_ctx *c = p;
    double s = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        double y = c->kind == ACT_SWIGLU ? act_ref(ACT_SILU, c->x[i]) * c->up[i] : act_ref(c->kind, c->x[i]);
        s += c->r[i] * y;
    }
    return s;
}

/* Tolerances: forward 2e-6 + 2e-6|ref|; gradients 1e-5 + 1e-4|fd|. */
TEST(nn_activations_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 6);
    size_t n = 41;
    float *x = nt_randn(&g, n, 2), *up = nt_randn(&g, n, 1), *r = nt_randn(&g, n, 1);
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 1e-3f) x[i] = 0.5f; /* keep relu away from its kink */
    x[0] = 6.0f;
    x[1] = -6.0f;
    for (int kind = ACT_GELU_ERF; kind <= ACT_SWIGLU; kind++) {
        float *y = nt_zeros(n), *dx = nt_zeros(n), *dup = nt_zeros(n);
        switch (kind) {
        case ACT_GELU_ERF: nn_gelu_forward(y, x, n, NN_GELU_ERF); nn_gelu_backward(dx, r, x, n, NN_GELU_ERF); break;
        case ACT_GELU_TANH: nn_gelu_forward(y, x, n, NN_GELU_TANH); nn_gelu_backward(dx, r, x, n, NN_GELU_TANH); break;
        case ACT_RELU: nn_relu_forward(y, x, n); nn_relu_backward(dx, r, x, n); break;
        case ACT_SILU: nn_silu_forward(y, x, n); nn_silu_backward(dx, r, x, n); break;
        default: nn_swiglu_forward(y, x, up, n); nn_swiglu_backward(dx, dup, r, x, up, n); break;
        }
        act_ctx c = {kind, n, nt_tod(x, n), nt_tod(up, n), nt_tod(r, n)};
        double *want = nt_dzeros(n);
        for (size_t i = 0; i < n; i++)
            want[i] = kind == ACT_SWIGLU ? act_ref(ACT_SILU, c.x[i]) * c.up[i] : act_ref(kind, c.x[i]);
        CHECK_CLOSE("activation y", y, want, n, 2e-6, 2e-6);
        GRADCHECK("activation dx", act_obj, &c, c.x, dx, n, 1e-5, 1e-4);
        if (kind == ACT_SWIGLU) GRADCHECK("swiglu dup", act_obj, &c, c.up, dup, n, 1e-5, 1e-4);
    }
    nt_free_all();
}

/* The gated residual y = base + sigmoid(pre) * branch, against float64, and its gradients with
 * respect to pre and branch against finite differences of sum(r * y). */
typedef struct {
    size_t n;
    double *pre, *branch, *base, *r;
} gate_ctx;

static double gate_obj(void *p) {
    gate_ctx *c = p;
    double s = 0.0;
    for (size_t i = 0; i < c->n; i++) s += c->r[i] * (c->base[i] + c->branch[i] / (1.0 + exp(-c->pre[i])));
    return s;
}

TEST(nn_gated_residual_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 8);
    size_t n = 37;
    float *pre = nt_randn(&g, n, 2), *branch = nt_randn(&g, n, 1), *base = nt_randn(&g, n, 1),
          *r = nt_randn(&g, n, 1);
    pre[0] = 9.0f;
    pre[1] = -9.0f;
    float *y = nt_zeros(n), *gt = nt_zeros(n), *dpre = nt_zeros(n), *dbr = nt_zeros(n);
    nn_gated_residual_forward(y, gt, pre, branch, base, n);
    nn_gated_residual_backward(dbr, dpre, r, gt, branch, n);
    gate_ctx c = {n, nt_tod(pre, n), nt_tod(branch, n), nt_tod(base, n), nt_tod(r, n)};
    double *want = nt_dzeros(n), *wg = nt_dzeros(n);
    for (size_t i = 0; i < n; i++) {
        wg[i] = 1.0 / (1.0 + exp(-c.pre[i]));
        want[i] = c.base[i] + wg[i] * c.branch[i];
    }
    CHECK_CLOSE("gate g", gt, wg, n, 2e-7, 2e-6);
    CHECK_CLOSE("gated residual y", y, want, n, 2e-6, 2e-6);
    GRADCHECK("gate dpre", gate_obj, &c, c.pre, dpre, n, 1e-5, 1e-4);
    GRADCHECK("gate dbranch", gate_obj, &c, c.branch, dbr, n, 1e-5, 1e-4);
    /* in place over pre, as the TRM calls it */
    float *y2 = nt_zeros(n);
    nn_gated_residual_forward(y2, pre, pre, branch, base, n);
    for (size_t i = 0; i < n; i++) CHECK(y2[i] == y[i] && pre[i] == gt[i]);
    nt_free_all();
}

/* ---------------- softmax ---------------- */
typedef struct {
    int N, C;
    double *x, *r;
} sm_ctx;

static void ref_softmax_row(double *y, const double *x, int C) {
    double mx = x[0], s = 0.0;
    for (int i = 1; i < C; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < C; i++) s += exp(x[i] - mx);
    for (int i = 0; i < C; i++) y[i] = exp(x[i] - mx) / s;
}

static double sm_obj(void *p) {
    sm_ctx *c = p;
    double s = 0.0, y[64];
    for (int n = 0; n < c->N; n++) {
        ref_softmax_row(y, c->x + (size_t)n * c->C, c->C);
        for (int i = 0; i < c->C; i++) s += c->r[(size_t)n * c->C + i] * y[i];
    }
    return s;
}

/* Tolerances: forward 1e-6 + 1e-5|ref|; gradients 1e-5 + 1e-4|fd|. */
TEST(nn_softmax_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 7);
    int N = 4, C = 9;
    float *x = nt_randn(&g, (size_t)N * C, 3), *r = nt_randn(&g, (size_t)N * C, 1), *y = nt_zeros((size_t)N * C);
    x[0] = 80.0f; /* large value: max subtraction keeps it finite */
    nn_softmax_forward(y, x, N, C);
    sm_ctx c = {N, C, nt_tod(x, (size_t)N * C), nt_tod(r, (size_t)N * C)};
    double *want = nt_dzeros((size_t)N * C);
    for (int n = 0; n < N; n++) ref_softmax_row(want + n * C, c.x + n * C, C);
    CHECK_CLOSE("softmax y", y, want, (size_t)N * C, 1e-6, 1e-5);
    float *dx = nt_zeros((size_t)N * C);
    nn_softmax_backward(dx, r, y, N, C);
    GRADCHECK("softmax dx", sm_obj, &c, c.x, dx, (size_t)N * C, 1e-5, 1e-4);
    nt_free_all();
}

/* ---------------- dropout ---------------- */
typedef struct {
    size_t n;
    double p;
    const uint8_t *mask;
    double *x, *r;
} do_ctx;

static double do_obj(void *pp) {
    do_ctx *c = pp;
    double s = 0.0;
    for (size_t i = 0; i < c->n; i++) s += c->r[i] * (c->mask[i] ? c->x[i] / (1.0 - c->p) : 0.0);
    return s;
}

/* Tolerances: keep rate within 0.01 of 1-p on 100k values; output exact vs x*mask/(1-p);
 * gradient 1e-6 + 1e-5|fd|; masks bitwise equal on 1 and all threads, to the definition (row i
 * from dr_rng_split(rng, row0 + i)) and, for rows [r0, r1) drawn alone with row0 = r0, to
 * those rows of the whole tensor's masks. */
TEST(nn_dropout_mask_rate_determinism_and_grad) {
    dr_rng g, dr;
    dr_rng_seed(&g, 8);
    dr_rng_seed(&dr, 99);
    size_t n = 100003, row = 1000; /* 101 rows, the last one 3 elements */
    float p = 0.3f;
    float *x = nt_randn(&g, n, 1), *y = nt_zeros(n), *y1 = nt_zeros(n), *r = nt_randn(&g, n, 1);
    uint8_t *m = nt_alloc(n), *m1 = nt_alloc(n);
    nn_dropout_forward(y, m, x, n, row, 0, p, &dr);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        kept += m[i];
        CHECK(y[i] == (m[i] ? x[i] * (1.0f / (1.0f - p)) : 0.0f));
    }
    CHECK_NEAR((double)kept / n, 1.0 - p, 0.01);
    for (size_t i = 0; i * row < n; i++) {
        dr_rng ri = dr_rng_split(&dr, i);
        size_t bad = 0;
        for (size_t j = i * row; j < n && j < (i + 1) * row; j++) bad += m[j] != (dr_rng_float(&ri) >= p);
        CHECK_MSG(bad == 0, "row %zu: %zu mask entries differ from the definition", i, bad);
    }
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    nn_dropout_forward(y1, m1, x, n, row, 0, p, &dr);
    omp_set_num_threads(nt);
    CHECK(memcmp(m, m1, n) == 0 && memcmp(y, y1, n * sizeof(float)) == 0);
    /* a shard: rows [37, 101) alone, numbered from 37 */
    size_t o = 37 * row;
    memset(m1, 0, n);
    nn_dropout_forward(y1, m1, x + o, n - o, row, 37, p, &dr);
    CHECK(memcmp(m + o, m1, n - o) == 0 && memcmp(y + o, y1, (n - o) * sizeof(float)) == 0);
    /* gradient on a small slice */
    size_t ns = 50;
    float *dx = nt_zeros(ns);
    nn_dropout_backward(dx, r, m, ns, p);
    do_ctx c = {ns, p, m, nt_tod(x, ns), nt_tod(r, ns)};
    GRADCHECK("dropout dx", do_obj, &c, c.x, dx, ns, 1e-6, 1e-5);
    /* in place, p = 0.5 (a threshold of exactly 2^23 draws' worth): the same masks as drawn apart */
    size_t nh = 3 * row + 77;
    memcpy(y1, x, nh * sizeof(float));
    nn_dropout_forward(y1, m1, y1, nh, row, 5, 0.5f, &dr);
    for (size_t i = 0; i * row < nh; i++) {
        dr_rng ri = dr_rng_split(&dr, 5 + i);
        size_t bad = 0;
        for (size_t j = i * row; j < nh && j < (i + 1) * row; j++) {
            uint8_t keep = dr_rng_float(&ri) >= 0.5f;
            bad += m1[j] != keep || y1[j] != (keep ? x[j] * 2.0f : 0.0f);
        }
        CHECK_MSG(bad == 0, "in place, row %zu: %zu entries differ from the definition", i, bad);
    }
    /* p == 0 is the identity, in place allowed */
    memcpy(y, x, n * sizeof(float));
    nn_dropout_forward(y, NULL, y, n, row, 0, 0.0f, &dr);
    CHECK(memcmp(y, x, n * sizeof(float)) == 0);
    nt_free_all();
}

/* ---------------- internal vectorisable math ---------------- */
#include "nn/nn_impl.h"

/* Tolerances: exp relative 1e-6 on [-87, 88]; erf absolute 1e-6 (A&S 7.1.26 in fp32);
 * tanh, sigmoid absolute 5e-7;
 * exp of -inf and of anything below -87.3 is exactly 0. */
TEST(nn_internal_math_accuracy) {
    double worst_exp = 0, worst_erf = 0, worst_tanh = 0, worst_sig = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double e = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(nn_vexp(x) - e) / e);
        float y = -6.0f + 12.0f * (float)i / 200000.0f;
        worst_erf = fmax(worst_erf, fabs(nn_verf(y) - erf((double)y)));
        worst_tanh = fmax(worst_tanh, fabs(nn_vtanh(y) - tanh((double)y)));
        worst_sig = fmax(worst_sig, fabs(nn_vsigmoid(y) - 1.0 / (1.0 + exp(-(double)y))));
    }
    CHECK_MSG(worst_exp < 1e-6, "exp relative error %g", worst_exp);
    CHECK_MSG(worst_erf < 1e-6, "erf error %g", worst_erf);
    CHECK_MSG(worst_tanh < 5e-7, "tanh error %g", worst_tanh);
    CHECK_MSG(worst_sig < 5e-7, "sigmoid error %g", worst_sig);
    CHECK(nn_vexp(-INFINITY) == 0.0f && nn_vexp(-100.0f) == 0.0f && isfinite(nn_vexp(100.0f)));
    CHECK(nn_vsigmoid(-200.0f) >= 0.0f && nn_vsigmoid(-200.0f) < 1e-30f && nn_vsigmoid(200.0f) == 1.0f);
}
