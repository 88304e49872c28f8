/* llm sft through $DEEPREC_BIN (memorise a toy corpus, load back in llm generate, resume),
 * and the SFT data loader (mask spans -> token masks).
 * The subprocesses run with OMP_WAIT_POLICY=passive: with pthread OpenBLAS beside libgomp on a
 * loaded 2-core machine, active spin-waiting made these tiny runs 25x slower (1.3 s -> 31 s). */
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/tokenizer.h"
#include "harness.h"
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>

static const char *bin(void) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    return b;
}

static const char *DATA =
    "{\"prompt\": \"<|im_start|>user\\nrecommend a film<|im_end|>\\n<|im_start|>assistant\\n\", \"completion\": "
    "\"<think>likes space</think>\\n<|begin_of_preference|>space adventure<|end_of_preference|>"
    "<|begin_of_item_list|>\\n1. Alien\\n<|end_of_item_list|>\\n\\n<recommendation_list>\\n1. Star Wars\\n2. "
    "Alien\\n</recommendation_list>\", \"mask\": [[86, 138]]}\n"
    "{\"prompt\": \"<|im_start|>user\\nrecommend a book<|im_end|>\\n<|im_start|>assistant\\n\", \"completion\": "
    "\"<think>likes mystery</think>\\n<recommendation_list>\\n1. Gone Girl\\n2. Rebecca\\n</recommendation_list>\"}\n"
    "{\"prompt\": \"<|im_start|>user\\nrecommend a song<|im_end|>\\n<|im_start|>assistant\\n\", \"completion\": "
    "\"<think>likes jazz</think>\\n<recommendation_list>\\n1. So What\\n2. Take Five\\n</recommendation_list>\"}\n";

static void setup(const char *b, const char *dir) {
    char cmd[4096];
    CHECK_OK(dr_write_file_atomic(dr_test_path(dir, "data.jsonl"), DATA, strlen(DATA)));
    /* tokenizer corpus: the data three times */
    char corpus[8192];
    snprintf(corpus, sizeof corpus, "%s%s%s", DATA, DATA, DATA);
    CHECK_OK(dr_write_file_atomic(dr_test_path(dir, "corpus.txt"), corpus, strlen(corpus)));
    snprintf(cmd, sizeof cmd, "%s llm train-tokenizer --corpus %s --vocab-size 400 --out %s 2>/dev/null", b,
             dr_test_path(dir, "corpus.txt"), dr_test_path(dir, "tok.gguf"));
    CHECK_EQ_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "%s llm init --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab-from %s --context 256 --std 0.05 "
             "--out %s 2>/dev/null",
             b, dr_test_path(dir, "tok.gguf"), dr_test_path(dir, "m0.gguf"));
    CHECK_EQ_INT(system(cmd), 0);
}

TEST(llm_train_cli_sft_memorise_generate) {
    const char *b = bin(), *dir = dr_test_tmpdir();
    setup(b, dir);
    char cmd[4096], m0[512], data[512], m1[512], js[512];
    snprintf(m0, sizeof m0, "%s", dr_test_path(dir, "m0.gguf"));
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "data.jsonl"));
    snprintf(m1, sizeof m1, "%s", dr_test_path(dir, "m1.gguf"));
    snprintf(js, sizeof js, "%s", dr_test_path(dir, "out.json"));
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive %s llm sft --model %s --data %s --out %s --epochs 100 --lr 3e-3 --batch 3 --json --quiet --metrics %s > %s",
             b, m0, data, m1, dr_test_path(dir, "metrics.jsonl"), js);
    CHECK_EQ_INT(system(cmd), 0);
    char *out = NULL;
    size_t n;
    CHECK_OK(dr_read_file(js, &out, &n));
    double first = -1, last = -1;
    const char *p = strstr(out, "\"first_loss\":"), *q = strstr(out, "\"last_loss\":");
    CHECK(p && q);
    first = atof(p + 13), last = atof(q + 12);
    CHECK_MSG(last < first / 10, "loss %g -> %g", first, last);
    free(out);
    /* the trained model generates the memorised completion (special tokens are not printed),
     * with the fp32 and with the fp16 KV cache (a memorised answer survives its rounding) */
    const char *kv[2] = {"f32", "f16"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "OMP_WAIT_POLICY=passive %s llm generate --model %s --prompt \"$(printf '<|im_start|>user\\nrecommend a book<|im_end|>\\n"
                 "<|im_start|>assistant\\n')\" --temp 0 -n 40 --kv-type %s > %s 2>/dev/null",
                 b, m1, kv[k], dr_test_path(dir, "gen.txt"));
        CHECK_EQ_INT(system(cmd), 0);
        CHECK_OK(dr_read_file(dr_test_path(dir, "gen.txt"), &out, &n));
        CHECK_MSG(strstr(out, "1. Gone Girl\n2. Rebecca") != NULL, "generated with the %s cache: %s", kv[k], out);
        free(out);
    }
    /* an unknown cache type is a usage error */
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s llm generate --model %s --prompt hi --kv-type q8 2>/dev/null", b, m1);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

/* --resume: 6 steps == 3 steps, save state, resume for the remaining 3 (bitwise same model). */
TEST(llm_train_cli_resume) {
    const char *b = bin(), *dir = dr_test_tmpdir();
    setup(b, dir);
    char cmd[4096], m0[512], data[512];
    snprintf(m0, sizeof m0, "%s", dr_test_path(dir, "m0.gguf"));
    snprintf(data, sizeof data, "%s", dr_test_path(dir, "data.jsonl"));
    const char *common = "--epochs 6 --batch 2 --lr 3e-3 --weight-decay 0.01 --quiet";
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s llm sft --model %s --data %s --out %s %s", b, m0, data, dr_test_path(dir, "full.gguf"),
             common);
    CHECK_EQ_INT(system(cmd), 0);
    char half[512], st[512];
    snprintf(half, sizeof half, "%s", dr_test_path(dir, "half.gguf"));
    snprintf(st, sizeof st, "%s", dr_test_path(dir, "half.state"));
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s llm sft --model %s --data %s --out %s --save-state %s --max-steps 5 %s", b, m0, data,
             half, st, common);
    CHECK_EQ_INT(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s llm sft --model %s --data %s --out %s --resume %s %s", b, half, data,
             dr_test_path(dir, "resumed.gguf"), st, common);
    CHECK_EQ_INT(system(cmd), 0);
    char *x, *y;
    size_t nx, ny;
    CHECK_OK(dr_read_file(dr_test_path(dir, "full.gguf"), &x, &nx));
    CHECK_OK(dr_read_file(dr_test_path(dir, "resumed.gguf"), &y, &ny));
    CHECK_MSG(nx == ny && !memcmp(x, y, nx), "resumed model differs from the uninterrupted one");
    free(x), free(y);
}

/* Loader: masked spans become mask-0 tokens that decode to exactly the span text; prompt
 * tokens are mask 0, the rest of the completion and the appended eos mask 1. */
TEST(llm_train_sft_loader_masks) {
    char corpus[8192];
    snprintf(corpus, sizeof corpus, "%s%s", DATA, DATA);
    tok_train_opts o = {.vocab_size = 400};
    tokenizer *tok;
    CHECK_OK(tok_train(corpus, strlen(corpus), &o, &tok));
    const char *dir = dr_test_tmpdir();
    CHECK_OK(dr_write_file_atomic(dr_test_path(dir, "d.jsonl"), DATA, strlen(DATA)));
    llm_sft_data d;
    int32_t eos = tok_eos(tok);
    CHECK(eos >= 0);
    CHECK_OK(llm_sft_load(&d, dr_test_path(dir, "d.jsonl"), tok, 1000, eos));
    CHECK_EQ_INT(d.n, 3);
    const llm_sft_example *e = &d.ex[0];
    CHECK_EQ_INT(e->tokens[e->len - 1], eos);
    CHECK_EQ_INT(e->mask[e->len - 1], 1);
    /* mask-0 run after the prompt: decode it */
    int32_t *pids;
    size_t np;
    const char *prompt = "<|im_start|>user\nrecommend a film<|im_end|>\n<|im_start|>assistant\n";
    CHECK_OK(tok_encode(tok, prompt, strlen(prompt), 0, &pids, &np));
    for (size_t i = 0; i < np; i++) CHECK(e->mask[i] == 0 && e->tokens[i] == pids[i]);
    CHECK_EQ_INT(e->mask[np], 1);
    int a = -1, b = -1;
    for (int i = (int)np; i < e->len; i++) {
        if (!e->mask[i] && a < 0) a = i;
        if (a >= 0 && e->mask[i] && b < 0) b = i;
    }
    CHECK(a > 0 && b > a);
    for (int i = b; i < e->len; i++) CHECK(e->mask[i] == 1);
    char *txt;
    size_t tl;
    CHECK_OK(tok_decode(tok, e->tokens + a, (size_t)(b - a), 0, &txt, &tl));
    CHECK_STR(txt, "<|begin_of_item_list|>\n1. Alien\n<|end_of_item_list|>");
    free(txt);
    free(pids);
    int64_t nt = d.n_targets;
    llm_sft_free(&d);
    /* truncation keeps the start; a bad span is an error naming the line */
    CHECK_OK(llm_sft_load(&d, dr_test_path(dir, "d.jsonl"), tok, 8, -1));
    CHECK(d.ex[0].len == 8 && d.n_targets < nt);
    llm_sft_free(&d);
    const char *bad = "{\"prompt\": \"a\", \"completion\": \"bc\", \"mask\": [[1, 5]]}\n";
    CHECK_OK(dr_write_file_atomic(dr_test_path(dir, "bad.jsonl"), bad, strlen(bad)));
    CHECK_ERR(llm_sft_load(&d, dr_test_path(dir, "bad.jsonl"), tok, 100, -1), DR_ERR_FORMAT);
    CHECK(strstr(dr_error_message(), ":1:") != NULL);
    tok_free(tok);
}
