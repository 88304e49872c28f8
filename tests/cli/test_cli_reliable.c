/* The numbered findings of issue 16 that live in the commands, as a user meets them:
 * SFT on nothing, SFT resume of another run, non-finite settings, a TRM of another
 * dataset, one writer per output, outputs that are devices / inputs / unwritable, stale
 * temporary files, --json text that is not UTF-8. */
#include "cli_run.h"
#include "harness.h"
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *SFT_DATA =
    "{\"prompt\": \"user: recommend a film\\nassistant: \", \"completion\": \"1. Star Wars\\n2. Alien\"}\n"
    "{\"prompt\": \"user: recommend a book\\nassistant: \", \"completion\": \"1. Gone Girl\\n2. Rebecca\"}\n"
    "{\"prompt\": \"user: recommend a song\\nassistant: \", \"completion\": \"1. So What\\n2. Take Five\"}\n";

static char *path(const char *dir, const char *name) { return strdup(dr_test_path(dir, name)); }

static void run_ok(const char *const *args) {
    cli_result r = cli_run(args);
    CHECK_MSG(r.rc == 0, "%s %s: exit %d: %s", args[0], args[1], r.rc, r.err);
    cli_result_free(&r);
}

/* tok.gguf (byte-level BPE with multi-byte characters in its corpus), m0.gguf, data.jsonl */
static void llm_fixture(const char *dir) {
    char corpus[4096];
    snprintf(corpus, sizeof corpus, "%s%s caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac \xe6\x97\xa5\xe6\x9c\xac\n", SFT_DATA, SFT_DATA);
    char *c = path(dir, "corpus.txt"), *tok = path(dir, "tok.gguf"), *m0 = path(dir, "m0.gguf"), *d = path(dir, "data.jsonl");
    CHECK_OK(dr_write_file_atomic(c, corpus, strlen(corpus)));
    CHECK_OK(dr_write_file_atomic(d, SFT_DATA, strlen(SFT_DATA)));
    run_ok((const char *[]){"llm", "train-tokenizer", "--corpus", c, "--vocab-size", "300", "--out", tok, NULL});
    run_ok((const char *[]){"llm", "init", "--dim", "32", "--layers", "1", "--heads", "2", "--ffn", "64", "--vocab-from",
                            tok, "--context", "4096", "--out", m0, NULL});
    free(c), free(tok), free(m0), free(d);
}

TEST(cli_sft_refuses_to_train_on_nothing) {
    const char *dir = dr_test_tmpdir();
    llm_fixture(dir);
    char *m0 = path(dir, "m0.gguf"), *d = path(dir, "data.jsonl"), *out = path(dir, "m1.gguf");
    /* 4 tokens: every example ends inside its prompt */
    cli_result r = cli_run((const char *[]){"llm", "sft", "--model", m0, "--data", d, "--out", out, "--max-len", "4",
                                            "--quiet", NULL});
    CHECK_MSG(r.rc == 1 && strstr(r.err, "no completion token is left"), "exit %d: %s", r.rc, r.err);
    CHECK(!dr_file_exists(out));
    cli_result_free(&r);
    free(m0), free(d), free(out);
}

TEST(cli_sft_resume_checks_the_run) {
    const char *dir = dr_test_tmpdir();
    llm_fixture(dir);
    char *m0 = path(dir, "m0.gguf"), *d = path(dir, "data.jsonl"), *half = path(dir, "half.gguf"),
         *st = path(dir, "half.state"), *out = path(dir, "res.gguf"), *d2 = path(dir, "other.jsonl");
    run_ok((const char *[]){"llm", "sft", "--model", m0, "--data", d, "--out", half, "--save-state", st, "--batch", "2",
                            "--epochs", "2", "--max-steps", "1", "--quiet", NULL});
    const char *two = strchr(SFT_DATA, '\n') + 1; /* the last two examples */
    CHECK_OK(dr_write_file_atomic(d2, two, strlen(two)));
    struct { const char *model, *data, *batch, *want; } bad[] = {
        {half, d, "3", "another --batch"},
        {half, d2, "2", "another --data file"},
        {m0, d, "2", "another --model file"}, /* full fine-tuning continues from the model the run wrote */
    };
    for (int i = 0; i < 3; i++) {
        cli_result r = cli_run((const char *[]){"llm", "sft", "--model", bad[i].model, "--data", bad[i].data, "--out", out,
                                                "--resume", st, "--batch", bad[i].batch, "--epochs", "2", "--quiet", NULL});
        CHECK_MSG(r.rc == 1 && strstr(r.err, bad[i].want), "case %d: exit %d: %s", i, r.rc, r.err);
        CHECK(!dr_file_exists(out));
        cli_result_free(&r);
    }
    run_ok((const char *[]){"llm", "sft", "--model", half, "--data", d, "--out", out, "--resume", st, "--batch", "2",
                            "--epochs", "2", "--quiet", NULL});
    free(m0), free(d), free(half), free(st), free(out), free(d2);
}

TEST(cli_sft_out_checked_before_training) {
    const char *dir = dr_test_tmpdir();
    llm_fixture(dir);
    char *m0 = path(dir, "m0.gguf"), *d = path(dir, "data.jsonl"), *fifo = path(dir, "fifo");
    CHECK(mkfifo(fifo, 0600) == 0); /* a special file, as /dev/full was (never /dev itself in a test) */
    const char *outs[] = {"/nonexistent-deeprec-dir/m1.gguf", fifo, d};
    const char *want[] = {"cannot", "not a regular file", "same file as the input"};
    for (int i = 0; i < 3; i++) {
        cli_result r = cli_run((const char *[]){"llm", "sft", "--model", m0, "--data", d, "--out", outs[i], NULL});
        /* refused before loading anything: no "llm sft: N examples" line */
        CHECK_MSG(r.rc == 1 && strstr(r.err, want[i]) && !strstr(r.err, "examples ("), "%s: exit %d: %s", outs[i], r.rc,
                  r.err);
        cli_result_free(&r);
    }
    char *txt = NULL;
    size_t n;
    CHECK_OK(dr_read_file(d, &txt, &n));
    CHECK_STR(txt, SFT_DATA);
    free(txt);
    free(m0), free(d), free(fifo);
}

TEST(cli_non_finite_settings_refused) {
    const char *dir = dr_test_tmpdir();
    char *out = path(dir, "m.gguf");
    const char *cases[][16] = {
        {"llm", "init", "--dim", "32", "--layers", "1", "--heads", "2", "--ffn", "64", "--vocab", "300", "--std", "nan", "--out", NULL},
        {"llm", "init", "--dim", "32", "--layers", "1", "--heads", "3", "--ffn", "64", "--vocab", "300", "--out", NULL},
        {"llm", "sft", "--lr", "1e30", "--model", "m", "--data", "d", "--out", NULL},
        {"trm", "train", "--lr", "nan", "--data", "d", "--out", NULL},
        {"trm", "train", "--epochs", "0", "--data", "d", "--out", NULL},
    };
    for (int i = 0; i < 5; i++) {
        const char *args[20];
        int k = 0;
        for (; cases[i][k]; k++) args[k] = cases[i][k];
        args[k++] = out;
        args[k] = NULL;
        cli_result r = cli_run(args);
        CHECK_MSG(r.rc == 2 && !dr_file_exists(out), "case %d: exit %d: %s", i, r.rc, r.err);
        cli_result_free(&r);
    }
    free(out);
}

/* two datasets of different sizes, a sasrec TRM trained on the first */
static void trm_fixture(const char *dir) {
    char a[4096] = "user,item,timestamp\n", b[4096] = "user,item,timestamp\n";
    for (int u = 0; u < 12; u++)
        for (int t = 0; t < 6; t++) {
            char line[64];
            snprintf(line, sizeof line, "u%d,i%d,%d\n", u, (u + t) % 9, t);
            strcat(a, line);
            snprintf(line, sizeof line, "u%d,j%d,%d\n", u, (u * 2 + t) % 14, t);
            strcat(b, line);
        }
    char *ca = path(dir, "a.csv"), *cb = path(dir, "b.csv"), *da = path(dir, "a.gguf"), *db = path(dir, "b.gguf"),
         *t = path(dir, "a.trm.gguf");
    CHECK_OK(dr_write_file_atomic(ca, a, strlen(a)));
    CHECK_OK(dr_write_file_atomic(cb, b, strlen(b)));
    run_ok((const char *[]){"data", "import", "--format", "csv", "--input", ca, "--out", da, NULL});
    run_ok((const char *[]){"data", "import", "--format", "csv", "--input", cb, "--out", db, NULL});
    run_ok((const char *[]){"trm", "train", "--data", da, "--out", t, "--dim", "8", "--heads", "1", "--layers", "1",
                            "--max-len", "5", "--batch", "4", "--epochs", "1", "--quiet", NULL});
    free(ca), free(cb), free(da), free(db), free(t);
}

TEST(cli_trm_of_another_dataset_refused_everywhere) {
    const char *dir = dr_test_tmpdir();
    trm_fixture(dir);
    char *db = path(dir, "b.gguf"), *t = path(dir, "a.trm.gguf"), *o = path(dir, "x.jsonl");
    const char *cases[][16] = {
        {"trm", "eval", "--data", db, "--model", t, NULL},
        {"trm", "retrieve", "--data", db, "--model", t, "--index", "0", NULL},
        {"eval", "--mode", "trm", "--data", db, "--trm", t, "--quiet", NULL},
        {"agent", "synth", "--data", db, "--trm", t, "--out", o, "--quiet", NULL},
        /* the TRM is checked before the policy model is opened */
        {"recommend", "--data", db, "--trm", t, "--llm", "/nonexistent.gguf", "--user", "#0", NULL},
        {"rl", "--stage", "1", "--data", db, "--trm", t, "--llm", "/nonexistent.gguf", "--out", o, NULL},
    };
    for (int i = 0; i < 6; i++) {
        cli_result r = cli_run(cases[i]);
        CHECK_MSG(r.rc == 1 && strstr(r.err, "trained on another dataset"), "%s %s: exit %d: %s", cases[i][0],
                  cases[i][1], r.rc, r.err);
        cli_result_free(&r);
    }
    CHECK(!dr_file_exists(o));
    free(db), free(t), free(o);
}

/* trm train --refit --gate: the early-stopped model beside OUT, the refit's epoch count in the
 * JSON; an ensemble of refit members reports no (in-sample) validation figure. */
TEST(cli_trm_refit_and_gate) {
    const char *dir = dr_test_tmpdir();
    trm_fixture(dir);
    char *da = path(dir, "a.gguf"), *t = path(dir, "r.trm.gguf"), *te = path(dir, "r.trm.gguf.early.gguf"),
         *e = path(dir, "e.trm.gguf"), *g = path(dir, "g.gguf");
    cli_result r = cli_run((const char *[]){"trm", "train", "--data", da, "--out", t, "--dim", "8", "--heads", "1",
                                            "--layers", "1", "--max-len", "5", "--batch", "4", "--epochs", "3",
                                            "--refit", "--gate", "--json", "--quiet", NULL});
    CHECK_MSG(r.rc == 0, "exit %d: %s", r.rc, r.err);
    CHECK(strstr(r.out, "\"refit_epochs\":") && strstr(r.out, "\"best_valid_ndcg@10\":"));
    CHECK(dr_file_exists(t) && dr_file_exists(te));
    cli_result_free(&r);
    run_ok((const char *[]){"trm", "eval", "--data", da, "--model", t, NULL});
    r = cli_run((const char *[]){"trm", "train", "--data", da, "--out", e, "--dim", "8", "--heads", "1", "--layers",
                                 "1", "--max-len", "5", "--batch", "4", "--epochs", "2", "--ensemble", "2", "--refit",
                                 "--json", "--quiet", NULL});
    CHECK_MSG(r.rc == 0, "exit %d: %s", r.rc, r.err);
    CHECK(strstr(r.out, "\"refit_epochs\":") && !strstr(r.out, "best_valid"));
    cli_result_free(&r);
    /* gates need pre-LN blocks */
    r = cli_run((const char *[]){"trm", "train", "--data", da, "--out", g, "--gate", "--post-ln",
                                 "--quiet", NULL});
    CHECK_MSG(r.rc != 0 && strstr(r.err, "gate"), "exit %d: %s", r.rc, r.err);
    cli_result_free(&r);
    CHECK(!dr_file_exists(g));
    free(da), free(t), free(te), free(e), free(g);
}

TEST(cli_one_writer_per_output) {
    const char *dir = dr_test_tmpdir();
    trm_fixture(dir);
    char *da = path(dir, "a.gguf"), *t = path(dir, "a.trm.gguf");
    /* this process holds the lock, as a running `trm train --out` would */
    int fd = -1;
    CHECK_OK(dr_output_claim(t, NULL, 0, &fd));
    size_t n0, n1;
    char *before = NULL, *after = NULL;
    CHECK_OK(dr_read_file(t, &before, &n0));
    cli_result r = cli_run((const char *[]){"trm", "train", "--data", da, "--out", t, "--dim", "8", "--heads", "1",
                                            "--layers", "1", "--epochs", "1", "--quiet", NULL});
    CHECK_MSG(r.rc == 1 && strstr(r.err, "another process is writing this output"), "exit %d: %s", r.rc, r.err);
    cli_result_free(&r);
    CHECK_OK(dr_read_file(t, &after, &n1));
    CHECK(n0 == n1 && !memcmp(before, after, n0));
    free(before), free(after);
    close(fd);
    run_ok((const char *[]){"trm", "train", "--data", da, "--out", t, "--dim", "8", "--heads", "1", "--layers", "1",
                            "--max-len", "5", "--batch", "4", "--epochs", "1", "--quiet", NULL});
    free(da), free(t);
}

TEST(cli_stale_temp_file_removed_on_next_write) {
    const char *dir = dr_test_tmpdir();
    char *out = path(dir, "m.gguf");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    char stale[600];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", out, (long)pid);
    CHECK_OK(dr_write_file_atomic(stale, "half a model", 12));
    cli_result r = cli_run((const char *[]){"llm", "init", "--dim", "32", "--layers", "1", "--heads", "2", "--ffn", "64",
                                            "--vocab", "300", "--out", out, NULL});
    CHECK_MSG(r.rc == 0 && strstr(r.err, "removed") && strstr(r.err, "no longer runs"), "exit %d: %s", r.rc, r.err);
    CHECK(!dr_file_exists(stale));
    cli_result_free(&r);
    free(out);
}

TEST(cli_generate_json_never_drops_text) {
    const char *dir = dr_test_tmpdir();
    llm_fixture(dir);
    char *m0 = path(dir, "m0.gguf");
    /* one token per sample: some are single bytes of multi-byte characters */
    cli_result r = cli_run((const char *[]){"llm", "generate", "--model", m0, "--prompt", "caf", "-n", "1", "--samples",
                                            "64", "--temp", "2", "--top-p", "1", "--json", NULL});
    CHECK_MSG(r.rc == 0, "exit %d: %s", r.rc, r.err);
    int texts = 0, fffd = 0;
    for (const char *p = r.out; (p = strstr(p, "\"text\":")); p++) texts++;
    for (const char *p = r.out; (p = strstr(p, "\xef\xbf\xbd")); p++) fffd++;
    CHECK_MSG(texts == 64, "%d of 64 samples have \"text\": %s", texts, r.out);
    printf("  64 samples, %d with U+FFFD\n", fffd);
    cli_result_free(&r);
    free(m0);
}

TEST(cli_recommend_json_keeps_segments) {
    /* a random policy writes bytes that are not UTF-8; "segments" used to come out empty */
    const char *dir = dr_test_tmpdir();
    trm_fixture(dir);
    llm_fixture(dir);
    char *da = path(dir, "a.gguf"), *t = path(dir, "a.trm.gguf"), *m0 = path(dir, "m0.gguf");
    cli_result r = cli_run((const char *[]){"recommend", "--data", da, "--trm", t, "--llm", m0, "--user", "#0",
                                            "--max-tokens", "64", "--temp", "2", "--json", NULL});
    CHECK_MSG(r.rc == 0, "exit %d: %s", r.rc, r.err);
    const char *s = strstr(r.out, "\"segments\":[");
    CHECK_MSG(s && strncmp(s, "\"segments\":[]", 13) && strstr(s, "\"kind\":\"model\""), "%s", r.out);
    cli_result_free(&r);
    free(da), free(t), free(m0);
}
