/* LLM trainer: parameter layout, activation plan, fp32 forward and backward. */
#include "deeprec/gguf.h"
#include "deeprec/llm_train.h"
#include "deeprec/nn.h"
#include "train_internal.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void llm_train_config_default(llm_train_config *c) {
    *c = (llm_train_config){.max_batch = 1, .max_len = 256, .logit_budget = (size_t)256 << 20, .seed = 1,
                            .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .grad_clip = 1.0f,
                            .sched = LLM_SCHED_CONSTANT};
}

int llm_lora_parse_targets(const char *s, unsigned *out) {
    static const char *names[TL_N] = {"q", "k", "v", "o", "gate", "up", "down"};
    unsigned bits = 0;
    const char *p = s;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        if (n == 3 && !strncmp(p, "all", 3)) bits |= LLM_LORA_ALL, found = 1;
        for (int i = 0; i < TL_N && !found; i++)
            if (strlen(names[i]) == n && !strncmp(p, names[i], n)) bits |= 1u << i, found = 1;
        if (!found)
            return dr_error(DR_ERR_ARG, "unknown LoRA target '%.*s' (use q,k,v,o,gate,up,down or all)", (int)n, p);
        p = e ? e + 1 : NULL;
    }
    if (!bits) return dr_error(DR_ERR_ARG, "no LoRA target given");
    *out = bits;
    return DR_OK;
}

size_t llm_train_n_params(const llm_train *t) { return t->n_params; }
size_t llm_train_memory_bytes(const llm_train *t) { return t->n_params * 4 * sizeof(float) + t->act_bytes; }
float *llm_train_params(llm_train *t, size_t *n) {
    if (n) *n = t->n_params;
    return t->params;
}
float *llm_train_grads(llm_train *t, size_t *n) {
    if (n) *n = t->n_params;
    return t->grads;
}
dr_rng *llm_train_rng(llm_train *t) { return &t->rng; }
int64_t *llm_train_run_state(llm_train *t) { return t->run_state; }
int64_t llm_train_steps(const llm_train *t) { return t->step; }

void llm_train_free(llm_train *t) {
    if (!t) return;
    free(t->params);
    free(t->grads);
    free(t->m);
    free(t->v);
    free(t->segs);
    free(t->layers);
    free(t->acts);
    free(t->block);
    free(t->roff);
    free(t->rn);
    free(t->rids);
    free(t);
}

/* ---------------------------------------------------------------- parameter layout */
static int add_seg(llm_train *t, size_t len, int decay, size_t *off) {
    if (t->n_segs == t->cap_segs) {
        int nc = t->cap_segs ? 2 * t->cap_segs : 64;
        tseg *n = dr_realloc(t->segs, (size_t)nc, sizeof *n);
        if (!n) return DR_ERR_NOMEM;
        t->segs = n;
        t->cap_segs = nc;
    }
    *off = t->n_params;
    t->segs[t->n_segs++] = (tseg){t->n_params, len, decay};
    t->n_params += (len + 15) & ~(size_t)15; /* 64-byte aligned segments */
    return DR_OK;
}

static void mat_to_f32(const llm_mat *w, float *dst) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < w->rows; r++) llm_mat_row(w, r, dst + (size_t)r * w->cols);
}

static llm_mat f32_view(const float *p, int rows, int cols) {
    llm_mat m = {p, GGML_TYPE_F32, rows, cols, (size_t)cols * sizeof(float), NULL};
    return m;
}

/* Two passes over the layout: pass 0 counts (offsets recorded in offs[]), pass 1 fills pointers. */
static int layout(llm_train *t, size_t *offs, int pass) {
    const llm_config *c = &t->c;
    const llm_model *m = t->src;
    const int D = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, F = c->ffn;
    int k = 0, rc = DR_OK;
#define SEG(len, decay)                                                                  \
    do {                                                                                 \
        if (pass == 0) {                                                                 \
            if ((rc = add_seg(t, (len), (decay), &offs[k]))) return rc;                  \
        }                                                                                \
        k++;                                                                             \
    } while (0)
#define P(i) (t->params + offs[i])
#define G(i) (t->grads + offs[i])
    if (!t->lora) {
        SEG((size_t)c->vocab * D, 1);
        if (pass) {
            t->w_embd = P(k - 1), t->g_embd = G(k - 1);
            t->tok_embd = f32_view(t->w_embd, c->vocab, D);
        }
        for (int l = 0; l < c->n_layers; l++) {
            tlayer *L = &t->layers[l];
            const llm_layer *S = &m->layers[l];
            SEG((size_t)D, 0);
            if (pass) L->attn_norm = P(k - 1), L->g_attn_norm = G(k - 1);
            SEG((size_t)D, 0);
            if (pass) L->ffn_norm = P(k - 1), L->g_ffn_norm = G(k - 1);
            const llm_mat *sm[TL_N] = {&S->wq, &S->wk, &S->wv, &S->wo, &S->w_gate, &S->w_up, &S->w_down};
            const float *sb[3] = {S->bq, S->bk, S->bv};
            for (int i = 0; i < TL_N; i++) {
                tlin *T = &L->lin[i];
                SEG((size_t)sm[i]->rows * sm[i]->cols, 1);
                if (pass) {
                    T->in = sm[i]->cols, T->out = sm[i]->rows;
                    T->w = P(k - 1), T->gw = G(k - 1);
                    T->base = f32_view(T->w, T->out, T->in);
                }
                if (i < 3 && sb[i]) {
                    SEG((size_t)sm[i]->rows, 0);
                    if (pass) T->b = P(k - 1), T->gb = G(k - 1);
                }
            }
        }
        SEG((size_t)D, 0);
        if (pass) t->output_norm = P(k - 1), t->g_output_norm = G(k - 1);
        if (!c->tied_output) {
            SEG((size_t)c->vocab * D, 1);
            if (pass) t->w_out = P(k - 1), t->g_out = G(k - 1), t->output = f32_view(t->w_out, c->vocab, D);
        } else if (pass) {
            t->w_out = t->w_embd, t->g_out = t->g_embd, t->output = t->tok_embd;
        }
    } else {
        const int r = t->lora;
        if (pass) {
            t->tok_embd = m->tok_embd;
            t->output = m->output;
            t->output_norm = m->output_norm;
        }
        for (int l = 0; l < c->n_layers; l++) {
            tlayer *L = &t->layers[l];
            const llm_layer *S = &m->layers[l];
            const llm_mat *sm[TL_N] = {&S->wq, &S->wk, &S->wv, &S->wo, &S->w_gate, &S->w_up, &S->w_down};
            const float *sb[3] = {S->bq, S->bk, S->bv};
            if (pass) L->attn_norm = S->attn_norm, L->ffn_norm = S->ffn_norm;
            for (int i = 0; i < TL_N; i++) {
                tlin *T = &L->lin[i];
                if (pass) {
                    T->in = sm[i]->cols, T->out = sm[i]->rows, T->base = *sm[i];
                    if (i < 3) T->b = sb[i];
                }
                if (!(t->tc.lora_targets & (1u << i))) continue;
                SEG((size_t)r * sm[i]->cols, 1);
                if (pass) T->A = P(k - 1), T->gA = G(k - 1);
                SEG((size_t)sm[i]->rows * r, 1);
                if (pass) T->B = P(k - 1), T->gB = G(k - 1);
            }
        }
    }
    (void)qd, (void)kvd, (void)F;
#undef SEG
#undef P
#undef G
    return rc;
}

static void init_params(llm_train *t) {
    const llm_config *c = &t->c;
    const llm_model *m = t->src;
    if (!t->lora) {
        mat_to_f32(&m->tok_embd, t->w_embd);
        for (int l = 0; l < c->n_layers; l++) {
            tlayer *L = &t->layers[l];
            const llm_layer *S = &m->layers[l];
            memcpy((float *)L->attn_norm, S->attn_norm, (size_t)c->dim * sizeof(float));
            memcpy((float *)L->ffn_norm, S->ffn_norm, (size_t)c->dim * sizeof(float));
            const llm_mat *sm[TL_N] = {&S->wq, &S->wk, &S->wv, &S->wo, &S->w_gate, &S->w_up, &S->w_down};
            const float *sb[3] = {S->bq, S->bk, S->bv};
            for (int i = 0; i < TL_N; i++) {
                mat_to_f32(sm[i], L->lin[i].w);
                if (i < 3 && sb[i]) memcpy((float *)L->lin[i].b, sb[i], (size_t)sm[i]->rows * sizeof(float));
            }
        }
        memcpy((float *)t->output_norm, m->output_norm, (size_t)c->dim * sizeof(float));
        if (!c->tied_output) mat_to_f32(&m->output, t->w_out);
    } else {
        /* A ~ N(0, 1/in) from a stream per (layer, target); B = 0 (calloc). */
        dr_rng root;
        dr_rng_seed(&root, t->tc.seed ^ 0x4c6f5241ull);
        for (int l = 0; l < c->n_layers; l++)
            for (int i = 0; i < TL_N; i++) {
                tlin *T = &t->layers[l].lin[i];
                if (!T->A) continue;
                dr_rng g = dr_rng_split(&root, (uint64_t)l * TL_N + (uint64_t)i);
                float sd = 1.0f / sqrtf((float)T->in);
                for (size_t j = 0; j < (size_t)t->lora * T->in; j++) T->A[j] = sd * dr_rng_normal(&g);
            }
    }
}

/* ---------------------------------------------------------------- activation plan */
int llm_train_new(llm_train **out, const llm_model *m, const llm_train_config *cfg) {
    *out = NULL;
    llm_train_config tc = *cfg;
    if (tc.max_batch <= 0 || tc.max_len <= 1)
        return dr_error(DR_ERR_ARG, "trainer needs max_batch >= 1 and max_len >= 2 (got %d, %d)", tc.max_batch,
                        tc.max_len);
    if (tc.lora_rank < 0) return dr_error(DR_ERR_ARG, "LoRA rank must be >= 0");
    if (tc.lora_rank && !tc.lora_targets) tc.lora_targets = LLM_LORA_Q | LLM_LORA_K | LLM_LORA_V | LLM_LORA_O;
    if (tc.lora_rank && tc.lora_alpha == 0) tc.lora_alpha = 2.0f * tc.lora_rank;
    if (!tc.logit_budget) tc.logit_budget = (size_t)256 << 20;
    int rc = llm_config_check(&m->cfg);
    if (rc) return rc;
    if (m->cfg.arch == LLM_ARCH_QWEN3 || m->rope_freqs) /* the trainer's forward has no q/k norms nor RoPE factors */
        return dr_error(DR_ERR_UNSUPPORTED, "training a %s model%s is not supported (qwen2 and llama 2 are)",
                        llm_arch_name(m->cfg.arch), m->rope_freqs ? " with rope_freqs (llama 3.1+)" : "");
    {
        /* a rank above a target matrix's smaller side adds parameters and no expressiveness */
        int kv = m->cfg.n_kv_heads * m->cfg.head_dim, lim = m->cfg.dim < kv ? m->cfg.dim : kv;
        if (tc.lora_rank > lim)
            return dr_error(DR_ERR_ARG, "LoRA rank %d is above the model's smallest projection size %d (dim %d, kv %d)",
                            tc.lora_rank, lim, m->cfg.dim, kv);
    }
    llm_train *t = dr_calloc(1, sizeof *t);
    if (!t) return DR_ERR_NOMEM;
    t->c = m->cfg;
    t->tc = tc;
    t->src = m;
    t->lora = tc.lora_rank;
    t->lora_scale = t->lora ? tc.lora_alpha / (float)t->lora : 0.0f;
    dr_rng_seed(&t->rng, tc.seed);
    const llm_config *c = &t->c;
    t->layers = dr_calloc((size_t)c->n_layers, sizeof *t->layers);
    size_t *offs = dr_calloc((size_t)c->n_layers * 20 + 16, sizeof *offs);
    if (!t->layers || !offs) goto nomem;
    if ((rc = layout(t, offs, 0))) goto fail;
    if (t->n_params == 0) {
        rc = dr_error(DR_ERR_ARG, "nothing to train");
        goto fail;
    }
    t->params = dr_aligned_alloc(t->n_params * sizeof(float));
    t->grads = dr_aligned_alloc(t->n_params * sizeof(float));
    t->m = dr_aligned_alloc(t->n_params * sizeof(float));
    t->v = dr_aligned_alloc(t->n_params * sizeof(float));
    if (!t->params || !t->grads || !t->m || !t->v) goto nomem;
    memset(t->params, 0, t->n_params * sizeof(float));
    memset(t->grads, 0, t->n_params * sizeof(float));
    memset(t->m, 0, t->n_params * sizeof(float));
    memset(t->v, 0, t->n_params * sizeof(float));
    layout(t, offs, 1);
    free(offs);
    offs = NULL;
    init_params(t);

    /* activations: one block carved in order */
    const size_t N = (size_t)tc.max_batch * tc.max_len, D = (size_t)c->dim;
    const size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim, F = (size_t)c->ffn;
    const size_t V = (size_t)c->vocab, R = (size_t)t->lora;
    const size_t att = (size_t)tc.max_batch * c->n_heads * (size_t)tc.max_len * tc.max_len;
    t->Nmax = (int)N;
    if (N > (size_t)1 << 30) {
        rc = dr_error(DR_ERR_RANGE, "batch x length too large");
        goto fail;
    }
    t->n_acts = tc.recompute ? 1 : c->n_layers;
    t->acts = dr_calloc((size_t)t->n_acts, sizeof *t->acts);
    if (!t->acts) goto nomem;
    size_t lrows = tc.logit_budget / (V * sizeof(float) * 2);
    if (lrows < 16) lrows = 16;
    t->keep_logits = lrows >= N;
    if (lrows > N) lrows = N;
    t->lrows = (int)lrows;
    size_t per_act = 2 * N + 2 * N * D + N * qd + 2 * N * kvd + att + N * qd + N * D + 2 * N * F;
    if (R)
        for (int i = 0; i < TL_N; i++)
            if (tc.lora_targets & (1u << i)) per_act += N * R;
    size_t maxio = D > qd ? D : qd;
    if (F > maxio) maxio = F;
    if (V > maxio) maxio = V;
    t->tile_floats = (size_t)256 * maxio;
    size_t total = 0;
    double est = (double)per_act * t->n_acts + (double)(c->n_layers + 1) * N * D + N + N * D +
                 (double)(t->keep_logits ? N : lrows) * V + (double)lrows * V + N + N * F + N * D +
                 5.0 * N * D + 2.0 * N * qd + 2.0 * N * kvd + att + 3.0 * N * F + N * R + t->tile_floats + N;
    if (est > 1e12) {
        rc = dr_error(DR_ERR_NOMEM, "activation plan of %.0f GB is too large", est * 4 / 1e9);
        goto fail;
    }
    total = (size_t)est + 64 * 64 + 3 * N; /* slack for 64-byte alignment of each buffer + ints */
    t->block = dr_aligned_alloc(total * sizeof(float));
    if (!t->block) goto nomem;
    t->act_bytes = total * sizeof(float);
    float *p = t->block;
#define TAKE(n) (p += (((size_t)(n) + 15) & ~(size_t)15), p - (((size_t)(n) + 15) & ~(size_t)15))
    for (int a = 0; a < t->n_acts; a++) {
        tacts *A = &t->acts[a];
        A->rstd1 = TAKE(N), A->h1 = TAKE(N * D), A->q = TAKE(N * qd), A->k = TAKE(N * kvd), A->v = TAKE(N * kvd);
        A->att = TAKE(att), A->ao = TAKE(N * qd), A->xmid = TAKE(N * D), A->rstd2 = TAKE(N), A->h2 = TAKE(N * D);
        A->gate = TAKE(N * F), A->up = TAKE(N * F);
        for (int i = 0; i < TL_N; i++)
            if (R && (tc.lora_targets & (1u << i))) A->lu[i] = TAKE(N * R);
    }
    t->xs = TAKE((size_t)(c->n_layers + 1) * N * D);
    t->rstdf = TAKE(N), t->hf = TAKE(N * D);
    t->logits = TAKE((t->keep_logits ? N : lrows) * V);
    t->dlogits = TAKE(lrows * V);
    t->rowlogp = TAKE(N);
    t->act = TAKE(N * F), t->tmp = TAKE(N * D);
    t->dX = TAKE(N * D), t->dh = TAKE(N * D), t->dq = TAKE(N * qd), t->dk = TAKE(N * kvd), t->dv = TAKE(N * kvd);
    t->dao = TAKE(N * qd), t->datt = TAKE(att), t->dgate = TAKE(N * F), t->dup = TAKE(N * F), t->dact = TAKE(N * F);
    t->du = TAKE(N * (R ? R : 1)), t->tile = TAKE(t->tile_floats), t->drow = TAKE(N);
    t->ids = (int32_t *)TAKE(N), t->tgt = (int32_t *)TAKE(N), t->lens = (int32_t *)TAKE(tc.max_batch);
#undef TAKE
    if ((size_t)(p - (float *)t->block) > total) {
        rc = dr_error(DR_ERR_INTERNAL, "activation plan overflow (%zu > %zu)", (size_t)(p - (float *)t->block), total);
        goto fail;
    }
    *out = t;
    return DR_OK;
nomem:
    rc = dr_error(DR_ERR_NOMEM, "out of memory for the trainer (%zu parameters)", t->n_params);
fail:
    free(offs);
    llm_train_free(t);
    return rc;
}

/* ---------------------------------------------------------------- linear layers */
void llm_train_mat_backward_x(const llm_mat *w, const float *dy, int N, float *dx, float *tile, size_t tile_floats) {
    const int rows = w->rows, cols = w->cols;
    if (w->type == GGML_TYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, cols, rows, 1.0f, dy, rows, (const float *)w->data,
                    cols, 1.0f, dx, cols);
        return;
    }
    int tr = (int)(tile_floats / (size_t)cols);
    if (tr > rows) tr = rows;
    for (int r0 = 0; r0 < rows; r0 += tr) {
        int rr = rows - r0 < tr ? rows - r0 : tr;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rr; r++) llm_mat_row(w, r0 + r, tile + (size_t)r * cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, cols, rr, 1.0f, dy + r0, rows, tile, cols, 1.0f, dx,
                    cols);
    }
}

static void mat_forward(const llm_mat *w, const float *x, int N, float *y) {
    if (w->type == GGML_TYPE_F32)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, w->rows, w->cols, 1.0f, x, w->cols,
                    (const float *)w->data, w->cols, 0.0f, y, w->rows);
    else llm_matmul(w, x, N, y);
}

void llm_train_lin_forward(llm_train *t, const tlin *L, const float *x, int N, float *y, float *u) {
    mat_forward(&L->base, x, N, y);
    if (L->b) {
        const int out = L->out;
#pragma omp parallel for schedule(static) if ((size_t)N * out > 65536)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] += L->b[j];
    }
    if (L->A) {
        const int r = t->lora;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, L->in, 1.0f, x, L->in, L->A, L->in, 0.0f, u, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, L->out, r, t->lora_scale, u, r, L->B, r, 1.0f, y,
                    L->out);
    }
}

/* Column sums of dy [N x out] added to g (fixed order over rows). */
static void colsum_add(float *g, const float *dy, int N, int out) {
#pragma omp parallel for schedule(static) if ((size_t)N * out > 65536)
    for (int j0 = 0; j0 < out; j0 += 64) {
        int j1 = j0 + 64 < out ? j0 + 64 : out;
        double acc[64] = {0};
        for (int i = 0; i < N; i++)
            for (int j = j0; j < j1; j++) acc[j - j0] += dy[(size_t)i * out + j];
        for (int j = j0; j < j1; j++) g[j] += (float)acc[j - j0];
    }
}

void llm_train_lin_backward(llm_train *t, const tlin *L, const float *dy, const float *x, const float *u, int N,
                            float *dx) {
    const int in = L->in, out = L->out;
    if (dx) llm_train_mat_backward_x(&L->base, dy, N, dx, t->tile, t->tile_floats);
    if (L->gw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, L->gw, in);
    if (L->gb) colsum_add(L->gb, dy, N, out);
    if (L->A) {
        const int r = t->lora;
        const float s = t->lora_scale;
        /* gB += s dy^T u;  du = s dy B;  gA += du^T x;  dx += du A */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, N, s, dy, out, u, r, 1.0f, L->gB, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, out, s, dy, out, L->B, r, 0.0f, t->du, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, N, 1.0f, t->du, r, x, in, 1.0f, L->gA, in);
        if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, t->du, r, L->A, in, 1.0f, dx, in);
    }
}

/* ---------------------------------------------------------------- forward */
static nn_attn attn_cfg(const llm_train *t, int B, int T) {
    nn_attn a;
    memset(&a, 0, sizeof a);
    a.B = B, a.Tq = T, a.Tk = T, a.H = t->c.n_heads, a.Hkv = t->c.n_kv_heads, a.Dh = t->c.head_dim;
    a.causal = 1;
    a.key_len = t->lens;
    return a;
}

static int layer_forward(llm_train *t, int l, tacts *A, int B, int T) {
    const llm_config *c = &t->c;
    const int N = B * T, D = c->dim, F = c->ffn;
    tlayer *L = &t->layers[l];
    const float *x = t->xs + (size_t)l * t->Nmax * D;
    float *xo = t->xs + (size_t)(l + 1) * t->Nmax * D;
    nn_rmsnorm_forward(A->h1, A->rstd1, x, L->attn_norm, N, D, c->rms_eps);
    llm_train_lin_forward(t, &L->lin[TL_Q], A->h1, N, A->q, A->lu[TL_Q]);
    llm_train_lin_forward(t, &L->lin[TL_K], A->h1, N, A->k, A->lu[TL_K]);
    llm_train_lin_forward(t, &L->lin[TL_V], A->h1, N, A->v, A->lu[TL_V]);
    nn_rope_forward(A->q, NULL, N, T, c->n_heads, c->head_dim, 0, c->rope_theta, c->rope_pairing);
    nn_rope_forward(A->k, NULL, N, T, c->n_kv_heads, c->head_dim, 0, c->rope_theta, c->rope_pairing);
    nn_attn ac = attn_cfg(t, B, T);
    int rc = nn_attention_forward(&ac, A->ao, A->att, A->q, A->k, A->v);
    if (rc) return rc;
    llm_train_lin_forward(t, &L->lin[TL_O], A->ao, N, t->tmp, A->lu[TL_O]);
    const size_t ND = (size_t)N * D;
#pragma omp parallel for schedule(static) if (ND > 65536)
    for (size_t i = 0; i < ND; i++) A->xmid[i] = x[i] + t->tmp[i];
    nn_rmsnorm_forward(A->h2, A->rstd2, A->xmid, L->ffn_norm, N, D, c->rms_eps);
    llm_train_lin_forward(t, &L->lin[TL_GATE], A->h2, N, A->gate, A->lu[TL_GATE]);
    llm_train_lin_forward(t, &L->lin[TL_UP], A->h2, N, A->up, A->lu[TL_UP]);
    nn_swiglu_forward(t->act, A->gate, A->up, (size_t)N * F);
    llm_train_lin_forward(t, &L->lin[TL_DOWN], t->act, N, t->tmp, A->lu[TL_DOWN]);
#pragma omp parallel for schedule(static) if (ND > 65536)
    for (size_t i = 0; i < ND; i++) xo[i] = A->xmid[i] + t->tmp[i];
    return DR_OK;
}

/* logits of rows [r0, r0 + n) into dst */
static void head_logits(llm_train *t, int r0, int n, float *dst) {
    mat_forward(&t->output, t->hf + (size_t)r0 * t->c.dim, n, dst);
}

/* logp and entropy of each row of logits (targets tgt) */
static void rows_logp(const float *logits, const int32_t *tgt, int n, int V, float *logp, float *ent) {
#pragma omp parallel for schedule(static) if ((size_t)n * V > 65536)
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * V;
        if (tgt[i] < 0) {
            logp[i] = 0.0f;
            if (ent) ent[i] = 0.0f;
            continue;
        }
        float mx = x[0];
        for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double s = 0, sx = 0;
        for (int j = 0; j < V; j++) {
            double e = exp((double)(x[j] - mx));
            s += e;
            if (ent) sx += e * (x[j] - mx);
        }
        double lse = log(s);
        logp[i] = (float)((x[tgt[i]] - mx) - lse);
        if (ent) ent[i] = (float)(lse - sx / s);
    }
}

/* logp (and entropy) of row x restricted to ids[0..n) at target tgt */
static void row_logp_set(const float *x, const int32_t *ids, int n, int32_t tgt, float *logp, float *ent) {
    float mx = x[ids[0]];
    for (int i = 1; i < n; i++) mx = x[ids[i]] > mx ? x[ids[i]] : mx;
    double s = 0, sx = 0;
    for (int i = 0; i < n; i++) {
        double e = exp((double)(x[ids[i]] - mx));
        s += e;
        sx += e * (x[ids[i]] - mx);
    }
    double lse = log(s);
    *logp = (float)((x[tgt] - mx) - lse);
    if (ent) *ent = (float)(lse - sx / s);
}

/* Copy the batch's restricted targets onto source rows (row k - 1 predicts target k), after
 * checking that every set lies in the vocabulary and holds its target. */
static int take_restrictions(llm_train *t, const llm_batch *b) {
    t->restricted = 0;
    if (!b->allow_n) return DR_OK;
    if (!b->allow_off || !b->allow_ids) return dr_error(DR_ERR_ARG, "batch with allow_n but no allow_off / allow_ids");
    const int B = b->B, T = b->T, V = t->c.vocab;
    if (!t->rn) {
        t->rn = dr_calloc((size_t)t->Nmax, sizeof *t->rn);
        t->roff = dr_calloc((size_t)t->Nmax, sizeof *t->roff);
        if (!t->rn || !t->roff) return dr_error_code();
    }
    memset(t->rn, 0, (size_t)B * T * sizeof *t->rn);
    size_t pool = 0;
    for (int i = 0; i < B; i++)
        for (int j = 1; j < b->len[i]; j++) {
            size_t k = (size_t)i * T + j;
            if (b->allow_n[k] <= 0) continue;
            if (b->allow_off[k] < 0) return dr_error(DR_ERR_ARG, "batch row %d position %d: negative allow_off", i, j);
            size_t end = (size_t)b->allow_off[k] + (size_t)b->allow_n[k];
            if (end > pool) pool = end;
        }
    if (pool > t->rids_cap) {
        int32_t *r = dr_realloc(t->rids, pool, sizeof *r);
        if (!r) return dr_error_code();
        t->rids = r;
        t->rids_cap = pool;
    }
    if (pool) memcpy(t->rids, b->allow_ids, pool * sizeof *t->rids);
    for (int i = 0; i < B; i++)
        for (int j = 1; j < b->len[i]; j++) {
            size_t k = (size_t)i * T + j;
            int n = b->allow_n[k], has = 0;
            if (n <= 0) continue;
            const int32_t *ids = t->rids + b->allow_off[k];
            for (int a = 0; a < n; a++) {
                if (ids[a] < 0 || ids[a] >= V)
                    return dr_error(DR_ERR_RANGE, "batch row %d position %d: allowed token %d outside [0, %d)", i, j,
                                    (int)ids[a], V);
                has |= ids[a] == b->tokens[k];
            }
            if (!has) return dr_error(DR_ERR_ARG, "batch row %d position %d: the target is not in its allowed set", i, j);
            t->rn[k - 1] = n;
            t->roff[k - 1] = b->allow_off[k];
            t->restricted = 1;
        }
    return DR_OK;
}

static int check_batch(llm_train *t, const llm_batch *b) {
    if (b->B <= 0 || b->T <= 1 || b->B > t->tc.max_batch || b->T > t->tc.max_len)
        return dr_error(DR_ERR_ARG, "batch %d x %d exceeds the trainer's plan (%d x %d) or is empty", b->B, b->T,
                        t->tc.max_batch, t->tc.max_len);
    if (!b->tokens || !b->len) return dr_error(DR_ERR_ARG, "batch without tokens or lengths");
    for (int i = 0; i < b->B; i++) {
        if (b->len[i] < 0 || b->len[i] > b->T)
            return dr_error(DR_ERR_ARG, "batch row %d: length %d outside [0, %d]", i, b->len[i], b->T);
        for (int j = 0; j < b->len[i]; j++) {
            int32_t id = b->tokens[(size_t)i * b->T + j];
            if (id < 0 || id >= t->c.vocab)
                return dr_error(DR_ERR_RANGE, "batch row %d position %d: token %d outside [0, %d)", i, j, (int)id,
                                t->c.vocab);
        }
    }
    return DR_OK;
}

int llm_train_forward(llm_train *t, const llm_batch *b, float *logp, float *entropy) {
    int rc = check_batch(t, b);
    if (rc) return rc;
    const llm_config *c = &t->c;
    const int B = b->B, T = b->T, N = B * T, D = c->dim, V = c->vocab;
    t->have_fwd = 0;
    for (int i = 0; i < B; i++) {
        t->lens[i] = b->len[i];
        for (int j = 0; j < T; j++) {
            size_t k = (size_t)i * T + j;
            t->ids[k] = j < b->len[i] ? b->tokens[k] : -1;
            t->tgt[k] = j + 1 < b->len[i] ? b->tokens[k + 1] : -1;
        }
    }
    if ((rc = take_restrictions(t, b))) return rc;
    /* embedding */
    if (t->w_embd) {
        if ((rc = nn_embedding_forward(t->xs, t->w_embd, t->ids, N, V, D))) return rc;
    } else {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++) {
            if (t->ids[i] >= 0) llm_mat_row(&t->tok_embd, t->ids[i], t->xs + (size_t)i * D);
            else memset(t->xs + (size_t)i * D, 0, (size_t)D * sizeof(float));
        }
    }
    for (int l = 0; l < c->n_layers; l++)
        if ((rc = layer_forward(t, l, &t->acts[t->n_acts == 1 ? 0 : l], B, T))) return rc;
    nn_rmsnorm_forward(t->hf, t->rstdf, t->xs + (size_t)c->n_layers * t->Nmax * D, t->output_norm, N, D, c->rms_eps);
    float *ent_rows = entropy ? t->drow : NULL;
    for (int r0 = 0; r0 < N; r0 += t->lrows) {
        int n = N - r0 < t->lrows ? N - r0 : t->lrows;
        float *lg = t->keep_logits ? t->logits + (size_t)r0 * V : t->logits;
        head_logits(t, r0, n, lg);
        rows_logp(lg, t->tgt + r0, n, V, t->rowlogp + r0, ent_rows ? ent_rows + r0 : NULL);
        for (int r = r0; t->restricted && r < r0 + n; r++)
            if (t->rn[r] > 0 && t->tgt[r] >= 0)
                row_logp_set(lg + (size_t)(r - r0) * V, t->rids + t->roff[r], t->rn[r], t->tgt[r], t->rowlogp + r,
                             ent_rows ? ent_rows + r : NULL);
    }
    /* per-target outputs: row b*T+t predicts position t+1 */
    for (int i = 0; i < B; i++)
        for (int j = 0; j < T; j++) {
            size_t k = (size_t)i * T + j;
            int valid = j >= 1 && j < b->len[i];
            if (logp) logp[k] = valid ? t->rowlogp[k - 1] : 0.0f;
            if (entropy) entropy[k] = valid ? ent_rows[k - 1] : 0.0f;
        }
    t->fB = B, t->fT = T, t->have_fwd = 1;
    return DR_OK;
}

int llm_train_logprobs(llm_train *t, const llm_batch *b, float *logp, float *entropy) {
    return llm_train_forward(t, b, logp, entropy);
}

/* ---------------------------------------------------------------- backward */
static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

static int layer_backward(llm_train *t, int l, tacts *A, int B, int T) {
    const llm_config *c = &t->c;
    const int N = B * T, D = c->dim, F = c->ffn;
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    tlayer *L = &t->layers[l];
    const float *x = t->xs + (size_t)l * t->Nmax * D;
    float *dX = t->dX; /* in: d xs[l+1]; out: d xs[l] */
    /* MLP */
    nn_swiglu_forward(t->act, A->gate, A->up, (size_t)N * F);
    zero(t->dact, (size_t)N * F);
    llm_train_lin_backward(t, &L->lin[TL_DOWN], dX, t->act, A->lu[TL_DOWN], N, t->dact);
    zero(t->dgate, (size_t)N * F);
    zero(t->dup, (size_t)N * F);
    nn_swiglu_backward(t->dgate, t->dup, t->dact, A->gate, A->up, (size_t)N * F);
    zero(t->dh, (size_t)N * D);
    llm_train_lin_backward(t, &L->lin[TL_GATE], t->dgate, A->h2, A->lu[TL_GATE], N, t->dh);
    llm_train_lin_backward(t, &L->lin[TL_UP], t->dup, A->h2, A->lu[TL_UP], N, t->dh);
    nn_rmsnorm_backward(dX, L->g_ffn_norm, t->dh, A->xmid, L->ffn_norm, A->rstd2, N, D);
    /* attention */
    zero(t->dao, (size_t)N * qd);
    llm_train_lin_backward(t, &L->lin[TL_O], dX, A->ao, A->lu[TL_O], N, t->dao);
    zero(t->dq, (size_t)N * qd);
    zero(t->dk, (size_t)N * kvd);
    zero(t->dv, (size_t)N * kvd);
    nn_attn ac = attn_cfg(t, B, T);
    int rc = nn_attention_backward(&ac, t->dq, t->dk, t->dv, t->datt, t->dao, A->q, A->k, A->v, A->att);
    if (rc) return rc;
    nn_rope_backward(t->dq, t->dq, NULL, N, T, c->n_heads, c->head_dim, 0, c->rope_theta, c->rope_pairing);
    nn_rope_backward(t->dk, t->dk, NULL, N, T, c->n_kv_heads, c->head_dim, 0, c->rope_theta, c->rope_pairing);
    zero(t->dh, (size_t)N * D);
    llm_train_lin_backward(t, &L->lin[TL_Q], t->dq, A->h1, A->lu[TL_Q], N, t->dh);
    llm_train_lin_backward(t, &L->lin[TL_K], t->dk, A->h1, A->lu[TL_K], N, t->dh);
    llm_train_lin_backward(t, &L->lin[TL_V], t->dv, A->h1, A->lu[TL_V], N, t->dh);
    nn_rmsnorm_backward(dX, L->g_attn_norm, t->dh, x, L->attn_norm, A->rstd1, N, D);
    return DR_OK;
}

/* d += g (onehot(tgt) - softmax over ids), with the forward's restricted logp for the lse */
static void restricted_backward(float *d, float g, const float *x, const int32_t *ids, int n, int32_t tgt, float logp) {
    double lse = (double)x[tgt] - (double)logp;
    for (int a = 0; a < n; a++) d[ids[a]] -= (float)(g * exp((double)x[ids[a]] - lse));
    d[tgt] += g;
}

int llm_train_backward(llm_train *t, const float *dlogp) {
    if (!t->have_fwd) return dr_error(DR_ERR_ARG, "llm_train_backward without a forward");
    const llm_config *c = &t->c;
    const int B = t->fB, T = t->fT, N = B * T, D = c->dim, V = c->vocab;
    int rc;
    /* dL/dlogp per source row */
    float *drow = t->drow;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < T; j++) {
            size_t k = (size_t)i * T + j;
            drow[k] = t->tgt[k] >= 0 ? dlogp[k + 1] : 0.0f;
        }
    /* head */
    zero(t->tmp, (size_t)N * D); /* d hf */
    for (int r0 = 0; r0 < N; r0 += t->lrows) {
        int n = N - r0 < t->lrows ? N - r0 : t->lrows;
        int any = 0;
        for (int i = 0; i < n && !any; i++) any = drow[r0 + i] != 0.0f && t->tgt[r0 + i] >= 0;
        if (!any) continue;
        float *lg = t->logits + (t->keep_logits ? (size_t)r0 * V : 0);
        if (!t->keep_logits) head_logits(t, r0, n, lg);
        zero(t->dlogits, (size_t)n * V);
        for (int r = r0; t->restricted && r < r0 + n; r++) {
            if (t->rn[r] <= 0 || t->tgt[r] < 0 || drow[r] == 0.0f) continue;
            restricted_backward(t->dlogits + (size_t)(r - r0) * V, drow[r], lg + (size_t)(r - r0) * V,
                                t->rids + t->roff[r], t->rn[r], t->tgt[r], t->rowlogp[r]);
            drow[r] = 0.0f; /* done: the full-vocabulary gradient below must skip the row */
        }
        if ((rc = nn_logprob_gather_backward(t->dlogits, drow + r0, lg, t->tgt + r0, t->rowlogp + r0, n, V))) return rc;
        llm_train_mat_backward_x(&t->output, t->dlogits, n, t->tmp + (size_t)r0 * D, t->tile, t->tile_floats);
        if (t->g_out)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, D, n, 1.0f, t->dlogits, V, t->hf + (size_t)r0 * D, D,
                        1.0f, t->g_out, D);
    }
    zero(t->dX, (size_t)N * D);
    nn_rmsnorm_backward(t->dX, t->g_output_norm, t->tmp, t->xs + (size_t)c->n_layers * t->Nmax * D, t->output_norm,
                        t->rstdf, N, D);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        tacts *A = &t->acts[t->n_acts == 1 ? 0 : l];
        if (t->n_acts == 1 && l != c->n_layers - 1 && (rc = layer_forward(t, l, A, B, T))) return rc;
        if ((rc = layer_backward(t, l, A, B, T))) return rc;
    }
    if (t->g_embd && (rc = nn_embedding_backward(t->g_embd, t->dX, t->ids, N, V, D))) return rc;
    return DR_OK;
}

/* ---------------------------------------------------------------- SFT */
static void sft_dlogp(const llm_batch *b, float norm, const float *logp, float *dlogp, double *ce, double *ws) {
    double c = 0, w = 0;
    for (int i = 0; i < b->B; i++)
        for (int j = 1; j < b->len[i]; j++) {
            size_t k = (size_t)i * b->T + j;
            if (b->mask && !b->mask[k]) continue;
            float wk = b->weight ? b->weight[k] : 1.0f;
            c -= (double)wk * logp[k];
            w += wk;
        }
    float nrm = norm > 0 ? norm : (float)w;
    memset(dlogp, 0, (size_t)b->B * b->T * sizeof(float));
    if (nrm > 0)
        for (int i = 0; i < b->B; i++)
            for (int j = 1; j < b->len[i]; j++) {
                size_t k = (size_t)i * b->T + j;
                if (b->mask && !b->mask[k]) continue;
                dlogp[k] = -(b->weight ? b->weight[k] : 1.0f) / nrm;
            }
    if (ce) *ce = c;
    if (ws) *ws = w;
}

int llm_train_sft(llm_train *t, const llm_batch *b, float norm, double *ce_sum, double *w_sum) {
    size_t n = (size_t)b->B * (b->T > 0 ? b->T : 0);
    float *logp = dr_calloc(n ? 2 * n : 1, sizeof(float));
    if (!logp) return DR_ERR_NOMEM;
    double ce, w;
    int rc = llm_train_forward(t, b, logp, NULL);
    if (!rc) {
        sft_dlogp(b, norm, logp, logp + n, &ce, &w);
        if (w > 0 || norm > 0) rc = llm_train_backward(t, logp + n);
        if (ce_sum) *ce_sum = ce;
        if (w_sum) *w_sum = w;
    }
    free(logp);
    return rc;
}

/* ---------------------------------------------------------------- FLOPs */
double llm_train_flops(const llm_train *t, int64_t n_tokens, int T) {
    const llm_config *c = &t->c;
    double D = c->dim, qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim, F = c->ffn;
    double mat = c->n_layers * (D * qd * 2 + D * kvd * 2 + 3 * D * F) + (double)c->vocab * D; /* MACs per token */
    double att = c->n_layers * 2.0 * qd * (T / 2.0);                                              /* MACs per token */
    double fwd = 2.0 * (mat + att);
    if (!t->lora) return (double)n_tokens * 3.0 * fwd;
    double lora = 0;
    for (int i = 0; i < TL_N; i++) {
        const tlin *L = &t->layers[0].lin[i];
        if (L->A) lora += (double)t->lora * (L->in + L->out);
    }
    lora *= c->n_layers;
    /* base: forward + dX only; attention fwd + 2x bwd; LoRA 3x */
    return (double)n_tokens * (2.0 * 2.0 * mat + 3.0 * 2.0 * att + 3.0 * 2.0 * lora);
}
