/* How much could an agent gain by calling the preference TRM several times and fusing the lists?
 *
 * The agent only sees top-k title lists, but a bound with exact catalog-wide scores is easy to
 * compute: for every user, score the whole catalog with the empty preference and with each
 * category of the recent history as the preference, then fuse. If no fusion of exact scores
 * beats the empty preference, no agent that writes category preferences and ranks what comes
 * back can beat it either (docs/ablation.md). */
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/metrics.h"
#include "deeprec/trm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FUSION_RRF_K 60.0
#define FUSION_RRF_LIST 20

static const char *const policy_names[EVAL_FUSION_N] = {
    "empty preference (the TRM's own list)",
    "history categories, mixture of softmaxes",
    "history categories, log-linear",
    "TRM posterior over categories, mixture",
    "rank fusion (RRF) of the own list and the top-3 categories",
};

const char *eval_fusion_name(int policy) {
    return policy >= 0 && policy < EVAL_FUSION_N ? policy_names[policy] : "?";
}

/* The distinct categories of the dataset, and each item's, as small integer ids. */
typedef struct cat_table {
    char **name;
    int n, cap;
    int *item_off, *item_cat; /* CSR over items 0..n_items */
} cat_table;

static void cat_table_free(cat_table *t) {
    for (int i = 0; i < t->n; i++) free(t->name[i]);
    free(t->name);
    free(t->item_off);
    free(t->item_cat);
    memset(t, 0, sizeof *t);
}

static int cat_id(cat_table *t, const char *s, size_t len) {
    for (int i = 0; i < t->n; i++)
        if (strlen(t->name[i]) == len && !memcmp(t->name[i], s, len)) return i;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        char **nn = dr_realloc(t->name, (size_t)cap, sizeof *nn);
        if (!nn) return -1;
        t->name = nn;
        t->cap = cap;
    }
    char *c = dr_malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = 0;
    t->name[t->n] = c;
    return t->n++;
}

static int cat_table_build(const dr_dataset *d, cat_table *t) {
    memset(t, 0, sizeof *t);
    int64_t total = 0;
    for (int32_t i = 1; i <= d->n_items; i++)
        for (const char *p = d->categories[i]; *p; p++) total += *p == '|';
    total += d->n_items + 1;
    t->item_off = dr_calloc((size_t)d->n_items + 2, sizeof *t->item_off);
    t->item_cat = dr_calloc((size_t)total, sizeof *t->item_cat);
    if (!t->item_off || !t->item_cat) return dr_error_code();
    int k = 0;
    for (int32_t i = 0; i <= d->n_items; i++) {
        t->item_off[i] = k;
        const char *p = i ? d->categories[i] : "";
        while (*p) {
            size_t len = strcspn(p, "|");
            if (len) {
                int c = cat_id(t, p, len);
                if (c < 0) return dr_error_code();
                t->item_cat[k++] = c;
            }
            p += len + (p[len] == '|');
        }
    }
    t->item_off[d->n_items + 1] = k;
    return DR_OK;
}

static void score_all(trm_model *m, trm_session *s, const int32_t *h, int64_t nh, const char *pref, float *u,
                      float *out, int *rc) {
    const float *E = trm_item_embeddings(m);
    int dim = trm_score_dim(m), V = trm_model_config(m)->n_items;
    if ((*rc = trm_user_vector(s, h, nh, pref, u))) return;
    for (int i = 0; i <= V; i++) {
        const float *r = E + (size_t)i * dim;
        float acc = 0;
        for (int j = 0; j < dim; j++) acc += r[j] * u[j];
        out[i] = acc;
    }
}

/* log of the softmax normaliser over the items that are not masked (mask[i] != 0: in history) */
static double log_norm(const float *s, int V, const char *mask) {
    double mx = -INFINITY, z = 0;
    for (int i = 1; i <= V; i++)
        if (!mask[i] && s[i] > mx) mx = s[i];
    for (int i = 1; i <= V; i++)
        if (!mask[i]) z += exp(s[i] - mx);
    return mx + log(z);
}

/* The ids of the k best unmasked items, best first (ties: smaller id first, as trm_retrieve). */
static int top_list(const float *s, int V, const char *mask, int k, int32_t *ids) {
    int n = 0;
    for (int i = 1; i <= V; i++) {
        if (mask[i]) continue;
        int j = n < k ? n : k;
        while (j > 0 && s[ids[j - 1]] < s[i]) j--;
        if (j >= k) continue;
        memmove(ids + j + 1, ids + j, (size_t)((n < k ? n : k - 1) - j) * sizeof *ids);
        ids[j] = i;
        if (n < k) n++;
    }
    return n;
}


int eval_pref_fusion(trm_model *m, const dr_dataset *d, int split, int max_hist, int B, uint64_t seed,
                     eval_fusion_result *out) {
    memset(out, 0, sizeof *out);
    const trm_config *cfg = trm_model_config(m);
    if (cfg->model != TRM_PREF)
        return dr_error(DR_ERR_UNSUPPORTED, "fusion bound: needs the pref model (this TRM is sasrec)");
    if (cfg->n_items != d->n_items)
        return dr_error(DR_ERR_ARG, "fusion bound: the TRM has %d items, the dataset %d (another dataset?)",
                        cfg->n_items, d->n_items);
    int any_cat = 0;
    for (int32_t i = 1; d->categories && i <= d->n_items && !any_cat; i++) any_cat = d->categories[i][0] != 0;
    if (!any_cat)
        return dr_error(DR_ERR_UNSUPPORTED, "fusion bound: the dataset has no item categories");
    if (max_hist <= 0) max_hist = 20;
    int V = d->n_items, dim = trm_score_dim(m);
    cat_table ct;
    trm_session *sess = NULL;
    int rc = cat_table_build(d, &ct);
    double *vals = NULL, *w = NULL, *logz = NULL;
    float *u = NULL, *s0 = NULL, *sc = NULL, *fused = NULL;
    int32_t *lists = NULL;
    char *mask = NULL;
    int *cats = NULL; /* the categories scored for a user: the history's [0, nc), then the posterior's */
    if (rc || (rc = trm_session_new(&sess, m))) goto done;
    vals = dr_calloc((size_t)EVAL_FUSION_N * (size_t)d->n_users, sizeof *vals);
    w = dr_calloc((size_t)ct.n + 1, sizeof *w);
    logz = dr_calloc((size_t)ct.n + 1, sizeof *logz);
    u = dr_calloc((size_t)dim, sizeof *u);
    s0 = dr_calloc((size_t)V + 1, sizeof *s0);
    sc = dr_calloc(((size_t)ct.n + 1) * ((size_t)V + 1), sizeof *sc);
    fused = dr_calloc((size_t)V + 1, sizeof *fused);
    lists = dr_calloc(4 * FUSION_RRF_LIST, sizeof *lists);
    mask = dr_calloc((size_t)V + 1, 1);
    cats = dr_calloc((size_t)ct.n + 1, sizeof *cats);
    if (!vals || !w || !logz || !u || !s0 || !sc || !fused || !lists || !mask || !cats) {
        rc = dr_error_code();
        goto done;
    }
    int64_t nu = 0;
    for (int32_t user = 0; user < d->n_users && !rc; user++) {
        const int32_t *h;
        int64_t nh;
        int32_t t = split ? dr_data_test(d, user, &h, &nh) : dr_data_valid(d, user, &h, &nh);
        if (t <= 0) continue;
        for (int64_t i = 0; i < nh; i++) mask[h[i]] = 1;
        mask[t] = 0; /* the target is never excluded (as dr_metrics_rank) */
        score_all(m, sess, h, nh, "", u, s0, &rc);
        if (rc) break;
        double lz0 = log_norm(s0, V, mask);
        /* categories of the shown history, weighted by frequency */
        int nc = 0, tot = 0;
        for (int64_t i = nh > max_hist ? nh - max_hist : 0; i < nh; i++)
            for (int k = ct.item_off[h[i]]; k < ct.item_off[h[i] + 1]; k++) {
                int c = ct.item_cat[k], j = 0;
                while (j < nc && cats[j] != c) j++;
                if (j == nc) {
                    cats[nc] = c;
                    w[nc++] = 0;
                }
                w[j] += 1;
                tot++;
            }
        for (int j = 0; j < nc; j++) w[j] /= tot > 0 ? tot : 1;
        /* the TRM's own posterior over categories: its softmax mass, split evenly among an item's */
        double post[256] = {0}, *pc = post;
        if (ct.n > 256) {
            pc = dr_calloc((size_t)ct.n, sizeof *pc);
            if (!pc) {
                rc = dr_error_code();
                break;
            }
        }
        for (int i = 1; i <= V; i++) {
            int k0 = ct.item_off[i], k1 = ct.item_off[i + 1];
            if (mask[i] || k1 == k0) continue;
            double p = exp(s0[i] - lz0) / (k1 - k0);
            for (int k = k0; k < k1; k++) pc[ct.item_cat[k]] += p;
        }
        int top[3] = {-1, -1, -1};
        for (int c = 0; c < ct.n; c++)
            for (int r = 0; r < 3; r++)
                if (top[r] < 0 || pc[c] > pc[top[r]]) {
                    memmove(top + r + 1, top + r, (size_t)(2 - r) * sizeof *top);
                    top[r] = c;
                    break;
                }
        /* scores under every category of the history and the posterior's top 3 */
        int ncats = nc, top_at[3] = {-1, -1, -1}; /* top_at[r]: where top[r] is in cats */
        for (int r = 0; r < 3; r++) {
            if (top[r] < 0) continue;
            int j = 0;
            while (j < ncats && cats[j] != top[r]) j++;
            if (j == ncats) cats[ncats++] = top[r];
            top_at[r] = j;
        }
        for (int j = 0; j < ncats && !rc; j++) {
            score_all(m, sess, h, nh, ct.name[cats[j]], u, sc + (size_t)j * (V + 1), &rc);
            logz[j] = log_norm(sc + (size_t)j * (V + 1), V, mask);
        }
        if (rc) {
            if (pc != post) free(pc);
            break;
        }
        double ptop = 0;
        for (int r = 0; r < 3; r++) ptop += top[r] >= 0 ? pc[top[r]] : 0;
        for (int pol = 0; pol < EVAL_FUSION_N; pol++) {
            const float *score = fused;
            if (pol == EVAL_FUSION_EMPTY) {
                score = s0;
            } else if (pol == EVAL_FUSION_RRF) {
                int n0 = top_list(s0, V, mask, FUSION_RRF_LIST, lists);
                for (int i = 0; i <= V; i++) fused[i] = -1.0f;
                for (int r = 0; r < n0; r++) fused[lists[r]] = (float)(1.0 / (FUSION_RRF_K + r + 1));
                for (int q = 0; q < 3; q++) {
                    if (top[q] < 0) continue;
                    int j = top_at[q];
                    int32_t *L = lists + (q + 1) * FUSION_RRF_LIST;
                    int n = top_list(sc + (size_t)j * (V + 1), V, mask, FUSION_RRF_LIST, L);
                    for (int r = 0; r < n; r++)
                        fused[L[r]] = (fused[L[r]] < 0 ? 0.0f : fused[L[r]]) + (float)(1.0 / (FUSION_RRF_K + r + 1));
                }
            } else {
                for (int i = 1; i <= V; i++) {
                    double acc = 0;
                    if (pol == EVAL_FUSION_HIST_MIX) {
                        for (int j = 0; j < nc; j++) acc += w[j] * exp(sc[(size_t)j * (V + 1) + i] - logz[j]);
                        acc = exp(s0[i] - lz0) + 0.5 * acc;
                    } else if (pol == EVAL_FUSION_HIST_LOGLIN) {
                        for (int j = 0; j < nc; j++) acc += w[j] * sc[(size_t)j * (V + 1) + i];
                        acc = 0.5 * s0[i] + 0.5 * (nc ? acc : s0[i]);
                    } else { /* posterior mixture over the top 3 categories, renormalised, half-half */
                        for (int q = 0; q < 3; q++) {
                            if (top[q] < 0) continue;
                            int j = top_at[q];
                            acc += pc[top[q]] * exp(sc[(size_t)j * (V + 1) + i] - logz[j]);
                        }
                        acc = 0.5 * exp(s0[i] - lz0) + 0.5 * (ptop > 0 ? acc / ptop : exp(s0[i] - lz0));
                    }
                    fused[i] = (float)acc;
                }
                fused[0] = 0;
            }
            int64_t rank = dr_metrics_rank(score, V, t, h, nh);
            vals[(size_t)pol * d->n_users + nu] = dr_metrics_ndcg_at(rank, 10);
            out->recall10[pol] += rank >= 1 && rank <= 10;
        }
        if (pc != post) free(pc);
        for (int64_t i = 0; i < nh; i++) mask[h[i]] = 0;
        nu++;
    }
    if (rc) goto done;
    out->n_users = nu;
    for (int pol = 0; pol < EVAL_FUSION_N && !rc; pol++) {
        double *x = vals + (size_t)pol * d->n_users, *x0 = vals;
        out->recall10[pol] /= nu > 0 ? (double)nu : 1.0;
        if ((rc = eval_bootstrap(x, nu, B, seed, &out->ndcg10[pol]))) break;
        double *diff = dr_calloc((size_t)(nu > 0 ? nu : 1), sizeof *diff);
        if (!diff) {
            rc = dr_error_code();
            break;
        }
        for (int64_t i = 0; i < nu; i++) diff[i] = x[i] - x0[i];
        rc = eval_bootstrap(diff, nu, B, seed, &out->diff[pol]);
        free(diff);
    }
    out->bootstrap = B;
done:
    cat_table_free(&ct);
    trm_session_free(sess);
    free(vals);
    free(w);
    free(logz);
    free(u);
    free(s0);
    free(sc);
    free(fused);
    free(lists);
    free(mask);
    free(cats);
    return rc;
}
