/* Full-ranking metrics on hand-computed cases. */
#include "harness.h"
#include "deeprec/metrics.h"
#include <stdlib.h>

/* scores indexed by item id; [0] is padding */
TEST(metrics_rank_basic_and_ties_pessimistic) {
    float s[6] = {99.f, 0.1f, 0.9f, 0.5f, 0.5f, 0.2f};
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 2, NULL, 0), 1); /* best; padding score 99 ignored */
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 1, NULL, 0), 5);
    /* target 3 ties with 4: 1 greater (2) + 1 equal other (4) -> rank 3; same for target 4 */
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, NULL, 0), 3);
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 4, NULL, 0), 3);
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 0, NULL, 0), 0);  /* padding is no target */
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 6, NULL, 0), 0);  /* out of range */
    float all[4] = {0, 1, 1, 1};
    CHECK_EQ_INT(dr_metrics_rank(all, 3, 2, NULL, 0), 3); /* all tied: last */
}

TEST(metrics_masking_and_target_in_history) {
    float s[6] = {0, 0.1f, 0.9f, 0.5f, 0.7f, 0.2f};
    /* target 3 (0.5): ahead 2 (0.9) and 4 (0.7) -> 3; masking 2 -> 2; masking 2 and 4 -> 1 */
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, NULL, 0), 3);
    int32_t m1[] = {2};
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, m1, 1), 2);
    int32_t m2[] = {2, 4, 2, 0, 17, -1}; /* duplicates, padding and junk ids are ignored */
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, m2, 6), 1);
    /* masking items behind the target changes nothing */
    int32_t m3[] = {1, 5};
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, m3, 2), 3);
    /* target in history: never masked */
    int32_t m4[] = {3, 2};
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, m4, 2), 2);
    /* big mask (bitmap path) */
    int32_t *big = malloc(200 * sizeof *big);
    for (int i = 0; i < 200; i++) big[i] = i % 2 ? 2 : 4;
    CHECK_EQ_INT(dr_metrics_rank(s, 5, 3, big, 200), 1);
    free(big);
}

TEST(metrics_values_by_hand) {
    dr_metrics m;
    dr_metrics_init(&m);
    dr_metrics_add_rank(&m, 1);  /* hits everything, ndcg 1 */
    dr_metrics_add_rank(&m, 3);  /* @5,@10,@20: ndcg 1/log2(4) = 0.5 */
    dr_metrics_add_rank(&m, 15); /* @20 only: 1/log2(16) = 0.25 */
    dr_metrics_add_rank(&m, 40); /* nothing; mrr 1/40 */
    dr_metrics_add_rank(&m, 0);  /* ignored (no target) */
    dr_metrics_mean r;
    dr_metrics_finish(&m, &r);
    CHECK_EQ_INT(r.n, 4);
    int k1 = dr_metrics_k_index(1), k5 = dr_metrics_k_index(5), k10 = dr_metrics_k_index(10), k20 = dr_metrics_k_index(20);
    CHECK(dr_metrics_k_index(7) < 0);
    CHECK_NEAR(r.recall[k1], 0.25, 1e-12);
    CHECK_NEAR(r.recall[k5], 0.5, 1e-12);
    CHECK_NEAR(r.recall[k10], 0.5, 1e-12);
    CHECK_NEAR(r.recall[k20], 0.75, 1e-12);
    CHECK_NEAR(r.ndcg[k1], 0.25, 1e-12);
    CHECK_NEAR(r.ndcg[k5], (1 + 0.5) / 4, 1e-12);
    CHECK_NEAR(r.ndcg[k20], (1 + 0.5 + 0.25) / 4, 1e-12);
    CHECK_NEAR(r.mrr, (1 + 1.0 / 3 + 1.0 / 15 + 1.0 / 40) / 4, 1e-12);
    CHECK_NEAR(r.mean_rank, (1 + 3 + 15 + 40) / 4.0, 1e-12);
    dr_metrics_mean z;
    dr_metrics e;
    dr_metrics_init(&e);
    dr_metrics_finish(&e, &z);
    CHECK_EQ_INT(z.n, 0);
    CHECK_NEAR(z.mrr, 0, 0);
}

TEST(metrics_k_larger_than_catalog) {
    float s[4] = {0, 0.3f, 0.2f, 0.1f};
    dr_metrics m;
    dr_metrics_init(&m);
    dr_metrics_add(&m, s, 3, 3, NULL, 0); /* rank 3 of 3 */
    dr_metrics_mean r;
    dr_metrics_finish(&m, &r);
    CHECK_NEAR(r.recall[dr_metrics_k_index(1)], 0, 0);
    CHECK_NEAR(r.recall[dr_metrics_k_index(5)], 1, 0);
    CHECK_NEAR(r.recall[dr_metrics_k_index(20)], 1, 0);
    CHECK_NEAR(r.ndcg[dr_metrics_k_index(20)], 0.5, 1e-12);
}

TEST(metrics_nan_scores) {
    float nan = NAN;
    float s[4] = {0, nan, 0.5f, 0.2f};
    CHECK_EQ_INT(dr_metrics_rank(s, 3, 2, NULL, 0), 1); /* NaN never ahead */
    CHECK_EQ_INT(dr_metrics_rank(s, 3, 1, NULL, 0), 3); /* NaN target: worst */
    int32_t m[] = {3};
    CHECK_EQ_INT(dr_metrics_rank(s, 3, 1, m, 1), 2);
}

TEST(metrics_batch_equals_single_and_merge) {
    int B = 37, N = 500;
    float *S = malloc((size_t)B * (N + 1) * sizeof *S);
    int32_t *t = malloc(B * sizeof *t);
    int64_t *off = malloc((B + 1) * sizeof *off);
    int32_t *mk = malloc((size_t)B * 10 * sizeof *mk);
    dr_rng r;
    dr_rng_seed(&r, 7);
    off[0] = 0;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i <= N; i++) S[(size_t)b * (N + 1) + i] = (float)(dr_rng_below(&r, 50)); /* many ties */
        t[b] = b == 5 ? 0 : 1 + (int32_t)dr_rng_below(&r, N);
        int k = (int)dr_rng_below(&r, 10);
        for (int j = 0; j < k; j++) mk[off[b] + j] = 1 + (int32_t)dr_rng_below(&r, N);
        off[b + 1] = off[b] + k;
    }
    dr_metrics a, c, h1, h2;
    dr_metrics_init(&a);
    dr_metrics_init(&c);
    dr_metrics_init(&h1);
    dr_metrics_init(&h2);
    dr_metrics_add_batch(&a, S, B, N, t, off, mk);
    for (int b = 0; b < B; b++) {
        const float *row = S + (size_t)b * (N + 1);
        /* brute force rank */
        if (t[b] == 0) continue;
        int64_t rank = 1;
        for (int i = 1; i <= N; i++) {
            if (i == t[b]) continue;
            int masked = 0;
            for (int64_t j = off[b]; j < off[b + 1]; j++) masked |= mk[j] == i;
            if (!masked && row[i] >= row[t[b]]) rank++;
        }
        dr_metrics_add_rank(&c, rank);
        dr_metrics_add_rank(b < B / 2 ? &h1 : &h2, rank);
    }
    dr_metrics_merge(&h1, &h2);
    CHECK_EQ_INT(a.n, B - 1);
    CHECK_EQ_INT(c.n, B - 1);
    CHECK_NEAR(a.mrr, c.mrr, 1e-9);
    CHECK_NEAR(a.rank_sum, c.rank_sum, 0);
    CHECK_NEAR(h1.rank_sum, c.rank_sum, 0);
    for (int k = 0; k < DR_METRIC_NK; k++) {
        CHECK_NEAR(a.recall[k], c.recall[k], 0);
        CHECK_NEAR(a.ndcg[k], c.ndcg[k], 1e-9);
    }
    free(S);
    free(t);
    free(off);
    free(mk);
}
