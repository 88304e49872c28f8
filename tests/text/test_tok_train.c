/* BPE trainer tests: a hand-checkable corpus, round trips, GGUF save/load. */
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "deeprec/gguf.h"
#include "deeprec/tokenizer.h"

static void enc(const tokenizer *t, const char *s, int32_t **ids, size_t *n) {
    CHECK_OK(tok_encode(t, s, strlen(s), 0, ids, n));
}

TEST(text_train_tiny_hand_checked) {
    /* words: "low" x1, " low" x2, " lower" x1, " lowest" x1.
     * pair counts: (l,o)=5 (o,w)=5 -> tie, smaller ids first: l+o; then lo+w (5);
     * then " "+low (4); then " low"+e (2); everything else occurs once (< min count 2). */
    const char *corpus = "low low low lower lowest";
    tok_train_opts o = {.vocab_size = 1000};
    tokenizer *t = NULL;
    CHECK_OK(tok_train(corpus, strlen(corpus), &o, &t));
    CHECK_EQ_INT(tok_vocab_size(t), 256 + 4 + 11);
    CHECK_STR(tok_token_str(t, 'a'), "a");
    CHECK_STR(tok_token_str(t, ' '), "\xC4\xA0");       /* Ġ */
    CHECK_STR(tok_token_str(t, 256), "lo");
    CHECK_STR(tok_token_str(t, 257), "low");
    CHECK_STR(tok_token_str(t, 258), "\xC4\xA0low");
    CHECK_STR(tok_token_str(t, 259), "\xC4\xA0lowe");
    CHECK_EQ_INT(tok_find(t, "<|im_end|>"), 262);
    CHECK_EQ_INT(tok_eos(t), 262);
    CHECK_EQ_INT(tok_type_of(t, 260), TOK_TYPE_CONTROL);
    CHECK_EQ_INT(tok_type_of(t, tok_find(t, "<think>")), TOK_TYPE_USER_DEFINED);
    CHECK_EQ_INT(tok_type_of(t, tok_find(t, "</recommendation_list>")), TOK_TYPE_USER_DEFINED);
    int32_t *ids = NULL;
    size_t n = 0;
    enc(t, "low lowest", &ids, &n);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(ids[0], 257);
    CHECK_EQ_INT(ids[1], 259);
    CHECK_EQ_INT(ids[2], 's');
    CHECK_EQ_INT(ids[3], 't');
    free(ids);
    enc(t, "<think>low</think>", &ids, &n);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(ids[0], tok_find(t, "<think>"));
    CHECK_EQ_INT(ids[1], 257);
    free(ids);
    tok_free(t);
}

TEST(text_train_errors) {
    tokenizer *t = NULL;
    tok_train_opts o = {.vocab_size = 100};
    CHECK_ERR(tok_train("abc", 3, &o, &t), DR_ERR_ARG);
    CHECK(t == NULL);
    o.vocab_size = 300;
    CHECK_OK(tok_train("", 0, &o, &t)); /* empty corpus: bytes + specials only */
    CHECK_EQ_INT(tok_vocab_size(t), 256 + 11);
    tok_free(t);
}

TEST(text_train_corpus_round_trip) {
    char *text = NULL;
    size_t n = 0;
    CHECK_OK(dr_read_file("tests/fixtures/text/corpus.txt", &text, &n));
    tok_train_opts o = {.vocab_size = 2000};
    tokenizer *t = NULL;
    double t0 = dr_now();
    CHECK_OK(tok_train(text, n, &o, &t));
    fprintf(stderr, "  trained vocab %d on %zu bytes in %.3f s\n", tok_vocab_size(t), n, dr_now() - t0);
    CHECK_EQ_INT(tok_vocab_size(t), 2000);
    const char *path = dr_test_path(dr_test_tmpdir(), "tok.gguf");
    CHECK_OK(tok_save_gguf(t, path));
    tokenizer *g = NULL;
    CHECK_OK(tok_load_gguf_path(&g, path));
    gguf_file f;
    CHECK_OK(gguf_open(&f, path));
    char *kind = NULL;
    CHECK_OK(gguf_get_strdup(&f, "deeprec.kind", &kind));
    CHECK_STR(kind, "tokenizer");
    free(kind);
    CHECK_EQ_INT(f.n_tensors, 0);
    gguf_close(&f);
    size_t total_ids = 0;
    for (size_t a = 0; a < n;) {
        size_t e = a;
        while (e < n && text[e] != '\n') e++;
        int32_t *i1 = NULL, *i2 = NULL;
        size_t n1 = 0, n2 = 0;
        CHECK_OK(tok_encode(t, text + a, e - a, 0, &i1, &n1));
        CHECK_OK(tok_encode(g, text + a, e - a, 0, &i2, &n2));
        CHECK(n1 == n2 && (!n1 || !memcmp(i1, i2, n1 * sizeof(int32_t))));
        char *d = NULL, *nf = NULL;
        size_t nd = 0, nn = 0;
        CHECK_OK(tok_decode(g, i2, n2, 0, &d, &nd));
        CHECK_OK(tok_nfc(text + a, e - a, &nf, &nn));
        CHECK(nd == nn && !memcmp(d, nf, nd));
        total_ids += n1;
        free(d); free(nf); free(i1); free(i2);
        a = e + 1;
    }
    fprintf(stderr, "  corpus: %zu bytes -> %zu tokens\n", n, total_ids);
    CHECK(total_ids < n / 2); /* the merges compress */
    tok_free(t); tok_free(g);
    free(text);
}
