/* LLM engine tests: logits against the PyTorch reference (tools/llm_ref/qwen2_ref.py),
 * KV-cache decode, batched decode, forks, weight-type conversions, bad models, sampler,
 * stop strings. */
#include "harness.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stdlib.h>
#include <string.h>

#define FIXDIR "tests/fixtures/llm"

typedef struct ref_seq { int len; int32_t *tok; float *logits; } ref_seq;
typedef struct ref { int n, vocab; ref_seq *s; } ref;

static void ref_load(ref *r, const char *path) {
    char *buf = NULL;
    size_t n = 0;
    CHECK_OK(dr_read_file(path, &buf, &n));
    CHECK(n >= 12 && !memcmp(buf, "LREF", 4));
    const char *p = buf + 4;
    memcpy(&r->n, p, 4);
    memcpy(&r->vocab, p + 4, 4);
    p += 8;
    r->s = calloc((size_t)r->n, sizeof *r->s);
    for (int i = 0; i < r->n; i++) {
        ref_seq *s = &r->s[i];
        memcpy(&s->len, p, 4);
        p += 4;
        s->tok = malloc((size_t)s->len * 4);
        memcpy(s->tok, p, (size_t)s->len * 4);
        p += (size_t)s->len * 4;
        s->logits = malloc((size_t)s->len * r->vocab * 4);
        memcpy(s->logits, p, (size_t)s->len * r->vocab * 4);
        p += (size_t)s->len * r->vocab * 4;
    }
    CHECK((size_t)(p - buf) == n);
    free(buf);
}

static void ref_free(ref *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->s[i].tok);
        free(r->s[i].logits);
    }
    free(r->s);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

/* Prefill every reference sequence (all logits), decode token by token, and a batched
 * decode over all sequences at once; return the worst error of the three. */
static double check_model(const llm_model *m, const ref *r, double tol, const char *what) {
    const int V = r->vocab;
    CHECK_EQ_INT(m->cfg.vocab, V);
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, r->n + 1, 64));
    double worst = 0;
    /* 1. full prefill, all logits */
    for (int i = 0; i < r->n; i++) {
        const ref_seq *q = &r->s[i];
        float *lg = malloc((size_t)q->len * V * 4);
        CHECK_OK(llm_prefill(s, i, q->tok, q->len, lg, 1));
        double e = max_abs_diff(lg, q->logits, (size_t)q->len * V);
        CHECK_MSG(e <= tol, "%s prefill seq %d: max abs err %g > %g", what, i, e, tol);
        worst = e > worst ? e : worst;
        free(lg);
        CHECK_EQ_INT(llm_slot_len(s, i), q->len);
        CHECK_OK(llm_slot_truncate(s, i, 0));
    }
    /* 2. token by token with the KV cache (slot r->n), last-logits prefill of 1 token */
    {
        const ref_seq *q = &r->s[0];
        float *lg = malloc((size_t)V * 4);
        int slot = r->n;
        for (int t = 0; t < q->len; t++) {
            if (t % 2) CHECK_OK(llm_decode(s, &slot, &q->tok[t], 1, lg));
            else CHECK_OK(llm_prefill(s, slot, &q->tok[t], 1, lg, 0));
            double e = max_abs_diff(lg, q->logits + (size_t)t * V, V);
            CHECK_MSG(e <= tol, "%s decode step %d: max abs err %g > %g", what, t, e, tol);
            worst = e > worst ? e : worst;
        }
        free(lg);
        CHECK_OK(llm_slot_truncate(s, slot, 0));
    }
    /* 3. batched decode: first token of every sequence, then one token per step for the
     * sequences that still have tokens (different lengths, slots in reverse order). */
    {
        int maxlen = 0;
        for (int i = 0; i < r->n; i++) maxlen = r->s[i].len > maxlen ? r->s[i].len : maxlen;
        float *lg = malloc((size_t)r->n * V * 4);
        int slots[16], idx[16];
        int32_t toks[16];
        for (int t = 0; t < maxlen; t++) {
            int na = 0;
            for (int i = r->n - 1; i >= 0; i--)
                if (t < r->s[i].len) {
                    idx[na] = i;
                    slots[na] = i;
                    toks[na++] = r->s[i].tok[t];
                }
            CHECK_OK(llm_decode(s, slots, toks, na, lg));
            for (int a = 0; a < na; a++) {
                double e = max_abs_diff(lg + (size_t)a * V, r->s[idx[a]].logits + (size_t)t * V, V);
                CHECK_MSG(e <= tol, "%s batched decode seq %d step %d: max abs err %g > %g", what, idx[a], t, e, tol);
                worst = e > worst ? e : worst;
            }
        }
        free(lg);
    }
    /* 4. prefill a prefix, fork into 3 slots, continue each with the rest (batched). */
    {
        const ref_seq *q = &r->s[0];
        for (int i = 0; i <= r->n; i++) CHECK_OK(llm_slot_truncate(s, i, 0));
        int pre = q->len - 3;
        CHECK_OK(llm_prefill(s, 0, q->tok, pre, NULL, 0));
        int dst[3] = {1, 2, 3};
        CHECK_OK(llm_slot_fork(s, 0, dst, 3));
        float *lg = malloc((size_t)3 * V * 4);
        for (int t = pre; t < q->len; t++) {
            int32_t tk[3] = {q->tok[t], q->tok[t], q->tok[t]};
            CHECK_OK(llm_decode(s, dst, tk, 3, lg));
            for (int a = 0; a < 3; a++) {
                double e = max_abs_diff(lg + (size_t)a * V, q->logits + (size_t)t * V, V);
                CHECK_MSG(e <= tol, "%s forked decode %d step %d: max abs err %g > %g", what, a, t, e, tol);
            }
        }
        free(lg);
    }
    llm_session_free(s);
    return worst;
}

static void ref_test(const char *name, double tol) {
    char path[256];
    ref r;
    snprintf(path, sizeof path, FIXDIR "/%s.ref", name);
    ref_load(&r, path);
    snprintf(path, sizeof path, FIXDIR "/%s.gguf.fixture", name);
    llm_model *m;
    CHECK_OK(llm_model_load(&m, path));
    double e = check_model(m, &r, tol, name);
    printf("  %s: max abs err %.3g (tolerance %g)\n", name, e, tol);
    llm_model_free(m);
    ref_free(&r);
}

TEST(llm_qwen2_matches_reference) {
    llm_model *m;
    CHECK_OK(llm_model_load(&m, FIXDIR "/qwen2_tiny.gguf.fixture"));
    CHECK_EQ_INT(m->cfg.arch, LLM_ARCH_QWEN2);
    CHECK_EQ_INT(m->cfg.rope_pairing, NN_ROPE_NEOX);
    CHECK_EQ_INT(m->cfg.tied_output, 1);
    CHECK_EQ_INT(m->cfg.qkv_bias, 1);
    CHECK_EQ_INT(m->cfg.n_kv_heads, 2);
    CHECK(m->output.data == m->tok_embd.data);
    llm_model_free(m);
    ref_test("qwen2_tiny", 1e-4);
}

TEST(llm_llama_matches_reference) {
    llm_model *m;
    CHECK_OK(llm_model_load(&m, FIXDIR "/llama_tiny.gguf.fixture"));
    CHECK_EQ_INT(m->cfg.arch, LLM_ARCH_LLAMA);
    CHECK_EQ_INT(m->cfg.rope_pairing, NN_ROPE_ADJACENT);
    CHECK_EQ_INT(m->cfg.tied_output, 0);
    CHECK_EQ_INT(m->cfg.qkv_bias, 0);
    CHECK_EQ_INT(m->cfg.n_kv_heads, 1);
    llm_model_free(m);
    ref_test("llama_tiny", 1e-4);
}

/* qwen3: q/k RMSNorm per head, no biases, head_dim 24 with 4 heads on width 64. */
TEST(llm_qwen3_matches_reference) {
    llm_model *m;
    CHECK_OK(llm_model_load(&m, FIXDIR "/qwen3_tiny.gguf.fixture"));
    CHECK_EQ_INT(m->cfg.arch, LLM_ARCH_QWEN3);
    CHECK_EQ_INT(m->cfg.rope_pairing, NN_ROPE_NEOX);
    CHECK_EQ_INT(m->cfg.qkv_bias, 0);
    CHECK_EQ_INT(m->cfg.head_dim, 24);
    CHECK(m->layers[1].q_norm && m->layers[1].k_norm && !m->rope_freqs);
    /* a save / load round trip keeps the norms */
    const char *path = dr_test_path(dr_test_tmpdir(), "qwen3.gguf");
    CHECK_OK(llm_model_save(m, NULL, path));
    llm_model *m2;
    CHECK_OK(llm_model_load(&m2, path));
    CHECK(m2->layers[1].k_norm && m2->layers[1].k_norm[3] == m->layers[1].k_norm[3]);
    llm_model_free(m2);
    llm_model_free(m);
    ref_test("qwen3_tiny", 1e-4);
}

/* llama 3.1+: rope_freqs.weight divides the RoPE frequencies. */
TEST(llm_llama3_matches_reference) {
    llm_model *m;
    CHECK_OK(llm_model_load(&m, FIXDIR "/llama3_tiny.gguf.fixture"));
    CHECK_EQ_INT(m->cfg.arch, LLM_ARCH_LLAMA);
    CHECK(m->rope_freqs != NULL);
    CHECK(m->rope_freqs[m->cfg.head_dim / 2 - 1] > 7.9f);
    llm_model_free(m);
    ref_test("llama3_tiny", 1e-4);
}

/* A model written by `deeprec llm init` (our GGUF writer), evaluated by the reference's reader. */
TEST(llm_init_model_matches_reference) { ref_test("qwen2_init", 1e-4); }

/* Weight types: the converted model against (a) the fp32 reference with the stated
 * tolerance and (b) an F32 model holding exactly the rounded weights (kernel exactness). */
static void type_test(const char *name, uint32_t type, double tol_ref) {
    char path[256];
    ref r;
    snprintf(path, sizeof path, FIXDIR "/%s.ref", name);
    ref_load(&r, path);
    snprintf(path, sizeof path, FIXDIR "/%s.gguf.fixture", name);
    llm_model *m, *mr;
    CHECK_OK(llm_model_load(&m, path));
    CHECK_OK(llm_model_convert(m, type));
    CHECK_EQ_INT(m->layers[0].wq.type, type);
    CHECK_EQ_INT(m->output.type, type);
    /* the rounded weights as F32: convert back */
    CHECK_OK(llm_model_load(&mr, path));
    CHECK_OK(llm_model_convert(mr, type));
    CHECK_OK(llm_model_convert(mr, GGML_TYPE_F32));
    /* (a) against the float64 reference of the unrounded model */
    double e = check_model(m, &r, tol_ref, ggml_type_name(type));
    /* (b) rounded-weight F32 model as the reference: tight */
    ref r2 = r;
    r2.s = calloc((size_t)r.n, sizeof *r2.s);
    llm_session *s;
    CHECK_OK(llm_session_new(&s, mr, 1, 64));
    for (int i = 0; i < r.n; i++) {
        r2.s[i].len = r.s[i].len;
        r2.s[i].tok = r.s[i].tok;
        r2.s[i].logits = malloc((size_t)r.s[i].len * r.vocab * 4);
        CHECK_OK(llm_slot_truncate(s, 0, 0));
        CHECK_OK(llm_prefill(s, 0, r.s[i].tok, r.s[i].len, r2.s[i].logits, 1));
    }
    llm_session_free(s);
    double e2 = check_model(m, &r2, 1e-4, ggml_type_name(type));
    printf("  %s %s: vs fp32 reference %.3g (tolerance %g); vs rounded-weight F32 model %.3g (tolerance 1e-4)\n", name,
           ggml_type_name(type), e, tol_ref, e2);
    for (int i = 0; i < r.n; i++) free(r2.s[i].logits);
    free(r2.s);
    llm_model_free(m);
    llm_model_free(mr);
    ref_free(&r);
}

/* Stated tolerances (logits up to ~24 in magnitude): F16 0.05, BF16 0.5, Q8_0 0.5. */
TEST(llm_types_f16) { type_test("qwen2_tiny", GGML_TYPE_F16, 0.05); type_test("llama_tiny", GGML_TYPE_F16, 0.05); }
TEST(llm_types_bf16) { type_test("qwen2_tiny", GGML_TYPE_BF16, 0.5); type_test("llama_tiny", GGML_TYPE_BF16, 0.5); }
TEST(llm_types_q8_0) { type_test("qwen2_tiny", GGML_TYPE_Q8_0, 0.5); type_test("llama_tiny", GGML_TYPE_Q8_0, 0.5); }

/* Long prefill (sgemm path, attention by sgemm, chunking) against token-by-token decode. */
TEST(llm_prefill_long_matches_decode) {
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn = 96, c.vocab = 97;
    c.context = 1024;
    uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_BF16, GGML_TYPE_Q8_0};
    for (int ti = 0; ti < 3; ti++) {
        llm_model *m;
        CHECK_OK(llm_model_init_random(&m, &c, types[ti], 0.1f, 7));
        const int n = 600, V = c.vocab;
        int32_t *tok = malloc(n * 4);
        dr_rng g;
        dr_rng_seed(&g, 3);
        for (int i = 0; i < n; i++) tok[i] = (int32_t)dr_rng_below(&g, (uint64_t)V);
        llm_session *s;
        CHECK_OK(llm_session_new(&s, m, 2, n));
        float *a = malloc((size_t)n * V * 4), *b = malloc((size_t)V * 4);
        CHECK_OK(llm_prefill(s, 0, tok, 5, a, 1));
        CHECK_OK(llm_prefill(s, 0, tok + 5, n - 5, a + (size_t)5 * V, 1));
        double worst = 0;
        int slot = 1;
        for (int t = 0; t < n; t++) {
            CHECK_OK(llm_decode(s, &slot, &tok[t], 1, b));
            double e = max_abs_diff(a + (size_t)t * V, b, V);
            worst = e > worst ? e : worst;
        }
        printf("  %s: prefill vs decode max abs err %.3g\n", ggml_type_name(types[ti]), worst);
        CHECK_MSG(worst < 2e-3, "prefill vs decode: %g", worst);
        CHECK_ERR(llm_prefill(s, 0, tok, 1, NULL, 0), DR_ERR_RANGE); /* context full */
        free(a);
        free(b);
        free(tok);
        llm_session_free(s);
        llm_model_free(m);
    }
}

/* The fp16 KV cache: its two read paths (the per-token loop of decode and the widened sgemm
 * of a long prefill) agree as the fp32 cache's do, it stays within fp16 rounding of the fp32
 * cache, and slots do not move between caches of different types. head_dim 20: the widening
 * takes whole vectors and a tail. */
TEST(llm_kv_f16) {
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 20, c.ffn = 96, c.vocab = 97;
    c.context = 512;
    CHECK_EQ_INT(llm_kv_type_from_name("f16"), LLM_KV_F16);
    CHECK_EQ_INT(llm_kv_type_from_name("f32"), LLM_KV_F32);
    CHECK_EQ_INT(llm_kv_type_from_name("q8_0"), -1);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.1f, 7));
    const int n = 300, V = c.vocab;
    int32_t *tok = malloc(n * 4);
    dr_rng g;
    dr_rng_seed(&g, 3);
    for (int i = 0; i < n; i++) tok[i] = (int32_t)dr_rng_below(&g, (uint64_t)V);
    float *ref = malloc((size_t)n * V * 4), *a = malloc((size_t)n * V * 4), *b = malloc((size_t)V * 4);
    llm_session *s32, *s16;
    CHECK_OK(llm_session_new(&s32, m, 1, n));
    CHECK_OK(llm_prefill(s32, 0, tok, n, ref, 1));
    llm_model_set_kv_type(m, LLM_KV_F16);
    CHECK_OK(llm_session_new(&s16, m, 2, n));
    CHECK_OK(llm_prefill(s16, 0, tok, 5, a, 1));
    CHECK_OK(llm_prefill(s16, 0, tok + 5, n - 5, a + (size_t)5 * V, 1));
    double paths = 0, vs32 = max_abs_diff(a, ref, (size_t)n * V), scale = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    int slot = 1;
    for (int t = 0; t < n; t++) {
        CHECK_OK(llm_decode(s16, &slot, &tok[t], 1, b));
        double e = max_abs_diff(a + (size_t)t * V, b, V);
        paths = e > paths ? e : paths;
    }
    printf("  f16 cache: prefill vs decode %.3g; against the f32 cache %.3g (logits up to %.3g)\n", paths, vs32, scale);
    CHECK_MSG(paths < 2e-3, "prefill vs decode: %g", paths);
    CHECK_MSG(vs32 > 0 && vs32 < 2e-3 * scale, "f16 vs f32 cache: %g", vs32);
    CHECK_ERR(llm_slot_copy(s16, 0, s32, 0), DR_ERR_ARG);
    CHECK_ERR(llm_slot_copy(s32, 0, s16, 1), DR_ERR_ARG);
    free(ref);
    free(a);
    free(b);
    free(tok);
    llm_session_free(s32);
    llm_session_free(s16);
    llm_model_free(m);
}

/* Kernel check: llm_matmul for every type and batch size against a double loop. Batches from
 * 64 take the prefill path (f32gemm with AVX-512, else sgemm): 70 and 95 leave partial 12-token
 * tiles, 37 rows a partial 32-row panel, and width 1027 a partial second k block of 512. */
TEST(llm_matmul_kernels) {
    for (int pass = 0; pass < 3; pass++) {
    const int rows = 37, cols = pass == 2 ? 1027 : pass ? 203 : 96 + 32 * 3; /* 203, 1027: tails for the float types */
    const int nmax = 95;
    uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0};
    float *wf = malloc((size_t)rows * cols * 4), *x = malloc((size_t)nmax * cols * 4);
    dr_rng g;
    dr_rng_seed(&g, 11);
    for (int i = 0; i < rows * cols; i++) wf[i] = dr_rng_normal(&g);
    for (int i = 0; i < nmax * cols; i++) x[i] = dr_rng_normal(&g);
    for (int ti = 0; ti < (pass ? 3 : 4); ti++) {
        llm_mat w = {0};
        w.type = types[ti], w.rows = rows, w.cols = cols;
        w.row_bytes = ggml_row_bytes(types[ti], (uint64_t)cols);
        uint8_t *buf = malloc(w.row_bytes * rows);
        for (int r = 0; r < rows; r++) {
            uint8_t *d = buf + (size_t)r * w.row_bytes;
            const float *src = wf + (size_t)r * cols;
            if (types[ti] == GGML_TYPE_F32) memcpy(d, src, (size_t)cols * 4);
            else if (types[ti] == GGML_TYPE_F16) for (int i = 0; i < cols; i++) ((uint16_t *)d)[i] = dr_f32_to_f16(src[i]);
            else if (types[ti] == GGML_TYPE_BF16) for (int i = 0; i < cols; i++) ((uint16_t *)d)[i] = dr_f32_to_bf16(src[i]);
            else dr_quantize_q8_0(src, d, (uint64_t)cols);
        }
        w.data = buf;
        float *row = malloc((size_t)cols * 4);
        for (int n = 1; n <= nmax; n = n < 20 ? n + 1 : n + 25) { /* 1..20, 45, 70, 95: direct and prefill paths */
            float *y = malloc((size_t)n * rows * 4);
            llm_matmul(&w, x, n, y);
            double worst = 0;
            for (int j = 0; j < n; j++)
                for (int r = 0; r < rows; r++) {
                    llm_mat_row(&w, r, row);
                    double s = 0;
                    for (int k = 0; k < cols; k++) s += (double)row[k] * x[(size_t)j * cols + k];
                    double e = fabs(s - y[(size_t)j * rows + r]);
                    worst = e > worst ? e : worst;
                }
            CHECK_MSG(worst < 1e-3, "%s cols %d n=%d: max err %g", ggml_type_name(types[ti]), cols, n, worst);
            free(y);
        }
        free(row);
        free(buf);
    }
    free(wf);
    free(x);
    }
}

/* ---------------------------------------------------------------- save / load, bad models */
static llm_config tiny_cfg(int arch) {
    llm_config c;
    llm_config_default(&c, arch);
    c.dim = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8, c.ffn = 64, c.vocab = 50, c.context = 64;
    return c;
}

TEST(llm_save_load_roundtrip) {
    const char *dir = dr_test_tmpdir();
    for (int arch = 0; arch < 2; arch++) {
        llm_config c = tiny_cfg(arch);
        llm_model *m, *m2;
        CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_BF16, 0.1f, 5));
        const char *path = dr_test_path(dir, arch ? "llama.gguf" : "qwen2.gguf");
        CHECK_OK(llm_model_save(m, NULL, path));
        CHECK_OK(llm_model_load(&m2, path));
        CHECK(!memcmp(&m->cfg, &m2->cfg, sizeof c));
        CHECK_EQ_INT(m2->layers[1].w_down.type, GGML_TYPE_BF16);
        int32_t tok[5] = {1, 2, 3, 4, 49};
        float a[50], b[50];
        llm_session *s1, *s2;
        CHECK_OK(llm_session_new(&s1, m, 1, 8));
        CHECK_OK(llm_session_new(&s2, m2, 1, 8));
        CHECK_OK(llm_prefill(s1, 0, tok, 5, a, 0));
        CHECK_OK(llm_prefill(s2, 0, tok, 5, b, 0));
        CHECK(!memcmp(a, b, sizeof a));
        llm_session_free(s1);
        llm_session_free(s2);
        llm_model_free(m);
        llm_model_free(m2);
    }
}

/* Write a model via the writer, letting `mutate` drop/alter things. */
static int write_bad(const char *path, int what) {
    llm_config c = tiny_cfg(LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.1f, 5));
    gguf_writer *w = gguf_writer_new();
    if (what == 0) { /* unknown architecture */
        m->cfg.arch = LLM_ARCH_QWEN2;
        CHECK_OK(llm_model_write(m, NULL, w));
        gguf_writer_free(w);
        w = gguf_writer_new();
        CHECK_OK(gguf_set_str(w, "general.architecture", "mamba"));
    } else if (what == 1) { /* missing tensor: layer 1 written without its q/k/v biases */
        m->layers[1].bq = NULL;
        CHECK_OK(llm_model_write(m, NULL, w));
    } else if (what == 2) { /* wrong shape: ffn 64 declared 128 */
        m->cfg.ffn = 128;
        CHECK_OK(llm_model_write(m, NULL, w));
    } else if (what == 3) { /* vocab mismatch */
        const char *toks[49];
        for (int i = 0; i < 49; i++) toks[i] = "a";
        CHECK_OK(llm_model_write(m, NULL, w));
        CHECK_OK(gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
        CHECK_OK(gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 49));
    }
    int rc = gguf_write(w, path);
    gguf_writer_free(w);
    llm_model_free(m);
    return rc;
}

TEST(llm_bad_models) {
    const char *dir = dr_test_tmpdir();
    llm_model *m = NULL;
    const char *p0 = dr_test_path(dir, "arch.gguf");
    CHECK_OK(write_bad(p0, 0));
    CHECK_ERR(llm_model_load(&m, p0), DR_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(dr_error_message(), "mamba") && strstr(dr_error_message(), "arch.gguf"), "%s", dr_error_message());
    const char *p1 = dr_test_path(dir, "missing.gguf");
    CHECK_OK(write_bad(p1, 1));
    CHECK_ERR(llm_model_load(&m, p1), DR_ERR_FORMAT);
    CHECK_MSG(strstr(dr_error_message(), "missing tensor blk.1.attn_q.bias"), "%s", dr_error_message());
    const char *p2 = dr_test_path(dir, "shape.gguf");
    CHECK_OK(write_bad(p2, 2));
    CHECK_ERR(llm_model_load(&m, p2), DR_ERR_FORMAT);
    CHECK_MSG(strstr(dr_error_message(), "ffn_gate.weight") && strstr(dr_error_message(), "shape"), "%s",
              dr_error_message());
    const char *p3 = dr_test_path(dir, "vocab.gguf");
    CHECK_OK(write_bad(p3, 3));
    CHECK_ERR(llm_model_load(&m, p3), DR_ERR_FORMAT);
    CHECK_MSG(strstr(dr_error_message(), "mismatch"), "%s", dr_error_message());
    CHECK(m == NULL);
    CHECK_ERR(llm_model_load(&m, dr_test_path(dir, "nope.gguf")), DR_ERR_IO);
}

TEST(llm_session_errors) {
    llm_config c = tiny_cfg(LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.1f, 5));
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, 2, 4));
    int32_t t[5] = {1, 2, 3, 4, 5}, bad = 50;
    CHECK_ERR(llm_prefill(s, 0, t, 5, NULL, 0), DR_ERR_RANGE);
    CHECK_ERR(llm_prefill(s, 2, t, 1, NULL, 0), DR_ERR_RANGE);
    CHECK_ERR(llm_prefill(s, 0, &bad, 1, NULL, 0), DR_ERR_RANGE);
    int sl[2] = {1, 1};
    CHECK_ERR(llm_decode(s, sl, t, 2, NULL), DR_ERR_ARG);
    CHECK_OK(llm_prefill(s, 0, t, 4, NULL, 0));
    CHECK_ERR(llm_decode(s, sl, t, 1, NULL), DR_OK);
    int s0 = 0;
    CHECK_ERR(llm_decode(s, &s0, t, 1, NULL), DR_ERR_RANGE);
    llm_session_free(s);
    llm_model_free(m);
}

/* A slot copied from another session (the agent's preamble cache) continues exactly as the
 * session that computed it would: same floats. */
TEST(llm_slot_copy_between_sessions) {
    llm_config c = tiny_cfg(LLM_ARCH_QWEN2);
    llm_model *m, *other;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 5));
    CHECK_OK(llm_model_init_random(&other, &c, GGML_TYPE_F32, 0.3f, 6));
    int32_t t[16];
    for (int i = 0; i < 16; i++) t[i] = (i * 7 + 3) % c.vocab;
    llm_session *src, *dst, *ref, *small, *foreign;
    CHECK_OK(llm_session_new(&src, m, 1, 12));
    CHECK_OK(llm_session_new(&dst, m, 3, 32));
    CHECK_OK(llm_session_new(&ref, m, 1, 32));
    CHECK_OK(llm_session_new(&small, m, 1, 8));
    CHECK_OK(llm_session_new(&foreign, other, 1, 32));
    CHECK_OK(llm_prefill(src, 0, t, 12, NULL, 0));
    CHECK_OK(llm_prefill(dst, 2, t + 8, 5, NULL, 0)); /* replaced by the copy */
    CHECK_OK(llm_slot_copy(dst, 2, src, 0));
    CHECK_EQ_INT(llm_slot_len(dst, 2), 12);
    CHECK_EQ_INT(llm_slot_len(dst, 0), 0);
    float a[2][50];
    CHECK_OK(llm_prefill(dst, 2, t + 12, 4, a[0], 0));
    CHECK_OK(llm_prefill(ref, 0, t, 12, NULL, 0));
    CHECK_OK(llm_prefill(ref, 0, t + 12, 4, a[1], 0));
    CHECK(!memcmp(a[0], a[1], sizeof a[0]));
    CHECK_ERR(llm_slot_copy(foreign, 0, src, 0), DR_ERR_ARG);
    CHECK_ERR(llm_slot_copy(small, 0, src, 0), DR_ERR_RANGE);
    CHECK_ERR(llm_slot_copy(dst, 3, src, 0), DR_ERR_RANGE);
    CHECK_ERR(llm_slot_copy(dst, 0, src, 1), DR_ERR_RANGE);
    llm_session *all[] = {src, dst, ref, small, foreign};
    for (int i = 0; i < 5; i++) llm_session_free(all[i]);
    llm_model_free(m);
    llm_model_free(other);
}

/* ---------------------------------------------------------------- sampler */
TEST(llm_sampler) {
    float lg[6] = {0.1f, 2.0f, -1.0f, 2.0f, 1.0f, 0.5f};
    llm_sampler_params p = {0};
    dr_rng g;
    dr_rng_seed(&g, 1);
    CHECK_EQ_INT(llm_sample(lg, 6, &p, &g, NULL), 1); /* greedy: lowest id among ties */
    CHECK_EQ_INT(llm_argmax(lg, 6), 1);
    /* top-k 2 at temperature 1: only ids 1 and 3, about half each */
    p.temperature = 1.0f, p.top_k = 2, p.top_p = 1.0f;
    int cnt[6] = {0};
    for (int i = 0; i < 20000; i++) cnt[llm_sample(lg, 6, &p, &g, NULL)]++;
    CHECK(cnt[0] + cnt[2] + cnt[4] + cnt[5] == 0);
    CHECK_NEAR(cnt[1] / 20000.0, 0.5, 0.02);
    /* top-p: p = 0.358 (ids 1, 3), 0.132 (4), 0.080 (5), ...; nucleus 0.8 keeps 1, 3, 4 */
    double e[6], z = 0;
    for (int i = 0; i < 6; i++) z += e[i] = exp(lg[i]);
    p.top_k = 0, p.top_p = 0.8f;
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < 40000; i++) cnt[llm_sample(lg, 6, &p, &g, NULL)]++;
    double kept = e[1] + e[3] + e[4];
    CHECK((e[1] + e[3]) / z < 0.8 && kept / z >= 0.8);
    CHECK(cnt[0] == 0 && cnt[2] == 0 && cnt[5] == 0);
    for (int i = 1; i < 5; i++)
        if (i != 2) CHECK_NEAR(cnt[i] / 40000.0, e[i] / kept, 0.015);
    /* plain temperature sampling: all tokens, frequencies follow softmax(l / T) */
    p.top_p = 1.0f, p.temperature = 2.0f;
    memset(cnt, 0, sizeof cnt);
    z = 0;
    for (int i = 0; i < 6; i++) z += e[i] = exp(lg[i] / 2);
    for (int i = 0; i < 40000; i++) cnt[llm_sample(lg, 6, &p, &g, NULL)]++;
    for (int i = 0; i < 6; i++) CHECK_NEAR(cnt[i] / 40000.0, e[i] / z, 0.015);
    /* top-k on a large random vocabulary: every sample is among the k largest */
    {
        enum { NV = 5000, K = 17 };
        float *big = malloc(NV * sizeof(float)), *sorted = malloc(NV * sizeof(float));
        dr_rng gg;
        dr_rng_seed(&gg, 5);
        for (int i = 0; i < NV; i++) sorted[i] = big[i] = dr_rng_normal(&gg);
        for (int i = 0; i < K; i++) /* partial selection sort: sorted[0..K) descending */
            for (int j = i + 1; j < NV; j++)
                if (sorted[j] > sorted[i]) {
                    float t = sorted[i];
                    sorted[i] = sorted[j];
                    sorted[j] = t;
                }
        llm_sampler_params pk = {.temperature = 3.0f, .top_k = K, .top_p = 1.0f};
        void *scr = malloc(llm_sample_scratch_bytes(NV));
        int seen = 0;
        for (int i = 0; i < 2000; i++) {
            int32_t id = llm_sample(big, NV, &pk, &gg, scr);
            CHECK(id >= 0 && id < NV && big[id] >= sorted[K - 1]);
            if (big[id] == sorted[K - 1]) seen = 1;
        }
        CHECK(seen);
        pk.top_k = 0, pk.top_p = 0.5f;
        for (int i = 0; i < 200; i++) CHECK(llm_sample(big, NV, &pk, &gg, scr) >= 0);
        free(scr);
        free(big);
        free(sorted);
    }
    /* seeded reproducibility */
    dr_rng a, b;
    dr_rng_seed(&a, 42);
    dr_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(llm_sample(lg, 6, &p, &a, NULL), llm_sample(lg, 6, &p, &b, NULL));
}

/* ---------------------------------------------------------------- stop strings */
static const char *fake_vocab[] = {"Hel", "lo", " wor", "ld", "<", "/an", "swer>", "\xE4\xBD", "\xA0", "!", "\n\n"};
static int fake_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    (void)ctx;
    if (id < 0 || id >= (int)(sizeof fake_vocab / sizeof *fake_vocab)) return -1;
    size_t n = strlen(fake_vocab[id]);
    memcpy(buf, fake_vocab[id], n < cap ? n : cap);
    return (int)n;
}

static void stream_all(const int32_t *ids, int n, const char *const *stops, int ns, char *out, int *stopped_at) {
    llm_textstream ts;
    llm_textstream_init(&ts, fake_piece, NULL, stops, ns);
    out[0] = 0;
    *stopped_at = -1;
    for (int i = 0; i < n; i++) {
        const char *o;
        size_t len;
        CHECK_OK(llm_textstream_push(&ts, ids[i], &o, &len));
        strncat(out, o, len);
        if (ts.stopped) {
            *stopped_at = i;
            break;
        }
    }
    if (!ts.stopped) {
        const char *o;
        size_t len;
        llm_textstream_flush(&ts, &o, &len);
        strncat(out, o, len);
    }
    CHECK_STR(out, ts.text);
    llm_textstream_free(&ts);
}

TEST(llm_stop_strings) {
    char out[256];
    int at;
    const char *stops[] = {"</answer>", "\n\n"};
    int32_t a[] = {0, 1, 2, 3, 4, 5, 6, 9, 9};
    stream_all(a, 9, stops, 2, out, &at);
    CHECK_STR(out, "Hello world");
    CHECK_EQ_INT(at, 6); /* completed by the token "swer>" */
    /* a partial match that does not complete is released later */
    int32_t b[] = {0, 4, 1, 9};
    stream_all(b, 4, stops, 2, out, &at);
    CHECK_STR(out, "Hel<lo!");
    CHECK_EQ_INT(at, -1);
    /* held-back text: after "<" nothing is released until it cannot start a stop */
    llm_textstream ts;
    llm_textstream_init(&ts, fake_piece, NULL, stops, 2);
    const char *o;
    size_t len;
    CHECK_OK(llm_textstream_push(&ts, 0, &o, &len));
    CHECK_EQ_INT(len, 3);
    CHECK_OK(llm_textstream_push(&ts, 4, &o, &len));
    CHECK_EQ_INT(len, 0);
    CHECK_OK(llm_textstream_push(&ts, 5, &o, &len));
    CHECK_EQ_INT(len, 0);
    CHECK_OK(llm_textstream_push(&ts, 9, &o, &len));
    CHECK_EQ_INT(len, 5);
    CHECK(!memcmp(o, "</an!", 5));
    llm_textstream_free(&ts);
    /* UTF-8 split over two tokens is not released half */
    llm_textstream_init(&ts, fake_piece, NULL, NULL, 0);
    CHECK_OK(llm_textstream_push(&ts, 7, &o, &len));
    CHECK_EQ_INT(len, 0);
    CHECK_OK(llm_textstream_push(&ts, 8, &o, &len));
    CHECK_EQ_INT(len, 3);
    CHECK(!memcmp(o, "\xE4\xBD\xA0", 3));
    llm_textstream_free(&ts);
    /* stop "\n\n" across a token and the stop at the very beginning */
    int32_t c[] = {10, 0};
    stream_all(c, 2, stops, 2, out, &at);
    CHECK_STR(out, "");
    CHECK_EQ_INT(at, 0);
}

/* Generation end to end (no tokenizer): greedy equals argmax decode; seeds reproduce. */
TEST(llm_generate_batch) {
    llm_config c = tiny_cfg(LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 9));
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, 4, 32));
    int32_t prompt[4] = {3, 1, 4, 1};
    CHECK_OK(llm_prefill(s, 0, prompt, 3, NULL, 0));
    int dst[3] = {1, 2, 3};
    CHECK_OK(llm_slot_fork(s, 0, dst, 3));
    int slots[4] = {0, 1, 2, 3};
    int32_t pend[4] = {1, 1, 1, 1};
    llm_gen_params p = {0};
    p.max_tokens = 6;
    p.sampler.temperature = 0;
    llm_gen_result res[4];
    CHECK_OK(llm_generate(s, NULL, slots, pend, 4, &p, NULL, res, NULL, NULL));
    /* greedy reference by hand on a fresh session */
    llm_session *s2;
    CHECK_OK(llm_session_new(&s2, m, 1, 32));
    float lg[50];
    CHECK_OK(llm_prefill(s2, 0, prompt, 4, lg, 0));
    for (int i = 0; i < 6; i++) {
        int32_t id = llm_argmax(lg, 50);
        for (int k = 0; k < 4; k++) CHECK_EQ_INT(res[k].ids[i], id);
        int sl = 0;
        if (i < 5) CHECK_OK(llm_decode(s2, &sl, &id, 1, lg));
    }
    for (int k = 0; k < 4; k++) {
        CHECK_EQ_INT(res[k].n_ids, 6);
        CHECK_EQ_INT(res[k].finish, LLM_FINISH_LENGTH);
        CHECK_EQ_INT(llm_slot_len(s, k), 4 + 5);
        llm_gen_result_free(&res[k]);
    }
    /* sampling with a seed: same seed same ids, per-sequence streams differ */
    p.sampler.temperature = 1.5f, p.sampler.top_p = 1.0f, p.seed = 77;
    llm_gen_result r1[4], r2[4];
    for (int k = 0; k < 4; k++) CHECK_OK(llm_slot_truncate(s, k, 3));
    CHECK_OK(llm_generate(s, NULL, slots, pend, 4, &p, NULL, r1, NULL, NULL));
    for (int k = 0; k < 4; k++) CHECK_OK(llm_slot_truncate(s, k, 3));
    CHECK_OK(llm_generate(s, NULL, slots, pend, 4, &p, NULL, r2, NULL, NULL));
    int differ = 0;
    for (int k = 0; k < 4; k++) {
        CHECK(!memcmp(r1[k].ids, r2[k].ids, 6 * 4));
        if (k && memcmp(r1[k].ids, r1[0].ids, 6 * 4)) differ = 1;
    }
    for (int k = 0; k < 4; k++) {
        llm_gen_result_free(&r1[k]);
        llm_gen_result_free(&r2[k]);
    }
    CHECK(differ);
    llm_session_free(s);
    llm_session_free(s2);
    llm_model_free(m);
}

/* Q6_K weights are used in place; Q8_1 (not a weight type of llama.cpp models) is refused with a clear error. */
TEST(llm_kquant_load) {
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = 256, c.n_layers = 1, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.ffn = 256, c.vocab = 40;
    c.context = 32;
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.05f, 3));
    const int rows = c.ffn, cols = c.dim;
    size_t rb = ggml_row_bytes(GGML_TYPE_Q6_K, (uint64_t)cols);
    CHECK_EQ_INT(rb, 210);
    uint8_t *q = malloc(rb * rows);
    dr_rng g;
    dr_rng_seed(&g, 8);
    for (size_t i = 0; i < rb * rows; i++) q[i] = (uint8_t)dr_rng_below(&g, 256);
    for (int r = 0; r < rows; r++) { /* sane block scale d (last 2 bytes of the block) */
        uint16_t d = dr_f32_to_f16(0.001f);
        memcpy(q + (size_t)r * rb + rb - 2, &d, 2);
    }
    llm_mat saved = m->layers[0].w_gate;
    m->layers[0].w_gate = (llm_mat){q, GGML_TYPE_Q6_K, rows, cols, rb, NULL};
    const char *dir = dr_test_tmpdir();
    const char *path = dr_test_path(dir, "q6k.gguf");
    CHECK_OK(llm_model_save(m, NULL, path));
    llm_model *m2;
    CHECK_OK(llm_model_load(&m2, path));
    CHECK_EQ_INT(m2->layers[0].w_gate.type, GGML_TYPE_Q6_K);
    float *want = malloc((size_t)rows * cols * 4), *got = malloc((size_t)cols * 4);
    dr_dequantize_q6_k(q, want, (uint64_t)rows * cols);
    for (int r = 0; r < rows; r++) {
        llm_mat_row(&m2->layers[0].w_gate, r, got);
        for (int i = 0; i < cols; i++) CHECK(want[(size_t)r * cols + i] == got[i]); /* -0 and +0 alike */
    }
    free(got);
    llm_model_free(m2);
    /* Q8_1: unsupported */
    size_t rb4 = ggml_row_bytes(GGML_TYPE_Q8_1, (uint64_t)cols);
    uint8_t *q4 = calloc(rows, rb4);
    m->layers[0].w_gate = (llm_mat){q4, GGML_TYPE_Q8_1, rows, cols, rb4, NULL};
    CHECK_OK(llm_model_save(m, NULL, path));
    CHECK_ERR(llm_model_load(&m2, path), DR_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(dr_error_message(), "blk.0.ffn_gate.weight") && strstr(dr_error_message(), "Q8_1"), "%s",
              dr_error_message());
    m->layers[0].w_gate = saved;
    llm_model_free(m);
    free(q);
    free(q4);
    free(want);
}

/* llm_complete: G samples of one prompt equal llm_generate on a prefill forked by hand,
 * and the context and empty-prompt limits are errors. */
TEST(llm_complete_matches_forked_generate) {
    const char *text = "the cat sat on the mat. the cat ate. the mat sat.";
    tok_train_opts to = {.vocab_size = 256 + 11 + 8};
    tokenizer *tok;
    CHECK_OK(tok_train(text, strlen(text), &to, &tok));
    llm_config c = tiny_cfg(LLM_ARCH_QWEN2);
    c.vocab = tok_vocab_size(tok);
    llm_model *m0, *m;
    CHECK_OK(llm_model_init_random(&m0, &c, GGML_TYPE_F32, 0.3f, 4));
    char path[512];
    snprintf(path, sizeof path, "%s/complete.gguf", dr_test_tmpdir());
    CHECK_OK(llm_model_save(m0, tok, path));
    llm_model_free(m0);
    CHECK_OK(llm_model_load(&m, path));
    llm_gen_params p = {0};
    p.max_tokens = 5;
    p.sampler.temperature = 1.0f, p.sampler.top_p = 1.0f, p.seed = 11;
    llm_gen_result res[3], ref[3];
    llm_complete_stats st;
    CHECK_OK(llm_complete(m, "the cat", 3, 0, 0, &p, NULL, NULL, res, &st));
    int32_t *ids;
    size_t n;
    CHECK_OK(tok_encode(m->tok, "the cat", 7, 0, &ids, &n));
    CHECK_EQ_INT((int)st.prompt_tokens, (int)n);
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, 3, (int)n + 5));
    if (n > 1) CHECK_OK(llm_prefill(s, 0, ids, (int)n - 1, NULL, 0));
    int slots[3] = {0, 1, 2};
    int32_t pend[3] = {ids[n - 1], ids[n - 1], ids[n - 1]};
    CHECK_OK(llm_slot_fork(s, 0, slots + 1, 2));
    CHECK_OK(llm_generate(s, m->tok, slots, pend, 3, &p, NULL, ref, NULL, NULL));
    for (int k = 0; k < 3; k++) {
        CHECK_EQ_INT(res[k].n_ids, ref[k].n_ids);
        CHECK(!memcmp(res[k].ids, ref[k].ids, (size_t)ref[k].n_ids * sizeof(int32_t)));
        llm_gen_result_free(&res[k]);
        llm_gen_result_free(&ref[k]);
    }
    CHECK_ERR(llm_complete(m, "", 1, 0, 0, &p, NULL, NULL, res, &st), DR_ERR_ARG);
    CHECK_ERR(llm_complete(m, "the cat", 1, (int)n, 0, &p, NULL, NULL, res, &st), DR_ERR_RANGE);
    dr_error_clear();
    free(ids);
    llm_session_free(s);
    llm_model_free(m);
    tok_free(tok);
}

TEST(llm_speed_measures_every_phase) {
    llm_config c = tiny_cfg(LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 9));
    llm_speed_result r;
    CHECK_OK(llm_speed(m, 8, 3, 2, 1, &r));
    CHECK(r.prefill_tps > 0 && r.decode1_tps > 0 && r.decodeB_tps > 0);
    CHECK_ERR(llm_speed(m, 8, 0, 2, 1, &r), DR_ERR_ARG);
    dr_error_clear();
    llm_model_free(m);
}
