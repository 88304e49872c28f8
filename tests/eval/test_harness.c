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
    CHECK_OK(eval_select_users(&d, 5, 3, &a, &na));
    CHECK_OK(eval_select_users(&d, 0, 3, &b2, &nb));
    CHECK_EQ_INT(na, 5);
    CHECK_EQ_INT(nb, 20);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(a[i], b2[i]); /* the first N of the same order */
    int seen[20] = {0};
    for (int i = 0; i < nb; i++) seen[b2[i]]++;
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(seen[i], 1);
    free(a);
    CHECK_OK(eval_select_users(&d, 20, 4, &a, &na));
    int same = 1;
    for (int i = 0; i < 20; i++) same &= a[i] == b2[i];
    CHECK(!same); /* another seed, another order */
    free(a);
    free(b2);
    CHECK_ERR(eval_select_users(&d, -1, 3, &a, &na), DR_ERR_ARG);
    dr_data_free(&d);
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
    eval_inputs in = {&d, c, tm, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.mode = EVAL_TRM;
    eval_result r0, r;
    CHECK_OK(eval_run(&in, &o, &r0)); /* random model first */
    CHECK_EQ_INT(r0.n_users, 60);
    CHECK_EQ_INT(r0.n_episodes, 60);
    CHECK_EQ_INT(r0.llm, 0);

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
    for (int32_t u = 0; u < d.n_users; u++) {
        const int32_t *hist;
        int64_t nh;
        int32_t t = dr_data_test(&d, u, &hist, &nh);
        int32_t ids[10];
        float sc[10];
        int n;
        CHECK_OK(trm_retrieve(s, hist, nh, "", 10, 1, ids, sc, &n));
        for (int i = 0; i < n; i++)
            if (ids[i] == t) {
                hits++;
                mrr += 1.0 / (i + 1);
                break;
            }
    }
    trm_session_free(s);
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
    /* trm needs a trm */
    in.trm = NULL;
    CHECK_ERR(eval_run(&in, &o, &r2), DR_ERR_ARG);
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
    eval_inputs in = {&d, c, tm, lm, tok};
    const int modes[3] = {EVAL_DEEPREC, EVAL_RERANK, EVAL_DIRECT};
    for (int k = 0; k < 3; k++) {
        eval_opts o;
        eval_opts_default(&o);
        o.mode = modes[k];
        o.users = 6;
        o.batch = 4;
        o.chunk = 4;          /* two rollout calls */
        o.max_hist = 4;
        o.max_turn_tokens = 48;
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
    o.max_turn_tokens = 16;
    o.max_hist = 3;
    CHECK_OK(eval_run(&in, &o, &r));
    CHECK_EQ_INT(r.n_episodes, 2);
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
    eval_inputs in = {&d, c, tm, NULL, NULL};
    eval_opts o;
    eval_opts_default(&o);
    o.mode = EVAL_TRM;
    o.users = 7;
    o.seed = 2;
    eval_result r;
    CHECK_OK(eval_run(&in, &o, &r));
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(json_object_get(j, "metrics"), "exact"), "mrr")),
               r.mrr[0], 1e-6);
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
    CHECK_MSG(strstr(buf, "trm      exact") && strstr(buf, "trm      substring") && strstr(buf, "n/a"), "%s", buf);

    /* usage errors: exit status 2; a missing file: 1 */
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
