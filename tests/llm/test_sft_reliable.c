/* llm_sft_run stops on non-finite weights (issue 16, finding 5: `--lr 1e30` used to skip
 * every update, ignore --max-steps and report last_loss 0) and writes nothing; a model
 * written before keeps its bytes. The CLI refuses such a --lr already (src/cli/ranges.c);
 * the library is checked on its own here. */
#include "deeprec/llm_train.h"
#include "harness.h"
#include <stdlib.h>
#include <string.h>

static const char *DATA = "{\"prompt\": \"user: a film\\nassistant: \", \"completion\": \"1. Alien\\n2. Heat\"}\n"
                          "{\"prompt\": \"user: a book\\nassistant: \", \"completion\": \"1. Emma\\n2. Dune\"}\n";

TEST(llm_sft_non_finite_weights_stop_the_run) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    const char *dir = dr_test_tmpdir();
    char data[512], tok[512], m0[512], out[512], cmd[4096];
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "d.jsonl"));
    snprintf(tok, sizeof tok, "%s", dr_test_path(dir, "tok.gguf"));
    snprintf(m0, sizeof m0, "%s", dr_test_path(dir, "m0.gguf"));
    snprintf(out, sizeof out, "%s", dr_test_path(dir, "m1.gguf"));
    CHECK_OK(dr_write_file_atomic(data, DATA, strlen(DATA)));
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive %s llm train-tokenizer --corpus %s --vocab-size 280 --out %s 2>/dev/null && "
             "OMP_WAIT_POLICY=passive %s llm init --dim 32 --layers 1 --heads 2 --ffn 64 --vocab-from %s --context 128 "
             "--out %s 2>/dev/null",
             b, data, tok, b, tok, m0);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_OK(dr_write_file_atomic(out, "an earlier model", 16));
    llm_sft_run_opts o;
    llm_sft_run_opts_default(&o);
    o.model = m0, o.data = data, o.out = out;
    o.lr = 1e30f, o.grad_clip = 0, o.epochs = 5, o.max_steps = 3, o.batch = 2;
    llm_sft_run_result res;
    int rc = llm_sft_run(&o, &res);
    CHECK_MSG(rc != 0, "llm_sft_run with lr 1e30 succeeded (last loss %g, %lld steps)", res.last_loss, (long long)res.steps);
    CHECK_MSG(strstr(dr_error_message(), "not finite") || strstr(dr_error_message(), "non-finite"), "%s",
              dr_error_message());
    char *txt = NULL;
    size_t n;
    CHECK_OK(dr_read_file(out, &txt, &n));
    CHECK_STR(txt, "an earlier model");
    free(txt);
}
