/* Rewards on hand-written trajectories: every component with hand-computed numbers. */
#include "harness.h"
#include "rl_fixture.h"
#include "deeprec/rl.h"
#include "rl/internal.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T_ AGENT_TAG_THINK
#define TE AGENT_TAG_THINK_END
#define PB AGENT_TAG_PREF
#define PE AGENT_TAG_PREF_END
#define LB AGENT_TAG_LIST
#define LE AGENT_TAG_LIST_END
#define AB AGENT_TAG_ANSWER
#define AE AGENT_TAG_ANSWER_END

/* two calls, a valid answer; line 10 matches nothing */
#define TWO_CALLS                                                                                              \
    T_ "The user likes crime.\n" PB "crime; thriller" PE LB "\n1. Heat\n2. Casino\n" LE "\n\nNext.\n" PB        \
    "family comedy" PE LB "\n1. Babe\n" LE "\n\nRanking by fit.\n" TE "\n" AB "\n"                              \
    "1. Heat\n2. Casino\n3. Se7en\n4. The Usual Suspects\n5. GoldenEye\n6. Babe\n7. Jumanji\n8. Four Rooms\n"    \
    "9. Toy Story\n10. Nothing Like This\n" AE

static const char *const PREFS2[2] = {"crime; thriller", "family comedy"};
static const double SUM_W = 3.85; /* sum_{i<10} (1 - i/10)^2 = 385 / 100 */

typedef struct env {
    dr_dataset d;
    trm_model *m;
    agent_catalog *c;
    rl_reward_ctx *r;
} env;
static void env_init(env *e) {
    rlx_dataset(&e->d, 40);
    CHECK_EQ_INT(e->d.n_items, 12);
    e->m = rlx_trm(&e->d);
    CHECK_OK(agent_catalog_build(&e->d, &e->c));
    CHECK_OK(rl_reward_ctx_new(&e->r, e->c, e->m));
}
static void env_free(env *e) {
    rl_reward_ctx_free(e->r);
    agent_catalog_free(e->c);
    trm_model_free(e->m);
    dr_data_free(&e->d);
}
static int32_t id_of(const env *e, const char *title) {
    int32_t id = agent_catalog_find(e->c, title, -1);
    CHECK_MSG(id > 0, "no item '%s'", title);
    return id;
}

TEST(rl_reward_pure_components) {
    /* count: 0.5 (min(n, 3) - 1) for n >= 2 */
    CHECK_NEAR(rl_reward_count(0), 0.0, 0);
    CHECK_NEAR(rl_reward_count(1), 0.0, 0);
    CHECK_NEAR(rl_reward_count(2), 0.5, 1e-12);
    CHECK_NEAR(rl_reward_count(3), 1.0, 1e-12);
    CHECK_NEAR(rl_reward_count(8), 1.0, 1e-12);
    /* list-wise: 1 + 0.2 (10 - i) */
    CHECK_NEAR(rl_reward_listwise(0), 3.0, 1e-12);
    CHECK_NEAR(rl_reward_listwise(2), 2.6, 1e-12);
    CHECK_NEAR(rl_reward_listwise(9), 1.2, 1e-12);
    CHECK_NEAR(rl_reward_listwise(-1), 0.0, 0);
    CHECK_NEAR(rl_reward_listwise(10), 0.0, 0);
    /* diversity: 0.2 (1 - mean pairwise cosine) */
    float v[3][3] = {{1, 0, 0}, {0, 2, 0}, {1, 1, 0}};
    CHECK_NEAR(rl_reward_diversity_vecs(&v[0][0], 2, 3), 0.2, 1e-12);           /* orthogonal */
    CHECK_NEAR(rl_reward_diversity_vecs(&v[0][0], 1, 3), 0.0, 0);               /* n < 2 */
    /* cos = 0, 1/sqrt2, 1/sqrt2 -> mean sqrt2/3 -> 0.2 (1 - 0.471404521) */
    CHECK_NEAR(rl_reward_diversity_vecs(&v[0][0], 3, 3), 0.2 * (1.0 - sqrt(2.0) / 3.0), 1e-9);
    CHECK_NEAR(0.2 * (1.0 - sqrt(2.0) / 3.0), 0.105719096, 1e-9);
    float same[2][2] = {{3, 4}, {6, 8}};
    CHECK_NEAR(rl_reward_diversity_vecs(&same[0][0], 2, 2), 0.0, 1e-12);
    float zero[2][2] = {{0, 0}, {1, 0}}; /* a zero embedding has cosine 0 */
    CHECK_NEAR(rl_reward_diversity_vecs(&zero[0][0], 2, 2), 0.2, 1e-12);
    /* point-wise: 10 sum w s / sum w, w_i = (1 - i/10)^2 */
    double ones[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_NEAR(rl_reward_pointwise_sims(ones, 10), 10.0, 1e-12);
    double first[1] = {1};
    CHECK_NEAR(rl_reward_pointwise_sims(first, 1), 10.0 / 3.85, 1e-12); /* 2.597402597 */
    double last[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK_NEAR(rl_reward_pointwise_sims(last, 10), 10.0 * 0.01 / 3.85, 1e-12);
    double mix[3] = {0.5, -0.5, 1.0}; /* 10 (0.5 - 0.5 * 0.81 + 0.64) / 3.85 */
    CHECK_NEAR(rl_reward_pointwise_sims(mix, 3), 10.0 * (0.5 - 0.405 + 0.64) / 3.85, 1e-12);
}

TEST(rl_reward_stage1_valid_two_calls) {
    env E;
    env_init(&E);
    agent_episode e;
    int32_t items[2] = {id_of(&E, "Heat"), id_of(&E, "Casino")};
    rlx_episode(&e, E.c, TWO_CALLS, AGENT_FINISHED, id_of(&E, "Se7en"), PREFS2, 2, items, 2);
    CHECK_EQ_INT(e.format, AGENT_FMT_OK);
    rl_reward r;
    CHECK_OK(rl_reward_score(E.r, 1, 0, &e, &r));
    CHECK_NEAR(r.format, 0.0, 0);
    CHECK(r.valid);
    CHECK_NEAR(r.count, 0.5, 1e-12);
    /* diversity = 0.2 (1 - cos(pref1, pref2)) with the TRM text encoder */
    const int D = trm_model_config(E.m)->dim;
    float a[64], b[64];
    CHECK_OK(trm_text_embedding(E.m, "crime; thriller", a));
    CHECK_OK(trm_text_embedding(E.m, "family comedy", b));
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < D; i++) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
    double want = 0.2 * (1.0 - ab / sqrt(aa * bb));
    CHECK_NEAR(r.diversity, want, 1e-6);
    CHECK(r.diversity > 0.0 && r.diversity < 0.4);
    CHECK_NEAR(r.listwise, 0.0, 0); /* stage 1 has no outcome rewards */
    CHECK_NEAR(r.pointwise, 0.0, 0);
    CHECK_NEAR(r.total, 0.5 + want, 1e-6);
    CHECK_EQ_INT(r.hit_rank, 2); /* logged in both stages */
    agent_episode_free(&e);
    env_free(&E);
}

TEST(rl_reward_stage1_same_preferences_and_counts) {
    env E;
    env_init(&E);
    const char *p3[3] = {"crime thriller", "crime thriller", "crime thriller"};
    agent_episode e;
    /* invalid format (no answer) but three calls: process rewards are still given */
    rlx_episode(&e, E.c, T_ "x" PB "crime thriller" PE LB "\nNone\n" LE "\n\n", AGENT_SHOT_DOWN, 0, p3, 3, NULL, 0);
    rl_reward r;
    CHECK_OK(rl_reward_score(E.r, 1, 0, &e, &r));
    CHECK_NEAR(r.format, -1.0, 0);
    CHECK(!r.valid);
    CHECK_NEAR(r.count, 1.0, 1e-12);
    CHECK_NEAR(r.diversity, 0.0, 1e-6); /* identical preferences */
    CHECK_NEAR(r.total, 0.0, 1e-6);
    agent_episode_free(&e);
    /* one call: no count, no diversity */
    rlx_episode(&e, E.c, "x", AGENT_SHOT_DOWN, 0, p3, 1, NULL, 0);
    CHECK_OK(rl_reward_score(E.r, 1, 0, &e, &r));
    CHECK_NEAR(r.total, -1.0, 0);
    CHECK_NEAR(r.count, 0.0, 0);
    CHECK_NEAR(r.diversity, 0.0, 0);
    agent_episode_free(&e);
    env_free(&E);
}

TEST(rl_reward_item_similarity) {
    env E;
    env_init(&E);
    int32_t heat = id_of(&E, "Heat"), se7en = id_of(&E, "Se7en");
    double s;
    CHECK_OK(rl_item_similarity(E.r, se7en, se7en, &s));
    CHECK_NEAR(s, 1.0, 1e-6); /* both cosines are 1 */
    CHECK_OK(rl_item_similarity(E.r, 0, se7en, &s));
    CHECK_NEAR(s, 0.0, 0); /* unresolved */
    CHECK_OK(rl_item_similarity(E.r, heat, 0, &s));
    CHECK_NEAR(s, 0.0, 0);
    /* reference: mean of the two cosines, from the TRM directly */
    const int D = trm_model_config(E.m)->dim;
    float a[64], b[64];
    CHECK_OK(trm_text_embedding(E.m, "Heat Action, Crime, Thriller", a));
    CHECK_OK(trm_text_embedding(E.m, "Se7en Mystery, Thriller", b));
    const float *F = trm_item_embeddings(E.m);
    const float *fa = F + (size_t)heat * D, *fb = F + (size_t)se7en * D;
    double t1 = 0, t2 = 0, t3 = 0, i1 = 0, i2 = 0, i3 = 0;
    for (int i = 0; i < D; i++) {
        t1 += a[i] * b[i], t2 += a[i] * a[i], t3 += b[i] * b[i];
        i1 += fa[i] * fb[i], i2 += fa[i] * fa[i], i3 += fb[i] * fb[i];
    }
    CHECK_OK(rl_item_similarity(E.r, heat, se7en, &s));
    CHECK_NEAR(s, 0.5 * (t1 / sqrt(t2 * t3) + i1 / sqrt(i2 * i3)), 1e-6);
    env_free(&E);
}

TEST(rl_reward_stage2_hit_and_pointwise) {
    env E;
    env_init(&E);
    int32_t target = id_of(&E, "Se7en");
    agent_episode e;
    int32_t items[2] = {id_of(&E, "Heat"), id_of(&E, "Casino")};
    rlx_episode(&e, E.c, TWO_CALLS, AGENT_FINISHED, target, PREFS2, 2, items, 2);
    CHECK_EQ_INT(e.hit_rank, 2);
    CHECK_EQ_INT(e.resolved[9], 0); /* "Nothing Like This" */
    rl_reward r;
    CHECK_OK(rl_reward_score(E.r, 2, 0, &e, &r));
    CHECK_NEAR(r.format, 0.0, 0);
    CHECK_NEAR(r.listwise, 2.6, 1e-12); /* 1 + 0.2 (10 - 2) */
    CHECK_NEAR(r.count, 0.0, 0);
    CHECK_NEAR(r.diversity, 0.0, 0);
    /* point-wise reference: s_2 = 1 (the target), s_9 = 0 (unresolved) */
    static const char *const lines[9] = {"Heat", "Casino", "Se7en", "The Usual Suspects", "GoldenEye", "Babe",
                                         "Jumanji", "Four Rooms", "Toy Story"};
    double num = 0;
    for (int i = 0; i < 9; i++) {
        double s, w = (1.0 - i / 10.0) * (1.0 - i / 10.0);
        CHECK_OK(rl_item_similarity(E.r, id_of(&E, lines[i]), target, &s));
        if (i == 2) CHECK_NEAR(s, 1.0, 1e-6);
        CHECK(s >= -1.0 - 1e-9 && s <= 1.0 + 1e-9);
        num += w * s;
    }
    CHECK_NEAR(r.pointwise, 10.0 * num / SUM_W, 1e-9);
    CHECK_NEAR(r.total, 2.6 + r.pointwise, 1e-9);
    agent_episode_free(&e);

    /* target missing from the list: list-wise 0, point-wise still counts */
    rlx_episode(&e, E.c, TWO_CALLS, AGENT_FINISHED, id_of(&E, "Alien"), PREFS2, 2, items, 2);
    CHECK_OK(rl_reward_score(E.r, 2, 0, &e, &r));
    CHECK_NEAR(r.listwise, 0.0, 0);
    CHECK_EQ_INT(r.hit_rank, -1);
    agent_episode_free(&e);
    env_free(&E);
}

TEST(rl_reward_stage2_needs_valid_format) {
    env E;
    env_init(&E);
    int32_t target = id_of(&E, "Heat");
    agent_episode e;
    /* 9 answer lines: invalid; the target is listed first but earns nothing */
    char *bad = strdup(TWO_CALLS);
    char *p = strstr(bad, "10. Nothing Like This\n");
    memmove(p, p + strlen("10. Nothing Like This\n"), strlen(p + strlen("10. Nothing Like This\n")) + 1);
    rlx_episode(&e, E.c, bad, AGENT_FINISHED, target, PREFS2, 2, NULL, 0);
    CHECK_EQ_INT(e.format, AGENT_FMT_ANSWER_LINES);
    rl_reward r;
    CHECK_OK(rl_reward_score(E.r, 2, 0, &e, &r));
    CHECK_NEAR(r.format, -1.0, 0);
    CHECK_NEAR(r.listwise, 0.0, 0);
    CHECK_NEAR(r.pointwise, 0.0, 0);
    CHECK_NEAR(r.total, -1.0, 0);
    agent_episode_free(&e);
    free(bad);
    /* a valid text whose episode did not finish (e.g. many_recall) is invalid too */
    rlx_episode(&e, E.c, TWO_CALLS, AGENT_MANY_RECALL, target, PREFS2, 2, NULL, 0);
    CHECK_NEAR(rl_reward_format(&e), -1.0, 0);
    CHECK_OK(rl_reward_score(E.r, 2, 0, &e, &r));
    CHECK_NEAR(r.total, -1.0, 0);
    agent_episode_free(&e);
    /* no tool call: invalid */
    rlx_episode(&e, E.c, T_ "r\n" TE "\n" AB "\n1. Heat\n" AE, AGENT_FINISHED, target, NULL, 0, NULL, 0);
    CHECK_NEAR(rl_reward_format(&e), -1.0, 0);
    agent_episode_free(&e);
    CHECK_ERR(rl_reward_score(E.r, 3, 0, &e, &r), DR_ERR_ARG);
    env_free(&E);
}

TEST(rl_reward_substring_rule) {
    env E;
    env_init(&E);
    int32_t target = id_of(&E, "Heat");
    char *s = strdup(TWO_CALLS);
    /* "1. Heat" -> "1. Heat (1995)": the exact resolution fails (no item in the retrieved set
     * passes the fallback either: none retrieved), the substring rule still finds it */
    char *t = malloc(strlen(s) + 16);
    char *p = strstr(s, "1. Heat\n2. Casino\n3.");
    size_t pre = (size_t)(p - s);
    memcpy(t, s, pre);
    strcpy(t + pre, "1. Heat (1995)\n");
    strcat(t, p + strlen("1. Heat\n"));
    agent_episode e;
    rlx_episode(&e, E.c, t, AGENT_FINISHED, target, PREFS2, 2, NULL, 0);
    CHECK_EQ_INT(e.format, AGENT_FMT_OK);
    rl_reward r;
    CHECK_OK(rl_reward_score(E.r, 2, 0, &e, &r));
    CHECK_EQ_INT(r.hit_rank, -1);
    CHECK_NEAR(r.listwise, 0.0, 0);
    CHECK_OK(rl_reward_score(E.r, 2, 1, &e, &r));
    CHECK_EQ_INT(r.hit_rank, 0);
    CHECK_NEAR(r.listwise, 3.0, 1e-12);
    agent_episode_free(&e);
    free(s);
    free(t);
    env_free(&E);
}

/* The batch statistics carry the evaluation's NDCG@10 beside the reward: ranks 0 and 3 count
 * 1 and 1/log2(5), a rank past the list and a miss count 0. */
TEST(rl_stats_ndcg10_is_the_evaluations) {
    agent_episode eps[4];
    rl_reward rw[4];
    memset(eps, 0, sizeof eps);
    memset(rw, 0, sizeof rw);
    const int ranks[4] = {0, 3, 12, -1};
    for (int i = 0; i < 4; i++) rw[i].hit_rank = ranks[i];
    rl_rollout_stats st;
    memset(&st, 0, sizeof st);
    rl_rollout_stats_sum(&st, eps, rw, 4);
    CHECK_NEAR(st.ndcg10, (1.0 + 1.0 / log2(5.0)) / 4, 1e-12);
    CHECK_NEAR(st.hit_rate, 0.75, 1e-12);
    json_t *j = rl_step_json(&(rl_step_stats){.stage = RL_STAGE_2, .step = 1, .batch = st});
    CHECK_NEAR(json_real_value(json_object_get(j, "ndcg@10")), st.ndcg10, 1e-12);
    json_decref(j);
}
