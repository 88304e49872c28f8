/* RL benchmark: seconds per RL step, rollout and update separately, for the demo's setting:
 * the built-in tiny qwen2 shape (dim 256, 4 layers, 4/2 heads, FFN 768, ~4k BPE vocabulary,
 * context 2048), the MovieLens dataset of the demo (cache/movielens.gguf) or a synthetic one,
 * a random preference-aware TRM, 8 users x 4 samples per step, 10 history items in the prompt,
 * 384 tokens per turn (tools/demo.sh's values).
 *   build/bench/bench_rl [--data D.gguf] [--trm T.gguf] [--llm M.gguf] [--prompts P] [--samples G]
 *                        [--steps N] [--max-tokens K] [--max-hist H] [--ctx C] [--micro M] [--lora R]
 *   (env DEEPREC_THREADS)
 * Without --llm the model is random: it rarely closes a turn, so every episode runs to the
 * per-turn cap (--max-tokens), which sets the generated length. */
#include "bench_common.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/rl.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what) {
    fprintf(stderr, "bench_rl: %s: %s\n", what, dr_error_message());
    exit(1);
}

static void synth_data(dr_dataset *d) {
    static const char *const g[] = {"Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller"};
    static const char *const w[] = {"River", "Night", "Garden", "Machine", "Winter", "Stranger", "Castle", "Dream"};
    dr_data_builder *b = dr_data_builder_new();
    dr_rng r;
    dr_rng_seed(&r, 3);
    char us[32], is[32], title[96], cats[64];
    for (int u = 0; u < 600; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int n = 10 + (int)dr_rng_below(&r, 60), base = (int)dr_rng_below(&r, 2000);
        for (int i = 0; i < n; i++) {
            snprintf(is, sizeof is, "m%d", (base + i * 7 + (int)dr_rng_below(&r, 50)) % 2000);
            if (dr_data_builder_add(b, us, strlen(us), is, strlen(is), i, 0)) die("synthetic data");
        }
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(is, sizeof is, "m%d", i);
        snprintf(title, sizeof title, "The %s %s (%d)", w[i % 8], w[(i / 8) % 8], 1950 + i % 60);
        snprintf(cats, sizeof cats, "%s|%s", g[i % 7], g[(i / 7) % 7]);
        dr_data_builder_item_text(b, is, strlen(is), title, -1, cats, -1);
    }
    dr_data_filter f = {0};
    if (dr_data_builder_finish(b, &f, d)) die("synthetic data");
    dr_data_builder_free(b);
}

static void step_cb(void *ctx, const rl_step_stats *s) {
    double *acc = ctx;
    acc[0] += s->batch.seconds;
    acc[1] += s->update_s;
    acc[2] += (double)s->batch.n_tokens;
    acc[3] += s->batch.mean_gen;
    acc[4] += 1;
    acc[5] += (double)s->batch.n_seq_tokens;
    acc[6] += s->batch.cpu_seconds;
    acc[7] += s->update_cpu_s;
    fprintf(stderr,
            "  step %lld: rollout %.2f s (CPU %.2f s), update %.2f s (CPU %.2f s), %lld generated tokens (%.0f per "
            "episode), %lld sequence tokens, reward %.3f\n",
            (long long)s->step, s->batch.seconds, s->batch.cpu_seconds, s->update_s, s->update_cpu_s,
            (long long)s->batch.n_tokens, s->batch.mean_gen, (long long)s->batch.n_seq_tokens, s->batch.reward);
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL;
    int prompts = 8, samples = 4, steps = 2, max_tokens = 384, micro = 2, lora = 0, max_hist = 10, ctx = 2048;
    const bench_arg args[] = {{"--data", BENCH_STR, &data_path},     {"--trm", BENCH_STR, &trm_path},
                              {"--llm", BENCH_STR, &llm_path},       {"--prompts", BENCH_INT, &prompts},
                              {"--samples", BENCH_INT, &samples},    {"--steps", BENCH_INT, &steps},
                              {"--max-tokens", BENCH_INT, &max_tokens}, {"--micro", BENCH_INT, &micro},
                              {"--max-hist", BENCH_INT, &max_hist},  {"--ctx", BENCH_INT, &ctx},
                              {"--lora", BENCH_INT, &lora}};
    if (bench_parse_args(argc, argv, args, (int)(sizeof args / sizeof *args),
                         "bench_rl [--data D.gguf] [--trm T.gguf] [--llm M.gguf] [--prompts 8] [--samples 4] [--steps 2] "
                         "[--max-tokens 384] [--micro 2] [--max-hist 10] [--ctx 2048] [--lora R]"))
        return 2;
    dr_threads_init();
    dr_dataset d;
    memset(&d, 0, sizeof d);
    if (!data_path && dr_file_exists("cache/movielens.gguf")) data_path = "cache/movielens.gguf";
    if (data_path) {
        if (dr_data_load(&d, data_path)) die(data_path);
    } else {
        synth_data(&d);
    }
    trm_model *tm;
    if (trm_path) {
        if (trm_load(&tm, trm_path)) die(trm_path);
    } else {
        trm_config c;
        trm_config_default(&c);
        c.model = TRM_PREF;
        c.n_items = d.n_items;
        if (trm_model_new(&tm, &c, &d, 1)) die("trm");
    }
    llm_model *lm;
    tokenizer *tok = NULL;
    if (llm_path) {
        if (llm_model_load(&lm, llm_path)) die(llm_path);
    } else {
        /* tokenizer from the prompt text and the catalog, then the demo's model shape */
        size_t cap = 1 << 22, len = 0;
        char *corpus = malloc(cap);
        for (int r = 0; r < 4; r++) {
            size_t n = strlen(agent_prompt_instructions());
            memcpy(corpus + len, agent_prompt_instructions(), n);
            len += n;
        }
        for (int32_t i = 1; i <= d.n_items && len + 512 < cap; i++)
            len += (size_t)snprintf(corpus + len, cap - len, "%d. %s\n  - categories: %s\n", i % 20 + 1, d.titles[i],
                                    d.categories[i]);
        tok_train_opts to = {0};
        to.vocab_size = 4096;
        double t0 = dr_now();
        if (tok_train(corpus, len, &to, &tok)) die("tokenizer");
        free(corpus);
        fprintf(stderr, "tokenizer: %d tokens (%.1f s)\n", (int)tok_vocab_size(tok), dr_now() - t0);
        llm_config c;
        llm_config_default(&c, LLM_ARCH_QWEN2);
        c.dim = 256;
        c.n_layers = 4;
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.head_dim = 64;
        c.ffn = 768;
        c.vocab = tok_vocab_size(tok);
        c.context = ctx;
        if (llm_model_init_random(&lm, &c, GGML_TYPE_F32, 0.02f, 1)) die("llm");
    }
    char dir[] = "/tmp/bench_rl_XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp");
    char out[256];
    snprintf(out, sizeof out, "%s/policy.gguf", dir);
    rl_opts o;
    rl_opts_default(&o, 1);
    o.steps = steps;
    o.prompts = prompts;
    o.samples = samples;
    o.lr = 1e-4f;
    o.micro = micro;
    o.updates = 1;
    o.lora_rank = lora;
    o.rollout.max_turn_tokens = max_tokens;
    o.max_ctx = ctx;
    o.rollout.max_hist = max_hist;
    o.select_k = 0;
    o.out = out;
    o.save_every = 1000000; /* checkpoint only at the end: time the steps alone */
    double acc[8] = {0};
    o.on_step = step_cb;
    o.on_step_ctx = acc;
    rl_env env = {&d, tm, lm, tok};
    fprintf(stderr,
            "bench_rl: %s, %d users x %d samples, %d steps, %d history items, max %d tokens per turn, context %d, "
            "micro-batch %d, %s, %d threads\n",
            data_path ? data_path : "synthetic data", prompts, samples, steps, max_hist, max_tokens, ctx, micro,
            lora ? "LoRA" : "full FT", dr_threads());
    double c0 = dr_cpu_now();
    rl_result res;
    if (rl_train(&env, &o, &res)) die("rl_train");
    double cpu = dr_cpu_now() - c0;
    double n = acc[4] > 0 ? acc[4] : 1;
    printf("bench_rl: per step: wall %.2f s (rollout %.2f + update %.2f), CPU %.2f s (rollout %.2f + update %.2f); "
           "%.0f generated tokens (%.0f per episode), %.0f sequence tokens; update %.0f sequence tokens per CPU second; "
           "run CPU %.1f s over %.1f s wall\n",
           (acc[0] + acc[1]) / n, acc[0] / n, acc[1] / n, (acc[6] + acc[7]) / n, acc[6] / n, acc[7] / n, acc[2] / n,
           acc[3] / n, acc[5] / n, acc[7] > 0 ? acc[5] / acc[7] : 0.0, cpu, res.seconds);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "bench_rl: could not remove %s\n", dir);
    llm_model_free(lm);
    tok_free(tok);
    trm_model_free(tm);
    dr_data_free(&d);
    return 0;
}
