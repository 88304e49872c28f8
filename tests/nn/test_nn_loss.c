/* nn tests: cross-entropy, sampled softmax CE, BCE with logits, log-prob gather, AdamW,
 * gradient clipping. Double-precision references written from the definitions; gradients
 * checked with central finite differences (h = 1e-5). */
#include "harness.h"
#include "nn_test.h"
#include <omp.h>
#include <string.h>

static double lse(const double *x, int n) {
    double mx = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) s += exp(x[i] - mx);
    return mx + log(s);
}

/* ---------------- full-softmax CE ---------------- */
typedef struct {
    int N, V, ignore;
    const int32_t *t;
    const double *w;
    double dscale;
    double *x;
} ce_ctx;

static double ce_ref(void *p) {
    ce_ctx *c = p;
    double num = 0.0, den = 0.0;
    for (int i = 0; i < c->N; i++) {
        if (c->t[i] == c->ignore) continue;
        double w = c->w ? c->w[i] : 1.0;
        num += w * (lse(c->x + (size_t)i * c->V, c->V) - c->x[(size_t)i * c->V + c->t[i]]);
        den += w;
    }
    return den > 0 ? c->dscale * num / den : 0.0;
}

/* Tolerances: loss 1e-5 relative; gradient 1e-6 + 1e-4|fd|. */
TEST(nn_cross_entropy_weights_ignore_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 30);
    int N = 7, V = 11;
    int32_t t[7] = {3, -100, 0, 10, 5, 5, -100};
    float wf[7] = {1.0f, 9.0f, 0.5f, 2.0f, 0.0f, 1.5f, 3.0f};
    float *x = nt_randn(&g, (size_t)N * V, 2);
    x[3] = 50.0f; /* large logit stays finite */
    for (int weighted = 0; weighted < 2; weighted++) {
        float loss, *dx = nt_zeros((size_t)N * V);
        CHECK_OK(nn_cross_entropy(&loss, dx, x, t, weighted ? wf : NULL, N, V, -100, 1.7f));
        ce_ctx c = {N, V, -100, t, weighted ? nt_tod(wf, N) : NULL, 1.0, nt_tod(x, (size_t)N * V)};
        double want = ce_ref(&c);
        CHECK_NEAR(loss, want, 1e-5 * fabs(want));
        c.dscale = 1.7;
        GRADCHECK("ce dlogits", ce_ref, &c, c.x, dx, (size_t)N * V, 1e-6, 1e-4);
        for (int j = 0; j < V; j++) CHECK(dx[V + j] == 0.0f); /* ignored row */
    }
    /* all ignored: loss 0, no gradient */
    int32_t ti[2] = {-100, -100};
    float loss = 1.0f, *dx = nt_zeros(2 * V);
    CHECK_OK(nn_cross_entropy(&loss, dx, x, ti, NULL, 2, V, -100, 1.0f));
    CHECK(loss == 0.0f && dx[0] == 0.0f);
    int32_t tb[2] = {1, 11};
    CHECK_ERR(nn_cross_entropy(&loss, dx, x, tb, NULL, 2, V, -100, 1.0f), DR_ERR_RANGE);
    CHECK(strstr(dr_error_message(), "target 11 at row 1") != NULL);
    nt_free_all();
}

/* ---------------- sampled-softmax CE ---------------- */
typedef struct {
    int N, K, D, ignore;
    const int32_t *pos, *neg;
    const double *w;
    double *h, *table;
    const double *logq; /* [N,K] subtracted from the negatives' logits, or NULL */
} sce_ctx;

static double sce_ref(void *p) {
    sce_ctx *c = p;
    double num = 0.0, den = 0.0, s[16];
    for (int i = 0; i < c->N; i++) {
        if (c->pos[i] == c->ignore) continue;
        int n = 0;
        for (int k = -1; k < c->K; k++) {
            int id = k < 0 ? c->pos[i] : c->neg[i * c->K + k];
            if (k >= 0 && (id < 0 || id == c->pos[i])) continue;
            double d = 0.0;
            for (int j = 0; j < c->D; j++) d += c->h[(size_t)i * c->D + j] * c->table[(size_t)id * c->D + j];
            if (k >= 0 && c->logq) d -= c->logq[i * c->K + k];
            s[n++] = d;
        }
        double w = c->w ? c->w[i] : 1.0;
        num += w * (lse(s, n) - s[0]);
        den += w;
    }
    return den > 0 ? num / den : 0.0;
}

/* Includes an ignored row, an accidental hit (negative == positive), a -1 negative and ids
 * repeated across rows (scatter-add). Tolerances: loss 1e-5 relative; gradients 1e-6 + 1e-4|fd|;
 * bitwise equal on 1 thread and on all. */
TEST(nn_sampled_softmax_ce_grad_and_hits) {
    dr_rng g;
    dr_rng_seed(&g, 31);
    int N = 6, K = 4, D = 21, V = 9;
    int32_t pos[6] = {1, 0, 4, 8, 4, 2};
    int32_t neg[24] = {2, 3, 5, 7, 1, 2, 3, 4, 4, 6, -1, 0, 1, 1, 2, 3, 5, 6, 7, 8, 0, 1, 3, 4};
    float wf[6] = {1.0f, 2.0f, 0.5f, 1.0f, 1.0f, 0.25f};
    float *h = nt_randn(&g, (size_t)N * D, 0.5f), *table = nt_randn(&g, (size_t)V * D, 0.5f);
    float loss, *dh = nt_zeros((size_t)N * D), *dt = nt_zeros((size_t)V * D), *work = nt_zeros((size_t)N * (K + 1));
    CHECK_OK(nn_sampled_softmax_ce(&loss, dh, dt, h, table, pos, neg, wf, N, K, D, V, 0, 1.0f, work));
    sce_ctx c = {N, K, D, 0, pos, neg, nt_tod(wf, N), nt_tod(h, (size_t)N * D), nt_tod(table, (size_t)V * D), NULL};
    double want = sce_ref(&c);
    CHECK_NEAR(loss, want, 1e-5 * fabs(want));
    GRADCHECK("sampled ce dhidden", sce_ref, &c, c.h, dh, (size_t)N * D, 1e-6, 1e-4);
    GRADCHECK("sampled ce dtable", sce_ref, &c, c.table, dt, (size_t)V * D, 1e-6, 1e-4);
    for (int d = 0; d < D; d++) CHECK(dh[D + d] == 0.0f); /* row 1 has pos 0 = ignore_index */
    /* determinism across thread counts */
    float loss1, *dh1 = nt_zeros((size_t)N * D), *dt1 = nt_zeros((size_t)V * D);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK_OK(nn_sampled_softmax_ce(&loss1, dh1, dt1, h, table, pos, neg, wf, N, K, D, V, 0, 1.0f, work));
    omp_set_num_threads(nt);
    CHECK(loss1 == loss && memcmp(dh, dh1, sizeof(float) * N * D) == 0 && memcmp(dt, dt1, sizeof(float) * V * D) == 0);
    int32_t badneg[24];
    memcpy(badneg, neg, sizeof neg);
    badneg[9] = 9; /* row 2 (ids of ignored rows are not read) */
    CHECK_ERR(nn_sampled_softmax_ce(&loss, dh, dt, h, table, pos, badneg, wf, N, K, D, V, 0, 1.0f, work), DR_ERR_RANGE);
    nt_free_all();
}

/* The logQ correction: per-negative offsets against the float64 definition, and NULL offsets
 * give nn_sampled_softmax_ce's bits. */
TEST(nn_sampled_softmax_ce_logq) {
    dr_rng g;
    dr_rng_seed(&g, 37);
    int N = 6, K = 4, D = 21, V = 9;
    int32_t pos[6] = {1, 0, 4, 8, 4, 2};
    int32_t neg[24] = {2, 3, 5, 7, 1, 2, 3, 4, 4, 6, -1, 0, 1, 1, 2, 3, 5, 6, 7, 8, 0, 1, 3, 4};
    float *h = nt_randn(&g, (size_t)N * D, 0.5f), *table = nt_randn(&g, (size_t)V * D, 0.5f);
    float *lq = nt_randn(&g, (size_t)N * K, 1.0f);
    float loss, *dh = nt_zeros((size_t)N * D), *dt = nt_zeros((size_t)V * D), *work = nt_zeros((size_t)N * (K + 1));
    CHECK_OK(nn_sampled_softmax_ce_logq(&loss, dh, dt, h, table, pos, neg, lq, NULL, N, K, D, V, 0, 0.5f, work));
    sce_ctx c = {N, K, D, 0, pos, neg, NULL, nt_tod(h, (size_t)N * D), nt_tod(table, (size_t)V * D),
                 nt_tod(lq, (size_t)N * K)};
    double want = sce_ref(&c);
    CHECK_NEAR(loss, want, 1e-5 * fabs(want));
    for (size_t i = 0; i < (size_t)N * D; i++) dh[i] *= 2.0f; /* dscale 0.5 */
    for (size_t i = 0; i < (size_t)V * D; i++) dt[i] *= 2.0f;
    GRADCHECK("logq dhidden", sce_ref, &c, c.h, dh, (size_t)N * D, 1e-6, 1e-4);
    GRADCHECK("logq dtable", sce_ref, &c, c.table, dt, (size_t)V * D, 1e-6, 1e-4);
    float l0, l1, *dh0 = nt_zeros((size_t)N * D), *dh1 = nt_zeros((size_t)N * D);
    CHECK_OK(nn_sampled_softmax_ce(&l0, dh0, NULL, h, table, pos, neg, NULL, N, K, D, V, 0, 1.0f, work));
    CHECK_OK(nn_sampled_softmax_ce_logq(&l1, dh1, NULL, h, table, pos, neg, NULL, NULL, N, K, D, V, 0, 1.0f, work));
    CHECK(l0 == l1 && memcmp(dh0, dh1, sizeof(float) * N * D) == 0);
    nt_free_all();
}

/* ---------------- BCE with logits ---------------- */
typedef struct {
    size_t n;
    const double *y, *w;
    double *x;
} bce_ctx;

static double bce_ref(void *p) {
    bce_ctx *c = p;
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        double w = c->w ? c->w[i] : 1.0, x = c->x[i];
        /* -y log sigmoid(x) - (1-y) log(1 - sigmoid(x)), written stably */
        double l = (x > 0 ? x : 0) - x * c->y[i] + log1p(exp(-fabs(x)));
        num += w * l;
        den += w;
    }
    return num / den;
}

/* Large |logits| (±40) stay finite. Tolerances: loss 1e-5 relative; gradient 1e-6 + 1e-4|fd|. */
TEST(nn_bce_with_logits_stable_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 32);
    size_t n = 23;
    float *x = nt_randn(&g, n, 3), *y = nt_zeros(n), *w = nt_zeros(n);
    for (size_t i = 0; i < n; i++) {
        y[i] = i % 3 == 0 ? 1.0f : (i % 3 == 1 ? 0.0f : 0.3f);
        w[i] = i % 5 == 4 ? 0.0f : 0.5f + (float)(i % 4);
    }
    x[0] = 40.0f;
    x[1] = -40.0f;
    for (int weighted = 0; weighted < 2; weighted++) {
        float loss, *dx = nt_zeros(n);
        CHECK_OK(nn_bce_with_logits(&loss, dx, x, y, weighted ? w : NULL, n, 1.0f));
        bce_ctx c = {n, nt_tod(y, n), weighted ? nt_tod(w, n) : NULL, nt_tod(x, n)};
        double want = bce_ref(&c);
        CHECK(isfinite(loss));
        CHECK_NEAR(loss, want, 1e-5 * fabs(want));
        GRADCHECK("bce dlogits", bce_ref, &c, c.x, dx, n, 1e-6, 1e-4);
    }
    nt_free_all();
}

/* ---------------- log-prob gather ---------------- */
typedef struct {
    int N, V;
    const int32_t *t;
    const double *r;
    double *x;
} lp_ctx;

static double lp_ref(void *p) {
    lp_ctx *c = p;
    double s = 0.0;
    for (int i = 0; i < c->N; i++)
        if (c->t[i] >= 0)
            s += c->r[i] * (c->x[(size_t)i * c->V + c->t[i]] - lse(c->x + (size_t)i * c->V, c->V));
    return s;
}

/* Tolerances: logp 1e-5 + 1e-5|ref|; gradient 1e-6 + 1e-4|fd|. */
TEST(nn_logprob_gather_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 33);
    int N = 5, V = 13;
    int32_t t[5] = {0, 12, -1, 7, 7};
    float *x = nt_randn(&g, (size_t)N * V, 2), *r = nt_randn(&g, N, 1), *lp = nt_zeros(N), *dx = nt_zeros((size_t)N * V);
    CHECK_OK(nn_logprob_gather(lp, x, t, N, V));
    lp_ctx c = {N, V, t, nt_tod(r, N), nt_tod(x, (size_t)N * V)};
    double *want = nt_dzeros(N);
    for (int i = 0; i < N; i++) want[i] = t[i] < 0 ? 0.0 : c.x[i * V + t[i]] - lse(c.x + i * V, V);
    CHECK_CLOSE("logp", lp, want, N, 1e-5, 1e-5);
    CHECK_OK(nn_logprob_gather_backward(dx, r, x, t, lp, N, V));
    GRADCHECK("logprob dlogits", lp_ref, &c, c.x, dx, (size_t)N * V, 1e-6, 1e-4);
    int32_t tb[1] = {13};
    CHECK_ERR(nn_logprob_gather(lp, x, tb, 1, V), DR_ERR_RANGE);
    nt_free_all();
}

/* ---------------- AdamW ---------------- */
/* Three steps against a double reference of torch.optim.AdamW's update. Tolerance 1e-6 + 1e-5|ref|. */
TEST(nn_adamw_matches_reference) {
    dr_rng g;
    dr_rng_seed(&g, 34);
    size_t n = 57;
    float *p = nt_randn(&g, n, 1), *m = nt_zeros(n), *v = nt_zeros(n);
    double *pd = nt_tod(p, n), *md = nt_dzeros(n), *vd = nt_dzeros(n);
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
    for (int t = 1; t <= 3; t++) {
        float *gr = nt_randn(&g, n, 1);
        nn_adamw_step(p, gr, m, v, n, t, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd);
        for (size_t i = 0; i < n; i++) {
            pd[i] *= 1.0 - lr * wd;
            md[i] = b1 * md[i] + (1 - b1) * gr[i];
            vd[i] = b2 * vd[i] + (1 - b2) * (double)gr[i] * gr[i];
            double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
            pd[i] -= lr * mh / (sqrt(vh) + eps);
        }
    }
    CHECK_CLOSE("adamw param", p, pd, n, 1e-6, 1e-5);
    CHECK_CLOSE("adamw m", m, md, n, 1e-7, 1e-5);
    CHECK_CLOSE("adamw v", v, vd, n, 1e-7, 1e-5);
    /* first step moves every parameter by about lr (bias correction at work) */
    float q[1] = {0.0f}, gq[1] = {3.0f}, mq[1] = {0}, vq[1] = {0};
    nn_adamw_step(q, gq, mq, vq, 1, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f);
    CHECK_NEAR(q[0], -0.01, 1e-6);
    nt_free_all();
}

/* ---------------- gradient clipping ---------------- */
/* Tolerances: norm 1e-6 relative; clipped norm within 1e-5 of max_norm. */
TEST(nn_clip_grad_norm_global) {
    dr_rng g;
    dr_rng_seed(&g, 35);
    size_t n1 = 1000, n2 = 3;
    float *a = nt_randn(&g, n1, 1), *b = nt_randn(&g, n2, 10);
    double ss = 0.0;
    for (size_t i = 0; i < n1; i++) ss += (double)a[i] * a[i];
    for (size_t i = 0; i < n2; i++) ss += (double)b[i] * b[i];
    nn_buf bufs[2] = {{a, n1}, {b, n2}};
    float a0 = a[0];
    float norm = nn_clip_grad_norm(bufs, 2, 1e9f); /* no clipping */
    CHECK_NEAR(norm, sqrt(ss), 1e-6 * sqrt(ss));
    CHECK(a[0] == a0);
    norm = nn_clip_grad_norm(bufs, 2, 1.0f);
    CHECK_NEAR(norm, sqrt(ss), 1e-6 * sqrt(ss));
    CHECK_NEAR(nn_clip_grad_norm(bufs, 2, 0.0f), 1.0, 1e-5);
    CHECK_NEAR(a[0], a0 / sqrt(ss), 1e-6);
    b[1] = NAN;
    float bb = b[0];
    CHECK(isnan(nn_clip_grad_norm(bufs, 2, 1.0f)));
    CHECK(b[0] == bb); /* nothing scaled */
    nt_free_all();
}
