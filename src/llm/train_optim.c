/* LLM trainer: AdamW step with clipping and LR schedule, model export (LoRA merged),
 * optimizer-state checkpoints. */
#include "deeprec/gguf.h"
#include "deeprec/llm_train.h"
#include "deeprec/nn.h"
#include "llm_internal.h"
#include "train_internal.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void llm_train_zero_grad(llm_train *t) { memset(t->grads, 0, t->n_params * sizeof(float)); }

int llm_lr_sched_from_name(const char *s) {
    return !strcmp(s, "constant") ? LLM_SCHED_CONSTANT : !strcmp(s, "linear") ? LLM_SCHED_LINEAR
                                  : !strcmp(s, "cosine") ? LLM_SCHED_COSINE
                                                         : -1;
}

float llm_train_lr(const llm_train *t) {
    const llm_train_config *c = &t->tc;
    int64_t s = t->step;
    if (c->warmup_steps > 0 && s < c->warmup_steps) return c->lr * (float)(s + 1) / (float)c->warmup_steps;
    if (c->sched == LLM_SCHED_CONSTANT) return c->lr;
    int64_t span = c->total_steps - c->warmup_steps;
    if (span < 1) span = 1;
    double p = (double)(s - c->warmup_steps) / (double)span;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    double mr = c->min_lr_ratio;
    if (c->sched == LLM_SCHED_LINEAR) return (float)(c->lr * (1.0 - p * (1.0 - mr)));
    return (float)(c->lr * (mr + (1.0 - mr) * 0.5 * (1.0 + cos(M_PI * p))));
}

int llm_train_step(llm_train *t, float *grad_norm) {
    nn_buf all = {t->grads, t->n_params};
    float norm = nn_clip_grad_norm(&all, 1, t->tc.grad_clip);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) {
        llm_train_zero_grad(t);
        return dr_error(DR_ERR_RANGE, "non-finite gradient norm at step %lld: update skipped", (long long)t->step);
    }
    float lr = llm_train_lr(t);
    const llm_train_config *c = &t->tc;
    for (int i = 0; i < t->n_segs; i++) {
        const tseg *s = &t->segs[i];
        nn_adamw_step(t->params + s->off, t->grads + s->off, t->m + s->off, t->v + s->off, s->len, t->step + 1, lr,
                      c->beta1, c->beta2, c->eps, s->decay ? c->weight_decay : 0.0f);
    }
    t->step++;
    llm_train_zero_grad(t);
    /* a finite gradient with a huge learning rate can still overflow the weights; the
     * next forward would turn everything into NaN, so stop at the step that did it */
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
    for (size_t i = 0; i < t->n_params; i++) bad |= !isfinite(t->params[i]);
    if (bad)
        return dr_error(DR_ERR_ARG, "the weights became non-finite at step %lld (learning rate %.3g too high?)",
                        (long long)t->step, (double)lr);
    return DR_OK;
}

/* ---------------------------------------------------------------- model export */
static float *own_copy(llm_model *m, const float *src, size_t n, int *rc) {
    if (*rc) return NULL;
    float *p = dr_aligned_alloc(n * sizeof(float));
    if (!p) {
        *rc = DR_ERR_NOMEM;
        return NULL;
    }
    if ((*rc = llm_model_own(m, p))) return NULL;
    if (src) memcpy(p, src, n * sizeof(float));
    return p;
}

static void export_mat(llm_train *t, llm_model *m, const tlin *L, llm_mat *dst, int *rc) {
    float *w = own_copy(m, L->w, (size_t)L->out * L->in, rc);
    if (!w) return;
    if (!L->w) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < L->out; r++) llm_mat_row(&L->base, r, w + (size_t)r * L->in);
    }
    if (L->A) /* W += s B A */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L->out, L->in, t->lora, t->lora_scale, L->B, t->lora, L->A,
                    L->in, 1.0f, w, L->in);
    dst->data = w;
    dst->type = GGML_TYPE_F32;
    dst->rows = L->out;
    dst->cols = L->in;
    dst->row_bytes = (size_t)L->in * sizeof(float);
}

/* The source model's end-of-sequence ids, which an exported model keeps. */
static int copy_eos(llm_model *m, const llm_model *src) {
    if (!src->n_eos) return DR_OK;
    m->eos_ids = dr_calloc((size_t)src->n_eos, sizeof(int32_t));
    if (!m->eos_ids) return DR_ERR_NOMEM;
    memcpy(m->eos_ids, src->eos_ids, (size_t)src->n_eos * sizeof(int32_t));
    m->n_eos = src->n_eos;
    return DR_OK;
}

int llm_train_export_model(llm_train *t, llm_model **out) {
    *out = NULL;
    const llm_config *c = &t->c;
    llm_model *m = llm_model_alloc(c);
    if (!m) return DR_ERR_NOMEM;
    int rc = DR_OK;
    const size_t D = (size_t)c->dim;
    /* embeddings */
    float *e = own_copy(m, t->w_embd, (size_t)c->vocab * D, &rc);
    if (e && !t->w_embd) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < c->vocab; r++) llm_mat_row(&t->tok_embd, r, e + (size_t)r * D);
    }
    if (e) m->tok_embd = (llm_mat){e, GGML_TYPE_F32, c->vocab, c->dim, D * sizeof(float), NULL};
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const tlayer *L = &t->layers[l];
        llm_layer *M = &m->layers[l];
        M->attn_norm = own_copy(m, L->attn_norm, D, &rc);
        M->ffn_norm = own_copy(m, L->ffn_norm, D, &rc);
        llm_mat *dm[TL_N] = {&M->wq, &M->wk, &M->wv, &M->wo, &M->w_gate, &M->w_up, &M->w_down};
        const float **db[3] = {&M->bq, &M->bk, &M->bv};
        for (int i = 0; i < TL_N; i++) {
            export_mat(t, m, &L->lin[i], dm[i], &rc);
            if (i < 3 && L->lin[i].b) *db[i] = own_copy(m, L->lin[i].b, (size_t)L->lin[i].out, &rc);
        }
    }
    m->output_norm = own_copy(m, t->output_norm, D, &rc);
    if (!rc) {
        if (c->tied_output) m->output = m->tok_embd;
        else {
            float *o = own_copy(m, t->w_out, (size_t)c->vocab * D, &rc);
            if (o && !t->w_out) {
#pragma omp parallel for schedule(static)
                for (int r = 0; r < c->vocab; r++) llm_mat_row(&t->output, r, o + (size_t)r * D);
            }
            if (o) m->output = (llm_mat){o, GGML_TYPE_F32, c->vocab, c->dim, D * sizeof(float), NULL};
        }
    }
    if (!rc) rc = copy_eos(m, t->src);
    if (rc) {
        llm_model_free(m);
        return rc == DR_ERR_NOMEM ? dr_error(DR_ERR_NOMEM, "out of memory exporting the model") : rc;
    }
    *out = m;
    return DR_OK;
}

int llm_train_view_model(llm_train *t, llm_model **out) {
    *out = NULL;
    if (t->lora)
        return dr_error(DR_ERR_UNSUPPORTED, "a model view needs full fine-tuning (LoRA: use llm_train_export_model)");
    const llm_config *c = &t->c;
    llm_model *m = llm_model_alloc(c);
    if (!m) return DR_ERR_NOMEM;
    m->tok_embd = t->tok_embd;
    m->output = t->output;
    m->output_norm = t->output_norm;
    for (int l = 0; l < c->n_layers; l++) {
        const tlayer *L = &t->layers[l];
        llm_layer *M = &m->layers[l];
        M->attn_norm = L->attn_norm, M->ffn_norm = L->ffn_norm;
        llm_mat *dm[TL_N] = {&M->wq, &M->wk, &M->wv, &M->wo, &M->w_gate, &M->w_up, &M->w_down};
        for (int i = 0; i < TL_N; i++) *dm[i] = L->lin[i].base;
        M->bq = L->lin[TL_Q].b, M->bk = L->lin[TL_K].b, M->bv = L->lin[TL_V].b;
    }
    if (copy_eos(m, t->src)) {
        llm_model_free(m);
        return DR_ERR_NOMEM;
    }
    *out = m;
    return DR_OK;
}

int llm_train_save_model(llm_train *t, const struct tokenizer *tok, uint32_t type, const char *path) {
    llm_model *m;
    /* fp32 weights of a full fine-tuning are written as they are; a merge or a conversion needs a copy */
    int as_is = !t->lora && type == GGML_TYPE_F32;
    int rc = as_is ? llm_train_view_model(t, &m) : llm_train_export_model(t, &m);
    if (rc) return rc;
    if (type != GGML_TYPE_F32) rc = llm_model_convert(m, type);
    if (!rc) rc = llm_model_save(m, tok ? tok : t->src->tok, path);
    llm_model_free(m);
    return rc;
}

/* ---------------------------------------------------------------- optimizer state */
int llm_train_save_state(const llm_train *t, const char *path) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return DR_ERR_NOMEM;
    uint64_t ne[1] = {(uint64_t)t->n_params};
    int rc = gguf_set_str(w, "deeprec.kind", "llm_train_state");
    if (!rc) rc = gguf_set_u32(w, "deeprec.train.version", 1);
    if (!rc) rc = gguf_set_i64(w, "deeprec.train.step", t->step);
    if (!rc) rc = gguf_set_arr(w, "deeprec.train.rng", GGUF_TYPE_UINT64, t->rng.s, 4);
    if (!rc) rc = gguf_set_arr(w, "deeprec.train.user", GGUF_TYPE_INT64, t->run_state, LLM_TRAIN_RUN_STATE_N);
    if (!rc) rc = gguf_set_u64(w, "deeprec.train.n_params", (uint64_t)t->n_params);
    if (!rc) rc = gguf_set_u32(w, "deeprec.train.lora_rank", (uint32_t)t->lora);
    if (!rc) rc = gguf_set_u32(w, "deeprec.train.lora_targets", t->lora ? t->tc.lora_targets : 0);
    if (!rc) rc = gguf_set_f32(w, "deeprec.train.lora_alpha", t->tc.lora_alpha);
    if (!rc) rc = gguf_add_tensor_borrowed(w, "adam.m", GGML_TYPE_F32, 1, ne, t->m);
    if (!rc) rc = gguf_add_tensor_borrowed(w, "adam.v", GGML_TYPE_F32, 1, ne, t->v);
    if (!rc && t->lora) rc = gguf_add_tensor_borrowed(w, "lora.params", GGML_TYPE_F32, 1, ne, t->params);
    if (!rc) rc = gguf_write(w, path);
    gguf_writer_free(w);
    return rc;
}

int llm_train_load_state(llm_train *t, const char *path) {
    gguf_file f;
    int rc = gguf_open(&f, path);
    if (rc) return rc;
    gguf_str kind;
    uint32_t rank = 0, targets = 0;
    int64_t step;
    uint64_t n = 0;
    const void *rngd, *run_state;
    uint64_t nr = 0, nu = 0;
    if ((rc = gguf_get_str(&f, "deeprec.kind", &kind))) goto done;
    if (!gguf_str_eq(kind, "llm_train_state")) {
        rc = dr_error(DR_ERR_FORMAT, "%s is not an LLM optimizer state (deeprec.kind = %.*s)", path, (int)kind.len,
                      kind.ptr);
        goto done;
    }
    if ((rc = gguf_get_i64(&f, "deeprec.train.step", &step)) || (rc = gguf_get_u32(&f, "deeprec.train.lora_rank", &rank)) ||
        (rc = gguf_get_u32(&f, "deeprec.train.lora_targets", &targets)) ||
        (rc = gguf_get_arr(&f, "deeprec.train.rng", GGUF_TYPE_UINT64, &nr, &rngd)) ||
        (rc = gguf_get_arr(&f, "deeprec.train.user", GGUF_TYPE_INT64, &nu, &run_state)))
        goto done;
    {
        int64_t nn;
        if ((rc = gguf_get_i64(&f, "deeprec.train.n_params", &nn))) goto done;
        n = (uint64_t)nn;
    }
    if ((int)rank != t->lora || (t->lora && targets != t->tc.lora_targets) || n != t->n_params || nr != 4 || nu < 4 || nu > LLM_TRAIN_RUN_STATE_N) {
        rc = dr_error(DR_ERR_ARG,
                      "%s: the state is for another setup (LoRA rank %u, targets %#x, %llu parameters; this trainer: "
                      "rank %d, targets %#x, %zu parameters)",
                      path, rank, targets, (unsigned long long)n, t->lora, t->lora ? t->tc.lora_targets : 0, t->n_params);
        goto done;
    }
    const char *names[3] = {"adam.m", "adam.v", "lora.params"};
    float *dst[3] = {t->m, t->v, t->params};
    for (int i = 0; i < (t->lora ? 3 : 2); i++) {
        const gguf_tensor_info *ti;
        if ((rc = gguf_expect_tensor(&f, names[i], GGML_TYPE_F32, 1, &n, &ti))) goto done;
        memcpy(dst[i], ti->data, t->n_params * sizeof(float));
    }
    memcpy(t->rng.s, rngd, sizeof t->rng.s);
    memset(t->run_state, 0, sizeof t->run_state); /* states written before there were 8 keep 4 */
    memcpy(t->run_state, run_state, (size_t)nu * sizeof *t->run_state);
    t->step = step;
    llm_train_zero_grad(t);
done:
    if (rc) dr_error_context("%s", path);
    gguf_close(&f);
    return rc;
}
