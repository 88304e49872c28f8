/* LLM training: fp32 forward + backward through the qwen2 / llama model of llm.h, per-token
 * weighted objectives (SFT cross-entropy, RL log-prob gradients), AdamW with gradient
 * accumulation, global-norm clipping and an LR schedule, LoRA, GGUF checkpoints.
 *
 * Batches. A batch is B sequences padded to T positions (T <= max_len of the trainer):
 * tokens[b*T + t] for t < len[b]; positions t >= len[b] are padding (their ids are not read).
 * Every per-token array of this API (weights, mask, logp, entropy, dlogp) is indexed like
 * tokens and refers to the TARGET token at that position: entry b*T + t (1 <= t < len[b]) is
 * about predicting tokens[b*T + t] from tokens[b*T + 0 .. t-1]. Entries with t == 0 or
 * t >= len[b] are never targets (outputs there are 0, inputs there are ignored).
 *
 * Modes.
 *  - Full fine-tuning: every weight is an fp32 master copy (converted from the llm_model's
 *    F32/F16/BF16/Q8_0 matrices); parameters, gradients and the two Adam moments are each
 *    one allocation. The source model's weights are not read after llm_train_new, but the
 *    model must outlive the trainer (its eos ids and tokenizer are used when saving).
 *  - LoRA (rank r > 0): the base model stays as loaded (its matrices may be BF16/Q8_0 in the
 *    mmap; it must outlive the trainer) and is frozen, norms and biases included. Each chosen
 *    projection W (out x in) gets y += (alpha/r) * (x A^T) B^T with A [r x in] ~ N(0, 1/in)
 *    (seeded) and B [out x r] = 0. Base forward uses llm_matmul; the base backward dX = dY W
 *    converts row tiles of W to fp32 on the fly and calls sgemm (no fp32 copy of the base).
 *
 * Activation memory is planned in llm_train_new for (max_batch, max_len): per layer the
 * residual input, norm outputs, q/k/v (after RoPE), attention probabilities, attention output,
 * gate/up of the MLP and LoRA intermediates. With recompute = 1 only the per-layer residual
 * inputs are kept and each layer is recomputed (into one layer's worth of buffers) during the
 * backward: about 1/n_layers of the activation memory for one extra forward.
 * Logits are kept for the whole batch when they fit in logit_budget bytes, else they are
 * computed in row chunks and recomputed in the backward.
 *
 * Determinism: with the same thread count, results are bitwise reproducible (fixed-order
 * reductions in nn kernels, OpenBLAS sgemm). A trainer must be used by one thread at a time. */
#ifndef DEEPREC_LLM_TRAIN_H
#define DEEPREC_LLM_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"
#include "deeprec/llm.h"

struct tokenizer;

/* LoRA targets (bit set). */
enum llm_lora_target {
    LLM_LORA_Q = 1, LLM_LORA_K = 2, LLM_LORA_V = 4, LLM_LORA_O = 8,
    LLM_LORA_GATE = 16, LLM_LORA_UP = 32, LLM_LORA_DOWN = 64, LLM_LORA_ALL = 127
};
/* Parse "q,k,v,o,gate,up,down" or "all" into a bit set; DR_ERR_ARG on an unknown name. */
int llm_lora_parse_targets(const char *s, unsigned *out);

enum llm_lr_sched { LLM_SCHED_CONSTANT = 0, LLM_SCHED_LINEAR = 1, LLM_SCHED_COSINE = 2 };
/* "constant" | "linear" | "cosine"; -1 when unknown. */
int llm_lr_sched_from_name(const char *s);

typedef struct llm_train_config {
    int max_batch;        /* sequences per micro-batch (activation plan) */
    int max_len;          /* positions per sequence (activation plan) */
    int recompute;        /* 1: checkpoint per layer (keep layer inputs, recompute in backward) */
    size_t logit_budget;  /* bytes of logits kept for the backward (default 256 MiB) */
    /* LoRA */
    int lora_rank;        /* 0: full fine-tuning */
    float lora_alpha;     /* scale = alpha / rank (default 2 * rank when 0) */
    unsigned lora_targets;/* enum llm_lora_target bits (default q,k,v,o when 0) */
    uint64_t seed;        /* LoRA A init; the trainer's rng (saved in the state) */
    /* AdamW (torch.optim.AdamW semantics) */
    float lr;             /* peak learning rate (default 1e-3) */
    float beta1, beta2;   /* default 0.9, 0.95 */
    float eps;            /* default 1e-8 */
    float weight_decay;   /* default 0.0; applied to matrices only (not norms, biases) */
    float grad_clip;      /* global-norm clip, <= 0 off (default 1.0) */
    /* schedule: lr(step) for the 0-based step s about to be taken:
     *   s < warmup: lr * (s + 1) / warmup
     *   else, p = (s - warmup) / max(1, total - warmup) clamped to [0, 1]:
     *   CONSTANT: lr;  LINEAR: lr * (1 - p (1 - min_ratio));
     *   COSINE: lr * (min_ratio + (1 - min_ratio) * 0.5 (1 + cos(pi p))) */
    int sched;            /* enum llm_lr_sched */
    int64_t warmup_steps;
    int64_t total_steps;  /* for LINEAR / COSINE */
    float min_lr_ratio;   /* default 0 */
} llm_train_config;

void llm_train_config_default(llm_train_config *c);

/* A batch (see the top of this file). weight and mask may be NULL (weight 1, all targets in). */
typedef struct llm_batch {
    int B, T;
    const int32_t *tokens; /* [B*T] */
    const int32_t *len;    /* [B], 1 <= len[b] <= T (len[b] == 0 allowed: an empty row) */
    const float *weight;   /* [B*T] per-target weight, or NULL */
    const uint8_t *mask;   /* [B*T] 1 = the target counts, or NULL */
    /* Restricted targets, or allow_n NULL (every target over the whole vocabulary): target k
     * with allow_n[k] > 0 is scored under the softmax renormalised over the distinct ids
     * allow_ids[allow_off[k] .. allow_off[k] + allow_n[k]), which must hold the target:
     * logp = logit[target] - logsumexp(logit[allowed]), entropy over that set, and the
     * backward's dlogits = dlogp (onehot - softmax over the set) on the set, 0 elsewhere.
     * (Title-constrained answers: the log-probs of the distribution actually sampled.) */
    const int32_t *allow_n;   /* [B*T] */
    const int32_t *allow_off; /* [B*T] */
    const int32_t *allow_ids;
} llm_batch;

typedef struct llm_train llm_train;

/* Build a trainer from a model (any storage type). Full fine-tuning copies the weights
 * into fp32; LoRA keeps a pointer to m (which must outlive the trainer). */
int llm_train_new(llm_train **out, const llm_model *m, const llm_train_config *c);
void llm_train_free(llm_train *t);
/* Trainable parameter count and bytes of the planned buffers (params+grads+Adam+activations). */
size_t llm_train_n_params(const llm_train *t);
size_t llm_train_memory_bytes(const llm_train *t);

/* ---- forward / backward (accumulating gradients) ----
 * Forward with the current weights; writes per-target log-probabilities logp[B*T] and
 * (optional) entropies of the predictive distribution entropy[B*T] (nats), 0 elsewhere.
 * Either output may be NULL. Keeps what a following llm_train_backward needs. */
int llm_train_forward(llm_train *t, const llm_batch *b, float *logp, float *entropy);
/* Backward of a caller-supplied objective L through the LAST forward:
 * dlogp[B*T] = dL/dlogp for each target (entries that are not targets are ignored).
 * Gradients are ADDED to the trainer's gradient buffers (accumulate micro-batches). */
int llm_train_backward(llm_train *t, const float *dlogp);
/* Same as llm_train_forward (alias for RL "old/ref log-probs"; no gradient work). */
int llm_train_logprobs(llm_train *t, const llm_batch *b, float *logp, float *entropy);

/* Supervised next-token cross-entropy: forward + backward of
 *     L = sum_i w_i * ce_i / norm   over targets i with mask_i != 0 (ce_i = -logp_i)
 * norm <= 0 means this batch's sum_i w_i (a weighted token mean); pass the total weight of all
 * micro-batches of an accumulated step to get the token mean over the whole step.
 * *ce_sum = sum w_i ce_i and *w_sum = sum w_i over counted targets (either may be NULL).
 * A batch with no counted target adds nothing. */
int llm_train_sft(llm_train *t, const llm_batch *b, float norm, double *ce_sum, double *w_sum);

/* ---- optimizer ---- */
void llm_train_zero_grad(llm_train *t);
/* Clip (global norm over all trainable gradients), AdamW with lr = llm_train_lr(t), step += 1,
 * zero the gradients. *grad_norm (may be NULL) gets the norm before clipping. A non-finite
 * norm skips the update (step not advanced, gradients zeroed) and returns DR_ERR_RANGE. */
int llm_train_step(llm_train *t, float *grad_norm);
float llm_train_lr(const llm_train *t);      /* lr of the next step */
int64_t llm_train_steps(const llm_train *t); /* steps taken */
/* Gradient buffers (for tests / custom optimizers): n floats, same layout as params. */
float *llm_train_params(llm_train *t, size_t *n);
float *llm_train_grads(llm_train *t, size_t *n);
/* The trainer's rng (seeded from cfg.seed; saved/restored with the state; for data order). */
dr_rng *llm_train_rng(llm_train *t);
/* The run's own record: LLM_TRAIN_RUN_STATE_N integers that the caller (sft, rl) writes
 * and that are saved and restored with the optimizer state (e.g. epoch, position in the
 * data, what the run was made with, for checks on resume; GGUF key deeprec.train.user).
 * States of older versions had 4: the rest load as 0. */
#define LLM_TRAIN_RUN_STATE_N 8
int64_t *llm_train_run_state(llm_train *t);

/* ---- checkpoints ----
 * Model: GGUF with the standard keys and tensor names (llm_model_load / llama.cpp), matrices
 * as `type` (F32/F16/BF16/Q8_0); LoRA is merged (W + alpha/r B A computed in fp32). tok: the
 * tokenizer to embed (NULL: the source model's tokenizer when it has one).
 * State: a separate GGUF (deeprec.kind = "llm_train_state"): step, rng, user ints, config
 * fingerprint, Adam m and v, and for LoRA the A/B factors. Resume = full: load the saved model
 * (F32) + llm_train_load_state; LoRA: the ORIGINAL base model + llm_train_load_state. */
int llm_train_save_model(llm_train *t, const struct tokenizer *tok, uint32_t type, const char *path);
/* An llm_model over the current weights (LoRA merged into fp32 copies), for generation in
 * the same process; free with llm_model_free. */
int llm_train_export_model(llm_train *t, llm_model **out);
/* Full fine-tuning only: an llm_model whose matrices, norms and biases point at the trainer's
 * fp32 master weights (no copy), so it always sees the current weights (for rollouts between
 * steps: create once). Valid until llm_train_free; llm_model_free frees only the view.
 * LoRA: DR_ERR_UNSUPPORTED (use llm_train_export_model, a merged snapshot). */
int llm_train_view_model(llm_train *t, llm_model **out);
int llm_train_save_state(const llm_train *t, const char *path);
int llm_train_load_state(llm_train *t, const char *path);

/* ---- FLOPs (for benches) ---- matmul FLOPs of one forward+backward over n_tokens tokens of
 * sequence length T (attention counted for the causal half). */
double llm_train_flops(const llm_train *t, int64_t n_tokens, int T);

/* ---- SFT data (llm sft) ----
 * JSON lines {"prompt": "...", "completion": "...", "mask": [[start, end], ...]} where mask
 * spans are byte offsets [start, end) into the completion excluded from the loss (tool
 * results). Tokenisation: prompt and completion are encoded separately (special tokens
 * matched), and the completion is further cut at the mask span boundaries, each segment
 * encoded on its own, so a token never straddles a span boundary; tokens of masked segments
 * get mask 0, the other completion tokens mask 1, prompt tokens mask 0. Sequences longer than
 * max_len are truncated (the start is kept). An eos id >= 0 is appended to the completion
 * (counted in the loss). */
typedef struct llm_sft_example {
    int32_t *tokens;
    uint8_t *mask;   /* per target position, as in llm_batch */
    int len;
} llm_sft_example;
typedef struct llm_sft_data {
    llm_sft_example *ex;
    int n;
    int64_t n_tokens, n_targets;
} llm_sft_data;
int llm_sft_load(llm_sft_data *d, const char *path, const struct tokenizer *tok, int max_len, int32_t eos);
void llm_sft_free(llm_sft_data *d);

/* ---- one SFT run (llm sft; src/llm/sft_run.c) ----
 * Load `model`, tokenize `data` (llm_sft_load), train `epochs` passes in micro-batches of
 * `batch` (accum per optimizer step; examples shuffled per epoch by an rng split of the
 * trainer's by epoch), save the model to `out` (and the optimizer state to save_state).
 * The lr schedule spans all epochs; max_steps only stops early. A one-line summary and the
 * progress bar go to `progress` (NULL = silent); one JSON line per step to `metrics`. */
typedef struct llm_sft_run_opts {
    const char *model, *data, *out;
    int lora;                /* rank; 0 = full fine-tuning */
    float lora_alpha;        /* 0: 2 x rank */
    unsigned lora_targets;   /* 0: q,k,v,o */
    int epochs;              /* 1 */
    int64_t max_steps;       /* 0 = all epochs */
    float lr;                /* 0: 1e-3 full, 2e-4 LoRA */
    int sched;               /* enum llm_lr_sched (cosine) */
    int64_t warmup;          /* < 0: 5% of the steps */
    float min_lr_ratio;      /* 0.1 */
    float weight_decay;      /* 0 */
    float grad_clip;         /* 1 */
    int batch, accum;        /* 8, 1 */
    int max_len;             /* 0: min(512, context) */
    int recompute;
    uint64_t seed;           /* 1 */
    uint32_t out_type;       /* GGML type of the saved model (F32) */
    const char *metrics;     /* JSON lines per step, or NULL */
    const char *save_state;  /* optimizer state at the end, or NULL */
    const char *resume;      /* optimizer state to continue from, or NULL */
    FILE *progress;
} llm_sft_run_opts;
void llm_sft_run_opts_default(llm_sft_run_opts *o);
typedef struct llm_sft_run_result {
    double first_loss, last_loss, best_loss; /* NaN / NaN / inf when no step ran */
    double tokens_per_s, seconds;
    int64_t steps, tokens;
    int examples;
    size_t params;
} llm_sft_run_result;
int llm_sft_run(const llm_sft_run_opts *o, llm_sft_run_result *res);

#endif
