/* The CLI commands (llm tokenize / detokenize / train-tokenizer) through $DEEPREC_BIN. */
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "deeprec/tokenizer.h"

static const char *bin(void) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    return b;
}

static int run(const char *cmd) {
    int rc = system(cmd);
    return rc;
}

TEST(text_cli_train_tokenize_round_trip) {
    const char *b = bin();
    const char *dir = dr_test_tmpdir();
    char cmd[4096];
    const char *tok = dr_test_path(dir, "tok.gguf");
    snprintf(cmd, sizeof cmd, "%s llm train-tokenizer --corpus tests/fixtures/text/corpus.txt --vocab-size 1500 --out %s --json > %s",
             b, tok, dr_test_path(dir, "train.json"));
    CHECK_EQ_INT(run(cmd), 0);
    char ids[1024], back[1024];
    snprintf(ids, sizeof ids, "%s", dr_test_path(dir, "ids.txt"));
    snprintf(back, sizeof back, "%s", dr_test_path(dir, "back.txt"));
    snprintf(cmd, sizeof cmd, "%s llm tokenize --model %s --lines < tests/fixtures/text/corpus.txt > %s", b, tok, ids);
    CHECK_EQ_INT(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s llm detokenize --model %s --lines < %s > %s", b, tok, ids, back);
    CHECK_EQ_INT(run(cmd), 0);
    /* lines with decomposed characters come back NFC-composed: compare with NFC of the corpus */
    char *orig = NULL, *got = NULL, *nfc = NULL;
    size_t no = 0, ng = 0, nn = 0;
    CHECK_OK(dr_read_file("tests/fixtures/text/corpus.txt", &orig, &no));
    CHECK_OK(dr_read_file(back, &got, &ng));
    CHECK_OK(tok_nfc(orig, no, &nfc, &nn));
    CHECK(ng == nn && !memcmp(got, nfc, nn));
    free(orig); free(got); free(nfc);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "%s llm tokenize < /dev/null 2>/dev/null", b);
    CHECK(run(cmd) != 0);
    snprintf(cmd, sizeof cmd, "echo 99999999 | %s llm detokenize --model %s 2>/dev/null", b, tok);
    CHECK(run(cmd) != 0);
}
