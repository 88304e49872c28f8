/* eval under mpirun: the users split over 2 and 3 ranks give the metrics, the intervals and
 * the outcome counts of one process, exactly (the JSON matches but for the seconds). */
#include "harness.h"
#include "mpi_util.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>

static const char *words[] = {"star", "night", "love", "dark", "city", "blue", "war", "girl"};
static const char *genres[] = {"Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance"};

static void data(dr_dataset *d, int n_items, int n_users, int len) {
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
            snprintf(it, sizeof it, "i%d", 1 + (7 * x + 3 * t + x * t) % n_items);
            CHECK_OK(dr_data_builder_add(b, u, strlen(u), it, strlen(it), t, 5.0));
        }
    }
    dr_data_filter f = {0};
    CHECK_OK(dr_data_builder_finish(b, &f, d));
    dr_data_builder_free(b);
}

/* A tiny random policy with a tokenizer trained on the prompts and titles. */
static void tiny_llm(const agent_catalog *c, const char *path) {
    size_t cap = 1 << 16, len = 0;
    char *corpus = malloc(cap);
    CHECK(corpus);
    corpus[0] = 0;
    len += (size_t)snprintf(corpus + len, cap - len, "%s\n", agent_prompt_instructions());
    for (int32_t i = 1; i <= agent_catalog_n_items(c) && len + 200 < cap; i++)
        len += (size_t)snprintf(corpus + len, cap - len, "%d. %s\n  - categories: %s\n", (int)i,
                                agent_catalog_title(c, i), agent_catalog_categories(c, i));
    tok_train_opts to = {0};
    to.vocab_size = 400;
    tokenizer *tok;
    CHECK_OK(tok_train(corpus, len, &to, &tok));
    free(corpus);
    llm_config cfg;
    llm_config_default(&cfg, LLM_ARCH_QWEN2);
    cfg.dim = 32;
    cfg.n_layers = 1;
    cfg.n_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 16;
    cfg.ffn = 64;
    cfg.vocab = tok_vocab_size(tok);
    cfg.context = 4096;
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &cfg, GGML_TYPE_F32, 0.5f, 11));
    CHECK_OK(llm_model_save(m, tok, path));
    llm_model_free(m);
    tok_free(tok);
}

static char *json_no_seconds(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK_MSG(j, "%s: %s", path, e.text);
    /* wall time is the one field that may differ (per mode when several) */
    json_object_del(j, "seconds");
    json_object_del(j, "seconds_per_user");
    json_t *modes = json_object_get(j, "modes");
    const char *k;
    json_t *v;
    json_object_foreach(modes, k, v) {
        json_object_del(v, "seconds");
        json_object_del(v, "seconds_per_user");
    }
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(j);
    return s;
}

/* Returns one process's JSON (without the seconds). */
static json_t *equiv(const char *dir, const char *args) {
    char cmd[4096], out[600];
    char *ref = NULL;
    const int nps[3] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        snprintf(out, sizeof out, "%s/eval%d.json", dir, nps[k]);
        snprintf(cmd, sizeof cmd, "eval %s --quiet --json > %s", args, out);
        CHECK_EQ_INT(mpi_run(nps[k], cmd), 0);
        char *s = json_no_seconds(out);
        if (!ref) {
            ref = s;
            continue;
        }
        CHECK_MSG(!strcmp(ref, s), "-np %d (%s):\n%s\none process:\n%s", nps[k], args, s, ref);
        free(s);
    }
    json_t *j = json_loads(ref, 0, NULL);
    free(ref);
    CHECK(j);
    return j;
}

TEST(dist_eval_modes) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    dr_dataset d;
    data(&d, 40, 23, 9);
    char dp[512], tp[512], lp[512], args[2048];
    snprintf(dp, sizeof dp, "%s", dr_test_path(dir, "data.gguf"));
    snprintf(tp, sizeof tp, "%s", dr_test_path(dir, "trm.gguf"));
    snprintf(lp, sizeof lp, "%s", dr_test_path(dir, "llm.gguf"));
    CHECK_OK(dr_data_save(&d, dp));
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
    CHECK_OK(trm_save(tm, tp));
    trm_model_free(tm);
    tiny_llm(c, lp);
    /* trm and teacher: 23 users (uneven over 2 and 3 ranks), 2 samples each, paired */
    snprintf(args, sizeof args, "--data %s --trm %s --mode trm,teacher --paired trm --samples 2 --bootstrap 200", dp,
             tp);
    json_t *j = equiv(dir, args);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "modes"), "trm"), "episodes")),
                 46);
    json_decref(j);
    /* the LLM modes, greedy: 7 users, small batches so that ranks decode different batch mixes */
    snprintf(args, sizeof args,
             "--data %s --trm %s --llm %s --mode deeprec,rerank,direct --users 7 --max-hist 3 --max-tokens 24 "
             "--ctx 2048 --batch 2 --bootstrap 100",
             dp, tp, lp);
    j = equiv(dir, args);
    json_t *dj = json_object_get(json_object_get(j, "modes"), "deeprec");
    printf("  deeprec mode: %s\n", json_dumps(dj, JSON_COMPACT));
    CHECK(json_real_value(json_object_get(dj, "mean_generated_tokens")) > 0);
    json_decref(j);
    /* sampled: each rank's sampling streams start where the earlier ranks' episodes end */
    snprintf(args, sizeof args,
             "--data %s --trm %s --llm %s --mode deeprec,direct --users 5 --samples 2 --temp 1 --max-hist 3 "
             "--max-tokens 16 --ctx 2048 --batch 3 --bootstrap 0",
             dp, tp, lp);
    j = equiv(dir, args);
    json_decref(j);
    agent_catalog_free(c);
    dr_data_free(&d);
}
