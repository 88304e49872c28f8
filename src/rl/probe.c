/* The held-out probe: selected users kept out of training, on which the current policy is
 * rolled out before step 1 and after every step with the same sampling seeds, so that two
 * probes differ only by the policy (rl.h). */
#include "internal.h"
#include "deeprec/metrics.h"
#include "deeprec/data.h"
#include <stdlib.h>
#include <string.h>

/* At most half of the selection, so training keeps users. */
int rl_probe_split(rl_run *r) {
    int n = r->o->probe_users;
    if (n <= 0) return DR_OK;
    if (n > r->n_sel / 2) n = r->n_sel / 2;
    if (n <= 0) return dr_error(DR_ERR_RANGE, "rl: %d selected users are too few for a held-out probe", r->n_sel);
    int32_t *shuf = dr_calloc((size_t)r->n_sel, sizeof *shuf);
    uint8_t *is_probe = dr_calloc((size_t)r->env->data->n_users + 1, 1);
    r->probe = dr_calloc((size_t)n, sizeof *r->probe);
    if (!shuf || !is_probe || !r->probe) {
        free(shuf);
        free(is_probe);
        return dr_error_code();
    }
    memcpy(shuf, r->sel, (size_t)r->n_sel * sizeof *shuf);
    dr_rng g;
    dr_rng_seed(&g, rl_step_seed(r->o, 0, 4));
    dr_rng_shuffle_i32(&g, shuf, (size_t)r->n_sel);
    for (int i = 0; i < n; i++) is_probe[shuf[i]] = 1;
    int np = 0, nk = 0;
    for (int i = 0; i < r->n_sel; i++) {
        if (is_probe[r->sel[i]]) r->probe[np++] = r->sel[i];
        else r->sel[nk++] = r->sel[i];
    }
    r->n_probe = np;
    r->n_sel = nk;
    free(shuf);
    free(is_probe);
    return DR_OK;
}

/* S episodes per request from a fixed seed, scored with the stage's reward. */
int rl_score_requests(rl_run *r, const agent_request *req, int n_req, int S, float temperature, uint64_t seed,
                      rl_rollout_stats *out, double *per_req) {
    const int n_ep = n_req * S;
    double t0 = dr_now(), c0 = dr_cpu_now();
    memset(out, 0, sizeof *out);
    rl_share sh = {0};
    int rc = rl_rollout_share(r, req, n_req, S, n_ep < 64 ? n_ep : 64, temperature, seed, &sh);
    if (!rc) {
        out->n_users = n_req;
        out->n_episodes = n_ep;
        rl_rollout_stats_sum(out, sh.all, sh.all_rw, n_ep);
        for (int i = 0; per_req && i < n_req; i++) { /* request i's episodes are i * S .. i * S + S - 1 */
            double g = 0;
            for (int k = 0; k < S; k++) {
                const rl_reward *x = &sh.all_rw[(size_t)i * S + k]; /* the rank rl_rollout_stats_sum scores */
                if (x->hit_rank >= 0) g += dr_metrics_ndcg_at(x->hit_rank + 1, 10);
            }
            per_req[i] = g / S;
        }
        out->seconds = dr_now() - t0;
        out->cpu_seconds = dr_cpu_now() - c0;
    }
    rl_share_free(&sh);
    return rc;
}

/* S episodes per probe user (their training examples) from a fixed seed. */
int rl_probe_run(rl_run *r, rl_rollout_stats *out) {
    const rl_opts *o = r->o;
    const int P = r->n_probe, S = o->probe_samples > 1 ? o->probe_samples : 1;
    agent_request *req = dr_calloc((size_t)P, sizeof *req);
    if (!req) return dr_error_code();
    rl_user_requests(r->env->data, r->probe, P, req);
    int rc = rl_score_requests(r, req, P, S, o->probe_temperature, rl_step_seed(o, 0, 3), out, NULL);
    free(req);
    return rc;
}
