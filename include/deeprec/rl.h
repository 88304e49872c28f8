/* deeprec rl: reinforcement learning of the DeepRec agent (DESIGN §7) — rewards on finished
 * rollouts, group-baseline advantages (REINFORCE++ / GRPO), the PPO-clip token loss and its
 * analytic gradient w.r.t. each token's log-probability, and the two-stage trainer that ties the
 * agent's batched rollout engine, the live TRM and the LLM trainer together.
 *
 * Layers (each usable alone):
 *   - rewards:    pure functions of one finished agent_episode (+ catalog + TRM);
 *   - advantages: per-episode rewards -> per-episode advantages shared by its generated tokens;
 *   - ppo:        per-token loss / dL/dlogp (what llm_train_backward takes);
 *   - trainer:    rl_train (steps, checkpoints, --resume, JSON lines, reward-curve SVG). */
#ifndef DEEPREC_RL_H
#define DEEPREC_RL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "deeprec/base.h"
#include "deeprec/agent.h"

struct dr_dataset;
struct trm_model;
struct llm_model;
struct tokenizer;
struct json_t;

/* ---------------------------------------------------------------- rewards
 * Stage 1 (learn to use the tool):  total = format + count + diversity
 * Stage 2 (recommend well):         total = format + listwise + pointwise
 *   format     0 when the episode is valid, else -1. Valid = the episode FINISHED and its
 *              completion passes agent_format_check (the rules of DESIGN §7).
 *   count      0.5 * (min(n, 3) - 1) for n >= 2 tool calls, else 0 (n = recorded calls;
 *              process reward: given whatever the format).
 *   diversity  0.2 * (1 - mean pairwise cosine of the n preference embeddings) for n >= 2,
 *              else 0; embeddings from the TRM text encoder (trm_text_embedding of the cleaned
 *              preferences); a zero embedding (no word) has cosine 0 with everything
 *              (process reward: given whatever the format).
 *   listwise   1 + 0.2 * (10 - i) when the target is at 0-based rank i of the resolved answer
 *              (agent_episode.hit_rank; the paper's substring rule with substring_hit), else 0.
 *              Only with a valid format.
 *   pointwise  10 * sum_i w_i s_i / sum_i w_i over the 10 answer lines, w_i = (1 - i/10)^2,
 *              s_i = (text cosine + TRM item-embedding cosine) / 2 between resolved item i and
 *              the target; an unresolved line (or a missing one) has s_i = 0 (the paper's code
 *              maps unknown titles to the zero padding row). Text embeddings of items:
 *              trm_text_embedding("title categories"); item embeddings: trm_item_embeddings.
 *              Only with a valid format and a known target. */
enum rl_stage { RL_STAGE_1 = 1, RL_STAGE_2 = 2 };

#define RL_COUNT_BASE 0.5
#define RL_COUNT_MAX 3
#define RL_DIVERSITY_BASE 0.2
#define RL_LIST_CORRECT 1.0
#define RL_LIST_LINEAR 0.2
#define RL_POINT_BASE 10.0
/* keep_best: a validated policy replaces the best only when mean(its NDCG@10 - the best's) over
 * the validation users exceeds RL_KEEP_BEST_Z standard errors (a one-sided 97.5% test). */
#define RL_KEEP_BEST_Z 1.96

typedef struct rl_reward {
    double total;
    double format, count, diversity, listwise, pointwise;
    int valid;      /* format == 0 */
    int n_calls;
    int hit_rank;   /* rank used by listwise, -1 none */
} rl_reward;

/* Pure components. */
double rl_reward_format(const agent_episode *e);    /* 0 / -1 */
double rl_reward_count(int n_calls);
double rl_reward_listwise(int hit_rank);            /* hit_rank < 0 or >= 10: 0 */
/* 0.2 * (1 - mean pairwise cosine) of n vectors emb[n x dim] (n < 2: 0). */
double rl_reward_diversity_vecs(const float *emb, int n, int dim);
/* 10 * sum w_i s_i / sum w_i, w_i = (1 - i/10)^2, over n <= 10 similarities (the rest 0). */
double rl_reward_pointwise_sims(const double *s, int n);
/* Cosine of two vectors; 0 when either is zero. */
double rl_cosine(const float *a, const float *b, int dim);

/* Context for the TRM-backed components: catalog (titles, categories) + the pref TRM; caches
 * item text embeddings. Not thread-safe. */
typedef struct rl_reward_ctx rl_reward_ctx;
int rl_reward_ctx_new(rl_reward_ctx **out, const agent_catalog *c, struct trm_model *m);
void rl_reward_ctx_free(rl_reward_ctx *r);
/* Diversity of an episode's preferences. */
int rl_reward_diversity(rl_reward_ctx *r, const agent_episode *e, double *out);
/* s_i of item vs target: (text cosine + item-embedding cosine) / 2; 0 when either id is 0. */
int rl_item_similarity(rl_reward_ctx *r, int32_t item, int32_t target, double *out);
/* Point-wise reward of an episode (ignores the format gate; rl_reward_score applies it). */
int rl_reward_pointwise(rl_reward_ctx *r, const agent_episode *e, double *out);
/* Every component for `stage`; substring_hit: list-wise rank by the paper's substring rule. */
int rl_reward_score(rl_reward_ctx *r, int stage, int substring_hit, const agent_episode *e, rl_reward *out);

/* ---------------------------------------------------------------- advantages
 * rewards r[n_groups * G] (group g = episodes g*G .. g*G+G-1, one prompt's samples).
 *   RL_ADV_REINFORCEPP: A = r - mean(group), then normalised over the batch's generated
 *     tokens: every generated token of an episode carries its A, so with n_gen[e] tokens
 *     mean = sum n_gen A / N, var = sum n_gen (A - mean)^2 / N (N = sum n_gen), and
 *     A' = (A - mean) / sqrt(max(var, 1e-8))  (divide: the released code multiplied, a bug).
 *     Episodes without generated tokens carry no weight.
 *   RL_ADV_GRPO: A = (r - mean(group)) / (std(group) + 1e-6) with the unbiased group std
 *     (torch.std); no further normalisation. G == 1 gives 0.
 * adv[n_groups * G] gets the per-episode advantage (shared by its generated tokens). */
enum rl_adv { RL_ADV_REINFORCEPP = 0, RL_ADV_GRPO = 1 };
int rl_adv_from_name(const char *s); /* "reinforce++" / "grpo"; -1 unknown */
const char *rl_adv_name(int kind);
int rl_advantages(const double *r, const int32_t *n_gen, int n_groups, int G, int kind, float *adv);

/* ---------------------------------------------------------------- PPO-clip token loss
 * For a generated token (mask 1) with log-prob l, old log-prob o, advantage A:
 *   ratio = exp(l - o);  L = -min(ratio A, clip(ratio, 1 - clip_low, 1 + clip_high) A)
 *   + kl_beta * k3, k3 = exp(f - l) - (f - l) - 1 with f the reference log-prob.
 * The step's loss is the token-level mean: sum over generated tokens / norm (norm = the number
 * of generated tokens of the whole mini-batch, so micro-batches accumulate to the exact mean).
 * dL/dl = -ratio A / norm where the unclipped term is the minimum (A > 0 and ratio <= 1 + hi,
 * or A < 0 and ratio >= 1 - lo), else 0; + kl_beta (1 - exp(f - l)) / norm.
 * Tokens with mask 0 get dlogp = 0 and add nothing. */
typedef struct rl_ppo_opts {
    float clip_low;   /* 0.2 */
    float clip_high;  /* 0.28 */
    float kl_beta;    /* 0 */
} rl_ppo_opts;

typedef struct rl_ppo_stats {
    double loss;       /* sum of per-token losses / norm (accumulates) */
    double kl;         /* sum of k3 over tokens (not divided) */
    double ratio;      /* sum of ratios */
    int64_t n_tokens;  /* generated tokens seen */
    int64_t n_clipped; /* tokens where the clipped term is the (strict) minimum: zero policy gradient */
} rl_ppo_stats;

/* n tokens: logp, old, ref (NULL when kl_beta == 0), adv (per token), mask. Writes dlogp[n]
 * and adds to *st (may be NULL). */
void rl_ppo_loss(const rl_ppo_opts *o, int64_t n, const float *logp, const float *old, const float *ref,
                 const float *adv, const uint8_t *mask, double norm, float *dlogp, rl_ppo_stats *st);

/* Log-probabilities of an episode's tokens under a (frozen reference) model, by chunked
 * prefill: out[i] = log p(tokens[i] | tokens[< i]) for generated tokens (mask 1), 0 elsewhere;
 * a title-constrained token (allow_n[i] > 0) under the softmax over its allowed set, as the
 * policy's log-prob, so the k3 KL compares the same distributions. */
int rl_ref_logprobs(const struct llm_model *m, const agent_episode *e, float *out);

/* ---------------------------------------------------------------- trainer */
/* What one batch of rollouts scored: a step's training batch and the held-out probe alike.
 * The probe: the current policy on a fixed set of selected users that never enter training,
 * one episode each with a fixed sampling seed (greedy by default), scored with the stage's
 * reward; same users and seed at every probe, so changes come from the policy. */
typedef struct rl_rollout_stats {
    int n_users, n_episodes;
    double reward, format, count, diversity, listwise, pointwise; /* means over episodes */
    double reward_std;
    double valid_rate;     /* format-valid fraction */
    double mean_calls;
    double hit_rate;       /* target in the answer (listwise rank >= 0) */
    double ndcg10;         /* mean NDCG@10 of the target in the answer (rank r: 1 / log2(r + 2)): the
                              evaluation's metric, which the stage's reward only partly follows */
    int outcomes[AGENT_N_OUTCOMES];
    int format_fails[AGENT_FMT_N]; /* episodes per first broken format rule of a finished episode */
    double mean_gen;       /* generated tokens per episode */
    int64_t n_tokens;      /* generated tokens of the batch */
    int64_t n_seq_tokens;  /* all tokens of the batch's sequences (prompt, generated, tool) */
    double seconds, cpu_seconds; /* rollout and scoring: wall, process CPU (all threads) */
} rl_rollout_stats;

typedef struct rl_step_stats {
    int stage;
    int64_t step;          /* 1-based RL step */
    rl_rollout_stats batch; /* the step's rollouts (seconds: also the advantages) */
    double loss, clip_frac, entropy, kl, grad_norm, ratio, lr;
    int n_updates;         /* optimizer steps taken */
    double logp_diff;      /* mean |rollout log-prob - trainer log-prob| at the first update (engine drift) */
    double update_s, step_s; /* wall seconds */
    double update_cpu_s;   /* process CPU seconds (all threads) */
    int probed;              /* probe: the policy after this step's updates (rl_opts.probe_users > 0) */
    rl_rollout_stats probe;
    int probed_start;        /* probe_start: the input policy, before any update (first step of a run) */
    rl_rollout_stats probe_start;
    int validated;           /* valid: this step's policy on the keep_best validation users */
    rl_rollout_stats valid;
    int validated_start;     /* valid_start: the input policy on them (first step of a run) */
    rl_rollout_stats valid_start;
} rl_step_stats;

/* One compact JSON object of the stats (new reference). */
struct json_t *rl_step_json(const rl_step_stats *s);

typedef void (*rl_step_fn)(void *ctx, const rl_step_stats *s);
/* Optional reward hook (tests / experiments): called after rl_reward_score; may change *r. */
typedef int (*rl_reward_fn)(void *ctx, const agent_episode *e, rl_reward *r);

typedef struct rl_opts {
    int stage;                 /* 1 | 2 */
    int steps;                 /* total RL steps of this stage (20 / 80) */
    int prompts;               /* users per step (128) */
    int samples;               /* G per user (8) */
    int adv;                   /* enum rl_adv (reinforce++) */
    rl_ppo_opts ppo;           /* 0.2 / 0.28 / 0 */
    int updates;               /* optimizer steps (mini-batches) per RL step (2: 512 of 1024 as the paper) */
    int epochs;                /* passes over the rollout batch (1) */
    int micro;                 /* sequences per micro-batch (4) */
    float lr;                  /* 1e-6 */
    float grad_clip;           /* 1.0 */
    float weight_decay;        /* 0 */
    int lora_rank;             /* 0 = full fine-tuning */
    float lora_alpha;          /* 0: 2 * rank */
    unsigned lora_targets;     /* 0: q,k,v,o */
    int recompute;             /* activation checkpointing in the trainer */
    /* rollout */
    float temperature;         /* 1.0 */
    float top_p;               /* 0.95 */
    int slots;                 /* decode slots (0: min(prompts * samples, 64), at least samples) */
    int32_t max_ctx;           /* tokens per episode (0: min(model context, 4096)) */
    /* the agent's options (agent_rollout_opts_default): chat, max_hist, tool_k, max_calls,
     * max_turn_tokens, constrain_titles / constrain_prefs (the update scores constrained tokens
     * under their allowed sets, as sampled); samples, max_ctx and progress are the trainer's */
    agent_rollout_opts rollout;
    /* data */
    int select_k;              /* train on users whose target is in the TRM's top select_k (100; 0 = all) */
    int substring_hit;         /* list-wise reward by the substring rule */
    int probe_users;           /* held-out probe users (0 = no probe); taken out of the selection */
    float probe_temperature;   /* probe sampling temperature (0 = greedy) */
    int probe_samples;         /* episodes per probe user (<= 1: one; only useful with a temperature) */
    /* Output selection on held-out items ("the held-out probe decides"): > 0 validates the
     * input policy and the policy after every keep_best_every-th step and the last on this many
     * users' validation items (a seeded draw of the users with a split, greedy, the evaluation's
     * episode), and `out` gets the input unless a later policy beats the best so far with
     * confidence: the paired per-user difference of NDCG@10 has the lower end of its normal 95%
     * interval (mean - RL_KEEP_BEST_Z x standard error) above zero. Training never sees a
     * validation item, so the selection is not fitted to the RL users' targets.
     * 0 = off: `out` is the last step's policy. */
    int keep_best_users;
    int keep_best_every;       /* validate every N steps (0 or >= steps: the input and the last only) */
    uint64_t seed;             /* 1 */
    /* output */
    const char *out;           /* policy GGUF (required) */
    uint32_t out_type;         /* GGML type of the saved matrices (F32) */
    int save_every;            /* checkpoint every N steps (1) */
    int resume;                /* continue from the last checkpoint of `out` */
    const char *metrics;       /* JSON lines (NULL: <out base>.metrics.jsonl) */
    const char *curve;         /* SVG written at the end (NULL: <out base>.rewards.svg) */
    const char *prev_metrics;  /* earlier stage's JSON lines for the curve (NULL: <llm base>.metrics.jsonl if any) */
    const char *llm_path;      /* path of the input model (for prev_metrics lookup; may be NULL) */
    FILE *progress;            /* progress display (NULL = silent) */
    rl_step_fn on_step;        /* called after every step (may be NULL) */
    void *on_step_ctx;
    rl_reward_fn reward_hook;
    void *reward_hook_ctx;
    int stop_after;            /* testing: return after this many steps of this call (0 = run to the end) */
} rl_opts;

/* Defaults of the paper for a stage (steps 20 / 80). */
void rl_opts_default(rl_opts *o, int stage);

typedef struct rl_env {
    const struct dr_dataset *data;
    struct trm_model *trm;         /* preference-aware TRM (tool and rewards) */
    struct llm_model *llm;         /* initial policy; LoRA base; frozen KL reference */
    const struct tokenizer *tok;   /* NULL: llm->tok */
} rl_env;

typedef struct rl_result {
    int64_t steps_done;       /* RL steps completed in total (including resumed ones) */
    int64_t start_step;       /* steps already done when this call began */
    int n_selected;           /* users passing the data selection */
    double first_reward, last_reward;
    int n_probe;              /* held-out probe users (0 = none) */
    int probed_start, probed_last;
    double probe_start;       /* probe reward of the input policy (runs that start at step 0) */
    double probe_last;        /* probe reward after the last step of this call */
    int n_valid;              /* keep_best validation users (0 = off) */
    int64_t best_step;        /* keep_best: the step whose policy is `out` (0 = the input policy) */
    double best_ndcg10;       /* its validation NDCG@10 */
    double seconds;
} rl_result;

/* Train. Per step: sample `prompts` selected users (a fixed permutation per pass over the
 * selection, from seed), roll out `samples` episodes each with the current policy (full
 * fine-tuning: through a view of the trained weights, no copy), score, advantages, `epochs` x `updates` PPO updates in micro-batches, AdamW (0.9, 0.95), clip.
 * Checkpoints (every save_every steps and at the end): <out base>.ckpt-{a,b}.gguf (policy)
 * + .state.gguf (optimizer, rng, step), committed by <out base>.ckpt.json; the final policy is
 * written to `out`. resume: continue exactly from the committed checkpoint. */
int rl_train(const rl_env *env, const rl_opts *o, rl_result *res);

/* Data selection: training users (train part >= 2 items; history = train[:-1], target =
 * train[-1]) whose target is in the TRM's top k for an empty preference (history masked).
 * k <= 0: all such users. users: heap array of user ids (may be NULL when *n == 0). */
int rl_select_users(const struct dr_dataset *d, struct trm_model *m, int k, int32_t **users, int *n);

/* ---------------------------------------------------------------- outcome-aware warm start
 * The TRM-based rollout done offline (issue 12): for each of `positions` training positions of
 * every training user (prefix train[:j], target train[j]; the validation and test items are
 * never a target), draw `best_of` candidate trajectories with agent_synth_one (varied
 * preference kinds and numbers of calls, one seed each), score each with the stage-2 reward of
 * DESIGN §7 against the known next item (exactly as RL scores an episode) and keep the best
 * (rl_best_of). order_by_target: the candidates' final lists put the target first when it was
 * retrieved (the known next item may order a training list). The kept trajectories are written
 * as agent synth's JSON lines. */
typedef struct rl_warmstart_opts {
    agent_synth_opts synth;  /* chat, max_hist, tool_k; varied (1 recommended); seed = base seed */
    int positions;           /* training positions per user (1: the last train item only) */
    int best_of;             /* candidates per position (1: no selection) */
    int order_by_target;     /* see above */
    int min_prefix;          /* shortest prefix used (2) */
    int recent;              /* > 0: positions only among the last `recent` train items (the ones a
                                TRM trained on dr_data_drop_last(d, 2 + recent) never saw); 0: any */
    int users;               /* training users (0 = all; else the first N of a seeded shuffle) */
    FILE *progress;
} rl_warmstart_opts;
void rl_warmstart_opts_default(rl_warmstart_opts *o);

typedef struct rl_warmstart_stats {
    int64_t written, skipped;     /* trajectories kept / positions without a valid candidate */
    double mean_reward;           /* stage-2 reward of the kept trajectories */
    double mean_first_reward;     /* ... of the first candidate (what best-of-1 would keep) */
    double hit_rate;              /* target in the kept answer */
    double retrieved_rate;        /* target among the kept trajectory's retrieved items (counted with
                                     order_by_target only) */
    double mean_calls;
    double seconds;
} rl_warmstart_stats;

/* Index of the highest reward in r[0..n) (ties: the first); -1 when n <= 0. NaN never wins. */
int rl_best_of(const double *r, int n);
/* Stage-2 reward of one synth trajectory against `target`, scored through a finished episode
 * exactly as the RL trainer scores rollouts. */
int rl_warmstart_score(rl_reward_ctx *rc, const agent_catalog *c, const agent_synth_traj *t, int32_t target,
                       rl_reward *out);
/* Best of n candidates for one position: agent_synth_one(hist[0..n_prefix), base with seed =
 * seeds[k]) scored by rl_warmstart_score against `target`; rewards[k] gets each total (NaN when
 * the candidate could not be built: too few items, an odd title). *best gets the highest-reward
 * trajectory (ties: the earlier) and *best_index its index (-1 when no candidate was built:
 * *best empty). order_by_target: the target also orders each candidate's list
 * (agent_synth_opts.target). */
int rl_warmstart_best(const agent_catalog *c, const agent_tool *tool, rl_reward_ctx *rctx, const int32_t *hist,
                      int64_t n_prefix, int32_t target, int order_by_target, const agent_synth_opts *base,
                      const uint64_t *seeds, int n, agent_synth_traj *best, double *rewards, int *best_index);
/* tool: the TRM tool the candidates call (agent_tool_trm_new on trm, history masked); trm: the
 * same model, for the reward's embeddings. */
int rl_warmstart_synth(const struct dr_dataset *d, struct trm_model *trm, const agent_catalog *c,
                       const agent_tool *tool, const rl_warmstart_opts *o, const char *out_path,
                       rl_warmstart_stats *st);

/* ---------------------------------------------------------------- reward curve
 * rl_train draws it once, at the end; `deeprec rl curve` on demand.
 * A polyline SVG with axes: mean reward per step, one polyline per stage (stage 1 first, then
 * stage 2 continuing on the x axis). Reads JSON lines with "stage", "step", "reward"; when a
 * line has "probe" / "probe_start" objects (held-out probe), their "reward" is drawn as a
 * dashed polyline per stage (probe_start at step 0 of its stage). */
int rl_curve_svg(const char *const *jsonl_paths, int n_paths, const char *svg_path);

#endif
