/* deeprec pipeline: the whole method as one resumable run (issue 12; DESIGN §1).
 *
 * Stages, in order (each writes files into the output directory; see docs/pipeline.md):
 *   trm_sasrec  SASRec (full-softmax CE), early stopping on valid NDCG@10   -> sasrec.gguf
 *   trm_pref    the preference-aware TRM (the agent's tool)                 -> trm.gguf
 *   synth       the outcome-aware warm start (rl_warmstart_synth; or, with ws_best_of = 0, the
 *               classic runs, one file per seed), the tokenizer's extra corpus run, the rerank
 *               baseline's run                                            -> traj_*.jsonl
 *   tokenizer   byte-level BPE on prompt + completion text of trajectories  -> corpus.txt, tok.gguf
 *   init        the tiny qwen2 model with random weights                    -> tiny0.gguf
 *   sft         warm-up: one run over traj_ws.jsonl at lr1 (classic: run 1 on all seeds but the
 *               last, run 2 on the last seed), then a run at lr2 from the agent's model on the
 *               rerank-form trajectories for the rerank baseline            -> tiny_sft*.gguf
 *   rl1, rl2    RL stage 1 (tool use) then stage 2 (recommendation), with the held-out probe
 *                                                                           -> policy1.gguf, policy2.gguf
 *   eval        every table row on the test users (with per-user ranks)     -> eval_<row>.json
 *   report      the table with 95% bootstrap CIs and paired differences against the best TRM
 *                                                                           -> report.json, report.md
 * and times.json (each stage's wall / CPU seconds and whether it was reused).
 *
 * Skip rule: every output file OUT has a settings key OUT.key (text: the stage's settings and
 * the identity, size + mtime, of each input file). A finished output whose key matches is
 * reused. While an output is being made its key sits in OUT.pending; a run that finds a
 * matching OUT.pending (an interrupted stage) continues from the stage's own checkpoint with
 * `resume` (trm train's OUT.resume.gguf, rl's OUT.ckpt.json) and otherwise makes the output
 * again from scratch. An output whose key differs (other settings, other inputs), or one with
 * no key at all, is refused (DR_ERR_ARG, naming the file) unless `force`, which rebuilds it.
 * The report is rebuilt on every run (it is cheap and carries the times). */
#ifndef DEEPREC_PIPELINE_H
#define DEEPREC_PIPELINE_H

#include <stdint.h>
#include <stdio.h>
#include "deeprec/base.h"

struct json_t;

enum pipeline_stage {
    PIPELINE_TRM_SASREC = 0,
    PIPELINE_TRM_PREF,
    PIPELINE_SYNTH,
    PIPELINE_TOKENIZER,
    PIPELINE_INIT,
    PIPELINE_SFT,
    PIPELINE_RL1,
    PIPELINE_RL2,
    PIPELINE_EVAL,
    PIPELINE_REPORT,
    PIPELINE_N_STAGES
};
const char *pipeline_stage_name(int stage);      /* "trm_sasrec", ... */
int pipeline_stage_from_name(const char *name);  /* -1 if unknown */

#define PIPELINE_MAX_SEEDS 16

/* The settings of one budget (all sizes of the run). Named budgets: "demo" (tools/demo.sh's
 * defaults before this command), "full" (a longer recipe; placeholders to be tuned by
 * measurement) and "test" (minimal sizes for the test suite). Copy one and change fields
 * to run other settings: every field enters the stage keys that use it. */
typedef struct pipeline_budget {
    const char *name;
    /* TRMs (SASRec and pref share these) */
    int trm_max_epochs;     /* at most this many epochs ... */
    int trm_patience;       /* ... early stop after this many without valid NDCG@10 gain */
    int trm_batch;
    int trm_dim, trm_layers, trm_max_len;
    int trm_max_steps;      /* per epoch (0 = all batches; tests only) */
    double trm_label_smoothing; /* full-softmax CE label smoothing of both TRMs (trm_train_opts.label_smoothing; 0 = off) */
    double trm_pref_empty;  /* pref TRM: probability of an empty pseudo-preference in training */
    int trm_experts;        /* pref TRM: 0, or K >= 2 for the text model (trm_config.text_experts) */
    int trm_ensemble;       /* pref TRM: 0, or K >= 2 for an ensemble of K (trm_config.ensemble; the
                               candidate from the SASRec starts every member from it) */
    int trm_pref_init;      /* 1: the pref TRM (trm.gguf) starts from the trained SASRec (sasrec.gguf,
                               trm_model_init_from) instead of random weights; not the held-out
                               env_trm.gguf, which must not see the items the SASRec was trained on */
    int env_holdout;        /* > 0: the warm start and RL use env_trm.gguf, a pref TRM trained without
                               each user's last 2 + env_holdout items, and the warm start's positions
                               are among the last env_holdout train items, so the agent trains against
                               a tool that has not seen its targets, as at test time; 0: trm.gguf */
    /* outcome-aware warm start (rl_warmstart_synth): ONE file traj_ws.jsonl for SFT.
     * ws_best_of = 0: the classic recipe instead (one agent_synth_run per synth seed, SFT runs
     * 1 and 2 below) */
    int ws_best_of;         /* candidates per training position, the best kept by the stage-2 reward */
    int ws_positions;       /* training positions per user */
    int ws_varied;          /* preferences from the wider pool of kinds */
    int ws_order_by_target; /* the known next item first in the kept answer when retrieved */
    int ws_anchor;          /* an open call (the TRM's own list) leading the answer: 1 asked first, 2 asked last */
    int ws_call_order;      /* the answer keeps each call's order (agent_synth_opts.order), as
                               constrain_order decodes it */
    int ws_seed;            /* base seed of the candidates */
    /* classic warm start (and the tokenizer's / rerank baseline's synth runs) */
    int synth_seeds[PIPELINE_MAX_SEEDS];
    int n_synth_seeds;      /* one run per seed over the training users; the last feeds SFT run 2
                               (classic recipe) and the rerank baseline's warm-up */
    int synth_users;        /* training users per run (0 = all) */
    int corpus_seed;        /* the tokenizer's extra synth run (AGENT_MAX_HIST history, AGENT_TOOL_K items) */
    double rerank_share;    /* classic recipe only: share of the LAST seed's trajectories in the rerank form */
    double rerank_warm;     /* the rerank baseline's own SFT run 2: this share in the rerank form (0 = none) */
    /* tokenizer and model */
    int vocab;
    int llm_dim, llm_layers, llm_heads, llm_kv_heads, llm_ffn;
    int ctx;                /* model context; eval / rl context cap */
    /* SFT */
    double sft_lr1, sft_lr2;
    int sft_batch, sft_max_len, sft_epochs;
    int sft_max_steps;      /* per run (0 = all epochs) */
    /* the agent (synth, eval, rl alike) */
    int max_hist, tool_k, max_tokens;
    int constrain_order;    /* constrained answers keep each call's order (agent_rollout_opts.constrain_order) */
    /* RL */
    int rl1_steps, rl2_steps, rl_prompts, rl_samples, rl_micro, rl_updates;
    int rl_select_k;        /* train on users whose target is in the TRM's top K (0 = all) */
    double rl_lr1, rl_lr2;
    int rl_probe;           /* held-out probe users */
    double rl_probe_temp1, rl_probe_temp2;
    int rl_probe_samples1, rl_probe_samples2;
    int rl_keep_best;       /* validation users that choose each stage's output (rl --keep-best; 0 = the last step's) */
    int rl_keep_best_every; /* validate every N steps and after the last (0: the input and the last only) */
    /* evaluation */
    int eval_users;         /* test users per row (0 = all) */
    int eval_batch;         /* sequences decoded together */
} pipeline_budget;

/* The named budget, or NULL. */
const pipeline_budget *pipeline_budget_get(const char *name);
/* "demo, full, test" */
const char *pipeline_budget_names(void);

/* Set one field by its name (the C field name, e.g. "ws_best_of", "llm_dim", "sft_lr1") from
 * text: integer fields take a base-10 integer, real fields a finite number; every value must
 * be >= 0. "synth_seeds" takes a comma-separated list of 1..PIPELINE_MAX_SEEDS seeds (and sets
 * n_synth_seeds). Unknown key or bad value: DR_ERR_ARG, b unchanged, the hint lists the keys. */
int pipeline_budget_set(pipeline_budget *b, const char *key, const char *value);
/* The settable field names in order, NULL after the last. */
const char *pipeline_budget_field(int i);
/* Every settable field of b as a JSON object {name: value} (new reference). */
struct json_t *pipeline_budget_json(const pipeline_budget *b);

/* One stage's outcome in this run. */
typedef struct pipeline_stage_info {
    int stage;
    int reused;          /* every output reused (nothing computed) */
    int resumed;         /* continued from the stage's checkpoint (TRM, RL) */
    int skipped;         /* not applicable with these settings (e.g. no teacher mode) */
    double wall_s, cpu_s;
} pipeline_stage_info;

/* Called when a stage begins (info == NULL) and ends. */
typedef void (*pipeline_stage_fn)(void *ctx, int stage, const pipeline_stage_info *info);

typedef struct pipeline_opts {
    const char *data;              /* dataset (.gguf) with titles */
    const char *out_dir;           /* created when missing */
    const pipeline_budget *budget; /* required */
    int resume;                    /* an interrupted stage continues from its checkpoint */
    int force;                     /* rebuild outputs made with other settings instead of refusing */
    FILE *progress;                /* progress bars and per-stage lines of the libraries (NULL = silent) */
    pipeline_stage_fn on_stage;
    void *on_stage_ctx;
    /* Testing: SIGKILL this process in the middle of this stage (after its first unit of work
     * has been committed: a TRM epoch, an RL step, a synth / SFT / eval output); -1 = never. */
    int kill_at;
    /* Stop after this stage (e.g. PIPELINE_TRM_PREF: only the TRMs; the report is not made);
     * -1 = run every stage. Later runs reuse what it made. */
    int until;
} pipeline_opts;
void pipeline_opts_default(pipeline_opts *o);

typedef struct pipeline_result {
    pipeline_stage_info stages[PIPELINE_N_STAGES];
    double wall_s, cpu_s;
    struct json_t *report;         /* report.json's object (new reference; pipeline_result_free) */
    char *report_md;               /* report.md's text */
} pipeline_result;

int pipeline_run(const pipeline_opts *o, pipeline_result *res);
void pipeline_result_free(pipeline_result *res);

#endif
