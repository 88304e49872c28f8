/* nn tests: the fused full-softmax cross-entropy (nn_linear_cross_entropy) against a float64
 * reference written from the definition and against the unfused loss (sgemm logits +
 * nn_cross_entropy + two sgemms, the TRM's former path), on shapes with ragged row blocks
 * (N not a multiple of 64), ragged item tiles (V - v0 not a multiple of NN_LCE_COLS) and
 * widths that are not multiples of the kernels' register blocks. */
#include "harness.h"
#include "nn_test.h"
#include "nn/nn_impl.h"
#include <omp.h>
#include <string.h>

/* Tolerance, with scale = the largest |reference| of the tensor: |got - ref| <= 1e-5 scale
 * + 1e-4 |ref| for both gradients, 1e-5 relative for the loss. fp32 logits carry about
 * 1e-6 relative error, which the softmax passes on to every gradient entry. */
#define LCE_ATOL 1e-5
#define LCE_RTOL 1e-4

typedef struct {
    double loss;
    double *dh, *dt; /* d(dscale * loss) */
} lce_ref;

/* eps: label smoothing (target (1 - eps) onehot + eps / C over the C candidates); xo/xi: per row,
 * candidates left out of the softmax (but the target), or NULL. */
static void reference_x(lce_ref *r, const float *h, const float *tab, const int32_t *tg, int N, int V, int D, int v0,
                        double eps, double dscale, const int32_t *xo, const int32_t *xi) {
    r->dh = nt_dzeros((size_t)N * D);
    r->dt = nt_dzeros((size_t)V * D);
    double *z = nt_dzeros((size_t)V);
    r->loss = 0.0;
    for (int i = 0; i < N; i++) {
        double mx = -INFINITY, s = 0.0, zs = 0.0;
        const double C = V - v0;
        for (int j = v0; j < V; j++) {
            double a = 0.0;
            for (int k = 0; k < D; k++) a += (double)h[(size_t)i * D + k] * tab[(size_t)j * D + k];
            if (xo)
                for (int e = xo[i]; e < xo[i + 1]; e++)
                    if (xi[e] == j && j != tg[i]) a = -INFINITY;
            z[j] = a;
            if (a != -INFINITY) zs += a;
            mx = a > mx ? a : mx;
        }
        for (int j = v0; j < V; j++) s += exp(z[j] - mx);
        double lse = mx + log(s);
        r->loss += (lse - (1.0 - eps) * z[tg[i]] - eps * zs / C) / N;
        for (int j = v0; j < V; j++) {
            if (z[j] == -INFINITY) continue;
            double gj = (exp(z[j] - lse) - (1.0 - eps) * (j == tg[i]) - eps / C) * dscale / N;
            for (int k = 0; k < D; k++) {
                r->dh[(size_t)i * D + k] += gj * tab[(size_t)j * D + k];
                r->dt[(size_t)j * D + k] += gj * h[(size_t)i * D + k];
            }
        }
    }
}

static void reference(lce_ref *r, const float *h, const float *tab, const int32_t *tg, int N, int V, int D, int v0,
                      double eps, double dscale) {
    reference_x(r, h, tab, tg, N, V, D, v0, eps, dscale, NULL, NULL);
}

static double maxabs(const double *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* got - start compared with want (the kernel accumulates into what was there). */
static void check_added(const char *what, const float *got, const float *start, const double *want, size_t n) {
    float *d = nt_zeros(n);
    for (size_t i = 0; i < n; i++) d[i] = got[i] - start[i];
    CHECK_CLOSE(what, d, want, n, LCE_ATOL * maxabs(want, n) + 1e-7 * maxabs(nt_tod(start, n), n), LCE_RTOL);
}

typedef struct {
    int N, V, D, v0;
    float hscale, tscale, dscale;
    float eps; /* label smoothing */
} lce_case;

static void run_case(const lce_case *cs, unsigned seed) {
    const int N = cs->N, V = cs->V, D = cs->D, v0 = cs->v0;
    dr_rng g;
    dr_rng_seed(&g, seed);
    float *h = nt_randn(&g, (size_t)N * D, cs->hscale), *tab = nt_randn(&g, (size_t)V * D, cs->tscale);
    int32_t *tg = nt_alloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) tg[i] = v0 + (int32_t)dr_rng_below(&g, (uint64_t)(V - v0));
    tg[N - 1] = V - 1; /* the last candidate, in the ragged tile */
    float *dh0 = nt_randn(&g, (size_t)N * D, 0.1f), *dt0 = nt_randn(&g, (size_t)V * D, 0.1f);
    float *dh = nt_zeros((size_t)N * D), *dt = nt_zeros((size_t)V * D);
    memcpy(dh, dh0, (size_t)N * D * sizeof(float));
    memcpy(dt, dt0, (size_t)V * D * sizeof(float));
    float *work = nt_zeros(nn_linear_ce_work(N, V, D, v0));
    float loss = 0.0f;
    CHECK_OK(nn_linear_cross_entropy_ls(&loss, dh, dt, h, tab, tg, N, V, D, v0, cs->eps, cs->dscale, work));
    lce_ref r;
    reference(&r, h, tab, tg, N, V, D, v0, cs->eps, cs->dscale);
    CHECK_NEAR(loss, r.loss, 1e-5 * fabs(r.loss));
    check_added("dhidden", dh, dh0, r.dh, (size_t)N * D);
    check_added("dtable", dt, dt0, r.dt, (size_t)V * D);
    CHECK(memcmp(dt, dt0, (size_t)v0 * D * sizeof(float)) == 0); /* rows below v0 never move */

    /* the same bits on one thread as on two */
    int threads = omp_get_max_threads();
    float *dh1 = nt_zeros((size_t)N * D), *dt1 = nt_zeros((size_t)V * D), *dh2 = nt_zeros((size_t)N * D),
          *dt2 = nt_zeros((size_t)V * D), l1 = 0.0f, l2 = 0.0f;
    omp_set_num_threads(1);
    CHECK_OK(nn_linear_cross_entropy_ls(&l1, dh1, dt1, h, tab, tg, N, V, D, v0, cs->eps, cs->dscale, work));
    omp_set_num_threads(2);
    CHECK_OK(nn_linear_cross_entropy_ls(&l2, dh2, dt2, h, tab, tg, N, V, D, v0, cs->eps, cs->dscale, work));
    omp_set_num_threads(threads);
    CHECK(l1 == l2);
    CHECK(memcmp(dh1, dh2, (size_t)N * D * sizeof(float)) == 0);
    CHECK(memcmp(dt1, dt2, (size_t)V * D * sizeof(float)) == 0);

    /* loss only */
    float l3 = 0.0f;
    CHECK_OK(nn_linear_cross_entropy_ls(&l3, NULL, NULL, h, tab, tg, N, V, D, v0, cs->eps, cs->dscale, work));
    CHECK(l3 == l1);
    if (cs->eps == 0.0f) { /* the plain entry point is the same function at eps = 0, bit for bit */
        float l4 = 0.0f, *dh4 = nt_zeros((size_t)N * D), *dt4 = nt_zeros((size_t)V * D);
        CHECK_OK(nn_linear_cross_entropy(&l4, dh4, dt4, h, tab, tg, N, V, D, v0, cs->dscale, work));
        CHECK(l4 == l1);
        CHECK(memcmp(dh4, dh1, (size_t)N * D * sizeof(float)) == 0);
        CHECK(memcmp(dt4, dt1, (size_t)V * D * sizeof(float)) == 0);
    }
    nt_free_all();
}

TEST(nn_linear_ce_matches_float64) {
    const lce_case cases[] = {
        {1, 7, 5, 1, 1.0f, 0.5f, 1.0f, 0.0f},                     /* one row, one short tile */
        {64, NN_LCE_COLS + 1, 16, 1, 1.0f, 0.3f, 1.0f, 0.0f},     /* one item past a whole tile */
        {130, 2 * NN_LCE_COLS + 37, 20, 1, 1.0f, 0.3f, 0.7f, 0.0f}, /* ragged rows, tiles and width */
        {65, 300, 64, 0, 1.0f, 0.3f, 1.0f, 0.0f},                 /* every row a candidate (v0 = 0) */
        {33, 1500, 130, 3, 0.5f, 0.2f, 2.0f, 0.0f},               /* width past 64, masked tail */
        {100, 900, 64, 1, 3.0f, 1.0f, 1.0f, 0.0f},                /* logits of +-50: the running max */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_case(&cases[c], 40 + (unsigned)c);
}

/* Label smoothing: the same shapes with eps > 0 against the float64 definition. */
TEST(nn_linear_ce_label_smoothing_matches_float64) {
    const lce_case cases[] = {
        {1, 7, 5, 1, 1.0f, 0.5f, 1.0f, 0.1f},
        {130, 2 * NN_LCE_COLS + 37, 20, 1, 1.0f, 0.3f, 0.7f, 0.2f},
        {65, 300, 64, 0, 1.0f, 0.3f, 1.0f, 0.05f},
        {33, 1500, 130, 3, 0.5f, 0.2f, 2.0f, 0.5f},
        {100, 900, 64, 1, 3.0f, 1.0f, 1.0f, 0.1f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_case(&cases[c], 60 + (unsigned)c);
    float h[4] = {1, 2, 3, 4}, tab[12] = {0}, loss = 0.0f, *work = nt_zeros(nn_linear_ce_work(2, 6, 2, 1));
    int32_t ok[2] = {1, 5};
    CHECK_ERR(nn_linear_cross_entropy_ls(&loss, NULL, NULL, h, tab, ok, 2, 6, 2, 1, 1.0f, 1.0f, work), DR_ERR_ARG);
    CHECK_ERR(nn_linear_cross_entropy_ls(&loss, NULL, NULL, h, tab, ok, 2, 6, 2, 1, -0.1f, 1.0f, work), DR_ERR_ARG);
    nt_free_all();
}

/* Candidates left out per row (a recommender's history): against the float64 definition with
 * those logits at -inf, with lists that hold the row's own target (ignored), repeats, ids below
 * v0 (ignored), the row's largest logit, and every candidate of a tile but the target's; the same
 * bits on 1 and 2 threads; empty lists give nn_linear_cross_entropy's bits. */
TEST(nn_linear_ce_exclusions_match_float64) {
    const lce_case cases[] = {
        {1, 60, 5, 1, 1.0f, 0.5f, 1.0f, 0.0f},
        {130, 2 * NN_LCE_COLS + 37, 20, 1, 1.0f, 0.3f, 0.7f, 0.0f},
        {100, 900, 64, 1, 3.0f, 1.0f, 1.0f, 0.0f},
        {70, NN_LCE_COLS + 5, 16, 1, 2.0f, 1.0f, 1.0f, 0.0f},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const lce_case *cs = &cases[ci];
        const int N = cs->N, V = cs->V, D = cs->D, v0 = cs->v0;
        dr_rng g;
        dr_rng_seed(&g, 80 + (unsigned)ci);
        float *h = nt_randn(&g, (size_t)N * D, cs->hscale), *tab = nt_randn(&g, (size_t)V * D, cs->tscale);
        int32_t *tg = nt_alloc((size_t)N * sizeof(int32_t)), *xo = nt_alloc((size_t)(N + 1) * sizeof(int32_t));
        int32_t *xi = nt_alloc((size_t)N * 64 * sizeof(int32_t));
        for (int i = 0; i < N; i++) tg[i] = v0 + (int32_t)dr_rng_below(&g, (uint64_t)(V - v0));
        xo[0] = 0;
        for (int i = 0; i < N; i++) {
            int n = xo[i];
            if (i % 7 != 3) { /* some rows exclude nothing */
                int k = 1 + (int)dr_rng_below(&g, 20);
                for (int e = 0; e < k; e++) xi[n++] = v0 + (int32_t)dr_rng_below(&g, (uint64_t)(V - v0));
                xi[n++] = tg[i];             /* the target: ignored */
                xi[n] = xi[n - 2];           /* a repeat */
                n++;
                if (v0 > 0) xi[n++] = 0;     /* below v0: ignored */
                int best = v0;               /* the row's largest logit */
                float bz = -INFINITY;
                for (int j = v0; j < V; j++) {
                    float a = 0.0f;
                    for (int k2 = 0; k2 < D; k2++) a += h[(size_t)i * D + k2] * tab[(size_t)j * D + k2];
                    if (a > bz) bz = a, best = j;
                }
                xi[n++] = best;
            }
            if (ci == 3 && i % 2 == 0) { /* every candidate of the ragged tile but the target's */
                tg[i] = v0;
                for (int j = NN_LCE_COLS; j < V; j++) xi[n++] = j;
            }
            xo[i + 1] = n;
        }
        float *dh0 = nt_randn(&g, (size_t)N * D, 0.1f), *dt0 = nt_randn(&g, (size_t)V * D, 0.1f);
        float *dh = nt_zeros((size_t)N * D), *dt = nt_zeros((size_t)V * D), *work = nt_zeros(nn_linear_ce_work(N, V, D, v0));
        memcpy(dh, dh0, (size_t)N * D * sizeof(float));
        memcpy(dt, dt0, (size_t)V * D * sizeof(float));
        float loss = 0.0f;
        CHECK_OK(nn_linear_cross_entropy_excl(&loss, dh, dt, h, tab, tg, N, V, D, v0, 0.0f, xo, xi, cs->dscale, work));
        lce_ref r;
        reference_x(&r, h, tab, tg, N, V, D, v0, 0.0, cs->dscale, xo, xi);
        CHECK(isfinite(loss));
        CHECK_NEAR(loss, r.loss, 1e-5 * fabs(r.loss));
        check_added("dhidden", dh, dh0, r.dh, (size_t)N * D);
        check_added("dtable", dt, dt0, r.dt, (size_t)V * D);
        int threads = omp_get_max_threads();
        float *dh1 = nt_zeros((size_t)N * D), *dt1 = nt_zeros((size_t)V * D), *dh2 = nt_zeros((size_t)N * D),
              *dt2 = nt_zeros((size_t)V * D), l1 = 0.0f, l2 = 0.0f;
        omp_set_num_threads(1);
        CHECK_OK(nn_linear_cross_entropy_excl(&l1, dh1, dt1, h, tab, tg, N, V, D, v0, 0.0f, xo, xi, cs->dscale, work));
        omp_set_num_threads(2);
        CHECK_OK(nn_linear_cross_entropy_excl(&l2, dh2, dt2, h, tab, tg, N, V, D, v0, 0.0f, xo, xi, cs->dscale, work));
        omp_set_num_threads(threads);
        CHECK(l1 == l2);
        CHECK(memcmp(dh1, dh2, (size_t)N * D * sizeof(float)) == 0);
        CHECK(memcmp(dt1, dt2, (size_t)V * D * sizeof(float)) == 0);
        /* empty lists: the plain loss, bit for bit */
        for (int i = 0; i <= N; i++) xo[i] = 0;
        float l3 = 0.0f, l4 = 0.0f, *dh3 = nt_zeros((size_t)N * D), *dh4 = nt_zeros((size_t)N * D);
        CHECK_OK(nn_linear_cross_entropy_excl(&l3, dh3, NULL, h, tab, tg, N, V, D, v0, 0.0f, xo, xi, cs->dscale, work));
        CHECK_OK(nn_linear_cross_entropy(&l4, dh4, NULL, h, tab, tg, N, V, D, v0, cs->dscale, work));
        CHECK(l3 == l4);
        CHECK(memcmp(dh3, dh4, (size_t)N * D * sizeof(float)) == 0);
        /* exclusions with label smoothing are refused */
        CHECK_ERR(nn_linear_cross_entropy_excl(&l3, NULL, NULL, h, tab, tg, N, V, D, v0, 0.1f, xo, xi, 1.0f, work),
                  DR_ERR_ARG);
        nt_free_all();
    }
}

/* The unfused loss the TRM ran before: logits [N, V] by sgemm, the padding column set to
 * -1e30, nn_cross_entropy, then dhidden = dlogits table and dtable += dlogits^T hidden. */
TEST(nn_linear_ce_matches_unfused) {
    const int N = 150, V = NN_LCE_COLS + 301, D = 64;
    dr_rng g;
    dr_rng_seed(&g, 77);
    float *h = nt_randn(&g, (size_t)N * D, 1.0f), *tab = nt_randn(&g, (size_t)V * D, 0.3f);
    memset(tab, 0, (size_t)D * sizeof(float)); /* the padding row, as in the TRM */
    int32_t *tg = nt_alloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N; i++) tg[i] = 1 + (int32_t)dr_rng_below(&g, (uint64_t)(V - 1));
    float *logits = nt_zeros((size_t)N * V), *dl = nt_zeros((size_t)N * V);
    float *dh_u = nt_zeros((size_t)N * D), *dt_u = nt_zeros((size_t)V * D), lu = 0.0f;
    nn_matmul(logits, h, tab, N, V, D, 0, 1, 1.0f, 0.0f);
    for (int i = 0; i < N; i++) logits[(size_t)i * V] = -1e30f;
    CHECK_OK(nn_cross_entropy(&lu, dl, logits, tg, NULL, N, V, -1, 1.0f));
    nn_matmul(dh_u, dl, tab, N, D, V, 0, 0, 1.0f, 0.0f);
    nn_matmul(dt_u, dl, h, V, D, N, 1, 0, 1.0f, 1.0f);
    float *dh = nt_zeros((size_t)N * D), *dt = nt_zeros((size_t)V * D), lf = 0.0f;
    CHECK_OK(nn_linear_cross_entropy(&lf, dh, dt, h, tab, tg, N, V, D, 1, 1.0f, nt_zeros(nn_linear_ce_work(N, V, D, 1))));
    CHECK_NEAR(lf, lu, 1e-5 * fabs(lu));
    double *wh = nt_tod(dh_u, (size_t)N * D), *wt = nt_tod(dt_u, (size_t)V * D);
    CHECK_CLOSE("dhidden vs unfused", dh, wh, (size_t)N * D, LCE_ATOL * maxabs(wh, (size_t)N * D), LCE_RTOL);
    CHECK_CLOSE("dtable vs unfused", dt, wt, (size_t)V * D, LCE_ATOL * maxabs(wt, (size_t)V * D), LCE_RTOL);
    for (int k = 0; k < D; k++) CHECK(dt[k] == 0.0f); /* padding: no gradient */
    nt_free_all();
}

TEST(nn_linear_ce_rejects_bad_targets) {
    float h[4] = {1, 2, 3, 4}, tab[12] = {0}, dh[4] = {0}, dt[12] = {0}, loss = 1.0f;
    float *work = nt_zeros(nn_linear_ce_work(2, 6, 2, 1));
    int32_t below[2] = {1, 0}, past[2] = {6, 1}, ok[2] = {1, 5};
    CHECK_ERR(nn_linear_cross_entropy(&loss, dh, dt, h, tab, below, 2, 6, 2, 1, 1.0f, work), DR_ERR_RANGE);
    CHECK(strstr(dr_error_message(), "target 0 at row 1") != NULL);
    CHECK_ERR(nn_linear_cross_entropy(&loss, dh, dt, h, tab, past, 2, 6, 2, 1, 1.0f, work), DR_ERR_RANGE);
    CHECK_ERR(nn_linear_cross_entropy(&loss, dh, dt, h, tab, ok, 2, 6, 2, 6, 1.0f, work), DR_ERR_ARG);
    for (int i = 0; i < 12; i++) CHECK(dt[i] == 0.0f); /* nothing written before the check */
    CHECK_OK(nn_linear_cross_entropy(&loss, dh, dt, h, tab, ok, 0, 6, 2, 1, 1.0f, work));
    CHECK(loss == 0.0f);
    /* all-zero table: the loss is log of the number of candidates */
    CHECK_OK(nn_linear_cross_entropy(&loss, dh, dt, h, tab, ok, 2, 6, 2, 1, 1.0f, work));
    CHECK_NEAR(loss, log(5.0), 1e-6);
    nt_free_all();
}
