/* Full-ranking evaluation of a TRM on the valid or test split (deeprec/metrics.h). */
#include "internal.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include "deeprec/metrics.h"
#include <stdlib.h>
#include <string.h>

typedef struct { int64_t len; int32_t u; } ulen;
static int cmp_ulen(const void *a, const void *b) {
    const ulen *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->u < y->u ? -1 : x->u > y->u;
}

/* Writes the user vector of the last position of each sequence into U [B, d]. */
static void last_rows(const trm_model *m, const trm_acts *a, const float *out, float *U) {
    int d = m->cfg.dim;
    for (int b = 0; b < a->B; b++)
        memcpy(U + (size_t)b * d, out + (a->last_only ? (size_t)b : (size_t)b * a->L + (size_t)(a->L - 1)) * d,
               (size_t)d * sizeof(float));
}

int trm__set_last_pref(trm_model *m, trm_acts *a, int b, const char *text) {
    /* only the last row of sequence b carries a preference; rows are filled in order */
    int row = b * a->L + a->L - 1;
    int start = a->ptok_off[row];
    int n = text && *text ? trm__pref_tokens(m, text, a->ptok + start, trm__max_feats()) : 0;
    for (int i = row + 1; i <= a->N; i++) a->ptok_off[i] = start + n;
    return n;
}

/* split 2 (the last training item) measures how much better the TRM ranks items it was trained
 * on as targets than unseen ones (docs/ablation.md) */
static int32_t split_target(const dr_dataset *d, int32_t u, int split, const int32_t **pre, int64_t *pl) {
    if (split == 2) return dr_data_train_example(d, u, pre, pl);
    return split ? dr_data_test(d, u, pre, pl) : dr_data_valid(d, u, pre, pl);
}

int trm_evaluate(trm_model *m, const dr_dataset *d, int split, int mask_history, int pref_mode,
                 dr_metrics_mean *out) {
    return trm__evaluate_users(m, d, split, mask_history, pref_mode, NULL, 0, NULL, out);
}

int trm__evaluate_users(trm_model *m, const dr_dataset *d, int split, int mask_history, int pref_mode,
                        const int32_t *users, int n_users, trm_acts *ws, dr_metrics_mean *out) {
    memset(out, 0, sizeof *out);
    if (trm_check_dataset(m, d, NULL, NULL)) return DR_ERR_ARG;
    if (users && n_users < 0) return dr_error(DR_ERR_ARG, "trm_evaluate: %d users", n_users);
    for (int i = 0; users && i < n_users; i++)
        if (users[i] < 0 || users[i] >= d->n_users)
            return dr_error(DR_ERR_ARG, "trm_evaluate: user %d is not in the dataset (%d users)", users[i], d->n_users);
    for (int k = 0; k < trm__n_parts(m); k++)
        if (!trm__part(m, k)->tables_fresh) trm__refresh_tables(trm__part(m, k));
    const int Bcap = TRM_EVAL_USERS, d_ = m->cfg.dim, V = m->V;
    if (ws && (!ws->infer || ws->Bcap < TRM_EVAL_USERS))
        return dr_error(DR_ERR_INTERNAL, "trm_evaluate: the workspace is not for inference of %d users", Bcap);
    trm_acts own = {0}, *a = ws ? ws : &own;
    int64_t *counts = NULL;   /* MPI: users per rank */
    int32_t *lranks = NULL, *aranks = NULL; /* MPI: this rank's ranks, everyone's */
    int rc = ws ? DR_OK : trm__acts_alloc_infer(&own, trm__part(m, 0), Bcap); /* members share a configuration */
    if (rc) return rc;
    ulen *us = dr_calloc((size_t)(users ? n_users : d->n_users) + 1, sizeof *us);
    float *U = dr_aligned_alloc((size_t)Bcap * d_ * sizeof(float));
    float *S = dr_aligned_alloc((size_t)Bcap * V * sizeof(float));
    int32_t *targets = dr_calloc(Bcap, sizeof(int32_t));
    int64_t *moff = dr_calloc(Bcap + 1, sizeof(int64_t));
    int32_t **seqs = dr_calloc(Bcap, sizeof(int32_t *));
    int64_t *lens = dr_calloc(Bcap, sizeof(int64_t));
    int64_t mcap = 1 << 16;
    int32_t *mitems = dr_malloc((size_t)mcap * sizeof(int32_t));
    char *pbuf = dr_malloc(4096);
    if (!us || !U || !S || !targets || !moff || !seqs || !lens || !mitems || !pbuf) {
        rc = dr_error_code();
        goto done;
    }
    int nu = 0;
    const int n_cand = users ? n_users : d->n_users;
    for (int i = 0; i < n_cand; i++) {
        const int32_t u = users ? users[i] : i, *pre;
        int64_t pl;
        int32_t t = split_target(d, u, split, &pre, &pl);
        if (t <= 0 || pl <= 0) continue;
        us[nu].u = u;
        us[nu].len = pl < m->cfg.max_len ? pl : m->cfg.max_len;
        nu++;
    }
    qsort(us, (size_t)nu, sizeof *us, cmp_ulen);
    dr_metrics acc;
    dr_metrics_init(&acc);
    a->train = 0;
    a->last_only = 1;
    dr_rng_seed(&a->rng, 0);
    /* Under MPI each rank scores its share of the batches (the same batches as one process,
     * so the same scores); the ranks of every user are gathered and added in user order on
     * every rank, so the sums are those of one process, bit for bit. */
    const int size = dr_dist_size();
    const int64_t nbat = (nu + Bcap - 1) / Bcap;
    int64_t blo = 0, bhi = nbat;
    if (size > 1) {
        dr_dist_share(nbat, &blo, &bhi);
        lranks = dr_calloc((size_t)nu + 1, sizeof *lranks);
        aranks = dr_calloc((size_t)nu + 1, sizeof *aranks);
        counts = dr_calloc((size_t)size, sizeof *counts);
        if (!lranks || !aranks || !counts) {
            rc = dr_error_code();
            goto done;
        }
        for (int r = 0; r < size; r++) {
            int64_t lo, hi;
            dr_dist_share_of(nbat, r, size, &lo, &hi);
            counts[r] = (hi * Bcap < nu ? hi * Bcap : nu) - (lo * Bcap < nu ? lo * Bcap : nu);
        }
    }
    const int s0 = (int)(blo * Bcap), s1 = bhi * Bcap < nu ? (int)(bhi * Bcap) : nu;
    for (int s = s0; s < s1; s += Bcap) {
        int B = nu - s < Bcap ? nu - s : Bcap;
        int64_t mn = 0;
        for (int b = 0; b < B; b++) {
            const int32_t *pre;
            int64_t pl;
            int32_t u = us[s + b].u;
            targets[b] = split_target(d, u, split, &pre, &pl);
            seqs[b] = (int32_t *)pre;
            lens[b] = pl;
            moff[b] = mn;
            if (mask_history) {
                if (mn + pl > mcap) {
                    while (mn + pl > mcap) mcap *= 2;
                    int32_t *nm = dr_realloc(mitems, (size_t)mcap, sizeof(int32_t));
                    if (!nm) {
                        rc = dr_error_code();
                        goto done;
                    }
                    mitems = nm;
                }
                memcpy(mitems + mn, pre, (size_t)pl * sizeof(int32_t));
                mn += pl;
            }
        }
        moff[B] = mn;
        /* an ensemble: the members' scores summed (S += U_k F_k^T) */
        for (int k = 0; k < trm__n_parts(m); k++) {
            trm_model *p = trm__part(m, k);
            trm__fill_batch(p, a, B, 0, seqs, lens);
            if (m->cfg.model == TRM_PREF && pref_mode == 1)
                for (int b = 0; b < B; b++) {
                    trm__oracle_pref(d, targets[b], pbuf, 4096);
                    trm__set_last_pref(p, a, b, pbuf);
                }
            const float *o = trm__forward(p, a);
            last_rows(p, a, o, U);
            nn_matmul(S, U, p->score_table, B, V, d_, 0, 1, 1.0f, k ? 1.0f : 0.0f);
        }
        if (size == 1) {
            dr_metrics_add_batch(&acc, S, B, m->cfg.n_items, targets, mask_history ? moff : NULL, mitems);
            continue;
        }
#pragma omp parallel for schedule(dynamic, 4)
        for (int b = 0; b < B; b++)
            lranks[s - s0 + b] = (int32_t)dr_metrics_rank(S + (size_t)b * V, m->cfg.n_items, targets[b],
                                                          mask_history ? mitems + moff[b] : NULL,
                                                          mask_history ? moff[b + 1] - moff[b] : 0);
    }
    if (size > 1) {
        if ((rc = dr_dist_allgather_i32(lranks, aranks, counts))) goto done;
        for (int i = 0; i < nu; i++) dr_metrics_add_rank(&acc, aranks[i]);
    }
    dr_metrics_finish(&acc, out);
done:
    free(lranks);
    free(aranks);
    free(counts);
    trm__acts_free(&own);
    free(us);
    free(U);
    free(S);
    free(targets);
    free(moff);
    free(seqs);
    free(lens);
    free(mitems);
    free(pbuf);
    return rc;
}
