/* The RL trainer: rollout with the current policy, rewards, advantages, PPO updates through the
 * LLM trainer, checkpoints with exact resume, JSON lines and the reward curve.
 *
 * Under MPI (dist.h) a step is data-parallel: each rank rolls out its share of the step's
 * prompts (all G samples of a prompt on one rank, its sampling streams numbered as one process
 * numbers them), scores them, and the per-episode rewards and lengths are gathered so that
 * every rank computes the advantages and statistics of the whole step. In each PPO update a
 * rank backpropagates the episodes it rolled out; the gradients are summed before the one
 * optimizer step every rank takes. Rank 0 alone writes checkpoints, metrics and the curve. */
#include "deeprec/rl.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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
    o->max_turn_tokens = 1024;
    o->tool_k = AGENT_TOOL_K;
    o->max_calls = AGENT_MAX_CALLS;
    o->max_hist = AGENT_MAX_HIST;
    o->select_k = 100;
    o->constrain_titles = 1;
    o->seed = 1;
    o->out_type = GGML_TYPE_F32;
    o->save_every = 1;
}

static json_t *fails_json(const int *fails) {
    json_t *ff = json_object();
    for (int i = AGENT_FMT_OK + 1; i < AGENT_FMT_N; i++)
        if (fails[i]) json_object_set_new(ff, agent_format_name(i), json_integer(fails[i]));
    return ff;
}

static json_t *probe_json(int stage, const rl_probe_stats *p) {
    json_t *j = json_object();
    json_object_set_new(j, "users", json_integer(p->n_users));
    json_object_set_new(j, "episodes", json_integer(p->n_episodes));
    json_object_set_new(j, "reward", json_real(p->reward));
    json_object_set_new(j, "format", json_real(p->format));
    if (stage == RL_STAGE_1) {
        json_object_set_new(j, "count", json_real(p->count));
        json_object_set_new(j, "diversity", json_real(p->diversity));
    } else {
        json_object_set_new(j, "listwise", json_real(p->listwise));
        json_object_set_new(j, "pointwise", json_real(p->pointwise));
    }
    json_object_set_new(j, "valid_rate", json_real(p->valid_rate));
    json_object_set_new(j, "mean_calls", json_real(p->mean_calls));
    json_object_set_new(j, "hit_rate", json_real(p->hit_rate));
    json_object_set_new(j, "mean_gen_tokens", json_real(p->mean_gen));
    json_object_set_new(j, "format_failures", fails_json(p->format_fails));
    json_object_set_new(j, "seconds", json_real(p->seconds));
    return j;
}

json_t *rl_step_json(const rl_step_stats *s) {
    json_t *j = json_object();
    json_object_set_new(j, "stage", json_integer(s->stage));
    json_object_set_new(j, "step", json_integer(s->step));
    json_object_set_new(j, "reward", json_real(s->reward));
    json_object_set_new(j, "reward_std", json_real(s->reward_std));
    json_object_set_new(j, "format", json_real(s->format));
    if (s->stage == RL_STAGE_1) {
        json_object_set_new(j, "count", json_real(s->count));
        json_object_set_new(j, "diversity", json_real(s->diversity));
    } else {
        json_object_set_new(j, "listwise", json_real(s->listwise));
        json_object_set_new(j, "pointwise", json_real(s->pointwise));
    }
    json_object_set_new(j, "valid_rate", json_real(s->valid_rate));
    json_object_set_new(j, "mean_calls", json_real(s->mean_calls));
    json_object_set_new(j, "hit_rate", json_real(s->hit_rate));
    json_t *oc = json_object();
    for (int i = 0; i < AGENT_N_OUTCOMES; i++) json_object_set_new(oc, agent_outcome_name(i), json_integer(s->outcomes[i]));
    json_object_set_new(j, "outcomes", oc);
    json_object_set_new(j, "format_failures", fails_json(s->format_fails));
    json_object_set_new(j, "episodes", json_integer(s->n_episodes));
    json_object_set_new(j, "users", json_integer(s->n_users));
    json_object_set_new(j, "mean_gen_tokens", json_real(s->mean_gen));
    json_object_set_new(j, "gen_tokens", json_integer(s->n_tokens));
    json_object_set_new(j, "seq_tokens", json_integer(s->n_seq_tokens));
    json_object_set_new(j, "loss", json_real(s->loss));
    json_object_set_new(j, "clip_frac", json_real(s->clip_frac));
    json_object_set_new(j, "entropy", json_real(s->entropy));
    json_object_set_new(j, "kl", json_real(s->kl));
    json_object_set_new(j, "ratio", json_real(s->ratio));
    json_object_set_new(j, "grad_norm", json_real(s->grad_norm));
    json_object_set_new(j, "lr", json_real(s->lr));
    json_object_set_new(j, "updates", json_integer(s->n_updates));
    json_object_set_new(j, "logp_diff", json_real(s->logp_diff));
    json_object_set_new(j, "rollout_s", json_real(s->rollout_s));
    json_object_set_new(j, "update_s", json_real(s->update_s));
    json_object_set_new(j, "step_s", json_real(s->step_s));
    json_object_set_new(j, "rollout_cpu_s", json_real(s->rollout_cpu_s));
    json_object_set_new(j, "update_cpu_s", json_real(s->update_cpu_s));
    if (s->probed_start) json_object_set_new(j, "probe_start", probe_json(s->stage, &s->probe_start));
    if (s->probed) json_object_set_new(j, "probe", probe_json(s->stage, &s->probe));
    return j;
}

/* ---------------------------------------------------------------- paths */
static char *path_base(const char *p) {
    size_t n = strlen(p);
    if (n > 5 && !strcmp(p + n - 5, ".gguf")) n -= 5;
    char *b = dr_malloc(n + 1);
    if (b) {
        memcpy(b, p, n);
        b[n] = 0;
    }
    return b;
}
static char *path_cat(const char *base, const char *suffix) {
    size_t n = strlen(base) + strlen(suffix) + 1;
    char *s = dr_malloc(n);
    if (s) snprintf(s, n, "%s%s", base, suffix);
    return s;
}

/* ---------------------------------------------------------------- checkpoint marker */
typedef struct ckpt_info {
    int64_t step;
    int slot; /* 0 = a, 1 = b */
    int stage;
    uint64_t seed;
    char fp[17]; /* fingerprint of the input model ("" in old markers) */
} ckpt_info;

/* Fingerprint of the input model: FNV-1a over the configuration and the first rows of the
 * embedding table (enough to tell a different or retrained model). */
static void model_fingerprint(const llm_model *m, char out[17]) {
    uint64_t h = 1469598103934665603ull;
    const llm_config *c = &m->cfg;
    const int cfgv[8] = {c->arch, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn, c->vocab, c->head_dim};
    const uint8_t *p = (const uint8_t *)cfgv;
    for (size_t i = 0; i < sizeof cfgv; i++) h = (h ^ p[i]) * 1099511628211ull;
    int rows = m->tok_embd.rows < 16 ? m->tok_embd.rows : 16;
    p = m->tok_embd.data;
    for (size_t i = 0; p && i < (size_t)rows * m->tok_embd.row_bytes; i++) h = (h ^ p[i]) * 1099511628211ull;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int read_marker(const char *path, ckpt_info *ci) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return dr_error_at(DR_ERR_FORMAT, path, err.line, "cannot read the checkpoint marker: %s", err.text);
    json_t *st = json_object_get(j, "step"), *sl = json_object_get(j, "slot"), *sg = json_object_get(j, "stage"),
           *sd = json_object_get(j, "seed");
    int rc = DR_OK;
    if (!json_is_integer(st) || !json_is_string(sl) || !json_is_integer(sg) || !json_is_integer(sd))
        rc = dr_error_at(DR_ERR_FORMAT, path, 0, "checkpoint marker without step/slot/stage/seed");
    else {
        ci->step = json_integer_value(st);
        ci->slot = strcmp(json_string_value(sl), "b") == 0;
        ci->stage = (int)json_integer_value(sg);
        ci->seed = (uint64_t)json_integer_value(sd);
        json_t *fp = json_object_get(j, "llm_fingerprint");
        snprintf(ci->fp, sizeof ci->fp, "%s", json_is_string(fp) ? json_string_value(fp) : "");
    }
    json_decref(j);
    return rc;
}

/* ---------------------------------------------------------------- the run */
typedef struct run {
    const rl_env *env;
    const rl_opts *o;
    const tokenizer *tok;
    agent_catalog *cat;
    rl_reward_ctx *rw;
    agent_tool tool;
    llm_train *tr;
    llm_model *resume_src; /* full FT resume: the checkpoint model the trainer was built from */
    int32_t *sel;
    int n_sel;
    int32_t *probe;         /* held-out probe users (dataset order) */
    int n_probe;
    int32_t *perm;          /* permutation of the current pass */
    int64_t perm_pass;
    char *base, *marker, *metrics, *curve, *prev;
    char *slot_model[2], *slot_state[2];
    int cur_slot;           /* slot of the committed checkpoint, -1 none */
    char fp[17];            /* input model fingerprint */
    dr_jsonl jl;
    int32_t max_ctx;
} run;

static void pass_perm(run *r, int64_t pass) {
    if (r->perm_pass == pass) return;
    dr_rng base, pr;
    dr_rng_seed(&base, r->o->seed);
    pr = dr_rng_split(&base, 0x5e1ec7000000ull + (uint64_t)pass);
    for (int i = 0; i < r->n_sel; i++) r->perm[i] = r->sel[i];
    dr_rng_shuffle_i32(&pr, r->perm, (size_t)r->n_sel);
    r->perm_pass = pass;
}

/* Users of RL step s (1-based): positions [(s-1) P, s P) of the concatenated passes. */
static void step_users(run *r, int64_t s, int32_t *users) {
    int P = r->o->prompts;
    for (int i = 0; i < P; i++) {
        int64_t k = (s - 1) * (int64_t)P + i;
        pass_perm(r, k / r->n_sel);
        users[i] = r->perm[k % r->n_sel];
    }
}

static uint64_t step_seed(const rl_opts *o, int64_t s, uint64_t stream) {
    dr_rng b, x;
    dr_rng_seed(&b, o->seed);
    x = dr_rng_split(&b, ((uint64_t)s << 8) ^ stream);
    return dr_rng_u64(&x);
}

/* What a resumed run must share with the checkpoint besides stage and seed: the batch shape,
 * the probe size (which decides the training users) and the title constraint (which decides
 * the distribution the rollouts sample from). Probe 0 without the constraint keeps the oldest
 * encoding. */
static int64_t run_shape(const rl_opts *o) {
    /* (the probe's temperature and samples change what is logged, not the training) */
    return ((int64_t)o->probe_users << 40) + ((int64_t)(o->constrain_titles != 0) << 39) +
           (int64_t)o->prompts * 1000 + o->samples;
}

/* Write the slot the marker does not point at, then commit by rewriting the marker: a kill at
 * any moment leaves the previous checkpoint intact. */
static int save_checkpoint(run *r, int64_t step) {
    int slot = r->cur_slot == 0 ? 1 : 0;
    int64_t *u = llm_train_run_state(r->tr);
    u[0] = step;
    u[1] = r->o->stage;
    u[2] = (int64_t)r->o->seed;
    u[3] = run_shape(r->o);
    if (dr_dist_rank() > 0) { /* rank 0 writes; the others follow which slot is committed */
        r->cur_slot = slot;
        return DR_OK;
    }
    int rc = llm_train_save_model(r->tr, r->tok, GGML_TYPE_F32, r->slot_model[slot]);
    if (!rc) rc = llm_train_save_state(r->tr, r->slot_state[slot]);
    if (rc) return rc;
    json_t *j = json_pack("{s:I, s:s, s:i, s:I, s:s, s:s, s:s}", "step", (json_int_t)step, "slot", slot ? "b" : "a",
                          "stage", r->o->stage, "seed", (json_int_t)r->o->seed, "model", r->slot_model[slot], "state",
                          r->slot_state[slot], "llm_fingerprint", r->fp);
    if (!j) return dr_error(DR_ERR_NOMEM, "out of memory");
    rc = dr_json_write_file(r->marker, j);
    json_decref(j);
    if (!rc) r->cur_slot = slot;
    return rc;
}

/* Keep the JSON lines of steps <= done (a resumed run rewrites the rest). */
static int trim_metrics(const char *path, int64_t done) {
    FILE *f = fopen(path, "rb");
    if (!f) return DR_OK;
    dr_afile af;
    int rc = dr_afile_open(&af, path);
    if (rc) {
        fclose(f);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_t *j = json_loadb(line, (size_t)len, 0, NULL);
        json_t *st = j ? json_object_get(j, "step") : NULL;
        if (json_is_integer(st) && json_integer_value(st) <= done) fwrite(line, 1, (size_t)len, af.fp);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return dr_afile_commit(&af);
}

static void sum_stats(rl_step_stats *st, const agent_episode *eps, const rl_reward *rw, int n) {
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
    st->mean_gen *= inv;
    double var = s2 * inv - st->reward * st->reward;
    st->reward_std = var > 0 ? sqrt(var) : 0.0;
}

static int cmp_len_desc(const void *a, const void *b, void *ctx) {
    const agent_episode *e = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (e[x].n_tokens != e[y].n_tokens) return e[x].n_tokens > e[y].n_tokens ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* PPO updates over the rollout batch. meta[n_ep]: lengths of every episode of the step (the
 * order and the token normaliser of the updates); eps[0, n_loc): this rank's episodes, the step's
 * [e0, e0 + n_loc) (all of them in one process); adv[n_ep]; ref[n_loc] or NULL. */
static int update(run *r, agent_episode *eps, int64_t e0, int n_loc, const agent_episode *meta, int n_ep,
                  const float *adv, float *const *ref, int64_t step, rl_step_stats *st) {
    const rl_opts *o = r->o;
    int *order = dr_calloc((size_t)(n_ep ? n_ep : 1), sizeof *order), *pool = NULL;
    int *mine = dr_calloc((size_t)(n_ep ? n_ep : 1), sizeof *mine);
    int M = o->micro;
    size_t cells = (size_t)M * r->max_ctx;
    int32_t *toks = dr_calloc(cells, sizeof *toks), *lens = dr_calloc((size_t)M, sizeof *lens);
    uint8_t *mask = dr_calloc(cells, 1);
    float *logp = dr_calloc(cells, sizeof(float)), *ent = dr_calloc(cells, sizeof(float)),
          *old = dr_calloc(cells, sizeof(float)), *av = dr_calloc(cells, sizeof(float)),
          *rf = dr_calloc(cells, sizeof(float)), *dl = dr_calloc(cells, sizeof(float));
    /* allowed sets of title-constrained tokens: the update scores them as they were sampled */
    int32_t *an = dr_calloc(cells, sizeof *an), *ao = dr_calloc(cells, sizeof *ao), *aids = NULL;
    size_t aids_cap = 0;
    int rc = DR_OK;
    if (!order || !mine || !toks || !lens || !mask || !logp || !ent || !old || !av || !rf || !dl || !an || !ao) {
        rc = dr_error_code();
        goto done;
    }
    /* episodes without generated tokens (e.g. a prompt over the context cap) are not trained on */
    int n_tr = 0;
    for (int i = 0; i < n_ep; i++)
        if (meta[i].n_generated > 0 && meta[i].n_tokens <= r->max_ctx) order[n_tr++] = i;
    pool = dr_calloc((size_t)(n_tr ? n_tr : 1), sizeof *pool);
    if (!pool) {
        rc = dr_error_code();
        goto done;
    }
    memcpy(pool, order, (size_t)n_tr * sizeof *pool);
    rl_ppo_stats ps = {0};
    double ent_sum = 0, diff_sum = 0, gn_sum = 0;
    int64_t ent_n = 0, diff_n = 0;
    int n_steps = 0, n_mb = 0;
    dr_rng ord;
    dr_rng_seed(&ord, step_seed(o, step, 2));
    for (int ep = 0; ep < o->epochs; ep++) {
        memcpy(order, pool, (size_t)n_tr * sizeof *order);
        for (int i = n_tr - 1; i > 0; i--) {
            int j = (int)dr_rng_below(&ord, (uint64_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        int U = o->updates < n_tr ? o->updates : n_tr;
        for (int u = 0; u < U; u++) {
            int a = (int)((int64_t)n_tr * u / U), b = (int)((int64_t)n_tr * (u + 1) / U);
            qsort_r(order + a, (size_t)(b - a), sizeof *order, cmp_len_desc, (void *)meta);
            double norm = 0;
            for (int i = a; i < b; i++) norm += meta[order[i]].n_generated;
            if (norm <= 0) continue;
            n_mb++;
            /* this rank's episodes of the update, in the update's order */
            int n_mine = 0;
            for (int i = a; i < b; i++)
                if (order[i] >= e0 && order[i] < e0 + n_loc) mine[n_mine++] = order[i];
            for (int m0 = 0; m0 < n_mine; m0 += M) {
                int B = n_mine - m0 < M ? n_mine - m0 : M, T = 1;
                for (int k = 0; k < B; k++)
                    if (meta[mine[m0 + k]].n_tokens > T) T = meta[mine[m0 + k]].n_tokens;
                int any = 0;
                size_t n_aids = 0;
                for (int k = 0; k < B; k++) {
                    const agent_episode *e = &eps[mine[m0 + k] - e0];
                    size_t off = (size_t)k * T;
                    lens[k] = e->n_tokens;
                    memset(toks + off, 0, (size_t)T * sizeof *toks);
                    memset(mask + off, 0, (size_t)T);
                    memset(old + off, 0, (size_t)T * sizeof(float));
                    memset(av + off, 0, (size_t)T * sizeof(float));
                    memset(rf + off, 0, (size_t)T * sizeof(float));
                    memset(an + off, 0, (size_t)T * sizeof *an);
                    memcpy(toks + off, e->tokens, (size_t)e->n_tokens * sizeof *toks);
                    for (int t = 1; t < e->n_tokens; t++) {
                        if (!e->mask[t]) continue;
                        mask[off + t] = 1;
                        old[off + t] = e->logprob[t];
                        av[off + t] = adv[mine[m0 + k]];
                        if (ref) rf[off + t] = ref[mine[m0 + k] - e0][t];
                        if (e->allow_n && e->allow_n[t] > 0) {
                            an[off + t] = e->allow_n[t];
                            ao[off + t] = (int32_t)n_aids + e->allow_off[t];
                        }
                        any = 1;
                    }
                    if (e->n_allow_ids > 0) {
                        if (n_aids + (size_t)e->n_allow_ids > aids_cap) {
                            size_t cap = 2 * (n_aids + (size_t)e->n_allow_ids);
                            int32_t *p = dr_realloc(aids, cap, sizeof *p);
                            if (!p) {
                                rc = dr_error_code();
                                goto done;
                            }
                            aids = p;
                            aids_cap = cap;
                        }
                        memcpy(aids + n_aids, e->allow_ids, (size_t)e->n_allow_ids * sizeof *aids);
                        n_aids += (size_t)e->n_allow_ids;
                    }
                }
                if (!any) continue;
                llm_batch bt = {B, T, toks, lens, NULL, mask, n_aids ? an : NULL, ao, aids};
                if ((rc = llm_train_forward(r->tr, &bt, logp, ep == 0 ? ent : NULL))) goto done;
                size_t n = (size_t)B * T;
                for (size_t i = 0; i < n; i++) {
                    if (!mask[i]) continue;
                    if (ep == 0) {
                        ent_sum += ent[i];
                        ent_n++;
                    }
                    if (ep == 0 && u == 0) {
                        diff_sum += fabs((double)logp[i] - (double)old[i]);
                        diff_n++;
                    }
                }
                rl_ppo_loss(&o->ppo, (int64_t)n, logp, old, ref ? rf : NULL, av, mask, norm, dl, &ps);
                if ((rc = llm_train_backward(r->tr, dl))) goto done;
            }
            if (dr_dist_size() > 1) {
                size_t ng;
                float *g = llm_train_grads(r->tr, &ng);
                if ((rc = dr_dist_sum_f32(g, ng))) goto done;
            }
            st->lr = llm_train_lr(r->tr);
            float gn = 0;
            rc = llm_train_step(r->tr, &gn);
            if (rc == DR_ERR_RANGE) {
                dr_log(DR_LOG_WARN, "rl step %lld: %s", (long long)step, dr_error_message());
                dr_error_clear();
                rc = DR_OK;
                continue;
            }
            if (rc) goto done;
            gn_sum += gn;
            n_steps++;
        }
    }
    if (dr_dist_size() > 1) { /* the logged sums over every rank's tokens */
        double v[9] = {ps.loss, ps.kl, ps.ratio, (double)ps.n_tokens, (double)ps.n_clipped,
                       ent_sum, (double)ent_n, diff_sum, (double)diff_n};
        if ((rc = dr_dist_sum_f64(v, 9))) goto done;
        ps.loss = v[0], ps.kl = v[1], ps.ratio = v[2], ps.n_tokens = (int64_t)v[3], ps.n_clipped = (int64_t)v[4];
        ent_sum = v[5], ent_n = (int64_t)v[6], diff_sum = v[7], diff_n = (int64_t)v[8];
    }
    st->n_updates = n_steps;
    st->grad_norm = n_steps ? gn_sum / n_steps : 0.0;
    st->loss = n_mb ? ps.loss / n_mb : 0.0;
    st->clip_frac = ps.n_tokens ? (double)ps.n_clipped / (double)ps.n_tokens : 0.0;
    st->kl = ps.n_tokens ? ps.kl / (double)ps.n_tokens : 0.0;
    st->ratio = ps.n_tokens ? ps.ratio / (double)ps.n_tokens : 0.0;
    st->entropy = ent_n ? ent_sum / (double)ent_n : 0.0;
    st->logp_diff = diff_n ? diff_sum / (double)diff_n : 0.0;
done:
    free(pool);
    free(mine);
    free(order);
    free(toks);
    free(lens);
    free(mask);
    free(logp);
    free(ent);
    free(old);
    free(av);
    free(rf);
    free(dl);
    free(an);
    free(ao);
    free(aids);
    return rc;
}

/* Requests for users: their training examples (dr_data_train_example). */
static void user_requests(const dr_dataset *d, const int32_t *users, int n, agent_request *req) {
    for (int i = 0; i < n; i++) {
        req[i] = (agent_request){users[i], NULL, 0, 0, NULL};
        req[i].target = dr_data_train_example(d, users[i], &req[i].hist, &req[i].n_hist);
    }
}

/* Roll out the trainer's current weights: `samples` episodes per request on `slots` decode
 * slots (at least `samples`), sampling at `temperature` (0 = greedy) from `seed`. */
static int policy_rollout(run *r, const agent_request *req, int n_req, int samples, int slots, float temperature,
                          uint64_t seed, uint64_t first_stream, agent_episode **eps) {
    const rl_opts *o = r->o;
    llm_model *pm = NULL;
    agent_model am = {0};
    int rc = llm_train_export_model(r->tr, &pm);
    if (rc) return rc;
    agent_llm_opts lo = {slots < samples ? samples : slots, r->max_ctx, temperature, 0, o->top_p, seed, first_stream};
    if (!(rc = agent_model_llm_new(&am, pm, r->tok, &lo))) {
        agent_rollout_opts ro = {0};
        ro.chat = o->chat;
        ro.max_hist = o->max_hist;
        ro.tool_k = o->tool_k;
        ro.max_calls = o->max_calls;
        ro.samples = samples;
        ro.max_turn_tokens = o->max_turn_tokens;
        ro.max_ctx = r->max_ctx;
        ro.constrain_titles = o->constrain_titles;
        ro.constrain_prefs = o->constrain_titles; /* one switch: --constrain */
        rc = agent_rollout(&am, &r->tool, r->cat, req, n_req, &ro, eps);
        agent_model_llm_free(&am);
    }
    llm_model_free(pm);
    return rc;
}

/* The stage's reward of every episode (then the optional hook). */
static int score_episodes(run *r, const agent_episode *eps, int n, rl_reward *rw) {
    const rl_opts *o = r->o;
    for (int i = 0; i < n; i++) {
        int rc = rl_reward_score(r->rw, o->stage, o->substring_hit, &eps[i], &rw[i]);
        if (!rc && o->reward_hook) rc = o->reward_hook(o->reward_hook_ctx, &eps[i], &rw[i]);
        if (rc) return rc;
    }
    return DR_OK;
}

/* Under MPI: every rank's episodes [n_loc] and rewards into the whole step's (n_all, in episode
 * order), as far as the statistics and the advantages read them (sum_stats, rl_advantages,
 * update's ordering): lengths, outcome, format, calls and the reward parts. */
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

/* Roll out and score this rank's share of n_req requests x G samples (all of them in one
 * process); under MPI also gather the whole step's episode summaries into ae/ar. *lo: the
 * first request of this rank's share; *n_out: its episodes (set before anything can fail). */
static int rollout_share(run *r, const agent_request *req, int n_req, int G, int slots, float temperature,
                         uint64_t seed, int64_t *lo, int *n_out, agent_episode **eps, rl_reward **rw,
                         agent_episode **ae, rl_reward **ar) {
    int64_t hi;
    dr_dist_share(n_req, lo, &hi);
    const int n_loc = (int)(hi - *lo) * G, n_all = n_req * G;
    *n_out = n_loc;
    *eps = NULL;
    *rw = *ar = NULL;
    *ae = NULL;
    int rc = DR_OK;
    if (n_loc > 0 &&
        (rc = policy_rollout(r, req + *lo, (int)(hi - *lo), G, slots, temperature, seed, (uint64_t)(*lo * G), eps)))
        return rc;
    *rw = dr_calloc((size_t)(n_loc > 0 ? n_loc : 1), sizeof **rw);
    if (!*rw) return dr_error_code();
    if ((rc = score_episodes(r, *eps, n_loc, *rw))) return rc;
    if (dr_dist_size() == 1) {
        *ae = *eps;
        *ar = *rw;
        return DR_OK;
    }
    *ae = dr_calloc((size_t)n_all + 1, sizeof **ae);
    *ar = dr_calloc((size_t)n_all + 1, sizeof **ar);
    if (!*ae || !*ar) return dr_error_code();
    return gather_episodes(*eps, *rw, n_loc, n_req, G, *ae, *ar);
}

static void rollout_share_free(agent_episode *eps, rl_reward *rw, agent_episode *ae, rl_reward *ar, int n_loc) {
    if (ae != eps) free(ae);
    if (ar != rw) free(ar);
    if (eps) agent_episodes_free(eps, n_loc);
    free(rw);
}

static int one_step(run *r, int64_t s, int32_t *users, agent_request *req, rl_step_stats *st) {
    const rl_opts *o = r->o;
    const dr_dataset *d = r->env->data;
    const int P = o->prompts, G = o->samples, n_ep = P * G;
    memset(st, 0, sizeof *st);
    st->stage = o->stage;
    st->step = s;
    st->n_users = P;
    st->n_episodes = n_ep;
    double t0 = dr_now(), c0 = cpu_now();
    int rc = DR_OK;
    step_users(r, s, users);
    user_requests(d, users, P, req);
    agent_episode *eps = NULL, *ae = NULL; /* this rank's episodes; the step's (summaries under MPI) */
    rl_reward *rw = NULL, *ar = NULL;
    double *rv = NULL;
    int32_t *ng = NULL;
    float *adv = NULL, **ref = NULL;
    int64_t plo = 0;
    int n_loc = 0;
    /* rollout with the current policy, rewards */
    int slots = o->slots > 0 ? o->slots : (n_ep < 64 ? n_ep : 64);
    if ((rc = rollout_share(r, req, P, G, slots, o->temperature, step_seed(o, s, 1), &plo, &n_loc, &eps, &rw, &ae,
                            &ar)))
        goto done;
    /* advantages over the whole step */
    rv = dr_calloc((size_t)n_ep, sizeof *rv);
    ng = dr_calloc((size_t)n_ep, sizeof *ng);
    adv = dr_calloc((size_t)n_ep, sizeof *adv);
    if (!rv || !ng || !adv) {
        rc = dr_error_code();
        goto done;
    }
    for (int i = 0; i < n_ep; i++) {
        rv[i] = ar[i].total;
        ng[i] = ae[i].n_generated;
    }
    if ((rc = rl_advantages(rv, ng, P, G, o->adv, adv))) goto done;
    sum_stats(st, ae, ar, n_ep);
    st->rollout_s = dr_now() - t0;
    double t1 = dr_now(), c1 = cpu_now();
    st->rollout_cpu_s = c1 - c0;
    if (o->ppo.kl_beta != 0.0f) {
        ref = dr_calloc((size_t)(n_loc > 0 ? n_loc : 1), sizeof *ref);
        if (!ref) {
            rc = dr_error_code();
            goto done;
        }
        for (int i = 0; i < n_loc; i++) {
            ref[i] = dr_calloc((size_t)(eps[i].n_tokens > 0 ? eps[i].n_tokens : 1), sizeof(float));
            if (!ref[i]) {
                rc = dr_error_code();
                goto done;
            }
            if ((rc = rl_ref_logprobs(r->env->llm, &eps[i], ref[i]))) goto done;
        }
    }
    if ((rc = update(r, eps, plo * G, n_loc, ae, n_ep, adv, ref, s, st))) goto done;
    st->update_s = dr_now() - t1;
    st->update_cpu_s = cpu_now() - c1;
    st->step_s = dr_now() - t0;
done:
    if (ref)
        for (int i = 0; i < n_loc; i++) free(ref[i]);
    rollout_share_free(eps, rw, ae, ar, n_loc);
    free(ref);
    free(rv);
    free(ng);
    free(adv);
    return rc;
}

/* Roll out the current policy on the probe users (S episodes each, fixed seed) and score it. */
static int run_probe(run *r, rl_probe_stats *out) {
    const rl_opts *o = r->o;
    const int P = r->n_probe, S = o->probe_samples > 1 ? o->probe_samples : 1, n_ep = P * S;
    double t0 = dr_now();
    agent_episode *eps = NULL, *ae = NULL;
    rl_reward *rw = NULL, *ar = NULL;
    agent_request *req = dr_calloc((size_t)P, sizeof *req);
    int64_t plo = 0;
    int n_loc = 0, rc = DR_OK;
    if (!req) {
        rc = dr_error_code();
        goto done;
    }
    user_requests(r->env->data, r->probe, P, req);
    if ((rc = rollout_share(r, req, P, S, n_ep < 64 ? n_ep : 64, o->probe_temperature, step_seed(o, 0, 3), &plo,
                            &n_loc, &eps, &rw, &ae, &ar)))
        goto done;
    rl_step_stats st;
    memset(&st, 0, sizeof st);
    sum_stats(&st, ae, ar, n_ep);
    memset(out, 0, sizeof *out);
    out->n_users = P;
    out->n_episodes = n_ep;
    out->reward = st.reward;
    out->format = st.format;
    out->count = st.count;
    out->diversity = st.diversity;
    out->listwise = st.listwise;
    out->pointwise = st.pointwise;
    out->valid_rate = st.valid_rate;
    out->mean_calls = st.mean_calls;
    out->hit_rate = st.hit_rate;
    out->mean_gen = st.mean_gen;
    memcpy(out->format_fails, st.format_fails, sizeof out->format_fails);
    out->seconds = dr_now() - t0;
done:
    rollout_share_free(eps, rw, ae, ar, n_loc);
    free(req);
    return rc;
}

/* Move probe_users selected users (a seeded draw, kept in dataset order) out of the selection;
 * at most half of the selection, so training keeps users. */
static int split_probe(run *r) {
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
    dr_rng_seed(&g, step_seed(r->o, 0, 4));
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
    return DR_OK;
}

static void run_free(run *r) {
    rl_reward_ctx_free(r->rw);
    agent_tool_trm_free(&r->tool);
    agent_catalog_free(r->cat);
    llm_train_free(r->tr);
    llm_model_free(r->resume_src);
    free(r->sel);
    free(r->probe);
    free(r->perm);
    free(r->base);
    free(r->marker);
    free(r->metrics);
    free(r->curve);
    free(r->prev);
    for (int i = 0; i < 2; i++) {
        free(r->slot_model[i]);
        free(r->slot_state[i]);
    }
    dr_jsonl_close(&r->jl);
}

int rl_train(const rl_env *env, const rl_opts *o, rl_result *res) {
    rl_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    int rc = check_opts(env, o);
    if (rc) return rc;
    const int lead = dr_dist_rank() == 0; /* writes the files */
    double t_start = dr_now();
    run r;
    memset(&r, 0, sizeof r);
    r.env = env;
    r.o = o;
    r.perm_pass = -1;
    r.cur_slot = -1;
    r.tok = env->tok ? env->tok : env->llm->tok;
    if (!r.tok) return dr_error(DR_ERR_ARG, "rl: the LLM has no tokenizer (give one with --tokenizer)");
    const llm_model *lm = env->llm;
    r.max_ctx = o->max_ctx > 0 ? o->max_ctx : (lm->cfg.context > 0 && lm->cfg.context < 4096 ? lm->cfg.context : 4096);
    int32_t *users = NULL;
    agent_request *req = NULL;
    /* paths */
    r.base = path_base(o->out);
    if (!r.base) return dr_error_code();
    r.marker = path_cat(r.base, ".ckpt.json");
    r.metrics = o->metrics ? dr_strdup(o->metrics) : path_cat(r.base, ".metrics.jsonl");
    r.curve = o->curve ? dr_strdup(o->curve) : path_cat(r.base, ".rewards.svg");
    r.slot_model[0] = path_cat(r.base, ".ckpt-a.gguf");
    r.slot_model[1] = path_cat(r.base, ".ckpt-b.gguf");
    r.slot_state[0] = path_cat(r.base, ".ckpt-a.state.gguf");
    r.slot_state[1] = path_cat(r.base, ".ckpt-b.state.gguf");
    if (!r.marker || !r.metrics || !r.curve || !r.slot_model[0] || !r.slot_model[1] || !r.slot_state[0] ||
        !r.slot_state[1]) {
        rc = dr_error_code();
        goto done;
    }
    if (o->prev_metrics) {
        r.prev = dr_strdup(o->prev_metrics);
    } else if (o->llm_path && o->stage == RL_STAGE_2) {
        char *lb = path_base(o->llm_path);
        if (lb) {
            r.prev = path_cat(lb, ".metrics.jsonl");
            free(lb);
        }
        if (r.prev && !dr_file_exists(r.prev)) {
            free(r.prev);
            r.prev = NULL;
        }
    }
    /* catalog, rewards, tool, data selection */
    if ((rc = agent_catalog_build(env->data, &r.cat)) || (rc = rl_reward_ctx_new(&r.rw, r.cat, env->trm)) ||
        (rc = agent_tool_trm_new(&r.tool, env->trm, 1)))
        goto done;
    if ((rc = rl_select_users(env->data, env->trm, o->select_k, &r.sel, &r.n_sel))) goto done;
    if (r.n_sel > 0 && (rc = split_probe(&r))) goto done;
    res->n_selected = r.n_sel;
    res->n_probe = r.n_probe;
    if (r.n_sel == 0) {
        rc = dr_error(DR_ERR_RANGE, "rl: no training user passes the data selection (target in the TRM's top %d)",
                      o->select_k);
        dr_error_hint("use a larger --select-k, or 0 for all users with at least 2 training items");
        goto done;
    }
    r.perm = dr_calloc((size_t)r.n_sel, sizeof *r.perm);
    users = dr_calloc((size_t)o->prompts, sizeof *users);
    req = dr_calloc((size_t)o->prompts, sizeof *req);
    if (!r.perm || !users || !req) {
        rc = dr_error_code();
        goto done;
    }
    /* the trainer (from the committed checkpoint when resuming) */
    ckpt_info ci = {0};
    model_fingerprint(lm, r.fp);
    int resuming = o->resume && dr_file_exists(r.marker);
    if (resuming) {
        if ((rc = read_marker(r.marker, &ci))) goto done;
        r.cur_slot = ci.slot;
        if (ci.fp[0] && strcmp(ci.fp, r.fp) != 0) {
            rc = dr_error(DR_ERR_ARG, "rl --resume: the checkpoint %s was made from another input model", r.marker);
            dr_error_hint("remove %s to start a new run", r.marker);
            goto done;
        }
        if (ci.stage != o->stage || ci.seed != o->seed) {
            rc = dr_error(DR_ERR_ARG, "rl --resume: the checkpoint %s is for stage %d seed %llu (this run: stage %d seed %llu)",
                          r.marker, ci.stage, (unsigned long long)ci.seed, o->stage, (unsigned long long)o->seed);
            goto done;
        }
        if (o->lora_rank == 0 && (rc = llm_model_load(&r.resume_src, r.slot_model[ci.slot]))) goto done;
    }
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = o->micro;
    tc.max_len = r.max_ctx;
    tc.recompute = o->recompute;
    tc.lora_rank = o->lora_rank;
    tc.lora_alpha = o->lora_alpha;
    tc.lora_targets = o->lora_targets;
    tc.seed = o->seed;
    tc.lr = o->lr;
    tc.beta1 = 0.9f;
    tc.beta2 = 0.95f;
    tc.grad_clip = o->grad_clip;
    tc.weight_decay = o->weight_decay;
    tc.sched = LLM_SCHED_CONSTANT;
    if ((rc = llm_train_new(&r.tr, r.resume_src ? r.resume_src : lm, &tc))) goto done;
    int64_t start = 0;
    if (resuming) {
        if ((rc = llm_train_load_state(r.tr, r.slot_state[ci.slot]))) goto done;
        const int64_t *u = llm_train_run_state(r.tr);
        if (u[0] != ci.step || u[1] != o->stage || u[3] != run_shape(o)) {
            rc = dr_error(DR_ERR_ARG, "rl --resume: %s does not match its marker or this run's --prompts/--samples/--probe/--constrain",
                          r.slot_state[ci.slot]);
            goto done;
        }
        start = ci.step;
        if (lead && (rc = trim_metrics(r.metrics, start))) goto done;
    }
    res->start_step = start;
    res->steps_done = start;
    if (lead && (rc = dr_jsonl_open(&r.jl, r.metrics, resuming))) goto done;
    char selw[64];
    if (o->select_k > 0) snprintf(selw, sizeof selw, "target in the TRM's top %d", o->select_k);
    else snprintf(selw, sizeof selw, "no selection");
    dr_log(DR_LOG_INFO, "rl stage %d: %d users selected (%s), %d x %d episodes per step, %s, %s%s",
           o->stage, r.n_sel, selw, o->prompts, o->samples, rl_adv_name(o->adv),
           o->lora_rank ? "LoRA" : "full fine-tuning", resuming ? ", resumed" : "");
    dr_progress prog;
    dr_progress_start(&prog, o->progress, o->stage == 1 ? "rl stage 1" : "rl stage 2", o->steps, "steps");
    dr_progress_update(&prog, start);
    int done_here = 0;
    const char *cpaths[2] = {r.prev, r.metrics};
    rl_probe_stats p0;
    int have_p0 = 0;
    if (r.n_probe > 0 && start == 0 && start < o->steps) {
        if ((rc = run_probe(&r, &p0))) {
            dr_error_context("rl probe before step 1");
            goto prog_done;
        }
        have_p0 = 1;
    }
    for (int64_t s = start + 1; s <= o->steps; s++) {
        if (o->stop_after > 0 && done_here >= o->stop_after) break;
        rl_step_stats st;
        if ((rc = one_step(&r, s, users, req, &st))) {
            dr_error_context("rl step %lld", (long long)s);
            break;
        }
        if (have_p0) {
            st.probed_start = 1;
            st.probe_start = p0;
            have_p0 = 0;
        }
        if (r.n_probe > 0) {
            if ((rc = run_probe(&r, &st.probe))) {
                dr_error_context("rl probe after step %lld", (long long)s);
                break;
            }
            st.probed = 1;
        }
        if (lead) {
            json_t *j = rl_step_json(&st);
            rc = dr_jsonl_write(&r.jl, j);
            json_decref(j);
            if (rc) break;
        }
        if (s == start + 1) res->first_reward = st.reward;
        res->last_reward = st.reward;
        if (st.probed_start) {
            res->probed_start = 1;
            res->probe_start = st.probe_start.reward;
        }
        if (st.probed) {
            res->probed_last = 1;
            res->probe_last = st.probe.reward;
        }
        res->steps_done = s;
        done_here++;
        if (o->on_step) o->on_step(o->on_step_ctx, &st);
        if (st.probed)
            dr_progress_set_extra(&prog, "reward %.3f valid %.0f%% calls %.2f clip %.3f probe %.3f", st.reward,
                                  100.0 * st.valid_rate, st.mean_calls, st.clip_frac, st.probe.reward);
        else
            dr_progress_set_extra(&prog, "reward %.3f valid %.0f%% calls %.2f clip %.3f", st.reward,
                                  100.0 * st.valid_rate, st.mean_calls, st.clip_frac);
        dr_progress_update(&prog, s);
        if ((s % o->save_every == 0 || s == o->steps) && (rc = save_checkpoint(&r, s))) break;
        if (lead && (rc = rl_curve_svg(cpaths, 2, r.curve))) break;
    }
prog_done:
    dr_progress_finish(&prog);
    if (rc) goto done;
    if (lead && res->steps_done >= o->steps && (rc = llm_train_save_model(r.tr, r.tok, o->out_type, o->out)))
        goto done;
    if (lead && (rc = rl_curve_svg(cpaths, 2, r.curve))) goto done;
done:
    res->seconds = dr_now() - t_start;
    free(users);
    free(req);
    run_free(&r);
    return rc;
}
