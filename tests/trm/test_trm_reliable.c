/* Non-finite training stops with an error and keeps the last good checkpoint; a model
 * with NaN weights does not load; one dataset check for every command (issue 16, 5-6). */
#include "harness.h"
#include "deeprec/data.h"
#include "deeprec/trm.h"
#include "trm/internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* n_users users walking over n_items items (next = item + 1, some jumps). */
static void make_walks(dr_dataset *d, int n_users, int n_items) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b);
    dr_rng r;
    dr_rng_seed(&r, 3);
    char us[32], is[32];
    for (int i = 0; i < n_items; i++) {
        snprintf(is, sizeof is, "i%d", i);
        CHECK_OK(dr_data_builder_add(b, "u_all", 5, is, strlen(is), i, 5.0));
    }
    for (int u = 0; u < n_users; u++) {
        snprintf(us, sizeof us, "u%d", u);
        int cur = (int)dr_rng_below(&r, (uint64_t)n_items);
        for (int t = 0; t < 8; t++) {
            snprintf(is, sizeof is, "i%d", cur);
            CHECK_OK(dr_data_builder_add(b, us, strlen(us), is, strlen(is), t, 5.0));
            cur = dr_rng_double(&r) < 0.2 ? (int)dr_rng_below(&r, (uint64_t)n_items) : (cur + 1) % n_items;
        }
    }
    dr_data_filter f;
    memset(&f, 0, sizeof f);
    CHECK_OK(dr_data_builder_finish(b, &f, d));
    dr_data_builder_free(b);
}

static trm_model *small_model(const dr_dataset *d) {
    trm_config c;
    trm_config_default(&c);
    c.dim = 8, c.heads = 2, c.layers = 1, c.max_len = 6, c.ffn_dim = 16, c.dropout = 0.0f;
    trm_model *m = NULL;
    CHECK_OK(trm_model_new(&m, &c, d, 1));
    return m;
}

static trm_train_opts opts(const char *out, int epochs, float lr) {
    trm_train_opts o;
    trm_train_opts_default(&o);
    o.out = out, o.epochs = epochs, o.batch = 16, o.lr = lr, o.patience = 0;
    return o;
}

static char *slurp(const char *p, size_t *n) {
    char *s = NULL;
    CHECK_OK(dr_read_file(p, &s, n));
    return s;
}

TEST(trm_train_divergence_stops_and_keeps_the_best) {
    dr_dataset d;
    make_walks(&d, 60, 20);
    const char *dir = dr_test_tmpdir();
    char out[512];
    snprintf(out, sizeof out, "%s/t.gguf", dir);
    trm_model *m = small_model(&d);
    trm_train_opts o = opts(out, 1, 5e-3f);
    trm_train_result res;
    CHECK_OK(trm_train(m, &d, &o, &res));
    trm_model_free(m);
    size_t n0, n1;
    char *best0 = slurp(out, &n0);
    /* resumed with a learning rate that overflows the weights at the first step */
    m = small_model(&d);
    o = opts(out, 3, 1e30f);
    o.resume = 1;
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_RANGE);
    CHECK_MSG(strstr(dr_error_message(), "diverged") && strstr(dr_error_message(), "keeps the best model (epoch 1)"),
              "%s", dr_error_message());
    trm_model_free(m);
    char *best1 = slurp(out, &n1);
    CHECK_MSG(n0 == n1 && !memcmp(best0, best1, n0), "the best checkpoint was replaced");
    free(best0);
    free(best1);
    trm_model *ok = NULL;
    CHECK_OK(trm_load(&ok, out));
    trm_model_free(ok);
    dr_data_free(&d);
}

TEST(trm_train_refuses_nan_lr_and_zero_epochs) {
    dr_dataset d;
    make_walks(&d, 20, 10);
    const char *dir = dr_test_tmpdir();
    char out[512];
    snprintf(out, sizeof out, "%s/t.gguf", dir);
    trm_model *m = small_model(&d);
    trm_train_result res;
    trm_train_opts o = opts(out, 2, NAN);
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    o = opts(out, 0, 1e-3f);
    CHECK_ERR(trm_train(m, &d, &o, &res), DR_ERR_ARG);
    CHECK(!dr_file_exists(out));
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(trm_load_refuses_non_finite_weights) {
    dr_dataset d;
    make_walks(&d, 20, 10);
    const char *dir = dr_test_tmpdir();
    char out[512];
    snprintf(out, sizeof out, "%s/nan.gguf", dir);
    trm_model *m = small_model(&d);
    size_t n;
    float *w = trm_debug_params(m, &n);
    w[n / 2] = NAN;
    CHECK_OK(trm_save(m, out));
    trm_model_free(m);
    CHECK_ERR(trm_load(&m, out), DR_ERR_FORMAT);
    CHECK_MSG(strstr(dr_error_message(), "not finite"), "%s", dr_error_message());
    dr_data_free(&d);
}

/* A header that claims more items (or experts) than its tensors hold is refused before anything
 * is allocated, naming the tensor: 100 million items at dim 8 would be a 3.2 GB table, zeroed
 * (touched) on allocation, so the peak resident size shows whether it was made. */
TEST(trm_load_checks_tensors_before_allocating) {
    dr_dataset d;
    make_walks(&d, 20, 10);
    const char *dir = dr_test_tmpdir();
    char out[512];
    snprintf(out, sizeof out, "%s/lies.gguf", dir);
    trm_model *m = small_model(&d);
    const char *keys[] = {"deeprec.trm.n_items", "deeprec.trm.text_experts", "deeprec.trm.ensemble",
                          "deeprec.trm.ensemble"};
    const uint32_t vals[] = {100000000u, 8u, 3u, 1u};
    /* n_items: the item table's shape; text_experts on a sasrec model: the configuration; an
     * ensemble's key on one model: the first member's tensors; an ensemble of one: refused */
    const char *want[] = {"item_emb.weight", "text experts", "ensemble.0.item_emb.weight", "ensemble is 1"};
    for (int k = 0; k < 4; k++) {
        gguf_writer *w = trm__writer(m);
        CHECK(w);
        CHECK_OK(gguf_set_u32(w, keys[k], vals[k]));
        CHECK_OK(gguf_write(w, out));
        gguf_writer_free(w);
        trm_model *x = NULL;
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        int rc = trm_load(&x, out);
        getrusage(RUSAGE_SELF, &after);
        CHECK_MSG(after.ru_maxrss - before.ru_maxrss < 256 * 1024, "peak RSS grew by %ld kB",
                  after.ru_maxrss - before.ru_maxrss);
        CHECK(rc != DR_OK && x == NULL);
        CHECK_MSG(strstr(dr_error_message(), want[k]), "%s", dr_error_message());
    }
    trm_model_free(m);
    dr_data_free(&d);
}

TEST(trm_check_dataset_names_both_files) {
    dr_dataset a, b;
    make_walks(&a, 20, 10);
    make_walks(&b, 20, 12);
    trm_model *m = small_model(&a);
    CHECK_OK(trm_check_dataset(m, &a, "t.gguf", "a.gguf"));
    CHECK_ERR(trm_check_dataset(m, &b, "t.gguf", "b.gguf"), DR_ERR_ARG);
    CHECK_MSG(strstr(dr_error_message(), "t.gguf has 10 items but b.gguf has 12"), "%s", dr_error_message());
    trm_model_free(m);
    dr_data_free(&a);
    dr_data_free(&b);
}

TEST(trm_config_error_names_the_bad_value) {
    dr_dataset d;
    make_walks(&d, 20, 10);
    trm_config c;
    trm_config_default(&c);
    c.dim = 100000;
    trm_model *m = NULL;
    CHECK_ERR(trm_model_new(&m, &c, &d, 1), DR_ERR_ARG);
    CHECK_MSG(strstr(dr_error_message(), "dim 100000"), "%s", dr_error_message());
    trm_config_default(&c);
    c.heads = 3; /* default dim 64 */
    CHECK_ERR(trm_model_new(&m, &c, &d, 1), DR_ERR_ARG);
    CHECK_MSG(strstr(dr_error_message(), "heads 3"), "%s", dr_error_message());
    dr_data_free(&d);
}
