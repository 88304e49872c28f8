/* The output chosen on held-out items (rl_opts.keep_best_users). The RL reward is measured on
 * the users' training targets, against a TRM that was trained on them; it can rise while the
 * evaluation's metric falls (docs/ablation.md). So the policy that leaves the stage is the
 * best of the input and the validated steps by greedy NDCG@10 on validation items, which
 * neither the TRM's nor the policy's training saw. A step replaces the best only when it is
 * better with confidence, user by user: on 671 users a mean that is 0.002 higher is noise
 * (the demo's stage-1 policy that led its input by +0.0023 on validation lost 0.0036 on test),
 * and the input is the policy that needs no luck to be kept. The best policy lives in one of two slots
 * (<out base>.best-{a,b}.gguf) that the checkpoint marker names, so a kill at any moment keeps
 * a consistent pair of checkpoint and best. */
#include "internal.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include "deeprec/metrics.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_user(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The first keep_best_users of the evaluation's draw of users (dr_data_draw_users, with
 * another seed stream), in dataset order. */
int rl_best_users(rl_run *r) {
    const rl_opts *o = r->o;
    if (o->keep_best_users <= 0) return DR_OK;
    int rc = dr_data_draw_users(r->env->data, o->keep_best_users, rl_step_seed(o, 0, 5), &r->vusers, &r->n_vusers);
    if (rc) return rc;
    if (r->n_vusers == 0)
        return dr_error(DR_ERR_RANGE, "rl: keep-best needs users with a validation item (3 or more items); none has");
    qsort(r->vusers, (size_t)r->n_vusers, sizeof *r->vusers, cmp_user);
    r->best_user_ndcg = dr_calloc((size_t)r->n_vusers, sizeof *r->best_user_ndcg);
    r->cand_user_ndcg = dr_calloc((size_t)r->n_vusers, sizeof *r->cand_user_ndcg);
    return r->best_user_ndcg && r->cand_user_ndcg ? DR_OK : dr_error_code();
}

int rl_best_validate(rl_run *r, rl_rollout_stats *out) {
    const int n = r->n_vusers;
    agent_request *req = dr_calloc((size_t)n, sizeof *req);
    if (!req) return dr_error_code();
    for (int i = 0; i < n; i++) {
        req[i] = (agent_request){r->vusers[i], NULL, 0, 0, NULL};
        req[i].target = dr_data_valid(r->env->data, r->vusers[i], &req[i].hist, &req[i].n_hist);
    }
    int rc = rl_score_requests(r, req, n, 1, 0.0f, rl_step_seed(r->o, 0, 6), out, r->cand_user_ndcg);
    free(req);
    return rc;
}

double rl_best_paired_lower(const double *cand, const double *best, int n) {
    if (n < 2) return -INFINITY;
    double m = 0, ss = 0;
    for (int i = 0; i < n; i++) m += cand[i] - best[i];
    m /= n;
    for (int i = 0; i < n; i++) ss += (cand[i] - best[i] - m) * (cand[i] - best[i] - m);
    return m - RL_KEEP_BEST_Z * sqrt(ss / (n - 1) / n);
}

int rl_best_consider(rl_run *r, int64_t step, const rl_rollout_stats *v, int *improved) {
    *improved = 0;
    if (r->best_slot >= 0 && !(rl_best_paired_lower(r->cand_user_ndcg, r->best_user_ndcg, r->n_vusers) > 0)) return DR_OK;
    int slot = r->best_slot == 0 ? 1 : 0; /* the slot the marker does not name */
    if (dr_dist_rank() == 0) {
        int rc = llm_train_save_model(r->tr, r->tok, r->o->out_type, r->best_model[slot]);
        if (rc) return rc;
    }
    r->best_slot = slot;
    r->best_step = step;
    r->best_ndcg10 = v->ndcg10;
    memcpy(r->best_user_ndcg, r->cand_user_ndcg, (size_t)r->n_vusers * sizeof *r->best_user_ndcg);
    *improved = 1;
    return DR_OK;
}

int rl_best_finish(rl_run *r) {
    if (dr_dist_rank() > 0) return DR_OK;
    if (r->best_slot < 0) return dr_error(DR_ERR_INTERNAL, "rl: keep-best has no validated policy to write");
    dr_mmap m;
    int rc = dr_mmap_open(&m, r->best_model[r->best_slot]);
    if (rc) return rc;
    rc = dr_write_file_atomic(r->o->out, m.data, m.size);
    dr_mmap_close(&m);
    return rc;
}
