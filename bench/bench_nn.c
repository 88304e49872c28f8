/* bench_nn: achieved GFLOP/s of the nn kernels at the shapes deeprec uses, beside
 * OpenBLAS sgemm at a big square size in the same run (the machine reference).
 *   SASRec: batch 256 x length 50 = 12800 tokens, d = 64, attention B=256 T=50 H=2 Dh=32; the
 *   full-softmax CE of one Beauty batch (1740 positions with a target, 12,101 items + padding)
 *   0.5B LLM (Qwen2.5-0.5B): 512 tokens, d = 896, ffn 4864, attention T=512 H=14 KV=2 Dh=64
 * Threads: DEEPREC_THREADS or all cores (dr_threads_init). Each figure is the best of
 * repeated runs lasting about 0.3 s. */
#include "deeprec/base.h"
#include "deeprec/nn.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *randbuf(dr_rng *r, size_t n, float scale) {
    float *x = dr_aligned_alloc(n * sizeof(float));
    if (!x) { fprintf(stderr, "bench_nn: out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) x[i] = scale * (dr_rng_float(r) - 0.5f);
    return x;
}

typedef void (*bench_fn)(void *ctx);

/* Best time per call over repeats of fn that together last about min_s seconds. */
static double best_time(bench_fn fn, void *ctx, double min_s) {
    fn(ctx); /* warm-up */
    double best = 1e30, t_start = dr_now();
    int reps = 0;
    while (reps < 3 || dr_now() - t_start < min_s) {
        double t0 = dr_now();
        fn(ctx);
        double dt = dr_now() - t0;
        if (dt < best) best = dt;
        reps++;
        if (reps > 10000) break;
    }
    return best;
}

static void report(const char *what, double flops, double s) {
    printf("  %-52s %9.3f ms  %7.1f GFLOP/s\n", what, s * 1e3, flops / s * 1e-9);
}

/* ---- matmul ---- */
typedef struct { float *C; const float *A, *B; int M, N, K, tA, tB; } mm_ctx;
static void mm_run(void *p) {
    mm_ctx *c = p;
    nn_matmul(c->C, c->A, c->B, c->M, c->N, c->K, c->tA, c->tB, 1.0f, 0.0f);
}

static void bench_matmul(dr_rng *r, const char *label, int M, int N, int K, int tA, int tB) {
    float *A = randbuf(r, (size_t)M * K, 1), *B = randbuf(r, (size_t)K * N, 1), *C = randbuf(r, (size_t)M * N, 1);
    mm_ctx c = {C, A, B, M, N, K, tA, tB};
    char what[128];
    snprintf(what, sizeof what, "%s %s M=%d N=%d K=%d", tA ? (tB ? "TT" : "TN") : (tB ? "NT" : "NN"), label, M, N, K);
    report(what, 2.0 * M * N * K, best_time(mm_run, &c, 0.3));
    free(A), free(B), free(C);
}

/* ---- linear ---- */
typedef struct { float *y, *dx, *dW, *db; const float *x, *W, *b, *dy; int N, in, out; } lin_ctx;
static void lin_fwd(void *p) {
    lin_ctx *c = p;
    nn_linear_forward(c->y, c->x, c->W, c->b, c->N, c->in, c->out);
}
static void lin_bwd(void *p) {
    lin_ctx *c = p;
    nn_linear_backward(c->dx, c->dW, c->db, c->dy, c->x, c->W, c->N, c->in, c->out);
}

static void bench_linear(dr_rng *r, const char *label, int N, int in, int out) {
    lin_ctx c = {randbuf(r, (size_t)N * out, 1), randbuf(r, (size_t)N * in, 1), randbuf(r, (size_t)out * in, 1),
                 randbuf(r, out, 1), randbuf(r, (size_t)N * in, 1), randbuf(r, (size_t)out * in, 1),
                 randbuf(r, out, 1), randbuf(r, (size_t)N * out, 1), N, in, out};
    char what[128];
    snprintf(what, sizeof what, "linear fwd %s N=%d %d->%d", label, N, in, out);
    report(what, 2.0 * N * in * out, best_time(lin_fwd, &c, 0.3));
    snprintf(what, sizeof what, "linear bwd (dx,dW,db) %s", label);
    report(what, 4.0 * N * in * out, best_time(lin_bwd, &c, 0.3));
    free(c.y), free(c.dx), free(c.dW), free(c.db), free((void *)c.x), free((void *)c.W), free((void *)c.b), free((void *)c.dy);
}

/* ---- attention ---- */
typedef struct { nn_attn a; float *q, *k, *v, *out, *att, *datt, *dq, *dk, *dv, *dout; } at_ctx;
static void at_fwd(void *p) {
    at_ctx *c = p;
    if (nn_attention_forward(&c->a, c->out, c->att, c->q, c->k, c->v)) { fprintf(stderr, "%s\n", dr_error_message()); exit(1); }
}
static void at_bwd(void *p) {
    at_ctx *c = p;
    if (nn_attention_backward(&c->a, c->dq, c->dk, c->dv, c->datt, c->dout, c->q, c->k, c->v, c->att)) {
        fprintf(stderr, "%s\n", dr_error_message());
        exit(1);
    }
}

static void bench_attention(dr_rng *r, const char *label, int B, int T, int H, int Hkv, int Dh) {
    at_ctx c = {.a = {.B = B, .Tq = T, .Tk = T, .H = H, .Hkv = Hkv, .Dh = Dh, .causal = 1}};
    size_t nq = (size_t)B * T * H * Dh, nk = (size_t)B * T * Hkv * Dh, na = nn_attention_att_size(&c.a);
    c.q = randbuf(r, nq, 1), c.k = randbuf(r, nk, 1), c.v = randbuf(r, nk, 1), c.out = randbuf(r, nq, 1);
    c.att = randbuf(r, na, 1), c.datt = randbuf(r, na, 1), c.dq = randbuf(r, nq, 1), c.dk = randbuf(r, nk, 1);
    c.dv = randbuf(r, nk, 1), c.dout = randbuf(r, nq, 1);
    /* useful work of causal attention: T(T+1)/2 (query, key) pairs per head;
     * forward q.k and p*v: 4 Dh flops per pair; backward dP, dV, dQ, dK: 8 Dh flops per pair */
    double pairs = (double)B * H * T * (T + 1) / 2.0;
    char what[128];
    double tf = best_time(at_fwd, &c, 0.3);
    snprintf(what, sizeof what, "attention fwd %s B=%d T=%d H=%d KV=%d Dh=%d", label, B, T, H, Hkv, Dh);
    report(what, 4.0 * Dh * pairs, tf);
    double tb = best_time(at_bwd, &c, 0.3);
    snprintf(what, sizeof what, "attention bwd %s", label);
    report(what, 8.0 * Dh * pairs, tb);
    snprintf(what, sizeof what, "attention fwd+bwd %s", label);
    report(what, 12.0 * Dh * pairs, tf + tb);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.att), free(c.datt), free(c.dq), free(c.dk), free(c.dv), free(c.dout);
}

/* The 1-minute load average: figures taken while other work runs are not the machine's. */
/* ---- full-softmax CE over a catalogue (the TRM's loss) ---- */
typedef struct {
    float *dh, *dt, *work, *logits, *dl;
    const float *h, *tab;
    const int32_t *tg;
    int N, V, D;
} ce_ctx;

static void ce_fused(void *p) {
    ce_ctx *c = p;
    float l;
    nn_linear_cross_entropy(&l, c->dh, c->dt, c->h, c->tab, c->tg, c->N, c->V, c->D, 1, 1.0f, c->work);
}

/* The unfused loss the TRM ran before, in its chunks of 1024 rows. */
static void ce_unfused(void *p) {
    ce_ctx *c = p;
    for (int s = 0; s < c->N; s += 1024) {
        int R = c->N - s < 1024 ? c->N - s : 1024;
        const float *hc = c->h + (size_t)s * c->D;
        float l;
        nn_matmul(c->logits, hc, c->tab, R, c->V, c->D, 0, 1, 1.0f, 0.0f);
        for (int i = 0; i < R; i++) c->logits[(size_t)i * c->V] = -1e30f;
        memset(c->dl, 0, (size_t)R * c->V * sizeof(float));
        nn_cross_entropy(&l, c->dl, c->logits, c->tg + s, NULL, R, c->V, -1, 1.0f);
        nn_matmul(c->dh + (size_t)s * c->D, c->dl, c->tab, R, c->D, c->V, 0, 0, 1.0f, 0.0f);
        nn_matmul(c->dt, c->dl, hc, c->V, c->D, R, 1, 0, 1.0f, 1.0f);
    }
}

static void bench_ce(dr_rng *r, const char *label, int N, int V, int D) {
    ce_ctx c = {.N = N, .V = V, .D = D};
    c.h = randbuf(r, (size_t)N * D, 2);
    c.tab = randbuf(r, (size_t)V * D, 0.5f);
    int32_t *tg = dr_malloc((size_t)N * sizeof(int32_t));
    if (!tg) { fprintf(stderr, "bench_nn: out of memory\n"); exit(1); }
    for (int i = 0; i < N; i++) tg[i] = 1 + (int32_t)dr_rng_below(r, (uint64_t)(V - 1));
    c.tg = tg;
    c.dh = randbuf(r, (size_t)N * D, 0);
    c.dt = randbuf(r, (size_t)V * D, 0);
    c.work = randbuf(r, nn_linear_ce_work(N, V, D, 1), 0);
    c.logits = randbuf(r, (size_t)1024 * V, 0);
    c.dl = randbuf(r, (size_t)1024 * V, 0);
    const double fl = 6.0 * N * (double)(V - 1) * D; /* logits, dhidden, dtable */
    char what[128];
    snprintf(what, sizeof what, "fused %s N=%d V=%d D=%d", label, N, V, D);
    report(what, fl, best_time(ce_fused, &c, 0.5));
    snprintf(what, sizeof what, "unfused (sgemm + nn_cross_entropy) %s", label);
    report(what, fl, best_time(ce_unfused, &c, 0.5));
    free((void *)c.h), free((void *)c.tab), free(tg), free(c.dh), free(c.dt), free(c.work), free(c.logits), free(c.dl);
}

static void print_load(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l1 = -1;
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = -1;
        fclose(f);
    }
    printf("load average (1 min) %s: %.2f\n", when, l1);
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    dr_threads_init();
    print_load("at start");
    dr_rng r;
    dr_rng_seed(&r, 1);
    printf("bench_nn: %d threads (causal attention counts only the T(T+1)/2 visible pairs)\n", dr_threads());

    printf("reference: OpenBLAS cblas_sgemm\n");
    bench_matmul(&r, "square", 2048, 2048, 2048, 0, 0);

    printf("SASRec (12800 tokens = 256 x 50, d = 64)\n");
    bench_matmul(&r, "fwd x W^T", 12800, 64, 64, 0, 1);
    bench_matmul(&r, "bwd dy W ", 12800, 64, 64, 0, 0);
    bench_matmul(&r, "bwd dy^T x", 64, 64, 12800, 1, 0);
    bench_linear(&r, "SASRec", 12800, 64, 64);
    bench_attention(&r, "SASRec", 256, 50, 2, 2, 32);
    bench_ce(&r, "Beauty batch", 1740, 12102, 64);

    printf("0.5B LLM (512 tokens, d = 896, ffn = 4864)\n");
    bench_matmul(&r, "fwd x W^T", 512, 4864, 896, 0, 1);
    bench_matmul(&r, "bwd dy W ", 512, 896, 4864, 0, 0);
    bench_matmul(&r, "bwd dy^T x", 4864, 896, 512, 1, 0);
    bench_linear(&r, "LLM ffn up", 512, 896, 4864);
    bench_linear(&r, "LLM ffn down", 512, 4864, 896);
    bench_linear(&r, "LLM attn o", 512, 896, 896);
    bench_attention(&r, "LLM", 1, 512, 14, 2, 64);
    print_load("at end");
    return 0;
}
