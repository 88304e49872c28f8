/* Batched retrieval: many users' top-k in one forward over the batch and one sgemm against
 * the item table. One user at a time (trm_retrieve) is latency-bound: a 64-wide forward and a
 * 25,000 x 64 matrix-vector product read the whole table per user. A batch reads the table once
 * per chunk of users and lets the forward run as matrix-matrix products. */
#include "internal.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

/* Users per forward: the activations of 256 x max_len rows and a 256 x V score block stay
 * a few tens of MB at the catalog sizes we meet (V = 25,000: 25.6 MB). */
#define TRM_BATCH_CHUNK 256

static void chunk(trm_model *m, trm_acts *a, int B, const int32_t *const *hists, const int64_t *n_hists,
                 const char *const *prefs, int k, int mask_history, int32_t *tails, float *S, int32_t *ids,
                 float *scores, int *n_out) {
    const int L = m->cfg.max_len, d = m->cfg.dim, V = m->V;
    int32_t *seqs[TRM_BATCH_CHUNK] = {0}; /* {0}: gcc cannot see that B >= 1 fills them */
    int64_t lens[TRM_BATCH_CHUNK] = {0};
    uint8_t empty[TRM_BATCH_CHUNK];
    int Lb = 1;
    for (int b = 0; b < B; b++) {
        seqs[b] = tails + (size_t)b * L;
        lens[b] = trm__valid_tail(m, hists[b], n_hists[b], seqs[b]);
        /* an empty history is one padding step that attends to itself, as in trm_retrieve */
        empty[b] = lens[b] == 0;
        if (empty[b]) {
            seqs[b][0] = 0;
            lens[b] = 1;
        }
        if (lens[b] > Lb) Lb = (int)lens[b];
    }
    trm__fill_batch(m, a, B, Lb, seqs, lens);
    for (int b = 0; b < B; b++)
        if (empty[b]) a->key_mask[(size_t)b * Lb + Lb - 1] = 1;
    a->train = 0;
    a->last_only = 1;
    if (m->cfg.model == TRM_PREF && prefs)
        for (int b = 0; b < B; b++)
            if (prefs[b] && *prefs[b]) trm__set_last_pref(m, a, b, prefs[b]);
    const float *U = trm__forward(m, a); /* last_only: row b = user b */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, V, d, 1.0f, U, d, m->F, d, 0.0f, S, V);
#pragma omp parallel for schedule(dynamic, 4)
    for (int b = 0; b < B; b++) {
        float *s = S + (size_t)b * V;
        /* masked items become NaN, which trm_topk skips: no per-thread mask array */
        if (mask_history)
            for (int64_t i = 0; i < n_hists[b]; i++)
                if (hists[b][i] > 0 && hists[b][i] <= m->cfg.n_items) s[hists[b][i]] = NAN;
        n_out[b] = trm_topk(s, m->cfg.n_items, NULL, k, ids + (size_t)b * k, scores + (size_t)b * k);
    }
}

struct trm_batch {
    trm_model *m;
    int cap;       /* users per forward */
    trm_acts a;
    int32_t *tails; /* [cap, max_len] */
    float *S;       /* [cap, V] */
};

int trm_batch_new(trm_batch **out, trm_model *m, int max_users) {
    *out = NULL;
    if (max_users <= 0) return dr_error(DR_ERR_ARG, "trm_batch_new: max_users must be positive (got %d)", max_users);
    trm_batch *b = dr_calloc(1, sizeof *b);
    if (!b) return dr_error_code();
    b->m = m;
    b->cap = max_users < TRM_BATCH_CHUNK ? max_users : TRM_BATCH_CHUNK;
    const size_t L = (size_t)m->cfg.max_len, V = (size_t)m->V;
    int rc = trm__acts_alloc(&b->a, m, b->cap);
    if (rc) {
        free(b);
        return rc;
    }
    dr_rng_seed(&b->a.rng, 0);
    b->tails = dr_malloc((size_t)b->cap * L * sizeof(int32_t));
    b->S = dr_aligned_alloc((size_t)b->cap * V * sizeof(float));
    if (!b->tails || !b->S) {
        trm_batch_free(b);
        return dr_error(DR_ERR_NOMEM, "trm_batch_new: out of memory (%d users x %zu items)", max_users, V);
    }
    if (!m->F_ok) trm__refresh_tables(m);
    *out = b;
    return DR_OK;
}

void trm_batch_free(trm_batch *b) {
    if (!b) return;
    trm__acts_free(&b->a);
    free(b->tails);
    free(b->S);
    free(b);
}

int trm_retrieve_batch(trm_batch *b, int n_users, const int32_t *const *hists, const int64_t *n_hists,
                       const char *const *prefs, int k, int mask_history, int32_t *ids, float *scores, int *n_out) {
    if (k <= 0) return dr_error(DR_ERR_ARG, "trm_retrieve_batch: k must be positive (got %d)", k);
    if (n_users < 0) return dr_error(DR_ERR_ARG, "trm_retrieve_batch: n_users must be >= 0 (got %d)", n_users);
    for (int i = 0; i < n_users; i++) n_out[i] = 0;
    for (int start = 0; start < n_users; start += b->cap) {
        int B = n_users - start < b->cap ? n_users - start : b->cap;
        chunk(b->m, &b->a, B, hists + start, n_hists + start, prefs ? prefs + start : NULL, k, mask_history, b->tails,
              b->S, ids + (size_t)start * k, scores + (size_t)start * k, n_out + start);
    }
    return DR_OK;
}
