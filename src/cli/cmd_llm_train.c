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

static int parse_type(const char *s, uint32_t *t) {
    if (!s || !strcmp(s, "f32")) *t = GGML_TYPE_F32;
    else if (!strcmp(s, "f16")) *t = GGML_TYPE_F16;
    else if (!strcmp(s, "bf16")) *t = GGML_TYPE_BF16;
    else if (!strcmp(s, "q8_0")) *t = GGML_TYPE_Q8_0;
    else return -1;
    return 0;
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
    int np = 0;
    int pr = cli_parse("deeprec llm sft --model M.gguf --data TRAJ.jsonl --out M2.gguf [--lora R] [--epochs E] [--lr LR] "
                       "[--batch B] [--max-len T] [--seed S] [--json]",
                       argc, argv, opts, (int)(sizeof opts / sizeof *opts), NULL, 0, &np);
    if (pr) return pr > 0 ? 0 : 2;
    if (!model_path || !data_path || !out) return cli_usage_error("llm sft: --model, --data and --out are required");
    if (lora < 0 || epochs <= 0 || batch <= 0 || accum <= 0 || max_len < 0)
        return cli_usage_error("llm sft: --lora >= 0, --epochs, --batch, --accum > 0 and --max-len >= 0 required");
    uint32_t type;
    if (parse_type(type_s, &type)) return cli_usage_error("llm sft: unknown --type '%s'", type_s);
    int sched = !strcmp(sched_s, "constant") ? LLM_SCHED_CONSTANT
              : !strcmp(sched_s, "linear")   ? LLM_SCHED_LINEAR
              : !strcmp(sched_s, "cosine")   ? LLM_SCHED_COSINE
                                             : -1;
    if (sched < 0) return cli_usage_error("llm sft: unknown --sched '%s' (constant, linear, cosine)", sched_s);
    unsigned targets = 0;
    if (lora && llm_lora_parse_targets(targets_s, &targets)) return cli_fail();

    llm_model *m = NULL;
    llm_train *t = NULL;
    llm_sft_data d = {0};
    int32_t *perm = NULL, *tok = NULL, *lens = NULL;
    uint8_t *mask = NULL;
    dr_jsonl metrics = {0};
    dr_progress prog;
    int rc = llm_model_load(&m, model_path);
    if (rc) goto fail;
    if (!m->tok) {
        rc = dr_error(DR_ERR_ARG, "%s has no tokenizer metadata (tokenizer.ggml.*)", model_path);
        goto fail;
    }
    if (!max_len) max_len = m->cfg.context < 512 ? m->cfg.context : 512;
    if ((rc = llm_sft_load(&d, data_path, m->tok, max_len, tok_eos(m->tok)))) goto fail;
    int T = 2;
    for (int i = 0; i < d.n; i++) T = d.ex[i].len > T ? d.ex[i].len : T;
    if (batch > d.n) batch = d.n;
    const int64_t per_epoch = (d.n + (int64_t)batch * accum - 1) / ((int64_t)batch * accum);
    const int64_t total = per_epoch * epochs; /* the schedule's length (--max-steps only stops early) */
    const int64_t stop = max_steps > 0 && max_steps < total ? max_steps : total;

    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = batch, tc.max_len = T, tc.recompute = recompute, tc.lora_rank = lora, tc.lora_alpha = (float)alpha;
    tc.lora_targets = targets, tc.seed = (uint64_t)seed;
    tc.lr = (float)(lr > 0 ? lr : lora ? 2e-4 : 1e-3);
    tc.weight_decay = (float)wd, tc.grad_clip = (float)clip, tc.sched = sched, tc.total_steps = total;
    tc.warmup_steps = warmup >= 0 ? warmup : total / 20;
    tc.min_lr_ratio = (float)min_ratio;
    if ((rc = llm_train_new(&t, m, &tc))) goto fail;
    if (resume && (rc = llm_train_load_state(t, resume))) goto fail;
    if (metrics_path && (rc = dr_jsonl_open(&metrics, metrics_path, resume != NULL))) goto fail;
    perm = dr_calloc((size_t)d.n, sizeof *perm);
    tok = dr_calloc((size_t)batch * T, sizeof *tok);
    mask = dr_calloc((size_t)batch * T, 1);
    lens = dr_calloc((size_t)batch, sizeof *lens);
    if (!perm || !tok || !mask || !lens) {
        rc = DR_ERR_NOMEM;
        goto fail;
    }
    if (!quiet) fprintf(stderr, "llm sft: %d examples (%lld tokens, %lld in the loss), %s, %zu trainable parameters, "
                                "%lld steps, activations+state %.1f MB\n",
                        d.n, (long long)d.n_tokens, (long long)d.n_targets, lora ? "LoRA" : "full fine-tuning",
                        llm_train_n_params(t), (long long)total, llm_train_memory_bytes(t) / 1e6);
    dr_progress_start(&prog, quiet ? NULL : stderr, "sft", stop, "steps");
    dr_progress_update(&prog, llm_train_steps(t));
    double first = NAN, last = NAN, best = INFINITY;
    int64_t tokens = 0;
    double t0 = dr_now();
    dr_rng order_root = *llm_train_rng(t);
    int64_t *user = llm_train_user(t); /* user[0] = epoch, user[1] = next example index in the epoch order */
    while (llm_train_steps(t) < stop && user[0] < epochs) {
        for (int i = 0; i < d.n; i++) perm[i] = i;
        dr_rng er = dr_rng_split(&order_root, (uint64_t)user[0]);
        dr_rng_shuffle_i32(&er, perm, (size_t)d.n);
        while (user[1] < d.n && llm_train_steps(t) < stop) {
            /* total weight of the step (token mean over all its micro-batches) */
            int64_t pos = user[1], end = pos + (int64_t)batch * accum;
            if (end > d.n) end = d.n;
            double wtot = 0;
            for (int64_t i = pos; i < end; i++) {
                const llm_sft_example *e = &d.ex[perm[i]];
                for (int k = 1; k < e->len; k++) wtot += e->mask[k];
            }
            double ce_step = 0, w_step = 0;
            for (int64_t p0 = pos; p0 < end; p0 += batch) {
                int nb = (int)(end - p0 < batch ? end - p0 : batch), bt = 2;
                for (int b = 0; b < nb; b++) bt = d.ex[perm[p0 + b]].len > bt ? d.ex[perm[p0 + b]].len : bt;
                memset(mask, 0, (size_t)nb * bt);
                for (int b = 0; b < nb; b++) {
                    const llm_sft_example *e = &d.ex[perm[p0 + b]];
                    memcpy(tok + (size_t)b * bt, e->tokens, (size_t)e->len * sizeof *tok);
                    memcpy(mask + (size_t)b * bt, e->mask, (size_t)e->len);
                    lens[b] = e->len;
                    tokens += e->len;
                }
                llm_batch bb = {nb, bt, tok, lens, NULL, mask, NULL, NULL, NULL};
                double ce, w;
                if ((rc = llm_train_sft(t, &bb, (float)wtot, &ce, &w))) goto fail;
                ce_step += ce, w_step += w;
            }
            float gnorm = 0, lr_used = llm_train_lr(t);
            rc = llm_train_step(t, &gnorm);
            if (rc == DR_ERR_RANGE) {
                dr_log(DR_LOG_WARN, "%s", dr_error_message());
                rc = DR_OK;
            } else if (rc) goto fail;
            user[1] = end;
            double loss = w_step > 0 ? ce_step / w_step : 0;
            if (isnan(first)) first = loss;
            last = loss;
            if (loss < best) best = loss;
            double el = dr_now() - t0;
            dr_progress_set_extra(&prog, "loss %.4f lr %.2e", loss, lr_used);
            dr_progress_update(&prog, llm_train_steps(t));
            if (metrics.fp) {
                json_t *j = json_pack("{s:I, s:I, s:f, s:f, s:f, s:I, s:f}", "step", (json_int_t)llm_train_steps(t),
                                      "epoch", (json_int_t)user[0], "loss", loss, "lr", (double)lr_used, "grad_norm",
                                      (double)gnorm, "tokens", (json_int_t)tokens, "tokens_per_s",
                                      el > 0 ? tokens / el : 0.0);
                if (j) {
                    dr_jsonl_write(&metrics, j);
                    json_decref(j);
                }
            }
        }
        if (user[1] >= d.n) user[0]++, user[1] = 0;
    }
    dr_progress_finish(&prog);
    double el = dr_now() - t0;
    if ((rc = llm_train_save_model(t, m->tok, type, out))) goto fail;
    if (save_state && (rc = llm_train_save_state(t, save_state))) goto fail;
    if (json) {
        json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:I, s:i, s:I, s:I, s:s}", "first_loss", isnan(first) ? 0.0 : first,
                              "last_loss", isnan(last) ? 0.0 : last, "best_loss", isinf(best) ? 0.0 : best,
                              "tokens_per_s", el > 0 ? tokens / el : 0.0, "steps", (json_int_t)llm_train_steps(t),
                              "examples", d.n, "tokens", (json_int_t)tokens, "params", (json_int_t)llm_train_n_params(t),
                              "out", out);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else if (!quiet) {
        fprintf(stderr, "loss %.4f -> %.4f (best %.4f), %.0f tokens/s; wrote %s\n", first, last, best,
                el > 0 ? tokens / el : 0.0, out);
    }
    dr_jsonl_close(&metrics);
    free(perm), free(tok), free(mask), free(lens);
    llm_sft_free(&d);
    llm_train_free(t);
    llm_model_free(m);
    return 0;
fail:
    if (metrics.fp) dr_jsonl_close(&metrics);
    free(perm), free(tok), free(mask), free(lens);
    llm_sft_free(&d);
    llm_train_free(t);
    llm_model_free(m);
    return cli_fail();
}
CLI_COMMAND(llm_sft, "llm sft", "supervised fine-tuning (full or LoRA) on prompt/completion JSON lines", cmd_sft)
