/* deeprec eval: the DeepRec agent and its baselines on test users (include/deeprec/evaluate.h). */
#include "cli.h"
#include "llm_url.h"
#include "deeprec/serve.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void print_eval(const eval_result *res, const eval_paired *pair, int n_modes, int ref, const eval_opts *eo,
                       const char *data_path, int64_t seed, const char *url, const agent_model *remote, int json) {
    if (json) {
        json_t *j;
        if (n_modes == 1) {
            j = eval_result_json(&res[0]);
            if (ref >= 0) json_object_set_new(j, "paired", eval_paired_json(&pair[0]));
        } else {
            j = json_object();
            json_t *a = json_object();
            for (int i = 0; i < n_modes; i++) {
                json_t *m = eval_result_json(&res[i]);
                if (ref >= 0) json_object_set_new(m, "paired", eval_paired_json(&pair[i]));
                json_object_set_new(a, eval_mode_name(res[i].mode), m);
            }
            json_object_set_new(j, "modes", a);
        }
        json_object_set_new(j, "data", dr_json_text(data_path, (size_t)-1));
        json_object_set_new(j, "seed", json_integer(seed));
        json_object_set_new(j, "split", json_string(eo->split == DR_SPLIT_VALID ? "valid" : "test"));
        json_object_set_new(j, "constrain", json_boolean(eo->rollout.constrain_titles));
        if (url) json_object_set_new(j, "llm_url", json_string(url));
        cli_print_json(j, CLI_JSON);
    } else {
        printf("deeprec eval on %s (%s; top-10 lists; seed %lld; constrained titles %s)\n", data_path,
               eo->split == DR_SPLIT_VALID ? "valid split: history seq[:-2], target seq[-2]"
                                           : "test split: history seq[:-1], target seq[-1]",
               (long long)seed,
               eo->rollout.constrain_titles ? "on" : url ? "off (a remote LLM gives no logits)" : "off");
        if (url) printf("LLM: %s at %s\n", serve_remote_model_name(remote), url);
        eval_report_table(res, n_modes, stdout);
        if (ref >= 0) eval_report_paired(pair, n_modes, stdout);
    }
}

/* The modes of a --mode list, the index of --paired's mode in it (-1: none), and what they need. */
typedef struct eval_plan {
    int modes[EVAL_N_MODES], n, ref, need_llm, need_trm;
} eval_plan;

/* 0, or the usage exit code 2 with the message printed. */
static int plan_modes(const char *modes, const char *paired, eval_plan *pl) {
    memset(pl, 0, sizeof *pl);
    pl->ref = -1;
    if (eval_modes_parse(modes, pl->modes, &pl->n)) return cli_usage_error("--mode: %s", dr_error_message());
    for (int i = 0; i < pl->n; i++) pl->need_llm |= eval_mode_uses_llm(pl->modes[i]), pl->need_trm |= pl->modes[i] != EVAL_DIRECT;
    if (paired) {
        int m = eval_mode_from_name(paired);
        for (int i = 0; i < pl->n && m >= 0; i++)
            if (pl->modes[i] == m) pl->ref = i;
        if (pl->ref < 0) return cli_usage_error("--paired %s: the reference must be one of the --mode list (%s)", paired, modes);
    }
    return 0;
}

/* Load paths[] (data, trm, llm, tokenizer; NULL = not needed) or connect to url's LLM, run
 * the plan, print. The exit code: 0, or 1 with the error printed. */
static int run_eval(const char *const paths[4], const cli_llm_url *url, double temp, double top_p, const eval_plan *pl,
                    const eval_opts *eo, int64_t seed, int quiet, int json) {
    cli_inputs in;
    agent_catalog *cat = NULL;
    agent_model remote = {0};
    eval_result res[EVAL_N_MODES];
    eval_paired pair[EVAL_N_MODES];
    memset(res, 0, sizeof res);
    int rc = cli_inputs_load(&in, paths[0], paths[1], paths[2], paths[3]);
    if (rc || (rc = agent_catalog_build(&in.data, &cat))) goto done;
    if (in.trm && trm_model_config(in.trm)->model == TRM_SASREC && !quiet)
        fprintf(stderr, "eval: note: %s is a plain SASRec model: tool calls retrieve by history alone "
                        "(the preference text is ignored)\n", paths[1]);
    if (pl->need_llm && url->url) {
        if (cli_llm_url_model(url, temp, top_p, eo->seed, eo->rollout.max_turn_tokens, &remote)) {
            rc = -1; /* printed */
            goto done;
        }
        if (remote.n_slots < eo->samples) {
            rc = dr_error(DR_ERR_ARG, "--samples %d needs --llm-parallel >= %d", eo->samples, eo->samples);
            goto done;
        }
    } else if (pl->need_llm && !in.tok && !in.llm->tok) {
        rc = dr_error(DR_ERR_ARG, "%s has no tokenizer", paths[2]);
        dr_error_hint("pass --tokenizer TOK.gguf (or a tokenizer.json)");
        goto done;
    }
    eval_inputs ein = {&in.data, cat, in.trm, in.llm, in.tok, remote.ctx ? &remote : NULL};
    if (!(rc = eval_run_modes(&ein, eo, pl->modes, pl->n, pl->ref, res, pair)))
        print_eval(res, pair, pl->n, pl->ref, eo, paths[0], seed, url->url, &remote, json);
done: /* rc != 0 on the failure paths */
    for (int i = 0; i < pl->n; i++) eval_result_free(&res[i]);
    agent_catalog_free(cat);
    serve_remote_model_free(&remote);
    cli_inputs_free(&in);
    return rc < 0 ? 1 : rc ? cli_fail() : 0;
}

static int cmd_eval(int argc, char **argv) {
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL, *tok_path = NULL, *modes = "deeprec",
               *paired = NULL, *split = "test";
    eval_opts eo;
    eval_opts_default(&eo);
    cli_rollout ro;
    cli_rollout_init(&ro);
    cli_llm_url url = CLI_LLM_URL_DEFAULT;
    int teacher_varied = 0, teacher_anchor = 0;
    int json = 0, quiet = 0, threads = 0;
    double temp = 0.0, top_p = 1.0;
    int64_t seed = 1;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data_path, "dataset (.gguf)"},
        {"--trm", CLI_STR, &trm_path, "TRM (.gguf: pref model, or sasrec = no preference); not for --mode direct"},
        {"--llm", CLI_STR, &llm_path, "policy model (.gguf, qwen2/llama); not needed for --mode trm or teacher"},
        {"--tokenizer", CLI_STR, &tok_path, "tokenizer when the model has none (GGUF or tokenizer.json)"},
        {"--mode", CLI_STR, &modes, "deeprec | trm | rerank | direct | teacher, or a comma list (deeprec)"},
        {"--users", CLI_INT, &eo.users, "test users (0 = all, the default; N = the first N after a seeded shuffle)"},
        {"--split", CLI_STR, &split, "test | valid: whose target and history (test; valid for model selection)"},
        {"--seed", CLI_I64, &seed, "user selection, sampling, teacher and bootstrap seed (1)"},
        {"--bootstrap", CLI_INT, &eo.bootstrap, "resamples of users for the 95% intervals (1000; 0 = off)"},
        {"--paired", CLI_STR, &paired, "MODE: per-user differences of every mode against MODE (one of --mode)"},
        {"--temp", CLI_FLOAT, &temp, "sampling temperature (0 = greedy)"},
        {"--top-k", CLI_INT, &eo.top_k, "sampling top-k (0 = off)"},
        {"--top-p", CLI_FLOAT, &top_p, "nucleus sampling mass (1 = off)"},
        {"--samples", CLI_INT, &eo.samples, "episodes per user (1)"},
        CLI_ROLLOUT_FLAGS(ro),
        CLI_ROLLOUT_TURN_FLAG(ro),
        {"--ctx", CLI_INT, &eo.n_ctx, "context per sequence in tokens (0 = min(model, 4096))"},
        {"--batch", CLI_INT, &eo.batch, "sequences decoded together (16)"},
        {"--teacher-varied", CLI_FLAG, &teacher_varied, "teacher mode: preferences from the wider pool of kinds"},
        {"--teacher-anchor", CLI_FLAG, &teacher_anchor,
         "teacher mode: an open first call (the TRM's own list) leads the answer (docs/warmstart.md)"},
        {"--threads", CLI_INT, &threads, "threads (default: DEEPREC_THREADS or all cores)"},
        CLI_QUIET_JSON_OPTS(quiet, json),
        CLI_LLM_URL_OPTS(url, "--api-key-env"),
    };
    int r;
    if (cli_parse_opts("deeprec eval --data DATA.gguf --trm TRM.gguf --llm M.gguf --mode deeprec|trm|rerank|direct|teacher "
                       "[options]", argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    eval_plan pl;
    if ((r = plan_modes(modes, paired, &pl))) return r;
    if (!data_path) return cli_usage_error("eval needs --data");
    if (pl.need_trm && !trm_path) return cli_usage_error("eval --mode %s needs --trm", modes);
    if (pl.need_llm && !llm_path && !url.url) return cli_usage_error("eval --mode %s needs --llm or --llm-url", modes);
    if (eo.users < 0 || eo.samples < 1 || eo.batch < 1 || eo.n_ctx < 0 || temp < 0 || eo.bootstrap < 0)
        return cli_usage_error("eval: --users >= 0, --samples >= 1, --batch >= 1, --ctx >= 0, --temp >= 0, "
                               "--bootstrap >= 0");
    eo.split = dr_data_split_from_name(split);
    if (eo.split != DR_SPLIT_TEST && eo.split != DR_SPLIT_VALID) return cli_usage_error("--split %s: test or valid", split);
    int constrained;
    if ((r = cli_llm_url_check(&url, llm_path != NULL, ro.constrain, quiet || json, &constrained))) return r;
    if (url.url) ro.constrain = "off";
    if (cli_rollout_finish(&ro)) return 2;
    if (threads > 0) dr_threads_set(threads);
    eo.seed = (uint64_t)seed;
    eo.bootstrap_seed = (uint64_t)seed;
    eo.temperature = (float)temp;
    eo.top_p = (float)top_p;
    eo.rollout = ro.ro;
    eo.progress = quiet || json ? NULL : stderr;
    agent_synth_opts so = {.chat = ro.ro.chat, .max_hist = ro.ro.max_hist, .tool_k = ro.ro.tool_k, .seed = eo.seed,
                           .varied = teacher_varied, .anchor = teacher_anchor};
    if (teacher_varied || teacher_anchor) eo.synth = &so;
    int local = pl.need_llm && !url.url; /* a remote LLM: nothing local to load */
    const char *paths[4] = {data_path, pl.need_trm ? trm_path : NULL, local ? llm_path : NULL, local ? tok_path : NULL};
    return run_eval(paths, &url, temp, top_p, &pl, &eo, seed, quiet || json, json);
}
CLI_COMMAND(eval, "eval", "evaluate the DeepRec agent or a baseline (trm, rerank, direct, teacher) on test users, with 95% CIs", cmd_eval)
