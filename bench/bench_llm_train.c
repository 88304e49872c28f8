/* LLM training speed: tokens/s and achieved GFLOP/s (forward + backward) beside OpenBLAS
 * sgemm GFLOP/s measured in the same run, and memory.
 *   1. the built-in tiny model (qwen2, d=256, 4 layers, 4/2 heads, ffn 768, vocab 4096),
 *      full fine-tuning, batch 4 x 256 tokens;  target >= 25% of sgemm
 *   2. a Qwen2.5-0.5B-shaped model (d=896, 14/2 heads, ffn 4864, vocab 151936) with FEWER
 *      LAYERS (default 4; --layers), BF16 base, LoRA r=16 on q,k,v,o,gate,up,down,
 *      1 x 512 tokens;  target >= 40% of sgemm
 * FLOPs are counted by llm_train_flops (matmuls + causal attention; LoRA: base forward + dX).
 *   bench_llm_train [--layers L] [--steps N] [--only tiny|lora] [--recompute] [--json] */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include "bench_common.h"
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double sgemm_gflops(void) { return bench_sgemm_gflops(512, 4864, 896); }

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

typedef struct res { double tps, gflops, plan_mb, rss_mb, step_s; size_t params; } res;

static int g_recompute;

static int run(const llm_config *c, uint32_t type, int lora, int B, int T, int steps, res *r) {
    llm_model *m;
    int rc = llm_model_init_random(&m, c, type, 0.02f, 1);
    if (rc) return rc;
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = B, tc.max_len = T, tc.lora_rank = lora, tc.lora_targets = LLM_LORA_ALL, tc.lr = 1e-4f;
    tc.recompute = g_recompute;
    llm_train *t;
    if ((rc = llm_train_new(&t, m, &tc))) {
        llm_model_free(m);
        return rc;
    }
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *len = malloc((size_t)B * sizeof *len);
    dr_rng g;
    dr_rng_seed(&g, 3);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)dr_rng_below(&g, (uint64_t)c->vocab);
    for (int i = 0; i < B; i++) len[i] = T;
    llm_batch b = {B, T, tok, len, NULL, NULL, NULL, NULL, NULL};
    double best = 1e30;
    for (int s = 0; s < steps + 1 && !rc; s++) { /* first step is warm-up */
        double t0 = dr_now();
        rc = llm_train_sft(t, &b, 0, NULL, NULL);
        if (!rc) rc = llm_train_step(t, NULL);
        double dt = dr_now() - t0;
        if (s > 0 && dt < best) best = dt;
        if (steps == 0) best = dt;
    }
    if (!rc) {
        r->step_s = best;
        r->tps = B * T / best;
        r->gflops = llm_train_flops(t, (int64_t)B * T, T) / best / 1e9;
        r->plan_mb = llm_train_memory_bytes(t) / 1e6;
        r->params = llm_train_n_params(t);
        r->rss_mb = peak_rss_mb();
    }
    free(tok), free(len);
    llm_train_free(t);
    llm_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    int layers = 4, steps = 2, json = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--recompute")) g_recompute = 1;
        else {
            fprintf(stderr, "usage: bench_llm_train [--layers L] [--steps N] [--only tiny|lora] [--recompute] [--json]\n");
            return 2;
        }
    }
    dr_threads_init();
    double gf = sgemm_gflops();
    json_t *o = json_object();
    json_object_set_new(o, "threads", json_integer(dr_threads()));
    json_object_set_new(o, "sgemm_gflops", json_real(gf));
    if (!json) printf("threads %d; sgemm %.1f GFLOP/s\n", dr_threads(), gf);
    if (!only || !strcmp(only, "tiny")) {
        llm_config c;
        llm_config_default(&c, LLM_ARCH_QWEN2);
        c.dim = 256, c.n_layers = 4, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.ffn = 768, c.vocab = 4096;
        c.context = 1024;
        res r;
        if (run(&c, GGML_TYPE_F32, 0, 4, 256, steps, &r)) {
            fprintf(stderr, "bench_llm_train: %s\n", dr_error_message());
            return 1;
        }
        if (!json)
            printf("tiny (d=256, 4 layers, vocab 4096, full FT, 4 x 256): %.0f tokens/s, %.1f GFLOP/s = %.0f%% of sgemm "
                   "(target 25%%); %zu params; plan %.0f MB, peak RSS %.0f MB\n",
                   r.tps, r.gflops, 100 * r.gflops / gf, r.params, r.plan_mb, r.rss_mb);
        json_object_set_new(o, "tiny_tokens_per_s", json_real(r.tps));
        json_object_set_new(o, "tiny_gflops", json_real(r.gflops));
        json_object_set_new(o, "tiny_frac_sgemm", json_real(r.gflops / gf));
        json_object_set_new(o, "tiny_peak_rss_mb", json_real(r.rss_mb));
        json_object_set_new(o, "tiny_plan_mb", json_real(r.plan_mb));
    }
    if (!only || !strcmp(only, "lora")) {
        llm_config c;
        llm_config_default(&c, LLM_ARCH_QWEN2);
        c.dim = 896, c.n_layers = layers, c.n_heads = 14, c.n_kv_heads = 2, c.head_dim = 64, c.ffn = 4864;
        c.vocab = 151936, c.context = 32768;
        res r;
        if (run(&c, GGML_TYPE_BF16, 16, 1, 512, steps, &r)) {
            fprintf(stderr, "bench_llm_train: %s\n", dr_error_message());
            return 1;
        }
        if (!json)
            printf("d=896 (%d layers, vocab 151936, BF16 base, LoRA r=16 all, 1 x 512): %.0f tokens/s, %.1f GFLOP/s = "
                   "%.0f%% of sgemm (target 40%%); %zu LoRA params; plan %.0f MB, peak RSS %.0f MB\n",
                   layers, r.tps, r.gflops, 100 * r.gflops / gf, r.params, r.plan_mb, r.rss_mb);
        json_object_set_new(o, "lora896_layers", json_integer(layers));
        json_object_set_new(o, "lora896_tokens_per_s", json_real(r.tps));
        json_object_set_new(o, "lora896_gflops", json_real(r.gflops));
        json_object_set_new(o, "lora896_frac_sgemm", json_real(r.gflops / gf));
        json_object_set_new(o, "lora896_peak_rss_mb", json_real(r.rss_mb));
        json_object_set_new(o, "lora896_plan_mb", json_real(r.plan_mb));
    }
    if (json) {
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    }
    json_decref(o);
    return 0;
}
