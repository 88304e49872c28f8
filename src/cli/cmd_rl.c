/* deeprec rl: the two RL stages of DeepRec (DESIGN §7). */
#include "cli.h"
#include "deeprec/data.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/rl.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void print_rl(const rl_result *res, int stage, const char *out, int json) {
    if (json) {
        json_t *j = json_pack("{s:o, s:i, s:I, s:I, s:i, s:f, s:f, s:f}", "out", dr_json_text(out, (size_t)-1), "stage", stage, "steps",
                              (json_int_t)res->steps_done, "resumed_from", (json_int_t)res->start_step, "users_selected",
                              res->n_selected, "first_reward", res->first_reward, "last_reward", res->last_reward, "seconds",
                              res->seconds);
        if (res->n_probe > 0) {
            json_object_set_new(j, "probe_users", json_integer(res->n_probe));
            json_object_set_new(j, "probe_start_reward", res->probed_start ? json_real(res->probe_start) : json_null());
            json_object_set_new(j, "probe_last_reward", res->probed_last ? json_real(res->probe_last) : json_null());
        }
        if (res->n_valid > 0) {
            json_object_set_new(j, "keep_best_users", json_integer(res->n_valid));
            json_object_set_new(j, "best_step", json_integer(res->best_step));
            json_object_set_new(j, "best_valid_ndcg@10", json_real(res->best_ndcg10));
        }
        cli_print_json(j, CLI_JSON);
    } else {
        printf("rl stage %d: %lld steps (from %lld), %d users selected, mean reward %.4f -> %.4f, %.1f s -> %s\n", stage,
               (long long)res->steps_done, (long long)res->start_step, res->n_selected, res->first_reward, res->last_reward,
               res->seconds, out);
        if (res->n_probe > 0 && res->probed_start && res->probed_last)
            printf("rl stage %d: held-out probe (%d users) mean reward %.4f before step 1 -> %.4f after the last step\n",
                   stage, res->n_probe, res->probe_start, res->probe_last);
        if (res->n_valid > 0)
            printf("rl stage %d: kept the policy of step %lld (%s), validation NDCG@10 %.4f on %d users\n", stage,
                   (long long)res->best_step, res->best_step == 0 ? "the input" : "best", res->best_ndcg10, res->n_valid);
    }
}

/* The flags as given: 0, -1 or NULL where not given, so that the stage's defaults
 * (rl_opts_default) stay. */
typedef struct rl_flags {
    const char *data_path, *trm_path, *llm_path, *tok_path, *out, *adv, *metrics, *curve, *prev, *lora_targets, *type;
    int stage, steps, prompts, samples, lora, json, resume, updates, epochs, micro, slots, ctx, select_k, save_every,
        substring, recompute, quiet, probe, probe_samples, keep_best, keep_best_every;
    double lr, kl, temp, top_p, clip_low, clip_high, lora_alpha, grad_clip, probe_temp;
    int64_t seed;
    cli_rollout ro;
} rl_flags;

/* 0, or the exit code (2: usage error, 1: library error) with the message printed. */
static int rl_opts_from_flags(const rl_flags *f, rl_opts *o) {
    rl_opts_default(o, f->stage);
    if (f->steps) o->steps = f->steps;
    if (f->prompts) o->prompts = f->prompts;
    if (f->samples) o->samples = f->samples;
    if (f->lr) o->lr = (float)f->lr;
    o->lora_rank = f->lora;
    o->lora_alpha = (float)f->lora_alpha;
    if (f->lora_targets && llm_lora_parse_targets(f->lora_targets, &o->lora_targets)) return cli_fail();
    o->adv = rl_adv_from_name(f->adv);
    if (o->adv < 0) return cli_usage_error("--adv must be reinforce++ or grpo (got '%s')", f->adv);
    if (f->kl >= 0) o->ppo.kl_beta = (float)f->kl;
    if (f->clip_low >= 0) o->ppo.clip_low = (float)f->clip_low;
    if (f->clip_high >= 0) o->ppo.clip_high = (float)f->clip_high;
    if (f->grad_clip >= 0) o->grad_clip = (float)f->grad_clip;
    if (f->updates) o->updates = f->updates;
    if (f->epochs) o->epochs = f->epochs;
    if (f->micro) o->micro = f->micro;
    o->recompute = f->recompute;
    if (f->temp >= 0) o->temperature = (float)f->temp;
    if (f->top_p >= 0) o->top_p = (float)f->top_p;
    o->slots = f->slots;
    o->max_ctx = f->ctx;
    o->rollout = f->ro.ro;
    if (f->select_k >= 0) o->select_k = f->select_k;
    o->substring_hit = f->substring;
    if (f->probe < 0 || f->probe_temp < 0 || f->probe_samples < 0)
        return cli_usage_error("--probe, --probe-temp and --probe-samples must be >= 0");
    if (f->probe_samples > 1 && f->probe_temp <= 0)
        return cli_usage_error("--probe-samples > 1 needs --probe-temp > 0 (greedy episodes are all the same)");
    o->probe_samples = f->probe_samples;
    o->probe_users = f->probe;
    o->probe_temperature = (float)f->probe_temp;
    if (f->keep_best < 0 || f->keep_best_every < 0) return cli_usage_error("--keep-best and --keep-best-every must be >= 0");
    o->keep_best_users = f->keep_best;
    o->keep_best_every = f->keep_best_every;
    o->seed = (uint64_t)f->seed;
    if (f->save_every) o->save_every = f->save_every;
    o->resume = f->resume;
    o->metrics = f->metrics;
    o->curve = f->curve;
    o->prev_metrics = f->prev;
    o->llm_path = f->llm_path;
    o->out = f->out;
    o->progress = f->quiet || f->json ? NULL : stderr;
    if (cli_weight_type("rl", f->type, &o->out_type)) return 2;
    return 0;
}

static int cmd_rl(int argc, char **argv) {
    rl_flags f = {.adv = "reinforce++", .type = "f32", .select_k = -1, .kl = -1, .temp = -1, .top_p = -1,
                  .clip_low = -1, .clip_high = -1, .grad_clip = -1, .seed = 1};
    cli_rollout_init(&f.ro);
    cli_opt opts[] = {
        {"--stage", CLI_INT, &f.stage, "1 (tool use: format + count + diversity) | 2 (recommendation: format + list-wise + point-wise)"},
        {"--data", CLI_STR, &f.data_path, "dataset (.gguf)"},
        {"--trm", CLI_STR, &f.trm_path, "preference-aware TRM (.gguf): the tool and the reward embeddings"},
        {"--llm", CLI_STR, &f.llm_path, "initial policy (.gguf; stage 2: stage 1's output); also the KL reference / LoRA base"},
        {"--tokenizer", CLI_STR, &f.tok_path, "tokenizer when the model has none"},
        {"--out", CLI_STR, &f.out, "policy to write (.gguf, loadable by llm_model_load / llama.cpp)"},
        {"--steps", CLI_INT, &f.steps, "RL steps (stage 1: 20, stage 2: 80)"},
        {"--prompts", CLI_INT, &f.prompts, "users per step (128)"},
        {"--samples", CLI_INT, &f.samples, "samples per user, G (8)"},
        {"--lr", CLI_FLOAT, &f.lr, "learning rate (1e-6; tiny models: 1e-4 .. 5e-5)"},
        {"--lora", CLI_INT, &f.lora, "LoRA rank (0 = full fine-tuning)"},
        {"--lora-alpha", CLI_FLOAT, &f.lora_alpha, "LoRA alpha (2 x rank)"},
        {"--lora-targets", CLI_STR, &f.lora_targets, "q,k,v,o,gate,up,down | all (q,k,v,o)"},
        {"--adv", CLI_STR, &f.adv, "reinforce++ (group baseline + token whitening) | grpo"},
        {"--kl-beta", CLI_FLOAT, &f.kl, "k3 KL coefficient to the frozen --llm (0)"},
        {"--clip-low", CLI_FLOAT, &f.clip_low, "PPO clip below 1 (0.2)"},
        {"--clip-high", CLI_FLOAT, &f.clip_high, "PPO clip above 1 (0.28)"},
        {"--grad-clip", CLI_FLOAT, &f.grad_clip, "global gradient-norm clip (1.0)"},
        {"--updates", CLI_INT, &f.updates, "optimizer steps (mini-batches) per RL step (2)"},
        {"--epochs", CLI_INT, &f.epochs, "passes over each rollout batch (1)"},
        {"--micro", CLI_INT, &f.micro, "sequences per micro-batch (4)"},
        {"--recompute", CLI_FLAG, &f.recompute, "activation checkpointing (less memory, one more forward)"},
        {"--temp", CLI_FLOAT, &f.temp, "rollout temperature (1.0)"},
        {"--top-p", CLI_FLOAT, &f.top_p, "rollout nucleus mass (0.95)"},
        {"--slots", CLI_INT, &f.slots, "decode slots (min(prompts x samples, 64))"},
        {"--ctx", CLI_INT, &f.ctx, "tokens per episode (min(model context, 4096))"},
        CLI_ROLLOUT_TURN_FLAG(f.ro),
        CLI_ROLLOUT_FLAGS(f.ro),
        {"--select-k", CLI_INT, &f.select_k, "train on users whose target is in the TRM's top K (100; 0 = all)"},
        {"--substring-hit", CLI_FLAG, &f.substring, "list-wise reward by the paper's substring rule"},
        {"--probe", CLI_INT, &f.probe, "held-out probe: N selected users kept out of training, scored before step 1 and after every step (0)"},
        {"--probe-temp", CLI_FLOAT, &f.probe_temp, "probe sampling temperature (0 = greedy)"},
        {"--probe-samples", CLI_INT, &f.probe_samples, "episodes per probe user with --probe-temp > 0 (1)"},
        {"--keep-best", CLI_INT, &f.keep_best,
         "N: --out is the input unless a validated step beats it in greedy NDCG@10 on N users' validation items with a paired 95% interval above zero (0 = the last step's)"},
        {"--keep-best-every", CLI_INT, &f.keep_best_every, "with --keep-best: validate every N steps and after the last (0: the last only)"},
        {"--seed", CLI_I64, &f.seed, "seed of user order and sampling (1)"},
        {"--save-every", CLI_INT, &f.save_every, "checkpoint every N steps (1)"},
        {"--type", CLI_STR, &f.type, "matrix type of --out: f32 | f16 | bf16 | q8_0 (f32)"},
        {"--resume", CLI_FLAG, &f.resume, "continue from the last checkpoint of --out"},
        {"--metrics", CLI_STR, &f.metrics, "JSON lines per step (OUT.metrics.jsonl)"},
        {"--curve", CLI_STR, &f.curve, "reward curve SVG (OUT.rewards.svg)"},
        {"--prev-metrics", CLI_STR, &f.prev, "earlier stage's JSON lines for the curve (LLM.metrics.jsonl when present)"},
        CLI_QUIET_JSON_OPTS(f.quiet, f.json),
    };
    int r;
    if (cli_parse_opts("deeprec rl --stage 1|2 --data DATA.gguf --trm TRM.gguf --llm M.gguf --out POLICY.gguf [options]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (cli_rollout_finish(&f.ro)) return 2;
    if (f.stage != 1 && f.stage != 2) return cli_usage_error("rl needs --stage 1 or --stage 2");
    if (!f.data_path || !f.trm_path || !f.llm_path || !f.out) return cli_usage_error("rl needs --data, --trm, --llm and --out");
    rl_opts o;
    if ((r = rl_opts_from_flags(&f, &o))) return r;

    if (cli_claim_output(f.out, (const char *[]){f.data_path, f.trm_path, f.llm_path, f.tok_path}, 4)) return 1;
    cli_inputs in;
    rl_result res;
    int rc = cli_inputs_load(&in, f.data_path, f.trm_path, f.llm_path, f.tok_path);
    if (!rc) {
        rl_env env = {&in.data, in.trm, in.llm, in.tok};
        if (!(rc = rl_train(&env, &o, &res))) print_rl(&res, f.stage, f.out, f.json);
    }
    cli_inputs_free(&in);
    return rc ? cli_fail() : 0;
}
/* The reward curve on demand: rl_train draws it once, at the end. */
static int cmd_rl_curve(int argc, char **argv) {
    const char *out = NULL, *pos[8];
    cli_opt opts[] = {{"--out", CLI_STR, &out, "SVG to write"}};
    int np = 0, r;
    if (cli_parse_words("deeprec rl curve METRICS.jsonl [STAGE2.metrics.jsonl ...] --out CURVE.svg", argc, argv, opts,
                        CLI_NOPTS(opts), pos, 8, &np, &r))
        return r;
    if (!out || np < 1) return cli_usage_error("rl curve needs the JSON lines of rl (stage 1 first) and --out");
    if (cli_claim_output(out, pos, np)) return 1;
    if (rl_curve_svg(pos, np, out)) return cli_fail();
    return 0;
}
CLI_COMMAND(rl_curve, "rl curve", "the reward curve (SVG) of rl's JSON lines, e.g. while a run goes on", cmd_rl_curve)

CLI_COMMAND(rl, "rl", "RL of the agent: stage 1 (tool use) or stage 2 (recommendation), REINFORCE++ / GRPO", cmd_rl)
