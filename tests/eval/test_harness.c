/* The evaluation harness (include/deeprec/evaluate.h): metric aggregation over hand-made
 * episodes, the fixed rerank preference, user selection, the trm baseline on a tiny
 * synthetic dataset with a tiny trained TRM, and the LLM modes with a tiny random LLM. */
#include "harness.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static agent_episode ep(int outcome, int rank, int rank_substr, int format, int calls, int gen) {
    agent_episode e;
    memset(&e, 0, sizeof e);
    e.outcome = outcome;
    e.hit_rank = rank;
    e.hit_rank_substr = rank_substr;
    e.format = format;
    e.n_calls = calls;
    e.n_generated = gen;
    return e;
}

TEST(harness_aggregation_hand_made) {
    eval_acc a;
    eval_acc_init(&a);
    agent_episode e[6] = {
        ep(AGENT_FINISHED, 0, 0, AGENT_FMT_OK, 2, 100),           /* hit at rank 1 under both rules */
        ep(AGENT_FINISHED, 3, 2, AGENT_FMT_OK, 1, 50),            /* rank 4 exact, rank 3 substring */
        ep(AGENT_FINISHED, -1, 9, AGENT_FMT_ANSWER_LINES, 3, 80), /* exact miss, substring rank 10 */
        ep(AGENT_MANY_RECALL, 0, 0, AGENT_FMT_NO_CALL, 9, 200),   /* failure: a miss even with ranks set */
        ep(AGENT_SHOT_DOWN, -1, -1, AGENT_FMT_NO_CALL, 0, 30),
        ep(AGENT_RECALL_ERROR, -1, -1, AGENT_FMT_TOOL_TAGS, 1, 40),
    };
    for (int i = 0; i < 6; i++) eval_acc_add_episode(&a, &e[i]);
    eval_result r;
    eval_acc_finish(&a, EVAL_DEEPREC, 6, 1, 3.0, &r);
    CHECK_EQ_INT(r.n_episodes, 6);
    CHECK_EQ_INT(r.llm, 1);
    double n = 6;
    /* exact: ranks 0 and 3 */
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][0], 1 / n, 1e-12);
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][1], 2 / n, 1e-12);
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][2], 2 / n, 1e-12);
    CHECK_NEAR(r.ndcg[EVAL_RULE_EXACT][0], (1 + 1 / log2(5.0)) / n, 1e-12);
    CHECK_NEAR(r.ndcg[EVAL_RULE_EXACT][1], (1 + 1 / log2(5.0)) / n, 1e-12);
    CHECK_NEAR(r.mrr[EVAL_RULE_EXACT], (1 + 0.25) / n, 1e-12);
    /* substring: ranks 0, 2 and 9 */
    CHECK_NEAR(r.recall[EVAL_RULE_SUBSTR][0], 1 / n, 1e-12);
    CHECK_NEAR(r.recall[EVAL_RULE_SUBSTR][1], 2 / n, 1e-12);
    CHECK_NEAR(r.recall[EVAL_RULE_SUBSTR][2], 3 / n, 1e-12);
    CHECK_NEAR(r.ndcg[EVAL_RULE_SUBSTR][0], (1 + 0.5) / n, 1e-12);
    CHECK_NEAR(r.ndcg[EVAL_RULE_SUBSTR][1], (1 + 0.5 + 1 / log2(11.0)) / n, 1e-12);
    CHECK_NEAR(r.mrr[EVAL_RULE_SUBSTR], (1 + 1 / 3.0 + 0.1) / n, 1e-12);
    CHECK_EQ_INT(r.outcomes[AGENT_FINISHED], 3);
    CHECK_EQ_INT(r.outcomes[AGENT_MANY_RECALL], 1);
    CHECK_EQ_INT(r.outcomes[AGENT_SHOT_DOWN], 1);
    CHECK_EQ_INT(r.outcomes[AGENT_RECALL_ERROR], 1);
    CHECK_EQ_INT(r.outcomes[AGENT_CONTEXT_TOO_LONG] + r.outcomes[AGENT_PREFERENCE_ERROR], 0);
    CHECK_NEAR(r.format_valid_rate, 2 / n, 1e-12);
    CHECK_NEAR(r.mean_tool_calls, 16 / n, 1e-12);
    CHECK_NEAR(r.mean_gen_tokens, 500 / n, 1e-12);
    CHECK_NEAR(r.seconds_per_user, 0.5, 1e-12);
    /* ranks past the list are misses; merge adds sums */
    eval_acc b;
    eval_acc_init(&b);
    eval_acc_add_ranks(&b, 10, 57);
    eval_acc_add_ranks(&b, 4, -1);
    eval_acc_merge(&a, &b);
    eval_acc_finish(&a, EVAL_DEEPREC, 8, 1, 8.0, &r);
    CHECK_EQ_INT(r.n_episodes, 8);
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][2], 3 / 8.0, 1e-12);
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][1], 3 / 8.0, 1e-12);
    CHECK_NEAR(r.recall[EVAL_RULE_SUBSTR][2], 3 / 8.0, 1e-12);
    /* JSON: both rules, outcome names; trm: LLM fields null */
    json_t *j = eval_result_json(&r);
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(json_object_get(j, "metrics"), "substring"),
                                               "recall@10")),
               3 / 8.0, 1e-9);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "outcomes"), "many_recall")), 1);
    json_decref(j);
    eval_acc_finish(&a, EVAL_TRM, 8, 1, 8.0, &r);
    j = eval_result_json(&r);
    CHECK(json_is_null(json_object_get(j, "format_valid_rate")));
    CHECK(json_is_null(json_object_get(j, "outcomes")));
    CHECK_STR(json_string_value(json_object_get(j, "mode")), "trm");
    json_decref(j);
    /* empty */
    eval_acc_init(&b);
    eval_acc_finish(&b, EVAL_RERANK, 0, 1, 0.0, &r);
    CHECK_NEAR(r.recall[0][2], 0, 0);
    CHECK_NEAR(r.seconds_per_user, 0, 0);
    CHECK_EQ_INT(eval_mode_from_name("rerank"), EVAL_RERANK);
    CHECK_EQ_INT(eval_mode_from_name("nope"), -1);
    CHECK_STR(eval_mode_name(EVAL_DIRECT), "direct");
}

/* ---------------------------------------------------------------- a tiny synthetic dataset */
static const char *const genres[6] = {"Drama", "Comedy", "Action", "Horror", "Romance", "Western"};
static const char *const words[8] = {"River", "Night", "Storm", "Garden", "Empire", "Harbor", "Winter", "Signal"};

/* n_items items "<Word> <k>" with genres by k; user u watches a run of consecutive items
 * (cyclic) starting at 7u: the next item is predictable from the last ones. */
static void tiny_data(dr_dataset *d, int n_items, int n_users, int len) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b);
    char u[32], it[32], title[64], cats[64];
    for (int k = 1; k <= n_items; k++) {
        snprintf(it, sizeof it, "i%d", k);
        snprintf(title, sizeof title, "%s %d", words[k % 8], k);
        snprintf(cats, sizeof cats, "%s|%s", genres[k % 6], genres[(k / 6) % 6]);
        CHECK_OK(dr_data_builder_item_text(b, it, strlen(it), title, -1, cats, -1));
    }
    for (int x = 0; x < n_users; x++) {
        snprintf(u, sizeof u, "u%d", x);
        for (int t = 0; t < len; t++) {
            snprintf(it, sizeof it, "i%d", 1 + (7 * x + t) % n_items);
            CHECK_OK(dr_data_builder_add(b, u, strlen(u), it, strlen(it), t, 5.0));
        }
    }
    dr_data_filter f = {0};
    CHECK_OK(dr_data_builder_finish(b, &f, d));
    dr_data_builder_free(b);
}

TEST(harness_history_preference_and_users) {
    dr_dataset d;
    tiny_data(&d, 48, 20, 12);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    /* items with known categories: find ids by their original names */
    int32_t h[4];
    const char *names[4] = {"i6", "i12", "i7", "i18"}; /* genres: Drama|Comedy, Drama|Action, Comedy|Comedy, Drama|Horror */
    for (int i = 0; i < 4; i++) {
        h[i] = dr_data_find_item(&d, names[i]);
        CHECK(h[i] > 0);
    }
    char *p;
    CHECK_OK(eval_history_preference(c, h, 4, &p));
    /* Drama 3; Comedy 2 (i7's repeated category is stored once); Action 1 and Horror 1: Horror is more recent */
    CHECK_STR(p, "Drama; Comedy; Horror");
    free(p);
    CHECK_OK(eval_history_preference(c, h, 0, &p));
    CHECK_STR(p, "");
    free(p);
    agent_catalog_free(c);

    int32_t *a, *b2;
    int na, nb;
    CHECK_OK(dr_data_draw_users(&d, 5, 3, &a, &na));
    CHECK_OK(dr_data_draw_users(&d, 0, 3, &b2, &nb));
    CHECK_EQ_INT(na, 5);
    CHECK_EQ_INT(nb, 20);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(a[i], b2[i]); /* the first N of the same order */
    int seen[20] = {0};
    for (int i = 0; i < nb; i++) seen[b2[i]]++;
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(seen[i], 1);
    free(a);
    CHECK_OK(dr_data_draw_users(&d, 20, 4, &a, &na));
    int same = 1;
    for (int i = 0; i < 20; i++) same &= a[i] == b2[i];
    CHECK(!same); /* another seed, another order */
    free(a);
    free(b2);
    CHECK_ERR(dr_data_draw_users(&d, -1, 3, &a, &na), DR_ERR_ARG);
    dr_data_free(&d);
}

/* The target's 0-based rank in the TRM's empty-preference top 10 (history masked), or -1. */
static int direct_rank(trm_session *s, const int32_t *hist, int64_t nh, int32_t target) {
    int32_t ids[10];
    float sc[10];
    int n, rank = -1;
    CHECK_OK(trm_retrieve(s, hist, nh, "", 10, 1, ids, sc, &n));
    for (int i = 0; i < n && rank < 0; i++)
        if (ids[i] == target) rank = i;
    return rank;
}

TEST(harness_trm_baseline_tiny_trained) {
    dr_dataset d;
    tiny_data(&d, 40, 60, 14);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = TRM_PREF;
    cfg.n_items = d.n_items;
    cfg.dim = 32;
    cfg.layers = 1;
    cfg.heads = 1;
    cfg.max_len = 12;
    cfg.dropout = 0.1f;
    cfg.text_buckets = 1 << 10;
    trm_model *tm;
    CHECK_OK(trm_model_new(&tm, &cfg, &d, 7));
    eval_inputs in = {&d, c, tm, NULL, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.mode = EVAL_TRM;
    eval_result r0, r;
    CHECK_OK(eval_run(&in, &o, &r0)); /* random model first */
    CHECK_EQ_INT(r0.n_users, 60);
    CHECK_EQ_INT(r0.n_episodes, 60);
    CHECK_EQ_INT(r0.llm, 0);
    eval_result_free(&r0);

    trm_train_opts to;
    trm_train_opts_default(&to);
    to.epochs = 6;
    to.patience = 0;
    to.batch = 16;
    to.lr = 5e-3f;
    to.out = dr_test_path(dr_test_tmpdir(), "trm.gguf");
    to.metrics = "";
    trm_train_result tr;
    CHECK_OK(trm_train(tm, &d, &to, &tr));
    CHECK_OK(eval_run(&in, &o, &r));
    CHECK_EQ_INT(r.n_users, 60);
    fprintf(stderr, "  trm baseline recall@10: random model %.3f, trained %.3f\n", r0.recall[EVAL_RULE_EXACT][2],
            r.recall[EVAL_RULE_EXACT][2]);
    /* the cyclic next item is learnable: far above chance (10 of 40 candidates) */
    CHECK_MSG(r.recall[EVAL_RULE_EXACT][2] > 0.6, "trained trm recall@10 %.3f (random model %.3f)",
              r.recall[EVAL_RULE_EXACT][2], r0.recall[EVAL_RULE_EXACT][2]);
    /* the harness equals a direct top-10 through the retriever */
    trm_session *s;
    CHECK_OK(trm_session_new(&s, tm));
    int hits = 0;
    double mrr = 0;
    for (int32_t k = 0; k < (int32_t)r.n_users; k++) {
        int32_t u = r.users[k];
        const int32_t *hist;
        int64_t nh;
        int32_t t = dr_data_test(&d, u, &hist, &nh);
        int rank = direct_rank(s, hist, nh, t);
        CHECK_EQ_INT(r.rank[EVAL_RULE_EXACT][k], rank); /* the per-user score is that user's rank */
        if (rank >= 0) {
            hits++;
            mrr += 1.0 / (rank + 1);
        }
    }
    /* --split valid: the same users, each ranked on the validation item with seq[:-2] */
    eval_result rv;
    o.split = DR_SPLIT_VALID;
    CHECK_OK(eval_run(&in, &o, &rv));
    CHECK_EQ_INT(rv.n_users, 60);
    int differs = 0;
    for (int32_t k = 0; k < (int32_t)rv.n_users; k++) {
        int32_t u = rv.users[k];
        CHECK_EQ_INT(u, r.users[k]);
        const int32_t *hist;
        int64_t nh;
        int32_t t = dr_data_valid(&d, u, &hist, &nh);
        CHECK_EQ_INT(rv.rank[EVAL_RULE_EXACT][k], direct_rank(s, hist, nh, t));
        const int32_t *th;
        int64_t nth;
        differs += t != dr_data_test(&d, u, &th, &nth);
    }
    CHECK_EQ_INT(differs, 60); /* another target for every user, not the test split again */
    eval_result_free(&rv);
    o.split = DR_SPLIT_ALL; /* no target to score */
    CHECK_ERR(eval_run(&in, &o, &rv), DR_ERR_ARG);
    o.split = DR_SPLIT_TEST;
    trm_session_free(s);
    /* per-user values reproduce every aggregate, and the interval holds the mean */
    double x[60];
    for (int q = 0; q < EVAL_N_RULES; q++)
        for (int m = 0; m < EVAL_N_METRICS; m++) {
            const double agg[EVAL_N_METRICS] = {r.recall[q][0], r.recall[q][1], r.recall[q][2],
                                                r.ndcg[q][0],   r.ndcg[q][1],   r.mrr[q]};
            double want = agg[m], sum = 0;
            CHECK_OK(eval_user_values(&r, q, m, x));
            for (int u = 0; u < 60; u++) sum += x[u];
            CHECK_NEAR(sum / 60, want, 1e-12);
            CHECK_NEAR(r.ci[q][m].mean, want, 1e-12);
            CHECK(r.ci[q][m].lo <= want + 1e-12 && want <= r.ci[q][m].hi + 1e-12);
        }
    CHECK_EQ_INT(r.bootstrap, 1000);
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][2], hits / 60.0, 1e-12);
    CHECK_NEAR(r.mrr[EVAL_RULE_EXACT], mrr / 60.0, 1e-12);
    /* every title is unique here, and no title is a substring of another listed one except
       by id ("River 1" is in "River 17"): the substring rule is never below the exact one */
    CHECK(r.recall[EVAL_RULE_SUBSTR][2] >= r.recall[EVAL_RULE_EXACT][2]);
    CHECK(r.recall[EVAL_RULE_EXACT][0] <= r.recall[EVAL_RULE_EXACT][1]);
    CHECK(r.ndcg[EVAL_RULE_EXACT][1] <= r.recall[EVAL_RULE_EXACT][2] + 1e-12);
    /* a subset of users, deterministic */
    o.users = 25;
    o.seed = 9;
    eval_result r2, r3;
    CHECK_OK(eval_run(&in, &o, &r2));
    CHECK_OK(eval_run(&in, &o, &r3));
    CHECK_EQ_INT(r2.n_users, 25);
    CHECK_NEAR(r2.mrr[0], r3.mrr[0], 0);
    CHECK_NEAR(r2.ci[0][EVAL_M_MRR].lo, r3.ci[0][EVAL_M_MRR].lo, 0); /* seeded bootstrap */
    CHECK_NEAR(r2.ci[0][EVAL_M_MRR].hi, r3.ci[0][EVAL_M_MRR].hi, 0);
    /* a mode paired with itself: every difference is exactly 0, interval [0, 0] */
    eval_paired pd;
    CHECK_OK(eval_paired_diff(&r2, &r3, 200, 3, &pd));
    for (int q = 0; q < EVAL_N_RULES; q++)
        for (int m = 0; m < EVAL_N_METRICS; m++) {
            CHECK(pd.diff[q][m].mean == 0.0 && pd.diff[q][m].lo == 0.0 && pd.diff[q][m].hi == 0.0);
        }
    CHECK_ERR(eval_paired_diff(&r2, &r, 200, 3, &pd), DR_ERR_ARG); /* other users */
    eval_result_free(&r);
    eval_result_free(&r2);
    eval_result_free(&r3);
    /* trm needs a trm */
    in.trm = NULL;
    CHECK_ERR(eval_run(&in, &o, &r2), DR_ERR_ARG);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}

/* A plain SASRec checkpoint as the TRM: trm mode is its empty-preference top-10, and a
 * preference text changes nothing (sasrec ignores it). */
/* An untrained one-layer TRM of width 16 for dataset d. */
static trm_model *tiny_trm(const dr_dataset *d, int kind) {
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = kind;
    cfg.n_items = d->n_items;
    cfg.dim = 16;
    cfg.layers = 1;
    cfg.heads = 1;
    cfg.max_len = 12;
    trm_model *tm = NULL;
    CHECK_OK(trm_model_new(&tm, &cfg, d, 3));
    return tm;
}

TEST(harness_trm_mode_sasrec) {
    dr_dataset d;
    tiny_data(&d, 40, 20, 12);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    trm_model *tm = tiny_trm(&d, TRM_SASREC);
    eval_inputs in = {&d, c, tm, NULL, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.mode = EVAL_TRM;
    eval_result r;
    CHECK_OK(eval_run(&in, &o, &r));
    CHECK_EQ_INT(r.n_users, 20);
    trm_session *s;
    CHECK_OK(trm_session_new(&s, tm));
    int hits = 0;
    for (int k = 0; k < 20; k++) {
        const int32_t *hist;
        int64_t nh;
        int32_t t = dr_data_test(&d, r.users[k], &hist, &nh);
        int32_t ids[10], ids2[10];
        float sc[10], sc2[10];
        int n, n2, rank = -1;
        CHECK_OK(trm_retrieve(s, hist, nh, "", 10, 1, ids, sc, &n));
        CHECK_OK(trm_retrieve(s, hist, nh, "Drama; Comedy", 10, 1, ids2, sc2, &n2));
        CHECK_EQ_INT(n, 10);
        CHECK_EQ_INT(n2, 10);
        for (int i = 0; i < n; i++) {
            CHECK_EQ_INT(ids2[i], ids[i]);
            if (rank < 0 && ids[i] == t) rank = i;
        }
        CHECK_EQ_INT(r.rank[EVAL_RULE_EXACT][k], rank);
        hits += rank >= 0;
    }
    CHECK_NEAR(r.recall[EVAL_RULE_EXACT][2], hits / 20.0, 1e-12);
    trm_session_free(s);
    eval_result_free(&r);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}

/* The teacher's rank for one user, computed from agent_synth_one's text by title. */
static int teacher_rank(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t nh, int32_t t,
                        agent_synth_opts so) {
    agent_synth_traj tr;
    int rc = agent_synth_one(c, tool, hist, nh, &so, &tr);
    if (rc) {
        dr_error_clear();
        return -2; /* skipped by the warm start */
    }
    const char *ans = strstr(tr.completion, AGENT_TAG_ANSWER);
    int rank = -1;
    for (int i = 0; i < AGENT_N_REC && rank < 0; i++) {
        char want[128];
        snprintf(want, sizeof want, "\n%d. %s\n", i + 1, agent_catalog_title(c, t));
        if (strstr(ans, want)) rank = i;
    }
    agent_synth_traj_free(&tr);
    return rank;
}

TEST(harness_teacher_mode_tiny) {
    dr_dataset d;
    tiny_data(&d, 40, 12, 10);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = TRM_PREF;
    cfg.n_items = d.n_items;
    cfg.dim = 16;
    cfg.layers = 1;
    cfg.heads = 1;
    cfg.max_len = 10;
    cfg.text_buckets = 1 << 10;
    trm_model *tm;
    CHECK_OK(trm_model_new(&tm, &cfg, &d, 5));
    agent_tool tool;
    CHECK_OK(agent_tool_trm_new(&tool, tm, 1));
    eval_inputs in = {&d, c, tm, NULL, NULL, NULL}; /* no LLM needed */
    /* the eval options' own settings, then other teacher settings through o.synth */
    agent_synth_opts other = {0};
    other.tool_k = 10;
    other.max_hist = 5;
    other.seed = 77;
    for (int v = 0; v < 2; v++) {
        eval_opts o;
        eval_opts_default(&o);
        o.mode = EVAL_TEACHER;
        o.seed = 4;
        o.samples = 2;
        o.synth = v ? &other : NULL;
        eval_result r;
        CHECK_OK(eval_run(&in, &o, &r));
        CHECK_EQ_INT(r.n_users, 12);
        CHECK_EQ_INT(r.n_episodes, 24);
        CHECK_EQ_INT(r.llm, 0);
        int hits = 0;
        for (int k = 0; k < 12; k++) {
            const int32_t *hist;
            int64_t nh;
            int32_t t = dr_data_test(&d, r.users[k], &hist, &nh);
            agent_synth_opts so = {0};
            if (v) so = other;
            else so.chat = o.rollout.chat, so.max_hist = o.rollout.max_hist, so.tool_k = o.rollout.tool_k, so.seed = o.seed;
            dr_rng base;
            dr_rng_seed(&base, so.seed);
            dr_rng ur = dr_rng_split(&base, (uint64_t)r.users[k]);
            so.seed = dr_rng_u64(&ur);
            int want = teacher_rank(c, &tool, hist, nh, t, so);
            CHECK(want >= -1); /* 30 new items for 10 lines: never skipped here */
            CHECK_EQ_INT(r.rank[EVAL_RULE_EXACT][2 * k], want);
            CHECK_EQ_INT(r.rank[EVAL_RULE_EXACT][2 * k + 1], want);
            /* the target's title is in its own line: the substring rule finds it there or earlier */
            if (want >= 0) CHECK(r.rank[EVAL_RULE_SUBSTR][2 * k] >= 0 && r.rank[EVAL_RULE_SUBSTR][2 * k] <= want);
            hits += want >= 0;
        }
        fprintf(stderr, "  teacher (%s): %d of 12 users hit, recall@10 %.3f\n", v ? "o.synth" : "eval options", hits,
                r.recall[EVAL_RULE_EXACT][2]);
        CHECK(hits > 0);
        CHECK_NEAR(r.recall[EVAL_RULE_EXACT][2], hits / 12.0, 1e-12);
        json_t *j = eval_result_json(&r);
        CHECK_STR(json_string_value(json_object_get(j, "mode")), "teacher");
        CHECK(json_is_null(json_object_get(j, "format_valid_rate")));
        json_decref(j);
        eval_result_free(&r);
    }
    agent_tool_trm_free(&tool);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);

    /* 12 items, histories of 9: 3 new items, too few for a list: every user a miss, no error */
    tiny_data(&d, 12, 6, 10);
    CHECK_OK(agent_catalog_build(&d, &c));
    cfg.n_items = d.n_items;
    CHECK_OK(trm_model_new(&tm, &cfg, &d, 5));
    eval_inputs in2 = {&d, c, tm, NULL, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.mode = EVAL_TEACHER;
    eval_result r;
    CHECK_OK(eval_run(&in2, &o, &r));
    CHECK_EQ_INT(r.n_episodes, 6);
    for (int k = 0; k < 6; k++) CHECK_EQ_INT(r.rank[EVAL_RULE_SUBSTR][k], -1);
    CHECK_NEAR(r.recall[EVAL_RULE_SUBSTR][2], 0, 0);
    eval_result_free(&r);
    in2.trm = NULL; /* the teacher needs the TRM */
    CHECK_ERR(eval_run(&in2, &o, &r), DR_ERR_ARG);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}

/* ---------------------------------------------------------------- LLM modes, tiny random model */
static void tiny_llm(const agent_catalog *c, llm_model **m, tokenizer **tok) {
    size_t cap = 1 << 16, len = 0;
    char *corpus = malloc(cap);
    corpus[0] = 0;
    for (int rep = 0; rep < 2; rep++) {
        len += (size_t)snprintf(corpus + len, cap - len, "%s\n%s\n", agent_prompt_instructions(),
                                agent_prompt_instructions_direct());
        for (int32_t i = 1; i <= agent_catalog_n_items(c) && len + 200 < cap; i++)
            len += (size_t)snprintf(corpus + len, cap - len, "%d. %s\n  - categories: %s\n", (int)i,
                                    agent_catalog_title(c, i), agent_catalog_categories(c, i));
    }
    tok_train_opts to = {0};
    to.vocab_size = 400;
    CHECK_OK(tok_train(corpus, len, &to, tok));
    free(corpus);
    llm_config cfg;
    llm_config_default(&cfg, LLM_ARCH_QWEN2);
    cfg.dim = 32;
    cfg.n_layers = 1;
    cfg.n_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 16;
    cfg.ffn = 64;
    cfg.vocab = tok_vocab_size(*tok);
    cfg.context = 4096;
    CHECK_OK(llm_model_init_random(m, &cfg, GGML_TYPE_F32, 0.5f, 11));
}

TEST(harness_llm_modes_tiny_random) {
    dr_dataset d;
    tiny_data(&d, 40, 12, 10);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = TRM_PREF;
    cfg.n_items = d.n_items;
    cfg.dim = 16;
    cfg.layers = 1;
    cfg.heads = 1;
    cfg.max_len = 10;
    cfg.text_buckets = 1 << 10;
    trm_model *tm;
    CHECK_OK(trm_model_new(&tm, &cfg, &d, 5));
    llm_model *lm;
    tokenizer *tok;
    tiny_llm(c, &lm, &tok);
    eval_inputs in = {&d, c, tm, lm, tok, NULL};
    const int modes[3] = {EVAL_DEEPREC, EVAL_RERANK, EVAL_DIRECT};
    for (int k = 0; k < 3; k++) {
        eval_opts o;
        eval_opts_default(&o);
        o.mode = modes[k];
        o.users = 6;
        o.batch = 4;
        o.chunk = 4;          /* two rollout calls */
        o.rollout.max_hist = 4;
        o.rollout.max_turn_tokens = 48;
        o.n_ctx = 3072;
        o.temperature = k == 0 ? 1.0f : 0.0f;
        o.samples = k == 0 ? 2 : 1;
        eval_result r;
        CHECK_OK(eval_run(&in, &o, &r));
        CHECK_EQ_INT(r.n_users, 6);
        CHECK_EQ_INT(r.n_episodes, 6 * o.samples);
        int64_t sum = 0;
        for (int i = 0; i < AGENT_N_OUTCOMES; i++) sum += r.outcomes[i];
        CHECK_EQ_INT(sum, r.n_episodes);
        CHECK(r.llm);
        CHECK(r.mean_gen_tokens > 0);
        CHECK(r.format_valid_rate >= 0 && r.format_valid_rate <= 1);
        CHECK(r.recall[0][2] >= 0 && r.recall[0][2] <= 1);
        if (modes[k] == EVAL_RERANK) CHECK(r.mean_tool_calls >= 1); /* the forced call */
        if (modes[k] == EVAL_DIRECT) CHECK_NEAR(r.mean_tool_calls, r.outcomes[AGENT_RECALL_ERROR] / 6.0, 1e-12);
        CHECK(r.seconds >= 0);
        /* per-episode ranks (misses unless finished) give the aggregates */
        double x[6], xsum = 0;
        CHECK_OK(eval_user_values(&r, EVAL_RULE_SUBSTR, EVAL_M_MRR, x));
        for (int u = 0; u < 6; u++) xsum += x[u];
        CHECK_NEAR(xsum / 6, r.mrr[EVAL_RULE_SUBSTR], 1e-12);
        eval_result_free(&r);
    }
    /* deeprec needs an llm; direct works without a trm */
    eval_opts o;
    eval_opts_default(&o);
    o.users = 2;
    eval_result r;
    in.llm = NULL;
    CHECK_ERR(eval_run(&in, &o, &r), DR_ERR_ARG);
    in.llm = lm;
    in.trm = NULL;
    o.mode = EVAL_DIRECT;
    o.rollout.max_turn_tokens = 16;
    o.rollout.max_hist = 3;
    CHECK_OK(eval_run(&in, &o, &r));
    CHECK_EQ_INT(r.n_episodes, 2);
    eval_result_free(&r);
    tok_free(tok);
    llm_model_free(lm);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}

/* ---------------------------------------------------------------- the CLI */
static const char *bin(void) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    return b;
}

static json_t *run_json(const char *cmd) {
    FILE *p = popen(cmd, "r");
    CHECK(p);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECK_EQ_INT(pclose(p), 0);
    json_error_t err;
    json_t *j = json_loads(buf, 0, &err);
    CHECK_MSG(j, "not JSON (%s): %s", err.text, buf);
    return j;
}

/* The subprocesses run with OMP_WAIT_POLICY=passive (spinning OpenMP threads are very slow on
 * a loaded 2-core machine). */
TEST(harness_cli_eval) {
    const char *b = bin(), *dir = dr_test_tmpdir();
    dr_dataset d;
    tiny_data(&d, 40, 10, 10);
    char data[512], trm[512], llm[512], cmd[4096];
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "data.gguf"));
    snprintf(trm, sizeof trm, "%s", dr_test_path(dir, "trm.gguf"));
    snprintf(llm, sizeof llm, "%s", dr_test_path(dir, "llm.gguf"));
    CHECK_OK(dr_data_save(&d, data));
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = TRM_PREF;
    cfg.n_items = d.n_items;
    cfg.dim = 16;
    cfg.layers = 1;
    cfg.heads = 1;
    cfg.max_len = 10;
    cfg.text_buckets = 1 << 10;
    trm_model *tm;
    CHECK_OK(trm_model_new(&tm, &cfg, &d, 5));
    CHECK_OK(trm_save(tm, trm));
    llm_model *lm;
    tokenizer *tok;
    tiny_llm(c, &lm, &tok);
    CHECK_OK(llm_model_save(lm, tok, llm));

    /* trm alone: LLM fields null; the same numbers as the library */
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --mode trm --users 7 --seed 2 --json",
             b, data, trm);
    json_t *j = run_json(cmd);
    CHECK_STR(json_string_value(json_object_get(j, "mode")), "trm");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "users")), 7);
    CHECK(json_is_null(json_object_get(j, "format_valid_rate")));
    CHECK(json_is_null(json_object_get(j, "mean_generated_tokens")));
    CHECK(json_is_true(json_object_get(j, "constrain"))); /* title-constrained answers: on by default */
    eval_inputs in = {&d, c, tm, NULL, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.mode = EVAL_TRM;
    o.users = 7;
    o.seed = 2;
    o.bootstrap_seed = 2; /* the CLI seeds the bootstrap with --seed */
    eval_result r;
    CHECK_OK(eval_run(&in, &o, &r));
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(json_object_get(j, "metrics"), "exact"), "mrr")),
               r.mrr[0], 1e-6);
    /* the same interval as the library (bootstrap seeded by --seed) */
    json_t *ci = json_object_get(json_object_get(json_object_get(j, "metrics_ci"), "exact"), "ndcg@10");
    CHECK_NEAR(json_real_value(json_object_get(ci, "mean")), r.ci[0][EVAL_M_NDCG10].mean, 1e-6);
    CHECK_NEAR(json_real_value(json_object_get(ci, "lo")), r.ci[0][EVAL_M_NDCG10].lo, 1e-6);
    CHECK_NEAR(json_real_value(json_object_get(ci, "hi")), r.ci[0][EVAL_M_NDCG10].hi, 1e-6);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "bootstrap"), "resamples")), 1000);
    eval_result_free(&r);
    json_decref(j);

    /* two modes in one run: one object keyed by mode; outcome counts sum to the users */
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --llm %s --mode trm,direct --users 3 --max-hist 3 "
             "--max-tokens 24 --ctx 2048 --batch 2 --json",
             b, data, trm, llm);
    j = run_json(cmd);
    json_t *modes = json_object_get(j, "modes");
    CHECK(json_object_get(modes, "trm"));
    json_t *dj = json_object_get(modes, "direct");
    CHECK(dj);
    json_t *oc = json_object_get(dj, "outcomes");
    CHECK(json_is_object(oc));
    int64_t sum = 0;
    const char *key;
    json_t *v;
    json_object_foreach(oc, key, v) sum += json_integer_value(v);
    CHECK_EQ_INT(sum, 3);
    CHECK(json_is_number(json_object_get(dj, "format_valid_rate")));
    json_decref(j);

    /* the table */
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --mode trm --users 4 --quiet", b,
             data, trm);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECK_EQ_INT(pclose(p), 0);
    CHECK_MSG(strstr(buf, "trm      NDCG@10") && strstr(buf, "exact [95% CI]") && strstr(buf, "n/a"), "%s", buf);

    /* the teacher paired against trm: a mode minus itself is exactly 0, the teacher's mean
       difference is the difference of the means */
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --mode trm,teacher --paired trm --users 6 "
             "--bootstrap 50 --json",
             b, data, trm);
    j = run_json(cmd);
    modes = json_object_get(j, "modes");
    json_t *tj = json_object_get(modes, "trm"), *hj = json_object_get(modes, "teacher");
    CHECK(tj && hj);
    json_t *self = json_object_get(json_object_get(json_object_get(tj, "paired"), "exact"), "mrr");
    CHECK(json_real_value(json_object_get(self, "mean")) == 0 && json_real_value(json_object_get(self, "lo")) == 0 &&
          json_real_value(json_object_get(self, "hi")) == 0);
    json_t *hp = json_object_get(hj, "paired");
    CHECK_STR(json_string_value(json_object_get(hp, "ref")), "trm");
    CHECK_EQ_INT(json_integer_value(json_object_get(hp, "users")), 6);
    CHECK_EQ_INT(json_integer_value(json_object_get(hp, "resamples")), 50);
    double dm = json_real_value(json_object_get(json_object_get(json_object_get(hp, "substring"), "ndcg@10"), "mean"));
    double mt = json_real_value(json_object_get(json_object_get(json_object_get(tj, "metrics"), "substring"), "ndcg@10"));
    double mh = json_real_value(json_object_get(json_object_get(json_object_get(hj, "metrics"), "substring"), "ndcg@10"));
    CHECK_NEAR(dm, mh - mt, 1e-5);
    CHECK(json_is_null(json_object_get(hj, "outcomes"))); /* no LLM in the teacher */
    json_decref(j);

    /* text: mean [lo, hi], and the paired block; --bootstrap 0: means alone */
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --mode trm,teacher --paired trm --users 4 --quiet", b,
             data, trm);
    p = popen(cmd, "r");
    CHECK(p);
    n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECK_EQ_INT(pclose(p), 0);
    CHECK_MSG(strstr(buf, "paired difference against trm") && strstr(buf, "trm      MRR@10        4  +0.0000 [+0.0000, +0.0000]"),
              "%s", buf);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --mode trm --bootstrap 0 --quiet", b,
             data, trm);
    p = popen(cmd, "r");
    CHECK(p);
    n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECK_EQ_INT(pclose(p), 0);
    CHECK_MSG(strstr(buf, "trm      R@10") && !strstr(buf, " [0."), "%s", buf);

    /* a plain SASRec checkpoint serves trm and teacher */
    trm_config scfg = cfg;
    scfg.model = TRM_SASREC;
    trm_model *sm;
    CHECK_OK(trm_model_new(&sm, &scfg, &d, 6));
    char sas[512];
    snprintf(sas, sizeof sas, "%s", dr_test_path(dir, "sasrec.gguf"));
    CHECK_OK(trm_save(sm, sas));
    trm_model_free(sm);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s eval --data %s --trm %s --mode trm,teacher --json", b, data,
             sas);
    j = run_json(cmd);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "modes"), "trm"), "users")),
                 10); /* all test users by default */
    json_decref(j);

    /* usage errors: exit status 2; a missing file: 1 */
    snprintf(cmd, sizeof cmd, "%s eval --data %s --trm %s --mode trm --paired teacher 2>/dev/null", b, data, trm);
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s eval --data %s --trm %s --mode trm --bootstrap -1 2>/dev/null", b, data, trm);
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s eval --data %s --mode trm 2>/dev/null", b, data);
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s eval --data %s --trm %s --mode deeprec 2>/dev/null", b, data, trm);
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s eval --data %s --trm %s --mode nope 2>/dev/null", b, data, trm);
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s eval --data %s --trm %s --mode trm --constrain maybe 2>/dev/null", b, data, trm);
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s eval --data %s --trm %s --mode trm 2>/dev/null", b, data,
             dr_test_path(dir, "missing.gguf"));
    CHECK_EQ_INT(WEXITSTATUS(system(cmd)), 1);

    tok_free(tok);
    llm_model_free(lm);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}

TEST(harness_mode_list_and_runs) {
    int modes[EVAL_N_MODES], n;
    CHECK_OK(eval_modes_parse("trm,teacher", modes, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(modes[0], EVAL_TRM);
    CHECK_EQ_INT(modes[1], EVAL_TEACHER);
    CHECK_ERR(eval_modes_parse("trm,,teacher", modes, &n), DR_ERR_ARG);
    CHECK_ERR(eval_modes_parse("trm,bert", modes, &n), DR_ERR_ARG);
    CHECK(strstr(dr_error_message(), "bert"));
    CHECK_ERR(eval_modes_parse("trm,trm", modes, &n), DR_ERR_ARG);
    CHECK_ERR(eval_modes_parse("", modes, &n), DR_ERR_ARG);
    dr_error_clear();
    /* the runs equal eval_run mode by mode; each pairs with the reference (itself: zero) */
    dr_dataset d;
    tiny_data(&d, 40, 20, 12);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    trm_model *tm = tiny_trm(&d, TRM_PREF);
    eval_inputs in = {&d, c, tm, NULL, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.bootstrap = 50;
    CHECK_OK(eval_modes_parse("trm,teacher", modes, &n));
    eval_result res[2], one;
    eval_paired pair[2];
    CHECK_OK(eval_run_modes(&in, &o, modes, n, 0, res, pair));
    for (int i = 0; i < n; i++) {
        o.mode = modes[i];
        CHECK_OK(eval_run(&in, &o, &one));
        CHECK_EQ_INT(res[i].mode, modes[i]);
        CHECK_EQ_INT(res[i].n_users, one.n_users);
        CHECK_NEAR(res[i].ndcg[EVAL_RULE_EXACT][1], one.ndcg[EVAL_RULE_EXACT][1], 0);
        eval_result_free(&one);
    }
    CHECK_EQ_INT(pair[1].mode, EVAL_TEACHER);
    CHECK_EQ_INT(pair[1].ref, EVAL_TRM);
    CHECK_NEAR(pair[0].diff[EVAL_RULE_EXACT][0].mean, 0, 0);
    for (int i = 0; i < n; i++) eval_result_free(&res[i]);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}
