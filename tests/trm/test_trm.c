/* TRM tests: gradients against finite differences (every loss, pre/post-LN,
 * the pref model), determinism, resume, retrieval vs brute force, learning. */
#include "harness.h"
#include "deeprec/trm.h"
#include "deeprec/data.h"
#include "deeprec/metrics.h"
#include "deeprec/nn.h"
#include "trm/internal.h"
#include "mpi_util.h" /* rel_diff */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif


static const char *genres[] = {"Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance"};
static const char *words[] = {"star", "night", "love", "dark", "city", "blue", "war", "girl", "dead", "space"};

/* Users walk a cycle over items (next = item + step), with noise; item text
 * derived from the item number. */
static void make_synth(dr_dataset *d, int n_users, int n_items, int min_len, int max_len, uint64_t seed,
                       double noise) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b);
    dr_rng r;
    dr_rng_seed(&r, seed);
    char us[32], is[32];
    /* register items in order so that ids are stable: a first user that sees every item */
    for (int i = 0; i < n_items; i++) {
        snprintf(is, sizeof is, "i%d", i);
        CHECK_OK(dr_data_builder_add(b, "u_all", 5, is, strlen(is), i, 5.0));
        char title[64], cats[64];
        snprintf(title, sizeof title, "%s %s %d", words[i % 10], words[(i / 10) % 10], i);
        snprintf(cats, sizeof cats, "%s|%s", genres[i % 6], genres[(i / 6) % 6]);
        CHECK_OK(dr_data_builder_item_text(b, is, strlen(is), title, -1, cats, -1));
    }
    for (int u = 0; u < n_users; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int len = min_len + (int)dr_rng_below(&r, (uint64_t)(max_len - min_len + 1));
        int cur = (int)dr_rng_below(&r, (uint64_t)n_items);
        int step = 1 + (u % 2);
        for (int t = 0; t < len; t++) {
            snprintf(is, sizeof is, "i%d", cur);
            CHECK_OK(dr_data_builder_add(b, us, strlen(us), is, strlen(is), t, 5.0));
            if (dr_rng_double(&r) < noise) cur = (int)dr_rng_below(&r, (uint64_t)n_items);
            else cur = (cur + step) % n_items;
        }
    }
    dr_data_filter f;
    memset(&f, 0, sizeof f);
    CHECK_OK(dr_data_builder_finish(b, &f, d));
    dr_data_builder_free(b);
}

static void tiny_cfg(trm_config *c, int model) {
    trm_config_default(c);
    c->model = model;
    c->dim = 8;
    c->heads = 2;
    c->layers = 2;
    c->max_len = 6;
    c->ffn_dim = 12;
    c->dropout = 0.0f;
    c->text_buckets = 64;
}

typedef int (*trm_lossgrad_fn)(trm_model *, const dr_dataset *, const trm_train_opts *, const int32_t *, int, uint64_t,
                               double *, float *);

/* Larger weights than the init so that every path matters: each nonzero, non-unit weight drawn
 * again from N(0, 0.3^2), each unit weight (LayerNorm gains) 1 + N(0, 0.2^2). */
static void enlarge_params(float *p, size_t np, dr_rng *r) {
    for (size_t i = 0; i < np; i++)
        if (p[i] != 0.0f && p[i] != 1.0f) p[i] = 0.3f * dr_rng_normal(r);
        else if (p[i] == 1.0f) p[i] = 1.0f + 0.2f * dr_rng_normal(r);
}

/* The central difference of the loss in parameter i (step 1e-2), the tables refreshed after. */
static double numeric_grad(trm_model *m, trm_lossgrad_fn lossgrad, const dr_dataset *d, const trm_train_opts *o,
                           const int32_t *users, int B, float *p, size_t i) {
    float save = p[i], h = 1e-2f;
    double lp, lm;
    p[i] = save + h;
    trm_debug_refresh(m);
    CHECK_OK(lossgrad(m, d, o, users, B, 42, &lp, NULL));
    p[i] = save - h;
    trm_debug_refresh(m);
    CHECK_OK(lossgrad(m, d, o, users, B, 42, &lm, NULL));
    p[i] = save;
    trm_debug_refresh(m);
    return (lp - lm) / (2.0 * h);
}

/* The gradient of configuration c against finite differences. smoothing: the ce loss's label
 * smoothing (0 = off); logq: the sampled loss's logQ correction. With dropout the masks are the
 * same at every call (the batch's seed is fixed), so the loss is a fixed function of the weights. */
/* mixed: the sampled loss's share of in-batch negatives (--mixed-neg). */
static void gradcheck_mh(const trm_config *cfg, int loss, float smoothing, int logq, int mask_history, float mixed) {
    trm_lossgrad_fn lossgrad = cfg->dropout > 0.0f ? trm_debug_loss_grad_train : trm_debug_loss_grad;
    dr_dataset d;
    make_synth(&d, 12, 10, 4, 9, 7, 0.3);
    trm_config c = *cfg;
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 3));
    /* larger weights than the 0.02 init so that every path matters */
    size_t np;
    float *p = trm_debug_params(m, &np);
    dr_rng r;
    dr_rng_seed(&r, 11);
    enlarge_params(p, np, &r);
    /* keep padding row zero */
    const float *E = trm_item_embeddings(m);
    (void)E;
    trm_train_opts o;
    trm_train_opts_default(&o);
    o.loss = loss;
    o.n_neg = 5;
    o.pref_empty_p = 0.2f;
    o.label_smoothing = smoothing;
    o.logq = logq;
    o.mask_history = mask_history;
    o.mixed_neg = mixed;
    int32_t users[5] = {1, 3, 4, 7, 9};
    float *g = malloc(np * sizeof(float));
    double l0;
    CHECK_OK(lossgrad(m, &d, &o, users, 5, 42, &l0, g));
    CHECK(isfinite(l0) && l0 > 0);
    /* sample parameters: nonzero-gradient ones and random ones */
    int checked = 0, bad = 0;
    double maxerr = 0;
    for (int trial = 0; trial < 400 && checked < 120; trial++) {
        size_t i = (size_t)dr_rng_below(&r, np);
        if (trial % 2 == 0 && fabsf(g[i]) < 1e-4f) continue;
        double num = numeric_grad(m, lossgrad, &d, &o, users, 5, p, i);
        double err = fabs(num - g[i]);
        double tol = 2e-3 + 0.03 * fabs(num);
        if (err > tol) {
            if (bad < 5) fprintf(stderr, "  param %zu: analytic %.6g numeric %.6g\n", i, g[i], num);
            bad++;
        }
        if (err > maxerr) maxerr = err;
        checked++;
    }
    trm_debug_refresh(m);
    CHECK_MSG(bad == 0, "%d of %d gradients off (max err %g)", bad, checked, maxerr);
    CHECK(checked >= 60);
    free(g);
    trm_model_free(m);
    dr_data_free(&d);
}

static void gradcheck_cfg(const trm_config *cfg, int loss, float smoothing, int logq) {
    gradcheck_mh(cfg, loss, smoothing, logq, 0, 0.0f);
}

static void gradcheck_ls(int model, int loss, int post_ln, int act, int sep_out, float smoothing, int logq) {
    trm_config c;
    tiny_cfg(&c, model);
    c.post_ln = post_ln;
    c.act = act;
    c.sep_out = sep_out;
    gradcheck_cfg(&c, loss, smoothing, logq);
}

static void gradcheck(int model, int loss, int post_ln, int act, int sep_out) {
    gradcheck_ls(model, loss, post_ln, act, sep_out, 0.0f, 0);
}

TEST(trm_grad_ce) { gradcheck(TRM_SASREC, TRM_LOSS_CE, 0, TRM_ACT_GELU, 0); }
/* label smoothing through the whole model, both tables (sep_out) and the pref model */
TEST(trm_grad_ce_label_smoothing) {
    gradcheck_ls(TRM_SASREC, TRM_LOSS_CE, 0, TRM_ACT_GELU, 0, 0.2f, 0);
    gradcheck_ls(TRM_SASREC, TRM_LOSS_CE, 0, TRM_ACT_GELU, 1, 0.2f, 0);
    gradcheck_ls(TRM_PREF, TRM_LOSS_CE, 0, TRM_ACT_GELU, 0, 0.1f, 0);
}
TEST(trm_grad_sampled_logq) { gradcheck_ls(TRM_SASREC, TRM_LOSS_SAMPLED, 0, TRM_ACT_GELU, 0, 0.0f, 1); }
/* Mixed negatives (--mixed-neg): half and all of the draws from the batch's targets, with the
 * mixture's logQ correction, against finite differences; then a batch whose every target is one
 * item: in-batch draws are then that item, every one an accidental hit, so the loss is 0 where
 * uniform draws give more. */
TEST(trm_mixed_negatives) {
    trm_config c;
    tiny_cfg(&c, TRM_SASREC);
    gradcheck_mh(&c, TRM_LOSS_SAMPLED, 0.0f, 1, 0, 0.5f);
    gradcheck_mh(&c, TRM_LOSS_SAMPLED, 0.0f, 1, 0, 1.0f);
    gradcheck_mh(&c, TRM_LOSS_SAMPLED, 0.0f, 0, 0, 0.5f);
    dr_data_builder *b = dr_data_builder_new();
    char us[16], is[16];
    for (int u = 0; u < 8; u++) { /* a_u, X, then the validation and test items */
        snprintf(us, sizeof us, "u%d", u);
        const char *seq[4] = {is, "X", "v", "t"};
        snprintf(is, sizeof is, "a%d", u);
        for (int k = 0; k < 4; k++) CHECK_OK(dr_data_builder_add(b, us, strlen(us), seq[k], strlen(seq[k]), k, 5.0));
    }
    dr_data_filter f;
    memset(&f, 0, sizeof f);
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 3));
    size_t np;
    trm_debug_params(m, &np);
    float *g = malloc(np * sizeof(float));
    trm_train_opts o;
    trm_train_opts_default(&o);
    o.loss = TRM_LOSS_SAMPLED;
    o.n_neg = 4;
    o.logq = 1;
    int32_t users[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    double l_mixed, l_uniform;
    o.mixed_neg = 1.0f;
    CHECK_OK(trm_debug_loss_grad(m, &d, &o, users, 8, 42, &l_mixed, g));
    o.mixed_neg = 0.0f;
    CHECK_OK(trm_debug_loss_grad(m, &d, &o, users, 8, 42, &l_uniform, g));
    CHECK(l_mixed == 0.0);
    CHECK(l_uniform > 0.1);
    /* refused: outside [0, 1], or with another loss */
    o.mixed_neg = 1.5f;
    o.out = dr_test_path(dr_test_tmpdir(), "mixed.gguf");
    trm_train_result r;
    CHECK_ERR(trm_train(m, &d, &o, &r), DR_ERR_ARG);
    o.mixed_neg = 0.5f;
    o.loss = TRM_LOSS_CE;
    o.logq = 0;
    CHECK_ERR(trm_train(m, &d, &o, &r), DR_ERR_ARG);
    free(g);
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(trm_grad_sampled) { gradcheck(TRM_SASREC, TRM_LOSS_SAMPLED, 0, TRM_ACT_GELU, 0); }
TEST(trm_grad_bce) { gradcheck(TRM_SASREC, TRM_LOSS_BCE, 0, TRM_ACT_GELU, 0); }
TEST(trm_grad_postln_sepout) { gradcheck(TRM_SASREC, TRM_LOSS_CE, 1, TRM_ACT_GELU, 1); }
TEST(trm_grad_pref_ce) { gradcheck(TRM_PREF, TRM_LOSS_CE, 0, TRM_ACT_GELU, 0); }
TEST(trm_grad_pref_sampled) { gradcheck(TRM_PREF, TRM_LOSS_SAMPLED, 0, TRM_ACT_GELU, 0); }
/* A model of c on 12 synthetic users with its weights enlarged (seed: the enlargement's draw). */
static trm_model *enlarged_model(const trm_config *c, dr_dataset *d, uint64_t seed) {
    make_synth(d, 12, 10, 4, 9, 7, 0.3);
    trm_model *m;
    CHECK_OK(trm_model_new(&m, c, d, 3));
    size_t np;
    float *p = trm_debug_params(m, &np);
    dr_rng r;
    dr_rng_seed(&r, seed);
    enlarge_params(p, np, &r);
    trm_debug_refresh(m);
    return m;
}

/* Every element (every third of a tensor of 64 or more) of the tensors whose name contains
 * `match`, against finite differences on users 1, 2, 5, 8: the tensors a random sample of the
 * whole model would seldom reach. Returns how many tensors matched; *checked gets the elements. */
static int gradcheck_tensors(trm_model *m, const dr_dataset *d, const char *match, int *checked) {
    size_t np;
    float *p = trm_debug_params(m, &np);
    trm_train_opts o;
    trm_train_opts_default(&o);
    o.pref_empty_p = 0.2f;
    int32_t users[4] = {1, 2, 5, 8};
    float *g = malloc(np * sizeof(float));
    double l0, maxerr = 0;
    CHECK_OK(trm_debug_loss_grad(m, d, &o, users, 4, 42, &l0, g));
    int bad = 0, nonzero = 0, tensors = 0;
    *checked = 0;
    for (int t = 0; t < m->n_t; t++) {
        if (!strstr(m->t[t].name, match)) continue;
        tensors++;
        size_t stride = m->t[t].n >= 64 ? 3 : 1;
        for (size_t j = 0; j < m->t[t].n; j += stride) {
            size_t i = m->t[t].off + j;
            double num = numeric_grad(m, trm_debug_loss_grad, d, &o, users, 4, p, i), err = fabs(num - g[i]);
            if (err > 2e-3 + 0.03 * fabs(num)) {
                if (bad < 5) fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", m->t[t].name, j, g[i], num);
                bad++;
            }
            maxerr = err > maxerr ? err : maxerr;
            nonzero += fabsf(g[i]) > 1e-5f;
            (*checked)++;
        }
    }
    CHECK_MSG(bad == 0, "%d of %d gradients of the %s tensors off (max err %g)", bad, *checked, match, maxerr);
    CHECK(nonzero > *checked / 2);
    free(g);
    return tensors;
}

/* The text model (pref with a mixture of item-text experts): the generic sample of parameters,
 * then every weight of the gate and every third of the experts', which a random sample of the
 * whole model would seldom reach. */
TEST(trm_grad_text_experts) {
    trm_config c;
    tiny_cfg(&c, TRM_PREF);
    c.text_experts = 3;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
    dr_dataset d;
    trm_model *m = enlarged_model(&c, &d, 5);
    size_t np;
    float *p = trm_debug_params(m, &np);
    dr_rng r;
    dr_rng_seed(&r, 6);
    /* gate biases start at 0: give them values so the softmax is not uniform by construction */
    for (int t = 0; t < m->n_t; t++)
        if (!strcmp(m->t[t].name, "item_text_gate.bias"))
            for (size_t j = 0; j < m->t[t].n; j++) p[m->t[t].off + j] = 0.5f * dr_rng_normal(&r);
    trm_debug_refresh(m);
    int checked = 0;
    CHECK_EQ_INT(gradcheck_tensors(m, &d, "item_text_", &checked), 3);
    CHECK_EQ_INT(checked, 3 * 8 * 8 / 3 + 3 * 8 + 3);
    trm_model_free(m);
    dr_data_free(&d);
}

/* The history left out of the softmax (--mask-history): sasrec with and without dropout, pref. */
TEST(trm_grad_mask_history) {
    trm_config c;
    tiny_cfg(&c, TRM_SASREC);
    gradcheck_mh(&c, TRM_LOSS_CE, 0.0f, 0, 1, 0.0f);
    c.dropout = 0.3f;
    gradcheck_mh(&c, TRM_LOSS_CE, 0.0f, 0, 1, 0.0f);
    tiny_cfg(&c, TRM_PREF);
    gradcheck_mh(&c, TRM_LOSS_CE, 0.0f, 0, 1, 0.0f);
}

/* The embedding LayerNorm (--emb-ln), pre- and post-LN, with and without dropout. */
TEST(trm_grad_emb_ln) {
    trm_config c;
    tiny_cfg(&c, TRM_SASREC);
    c.emb_ln = 1;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
    c.post_ln = 1;
    c.scale_emb = 1;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
    c.dropout = 0.3f;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
    tiny_cfg(&c, TRM_PREF);
    c.emb_ln = 1;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
}
/* LiGR gates (--gate) on both residual branches: two layers, with and without dropout, the pref
 * model, and the gates' own tensors checked whole (a random sample of the model seldom reaches
 * them). Post-LN with gates is refused. */
TEST(trm_grad_gate) {
    static const struct {
        int model, loss;
        float dropout;
    } runs[] = {{TRM_SASREC, TRM_LOSS_CE, 0.0f},
                {TRM_SASREC, TRM_LOSS_CE, 0.3f},
                {TRM_SASREC, TRM_LOSS_SAMPLED, 0.0f},
                {TRM_PREF, TRM_LOSS_CE, 0.0f}};
    trm_config c;
    for (int i = 0; i < 4; i++) {
        tiny_cfg(&c, runs[i].model);
        c.gate = 1;
        c.dropout = runs[i].dropout;
        gradcheck_cfg(&c, runs[i].loss, 0.0f, 0);
    }
    tiny_cfg(&c, TRM_SASREC);
    c.gate = 1;
    dr_dataset d;
    trm_model *m = enlarged_model(&c, &d, 9);
    int checked = 0;
    CHECK_EQ_INT(gradcheck_tensors(m, &d, "_gate.", &checked), 4 * c.layers);
    CHECK_EQ_INT(checked, 2 * c.layers * ((8 * 8 + 2) / 3 + 8));
    trm_model_free(m);
    dr_data_free(&d);

    c.post_ln = 1;
    c.n_items = 12;
    CHECK(trm_model_new(&m, &c, NULL, 3) != DR_OK);
    CHECK(strstr(dr_error_message(), "gate") != NULL);
}

/* Training as it runs: dropout at every site, and heads of 16 (the attention's vector path). */
TEST(trm_grad_dropout_vector_heads) {
    trm_config c;
    tiny_cfg(&c, TRM_SASREC);
    c.dim = 32;
    c.ffn_dim = 64;
    c.dropout = 0.3f;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
    c.post_ln = 1;
    gradcheck_cfg(&c, TRM_LOSS_CE, 0.0f, 0);
}

static trm_train_opts small_opts(const char *out, int epochs) {
    trm_train_opts o;
    trm_train_opts_default(&o);
    o.out = out;
    o.epochs = epochs;
    o.batch = 32;
    o.lr = 5e-3f;
    o.patience = 0;
    return o;
}

static void small_cfg(trm_config *c, int model) {
    trm_config_default(c);
    c->model = model;
    c->dim = 16;
    c->heads = 2;
    c->layers = 1;
    c->max_len = 10;
    c->dropout = 0.2f;
    c->text_buckets = 256;
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (dr_read_file(a, &x, &nx) || dr_read_file(b, &y, &ny)) return 0;
    int eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

TEST(trm_deterministic) {
    dr_dataset d;
    make_synth(&d, 120, 40, 5, 14, 5, 0.2);
    const char *dir = dr_test_tmpdir();
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/a.gguf", dir);
    snprintf(p2, sizeof p2, "%s/b.gguf", dir);
    for (int model = 0; model < 2; model++) {
        for (int k = 0; k < 2; k++) {
            trm_config c;
            small_cfg(&c, model);
            trm_model *m;
            CHECK_OK(trm_model_new(&m, &c, &d, 9));
            trm_train_opts o = small_opts(k ? p2 : p1, 3);
            trm_train_result res;
            CHECK_OK(trm_train(m, &d, &o, &res));
            CHECK_EQ_INT(res.epochs_run, 3);
            trm_model_free(m);
        }
        CHECK_MSG(files_equal(p1, p2), "two trainings with the same seed differ (model %d)", model);
    }
    dr_data_free(&d);
}

/* 4 epochs against 2 + 2 resumed in a fresh model (another init): the same best checkpoint and
 * final state, and a metrics file of 4 lines; `tag` names the files, valid_users is passed on.
 * Leaves the dataset in *d and the checkpoints' paths in a and b (512 bytes each). */
static void resume_equals_uninterrupted(dr_dataset *d, const char *tag, int valid_users, float ema, char *a, char *b) {
    make_synth(d, 100, 30, 5, 12, 8, 0.2);
    const char *dir = dr_test_tmpdir();
    char ar[600], br[600];
    snprintf(a, 512, "%s/%s_full.gguf", dir, tag);
    snprintf(b, 512, "%s/%s_part.gguf", dir, tag);
    snprintf(ar, sizeof ar, "%s.resume.gguf", a);
    snprintf(br, sizeof br, "%s.resume.gguf", b);
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    trm_model *m;
    trm_train_result res;
    CHECK_OK(trm_model_new(&m, &c, d, 4));
    trm_train_opts o = small_opts(a, 4);
    o.valid_users = valid_users, o.ema = ema;
    CHECK_OK(trm_train(m, d, &o, &res));
    trm_model_free(m);
    /* interrupted after 2 epochs, then resumed in a fresh model */
    CHECK_OK(trm_model_new(&m, &c, d, 4));
    o = small_opts(b, 2);
    o.valid_users = valid_users, o.ema = ema;
    CHECK_OK(trm_train(m, d, &o, &res));
    trm_model_free(m);
    CHECK_OK(trm_model_new(&m, &c, d, 123)); /* different init: must be replaced by the state */
    o = small_opts(b, 4);
    o.valid_users = valid_users, o.ema = ema;
    o.resume = 1;
    CHECK_OK(trm_train(m, d, &o, &res));
    CHECK_EQ_INT(res.epochs_run, 2);
    trm_model_free(m);
    CHECK_MSG(files_equal(a, b), "resumed best checkpoint differs (%s)", tag);
    CHECK_MSG(files_equal(ar, br), "resumed final state differs (%s)", tag);
    /* metrics file has 4 lines */
    char mp[600], *txt;
    size_t n;
    snprintf(mp, sizeof mp, "%s.metrics.jsonl", b);
    CHECK_OK(dr_read_file(mp, &txt, &n));
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += txt[i] == '\n';
    free(txt);
    CHECK_EQ_INT(lines, 4);
}

/* The learning-rate schedule: the constant one is o->lr itself (the defaults' bits), warmup is
 * linear, the cosine runs from lr after warmup to 0 at the last step. */
TEST(trm_lr_schedule) {
    trm_train_opts o;
    trm_train_opts_default(&o);
    o.lr = 3e-3f;
    CHECK(trm_lr_at(&o, 1, 100) == o.lr && trm_lr_at(&o, 100, 100) == o.lr && trm_lr_at(&o, 1000, 100) == o.lr);
    o.warmup = 10;
    CHECK_NEAR(trm_lr_at(&o, 1, 100), 3e-4, 1e-9);
    CHECK_NEAR(trm_lr_at(&o, 5, 100), 1.5e-3, 1e-9);
    CHECK(trm_lr_at(&o, 10, 100) == o.lr && trm_lr_at(&o, 100, 100) == o.lr);
    o.lr_schedule = TRM_LR_COSINE;
    CHECK_NEAR(trm_lr_at(&o, 10, 110), 3e-3, 1e-9);
    CHECK_NEAR(trm_lr_at(&o, 60, 110), 1.5e-3, 1e-9); /* half way: half the rate */
    CHECK_NEAR(trm_lr_at(&o, 35, 110), 3e-3 * 0.5 * (1 + cos(M_PI / 4)), 1e-9);
    CHECK(trm_lr_at(&o, 110, 110) < 1e-12f && trm_lr_at(&o, 200, 110) < 1e-12f);
    o.warmup = 0;
    CHECK(trm_lr_at(&o, 0, 100) == o.lr);
    CHECK_EQ_INT(trm_lr_schedule_from_name("cosine"), TRM_LR_COSINE);
    CHECK_EQ_INT(trm_lr_schedule_from_name("const"), TRM_LR_CONST);
    CHECK_EQ_INT(trm_lr_schedule_from_name("linear"), -1);
}

/* --mask-history: on the same batch the loss is below the plain one (every softmax has fewer
 * candidates); training with it runs; it is part of the resume state; it needs ce without
 * label smoothing. */
TEST(trm_mask_history_train) {
    dr_dataset d;
    make_synth(&d, 100, 30, 5, 12, 8, 0.2);
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    c.dropout = 0.0f;
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    trm_train_opts o;
    trm_train_opts_default(&o);
    int32_t users[4] = {2, 5, 8, 11};
    double l0, l1;
    CHECK_OK(trm_debug_loss_grad(m, &d, &o, users, 4, 9, &l0, NULL));
    o.mask_history = 1;
    CHECK_OK(trm_debug_loss_grad(m, &d, &o, users, 4, 9, &l1, NULL));
    CHECK(isfinite(l1) && l1 < l0);
    trm_model_free(m);
    const char *dir = dr_test_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/mh.gguf", dir);
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    trm_train_result res;
    o = small_opts(p, 2);
    o.mask_history = 1;
    CHECK_OK(trm_train(m, &d, &o, &res));
    CHECK(res.best_valid_ndcg10 >= 0.0);
    o = small_opts(p, 3);
    o.resume = 1;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG); /* the state was made with the mask */
    o.mask_history = 1;
    CHECK_OK(trm_train(m, &d, &o, &res));
    CHECK_EQ_INT(res.epochs_run, 1);
    o = small_opts(p, 1);
    o.mask_history = 1, o.loss = TRM_LOSS_SAMPLED;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.loss = TRM_LOSS_CE, o.label_smoothing = 0.1f;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    trm_model_free(m);
    dr_data_free(&d);
}

/* --wd-params: one step with weight decay on the matrices only leaves every 1-D tensor
 * (LayerNorm gains and biases, linear biases) bit for bit where the same step without decay puts
 * it and moves every matrix elsewhere; "linear" spares the embedding tables too. A resume with
 * another set is refused, one with the same goes on. */
TEST(trm_wd_params) {
    CHECK_EQ_INT(trm_wd_params_from_name("all"), TRM_WD_ALL);
    CHECK_EQ_INT(trm_wd_params_from_name("matrices"), TRM_WD_MATRICES);
    CHECK_EQ_INT(trm_wd_params_from_name("linear"), TRM_WD_LINEAR);
    CHECK_EQ_INT(trm_wd_params_from_name("norm"), -1);
    dr_dataset d;
    make_synth(&d, 100, 30, 5, 12, 8, 0.2);
    const char *dir = dr_test_tmpdir();
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    c.layers = 2;
    const int sets[3] = {TRM_WD_ALL, TRM_WD_MATRICES, TRM_WD_LINEAR};
    float *ref = NULL;
    char path[3][512];
    for (int k = 0; k < 3; k++) {
        snprintf(path[k], sizeof path[k], "%s/wdp_%d.gguf", dir, k);
        trm_model *m;
        trm_train_result res;
        CHECK_OK(trm_model_new(&m, &c, &d, 4));
        trm_train_opts o = small_opts(path[k], 1);
        o.max_steps = 1;
        o.weight_decay = k ? 0.5f : 0.0f;
        o.wd_params = sets[k];
        CHECK_OK(trm_train(m, &d, &o, &res));
        size_t np;
        float *p = trm_debug_params(m, &np);
        if (k == 0) {
            ref = malloc(np * sizeof *ref);
            memcpy(ref, p, np * sizeof *ref);
        } else {
            int n_kept = 0, n_moved = 0;
            for (int i = 0; i < m->n_t; i++) {
                const trm_tensor *t = &m->t[i];
                int same = memcmp(p + t->off, ref + t->off, t->n * sizeof(float)) == 0;
                int decays = trm__decays(t, sets[k]);
                CHECK_MSG(same == !decays, "set %d, %s: %s", sets[k], t->name, same ? "unchanged" : "moved");
                CHECK(decays == (t->nd == 2 && (k == 1 || !strstr(t->name, "_emb."))));
                n_kept += same, n_moved += !same;
            }
            /* 2 layers: 2 norms x 2 + 6 biases each, out_norm 2; matrices 6 each, the two tables */
            CHECK_EQ_INT(n_kept, k == 1 ? 22 : 24);
            CHECK_EQ_INT(n_moved, k == 1 ? 14 : 12);
        }
        trm_model_free(m);
    }
    free(ref);
    /* the set is part of the resume state */
    trm_model *m;
    trm_train_result res;
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    trm_train_opts o = small_opts(path[1], 2);
    o.max_steps = 1, o.weight_decay = 0.5f, o.resume = 1, o.wd_params = TRM_WD_ALL;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.wd_params = TRM_WD_LINEAR;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.wd_params = TRM_WD_MATRICES;
    CHECK_OK(trm_train(m, &d, &o, &res));
    CHECK_EQ_INT(res.epochs_run, 1);
    /* a state made with every tensor decaying refuses a run on a subset */
    o = small_opts(path[0], 2);
    o.max_steps = 1, o.resume = 1, o.wd_params = TRM_WD_MATRICES, o.weight_decay = 0.5f;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.wd_params = 7; /* an unknown set is refused */
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    trm_model_free(m);
    dr_data_free(&d);
}

/* Training with the recipe options: the metrics carry the rate of each epoch's last step (0 at
 * the end of a cosine), a resume with another schedule or smoothing is refused, one with the
 * same settings goes on, and smoothing with a sampled loss is refused. */
TEST(trm_train_schedule_and_smoothing) {
    dr_dataset d;
    make_synth(&d, 100, 30, 5, 12, 8, 0.2);
    const char *dir = dr_test_tmpdir();
    char a[512], b[512], mp[600];
    snprintf(a, sizeof a, "%s/ls_full.gguf", dir);
    snprintf(b, sizeof b, "%s/ls_part.gguf", dir);
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    trm_model *m;
    trm_train_result res;
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    trm_train_opts o = small_opts(a, 4);
    o.label_smoothing = 0.1f, o.lr_schedule = TRM_LR_COSINE, o.warmup = 3;
    CHECK_OK(trm_train(m, &d, &o, &res));
    trm_model_free(m);
    snprintf(mp, sizeof mp, "%s.metrics.jsonl", a);
    char *txt;
    size_t n;
    CHECK_OK(dr_read_file(mp, &txt, &n));
    const char *last = strstr(txt, "\"epoch\":4");
    CHECK(last && strstr(last, "\"lr\":0") != NULL);
    free(txt);
    /* a resume with another smoothing or schedule is refused; with the same settings it goes on */
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    o = small_opts(a, 6);
    o.resume = 1;
    o.label_smoothing = 0.1f, o.lr_schedule = TRM_LR_CONST, o.warmup = 3;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.lr_schedule = TRM_LR_COSINE, o.label_smoothing = 0.0f;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.label_smoothing = 0.1f, o.warmup = 0;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o.warmup = 3;
    CHECK_OK(trm_train(m, &d, &o, &res));
    CHECK_EQ_INT(res.epochs_run, 2);
    /* smoothing belongs to the full softmax */
    o = small_opts(b, 1);
    o.loss = TRM_LOSS_SAMPLED, o.label_smoothing = 0.1f;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    /* and logQ to the sampled one */
    o = small_opts(b, 1);
    o.logq = 1;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(trm_resume_equals_uninterrupted) {
    dr_dataset d;
    char a[512], b[512];
    resume_equals_uninterrupted(&d, "all", TRM_VALID_USERS_AUTO, 0.0f, a, b);
    dr_data_free(&d);
}

/* The weight average (--ema): a resumed run equals the uninterrupted one (the average is in the
 * state), a resume with another decay is refused, and what is validated and saved is not the
 * raw weights. */
TEST(trm_train_ema) {
    dr_dataset d;
    char a[512], b[512], r[512];
    resume_equals_uninterrupted(&d, "ema", TRM_VALID_USERS_AUTO, 0.9f, a, b);
    snprintf(r, sizeof r, "%s/ema_off.gguf", dr_test_tmpdir());
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    trm_model *m;
    trm_train_result res;
    trm_train_opts o = small_opts(r, 4);
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    CHECK_OK(trm_train(m, &d, &o, &res));
    CHECK_MSG(!files_equal(a, r), "the averaged checkpoint equals the raw one");
    /* a resume with another decay is refused; 1 is out of range */
    o = small_opts(b, 5);
    o.resume = 1, o.ema = 0.5f;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o = small_opts(b, 1);
    o.ema = 1.0f;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    trm_model_free(m);
    dr_data_free(&d);
}

/* sc[i] = F[i] . u for the V rows of F [V, dim], summed in double. */
static void brute_scores(const float *F, const float *u, int V, int dim, float *sc) {
    for (int i = 0; i < V; i++) {
        double acc = 0;
        for (int j = 0; j < dim; j++) acc += (double)F[(size_t)i * dim + j] * u[j];
        sc[i] = (float)acc;
    }
}

/* The validation sample: none on small data (auto, 0, or more than there are), else a fixed
 * draw of distinct users that have a valid target, in dataset order, the same on every call. */
TEST(trm_valid_sample_is_fixed) {
    dr_dataset d;
    make_synth(&d, 300, 60, 2, 12, 6, 0.2); /* lengths from 2: some users have no valid target */
    int32_t *u, *v;
    int n, nv;
    for (int want = TRM_VALID_USERS_AUTO; want <= 0; want++) {
        CHECK_OK(trm__valid_users(&d, want, &u, &n));
        CHECK(u == NULL && n == 0);
    }
    CHECK_OK(trm__valid_users(&d, d.n_users, &u, &n));
    CHECK(u == NULL);
    CHECK_ERR(trm__valid_users(&d, -2, &u, &n), DR_ERR_ARG);
    CHECK_OK(trm__valid_users(&d, 50, &u, &n));
    CHECK_OK(trm__valid_users(&d, 50, &v, &nv));
    CHECK(u && v);
    CHECK_EQ_INT(n, 50);
    CHECK_EQ_INT(nv, 50);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(u[i], v[i]);
        CHECK(dr_data_has_split(&d, u[i]));
        if (i) CHECK(u[i] > u[i - 1]);
    }
    /* a larger sample draws from the same shuffle: it holds the smaller one */
    int32_t *w;
    int nw;
    CHECK_OK(trm__valid_users(&d, 120, &w, &nw));
    CHECK_EQ_INT(nw, 120);
    for (int i = 0, j = 0; i < n; i++) {
        while (j < nw && w[j] < u[i]) j++;
        CHECK(j < nw && w[j] == u[i]);
    }
    free(u);
    free(v);
    free(w);
    dr_data_free(&d);
}

/* Validation on the sample is the full-ranking metric of exactly those users, computed here one
 * user at a time: user vector, scores over the catalog, rank with the history masked. */
TEST(trm_evaluate_users_equals_direct) {
    dr_dataset d;
    make_synth(&d, 200, 80, 3, 14, 7, 0.3);
    int32_t *users;
    int n;
    CHECK_OK(trm__valid_users(&d, 37, &users, &n));
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        trm_model *m;
        dr_metrics_mean got, want;
        CHECK_OK(trm_model_new(&m, &c, &d, 5));
        CHECK_OK(trm__evaluate_users(m, &d, 0, 1, 0, users, n, NULL, &got));
        trm_session *s;
        CHECK_OK(trm_session_new(&s, m));
        const float *F = trm_item_embeddings(m);
        float *sc = malloc((size_t)(d.n_items + 1) * sizeof(float)), u[16];
        dr_metrics acc;
        dr_metrics_init(&acc);
        for (int i = 0; i < n; i++) {
            const int32_t *pre;
            int64_t pl;
            int32_t t = dr_data_valid(&d, users[i], &pre, &pl);
            CHECK_OK(trm_user_vector(s, pre, pl, NULL, u));
            brute_scores(F, u, d.n_items + 1, c.dim, sc);
            dr_metrics_add_rank(&acc, dr_metrics_rank(sc, d.n_items, t, pre, pl));
        }
        dr_metrics_finish(&acc, &want);
        CHECK_EQ_INT((int)got.n, n);
        CHECK_EQ_INT((int)want.n, n);
        for (int k = 0; k < DR_METRIC_NK; k++) {
            CHECK_NEAR(got.ndcg[k], want.ndcg[k], 1e-12);
            CHECK_NEAR(got.recall[k], want.recall[k], 1e-12);
        }
        CHECK_NEAR(got.mrr, want.mrr, 1e-12);
        int32_t bad = d.n_users;
        CHECK_ERR(trm__evaluate_users(m, &d, 0, 1, 0, &bad, 1, NULL, &got), DR_ERR_ARG);
        free(sc);
        trm_session_free(s);
        trm_model_free(m);
    }
    free(users);
    dr_data_free(&d);
}

/* Training with a validation sample: every epoch validates the same users (the metrics file
 * says how many), the best valid NDCG@10 is that of the best checkpoint on the sample, a resumed
 * run equals an uninterrupted one, and a resume with another --valid-users is refused. */
TEST(trm_train_valid_sample_fixed_across_resume) {
    dr_dataset d;
    char a[512], b[512];
    resume_equals_uninterrupted(&d, "sample", 40, 0.0f, a, b);
    /* every line of the metrics: 40 validation users */
    char mp[600], *txt;
    size_t nt;
    snprintf(mp, sizeof mp, "%s.metrics.jsonl", a);
    CHECK_OK(dr_read_file(mp, &txt, &nt));
    int hits = 0;
    for (char *p = txt; (p = strstr(p, "\"users\":40}")); p++) hits++;
    free(txt);
    CHECK_EQ_INT(hits, 4);
    /* the best on the sample is the best checkpoint's metric on those users */
    int32_t *users;
    int n;
    CHECK_OK(trm__valid_users(&d, 40, &users, &n));
    trm_model *m;
    CHECK_OK(trm_load(&m, a));
    dr_metrics_mean mm;
    CHECK_OK(trm__evaluate_users(m, &d, 0, 1, 0, users, n, NULL, &mm));
    trm_model_free(m);
    free(users);
    snprintf(mp, sizeof mp, "%s.metrics.jsonl", a);
    CHECK_OK(dr_read_file(mp, &txt, &nt));
    char want[64];
    snprintf(want, sizeof want, "\"best_valid_ndcg@10\":%.17g", mm.ndcg[dr_metrics_k_index(10)]);
    CHECK_MSG(strstr(txt, want) != NULL, "metrics lack %s", want);
    free(txt);
    /* resuming the finished state with all users: refused, its best was on the sample */
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    CHECK_OK(trm_model_new(&m, &c, &d, 4));
    trm_train_opts o = small_opts(b, 4);
    o.resume = 1;
    o.valid_users = 0;
    trm_train_result res;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(trm_retrieve_matches_bruteforce) {
    dr_dataset d;
    make_synth(&d, 50, 300, 5, 12, 3, 0.3);
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        trm_model *m;
        CHECK_OK(trm_model_new(&m, &c, &d, 5));
        trm_session *s;
        CHECK_OK(trm_session_new(&s, m));
        const float *F = trm_item_embeddings(m);
        int V = d.n_items + 1, dim = c.dim;
        float u[64];
        float *sc = malloc((size_t)V * sizeof(float));
        int32_t hist[8] = {5, 17, 33, 5, 100, 250, 7, 12};
        const char *pref = model ? "comedy ; dark night" : NULL;
        CHECK_OK(trm_user_vector(s, hist, 8, pref, u));
        {
            float uf[64];
            CHECK_OK(trm_debug_user_vector_full(s, hist, 8, pref, uf));
            for (int j = 0; j < dim; j++) CHECK_NEAR(u[j], uf[j], 1e-5); /* last-row inference == full forward */
        }
        for (int mask = 0; mask < 2; mask++) {
            brute_scores(F, u, V, dim, sc);
            /* brute force: sort all candidates */
            int32_t *all = malloc((size_t)V * sizeof(int32_t));
            int na = 0;
            for (int i = 1; i < V; i++) {
                int skip = 0;
                for (int h = 0; h < 8 && mask; h++) skip |= hist[h] == i;
                if (!skip) all[na++] = i;
            }
            for (int i = 0; i < na; i++)
                for (int j = i + 1; j < na; j++)
                    if (sc[all[j]] > sc[all[i]] || (sc[all[j]] == sc[all[i]] && all[j] < all[i])) {
                        int32_t t = all[i];
                        all[i] = all[j];
                        all[j] = t;
                    }
            int32_t ids[20];
            float ss[20];
            int n;
            CHECK_OK(trm_retrieve(s, hist, 8, pref, 20, mask, ids, ss, &n));
            CHECK_EQ_INT(n, 20);
            for (int i = 0; i < 20; i++) {
                /* ids equal, or tie within float noise of the sgemv */
                if (ids[i] != all[i]) CHECK_NEAR(sc[ids[i]], sc[all[i]], 1e-5);
                CHECK_NEAR(ss[i], sc[all[i]], 1e-4);
            }
            free(all);
        }
        /* k larger than the catalog */
        int32_t *ids = malloc((size_t)V * 2 * sizeof(int32_t));
        float *ss = malloc((size_t)V * 2 * sizeof(float));
        int n;
        CHECK_OK(trm_retrieve(s, hist, 8, pref, V * 2, 1, ids, ss, &n));
        CHECK_EQ_INT(n, d.n_items - 7);
        for (int i = 1; i < n; i++) CHECK(ss[i] <= ss[i - 1]);
        /* empty history works */
        CHECK_OK(trm_retrieve(s, NULL, 0, pref, 5, 1, ids, ss, &n));
        CHECK_EQ_INT(n, 5);
        if (model) {
            float e1[64], e2[64];
            CHECK_OK(trm_text_embedding(m, "Dark Night", e1));
            CHECK_OK(trm_text_embedding(m, "dark night!", e2));
            for (int j = 0; j < dim; j++) CHECK(e1[j] == e2[j]);
        } else {
            float e1[64];
            CHECK_ERR(trm_text_embedding(m, "x", e1), DR_ERR_UNSUPPORTED);
        }
        free(ids);
        free(ss);
        free(sc);
        trm_session_free(s);
        trm_model_free(m);
    }
    dr_data_free(&d);
}

/* One training step (forward with dropout, backward) on activations from `alloc`; returns the
 * user vectors [N, d] (malloc'd) so that two allocations can be compared. */
static float *train_step(trm_model *m, trm_acts *a, const trm_config *c) {
    int32_t s0[12] = {3, 9, 27, 81, 5, 15, 45, 135, 7, 21, 63, 189}, s1[3] = {2, 4, 8}, s2[1] = {11};
    int32_t *seqs[3] = {s0, s1, s2};
    int64_t lens[3] = {12, 3, 1};
    trm__fill_batch(m, a, 3, 0, seqs, lens);
    a->train = 1;
    dr_rng_seed(&a->rng, 7);
    if (c->model == TRM_PREF)
        for (int b = 0; b < 3; b++) CHECK(trm__set_last_pref(m, a, b, "comedy ; dark night star") > 0);
    const float *U = trm__forward(m, a);
    size_t nd = (size_t)a->N * c->dim;
    float *out = malloc(nd * sizeof(float));
    memcpy(out, U, nd * sizeof(float));
    for (size_t i = 0; i < nd; i++) a->dU[i] = 0.01f * (float)(i % 7) - 0.03f;
    float *grad = calloc(m->n_params, sizeof(float));
    size_t vd = (size_t)m->V * c->dim;
    float *dF = calloc(vd, sizeof(float)), *dbag = calloc(vd, sizeof(float));
    trm_params g;
    trm__bind(m, grad, &g);
    trm__backward(m, a, &g, dF, dbag);
    free(grad);
    free(dF);
    free(dbag);
    return out;
}

/* Training forward (dropout 0.5) of sequences [s0, s0 + B) of `seqs`, padded to length L, as
 * sequences [s0, s0 + B) of the whole batch; copies the dropout masks (embedding and each
 * layer's three sites, in that order) and the user vectors out. */
typedef struct {
    uint8_t *mask;
    float *u;
} fwd_out;

static fwd_out forward_rows(trm_model *m, trm_acts *a, int32_t *const *seqs, const int64_t *lens, int s0, int B,
                            int L) {
    const trm_config *c = &m->cfg;
    trm__fill_batch(m, a, B, L, seqs + s0, lens + s0);
    a->train = 1;
    a->seq0 = s0;
    dr_rng_seed(&a->rng, 7);
    const float *U = trm__forward(m, a);
    size_t nd = (size_t)a->N * c->dim, nf = (size_t)a->N * c->ffn_dim;
    fwd_out o = {malloc(nd + (size_t)c->layers * (2 * nd + nf)), malloc(nd * sizeof(float))};
    uint8_t *p = o.mask;
    memcpy(p, a->emb_mask, nd), p += nd;
    for (int l = 0; l < c->layers; l++) {
        memcpy(p, a->l[l].attn_out_mask, nd), p += nd;
        memcpy(p, a->l[l].ffn_act_mask, nf), p += nf;
        memcpy(p, a->l[l].ffn_out_mask, nd), p += nd;
    }
    memcpy(o.u, U, nd * sizeof(float));
    return o;
}

/* Dropout masks are a function of the step's stream, the sequence's index in the whole batch
 * and the position in its activations: sequences [5, 23) of a batch of 32, run alone as a
 * shard (seq0 = 5), get bitwise the whole batch's masks for those sequences, and user vectors
 * equal within 1e-5 relative (their attention masks too); the whole batch's masks do not depend
 * on the thread count (the batch is large enough for the parallel loops). */
TEST(trm_dropout_masks_by_global_sequence) {
    dr_dataset d;
    make_synth(&d, 10, 60, 5, 12, 3, 0.3);
    trm_config c;
    trm_config_default(&c); /* dropout 0.5, dim 64 */
    c.layers = 2;
    c.max_len = 20;
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 5));
    c = m->cfg; /* ffn_dim resolved */
    enum { B = 32, L = 20, S0 = 5, S1 = 23 };
    int32_t buf[B][25], *seqs[B];
    int64_t lens[B];
    dr_rng g;
    dr_rng_seed(&g, 21);
    for (int b = 0; b < B; b++) {
        lens[b] = 1 + (int64_t)dr_rng_below(&g, 25);
        for (int t = 0; t < lens[b]; t++) buf[b][t] = 1 + (int32_t)dr_rng_below(&g, (uint64_t)c.n_items);
        seqs[b] = buf[b];
    }
    trm_acts a;
    CHECK_OK(trm__acts_alloc(&a, m, B));
    const size_t nd = (size_t)L * c.dim, nf = (size_t)L * c.ffn_dim; /* one sequence at a site */
    const size_t per_seq = nd + (size_t)c.layers * (2 * nd + nf), nmask = (size_t)B * per_seq;
    dr_threads_set(1);
    fwd_out one = forward_rows(m, &a, seqs, lens, 0, B, L);
    dr_threads_set(3);
    fwd_out all = forward_rows(m, &a, seqs, lens, 0, B, L);
    fwd_out sub = forward_rows(m, &a, seqs, lens, S0, S1 - S0, L);
    dr_threads_init();
    CHECK(memcmp(one.mask, all.mask, nmask) == 0);
    CHECK(rel_diff(one.u, all.u, (size_t)B * nd) <= 1e-5);
    size_t kept = 0;
    for (size_t i = 0; i < nmask; i++) kept += one.mask[i];
    CHECK_NEAR((double)kept / (double)nmask, 0.5, 0.01);
    /* the shard's masks are sites of (S1 - S0) sequences; the whole batch's sites of B */
    const size_t site_len[4] = {nd, nd, nf, nd};
    size_t off_all = 0, off_sub = 0, bad = 0;
    for (int site = 0; site < 1 + 3 * c.layers; site++) {
        size_t n = site_len[site == 0 ? 0 : 1 + (site - 1) % 3];
        bad += memcmp(all.mask + off_all + (size_t)S0 * n, sub.mask + off_sub, (size_t)(S1 - S0) * n) != 0;
        off_all += (size_t)B * n;
        off_sub += (size_t)(S1 - S0) * n;
    }
    CHECK_MSG(bad == 0, "%zu dropout sites of the shard differ from the whole batch's", bad);
    double r = rel_diff(all.u + (size_t)S0 * nd, sub.u, (size_t)(S1 - S0) * nd);
    CHECK_MSG(r <= 1e-5, "shard user vectors differ by %g relative", r);
    /* numbered from 0 the same sequences get other masks */
    fwd_out own = forward_rows(m, &a, seqs + S0, lens + S0, 0, S1 - S0, L);
    CHECK(memcmp(all.mask + (size_t)S0 * nd, own.mask, (size_t)(S1 - S0) * nd) != 0);
    free(one.mask), free(one.u), free(all.mask), free(all.u), free(sub.mask), free(sub.u), free(own.mask),
        free(own.u);
    trm__acts_free(&a);
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(trm_acts_no_overrun) {
    dr_dataset d;
    make_synth(&d, 20, 200, 5, 12, 3, 0.3);
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        c.layers = 2;
        trm_model *m;
        CHECK_OK(trm_model_new(&m, &c, &d, 5));
        trm_acts plain, guarded;
        CHECK_OK(trm__acts_alloc(&plain, m, 4));
        CHECK_OK(trm__acts_alloc_guarded(&guarded, m, 4, 64, 0));
        float *u0 = train_step(m, &plain, &c), *u1 = train_step(m, &guarded, &c);
        CHECK_OK(trm__acts_check(&guarded, m));
        /* the sentinels change nothing a step computes */
        CHECK(memcmp(u0, u1, (size_t)plain.N * c.dim * sizeof(float)) == 0);
        /* and the check sees one element written past a buffer */
        guarded.l[1].q[(size_t)guarded.Ncap * c.dim] = 0.0f;
        CHECK_ERR(trm__acts_check(&guarded, m), DR_ERR_INTERNAL);
        CHECK(strstr(dr_error_message(), "l[1].q"));
        free(u0);
        free(u1);
        /* an inference workspace (without training's buffers): the last-row and the full forward,
         * pre- and post-LN, stay inside it and give the user vectors of the full workspace */
        for (int post = 0; post < 2; post++) {
            m->cfg.post_ln = post;
            trm_acts inf;
            CHECK_OK(trm__acts_alloc_guarded(&inf, m, 4, 64, 1));
            for (int last = 0; last < 2; last++) {
                int32_t s0[5] = {3, 9, 27, 81, 5}, s1[2] = {2, 4}, *seqs[2] = {s0, s1};
                int64_t lens[2] = {5, 2};
                trm_acts *w[2] = {&plain, &inf};
                const float *u[2];
                for (int i = 0; i < 2; i++) {
                    trm__fill_batch(m, w[i], 2, 0, seqs, lens);
                    w[i]->train = 0;
                    w[i]->last_only = last;
                    u[i] = trm__forward(m, w[i]);
                }
                CHECK(memcmp(u[0], u[1], (size_t)(last ? 2 : 2 * 5) * c.dim * sizeof(float)) == 0);
                CHECK_OK(trm__acts_check(&inf, m));
            }
            trm__acts_free(&inf);
        }
        trm__acts_free(&plain);
        trm__acts_free(&guarded);
        trm_model_free(m);
    }
    dr_data_free(&d);
}

/* trm_train on a fresh model of c (seed 7). */
static int train_fresh(const trm_config *c, const dr_dataset *d, const trm_train_opts *o, trm_train_result *r) {
    trm_model *m;
    int rc = trm_model_new(&m, c, d, 7);
    if (!rc) rc = trm_train(m, d, o, r);
    trm_model_free(m);
    return rc;
}

/* --refit: the early-stopped run is what a plain run gives (OUT.early.gguf), and OUT is that
 * run's best epoch count trained from the same initial weights on all but the test items. The
 * refit's loss is the plain loss on a dataset whose sequences end in one more item, so that
 * their train part is all but each user's last real item; members of an ensemble refit each. */
TEST(trm_refit_trains_on_the_validation_items) {
    dr_dataset d;
    make_synth(&d, 40, 30, 4, 10, 6, 0.3);
    /* the same users with one item appended: their train part is the original's all-but-test */
    dr_dataset d2 = d;
    d2.offsets = malloc(((size_t)d.n_users + 1) * sizeof(int64_t));
    d2.items = malloc(((size_t)d.n_inter + (size_t)d.n_users) * sizeof(int32_t));
    d2.offsets[0] = 0;
    for (int32_t u = 0; u < d.n_users; u++) {
        int64_t n = dr_data_seq_len(&d, u);
        memcpy(d2.items + d2.offsets[u], dr_data_seq(&d, u), (size_t)n * sizeof(int32_t));
        d2.items[d2.offsets[u] + n] = 1;
        d2.offsets[u + 1] = d2.offsets[u] + n + 1;
    }
    d2.n_inter = d2.offsets[d.n_users];
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 7));
    trm_train_opts o = small_opts("unused", 1);
    int32_t users[6] = {1, 2, 3, 5, 8, 13};
    size_t np;
    trm_debug_params(m, &np);
    float *g1 = malloc(np * sizeof(float)), *g2 = malloc(np * sizeof(float));
    double l1, l2, l0;
    o.fit_valid = 1;
    CHECK_OK(trm_debug_loss_grad(m, &d, &o, users, 6, 42, &l1, g1));
    o.fit_valid = 0;
    CHECK_OK(trm_debug_loss_grad(m, &d2, &o, users, 6, 42, &l2, g2));
    CHECK_OK(trm_debug_loss_grad(m, &d, &o, users, 6, 42, &l0, g1 + 0));
    CHECK(l1 == l2);
    CHECK(l0 != l1);
    free(g1);
    free(g2);
    trm_model_free(m);
    free(d2.offsets);
    free(d2.items);

    const char *dir = dr_test_tmpdir();
    char pr[512], pe[512], pp[512], pf[512];
    snprintf(pr, sizeof pr, "%s/refit.gguf", dir);
    snprintf(pe, sizeof pe, "%s/refit.gguf.early.gguf", dir);
    snprintf(pp, sizeof pp, "%s/plain.gguf", dir);
    snprintf(pf, sizeof pf, "%s/fit.gguf", dir);
    trm_train_result r, rp, rf;
    o = small_opts(pr, 6);
    o.patience = 2;
    o.refit = 1;
    CHECK_OK(train_fresh(&c, &d, &o, &r));
    CHECK(r.best_epoch >= 1 && r.refit_epochs == r.best_epoch);
    o.out = pp;
    o.refit = 0;
    CHECK_OK(train_fresh(&c, &d, &o, &rp));
    CHECK_EQ_INT(rp.best_epoch, r.best_epoch);
    CHECK(rp.best_valid_ndcg10 == r.best_valid_ndcg10);
    CHECK(files_equal(pe, pp));
    o.out = pf;
    o.fit_valid = 1;
    o.epochs = r.best_epoch;
    o.patience = 0;
    CHECK_OK(train_fresh(&c, &d, &o, &rf));
    CHECK_EQ_INT(rf.epochs_run, r.best_epoch);
    CHECK(files_equal(pr, pf));
    CHECK(!files_equal(pr, pe));
    /* a resumed refit that had finished changes nothing */
    o = small_opts(pr, 6);
    o.patience = 2;
    o.refit = 1;
    o.resume = 1;
    CHECK_OK(train_fresh(&c, &d, &o, &rp));
    CHECK(files_equal(pr, pf));
    /* an ensemble of two refits each member and gives no validation figure */
    char pens[512], pm1[512], pm1e[512];
    snprintf(pens, sizeof pens, "%s/ens_refit.gguf", dir);
    snprintf(pm1, sizeof pm1, "%s/ens_refit.gguf.member-1.gguf", dir);
    snprintf(pm1e, sizeof pm1e, "%s/ens_refit.gguf.member-1.gguf.early.gguf", dir);
    o = small_opts(pens, 6);
    o.patience = 2;
    o.refit = 1;
    c.ensemble = 2;
    CHECK_OK(train_fresh(&c, &d, &o, &r));
    CHECK(r.best_valid_ndcg10 == -1 && r.refit_epochs >= 1);
    CHECK(dr_file_exists(pm1) && dr_file_exists(pm1e));
    /* refit and fit_valid together are refused */
    c.ensemble = 0;
    o.fit_valid = 1;
    o.out = pr;
    CHECK(train_fresh(&c, &d, &o, &r) != DR_OK);
    dr_data_free(&d);
}

/* With LiGR gates, inference's last-row forward gives the full forward's last rows. */
TEST(trm_gate_last_row_forward) {
    dr_dataset d;
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    c.layers = 2;
    c.gate = 1;
    trm_model *m = enlarged_model(&c, &d, 4);
    trm_acts w;
    CHECK_OK(trm__acts_alloc_guarded(&w, m, 4, 64, 1));
    int32_t s0[5] = {3, 9, 2, 7, 5}, s1[2] = {2, 4}, *seqs[2] = {s0, s1};
    int64_t lens[2] = {5, 2};
    float *full = malloc((size_t)2 * c.max_len * c.dim * sizeof(float));
    trm__fill_batch(m, &w, 2, 0, seqs, lens);
    w.train = 0;
    w.last_only = 0;
    memcpy(full, trm__forward(m, &w), (size_t)2 * w.L * c.dim * sizeof(float));
    int L = w.L;
    trm__fill_batch(m, &w, 2, 0, seqs, lens);
    w.train = 0;
    w.last_only = 1;
    const float *last = trm__forward(m, &w);
    double maxd = 0;
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < c.dim; j++) {
            double e = fabs(last[(size_t)b * c.dim + j] - full[((size_t)b * L + L - 1) * c.dim + j]);
            maxd = e > maxd ? e : maxd;
        }
    CHECK_MSG(maxd < 1e-5, "last-row forward off by %g", maxd);
    CHECK_OK(trm__acts_check(&w, m));
    free(full);
    trm__acts_free(&w);
    trm_model_free(m);
    dr_data_free(&d);
}

/* A single-user call narrows OpenMP to the calling thread only while it runs. */
TEST(trm_retrieve_keeps_thread_count) {
#ifdef _OPENMP
    dr_dataset d;
    make_synth(&d, 10, 50, 5, 8, 3, 0.3);
    trm_config c;
    small_cfg(&c, TRM_PREF);
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 5));
    trm_session *s;
    CHECK_OK(trm_session_new(&s, m));
    int before = omp_get_max_threads();
    omp_set_num_threads(3);
    int32_t hist[3] = {4, 5, 6}, ids[5];
    float sc[5], u[16];
    int n;
    CHECK_OK(trm_retrieve(s, hist, 3, "comedy", 5, 1, ids, sc, &n));
    CHECK_EQ_INT(omp_get_max_threads(), 3);
    CHECK_OK(trm_user_vector(s, hist, 3, NULL, u));
    CHECK_EQ_INT(omp_get_max_threads(), 3);
    omp_set_num_threads(before);
    trm_session_free(s);
    trm_model_free(m);
    dr_data_free(&d);
#else
    SKIP("built without OpenMP");
#endif
}

TEST(trm_topk_ties_and_mask) {
    float sc[8] = {9, 1, 3, 3, 0, 3, 2, 7};
    uint8_t mask[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    int32_t ids[8];
    float s[8];
    int n = trm_topk(sc, 7, mask, 4, ids, s);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(ids[0], 2);
    CHECK_EQ_INT(ids[1], 3);
    CHECK_EQ_INT(ids[2], 5);
    CHECK_EQ_INT(ids[3], 6);
}

/* Best first: higher score, then smaller id. */
static int better(float sa, int32_t ia, float sb, int32_t ib) { return sa > sb || (sa == sb && ia < ib); }

/* The selection fed in blocks of any size (the batched retrieval feeds 1,024 at a time, and the
 * skip test looks at 16 at once) equals a brute-force sort: many ties, NaNs (masked in the batch),
 * a mask array, k above and below the number of candidates, blocks that cut runs of ties. */
TEST(trm_topk_blocks_equal_bruteforce) {
    enum { N = 700 };
    float sc[N + 1];
    uint8_t mask[N + 1];
    dr_rng r;
    dr_rng_seed(&r, 5);
    for (int round = 0; round < 40; round++) {
        const int levels = 1 + round % 9; /* few distinct values: many ties */
        for (int i = 0; i <= N; i++) {
            sc[i] = (float)dr_rng_below(&r, (uint64_t)levels) + (round % 3 == 0 ? (float)i * 1e-3f : 0.0f);
            if (dr_rng_below(&r, 20) == 0) sc[i] = NAN;
            mask[i] = dr_rng_below(&r, 10) == 0;
        }
        const int k = 1 + (int)dr_rng_below(&r, round % 4 == 0 ? 2 * N : 40);
        const uint8_t *mk = round % 2 ? mask : NULL;
        /* brute force: every candidate, selection sort of the best k */
        static int32_t want[N];
        int nw = 0;
        for (int i = 1; i <= N; i++)
            if (sc[i] == sc[i] && !(mk && mk[i])) want[nw++] = i;
        for (int a = 0; a < nw && a < k; a++)
            for (int b = a + 1; b < nw; b++)
                if (better(sc[want[b]], want[b], sc[want[a]], want[a])) {
                    int32_t t = want[a];
                    want[a] = want[b];
                    want[b] = t;
                }
        if (nw > k) nw = k;
        static int32_t ids[2 * N];
        static float out[2 * N];
        int n = trm_topk(sc, N, mk, k, ids, out);
        CHECK_EQ_INT(n, nw);
        for (int i = 0; i < n && i < nw; i++) {
            CHECK_EQ_INT(ids[i], want[i]);
            CHECK(out[i] == sc[want[i]]);
        }
        trm_topk_acc t;
        trm__topk_init(&t, k, ids, out);
        for (int i0 = 1; i0 <= N;) {
            int nb = 1 + (int)dr_rng_below(&r, 70);
            if (i0 + nb > N + 1) nb = N + 1 - i0;
            trm__topk_push(&t, sc + i0, i0, nb, mk);
            i0 += nb;
        }
        CHECK_EQ_INT(trm__topk_finish(&t), nw);
        for (int i = 0; i < nw; i++) CHECK_EQ_INT(ids[i], want[i]);
    }
}

/* The batched top-k equals one-at-a-time retrieval for every user: mixed lengths (so rows are
 * padded), an empty history, a history longer than max_len, preferences on some users only,
 * masked and unmasked, across group boundaries (64 users) and item blocks (1,024 items). */
TEST(trm_retrieve_batch_matches_single) {
    dr_dataset d;
    make_synth(&d, 40, 2100, 5, 12, 4, 0.3);
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        trm_model *m;
        CHECK_OK(trm_model_new(&m, &c, &d, 9));
        trm_session *s;
        CHECK_OK(trm_session_new(&s, m));
        enum { NU = 300, K = 15 };
        static int32_t pool[NU][40];
        const int32_t *hists[NU];
        int64_t lens[NU];
        const char *prefs[NU];
        const char *texts[] = {"comedy ; dark night", "", "space war", NULL};
        dr_rng r;
        dr_rng_seed(&r, 11);
        for (int u = 0; u < NU; u++) {
            lens[u] = u == 7 ? 0 : u % 5 == 0 ? 40 : 1 + (int64_t)dr_rng_below(&r, 12);
            for (int i = 0; i < lens[u]; i++) pool[u][i] = 1 + (int32_t)dr_rng_below(&r, (uint64_t)d.n_items);
            hists[u] = pool[u];
            prefs[u] = texts[u % 4];
        }
        for (int mask = 0; mask < 2; mask++) {
            static int32_t bids[NU * K];
            static float bsc[NU * K];
            int bn[NU];
            trm_batch *tb;
            CHECK_OK(trm_batch_new(&tb, m, mask ? 64 : NU)); /* 64: several chunks */
            CHECK_OK(trm_retrieve_batch(tb, NU, hists, lens, prefs, K, mask, bids, bsc, bn));
            trm_batch_free(tb);
            for (int u = 0; u < NU; u++) {
                int32_t ids[K];
                float sc[K];
                int n;
                CHECK_OK(trm_retrieve(s, hists[u], lens[u], prefs[u], K, mask, ids, sc, &n));
                CHECK_EQ_INT(bn[u], n);
                for (int i = 0; i < n; i++) {
                    CHECK_NEAR(bsc[u * K + i], sc[i], 1e-4);
                    /* the same item, or a near-tie whose order rounding may swap */
                    if (bids[u * K + i] != ids[i]) CHECK_NEAR(sc[i], i + 1 < n ? sc[i + 1] : sc[i - 1], 1e-4);
                }
            }
        }
        trm_batch *tb;
        CHECK_ERR(trm_batch_new(&tb, m, 0), DR_ERR_ARG);
        CHECK_OK(trm_batch_new(&tb, m, 1));
        CHECK_ERR(trm_retrieve_batch(tb, 1, hists, lens, prefs, 0, 1, NULL, NULL, (int[1]){0}), DR_ERR_ARG);
        trm_batch_free(tb);
        trm_session_free(s);
        trm_model_free(m);
    }
    dr_data_free(&d);
}

TEST(trm_text_hash) {
    uint32_t a[16], b[16];
    int na = trm_text_hash("Sci-Fi; Dark", 1u << 18, a, 16);
    int nb = trm_text_hash("sci fi dark", 1u << 18, b, 16);
    CHECK_EQ_INT(na, 5); /* sci, sci fi, fi, fi dark, dark */
    CHECK_EQ_INT(nb, 5);
    for (int i = 0; i < na; i++) CHECK(a[i] == b[i] && a[i] < (1u << 18));
    CHECK_EQ_INT(trm_text_hash("", 100, a, 16), 0);
    CHECK_EQ_INT(trm_text_hash(" ;; ", 100, a, 16), 0);
    CHECK_EQ_INT(trm_text_hash("a b c d e f g h i j", 100, a, 4), 4);
    /* FNV-1a 32 of "a" */
    CHECK(trm_fnv1a("a", 1, 0) == 0xe40c292cu);
}

TEST(trm_save_load_roundtrip) {
    dr_dataset d;
    make_synth(&d, 30, 20, 5, 9, 3, 0.3);
    const char *dir = dr_test_tmpdir();
    const char *p = dr_test_path(dir, "m.gguf");
    for (int k = 0; k < 4; k++) {
        int model = k == 3 ? TRM_PREF : k & 1;
        trm_config c;
        small_cfg(&c, model);
        c.post_ln = model;
        c.emb_ln = k == 2; /* the embedding LayerNorm's flag and tensors go through the file */
        c.gate = k == 2;   /* and the LiGR gates' */
        c.text_experts = k == 3 ? 3 : 0; /* the text model's experts and gate too */
        trm_model *m, *m2;
        CHECK_OK(trm_model_new(&m, &c, &d, 5));
        CHECK_OK(trm_save(m, p));
        CHECK_OK(trm_load(&m2, p));
        CHECK(trm_num_params(m) == trm_num_params(m2));
        CHECK(memcmp(trm_model_config(m), trm_model_config(m2), sizeof(trm_config)) == 0);
        dr_metrics_mean a, b;
        CHECK_OK(trm_evaluate(m, &d, 1, 1, 1, &a));
        CHECK_OK(trm_evaluate(m2, &d, 1, 1, 1, &b));
        CHECK(a.n == b.n && a.n > 0);
        CHECK_NEAR(a.ndcg[2], b.ndcg[2], 1e-12);
        trm_model_free(m);
        trm_model_free(m2);
    }
    CHECK_ERR(trm_load(&(trm_model *){0}, dr_test_path(dir, "missing.gguf")), DR_ERR_IO);
    dr_data_free(&d);
}

/* An ensemble of two: each member is the model its seed trains alone (its own file), the user
 * vector and the item table are the members' side by side, retrieval and evaluation rank by
 * the members' summed scores, the file keeps all of it, a start from a SASRec starts every
 * member from it, and what is not built is refused. */
TEST(trm_ensemble_is_its_members_summed) {
    dr_dataset d;
    make_synth(&d, 120, 40, 3, 12, 4, 0.3);
    const char *dir = dr_test_tmpdir();
    char pe[512], p0[512], ps[512];
    snprintf(pe, sizeof pe, "%s/ens.gguf", dir);
    snprintf(p0, sizeof p0, "%s/ens.gguf.member-1.gguf", dir);
    snprintf(ps, sizeof ps, "%s/solo.gguf", dir);
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        c.ensemble = 2;
        trm_model *e, *m[2], *solo, *back;
        CHECK_OK(trm_model_new(&e, &c, &d, 7));
        CHECK_EQ_INT(trm_score_dim(e), 2 * c.dim);
        trm_train_opts o = small_opts(pe, 2);
        trm_train_result res;
        CHECK_OK(trm_train(e, &d, &o, &res));
        CHECK_EQ_INT(res.epochs_run, 4);
        /* member 1 is init seed 8 trained alone with training seed o.seed + 1 */
        c.ensemble = 0;
        CHECK_OK(trm_model_new(&solo, &c, &d, 8));
        trm_train_opts os = small_opts(ps, 2);
        os.seed = o.seed + 1; /* member k: init seed + k, training seed + k */
        trm_train_result rs;
        CHECK_OK(trm_train(solo, &d, &os, &rs));
        trm_model_free(solo);
        CHECK_MSG(files_equal(p0, ps), "member 1 differs from its seed trained alone (model %d)", model);
        snprintf(p0, sizeof p0, "%s/ens.gguf.member-0.gguf", dir);
        CHECK_OK(trm_load(&m[0], p0));
        snprintf(p0, sizeof p0, "%s/ens.gguf.member-1.gguf", dir);
        CHECK_OK(trm_load(&m[1], p0));
        CHECK(trm_num_params(e) == trm_num_params(m[0]) + trm_num_params(m[1]));
        /* side by side: user vectors and item rows */
        trm_session *se, *s0, *s1;
        CHECK_OK(trm_session_new(&se, e));
        CHECK_OK(trm_session_new(&s0, m[0]));
        CHECK_OK(trm_session_new(&s1, m[1]));
        const int V = d.n_items + 1, D = 2 * c.dim;
        const float *F = trm_item_embeddings(e), *F0 = trm_item_embeddings(m[0]), *F1 = trm_item_embeddings(m[1]);
        for (int i = 0; i < V; i++) {
            CHECK(!memcmp(F + (size_t)i * D, F0 + (size_t)i * c.dim, (size_t)c.dim * sizeof(float)));
            CHECK(!memcmp(F + (size_t)i * D + c.dim, F1 + (size_t)i * c.dim, (size_t)c.dim * sizeof(float)));
        }
        float u[32], ua[16], ub[16], *sc = malloc((size_t)V * sizeof(float));
        const char *pref = model == TRM_PREF ? "comedy night" : NULL;
        dr_metrics acc;
        dr_metrics_init(&acc);
        for (int32_t user = 0; user < d.n_users; user++) {
            const int32_t *pre;
            int64_t pl;
            int32_t t = dr_data_valid(&d, user, &pre, &pl);
            if (t <= 0 || pl <= 0) continue;
            CHECK_OK(trm_user_vector(se, pre, pl, pref, u));
            CHECK_OK(trm_user_vector(s0, pre, pl, pref, ua));
            CHECK_OK(trm_user_vector(s1, pre, pl, pref, ub));
            CHECK(!memcmp(u, ua, sizeof ua) && !memcmp(u + c.dim, ub, sizeof ub));
            brute_scores(F, u, V, D, sc);
            int32_t ids[10], want[10];
            float got[10], wsc[10];
            int n, nw;
            CHECK_OK(trm_retrieve(se, pre, pl, pref, 10, 1, ids, got, &n));
            uint8_t *masked = calloc((size_t)V, 1);
            for (int64_t j = 0; j < pl; j++) masked[pre[j]] = 1;
            nw = trm_topk(sc, d.n_items, masked, 10, want, wsc);
            free(masked);
            CHECK_EQ_INT(n, nw);
            for (int j = 0; j < n; j++) CHECK_NEAR(got[j], wsc[j], 1e-4);
            if (!pref) dr_metrics_add_rank(&acc, dr_metrics_rank(sc, d.n_items, t, pre, pl));
        }
        dr_metrics_mean direct, ev, loaded;
        CHECK_OK(trm_evaluate(e, &d, 0, 1, 0, &ev));
        dr_metrics_finish(&acc, &direct);
        if (model == TRM_SASREC) CHECK_NEAR(ev.ndcg[2], direct.ndcg[2], 1e-12);
        CHECK_NEAR(res.best_valid_ndcg10, ev.ndcg[2], 1e-12);
        if (model == TRM_PREF) {
            float te[32], t0[16], t1[16];
            CHECK_OK(trm_text_embedding(e, "comedy night", te));
            CHECK_OK(trm_text_embedding(m[0], "comedy night", t0));
            CHECK_OK(trm_text_embedding(m[1], "comedy night", t1));
            CHECK(!memcmp(te, t0, sizeof t0) && !memcmp(te + c.dim, t1, sizeof t1));
        }
        /* the file: the same configuration and the same evaluation */
        CHECK_OK(trm_load(&back, pe));
        CHECK_EQ_INT(trm_model_config(back)->ensemble, 2);
        CHECK(memcmp(trm_model_config(e), trm_model_config(back), sizeof(trm_config)) == 0);
        CHECK_OK(trm_evaluate(back, &d, 0, 1, 0, &loaded));
        CHECK_NEAR(loaded.ndcg[2], ev.ndcg[2], 1e-12);
        { /* batched retrieval: the same top-k as one user at a time (groups of 8: several) */
            enum { NB = 20, KB = 10 };
            const int32_t *hs[NB];
            int64_t ls[NB];
            const char *ps[NB];
            int32_t bids[NB * KB], ids[KB];
            float bsc[NB * KB], got[KB];
            int bn[NB], nb = 0, n;
            for (int32_t user = 0; user < d.n_users && nb < NB; user++)
                if (dr_data_valid(&d, user, &hs[nb], &ls[nb]) > 0) ps[nb] = nb % 2 ? pref : "", nb++;
            trm_batch *tb = NULL;
            CHECK_OK(trm_batch_new(&tb, e, 8));
            CHECK_OK(trm_retrieve_batch(tb, nb, hs, ls, ps, KB, 1, bids, bsc, bn));
            trm_batch_free(tb);
            for (int b = 0; b < nb; b++) {
                CHECK_OK(trm_retrieve(se, hs[b], ls[b], ps[b], KB, 1, ids, got, &n));
                CHECK_EQ_INT(bn[b], n);
                for (int j = 0; j < n; j++) {
                    CHECK_NEAR(bsc[b * KB + j], got[j], 1e-4);
                    if (bids[b * KB + j] != ids[j]) CHECK_NEAR(got[j], j + 1 < n ? got[j + 1] : got[j - 1], 1e-4);
                }
            }
        }
        free(sc);
        trm_session_free(se);
        trm_session_free(s0);
        trm_session_free(s1);
        trm_model_free(back);
        trm_model_free(m[0]);
        trm_model_free(m[1]);
        trm_model_free(e);
    }
    { /* a pref ensemble started from a SASRec: every member's items are the SASRec's */
        trm_config cs, cp;
        small_cfg(&cs, TRM_SASREC);
        small_cfg(&cp, TRM_PREF);
        cp.ensemble = 2;
        trm_model *src, *e;
        CHECK_OK(trm_model_new(&src, &cs, &d, 3));
        CHECK_OK(trm_model_new(&e, &cp, &d, 4));
        CHECK_OK(trm_model_init_from(e, src));
        const float *F = trm_item_embeddings(e), *S = trm_item_embeddings(src);
        for (int i = 0; i <= d.n_items; i++)
            for (int k = 0; k < 2; k++)
                CHECK(!memcmp(F + ((size_t)i * 2 + k) * cs.dim, S + (size_t)i * cs.dim, (size_t)cs.dim * sizeof(float)));
        CHECK_ERR(trm_model_init_from(src, e), DR_ERR_UNSUPPORTED);
        trm_model_free(src);
        trm_model_free(e);
    }
    trm_config c;
    small_cfg(&c, TRM_SASREC);
    c.ensemble = TRM_MAX_ENSEMBLE + 1;
    trm_model *x = NULL;
    CHECK_ERR(trm_model_new(&x, &c, &d, 1), DR_ERR_ARG);
    dr_data_free(&d);
}

/* popularity NDCG@10 on the test split, history masked */
static double popularity_ndcg(const dr_dataset *d) {
    int V = d->n_items + 1;
    float *sc = calloc((size_t)V, sizeof(float));
    for (int32_t u = 0; u < d->n_users; u++) {
        const int32_t *s;
        int64_t n = dr_data_train(d, u, &s);
        for (int64_t i = 0; i < n; i++) sc[s[i]] += 1;
    }
    dr_metrics acc;
    dr_metrics_init(&acc);
    for (int32_t u = 0; u < d->n_users; u++) {
        const int32_t *pre;
        int64_t pl;
        int32_t t = dr_data_test(d, u, &pre, &pl);
        if (t > 0) dr_metrics_add(&acc, sc, d->n_items, t, pre, pl);
    }
    dr_metrics_mean mm;
    dr_metrics_finish(&acc, &mm);
    free(sc);
    return mm.ndcg[2];
}

/* Split 2 (the last training item given the training items before it) is the test split of the
 * data without each user's last 2 items: the same users, the same ranks, the same metrics. */
TEST(trm_evaluate_train_split_is_test_of_truncated_data) {
    dr_dataset d, cut;
    make_synth(&d, 60, 120, 6, 14, 21, 0.3); /* >= 6 items: every user keeps a split after the cut */
    CHECK_OK(dr_data_drop_last(&d, 2, &cut));
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        trm_model *m;
        CHECK_OK(trm_model_new(&m, &c, &d, 3));
        dr_metrics_mean tr, te;
        CHECK_OK(trm_evaluate(m, &d, 2, 1, 0, &tr));
        CHECK_OK(trm_evaluate(m, &cut, 1, 1, 0, &te));
        CHECK_EQ_INT((int)tr.n, d.n_users);
        CHECK_EQ_INT((int)te.n, d.n_users);
        for (int k = 0; k < DR_METRIC_NK; k++) CHECK(tr.ndcg[k] == te.ndcg[k] && tr.recall[k] == te.recall[k]);
        CHECK(tr.mrr == te.mrr);
        trm_model_free(m);
    }
    dr_data_free(&cut);
    dr_data_free(&d);
}

TEST(trm_learns_beats_popularity) {
    dr_dataset d;
    make_synth(&d, 200, 40, 6, 14, 12, 0.15);
    const char *dir = dr_test_tmpdir();
    for (int model = 0; model < 2; model++) {
        trm_config c;
        small_cfg(&c, model);
        c.dim = 24;
        trm_model *m;
        CHECK_OK(trm_model_new(&m, &c, &d, 1));
        trm_train_opts o = small_opts(dr_test_path(dir, "m.gguf"), 10);
        o.lr = 1e-2f;
        o.patience = 4;
        trm_train_result res;
        CHECK_OK(trm_train(m, &d, &o, &res));
        dr_metrics_mean mm, mo;
        CHECK_OK(trm_evaluate(m, &d, 1, 1, 0, &mm));
        double pop = popularity_ndcg(&d);
        fprintf(stderr, "  model %d: test NDCG@10 %.3f (popularity %.3f), best epoch %d", model, mm.ndcg[2], pop,
                res.best_epoch);
        CHECK(mm.ndcg[2] > 2 * pop + 0.1);
        if (model == TRM_PREF) {
            CHECK_OK(trm_evaluate(m, &d, 1, 1, 1, &mo));
            fprintf(stderr, ", oracle pref %.3f", mo.ndcg[2]);
            CHECK(mo.ndcg[2] >= mm.ndcg[2] - 0.02);
        }
        fprintf(stderr, "\n");
        trm_model_free(m);
    }
    dr_data_free(&d);
}

TEST(trm_names_parse) {
    CHECK_EQ_INT(trm_model_kind_from_name("sasrec"), TRM_SASREC);
    CHECK_EQ_INT(trm_model_kind_from_name("pref"), TRM_PREF);
    CHECK_EQ_INT(trm_model_kind_from_name("bert4rec"), -1);
    CHECK_EQ_INT(trm_loss_from_name("ce"), TRM_LOSS_CE);
    CHECK_EQ_INT(trm_loss_from_name("sampled"), TRM_LOSS_SAMPLED);
    CHECK_EQ_INT(trm_loss_from_name("bce"), TRM_LOSS_BCE);
    CHECK_EQ_INT(trm_loss_from_name("CE"), -1);
    CHECK_EQ_INT(trm_act_from_name("gelu"), TRM_ACT_GELU);
    CHECK_EQ_INT(trm_act_from_name("relu"), TRM_ACT_RELU);
    CHECK_EQ_INT(trm_act_from_name(""), -1);
    CHECK_EQ_INT(trm_eval_split_from_name("valid"), 0);
    CHECK_EQ_INT(trm_eval_split_from_name("test"), 1);
    CHECK_EQ_INT(trm_eval_split_from_name("train"), 2);
    CHECK_EQ_INT(trm_eval_split_from_name("all"), -1);
}

/* A pref model started from a SASRec (trm_model_init_from) scores like it before any training:
 * the shared tensors are copied, the item-text projection is zeroed, so its item table is the
 * SASRec's and, with an empty preference, its user vector is the SASRec's passed through the
 * user LayerNorm (the identity up to eps on the fresh SASRec's unit-gain, zero-bias output). */
/* The text model started from a pref model: every expert is the pref model's projection, so the
 * item table is the pref model's (to rounding: the gate's weights sum to 1 in float); started
 * from a SASRec its experts are zero and its item table is the SASRec's exactly. */
TEST(trm_text_init_from_pref_and_sasrec) {
    dr_dataset d;
    make_synth(&d, 12, 10, 4, 9, 7, 0.3);
    trm_config cs, cp, ct;
    tiny_cfg(&cs, TRM_SASREC);
    tiny_cfg(&cp, TRM_PREF);
    ct = cp;
    ct.text_experts = 4;
    trm_model *s, *p, *t;
    CHECK_OK(trm_model_new(&s, &cs, &d, 5));
    CHECK_OK(trm_model_new(&p, &cp, &d, 6));
    CHECK_OK(trm_model_new(&t, &ct, &d, 7));
    int n = (d.n_items + 1) * cp.dim;
    CHECK_OK(trm_model_init_from(t, p));
    const float *Ep = trm_item_embeddings(p), *Et = trm_item_embeddings(t);
    double diff = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)Ep[i] - Et[i]));
        scale = fmax(scale, fabs((double)Ep[i]));
    }
    CHECK(scale > 0.05);
    CHECK_MSG(diff < 1e-6 * scale * 10, "text from pref: item table off by %g", diff);
    CHECK_OK(trm_model_init_from(t, s));
    const float *Es = trm_item_embeddings(s);
    Et = trm_item_embeddings(t);
    diff = 0;
    for (int i = 0; i < n; i++) diff = fmax(diff, fabs((double)Es[i] - Et[i]));
    CHECK(diff == 0);
    trm_model_free(s);
    trm_model_free(p);
    trm_model_free(t);
    dr_data_free(&d);
}

TEST(trm_pref_init_from_sasrec) {
    dr_dataset d;
    make_synth(&d, 12, 10, 4, 9, 7, 0.3);
    trm_config cs, cp;
    tiny_cfg(&cs, TRM_SASREC);
    tiny_cfg(&cp, TRM_PREF);
    trm_model *s, *p, *small;
    CHECK_OK(trm_model_new(&s, &cs, &d, 5));
    CHECK_OK(trm_model_new(&p, &cp, &d, 6));
    CHECK_OK(trm_model_init_from(p, s));
    int V = d.n_items + 1, dim = cs.dim;
    const float *Es = trm_item_embeddings(s), *Ep = trm_item_embeddings(p);
    double ediff = 0;
    for (int i = 0; i < V * dim; i++) ediff = fmax(ediff, fabs((double)Es[i] - Ep[i]));
    CHECK(ediff == 0);
    trm_session *ss, *sp;
    CHECK_OK(trm_session_new(&ss, s));
    CHECK_OK(trm_session_new(&sp, p));
    float us[16], up[16], upref[16];
    int32_t hist[5] = {3, 1, 7, 2, 9};
    CHECK_OK(trm_user_vector(ss, hist, 5, NULL, us));
    CHECK_OK(trm_user_vector(sp, hist, 5, "", up));
    CHECK_OK(trm_user_vector(sp, hist, 5, "Comedy", upref));
    /* the second LayerNorm rescales by 1/sqrt(var + eps) of an already normalised vector, a
     * factor just above 1, so compare directions and the ranking they give */
    double dot = 0, ns = 0, np = 0, pdiff = 0;
    for (int c = 0; c < dim; c++) {
        dot += (double)us[c] * up[c];
        ns += (double)us[c] * us[c];
        np += (double)up[c] * up[c];
        pdiff = fmax(pdiff, fabs((double)up[c] - upref[c]));
    }
    CHECK(dot / sqrt(ns * np) > 1 - 1e-6);
    CHECK(fabs(sqrt(np / ns) - 1) < 0.05);
    CHECK(pdiff > 1e-3); /* the preference channel is live from the start */
    int32_t ids_s[16], ids_p[16];
    float sc_s[16], sc_p[16];
    int ns_out = 0, np_out = 0;
    CHECK_OK(trm_retrieve(ss, hist, 5, NULL, d.n_items, 0, ids_s, sc_s, &ns_out));
    CHECK_OK(trm_retrieve(sp, hist, 5, "", d.n_items, 0, ids_p, sc_p, &np_out));
    CHECK(ns_out == d.n_items && np_out == d.n_items);
    for (int i = 0; i < ns_out; i++) CHECK(ids_s[i] == ids_p[i]);
    /* a model of another width cannot be started from it */
    trm_config cw = cp;
    cw.dim = 2 * cp.dim;
    cw.heads = cp.heads;
    CHECK_OK(trm_model_new(&small, &cw, &d, 7));
    CHECK(trm_model_init_from(small, s) != 0);
    trm_session_free(ss);
    trm_session_free(sp);
    trm_model_free(small);
    trm_model_free(s);
    trm_model_free(p);
    dr_data_free(&d);
}
