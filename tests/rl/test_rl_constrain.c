/* Title-constrained tokens on the RL side: the trainer's restricted log-probs equal the
 * log-softmax over the allowed set of the model's logits, their PPO gradient matches finite
 * differences, and on a real constrained rollout of a tiny LLM the rollout's log-probs equal the
 * trainer's and the reference model's (old == new before any update). */
#include "harness.h"
#include "rl_fixture.h"
#include "deeprec/llm_train.h"
#include "deeprec/rl.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log-softmax over ids[0..n) (n 0: the whole vocabulary) of logits row x at token k */
static double ref_logp(const float *x, int V, const int32_t *ids, int n, int32_t k) {
    int m = n > 0 ? n : V;
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < m; i++) mx = fmax(mx, x[n > 0 ? ids[i] : i]);
    for (int i = 0; i < m; i++) z += exp(x[n > 0 ? ids[i] : i] - mx);
    return x[k] - mx - log(z);
}

static double ppo_loss(const rl_ppo_opts *o, int n, const float *lp, const float *old, const float *adv,
                       const uint8_t *mask, double norm) {
    float *g = malloc((size_t)n * sizeof(float));
    rl_ppo_stats st = {0};
    rl_ppo_loss(o, n, lp, old, NULL, adv, mask, norm, g, &st);
    free(g);
    return st.loss;
}

TEST(rl_constrain_restricted_logprob_and_gradient) {
    llm_model *m;
    tokenizer *tok;
    rlx_llm(&m, &tok);
    const int V = m->cfg.vocab;
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 2;
    tc.max_len = 20;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    enum { B = 2, T = 20 };
    int32_t toks[B * T], len[B] = {20, 15}, an[B * T], ao[B * T], ids[B * T * 4];
    uint8_t mask[B * T];
    float lp[B * T], old[B * T], adv[B * T], g[B * T], ent[B * T];
    dr_rng r;
    dr_rng_seed(&r, 21);
    int n_ids = 0;
    for (int i = 0; i < B * T; i++) {
        toks[i] = (int32_t)dr_rng_below(&r, (uint64_t)V);
        int p = i % T, b = i / T;
        mask[i] = p >= 5 && p < len[b];
        an[i] = ao[i] = 0;
        if (mask[i] && p % 2 == 0) { /* every other generated token is constrained, the target inside */
            int n = 2 + p % 3;
            ao[i] = n_ids;
            an[i] = n;
            ids[n_ids++] = (toks[i] + 3) % V;
            ids[n_ids++] = toks[i];
            for (int k = 2; k < n; k++) ids[n_ids++] = (toks[i] + 11 * k) % V;
        }
    }
    llm_batch bt = {B, T, toks, len, NULL, mask, an, ao, ids};
    CHECK_OK(llm_train_forward(t, &bt, lp, ent));
    /* against the inference engine's logits */
    int checked = 0;
    for (int b = 0; b < B; b++) {
        llm_session *s;
        CHECK_OK(llm_session_new(&s, m, 1, T));
        float *lg = malloc((size_t)T * V * sizeof(float));
        CHECK_OK(llm_prefill(s, 0, toks + b * T, len[b], lg, 1));
        for (int p = 1; p < len[b]; p++) {
            int k = b * T + p;
            if (!mask[k]) continue;
            double want = ref_logp(lg + (size_t)(p - 1) * V, V, ids + ao[k], an[k], toks[k]);
            CHECK_NEAR(lp[k], want, 2e-4);
            if (an[k] > 0) {
                CHECK(lp[k] > logf(1e-6f) && lp[k] <= 0);
                CHECK(ent[k] >= 0 && ent[k] <= logf((float)an[k]) + 1e-4f);
                checked++;
            }
        }
        free(lg);
        llm_session_free(s);
    }
    CHECK(checked >= 8);
    /* a target outside its set is refused */
    CHECK_EQ_INT(an[6], 2); /* {target + 3, target} */
    int32_t keep = toks[6];
    toks[6] = (keep + 1) % V;
    CHECK_ERR(llm_train_forward(t, &bt, lp, NULL), DR_ERR_ARG);
    toks[6] = keep;
    CHECK_OK(llm_train_forward(t, &bt, lp, NULL));
    /* PPO gradient through the restricted log-probs vs finite differences */
    static const float ratios[4] = {0.7f, 0.95f, 1.05f, 1.4f};
    double norm = 0;
    for (int i = 0; i < B * T; i++) {
        old[i] = lp[i] - logf(ratios[i % 4]);
        adv[i] = i / T == 0 ? 1.1f : -0.8f;
        norm += mask[i];
    }
    rl_ppo_opts o = {0.2f, 0.28f, 0};
    rl_ppo_stats st = {0};
    rl_ppo_loss(&o, B * T, lp, old, NULL, adv, mask, norm, g, &st);
    llm_train_zero_grad(t);
    CHECK_OK(llm_train_backward(t, g));
    size_t np;
    float *P = llm_train_params(t, &np);
    float *G = llm_train_grads(t, &np);
    float *G0 = malloc(np * sizeof(float));
    memcpy(G0, G, np * sizeof(float));
    float lp2[B * T];
    for (int k = 0; k < 8; k++) {
        size_t best = 0;
        for (size_t i = 0; i < np; i++)
            if (fabsf(G0[i]) > fabsf(G0[best])) best = i;
        double ga = G0[best];
        G0[best] = 0;
        const float h = 2e-3f;
        float save = P[best];
        P[best] = save + h;
        CHECK_OK(llm_train_forward(t, &bt, lp2, NULL));
        double up = ppo_loss(&o, B * T, lp2, old, adv, mask, norm);
        P[best] = save - h;
        CHECK_OK(llm_train_forward(t, &bt, lp2, NULL));
        double dn = ppo_loss(&o, B * T, lp2, old, adv, mask, norm);
        P[best] = save;
        double fd = (up - dn) / ((double)(save + h) - (double)(save - h));
        CHECK_MSG(fabs(fd - ga) <= 2e-3 + 0.03 * fabs(ga), "param %zu: analytic %.6g, fd %.6g", best, ga, fd);
    }
    free(G0);
    llm_train_free(t);
    llm_model_free(m);
    tok_free(tok);
}

/* ---- a constrained rollout of the tiny LLM ----
 * The random model would almost never write the answer tag, so a wrapper leads it there: while
 * a slot's script lasts, the wrapper passes the script's next token as a one-token allowed set
 * (those tokens get log-prob 0 and are left out of the comparison); then the rollout's own
 * allowed sets pass through unchanged. */
typedef struct lead {
    agent_model in;
    const int32_t *script;
    int n_script;
    int pos[8];
} lead;
static int ld_encode(void *c, const char *s, size_t n, int32_t **ids, size_t *k) {
    lead *l = c;
    return l->in.encode(l->in.ctx, s, n, ids, k);
}
static int ld_piece(void *c, int32_t id, char *b, size_t cap) {
    lead *l = c;
    return l->in.piece(l->in.ctx, id, b, cap);
}
static int ld_is_eos(void *c, int32_t id) {
    lead *l = c;
    return l->in.is_eos(l->in.ctx, id);
}
static int ld_append(void *c, int slot, const int32_t *ids, int n) {
    lead *l = c;
    return l->in.append(l->in.ctx, slot, ids, n);
}
static int ld_fork(void *c, int src, int dst) {
    lead *l = c;
    l->pos[dst] = 0;
    return l->in.fork(l->in.ctx, src, dst);
}
static int ld_decode(void *c, const int *slots, int n, const agent_allow *allow, int32_t *toks, float *lps) {
    lead *l = c;
    agent_allow a[8];
    for (int i = 0; i < n; i++) {
        a[i] = allow ? allow[i] : (agent_allow){NULL, 0};
        int *p = &l->pos[slots[i]];
        if (a[i].n == 0 && *p < l->n_script) a[i] = (agent_allow){l->script + (*p)++, 1};
    }
    return l->in.decode(l->in.ctx, slots, n, a, toks, lps);
}
static void ld_release(void *c, int slot) {
    lead *l = c;
    l->pos[slot] = 0;
    l->in.release(l->in.ctx, slot);
}

static int all_items(void *ctx, const int32_t *hist, int64_t n_hist, const char *pref, int k, int32_t *items,
                     float *scores, int *n_out) {
    int n = *(const int *)ctx < k ? *(const int *)ctx : k;
    for (int i = 0; i < n; i++) {
        items[i] = i + 1;
        scores[i] = 1.0f;
    }
    *n_out = n;
    return 0;
}

TEST(rl_constrain_rollout_old_equals_new) {
    dr_dataset d;
    rlx_dataset(&d, 4);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    llm_model *m;
    tokenizer *tok;
    rlx_llm(&m, &tok);
    const int V = m->cfg.vocab;
    lead ld = {0};
    agent_llm_opts lo = {4, 1536, 1.0f, 0, 1.0f, 3, 0};
    CHECK_OK(agent_model_llm_new(&ld.in, m, tok, &lo));
    const char *script = "ok\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER;
    int32_t *sids;
    size_t nsids;
    CHECK_OK(tok_encode(tok, script, strlen(script), 0, &sids, &nsids));
    ld.script = sids;
    ld.n_script = (int)nsids;
    agent_model am = {&ld, 4, ld.in.n_ctx, ld_encode, ld_piece, ld_is_eos, ld_append, ld_fork, ld_decode, ld_release};
    int n_items = (int)d.n_items;
    agent_tool tool = {&n_items, all_items};
    const int32_t *tr;
    int64_t nt = dr_data_train(&d, 1, &tr);
    agent_request rq = {1, tr, nt - 1, tr[nt - 1], "crime"};
    agent_rollout_opts ro = {0};
    ro.samples = 2;
    ro.constrain_titles = 1;
    agent_episode *e;
    CHECK_OK(agent_rollout(&am, &tool, c, &rq, 1, &ro, &e));
    int32_t max_len = 0;
    int n_constrained = 0;
    for (int i = 0; i < 2; i++) {
        CHECK_STR(agent_outcome_name(e[i].outcome), "finished");
        CHECK_STR(agent_format_name(e[i].format), "ok");
        for (int l = 0; l < AGENT_N_REC; l++) {
            CHECK_EQ_INT(e[i].how[l], AGENT_RESOLVE_EXACT);
            for (int q = 0; q < l; q++) CHECK(e[i].resolved[q] != e[i].resolved[l]);
        }
        /* the lead's one-token choices are not policy samples: out of the comparison */
        for (int32_t k = 0; k < e[i].n_tokens; k++) {
            if (e[i].mask[k] && e[i].allow_n[k] == 0) {
                CHECK(e[i].logprob[k] == 0.0f);
                e[i].mask[k] = 0;
            }
            n_constrained += e[i].allow_n[k] > 0;
        }
        if (e[i].n_tokens > max_len) max_len = e[i].n_tokens;
    }
    CHECK(n_constrained >= 4);
    /* recorded = log-softmax over the allowed set of a fresh prefill's logits */
    for (int i = 0; i < 2; i++) {
        llm_session *s;
        CHECK_OK(llm_session_new(&s, m, 1, e[i].n_tokens));
        float *lg = malloc((size_t)e[i].n_tokens * V * sizeof(float));
        CHECK_OK(llm_prefill(s, 0, e[i].tokens, e[i].n_tokens, lg, 1));
        for (int32_t k = 1; k < e[i].n_tokens; k++)
            if (e[i].mask[k])
                CHECK_NEAR(e[i].logprob[k],
                           ref_logp(lg + (size_t)(k - 1) * V, V, e[i].allow_ids + e[i].allow_off[k], e[i].allow_n[k],
                                    e[i].tokens[k]),
                           2e-3);
        free(lg);
        llm_session_free(s);
        /* the KL reference scores the same restricted distributions */
        float *ref = calloc((size_t)e[i].n_tokens, sizeof(float));
        CHECK_OK(rl_ref_logprobs(m, &e[i], ref));
        for (int32_t k = 1; k < e[i].n_tokens; k++)
            if (e[i].mask[k]) CHECK_NEAR(ref[k], e[i].logprob[k], 2e-3);
        free(ref);
    }
    /* the trainer, given the episodes' allowed sets as the RL update passes them */
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 1;
    tc.max_len = max_len;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    float *lp = calloc((size_t)max_len, sizeof(float));
    for (int i = 0; i < 2; i++) {
        int32_t L = e[i].n_tokens;
        llm_batch bt = {1, L, e[i].tokens, &L, NULL, e[i].mask, e[i].allow_n, e[i].allow_off, e[i].allow_ids};
        CHECK_OK(llm_train_forward(t, &bt, lp, NULL));
        for (int32_t k = 1; k < L; k++)
            if (e[i].mask[k]) CHECK_NEAR(lp[k], e[i].logprob[k], 2e-3);
    }
    free(lp);
    llm_train_free(t);
    free(sids);
    agent_episodes_free(e, 2);
    agent_model_llm_free(&ld.in);
    agent_catalog_free(c);
    llm_model_free(m);
    tok_free(tok);
    dr_data_free(&d);
}
