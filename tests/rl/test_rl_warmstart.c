/* The outcome-aware warm start: best-of-N keeps the highest stage-2 reward, candidates are
 * scored as the RL trainer scores episodes, the target orders training lists, and the file
 * holds one valid trajectory per position. */
#include "harness.h"
#include "rl_fixture.h"
#include "deeprec/rl.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the fixture dataset, its random pref TRM as the tool, and the reward context */
typedef struct ws_env {
    dr_dataset d;
    trm_model *m;
    agent_catalog *c;
    agent_tool tool;
    rl_reward_ctx *rc;
} ws_env;
static void ws_env_init(ws_env *e, int n_users) {
    rlx_dataset(&e->d, n_users);
    e->m = rlx_trm(&e->d);
    CHECK_OK(agent_catalog_build(&e->d, &e->c));
    CHECK_OK(agent_tool_trm_new(&e->tool, e->m, 1));
    CHECK_OK(rl_reward_ctx_new(&e->rc, e->c, e->m));
}
static void ws_env_free(ws_env *e) {
    rl_reward_ctx_free(e->rc);
    agent_tool_trm_free(&e->tool);
    agent_catalog_free(e->c);
    trm_model_free(e->m);
    dr_data_free(&e->d);
}

TEST(rl_best_of_index) {
    const double a[] = {1.0, 3.0, 3.0, 2.0};
    CHECK_EQ_INT(rl_best_of(a, 4), 1); /* ties keep the earlier */
    const double b[] = {NAN, -1.0, NAN, -0.5};
    CHECK_EQ_INT(rl_best_of(b, 4), 3);
    const double c[] = {NAN, NAN};
    CHECK_EQ_INT(rl_best_of(c, 2), -1);
    CHECK_EQ_INT(rl_best_of(a, 0), -1);
}

/* For positions of several users, the kept trajectory is byte-identical to the candidate with
 * the highest reward, recomputed independently with agent_synth_one + rl_warmstart_score; with
 * and without the target ordering (the score uses the target either way). */
static void check_best_keeps_highest(int order) {
    ws_env E;
    ws_env_init(&E, 30);
    dr_dataset d = E.d;
    agent_catalog *c = E.c;
    agent_tool tool = E.tool;
    rl_reward_ctx *rc = E.rc;
    agent_synth_opts base = {0};
    base.tool_k = 10;
    base.varied = 1;
    enum { N = 6 };
    int distinct_positions = 0, checked = 0;
    for (int32_t u = 0; u < d.n_users; u++) {
        const int32_t *tr;
        int64_t n = dr_data_train(&d, u, &tr);
        for (int64_t j = 2; j < n; j += 2) {
            uint64_t seeds[N];
            for (int k = 0; k < N; k++) seeds[k] = 1000u * (uint64_t)u + 17u * (uint64_t)j + (uint64_t)k;
            agent_synth_traj best;
            double rew[N];
            int bi;
            CHECK_OK(rl_warmstart_best(c, &tool, rc, tr, j, tr[j], order, &base, seeds, N, &best, rew, &bi));
            /* the reference: every candidate built and scored on its own */
            double ref[N];
            char *texts[N] = {0};
            for (int k = 0; k < N; k++) {
                agent_synth_opts so = base;
                so.seed = seeds[k];
                so.target = order ? tr[j] : 0;
                agent_synth_traj t;
                int r = agent_synth_one(c, &tool, tr, j, &so, &t);
                if (r) {
                    dr_error_clear();
                    ref[k] = NAN;
                    continue;
                }
                rl_reward w;
                CHECK_OK(rl_warmstart_score(rc, c, &t, tr[j], &w));
                CHECK(w.valid);
                ref[k] = w.total;
                texts[k] = strdup(t.completion);
                agent_synth_traj_free(&t);
            }
            int want = -1, differ = 0;
            for (int k = 0; k < N; k++) {
                CHECK(isnan(ref[k]) == isnan(rew[k]));
                if (!isnan(ref[k])) CHECK_NEAR(rew[k], ref[k], 0.0);
                if (!isnan(ref[k]) && (want < 0 || ref[k] > ref[want])) want = k;
                if (!isnan(ref[k]) && want >= 0 && ref[k] != ref[want]) differ = 1;
            }
            CHECK_EQ_INT(bi, want);
            if (want >= 0) {
                CHECK_STR(best.completion, texts[want]);
                /* nothing beats the kept one */
                for (int k = 0; k < N; k++)
                    if (!isnan(ref[k])) CHECK(ref[k] <= rew[bi]);
                checked++;
            }
            distinct_positions += differ;
            for (int k = 0; k < N; k++) free(texts[k]);
            agent_synth_traj_free(&best);
        }
    }
    CHECK_MSG(checked >= 20, "only %d positions checked", checked);
    /* the selection is not trivial: candidates of many positions differ in reward */
    CHECK_MSG(distinct_positions >= 5, "only %d positions with differing rewards", distinct_positions);
    ws_env_free(&E);
}
TEST(rl_warmstart_best_keeps_highest_reward) { check_best_keeps_highest(1); }
TEST(rl_warmstart_best_keeps_highest_reward_unordered) { check_best_keeps_highest(0); }

/* The known target goes first in a training list when it was retrieved; the score of such a
 * list is the list-wise reward of rank 0 plus its point-wise reward. */
TEST(rl_warmstart_target_first) {
    ws_env E;
    ws_env_init(&E, 20);
    dr_dataset d = E.d;
    agent_catalog *c = E.c;
    agent_tool tool = E.tool;
    rl_reward_ctx *rc = E.rc;
    int firsts = 0;
    for (int32_t u = 0; u < d.n_users; u++) {
        const int32_t *tr;
        int64_t n = dr_data_train(&d, u, &tr);
        int64_t j = n - 1;
        agent_synth_opts so = {0};
        so.tool_k = 10;
        so.varied = 1;
        so.seed = 5 + (uint64_t)u;
        so.target = tr[j];
        agent_synth_traj t;
        if (agent_synth_one(c, &tool, tr, j, &so, &t)) {
            dr_error_clear();
            continue;
        }
        if (t.target_retrieved) {
            CHECK_EQ_INT(t.answer[0], tr[j]);
            rl_reward w;
            CHECK_OK(rl_warmstart_score(rc, c, &t, tr[j], &w));
            CHECK_EQ_INT(w.hit_rank, 0);
            CHECK_NEAR(w.listwise, RL_LIST_CORRECT + RL_LIST_LINEAR * 10, 1e-12);
            firsts++;
        } else {
            for (int k = 0; k < AGENT_N_REC; k++) CHECK(t.answer[k] != tr[j]);
        }
        agent_synth_traj_free(&t);
    }
    CHECK(firsts > 0);
    ws_env_free(&E);
}

/* The file: one JSON line per position with a valid candidate, each a valid trajectory whose
 * answer never lists a history item; the same seed writes the same bytes. */
TEST(rl_warmstart_file) {
    dr_dataset d;
    rlx_dataset(&d, 16);
    trm_model *m = rlx_trm(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    agent_tool tool;
    CHECK_OK(agent_tool_trm_new(&tool, m, 1));
    rl_warmstart_opts o;
    rl_warmstart_opts_default(&o);
    o.synth.tool_k = 10;
    o.positions = 3;
    o.best_of = 4;
    char p1[] = "/tmp/deeprec_ws1_XXXXXX", p2[] = "/tmp/deeprec_ws2_XXXXXX";
    close(mkstemp(p1));
    close(mkstemp(p2));
    rl_warmstart_stats s1, s2;
    CHECK_OK(rl_warmstart_synth(&d, m, c, &tool, &o, p1, &s1));
    CHECK_OK(rl_warmstart_synth(&d, m, c, &tool, &o, p2, &s2));
    CHECK(s1.written > 0);
    CHECK_EQ_INT((int)s1.written, (int)s2.written);
    CHECK(s1.mean_reward >= s1.mean_first_reward);
    FILE *f1 = fopen(p1, "rb"), *f2 = fopen(p2, "rb");
    CHECK(f1 && f2);
    char a[1 << 14], b[1 << 14];
    int lines = 0;
    while (fgets(a, sizeof a, f1)) {
        CHECK(fgets(b, sizeof b, f2) != NULL);
        CHECK_STR(a, b);
        json_error_t je;
        json_t *j = json_loads(a, 0, &je);
        CHECK(j != NULL);
        const char *comp = json_string_value(json_object_get(j, "completion"));
        CHECK(comp != NULL);
        CHECK_EQ_INT(agent_format_check(comp, strlen(comp)), AGENT_FMT_OK);
        json_decref(j);
        lines++;
    }
    CHECK_EQ_INT(lines, (int)s1.written);
    fclose(f1);
    fclose(f2);
    /* recent = 1: the last train item is the only position, so at most one line per user */
    CHECK(s2.written > d.n_users);
    o.recent = 1;
    CHECK_OK(rl_warmstart_synth(&d, m, c, &tool, &o, p1, &s1));
    CHECK(s1.written > 0 && s1.written <= d.n_users);
    o.recent = 0;
    remove(p1);
    remove(p2);
    /* bad options are refused */
    o.best_of = 0;
    CHECK_ERR(rl_warmstart_synth(&d, m, c, &tool, &o, p1, &s1), DR_ERR_ARG);
    agent_tool_trm_free(&tool);
    agent_catalog_free(c);
    trm_model_free(m);
    dr_data_free(&d);
}
