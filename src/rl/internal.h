/* Internal to the RL trainer (rl_train): the run every part works on, and the parts'
 * entry points. One file a concept:
 *   trainer.c     options, the user order and seeds, one step, the loop;
 *   rollout.c     roll out and score a share of requests (gathered under MPI);
 *   probe.c       the held-out probe users and their rollout;
 *   update.c      the PPO updates over a rollout batch (the micro-batch packer);
 *   stats.c       rollout statistics and the step's JSON;
 *   checkpoint.c  paths, the committed marker, the input fingerprint, save and resume. */
#ifndef DEEPREC_RL_INTERNAL_H
#define DEEPREC_RL_INTERNAL_H

#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/rl.h"

typedef struct rl_run {
    const rl_env *env;
    const rl_opts *o;
    const struct tokenizer *tok;
    agent_catalog *cat;
    rl_reward_ctx *rw;
    agent_tool tool;
    llm_train *tr;
    llm_model *resume_src; /* full FT resume: the checkpoint model the trainer was built from */
    /* Full fine-tuning: a view of the trainer's fp32 weights (no copy) that the rollouts and
     * the probe decode with; NULL under LoRA, where each rollout merges a snapshot. */
    llm_model *policy;
    int32_t *sel;
    int n_sel;
    int32_t *probe;         /* held-out probe users (dataset order) */
    int n_probe;
    int32_t *perm;          /* permutation of the current pass */
    int64_t perm_pass;
    char *base, *marker, *metrics, *curve, *prev;
    char *slot_model[2], *slot_state[2];
    int cur_slot;           /* slot of the committed checkpoint, -1 none */
    /* keep_best: validation users and the best policy so far (committed with the checkpoint) */
    int32_t *vusers;
    int n_vusers;
    char *best_model[2];
    int best_slot;          /* -1: none yet */
    int64_t best_step;
    double best_ndcg10;
    double *best_user_ndcg; /* the best policy's NDCG@10 per validation user (the paired test) */
    double *cand_user_ndcg; /* the policy just validated, per user */
    char fp[17];            /* input model fingerprint */
    dr_jsonl jl;
    int32_t max_ctx;
} rl_run;

/* trainer.c: the seed of stream `stream` of step s (0: run-wide streams). */
uint64_t rl_step_seed(const rl_opts *o, int64_t s, uint64_t stream);

/* rollout.c */
/* Requests for users: their training examples (dr_data_train_example). */
void rl_user_requests(const struct dr_dataset *d, const int32_t *users, int n, agent_request *req);
/* This rank's share of n_req requests x G samples, rolled out with the current policy and
 * scored (all of them in one process). */
typedef struct rl_share {
    int64_t lo;          /* first request of this rank's share */
    int64_t e0;          /* its first episode in the batch (lo x G) */
    int n_loc;           /* its episodes */
    agent_episode *eps;  /* [n_loc] */
    rl_reward *rw;       /* [n_loc] */
    agent_episode *all;  /* the whole batch's episodes (under MPI summaries only; else eps) */
    rl_reward *all_rw;   /* the whole batch's rewards (else rw) */
} rl_share;
int rl_rollout_share(rl_run *r, const agent_request *req, int n_req, int G, int slots, float temperature, uint64_t seed,
                     rl_share *sh);
void rl_share_free(rl_share *sh);

/* probe.c */
/* Move probe_users selected users (a seeded draw, kept in dataset order) out of the selection. */
int rl_probe_split(rl_run *r);
int rl_probe_run(rl_run *r, rl_rollout_stats *out);
/* S episodes per request at `temperature` from `seed` (greedy: 0), scored and summed into *out;
 * per_req (NULL or [n_req]) gets each request's NDCG@10, the mean over its S episodes. */
int rl_score_requests(rl_run *r, const agent_request *req, int n_req, int S, float temperature, uint64_t seed,
                      rl_rollout_stats *out, double *per_req);

/* keep_best.c: the output chosen on validation items (rl_opts.keep_best_users). */
int rl_best_users(rl_run *r);
/* Greedy episodes of the current policy on the validation users' held-out items. */
int rl_best_validate(rl_run *r, rl_rollout_stats *out);
/* After validating the policy of step `step`: with no best yet, or when it beats the best
 * with confidence (the paired difference of NDCG@10 over the validation users has its 95%
 * interval above zero, RL_KEEP_BEST_Z), saves the weights to the free best slot; *improved
 * says so (the caller commits it with a checkpoint). */
int rl_best_consider(rl_run *r, int64_t step, const rl_rollout_stats *v, int *improved);
/* The lower end of the normal 95% interval of mean(cand - best) over n users (-inf for n < 2). */
double rl_best_paired_lower(const double *cand, const double *best, int n);
/* The end of a run: the best slot's policy becomes `out`. */
int rl_best_finish(rl_run *r);

/* update.c: PPO updates over the step's rollout batch sh (adv over the whole batch; ref[n_loc]
 * reference log-probs or NULL). */
int rl_update(rl_run *r, const rl_share *sh, int n_ep, const float *adv, float *const *ref, int64_t step,
              rl_step_stats *st);

/* stats.c: process CPU seconds (all threads). */
/* stats.c: adds n episodes with their rewards into st and takes the means (st zeroed before). */
void rl_rollout_stats_sum(rl_rollout_stats *st, const agent_episode *eps, const rl_reward *rw, int n);

/* checkpoint.c */
int rl_ckpt_paths(rl_run *r);
void rl_ckpt_paths_free(rl_run *r);
/* Builds r->tr: from the committed checkpoint when resuming (checked against this run), else
 * from the input model; *start gets the steps already done. */
int rl_ckpt_open(rl_run *r, int64_t *start, int *resumed);
/* Checkpoint after step `step` into the free slot, then commit it. */
int rl_ckpt_save(rl_run *r, int64_t step);

#endif
