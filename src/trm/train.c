/* Training: batches of train sequences (every position predicts its next item),
 * full-softmax / sampled-softmax / BCE losses, AdamW, early stopping on valid
 * NDCG@10, best checkpoint, resumable state, JSON-lines metrics.
 *
 * Determinism: every random draw comes from dr_rng_split(master, epoch) ->
 * (batch) -> (site/row), never from a shared advancing stream, so results do
 * not depend on scheduling and a resumed run equals an uninterrupted one. */
#include "internal.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include "deeprec/metrics.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREF_MAX_FEATS 24

void trm_train_opts_default(trm_train_opts *o) {
    /* the fields not named are 0: no decay, clipping, smoothing or warmup; no resume */
    *o = (trm_train_opts){.loss = TRM_LOSS_CE, .n_neg = 100,
                          .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .wd_params = TRM_WD_ALL,
                          .lr_schedule = TRM_LR_CONST, .batch = 256, .epochs = 200, .patience = 10, .eval_every = 1,
                          .valid_users = TRM_VALID_USERS_AUTO, .seed = 1, .pref_empty_p = 0.3f};
}

/* Per-trainer state. */
typedef struct trainer {
    trm_model *m;
    const dr_dataset *d;
    const trm_train_opts *o;
    trm_acts a;
    float *grad, *am, *av; /* n_params each */
    trm_params g;
    float *dF, *dbag;      /* pref: [V, d] */
    float *ce_work;        /* nn_linear_cross_entropy's tiles */
    int32_t *xo, *xi;      /* mask_history: per valid row, the items left out of its softmax */
    float *Uv, *dUv;       /* [Ncap, d] gathered valid rows */
    int32_t *tg;           /* [Ncap] targets per row */
    int32_t *vrow, *vtg;   /* valid rows and their targets */
    int32_t *neg;          /* [Ncap * K] */
    float *logq;           /* [Ncap * K]: the negatives' logQ corrections (--logq), else NULL */
    int32_t *bcount;       /* [V] mixed negatives with logq: the batch's targets counted per item */
    float *work;
    float *bce_logits, *bce_dl, *bce_lab;
    int64_t step;
    int64_t total_steps;   /* the steps of the whole budget of epochs (the lr schedule's horizon) */
    char *pbuf;
    /* Data-parallel shard of the global batch (dist.h): this rank computes rows of users
     * [lo, hi) laid out as in the whole batch (length Lb), keys its random draws by global
     * user (seq_off = lo: dropout) / row / valid-row index, and scales its loss by the whole
     * batch's count of targets. shard < 0: the whole batch (single process). */
    int shard, Lb, seq_off, row_off, valid_off, n_norm;
    int32_t *vusers;       /* the validation sample (trm__valid_users), NULL = every user */
    int n_vusers;
    trm_acts eval_a;       /* the validation's workspace, kept across epochs (allocated at the first) */
    float *ema;            /* o->ema > 0: the weights' moving average (the raw weights while swapped in) */
} trainer;

static void trainer_free(trainer *t) {
    trm__acts_free(&t->a);
    free(t->vusers);
    trm__acts_free(&t->eval_a);
    free(t->grad);
    free(t->am);
    free(t->av);
    free(t->dF);
    free(t->dbag);
    free(t->ce_work);
    free(t->xo);
    free(t->xi);
    free(t->Uv);
    free(t->dUv);
    free(t->tg);
    free(t->vrow);
    free(t->vtg);
    free(t->neg);
    free(t->logq);
    free(t->bcount);
    free(t->work);
    free(t->bce_logits);
    free(t->bce_dl);
    free(t->bce_lab);
    free(t->pbuf);
    free(t->ema);
}

static int trainer_init(trainer *t, trm_model *m, const dr_dataset *d, const trm_train_opts *o) {
    memset(t, 0, sizeof *t);
    t->m = m;
    t->d = d;
    t->o = o;
    t->shard = -1;
    int rc = trm__acts_alloc(&t->a, m, o->batch);
    if (rc) return rc;
    size_t np = m->n_params, N = (size_t)t->a.Ncap, dd = (size_t)m->cfg.dim, V = (size_t)m->V;
    int K = o->n_neg > 0 ? o->n_neg : 1;
    t->grad = dr_aligned_alloc(np * sizeof(float));
    t->am = dr_aligned_alloc(np * sizeof(float));
    t->av = dr_aligned_alloc(np * sizeof(float));
    t->Uv = dr_aligned_alloc(N * dd * sizeof(float));
    t->dUv = dr_aligned_alloc(N * dd * sizeof(float));
    t->tg = dr_calloc(N, sizeof(int32_t));
    t->vrow = dr_calloc(N, sizeof(int32_t));
    t->vtg = dr_calloc(N, sizeof(int32_t));
    t->pbuf = dr_malloc(1024);
    if (!t->grad || !t->am || !t->av || !t->Uv || !t->dUv || !t->tg || !t->vrow || !t->vtg || !t->pbuf)
        return dr_error(DR_ERR_NOMEM, "trm: out of memory for the trainer");
    memset(t->grad, 0, np * sizeof(float));
    memset(t->am, 0, np * sizeof(float));
    memset(t->av, 0, np * sizeof(float));
    if (o->ema > 0) {
        t->ema = dr_aligned_alloc(np * sizeof(float));
        if (!t->ema) return dr_error(DR_ERR_NOMEM, "trm: out of memory for the weight average");
        memcpy(t->ema, m->mem, np * sizeof(float));
    }
    trm__bind(m, t->grad, &t->g);
    if (m->cfg.model == TRM_PREF) {
        t->dF = dr_aligned_alloc(V * dd * sizeof(float));
        t->dbag = dr_aligned_alloc(V * dd * sizeof(float));
        if (!t->dF || !t->dbag) return dr_error(DR_ERR_NOMEM, "trm: out of memory for the trainer");
    }
    if (o->loss == TRM_LOSS_CE) {
        t->ce_work = dr_aligned_alloc(nn_linear_ce_work((int)N, (int)V, (int)dd, 1) * sizeof(float));
        if (!t->ce_work) return dr_error(DR_ERR_NOMEM, "trm: out of memory for the loss tiles");
        if (o->mask_history) { /* row tt of a sequence has at most tt + 1 inputs before it */
            t->xo = dr_malloc((N + 1) * sizeof(int32_t));
            t->xi = dr_malloc((N * ((size_t)m->cfg.max_len + 1) / 2 + 1) * sizeof(int32_t));
            if (!t->xo || !t->xi) return dr_error(DR_ERR_NOMEM, "trm: out of memory for the history masks");
        }
    } else if (o->loss == TRM_LOSS_SAMPLED) {
        t->neg = dr_malloc(N * (size_t)K * sizeof(int32_t));
        t->work = dr_malloc(N * ((size_t)K + 1) * sizeof(float));
        if (!t->neg || !t->work) return dr_error(DR_ERR_NOMEM, "trm: out of memory for negatives");
        if (o->logq) {
            /* uniform draws: every negative has q = 1 / n_items, one correction for all (mixed
             * negatives: set per step) */
            t->logq = dr_malloc(N * (size_t)K * sizeof(float));
            if (!t->logq) return dr_error(DR_ERR_NOMEM, "trm: out of memory for negatives");
            const float c = logf((float)K / (float)m->cfg.n_items);
            for (size_t i = 0; i < N * (size_t)K; i++) t->logq[i] = c;
            if (o->mixed_neg > 0 && !(t->bcount = dr_calloc(V, sizeof(int32_t))))
                return dr_error(DR_ERR_NOMEM, "trm: out of memory for negatives");
        }
    } else {
        t->neg = dr_malloc(N * sizeof(int32_t));
        t->bce_logits = dr_malloc(2 * N * sizeof(float));
        t->bce_dl = dr_malloc(2 * N * sizeof(float));
        t->bce_lab = dr_malloc(2 * N * sizeof(float));
        if (!t->neg || !t->bce_logits || !t->bce_dl || !t->bce_lab)
            return dr_error(DR_ERR_NOMEM, "trm: out of memory for negatives");
    }
    return DR_OK;
}

/* The logQ corrections of mixed negatives: log(K q) with q the mixture's probability of the
 * item in this batch, (1 - mix) / n_items + mix * (its count among the n targets) / n. */
static void mixed_logq(trainer *t, int n, int K, int ni) {
    const double mix = t->o->mixed_neg;
    for (int i = 0; i < n; i++) t->bcount[t->vtg[i]]++;
    for (size_t j = 0; j < (size_t)n * K; j++) {
        double q = (1.0 - mix) / ni + mix * t->bcount[t->neg[j]] / n;
        t->logq[j] = (float)log(K * q);
    }
    for (int i = 0; i < n; i++) t->bcount[t->vtg[i]] = 0;
}

/* Loss over the valid rows (gathered Uv [n, d], targets vtg); writes dUv and
 * the scoring-table gradient into dF. Returns the mean loss. */
static int compute_loss(trainer *t, int n, float *dF, const dr_rng *step_rng, double *loss_out) {
    trm_model *m = t->m;
    const int d = m->cfg.dim, V = m->V, ni = m->cfg.n_items;
    const float *F = m->score_table;
    memset(t->dUv, 0, (size_t)n * d * sizeof(float));
    double loss = 0;
    int rc = DR_OK;
    /* the mean is over the whole batch's targets (nn), of which this shard holds n */
    const int nn = t->n_norm > 0 ? t->n_norm : n;
    const float share = (float)n / (float)nn; /* exactly 1 for a whole batch */
    if (t->o->loss == TRM_LOSS_CE) {
        /* candidates are items 1..n_items: the padding row 0 never is */
        float l = 0;
        if (t->o->mask_history) { /* a valid row's history: the nonzero inputs of its sequence up to it */
            const int Lb = t->a.L;
            int e = 0;
            t->xo[0] = 0;
            for (int i = 0; i < n; i++) {
                const int row = t->vrow[i];
                for (int r = row - row % Lb; r <= row; r++)
                    if (t->a.ids[r] > 0) t->xi[e++] = t->a.ids[r];
                t->xo[i + 1] = e;
            }
        }
        rc = nn_linear_cross_entropy_excl(&l, t->dUv, dF, t->Uv, F, t->vtg, n, V, d, 1, t->o->label_smoothing,
                                          t->o->mask_history ? t->xo : NULL, t->xi, share, t->ce_work);
        if (rc) return rc;
        loss = (double)l * n / nn;
    } else if (t->o->loss == TRM_LOSS_SAMPLED) {
        int K = t->o->n_neg;
        const float mix = t->o->mixed_neg;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            dr_rng r = dr_rng_split(step_rng, 1000000 + (uint64_t)(t->valid_off + i));
            for (int k = 0; k < K; k++) /* mix 0 draws no coin: the uniform stream is unchanged */
                t->neg[(size_t)i * K + k] = mix > 0 && dr_rng_double(&r) < mix
                                                ? t->vtg[dr_rng_below(&r, (uint64_t)n)]
                                                : 1 + (int32_t)dr_rng_below(&r, (uint64_t)ni);
        }
        if (mix > 0 && t->logq) mixed_logq(t, n, K, ni);
        float l = 0;
        rc = nn_sampled_softmax_ce_logq(&l, t->dUv, dF, t->Uv, F, t->vtg, t->neg, t->logq, NULL, n, K, d, V, -1, share,
                                        t->work);
        if (rc) return rc;
        loss = (double)l * n / nn;
    } else {
        for (int i = 0; i < n; i++) {
            dr_rng r = dr_rng_split(step_rng, 1000000 + (uint64_t)(t->valid_off + i));
            int32_t ng = t->vtg[i];
            if (ni > 1)
                while (ng == t->vtg[i]) ng = 1 + (int32_t)dr_rng_below(&r, (uint64_t)ni);
            t->neg[i] = ng;
        }
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            const float *u = t->Uv + (size_t)i * d, *fp = F + (size_t)t->vtg[i] * d, *fn = F + (size_t)t->neg[i] * d;
            float sp = 0, sn = 0;
            for (int c = 0; c < d; c++) {
                sp += u[c] * fp[c];
                sn += u[c] * fn[c];
            }
            t->bce_logits[2 * i] = sp;
            t->bce_logits[2 * i + 1] = sn;
            t->bce_lab[2 * i] = 1.0f;
            t->bce_lab[2 * i + 1] = 0.0f;
        }
        memset(t->bce_dl, 0, (size_t)2 * n * sizeof(float));
        float l = 0;
        /* SASRec's loss: per position -log s(pos) - log(1 - s(neg)), mean over positions (= 2x the mean over values) */
        nn_bce_with_logits(&l, t->bce_dl, t->bce_logits, t->bce_lab, NULL, (size_t)2 * n, 2.0f * share);
        loss = 2.0 * l * n / nn;
        for (int i = 0; i < n; i++) {
            float gp = t->bce_dl[2 * i], gn = t->bce_dl[2 * i + 1];
            const float *u = t->Uv + (size_t)i * d, *fp = F + (size_t)t->vtg[i] * d, *fn = F + (size_t)t->neg[i] * d;
            float *du = t->dUv + (size_t)i * d, *dfp = dF + (size_t)t->vtg[i] * d, *dfn = dF + (size_t)t->neg[i] * d;
            for (int c = 0; c < d; c++) {
                du[c] += gp * fp[c] + gn * fn[c];
                dfp[c] += gp * u[c];
                dfn[c] += gn * u[c];
            }
        }
    }
    *loss_out = loss;
    return DR_OK;
}

/* The train sequence of user u: inputs = train[-(L+1):-1], targets shifted by one. with_valid
 * (the refit): the validation item is the last target, so the sequence is all but the test item. */
static int64_t user_train(const dr_dataset *d, int32_t u, int L, int with_valid, const int32_t **in) {
    const int32_t *s;
    int64_t n = dr_data_train(d, u, &s);
    if (with_valid && dr_data_has_split(d, u)) n++;
    if (n < 2) return 0;
    int64_t k = n - 1 < L ? n - 1 : L; /* number of input positions */
    *in = s + (n - 1 - k);
    return k;
}

/* Forward + loss + backward for one batch of users; grads accumulated into t->grad (zeroed here). */
static int batch_loss(trainer *t, const int32_t *users, int B, const dr_rng *step_rng, int train, double *loss_out,
                      int *n_valid_out) {
    trm_model *m = t->m;
    trm_acts *a = &t->a;
    const int d = m->cfg.dim, L = m->cfg.max_len;
    int32_t *seqs[1024] = {0};
    int64_t lens[1024] = {0};
    int32_t **sp = seqs;
    int64_t *lp = lens;
    if (B > 1024) {
        sp = dr_malloc((size_t)B * sizeof(*sp));
        lp = dr_malloc((size_t)B * sizeof(*lp));
        if (!sp || !lp) {
            free(sp == seqs ? NULL : sp);
            return dr_error_code();
        }
    }
    for (int b = 0; b < B; b++) {
        const int32_t *in = NULL;
        lp[b] = user_train(t->d, users[b], L, t->o->fit_valid, &in);
        sp[b] = (int32_t *)in;
    }
    trm__fill_batch(m, a, B, t->shard >= 0 ? t->Lb : 0, sp, lp);
    a->train = train;
    a->rng = dr_rng_split(step_rng, 1);
    a->seq0 = t->seq_off; /* dropout masks are keyed by the sequence's index in the whole batch */
    const int Lb = a->L;
    /* targets */
    int n = 0;
    for (int b = 0; b < B; b++) {
        int pad = Lb - (int)lp[b];
        for (int tt = 0; tt < Lb; tt++) {
            int row = b * Lb + tt;
            int32_t tg = tt < pad ? 0 : sp[b][tt - pad + 1];
            t->tg[row] = tg;
            if (tg > 0 && tg <= m->cfg.n_items) {
                t->vrow[n] = row;
                t->vtg[n] = tg;
                n++;
            }
        }
    }
    if (sp != seqs) {
        free(sp);
        free(lp);
    }
    /* pseudo-preferences: one per position, derived from that position's target */
    if (m->cfg.model == TRM_PREF) {
        int off = 0;
        a->ptok_off[0] = 0;
        for (int row = 0; row < a->N; row++) {
            int k = 0;
            if (t->tg[row] > 0) {
                dr_rng r = dr_rng_split(step_rng, 2000000 + (uint64_t)(t->row_off + row));
                trm__pseudo_pref(t->d, t->tg[row], &r, t->o->pref_empty_p, t->pbuf, 1024);
                if (t->pbuf[0] && off + PREF_MAX_FEATS <= a->ptok_cap)
                    k = trm__pref_tokens(m, t->pbuf, a->ptok + off, PREF_MAX_FEATS);
            }
            off += k;
            a->ptok_off[row + 1] = off;
        }
    }
    const float *U = trm__forward(m, a);
    for (int i = 0; i < n; i++) memcpy(t->Uv + (size_t)i * d, U + (size_t)t->vrow[i] * d, (size_t)d * sizeof(float));
    memset(t->grad, 0, m->n_params * sizeof(float));
    float *dF;
    if (m->cfg.model == TRM_PREF) {
        dF = t->dF;
        memset(dF, 0, (size_t)m->V * d * sizeof(float));
    } else {
        dF = m->cfg.sep_out ? t->g.out_emb : t->g.item_emb;
    }
    double loss = 0;
    int rc = n > 0 ? compute_loss(t, n, dF, step_rng, &loss) : DR_OK;
    if (rc) return rc;
    memset(a->dU, 0, (size_t)a->N * d * sizeof(float));
    for (int i = 0; i < n; i++) memcpy(a->dU + (size_t)t->vrow[i] * d, t->dUv + (size_t)i * d, (size_t)d * sizeof(float));
    trm__backward(m, a, &t->g, dF, t->dbag);
    /* padding rows of the item tables never move */
    memset(t->g.item_emb, 0, (size_t)d * sizeof(float));
    if (t->g.out_emb) memset(t->g.out_emb, 0, (size_t)d * sizeof(float));
    *loss_out = loss;
    if (n_valid_out) *n_valid_out = n;
    return DR_OK;
}

static void adam_step(trainer *t) {
    const trm_train_opts *o = t->o;
    if (o->grad_clip > 0) {
        nn_buf b = {t->grad, t->m->n_params};
        float nrm = nn_clip_grad_norm(&b, 1, o->grad_clip);
        if (!isfinite(nrm)) return;
    }
    t->step++;
    const float lr = trm_lr_at(o, t->step, t->total_steps);
    if (o->wd_params == TRM_WD_ALL || o->weight_decay == 0.0f) {
        nn_adamw_step(t->m->mem, t->grad, t->am, t->av, t->m->n_params, t->step, lr, o->beta1, o->beta2, o->eps,
                      o->weight_decay);
    } else {
        /* tensor by tensor, each with its decay (the alignment gaps between tensors hold zeros
         * with zero gradients: skipping them changes nothing) */
        for (int i = 0; i < t->m->n_t; i++) {
            const trm_tensor *tt = &t->m->t[i];
            nn_adamw_step(t->m->mem + tt->off, t->grad + tt->off, t->am + tt->off, t->av + tt->off, tt->n, t->step, lr,
                          o->beta1, o->beta2, o->eps, trm__decays(tt, o->wd_params) ? o->weight_decay : 0.0f);
        }
    }
    if (t->ema) {
        const float a = 1.0f - o->ema, *w = t->m->mem;
        float *avg = t->ema;
        const size_t np = t->m->n_params;
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < np; i++) avg[i] += a * (w[i] - avg[i]);
    }
    trm__refresh_tables(t->m);
}

/* With a weight average: exchange it with the model's weights, so validation and the
 * checkpoint see the average; the second call puts the raw weights back (no step runs between). */
static void swap_average(trainer *t) {
    if (!t->ema) return;
    float *w = t->m->mem, *avg = t->ema;
    const size_t np = t->m->n_params;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < np; i++) {
        float x = w[i];
        w[i] = avg[i];
        avg[i] = x;
    }
    trm__refresh_tables(t->m);
}

int trm__decays(const trm_tensor *t, int wd_params) {
    switch (wd_params) {
    case TRM_WD_MATRICES: return t->nd == 2;
    case TRM_WD_LINEAR: return t->nd == 2 && !strstr(t->name, "_emb.");
    default: return 1;
    }
}

/* Targets of one user's train window that count in the loss (as batch_loss counts). */
static int user_targets(const trainer *t, int32_t u) {
    const int32_t *in;
    int64_t k = user_train(t->d, u, t->m->cfg.max_len, t->o->fit_valid, &in);
    int n = 0;
    for (int64_t i = 1; i <= k; i++) n += in[i] > 0 && in[i] <= t->m->cfg.n_items;
    return n;
}

/* Loss and gradient of one global batch. Single process: the batch itself. Under MPI each
 * rank takes its share of the users (dr_dist_share), the gradients are summed over ranks,
 * and every rank ends with the whole batch's gradient, mean loss and target count. */
static int batch_grad(trainer *t, const int32_t *users, int B, const dr_rng *srng, double *loss, int *nv) {
    const int size = dr_dist_size();
    if (size == 1) return batch_loss(t, users, B, srng, 1, loss, nv);
    int64_t lo, hi;
    dr_dist_share(B, &lo, &hi);
    const int maxL = t->m->cfg.max_len;
    int Lb = 1, before = 0, total = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *in;
        int64_t k = user_train(t->d, users[b], maxL, t->o->fit_valid, &in);
        if (k > Lb) Lb = (int)(k < maxL ? k : maxL);
        int c = user_targets(t, users[b]);
        if (b < lo) before += c;
        total += c;
    }
    t->shard = dr_dist_rank();
    t->Lb = Lb;
    t->seq_off = (int)lo;
    t->row_off = (int)lo * Lb;
    t->valid_off = before;
    t->n_norm = total;
    double l = 0;
    int n = 0, rc = DR_OK;
    if (hi > lo) {
        rc = batch_loss(t, users + lo, (int)(hi - lo), srng, 1, &l, &n);
    } else {
        memset(t->grad, 0, t->m->n_params * sizeof(float));
    }
    t->shard = -1;
    t->n_norm = t->seq_off = t->row_off = t->valid_off = 0;
    if (rc) return rc;
    if ((rc = dr_dist_sum_f32(t->grad, t->m->n_params))) return rc;
    if ((rc = dr_dist_sum_f64(&l, 1))) return rc;
    *loss = l;
    *nv = total;
    return DR_OK;
}

/* ---------- exposed for tests: loss and gradient of one batch ---------- */
static int debug_loss_grad(trm_model *m, const dr_dataset *d, const trm_train_opts *o, const int32_t *users, int B,
                           uint64_t seed, int train, double *loss, float *grad) {
    trm_train_opts oo = *o;
    oo.batch = B;
    trainer t;
    int rc = trainer_init(&t, m, d, &oo);
    if (!rc) {
        dr_rng r;
        dr_rng_seed(&r, seed);
        trm__refresh_tables(m);
        rc = batch_loss(&t, users, B, &r, train, loss, NULL);
        if (!rc && grad) memcpy(grad, t.grad, m->n_params * sizeof(float));
    }
    trainer_free(&t);
    return rc;
}
int trm_debug_loss_grad(trm_model *m, const dr_dataset *d, const trm_train_opts *o, const int32_t *users, int B,
                        uint64_t seed, double *loss, float *grad) {
    return debug_loss_grad(m, d, o, users, B, seed, 0, loss, grad);
}
int trm_debug_loss_grad_train(trm_model *m, const dr_dataset *d, const trm_train_opts *o, const int32_t *users, int B,
                              uint64_t seed, double *loss, float *grad) {
    return debug_loss_grad(m, d, o, users, B, seed, 1, loss, grad);
}
float *trm_debug_params(trm_model *m, size_t *n) {
    *n = m->n_params;
    return m->mem;
}
void trm_debug_refresh(trm_model *m) { trm__refresh_tables(m); }

/* ---------- batches ---------- */
typedef struct { int64_t len; int32_t u; } ulen;
static int cmp_ulen(const void *a, const void *b) {
    const ulen *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->u < y->u ? -1 : x->u > y->u;
}

/* Users shuffled, then within chunks of 32 batches sorted by length (less
 * padding), cut into batches, batch order shuffled. */
static int make_batches(const dr_dataset *d, const int32_t *users, int nu, int B, int L, int with_valid,
                        const dr_rng *erng, int32_t *order, int32_t *batch_start, int *n_batches) {
    dr_rng r = dr_rng_split(erng, 7);
    memcpy(order, users, (size_t)nu * sizeof(int32_t));
    dr_rng_shuffle_i32(&r, order, (size_t)nu);
    int chunk = B * 32;
    ulen *tmp = dr_malloc((size_t)(chunk < nu ? chunk : nu) * sizeof(ulen) + sizeof(ulen));
    if (!tmp) return dr_error_code();
    for (int s = 0; s < nu; s += chunk) {
        int e = s + chunk < nu ? s + chunk : nu;
        for (int i = s; i < e; i++) {
            const int32_t *in;
            tmp[i - s].u = order[i];
            tmp[i - s].len = user_train(d, order[i], L, with_valid, &in);
        }
        qsort(tmp, (size_t)(e - s), sizeof *tmp, cmp_ulen);
        for (int i = s; i < e; i++) order[i] = tmp[i - s].u;
    }
    free(tmp);
    int nb = 0;
    for (int s = 0; s < nu; s += B) batch_start[nb++] = s;
    dr_rng_shuffle_i32(&r, batch_start, (size_t)nb);
    *n_batches = nb;
    return DR_OK;
}

/* ---------- resume state ---------- */
typedef struct train_state {
    int epoch;        /* next epoch to run */
    int best_epoch, bad;
    double best;
    int done;
} train_state;

static int save_state(trainer *t, const char *path, const train_state *st) {
    gguf_writer *w = trm__writer(t->m);
    if (!w) return dr_error_code();
    int rc = 0;
    rc |= gguf_set_str(w, "deeprec.resume.kind", "trm-train");
    rc |= gguf_set_u64(w, "deeprec.resume.seed", t->o->seed);
    rc |= gguf_set_i64(w, "deeprec.resume.step", t->step);
    rc |= gguf_set_i32(w, "deeprec.resume.epoch", st->epoch);
    rc |= gguf_set_i32(w, "deeprec.resume.best_epoch", st->best_epoch);
    rc |= gguf_set_i32(w, "deeprec.resume.bad", st->bad);
    rc |= gguf_set_f64(w, "deeprec.resume.best", st->best);
    rc |= gguf_set_bool(w, "deeprec.resume.done", st->done);
    rc |= gguf_set_u32(w, "deeprec.resume.loss", (uint32_t)t->o->loss);
    /* only with a sample: a state validated on every user stays as it was before samples existed */
    if (t->vusers) rc |= gguf_set_i32(w, "deeprec.resume.valid_users", t->n_vusers);
    /* the recipe options only when set: a state at the defaults is the one of before they existed */
    if (t->o->label_smoothing > 0) rc |= gguf_set_f32(w, "deeprec.resume.label_smoothing", t->o->label_smoothing);
    if (t->o->lr_schedule != TRM_LR_CONST) rc |= gguf_set_i32(w, "deeprec.resume.lr_schedule", t->o->lr_schedule);
    if (t->o->warmup > 0) rc |= gguf_set_i32(w, "deeprec.resume.warmup", t->o->warmup);
    if (t->o->logq) rc |= gguf_set_bool(w, "deeprec.resume.logq", 1);
    if (t->o->wd_params != TRM_WD_ALL) rc |= gguf_set_i32(w, "deeprec.resume.wd_params", t->o->wd_params);
    if (t->o->mask_history) rc |= gguf_set_bool(w, "deeprec.resume.mask_history", 1);
    if (t->ema) rc |= gguf_set_f32(w, "deeprec.resume.ema", t->o->ema);
    char nm[96];
    for (int i = 0; i < t->m->n_t && !rc; i++) {
        const trm_tensor *tt = &t->m->t[i];
        snprintf(nm, sizeof nm, "adam.m.%s", tt->name);
        rc |= gguf_add_tensor_borrowed(w, nm, GGML_TYPE_F32, (uint32_t)tt->nd, tt->ne, t->am + tt->off);
        snprintf(nm, sizeof nm, "adam.v.%s", tt->name);
        rc |= gguf_add_tensor_borrowed(w, nm, GGML_TYPE_F32, (uint32_t)tt->nd, tt->ne, t->av + tt->off);
        if (t->ema) {
            snprintf(nm, sizeof nm, "ema.%s", tt->name);
            rc |= gguf_add_tensor_borrowed(w, nm, GGML_TYPE_F32, (uint32_t)tt->nd, tt->ne, t->ema + tt->off);
        }
    }
    if (!rc) rc = gguf_write(w, path);
    else rc = dr_error(DR_ERR_INTERNAL, "trm: cannot build the resume state");
    gguf_writer_free(w);
    return rc;
}

static int load_state(trainer *t, const char *path, train_state *st) {
    gguf_file f;
    int rc = gguf_open(&f, path);
    if (rc) return rc;
    trm_model *tmp = NULL;
    int64_t step = 0, seed = 0;
    int32_t i32 = 0;
    uint32_t loss = 0;
    if ((rc = trm__load_file(&tmp, &f))) goto out;
    if (tmp->n_params != t->m->n_params || memcmp(&tmp->cfg, &t->m->cfg, sizeof tmp->cfg) != 0) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state was made with other model settings", path);
        dr_error_hint("delete it or rerun with the same options");
        goto out;
    }
    if ((rc = gguf_get_i64(&f, "deeprec.resume.seed", &seed))) goto out;
    if ((rc = gguf_get_u32(&f, "deeprec.resume.loss", &loss))) goto out;
    if ((uint64_t)seed != t->o->seed || (int)loss != t->o->loss) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state was made with another seed or loss", path);
        goto out;
    }
    /* the best so far is comparable only on the same validation users */
    int64_t vu = 0;
    if (gguf_find_kv(&f, "deeprec.resume.valid_users") && (rc = gguf_get_i64(&f, "deeprec.resume.valid_users", &vu)))
        goto out;
    if (vu != (t->vusers ? t->n_vusers : 0)) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state validated on %s, this run on %s", path,
                      vu ? "a sample of users" : "all users", t->vusers ? "a sample of users" : "all users");
        dr_error_hint("rerun with the same --valid-users (the state's: %lld, 0 = all)", (long long)vu);
        goto out;
    }
    /* a schedule or a loss changed half way would make a run no uninterrupted one can be */
    float ls = 0;
    int64_t sch = TRM_LR_CONST, wu = 0;
    if ((gguf_find_kv(&f, "deeprec.resume.label_smoothing") &&
         (rc = gguf_get_f32(&f, "deeprec.resume.label_smoothing", &ls))) ||
        (gguf_find_kv(&f, "deeprec.resume.lr_schedule") && (rc = gguf_get_i64(&f, "deeprec.resume.lr_schedule", &sch))) ||
        (gguf_find_kv(&f, "deeprec.resume.warmup") && (rc = gguf_get_i64(&f, "deeprec.resume.warmup", &wu))))
        goto out;
    int lq = 0;
    if (gguf_find_kv(&f, "deeprec.resume.logq") && (rc = gguf_get_bool(&f, "deeprec.resume.logq", &lq))) goto out;
    if (ls != t->o->label_smoothing || sch != t->o->lr_schedule || wu != t->o->warmup || lq != (t->o->logq != 0)) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state was made with another label smoothing, learning-rate schedule or logQ setting",
                      path);
        dr_error_hint("rerun with the state's --label-smoothing %g --lr-schedule %s --warmup %lld%s", (double)ls,
                      sch == TRM_LR_COSINE ? "cosine" : "const", (long long)wu, lq ? " --logq" : "");
        goto out;
    }
    int64_t wdp = TRM_WD_ALL;
    if (gguf_find_kv(&f, "deeprec.resume.wd_params") && (rc = gguf_get_i64(&f, "deeprec.resume.wd_params", &wdp)))
        goto out;
    if (wdp != t->o->wd_params) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state was made with weight decay on other tensors", path);
        dr_error_hint("rerun with the state's --wd-params %s",
                      wdp == TRM_WD_MATRICES ? "matrices" : wdp == TRM_WD_LINEAR ? "linear" : "all");
        goto out;
    }
    int mh = 0;
    if (gguf_find_kv(&f, "deeprec.resume.mask_history") && (rc = gguf_get_bool(&f, "deeprec.resume.mask_history", &mh)))
        goto out;
    if (mh != (t->o->mask_history != 0)) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state was made %s the history masked in the loss", path,
                      mh ? "with" : "without");
        dr_error_hint("rerun %s --mask-history", mh ? "with" : "without");
        goto out;
    }
    float ema = 0;
    if (gguf_find_kv(&f, "deeprec.resume.ema") && (rc = gguf_get_f32(&f, "deeprec.resume.ema", &ema))) goto out;
    if (ema != t->o->ema) {
        rc = dr_error(DR_ERR_ARG, "%s: resume state was made with another weight average (--ema %g)", path, (double)ema);
        dr_error_hint("rerun with the state's --ema %g", (double)ema);
        goto out;
    }
    if ((rc = gguf_get_i64(&f, "deeprec.resume.step", &step))) goto out;
    t->step = step;
    int64_t v;
    if ((rc = gguf_get_i64(&f, "deeprec.resume.epoch", &v))) goto out;
    st->epoch = (int)v;
    if ((rc = gguf_get_i64(&f, "deeprec.resume.best_epoch", &v))) goto out;
    st->best_epoch = (int)v;
    if ((rc = gguf_get_i64(&f, "deeprec.resume.bad", &v))) goto out;
    st->bad = (int)v;
    if ((rc = gguf_get_f64(&f, "deeprec.resume.best", &st->best))) goto out;
    if ((rc = gguf_get_bool(&f, "deeprec.resume.done", &st->done))) goto out;
    if ((rc = trm__read_tensors(t->m, &f, "", t->m->mem))) goto out;
    if ((rc = trm__read_tensors(t->m, &f, "adam.m.", t->am))) goto out;
    if ((rc = trm__read_tensors(t->m, &f, "adam.v.", t->av))) goto out;
    if (t->ema && (rc = trm__read_tensors(t->m, &f, "ema.", t->ema))) goto out;
    trm__refresh_tables(t->m);
    (void)i32;
out:
    trm_model_free(tmp);
    gguf_close(&f);
    return rc;
}


/* Training that produced a NaN/Inf stops here: nothing more is saved, so the best
 * checkpoint and the resume state of the last good epoch stay as they are. */
static int diverged(const train_state *st, const trm_train_opts *o, int ep, int bi, const char *what) {
    dr_error(DR_ERR_RANGE, "trm train diverged at epoch %d, batch %d: %s", ep + 1, bi + 1, what);
    if (st->best_epoch > 0)
        dr_error_hint("%s keeps the best model (epoch %d); lower --lr (%g) or set --clip", o->out, st->best_epoch, o->lr);
    else
        dr_error_hint("nothing was saved; lower --lr (%g) or set --clip", o->lr);
    return DR_ERR_RANGE;
}

static int train_ensemble(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res);
static int train_one(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res);
static int train_refit(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res);

int trm_train(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res) {
    memset(res, 0, sizeof *res);
    if (!o->out) return dr_error(DR_ERR_ARG, "trm_train: no output path");
    if (m->n_members) return train_ensemble(m, d, o, res);
    if (o->refit && o->fit_valid) return dr_error(DR_ERR_ARG, "trm_train: refit and fit_valid together");
    return o->refit ? train_refit(m, d, o, res) : train_one(m, d, o, res);
}

/* The refit: the early-stopped run into OUT.early.gguf (its resume state and metrics at OUT's
 * usual paths), then from the same initial weights the best epoch count on all but the test
 * items into OUT (OUT.refit.resume.gguf, OUT.refit.metrics.jsonl). A resumed run finishes
 * whichever of the two had not finished. */
static int train_refit(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res) {
    double t0 = dr_now();
    size_t bytes = m->n_params * sizeof(float);
    float *init = dr_malloc(bytes ? bytes : 1);
    char *early = dr_str_concat(o->out, ".early.gguf"), *rpath = dr_str_concat(o->out, ".resume.gguf"),
         *mpath = dr_str_concat(o->out, ".metrics.jsonl"), *rpath2 = dr_str_concat(o->out, ".refit.resume.gguf"),
         *mpath2 = dr_str_concat(o->out, ".refit.metrics.jsonl");
    int rc = DR_OK;
    if (!init || !early || !rpath || !mpath || !rpath2 || !mpath2) {
        rc = dr_error_code();
        goto out;
    }
    memcpy(init, m->mem, bytes);
    trm_train_opts o1 = *o;
    o1.refit = 0;
    o1.out = early;
    o1.resume_path = o->resume_path ? o->resume_path : rpath;
    o1.metrics = o->metrics ? o->metrics : mpath;
    if ((rc = train_one(m, d, &o1, res))) goto out;
    if (res->best_epoch < 1) {
        rc = dr_error(DR_ERR_ARG, "trm train --refit: the early-stopped run was never validated (no epoch to refit for)");
        goto out;
    }
    memcpy(m->mem, init, bytes);
    trm__refresh_tables(m);
    trm_train_opts o2 = *o;
    o2.refit = 0;
    o2.fit_valid = 1;
    o2.epochs = res->best_epoch;
    o2.patience = 0;
    o2.resume_path = rpath2;
    o2.metrics = o->metrics && !*o->metrics ? "" : mpath2;
    if (o->progress && dr_dist_rank() == 0)
        fprintf(o->progress, "trm train: refit for %d epochs on all but the test items -> %s\n", o2.epochs, o->out);
    trm_train_result r2;
    if ((rc = train_one(m, d, &o2, &r2))) goto out;
    res->epochs_run += r2.epochs_run;
    res->refit_epochs = o2.epochs;
out:
    res->seconds = dr_now() - t0;
    free(init);
    free(early);
    free(rpath);
    free(mpath);
    free(rpath2);
    free(mpath2);
    return rc;
}

static int train_one(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res) {
    memset(res, 0, sizeof *res);
    if (d->n_items != m->cfg.n_items)
        return dr_error(DR_ERR_ARG, "trm_train: model has %d items, dataset %d", m->cfg.n_items, d->n_items);
    if (o->batch < 1 || o->epochs < 1 || !(o->lr > 0 && isfinite(o->lr)) || !(o->weight_decay >= 0) ||
        !(o->grad_clip >= 0) || !(o->pref_empty_p >= 0 && o->pref_empty_p <= 1) ||
        (o->loss == TRM_LOSS_SAMPLED && o->n_neg < 1) || o->loss < 0 || o->loss > 2)
        return dr_error(DR_ERR_ARG,
                        "trm_train: invalid options (batch %d >= 1, epochs %d >= 1, lr %g > 0, weight decay %g >= 0, "
                        "clip %g >= 0, pref-empty %g in [0, 1], negatives %d >= 1 needed)",
                        o->batch, o->epochs, o->lr, o->weight_decay, o->grad_clip, o->pref_empty_p, o->n_neg);
    if (o->logq && o->loss != TRM_LOSS_SAMPLED)
        return dr_error(DR_ERR_ARG, "trm_train: the logQ correction needs the sampled loss");
    if (!(o->mixed_neg >= 0 && o->mixed_neg <= 1) || (o->mixed_neg > 0 && o->loss != TRM_LOSS_SAMPLED))
        return dr_error(DR_ERR_ARG, "trm_train: mixed negatives %g need the sampled loss and a share in [0, 1]",
                        (double)o->mixed_neg);
    if (o->mixed_neg > 0 && dr_dist_size() > 1)
        return dr_error(DR_ERR_UNSUPPORTED, "trm_train: mixed negatives under mpirun are not supported (a shard "
                                            "sees only its part of the batch's targets)");
    if (o->mask_history && (o->loss != TRM_LOSS_CE || o->label_smoothing > 0))
        return dr_error(DR_ERR_ARG, "trm_train: the history mask needs the ce loss without label smoothing");
    if (o->wd_params != TRM_WD_ALL && o->wd_params != TRM_WD_MATRICES && o->wd_params != TRM_WD_LINEAR)
        return dr_error(DR_ERR_ARG, "trm_train: unknown weight-decay tensor set %d", o->wd_params);
    if (!(o->label_smoothing >= 0 && o->label_smoothing < 1) || (o->label_smoothing > 0 && o->loss != TRM_LOSS_CE))
        return dr_error(DR_ERR_ARG, "trm_train: label smoothing %g needs the ce loss and a value in [0, 1)",
                        (double)o->label_smoothing);
    if (!(o->ema >= 0 && o->ema < 1))
        return dr_error(DR_ERR_ARG, "trm_train: the weight average's decay %g is not in [0, 1)", (double)o->ema);
    if ((o->lr_schedule != TRM_LR_CONST && o->lr_schedule != TRM_LR_COSINE) || o->warmup < 0)
        return dr_error(DR_ERR_ARG, "trm_train: unknown learning-rate schedule %d or warmup %d < 0", o->lr_schedule,
                        o->warmup);
    double t0 = dr_now();
    trainer t;
    char *rpath = NULL, *mpath = NULL;
    int32_t *users = NULL, *order = NULL, *bstart = NULL;
    dr_jsonl jl = {0};
    int rc = trainer_init(&t, m, d, o);
    if (rc) goto out;
    if ((rc = trm__valid_users(d, o->valid_users, &t.vusers, &t.n_vusers))) goto out;
    if (t.vusers && !o->fit_valid && o->progress && dr_dist_rank() == 0)
        fprintf(o->progress, "trm train: early stopping validates on a fixed sample of %d users (the test: all)\n",
                t.n_vusers);
    rpath = o->resume_path ? dr_strdup(o->resume_path) : dr_str_concat(o->out, ".resume.gguf");
    mpath = o->metrics ? dr_strdup(o->metrics) : dr_str_concat(o->out, ".metrics.jsonl");
    users = dr_calloc((size_t)d->n_users + 1, sizeof(int32_t));
    order = dr_calloc((size_t)d->n_users + 1, sizeof(int32_t));
    bstart = dr_calloc((size_t)d->n_users + 1, sizeof(int32_t));
    if (!rpath || !mpath || !users || !order || !bstart) {
        rc = dr_error_code();
        goto out;
    }
    int nu = 0;
    for (int32_t u = 0; u < d->n_users; u++) {
        const int32_t *in;
        if (user_train(d, u, m->cfg.max_len, o->fit_valid, &in) > 0) users[nu++] = u;
    }
    if (nu == 0) {
        rc = dr_error(DR_ERR_ARG, "trm_train: no user has a train sequence of 2 or more items");
        goto out;
    }
    train_state st = {0, -1, 0, -1.0, 0};
    int resumed = 0;
    /* Under MPI rank 0 alone touches files (the others may be on machines that do not see
     * them); it reads the resume state and hands it to the others. */
    const int lead = dr_dist_rank() == 0;
    if (lead && o->resume && dr_file_exists(rpath)) {
        if ((rc = load_state(&t, rpath, &st))) goto out;
        resumed = 1;
    }
    if ((rc = dr_dist_bcast(&resumed, sizeof resumed, 0))) goto out;
    if (resumed && dr_dist_size() > 1) {
        size_t np = m->n_params * sizeof(float);
        if ((rc = dr_dist_bcast(&st, sizeof st, 0)) || (rc = dr_dist_bcast(&t.step, sizeof t.step, 0)) ||
            (rc = dr_dist_bcast(m->mem, np, 0)) || (rc = dr_dist_bcast(t.am, np, 0)) ||
            (rc = dr_dist_bcast(t.av, np, 0)) || (t.ema && (rc = dr_dist_bcast(t.ema, np, 0))))
            goto out;
        trm__refresh_tables(m);
    }
    if (lead && mpath[0] && (rc = dr_jsonl_open(&jl, mpath, resumed))) goto out;
    {
        /* the schedule's horizon: make_batches cuts nu users into ceil(nu / batch) batches */
        int64_t per = ((int64_t)nu + o->batch - 1) / o->batch;
        if (o->max_steps > 0 && per > o->max_steps) per = o->max_steps;
        t.total_steps = per * o->epochs;
    }
    dr_rng master;
    dr_rng_seed(&master, o->seed);
    for (int ep = st.epoch; ep < o->epochs && !st.done; ep++) {
        dr_rng erng = dr_rng_split(&master, (uint64_t)ep);
        int nb = 0;
        if ((rc = make_batches(d, users, nu, o->batch, m->cfg.max_len, o->fit_valid, &erng, order, bstart, &nb))) goto out;
        if (o->max_steps > 0 && nb > o->max_steps) nb = o->max_steps;
        dr_progress pr;
        char label[64];
        snprintf(label, sizeof label, "epoch %d/%d", ep + 1, o->epochs);
        dr_progress_start(&pr, o->progress, label, nb, "batch");
        double lsum = 0, te = dr_now();
        int64_t npos = 0;
        for (int bi = 0; bi < nb; bi++) {
            int s = bstart[bi], B = nu - s < o->batch ? nu - s : o->batch;
            dr_rng srng = dr_rng_split(&erng, 100 + (uint64_t)bi);
            double l;
            int nv;
            if ((rc = batch_grad(&t, order + s, B, &srng, &l, &nv))) goto out;
            if (!isfinite(l)) {
                dr_progress_finish(&pr);
                rc = diverged(&st, o, ep, bi, "the loss is not finite");
                goto out;
            }
            adam_step(&t);
            lsum += l * nv;
            npos += nv;
            dr_progress_set_extra(&pr, "loss %.4f", npos ? lsum / (double)npos : 0.0);
            dr_progress_update(&pr, bi + 1);
        }
        dr_progress_finish(&pr);
        double train_s = dr_now() - te;
        if (trm__first_nonfinite(m) != (size_t)-1) {
            rc = diverged(&st, o, ep, nb - 1, "a weight is not finite");
            goto out;
        }
        json_t *j = json_object();
        json_object_set_new(j, "epoch", json_integer(ep + 1));
        json_object_set_new(j, "loss", json_real(npos ? lsum / (double)npos : 0.0));
        json_object_set_new(j, "train_seconds", json_real(train_s));
        json_object_set_new(j, "sequences_per_s", json_real(train_s > 0 ? nb * (double)o->batch / train_s : 0));
        if (o->lr_schedule != TRM_LR_CONST || o->warmup > 0) /* the rate of the epoch's last step */
            json_object_set_new(j, "lr", json_real(trm_lr_at(o, t.step, t.total_steps)));
        int evaluated = 0;
        if (!o->fit_valid && (o->eval_every <= 1 || (ep + 1) % o->eval_every == 0 || ep + 1 == o->epochs)) {
            dr_metrics_mean mm;
            swap_average(&t); /* the average in */
            if ((!t.eval_a.fmem && (rc = trm__acts_alloc_infer(&t.eval_a, m, TRM_EVAL_USERS))) ||
                (rc = trm__evaluate_users(m, d, 0, 1, 0, t.vusers, t.n_vusers, &t.eval_a, &mm))) {
                json_decref(j);
                goto out;
            }
            evaluated = 1;
            double nd = mm.ndcg[dr_metrics_k_index(10)];
            json_object_set_new(j, "valid", dr_metrics_mean_json(&mm));
            if (nd > st.best) {
                st.best = nd;
                st.best_epoch = ep + 1;
                st.bad = 0;
                if (lead && (rc = trm_save(m, o->out))) {
                    json_decref(j);
                    goto out;
                }
            } else {
                st.bad++;
            }
            swap_average(&t); /* the raw weights back */
            if (o->progress && lead)
                fprintf(o->progress, "epoch %d: loss %.4f, valid NDCG@10 %.4f Recall@10 %.4f (best %.4f at epoch %d)\n",
                        ep + 1, npos ? lsum / (double)npos : 0.0, nd, mm.recall[dr_metrics_k_index(10)], st.best,
                        st.best_epoch);
        }
        json_object_set_new(j, "best_epoch", json_integer(st.best_epoch));
        json_object_set_new(j, "best_valid_ndcg@10", json_real(st.best));
        json_object_set_new(j, "seconds", json_real(dr_now() - t0));
        if (jl.fp) dr_jsonl_write(&jl, j);
        json_decref(j);
        st.epoch = ep + 1;
        res->epochs_run++;
        if (evaluated && o->patience > 0 && st.bad >= o->patience) st.done = 1;
        if (lead && (rc = save_state(&t, rpath, &st))) goto out;
        if (o->on_epoch) o->on_epoch(o->on_epoch_ctx, st.epoch);
    }
    res->best_epoch = st.best_epoch;
    res->best_valid_ndcg10 = st.best;
    /* end with the best weights (under MPI: read by rank 0, sent to the others) */
    if (st.best_epoch > 0 && !lead) {
        if ((rc = dr_dist_bcast(m->mem, m->n_params * sizeof(float), 0))) goto out;
        trm__refresh_tables(m);
    } else if (st.best_epoch > 0) {
        trm_model *best = NULL;
        if ((rc = trm_load(&best, o->out))) goto out;
        if (best->n_params != m->n_params) {
            trm_model_free(best);
            rc = dr_error(DR_ERR_INTERNAL, "trm: best checkpoint does not match");
            goto out;
        }
        memcpy(m->mem, best->mem, m->n_params * sizeof(float));
        trm_model_free(best);
        if ((rc = dr_dist_bcast(m->mem, m->n_params * sizeof(float), 0))) goto out;
        trm__refresh_tables(m);
    } else {
        swap_average(&t); /* never validated: the average is the model */
        if (lead && (rc = trm_save(m, o->out))) goto out;
    }
out:
    res->seconds = dr_now() - t0;
    if (jl.fp) dr_jsonl_close(&jl);
    trainer_free(&t);
    free(rpath);
    free(mpath);
    free(users);
    free(order);
    free(bstart);
    return rc;
}

/* ---------- benchmark hook: timed training steps of epoch 0 (steps <= 0: all of it) ---------- */
int trm__bench_train(trm_model *m, const dr_dataset *d, const trm_train_opts *o, int steps, double *seconds,
                     double *flops, int64_t *seqs, int64_t *positions) {
    trainer t;
    int rc = trainer_init(&t, m, d, o);
    int32_t *users = dr_calloc((size_t)d->n_users + 1, sizeof(int32_t));
    int32_t *order = dr_calloc((size_t)d->n_users + 1, sizeof(int32_t));
    int32_t *bstart = dr_calloc((size_t)d->n_users + 1, sizeof(int32_t));
    *seconds = *flops = 0;
    *seqs = *positions = 0;
    if (!rc && (!users || !order || !bstart)) rc = dr_error_code();
    if (!rc) {
        int nu = 0;
        for (int32_t u = 0; u < d->n_users; u++) {
            const int32_t *in;
            if (user_train(d, u, m->cfg.max_len, o->fit_valid, &in) > 0) users[nu++] = u;
        }
        dr_rng master, erng;
        dr_rng_seed(&master, o->seed);
        erng = dr_rng_split(&master, 0);
        int nb = 0;
        rc = make_batches(d, users, nu, o->batch, m->cfg.max_len, o->fit_valid, &erng, order, bstart, &nb);
        if (steps <= 0) steps = nb; /* the whole epoch */
        t.total_steps = steps;
        const double dd = m->cfg.dim, f = m->cfg.ffn_dim, V = m->V;
        double t0 = dr_now();
        for (int bi = 0; bi < steps && !rc; bi++) {
            int s = bstart[bi % nb], B = nu - s < o->batch ? nu - s : o->batch;
            dr_rng srng = dr_rng_split(&erng, 100 + (uint64_t)bi);
            double l;
            int nv;
            rc = batch_grad(&t, order + s, B, &srng, &l, &nv);
            if (rc) break;
            adam_step(&t);
            double N = t.a.N, L = t.a.L;
            double fw = m->cfg.layers * (4 * 2 * N * dd * dd + 2 * 2 * N * dd * f + 2 * B * L * L * dd);
            if (o->loss == TRM_LOSS_CE) fw += 2.0 * nv * dd * V;
            *flops += 3 * fw;
            *seqs += B;
            *positions += nv;
        }
        *seconds = dr_now() - t0;
    }
    free(users);
    free(order);
    free(bstart);
    trainer_free(&t);
    return rc;
}

/* An ensemble: member k is trained as one model would be, with seed o->seed + k, its own
 * early stopping and its own files (OUT.member-K.gguf with its resume state and metrics: a
 * resumed run finishes the members it had not finished). Then the ensemble is validated on the
 * users early stopping watched and written to OUT. */
static int train_ensemble(trm_model *m, const dr_dataset *d, const trm_train_opts *o, trm_train_result *res) {
    int rc = DR_OK;
    double t0 = dr_now();
    char suffix[32];
    for (int k = 0; k < m->n_members && !rc; k++) {
        snprintf(suffix, sizeof suffix, ".member-%d.gguf", k);
        char *out = dr_str_concat(o->out, suffix);
        if (!out) return dr_error_code();
        trm_train_opts ok = *o;
        ok.out = out;
        ok.seed = o->seed + (uint64_t)k;
        ok.metrics = o->metrics && !*o->metrics ? "" : NULL; /* each member: OUT.member-K.gguf.metrics.jsonl */
        ok.resume_path = NULL;
        if (o->progress && dr_dist_rank() == 0)
            fprintf(o->progress, "trm train: ensemble member %d of %d (seed %llu) -> %s\n", k + 1, m->n_members,
                    (unsigned long long)ok.seed, out);
        trm_train_result r;
        rc = trm_train(m->members[k], d, &ok, &r);
        free(out);
        res->epochs_run += r.epochs_run;
        res->best_epoch = r.best_epoch; /* the last member's */
        res->refit_epochs = r.refit_epochs;
    }
    if (rc) return rc;
    m->tables_fresh = 0; /* the members' tables changed */
    if ((rc = trm__tables_ready(m))) return rc;
    res->best_valid_ndcg10 = -1; /* refit members have trained on the validation targets: no figure */
    if (!o->refit) {
        int32_t *vusers = NULL;
        int n_v = 0;
        dr_metrics_mean valid;
        if ((rc = trm__valid_users(d, o->valid_users, &vusers, &n_v))) return rc;
        rc = trm__evaluate_users(m, d, 0, 1, 0, vusers, vusers ? n_v : 0, NULL, &valid);
        free(vusers);
        if (rc) return rc;
        res->best_valid_ndcg10 = valid.ndcg[dr_metrics_k_index(10)];
    }
    if (dr_dist_rank() == 0 && (rc = trm_save(m, o->out))) return rc;
    res->seconds = dr_now() - t0;
    return DR_OK;
}
