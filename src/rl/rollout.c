/* Rollouts of the RL trainer: the current policy on a share of requests, scored with the
 * stage's reward. Under MPI (dist.h) each rank rolls out its share of the prompts (all G
 * samples of a prompt on one rank, its sampling streams numbered as one process numbers them)
 * and the per-episode summaries are gathered, so every rank sees the whole batch. */
#include "internal.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include <stdlib.h>
#include <string.h>

void rl_user_requests(const dr_dataset *d, const int32_t *users, int n, agent_request *req) {
    for (int i = 0; i < n; i++) {
        req[i] = (agent_request){users[i], NULL, 0, 0, NULL};
        req[i].target = dr_data_train_example(d, users[i], &req[i].hist, &req[i].n_hist);
    }
}

/* Roll out the trainer's current weights: `samples` episodes per request on `slots` decode
 * slots (at least `samples`), sampling at `temperature` (0 = greedy) from `seed`. Full
 * fine-tuning decodes through the view of the weights; LoRA merges a snapshot. */
static int policy_rollout(rl_run *r, const agent_request *req, int n_req, int samples, int slots, float temperature,
                          uint64_t seed, uint64_t first_stream, agent_episode **eps) {
    const rl_opts *o = r->o;
    llm_model *merged = NULL;
    agent_model am = {0};
    int rc = DR_OK;
    if (!r->policy && (rc = llm_train_export_model(r->tr, &merged))) return rc;
    agent_llm_opts lo = {slots < samples ? samples : slots, r->max_ctx, temperature, 0, o->top_p, seed, first_stream};
    if (!(rc = agent_model_llm_new(&am, r->policy ? r->policy : merged, r->tok, &lo))) {
        agent_rollout_opts ro = o->rollout;
        ro.samples = samples;
        ro.max_ctx = r->max_ctx;
        ro.progress = NULL;
        rc = agent_rollout(&am, &r->tool, r->cat, req, n_req, &ro, eps);
        agent_model_llm_free(&am);
    }
    llm_model_free(merged);
    return rc;
}

/* The stage's reward of every episode (then the optional hook). */
static int score_episodes(rl_run *r, const agent_episode *eps, int n, rl_reward *rw) {
    const rl_opts *o = r->o;
    for (int i = 0; i < n; i++) {
        int rc = rl_reward_score(r->rw, o->stage, o->substring_hit, &eps[i], &rw[i]);
        if (!rc && o->reward_hook) rc = o->reward_hook(o->reward_hook_ctx, &eps[i], &rw[i]);
        if (rc) return rc;
    }
    return DR_OK;
}

/* Under MPI: every rank's episodes [n_loc] and rewards into the whole step's (n_all, in episode
 * order), as far as the statistics and the advantages read them (rl_rollout_stats_sum,
 * rl_advantages, the update's ordering): lengths, outcome, format, calls and the reward parts. */
enum { R_TOTAL, R_FORMAT, R_COUNT, R_DIV, R_LIST, R_POINT, R_VALID, R_HIT, R_CALLS, R_OUTCOME, R_FMT, R_GEN, R_TOK, R_N };
static int gather_episodes(const agent_episode *eps, const rl_reward *rw, int n_loc, int n_groups, int G,
                           agent_episode *ae, rl_reward *ar) {
    const int size = dr_dist_size(), n_all = n_groups * G;
    double *mine = dr_calloc((size_t)n_loc * R_N + 1, sizeof *mine), *all = dr_calloc((size_t)n_all * R_N + 1, sizeof *all);
    int64_t *counts = dr_calloc((size_t)size, sizeof *counts);
    int rc = DR_OK;
    if (!mine || !all || !counts) {
        rc = dr_error_code();
        goto out;
    }
    for (int q = 0; q < size; q++) {
        int64_t lo, hi;
        dr_dist_share_of(n_groups, q, size, &lo, &hi);
        counts[q] = (hi - lo) * G * R_N;
    }
    for (int i = 0; i < n_loc; i++) {
        double *x = mine + (size_t)i * R_N;
        x[R_TOTAL] = rw[i].total, x[R_FORMAT] = rw[i].format, x[R_COUNT] = rw[i].count;
        x[R_DIV] = rw[i].diversity, x[R_LIST] = rw[i].listwise, x[R_POINT] = rw[i].pointwise;
        x[R_VALID] = rw[i].valid, x[R_HIT] = rw[i].hit_rank, x[R_CALLS] = eps[i].n_calls;
        x[R_OUTCOME] = eps[i].outcome, x[R_FMT] = eps[i].format;
        x[R_GEN] = eps[i].n_generated, x[R_TOK] = eps[i].n_tokens;
    }
    if ((rc = dr_dist_allgather_f64(mine, all, counts))) goto out;
    for (int i = 0; i < n_all; i++) {
        const double *x = all + (size_t)i * R_N;
        memset(&ae[i], 0, sizeof ae[i]);
        memset(&ar[i], 0, sizeof ar[i]);
        ar[i].total = x[R_TOTAL], ar[i].format = x[R_FORMAT], ar[i].count = x[R_COUNT];
        ar[i].diversity = x[R_DIV], ar[i].listwise = x[R_LIST], ar[i].pointwise = x[R_POINT];
        ar[i].valid = (int)x[R_VALID], ar[i].hit_rank = (int)x[R_HIT], ar[i].n_calls = (int)x[R_CALLS];
        ae[i].n_calls = (int)x[R_CALLS], ae[i].outcome = (int)x[R_OUTCOME], ae[i].format = (int)x[R_FMT];
        ae[i].n_generated = (int32_t)x[R_GEN], ae[i].n_tokens = (int32_t)x[R_TOK];
    }
out:
    free(mine);
    free(all);
    free(counts);
    return rc;
}

int rl_rollout_share(rl_run *r, const agent_request *req, int n_req, int G, int slots, float temperature, uint64_t seed,
                     rl_share *sh) {
    int64_t hi;
    memset(sh, 0, sizeof *sh);
    dr_dist_share(n_req, &sh->lo, &hi);
    const int n_loc = (int)(hi - sh->lo) * G, n_all = n_req * G;
    sh->e0 = sh->lo * G;
    sh->n_loc = n_loc; /* set before anything can fail: rl_share_free frees that many */
    int rc = DR_OK;
    if (n_loc > 0 && (rc = policy_rollout(r, req + sh->lo, (int)(hi - sh->lo), G, slots, temperature, seed,
                                          (uint64_t)sh->e0, &sh->eps)))
        return rc;
    sh->rw = dr_calloc((size_t)(n_loc > 0 ? n_loc : 1), sizeof *sh->rw);
    if (!sh->rw) return dr_error_code();
    if ((rc = score_episodes(r, sh->eps, n_loc, sh->rw))) return rc;
    if (dr_dist_size() == 1) {
        sh->all = sh->eps;
        sh->all_rw = sh->rw;
        return DR_OK;
    }
    sh->all = dr_calloc((size_t)n_all + 1, sizeof *sh->all);
    sh->all_rw = dr_calloc((size_t)n_all + 1, sizeof *sh->all_rw);
    if (!sh->all || !sh->all_rw) return dr_error_code();
    return gather_episodes(sh->eps, sh->rw, n_loc, n_req, G, sh->all, sh->all_rw);
}

void rl_share_free(rl_share *sh) {
    if (sh->all != sh->eps) free(sh->all);
    if (sh->all_rw != sh->rw) free(sh->all_rw);
    if (sh->eps) agent_episodes_free(sh->eps, sh->n_loc);
    free(sh->rw);
    memset(sh, 0, sizeof *sh);
}
