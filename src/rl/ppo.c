/* Group-baseline advantages (REINFORCE++ / GRPO), the PPO-clip token loss with its analytic
 * gradient, and reference log-probabilities for the k3 KL term. */
#include "deeprec/rl.h"
#include "deeprec/llm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int rl_adv_from_name(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "reinforce++") || !strcmp(s, "reinforce_baseline")) return RL_ADV_REINFORCEPP;
    if (!strcmp(s, "grpo") || !strcmp(s, "group_norm")) return RL_ADV_GRPO;
    return -1;
}

const char *rl_adv_name(int k) { return k == RL_ADV_GRPO ? "grpo" : k == RL_ADV_REINFORCEPP ? "reinforce++" : "?"; }

int rl_advantages(const double *r, const int32_t *n_gen, int n_groups, int G, int kind, float *adv) {
    if (n_groups < 0 || G < 1) return dr_error(DR_ERR_ARG, "rl_advantages: %d groups of %d", n_groups, G);
    if (kind != RL_ADV_REINFORCEPP && kind != RL_ADV_GRPO) return dr_error(DR_ERR_ARG, "rl_advantages: kind %d", kind);
    size_t n = (size_t)n_groups * G;
    double *a = dr_calloc(n ? n : 1, sizeof *a);
    if (!a) return dr_error_code();
    for (int g = 0; g < n_groups; g++) {
        const double *x = r + (size_t)g * G;
        double m = 0;
        for (int i = 0; i < G; i++) m += x[i];
        m /= G;
        double sd = 0;
        if (kind == RL_ADV_GRPO && G > 1) {
            for (int i = 0; i < G; i++) sd += (x[i] - m) * (x[i] - m);
            sd = sqrt(sd / (G - 1));
        }
        for (int i = 0; i < G; i++) {
            double v = x[i] - m;
            if (kind == RL_ADV_GRPO) v = G > 1 ? v / (sd + 1e-6) : 0.0;
            a[(size_t)g * G + i] = v;
        }
    }
    if (kind == RL_ADV_REINFORCEPP) {
        double N = 0, s = 0;
        for (size_t i = 0; i < n; i++) {
            double w = n_gen ? (double)(n_gen[i] > 0 ? n_gen[i] : 0) : 1.0;
            N += w;
            s += w * a[i];
        }
        double mean = N > 0 ? s / N : 0.0, var = 0;
        for (size_t i = 0; i < n; i++) {
            double w = n_gen ? (double)(n_gen[i] > 0 ? n_gen[i] : 0) : 1.0;
            var += w * (a[i] - mean) * (a[i] - mean);
        }
        var = N > 0 ? var / N : 0.0;
        double rstd = 1.0 / sqrt(var > 1e-8 ? var : 1e-8);
        for (size_t i = 0; i < n; i++) a[i] = (a[i] - mean) * rstd;
    }
    for (size_t i = 0; i < n; i++) adv[i] = (float)a[i];
    free(a);
    return DR_OK;
}

void rl_ppo_loss(const rl_ppo_opts *o, int64_t n, const float *logp, const float *old, const float *ref,
                 const float *adv, const uint8_t *mask, double norm, float *dlogp, rl_ppo_stats *st) {
    const double lo = 1.0 - o->clip_low, hi = 1.0 + o->clip_high, beta = o->kl_beta;
    const double inv = norm > 0 ? 1.0 / norm : 0.0;
    double loss = 0, kl = 0, rs = 0;
    int64_t nt = 0, nc = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!mask[i]) {
            dlogp[i] = 0.0f;
            continue;
        }
        double A = adv[i];
        double ratio = exp((double)logp[i] - (double)old[i]);
        double cr = ratio < lo ? lo : ratio > hi ? hi : ratio;
        double s1 = ratio * A, s2 = cr * A;
        double li, g;
        if (s2 < s1) { /* clipped term binding: constant in logp */
            li = -s2;
            g = 0.0;
            nc++;
        } else {
            li = -s1;
            g = -s1;
        }
        if (beta != 0.0 && ref) {
            double d = (double)ref[i] - (double)logp[i];
            double k3 = exp(d) - d - 1.0;
            li += beta * k3;
            g += beta * (1.0 - exp(d));
            kl += k3;
        }
        loss += li * inv;
        dlogp[i] = (float)(g * inv);
        rs += ratio;
        nt++;
    }
    if (st) {
        st->loss += loss;
        st->kl += kl;
        st->ratio += rs;
        st->n_tokens += nt;
        st->n_clipped += nc;
    }
}

int rl_ref_logprobs(const llm_model *m, const agent_episode *e, float *out) {
    int n = e->n_tokens;
    memset(out, 0, (size_t)(n > 0 ? n : 0) * sizeof(float));
    if (n < 2) return DR_OK;
    const int V = m->cfg.vocab, CH = 128;
    llm_session *s;
    int rc = llm_session_new(&s, m, 1, n);
    if (rc) return rc;
    float *lg = dr_malloc((size_t)CH * V * sizeof(float));
    if (!lg) {
        llm_session_free(s);
        return dr_error_code();
    }
    /* logits row j of a chunk starting at p0 predict token p0 + j + 1 */
    for (int p0 = 0; p0 < n - 1 && !rc; p0 += CH) {
        int c = n - 1 - p0 < CH ? n - 1 - p0 : CH;
        int any = 0;
        for (int j = 0; j < c && !any; j++) any = e->mask[p0 + j + 1];
        if ((rc = llm_prefill(s, 0, e->tokens + p0, c, any ? lg : NULL, 1))) break;
        if (!any) continue;
        for (int j = 0; j < c; j++) {
            int t = p0 + j + 1;
            if (!e->mask[t]) continue;
            const float *x = lg + (size_t)j * V;
            int na = e->allow_n ? e->allow_n[t] : 0;
            const int32_t *ids = na > 0 ? e->allow_ids + e->allow_off[t] : NULL;
            int nv = na > 0 ? na : V;
            float mx = -INFINITY;
            for (int v = 0; v < nv; v++) mx = x[ids ? ids[v] : v] > mx ? x[ids ? ids[v] : v] : mx;
            double z = 0;
            for (int v = 0; v < nv; v++) z += exp((double)(x[ids ? ids[v] : v] - mx));
            out[t] = (float)((double)(x[e->tokens[t]] - mx) - log(z));
        }
    }
    free(lg);
    llm_session_free(s);
    return rc;
}
