/* LLM trainer: gradients vs finite differences (full and LoRA), recompute equivalence,
 * AdamW/schedule, checkpoints and exact resume, memorisation. */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/nn.h"
#include "harness.h"
#include "llm/train_internal.h"
#include <stdlib.h>
#include <string.h>

static void tiny_cfg(llm_config *c, int arch) {
    llm_config_default(c, arch);
    c->dim = 32;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = arch == LLM_ARCH_LLAMA ? 1 : 2;
    c->head_dim = 8;
    c->ffn = 64;
    c->vocab = 40;
    c->context = 64;
}

typedef struct tbatch {
    llm_batch b;
    int32_t tok[64], len[8];
    float w[64], coef[64];
    uint8_t mask[64];
} tbatch;

static void make_batch(tbatch *tb, int B, int T, int V, uint64_t seed) {
    dr_rng r;
    dr_rng_seed(&r, seed);
    memset(tb, 0, sizeof *tb);
    for (int i = 0; i < B; i++) {
        tb->len[i] = i == 0 ? T : T - 1 - (int)dr_rng_below(&r, (uint64_t)(T - 2));
        for (int j = 0; j < T; j++) {
            int k = i * T + j;
            tb->tok[k] = j < tb->len[i] ? (int32_t)dr_rng_below(&r, (uint64_t)V) : 12345; /* pads never read */
            tb->w[k] = 0.5f + dr_rng_float(&r);
            tb->mask[k] = dr_rng_float(&r) < 0.8f;
            tb->coef[k] = 2.0f * dr_rng_float(&r) - 1.0f;
        }
    }
    tb->b = (llm_batch){B, T, tb->tok, tb->len, tb->w, tb->mask, NULL, NULL, NULL};
}

/* objective: sum_i coef_i * mask_i * logp_i */
static double objective(llm_train *t, tbatch *tb) {
    float logp[64];
    CHECK_OK(llm_train_forward(t, &tb->b, logp, NULL));
    double s = 0;
    for (int i = 0; i < tb->b.B * tb->b.T; i++) s += (double)tb->coef[i] * tb->mask[i] * logp[i];
    return s;
}

static void grad_of(llm_train *t, tbatch *tb) {
    float dl[64];
    for (int i = 0; i < 64; i++) dl[i] = tb->coef[i] * tb->mask[i];
    llm_train_zero_grad(t);
    objective(t, tb);
    CHECK_OK(llm_train_backward(t, dl));
}

/* Directional finite differences per parameter segment, plus single entries. fp32 forward:
 * eps = 1e-2 on the parameter; tolerance |fd - g| <= 3e-3 + 3e-2 |g| (measured noise ~1e-4). */
static void check_fd(llm_train *t, tbatch *tb, const char *what) {
    grad_of(t, tb);
    size_t n;
    float *g0 = llm_train_grads(t, &n);
    float *g = malloc(n * sizeof(float));
    memcpy(g, g0, n * sizeof(float));
    float *p = llm_train_params(t, NULL);
    dr_rng r;
    dr_rng_seed(&r, 77);
    const float eps = 1e-2f;
    int checked = 0;
    for (int s = 0; s < t->n_segs; s++) {
        const tseg *sg = &t->segs[s];
        /* direction: random signs over the whole segment */
        float *u = malloc(sg->len * sizeof(float));
        double gu = 0;
        for (size_t i = 0; i < sg->len; i++) {
            u[i] = dr_rng_float(&r) < 0.5f ? -1.0f : 1.0f;
            gu += (double)u[i] * g[sg->off + i];
        }
        float e = eps / sqrtf((float)sg->len);
        float *save = malloc(sg->len * sizeof(float));
        memcpy(save, p + sg->off, sg->len * sizeof(float));
        for (size_t i = 0; i < sg->len; i++) p[sg->off + i] = save[i] + e * u[i];
        double lp = objective(t, tb);
        for (size_t i = 0; i < sg->len; i++) p[sg->off + i] = save[i] - e * u[i];
        double lm = objective(t, tb);
        memcpy(p + sg->off, save, sg->len * sizeof(float));
        double fd = (lp - lm) / (2.0 * e);
        CHECK_MSG(fabs(fd - gu) <= 3e-3 * sqrt((double)sg->len) + 3e-2 * fabs(gu),
                  "%s: segment %d (len %zu): directional fd %.6g vs analytic %.6g", what, s, sg->len, fd, gu);
        /* two single entries: the largest gradient and a random one */
        size_t imax = 0;
        for (size_t i = 0; i < sg->len; i++)
            if (fabsf(g[sg->off + i]) > fabsf(g[sg->off + imax])) imax = i;
        size_t picks[2] = {imax, (size_t)dr_rng_below(&r, sg->len)};
        for (int k = 0; k < 2; k++) {
            size_t i = sg->off + picks[k];
            float sv = p[i];
            p[i] = sv + eps;
            double a = objective(t, tb);
            p[i] = sv - eps;
            double b = objective(t, tb);
            p[i] = sv;
            double fdi = (a - b) / (2.0 * eps);
            CHECK_MSG(fabs(fdi - g[i]) <= 3e-3 + 3e-2 * fabs(g[i]), "%s: segment %d entry %zu: fd %.6g vs analytic %.6g",
                      what, s, picks[k], fdi, (double)g[i]);
            checked++;
        }
        free(u);
        free(save);
    }
    CHECK(checked > 0);
    free(g);
}

static llm_train *make_trainer(const llm_model *m, int recompute, int lora) {
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 3;
    tc.max_len = 9;
    tc.recompute = recompute;
    tc.lora_rank = lora;
    tc.lora_targets = LLM_LORA_ALL;
    tc.seed = 5;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    return t;
}

TEST(llm_train_fd_full_qwen2) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 11));
    llm_train *t = make_trainer(m, 0, 0);
    tbatch tb;
    make_batch(&tb, 3, 9, c.vocab, 3);
    check_fd(t, &tb, "qwen2 full");
    llm_train_free(t);
    llm_model_free(m);
}

TEST(llm_train_fd_full_llama) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_LLAMA);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 12));
    llm_train *t = make_trainer(m, 0, 0);
    tbatch tb;
    make_batch(&tb, 2, 8, c.vocab, 4);
    check_fd(t, &tb, "llama full");
    llm_train_free(t);
    llm_model_free(m);
}

static void lora_fd_case(uint32_t type, const char *what) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, type, 0.3f, 13));
    llm_train *t = make_trainer(m, 0, 4);
    /* B = 0 at init: give B random values so that A gets a gradient too */
    dr_rng r;
    dr_rng_seed(&r, 9);
    for (int l = 0; l < c.n_layers; l++)
        for (int i = 0; i < TL_N; i++) {
            tlin *L = &t->layers[l].lin[i];
            CHECK(L->A && L->B);
            for (int j = 0; j < L->out * t->lora; j++) L->B[j] = 0.2f * dr_rng_normal(&r);
        }
    tbatch tb;
    make_batch(&tb, 3, 9, c.vocab, 5);
    check_fd(t, &tb, what);
    /* recompute gives the same LoRA gradients */
    size_t n;
    grad_of(t, &tb);
    float *g0 = llm_train_grads(t, &n);
    float *g = malloc(n * sizeof(float));
    memcpy(g, g0, n * sizeof(float));
    llm_train *t2 = make_trainer(m, 1, 4);
    memcpy(llm_train_params(t2, NULL), llm_train_params(t, NULL), n * sizeof(float));
    grad_of(t2, &tb);
    const float *g2 = llm_train_grads(t2, NULL);
    CHECK(!memcmp(g, g2, n * sizeof(float)));
    free(g);
    llm_train_free(t2);
    llm_train_free(t);
    llm_model_free(m);
}

TEST(llm_train_fd_lora_bf16) { lora_fd_case(GGML_TYPE_BF16, "lora bf16"); }
TEST(llm_train_fd_lora_q8_0) { lora_fd_case(GGML_TYPE_Q8_0, "lora q8_0"); }

/* Recompute (checkpoint per layer) gives the same gradients bitwise. */
TEST(llm_train_recompute_same) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    c.n_layers = 3;
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 14));
    llm_train *a = make_trainer(m, 0, 0), *b = make_trainer(m, 1, 0);
    CHECK(llm_train_memory_bytes(b) < llm_train_memory_bytes(a));
    tbatch tb;
    make_batch(&tb, 3, 9, c.vocab, 6);
    grad_of(a, &tb);
    grad_of(b, &tb);
    size_t n;
    float *ga = llm_train_grads(a, &n), *gb = llm_train_grads(b, NULL);
    CHECK(memcmp(ga, gb, n * sizeof(float)) == 0);
    llm_train_free(a);
    llm_train_free(b);
    llm_model_free(m);
}

/* Log-probs from the trainer match the inference engine's logits (session prefill). */
TEST(llm_train_logp_matches_inference) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 15));
    llm_train *t = make_trainer(m, 0, 0);
    tbatch tb;
    make_batch(&tb, 3, 9, c.vocab, 7);
    float logp[64], ent[64];
    CHECK_OK(llm_train_logprobs(t, &tb.b, logp, ent));
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, 1, 16));
    float *lg = malloc((size_t)9 * c.vocab * sizeof(float));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(llm_slot_truncate(s, 0, 0));
        CHECK_OK(llm_prefill(s, 0, tb.tok + i * 9, tb.len[i], lg, 1));
        for (int j = 1; j < tb.len[i]; j++) {
            const float *x = lg + (size_t)(j - 1) * c.vocab;
            double mx = -1e30, se = 0, sxe = 0;
            for (int v = 0; v < c.vocab; v++) mx = x[v] > mx ? x[v] : mx;
            for (int v = 0; v < c.vocab; v++) se += exp(x[v] - mx), sxe += exp(x[v] - mx) * (x[v] - mx);
            double lp = x[tb.tok[i * 9 + j]] - mx - log(se);
            CHECK_NEAR(logp[i * 9 + j], lp, 1e-4);
            CHECK_NEAR(ent[i * 9 + j], log(se) - sxe / se, 1e-4);
        }
        CHECK(logp[i * 9] == 0.0f);
    }
    free(lg);
    llm_session_free(s);
    llm_train_free(t);
    llm_model_free(m);
}

TEST(llm_train_lr_schedule) {
    CHECK_EQ_INT(llm_lr_sched_from_name("constant"), LLM_SCHED_CONSTANT);
    CHECK_EQ_INT(llm_lr_sched_from_name("linear"), LLM_SCHED_LINEAR);
    CHECK_EQ_INT(llm_lr_sched_from_name("cosine"), LLM_SCHED_COSINE);
    CHECK_EQ_INT(llm_lr_sched_from_name("step"), -1);
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 15));
    llm_train *t = make_trainer(m, 0, 0);
    t->tc.lr = 1.0f;
    t->tc.warmup_steps = 4;
    t->tc.total_steps = 14;
    t->tc.sched = LLM_SCHED_COSINE;
    t->tc.min_lr_ratio = 0.1f;
    t->step = 0;
    CHECK_NEAR(llm_train_lr(t), 0.25, 1e-7);
    t->step = 3;
    CHECK_NEAR(llm_train_lr(t), 1.0, 1e-7);
    t->step = 4;
    CHECK_NEAR(llm_train_lr(t), 1.0, 1e-7);
    t->step = 9;
    CHECK_NEAR(llm_train_lr(t), 0.55, 1e-6);
    t->step = 14;
    CHECK_NEAR(llm_train_lr(t), 0.1, 1e-6);
    t->step = 100;
    CHECK_NEAR(llm_train_lr(t), 0.1, 1e-6);
    t->tc.sched = LLM_SCHED_LINEAR;
    t->step = 9;
    CHECK_NEAR(llm_train_lr(t), 0.55, 1e-6);
    t->tc.sched = LLM_SCHED_CONSTANT;
    CHECK_NEAR(llm_train_lr(t), 1.0, 1e-7);
    llm_train_free(t);
    llm_model_free(m);
}

/* Gradient accumulation: two half batches with norm = total weight == one full batch. */
TEST(llm_train_accumulation) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 16));
    llm_train *t = make_trainer(m, 0, 0);
    tbatch tb;
    make_batch(&tb, 2, 9, c.vocab, 8);
    double ce, w;
    llm_train_zero_grad(t);
    CHECK_OK(llm_train_sft(t, &tb.b, 0, &ce, &w));
    size_t n;
    float *g0 = llm_train_grads(t, &n);
    float *g = malloc(n * sizeof(float));
    memcpy(g, g0, n * sizeof(float));
    llm_train_zero_grad(t);
    llm_batch h0 = {1, 9, tb.tok, tb.len, tb.w, tb.mask, NULL, NULL, NULL},
              h1 = {1, 9, tb.tok + 9, tb.len + 1, tb.w + 9, tb.mask + 9, NULL, NULL, NULL};
    double ce0, w0, ce1, w1;
    CHECK_OK(llm_train_sft(t, &h0, (float)w, &ce0, &w0));
    CHECK_OK(llm_train_sft(t, &h1, (float)w, &ce1, &w1));
    CHECK_NEAR(w0 + w1, w, 1e-5);
    CHECK_NEAR(ce0 + ce1, ce, 1e-4);
    float *g2 = llm_train_grads(t, NULL);
    double md = 0, mg = 0;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs(g[i] - g2[i])), mg = fmax(mg, fabs(g[i]));
    CHECK_MSG(md <= 1e-5 * (1 + mg), "accumulated gradient differs by %g (max |g| %g)", md, mg);
    free(g);
    llm_train_free(t);
    llm_model_free(m);
}

/* ---------------------------------------------------------------- checkpoints */
static void run_steps(llm_train *t, tbatch *tb, int n, double *last) {
    for (int s = 0; s < n; s++) {
        double ce, w;
        CHECK_OK(llm_train_sft(t, &tb->b, 0, &ce, &w));
        CHECK_OK(llm_train_step(t, NULL));
        *last = ce / w;
    }
}

static void resume_case(int lora) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.3f, 17));
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 3, tc.max_len = 9, tc.lora_rank = lora, tc.lr = 1e-2f, tc.weight_decay = 0.1f;
    tc.sched = LLM_SCHED_COSINE, tc.warmup_steps = 2, tc.total_steps = 8;
    tbatch tb;
    make_batch(&tb, 3, 9, c.vocab, 9);
    llm_train *a, *b;
    double la, lb;
    CHECK_OK(llm_train_new(&a, m, &tc));
    run_steps(a, &tb, 8, &la);
    CHECK_OK(llm_train_new(&b, m, &tc));
    run_steps(b, &tb, 3, &lb);
    dr_rng_u64(llm_train_rng(b));
    llm_train_run_state(b)[1] = 42;
    const char *mp = dr_test_path(dr_test_tmpdir(), "m.gguf"), *sp = dr_test_path(dr_test_tmpdir(), "s.gguf");
    CHECK_OK(llm_train_save_model(b, NULL, GGML_TYPE_F32, mp));
    CHECK_OK(llm_train_save_state(b, sp));
    dr_rng rb = *llm_train_rng(b);
    llm_train_free(b);
    llm_model *m2 = NULL;
    if (!lora) CHECK_OK(llm_model_load(&m2, mp));
    CHECK_OK(llm_train_new(&b, lora ? m : m2, &tc));
    CHECK_OK(llm_train_load_state(b, sp));
    CHECK_EQ_INT(llm_train_steps(b), 3);
    CHECK_EQ_INT(llm_train_run_state(b)[1], 42);
    CHECK(!memcmp(llm_train_rng(b), &rb, sizeof rb));
    run_steps(b, &tb, 5, &lb);
    CHECK_MSG(la == lb, "resumed loss %.9g differs from uninterrupted %.9g", lb, la);
    size_t n;
    const float *pa = llm_train_params(a, &n), *pb = llm_train_params(b, NULL);
    CHECK(!memcmp(pa, pb, n * sizeof(float)));
    /* a state for another setup is refused */
    llm_train_config tc2 = tc;
    tc2.lora_rank = lora ? 0 : 2;
    llm_train *x;
    CHECK_OK(llm_train_new(&x, m, &tc2));
    CHECK_ERR(llm_train_load_state(x, sp), DR_ERR_ARG);
    llm_train_free(x);
    llm_train_free(a);
    llm_train_free(b);
    llm_model_free(m2);
    llm_model_free(m);
}

TEST(llm_train_resume_full) { resume_case(0); }
TEST(llm_train_resume_lora) { resume_case(4); }

/* Saved model (LoRA merged) loads with llm_model_load and gives the trainer's log-probs. */
TEST(llm_train_save_merge_load) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_LLAMA);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_BF16, 0.3f, 18));
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 3, tc.max_len = 9, tc.lora_rank = 4, tc.lora_targets = LLM_LORA_ALL, tc.lr = 3e-2f;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    tbatch tb;
    make_batch(&tb, 3, 9, c.vocab, 10);
    double l;
    run_steps(t, &tb, 3, &l);
    float lp1[64], lp2[64];
    CHECK_OK(llm_train_logprobs(t, &tb.b, lp1, NULL));
    const char *mp = dr_test_path(dr_test_tmpdir(), "merged.gguf");
    CHECK_OK(llm_train_save_model(t, NULL, GGML_TYPE_F32, mp));
    llm_model *m2;
    CHECK_OK(llm_model_load(&m2, mp));
    CHECK_EQ_INT(m2->cfg.tied_output, 0);
    CHECK_EQ_INT(m2->cfg.rope_pairing, NN_ROPE_ADJACENT);
    llm_train_config tc2 = tc;
    tc2.lora_rank = 0;
    llm_train *t2;
    CHECK_OK(llm_train_new(&t2, m2, &tc2));
    CHECK_OK(llm_train_logprobs(t2, &tb.b, lp2, NULL));
    for (int i = 0; i < 27; i++) CHECK_NEAR(lp1[i], lp2[i], 2e-5);
    llm_train_free(t2);
    llm_train_free(t);
    llm_model_free(m2);
    llm_model_free(m);
}

/* A tiny model memorises a short text: loss / 10 within 150 steps. */
TEST(llm_train_memorise) {
    static const char text[] = "the quick brown fox jumps over the lazy dog; a recommender lists ten items.";
    const int T = (int)sizeof text - 1;
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn = 128, c.vocab = 128;
    c.context = 128;
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.05f, 21));
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = 1, tc.max_len = T, tc.lr = 1e-2f, tc.warmup_steps = 10;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    int32_t tok[128], len = T;
    for (int i = 0; i < T; i++) tok[i] = (unsigned char)text[i];
    llm_batch b = {1, T, tok, &len, NULL, NULL, NULL, NULL, NULL};
    double first = 0, loss = 0;
    int step;
    for (step = 0; step < 150; step++) {
        double ce, w;
        CHECK_OK(llm_train_sft(t, &b, 0, &ce, &w));
        CHECK_OK(llm_train_step(t, NULL));
        loss = ce / w;
        if (step == 0) first = loss;
        if (loss < first / 10) break;
    }
    fprintf(stderr, "  memorise: loss %.4f -> %.4f in %d steps\n", first, loss, step);
    CHECK_MSG(loss < first / 10, "loss %.4f after %d steps (first %.4f)", loss, step, first);
    llm_train_free(t);
    llm_model_free(m);
}

/* ---------------------------------------------------------------- PyTorch fixtures */
/* The gradient buffer of a model tensor (full fine-tuning layout). */
static float *grad_by_name(llm_train *t, const char *name, size_t *n) {
    const llm_config *c = &t->c;
    const size_t D = (size_t)c->dim;
    if (!strcmp(name, "token_embd.weight")) return *n = (size_t)c->vocab * D, t->g_embd;
    if (!strcmp(name, "output.weight")) return *n = (size_t)c->vocab * D, t->g_out;
    if (!strcmp(name, "output_norm.weight")) return *n = D, t->g_output_norm;
    int l;
    char rest[64];
    if (sscanf(name, "blk.%d.%63s", &l, rest) != 2 || l < 0 || l >= c->n_layers) return NULL;
    tlayer *L = &t->layers[l];
    if (!strcmp(rest, "attn_norm.weight")) return *n = D, L->g_attn_norm;
    if (!strcmp(rest, "ffn_norm.weight")) return *n = D, L->g_ffn_norm;
    static const char *mats[TL_N] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int i = 0; i < TL_N; i++) {
        size_t k = strlen(mats[i]);
        if (strncmp(rest, mats[i], k)) continue;
        if (!strcmp(rest + k, ".weight")) return *n = (size_t)L->lin[i].in * L->lin[i].out, L->lin[i].gw;
        if (!strcmp(rest + k, ".bias")) return *n = (size_t)L->lin[i].out, L->lin[i].gb;
    }
    return NULL;
}

/* Loss and every gradient vs float64 autograd (tools/llm_ref/train_ref.py): loss within 1e-5
 * relative, each gradient within 1e-6 + 1e-4 * max|g| of its tensor; 10 AdamW steps: losses
 * within 2e-4 + 2e-3 * loss (fp32 vs fp64 trajectories drift slowly). */
static void torch_case(const char *arch) {
    char mp[256], fp[256];
    snprintf(mp, sizeof mp, "tests/fixtures/llm/%s_tiny.gguf.fixture", arch);
    snprintf(fp, sizeof fp, "tests/fixtures/llm/train_%s.gguf.fixture", arch);
    gguf_file f;
    CHECK_OK(gguf_open(&f, fp));
    llm_model *m;
    CHECK_OK(llm_model_load(&m, mp));
    const gguf_tensor_info *ti = gguf_find_tensor(&f, "batch.len");
    CHECK(ti && ti->n_elements == 3);
    const int B = 3, T = (int)(gguf_find_tensor(&f, "batch.tokens")->n_elements / 3);
    CHECK(T <= 16);
    int32_t tok[48], len[3];
    float w[48];
    uint8_t mask[48];
    const float *ft = gguf_find_tensor(&f, "batch.tokens")->data, *fl = ti->data;
    const float *fw = gguf_find_tensor(&f, "batch.weight")->data, *fm = gguf_find_tensor(&f, "batch.mask")->data;
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)ft[i], w[i] = fw[i], mask[i] = fm[i] != 0;
    for (int i = 0; i < B; i++) len[i] = (int32_t)fl[i];
    llm_batch b = {B, T, tok, len, w, mask, NULL, NULL, NULL};
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = B, tc.max_len = T, tc.lr = 1e-2f, tc.weight_decay = 0.1f, tc.grad_clip = 1.0f;
    llm_train *t;
    CHECK_OK(llm_train_new(&t, m, &tc));
    double ce, ws;
    CHECK_OK(llm_train_sft(t, &b, 0, &ce, &ws));
    float ref_loss = *(const float *)gguf_find_tensor(&f, "loss")->data;
    CHECK_NEAR(ce / ws, ref_loss, 1e-5 * fabs(ref_loss));
    int n_checked = 0;
    double worst = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor_info *g = &f.tensors[i];
        if (g->name.len < 6 || memcmp(g->name.ptr, "grad.", 5)) continue;
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)g->name.len - 5, g->name.ptr + 5);
        size_t n = 0;
        float *mine = grad_by_name(t, name, &n);
        CHECK_MSG(mine && n == g->n_elements, "no gradient for %s", name);
        const float *ref = g->data;
        double mx = 0, md = 0;
        for (size_t k = 0; k < n; k++) mx = fmax(mx, fabs(ref[k])), md = fmax(md, fabs(ref[k] - mine[k]));
        CHECK_MSG(md <= 1e-6 + 1e-4 * mx, "%s %s: max |grad diff| %g (max |grad| %g)", arch, name, md, mx);
        worst = fmax(worst, md / (mx + 1e-30));
        n_checked++;
    }
    CHECK(n_checked >= 10);
    fprintf(stderr, "  %s: %d gradients, worst relative diff %.2g\n", arch, n_checked, worst);
    llm_train_free(t);
    /* AdamW steps */
    CHECK_OK(llm_train_new(&t, m, &tc));
    const float *al = gguf_find_tensor(&f, "adam.losses")->data;
    double wl = 0;
    for (int s = 0; s < 10; s++) {
        CHECK_OK(llm_train_sft(t, &b, 0, &ce, &ws));
        CHECK_OK(llm_train_step(t, NULL));
        double l = ce / ws;
        CHECK_MSG(fabs(l - al[s]) <= 2e-4 + 2e-3 * al[s], "%s AdamW step %d: loss %.6g vs %.6g", arch, s, l, al[s]);
        wl = fmax(wl, fabs(l - al[s]));
    }
    fprintf(stderr, "  %s: 10 AdamW losses, max diff %.2g\n", arch, wl);
    llm_train_free(t);
    llm_model_free(m);
    gguf_close(&f);
}

TEST(llm_train_torch_qwen2) { torch_case("qwen2"); }
TEST(llm_train_torch_llama) { torch_case("llama"); }

/* A view over the master weights follows the updates (session logits == trainer log-probs). */
TEST(llm_train_view_follows_updates) {
    llm_config c;
    tiny_cfg(&c, LLM_ARCH_QWEN2);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_BF16, 0.3f, 19));
    llm_train *t = make_trainer(m, 0, 0);
    llm_model *v;
    CHECK_OK(llm_train_view_model(t, &v));
    tbatch tb;
    make_batch(&tb, 1, 9, c.vocab, 11);
    double l;
    t->tc.lr = 3e-2f;
    run_steps(t, &tb, 2, &l);
    float lp[64], lg[9 * 40];
    CHECK_OK(llm_train_logprobs(t, &tb.b, lp, NULL));
    llm_session *s;
    CHECK_OK(llm_session_new(&s, v, 1, 16));
    CHECK_OK(llm_prefill(s, 0, tb.tok, tb.len[0], lg, 1));
    for (int j = 1; j < tb.len[0]; j++) {
        const float *x = lg + (size_t)(j - 1) * c.vocab;
        double mx = -1e30, se = 0;
        for (int k = 0; k < c.vocab; k++) mx = x[k] > mx ? x[k] : mx;
        for (int k = 0; k < c.vocab; k++) se += exp(x[k] - mx);
        CHECK_NEAR(lp[j], x[tb.tok[j]] - mx - log(se), 1e-4);
    }
    /* what RL relies on: the view decodes and saves exactly as an exported copy would */
    llm_model *cp;
    CHECK_OK(llm_train_export_model(t, &cp));
    llm_session *sc;
    float lc[9 * 40];
    CHECK_OK(llm_session_new(&sc, cp, 1, 16));
    CHECK_OK(llm_prefill(sc, 0, tb.tok, tb.len[0], lc, 1));
    CHECK(memcmp(lg, lc, (size_t)(tb.len[0] - 1) * c.vocab * sizeof(float)) == 0);
    llm_session_free(sc);
    const char *dir = dr_test_tmpdir();
    char pv[512], pc[512];
    snprintf(pv, sizeof pv, "%s/view.gguf", dir);
    snprintf(pc, sizeof pc, "%s/copy.gguf", dir);
    CHECK_OK(llm_train_save_model(t, NULL, GGML_TYPE_F32, pv)); /* through the view */
    CHECK_OK(llm_model_save(cp, NULL, pc));
    char *bv, *bc;
    size_t nv, nc;
    CHECK_OK(dr_read_file(pv, &bv, &nv));
    CHECK_OK(dr_read_file(pc, &bc, &nc));
    CHECK(nv == nc && memcmp(bv, bc, nv) == 0);
    free(bv);
    free(bc);
    llm_model_free(cp);
    llm_session_free(s);
    llm_model_free(v);
    llm_train *tl = make_trainer(m, 0, 2);
    CHECK_ERR(llm_train_view_model(tl, &v), DR_ERR_UNSUPPORTED);
    llm_train_free(tl);
    llm_train_free(t);
    llm_model_free(m);
}
