/* deeprec pipeline on a tiny titled dataset with the "test" budget: the run writes every
 * row, a rerun reuses every stage, other settings are refused (and rebuilt with force), and
 * through the CLI a run killed in the middle of each stage resumes to the same report. */
#include "harness.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/pipeline.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *const titles[12] = {"Heat", "Casino", "Se7en", "The Usual Suspects", "GoldenEye", "Babe",
                                       "Jumanji", "Four Rooms", "Toy Story", "Apollo 13", "Fargo", "Alien"};
static const char *const cats[12] = {"Action|Crime|Thriller", "Crime|Drama", "Mystery|Thriller",
                                     "Crime|Mystery|Thriller", "Action|Adventure", "Children|Drama",
                                     "Adventure|Children", "Comedy", "Animation|Children|Comedy",
                                     "Adventure|Drama", "Crime|Drama|Thriller", "Horror|Sci-Fi"};

/* 24 users drifting through 12 titled movies (learnable structure), saved to dir/data.gguf */
static const char *tiny_data(const char *dir) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b != NULL);
    dr_rng r;
    dr_rng_seed(&r, 11);
    for (int u = 0; u < 24; u++) {
        char us[16];
        snprintf(us, sizeof us, "u%d", u);
        int len = 6 + (int)dr_rng_below(&r, 5), base = (int)dr_rng_below(&r, 12);
        for (int i = 0; i < len; i++) {
            char is[16];
            snprintf(is, sizeof is, "m%d", (base + i + (int)dr_rng_below(&r, 2)) % 12);
            CHECK_OK(dr_data_builder_add(b, us, strlen(us), is, strlen(is), i, 0));
        }
    }
    for (int it = 0; it < 12; it++) {
        char is[16];
        snprintf(is, sizeof is, "m%d", it);
        CHECK_OK(dr_data_builder_item_text(b, is, strlen(is), titles[it], -1, cats[it], -1));
    }
    dr_data_filter f = {0};
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    const char *path = dr_test_path(dir, "data.gguf");
    CHECK_OK(dr_data_save(&d, path));
    dr_data_free(&d);
    return path;
}

/* sasrec, trm, rerank, teacher, deeprec before RL unconstrained and constrained, after RL 1, 2 */
static int n_rows_expected(void) { return 8; }

/* the table's numbers (no times): equal reports have equal strings */
static char *rows_text(json_t *report) {
    json_t *rows = json_object_get(report, "rows");
    json_t *slim = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        json_array_append_new(slim, json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "id", json_object_get(r, "id"),
                                              "users", json_object_get(r, "users"), "recall@10",
                                              json_object_get(r, "recall@10"), "ndcg@10", json_object_get(r, "ndcg@10"),
                                              "mrr", json_object_get(r, "mrr"), "format_valid",
                                              json_object_get(r, "format_valid"), "calls", json_object_get(r, "calls")));
    }
    char *s = json_dumps(slim, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(slim);
    return s;
}

static void check_report(json_t *rep) {
    json_t *rows = json_object_get(rep, "rows");
    CHECK_EQ_INT(json_array_size(rows), n_rows_expected());
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        double nd = json_number_value(json_object_get(r, "ndcg@10")), rc = json_number_value(json_object_get(r, "recall@10"));
        CHECK(json_is_number(json_object_get(r, "ndcg@10")));
        CHECK(nd >= 0 && nd <= rc + 1e-12 && rc <= 1);
        CHECK_EQ_INT(json_integer_value(json_object_get(r, "users")), 6);
        int llm = eval_mode_uses_llm(eval_mode_from_name(json_string_value(json_object_get(r, "mode"))));
        /* LLM-only columns are null for the TRM and teacher rows, numbers for the others */
        CHECK(!llm == json_is_null(json_object_get(r, "format_valid")));
        /* the 95% interval of every row's NDCG@10 holds its mean, which is the table's value */
        json_t *ci = json_object_get(json_object_get(json_object_get(r, "ci"), "exact"), "ndcg@10");
        CHECK(json_is_object(ci));
        double m = json_number_value(json_object_get(ci, "mean"));
        CHECK(fabs(m - nd) < 1e-12);
        CHECK(json_number_value(json_object_get(ci, "lo")) <= m + 1e-12 && m <= json_number_value(json_object_get(ci, "hi")) + 1e-12);
        CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(r, "ci"), "resamples")), 1000);
        /* the paired difference against the best TRM row */
        json_t *pd = json_object_get(r, "paired_vs_best_trm");
        json_t *d = json_object_get(json_object_get(pd, "exact"), "ndcg@10");
        CHECK(json_is_object(d));
        double dm = json_number_value(json_object_get(d, "mean"));
        CHECK(json_number_value(json_object_get(d, "lo")) <= dm + 1e-12 && dm <= json_number_value(json_object_get(d, "hi")) + 1e-12);
        CHECK_EQ_INT(json_integer_value(json_object_get(pd, "resamples")), 1000);
        CHECK_EQ_INT(json_integer_value(json_object_get(pd, "users")), 6);
        /* per-user ranks travel in the row's eval output: users x samples episodes */
        json_t *pu = json_object_get(json_object_get(r, "eval"), "per_user");
        CHECK_EQ_INT(json_array_size(json_object_get(pu, "user_ids")), 6);
        CHECK_EQ_INT(json_array_size(json_object_get(pu, "ranks_exact")), 6);
    }
    const char *best = json_string_value(json_object_get(json_object_get(rep, "best_trm"), "row"));
    CHECK(best && (!strcmp(best, "sasrec") || !strcmp(best, "trm")));
    /* the best TRM row against itself: exactly 0 */
    int seen = 0;
    json_array_foreach(rows, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "id")), best)) continue;
        seen = 1;
        CHECK(json_is_true(json_object_get(r, "best_trm")));
        json_t *pd = json_object_get(r, "paired_vs_best_trm");
        CHECK(!strcmp(json_string_value(json_object_get(pd, "ref")), best));
        json_t *d = json_object_get(json_object_get(pd, "exact"), "ndcg@10");
        CHECK(json_number_value(json_object_get(d, "mean")) == 0.0);
        CHECK(json_number_value(json_object_get(d, "lo")) == 0.0 && json_number_value(json_object_get(d, "hi")) == 0.0);
    }
    CHECK(seen);
    /* the settings of the run */
    CHECK(json_is_object(json_object_get(rep, "settings")));
}

TEST(pipeline_budgets_and_stages) {
    const pipeline_budget *b = pipeline_budget_get("demo");
    CHECK(b && pipeline_budget_get("full") && pipeline_budget_get("test") && !pipeline_budget_get("huge"));
    /* demo: TRMs to convergence (early stopping, not a fixed epoch count), the shell demo's RL */
    CHECK_EQ_INT(b->trm_max_epochs, 200);
    CHECK_EQ_INT(b->trm_patience, 20); /* dslabs' validation is noisy: 5 stopped the TRMs early */
    /* the tool is the text model in the demo, the pref model in the full budget (docs/trm.md) */
    CHECK_EQ_INT(b->trm_experts, TRM_TEXT_EXPERTS_DEFAULT);
    CHECK_EQ_INT(pipeline_budget_get("full")->trm_experts, 0);
    /* the demo's tool is an ensemble of three (dslabs test 0.0651 against 0.0559-0.0595 for one) */
    CHECK_EQ_INT(b->trm_ensemble, 3);
    CHECK_EQ_INT(pipeline_budget_get("full")->trm_ensemble, 0);
    CHECK_EQ_INT(pipeline_budget_get("test")->trm_ensemble, 2);
    /* an ensemble whose members all start from one SASRec lost on dslabs (valid 0.0529 against
     * 0.0596 from random weights): the demo trains the random candidate only */
    CHECK_EQ_INT(b->trm_pref_init, 0);
    CHECK_EQ_INT(pipeline_budget_get("full")->trm_pref_init, 1);
    CHECK_EQ_INT(b->n_synth_seeds, 7);
    CHECK_EQ_INT(b->rl1_steps, 8);
    CHECK_EQ_INT(b->rl2_steps, 12);
    CHECK_EQ_INT(b->eval_users, 0); /* all test users */
    for (int s = 0; s < PIPELINE_N_STAGES; s++) CHECK_EQ_INT(pipeline_stage_from_name(pipeline_stage_name(s)), s);
    CHECK_EQ_INT(pipeline_stage_from_name("nope"), -1);
    /* the outcome-aware warm start and the pref TRM's empty-preference rate */
    CHECK_EQ_INT(b->ws_best_of, 1); /* selection measured to hurt the student (docs/ablation.md) */
    CHECK_EQ_INT(b->ws_positions, 4);
    CHECK_EQ_INT(b->ws_varied, 1);
    CHECK_EQ_INT(b->ws_order_by_target, 1);
    CHECK_EQ_INT(b->ws_seed, 1);
    CHECK(b->trm_pref_empty == 0.7);
    CHECK_EQ_INT(pipeline_budget_get("full")->ws_positions, 8);
    CHECK_EQ_INT(pipeline_budget_get("test")->ws_best_of, 2);
    CHECK(pipeline_budget_get("test")->trm_pref_empty == 0.3);
}

TEST(pipeline_budget_set_by_name) {
    pipeline_budget b = *pipeline_budget_get("demo");
    CHECK_OK(pipeline_budget_set(&b, "ws_best_of", "0"));
    CHECK_EQ_INT(b.ws_best_of, 0);
    CHECK_OK(pipeline_budget_set(&b, "llm_dim", "192"));
    CHECK_EQ_INT(b.llm_dim, 192);
    CHECK_EQ_INT(b.llm_layers, 2); /* the neighbours are untouched */
    CHECK_OK(pipeline_budget_set(&b, "sft_lr1", "2.5e-3"));
    CHECK(b.sft_lr1 == 2.5e-3);
    CHECK(b.sft_lr2 == 1e-3);
    CHECK_OK(pipeline_budget_set(&b, "trm_pref_empty", "0.5"));
    CHECK(b.trm_pref_empty == 0.5);
    CHECK_OK(pipeline_budget_set(&b, "synth_seeds", "5,9,11"));
    CHECK_EQ_INT(b.n_synth_seeds, 3);
    CHECK(b.synth_seeds[0] == 5 && b.synth_seeds[1] == 9 && b.synth_seeds[2] == 11 && b.synth_seeds[3] == 0);
    /* errors leave the budget as it was and name the keys */
    json_t *bj = pipeline_budget_json(&b);
    char *before = json_dumps(bj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(bj);
    CHECK_ERR(pipeline_budget_set(&b, "no_such_field", "1"), DR_ERR_ARG);
    CHECK(strstr(dr_error_message(), "no_such_field") && strstr(dr_error_message(), "ws_best_of"));
    CHECK_ERR(pipeline_budget_set(&b, "llm_dim", "12x"), DR_ERR_ARG);
    CHECK_ERR(pipeline_budget_set(&b, "llm_dim", ""), DR_ERR_ARG);
    CHECK_ERR(pipeline_budget_set(&b, "llm_dim", "-4"), DR_ERR_ARG);
    CHECK_ERR(pipeline_budget_set(&b, "sft_lr1", "nan"), DR_ERR_ARG);
    CHECK_ERR(pipeline_budget_set(&b, "synth_seeds", "1,,2"), DR_ERR_ARG);
    CHECK_ERR(pipeline_budget_set(&b, "synth_seeds", "1,2,"), DR_ERR_ARG);
    bj = pipeline_budget_json(&b);
    char *after = json_dumps(bj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(bj);
    CHECK(before && after && !strcmp(before, after));
    free(before);
    free(after);
    /* every named field is settable and appears in the settings object */
    json_t *j = pipeline_budget_json(&b);
    int n = 0;
    for (const char *f; (f = pipeline_budget_field(n)); n++) {
        CHECK_MSG(json_object_get(j, f) != NULL, "field %s missing from the settings", f);
        if (strcmp(f, "synth_seeds")) CHECK_OK(pipeline_budget_set(&b, f, "1"));
    }
    CHECK(n > 40 && (size_t)n == json_object_size(j));
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "llm_dim")), 192);
    json_decref(j);
}

TEST(pipeline_run_rerun_and_settings) {
    const char *dir = dr_test_tmpdir();
    char data[1024]; /* dr_test_path's buffers rotate */
    snprintf(data, sizeof data, "%s", tiny_data(dir));
    char out[512];
    snprintf(out, sizeof out, "%s/run", dir);
    pipeline_opts o;
    pipeline_opts_default(&o);
    o.data = data;
    o.out_dir = out;
    o.budget = pipeline_budget_get("test");
    pipeline_result r1;
    CHECK_OK(pipeline_run(&o, &r1));
    check_report(r1.report);
    /* the outcome-aware warm start: one trajectory file, one SFT run (no run 1) */
    CHECK(dr_file_exists(dr_test_path(out, "traj_ws.jsonl")) && !dr_file_exists(dr_test_path(out, "traj_s1.jsonl")));
    CHECK(!dr_file_exists(dr_test_path(out, "tiny_sft1.gguf")) && dr_file_exists(dr_test_path(out, "tiny_sft_rerank.gguf")));
    CHECK(strstr(r1.report_md, "(pending)") == NULL && strstr(r1.report_md, "+0.0000 [+0.0000, +0.0000]"));
    CHECK(strstr(r1.report_md, "| SASRec (CE) alone") && strstr(r1.report_md, "DeepRec after RL stage 2"));
    for (int s = 0; s < PIPELINE_REPORT; s++) CHECK_MSG(!r1.stages[s].reused, "stage %d reused on a fresh run", s);
    CHECK(dr_file_exists(dr_test_path(out, "report.md")) && dr_file_exists(dr_test_path(out, "times.json")));
    CHECK(dr_file_exists(dr_test_path(out, "policy2.rewards.svg")));
    /* the two pref candidates (trm_pref_init): the report names the one kept, the higher on
     * validation, and the markdown says it */
    json_t *pc = json_object_get(r1.report, "pref_candidates");
    CHECK(json_is_object(pc));
    const char *kept = json_string_value(json_object_get(pc, "kept"));
    double vr = json_number_value(json_object_get(pc, "random_valid_ndcg@10")),
           vs = json_number_value(json_object_get(pc, "from_sasrec_valid_ndcg@10"));
    CHECK(kept && !strcmp(kept, vs > vr ? "from_sasrec" : "random"));
    CHECK(strstr(r1.report_md, vs > vr ? "candidate started from the SASRec" : "candidate from random weights"));
    { /* trm_ensemble (2 in the test budget): the tool, whichever candidate won, is an ensemble */
        trm_model *tm = NULL;
        CHECK_OK(trm_load(&tm, dr_test_path(out, "trm.gguf")));
        CHECK_EQ_INT(trm_model_config(tm)->ensemble, 2);
        trm_model_free(tm);
    }
    /* env_holdout (1 in the test budget): the warm start and RL name the held-out TRM as their
     * input, the evaluation the full one */
    CHECK(dr_file_exists(dr_test_path(out, "env_trm.gguf")));
    const char *uses[][2] = {{"traj_ws.jsonl.key", "env_trm.gguf"}, {"policy1.gguf.key", "env_trm.gguf"},
                             {"policy2.gguf.key", "env_trm.gguf"}, {"eval_deeprec_rl2.json.key", "trm.gguf"}};
    for (int i = 0; i < 4; i++) {
        char *key = NULL;
        size_t n;
        CHECK_OK(dr_read_file(dr_test_path(out, uses[i][0]), &key, &n));
        CHECK_MSG(strstr(key, uses[i][1]) != NULL, "%s does not name %s", uses[i][0], uses[i][1]);
        if (!strcmp(uses[i][1], "trm.gguf")) CHECK(strstr(key, "env_trm.gguf") == NULL);
        free(key);
    }
    /* a rerun computes nothing */
    pipeline_result r2;
    CHECK_OK(pipeline_run(&o, &r2));
    for (int s = 0; s < PIPELINE_REPORT; s++) CHECK_MSG(r2.stages[s].reused, "stage %s recomputed", pipeline_stage_name(s));
    char *a = rows_text(r1.report), *b = rows_text(r2.report);
    CHECK(!strcmp(a, b));
    free(b);
    json_t *t = json_load_file(dr_test_path(out, "times.json"), 0, NULL);
    CHECK(t && json_array_size(json_object_get(t, "stages")) == PIPELINE_N_STAGES);
    CHECK(json_is_true(json_object_get(json_array_get(json_object_get(t, "stages"), 0), "reused")));
    json_decref(t);
    pipeline_result_free(&r2);
    /* other settings: refused, naming the first output that differs; force rebuilds only what changed */
    pipeline_budget other = *o.budget;
    other.eval_users = 4;
    o.budget = &other;
    CHECK_ERR(pipeline_run(&o, &r2), DR_ERR_ARG);
    CHECK(strstr(dr_error_message(), "valid_sasrec.json") == NULL && strstr(dr_error_message(), "eval_sasrec.json"));
    o.force = 1;
    CHECK_OK(pipeline_run(&o, &r2));
    for (int s = 0; s < PIPELINE_EVAL; s++) CHECK(r2.stages[s].reused);
    CHECK(!r2.stages[PIPELINE_EVAL].reused);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(r2.report, "rows"), 0), "users")), 4);
    pipeline_result_free(&r2);
    const int anchor = other.ws_anchor;
    other.ws_anchor = 3; /* 0 off, 1 the open call first, 2 last */
    CHECK_ERR(pipeline_run(&o, &r2), DR_ERR_ARG);
    CHECK(strstr(dr_error_message(), "ws_anchor is 3") != NULL);
    other.ws_anchor = anchor;
    free(a);
    pipeline_result_free(&r1);
}

static const char *bin(void) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    return b;
}

/* runs the CLI; returns the wait status */
static int run_cli(const char *cmd) {
    int st = system(cmd);
    CHECK(st != -1);
    return st;
}

/* --until stops after a stage (nothing of the later stages is made, no report); a run without RL
 * steps skips both RL stages and their rows and reuses what --until made */
TEST(pipeline_until_and_no_rl) {
    const char *dir = dr_test_tmpdir();
    char data[1024], out[512];
    snprintf(data, sizeof data, "%s", tiny_data(dir));
    snprintf(out, sizeof out, "%s/run", dir);
    pipeline_budget b = *pipeline_budget_get("test");
    b.rl1_steps = 0;
    b.rl2_steps = 0;
    pipeline_opts o;
    pipeline_opts_default(&o);
    o.data = data;
    o.out_dir = out;
    o.budget = &b;
    o.until = PIPELINE_TRM_PREF;
    pipeline_result r;
    CHECK_OK(pipeline_run(&o, &r));
    CHECK(r.report == NULL && r.report_md == NULL);
    CHECK(dr_file_exists(dr_test_path(out, "sasrec.gguf")) && dr_file_exists(dr_test_path(out, "trm.gguf")));
    CHECK(!dr_file_exists(dr_test_path(out, "traj_ws.jsonl")) && !dr_file_exists(dr_test_path(out, "report.json")));
    pipeline_result_free(&r);
    o.until = -1;
    CHECK_OK(pipeline_run(&o, &r));
    CHECK(r.stages[PIPELINE_TRM_SASREC].reused && r.stages[PIPELINE_TRM_PREF].reused);
    CHECK(r.stages[PIPELINE_RL1].skipped && r.stages[PIPELINE_RL2].skipped);
    CHECK(!dr_file_exists(dr_test_path(out, "policy1.gguf")) && !dr_file_exists(dr_test_path(out, "policy2.gguf")));
    json_t *rows = json_object_get(r.report, "rows");
    CHECK_EQ_INT((int)json_array_size(rows), n_rows_expected() - 2);
    size_t i;
    json_t *row;
    int free_row = 0;
    json_array_foreach(rows, i, row) {
        const char *id = json_string_value(json_object_get(row, "id"));
        CHECK(id && strncmp(id, "deeprec_rl", 10));
        free_row += id && !strcmp(id, "deeprec_warm_free");
    }
    CHECK_EQ_INT(free_row, 1);
    pipeline_result_free(&r);
}

TEST(pipeline_cli_kill_in_each_stage_resumes) {
    const char *b = bin();
    const char *dir = dr_test_tmpdir();
    const char *data = tiny_data(dir);
    char cmd[2048];
    /* the uninterrupted reference */
    snprintf(cmd, sizeof cmd, "%s pipeline --data %s --out %s/ref --budget test --quiet --json > %s/ref.json 2>%s/ref.err",
             b, data, dir, dir, dir);
    CHECK_MSG(run_cli(cmd) == 0, "reference run failed (%s/ref.err)", dir);
    json_t *ref = json_load_file(dr_test_path(dir, "ref.json"), 0, NULL);
    CHECK(ref != NULL);
    check_report(ref);
    /* one directory killed once in the middle of each stage in turn: every stage continues an
     * interrupted predecessor (--resume) before it is itself killed */
    for (int s = 0; s < PIPELINE_REPORT; s++) {
        snprintf(cmd, sizeof cmd,
                 "DEEPREC_PIPELINE_KILL_AT=%s %s pipeline --data %s --out %s/k --budget test --resume --quiet "
                 ">/dev/null 2>%s/kill.err",
                 pipeline_stage_name(s), b, data, dir, dir);
        int st = run_cli(cmd);
        /* system() runs sh: a killed child shows as 128 + 9 from the shell */
        CHECK_MSG((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) || (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGKILL),
                  "stage %s: expected a kill, status %d (%s/kill.err)", pipeline_stage_name(s), st, dir);
    }
    snprintf(cmd, sizeof cmd, "%s pipeline --data %s --out %s/k --budget test --resume --quiet --json > %s/k.json 2>%s/k.err",
             b, data, dir, dir, dir);
    CHECK_MSG(run_cli(cmd) == 0, "resumed run failed (%s/k.err)", dir);
    json_t *k = json_load_file(dr_test_path(dir, "k.json"), 0, NULL);
    CHECK(k != NULL);
    /* every stage is deterministic at a fixed thread count (TRM and RL resume exactly, the
     * others restart), so the resumed table equals the uninterrupted one */
    char *a = rows_text(ref), *c = rows_text(k);
    CHECK_MSG(!strcmp(a, c), "reports differ:\n%s\n%s", a, c);
    /* the TRM and RL stages resumed from their checkpoints in the runs after their kills */
    free(a);
    free(c);
    json_decref(ref);
    json_decref(k);
}

/* --set: the classic recipe (ws_best_of=0) runs through the CLI with the per-seed files and no
 * warm-start file; an unknown key is a usage error that lists the keys */
TEST(pipeline_cli_set_classic_recipe) {
    const char *b = bin();
    const char *dir = dr_test_tmpdir();
    const char *data = tiny_data(dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s pipeline --data %s --out %s/c --budget test --set nope=1 --quiet >/dev/null 2>%s/bad.err",
             b, data, dir, dir);
    int st = run_cli(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    char *err = NULL;
    size_t n;
    CHECK_OK(dr_read_file(dr_test_path(dir, "bad.err"), &err, &n));
    CHECK(strstr(err, "nope") && strstr(err, "ws_best_of") && strstr(err, "trm_pref_empty"));
    free(err);
    CHECK(!dr_file_exists(dr_test_path(dir, "c/trm.gguf")));
    snprintf(cmd, sizeof cmd,
             "%s pipeline --data %s --out %s/c --budget test --set ws_best_of=0 --set trm_pref_empty=0.5 --quiet --json "
             "> %s/c.json 2>%s/c.err",
             b, data, dir, dir, dir);
    CHECK_MSG(run_cli(cmd) == 0, "classic run failed (%s/c.err)", dir);
    json_t *rep = json_load_file(dr_test_path(dir, "c.json"), 0, NULL);
    CHECK(rep != NULL);
    check_report(rep);
    json_t *set = json_object_get(rep, "settings");
    CHECK_EQ_INT(json_integer_value(json_object_get(set, "ws_best_of")), 0);
    CHECK(json_number_value(json_object_get(set, "trm_pref_empty")) == 0.5);
    json_decref(rep);
    CHECK(dr_file_exists(dr_test_path(dir, "c/traj_s1.jsonl")) && dr_file_exists(dr_test_path(dir, "c/traj_s3.jsonl")));
    CHECK(dr_file_exists(dr_test_path(dir, "c/tiny_sft1.gguf")) && !dr_file_exists(dr_test_path(dir, "c/traj_ws.jsonl")));
    char *key = NULL;
    CHECK_OK(dr_read_file(dr_test_path(dir, "c/trm.gguf.key"), &key, &n));
    CHECK(strstr(key, "pref_empty 0.5\n") != NULL);
    free(key);
}
