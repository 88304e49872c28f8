/* The shared-prefix KV cache (agent_prefix_cache) on real prompts: how many prompt tokens are
 * the preamble every episode shares and how many are the user's own; whether a prompt's prefill
 * in one piece gives the floats of its prefill in two (preamble, rest); and the time to start
 * N episodes (prefill their prompts) in one piece, in two pieces, and from the cache.
 * CPU time beside wall time; the machine's sgemm GFLOP/s first.
 *
 *   build/bench/bench_prefix --data D.gguf --llm M.gguf [--users 100] [--max-hist 20] [--chat] */
#include "bench_common.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct prompts {
    int n;
    int32_t **ids;
    int *len;
} prompts;

static int build_prompts(const dr_dataset *d, const agent_catalog *c, const agent_model *am, int n_users, int max_hist,
                         int chat, prompts *p) {
    int32_t *users = NULL;
    int n = 0;
    int rc = dr_data_draw_users(d, n_users, 1, &users, &n);
    if (rc) return rc;
    p->n = n;
    p->ids = calloc((size_t)n, sizeof *p->ids);
    p->len = calloc((size_t)n, sizeof *p->len);
    agent_prompt_opts po = {chat, max_hist, 0};
    for (int i = 0; i < n && !rc; i++) {
        const int32_t *hist;
        int64_t nh;
        dr_data_split_history(d, users[i], DR_SPLIT_TEST, &hist, &nh);
        char *text = NULL;
        size_t len = 0;
        if (!(rc = agent_prompt_build(c, hist, nh, &po, &text))) rc = am->encode(am->ctx, text, strlen(text), &p->ids[i], &len);
        p->len[i] = (int)len;
        free(text);
    }
    free(users);
    return rc;
}

/* Seconds of wall and CPU to append every prompt to slot 0 of a fresh model, then free it. */
static int time_starts(const llm_model *m, const prompts *p, int kv, double *wall, double *cpu) {
    agent_model am;
    agent_llm_opts lo = {1, 2048, 0.0f, 0, 1.0f, 1, 0};
    int rc = agent_model_llm_new(&am, m, NULL, &lo);
    if (rc) return rc;
    agent_model_llm_prefix_kv(&am, kv);
    double t0 = dr_now(), c0 = dr_cpu_now();
    for (int i = 0; i < p->n && !rc; i++) {
        rc = am.append(am.ctx, 0, p->ids[i], p->len[i]);
        am.release(am.ctx, 0);
    }
    *wall = dr_now() - t0;
    *cpu = dr_cpu_now() - c0;
    agent_model_llm_free(&am);
    return rc;
}

/* The same prompts prefilled in one llm_prefill each (the engine before the cache). */
static int time_whole(const llm_model *m, const prompts *p, double *wall, double *cpu) {
    llm_session *s;
    int rc = llm_session_new(&s, m, 1, 2048);
    if (rc) return rc;
    float *lg = malloc((size_t)m->cfg.vocab * sizeof *lg);
    double t0 = dr_now(), c0 = dr_cpu_now();
    for (int i = 0; i < p->n && !rc; i++) {
        rc = llm_prefill(s, 0, p->ids[i], p->len[i], lg, 0);
        llm_slot_truncate(s, 0, 0);
    }
    *wall = dr_now() - t0;
    *cpu = dr_cpu_now() - c0;
    free(lg);
    llm_session_free(s);
    return rc;
}

/* Last-position logits of prompt ids: whole (one prefill), split (preamble, then the rest) and
 * cached (the preamble's KV from pc, then the rest). Largest |whole - split|, and whether
 * split == cached bit for bit. */
static int compare(const llm_model *m, agent_prefix_cache *pc, const int32_t *ids, int n, double *max_diff, int *same) {
    int V = m->cfg.vocab, which;
    int P = agent_prefix_match(pc, ids, n, &which);
    if (P <= 0) return dr_error(DR_ERR_INTERNAL, "bench_prefix: a prompt does not start with its preamble");
    llm_session *s;
    int rc = llm_session_new(&s, m, 3, n);
    if (rc) return rc;
    float *lg = malloc((size_t)3 * V * sizeof *lg);
    if (!(rc = llm_prefill(s, 0, ids, n, lg, 0)) && !(rc = llm_prefill(s, 1, ids, P, NULL, 0)) &&
        !(rc = llm_prefill(s, 1, ids + P, n - P, lg + V, 0)) && !(rc = agent_prefix_start(pc, which, s, 2)))
        rc = llm_prefill(s, 2, ids + P, n - P, lg + 2 * V, 0);
    for (int v = 0; v < V && !rc; v++) {
        double dv = fabs((double)lg[v] - lg[V + v]);
        if (dv > *max_diff) *max_diff = dv;
    }
    if (!rc && memcmp(lg + V, lg + 2 * V, (size_t)V * sizeof *lg)) *same = 0;
    free(lg);
    llm_session_free(s);
    return rc;
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    const char *data_path = NULL, *llm_path = NULL;
    int n_users = 100, max_hist = 20, chat = 0;
    const char *usage = "bench_prefix --data D.gguf --llm M.gguf [--users 100] [--max-hist 20] [--chat]";
    const bench_arg args[] = {{"--data", BENCH_STR, &data_path}, {"--llm", BENCH_STR, &llm_path},
                              {"--users", BENCH_INT, &n_users},  {"--max-hist", BENCH_INT, &max_hist},
                              {"--chat", BENCH_SWITCH, &chat}};
    if (bench_parse_args(argc, argv, args, (int)(sizeof args / sizeof *args), usage)) return 2;
    if (!data_path || !llm_path || n_users < 1) {
        fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    dr_threads_init();
    dr_dataset d;
    memset(&d, 0, sizeof d);
    llm_model *m = NULL;
    agent_catalog *c = NULL;
    agent_model am = {0};
    agent_prefix_cache *pc = NULL;
    prompts p = {0};
    agent_llm_opts lo = {1, 2048, 0.0f, 0, 1.0f, 1, 0};
    int rc = dr_data_load(&d, data_path);
    if (!rc) rc = llm_model_load(&m, llm_path);
    if (!rc) rc = agent_catalog_build(&d, &c);
    if (!rc) rc = agent_model_llm_new(&am, m, NULL, &lo);
    if (!rc) rc = agent_prefix_cache_new(&pc, m, NULL);
    if (!rc) rc = build_prompts(&d, c, &am, n_users, max_hist, chat, &p);
    if (rc) {
        fprintf(stderr, "bench_prefix: %s\n", dr_error_message());
        return 1;
    }
    printf("machine: sgemm %.1f GFLOP/s (512^3, %d threads); model %s (dim %d, %d layers); %d users, max_hist %d, %s\n",
           bench_sgemm_gflops(512, 512, 512), dr_threads(), llm_path, m->cfg.dim, m->cfg.n_layers, p.n, max_hist,
           chat ? "chat" : "plain");
    long long total = 0, pre = 0;
    int lo_len = 1 << 30, hi_len = 0, P = 0, which;
    for (int i = 0; i < p.n; i++) {
        P = agent_prefix_match(pc, p.ids[i], p.len[i], &which);
        total += p.len[i];
        pre += P;
        int own = p.len[i] - P;
        lo_len = own < lo_len ? own : lo_len;
        hi_len = own > hi_len ? own : hi_len;
    }
    printf("prompt tokens per episode: %.1f = preamble %d (shared: %lld of %lld prompts match) + user part %.1f "
           "(min %d, max %d)\n",
           (double)total / p.n, P, pre / (P ? P : 1), (long long)p.n, (double)(total - pre) / p.n, lo_len, hi_len);
    double max_diff = 0;
    int same = 1;
    for (int i = 0; i < p.n && i < 8 && !rc; i++) rc = compare(m, pc, p.ids[i], p.len[i], &max_diff, &same);
    if (!rc)
        printf("last-token logits, first %d prompts: whole vs preamble+rest max |diff| %.3g (%s); cached vs "
               "preamble+rest %s\n",
               p.n < 8 ? p.n : 8, max_diff, max_diff == 0 ? "bit-identical" : "not bit-identical",
               same ? "bit-identical" : "DIFFERENT");
    /* alternate the three ways twice; the last round is reported (warm caches, same noise) */
    double w[3] = {0}, cp[3] = {0};
    for (int round = 0; round < 2 && !rc; round++) {
        if (!rc) rc = time_whole(m, &p, &w[0], &cp[0]);
        if (!rc) rc = time_starts(m, &p, 0, &w[1], &cp[1]);
        if (!rc) rc = time_starts(m, &p, 1, &w[2], &cp[2]);
    }
    if (rc) {
        fprintf(stderr, "bench_prefix: %s\n", dr_error_message());
        return 1;
    }
    const char *names[3] = {"whole prompt (before)", "preamble, then rest", "preamble from the cache"};
    for (int k = 0; k < 3; k++)
        printf("start %d episodes, %-24s wall %6.3f s  cpu %6.3f s  (%.2f ms per episode, %.2fx the whole)\n", p.n,
               names[k], w[k], cp[k], 1e3 * w[k] / p.n, w[k] / w[0]);
    for (int i = 0; i < p.n; i++) free(p.ids[i]);
    free(p.ids);
    free(p.len);
    agent_prefix_cache_free(pc);
    agent_model_llm_free(&am);
    agent_catalog_free(c);
    llm_model_free(m);
    dr_data_free(&d);
    return 0;
}
