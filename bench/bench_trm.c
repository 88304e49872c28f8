/* TRM benchmark, on 1 and then 2 threads (or the one count given), each beside cblas_sgemm
 * GFLOP/s measured at that thread count in the same run:
 *   - one training epoch at the defaults on Beauty (or a Beauty-shaped synthetic set when the
 *     shared data is absent): seconds, sequences/s, achieved GFLOP/s and its share of sgemm;
 *   - early stopping's validation on Sports-shaped synthetic data, all users and the sample;
 *   - full-catalog retrieval with 25,000 items at d = 64 (SASRec, pref, and an ensemble of five
 *     one-layer SASRecs): ms per user one at a time (trm_retrieve) and in batches of 256
 *     (trm_retrieve_batch), wall and CPU, with histories of 50 items and (batched) with the
 *     data's history lengths.
 *   build/bench/bench_trm [Beauty.txt] [epoch | STEPS | 0] [THREADS]
 * (epoch: the whole first epoch, the default; STEPS: that many steps of it; 0: no training). */
#include "deeprec/base.h"
#include "deeprec/data.h"
#include "deeprec/trm.h"
#include "deeprec/metrics.h"
#include "trm/internal.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double last_sgemm_cpu_gflops;
static double sgemm_gflops(int M, int N, int K, int reps) {
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float)),
          *C = malloc((size_t)M * N * sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, K, B, N, 0, C, N);
    double t0 = dr_now(), c0 = dr_cpu_now();
    for (int r = 0; r < reps; r++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, K, B, N, 0, C, N);
    double s = dr_now() - t0;
    last_sgemm_cpu_gflops = 2.0 * M * N * K * reps / (dr_cpu_now() - c0) / 1e9;
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K * reps / s / 1e9;
}

/* users with 5 + extra * U^2 random items each (U uniform in [0, 1)) */
static int synth(dr_dataset *d, int users, int items, double extra, uint64_t seed) {
    dr_data_builder *b = dr_data_builder_new();
    dr_rng r;
    dr_rng_seed(&r, seed);
    char us[32], is[32];
    for (int u = 0; u < users; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int len = 5 + (int)(dr_rng_double(&r) * dr_rng_double(&r) * extra);
        for (int t = 0; t < len; t++) {
            snprintf(is, sizeof is, "i%d", (int)dr_rng_below(&r, (uint64_t)items));
            dr_data_builder_add(b, us, strlen(us), is, strlen(is), t, 5.0);
        }
    }
    dr_data_filter f;
    memset(&f, 0, sizeof f);
    int rc = dr_data_builder_finish(b, &f, d);
    dr_data_builder_free(b);
    return rc;
}

/* Training at the defaults: `steps` steps of epoch 0 (0: the whole epoch). */
static int bench_train(const dr_dataset *d, int steps, double g_sq, double c_sq, double g_lg) {
    trm_config c;
    trm_config_default(&c);
    trm_model *m;
    if (trm_model_new(&m, &c, d, 1)) return 1;
    trm_train_opts o;
    trm_train_opts_default(&o);
    double s, fl;
    int64_t seqs, pos;
    int rc = trm__bench_train(m, d, &o, 2, &s, &fl, &seqs, &pos); /* warm-up: first touch of every buffer */
    double c0 = dr_cpu_now();
    if (!rc) rc = trm__bench_train(m, d, &o, steps, &s, &fl, &seqs, &pos);
    double cs = dr_cpu_now() - c0;
    trm_model_free(m);
    if (rc) return 1;
    const double gf = fl / s / 1e9;
    if (steps <= 0)
        printf("  train epoch (sasrec, ce, defaults, %lld sequences): %.2f s wall, %.2f s cpu (goal <= 6 s on 2 "
               "threads); %.1f TFLOP, i.e. %.2f s at the 1024^3 sgemm rate\n",
               (long long)seqs, s, cs, fl / 1e12, fl / 1e9 / g_sq);
    else
        printf("  train %d steps (sasrec, ce, defaults): %.2f s wall, %.2f s cpu\n", steps, s, cs);
    printf("  %.0f sequences/s, %.0f positions/s, %.1f GFLOP/s = %.0f%% of 1024^3 sgemm, %.0f%% of logits-shape sgemm; "
           "per cpu-second %.1f GFLOP = %.0f%% of sgemm's\n",
           seqs / s, pos / s, gf, 100 * gf / g_sq, 100 * gf / g_lg, fl / cs / 1e9, 100 * fl / cs / 1e9 / c_sq);
    return 0;
}

/* Per user ms of trm_retrieve_batch over 256 users with histories of hl[u] random items, in
 * calls of 256, wall and cpu. */
static int batched(trm_model *m, const int64_t *hl, const char *pref, dr_rng *r, double *ms, double *cms) {
    enum { NB = 256, ROUNDS = 8, MAXH = 50 };
    static int32_t bh[NB][MAXH], bids[NB * 20];
    static float bsc[NB * 20];
    const int32_t *hp[NB];
    const char *pp[NB];
    int bn[NB];
    for (int u = 0; u < NB; u++) {
        for (int j = 0; j < hl[u]; j++) bh[u][j] = 1 + (int32_t)dr_rng_below(r, (uint64_t)m->cfg.n_items);
        hp[u] = bh[u];
        pp[u] = pref;
    }
    trm_batch *tb;
    if (trm_batch_new(&tb, m, NB)) return 1;
    trm_retrieve_batch(tb, NB, hp, hl, pp, 20, 1, bids, bsc, bn); /* warm-up */
    double t0 = dr_now(), c0 = dr_cpu_now();
    for (int i = 0; i < ROUNDS; i++) trm_retrieve_batch(tb, NB, hp, hl, pp, 20, 1, bids, bsc, bn);
    *ms = (dr_now() - t0) * 1e3 / (ROUNDS * NB);
    *cms = (dr_cpu_now() - c0) * 1e3 / (ROUNDS * NB);
    trm_batch_free(tb);
    return 0;
}

/* Retrieval at 25,000 items, d = 64, top 20, history masked: histories of 50 items, and (in
 * batches) histories as long as the test histories of the dataset's first 256 users. */
static int bench_retrieval(const dr_dataset *d) {
    /* SASRec, the pref model with a preference, and Beauty's ensemble recipe (docs/trm.md:
     * five one-layer, one-head SASRecs, scored as one dot product of 5 x 64 per item) */
    static const char *names[] = {"sasrec", "pref+preference", "sasrec ensemble of 5, 1 layer"};
    for (int v = 0; v < 3; v++) {
        const int model = v == 1;
        trm_config c;
        trm_config_default(&c);
        c.model = model;
        c.n_items = 25000;
        if (v == 2) c.ensemble = 5, c.layers = 1, c.heads = 1;
        trm_model *m;
        if (trm_model_new(&m, &c, NULL, 2)) return 1;
        trm_session *ss;
        if (trm_session_new(&ss, m)) return 1;
        int32_t hist[50], ids[20];
        float sc[20];
        int n;
        dr_rng r;
        dr_rng_seed(&r, 3);
        int reps = 2000;
        double t0 = 0, c0 = 0;
        for (int i = 0; i < reps + 50; i++) {
            if (i == 50) {
                t0 = dr_now();
                c0 = dr_cpu_now();
            }
            for (int j = 0; j < 50; j++) hist[j] = 1 + (int32_t)dr_rng_below(&r, 25000);
            trm_retrieve(ss, hist, 50, model ? "dark comedy ; space" : NULL, 20, 1, ids, sc, &n);
        }
        double ms = (dr_now() - t0) * 1e3 / reps, cms = (dr_cpu_now() - c0) * 1e3 / reps;
        int64_t full[256], real[256], sum = 0;
        for (int u = 0; u < 256; u++) {
            full[u] = 50;
            int64_t n = u < d->n_users ? dr_data_seq_len(d, u) - 1 : 50;
            real[u] = n < 1 ? 1 : n > 50 ? 50 : n;
            sum += real[u];
        }
        const char *pref = model ? "dark comedy ; space" : NULL;
        double bms, bcms, rms, rcms;
        if (batched(m, full, pref, &r, &bms, &bcms) || batched(m, real, pref, &r, &rms, &rcms)) return 1;
        printf("  retrieve %s (25000 items, d=%d, top 20, masked), ms/user: history 50: one at a time %.3f wall "
               "%.3f cpu, batched (256 per call) %.4f wall %.4f cpu (goal <= 0.1 wall); the data's history lengths "
               "(mean %.1f), batched: %.4f wall %.4f cpu\n",
               names[v], trm_score_dim(m), ms, cms, bms, bcms, sum / 256.0, rms, rcms);
        trm_session_free(ss);
        trm_model_free(m);
    }
    return 0;
}

/* Validation of early stopping on data of Sports' shape (35,598 users, 18,357 items, about 8
 * items a user; Sports itself is not in ../shared/data): every user against the default
 * (auto) sample, with the workspace kept as trm train keeps it. */
static int bench_validation(const dr_dataset *sports) {
    trm_config c;
    trm_config_default(&c);
    trm_model *m;
    trm_acts ws;
    if (trm_model_new(&m, &c, sports, 1) || trm__acts_alloc_infer(&ws, m, TRM_EVAL_USERS)) return 1;
    for (int sample = 0; sample < 2; sample++) {
        int32_t *u;
        int n;
        dr_metrics_mean mm;
        if (trm__valid_users(sports, sample ? TRM_VALID_USERS_AUTO : 0, &u, &n)) return 1;
        double t0 = dr_now(), c0 = dr_cpu_now();
        int rc = trm__evaluate_users(m, sports, 0, 1, 0, u, n, &ws, &mm);
        free(u);
        if (rc) return 1;
        printf("  validation, Sports-shaped data (%d users, %d items), %s: %lld users, %.2f s wall, %.2f s cpu\n",
               sports->n_users, sports->n_items, sample ? "the auto sample" : "all users", (long long)mm.n,
               dr_now() - t0, dr_cpu_now() - c0);
    }
    trm__acts_free(&ws);
    trm_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    dr_threads_init();
    const char *path = argc > 1 ? argv[1] : "../shared/data/s3rec/Beauty.txt";
    const int explicit_epoch = argc <= 2 || !strcmp(argv[2], "epoch");
    const int steps = explicit_epoch ? 0 : atoi(argv[2]), train = explicit_epoch || steps > 0;
    const int only = argc > 3 ? atoi(argv[3]) : 0;
    dr_dataset d;
    const char *src = path;
    if (dr_file_exists(path)) {
        dr_data_import_opts io;
        memset(&io, 0, sizeof io);
        io.format = "s3rec";
        io.inputs = &path;
        io.n_inputs = 1;
        if (dr_data_import(&io, &d)) {
            fprintf(stderr, "bench_trm: %s\n", dr_error_message());
            return 1;
        }
    } else {
        src = "synthetic (Beauty-shaped)";
        if (synth(&d, 22363, 12101, 40, 1)) return 1;
    }
    printf("data %s: %d users, %d items, %lld interactions\n", src, d.n_users, d.n_items, (long long)d.n_inter);
    dr_dataset sports;
    if (synth(&sports, 35598, 18357, 13, 7)) return 1;
    for (int threads = only > 0 ? only : 1; threads <= (only > 0 ? only : 2); threads++) {
        dr_threads_set(threads);
        double g_sq = sgemm_gflops(1024, 1024, 1024, 5), c_sq = last_sgemm_cpu_gflops;
        double g_lg = sgemm_gflops(1024, d.n_items + 1, 64, 5);
        printf("threads %d: cblas_sgemm %.1f GFLOP/s wall, %.1f per cpu-second (1024^3); %.1f GFLOP/s (logits shape "
               "1024x%dx64)\n",
               threads, g_sq, c_sq, g_lg, d.n_items + 1);
        if ((train && bench_train(&d, steps, g_sq, c_sq, g_lg)) || bench_validation(&sports) || bench_retrieval(&d)) {
            fprintf(stderr, "bench_trm: %s\n", dr_error_message());
            return 1;
        }
    }
    dr_data_free(&d);
    dr_data_free(&sports);
    return 0;
}
