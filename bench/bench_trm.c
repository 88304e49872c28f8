/* TRM benchmark: training throughput (sequences/s, achieved GFLOP/s) at the
 * defaults on Beauty (or a Beauty-shaped synthetic set when the shared data is
 * absent) beside cblas_sgemm GFLOP/s measured in the same run, and
 * full-catalog retrieval latency with 25,000 items at d = 64.
 *   build/bench/bench_trm [Beauty.txt] [steps]   (env DEEPREC_THREADS) */
#include "deeprec/base.h"
#include "deeprec/data.h"
#include "deeprec/trm.h"
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

static int synth(dr_dataset *d, int users, int items, uint64_t seed) {
    dr_data_builder *b = dr_data_builder_new();
    dr_rng r;
    dr_rng_seed(&r, seed);
    char us[32], is[32];
    for (int u = 0; u < users; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int len = 5 + (int)(dr_rng_double(&r) * dr_rng_double(&r) * 40);
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

int main(int argc, char **argv) {
    dr_threads_init();
    const char *path = argc > 1 ? argv[1] : "../shared/data/s3rec/Beauty.txt";
    int steps = argc > 2 ? atoi(argv[2]) : 20;
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
        if (synth(&d, 22363, 12101, 1)) return 1;
    }
    printf("threads %d; data %s: %d users, %d items, %lld interactions\n", dr_threads(), src, d.n_users, d.n_items,
           (long long)d.n_inter);
    double g_sq = sgemm_gflops(1024, 1024, 1024, 5), c_sq = last_sgemm_cpu_gflops;
    double g_lg = sgemm_gflops(1024, d.n_items + 1, 64, 5), c_lg = last_sgemm_cpu_gflops;
    printf("cblas_sgemm: %.1f GFLOP/s (1024^3), %.1f GFLOP/s (logits shape 1024x%dx64)\n", g_sq, g_lg, d.n_items + 1);
    trm_config c;
    trm_model *m;
    if (steps <= 0) goto retrieval;
    trm_config_default(&c);
    if (trm_model_new(&m, &c, &d, 1)) {
        fprintf(stderr, "bench_trm: %s\n", dr_error_message());
        return 1;
    }
    trm_train_opts o;
    trm_train_opts_default(&o);
    double s, fl;
    int64_t seqs, pos;
    trm__bench_train(m, &d, &o, 2, &s, &fl, &seqs, &pos); /* warm-up */
    double c0 = dr_cpu_now();
    if (trm__bench_train(m, &d, &o, steps, &s, &fl, &seqs, &pos)) {
        fprintf(stderr, "bench_trm: %s\n", dr_error_message());
        return 1;
    }
    printf("train (sasrec, ce, defaults): %d steps, %.1f sequences/s, %.0f positions/s, %.1f GFLOP/s achieved "
           "(%.0f%% of 1024^3 sgemm, %.0f%% of logits-shape sgemm)\n",
           steps, seqs / s, pos / s, fl / s / 1e9, 100 * fl / s / 1e9 / g_sq, 100 * fl / s / 1e9 / g_lg);
    double cs = dr_cpu_now() - c0;
    printf("  cpu time %.2f s for %.2f s wall (%.2f cores busy); per step %.1f ms wall\n", cs, s, cs / s,
           1e3 * s / steps);
    printf("  per cpu-second (load-independent): train %.1f GFLOP, %.0f sequences; sgemm %.1f GFLOP (1024^3), %.1f "
           "(logits shape): train/sgemm = %.0f%% / %.0f%%\n",
           fl / cs / 1e9, seqs / cs, c_sq, c_lg, 100 * fl / cs / 1e9 / c_sq, 100 * fl / cs / 1e9 / c_lg);
    trm_model_free(m);
retrieval:
    dr_data_free(&d);

    /* retrieval at 25,000 items, d = 64 */
    for (int model = 0; model < 2; model++) {
        trm_config_default(&c);
        c.model = model;
        c.n_items = 25000;
        if (trm_model_new(&m, &c, NULL, 2)) {
            fprintf(stderr, "bench_trm: %s\n", dr_error_message());
            return 1;
        }
        trm_session *ss;
        trm_session_new(&ss, m);
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
        printf("retrieve (%s, 25000 items, d=64, history 50, top 20, masked): %.3f ms/user wall, %.3f ms/user cpu\n",
               model ? "pref, with preference" : "sasrec", ms, cms);
        /* the same users in batches of 256 (trm_retrieve_batch): one forward + one sgemm per batch */
        enum { NB = 256, ROUNDS = 8 };
        static int32_t bh[NB][50], bids[NB * 20];
        static float bsc[NB * 20];
        const int32_t *hp[NB];
        int64_t hl[NB];
        const char *pp[NB];
        int bn[NB];
        for (int u = 0; u < NB; u++) {
            for (int j = 0; j < 50; j++) bh[u][j] = 1 + (int32_t)dr_rng_below(&r, 25000);
            hp[u] = bh[u];
            hl[u] = 50;
            pp[u] = model ? "dark comedy ; space" : NULL;
        }
        trm_batch *tb;
        if (trm_batch_new(&tb, m, NB)) {
            fprintf(stderr, "bench_trm: %s\n", dr_error_message());
            return 1;
        }
        trm_retrieve_batch(tb, NB, hp, hl, pp, 20, 1, bids, bsc, bn); /* warm-up */
        t0 = dr_now();
        c0 = dr_cpu_now();
        for (int i = 0; i < ROUNDS; i++) trm_retrieve_batch(tb, NB, hp, hl, pp, 20, 1, bids, bsc, bn);
        trm_batch_free(tb);
        double bms = (dr_now() - t0) * 1e3 / (ROUNDS * NB), bcms = (dr_cpu_now() - c0) * 1e3 / (ROUNDS * NB);
        printf("retrieve batched (%d users per call): %.4f ms/user wall, %.4f ms/user cpu; %.1fx one at a time "
               "(goal <= 0.1 ms/user)\n",
               NB, bms, bcms, ms / bms);
        trm_session_free(ss);
        trm_model_free(m);
    }
    return 0;
}
