/* Rewards of DESIGN §7 on finished episodes: format, stage-1 count and diversity, stage-2
 * list-wise and point-wise. */
#include "deeprec/rl.h"
#include "deeprec/trm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct rl_reward_ctx {
    const agent_catalog *c;
    struct trm_model *m;
    int dim;
    int32_t n_items;
    float *text;    /* [(n_items + 1) x dim] item text embeddings (lazily filled) */
    uint8_t *have;  /* n_items + 1 */
    float *scratch; /* n x dim for preference embeddings */
    int scratch_n;
};

double rl_reward_format(const agent_episode *e) {
    return e->outcome == AGENT_FINISHED && e->format == AGENT_FMT_OK ? 0.0 : -1.0;
}

double rl_reward_count(int n) {
    if (n < 2) return 0.0;
    int k = n < RL_COUNT_MAX ? n : RL_COUNT_MAX;
    return RL_COUNT_BASE * (double)(k - 1);
}

double rl_reward_listwise(int i) {
    if (i < 0 || i >= AGENT_N_REC) return 0.0;
    return RL_LIST_CORRECT + RL_LIST_LINEAR * (double)(AGENT_N_REC - i);
}

double rl_cosine(const float *a, const float *b, int dim) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa <= 0 || bb <= 0) return 0.0;
    return ab / (sqrt(aa) * sqrt(bb));
}

double rl_reward_diversity_vecs(const float *emb, int n, int dim) {
    if (n < 2) return 0.0;
    double s = 0;
    int64_t pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            s += rl_cosine(emb + (size_t)i * dim, emb + (size_t)j * dim, dim);
            pairs++;
        }
    return RL_DIVERSITY_BASE * (1.0 - s / (double)pairs);
}

double rl_reward_pointwise_sims(const double *s, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < AGENT_N_REC; i++) {
        double w = 1.0 - (double)i / AGENT_N_REC;
        w *= w;
        den += w;
        if (i < n) num += w * s[i];
    }
    return RL_POINT_BASE * num / den;
}

int rl_reward_ctx_new(rl_reward_ctx **out, const agent_catalog *c, struct trm_model *m) {
    *out = NULL;
    if (!c || !m) return dr_error(DR_ERR_ARG, "rl rewards: missing catalog or TRM");
    const trm_config *tc = trm_model_config(m);
    if (tc->model != TRM_PREF)
        return dr_error(DR_ERR_UNSUPPORTED, "rl rewards need the preference-aware TRM (this one is sasrec)");
    if (tc->n_items != agent_catalog_n_items(c))
        return dr_error(DR_ERR_ARG, "rl rewards: the TRM has %d items, the dataset %d", tc->n_items,
                        (int)agent_catalog_n_items(c));
    rl_reward_ctx *r = dr_calloc(1, sizeof *r);
    if (!r) return dr_error_code();
    r->c = c;
    r->m = m;
    r->dim = trm_score_dim(m);
    r->n_items = tc->n_items;
    size_t n;
    if (!dr_mul_ok((size_t)r->n_items + 1, (size_t)r->dim, &n)) {
        free(r);
        return dr_error(DR_ERR_NOMEM, "rl rewards: catalog too large");
    }
    r->text = dr_calloc(n, sizeof(float));
    r->have = dr_calloc((size_t)r->n_items + 1, 1);
    if (!r->text || !r->have) {
        rl_reward_ctx_free(r);
        return dr_error_code();
    }
    *out = r;
    return DR_OK;
}

void rl_reward_ctx_free(rl_reward_ctx *r) {
    if (!r) return;
    free(r->text);
    free(r->have);
    free(r->scratch);
    free(r);
}

static int item_text(rl_reward_ctx *r, int32_t item, const float **out) {
    float *dst = r->text + (size_t)item * r->dim;
    if (!r->have[item]) {
        const char *t = agent_catalog_title(r->c, item), *k = agent_catalog_categories(r->c, item);
        size_t n = strlen(t) + strlen(k) + 2;
        char *s = dr_malloc(n);
        if (!s) return dr_error_code();
        snprintf(s, n, "%s %s", t, k);
        int rc = trm_text_embedding(r->m, s, dst);
        free(s);
        if (rc) return rc;
        r->have[item] = 1;
    }
    *out = dst;
    return DR_OK;
}

int rl_item_similarity(rl_reward_ctx *r, int32_t item, int32_t target, double *out) {
    *out = 0.0;
    if (item <= 0 || target <= 0 || item > r->n_items || target > r->n_items) return DR_OK;
    const float *a, *b;
    int rc;
    if ((rc = item_text(r, item, &a)) || (rc = item_text(r, target, &b))) return rc;
    double tc = rl_cosine(a, b, r->dim);
    const float *emb = trm_item_embeddings(r->m);
    double ic = rl_cosine(emb + (size_t)item * r->dim, emb + (size_t)target * r->dim, r->dim);
    *out = 0.5 * (tc + ic);
    return DR_OK;
}

int rl_reward_diversity(rl_reward_ctx *r, const agent_episode *e, double *out) {
    *out = 0.0;
    int n = e->n_calls;
    if (n < 2) return DR_OK;
    if (n > r->scratch_n) {
        float *p = dr_realloc(r->scratch, (size_t)n * r->dim, sizeof(float));
        if (!p) return dr_error_code();
        r->scratch = p;
        r->scratch_n = n;
    }
    for (int i = 0; i < n; i++) {
        int rc = trm_text_embedding(r->m, e->calls[i].preference ? e->calls[i].preference : "",
                                    r->scratch + (size_t)i * r->dim);
        if (rc) return rc;
    }
    *out = rl_reward_diversity_vecs(r->scratch, n, r->dim);
    return DR_OK;
}

int rl_reward_pointwise(rl_reward_ctx *r, const agent_episode *e, double *out) {
    *out = 0.0;
    if (e->target <= 0) return DR_OK;
    double s[AGENT_N_REC] = {0};
    int n = e->answer.n_lines < AGENT_N_REC ? e->answer.n_lines : AGENT_N_REC;
    for (int i = 0; i < n; i++) {
        int rc = rl_item_similarity(r, e->resolved[i], e->target, &s[i]);
        if (rc) return rc;
    }
    *out = rl_reward_pointwise_sims(s, n);
    return DR_OK;
}

int rl_reward_score(rl_reward_ctx *r, int stage, int substring_hit, const agent_episode *e, rl_reward *out) {
    memset(out, 0, sizeof *out);
    out->hit_rank = -1;
    out->n_calls = e->n_calls;
    out->format = rl_reward_format(e);
    out->valid = out->format == 0.0;
    if (out->valid) out->hit_rank = substring_hit ? e->hit_rank_substr : e->hit_rank;
    int rc;
    if (stage == RL_STAGE_1) {
        out->count = rl_reward_count(e->n_calls);
        if ((rc = rl_reward_diversity(r, e, &out->diversity))) return rc;
    } else if (stage == RL_STAGE_2) {
        if (out->valid) {
            out->listwise = rl_reward_listwise(out->hit_rank);
            if ((rc = rl_reward_pointwise(r, e, &out->pointwise))) return rc;
        }
    } else {
        return dr_error(DR_ERR_ARG, "rl: stage must be 1 or 2 (got %d)", stage);
    }
    out->total = out->format + out->count + out->diversity + out->listwise + out->pointwise;
    return DR_OK;
}
