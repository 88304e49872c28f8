/* Data-parallel TRM training and evaluation under mpirun (docs/distributed.md): 2 and 3
 * ranks (an uneven split of each batch) against one process with the same global batch. */
#include "harness.h"
#include "mpi_util.h"
#include "deeprec/data.h"
#include "deeprec/metrics.h"
#include "deeprec/trm.h"
#include "trm/internal.h"
#include <jansson.h>

/* Users with sequences of 4..13 items over 30 items, so batches mix lengths. */
static void synth(const char *path, int n_users) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b);
    dr_rng r;
    dr_rng_seed(&r, 11);
    char us[32], is[32], title[64];
    for (int i = 0; i < 30; i++) {
        snprintf(is, sizeof is, "i%d", i);
        snprintf(title, sizeof title, "item %d word%d", i, i % 7);
        CHECK_OK(dr_data_builder_add(b, "u_all", 5, is, strlen(is), i, 5.0));
        CHECK_OK(dr_data_builder_item_text(b, is, strlen(is), title, -1, i % 2 ? "Drama" : "Comedy|Action", -1));
    }
    for (int u = 0; u < n_users; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int len = 4 + (int)dr_rng_below(&r, 10), cur = (int)dr_rng_below(&r, 30);
        for (int t = 0; t < len; t++) {
            snprintf(is, sizeof is, "i%d", cur);
            CHECK_OK(dr_data_builder_add(b, us, strlen(us), is, strlen(is), t, 5.0));
            cur = dr_rng_double(&r) < 0.2 ? (int)dr_rng_below(&r, 30) : (cur + 1 + u % 2) % 30;
        }
    }
    dr_data_filter f;
    memset(&f, 0, sizeof f);
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    CHECK_OK(dr_data_save(&d, path));
    dr_data_free(&d);
}

static double weights_diff(const char *a, const char *b) {
    trm_model *x, *y;
    CHECK_OK(trm_load(&x, a));
    CHECK_OK(trm_load(&y, b));
    size_t nx, ny;
    float *px = trm_debug_params(x, &nx), *py = trm_debug_params(y, &ny);
    CHECK_EQ_INT(nx, ny);
    double r = rel_diff(px, py, nx);
    trm_model_free(x);
    trm_model_free(y);
    return r;
}

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    CHECK_OK(dr_read_file(a, &x, &nx));
    CHECK_OK(dr_read_file(b, &y, &ny));
    int eq = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return eq;
}

/* 2 epochs x 3 steps of batch 16 (the last batches of an epoch are not all full: 70 users).
 * Every random draw, dropout masks included, is keyed by the global batch
 * (docs/distributed.md), so any dropout gives the single process's run. */
static void train_equiv_members(const char *model, const char *loss, const char *dropout, int members);
static void train_equiv(const char *model, const char *loss, const char *dropout) {
    train_equiv_members(model, loss, dropout, 0);
}

/* members >= 2: `--ensemble members`, every member's final weights compared */
static void train_equiv_members(const char *model, const char *loss, const char *dropout, int members) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    char data[512], args[4096], out[4][600];
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "data.gguf"));
    synth(data, 70);
    const int nps[3] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "%s/m%d.gguf", dir, nps[k]);
        snprintf(args, sizeof args,
                 "trm train --data %s --out %s --model %s --loss %s --neg 5 --dim 16 --layers 1 --heads 2 "
                 "--max-len 8 --dropout %s --text-buckets 256 --batch 16 --epochs 2 --max-steps 5 --patience 0 "
                 "--seed 3 --ensemble %d --quiet >/dev/null",
                 data, out[k], model, loss, dropout, members);
        CHECK_EQ_INT(mpi_run(nps[k], args), 0);
    }
    for (int k = 1; k < 3; k++)
        for (int j = 0; j < (members ? members : 1); j++) {
            char a[700], b[700], part[32] = "";
            if (members) snprintf(part, sizeof part, ".member-%d.gguf", j);
            snprintf(a, sizeof a, "%s%s.resume.gguf", out[0], part);
            snprintf(b, sizeof b, "%s%s.resume.gguf", out[k], part);
            double r = weights_diff(a, b);
            printf("  %s/%s, dropout %s%s: -np %d final weights differ by %.2e of the largest\n", model, loss, dropout,
                   part, nps[k], r);
            CHECK_MSG(r <= 1e-5, "-np %d: weights differ by %g relative", nps[k], r);
        }
    if (members) { /* the ensemble's file: written once (rank 0), and it ranks as the single process's */
        trm_model *x, *y;
        dr_dataset d;
        dr_metrics_mean a, b;
        CHECK_OK(dr_data_load(&d, data));
        CHECK_OK(trm_load(&x, out[0]));
        CHECK_OK(trm_load(&y, out[2]));
        CHECK_EQ_INT(trm_model_config(y)->ensemble, members);
        CHECK_OK(trm_evaluate(x, &d, 1, 1, 0, &a));
        CHECK_OK(trm_evaluate(y, &d, 1, 1, 0, &b));
        CHECK_NEAR(a.ndcg[2], b.ndcg[2], 0.02); /* weights equal to 1e-5: at most a near-tie of one of 70 users moves */
        trm_model_free(x);
        trm_model_free(y);
        dr_data_free(&d);
    }
}

TEST(dist_trm_train_sasrec_ce) { train_equiv("sasrec", "ce", "0.5"); }
TEST(dist_trm_train_sasrec_ce_no_dropout) { train_equiv("sasrec", "ce", "0"); }
TEST(dist_trm_train_sasrec_sampled) { train_equiv("sasrec", "sampled", "0.5"); }
TEST(dist_trm_train_pref_bce) { train_equiv("pref", "bce", "0.5"); }
/* the text model (--model text): its experts and gate go through the gradient sum too */
TEST(dist_trm_train_text_ce) { train_equiv("text", "ce", "0.5"); }
/* an ensemble (--ensemble 2): each member trains data-parallel as one model does */
TEST(dist_trm_train_ensemble) { train_equiv_members("sasrec", "ce", "0.5", 2); }

/* A run stopped after one epoch and resumed under MPI ends in the same state, byte for byte,
 * as the uninterrupted MPI run. Rank 0 alone wrote: one metrics line per epoch. */
TEST(dist_trm_resume) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    char data[512], args[2048], a[600], b[600];
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "data.gguf"));
    synth(data, 70);
    snprintf(a, sizeof a, "%s/full.gguf", dir);
    snprintf(b, sizeof b, "%s/part.gguf", dir);
    const char *common = "--model sasrec --dim 16 --layers 1 --heads 2 --max-len 8 --dropout 0.3 --batch 16 "
                         "--max-steps 4 --patience 0 --seed 5 --quiet >/dev/null";
    snprintf(args, sizeof args, "trm train --data %s --out %s --epochs 3 %s", data, a, common);
    CHECK_EQ_INT(mpi_run(2, args), 0);
    snprintf(args, sizeof args, "trm train --data %s --out %s --epochs 1 %s", data, b, common);
    CHECK_EQ_INT(mpi_run(2, args), 0);
    snprintf(args, sizeof args, "trm train --data %s --out %s --epochs 3 --resume %s", data, b, common);
    CHECK_EQ_INT(mpi_run(2, args), 0);
    char ra[700], rb[700];
    snprintf(ra, sizeof ra, "%s.resume.gguf", a);
    snprintf(rb, sizeof rb, "%s.resume.gguf", b);
    CHECK_MSG(same_file(ra, rb), "the resumed state differs from the uninterrupted one");
    CHECK_MSG(same_file(a, b), "the resumed best checkpoint differs");
    snprintf(ra, sizeof ra, "%s.metrics.jsonl", b);
    char *t = read_text(ra);
    CHECK(t);
    int lines = 0;
    for (char *p = t; *p; p++) lines += *p == '\n';
    free(t);
    CHECK_EQ_INT(lines, 3);
}

/* trm eval: 600 users are 3 batches of scoring, split 2/1 and 1/1/1 over the ranks; the
 * metrics are identical (the printed JSON differs in the seconds only). */
static json_t *eval_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK_MSG(j, "%s: %s", path, e.text);
    json_object_del(j, "seconds");
    return j;
}

TEST(dist_trm_eval) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    char data[512], model[512], args[4096], out[3][600];
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "data.gguf"));
    snprintf(model, sizeof model, "%s", dr_test_path(dir, "trm.gguf"));
    synth(data, 600);
    dr_dataset d;
    CHECK_OK(dr_data_load(&d, data));
    for (int kind = 0; kind < 2; kind++) {
        trm_config c;
        trm_config_default(&c);
        c.model = kind ? TRM_PREF : TRM_SASREC;
        c.n_items = d.n_items;
        c.dim = 16;
        c.layers = 1;
        c.max_len = 8;
        c.text_buckets = 256;
        trm_model *m;
        CHECK_OK(trm_model_new(&m, &c, &d, 7));
        CHECK_OK(trm_save(m, model));
        trm_model_free(m);
        const int nps[3] = {0, 2, 3};
        for (int k = 0; k < 3; k++) {
            snprintf(out[k], sizeof out[k], "%s/eval%d.json", dir, nps[k]);
            snprintf(args, sizeof args, "trm eval --data %s --model %s --json %s > %s", data, model,
                     kind ? "--pref-oracle" : "", out[k]);
            CHECK_EQ_INT(mpi_run(nps[k], args), 0);
        }
        json_t *j0 = eval_json(out[0]);
        CHECK(json_integer_value(json_object_get(j0, "users")) > 512);
        for (int k = 1; k < 3; k++) {
            json_t *j = eval_json(out[k]);
            char *a = json_dumps(j0, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
            char *b = json_dumps(j, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
            CHECK_MSG(!strcmp(a, b), "-np %d: %s\nvs one process: %s", nps[k], b, a);
            free(a);
            free(b);
            json_decref(j);
        }
        json_decref(j0);
    }
    dr_data_free(&d);
}

/* One rank's error ends every rank with that rank's message, never a hang: rank 1 reads a
 * corrupt dataset while rank 0 goes on into the evaluation's collective; rank 0 writing into a
 * missing directory while the others train on. */
TEST(dist_error_ends_all_ranks) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    char data0[512], data1[512], model[512], args[4096], log[600];
    snprintf(data0, sizeof data0, "%s", dr_test_path(dir, "data0.gguf"));
    snprintf(data1, sizeof data1, "%s", dr_test_path(dir, "data1.gguf"));
    snprintf(model, sizeof model, "%s", dr_test_path(dir, "trm.gguf"));
    snprintf(log, sizeof log, "%s", dr_test_path(dir, "err.log"));
    synth(data0, 70);
    CHECK_OK(dr_write_file_atomic(data1, "GGUF but not really", 19));
    dr_dataset d;
    CHECK_OK(dr_data_load(&d, data0));
    trm_config c;
    trm_config_default(&c);
    c.n_items = d.n_items;
    c.dim = 16;
    c.layers = 1;
    c.max_len = 8;
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, &d, 7));
    CHECK_OK(trm_save(m, model));
    trm_model_free(m);
    dr_data_free(&d);
    /* each rank execs the CLI with its own --data (OMPI_COMM_WORLD_RANK is set by mpirun) */
    char b[1024];
    snprintf(b, sizeof b, "%s", getenv("DEEPREC_BIN"));
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive DEEPREC_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
             "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none timeout 120 mpirun --oversubscribe "
             "--bind-to none -np 2 sh -c 'exec %s trm eval --data %s/data$OMPI_COMM_WORLD_RANK.gguf --model %s' "
             ">/dev/null 2>%s",
             b, dir, model, log);
    int st = system(cmd);
    CHECK(WIFEXITED(st));
    CHECK_MSG(WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 124, "exit %d (124: hung until the timeout)",
              WEXITSTATUS(st));
    char *t = read_text(log);
    CHECK(t);
    CHECK_MSG(strstr(t, "error (rank 1 of 2)") && strstr(t, "data1.gguf"), "stderr: %s", t);
    free(t);
    /* rank 0 cannot write its checkpoint; rank 1 is already in the next step's allreduce */
    snprintf(args, sizeof args,
             "trm train --data %s --out %s/missing/dir/m.gguf --dim 16 --layers 1 --max-len 8 --batch 16 --epochs 3 "
             "--quiet >/dev/null 2>%s",
             data0, dir, log);
    st = mpi_run(2, args);
    CHECK_MSG(st != 0 && st != 124, "exit %d", st);
    t = read_text(log);
    CHECK(t);
    CHECK_MSG(strstr(t, "error (rank 0 of 2)") && strstr(t, "missing/dir"), "stderr: %s", t);
    free(t);
}
