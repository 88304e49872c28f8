/* Batched retrieval: many users' top-k at a time.
 *
 * One user at a time (trm_retrieve) is latency-bound: a 64-wide forward and a 25,000 x 64
 * matrix-vector product that reads the whole table per user. Here the users are cut into groups;
 * each OpenMP thread takes whole groups and does everything for a group on its own: the forward
 * as matrix-matrix products over the group's rows, then the scores one block of items at a time
 * (one sgemm into a tile that stays in L2), each block fed straight to the users' running top-k.
 * Threads share nothing and meet only at the end, and no [users x catalog] score matrix is ever
 * written to memory and read back (at 256 users x 25,000 items that round trip, with the zeroing
 * sgemm does first, cost as much as the selection). Groups are cut from the users sorted by
 * history length, so that short histories are not padded to the longest of the call. */
#include "internal.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Users per group: enough rows (64 x max_len) for the forward's sgemms to run near their peak,
 * and a score tile of 64 x 1024 floats (256 KB) that fits L2 beside the block of F it reads. */
#define TRM_BATCH_GROUP 64
#define TRM_ITEM_BLOCK 1024
/* History lengths the grouping tells apart (longer ones share the last key) */
#define TRM_MAX_SORT_LEN 1024

typedef struct slot {
    trm_acts a;     /* one member's activations (members share a configuration) */
    int32_t *tails; /* [group, max_len] */
    float *tile;    /* [group, TRM_ITEM_BLOCK] */
    float *u;       /* an ensemble: the members' user vectors side by side [group, K d] */
} slot;

struct trm_batch {
    trm_model *m;
    int cap;     /* users per group */
    int n_slots; /* one workspace per thread */
    slot *slots;
};

/* One call's users and where their answers go. */
typedef struct request {
    const int32_t *const *hists;
    const int64_t *n_hists;
    const char *const *prefs; /* may be NULL */
    int k, mask_history;
    int32_t *ids;
    float *scores;
    int *n_out;
} request;

/* The user vectors of the B users who[0..B) (rows of the returned [B, d]). */
static const float *group_forward(trm_model *m, slot *w, const request *r, const int *who, int B) {
    const int L = m->cfg.max_len;
    trm_acts *a = &w->a;
    int32_t *seqs[TRM_BATCH_GROUP] = {0}; /* {0}: gcc cannot see that B >= 1 fills them */
    int64_t lens[TRM_BATCH_GROUP] = {0};
    uint8_t empty[TRM_BATCH_GROUP];
    int Lb = 1;
    for (int b = 0; b < B; b++) {
        seqs[b] = w->tails + (size_t)b * L;
        lens[b] = trm__valid_tail(m, r->hists[who[b]], r->n_hists[who[b]], seqs[b]);
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
    if (m->cfg.model == TRM_PREF && r->prefs)
        for (int b = 0; b < B; b++) {
            const char *p = r->prefs[who[b]];
            if (p && *p) trm__set_last_pref(m, a, b, p);
        }
    return trm__forward(m, a); /* last_only: row b = user b */
}

/* The user vectors of an ensemble: each member's forward in turn, its rows placed beside the
 * others' as trm_retrieve places them, so one product with the ensemble's table sums the scores. */
static const float *group_users(trm_model *m, slot *w, const request *r, const int *who, int B) {
    if (!m->n_members) return group_forward(m, w, r, who, B);
    const int d = m->cfg.dim, K = m->n_members;
    for (int k = 0; k < K; k++) {
        const float *Uk = group_forward(m->members[k], w, r, who, B);
        for (int b = 0; b < B; b++)
            memcpy(w->u + ((size_t)b * K + k) * d, Uk + (size_t)b * d, (size_t)d * sizeof(float));
    }
    return w->u;
}

static void group(trm_model *m, slot *w, const request *r, const int *who, int B) {
    const int d = trm_score_dim(m), n_items = m->cfg.n_items, k = r->k;
    const float *F = trm__score_table(m);
    const float *U = group_users(m, w, r, who, B);
    trm_topk_acc acc[TRM_BATCH_GROUP];
    for (int b = 0; b < B; b++)
        trm__topk_init(&acc[b], k, r->ids + (size_t)who[b] * k, r->scores + (size_t)who[b] * k);
    for (int32_t i0 = 1; i0 <= n_items; i0 += TRM_ITEM_BLOCK) {
        const int nb = n_items - i0 + 1 < TRM_ITEM_BLOCK ? n_items - i0 + 1 : TRM_ITEM_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nb, d, 1.0f, U, d, F + (size_t)i0 * d, d, 0.0f,
                    w->tile, TRM_ITEM_BLOCK);
        for (int b = 0; b < B; b++) {
            float *s = w->tile + (size_t)b * TRM_ITEM_BLOCK;
            /* a masked item's score becomes NaN, which the selection never keeps */
            if (r->mask_history)
                for (int64_t i = 0; i < r->n_hists[who[b]]; i++) {
                    int32_t h = r->hists[who[b]][i];
                    if (h >= i0 && h < i0 + nb) s[h - i0] = NAN;
                }
            trm__topk_push(&acc[b], s, i0, nb, NULL);
        }
    }
    for (int b = 0; b < B; b++) r->n_out[who[b]] = trm__topk_finish(&acc[b]);
}

int trm_batch_new(trm_batch **out, trm_model *m, int max_users) {
    *out = NULL;
    if (max_users <= 0) return dr_error(DR_ERR_ARG, "trm_batch_new: max_users must be positive (got %d)", max_users);
    trm_batch *b = dr_calloc(1, sizeof *b);
    if (!b) return dr_error_code();
    b->m = m;
    b->cap = max_users < TRM_BATCH_GROUP ? max_users : TRM_BATCH_GROUP;
    int groups = (max_users + b->cap - 1) / b->cap, threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    b->n_slots = groups < threads ? groups : threads;
    b->slots = dr_calloc((size_t)b->n_slots, sizeof *b->slots);
    if (!b->slots) {
        free(b);
        return dr_error_code();
    }
    const size_t L = (size_t)m->cfg.max_len;
    for (int i = 0; i < b->n_slots; i++) {
        slot *w = &b->slots[i];
        int rc = trm__acts_alloc_infer(&w->a, trm__part(m, 0), b->cap);
        if (rc) {
            trm_batch_free(b);
            return rc;
        }
        dr_rng_seed(&w->a.rng, 0);
        w->tails = dr_malloc((size_t)b->cap * L * sizeof(int32_t));
        w->tile = dr_aligned_alloc((size_t)b->cap * TRM_ITEM_BLOCK * sizeof(float));
        if (m->n_members) w->u = dr_aligned_alloc((size_t)b->cap * trm_score_dim(m) * sizeof(float));
        if (!w->tails || !w->tile || (m->n_members && !w->u)) {
            trm_batch_free(b);
            return dr_error(DR_ERR_NOMEM, "trm_batch_new: out of memory (%d users)", max_users);
        }
    }
    int rc = trm__tables_ready(m);
    if (rc) {
        trm_batch_free(b);
        return rc;
    }
    *out = b;
    return DR_OK;
}

void trm_batch_free(trm_batch *b) {
    if (!b) return;
    for (int i = 0; b->slots && i < b->n_slots; i++) {
        trm__acts_free(&b->slots[i].a);
        free(b->slots[i].tails);
        free(b->slots[i].tile);
        free(b->slots[i].u);
    }
    free(b->slots);
    free(b);
}

/* Users in order of history length (a stable counting sort), so that a group pads its rows to
 * a length close to each of its users' own: a 3-item history grouped with a 50-item one would
 * cost the forward of 50 rows. */
static void by_length(const trm_model *m, int n_users, const int64_t *n_hists, int *order) {
    const int L = m->cfg.max_len;
    int count[TRM_MAX_SORT_LEN + 2] = {0};
    const int top = L < TRM_MAX_SORT_LEN ? L : TRM_MAX_SORT_LEN;
#define KEY(i) (n_hists[i] <= 0 ? 0 : n_hists[i] < top ? (int)n_hists[i] : top)
    for (int i = 0; i < n_users; i++) count[KEY(i) + 1]++;
    for (int l = 1; l <= top + 1; l++) count[l] += count[l - 1];
    for (int i = 0; i < n_users; i++) order[count[KEY(i)]++] = i;
#undef KEY
}

int trm_retrieve_batch(trm_batch *b, int n_users, const int32_t *const *hists, const int64_t *n_hists,
                       const char *const *prefs, int k, int mask_history, int32_t *ids, float *scores, int *n_out) {
    if (k <= 0) return dr_error(DR_ERR_ARG, "trm_retrieve_batch: k must be positive (got %d)", k);
    if (n_users < 0) return dr_error(DR_ERR_ARG, "trm_retrieve_batch: n_users must be >= 0 (got %d)", n_users);
    for (int i = 0; i < n_users; i++) n_out[i] = 0;
    if (n_users == 0) return DR_OK;
    int *order = dr_malloc((size_t)n_users * sizeof *order);
    if (!order) return dr_error_code();
    by_length(b->m, n_users, n_hists, order);
    const request r = {hists, n_hists, prefs, k, mask_history, ids, scores, n_out};
    const int groups = (n_users + b->cap - 1) / b->cap;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (threads > b->n_slots) threads = b->n_slots;
    if (threads > groups) threads = groups;
    /* inside this region the kernels (nn, OpenBLAS) run on their caller's thread */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (int g = 0; g < groups; g++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        const int start = g * b->cap, B = n_users - start < b->cap ? n_users - start : b->cap;
        group(b->m, &b->slots[t], &r, order + start, B);
    }
    free(order);
    return DR_OK;
}
