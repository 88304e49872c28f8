/* Uncertainty of the evaluation (src/eval/bootstrap.c): metric values of one rank, the
 * percentile bootstrap against a direct reference computation, per-user values of a
 * hand-made result, and paired differences. */
#include "harness.h"
#include "deeprec/evaluate.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

TEST(bootstrap_metric_values) {
    for (int m = 0; m < EVAL_N_METRICS; m++) {
        CHECK_NEAR(eval_metric_value(m, 0), 1.0, 0); /* a hit at the top scores 1 everywhere */
        CHECK_NEAR(eval_metric_value(m, -1), 0.0, 0);
        CHECK_NEAR(eval_metric_value(m, 10), 0.0, 0);
    }
    CHECK_NEAR(eval_metric_value(EVAL_M_R1, 3), 0, 0);
    CHECK_NEAR(eval_metric_value(EVAL_M_R5, 3), 1, 0);
    CHECK_NEAR(eval_metric_value(EVAL_M_NDCG5, 3), 1 / log2(5.0), 1e-15);
    CHECK_NEAR(eval_metric_value(EVAL_M_MRR, 3), 0.25, 0);
    CHECK_NEAR(eval_metric_value(EVAL_M_R5, 7), 0, 0);
    CHECK_NEAR(eval_metric_value(EVAL_M_R10, 7), 1, 0);
    CHECK_NEAR(eval_metric_value(EVAL_M_NDCG5, 7), 0, 0);
    CHECK_NEAR(eval_metric_value(EVAL_M_NDCG10, 7), 1 / log2(9.0), 1e-15);
    CHECK_STR(eval_metric_name(EVAL_M_NDCG10), "ndcg@10");
    CHECK_STR(eval_metric_name(EVAL_M_MRR), "mrr");
}

/* The definition written out plainly: resample means, insertion sort, interpolated quantile. */
static double ref_quantile(const double *v, int n, double q) {
    double h = q * (n - 1);
    int i = (int)h;
    return i + 1 < n ? v[i] + (h - i) * (v[i + 1] - v[i]) : v[n - 1];
}

static void ref_bootstrap(const double *x, int n, int B, uint64_t seed, double *lo, double *hi) {
    double *m = malloc((size_t)B * sizeof *m);
    dr_rng r;
    dr_rng_seed(&r, seed);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += x[dr_rng_below(&r, (uint64_t)n)];
        m[b] = s / n;
    }
    for (int i = 1; i < B; i++)
        for (int j = i; j > 0 && m[j - 1] > m[j]; j--) {
            double t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    *lo = ref_quantile(m, B, 0.025);
    *hi = ref_quantile(m, B, 0.975);
    free(m);
}

TEST(bootstrap_matches_reference) {
    const double x[8] = {0, 1, 0, 0, 1, 0.5, 0, 0.25};
    const int Bs[3] = {1, 37, 400};
    for (int k = 0; k < 3; k++) {
        eval_ci c;
        double lo, hi;
        CHECK_OK(eval_bootstrap(x, 8, Bs[k], 5, &c));
        ref_bootstrap(x, 8, Bs[k], 5, &lo, &hi);
        CHECK_NEAR(c.mean, 2.75 / 8, 1e-15);
        CHECK_NEAR(c.lo, lo, 1e-15);
        CHECK_NEAR(c.hi, hi, 1e-15);
        CHECK(c.lo <= c.hi);
        if (Bs[k] == 1) CHECK_NEAR(c.lo, c.hi, 0); /* one resample: one mean */
    }
    /* two values: every resample mean is 0, 1/2 or 1 */
    const double y[2] = {0, 1};
    eval_ci c;
    CHECK_OK(eval_bootstrap(y, 2, 1000, 9, &c));
    CHECK_NEAR(c.mean, 0.5, 0);
    CHECK_NEAR(c.lo, 0.0, 0); /* P(mean 0) = 1/4: the 2.5% quantile is 0 */
    CHECK_NEAR(c.hi, 1.0, 0);
    /* off, empty, constant, bad arguments */
    CHECK_OK(eval_bootstrap(x, 8, 0, 5, &c));
    CHECK(c.lo == c.mean && c.hi == c.mean);
    CHECK_OK(eval_bootstrap(x, 0, 100, 5, &c));
    CHECK(c.mean == 0 && c.lo == 0 && c.hi == 0);
    const double z[5] = {0.25, 0.25, 0.25, 0.25, 0.25};
    CHECK_OK(eval_bootstrap(z, 5, 100, 5, &c));
    CHECK_NEAR(c.lo, 0.25, 1e-15);
    CHECK_NEAR(c.hi, 0.25, 1e-15);
    CHECK_ERR(eval_bootstrap(x, 8, -1, 5, &c), DR_ERR_ARG);
}

/* The normal approximation of a proportion: 400 users, p = 0.3, half-width 1.96 sqrt(p(1-p)/n). */
TEST(bootstrap_width_of_a_proportion) {
    double x[400];
    for (int i = 0; i < 400; i++) x[i] = i % 10 < 3;
    eval_ci c;
    CHECK_OK(eval_bootstrap(x, 400, 2000, 1, &c));
    double half = 1.96 * sqrt(0.3 * 0.7 / 400);
    CHECK_NEAR(c.mean, 0.3, 1e-12);
    CHECK_NEAR(c.hi - c.lo, 2 * half, 0.15 * 2 * half);
    CHECK_NEAR((c.lo + c.hi) / 2, 0.3, 0.01);
}

/* A result by hand: 3 users x 2 samples. */
static void hand_result(eval_result *r, int mode, const int32_t *users, const int *exact, const int *substr) {
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->n_users = 3;
    r->samples = 2;
    r->n_episodes = 6;
    r->users = malloc(3 * sizeof *r->users);
    memcpy(r->users, users, 3 * sizeof *users);
    r->rank[EVAL_RULE_EXACT] = malloc(6 * sizeof(int));
    r->rank[EVAL_RULE_SUBSTR] = malloc(6 * sizeof(int));
    memcpy(r->rank[EVAL_RULE_EXACT], exact, 6 * sizeof(int));
    memcpy(r->rank[EVAL_RULE_SUBSTR], substr, 6 * sizeof(int));
}

TEST(bootstrap_user_values_and_paired) {
    const int32_t users[3] = {4, 0, 7};
    const int ea[6] = {0, 3, -1, -1, 1, 12}, sa[6] = {0, 3, 9, -1, 1, 1};
    const int eb[6] = {-1, -1, 0, 0, 4, 4}, sb[6] = {-1, -1, 0, 0, 4, 4};
    eval_result a, b;
    hand_result(&a, EVAL_DEEPREC, users, ea, sa);
    hand_result(&b, EVAL_TRM, users, eb, sb);
    double x[3];
    /* a user's value is the mean over its samples */
    CHECK_OK(eval_user_values(&a, EVAL_RULE_EXACT, EVAL_M_MRR, x));
    CHECK_NEAR(x[0], (1 + 0.25) / 2, 1e-15);
    CHECK_NEAR(x[1], 0, 0);
    CHECK_NEAR(x[2], 0.5 / 2, 1e-15); /* rank 12 is past the list: a miss */
    CHECK_OK(eval_user_values(&a, EVAL_RULE_SUBSTR, EVAL_M_R5, x));
    CHECK_NEAR(x[0], 1, 0);
    CHECK_NEAR(x[1], 0, 0);
    CHECK_NEAR(x[2], 1, 0);
    CHECK_ERR(eval_user_values(&a, 2, 0, x), DR_ERR_ARG);
    /* the result's intervals: B = 0 gives the plain means */
    CHECK_OK(eval_result_bootstrap(&a, 0, 1));
    CHECK_NEAR(a.ci[EVAL_RULE_EXACT][EVAL_M_MRR].mean, (1.25 + 0.5) / 6, 1e-15);
    CHECK_NEAR(a.ci[EVAL_RULE_EXACT][EVAL_M_MRR].hi, (1.25 + 0.5) / 6, 1e-15);
    CHECK_OK(eval_result_bootstrap(&a, 300, 1));
    CHECK_EQ_INT(a.bootstrap, 300);
    CHECK(a.ci[EVAL_RULE_EXACT][EVAL_M_MRR].lo < a.ci[EVAL_RULE_EXACT][EVAL_M_MRR].hi);
    /* paired: per-user a - b, the bootstrap of those differences */
    eval_paired p;
    CHECK_OK(eval_paired_diff(&a, &b, 300, 2, &p));
    CHECK_EQ_INT(p.mode, EVAL_DEEPREC);
    CHECK_EQ_INT(p.ref, EVAL_TRM);
    double d[3] = {(1.25 - 0) / 2, (0 - 2.0) / 2, (0.5 - 0.4) / 2}, want;
    eval_ci c;
    CHECK_OK(eval_bootstrap(d, 3, 300, 2, &c));
    want = (d[0] + d[1] + d[2]) / 3;
    CHECK_NEAR(p.diff[EVAL_RULE_EXACT][EVAL_M_MRR].mean, want, 1e-15);
    CHECK_NEAR(p.diff[EVAL_RULE_EXACT][EVAL_M_MRR].lo, c.lo, 1e-15);
    CHECK_NEAR(p.diff[EVAL_RULE_EXACT][EVAL_M_MRR].hi, c.hi, 1e-15);
    /* identical results: exactly 0 with [0, 0] */
    CHECK_OK(eval_paired_diff(&a, &a, 300, 2, &p));
    for (int q = 0; q < EVAL_N_RULES; q++)
        for (int m = 0; m < EVAL_N_METRICS; m++)
            CHECK(p.diff[q][m].mean == 0 && p.diff[q][m].lo == 0 && p.diff[q][m].hi == 0);
    /* other users, or the same users in another order: refused */
    b.users[0] = 0;
    b.users[1] = 4;
    CHECK_ERR(eval_paired_diff(&a, &b, 300, 2, &p), DR_ERR_ARG);
    /* no per-user scores (a result from eval_acc_finish): refused clearly */
    eval_result e;
    eval_acc acc;
    eval_acc_init(&acc);
    eval_acc_add_ranks(&acc, 0, 0);
    eval_acc_finish(&acc, EVAL_TRM, 1, 1, 0, &e);
    CHECK_NEAR(e.ci[0][EVAL_M_R1].mean, 1, 0);
    CHECK_ERR(eval_user_values(&e, 0, 0, x), DR_ERR_ARG);
    eval_result_free(&e);
    eval_result_free(&a);
    eval_result_free(&b);
    eval_result_free(&b); /* idempotent */
}
