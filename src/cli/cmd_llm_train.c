/* deeprec llm sft: supervised fine-tuning (full or LoRA) on prompt/completion JSON lines. */
#include "cli.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/tokenizer.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* No step ran: the losses print as 0 (JSON has no NaN or infinity). */
static void print_sft_json(const llm_sft_run_result *res, const char *out) {
    cli_print_json(json_pack("{s:f, s:f, s:f, s:f, s:I, s:i, s:I, s:I, s:o}", "first_loss",
                             isnan(res->first_loss) ? 0.0 : res->first_loss, "last_loss",
                             isnan(res->last_loss) ? 0.0 : res->last_loss, "best_loss",
                             isinf(res->best_loss) ? 0.0 : res->best_loss, "tokens_per_s", res->tokens_per_s, "steps",
                             (json_int_t)res->steps, "examples", res->examples, "tokens", (json_int_t)res->tokens,
                             "params", (json_int_t)res->params, "out", dr_json_text(out, (size_t)-1)),
                   JSON_COMPACT);
}

static int cmd_sft(int argc, char **argv) {
    const char *model_path = NULL, *data_path = NULL, *out = NULL, *metrics_path = NULL, *resume = NULL;
    const char *save_state = NULL, *sched_s = "cosine", *targets_s = "q,k,v,o", *type_s = "f32";
    int lora = 0, epochs = 1, batch = 8, max_len = 0, json = 0, accum = 1, recompute = 0, quiet = 0;
    int64_t seed = 1, warmup = -1, max_steps = 0;
    double lr = 0, wd = 0.0, clip = 1.0, alpha = 0, min_ratio = 0.1;
    cli_opt opts[] = {
        {"--model", CLI_STR, &model_path, "GGUF model (qwen2 / llama) with tokenizer metadata"},
        {"--data", CLI_STR, &data_path, "JSON lines {\"prompt\", \"completion\", \"mask\": [[start, end], ...]}"},
        {"--out", CLI_STR, &out, "output model GGUF (LoRA merged)"},
        {"--lora", CLI_INT, &lora, "LoRA rank (default 0 = full fine-tuning)"},
        {"--lora-alpha", CLI_FLOAT, &alpha, "LoRA alpha (default 2 x rank)"},
        {"--lora-targets", CLI_STR, &targets_s, "LoRA targets: q,k,v,o,gate,up,down or all (default q,k,v,o)"},
        {"--epochs", CLI_INT, &epochs, "passes over the data (default 1)"},
        {"--max-steps", CLI_I64, &max_steps, "stop after this many optimizer steps (default: all epochs)"},
        {"--lr", CLI_FLOAT, &lr, "peak learning rate (default 1e-3 full, 2e-4 LoRA)"},
        {"--sched", CLI_STR, &sched_s, "constant, linear or cosine (default)"},
        {"--warmup", CLI_I64, &warmup, "warmup steps (default 5% of the steps)"},
        {"--min-lr-ratio", CLI_FLOAT, &min_ratio, "final lr / peak lr for linear/cosine (default 0.1)"},
        {"--weight-decay", CLI_FLOAT, &wd, "AdamW weight decay on matrices (default 0)"},
        {"--clip", CLI_FLOAT, &clip, "global gradient-norm clip (default 1; 0 = off)"},
        {"--batch", CLI_INT, &batch, "sequences per micro-batch (default 8)"},
        {"--accum", CLI_INT, &accum, "micro-batches per optimizer step (default 1)"},
        {"--max-len", CLI_INT, &max_len, "tokens per sequence, longer ones truncated (default min(512, context))"},
        {"--recompute", CLI_FLAG, &recompute, "recompute layer activations in the backward (less memory)"},
        {"--seed", CLI_I64, &seed, "seed for the data order and LoRA init (default 1)"},
        {"--type", CLI_STR, &type_s, "weight type of the output model: f32 (default), f16, bf16, q8_0"},
        {"--metrics", CLI_STR, &metrics_path, "write JSON-lines metrics (one line per step) to this file"},
        {"--save-state", CLI_STR, &save_state, "write the optimizer state (GGUF) here at the end"},
        {"--resume", CLI_STR, &resume, "continue from an optimizer state (full: --model is the saved model; "
                                       "LoRA: --model is the original base)"},
        {"--quiet", CLI_FLAG, &quiet, "no progress bar"},
        {"--json", CLI_FLAG, &json, "print one JSON object with first/last/best loss and tokens/s"},
    };
    int pr;
    if (cli_parse_opts("deeprec llm sft --model M.gguf --data TRAJ.jsonl --out M2.gguf [--lora R] [--epochs E] [--lr LR] "
                       "[--batch B] [--max-len T] [--seed S] [--json]",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    if (!model_path || !data_path || !out) return cli_usage_error("llm sft: --model, --data and --out are required");
    if (lora < 0 || epochs <= 0 || batch <= 0 || accum <= 0 || max_len < 0)
        return cli_usage_error("llm sft: --lora >= 0, --epochs, --batch, --accum > 0 and --max-len >= 0 required");
    uint32_t type;
    if (cli_weight_type("llm sft", type_s, &type)) return 2;
    int sched = llm_lr_sched_from_name(sched_s);
    if (sched < 0) return cli_usage_error("llm sft: unknown --sched '%s' (constant, linear, cosine)", sched_s);
    unsigned targets = 0;
    if (lora && llm_lora_parse_targets(targets_s, &targets)) return cli_fail();

    const char *ins[] = {model_path, data_path, resume};
    if (cli_claim_output(out, ins, 3) || cli_claim_output(save_state, ins, 3) ||
        cli_claim_output(metrics_path, ins, 3))
        return 1;
    if (save_state && !strcmp(save_state, out))
        return cli_usage_error("llm sft: --save-state and --out are the same path");
    llm_sft_run_opts so;
    llm_sft_run_opts_default(&so);
    so.model = model_path, so.data = data_path, so.out = out;
    so.lora = lora, so.lora_alpha = (float)alpha, so.lora_targets = targets;
    so.epochs = epochs, so.max_steps = max_steps, so.lr = (float)lr, so.sched = sched, so.warmup = warmup;
    so.min_lr_ratio = (float)min_ratio, so.weight_decay = (float)wd, so.grad_clip = (float)clip;
    so.batch = batch, so.accum = accum, so.max_len = max_len, so.recompute = recompute, so.seed = (uint64_t)seed;
    so.out_type = type, so.metrics = metrics_path, so.save_state = save_state, so.resume = resume;
    /* --json keeps stderr's summary lines as before: only --quiet silences them */
    so.progress = quiet ? NULL : stderr;
    llm_sft_run_result res;
    if (llm_sft_run(&so, &res)) return cli_fail();
    if (json) print_sft_json(&res, out);
    return 0;
}
CLI_COMMAND(llm_sft, "llm sft", "supervised fine-tuning (full or LoRA) on prompt/completion JSON lines", cmd_sft)
