/* The PPO updates of one RL step: the rollout batch is shuffled into mini-batches (one optimizer
 * step each), packed into padded micro-batches for the LLM trainer, and the PPO-clip token loss
 * (ppo.c) gives the gradient w.r.t. each token's log-probability. Under MPI a rank
 * backpropagates the episodes it rolled out and the gradients are summed before the one
 * optimizer step every rank takes. */
#include "internal.h"
#include "deeprec/dist.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Micro-batch buffers [micro x max_ctx] of the trainer's llm_batch, per token. */
typedef struct packer {
    int32_t *toks, *lens;
    uint8_t *mask;
    float *logp, *ent, *old, *adv, *ref, *dlogp;
    /* allowed sets of title-constrained tokens: the update scores them as they were sampled */
    int32_t *allow_n, *allow_off, *allow_ids;
    size_t n_allow_ids, allow_cap;
} packer;

static int packer_init(packer *p, int micro, int32_t max_ctx) {
    memset(p, 0, sizeof *p);
    size_t cells = (size_t)micro * max_ctx;
    p->toks = dr_calloc(cells, sizeof *p->toks);
    p->lens = dr_calloc((size_t)micro, sizeof *p->lens);
    p->mask = dr_calloc(cells, 1);
    p->logp = dr_calloc(cells, sizeof(float));
    p->ent = dr_calloc(cells, sizeof(float));
    p->old = dr_calloc(cells, sizeof(float));
    p->adv = dr_calloc(cells, sizeof(float));
    p->ref = dr_calloc(cells, sizeof(float));
    p->dlogp = dr_calloc(cells, sizeof(float));
    p->allow_n = dr_calloc(cells, sizeof *p->allow_n);
    p->allow_off = dr_calloc(cells, sizeof *p->allow_off);
    if (!p->toks || !p->lens || !p->mask || !p->logp || !p->ent || !p->old || !p->adv || !p->ref || !p->dlogp ||
        !p->allow_n || !p->allow_off)
        return dr_error_code();
    return DR_OK;
}

static void packer_free(packer *p) {
    free(p->toks);
    free(p->lens);
    free(p->mask);
    free(p->logp);
    free(p->ent);
    free(p->old);
    free(p->adv);
    free(p->ref);
    free(p->dlogp);
    free(p->allow_n);
    free(p->allow_off);
    free(p->allow_ids);
}

/* Episode e as row k of a micro-batch of width T: its tokens, and on its generated tokens the
 * rollout log-prob, advantage a, reference log-prob (ref or NULL) and allowed set. *any: a
 * generated token was packed. */
static int pack_row(packer *p, int k, int T, const agent_episode *e, float a, const float *ref, int *any) {
    size_t off = (size_t)k * T;
    p->lens[k] = e->n_tokens;
    memset(p->toks + off, 0, (size_t)T * sizeof *p->toks);
    memset(p->mask + off, 0, (size_t)T);
    memset(p->old + off, 0, (size_t)T * sizeof(float));
    memset(p->adv + off, 0, (size_t)T * sizeof(float));
    memset(p->ref + off, 0, (size_t)T * sizeof(float));
    memset(p->allow_n + off, 0, (size_t)T * sizeof *p->allow_n);
    memcpy(p->toks + off, e->tokens, (size_t)e->n_tokens * sizeof *p->toks);
    for (int t = 1; t < e->n_tokens; t++) {
        if (!e->mask[t]) continue;
        p->mask[off + t] = 1;
        p->old[off + t] = e->logprob[t];
        p->adv[off + t] = a;
        if (ref) p->ref[off + t] = ref[t];
        if (e->allow_n && e->allow_n[t] > 0) {
            p->allow_n[off + t] = e->allow_n[t];
            p->allow_off[off + t] = (int32_t)p->n_allow_ids + e->allow_off[t];
        }
        *any = 1;
    }
    if (e->n_allow_ids <= 0) return DR_OK;
    if (p->n_allow_ids + (size_t)e->n_allow_ids > p->allow_cap) {
        size_t cap = 2 * (p->n_allow_ids + (size_t)e->n_allow_ids);
        int32_t *ids = dr_realloc(p->allow_ids, cap, sizeof *ids);
        if (!ids) return dr_error_code();
        p->allow_ids = ids;
        p->allow_cap = cap;
    }
    memcpy(p->allow_ids + p->n_allow_ids, e->allow_ids, (size_t)e->n_allow_ids * sizeof *p->allow_ids);
    p->n_allow_ids += (size_t)e->n_allow_ids;
    return DR_OK;
}

static int cmp_len_desc(const void *a, const void *b, void *ctx) {
    const agent_episode *e = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (e[x].n_tokens != e[y].n_tokens) return e[x].n_tokens > e[y].n_tokens ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Sums of what the step logs, over micro-batches (and under MPI over ranks). */
typedef struct update_sums {
    rl_ppo_stats ppo;
    double ent, diff, grad_norm;
    int64_t n_ent, n_diff;
    int n_steps, n_minibatches;
} update_sums;

/* Forward, loss and backward of one micro-batch: the `B` episodes ids[0..B) of the step. */
static int micro_batch(rl_run *r, packer *p, const rl_share *sh, const int *ids, int B, const float *adv,
                       float *const *ref, double norm, int first_epoch, int first_update, update_sums *u) {
    const agent_episode *meta = sh->all;
    const int64_t e0 = sh->e0;
    int T = 1, any = 0, rc;
    for (int k = 0; k < B; k++)
        if (meta[ids[k]].n_tokens > T) T = meta[ids[k]].n_tokens;
    p->n_allow_ids = 0;
    for (int k = 0; k < B; k++)
        if ((rc = pack_row(p, k, T, &sh->eps[ids[k] - e0], adv[ids[k]], ref ? ref[ids[k] - e0] : NULL, &any)))
            return rc;
    if (!any) return DR_OK;
    llm_batch bt = {B,         T,           p->toks, p->lens, NULL, p->mask, p->n_allow_ids ? p->allow_n : NULL,
                    p->allow_off, p->allow_ids};
    if ((rc = llm_train_forward(r->tr, &bt, p->logp, first_epoch ? p->ent : NULL))) return rc;
    size_t n = (size_t)B * T;
    for (size_t i = 0; i < n; i++) {
        if (!p->mask[i]) continue;
        if (first_epoch) {
            u->ent += p->ent[i];
            u->n_ent++;
        }
        if (first_epoch && first_update) { /* the engine's log-probs against the trainer's, before any update */
            u->diff += fabs((double)p->logp[i] - (double)p->old[i]);
            u->n_diff++;
        }
    }
    rl_ppo_loss(&r->o->ppo, (int64_t)n, p->logp, p->old, ref ? p->ref : NULL, p->adv, p->mask, norm, p->dlogp, &u->ppo);
    return llm_train_backward(r->tr, p->dlogp);
}

/* The optimizer step that ends a mini-batch; a non-finite gradient skips it with a warning. */
static int optimizer_step(rl_run *r, int64_t step, rl_step_stats *st, update_sums *u) {
    int rc;
    if (dr_dist_size() > 1) {
        size_t ng;
        float *g = llm_train_grads(r->tr, &ng);
        if ((rc = dr_dist_sum_f32(g, ng))) return rc;
    }
    st->lr = llm_train_lr(r->tr);
    float gn = 0;
    rc = llm_train_step(r->tr, &gn);
    if (rc == DR_ERR_RANGE) {
        dr_log(DR_LOG_WARN, "rl step %lld: %s", (long long)step, dr_error_message());
        dr_error_clear();
        return DR_OK;
    }
    if (rc) return rc;
    u->grad_norm += gn;
    u->n_steps++;
    return DR_OK;
}

static int sum_ranks(update_sums *u) {
    if (dr_dist_size() == 1) return DR_OK;
    rl_ppo_stats *ps = &u->ppo;
    double v[9] = {ps->loss, ps->kl, ps->ratio, (double)ps->n_tokens, (double)ps->n_clipped,
                   u->ent, (double)u->n_ent, u->diff, (double)u->n_diff};
    int rc = dr_dist_sum_f64(v, 9);
    if (rc) return rc;
    ps->loss = v[0], ps->kl = v[1], ps->ratio = v[2], ps->n_tokens = (int64_t)v[3], ps->n_clipped = (int64_t)v[4];
    u->ent = v[5], u->n_ent = (int64_t)v[6], u->diff = v[7], u->n_diff = (int64_t)v[8];
    return DR_OK;
}

/* sh->all[n_ep]: every episode's lengths (the order and the token normaliser of the updates);
 * sh->eps: this rank's episodes, the step's [e0, e0 + n_loc) (all of them in one process). */
int rl_update(rl_run *r, const rl_share *sh, int n_ep, const float *adv, float *const *ref, int64_t step,
              rl_step_stats *st) {
    const rl_opts *o = r->o;
    const agent_episode *meta = sh->all;
    const int64_t e0 = sh->e0;
    const int M = o->micro;
    int *order = dr_calloc((size_t)(n_ep ? n_ep : 1), sizeof *order), *pool = NULL;
    int *mine = dr_calloc((size_t)(n_ep ? n_ep : 1), sizeof *mine);
    packer pk;
    int rc = packer_init(&pk, M, r->max_ctx);
    if (!rc && (!order || !mine)) rc = dr_error_code();
    if (rc) goto done;
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
    update_sums u = {0};
    dr_rng ord;
    dr_rng_seed(&ord, rl_step_seed(o, step, 2));
    for (int ep = 0; ep < o->epochs; ep++) {
        memcpy(order, pool, (size_t)n_tr * sizeof *order);
        for (int i = n_tr - 1; i > 0; i--) {
            int j = (int)dr_rng_below(&ord, (uint64_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        int U = o->updates < n_tr ? o->updates : n_tr;
        for (int up = 0; up < U; up++) {
            int a = (int)((int64_t)n_tr * up / U), b = (int)((int64_t)n_tr * (up + 1) / U);
            qsort_r(order + a, (size_t)(b - a), sizeof *order, cmp_len_desc, (void *)meta);
            double norm = 0;
            for (int i = a; i < b; i++) norm += meta[order[i]].n_generated;
            if (norm <= 0) continue;
            u.n_minibatches++;
            /* this rank's episodes of the mini-batch, in its order */
            int n_mine = 0;
            for (int i = a; i < b; i++)
                if (order[i] >= e0 && order[i] < e0 + sh->n_loc) mine[n_mine++] = order[i];
            for (int m0 = 0; m0 < n_mine && !rc; m0 += M)
                rc = micro_batch(r, &pk, sh, mine + m0, n_mine - m0 < M ? n_mine - m0 : M, adv, ref, norm, ep == 0,
                                 up == 0, &u);
            if (rc || (rc = optimizer_step(r, step, st, &u))) goto done;
        }
    }
    if ((rc = sum_ranks(&u))) goto done;
    st->n_updates = u.n_steps;
    st->grad_norm = u.n_steps ? u.grad_norm / u.n_steps : 0.0;
    st->loss = u.n_minibatches ? u.ppo.loss / u.n_minibatches : 0.0;
    st->clip_frac = u.ppo.n_tokens ? (double)u.ppo.n_clipped / (double)u.ppo.n_tokens : 0.0;
    st->kl = u.ppo.n_tokens ? u.ppo.kl / (double)u.ppo.n_tokens : 0.0;
    st->ratio = u.ppo.n_tokens ? u.ppo.ratio / (double)u.ppo.n_tokens : 0.0;
    st->entropy = u.n_ent ? u.ent / (double)u.n_ent : 0.0;
    st->logp_diff = u.n_diff ? u.diff / (double)u.n_diff : 0.0;
done:
    packer_free(&pk);
    free(pool);
    free(mine);
    free(order);
    return rc;
}
