/* deeprec pipeline: the whole method on one dataset (TRMs, warm start, tokenizer, tiny model,
 * SFT, RL stages 1 and 2, evaluation, report), resumable stage by stage. */
#include "deeprec/dist.h"
#include "cli.h"
#include "deeprec/pipeline.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct stage_print {
    FILE *out;
} stage_print;

static void on_stage(void *ctx, int stage, const pipeline_stage_info *in) {
    stage_print *sp = ctx;
    if (!sp->out) return;
    if (!in) {
        fprintf(sp->out, "==== pipeline %d/%d: %s\n", stage + 1, PIPELINE_N_STAGES, pipeline_stage_name(stage));
        return;
    }
    fprintf(sp->out, "==== pipeline %d/%d: %s %s, %.1f s wall, %.1f s CPU\n", stage + 1, PIPELINE_N_STAGES,
            pipeline_stage_name(stage), in->reused ? "reused" : in->resumed ? "resumed and done" : "done", in->wall_s,
            in->cpu_s);
}

static int cmd_pipeline(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *budget_s = "demo", *until = NULL;
    int resume = 0, force = 0, json = 0, quiet = 0;
    cli_strs sets = {0};
    cli_opt opts[] = {
        {"--data", CLI_STR, &data, "dataset with titles (.gguf, from `deeprec data import`)"},
        {"--out", CLI_STR, &out, "output directory (created; outputs of earlier runs with the same settings are reused)"},
        {"--budget", CLI_STR, &budget_s, "demo (default), full or test: the sizes of every stage (docs/pipeline.md)"},
        {"--set", CLI_STRS, &sets,
         "KEY=VALUE: override one budget field by name (repeatable; e.g. ws_best_of=0, llm_dim=192)"},
        {"--resume", CLI_FLAG, &resume, "an interrupted stage continues from its checkpoint (TRM, RL) instead of restarting"},
        {"--until", CLI_STR, &until, "stop after this stage (trm_sasrec, trm_pref, synth, tokenizer, init, sft, rl1, rl2, eval)"},
        {"--force", CLI_FLAG, &force, "rebuild outputs made with other settings instead of refusing"},
        {"--quiet", CLI_FLAG, &quiet, "no progress output"},
        {"--json", CLI_FLAG, &json, "print report.json's object on stdout (instead of the markdown table)"},
    };
    int r;
    if (cli_parse_opts("deeprec pipeline --data D.gguf --out DIR [--budget demo|full|test] [--set KEY=VALUE]... [--resume] [--force] [--json]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data || !out) return cli_usage_error("pipeline needs --data and --out");
    if (dr_dist_size() > 1) /* its file stages would run on every rank: docs/distributed.md */
        return cli_usage_error("pipeline does not run under mpirun; run its stages trm train, llm sft, rl and eval "
                               "under mpirun instead");
    pipeline_opts o;
    pipeline_opts_default(&o);
    const pipeline_budget *named = pipeline_budget_get(budget_s);
    if (!named) return cli_usage_error("--budget must be one of %s (got '%s')", pipeline_budget_names(), budget_s);
    pipeline_budget budget = *named;
    for (int i = 0; i < sets.n; i++) {
        const char *eq = strchr(sets.v[i], '=');
        char key[64];
        if (!eq || eq == sets.v[i] || (size_t)(eq - sets.v[i]) >= sizeof key)
            return cli_usage_error("--set needs KEY=VALUE (got '%s')", sets.v[i]);
        memcpy(key, sets.v[i], (size_t)(eq - sets.v[i]));
        key[eq - sets.v[i]] = 0;
        if (pipeline_budget_set(&budget, key, eq + 1)) return cli_usage_error("--set %s: %s", sets.v[i], dr_error_message());
    }
    o.budget = &budget;
    /* testing hook (tests/pipeline): SIGKILL in the middle of this stage */
    const char *kill_at = getenv("DEEPREC_PIPELINE_KILL_AT");
    if (kill_at && *kill_at) {
        o.kill_at = pipeline_stage_from_name(kill_at);
        if (o.kill_at < 0) return cli_usage_error("DEEPREC_PIPELINE_KILL_AT: unknown stage '%s'", kill_at);
    }
    if (until) {
        o.until = pipeline_stage_from_name(until);
        if (o.until < 0 || o.until >= PIPELINE_REPORT) return cli_usage_error("--until: unknown stage '%s'", until);
    }
    stage_print sp = {quiet ? NULL : stderr};
    o.data = data;
    o.out_dir = out;
    o.resume = resume;
    o.force = force;
    o.progress = quiet ? NULL : stderr;
    o.on_stage = on_stage;
    o.on_stage_ctx = &sp;
    pipeline_result res;
    if (pipeline_run(&o, &res)) return cli_fail();
    if (o.until >= 0) {
        if (!quiet) fprintf(stderr, "pipeline: stopped after stage %s (--until), %.1f s wall\n", until, res.wall_s);
    } else if (json) {
        cli_print_json(json_incref(res.report), CLI_JSON);
    } else {
        fputs(res.report_md, stdout);
    }
    if (!quiet && o.until < 0)
        fprintf(stderr, "pipeline: done in %.1f s wall, %.1f s CPU; %s/report.json, %s/report.md, %s/times.json\n",
                res.wall_s, res.cpu_s, out, out, out);
    pipeline_result_free(&res);
    return 0;
}
CLI_COMMAND(pipeline, "pipeline", "the whole method on one dataset: TRMs, warm start, SFT, RL 1 and 2, eval, report",
            cmd_pipeline)
