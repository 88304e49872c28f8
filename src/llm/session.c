/* Sessions: a KV cache of n_slots sequences and the batched forward pass.
 *
 * The forward takes n tokens, each with its slot and position (a prefill chunk is n
 * consecutive positions of one slot; a decode step is one token in each of n slots):
 * every weight is applied once to the n x dim activations (llm_matmul); the K/V rows
 * of all n tokens are written to the cache first, then each token attends to its
 * slot's cache up to its own position (causal). Prefill chunks of >= 16 tokens use
 * sgemm per head for the attention scores and the weighted sum. */
#include "deeprec/llm.h"
#include "deeprec/gguf.h"
#include "deeprec/nn.h"
#include "llm_internal.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define PREFILL_CHUNK 512
#define ATTN_SGEMM_MIN 16
#define ATTN_ROWS 128 /* query rows per block of a prefill chunk's attention */

struct llm_session {
    const llm_model *m;
    int n_slots, n_ctx;
    int *len;            /* tokens cached per slot */
    void *kc, *vc;       /* [layer][slot][pos][kvd] of float, or of fp16 (kv_f16) */
    int kv_f16;
    size_t slot_stride;  /* n_ctx * kvd elements */
    float *kv_wide;      /* kv_f16: one KV group's K then V for a prefill chunk's sgemm, 2 x [n_ctx x head_dim] */
    /* scratch for up to cap tokens */
    int cap;
    float *x, *h, *q, *k, *v, *att, *g, *u, *cos_t, *sin_t;
    float *scores;       /* per thread sc_stride (decode) or chunk x n_ctx (prefill, grown) */
    size_t scores_cap;
    int n_threads;
    llm_ablk *one_xa;    /* decode_one's rounded activations (the widest row's blocks) */
    uint8_t *one_ax;     /* decode_one's packed rows: width dim, then n_heads x head_dim, then ffn */
    int fast;            /* 1: int8 activations for the block-quantised weights (llm_matmul_fast) */
};

void llm_session_set_fast(llm_session *s, int fast) { s->fast = fast != 0; }
int llm_session_fast(const llm_session *s) { return s->fast; }

/* Each decode thread's attention scratch: n_ctx scores, then one widened fp16 row. */
static size_t sc_stride(const llm_session *s) { return (size_t)s->n_ctx + (size_t)s->m->cfg.head_dim; }

static size_t kv_elt(const llm_session *s) { return s->kv_f16 ? sizeof(uint16_t) : sizeof(float); }

/* The first element of (layer, slot, pos) in the cache base (s->kc or s->vc). */
static void *kv_at(const llm_session *s, void *base, int layer, int slot, int pos) {
    const llm_config *c = &s->m->cfg;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    return (char *)base + (((size_t)layer * s->n_slots + slot) * s->slot_stride + (size_t)pos * kvd) * kv_elt(s);
}

/* One token's K or V row into the cache: fp16 rounding with the same scalar conversion on
 * every CPU, so a cache is the same bytes everywhere. */
static void kv_store(const llm_session *s, void *dst, const float *src, int n) {
    if (!s->kv_f16) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (int i = 0; i < n; i++) d[i] = dr_f32_to_f16(src[i]);
}

/* n fp16 values widened to fp32 (exact). */
static inline void widen_f16(const uint16_t *src, float *dst, int n) {
    int i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = dr_f16_to_f32(src[i]);
}

int llm_kv_type_from_name(const char *name) {
    if (!strcmp(name, "f32")) return LLM_KV_F32;
    if (!strcmp(name, "f16")) return LLM_KV_F16;
    return -1;
}

void llm_model_set_kv_type(llm_model *m, llm_kv_type t) { m->kv_type = t; }

const llm_model *llm_session_model(const llm_session *s) { return s->m; }
int llm_session_ctx(const llm_session *s) { return s->n_ctx; }

int llm_slot_len(const llm_session *s, int slot) {
    if (slot < 0 || slot >= s->n_slots) return -1;
    return s->len[slot];
}

int llm_slot_truncate(llm_session *s, int slot, int len) {
    if (slot < 0 || slot >= s->n_slots) return dr_error(DR_ERR_RANGE, "slot %d out of range (0..%d)", slot, s->n_slots - 1);
    if (len < 0) return dr_error(DR_ERR_RANGE, "negative length %d", len);
    if (len < s->len[slot]) s->len[slot] = len;
    return DR_OK;
}

/* The KV of src's first len tokens into slot dst of d (same model, so the same row sizes). */
static void copy_kv(llm_session *d, int dst, const llm_session *s, int src, int len) {
    const llm_config *c = &s->m->cfg;
    size_t bytes = (size_t)len * c->n_kv_heads * c->head_dim * kv_elt(s);
    for (int l = 0; l < c->n_layers; l++) {
        memcpy(kv_at(d, d->kc, l, dst, 0), kv_at(s, s->kc, l, src, 0), bytes);
        memcpy(kv_at(d, d->vc, l, dst, 0), kv_at(s, s->vc, l, src, 0), bytes);
    }
    d->len[dst] = len;
}

int llm_slot_fork(llm_session *s, int src, const int *dst, int n) {
    if (src < 0 || src >= s->n_slots) return dr_error(DR_ERR_RANGE, "slot %d out of range (0..%d)", src, s->n_slots - 1);
    for (int i = 0; i < n; i++)
        if (dst[i] < 0 || dst[i] >= s->n_slots)
            return dr_error(DR_ERR_RANGE, "slot %d out of range (0..%d)", dst[i], s->n_slots - 1);
    for (int i = 0; i < n; i++)
        if (dst[i] != src) copy_kv(s, dst[i], s, src, s->len[src]);
    return DR_OK;
}

int llm_slot_copy(llm_session *dst, int dst_slot, const llm_session *src, int src_slot) {
    if (dst->m != src->m) return dr_error(DR_ERR_ARG, "llm_slot_copy: the sessions hold different models");
    if (dst->kv_f16 != src->kv_f16) return dr_error(DR_ERR_ARG, "llm_slot_copy: the sessions' KV caches differ in type");
    if (src_slot < 0 || src_slot >= src->n_slots || dst_slot < 0 || dst_slot >= dst->n_slots)
        return dr_error(DR_ERR_RANGE, "llm_slot_copy: slot %d -> %d out of range", src_slot, dst_slot);
    if (src->len[src_slot] > dst->n_ctx)
        return dr_error(DR_ERR_RANGE, "llm_slot_copy: %d tokens exceed the session context of %d", src->len[src_slot],
                        dst->n_ctx);
    if (dst != src || dst_slot != src_slot) copy_kv(dst, dst_slot, src, src_slot, src->len[src_slot]);
    return DR_OK;
}

static void free_scratch(llm_session *s) {
    float **bufs[] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->att, &s->g, &s->u, &s->cos_t, &s->sin_t};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    s->cap = 0;
}

static int ensure_scratch(llm_session *s, int n) {
    if (n <= s->cap) return DR_OK;
    free_scratch(s);
    const llm_config *c = &s->m->cfg;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t sz[] = {(size_t)c->dim, (size_t)c->dim, qd, kvd, kvd, qd, (size_t)c->ffn, (size_t)c->ffn,
                   (size_t)c->head_dim / 2, (size_t)c->head_dim / 2};
    float **bufs[] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->att, &s->g, &s->u, &s->cos_t, &s->sin_t};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        size_t cnt;
        if (!dr_mul_ok(sz[i], (size_t)n, &cnt) || !(*bufs[i] = dr_aligned_alloc(cnt * sizeof(float)))) {
            free_scratch(s);
            return dr_error(DR_ERR_NOMEM, "out of memory for %d tokens of activations", n);
        }
    }
    s->cap = n;
    return DR_OK;
}

static int ensure_scores(llm_session *s, size_t n) {
    if (n <= s->scores_cap) return DR_OK;
    free(s->scores);
    s->scores = dr_aligned_alloc(n * sizeof(float));
    s->scores_cap = s->scores ? n : 0;
    return s->scores ? DR_OK : dr_error(DR_ERR_NOMEM, "out of memory for attention scores");
}

void llm_session_free(llm_session *s) {
    if (!s) return;
    free_scratch(s);
    free(s->kc);
    free(s->vc);
    free(s->kv_wide);
    free(s->len);
    free(s->scores);
    free(s->one_xa);
    free(s->one_ax);
    free(s);
}

int llm_session_new(llm_session **out, const llm_model *m, int n_slots, int n_ctx) {
    *out = NULL;
    const llm_config *c = &m->cfg;
    if (n_slots <= 0 || n_ctx <= 0) return dr_error(DR_ERR_ARG, "a session needs slots > 0 and context > 0");
    llm_session *s = dr_calloc(1, sizeof *s);
    if (!s) return DR_ERR_NOMEM;
    s->m = m;
    s->n_slots = n_slots;
    s->n_ctx = n_ctx;
    s->slot_stride = (size_t)n_ctx * c->n_kv_heads * c->head_dim;
    size_t total;
    if (!dr_mul_ok(s->slot_stride, (size_t)n_slots * c->n_layers, &total) || total > ((size_t)1 << 40)) {
        free(s);
        return dr_error(DR_ERR_NOMEM, "KV cache of %d slots x %d tokens is too large", n_slots, n_ctx);
    }
    s->kv_f16 = m->kv_type == LLM_KV_F16;
    s->kc = dr_aligned_alloc(total * kv_elt(s));
    s->vc = dr_aligned_alloc(total * kv_elt(s));
    s->len = dr_calloc((size_t)n_slots, sizeof(int));
    s->n_threads = omp_get_max_threads();
    if (s->kv_f16) s->kv_wide = dr_aligned_alloc((size_t)2 * n_ctx * c->head_dim * sizeof(float));
    if (!s->kc || !s->vc || !s->len || (s->kv_f16 && !s->kv_wide) || ensure_scores(s, (size_t)s->n_threads * sc_stride(s))) {
        llm_session_free(s);
        return dr_error(DR_ERR_NOMEM, "out of memory for a KV cache of %d slots x %d tokens (%.1f MiB)", n_slots, n_ctx,
                        2.0 * (double)total * (double)(m->kv_type == LLM_KV_F16 ? 2 : 4) / 1048576.0);
    }
    *out = s;
    return DR_OK;
}

/* ---------------------------------------------------------------- small ops */
static inline float dotf(const float *a, const float *b, int n) {
    int i = 0;
    float s = 0;
#ifdef __AVX2__
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc0 = _mm256_add_ps(acc0, acc1);
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    s = _mm_cvtss_f32(t);
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---------------------------------------------------------------- attention */
/* One token, all heads, direct loops: q [qd], out [qd]. */
static void attend_one(const llm_session *s, int layer, int slot, int pos, const float *q, float *out, float *sc, int h) {
    const llm_config *c = &s->m->cfg;
    const int hd = c->head_dim, kvd = c->n_kv_heads * hd, grp = c->n_heads / c->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hd);
    const int len = pos + 1, g = h / grp;
    const float *qh = q + (size_t)h * hd;
    float *o = out + (size_t)h * hd;
    memset(o, 0, (size_t)hd * sizeof(float));
    if (s->kv_f16) { /* each row widened into the tail of sc (n_ctx + head_dim floats per thread) */
        const uint16_t *K = (const uint16_t *)kv_at(s, s->kc, layer, slot, 0) + (size_t)g * hd;
        const uint16_t *V = (const uint16_t *)kv_at(s, s->vc, layer, slot, 0) + (size_t)g * hd;
        float *row = sc + s->n_ctx;
        for (int t = 0; t < len; t++) {
            widen_f16(K + (size_t)t * kvd, row, hd);
            sc[t] = dotf(qh, row, hd) * scale;
        }
        nn_softmax_row(sc, sc, len);
        for (int t = 0; t < len; t++) {
            widen_f16(V + (size_t)t * kvd, row, hd);
            axpy(sc[t], row, o, hd);
        }
        return;
    }
    const float *K = (const float *)kv_at(s, s->kc, layer, slot, 0) + (size_t)g * hd;
    const float *V = (const float *)kv_at(s, s->vc, layer, slot, 0) + (size_t)g * hd;
    for (int t = 0; t < len; t++) sc[t] = dotf(qh, K + (size_t)t * kvd, hd) * scale;
    nn_softmax_row(sc, sc, len);
    for (int t = 0; t < len; t++) axpy(sc[t], V + (size_t)t * kvd, o, hd);
}

/* One token's heads, split statically over the threads of the enclosing region (an orphaned
 * omp for, with its barrier): the heads all cost the same, and claiming 14 heads one at a time
 * across the cores cost more (attention at Qwen2.5-0.5B's shape, 16-80 positions: 6.5-7.4
 * against 7.9-10.8 us a layer); the static split also leaves each thread the rounding of its own
 * heads' outputs (llm_matmul_q8act_after). */
typedef struct attn_one_ctx { llm_session *s; int layer, slot, pos; } attn_one_ctx;
static void attend_heads(void *p) {
    const attn_one_ctx *a = p;
    llm_session *s = a->s;
#pragma omp for schedule(static)
    for (int h = 0; h < s->m->cfg.n_heads; h++)
        attend_one(s, a->layer, a->slot, a->pos, s->q, s->att, s->scores + (size_t)omp_get_thread_num() * sc_stride(s), h);
}

/* Head group g's K or V of one slot's first len positions as fp32: the cache itself (leading
 * dimension kvd) or, for an fp16 cache, widened into dst (leading dimension head_dim). */
static const float *kv_head_f32(llm_session *s, void *base, int layer, int slot, int g, int len, float *dst, int *ld) {
    const llm_config *c = &s->m->cfg;
    const int hd = c->head_dim, kvd = c->n_kv_heads * hd;
    if (!s->kv_f16) {
        *ld = kvd;
        return (const float *)kv_at(s, base, layer, slot, 0) + (size_t)g * hd;
    }
    const uint16_t *src = (const uint16_t *)kv_at(s, base, layer, slot, 0) + (size_t)g * hd;
#pragma omp parallel for schedule(static) if (len >= 256)
    for (int t = 0; t < len; t++) widen_f16(src + (size_t)t * kvd, dst + (size_t)t * hd, hd);
    *ld = hd;
    return dst;
}

/* Head h of n consecutive tokens starting at pos0 against K and V (leading dimension ld), in
 * blocks of ATTN_ROWS query rows, each block's scores only up to its last position (causal:
 * a 512-token chunk computes 5/8 of the full square). S: ATTN_ROWS x (pos0 + n) floats. */
static void attend_head(llm_session *s, int h, const float *K, const float *V, int ld, int pos0, int n, float *S) {
    const llm_config *c = &s->m->cfg;
    const int hd = c->head_dim, qd = c->n_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
        const int m = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS, len = pos0 + i0 + m;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, len, hd, scale, s->q + (size_t)i0 * qd + (size_t)h * hd,
                    qd, K, ld, 0.0f, S, len);
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
        for (int i = 0; i < m; i++) {
            float *row = S + (size_t)i * len;
            int valid = pos0 + i0 + i + 1;
            nn_softmax_row(row, row, valid);
            for (int t = valid; t < len; t++) row[t] = 0;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, len, 1.0f, S, len, V, ld, 0.0f,
                    s->att + (size_t)i0 * qd + (size_t)h * hd, qd);
    }
}

/* n consecutive tokens of one slot starting at pos0, with sgemm per head. With an fp32 cache
 * the heads run in parallel and each thread's sgemm calls run serially (OpenBLAS does inside a
 * parallel region): a head's products are small (64-wide), and OpenBLAS threading each of them
 * took about a fifth of a BF16 prefill of 512 tokens (perf). An fp16 cache is widened one KV
 * group at a time into one buffer, so its heads take turns. */
static int attend_chunk(llm_session *s, int layer, int slot, int pos0, int n) {
    const llm_config *c = &s->m->cfg;
    const int hd = c->head_dim, grp = c->n_heads / c->n_kv_heads, kvd = c->n_kv_heads * hd;
    const int len = pos0 + n, nt = omp_get_max_threads();
    int rc = ensure_scores(s, (size_t)(s->kv_f16 ? 1 : nt) * ATTN_ROWS * len);
    if (rc) return rc;
    if (!s->kv_f16) {
        const float *K = kv_at(s, s->kc, layer, slot, 0), *V = kv_at(s, s->vc, layer, slot, 0);
#pragma omp parallel for schedule(static)
        for (int h = 0; h < c->n_heads; h++)
            attend_head(s, h, K + (size_t)(h / grp) * hd, V + (size_t)(h / grp) * hd, kvd, pos0, n,
                        s->scores + (size_t)omp_get_thread_num() * ATTN_ROWS * len);
        return DR_OK;
    }
    const float *K = NULL, *V = NULL;
    int ld = 0;
    for (int h = 0; h < c->n_heads; h++) {
        if (h % grp == 0) { /* a new KV group: its K and V, widened once for the grp query heads that share them */
            int g = h / grp;
            K = kv_head_f32(s, s->kc, layer, slot, g, len, s->kv_wide, &ld);
            V = kv_head_f32(s, s->vc, layer, slot, g, len, s->kv_wide + (size_t)s->n_ctx * hd, &ld);
        }
        attend_head(s, h, K, V, ld, pos0, n, s->scores);
    }
    return DR_OK;
}

/* ---------------------------------------------------------------- forward */
static void add_bias(float *y, const float *b, int n, int d) {
    if (!b) return;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) y[(size_t)i * d + j] += b[j];
}

/* Layer l's q, k and v of n tokens made ready for attention: biases, the q/k norms (qwen3), RoPE,
 * and each token's K and V into the cache at its slot and position (slot[0] for all with
 * same_slot). forward and decode_one share it, so their caches and queries are the same bits. */
static void qkv_finish(llm_session *s, const llm_layer *L, int l, int n, const int *slot, const int32_t *pos, int same_slot) {
    const llm_config *c = &s->m->cfg;
    const int hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    add_bias(s->q, L->bq, n, qd);
    add_bias(s->k, L->bk, n, kvd);
    add_bias(s->v, L->bv, n, kvd);
    if (L->q_norm) { /* every head of every token, in place */
        nn_rmsnorm_forward(s->q, NULL, s->q, L->q_norm, n * c->n_heads, hd, c->rms_eps);
        nn_rmsnorm_forward(s->k, NULL, s->k, L->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
    }
    nn_rope_apply(s->q, s->cos_t, s->sin_t, n, c->n_heads, hd, hd, c->rope_pairing);
    nn_rope_apply(s->k, s->cos_t, s->sin_t, n, c->n_kv_heads, hd, hd, c->rope_pairing);
    for (int i = 0; i < n; i++) {
        kv_store(s, kv_at(s, s->kc, l, slot[same_slot ? 0 : i], pos[i]), s->k + (size_t)i * kvd, kvd);
        kv_store(s, kv_at(s, s->vc, l, slot[same_slot ? 0 : i], pos[i]), s->v + (size_t)i * kvd, kvd);
    }
}

/* ---------------------------------------------------------------- one token, one region */
/* 1 when every matrix of the model takes a 512-bit kernel on int8 activations at batch 1, with
 * the widths decode_one assumes (head_dim whole blocks, so a head's output is its own blocks;
 * each matrix as wide as its input, which the loader already checks, so that every plan that
 * decode_one makes is accepted). */
static int decode_one_applies(const llm_session *s) {
    const llm_model *m = s->m;
    const llm_config *c = &m->cfg;
    const int D = c->dim, qd = c->n_heads * c->head_dim, F = c->ffn;
    if (!s->fast || c->head_dim % 32 || m->output.cols != D || !llm_q8act_fusable(&m->output, 1)) return 0;
    for (int l = 0; l < c->n_layers; l++) {
        const llm_layer *L = &m->layers[l];
        const llm_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        const int width[7] = {D, D, D, qd, D, D, F};
        for (int i = 0; i < 7; i++)
            if (ms[i]->cols != width[i] || !llm_q8act_fusable(ms[i], 1)) return 0;
    }
    return 1;
}

int llm_session_one_region(const llm_session *s) { return decode_one_applies(s); }

/* One token of one slot through the whole model in one parallel region, its steps separated
 * by spin barriers: thread 0 does the small serial steps (norms, biases, RoPE, the KV store,
 * rounding a row of dim values), every thread its share of each matrix and of the attention
 * heads, and each thread rounds the output blocks of its own heads. A decode step used to
 * open three regions a layer (about 3 us each on the development VM, with libgomp's barriers
 * at 1.4 us between steps, each ending in a futex system call); this one opens one. The same
 * kernels, tiles, roundings and sums as forward's fused calls, so the same logits bit for bit.
 * *ran stays 0 where the model does not fit its assumptions (decode_one_applies). */
static int decode_one(llm_session *s, int32_t tok, int slot, int32_t pos, float *logits, int *ran) {
    *ran = 0;
#ifndef LLM_ONE_REGION
    (void)s, (void)tok, (void)slot, (void)pos, (void)logits;
    return DR_OK;
#else
    const llm_model *m = s->m;
    const llm_config *c = &m->cfg;
    const int D = c->dim, hd = c->head_dim, nh = c->n_heads, qd = nh * hd, F = c->ffn;
    if (!decode_one_applies(s)) return DR_OK;
    if (tok < 0 || tok >= c->vocab) return dr_error(DR_ERR_RANGE, "token id %d out of range (vocabulary %d)", tok, c->vocab);
    const size_t bD = llm_q8act_bytes(D / 32), bQ = llm_q8act_bytes(qd / 32), bF = llm_q8act_bytes(F / 32);
    if (!s->one_ax) {
        const int wide = D > F ? (D > qd ? D : qd) : (F > qd ? F : qd);
        s->one_xa = malloc((size_t)(wide / 32) * sizeof *s->one_xa);
        s->one_ax = dr_aligned_alloc(bD + bQ + bF);
        if (!s->one_xa || !s->one_ax) {
            free(s->one_xa), free(s->one_ax);
            s->one_xa = NULL, s->one_ax = NULL;
            return dr_error(DR_ERR_NOMEM, "out of memory for one token's activations");
        }
    }
    int rc = ensure_scratch(s, 1);
    if (!rc) rc = ensure_scores(s, (size_t)omp_get_max_threads() * sc_stride(s));
    if (rc) return rc;
    llm_ablk *xa = s->one_xa;
    uint8_t *axD = s->one_ax, *axQ = axD + bD, *axF = axQ + bQ;
    llm_mat_row(&m->tok_embd, tok, s->x);
    nn_rope_table(s->cos_t, s->sin_t, &pos, 1, 0, hd, c->rope_theta, m->rope_freqs);
    llm_q8plan pqkv, po, pgu, pd;
    llm_barrier bar;
    llm_barrier_init(&bar);
#pragma omp parallel
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        const int h0 = nh * tid / nt, h1 = nh * (tid + 1) / nt;
        float *sc = s->scores + (size_t)tid * sc_stride(s);
        for (int l = 0; l < c->n_layers; l++) {
            const llm_layer *L = &m->layers[l];
            if (tid == 0) {
                nn_rmsnorm_forward(s->h, NULL, s->x, L->attn_norm, 1, D, c->rms_eps);
                llm_q8act_round(s->h, 1, D, xa, axD);
                const llm_mat *qkv[3] = {&L->wq, &L->wk, &L->wv};
                float *const out[3] = {s->q, s->k, s->v};
                llm_q8plan_init(&pqkv, qkv, 3, 1, axD, out, nt);
            }
            llm_barrier_wait(&bar);
            llm_q8plan_run(&pqkv, &bar);
            if (tid == 0) {
                qkv_finish(s, L, l, 1, &slot, &pos, 1);
                const llm_mat *wo = &L->wo;
                float *const out = s->h;
                llm_q8plan_init(&po, &wo, 1, 1, axQ, &out, nt);
            }
            llm_barrier_wait(&bar);
            for (int h = h0; h < h1; h++) {
                attend_one(s, l, slot, pos, s->q, s->att, sc, h);
                llm_q8act_round_blocks(s->att, qd / 32, h * hd / 32, (h + 1) * hd / 32, xa, axQ);
            }
            llm_barrier_wait(&bar);
            llm_q8plan_run(&po, &bar);
            if (tid == 0) {
                for (int i = 0; i < D; i++) s->x[i] += s->h[i];
                nn_rmsnorm_forward(s->h, NULL, s->x, L->ffn_norm, 1, D, c->rms_eps);
                llm_q8act_round(s->h, 1, D, xa, axD);
                const llm_mat *gu[2] = {&L->w_gate, &L->w_up}, *dn = &L->w_down;
                float *const gu_y[2] = {s->g, s->u}, *const dn_y = s->h;
                llm_q8plan_init(&pgu, gu, 2, 1, axD, gu_y, nt);
                llm_q8plan_init(&pd, &dn, 1, 1, axF, &dn_y, nt);
            }
            llm_barrier_wait(&bar);
            llm_q8plan_run(&pgu, &bar);
            llm_q8act_round_share(s->g, s->u, (size_t)F, 1, F / 32, xa, axF);
            llm_barrier_wait(&bar);
            llm_q8plan_run(&pd, &bar);
            if (tid == 0)
                for (int i = 0; i < D; i++) s->x[i] += s->h[i];
        }
        if (logits) {
            if (tid == 0) {
                nn_rmsnorm_forward(s->h, NULL, s->x, m->output_norm, 1, D, c->rms_eps);
                llm_q8act_round(s->h, 1, D, xa, axD);
                const llm_mat *w = &m->output;
                llm_q8plan_init(&po, &w, 1, 1, axD, &logits, nt);
            }
            llm_barrier_wait(&bar);
            llm_q8plan_run(&po, &bar);
        }
    }
    *ran = 1;
    return DR_OK;
#endif
}

/* Tokens tok[i] at slot[i], position pos[i]. same_slot: all in slot[0] at pos[0]+i.
 * Logits for rows logits_from..n-1 into logits (if non-NULL). */
static int forward(llm_session *s, int n, const int32_t *tok, const int *slot, const int32_t *pos, int same_slot,
                   float *logits, int logits_from) {
    const llm_model *m = s->m;
    const llm_config *c = &m->cfg;
    const int D = c->dim, hd = c->head_dim, qd = c->n_heads * hd, F = c->ffn;
    int rc = ensure_scratch(s, n);
    if (!rc) rc = ensure_scores(s, (size_t)omp_get_max_threads() * sc_stride(s));
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        if (tok[i] < 0 || tok[i] >= c->vocab)
            return dr_error(DR_ERR_RANGE, "token id %d out of range (vocabulary %d)", tok[i], c->vocab);
        llm_mat_row(&m->tok_embd, tok[i], s->x + (size_t)i * D);
    }
    /* the angles of the n positions, shared by q and k of every layer */
    nn_rope_table(s->cos_t, s->sin_t, pos, n, 0, hd, c->rope_theta, m->rope_freqs);
    const int use_sgemm_attn = same_slot && n >= ATTN_SGEMM_MIN;
    void (*const mm)(const llm_mat *, const float *, int, float *) = s->fast ? llm_matmul_fast : llm_matmul;
    for (int l = 0; l < c->n_layers; l++) {
        const llm_layer *L = &m->layers[l];
        nn_rmsnorm_forward(s->h, NULL, s->x, L->attn_norm, n, D, c->rms_eps);
        if (s->fast) {
            const llm_mat *qkv[3] = {&L->wq, &L->wk, &L->wv};
            float *const out[3] = {s->q, s->k, s->v};
            llm_matmul_fast_group(qkv, 3, s->h, n, out);
        } else {
            mm(&L->wq, s->h, n, s->q);
            mm(&L->wk, s->h, n, s->k);
            mm(&L->wv, s->h, n, s->v);
        }
        qkv_finish(s, L, l, n, slot, pos, same_slot);
        int o_done = 0; /* the o matrix taken in the attention's region */
        if (use_sgemm_attn) {
            if ((rc = attend_chunk(s, l, slot[0], pos[0], n))) return rc;
        } else if (n == 1) {
            attn_one_ctx a = {s, l, slot[0], pos[0]};
            o_done = s->fast && !llm_matmul_q8act_after(&L->wo, s->att, 1, attend_heads, &a, s->h);
            if (!o_done) {
#pragma omp parallel
                attend_heads(&a);
            }
        } else {
            const int nh = c->n_heads;
#pragma omp parallel for schedule(dynamic, 1)
            for (int ih = 0; ih < n * nh; ih++) {
                int i = ih / nh, h = ih % nh;
                float *sc = s->scores + (size_t)omp_get_thread_num() * sc_stride(s);
                attend_one(s, l, slot[same_slot ? 0 : i], pos[i], s->q + (size_t)i * qd, s->att + (size_t)i * qd, sc, h);
            }
        }
        if (!o_done) mm(&L->wo, s->att, n, s->h);
        for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] += s->h[i];
        nn_rmsnorm_forward(s->h, NULL, s->x, L->ffn_norm, n, D, c->rms_eps);
        if (!s->fast || llm_ffn_q8act(&L->w_gate, &L->w_up, &L->w_down, s->h, n, s->g, s->u, s->h)) {
            if (s->fast) {
                const llm_mat *gu[2] = {&L->w_gate, &L->w_up};
                float *const out[2] = {s->g, s->u};
                llm_matmul_fast_group(gu, 2, s->h, n, out);
            } else {
                mm(&L->w_gate, s->h, n, s->g);
                mm(&L->w_up, s->h, n, s->u);
            }
            nn_swiglu_forward(s->g, s->g, s->u, (size_t)n * F);
            mm(&L->w_down, s->g, n, s->h);
        }
        for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] += s->h[i];
    }
    if (logits && logits_from < n) {
        int nl = n - logits_from;
        nn_rmsnorm_forward(s->h, NULL, s->x + (size_t)logits_from * D, m->output_norm, nl, D, c->rms_eps);
        mm(&m->output, s->h, nl, logits);
    }
    return DR_OK;
}

int llm_prefill(llm_session *s, int slot, const int32_t *tokens, int n, float *logits, int all_logits) {
    if (slot < 0 || slot >= s->n_slots) return dr_error(DR_ERR_RANGE, "slot %d out of range (0..%d)", slot, s->n_slots - 1);
    if (n <= 0) return dr_error(DR_ERR_ARG, "prefill of %d tokens", n);
    if (n > s->n_ctx - s->len[slot])
        return dr_error(DR_ERR_RANGE, "slot %d: %d + %d tokens exceed the session context of %d", slot, s->len[slot], n,
                        s->n_ctx);
    int chunk = n < PREFILL_CHUNK ? n : PREFILL_CHUNK;
    int32_t *pos = dr_calloc((size_t)chunk, sizeof *pos);
    if (!pos) return DR_ERR_NOMEM;
    int rc = DR_OK;
    const int V = s->m->cfg.vocab;
    for (int done = 0; done < n && !rc; done += chunk) {
        int cn = n - done < chunk ? n - done : chunk;
        for (int i = 0; i < cn; i++) pos[i] = s->len[slot] + i;
        float *lg = NULL;
        int from = cn;
        if (logits && all_logits) {
            lg = logits + (size_t)done * V;
            from = 0;
        } else if (logits && done + cn == n) {
            lg = logits;
            from = cn - 1;
        }
        rc = forward(s, cn, tokens + done, &slot, pos, 1, lg, from);
        if (!rc) s->len[slot] += cn;
    }
    free(pos);
    return rc;
}

int llm_decode(llm_session *s, const int *slots, const int32_t *tokens, int n, float *logits) {
    if (n <= 0) return dr_error(DR_ERR_ARG, "decode of %d sequences", n);
    int32_t *pos = dr_calloc((size_t)n, sizeof *pos);
    if (!pos) return DR_ERR_NOMEM;
    int rc = DR_OK;
    for (int i = 0; i < n && !rc; i++) {
        if (slots[i] < 0 || slots[i] >= s->n_slots)
            rc = dr_error(DR_ERR_RANGE, "slot %d out of range (0..%d)", slots[i], s->n_slots - 1);
        else if (s->len[slots[i]] >= s->n_ctx)
            rc = dr_error(DR_ERR_RANGE, "slot %d is full (context %d)", slots[i], s->n_ctx);
        for (int j = 0; j < i && !rc; j++)
            if (slots[j] == slots[i]) rc = dr_error(DR_ERR_ARG, "slot %d appears twice in one decode step", slots[i]);
        if (!rc) pos[i] = s->len[slots[i]];
    }
    /* Chunks of at most PREFILL_CHUNK sequences bound the scratch memory. */
    const int V = s->m->cfg.vocab;
    for (int d = 0; d < n && !rc; d += PREFILL_CHUNK) {
        int cn = n - d < PREFILL_CHUNK ? n - d : PREFILL_CHUNK;
        float *lg = logits ? logits + (size_t)d * V : NULL;
        int ran = 0;
        if (cn == 1) rc = decode_one(s, tokens[d], slots[d], pos[d], lg, &ran);
        if (!rc && !ran) rc = forward(s, cn, tokens + d, slots + d, pos + d, 0, lg, 0);
        if (!rc)
            for (int i = 0; i < cn; i++) s->len[slots[d + i]]++;
    }
    free(pos);
    return rc;
}
