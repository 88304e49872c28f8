/* The fusion bound (eval_pref_fusion): its empty-preference row is trm_evaluate's figure, and
 * with a TRM that ignores preferences every fusion policy collapses to the empty preference. */
#include "harness.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/metrics.h"
#include "deeprec/trm.h"
#include "trm/internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const genres[5] = {"Drama", "Comedy", "Action", "Horror", "Western"};

/* 30 items with two genres each; user u watches a cyclic run starting at 5u */
static void tiny(dr_dataset *d, int with_cats) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b);
    char u[32], it[32], title[64], cats[64];
    for (int k = 1; k <= 30; k++) {
        snprintf(it, sizeof it, "i%d", k);
        snprintf(title, sizeof title, "Film %d", k);
        snprintf(cats, sizeof cats, "%s|%s", genres[k % 5], genres[(k / 5) % 5]);
        CHECK_OK(dr_data_builder_item_text(b, it, strlen(it), title, -1, with_cats ? cats : "", -1));
    }
    for (int x = 0; x < 40; x++) {
        snprintf(u, sizeof u, "u%d", x);
        for (int t = 0; t < 9; t++) {
            snprintf(it, sizeof it, "i%d", 1 + (5 * x + t) % 30);
            CHECK_OK(dr_data_builder_add(b, u, strlen(u), it, strlen(it), t, 5.0));
        }
    }
    dr_data_filter f = {0};
    CHECK_OK(dr_data_builder_finish(b, &f, d));
    dr_data_builder_free(b);
}

static trm_model *tiny_trm(const dr_dataset *d, int model) {
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = model;
    cfg.n_items = d->n_items;
    cfg.dim = 16;
    cfg.layers = 1;
    cfg.heads = 1;
    cfg.max_len = 10;
    cfg.text_buckets = 1 << 8;
    trm_model *m = NULL;
    CHECK_OK(trm_model_new(&m, &cfg, d, 11));
    return m;
}

TEST(fusion_empty_row_is_trm_evaluate) {
    dr_dataset d;
    tiny(&d, 1);
    trm_model *m = tiny_trm(&d, TRM_PREF);
    for (int split = 0; split < 2; split++) {
        eval_fusion_result fr;
        CHECK_OK(eval_pref_fusion(m, &d, split, 20, 200, 1, &fr));
        dr_metrics_mean mm;
        CHECK_OK(trm_evaluate(m, &d, split, 1, 0, &mm));
        CHECK_EQ_INT(fr.n_users, mm.n);
        CHECK_NEAR(fr.ndcg10[EVAL_FUSION_EMPTY].mean, mm.ndcg[dr_metrics_k_index(10)], 1e-12);
        CHECK_NEAR(fr.recall10[EVAL_FUSION_EMPTY], mm.recall[dr_metrics_k_index(10)], 1e-12);
        CHECK(fr.ndcg10[EVAL_FUSION_EMPTY].lo <= fr.ndcg10[EVAL_FUSION_EMPTY].mean);
        CHECK(fr.ndcg10[EVAL_FUSION_EMPTY].hi >= fr.ndcg10[EVAL_FUSION_EMPTY].mean);
        CHECK_NEAR(fr.diff[EVAL_FUSION_EMPTY].mean, 0.0, 0.0);
        for (int p = 0; p < EVAL_FUSION_N; p++) CHECK(isfinite(fr.ndcg10[p].mean) && fr.recall10[p] >= 0);
    }
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(fusion_preference_blind_trm_collapses) {
    dr_dataset d;
    tiny(&d, 1);
    trm_model *m = tiny_trm(&d, TRM_PREF);
    /* W_p = 0: every preference text maps to the empty preference's user vector */
    memset(m->p.pref_w, 0, (size_t)m->cfg.dim * (size_t)m->cfg.dim * sizeof(float));
    eval_fusion_result fr;
    CHECK_OK(eval_pref_fusion(m, &d, 1, 20, 100, 3, &fr));
    CHECK(fr.n_users == 40);
    for (int p = 0; p < EVAL_FUSION_N; p++) {
        CHECK_NEAR(fr.ndcg10[p].mean, fr.ndcg10[EVAL_FUSION_EMPTY].mean, 1e-12);
        CHECK_NEAR(fr.recall10[p], fr.recall10[EVAL_FUSION_EMPTY], 1e-12);
        CHECK_NEAR(fr.diff[p].lo, 0.0, 1e-12);
        CHECK_NEAR(fr.diff[p].hi, 0.0, 1e-12);
    }
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(fusion_refuses_what_it_cannot_bound) {
    dr_dataset d, nocat;
    tiny(&d, 1);
    tiny(&nocat, 0);
    eval_fusion_result fr;
    trm_model *s = tiny_trm(&d, TRM_SASREC);
    CHECK_EQ_INT(eval_pref_fusion(s, &d, 1, 20, 0, 1, &fr), DR_ERR_UNSUPPORTED);
    dr_error_clear();
    trm_model *p = tiny_trm(&nocat, TRM_PREF);
    CHECK_EQ_INT(eval_pref_fusion(p, &nocat, 1, 20, 0, 1, &fr), DR_ERR_UNSUPPORTED);
    dr_error_clear();
    trm_model_free(s);
    trm_model_free(p);
    dr_data_free(&d);
    dr_data_free(&nocat);
}
