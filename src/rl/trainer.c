/* The RL trainer's loop (rl_train): the run's setup, the user order and seeds, one step
 * (rollout, rewards, advantages, PPO updates), the probe, the JSON lines and checkpoints, and
 * the reward curve at the end. The parts live beside it (internal.h).
 *
 * Under MPI (dist.h) a step is data-parallel: each rank rolls out its share of the step's
 * prompts, the per-episode rewards and lengths are gathered so that every rank computes the
 * advantages and statistics of the whole step, and each rank backpropagates the episodes it
 * rolled out before the one optimizer step every rank takes. Rank 0 alone writes checkpoints,
 * metrics and the curve. */
#include "internal.h"
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void rl_opts_default(rl_opts *o, int stage) {
    memset(o, 0, sizeof *o);
    o->stage = stage;
    o->steps = stage == RL_STAGE_2 ? 80 : 20;
    o->prompts = 128;
    o->samples = 8;
    o->adv = RL_ADV_REINFORCEPP;
    o->ppo.clip_low = 0.2f;
    o->ppo.clip_high = 0.28f;
    o->ppo.kl_beta = 0.0f;
    o->updates = 2;
    o->epochs = 1;
    o->micro = 4;
    o->lr = 1e-6f;
    o->grad_clip = 1.0f;
    o->temperature = 1.0f;
    o->top_p = 0.95f;
    agent_rollout_opts_default(&o->rollout);
    o->select_k = 100;
    o->seed = 1;
    o->out_type = GGML_TYPE_F32;
    o->save_every = 1;
}

static void pass_perm(rl_run *r, int64_t pass) {
    if (r->perm_pass == pass) return;
    dr_rng base, pr;
    dr_rng_seed(&base, r->o->seed);
    pr = dr_rng_split(&base, 0x5e1ec7000000ull + (uint64_t)pass);
    for (int i = 0; i < r->n_sel; i++) r->perm[i] = r->sel[i];
    dr_rng_shuffle_i32(&pr, r->perm, (size_t)r->n_sel);
    r->perm_pass = pass;
}

/* Users of RL step s (1-based): positions [(s-1) P, s P) of the concatenated passes. */
static void step_users(rl_run *r, int64_t s, int32_t *users) {
    int P = r->o->prompts;
    for (int i = 0; i < P; i++) {
        int64_t k = (s - 1) * (int64_t)P + i;
        pass_perm(r, k / r->n_sel);
        users[i] = r->perm[k % r->n_sel];
    }
}

uint64_t rl_step_seed(const rl_opts *o, int64_t s, uint64_t stream) {
    dr_rng b, x;
    dr_rng_seed(&b, o->seed);
    x = dr_rng_split(&b, ((uint64_t)s << 8) ^ stream);
    return dr_rng_u64(&x);
}

/* One RL step: roll out the step's users, score, advantages over the whole step, then the
 * PPO updates (the KL reference log-probs first when kl_beta > 0). */
static int one_step(rl_run *r, int64_t s, int32_t *users, agent_request *req, rl_step_stats *st) {
    const rl_opts *o = r->o;
    const int P = o->prompts, G = o->samples, n_ep = P * G;
    memset(st, 0, sizeof *st);
    st->stage = o->stage;
    st->step = s;
    st->batch.n_users = P;
    st->batch.n_episodes = n_ep;
    double t0 = dr_now(), c0 = dr_cpu_now();
    int rc = DR_OK;
    step_users(r, s, users);
    rl_user_requests(r->env->data, users, P, req);
    rl_share sh = {0};
    double *rewards = NULL;
    int32_t *n_gen = NULL;
    float *adv = NULL, **ref = NULL;
    int slots = o->slots > 0 ? o->slots : (n_ep < 64 ? n_ep : 64);
    if ((rc = rl_rollout_share(r, req, P, G, slots, o->temperature, rl_step_seed(o, s, 1), &sh))) goto done;
    rewards = dr_calloc((size_t)n_ep, sizeof *rewards);
    n_gen = dr_calloc((size_t)n_ep, sizeof *n_gen);
    adv = dr_calloc((size_t)n_ep, sizeof *adv);
    if (!rewards || !n_gen || !adv) {
        rc = dr_error_code();
        goto done;
    }
    for (int i = 0; i < n_ep; i++) {
        rewards[i] = sh.all_rw[i].total;
        n_gen[i] = sh.all[i].n_generated;
    }
    if ((rc = rl_advantages(rewards, n_gen, P, G, o->adv, adv))) goto done;
    rl_rollout_stats_sum(&st->batch, sh.all, sh.all_rw, n_ep);
    st->batch.seconds = dr_now() - t0;
    double t1 = dr_now(), c1 = dr_cpu_now();
    st->batch.cpu_seconds = c1 - c0;
    if (o->ppo.kl_beta != 0.0f) {
        ref = dr_calloc((size_t)(sh.n_loc > 0 ? sh.n_loc : 1), sizeof *ref);
        if (!ref) {
            rc = dr_error_code();
            goto done;
        }
        for (int i = 0; i < sh.n_loc; i++) {
            ref[i] = dr_calloc((size_t)(sh.eps[i].n_tokens > 0 ? sh.eps[i].n_tokens : 1), sizeof(float));
            if (!ref[i]) {
                rc = dr_error_code();
                goto done;
            }
            if ((rc = rl_ref_logprobs(r->env->llm, &sh.eps[i], ref[i]))) goto done;
        }
    }
    if ((rc = rl_update(r, &sh, n_ep, adv, ref, s, st))) goto done;
    st->update_s = dr_now() - t1;
    st->update_cpu_s = dr_cpu_now() - c1;
    st->step_s = dr_now() - t0;
done:
    if (ref)
        for (int i = 0; i < sh.n_loc; i++) free(ref[i]);
    free(ref);
    rl_share_free(&sh);
    free(rewards);
    free(n_gen);
    free(adv);
    return rc;
}

static int check_opts(const rl_env *env, const rl_opts *o) {
    if (!env || !env->data || !env->trm || !env->llm) return dr_error(DR_ERR_ARG, "rl: missing dataset, TRM or LLM");
    if (o->stage != 1 && o->stage != 2) return dr_error(DR_ERR_ARG, "rl: --stage must be 1 or 2 (got %d)", o->stage);
    if (!o->out) return dr_error(DR_ERR_ARG, "rl: no output path");
    if (o->steps < 1 || o->prompts < 1 || o->samples < 1 || o->updates < 1 || o->epochs < 1 || o->micro < 1)
        return dr_error(DR_ERR_ARG, "rl: steps, prompts, samples, updates, epochs and micro-batch must be >= 1");
    if (o->adv != RL_ADV_REINFORCEPP && o->adv != RL_ADV_GRPO) return dr_error(DR_ERR_ARG, "rl: unknown advantage %d", o->adv);
    if (!(o->lr > 0) || o->ppo.clip_low < 0 || o->ppo.clip_low >= 1 || o->ppo.clip_high < 0 || o->ppo.kl_beta < 0)
        return dr_error(DR_ERR_ARG, "rl: lr > 0, clip_low in [0, 1), clip_high >= 0, kl_beta >= 0");
    if (o->save_every < 1) return dr_error(DR_ERR_ARG, "rl: save_every must be >= 1");
    if (o->lora_rank < 0) return dr_error(DR_ERR_ARG, "rl: LoRA rank must be >= 0");
    if (o->keep_best_users < 0 || o->keep_best_every < 0)
        return dr_error(DR_ERR_ARG, "rl: keep-best users and interval must be >= 0");
    return agent_rollout_opts_check(&o->rollout);
}

static void run_free(rl_run *r) {
    rl_reward_ctx_free(r->rw);
    agent_tool_trm_free(&r->tool);
    agent_catalog_free(r->cat);
    llm_model_free(r->policy); /* the view first: it points into the trainer */
    llm_train_free(r->tr);
    llm_model_free(r->resume_src);
    free(r->sel);
    free(r->probe);
    free(r->vusers);
    free(r->best_user_ndcg);
    free(r->cand_user_ndcg);
    free(r->perm);
    rl_ckpt_paths_free(r);
    dr_jsonl_close(&r->jl);
}

/* Catalog, rewards, tool and the data selection (less the probe users). */
static int select_users(rl_run *r) {
    const rl_env *env = r->env;
    const rl_opts *o = r->o;
    int rc;
    if ((rc = agent_catalog_build(env->data, &r->cat)) || (rc = rl_reward_ctx_new(&r->rw, r->cat, env->trm)) ||
        (rc = agent_tool_trm_new(&r->tool, env->trm, 1)))
        return rc;
    if ((rc = rl_select_users(env->data, env->trm, o->select_k, &r->sel, &r->n_sel))) return rc;
    if (r->n_sel > 0 && (rc = rl_probe_split(r))) return rc;
    if ((rc = rl_best_users(r))) return rc;
    if (r->n_sel == 0) {
        rc = dr_error(DR_ERR_RANGE, "rl: no training user passes the data selection (target in the TRM's top %d)",
                      o->select_k);
        dr_error_hint("use a larger --select-k, or 0 for all users with at least 2 training items");
        return rc;
    }
    r->perm = dr_calloc((size_t)r->n_sel, sizeof *r->perm);
    return r->perm ? DR_OK : dr_error_code();
}

static void log_start(const rl_run *r, int resumed) {
    const rl_opts *o = r->o;
    char selw[64];
    if (o->select_k > 0) snprintf(selw, sizeof selw, "target in the TRM's top %d", o->select_k);
    else snprintf(selw, sizeof selw, "no selection");
    dr_log(DR_LOG_INFO, "rl stage %d: %d users selected (%s), %d x %d episodes per step, %s, %s%s", o->stage, r->n_sel,
           selw, o->prompts, o->samples, rl_adv_name(o->adv), o->lora_rank ? "LoRA" : "full fine-tuning",
           resumed ? ", resumed" : "");
}

/* What a finished step leaves behind: its JSON line, the result, the hook, the progress line. */
static int step_done(rl_run *r, const rl_step_stats *st, int64_t start, rl_result *res, dr_progress *prog) {
    const rl_opts *o = r->o;
    if (dr_dist_rank() == 0) {
        json_t *j = rl_step_json(st);
        int rc = dr_jsonl_write(&r->jl, j);
        json_decref(j);
        if (rc) return rc;
    }
    if (st->step == start + 1) res->first_reward = st->batch.reward;
    res->last_reward = st->batch.reward;
    if (st->probed_start) {
        res->probed_start = 1;
        res->probe_start = st->probe_start.reward;
    }
    if (st->probed) {
        res->probed_last = 1;
        res->probe_last = st->probe.reward;
    }
    res->steps_done = st->step;
    if (o->on_step) o->on_step(o->on_step_ctx, st);
    const rl_rollout_stats *b = &st->batch;
    if (st->probed)
        dr_progress_set_extra(prog, "reward %.3f valid %.0f%% calls %.2f clip %.3f probe %.3f", b->reward,
                              100.0 * b->valid_rate, b->mean_calls, st->clip_frac, st->probe.reward);
    else
        dr_progress_set_extra(prog, "reward %.3f valid %.0f%% calls %.2f clip %.3f", b->reward, 100.0 * b->valid_rate,
                              b->mean_calls, st->clip_frac);
    dr_progress_update(prog, st->step);
    return DR_OK;
}

/* keep_best: validate the input policy (a run from step 0 that has no best yet) and commit
 * it as the first best with a checkpoint at step 0. */
static int validate_start(rl_run *r, int64_t start, rl_rollout_stats *v0, int *have) {
    *have = 0;
    if (r->n_vusers == 0 || start != 0 || r->best_slot >= 0) return DR_OK;
    int improved, rc = rl_best_validate(r, v0);
    if (!rc) rc = rl_best_consider(r, 0, v0, &improved);
    if (!rc) rc = rl_ckpt_save(r, 0);
    if (rc) dr_error_context("rl validation before step 1");
    *have = !rc;
    return rc;
}

/* keep_best: validate after step s when it is due (every keep_best_every steps and the last). */
static int validate_step(rl_run *r, int64_t s, rl_step_stats *st, int *improved) {
    const rl_opts *o = r->o;
    *improved = 0;
    if (r->n_vusers == 0) return DR_OK;
    if (s != o->steps && !(o->keep_best_every > 0 && s % o->keep_best_every == 0)) return DR_OK;
    int rc = rl_best_validate(r, &st->valid);
    if (!rc) rc = rl_best_consider(r, s, &st->valid, improved);
    if (rc) dr_error_context("rl validation after step %lld", (long long)s);
    st->validated = !rc;
    return rc;
}

/* Steps start+1 .. o->steps (or stop_after of them), with the probe before the first step of
 * a run from step 0 and after every step, and the keep_best validations. */
static int run_steps(rl_run *r, int64_t start, rl_result *res) {
    const rl_opts *o = r->o;
    int32_t *users = dr_calloc((size_t)o->prompts, sizeof *users);
    agent_request *req = dr_calloc((size_t)o->prompts, sizeof *req);
    if (!users || !req) {
        free(users);
        free(req);
        return dr_error_code();
    }
    dr_progress prog;
    dr_progress_start(&prog, o->progress, o->stage == 1 ? "rl stage 1" : "rl stage 2", o->steps, "steps");
    dr_progress_update(&prog, start);
    int rc = DR_OK, done_here = 0, have_p0 = 0, have_v0 = 0;
    rl_rollout_stats p0, v0;
    if (r->n_probe > 0 && start == 0 && start < o->steps) {
        if ((rc = rl_probe_run(r, &p0))) dr_error_context("rl probe before step 1");
        have_p0 = !rc;
    }
    if (!rc) rc = validate_start(r, start, &v0, &have_v0);
    for (int64_t s = start + 1; !rc && s <= o->steps; s++) {
        if (o->stop_after > 0 && done_here >= o->stop_after) break;
        rl_step_stats st;
        if ((rc = one_step(r, s, users, req, &st))) {
            dr_error_context("rl step %lld", (long long)s);
            break;
        }
        if (have_p0) {
            st.probed_start = 1;
            st.probe_start = p0;
            have_p0 = 0;
        }
        if (have_v0) {
            st.validated_start = 1;
            st.valid_start = v0;
            have_v0 = 0;
        }
        if (r->n_probe > 0) {
            if ((rc = rl_probe_run(r, &st.probe))) {
                dr_error_context("rl probe after step %lld", (long long)s);
                break;
            }
            st.probed = 1;
        }
        int improved;
        if ((rc = validate_step(r, s, &st, &improved))) break;
        if ((rc = step_done(r, &st, start, res, &prog))) break;
        done_here++;
        if (s % o->save_every == 0 || s == o->steps || improved) rc = rl_ckpt_save(r, s);
    }
    dr_progress_finish(&prog);
    free(users);
    free(req);
    return rc;
}

int rl_train(const rl_env *env, const rl_opts *o, rl_result *res) {
    rl_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    int rc = check_opts(env, o);
    if (rc) return rc;
    const int lead = dr_dist_rank() == 0; /* writes the files */
    double t_start = dr_now();
    rl_run r;
    memset(&r, 0, sizeof r);
    r.env = env;
    r.o = o;
    r.perm_pass = -1;
    r.cur_slot = -1;
    r.best_slot = -1;
    r.tok = env->tok ? env->tok : env->llm->tok;
    if (!r.tok) return dr_error(DR_ERR_ARG, "rl: the LLM has no tokenizer (give one with --tokenizer)");
    const llm_model *lm = env->llm;
    r.max_ctx = o->max_ctx > 0 ? o->max_ctx : (lm->cfg.context > 0 && lm->cfg.context < 4096 ? lm->cfg.context : 4096);
    int64_t start = 0;
    int resumed = 0;
    if ((rc = rl_ckpt_paths(&r))) goto done;
    rc = select_users(&r);
    res->n_selected = r.n_sel;
    res->n_probe = r.n_probe;
    res->n_valid = r.n_vusers;
    if (rc || (rc = rl_ckpt_open(&r, &start, &resumed))) goto done;
    /* full fine-tuning rolls out through a view of the weights it trains: no copy per rollout */
    if (o->lora_rank == 0 && (rc = llm_train_view_model(r.tr, &r.policy))) goto done;
    res->start_step = start;
    res->steps_done = start;
    if (lead && (rc = dr_jsonl_open(&r.jl, r.metrics, resumed))) goto done;
    log_start(&r, resumed);
    if ((rc = run_steps(&r, start, res))) goto done;
    if (lead && res->steps_done >= o->steps &&
        (rc = r.n_vusers > 0 ? rl_best_finish(&r) : llm_train_save_model(r.tr, r.tok, o->out_type, o->out)))
        goto done;
    res->best_step = r.best_step;
    res->best_ndcg10 = r.best_ndcg10;
    /* once, at the end: `deeprec rl curve` draws it on demand (e.g. while a run goes on) */
    const char *logs[2] = {r.prev, r.metrics};
    if (lead && (rc = rl_curve_svg(logs, 2, r.curve))) goto done;
done:
    res->seconds = dr_now() - t_start;
    run_free(&r);
    return rc;
}
