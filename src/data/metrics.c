/* Full-catalog ranking metrics: pessimistic rank, Recall@K, NDCG@K, MRR. Pure functions in data,
 * below the TRM, which validates with them while it trains. */
#include "deeprec/metrics.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const int dr_metric_ks[DR_METRIC_NK] = {1, 5, 10, 20};

void dr_metrics_init(dr_metrics *m) { memset(m, 0, sizeof *m); }

int dr_metrics_k_index(int k) {
    for (int i = 0; i < DR_METRIC_NK; i++)
        if (dr_metric_ks[i] == k) return i;
    return -1;
}

int64_t dr_metrics_rank(const float *scores, int32_t n_items, int32_t target, const int32_t *mask, int64_t n_mask) {
    if (target < 1 || target > n_items) return 0;
    float t = scores[target];
    int64_t ahead = 0, cand = 0;
    if (isnan(t)) {
        /* worst rank among the candidates */
        cand = n_items;
    } else {
        for (int32_t i = 1; i <= n_items; i++) {
            float s = scores[i];
            ahead += (s >= t) & (i != target); /* NaN compares false: never ahead */
        }
    }
    /* masked items that were counted ahead are taken back (each id once) */
    if (mask && n_mask > 0) {
        if (isnan(t)) {
            /* count distinct masked real items other than the target */
            for (int64_t k = 0; k < n_mask; k++) {
                int32_t m = mask[k];
                if (m < 1 || m > n_items || m == target) continue;
                int dup = 0;
                for (int64_t j = 0; j < k && !dup; j++) dup = mask[j] == m;
                if (!dup) cand--;
            }
        } else {
            /* sort-free distinctness: small masks use a scan, large ones a bitmap */
            if (n_mask <= 64) {
                for (int64_t k = 0; k < n_mask; k++) {
                    int32_t m = mask[k];
                    if (m < 1 || m > n_items || m == target || !(scores[m] >= t)) continue;
                    int dup = 0;
                    for (int64_t j = 0; j < k && !dup; j++) dup = mask[j] == m;
                    if (!dup) ahead--;
                }
            } else {
                uint8_t *seen = calloc((size_t)n_items + 1, 1);
                if (seen) {
                    for (int64_t k = 0; k < n_mask; k++) {
                        int32_t m = mask[k];
                        if (m < 1 || m > n_items || m == target || seen[m]) continue;
                        seen[m] = 1;
                        if (scores[m] >= t) ahead--;
                    }
                    free(seen);
                }
            }
        }
    }
    if (isnan(t)) return cand > 0 ? cand : 1;
    return 1 + ahead;
}

double dr_metrics_ndcg_at(int64_t rank, int k) { return rank >= 1 && rank <= k ? 1.0 / log2((double)rank + 1.0) : 0.0; }

void dr_metrics_add_rank(dr_metrics *m, int64_t rank) {
    if (rank < 1) return;
    m->n++;
    for (int k = 0; k < DR_METRIC_NK; k++)
        if (rank <= dr_metric_ks[k]) {
            m->recall[k] += 1.0;
            m->ndcg[k] += dr_metrics_ndcg_at(rank, dr_metric_ks[k]);
        }
    m->mrr += 1.0 / (double)rank;
    m->rank_sum += (double)rank;
}

void dr_metrics_add(dr_metrics *m, const float *scores, int32_t n_items, int32_t target, const int32_t *mask,
                    int64_t n_mask) {
    dr_metrics_add_rank(m, dr_metrics_rank(scores, n_items, target, mask, n_mask));
}

void dr_metrics_add_batch(dr_metrics *m, const float *scores, int32_t B, int32_t n_items, const int32_t *targets,
                          const int64_t *mask_offsets, const int32_t *mask_items) {
    if (B <= 0) return;
    int64_t *ranks = malloc((size_t)B * sizeof *ranks);
    if (!ranks) { /* fall back to serial */
        for (int32_t b = 0; b < B; b++)
            dr_metrics_add(m, scores + (size_t)b * ((size_t)n_items + 1), n_items, targets[b],
                           mask_offsets ? mask_items + mask_offsets[b] : NULL,
                           mask_offsets ? mask_offsets[b + 1] - mask_offsets[b] : 0);
        return;
    }
#pragma omp parallel for schedule(dynamic, 4) if (B > 1 && (int64_t)B * n_items > 100000)
    for (int32_t b = 0; b < B; b++)
        ranks[b] = dr_metrics_rank(scores + (size_t)b * ((size_t)n_items + 1), n_items, targets[b],
                                   mask_offsets ? mask_items + mask_offsets[b] : NULL,
                                   mask_offsets ? mask_offsets[b + 1] - mask_offsets[b] : 0);
    for (int32_t b = 0; b < B; b++) dr_metrics_add_rank(m, ranks[b]);
    free(ranks);
}

void dr_metrics_merge(dr_metrics *a, const dr_metrics *b) {
    a->n += b->n;
    for (int k = 0; k < DR_METRIC_NK; k++) {
        a->recall[k] += b->recall[k];
        a->ndcg[k] += b->ndcg[k];
    }
    a->mrr += b->mrr;
    a->rank_sum += b->rank_sum;
}

void dr_metrics_finish(const dr_metrics *m, dr_metrics_mean *out) {
    memset(out, 0, sizeof *out);
    out->n = m->n;
    if (m->n == 0) return;
    double n = (double)m->n;
    for (int k = 0; k < DR_METRIC_NK; k++) {
        out->recall[k] = m->recall[k] / n;
        out->ndcg[k] = m->ndcg[k] / n;
    }
    out->mrr = m->mrr / n;
    out->mean_rank = m->rank_sum / n;
}

json_t *dr_metrics_mean_json(const dr_metrics_mean *mm) {
    json_t *j = json_object();
    char k[32];
    for (int i = 0; i < DR_METRIC_NK; i++) {
        snprintf(k, sizeof k, "recall@%d", dr_metric_ks[i]);
        json_object_set_new(j, k, json_real(mm->recall[i]));
        snprintf(k, sizeof k, "ndcg@%d", dr_metric_ks[i]);
        json_object_set_new(j, k, json_real(mm->ndcg[i]));
    }
    json_object_set_new(j, "mrr", json_real(mm->mrr));
    json_object_set_new(j, "users", json_integer(mm->n));
    return j;
}
