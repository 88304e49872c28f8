/* Advantages and the PPO-clip loss: hand-computed values, finite differences, masks, clip
 * counting, and the whole chain through the LLM trainer's backward on a tiny model. */
#include "harness.h"
#include "rl_fixture.h"
#include "deeprec/llm_train.h"
#include "deeprec/rl.h"
#include <stdlib.h>
#include <string.h>

TEST(rl_adv_reinforcepp_hand) {
    /* groups {1, 0} and {2, 2}: A = 0.5, -0.5, 0, 0; tokens 1, 3, 2, 2 (N = 8)
     * mean = (0.5 - 1.5) / 8 = -0.125; var = (0.625^2 + 3 0.375^2 + 4 0.125^2) / 8 = 0.109375 */
    double r[4] = {1, 0, 2, 2};
    int32_t ng[4] = {1, 3, 2, 2};
    float a[4];
    CHECK_OK(rl_advantages(r, ng, 2, 2, RL_ADV_REINFORCEPP, a));
    double sd = sqrt(0.109375);
    CHECK_NEAR(a[0], 0.625 / sd, 1e-5);   /* 1.889822 */
    CHECK_NEAR(a[1], -0.375 / sd, 1e-5);  /* -1.133893 */
    CHECK_NEAR(a[2], 0.125 / sd, 1e-5);   /* 0.377964 */
    CHECK_NEAR(a[3], 0.125 / sd, 1e-5);
    CHECK_NEAR(a[0], 1.889822, 1e-5);
    /* token-level mean 0, variance 1 */
    double m = 0, v = 0;
    for (int i = 0; i < 4; i++) m += ng[i] * a[i];
    m /= 8;
    for (int i = 0; i < 4; i++) v += ng[i] * (a[i] - m) * (a[i] - m);
    CHECK_NEAR(m, 0, 1e-6);
    CHECK_NEAR(v / 8, 1, 1e-5);
    /* all rewards equal: everything 0 (std clamped, no NaN) */
    double same[4] = {1, 1, 1, 1};
    CHECK_OK(rl_advantages(same, ng, 2, 2, RL_ADV_REINFORCEPP, a));
    for (int i = 0; i < 4; i++) CHECK_NEAR(a[i], 0, 0);
    /* an episode without generated tokens carries no weight */
    int32_t ng0[4] = {0, 3, 2, 2};
    CHECK_OK(rl_advantages(r, ng0, 2, 2, RL_ADV_REINFORCEPP, a));
    /* A = 0.5(0 tokens), -0.5, 0, 0: N = 7, mean = -1.5/7, var = (3 (-0.5 + 1.5/7)^2 + 4 (1.5/7)^2) / 7 */
    double mm = -1.5 / 7, vv = (3 * (-0.5 - mm) * (-0.5 - mm) + 4 * mm * mm) / 7;
    CHECK_NEAR(a[1], (-0.5 - mm) / sqrt(vv), 1e-5);
    CHECK_NEAR(a[2], (0 - mm) / sqrt(vv), 1e-5);
    CHECK_EQ_INT(rl_adv_from_name("reinforce++"), RL_ADV_REINFORCEPP);
    CHECK_EQ_INT(rl_adv_from_name("grpo"), RL_ADV_GRPO);
    CHECK_EQ_INT(rl_adv_from_name("ppo"), -1);
}

TEST(rl_adv_grpo_hand) {
    double r[6] = {1, 0, 2, 2, 3, 0};
    float a[6];
    CHECK_OK(rl_advantages(r, NULL, 3, 2, RL_ADV_GRPO, a));
    /* group std (unbiased) of {1, 0} = sqrt(0.5): A = +-0.5 / 0.70710678 */
    CHECK_NEAR(a[0], 0.5 / (sqrt(0.5) + 1e-6), 1e-6);
    CHECK_NEAR(a[1], -0.5 / (sqrt(0.5) + 1e-6), 1e-6);
    CHECK_NEAR(a[2], 0, 0); /* std 0 */
    CHECK_NEAR(a[3], 0, 0);
    CHECK_NEAR(a[4], 1.5 / (sqrt(4.5) + 1e-6), 1e-6);
    /* G = 3: {1, 0, 2} -> mean 1, std 1: A = 0, -1, 1 */
    double r3[3] = {1, 0, 2};
    float a3[3];
    CHECK_OK(rl_advantages(r3, NULL, 1, 3, RL_ADV_GRPO, a3));
    CHECK_NEAR(a3[0], 0, 1e-6);
    CHECK_NEAR(a3[1], -1, 1e-5);
    CHECK_NEAR(a3[2], 1, 1e-5);
}

TEST(rl_ppo_clip_hand) {
    rl_ppo_opts o = {0.2f, 0.28f, 0};
    /* ratios 1.5 (A>0: clipped), 0.5 (A>0: not), 0.5 (A<0: clipped), 1.5 (A<0: not), 1.1 (inside), masked */
    float lr[6] = {logf(1.5f), logf(0.5f), logf(0.5f), logf(1.5f), logf(1.1f), 3.0f};
    float old[6] = {0, 0, 0, 0, 0, -7.0f};
    float adv[6] = {2, 2, -1, -1, 0.5f, 9};
    uint8_t mask[6] = {1, 1, 1, 1, 1, 0};
    float g[6];
    rl_ppo_stats st = {0};
    rl_ppo_loss(&o, 6, lr, old, NULL, adv, mask, 5.0, g, &st);
    CHECK_EQ_INT(st.n_tokens, 5);
    CHECK_EQ_INT(st.n_clipped, 2);
    CHECK_NEAR(g[0], 0, 0);
    CHECK_NEAR(g[1], -0.5 * 2 / 5.0, 1e-6);
    CHECK_NEAR(g[2], 0, 0);
    CHECK_NEAR(g[3], -1.5 * -1 / 5.0, 1e-6);
    CHECK_NEAR(g[4], -1.1 * 0.5 / 5.0, 1e-6);
    CHECK_NEAR(g[5], 0, 0); /* masked */
    /* loss = -(1.28*2 + 0.5*2 + 0.8*-1 + 1.5*-1 + 1.1*0.5) / 5 */
    CHECK_NEAR(st.loss, -(2.56 + 1.0 - 0.8 - 1.5 + 0.55) / 5.0, 1e-6);
    CHECK_NEAR(st.ratio, 1.5 + 0.5 + 0.5 + 1.5 + 1.1, 1e-5);
}

static double loss_of(const rl_ppo_opts *o, int n, const float *lp, const float *old, const float *ref, const float *adv,
                      const uint8_t *mask, double norm) {
    float *g = malloc((size_t)n * sizeof(float));
    rl_ppo_stats st = {0};
    rl_ppo_loss(o, n, lp, old, ref, adv, mask, norm, g, &st);
    free(g);
    return st.loss;
}

TEST(rl_ppo_gradient_finite_difference) {
    enum { N = 64 };
    float lp[N], old[N], ref[N], adv[N], g[N];
    uint8_t mask[N];
    dr_rng r;
    dr_rng_seed(&r, 5);
    for (int kl = 0; kl < 2; kl++) {
        rl_ppo_opts o = {0.2f, 0.28f, kl ? 0.3f : 0.0f};
        for (int i = 0; i < N; i++) {
            lp[i] = -3.0f * dr_rng_float(&r);
            float lr;
            do lr = 1.2f * (dr_rng_float(&r) - 0.5f); /* log-ratio in [-0.6, 0.6] */
            while (fabsf(expf(lr) - 0.8f) < 0.02f || fabsf(expf(lr) - 1.28f) < 0.02f);
            old[i] = lp[i] - lr;
            ref[i] = lp[i] + 0.5f * (dr_rng_float(&r) - 0.5f);
            adv[i] = 2.0f * (dr_rng_float(&r) - 0.5f);
            mask[i] = dr_rng_below(&r, 4) != 0;
        }
        double norm = 0;
        for (int i = 0; i < N; i++) norm += mask[i];
        rl_ppo_stats st = {0};
        rl_ppo_loss(&o, N, lp, old, ref, adv, mask, norm, g, &st);
        CHECK(st.n_clipped > 0 && st.n_clipped < st.n_tokens);
        for (int i = 0; i < N; i++) {
            const float h = 1e-3f;
            float save = lp[i];
            lp[i] = save + h;
            double up = loss_of(&o, N, lp, old, ref, adv, mask, norm);
            lp[i] = save - h;
            double dn = loss_of(&o, N, lp, old, ref, adv, mask, norm);
            lp[i] = save;
            double fd = (up - dn) / ((double)(save + h) - (double)(save - h));
            CHECK_MSG(fabs(fd - g[i]) <= 1e-4 + 1e-3 * fabs(fd), "token %d (mask %d, kl %d): analytic %.8f, fd %.8f", i,
                      mask[i], kl, g[i], fd);
            if (!mask[i]) CHECK(g[i] == 0.0f);
        }
    }
}

/* The whole chain: PPO loss through llm_train_backward equals finite differences of the loss
 * in parameter space, and masked tokens (prompt, tool results) contribute nothing. */
TEST(rl_ppo_gradient_through_llm) {
    llm_model *m;
    tokenizer *tok;
    rlx_llm(&m, &tok);
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 2;
    tc.max_len = 24;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    enum { B = 2, T = 24 };
    int32_t toks[B * T], len[B] = {24, 17};
    uint8_t mask[B * T];
    float lp[B * T], old[B * T], adv[B * T], g[B * T], g2[B * T];
    dr_rng r;
    dr_rng_seed(&r, 9);
    int V = m->cfg.vocab;
    for (int i = 0; i < B * T; i++) {
        toks[i] = (int32_t)dr_rng_below(&r, (uint64_t)V);
        int p = i % T, b = i / T;
        /* prompt 0..5, generated 6..11, tool 12..15, generated 16.. */
        mask[i] = p >= 6 && p < len[b] && !(p >= 12 && p < 16);
    }
    llm_batch bt = {B, T, toks, len, NULL, mask, NULL, NULL, NULL};
    CHECK_OK(llm_train_forward(t, &bt, lp, NULL));
    static const float ratios[4] = {0.6f, 0.9f, 1.1f, 1.5f};
    for (int i = 0; i < B * T; i++) {
        old[i] = lp[i] - logf(ratios[i % 4]);
        adv[i] = i / T == 0 ? 1.3f : -0.7f;
    }
    double norm = 0;
    for (int i = 0; i < B * T; i++) norm += mask[i];
    rl_ppo_opts o = {0.2f, 0.28f, 0};
    rl_ppo_stats st = {0};
    rl_ppo_loss(&o, B * T, lp, old, NULL, adv, mask, norm, g, &st);
    CHECK(st.n_clipped > 0);
    llm_train_zero_grad(t);
    CHECK_OK(llm_train_backward(t, g));
    size_t np;
    float *P = llm_train_params(t, &np);
    float *G = llm_train_grads(t, &np);
    float *G0 = malloc(np * sizeof(float));
    memcpy(G0, G, np * sizeof(float));
    /* garbage at masked positions changes nothing */
    for (int i = 0; i < B * T; i++)
        if (!mask[i]) old[i] = 5.0f, adv[i] = 100.0f;
    rl_ppo_stats st2 = {0};
    rl_ppo_loss(&o, B * T, lp, old, NULL, adv, mask, norm, g2, &st2);
    CHECK(memcmp(g, g2, sizeof g) == 0);
    CHECK(st.loss == st2.loss);
    llm_train_zero_grad(t);
    CHECK_OK(llm_train_backward(t, g2));
    CHECK(memcmp(G0, G, np * sizeof(float)) == 0);
    /* finite differences on the parameters with the largest gradients */
    int checked = 0;
    float *lp2 = malloc(sizeof lp);
    for (int k = 0; k < 8; k++) {
        size_t best = 0;
        for (size_t i = 0; i < np; i++)
            if (fabsf(G0[i]) > fabsf(G0[best])) best = i;
        double ga = G0[best];
        G0[best] = 0; /* next pick another one */
        const float h = 2e-3f;
        float save = P[best];
        P[best] = save + h;
        CHECK_OK(llm_train_forward(t, &bt, lp2, NULL));
        double up = loss_of(&o, B * T, lp2, old, NULL, adv, mask, norm);
        P[best] = save - h;
        CHECK_OK(llm_train_forward(t, &bt, lp2, NULL));
        double dn = loss_of(&o, B * T, lp2, old, NULL, adv, mask, norm);
        P[best] = save;
        double fd = (up - dn) / ((double)(save + h) - (double)(save - h));
        CHECK_MSG(fabs(fd - ga) <= 2e-3 + 0.03 * fabs(ga), "param %zu: analytic %.6g, fd %.6g", best, ga, fd);
        checked++;
    }
    CHECK_EQ_INT(checked, 8);
    free(lp2);
    free(G0);
    llm_train_free(t);
    llm_model_free(m);
    tok_free(tok);
}

/* One PPO update (AdamW through the trainer) raises the log-probs of the generated tokens of a
 * positively advantaged sequence and lowers those of a negative one; prompt tokens are not
 * targets of the objective. */
TEST(rl_ppo_update_direction) {
    llm_model *m;
    tokenizer *tok;
    rlx_llm(&m, &tok);
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 2;
    tc.max_len = 16;
    tc.lr = 1e-3f;
    tc.beta2 = 0.95f;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    enum { B = 2, T = 16 };
    int32_t toks[B * T], len[B] = {16, 16};
    uint8_t mask[B * T];
    float lp[B * T], lp2[B * T], adv[B * T], g[B * T];
    dr_rng r;
    dr_rng_seed(&r, 4);
    for (int i = 0; i < B * T; i++) {
        toks[i] = (int32_t)dr_rng_below(&r, (uint64_t)m->cfg.vocab);
        mask[i] = i % T >= 6;
        adv[i] = i / T == 0 ? 1.0f : -1.0f;
    }
    llm_batch bt = {B, T, toks, len, NULL, mask, NULL, NULL, NULL};
    CHECK_OK(llm_train_forward(t, &bt, lp, NULL));
    rl_ppo_opts o = {0.2f, 0.28f, 0};
    rl_ppo_loss(&o, B * T, lp, lp, NULL, adv, mask, 20.0, g, NULL);
    CHECK_OK(llm_train_backward(t, g));
    float gn;
    CHECK_OK(llm_train_step(t, &gn));
    CHECK(gn > 0);
    CHECK_OK(llm_train_forward(t, &bt, lp2, NULL));
    double d[2] = {0, 0};
    for (int i = 0; i < B * T; i++)
        if (mask[i]) d[i / T] += lp2[i] - lp[i];
    CHECK_MSG(d[0] > 0 && d[1] < 0, "log-prob change %.4g (A > 0), %.4g (A < 0)", d[0], d[1]);
    llm_train_free(t);
    llm_model_free(m);
    tok_free(tok);
}
