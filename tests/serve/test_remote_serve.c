/* --llm-url against a real `deeprec serve` process: the agent's episodes through the server are
 * the local model's (greedy, same seed), turn by turn, and the CLI's errors for bad URLs and
 * failing servers. The model is random but its text stays comparable through a server: a
 * byte-level tokenizer (no merges, so re-encoding the episode text gives back the same tokens),
 * no token that makes non-ASCII bytes or control text, and the protocol tags made likelier so
 * that episodes call the tool. */
#include "client.h"
#include "fake_llm.h"
#include "harness.h"
#include "common/tiny_llm.h"
#include "deeprec/agent.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* dir/byte: the serve fixture's data and TRM with the byte-level model. */
static const char *byte_fixture(const char *dir) {
    sv_fixture(dir);
    static char sub[1024];
    snprintf(sub, sizeof sub, "%s/byte", dir);
    if (dr_file_exists(dr_test_path(sub, "llm.gguf"))) return sub;
    CHECK(mkdir(sub, 0755) == 0);
    char src[1200], dst[1200];
    const char *files[] = {"data.gguf", "trm.gguf"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", sub, files[i]);
        CHECK(symlink(src, dst) == 0);
    }
    const char *text = agent_prompt_instructions();
    tok_train_opts to = {0};
    to.vocab_size = 256 + 11; /* the bytes and the special tokens: no merge */
    tokenizer *tok;
    CHECK_OK(tok_train(text, strlen(text), &to, &tok));
    llm_config c;
    tx_tiny_config(&c, tok_vocab_size(tok), 8192);
    llm_model *m;
    CHECK_OK(llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.2f, 9));
    CHECK(m->output.type == GGML_TYPE_F32);
    float *w = (float *)m->output.data;
    for (int id = 0; id < c.vocab; id++) {
        float *row = w + (size_t)id * (size_t)c.dim;
        int ty = tok_type_of(tok, id), zero = (id >= 128 && id < 256) || (ty == TOK_TYPE_CONTROL && id != tok_eos(tok));
        for (int k = 0; k < c.dim; k++) row[k] = zero ? 0.0f : ty == TOK_TYPE_USER_DEFINED ? 1.3f * row[k] : row[k];
    }
    CHECK_OK(llm_model_save(m, tok, dr_test_path(sub, "llm.gguf")));
    llm_model_free(m);
    tok_free(tok);
    return sub;
}

/* stdout of a command (and its exit status). */
static char *run(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0)
        if ((n += k) + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    return buf;
}

/* The JSON outputs of one command run twice, through the server (remote_args) and with the
 * local model (the fixture's, --constrain off); both must succeed. */
static void run_both(const char *common, const char *remote_args, const char *dir, json_t **remote, json_t **local) {
    char cmd[8192];
    json_t **out[2] = {remote, local};
    for (int k = 0; k < 2; k++) {
        if (k == 0) snprintf(cmd, sizeof cmd, "%s %s", common, remote_args);
        else snprintf(cmd, sizeof cmd, "%s --llm %s/llm.gguf --ctx 8192 --constrain off", common, dir);
        int st;
        char *o = run(cmd, &st);
        CHECK_MSG(st == 0, "%s: exit %d", cmd, st);
        *out[k] = json_loads(o, 0, NULL);
        CHECK_MSG(*out[k] != NULL, "%s: not JSON: %.200s", cmd, o);
        free(o);
    }
}

static const char *const compared[] = {"segments", "calls", "answer", "outcome", "format", "generated_tokens", "hit_rank"};

TEST(remote_serve_same_episodes) {
    const char *dir = byte_fixture(dr_test_tmpdir());
    sv_server s;
    sv_start(&s, dir, "--ctx 8192 --constrain off");
    const char *bin = getenv("DEEPREC_BIN");
    int n_calls = 0, n_outcomes[AGENT_N_OUTCOMES] = {0};
    char common[4096], url[128];
    snprintf(url, sizeof url, "--llm-url http://127.0.0.1:%d/v1 --llm-parallel 2", s.port);
    for (int u = 0; u < 6; u++) {
        snprintf(common, sizeof common, "%s recommend --data %s/data.gguf --trm %s/trm.gguf --user u%d --max-tokens 96 "
                                        "--json --seed 3",
                 bin, dir, dir, u);
        json_t *a, *b;
        run_both(common, url, dir, &a, &b);
        for (size_t k = 0; k < sizeof compared / sizeof *compared; k++) {
            char *x = json_dumps(json_object_get(a, compared[k]), JSON_ENCODE_ANY | JSON_COMPACT);
            char *y = json_dumps(json_object_get(b, compared[k]), JSON_ENCODE_ANY | JSON_COMPACT);
            CHECK_MSG(x && y && !strcmp(x, y), "u%d %s: remote %.300s\nlocal %.300s", u, compared[k], x, y);
            free(x);
            free(y);
        }
        n_calls += (int)json_array_size(json_object_get(a, "calls"));
        const char *oc = json_string_value(json_object_get(a, "outcome"));
        for (int o = 0; o < AGENT_N_OUTCOMES; o++) n_outcomes[o] += !strcmp(oc, agent_outcome_name(o));
        CHECK(json_array_size(json_object_get(a, "segments")) >= 1);
        json_decref(a);
        json_decref(b);
    }
    fprintf(stderr, "  6 users, the same episodes through the server: %d tool calls;", n_calls);
    for (int o = 0; o < AGENT_N_OUTCOMES; o++)
        if (n_outcomes[o]) fprintf(stderr, " %s %d", agent_outcome_name(o), n_outcomes[o]);
    fprintf(stderr, "\n");

    /* eval: rerank makes a tool call for the model, so the server also continues after a tool
     * result; every count and metric is the local model's */
    snprintf(common, sizeof common, "%s eval --data %s/data.gguf --trm %s/trm.gguf --mode deeprec,rerank --users 12 "
                                    "--max-tokens 64 --bootstrap 0 --json --tool-k 10",
             bin, dir, dir);
    json_t *a, *b;
    run_both(common, url, dir, &a, &b);
    CHECK(json_string_value(json_object_get(a, "llm_url")) && strstr(json_string_value(json_object_get(a, "llm_url")), "127.0.0.1"));
    CHECK(json_is_false(json_object_get(a, "constrain")));
    const char *modes[] = {"deeprec", "rerank"};
    for (int i = 0; i < 2; i++) {
        json_t *x = json_object_get(json_object_get(a, "modes"), modes[i]), *y = json_object_get(json_object_get(b, "modes"), modes[i]);
        CHECK(x && y);
        json_object_del(x, "seconds");
        json_object_del(x, "seconds_per_user");
        json_object_del(y, "seconds");
        json_object_del(y, "seconds_per_user");
        char *xs = json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS), *ys = json_dumps(y, JSON_COMPACT | JSON_SORT_KEYS);
        CHECK_MSG(!strcmp(xs, ys), "eval %s: remote %.600s\nlocal %.600s", modes[i], xs, ys);
        free(xs);
        free(ys);
    }
    json_decref(a);
    json_decref(b);

    /* serve --llm-url: a second server whose episodes run on the first gives the CLI's episode */
    sv_server s2;
    char extra[256];
    snprintf(extra, sizeof extra, "--llm-url http://127.0.0.1:%d/v1", s.port);
    sv_start(&s2, dir, extra);
    int st;
    json_t *r2 = sv_post_json(s2.port, "/v1/recommend", "{\"user\": \"u2\", \"mode\": \"rerank\"}", &st);
    CHECK_EQ_INT(st, 200);
    json_t *r1 = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u2\", \"mode\": \"rerank\"}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR(json_string_value(json_object_get(r2, "outcome")), json_string_value(json_object_get(r1, "outcome")));
    json_t *u1 = json_object_get(r1, "usage"), *u2 = json_object_get(r2, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(u2, "generated_tokens")),
                 json_integer_value(json_object_get(u1, "generated_tokens")));
    CHECK_EQ_INT(json_integer_value(json_object_get(u2, "tool_calls")), 1);
    json_decref(r1);
    json_decref(r2);
    sv_resp rr;
    sv_request(s2.port, "POST", "/v1/completions", NULL, "{\"prompt\": \"x\"}", 15, &rr);
    CHECK_EQ_INT(rr.status, 404); /* the completions are the first server's */
    sv_resp_free(&rr);
    CHECK_EQ_INT(sv_stop(&s2), 0);
    CHECK_EQ_INT(sv_stop(&s), 0);
}

/* stderr of a recommend run (stdout dropped) and its exit status. */
static char *recommend_err(const char *dir, const char *extra, int *status) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s recommend --data %s/data.gguf --trm %s/trm.gguf --user u1 %s 2>&1 >/dev/null",
             getenv("DEEPREC_BIN"), dir, dir, extra);
    return run(cmd, status);
}

TEST(remote_cli_errors) {
    const char *bin = getenv("DEEPREC_BIN");
    if (!bin || !dr_file_exists(bin)) SKIP("DEEPREC_BIN not set (make test sets it)");
    const char *dir = dr_test_tmpdir();
    sv_fixture(dir);
    int st;
    /* bad URLs and bad companions: usage errors (2) that say what is wrong */
    const struct { const char *args, *says; } bad[] = {
        {"--llm-url 127.0.0.1:8081/v1", "--llm-url"},
        {"--llm-url ftp://127.0.0.1/v1", "scheme must be http or https"},
        {"--llm-url http://127.0.0.1:70000/v1", "65535"},
        {"--llm-url 'http://127.0.0.1:8081/v1?x=1'", "query"},
        {"--llm-url http://127.0.0.1:8081/v1 --llm llm.gguf", "not both"},
        {"--llm-url http://127.0.0.1:8081/v1 --constrain on", "logits"},
        {"--llm-url http://127.0.0.1:8081/v1 --api-key-env DEEPREC_NO_SUCH_VARIABLE", "DEEPREC_NO_SUCH_VARIABLE"},
        {"--llm-url http://127.0.0.1:8081/v1 --llm-parallel 0", "--llm-parallel"},
        {"--llm llm.gguf --llm-model m", "go with --llm-url"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *err = recommend_err(dir, bad[i].args, &st);
        CHECK_MSG(st == 2 && strstr(err, bad[i].says), "%s: exit %d, '%s'", bad[i].args, st, err);
        free(err);
    }
    /* nothing listens: the connection errors are retried, then a clear error */
    char *err = recommend_err(dir, "--llm-url http://127.0.0.1:9/v1", &st);
    CHECK_MSG(st == 1 && strstr(err, "http://127.0.0.1:9/v1/models") && strstr(err, "5 tries"), "exit %d, '%s'", st, err);
    free(err);

    /* a server that always fails: 500 after the retries; 401 at once */
    fake_reply fail500[] = {{500, "{\"error\": {\"message\": \"out of memory on the GPU\"}}"}};
    fake_llm f;
    fake_llm_start(&f, fail500, 1);
    char args[256];
    snprintf(args, sizeof args, "--llm-url %s --llm-model fake", fake_llm_url(&f));
    err = recommend_err(dir, args, &st);
    CHECK_MSG(st == 1 && strstr(err, fake_llm_url(&f)) && strstr(err, "HTTP 500") && strstr(err, "out of memory on the GPU"),
              "exit %d, '%s'", st, err);
    CHECK_EQ_INT(f.n_posts, 5);
    free(err);
    fake_llm_stop(&f);

    fake_reply fail401[] = {{401, "{\"error\": {\"message\": \"invalid API key\"}}"}};
    fake_llm_start(&f, fail401, 1);
    setenv("DEEPREC_TEST_LLM_KEY", "k-123", 1);
    snprintf(args, sizeof args, "--llm-url %s --llm-model fake --api-key-env DEEPREC_TEST_LLM_KEY", fake_llm_url(&f));
    err = recommend_err(dir, args, &st);
    CHECK_MSG(st == 1 && strstr(err, "HTTP 401") && strstr(err, "invalid API key"), "exit %d, '%s'", st, err);
    CHECK_EQ_INT(f.n_posts, 1);
    CHECK_STR(f.auth, "Bearer k-123");
    free(err);
    fake_llm_stop(&f);
}
