/* TRM activations: one plan lists every buffer once, in carving order (as llm.c's
 * activation table does). Walked without memory it counts the sizes, then it carves the
 * allocation, and in tests it checks the sentinels it left after each buffer; sizes and
 * carving cannot drift apart. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* Sentinel byte after each buffer of a guarded allocation: an overrun that writes a float, a
 * mask byte or an id changes it. */
#define SENTINEL 0xA5

enum { WALK_COUNT, WALK_CARVE, WALK_CHECK };

typedef struct walk {
    int mode;
    size_t guard;                /* sentinel elements after each buffer */
    float *f;                    /* arena bases (NULL while counting) */
    uint8_t *b;
    int32_t *i;
    size_t nf, nb, ni;           /* elements used so far */
    int layer;                   /* of the buffers being walked; -1 outside the blocks */
    const char *what;            /* WALK_CHECK: the first buffer whose sentinel changed */
    int what_layer;
} walk;

static int intact(const void *p, size_t bytes) {
    const uint8_t *q = p;
    for (size_t k = 0; k < bytes; k++)
        if (q[k] != SENTINEL) return 0;
    return 1;
}

/* The next n elements of one arena (base, *used, element size). A guarded allocation starts
 * all sentinel; carving gives each buffer the value an unguarded one starts with (init). */
static void *take(walk *w, void *base, size_t *used, size_t n, size_t size, int init, const char *name) {
    void *p = base ? (char *)base + *used * size : NULL;
    if (w->mode == WALK_CARVE && w->guard) memset(p, init, n * size);
    if (w->mode == WALK_CHECK && !w->what && !intact((char *)p + n * size, w->guard * size)) {
        w->what = name;
        w->what_layer = w->layer;
    }
    *used += n + w->guard;
    return p;
}
#define F(name, n) (a->name = take(w, w->f, &w->nf, (n), sizeof(float), 0, #name))
#define U8(name, n) (a->name = take(w, w->b, &w->nb, (n), 1, 1, #name))
#define I32(name, n) (a->name = take(w, w->i, &w->ni, (n), sizeof(int32_t), 0, #name))
#define FL(name, n) (A->name = take(w, w->f, &w->nf, (n), sizeof(float), 0, #name))
#define U8L(name, n) (A->name = take(w, w->b, &w->nb, (n), 1, 1, #name))

/* An inference workspace (a->infer) leaves out what only training reads: the dropout sites'
 * outputs and masks, and the backward's scratch. That is a third of the memory, and of the page
 * faults of touching it first, which on this machine cost more than a validation's forwards. */
static void plan(trm_acts *a, const trm_config *c, size_t B, walk *w) {
    const size_t L = (size_t)c->max_len, N = B * L, d = (size_t)c->dim, f = (size_t)c->ffn_dim,
                 att = B * (size_t)c->heads * L * L;
    const int tr = !a->infer;
    w->layer = -1;
    F(x0, N * d);
    if (c->emb_ln) { F(xe, N * d); F(lnem, N); F(lner, N); }
    if (tr) { F(res0, N * d); U8(emb_mask, N * d); }
    for (int l = 0; l < c->layers; l++) {
        trm_layer_a *A = &a->l[l];
        w->layer = l;
        FL(ln1o, N * d); FL(ln1m, N); FL(ln1r, N); /* LayerNorm 1: output, mean, 1 / std */
        FL(q, N * d); FL(k, N * d); FL(v, N * d);
        FL(att, att); FL(y, N * d); FL(s1, N * d);   /* attention weights, output, residual sum */
        FL(ln2o, N * d); FL(ln2m, N); FL(ln2r, N);
        FL(f, N * f);
        if (tr) FL(gd, N * f);
        FL(s2, N * d);
        if (c->gate) { FL(ga, N * d); FL(gf, N * d); }      /* the gates */
        if (c->gate && tr) { FL(ao, N * d); FL(fo, N * d); } /* the gated branches, for the backward */
        if (tr) { U8L(attn_out_mask, N * d); U8L(ffn_act_mask, N * f); U8L(ffn_out_mask, N * d); }
    }
    w->layer = -1;
    F(lnfo, N * d); F(lnfm, N); F(lnfr, N);
    F(pbag, N * d); F(z, N * d); F(u, N * d); F(lnum, N); F(lnur, N); /* the pref head's */
    F(d0, N * d); /* d0, d1, d2, df1: also the forward's scratch */
    F(d1, N * d); F(d2, N * d);
    if (tr) { F(dq, N * d); F(dk, N * d); F(dv, N * d); F(dU, N * d); }
    if (tr && c->gate) F(dg, N * d);
    F(df1, N * f);
    if (tr) { F(df2, N * f); F(datt, att); }
    U8(key_mask, N);
    I32(ids, N); I32(ids_bwd, N); I32(pos, N); I32(ptok_off, N + 1); I32(ptok, (size_t)a->ptok_cap);
}
#undef F
#undef U8
#undef I32
#undef FL
#undef U8L

void trm__acts_free(trm_acts *a) {
    free(a->fmem);
    free(a->bmem);
    free(a->imem);
    memset(a, 0, sizeof *a);
}

int trm__acts_alloc_guarded(trm_acts *a, const trm_model *m, int Bcap, size_t guard, int infer) {
    memset(a, 0, sizeof *a);
    a->infer = infer;
    const trm_config *c = &m->cfg;
    /* pseudo-preference bucket ids: up to 24 per row, and a little slack */
    a->ptok_cap = (int)((size_t)Bcap * (size_t)c->max_len * 24 + 64);
    walk w = {.mode = WALK_COUNT, .guard = guard, .layer = -1};
    plan(a, c, (size_t)Bcap, &w);
    a->fmem = dr_aligned_alloc(w.nf * sizeof(float));
    a->bmem = dr_aligned_alloc(w.nb);
    a->imem = dr_aligned_alloc(w.ni * sizeof(int32_t));
    if (!a->fmem || !a->bmem || !a->imem) {
        trm__acts_free(a);
        return dr_error(DR_ERR_NOMEM, "trm: cannot allocate activations for batch %d", Bcap);
    }
    memset(a->fmem, guard ? SENTINEL : 0, w.nf * sizeof(float));
    memset(a->bmem, guard ? SENTINEL : 1, w.nb);
    memset(a->imem, guard ? SENTINEL : 0, w.ni * sizeof(int32_t));
    a->guard = guard;
    a->Bcap = Bcap;
    a->Lcap = c->max_len;
    a->Ncap = Bcap * c->max_len;
    walk carve = {.mode = WALK_CARVE, .guard = guard, .f = a->fmem, .b = a->bmem, .i = a->imem};
    plan(a, c, (size_t)Bcap, &carve);
    return DR_OK;
}

int trm__acts_alloc(trm_acts *a, const trm_model *m, int Bcap) { return trm__acts_alloc_guarded(a, m, Bcap, 0, 0); }
int trm__acts_alloc_infer(trm_acts *a, const trm_model *m, int Bcap) {
    return trm__acts_alloc_guarded(a, m, Bcap, 0, 1);
}

int trm__acts_check(const trm_acts *a, const trm_model *m) {
    if (!a->guard) return DR_OK;
    trm_acts scratch = *a;
    walk w = {.mode = WALK_CHECK, .guard = a->guard, .f = a->fmem, .b = a->bmem, .i = a->imem};
    plan(&scratch, &m->cfg, (size_t)a->Bcap, &w);
    if (!w.what) return DR_OK;
    if (w.what_layer >= 0)
        return dr_error(DR_ERR_INTERNAL, "trm: activation l[%d].%s overran its buffer", w.what_layer, w.what);
    return dr_error(DR_ERR_INTERNAL, "trm: activation %s overran its buffer", w.what);
}

void trm__fill_batch(trm_model *m, trm_acts *a, int B, int L, int32_t *const *seqs, const int64_t *lens) {
    int maxL = m->cfg.max_len;
    if (L <= 0) {
        L = 1;
        for (int b = 0; b < B; b++)
            if (lens[b] > L) L = (int)(lens[b] < maxL ? lens[b] : maxL);
    }
    a->B = B;
    a->L = L;
    a->N = B * L;
    for (int b = 0; b < B; b++) {
        int64_t n = lens[b] < L ? lens[b] : L;
        const int32_t *s = seqs[b] + (lens[b] - n);
        int pad = L - (int)n;
        for (int t = 0; t < L; t++) {
            int32_t id = t < pad ? 0 : s[t - pad];
            if (id < 0 || id > m->cfg.n_items) id = 0;
            a->ids[b * L + t] = id;
            a->ids_bwd[b * L + t] = id > 0 ? id : -1;
            a->pos[b * L + t] = maxL - L + t;
            a->key_mask[b * L + t] = id > 0;
        }
    }
    for (int i = 0; i <= a->N; i++) a->ptok_off[i] = 0;
}
