/* Uncertainty of the evaluation: per-user metric values, the percentile bootstrap over
 * users, and paired differences between two modes on the same users. */
#include "deeprec/metrics.h"
#include "deeprec/evaluate.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const metric_names[EVAL_N_METRICS] = {"recall@1", "recall@5", "recall@10",
                                                         "ndcg@5",   "ndcg@10",  "mrr"};

const char *eval_metric_name(int metric) {
    return metric >= 0 && metric < EVAL_N_METRICS ? metric_names[metric] : "?";
}

double eval_metric_value(int metric, int rank) {
    if (rank < 0 || rank >= AGENT_N_REC) return 0.0;
    switch (metric) {
    case EVAL_M_R1: return rank < 1;
    case EVAL_M_R5: return rank < 5;
    case EVAL_M_R10: return rank < 10;
    case EVAL_M_NDCG5: return dr_metrics_ndcg_at(rank + 1, 5);
    case EVAL_M_NDCG10: return dr_metrics_ndcg_at(rank + 1, 10);
    case EVAL_M_MRR: return 1.0 / ((double)rank + 1.0);
    default: return 0.0;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted v[n], linear between order statistics (R's type 7). */
static double quantile(const double *v, int n, double q) {
    double h = q * (double)(n - 1);
    int i = (int)floor(h);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (h - (double)i) * (v[i + 1] - v[i]);
}

int eval_bootstrap(const double *x, int64_t n, int B, uint64_t seed, eval_ci *out) {
    memset(out, 0, sizeof *out);
    if (n < 0 || B < 0) return dr_error(DR_ERR_ARG, "bootstrap: n = %lld and B = %d must be >= 0", (long long)n, B);
    if (n == 0) return DR_OK;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    out->mean = out->lo = out->hi = sum / (double)n;
    if (B == 0) return DR_OK;
    double *means = dr_calloc((size_t)B, sizeof *means);
    if (!means) return dr_error_code();
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += x[dr_rng_below(&rng, (uint64_t)n)];
        means[b] = s / (double)n;
    }
    qsort(means, (size_t)B, sizeof *means, cmp_double);
    out->lo = quantile(means, B, 0.025);
    out->hi = quantile(means, B, 0.975);
    free(means);
    return DR_OK;
}

int eval_user_values(const eval_result *r, int rule, int metric, double *x) {
    if (rule < 0 || rule >= EVAL_N_RULES || metric < 0 || metric >= EVAL_N_METRICS)
        return dr_error(DR_ERR_ARG, "eval: rule %d / metric %d out of range", rule, metric);
    if (r->n_users > 0 && (!r->users || !r->rank[rule]))
        return dr_error(DR_ERR_ARG, "eval: the result of %s has no per-user scores", eval_mode_name(r->mode));
    int G = r->samples > 0 ? r->samples : 1;
    if (r->n_episodes != r->n_users * G)
        return dr_error(DR_ERR_INTERNAL, "eval: %lld episodes for %lld users x %d samples", (long long)r->n_episodes,
                        (long long)r->n_users, G);
    for (int64_t u = 0; u < r->n_users; u++) {
        double s = 0.0;
        for (int g = 0; g < G; g++) s += eval_metric_value(metric, r->rank[rule][u * G + g]);
        x[u] = s / G;
    }
    return DR_OK;
}

int eval_result_bootstrap(eval_result *r, int B, uint64_t seed) {
    double *x = dr_calloc((size_t)(r->n_users > 0 ? r->n_users : 1), sizeof *x);
    if (!x) return dr_error_code();
    int rc = DR_OK;
    for (int q = 0; q < EVAL_N_RULES && !rc; q++)
        for (int m = 0; m < EVAL_N_METRICS && !rc; m++)
            if (!(rc = eval_user_values(r, q, m, x))) rc = eval_bootstrap(x, r->n_users, B, seed, &r->ci[q][m]);
    free(x);
    if (!rc) r->bootstrap = B;
    return rc;
}

int eval_paired_diff(const eval_result *a, const eval_result *ref, int B, uint64_t seed, eval_paired *out) {
    memset(out, 0, sizeof *out);
    out->mode = a->mode;
    out->ref = ref->mode;
    out->n_users = a->n_users;
    if (a->n_users != ref->n_users ||
        (a->n_users > 0 && (!a->users || !ref->users ||
                            memcmp(a->users, ref->users, (size_t)a->n_users * sizeof *a->users))))
        return dr_error(DR_ERR_ARG, "eval: %s and %s were not evaluated on the same users (%lld vs %lld)",
                        eval_mode_name(a->mode), eval_mode_name(ref->mode), (long long)a->n_users,
                        (long long)ref->n_users);
    size_t n = (size_t)(a->n_users > 0 ? a->n_users : 1);
    double *x = dr_calloc(n, sizeof *x), *y = dr_calloc(n, sizeof *y);
    int rc = x && y ? DR_OK : dr_error_code();
    for (int q = 0; q < EVAL_N_RULES && !rc; q++)
        for (int m = 0; m < EVAL_N_METRICS && !rc; m++) {
            if ((rc = eval_user_values(a, q, m, x)) || (rc = eval_user_values(ref, q, m, y))) break;
            for (int64_t u = 0; u < a->n_users; u++) x[u] -= y[u];
            rc = eval_bootstrap(x, a->n_users, B, seed, &out->diff[q][m]);
        }
    free(x);
    free(y);
    if (!rc) out->bootstrap = B;
    return rc;
}
