/* Where the time of a DeepRec episode goes, one sequence at a time and with S sequences decoded
 * together (what `deeprec serve` does with 1 and with S clients): the rollout of N users through
 * a timing wrapper around the LLM adapter, split into prompt prefill, tool-result prefill and
 * decode steps (sampling included), with the preamble cache off and on. Wall and process CPU
 * time per episode for each phase; the machine's sgemm GFLOP/s first.
 *
 *   build/bench/bench_phases --data D.gguf --trm T.gguf --llm M.gguf [--users 48] [--slots 8]
 *                            [--max-hist 20] [--tool-k 20] */
#include "bench_common.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include "deeprec/trm.h"
#include <stdio.h>
#include <string.h>

enum { PH_PROMPT, PH_TOOL, PH_DECODE, PH_N };

typedef struct timed {
    agent_model in;
    uint8_t started[256]; /* the slot holds a sequence: the next append is a tool result */
    double wall[PH_N], cpu[PH_N];
    long long tokens[PH_N], steps;
} timed;

static int t_encode(void *c, const char *t, size_t l, int32_t **ids, size_t *n) {
    timed *w = c;
    return w->in.encode(w->in.ctx, t, l, ids, n);
}
static int t_piece(void *c, int32_t id, char *b, size_t cap) {
    timed *w = c;
    return w->in.piece(w->in.ctx, id, b, cap);
}
static int t_is_eos(void *c, int32_t id) {
    timed *w = c;
    return w->in.is_eos(w->in.ctx, id);
}
static int t_append(void *c, int slot, const int32_t *ids, int n) {
    timed *w = c;
    int ph = w->started[slot] ? PH_TOOL : PH_PROMPT;
    double t0 = dr_now(), c0 = dr_cpu_now();
    int rc = w->in.append(w->in.ctx, slot, ids, n);
    w->wall[ph] += dr_now() - t0;
    w->cpu[ph] += dr_cpu_now() - c0;
    w->tokens[ph] += n;
    w->started[slot] = 1;
    return rc;
}
static int t_fork(void *c, int src, int dst) {
    timed *w = c;
    w->started[dst] = 1;
    return w->in.fork(w->in.ctx, src, dst);
}
static int t_decode(void *c, const int *slots, int n, const agent_allow *allow, int32_t *tokens, float *lps) {
    timed *w = c;
    double t0 = dr_now(), c0 = dr_cpu_now();
    int rc = w->in.decode(w->in.ctx, slots, n, allow, tokens, lps);
    w->wall[PH_DECODE] += dr_now() - t0;
    w->cpu[PH_DECODE] += dr_cpu_now() - c0;
    w->tokens[PH_DECODE] += n;
    w->steps++;
    return rc;
}
static void t_release(void *c, int slot) {
    timed *w = c;
    w->started[slot] = 0;
    w->in.release(w->in.ctx, slot);
}

typedef struct setup {
    const llm_model *m;
    const agent_catalog *c;
    const agent_tool *tool;
    const agent_request *req;
    int n_req, max_hist, tool_k;
} setup;

static int run(const setup *s, int slots, int kv) {
    agent_model am;
    agent_llm_opts lo = {slots, 0, 0.0f, 0, 1.0f, 1, 0};
    int rc = agent_model_llm_new(&am, s->m, NULL, &lo);
    if (rc) return rc;
    agent_model_llm_prefix_kv(&am, kv);
    timed w;
    memset(&w, 0, sizeof w);
    w.in = am;
    agent_model tm = {&w, am.n_slots, am.n_ctx, t_encode, t_piece, t_is_eos, t_append, t_fork, t_decode, t_release};
    agent_rollout_opts ro;
    agent_rollout_opts_default(&ro);
    ro.max_hist = s->max_hist;
    ro.tool_k = s->tool_k;
    agent_episode *eps = NULL;
    double t0 = dr_now(), c0 = dr_cpu_now();
    rc = agent_rollout(&tm, s->tool, s->c, s->req, s->n_req, &ro, &eps);
    double wall = dr_now() - t0, cpu = dr_cpu_now() - c0;
    if (!rc) {
        long long gen = 0;
        for (int i = 0; i < s->n_req; i++) gen += eps[i].n_generated;
        const double n = s->n_req;
        printf("%d slot%s, cache %-3s  %5.1f ms wall %5.1f ms cpu per episode | prompt %5.1f/%5.1f ms (%4.0f tok) | "
               "tool results %5.1f/%5.1f ms (%4.0f tok) | decode %5.1f/%5.1f ms (%4.0f tok, %.0f gen, batch %.1f) | "
               "other %4.1f ms\n",
               slots, slots > 1 ? "s" : " ", kv ? "on" : "off", 1e3 * wall / n, 1e3 * cpu / n,
               1e3 * w.wall[PH_PROMPT] / n, 1e3 * w.cpu[PH_PROMPT] / n, w.tokens[PH_PROMPT] / n,
               1e3 * w.wall[PH_TOOL] / n, 1e3 * w.cpu[PH_TOOL] / n, w.tokens[PH_TOOL] / n, 1e3 * w.wall[PH_DECODE] / n,
               1e3 * w.cpu[PH_DECODE] / n, w.tokens[PH_DECODE] / n, gen / n,
               w.steps ? (double)w.tokens[PH_DECODE] / w.steps : 0,
               1e3 * (wall - w.wall[PH_PROMPT] - w.wall[PH_TOOL] - w.wall[PH_DECODE]) / n);
        fflush(stdout);
    }
    agent_episodes_free(eps, s->n_req);
    agent_model_llm_free(&am);
    return rc;
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL;
    int n_users = 48, slots = 8, max_hist = 20, tool_k = 20;
    const char *usage = "bench_phases --data D.gguf --trm T.gguf --llm M.gguf [--users 48] [--slots 8] "
                        "[--max-hist 20] [--tool-k 20]";
    const bench_arg args[] = {{"--data", BENCH_STR, &data_path}, {"--trm", BENCH_STR, &trm_path},
                              {"--llm", BENCH_STR, &llm_path},   {"--users", BENCH_INT, &n_users},
                              {"--slots", BENCH_INT, &slots},    {"--max-hist", BENCH_INT, &max_hist},
                              {"--tool-k", BENCH_INT, &tool_k}};
    if (bench_parse_args(argc, argv, args, (int)(sizeof args / sizeof *args), usage)) return 2;
    if (!data_path || !trm_path || !llm_path || n_users < 1 || slots < 1 || slots > 256) {
        fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    dr_threads_init();
    dr_dataset d;
    memset(&d, 0, sizeof d);
    trm_model *tm = NULL;
    llm_model *m = NULL;
    agent_catalog *c = NULL;
    agent_tool tool = {0};
    int32_t *users = NULL;
    int n = 0;
    int rc = dr_data_load(&d, data_path);
    if (!rc) rc = trm_load(&tm, trm_path);
    if (!rc) rc = llm_model_load(&m, llm_path);
    if (!rc) rc = agent_catalog_build(&d, &c);
    if (!rc) rc = agent_tool_trm_new(&tool, tm, 1);
    if (!rc) rc = dr_data_draw_users(&d, n_users, 1, &users, &n);
    agent_request *req = calloc((size_t)(n > 0 ? n : 1), sizeof *req);
    for (int i = 0; i < n && !rc; i++) {
        req[i].user = users[i];
        req[i].target = dr_data_split_history(&d, users[i], DR_SPLIT_TEST, &req[i].hist, &req[i].n_hist);
    }
    if (!rc) {
        printf("machine: sgemm %.1f GFLOP/s (512^3, %d threads); model %s (dim %d, %d layers); %d users, max_hist %d, "
               "tool_k %d; per phase wall/cpu\n",
               bench_sgemm_gflops(512, 512, 512), dr_threads(), llm_path, m->cfg.dim, m->cfg.n_layers, n, max_hist,
               tool_k);
        setup s = {m, c, &tool, req, n, max_hist, tool_k};
        /* alternated, so drift in the machine's load hits every configuration alike */
        int cfg[4][2] = {{1, 0}, {1, 1}, {slots, 0}, {slots, 1}};
        for (int k = 0; k < 4 && !rc; k++) rc = run(&s, cfg[k][0], cfg[k][1]);
    }
    if (rc) fprintf(stderr, "bench_phases: %s\n", dr_error_message());
    free(req);
    free(users);
    if (tool.ctx) agent_tool_trm_free(&tool);
    agent_catalog_free(c);
    llm_model_free(m);
    trm_model_free(tm);
    dr_data_free(&d);
    return rc ? 1 : 0;
}
