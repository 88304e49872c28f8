/* In-process retrieval: history + preference -> exact top-k over the catalog. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

struct trm_session {
    trm_model *m;
    trm_acts a;      /* the members share one workspace: they have one configuration */
    float *scores;   /* [V] */
    uint8_t *masked; /* [V] */
    float *u;        /* [trm_score_dim] */
};

int trm_session_new(trm_session **out, trm_model *m) {
    *out = NULL;
    trm_session *s = calloc(1, sizeof *s);
    if (!s) return dr_error(DR_ERR_NOMEM, "trm: out of memory");
    s->m = m;
    int rc = trm__acts_alloc_infer(&s->a, trm__part(m, 0), 1);
    if (rc) {
        free(s);
        return rc;
    }
    s->scores = dr_aligned_alloc((size_t)m->V * sizeof(float));
    s->masked = dr_calloc((size_t)m->V, 1);
    s->u = dr_aligned_alloc((size_t)trm_score_dim(m) * sizeof(float));
    if (!s->scores || !s->masked || !s->u) {
        trm_session_free(s);
        return dr_error(DR_ERR_NOMEM, "trm: out of memory");
    }
    if ((rc = trm__tables_ready(m))) {
        trm_session_free(s);
        return rc;
    }
    *out = s;
    return DR_OK;
}

void trm_session_free(trm_session *s) {
    if (!s) return;
    trm__acts_free(&s->a);
    free(s->scores);
    free(s->masked);
    free(s->u);
    free(s);
}

/* full: every row of the last block too (tests compare it with the last-row-only path). */
static int user_vector(trm_session *s, trm_model *m, const int32_t *hist, int64_t n_hist, const char *pref, int full,
                       float *u);

/* Every part's user vector, side by side in u [trm_score_dim]. */
static int user_vectors(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, int full, float *u) {
    int rc = DR_OK;
    for (int k = 0; k < trm__n_parts(s->m) && !rc; k++)
        rc = user_vector(s, trm__part(s->m, k), hist, n_hist, pref, full, u + (size_t)k * s->m->cfg.dim);
    return rc;
}

/* One user at a time is too little work to share between threads: the kernels run on the
 * calling thread only (no fork/join, no spinning). The thread count is an ICV of the calling
 * thread's task (OpenMP 5.2, section 2.4), so no other thread sees the change, and it is put
 * back before returning: the caller's later parallel regions keep their width. */
static int user_vector_serial(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, float *u) {
#ifdef _OPENMP
    int width = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    int rc = user_vectors(s, hist, n_hist, pref, 0, u);
#ifdef _OPENMP
    omp_set_num_threads(width);
#endif
    return rc;
}

int trm_user_vector(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, float *u) {
    return user_vector_serial(s, hist, n_hist, pref, u);
}

int64_t trm__valid_tail(const trm_model *m, const int32_t *hist, int64_t n_hist, int32_t *out) {
    const int L = m->cfg.max_len;
    int64_t n = 0;
    for (int64_t i = n_hist - 1; i >= 0 && n < L; i--)
        if (hist[i] > 0 && hist[i] <= m->cfg.n_items) n++;
    int64_t k = n;
    for (int64_t i = n_hist - 1; i >= 0 && k > 0; i--)
        if (hist[i] > 0 && hist[i] <= m->cfg.n_items) out[--k] = hist[i];
    return n;
}

static int user_vector(trm_session *s, trm_model *m, const int32_t *hist, int64_t n_hist, const char *pref, int full,
                       float *u) {
    int L = m->cfg.max_len;
    int32_t buf[1024], *tmp = buf;
    if (L > 1024) {
        tmp = dr_malloc((size_t)L * sizeof(int32_t));
        if (!tmp) return dr_error_code();
    }
    int64_t n = trm__valid_tail(m, hist, n_hist, tmp), len = n;
    int32_t *sp = tmp;
    int32_t one_pad = 0;
    if (n == 0) { /* no history: a single padding step (position embedding only) */
        sp = &one_pad;
        len = 1;
    }
    trm__fill_batch(m, &s->a, 1, (int)len, &sp, &len);
    if (n == 0) s->a.key_mask[0] = 1; /* let the lone padding row attend to itself */
    s->a.train = 0;
    s->a.last_only = !full;
    if (m->cfg.model == TRM_PREF && pref && *pref) trm__set_last_pref(m, &s->a, 0, pref);
    const float *o = trm__forward(m, &s->a);
    /* last_only: row 0 is the last position */
    memcpy(u, o + (full ? (size_t)(s->a.L - 1) * m->cfg.dim : 0), (size_t)m->cfg.dim * sizeof(float));
    if (tmp != buf) free(tmp);
    return DR_OK;
}

int trm_retrieve(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, int k, int mask_history,
                 int32_t *ids, float *scores, int *n_out) {
    trm_model *m = s->m;
    *n_out = 0;
    if (k <= 0) return dr_error(DR_ERR_ARG, "trm_retrieve: k must be positive (got %d)", k);
    int rc = user_vector_serial(s, hist, n_hist, pref, s->u);
    if (rc) return rc;
    int d = trm_score_dim(m), V = m->V;
    /* scores = F u (a plain vectorised loop: on the caller's thread, no BLAS thread wake-ups);
     * an ensemble's F and u are its members' side by side, so this sums the members' scores */
    const float *F = trm__score_table(m), *uu = s->u;
    for (int i = 0; i < V; i++) {
        const float *r = F + (size_t)i * d;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < d; j++) acc += r[j] * uu[j];
        s->scores[i] = acc;
    }
    if (mask_history)
        for (int64_t i = 0; i < n_hist; i++)
            if (hist[i] > 0 && hist[i] <= m->cfg.n_items) s->masked[hist[i]] = 1;
    *n_out = trm_topk(s->scores, m->cfg.n_items, mask_history ? s->masked : NULL, k, ids, scores);
    if (mask_history)
        for (int64_t i = 0; i < n_hist; i++)
            if (hist[i] > 0 && hist[i] <= m->cfg.n_items) s->masked[hist[i]] = 0;
    return DR_OK;
}

const float *trm_item_embeddings(trm_model *m) {
    trm__tables_ready(m); /* an ensemble's table it could not allocate stays NULL */
    return trm__score_table(m);
}

int trm_text_embedding(trm_model *m, const char *text, float *out) {
    int d = m->cfg.dim;
    if (m->n_members) { /* the members' side by side */
        int rc = DR_OK;
        for (int k = 0; k < m->n_members && !rc; k++) rc = trm_text_embedding(m->members[k], text, out + (size_t)k * d);
        return rc;
    }
    if (m->cfg.model != TRM_PREF)
        return dr_error(DR_ERR_UNSUPPORTED, "trm: text embeddings need the pref model (this one is sasrec)");
    int32_t ids[256];
    int n = trm__pref_tokens(m, text, ids, 256);
    float bag[1024], *b = bag;
    if (d > 1024) {
        b = dr_malloc((size_t)d * sizeof(float));
        if (!b) return dr_error_code();
    }
    memset(b, 0, (size_t)d * sizeof(float));
    for (int j = 0; j < n; j++)
        for (int c = 0; c < d; c++) b[c] += m->p.text_emb[(size_t)ids[j] * d + c];
    if (n > 0)
        for (int c = 0; c < d; c++) b[c] /= (float)n;
    nn_linear_forward(out, b, m->p.pref_w, NULL, 1, d, d);
    if (b != bag) free(b);
    return DR_OK;
}

int trm_debug_user_vector_full(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, float *u) {
    return user_vectors(s, hist, n_hist, pref, 1, u);
}
