#include "harness.h"
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

TEST(base_error_message_has_place_and_hint) {
    int rc = dr_error_at(DR_ERR_FORMAT, "data.csv", 12, "field 3: expected an integer, got '%s'", "x1");
    CHECK_EQ_INT(rc, DR_ERR_FORMAT);
    dr_error_hint("check the %s", "header");
    CHECK_STR(dr_error_message(), "data.csv:12: field 3: expected an integer, got 'x1'\n  hint: check the header");
    dr_error_context("importing");
    CHECK(strncmp(dr_error_message(), "importing: data.csv:12:", 23) == 0);
    CHECK_EQ_INT(dr_error_code(), DR_ERR_FORMAT);
    dr_error_clear();
    CHECK_EQ_INT(dr_error_code(), DR_OK);
}

/* A failure on a worker thread reaches the thread that started the region: the one of the
 * lowest index, whichever thread ran it and whenever. */
TEST(base_error_in_parallel_region_reaches_caller) {
    dr_par_error pe;
    dr_par_error_init(&pe);
#pragma omp parallel for num_threads(4) schedule(dynamic, 1)
    for (int i = 0; i < 64; i++)
        if (i % 10 == 7) dr_par_error_keep(&pe, 63 - i, dr_error(DR_ERR_FORMAT, "item %d is bad", i));
    CHECK(dr_par_error_failed(&pe));
    CHECK_ERR(dr_par_error_raise(&pe), DR_ERR_FORMAT);
    CHECK_STR(dr_error_message(), "item 57 is bad"); /* index 63 - 57 = 6, the lowest */
    /* a region where nothing fails leaves the caller's slot as it was */
    dr_par_error_init(&pe);
#pragma omp parallel for num_threads(4)
    for (int i = 0; i < 64; i++) dr_par_error_keep(&pe, i, DR_OK);
    CHECK_EQ_INT(dr_par_error_raise(&pe), DR_OK);
    CHECK_STR(dr_error_message(), "item 57 is bad");
    dr_error_clear();
}

TEST(base_alloc_overflow_is_an_error) {
    void *p = dr_calloc(SIZE_MAX / 2, 4);
    CHECK(p == NULL);
    CHECK_EQ_INT(dr_error_code(), DR_ERR_NOMEM);
    size_t out;
    CHECK(!dr_mul_ok(SIZE_MAX, 2, &out));
    CHECK(dr_mul_ok(1000, 1000, &out) && out == 1000000);
}

TEST(base_str_concat_and_cpu_clock) {
    char *p = dr_str_concat("out/policy", ".ckpt.json");
    CHECK_STR(p, "out/policy.ckpt.json");
    free(p);
    p = dr_str_concat("", "");
    CHECK_STR(p, "");
    free(p);
    /* the CPU clock counts this thread's work: it moves forward while we compute */
    double c0 = dr_cpu_now(), x = 0;
    for (int i = 0; i < 20000000; i++) x += (double)i * 1e-9;
    CHECK(x > 0 && dr_cpu_now() > c0);
}

TEST(base_rng_reproducible_and_split) {
    dr_rng a, b;
    dr_rng_seed(&a, 42);
    dr_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(dr_rng_u64(&a) == dr_rng_u64(&b));
    dr_rng c1 = dr_rng_split(&a, 1), c1b = dr_rng_split(&a, 1), c2 = dr_rng_split(&a, 2);
    uint64_t x1 = dr_rng_u64(&c1);
    CHECK(x1 == dr_rng_u64(&c1b));
    CHECK(x1 != dr_rng_u64(&c2));
    /* uniform mean and normal moments, loose statistical bounds */
    double s = 0, s2 = 0, sn = 0, sn2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = dr_rng_float(&a);
        CHECK(u >= 0 && u < 1);
        s += u;
        s2 += u * u;
        double z = dr_rng_normal(&a);
        sn += z;
        sn2 += z * z;
    }
    CHECK_NEAR(s / n, 0.5, 0.005);
    CHECK_NEAR(sn / n, 0.0, 0.01);
    CHECK_NEAR(sn2 / n, 1.0, 0.02);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[dr_rng_below(&a, 7)]++;
    for (int k = 0; k < 7; k++) CHECK_NEAR(counts[k], 10000, 500);
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

TEST(base_atomic_write_commit_and_abort) {
    const char *dir = dr_test_tmpdir();
    const char *path = dr_test_path(dir, "out.txt");
    CHECK_OK(dr_write_file_atomic(path, "hello", 5));
    char *buf;
    size_t n;
    CHECK_OK(dr_read_file(path, &buf, &n));
    CHECK_EQ_INT(n, 5);
    CHECK_STR(buf, "hello");
    free(buf);
    dr_afile af;
    CHECK_OK(dr_afile_open(&af, path));
    fputs("partial", af.fp);
    dr_afile_abort(&af);
    CHECK_OK(dr_read_file(path, &buf, &n));
    CHECK_STR(buf, "hello"); /* old content intact */
    free(buf);
    CHECK_EQ_INT(count_files(dir), 1); /* no temporary left behind */
    CHECK_ERR(dr_write_file_atomic("/nonexistent-dir/x", "a", 1), DR_ERR_IO);
    CHECK(strstr(dr_error_message(), "/nonexistent-dir/x") != NULL);
}

TEST(base_mmap_reads_file) {
    const char *path = dr_test_path(dr_test_tmpdir(), "m.bin");
    CHECK_OK(dr_write_file_atomic(path, "abcdef", 6));
    dr_mmap m;
    CHECK_OK(dr_mmap_open(&m, path));
    CHECK_EQ_INT(m.size, 6);
    CHECK(memcmp(m.data, "abcdef", 6) == 0);
    dr_mmap_close(&m);
    const char *empty = dr_test_path(dr_test_tmpdir(), "e.bin");
    CHECK_OK(dr_write_file_atomic(empty, "", 0));
    CHECK_OK(dr_mmap_open(&m, empty));
    CHECK(m.size == 0 && m.data == NULL);
    CHECK_ERR(dr_mmap_open(&m, "/nonexistent/file"), DR_ERR_IO);
}

/* The copy holds the file's bytes; a released range reads the file's bytes again (not the
 * zeros that dropping anonymous pages would leave); small files are mapped instead. */
TEST(base_mmap_copy_reads_file_and_releases) {
    const size_t n = (size_t)5 << 20 | 123; /* over 4 MiB and not a page multiple */
    uint8_t *want = malloc(n);
    for (size_t i = 0; i < n; i++) want[i] = (uint8_t)(i * 2654435761u >> 13);
    const char *path = dr_test_path(dr_test_tmpdir(), "copy.bin");
    CHECK_OK(dr_write_file_atomic(path, want, n));
    dr_mmap m;
    CHECK_OK(dr_mmap_open_copy(&m, path));
    CHECK(m.copied == 1 && m.size == n && m.map_size >= n);
    CHECK(memcmp(m.data, want, n) == 0);
    dr_mmap_release(&m, m.data + 1000, (size_t)3 << 20);
    dr_mmap_release(&m, m.data + n - 5000, 5000); /* the tail page, partly past the file */
    CHECK(memcmp(m.data, want, n) == 0);
    dr_mmap_close(&m);
    CHECK(m.data == NULL && m.copied == 0);
    const char *small = dr_test_path(dr_test_tmpdir(), "small.bin");
    CHECK_OK(dr_write_file_atomic(small, "abcdef", 6));
    CHECK_OK(dr_mmap_open_copy(&m, small));
    CHECK(m.copied == 0 && m.size == 6 && memcmp(m.data, "abcdef", 6) == 0);
    dr_mmap_close(&m);
    CHECK_ERR(dr_mmap_open_copy(&m, "/nonexistent/file"), DR_ERR_IO);
    free(want);
}

TEST(base_progress_plain_lines) {
    const char *path = dr_test_path(dr_test_tmpdir(), "p.txt");
    FILE *fp = fopen(path, "w");
    dr_progress p;
    dr_progress_start(&p, fp, "train", 100, "seq");
    p.plain_every_s = 0; /* every update prints when not a terminal */
    dr_progress_update(&p, 50);
    dr_progress_set_extra(&p, "loss %.2f", 1.5);
    dr_progress_finish(&p);
    fclose(fp);
    char *buf;
    CHECK_OK(dr_read_file(path, &buf, NULL));
    CHECK(strstr(buf, "train: 50/100 seq") != NULL);
    CHECK(strstr(buf, "train: 50/100 seq") < strstr(buf, "loss 1.50"));
    CHECK(strchr(buf, '\r') == NULL);
    free(buf);
}

TEST(base_jsonl_and_json_file) {
    const char *dir = dr_test_tmpdir();
    dr_jsonl m;
    CHECK_OK(dr_jsonl_open(&m, dr_test_path(dir, "m.jsonl"), 0));
    for (int i = 0; i < 3; i++) {
        json_t *j = json_pack("{s:i,s:f}", "epoch", i, "loss", 1.0 / (i + 1));
        CHECK_OK(dr_jsonl_write(&m, j));
        json_decref(j);
    }
    dr_jsonl_close(&m);
    char *buf;
    CHECK_OK(dr_read_file(dr_test_path(dir, "m.jsonl"), &buf, NULL));
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 3);
    json_error_t err;
    json_t *first = json_loadb(buf, (size_t)(strchr(buf, '\n') - buf), 0, &err);
    CHECK(first != NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(first, "epoch")), 0);
    json_decref(first);
    free(buf);
    json_t *o = json_pack("{s:s}", "a", "b");
    CHECK_OK(dr_json_write_file(dr_test_path(dir, "o.json"), o));
    json_decref(o);
    json_t *back = json_load_file(dr_test_path(dir, "o.json"), 0, &err);
    CHECK_STR(json_string_value(json_object_get(back, "a")), "b");
    json_decref(back);
}

static void *threads_in_new_thread(void *arg) {
    int *got = arg;
    dr_threads_set(got[0]); /* what a library thread does with its starter's count */
    got[1] = dr_threads_current();
    return NULL;
}

TEST(base_threads_current_follows_set) {
    int before = dr_threads_current();
    dr_threads_set(1);
    CHECK_EQ_INT(dr_threads_current(), 1);
    int got[2] = {dr_threads_current(), 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, threads_in_new_thread, got) == 0);
    pthread_join(t, NULL);
    CHECK_EQ_INT(got[1], 1);
    dr_threads_set(before);
    CHECK_EQ_INT(dr_threads_current(), before);
}

/* A policy asked for in the environment (how `active` is measured) is kept: no re-execution,
 * the variable as it was. */
TEST(base_threads_explicit_wait_policy_is_kept) {
    const char *was = getenv("OMP_WAIT_POLICY");
    char *saved = was ? strdup(was) : NULL;
    setenv("OMP_WAIT_POLICY", "active", 1);
    char *argv[] = {"test_base", NULL};
    dr_threads_prefer_passive(argv); /* would not return had it re-executed */
    CHECK_STR(getenv("OMP_WAIT_POLICY"), "active");
    if (saved) setenv("OMP_WAIT_POLICY", saved, 1);
    else unsetenv("OMP_WAIT_POLICY");
    free(saved);
}

/* The same for a spin count: GOMP_SPINCOUNT set by the caller wins over either policy. */
TEST(base_threads_explicit_spin_count_is_kept) {
    const char *was = getenv("GOMP_SPINCOUNT"), *was_policy = getenv("OMP_WAIT_POLICY");
    char *saved = was ? strdup(was) : NULL, *saved_policy = was_policy ? strdup(was_policy) : NULL;
    unsetenv("OMP_WAIT_POLICY");
    setenv("GOMP_SPINCOUNT", "1234", 1);
    char *argv[] = {"test_base", NULL};
    dr_threads_wait_policy(argv, DR_WAIT_PASSIVE);
    dr_threads_wait_policy(argv, DR_WAIT_SPIN);
    CHECK_STR(getenv("GOMP_SPINCOUNT"), "1234");
    CHECK(getenv("OMP_WAIT_POLICY") == NULL);
    if (saved) setenv("GOMP_SPINCOUNT", saved, 1);
    else unsetenv("GOMP_SPINCOUNT");
    if (saved_policy) setenv("OMP_WAIT_POLICY", saved_policy, 1);
    free(saved);
    free(saved_policy);
}

TEST(base_threads_from_env) {
    setenv("DEEPREC_THREADS", "3", 1);
    CHECK_EQ_INT(dr_threads(), 3);
    unsetenv("DEEPREC_THREADS");
    CHECK(dr_threads() >= 1);
    double t0 = dr_now();
    CHECK(dr_now() >= t0);
}
