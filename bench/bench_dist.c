/* Data-parallel benchmark (docs/distributed.md): the same three jobs as one process with T
 * threads or as R ranks x 1 thread, each reporting seconds per step, CPU seconds beside wall
 * seconds, the bytes this rank handed to MPI collectives per step and the seconds it spent in
 * them, and a projection to N nodes from those measurements.
 *   1. a SASRec epoch on Beauty (../shared/data/s3rec/Beauty.txt; batch 256, CE, d 64)
 *   2. SFT steps of the demo's tiny qwen2 (dim 256, 4 layers) on synthetic traces, batch 8
 *   3. RL steps of the same model shape (4 users x 2 samples, 64 tokens per turn)
 *     DEEPREC_THREADS=2 build/bench/bench_dist [--trm-steps N] [--sft-steps N] [--rl-steps N]
 *     DEEPREC_THREADS=1 mpirun -np 2 build/bench/bench_dist ...
 * Steps 0 skips a job (the epoch's full length by default for the SASRec job). */
#include "bench_common.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/rl.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include "trm/internal.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "bench_dist (rank %d): %s: %s\n", dr_dist_rank(), what, dr_error_message());
    dr_dist_abort(1);
}

/* One job's measurement on this rank, then the report on rank 0. */
typedef struct meas {
    double t0, c0;
    dr_dist_stats s0;
} meas;

static void meas_start(meas *m) {
    dr_dist_barrier();
    m->t0 = dr_now();
    m->c0 = dr_cpu_now();
    dr_dist_get_stats(&m->s0);
}

static void meas_report(const meas *m, const char *job, int steps, const char *unit, double units) {
    double wall = dr_now() - m->t0, cpu = dr_cpu_now() - m->c0;
    dr_dist_stats s;
    dr_dist_get_stats(&s);
    double bytes = (double)(s.bytes - m->s0.bytes), comm = s.seconds - m->s0.seconds;
    double v[2] = {cpu, comm}, mx[1] = {wall};
    dr_dist_sum_f64(v, 2); /* CPU of every rank; time in collectives summed */
    dr_dist_max_f64(mx, 1);
    const int R = dr_dist_size();
    if (dr_dist_rank() || steps <= 0) return;
    wall = mx[0];
    double per = wall / steps, comm_per = v[1] / R / steps, comp = per - comm_per, bps = bytes / steps;
    printf("%s: %d ranks x %d threads, %d steps: %.3f s/step wall, CPU %.3f s/step (all ranks), %.0f %s/s\n", job,
           R, dr_threads(), steps, per, v[0] / steps, units / wall, unit);
    printf("  collectives per step (rank 0): %.2f MB handed over, %.4f s inside (mean over ranks, waiting included)\n",
           bps / 1e6, comm_per);
    /* N nodes, the same global batch: the compute of this run's R ranks split N ways, plus a ring
     * allreduce of the step's bytes (each node sends and receives 2 (N-1)/N of them). */
    printf("  projected s/step on N nodes (compute %.3f s x %d ranks / N + ring allreduce at 10 | 100 Gb/s):", comp, R);
    const int Ns[5] = {1, 2, 4, 8, 16};
    for (int i = 0; i < 5; i++) {
        int N = Ns[i];
        double c = comp * R / N, a = 2.0 * (N - 1) / N * bps;
        printf(" N=%d %.3f|%.3f", N, c + a / 1.25e9, c + a / 12.5e9);
    }
    printf("\n");
}

/* The allreduce alone (ranks in step after a barrier): what overlapping it with the backward
 * could hide at most, without the waiting for a slower rank that the jobs' figures include. */
static void bench_allreduce(size_t n_floats, const char *what) {
    if (dr_dist_size() == 1) return;
    float *g = calloc(n_floats, sizeof(float));
    if (!g) die("allreduce buffer");
    for (size_t i = 0; i < n_floats; i++) g[i] = (float)(i % 13) * 1e-3f;
    const int reps = 10;
    double best = 1e30, sum = 0;
    for (int r = 0; r < reps; r++) {
        dr_dist_barrier();
        double t0 = dr_now();
        if (dr_dist_sum_f32(g, n_floats)) die("allreduce");
        double t = dr_now() - t0, mx[1] = {t};
        dr_dist_max_f64(mx, 1);
        sum += mx[0];
        if (mx[0] < best) best = mx[0];
    }
    if (!dr_dist_rank())
        printf("  the allreduce alone (%s, %.2f MB, %d ranks): best %.2f ms, mean %.2f ms of %d\n", what,
               n_floats * 4.0 / 1e6, dr_dist_size(), best * 1e3, sum / reps * 1e3, reps);
    free(g);
}

/* ---------------------------------------------------------------- 1. SASRec epoch */
static void bench_trm(int steps) {
    const char *path = "../shared/data/s3rec/Beauty.txt";
    if (!dr_file_exists(path)) {
        if (!dr_dist_rank()) printf("sasrec: %s absent: skipped\n", path);
        return;
    }
    dr_dataset d;
    dr_data_import_opts io;
    memset(&io, 0, sizeof io);
    io.format = "s3rec";
    io.inputs = &path;
    io.n_inputs = 1;
    if (dr_data_import(&io, &d)) die(path);
    trm_config c;
    trm_config_default(&c);
    c.n_items = d.n_items;
    trm_model *m;
    if (trm_model_new(&m, &c, &d, 1)) die("trm");
    trm_train_opts o;
    trm_train_opts_default(&o);
    int epoch = (d.n_users + o.batch - 1) / o.batch;
    if (steps < 0 || steps > epoch) steps = epoch;
    double secs, flops;
    int64_t seqs, pos;
    meas ms;
    meas_start(&ms);
    if (trm__bench_train(m, &d, &o, steps, &secs, &flops, &seqs, &pos)) die("trm__bench_train");
    char job[128];
    snprintf(job, sizeof job, "sasrec on Beauty (%d users, %d items; an epoch is %d steps of 256)", d.n_users,
             d.n_items, epoch);
    meas_report(&ms, job, steps, "sequences", (double)seqs);
    bench_allreduce(trm_num_params(m), "the SASRec gradient");
    trm_model_free(m);
    dr_data_free(&d);
}

/* ---------------------------------------------------------------- 2. SFT, 3. RL: the demo's model shape */
static const char *const words[] = {"River", "Night", "Garden", "Machine", "Winter", "Stranger", "Castle", "Dream"};
static const char *const genres[] = {"Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller"};

static void synth_data(dr_dataset *d) {
    dr_data_builder *b = dr_data_builder_new();
    dr_rng r;
    dr_rng_seed(&r, 3);
    char us[32], is[32], title[96], cats[64];
    for (int i = 0; i < 400; i++) {
        snprintf(is, sizeof is, "i%d", i);
        snprintf(title, sizeof title, "The %s %s %d", words[i % 8], words[(i / 8) % 8], i);
        snprintf(cats, sizeof cats, "%s|%s", genres[i % 7], genres[(i / 7) % 7]);
        dr_data_builder_item_text(b, is, strlen(is), title, -1, cats, -1);
    }
    for (int u = 0; u < 300; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int len = 8 + (int)dr_rng_below(&r, 20);
        for (int t = 0; t < len; t++) {
            snprintf(is, sizeof is, "i%d", (int)dr_rng_below(&r, 400));
            dr_data_builder_add(b, us, strlen(us), is, strlen(is), t, 5.0);
        }
    }
    dr_data_filter f = {0};
    if (dr_data_builder_finish(b, &f, d)) die("data");
    dr_data_builder_free(b);
}

static void tiny_llm(const dr_dataset *d, llm_model **lm, tokenizer **tok) {
    size_t cap = 1 << 21, len = 0;
    char *corpus = malloc(cap);
    for (int r = 0; r < 4; r++) len += (size_t)snprintf(corpus + len, cap - len, "%s", agent_prompt_instructions());
    for (int32_t i = 1; i <= d->n_items && len + 512 < cap; i++)
        len += (size_t)snprintf(corpus + len, cap - len, "%d. %s\n  - categories: %s\n", i % 20 + 1, d->titles[i],
                                d->categories[i]);
    tok_train_opts to = {0};
    to.vocab_size = 4096;
    if (tok_train(corpus, len, &to, tok)) die("tokenizer");
    free(corpus);
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = 256, c.n_layers = 4, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.ffn = 768;
    c.vocab = tok_vocab_size(*tok);
    c.context = 1024;
    if (llm_model_init_random(lm, &c, GGML_TYPE_F32, 0.02f, 1)) die("llm");
}

static void bench_sft(const char *dir, const dr_dataset *d, llm_model *lm, tokenizer *tok, int steps) {
    char model[512], data[512], out[512];
    snprintf(model, sizeof model, "%s/m0.gguf", dir);
    snprintf(data, sizeof data, "%s/sft.jsonl", dir);
    snprintf(out, sizeof out, "%s/m1.gguf", dir);
    if (!dr_dist_rank()) { /* one machine: rank 0 writes the inputs every rank reads */
        if (llm_model_save(lm, tok, model)) die(model);
        size_t cap = 1 << 22, n = 0;
        char *s = malloc(cap);
        for (int k = 0; k < 8 * steps; k++) {
            n += (size_t)snprintf(s + n, cap - n, "{\"prompt\": \"user %d likes", k);
            for (int j = 0; j < 12; j++) n += (size_t)snprintf(s + n, cap - n, " %s;", d->titles[1 + (k * 13 + j) % d->n_items]);
            n += (size_t)snprintf(s + n, cap - n, "\\nassistant: \", \"completion\": \"<recommendation_list>\\n");
            for (int j = 0; j < 10; j++) n += (size_t)snprintf(s + n, cap - n, "%d. %s\\n", j + 1, d->titles[1 + (k * 7 + j * 3) % d->n_items]);
            n += (size_t)snprintf(s + n, cap - n, "</recommendation_list>\"}\n");
        }
        if (dr_write_file_atomic(data, s, n)) die(data);
        free(s);
    }
    dr_dist_barrier();
    llm_sft_run_opts o;
    llm_sft_run_opts_default(&o);
    o.model = model, o.data = data, o.out = out;
    o.batch = 8, o.max_steps = steps, o.lr = 1e-4f;
    llm_sft_run_result res;
    meas ms;
    meas_start(&ms);
    if (llm_sft_run(&o, &res)) die("llm_sft_run");
    double tok_all[1] = {(double)res.tokens};
    meas_report(&ms, "sft (qwen2 dim 256 x 4 layers, batch 8)", (int)res.steps, "tokens", tok_all[0]);
    bench_allreduce(res.params, "the qwen2 gradient");
}

static void bench_rl(const char *dir, const dr_dataset *d, llm_model *lm, tokenizer *tok, int steps) {
    trm_config c;
    trm_config_default(&c);
    c.model = TRM_PREF;
    c.n_items = d->n_items;
    trm_model *tm;
    if (trm_model_new(&tm, &c, d, 1)) die("trm");
    char out[512];
    snprintf(out, sizeof out, "%s/policy.gguf", dir);
    rl_opts o;
    rl_opts_default(&o, 1);
    o.steps = steps, o.prompts = 4, o.samples = 2, o.lr = 1e-4f, o.micro = 2, o.updates = 1;
    o.rollout.max_turn_tokens = 64, o.max_ctx = 1024, o.rollout.max_hist = 10, o.select_k = 0, o.out = out;
    o.save_every = 1000000;
    rl_env env = {d, tm, lm, tok};
    rl_result res;
    meas ms;
    meas_start(&ms);
    if (rl_train(&env, &o, &res)) die("rl_train");
    meas_report(&ms, "rl (the same model, 4 users x 2 samples, 64 tokens per turn)", (int)res.steps_done, "episodes",
                (double)res.steps_done * o.prompts * o.samples);
    trm_model_free(tm);
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    if (dr_dist_init(&argc, &argv)) {
        fprintf(stderr, "bench_dist: %s\n", dr_error_message());
        return 1;
    }
    atexit(dr_dist_finalize);
    int trm_steps = -1, sft_steps = 4, rl_steps = 2;
    const bench_arg args[] = {{"--trm-steps", BENCH_INT, &trm_steps}, {"--sft-steps", BENCH_INT, &sft_steps},
                              {"--rl-steps", BENCH_INT, &rl_steps}};
    if (bench_parse_args(argc, argv, args, (int)(sizeof args / sizeof *args),
                         "bench_dist [--trm-steps N] [--sft-steps 4] [--rl-steps 2]"))
        return 2;
    dr_threads_init();
    if (!dr_dist_rank())
        printf("bench_dist: %d ranks x %d threads; cblas_sgemm 512^3 on rank 0: %.1f GFLOP/s\n", dr_dist_size(),
               dr_threads(), bench_sgemm_gflops(512, 512, 512));
    if (trm_steps != 0) bench_trm(trm_steps);
    if (sft_steps > 0 || rl_steps > 0) {
        char dir[] = "/tmp/bench_dist_XXXXXX";
        if (!dr_dist_rank() && !mkdtemp(dir)) die("mkdtemp");
        if (dr_dist_bcast(dir, sizeof dir, 0)) die("bcast");
        dr_dataset d;
        synth_data(&d);
        llm_model *lm;
        tokenizer *tok;
        tiny_llm(&d, &lm, &tok);
        if (sft_steps > 0) bench_sft(dir, &d, lm, tok, sft_steps);
        if (rl_steps > 0) bench_rl(dir, &d, lm, tok, rl_steps);
        dr_dist_barrier();
        if (!dr_dist_rank()) {
            char cmd[300];
            snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
            if (system(cmd)) fprintf(stderr, "bench_dist: could not remove %s\n", dir);
        }
        llm_model_free(lm);
        tok_free(tok);
        dr_data_free(&d);
    }
    return 0;
}
