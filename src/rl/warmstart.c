/* The outcome-aware warm start (issue 12): best-of-N TRM-built trajectories on many training
 * positions, each scored by the stage-2 reward against the known next item. Why: a teacher
 * that never looks at an outcome hits the target about as often as the TRM alone, so a student
 * that imitates it can at best tie the TRM. Selecting by outcome gives the student examples of
 * preferences and lists that worked. */
#include "deeprec/rl.h"
#include "deeprec/data.h"
#include "deeprec/trm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void rl_warmstart_opts_default(rl_warmstart_opts *o) {
    memset(o, 0, sizeof *o);
    o->synth.varied = 1;
    o->synth.seed = 1;
    o->positions = 4;
    o->best_of = 8;
    o->order_by_target = 1;
    o->min_prefix = 2;
}

int rl_best_of(const double *r, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(r[i]) && (best < 0 || r[i] > r[best])) best = i;
    return best;
}

int rl_warmstart_score(rl_reward_ctx *rc, const agent_catalog *c, const agent_synth_traj *t, int32_t target,
                       rl_reward *out) {
    /* a finished episode holding the trajectory's text: the same format check, resolution and
     * reward as a rollout gets */
    agent_episode e;
    memset(&e, 0, sizeof e);
    size_t np = strlen(t->prompt), nc = strlen(t->completion);
    e.text = dr_malloc(np + nc + 1);
    if (!e.text) return dr_error_code();
    memcpy(e.text, t->prompt, np);
    memcpy(e.text + np, t->completion, nc + 1);
    e.text_len = np + nc;
    e.prompt_len = np;
    e.target = target;
    e.outcome = AGENT_FINISHED;
    /* no call records: the answer lines are exact catalog titles, so resolution needs no
     * fallback among retrieved items; the count is set after finalize (it reads the records) */
    int r = agent_episode_finalize(&e, c);
    e.n_calls = t->n_calls;
    if (!r) r = rl_reward_score(rc, RL_STAGE_2, 0, &e, out);
    e.n_calls = 0;
    agent_episode_free(&e);
    return r;
}

/* The positions j (target train[j], prefix train[:j]) of one user: the last train item always,
 * then distinct others drawn uniformly from [lo, n_train - 1), lo = min_prefix, or the start of
 * the last `recent` items when that is later. */
static int pick_positions(dr_rng *r, int64_t n_train, int min_prefix, int recent, int want, int64_t *pos) {
    int n = 0;
    if (n_train <= min_prefix) return 0;
    pos[n++] = n_train - 1;
    int64_t lo = recent > 0 && n_train - recent > min_prefix ? n_train - recent : min_prefix;
    int64_t span = n_train - 1 - lo; /* candidates lo .. n_train - 2 */
    for (int tries = 0; n < want && span > 0 && tries < 8 * want; tries++) {
        int64_t j = lo + (int64_t)dr_rng_below(r, (uint64_t)span);
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = pos[i] == j;
        if (!dup) pos[n++] = j;
    }
    return n;
}

int rl_warmstart_best(const agent_catalog *c, const agent_tool *tool, rl_reward_ctx *rctx, const int32_t *hist,
                      int64_t n_prefix, int32_t target, int order_by_target, const agent_synth_opts *base,
                      const uint64_t *seeds, int n, agent_synth_traj *best, double *rewards, int *best_index) {
    memset(best, 0, sizeof *best);
    *best_index = -1;
    int b = -1, rc = DR_OK;
    double br = 0.0;
    for (int k = 0; k < n && !rc; k++) {
        agent_synth_opts so = *base;
        so.seed = seeds[k];
        so.target = order_by_target ? target : 0; /* the score always uses the target */
        rewards[k] = NAN;
        agent_synth_traj t;
        int r = agent_synth_one(c, tool, hist, n_prefix, &so, &t);
        if (r == DR_ERR_RANGE || r == DR_ERR_FORMAT) { /* too few items or an odd title: no candidate */
            dr_error_clear();
            continue;
        }
        if (r) {
            agent_synth_traj_free(best);
            return r;
        }
        rl_reward w;
        if (!(rc = rl_warmstart_score(rctx, c, &t, target, &w))) {
            rewards[k] = w.total;
            /* strictly greater: ties keep the earlier candidate, as rl_best_of */
            if (b < 0 || w.total > br) {
                agent_synth_traj_free(best);
                *best = t;
                memset(&t, 0, sizeof t);
                b = k;
                br = w.total;
            }
        }
        agent_synth_traj_free(&t);
    }
    if (rc) {
        agent_synth_traj_free(best);
        return rc;
    }
    *best_index = b;
    return DR_OK;
}

int rl_warmstart_synth(const dr_dataset *d, trm_model *trm, const agent_catalog *c, const agent_tool *tool,
                       const rl_warmstart_opts *o, const char *out_path, rl_warmstart_stats *st) {
    memset(st, 0, sizeof *st);
    if (o->positions < 1 || o->best_of < 1 || o->min_prefix < 1)
        return dr_error(DR_ERR_ARG, "warm start: positions, best_of and min_prefix must be >= 1 (got %d, %d, %d)",
                        o->positions, o->best_of, o->min_prefix);
    double t0 = dr_now();
    rl_reward_ctx *rctx = NULL;
    int32_t *order = NULL;
    int64_t *pos = NULL;
    uint64_t *seeds = NULL;
    double *rew = NULL;
    dr_afile af = {0};
    int rc;
    if ((rc = rl_reward_ctx_new(&rctx, c, trm))) goto done;
    order = dr_calloc((size_t)d->n_users + 1, sizeof *order);
    pos = dr_calloc((size_t)o->positions, sizeof *pos);
    seeds = dr_calloc((size_t)o->best_of, sizeof *seeds);
    rew = dr_calloc((size_t)o->best_of, sizeof *rew);
    if (!order || !pos || !seeds || !rew) {
        rc = dr_error_code();
        goto done;
    }
    int n_users = 0;
    for (int32_t u = 0; u < d->n_users; u++) {
        const int32_t *tr;
        if (dr_data_train(d, u, &tr) > o->min_prefix) order[n_users++] = u;
    }
    dr_rng rng;
    dr_rng_seed(&rng, o->synth.seed);
    dr_rng_shuffle_i32(&rng, order, (size_t)n_users);
    if (o->users > 0 && o->users < n_users) n_users = o->users;
    if ((rc = dr_afile_open(&af, out_path))) goto done;
    dr_progress prog;
    dr_progress_start(&prog, o->progress, "warm start", n_users, "users");
    double sum_r = 0, sum_first = 0;
    int64_t hits = 0, retrieved = 0, calls = 0;
    for (int i = 0; i < n_users && !rc; i++) {
        int32_t u = order[i];
        const int32_t *tr;
        int64_t n_tr = dr_data_train(d, u, &tr);
        dr_rng ur = dr_rng_split(&rng, (uint64_t)u);
        int np = pick_positions(&ur, n_tr, o->min_prefix, o->recent, o->positions, pos);
        for (int p = 0; p < np && !rc; p++) {
            int32_t target = tr[pos[p]];
            for (int k = 0; k < o->best_of; k++) seeds[k] = dr_rng_u64(&ur);
            agent_synth_traj best;
            int b;
            if ((rc = rl_warmstart_best(c, tool, rctx, tr, pos[p], target, o->order_by_target, &o->synth, seeds,
                                        o->best_of, &best, rew, &b)))
                break;
            for (int k = 0; k < o->best_of; k++)
                if (!isnan(rew[k])) {
                    sum_first += rew[k];
                    break;
                }
            if (b >= 0) {
                char *line = NULL;
                if (!(rc = agent_synth_json(&best, &line))) {
                    fputs(line, af.fp);
                    fputc('\n', af.fp);
                    st->written++;
                    sum_r += rew[b];
                    calls += best.n_calls;
                    retrieved += best.target_retrieved;
                    for (int k = 0; k < AGENT_N_REC; k++) hits += best.answer[k] == target;
                }
                free(line);
                agent_synth_traj_free(&best);
            } else {
                st->skipped++;
            }
        }
        dr_progress_set_extra(&prog, "%lld kept", (long long)st->written);
        dr_progress_update(&prog, i + 1);
    }
    dr_progress_finish(&prog);
    if (!rc && ferror(af.fp)) rc = dr_error_at(DR_ERR_IO, out_path, 0, "write failed");
    if (!rc) rc = dr_afile_commit(&af);
    if (!rc) {
        double w = st->written ? (double)st->written : 1.0;
        st->mean_reward = sum_r / w;
        st->mean_first_reward = sum_first / w;
        st->hit_rate = (double)hits / w;
        st->retrieved_rate = (double)retrieved / w;
        st->mean_calls = (double)calls / w;
    }
done:
    if (rc && af.fp) dr_afile_abort(&af);
    st->seconds = dr_now() - t0;
    free(seeds);
    free(rew);
    free(pos);
    free(order);
    rl_reward_ctx_free(rctx);
    return rc;
}
