/* deeprec evaluate: the evaluation harness of the DeepRec agent and its baselines
 * (issue 7, "Evaluation and baselines"; metrics of DESIGN §3, outcomes of §6, format of §7).
 *
 * Modes (enum eval_mode):
 *   deeprec  the full multi-turn agent: agent_rollout with the LLM and the TRM tool;
 *   trm      the retriever alone: the TRM tool with an EMPTY preference, its top-10
 *            (history masked, as the tool does); no LLM;
 *   rerank   "retrieve then rank": ONE tool call made for the model with a fixed preference
 *            built from the history (eval_history_preference), its tool_k items shown, then
 *            the LLM writes the ranked 10 titles in the answer tags (the DeepRec prompt, the
 *            call forced by agent_request.forced_preference, max_calls = 1: a second call
 *            ends the episode as many_recall);
 *   direct   the LLM recommends 10 titles without the tool (the direct-baseline prompt,
 *            agent_prompt_instructions_direct); a tool call it still makes fails
 *            (recall_error);
 *   teacher  the warm-start teacher's own list: agent_synth_one on the test history with the
 *            TRM tool (eval_opts.synth, or zero options + chat / max_hist / tool_k), its
 *            answer resolved as the agent's (agent_answer_parse + agent_resolve_line); no LLM.
 *            The teacher's seed per user is dr_rng_u64(dr_rng_split(seed, user)) with seed =
 *            synth->seed (or eval_opts.seed). A user it cannot serve (DR_ERR_RANGE: fewer
 *            than 10 new items retrieved; DR_ERR_FORMAT) is a miss.
 *
 * The TRM may be the preference model or a plain SASRec checkpoint; SASRec ignores the
 * preference text (trm_user_vector), so trm mode is the same for both and the tool-calling
 * modes then retrieve by history alone.
 *
 * Users (documented selection): every user with a test target (>= 3 interactions), in
 * dataset order, shuffled with dr_rng seeded by `seed` (dr_rng_shuffle_i32); the first
 * `users` of that order are evaluated (0 = all). History = seq[:-1], target = seq[-1].
 *
 * Metrics over the top-10 list, one value per EPISODE (users x samples), averaged over all
 * evaluated episodes; an episode whose outcome is not `finished` (or whose list misses the
 * target) counts as a miss (0 everywhere). With the 0-based rank i of the target's first
 * occurrence in the list: Recall@K = [i < K] (K = 1, 5, 10), NDCG@K = 1/log2(i + 2) if i < K,
 * MRR = 1/(i + 1) (0 when not in the list: a truncated MRR@10). Two resolution rules:
 *   exact     answer lines resolved to items by agent_resolve_line (normalised exact title,
 *             then the token-overlap fallback among the episode's retrieved items);
 *   substring the paper's rule: the line contains the target's normalised title.
 * For trm, list entries are item ids: exact = id match, substring = the target's title is a
 * substring of the listed item's title.
 *
 * Uncertainty (eval_result.ci, eval_paired): every metric is also a value per USER (the mean
 * over that user's episodes), so users are the unit of resampling. The 95% interval is the
 * percentile bootstrap (eval_bootstrap) over B resamples of the users, drawn from one seed: the
 * same resampled user sets for every metric, rule and mode, which makes paired differences
 * (mode minus reference, user by user; the users are selected alike for every mode) a joint
 * resampling of the users. */
#ifndef DEEPREC_EVALUATE_H
#define DEEPREC_EVALUATE_H

#include <stdint.h>
#include <stdio.h>
#include "deeprec/agent.h"
#include "deeprec/base.h"

struct dr_dataset;
struct trm_model;
struct llm_model;
struct tokenizer;
struct json_t;

enum eval_mode { EVAL_DEEPREC = 0, EVAL_TRM, EVAL_RERANK, EVAL_DIRECT, EVAL_TEACHER, EVAL_N_MODES };
const char *eval_mode_name(int mode);        /* "deeprec", "trm", "rerank", "direct", "teacher" */
int eval_mode_from_name(const char *name);   /* -1 if unknown */
int eval_mode_uses_llm(int mode);            /* all but trm and teacher */

/* ---------------------------------------------------------------- accumulation */
enum eval_rule { EVAL_RULE_EXACT = 0, EVAL_RULE_SUBSTR = 1, EVAL_N_RULES };

/* Sums over episodes (divide by n_episodes: eval_acc_finish). */
typedef struct eval_acc {
    int64_t n_episodes;
    double recall[EVAL_N_RULES][3];  /* @1, @5, @10 */
    double ndcg[EVAL_N_RULES][2];    /* @5, @10 */
    double mrr[EVAL_N_RULES];
    int64_t outcomes[AGENT_N_OUTCOMES];
    int64_t format_valid;
    int64_t format_fails[AGENT_FMT_N]; /* episodes per first broken rule ([AGENT_FMT_OK] unused) */
    int64_t with_call;                 /* episodes with >= 1 tool call */
    int64_t answer_forced;             /* episodes whose answer tag the rollout wrote (turn budget) */
    int64_t tool_calls;
    int64_t gen_tokens;
} eval_acc;

void eval_acc_init(eval_acc *a);
/* One episode given 0-based ranks of the target (-1 = not in the list) under both rules. */
void eval_acc_add_ranks(eval_acc *a, int rank_exact, int rank_substr);
/* One rolled-out episode: ranks from e->hit_rank / e->hit_rank_substr (the rollout leaves
 * them at -1 unless finished; here any outcome other than finished is a miss regardless),
 * plus outcome, format (valid = AGENT_FMT_OK), tool calls and generated tokens. */
void eval_acc_add_episode(eval_acc *a, const agent_episode *e);
void eval_acc_merge(eval_acc *a, const eval_acc *b);

/* ---------------------------------------------------------------- per-user metrics */
enum eval_metric { EVAL_M_R1 = 0, EVAL_M_R5, EVAL_M_R10, EVAL_M_NDCG5, EVAL_M_NDCG10, EVAL_M_MRR, EVAL_N_METRICS };
const char *eval_metric_name(int metric); /* "recall@1" .. "mrr" (the JSON keys) */
/* The value of one metric for one episode whose target sits at 0-based `rank` of the top-10
 * (-1 or >= AGENT_N_REC: a miss, 0). */
double eval_metric_value(int metric, int rank);

/* A mean with its 95% interval (lo = hi = mean when no bootstrap was run). */
typedef struct eval_ci {
    double mean, lo, hi;
} eval_ci;

/* Percentile bootstrap of the mean of x[n]: B resamples of n values drawn with replacement
 * (index = dr_rng_below(rng, n), resample by resample, value by value, rng = dr_rng_seed(seed));
 * lo / hi are the 2.5% / 97.5% quantiles of the B resample means, sorted, interpolated
 * linearly between order statistics (position q * (B - 1), 0-based). B = 0 or n = 0: lo = hi =
 * mean (0 when n = 0). The same (n, B, seed) gives the same resamples for any x. */
int eval_bootstrap(const double *x, int64_t n, int B, uint64_t seed, eval_ci *out);

/* ---------------------------------------------------------------- results */
typedef struct eval_result {
    int mode;
    int llm;                      /* LLM-related fields meaningful (not trm) */
    int64_t n_users, n_episodes;
    int samples;
    double recall[EVAL_N_RULES][3], ndcg[EVAL_N_RULES][2], mrr[EVAL_N_RULES];
    int64_t outcomes[AGENT_N_OUTCOMES];
    double format_valid_rate;     /* llm only */
    int64_t format_fails[AGENT_FMT_N]; /* llm only: episodes per first broken format rule */
    double with_call_rate;        /* llm only: share of episodes with >= 1 tool call */
    double answer_forced_rate;    /* llm only: share whose answer the turn budget opened (agent_episode.answer_forced) */
    double mean_tool_calls;       /* llm only */
    double mean_gen_tokens;       /* llm only */
    double seconds, seconds_per_user;
    /* Per-episode scores (eval_run; NULL from eval_acc_finish), owned: eval_result_free.
     * Episode e belongs to users[e / samples] (sample e % samples). */
    int32_t *users;               /* [n_users] evaluated user ids, in selection order */
    int *rank[EVAL_N_RULES];      /* [n_episodes] 0-based rank of the target in the list, -1 = miss */
    int bootstrap;                /* resamples behind ci (0: none) */
    eval_ci ci[EVAL_N_RULES][EVAL_N_METRICS]; /* over users; index with enum eval_metric */
} eval_result;
/* Means from the sums (zeros when empty); no per-episode scores, ci = the means. */
void eval_acc_finish(const eval_acc *a, int mode, int64_t n_users, int samples, double seconds, eval_result *r);
void eval_result_free(eval_result *r); /* the owned arrays; the struct can be reused */

/* x[n_users] = each user's mean of `metric` over its episodes (needs the per-episode scores). */
int eval_user_values(const eval_result *r, int rule, int metric, double *x);
/* r->ci of every rule and metric from the per-user values: B resamples from `seed`. */
int eval_result_bootstrap(eval_result *r, int B, uint64_t seed);

/* Paired difference of two results on the same users: per user, a's value minus ref's,
 * its mean and 95% bootstrap interval (eval_bootstrap over the differences). The users must
 * be the same, in the same order (else DR_ERR_ARG); samples may differ. */
typedef struct eval_paired {
    int mode, ref;
    int64_t n_users;
    int bootstrap;
    eval_ci diff[EVAL_N_RULES][EVAL_N_METRICS];
} eval_paired;
int eval_paired_diff(const eval_result *a, const eval_result *ref, int B, uint64_t seed, eval_paired *out);

/* ---------------------------------------------------------------- running */
typedef struct eval_opts {
    int mode;              /* enum eval_mode */
    int users;             /* test users to evaluate (0 = all) */
    int split;             /* DR_SPLIT_TEST (default, 0) or DR_SPLIT_VALID: whose target and history */
    uint64_t seed;         /* user selection and sampling seed (1) */
    float temperature;     /* 0 = greedy (default) */
    int top_k;             /* 0 = all */
    float top_p;           /* 0 or >= 1 = all */
    int samples;           /* episodes per user (1) */
    /* the agent's options (agent_rollout_opts_default): chat, max_hist, tool_k, max_calls
     * (deeprec; rerank makes one call), max_turn_tokens, constrain_titles / constrain_prefs
     * (deeprec, rerank); samples, direct and progress are the harness's */
    agent_rollout_opts rollout;
    int32_t n_ctx;         /* context per sequence (0: min(model, 4096)) */
    int batch;             /* model slots = sequences decoded together (16) */
    int chunk;             /* users per agent_rollout call (0: max(256, 4 x batch)) */
    int bootstrap;         /* resamples of the 95% intervals (1000; 0 = none) */
    uint64_t bootstrap_seed; /* their seed (1) */
    /* teacher: NULL = zero options + chat, max_hist, tool_k (of rollout) and seed from here;
     * else used as given (its seed is the base of the per-user seeds) */
    const agent_synth_opts *synth;
    FILE *progress;        /* progress sink (stderr in the CLI) or NULL */
} eval_opts;
void eval_opts_default(eval_opts *o);

typedef struct eval_inputs {
    const struct dr_dataset *data;
    const agent_catalog *catalog;
    struct trm_model *trm;          /* required except for direct */
    const struct llm_model *llm;    /* required except for trm */
    const struct tokenizer *tok;    /* NULL: the model's own tokenizer */
    /* NULL: an agent_model_llm on llm (above). Else the agent's model as given, e.g. a remote
     * server (serve_remote_model_new, which lives above this module); its n_slots bound the
     * batch, and constrain_titles must be off (it has no logits). */
    const agent_model *model;
} eval_inputs;

/* The evaluated users (see the top of this file) are dr_data_draw_users(data, users, seed). */

/* The rerank baseline's fixed preference: the categories of the last (up to) 10 history
 * items, counted, the 3 most frequent (ties: the one seen most recently first), joined by
 * "; " (e.g. "Drama; Comedy; Romance"). Without categories: words of 4+ letters of those
 * titles, the same way. Nothing usable: the last item's title. Heap string ("" for an empty
 * history). */
int eval_history_preference(const agent_catalog *c, const int32_t *hist, int64_t n_hist, char **out);

/* The trm baseline for one history: top-10 ids of the tool with an empty preference.
 * Returns 0-based ranks of target under both rules (-1 = missed) in *rank_exact / *rank_substr. */
int eval_trm_one(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t n_hist, int32_t target,
                 int *rank_exact, int *rank_substr);

/* The teacher for one history: 0-based ranks of target in agent_synth_one's answer under both
 * rules (-1 = missed; also when synth gives DR_ERR_RANGE / DR_ERR_FORMAT, error cleared).
 * o->seed is used as is (eval_run derives it per user). */
int eval_teacher_one(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t n_hist,
                     int32_t target, const agent_synth_opts *o, int *rank_exact, int *rank_substr);

/* The fusion bound (src/eval/fusion.c): what fusing preference-conditioned TRM calls could gain
 * over the empty preference, with exact scores over the whole catalog. For every user of the
 * split (0 = valid, 1 = test; history masked, as trm_evaluate): the empty preference; the
 * categories of the last max_hist history items, each as a preference, fused by a mixture of
 * softmaxes (p0 + 0.5 * sum_c w_c p_c, w = category frequency) or log-linearly
 * (0.5 s0 + 0.5 * sum_c w_c s_c); the TRM's own posterior mass per category, its top 3 as
 * preferences, 0.5 p0 + 0.5 * their renormalised mixture; and RRF (k = 60) of the top-20 lists
 * of the empty preference and those 3. NDCG@10 with its bootstrap CI and the paired difference
 * against the empty preference (B resamples from seed). Needs the pref model and categories. */
enum eval_fusion_policy {
    EVAL_FUSION_EMPTY = 0,
    EVAL_FUSION_HIST_MIX,
    EVAL_FUSION_HIST_LOGLIN,
    EVAL_FUSION_POSTERIOR_MIX,
    EVAL_FUSION_RRF,
    EVAL_FUSION_N
};
typedef struct eval_fusion_result {
    int64_t n_users;
    int bootstrap;
    eval_ci ndcg10[EVAL_FUSION_N], diff[EVAL_FUSION_N]; /* diff: policy minus empty, per user */
    double recall10[EVAL_FUSION_N];
} eval_fusion_result;
struct trm_model;
int eval_pref_fusion(struct trm_model *m, const struct dr_dataset *d, int split, int max_hist, int B, uint64_t seed,
                     eval_fusion_result *out);
const char *eval_fusion_name(int policy);

/* Evaluate o->mode on the selected test users. Episodes of the LLM modes go through
 * agent_rollout in chunks of o->chunk users with o->batch model slots. *r owns the
 * per-episode scores (eval_result_free, also after an error). */
int eval_run(const eval_inputs *in, const eval_opts *o, eval_result *r);

/* Several modes: "deeprec,trm" -> modes[] in list order (room for EVAL_N_MODES), *n.
 * DR_ERR_ARG when a name is empty, unknown or listed twice, or the list is empty. */
int eval_modes_parse(const char *list, int *modes, int *n);
/* eval_run for each of modes[0..n) (o->mode ignored; a line per mode to o->progress),
 * then, when ref >= 0, pair[i] = eval_paired_diff of res[i] against res[ref] with
 * o->bootstrap resamples. res[0..n) is zeroed first; eval_result_free each, also after
 * an error. */
int eval_run_modes(const eval_inputs *in, const eval_opts *o, const int *modes, int n, int ref, eval_result *res,
                   eval_paired *pair);

/* ---------------------------------------------------------------- reports */
/* A table (rows = results x rules, then an outcome/cost table) for a terminal. */
void eval_report_table(const eval_result *r, int n, FILE *out);
/* Paired differences against p->ref, one row per (mode, metric), for a terminal. */
void eval_report_paired(const eval_paired *p, int n, FILE *out);
/* JSON object of one result (LLM-only fields null for trm and teacher). New reference.
 * "metrics": {"exact": {"recall@1": mean, ...}, "substring": {...}} (plain means) and
 * "metrics_ci": {"exact": {"recall@1": {"mean", "lo", "hi"}, ...}, "substring": {...}},
 * "bootstrap": {"resamples": B, "level": 0.95}. */
struct json_t *eval_result_json(const eval_result *r);
/* {"ref": mode, "users": n, "resamples": B, "exact": {"recall@1": {"mean", "lo", "hi"}, ...},
 *  "substring": {...}}. New reference. */
struct json_t *eval_paired_json(const eval_paired *p);

#endif
