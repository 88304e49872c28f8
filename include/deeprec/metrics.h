/* deeprec metrics (part of the data module): full-catalog ranking metrics, Recall@K (= HR@K with one
 * target), NDCG@K and MRR, for K in {1, 5, 10, 20}.
 *
 * Scores. One float per item id 0..n_items (row length n_items + 1, the
 * dataset's numbering: id 0 is padding and never counts, real items 1..n_items).
 *
 * Rank (1-based, pessimistic): 1 + #(items with score > target score)
 *                                  + #(items other than the target with score == target score),
 * counted over real items that are not masked. NaN scores never count as
 * greater or equal (a NaN target score gives the worst rank, n_candidates).
 * Masking: when enabled, the history items of the user are excluded from the
 * candidates — EXCEPT the target itself, which is never masked even if it
 * appears in the history (repeat consumption is scored, not dropped).
 * Per user: Recall@K = [rank <= K], NDCG@K = 1/log2(rank + 1) if rank <= K
 * else 0, MRR = 1/rank (over the full catalog, no cut-off).
 * K larger than the catalog is fine (every rank is <= K then).
 *
 * Memory: the caller streams users in batches (scores [B, n_items + 1]);
 * the accumulator holds only sums. */
#ifndef DEEPREC_METRICS_H
#define DEEPREC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define DR_METRIC_NK 4
extern const int dr_metric_ks[DR_METRIC_NK]; /* {1, 5, 10, 20} */

typedef struct dr_metrics {
    int64_t n;                        /* users accumulated */
    double recall[DR_METRIC_NK];      /* sums; divide by n (dr_metrics_mean) */
    double ndcg[DR_METRIC_NK];
    double mrr;
    double rank_sum;
} dr_metrics;

void dr_metrics_init(dr_metrics *m);
/* Rank of `target` (1..n_items) among ids 1..n_items given scores[0..n_items].
 * mask: `n_mask` item ids to exclude (ids out of range and 0 are ignored; the
 * target is never excluded). Returns the pessimistic rank (>= 1), or 0 when
 * target is out of range. */
int64_t dr_metrics_rank(const float *scores, int32_t n_items, int32_t target, const int32_t *mask, int64_t n_mask);
/* NDCG@k of one target at 1-based rank: 1 / log2(rank + 1) when 1 <= rank <= k, else 0 (a
 * 0-based position p is rank p + 1). The one formula every table, reward log and bound uses. */
double dr_metrics_ndcg_at(int64_t rank, int k);
/* Add one user with a known rank. */
void dr_metrics_add_rank(dr_metrics *m, int64_t rank);
/* Add one user: computes the rank (mask may be NULL / n_mask 0 = no masking). */
void dr_metrics_add(dr_metrics *m, const float *scores, int32_t n_items, int32_t target, const int32_t *mask,
                    int64_t n_mask);
/* Batched: scores is [B, n_items + 1] row-major; targets[B]; masks in CSR
 * (mask_offsets[B + 1] into mask_items), or mask_offsets == NULL for none.
 * Users with target 0 (no target) are skipped. Parallel over the batch (OpenMP),
 * deterministic sums (added in batch order). */
void dr_metrics_add_batch(dr_metrics *m, const float *scores, int32_t B, int32_t n_items, const int32_t *targets,
                          const int64_t *mask_offsets, const int32_t *mask_items);
/* Merge accumulator b into a. */
void dr_metrics_merge(dr_metrics *a, const dr_metrics *b);

typedef struct dr_metrics_mean {
    int64_t n;
    double recall[DR_METRIC_NK], ndcg[DR_METRIC_NK], mrr, mean_rank;
} dr_metrics_mean;
void dr_metrics_finish(const dr_metrics *m, dr_metrics_mean *out); /* zeros when n == 0 */
/* {"recall@1": ..., "ndcg@1": ..., ..., "mrr": ..., "users": n} as a new jansson object. */
struct json_t *dr_metrics_mean_json(const dr_metrics_mean *mm);
/* Index of K in dr_metric_ks, or -1. */
int dr_metrics_k_index(int k);

#endif
