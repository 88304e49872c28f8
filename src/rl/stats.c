/* Statistics of a batch of scored rollouts (a step's training batch and the probe share them)
 * and the step's JSON line. */
#include "deeprec/metrics.h"
#include "internal.h"
#include <jansson.h>
#include <math.h>
#include <time.h>


void rl_rollout_stats_sum(rl_rollout_stats *st, const agent_episode *eps, const rl_reward *rw, int n) {
    double s2 = 0;
    for (int i = 0; i < n; i++) {
        const rl_reward *x = &rw[i];
        st->reward += x->total;
        s2 += x->total * x->total;
        st->format += x->format;
        st->count += x->count;
        st->diversity += x->diversity;
        st->listwise += x->listwise;
        st->pointwise += x->pointwise;
        st->valid_rate += x->valid;
        st->mean_calls += eps[i].n_calls;
        st->hit_rate += x->hit_rank >= 0;
        if (x->hit_rank >= 0) st->ndcg10 += dr_metrics_ndcg_at(x->hit_rank + 1, 10);
        if (eps[i].outcome >= 0 && eps[i].outcome < AGENT_N_OUTCOMES) st->outcomes[eps[i].outcome]++;
        if (eps[i].outcome == AGENT_FINISHED && eps[i].format > AGENT_FMT_OK && eps[i].format < AGENT_FMT_N)
            st->format_fails[eps[i].format]++;
        st->mean_gen += eps[i].n_generated;
        st->n_tokens += eps[i].n_generated;
        st->n_seq_tokens += eps[i].n_tokens;
    }
    double inv = n ? 1.0 / n : 0.0;
    st->reward *= inv;
    st->format *= inv;
    st->count *= inv;
    st->diversity *= inv;
    st->listwise *= inv;
    st->pointwise *= inv;
    st->valid_rate *= inv;
    st->mean_calls *= inv;
    st->hit_rate *= inv;
    st->ndcg10 *= inv;
    st->mean_gen *= inv;
    double var = s2 * inv - st->reward * st->reward;
    st->reward_std = var > 0 ? sqrt(var) : 0.0;
}

static json_t *fails_json(const int *fails) {
    json_t *ff = json_object();
    for (int i = AGENT_FMT_OK + 1; i < AGENT_FMT_N; i++)
        if (fails[i]) json_object_set_new(ff, agent_format_name(i), json_integer(fails[i]));
    return ff;
}

/* The rollout keys, in the order of the step's line (its timing keys stay with the step's). */
static void rollout_json(json_t *j, int stage, const rl_rollout_stats *s) {
    json_object_set_new(j, "reward", json_real(s->reward));
    json_object_set_new(j, "reward_std", json_real(s->reward_std));
    json_object_set_new(j, "format", json_real(s->format));
    if (stage == RL_STAGE_1) {
        json_object_set_new(j, "count", json_real(s->count));
        json_object_set_new(j, "diversity", json_real(s->diversity));
    } else {
        json_object_set_new(j, "listwise", json_real(s->listwise));
        json_object_set_new(j, "pointwise", json_real(s->pointwise));
    }
    json_object_set_new(j, "valid_rate", json_real(s->valid_rate));
    json_object_set_new(j, "mean_calls", json_real(s->mean_calls));
    json_object_set_new(j, "hit_rate", json_real(s->hit_rate));
    json_object_set_new(j, "ndcg@10", json_real(s->ndcg10));
    json_t *oc = json_object();
    for (int i = 0; i < AGENT_N_OUTCOMES; i++) json_object_set_new(oc, agent_outcome_name(i), json_integer(s->outcomes[i]));
    json_object_set_new(j, "outcomes", oc);
    json_object_set_new(j, "format_failures", fails_json(s->format_fails));
    json_object_set_new(j, "episodes", json_integer(s->n_episodes));
    json_object_set_new(j, "users", json_integer(s->n_users));
    json_object_set_new(j, "mean_gen_tokens", json_real(s->mean_gen));
    json_object_set_new(j, "gen_tokens", json_integer(s->n_tokens));
    json_object_set_new(j, "seq_tokens", json_integer(s->n_seq_tokens));
}

static json_t *probe_json(int stage, const rl_rollout_stats *p) {
    json_t *j = json_object();
    rollout_json(j, stage, p);
    json_object_set_new(j, "seconds", json_real(p->seconds));
    return j;
}

json_t *rl_step_json(const rl_step_stats *s) {
    json_t *j = json_object();
    json_object_set_new(j, "stage", json_integer(s->stage));
    json_object_set_new(j, "step", json_integer(s->step));
    rollout_json(j, s->stage, &s->batch);
    json_object_set_new(j, "loss", json_real(s->loss));
    json_object_set_new(j, "clip_frac", json_real(s->clip_frac));
    json_object_set_new(j, "entropy", json_real(s->entropy));
    json_object_set_new(j, "kl", json_real(s->kl));
    json_object_set_new(j, "ratio", json_real(s->ratio));
    json_object_set_new(j, "grad_norm", json_real(s->grad_norm));
    json_object_set_new(j, "lr", json_real(s->lr));
    json_object_set_new(j, "updates", json_integer(s->n_updates));
    json_object_set_new(j, "logp_diff", json_real(s->logp_diff));
    json_object_set_new(j, "rollout_s", json_real(s->batch.seconds));
    json_object_set_new(j, "update_s", json_real(s->update_s));
    json_object_set_new(j, "step_s", json_real(s->step_s));
    json_object_set_new(j, "rollout_cpu_s", json_real(s->batch.cpu_seconds));
    json_object_set_new(j, "update_cpu_s", json_real(s->update_cpu_s));
    if (s->probed_start) json_object_set_new(j, "probe_start", probe_json(s->stage, &s->probe_start));
    if (s->probed) json_object_set_new(j, "probe", probe_json(s->stage, &s->probe));
    if (s->validated_start) json_object_set_new(j, "valid_start", probe_json(s->stage, &s->valid_start));
    if (s->validated) json_object_set_new(j, "valid", probe_json(s->stage, &s->valid));
    return j;
}
