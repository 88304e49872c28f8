/* LLM engine bench: a Qwen2.5-0.5B-shaped qwen2 model (24 layers, d 896, 14 heads,
 * 2 KV heads, ffn 4864, vocab 151936, tied) with random weights in F32, BF16, Q8_0,
 * Q4_K_M and Q4_0 (or --types). Q4_K_M is laid out as llama-quantize does at this shape:
 * width 896 is not a multiple of 256, so only ffn_down can be a K-quant (Q6_K in the
 * layers llama.cpp gives more bits: the first and last eighth and every third; Q4_K in the
 * others); attn_q/k/output and ffn_gate/up fall back to Q5_0, attn_v and the embeddings
 * to Q8_0. Quantised types run the fast path (int8 activations) unless --exact.
 * Measures the machine's memory read bandwidth and OpenBLAS sgemm GFLOP/s in the same
 * run and reports:
 *   decode batch 1: weight bytes read per token / time vs read bandwidth (target >= 80%, issue 13;
 *   measured again after each type, the higher of the two measurements is the reference), and
 *   the same in --rounds K (default 8) rounds of [the read loop, best of 2 passes; 8 decode
 *   steps], each round's ratio to its own bandwidth, as their median and range
 *   prefill P and decode batch B: model GFLOP/s vs sgemm GFLOP/s (target >= 50%)
 * usage: bench_llm [--prompt P] [--batch B] [--steps N] [--types f32,bf16,q8_0,q4_k_m,q4_0] [--exact] [--small]
 *                  [--cpu-time] [--rounds K] [--json]
 *        bench_llm --mem-7b DIR   (writes a 3.9 GB 7B-shaped Q4_K_M to DIR, runs it, compares the resident
 *                                  size with file + KV cache + 10%, removes the file)
 * Threads: DEEPREC_THREADS (the figures are for 2). */
#include "deeprec/base.h"
#include "bench_common.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include <cblas.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* Wall clock, or with --cpu-time the process CPU time: on a machine shared with other jobs,
 * run with DEEPREC_THREADS=1 --cpu-time to measure the work itself (rates per CPU second). */
static int use_cpu_time;
static double now(void) {
    return use_cpu_time ? dr_cpu_now() : dr_now();
}

/* The best of k timed passes over a fresh 1 GiB buffer on all threads, in GB/s (0 without
 * memory). The buffer is allocated and filled anew each time, as the figure has always been
 * measured: a buffer kept for the whole run measured lower on this host (43-53 against 47-64
 * GB/s, alternating runs), which would have flattered every ratio to it. */
static double read_best(int k) {
    size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    float *a = dr_aligned_alloc(n * sizeof(float));
    if (!a) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < k; rep++) {
        double t0 = now();
        float total = 0;
#pragma omp parallel reduction(+ : total)
        {
#ifdef __AVX2__
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 32) {
                s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
                s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
                s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
                s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
            }
            float t[8];
            _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
            for (int q = 0; q < 8; q++) total += t[q];
#else
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i++) total += a[i];
#endif
        }
        double dt = now() - t0;
        sink += total;
        double bw = (double)n * sizeof(float) / dt / 1e9;
        if (bw > best) best = bw;
    }
    (void)sink;
    free(a);
    return best;
}

static double read_bandwidth(void) { return read_best(4); }

/* sgemm at the model's FFN shape, timed like everything else (wall clock or CPU time). */
static double sgemm_gflops(void) { return bench_sgemm_gflops_clock(512, 4864, 896, now); }

/* Random blocks of a quantised type: valid once the fp16 scale fields hold sane values
 * (the bench measures speed; the values only need to stay finite). */
static void random_blocks(uint32_t type, uint8_t *p, size_t n_blocks, dr_rng *g) {
    const size_t bs = ggml_type_size(type);
    int off[2] = {0, -1};
    switch (type) {
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: off[1] = 2; break;
    case GGML_TYPE_Q2_K: off[0] = 80, off[1] = 82; break;
    case GGML_TYPE_Q3_K: off[0] = 108; break;
    case GGML_TYPE_Q6_K: off[0] = 208; break;
    default: break;
    }
    uint64_t r = dr_rng_below(g, UINT64_MAX);
    for (size_t b = 0; b < n_blocks; b++) {
        uint8_t *blk = p + b * bs;
        for (size_t i = 0; i < bs; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull; /* fast: GBs of bytes */
            blk[i] = (uint8_t)(r >> 56);
        }
        for (int k = 0; k < 2; k++)
            if (off[k] >= 0) {
                uint16_t h = dr_f32_to_f16(k ? 0.0005f : 0.002f);
                memcpy(blk + off[k], &h, 2);
            }
    }
}

/* Replace a matrix of the model with random blocks of `type` (buffer kept in *owned). */
static int requant(llm_mat *w, uint32_t type, void ***owned, int *n_owned, dr_rng *g) {
    if (w->type == type) return DR_OK;
    size_t rb = ggml_row_bytes(type, (uint64_t)w->cols);
    if (!rb) return dr_error(DR_ERR_ARG, "%s needs rows of whole blocks (%d values)", ggml_type_name(type), w->cols);
    uint8_t *buf = malloc(rb * (size_t)w->rows);
    void **no = realloc(*owned, (size_t)(*n_owned + 1) * sizeof *no);
    if (!buf || !no) {
        free(buf);
        if (no) *owned = no;
        return DR_ERR_NOMEM;
    }
    *owned = no;
    (*owned)[(*n_owned)++] = buf;
    random_blocks(type, buf, rb * (size_t)w->rows / ggml_type_size(type), g);
    *w = (llm_mat){buf, type, w->rows, w->cols, rb, NULL};
    return DR_OK;
}

enum { MIX_NONE = 0, MIX_Q4_K_M = 1 };

/* The weights moved into one buffer in transparent huge pages, in a GGUF file's tensor order
 * (token embedding, then per layer q, k, v, o, gate, up, down), as llm_model_load leaves a file
 * of them: the matrices built above sit in separate 4 KiB-page allocations, where every page
 * boundary restarts the hardware prefetcher, and decode 1 measured slower on them than on a
 * loaded file. The originals stay allocated (owned by the model or the bench). */
static int weights_in_huge_pages(llm_model *m, void ***owned, int *n_owned) {
    const llm_config *c = &m->cfg;
    const int nm = 2 + 7 * c->n_layers;
    llm_mat **ms = malloc((size_t)nm * sizeof *ms);
    if (!ms) return DR_ERR_NOMEM;
    int k = 0;
    ms[k++] = &m->tok_embd;
    for (int l = 0; l < c->n_layers; l++) {
        llm_layer *L = &m->layers[l];
        llm_mat *lm[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) ms[k++] = lm[i];
    }
    const int tied = m->output.data == m->tok_embd.data;
    if (!tied) ms[k++] = &m->output;
    size_t total = 0;
    for (int i = 0; i < k; i++) total += ((size_t)ms[i]->rows * ms[i]->row_bytes + 63) / 64 * 64;
    uint8_t *buf = dr_aligned_alloc_huge(total);
    void **no = buf ? realloc(*owned, (size_t)(*n_owned + 1) * sizeof *no) : NULL;
    if (!no) {
        free(buf);
        free(ms);
        return DR_ERR_NOMEM;
    }
    *owned = no;
    (*owned)[(*n_owned)++] = buf;
    size_t off = 0;
    for (int i = 0; i < k; i++) {
        const size_t b = (size_t)ms[i]->rows * ms[i]->row_bytes;
        memcpy(buf + off, ms[i]->data, b);
        ms[i]->data = buf + off;
        off += (b + 63) / 64 * 64;
    }
    if (tied) m->output = m->tok_embd;
    free(ms);
    return DR_OK;
}

/* The model of one bench type: a base of F32/F16/BF16/Q8_0 from llm_model_init_random, then
 * other quantised types laid over it. */
static int make_model(llm_model **out, const llm_config *c, uint32_t type, int mix, void ***owned, int *n_owned) {
    int direct = type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 || type == GGML_TYPE_Q8_0;
    int rc = llm_model_init_random(out, c, direct && !mix ? type : GGML_TYPE_Q8_0, 0.02f, 1);
    if (rc) return rc;
    llm_model *m = *out;
    dr_rng g;
    dr_rng_seed(&g, 3);
    for (int l = 0; l < c->n_layers && !rc && !(direct && !mix); l++) {
        llm_layer *L = &m->layers[l];
        if (mix == MIX_Q4_K_M) {
            int more = l < c->n_layers / 8 || l >= 7 * c->n_layers / 8 || (l - c->n_layers / 8) % 3 == 2;
            uint32_t t32 = GGML_TYPE_Q5_0;
            if ((rc = requant(&L->wq, t32, owned, n_owned, &g)) || (rc = requant(&L->wk, t32, owned, n_owned, &g)) ||
                (rc = requant(&L->wo, t32, owned, n_owned, &g)) || (rc = requant(&L->w_gate, t32, owned, n_owned, &g)) ||
                (rc = requant(&L->w_up, t32, owned, n_owned, &g)) ||
                (rc = requant(&L->w_down, more ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K, owned, n_owned, &g)))
                break;
        } else {
            llm_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 7 && !rc; i++) rc = requant(ms[i], type, owned, n_owned, &g);
        }
    }
    if (!rc && !mix && !direct) {
        rc = requant(&m->tok_embd, type, owned, n_owned, &g);
        if (!rc && c->tied_output) m->output = m->tok_embd;
        else if (!rc) rc = requant(&m->output, type, owned, n_owned, &g);
    }
    if (!rc) rc = weights_in_huge_pages(m, owned, n_owned);
    if (!rc) rc = llm_model_repack(m); /* Q4_0 as llm_model_load leaves it (the bench keeps both copies) */
    if (rc) {
        llm_model_free(m);
        *out = NULL;
    }
    return rc;
}

/* Rounds of the interleaved decode-1 measurement (--rounds; 0: none). */
#define MAX_ROUNDS 64
static int g_rounds = 8;

typedef struct result {
    const char *type;
    double wall_s, cpu_s;
    double init_s, prefill_tps, prefill_gflops, d1_tps, d1_gbs, dB_tps, dB_gflops;
    size_t weight_bytes;
    /* decode 1 against the read bandwidth measured right before it, round by round */
    int rounds;
    double ratio[MAX_ROUNDS];
} result;

static int run_type(const llm_config *c, uint32_t type, int mix, int exact, int P, int B, int steps, result *r) {
    llm_model *m;
    double t0 = dr_now();
    void **owned = NULL;
    int n_owned = 0;
    int rc = make_model(&m, c, type, mix, &owned, &n_owned);
    if (rc) {
        for (int i = 0; i < n_owned; i++) free(owned[i]);
        free(owned);
        return rc;
    }
    r->init_s = dr_now() - t0;
    r->type = mix == MIX_Q4_K_M ? "Q4_K_M" : ggml_type_name(type);
    const double wall0 = dr_now(), cpu0 = dr_cpu_now();
    r->weight_bytes = llm_model_weight_bytes(m);
    const int V = c->vocab, D = c->dim, F = c->ffn, L = c->n_layers;
    const double qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    const double layer_params = D * qd * 2 + D * kvd * 2 + 3.0 * D * F;
    llm_session *s;
    if ((rc = llm_session_new(&s, m, B, P + steps + 4 + 8 * g_rounds))) {
        llm_model_free(m);
        for (int i = 0; i < n_owned; i++) free(owned[i]);
        free(owned);
        return rc;
    }
    llm_session_set_fast(s, !exact);
    int32_t *tok = calloc((size_t)(P > B ? P : B), sizeof(int32_t));
    float *lg = malloc((size_t)B * V * sizeof(float));
    int *slots = calloc((size_t)B, sizeof(int));
    dr_rng g;
    dr_rng_seed(&g, 2);
    for (int i = 0; i < (P > B ? P : B); i++) tok[i] = (int32_t)dr_rng_below(&g, (uint64_t)V);
    /* prefill P tokens (logits of the last only); best of 2 (the machine may be shared) */
    double dt = 1e30;
    for (int rep = 0; rep < 2 && !rc; rep++) {
        llm_slot_truncate(s, 0, 0);
        t0 = now();
        rc = llm_prefill(s, 0, tok, P, lg, 0);
        if (now() - t0 < dt) dt = now() - t0;
    }
    double attn = 0;
    for (int i = 0; i < P; i++) attn += 4.0 * qd * (i + 1); /* QK^T and AV */
    double flops = L * (2.0 * layer_params * P + attn) + 2.0 * D * V;
    r->prefill_tps = P / dt;
    r->prefill_gflops = flops / dt / 1e9;
    /* decode: batch 1, then batch B (each slot continues after its current length) */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        int nb = pass ? B : 1;
        for (int i = 0; i < nb; i++) {
            slots[i] = i;
            llm_slot_truncate(s, i, 0);
        }
        if (pass) llm_slot_fork(s, 0, slots, nb);
        rc = llm_decode(s, slots, tok, nb, lg);
        /* the median step time (robust to other load on the machine) */
        double st_t[256];
        int ns = steps < 256 ? steps : 256;
        for (int st = 0; st < ns && !rc; st++) {
            t0 = now();
            rc = llm_decode(s, slots, tok + (st % nb), nb, lg);
            st_t[st] = now() - t0;
        }
        qsort(st_t, (size_t)ns, sizeof *st_t, bench_cmp_double);
        dt = st_t[ns / 2];
        /* Decode 1 against the read bandwidth of the same moment: on this shared host the
         * bandwidth moved between 34 and 75 GB/s from one minute to the next, so a ratio of a
         * decode rate and a bandwidth measured seconds apart says more about the host than the
         * engine. Each round measures the read loop as the headline figure does (a fresh 1 GiB
         * buffer, here the better of 2 passes; it also clears the weights out of the L3), then
         * times 8 decode steps (their median). */
        for (int rd = 0; !pass && rd < g_rounds && !rc; rd++) {
            const double bw_r = read_best(2);
            double rt[8];
            for (int st = 0; st < 8 && !rc; st++) {
                t0 = now();
                rc = llm_decode(s, slots, tok, 1, lg);
                rt[st] = now() - t0;
            }
            if (!rc) r->ratio[r->rounds++] = (double)r->weight_bytes / bench_median(rt, 8) / 1e9 / bw_r;
        }
        double tps = (double)nb / dt;
        if (pass) {
            r->dB_tps = tps;
            r->dB_gflops = tps * (2.0 * (L * layer_params + (double)D * V)) / 1e9;
        } else {
            r->d1_tps = tps;
            r->d1_gbs = tps * (double)r->weight_bytes / 1e9;
        }
    }
    r->wall_s = dr_now() - wall0;
    r->cpu_s = dr_cpu_now() - cpu0;
    free(tok);
    free(lg);
    free(slots);
    llm_session_free(s);
    llm_model_free(m);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    return rc;
}

/* ---------------------------------------------------------------- memory of a 7B Q4_K_M */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = atol(line + kl);
    if (f) fclose(f);
    return v;
}

/* A Llama-2-7B-shaped model (d 4096, 32 layers, 32 heads, ffn 11008, vocab 32000) laid out
 * as llama-quantize's Q4_K_M (Q6_K for attn_v and ffn_down in the layers given more bits and
 * for output.weight, Q4_K elsewhere) with random blocks, written to dir; then loaded, 64
 * tokens prefilled and 8 decoded, and the resident size compared with file + KV cache. */
static int mem_check(const char *dir) {
    const int D = 4096, L = 32, F = 11008, V = 32000, ctx = 512;
    char path[1024];
    snprintf(path, sizeof path, "%s/llama7b-q4_k_m.gguf", dir);
    gguf_writer *w = gguf_writer_new();
    if (!w) return DR_ERR_NOMEM;
    int rc = gguf_set_str(w, "general.architecture", "llama");
    const char *keys[] = {"llama.embedding_length", "llama.block_count", "llama.attention.head_count",
                          "llama.attention.head_count_kv", "llama.feed_forward_length", "llama.context_length"};
    const uint32_t vals[] = {(uint32_t)D, (uint32_t)L, 32, 32, (uint32_t)F, 4096};
    for (int i = 0; i < 6 && !rc; i++) rc = gguf_set_u32(w, keys[i], vals[i]);
    if (!rc) rc = gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    /* one random buffer per (type, shape), borrowed by every tensor of that kind */
    struct { uint32_t type; int rows, cols; uint8_t *p; } kinds[] = {
        {GGML_TYPE_Q4_K, D, D, NULL}, {GGML_TYPE_Q6_K, D, D, NULL}, {GGML_TYPE_Q4_K, F, D, NULL},
        {GGML_TYPE_Q4_K, D, F, NULL}, {GGML_TYPE_Q6_K, D, F, NULL}, {GGML_TYPE_Q4_K, V, D, NULL},
        {GGML_TYPE_Q6_K, V, D, NULL}};
    const int NK = (int)(sizeof kinds / sizeof *kinds);
    dr_rng g;
    dr_rng_seed(&g, 5);
    for (int k = 0; k < NK && !rc; k++) {
        size_t bytes = ggml_row_bytes(kinds[k].type, (uint64_t)kinds[k].cols) * (size_t)kinds[k].rows;
        kinds[k].p = malloc(bytes);
        if (!kinds[k].p) rc = DR_ERR_NOMEM;
        else random_blocks(kinds[k].type, kinds[k].p, bytes / ggml_type_size(kinds[k].type), &g);
    }
    float *ones = malloc((size_t)D * sizeof(float));
    if (!ones) rc = DR_ERR_NOMEM;
    for (int i = 0; !rc && i < D; i++) ones[i] = 1.0f;
#define ADD(name, k) gguf_add_tensor_borrowed(w, name, kinds[k].type, 2, (uint64_t[]){(uint64_t)kinds[k].cols, (uint64_t)kinds[k].rows}, kinds[k].p)
    if (!rc) rc = ADD("token_embd.weight", 5);
    for (int l = 0; l < L && !rc; l++) {
        int more = l < L / 8 || l >= 7 * L / 8 || (l - L / 8) % 3 == 2;
        char n[96];
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if ((rc = gguf_add_tensor_borrowed(w, NM("attn_norm.weight"), GGML_TYPE_F32, 1, (uint64_t[]){(uint64_t)D}, ones)) ||
            (rc = ADD(NM("attn_q.weight"), 0)) || (rc = ADD(NM("attn_k.weight"), 0)) ||
            (rc = ADD(NM("attn_v.weight"), more ? 1 : 0)) || (rc = ADD(NM("attn_output.weight"), 0)) ||
            (rc = gguf_add_tensor_borrowed(w, NM("ffn_norm.weight"), GGML_TYPE_F32, 1, (uint64_t[]){(uint64_t)D}, ones)) ||
            (rc = ADD(NM("ffn_gate.weight"), 2)) || (rc = ADD(NM("ffn_up.weight"), 2)) ||
            (rc = ADD(NM("ffn_down.weight"), more ? 4 : 3)))
            break;
#undef NM
    }
    if (!rc) rc = gguf_add_tensor_borrowed(w, "output_norm.weight", GGML_TYPE_F32, 1, (uint64_t[]){(uint64_t)D}, ones);
    if (!rc) rc = ADD("output.weight", 6);
#undef ADD
    double t0 = dr_now();
    if (!rc) rc = gguf_write(w, path);
    gguf_writer_free(w);
    for (int k = 0; k < NK; k++) free(kinds[k].p);
    free(ones);
    if (rc) return rc;
    printf("wrote %s in %.1f s\n", path, dr_now() - t0);
    FILE *f = fopen(path, "rb");
    long file_bytes = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        file_bytes = ftell(f);
        fclose(f);
    }
    long rss0 = status_kb("VmRSS:");
    llm_model *m;
    if ((rc = llm_model_load(&m, path))) return rc;
    llm_session *s;
    if ((rc = llm_session_new(&s, m, 1, ctx))) {
        llm_model_free(m);
        return rc;
    }
    llm_session_set_fast(s, 1);
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (int32_t)dr_rng_below(&g, (uint64_t)V);
    float *lg = malloc((size_t)V * sizeof(float));
    t0 = dr_now();
    double c0 = dr_cpu_now();
    rc = lg ? llm_prefill(s, 0, tok, 64, lg, 0) : DR_ERR_NOMEM;
    double tp = dr_now() - t0;
    int slot = 0;
    t0 = dr_now();
    for (int i = 0; i < 8 && !rc; i++) rc = llm_decode(s, &slot, &tok[i], 1, lg);
    double td = dr_now() - t0, cpu = dr_cpu_now() - c0;
    long rss = status_kb("VmRSS:"), hwm = status_kb("VmHWM:");
    double kv = 2.0 * L * ctx * D * sizeof(float);
    if (!rc) {
        printf("7B Q4_K_M: file %.2f GB, KV cache %.2f GB (%d tokens, fp32)\n", file_bytes / 1e9, kv / 1e9, ctx);
        printf("  prefill 64: %.1f s; decode 8 tokens: %.1f s (%.2f tokens/s); CPU %.1f s\n", tp, td, 8 / td, cpu);
        printf("  resident: %.2f GB after load+run (%.2f GB before load, peak %.2f GB); limit file + KV + 10%% = %.2f GB: %s\n",
               rss / 1e6 * 1.024, rss0 / 1e6 * 1.024, hwm / 1e6 * 1.024, (file_bytes + kv) * 1.1 / 1e9,
               (rss - rss0) * 1024.0 <= (file_bytes + kv) * 1.1 ? "within" : "OVER");
    }
    free(lg);
    llm_session_free(s);
    llm_model_free(m);
    remove(path);
    return rc;
}

int main(int argc, char **argv) {
    dr_threads_wait_policy(argv, DR_WAIT_SPIN); /* as `deeprec llm bench` (docs/llm.md, "OpenMP wait policy") */
    int P = 512, B = 8, steps = 8, json = 0, small = 0, exact = 0;
    const char *types = "f32,bf16,q8_0,q4_k_m,q4_0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--exact")) exact = 1;
        else if (!strcmp(argv[i], "--mem-7b") && i + 1 < argc) {
            dr_threads_init();
            if (mem_check(argv[++i])) {
                fprintf(stderr, "bench_llm: %s\n", dr_error_message());
                return 1;
            }
            return 0;
        }
        else if (!strcmp(argv[i], "--small")) small = 1;
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            g_rounds = atoi(argv[++i]);
            if (g_rounds < 0 || g_rounds > MAX_ROUNDS) return 2;
        }
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
        else {
            fprintf(stderr, "usage: bench_llm [--prompt P] [--batch B] [--steps N] [--types f32,f16,bf16,q8_0,q4_k_m,q4_0,...] [--exact] [--small] [--cpu-time] [--rounds K] [--json]\n");
            return 2;
        }
    }
    if (P <= 0 || B <= 0 || steps <= 0) return 2;
    dr_threads_init();
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = 896, c.n_layers = 24, c.n_heads = 14, c.n_kv_heads = 2, c.head_dim = 64, c.ffn = 4864, c.vocab = 151936;
    c.context = 32768;
    if (small) c.n_layers = 4, c.vocab = 32000; /* quick check of the harness */
    double bw = read_bandwidth(), gf = sgemm_gflops();
    if (!json) {
        double la[3] = {0, 0, 0};
        FILE *lf = fopen("/proc/loadavg", "r");
        if (lf) {
            if (fscanf(lf, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = -1;
            fclose(lf);
        }
        printf("threads %d; timing: %s; load average %.1f\n", dr_threads(), use_cpu_time ? "process CPU time" : "wall clock",
               la[0]);
        printf("memory read %.1f GB/s; sgemm %.1f GFLOP/s; quantised types: %s\n", bw, gf,
               exact ? "exact (fp32 activations)" : "fast (int8 activations)");
        printf("int8 kernel: %s\n", llm_kernel_name());
        printf("model: qwen2 %d layers, d %d, %d/%d heads, ffn %d, vocab %d, tied\n", c.n_layers, c.dim, c.n_heads,
               c.n_kv_heads, c.ffn, c.vocab);
    }
    json_t *arr = json_array();
    char buf[64];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int mix = !strcasecmp(t, "q4_k_m") ? MIX_Q4_K_M : MIX_NONE;
        uint32_t ty = mix ? GGML_TYPE_Q4_K : 0xFFFFFFFFu;
        for (uint32_t k = 0; k < 64 && !mix; k++)
            if (!strcasecmp(t, ggml_type_name(k)) && dr_dequantize_supported(k)) ty = k;
        if (ty == 0xFFFFFFFFu) {
            fprintf(stderr, "bench_llm: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, ..., iq4_xs, q4_k_m)\n", t);
            return 2;
        }
        result r = {0};
        if (run_type(&c, ty, mix, exact, P, B, steps, &r)) {
            fprintf(stderr, "bench_llm: %s\n", dr_error_message());
            return 1;
        }
        /* The read bandwidth again, right after this type's runs: on a shared host it swung
         * between 31 and 75 GB/s within minutes, so the ratio is taken to the higher of the two
         * measurements next to it (never flattered by a slow moment at the start). */
        const double bw_after = read_bandwidth(), bw_t = bw_after > bw ? bw_after : bw;
        if (!json) {
            printf("%s (%.0f MB of weights, init %.1f s; measured %.1f s wall, %.1f s CPU):\n", r.type,
                   r.weight_bytes / 1e6, r.init_s, r.wall_s, r.cpu_s);
            printf("  prefill %d: %8.1f tokens/s  %6.1f GFLOP/s = %3.0f%% of sgemm (target 50%%)\n", P, r.prefill_tps,
                   r.prefill_gflops, 100 * r.prefill_gflops / gf);
            printf("  decode  1: %8.2f tokens/s  %6.1f GB/s    = %3.0f%% of read bandwidth %.1f GB/s (target 80%%)\n",
                   r.d1_tps, r.d1_gbs, 100 * r.d1_gbs / bw_t, bw_t);
            if (r.rounds) {
                double q[MAX_ROUNDS];
                memcpy(q, r.ratio, sizeof(double) * r.rounds);
                const double med = bench_median(q, r.rounds); /* q sorted */
                printf("  decode  1, interleaved with the read loop: median %3.0f%% of read bandwidth (%d rounds, %.0f-%.0f%%)\n",
                       100 * med, r.rounds, 100 * q[0], 100 * q[r.rounds - 1]);
            }
            printf("  decode %2d: %8.2f tokens/s  %6.1f GFLOP/s = %3.0f%% of sgemm (target 50%%)\n", B, r.dB_tps,
                   r.dB_gflops, 100 * r.dB_gflops / gf);
            fflush(stdout);
        }
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string(r.type));
        json_object_set_new(o, "weight_bytes", json_integer((json_int_t)r.weight_bytes));
        json_object_set_new(o, "wall_s", json_real(r.wall_s));
        json_object_set_new(o, "cpu_s", json_real(r.cpu_s));
        json_object_set_new(o, "prefill_tokens_per_s", json_real(r.prefill_tps));
        json_object_set_new(o, "prefill_gflops", json_real(r.prefill_gflops));
        json_object_set_new(o, "prefill_frac_sgemm", json_real(r.prefill_gflops / gf));
        json_object_set_new(o, "decode1_tokens_per_s", json_real(r.d1_tps));
        json_object_set_new(o, "decode1_gbs", json_real(r.d1_gbs));
        json_object_set_new(o, "read_gbs_after", json_real(bw_after));
        json_object_set_new(o, "decode1_frac_bw", json_real(r.d1_gbs / bw_t));
        json_t *rr = json_array();
        for (int k = 0; k < r.rounds; k++) json_array_append_new(rr, json_real(r.ratio[k]));
        json_object_set_new(o, "decode1_frac_bw_rounds", rr);
        json_object_set_new(o, "decodeB_tokens_per_s", json_real(r.dB_tps));
        json_object_set_new(o, "decodeB_gflops", json_real(r.dB_gflops));
        json_object_set_new(o, "decodeB_frac_sgemm", json_real(r.dB_gflops / gf));
        json_array_append_new(arr, o);
    }
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "threads", json_integer(dr_threads()));
        json_object_set_new(o, "exact", json_boolean(exact));
        json_object_set_new(o, "int8_kernel", json_string(llm_kernel_name()));
        json_object_set_new(o, "read_gbs", json_real(bw));
        json_object_set_new(o, "sgemm_gflops", json_real(gf));
        json_object_set_new(o, "prompt", json_integer(P));
        json_object_set_new(o, "batch", json_integer(B));
        json_object_set_new(o, "results", arr);
        char *d = json_dumps(o, JSON_COMPACT);
        printf("%s\n", d);
        free(d);
        json_decref(o);
    } else {
        json_decref(arr);
    }
    return 0;
}
