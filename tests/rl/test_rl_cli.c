/* deeprec rl through $DEEPREC_BIN: stage 1, then stage 2 from stage 1's policy (JSON output,
 * policy loadable, metrics and the two-stage curve), and usage errors. */
#include "harness.h"
#include "rl_fixture.h"
#include "deeprec/gguf.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *bin(void) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    return b;
}

static json_t *run_json(const char *cmd) {
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    int rc = pclose(p);
    CHECK_MSG(rc == 0, "'%s' failed (%d): %s", cmd, rc, buf);
    json_t *j = json_loads(buf, 0, NULL);
    CHECK_MSG(j != NULL, "not one JSON object: %s", buf);
    return j;
}

TEST(rl_cli_two_stages) {
    const char *b = bin();
    const char *dir = dr_test_tmpdir();
    dr_dataset d;
    rlx_dataset(&d, 40);
    trm_model *tm = rlx_trm(&d);
    llm_model *m;
    tokenizer *tok;
    rlx_llm(&m, &tok);
    char data[512], trm[512], llm[512];
    snprintf(data, sizeof data, "%s/data.gguf", dir);
    snprintf(trm, sizeof trm, "%s/trm.gguf", dir);
    snprintf(llm, sizeof llm, "%s/llm.gguf", dir);
    CHECK_OK(dr_data_save(&d, data));
    CHECK_OK(trm_save(tm, trm));
    CHECK_OK(llm_model_save(m, tok, llm));
    const char *common = "--steps 2 --prompts 2 --samples 2 --lr 1e-3 --max-tokens 8 --ctx 560 --max-hist 4 "
                         "--select-k 0 --micro 2 --json";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s rl --stage 1 --data %s --trm %s --llm %s --out %s/p1.gguf %s 2>%s/err1.log", b, data, trm, llm,
             dir, common, dir);
    json_t *j = run_json(cmd);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "steps")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "stage")), 1);
    json_decref(j);
    snprintf(cmd, sizeof cmd, "%s rl --stage 2 --data %s --trm %s --llm %s/p1.gguf --out %s/p2.gguf --adv grpo %s 2>%s/err2.log",
             b, data, trm, dir, dir, common, dir);
    j = run_json(cmd);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "steps")), 2);
    json_decref(j);
    llm_model *p2;
    CHECK_OK(llm_model_load(&p2, dr_test_path(dir, "p2.gguf")));
    CHECK(p2->tok != NULL); /* the tokenizer travels with the policy */
    llm_model_free(p2);
    char *svg;
    size_t n;
    CHECK_OK(dr_read_file(dr_test_path(dir, "p2.rewards.svg"), &svg, &n));
    CHECK(strstr(svg, "stage 1") && strstr(svg, "stage 2")); /* stage 1's log found beside p1.gguf */
    /* on demand: the same curve from the two logs */
    snprintf(cmd, sizeof cmd, "%s rl curve %s/p1.metrics.jsonl %s/p2.metrics.jsonl --out %s/c.svg", b, dir, dir, dir);
    CHECK_EQ_INT(system(cmd), 0);
    char *svg2;
    size_t n2;
    CHECK_OK(dr_read_file(dr_test_path(dir, "c.svg"), &svg2, &n2));
    CHECK(n2 == n && memcmp(svg, svg2, n) == 0);
    free(svg2);
    free(svg);
    char *ml;
    CHECK_OK(dr_read_file(dr_test_path(dir, "p2.metrics.jsonl"), &ml, &n));
    CHECK(strstr(ml, "\"listwise\"") && strstr(ml, "\"pointwise\"") && strstr(ml, "\"clip_frac\""));
    free(ml);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "%s rl --stage 3 --data %s --trm %s --llm %s --out %s/x.gguf >/dev/null 2>&1", b, data, trm,
             llm, dir);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s rl --stage 1 --data %s --trm %s --llm %s --out %s/x.gguf --adv ppo >/dev/null 2>&1", b,
             data, trm, llm, dir);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s rl --stage 1 --data %s --trm %s --llm %s --out %s/x.gguf --constrain yes >/dev/null 2>&1",
             b, data, trm, llm, dir);
    CHECK(system(cmd) != 0);
    llm_model_free(m);
    tok_free(tok);
    trm_model_free(tm);
    dr_data_free(&d);
}
