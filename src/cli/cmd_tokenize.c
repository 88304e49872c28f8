/* deeprec llm tokenize / detokenize / train-tokenizer. */
#include "cli.h"
#include "deeprec/tokenizer.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int read_stdin(char **out, size_t *n) {
    dr_buf b = {0};
    for (;;) {
        if (dr_buf_reserve(&b, 1 << 16)) {
            dr_buf_free(&b);
            return dr_error_context("reading stdin");
        }
        size_t r = fread(b.p + b.n, 1, b.cap - b.n - 1, stdin);
        b.n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        dr_buf_free(&b);
        return dr_error(DR_ERR_IO, "reading stdin: %s", strerror(errno));
    }
    *n = b.n;
    *out = dr_buf_take(&b);
    return DR_OK;
}

static int load_tok(const char *model, const char *tokjson, tokenizer **t) {
    if (!!model == !!tokjson) return cli_usage_error("give exactly one of --model M.gguf or --tokenizer tokenizer.json");
    int rc = model ? tok_load_gguf_path(t, model) : tok_load_json(t, tokjson);
    return rc ? cli_fail() : 0;
}

/* One emitter per command: text s[0..n) -> stdout; opt is the command's option, line says s is one
 * input line (not the whole input). */
typedef int (*emit_fn)(const tokenizer *t, const char *s, size_t n, int opt, int line);

static int emit_ids(const tokenizer *t, const char *s, size_t n, int flags, int line) {
    int32_t *ids = NULL;
    size_t k = 0;
    int rc = tok_encode(t, s, n, flags, &ids, &k);
    if (rc) return rc;
    for (size_t i = 0; i < k; i++) fprintf(stdout, i ? " %d" : "%d", ids[i]);
    fputc('\n', stdout);
    free(ids);
    return DR_OK;
}

/* Loads the tokenizer named on the command line, reads all of stdin and emits either each line
 * (without its newline) or the whole input; returns an exit code (0 = ok). */
static int emit_stdin(const char *model, const char *tokjson, int lines, emit_fn emit, int opt) {
    tokenizer *t = NULL;
    int rc = load_tok(model, tokjson, &t);
    if (rc) return rc;
    char *in = NULL;
    size_t n = 0;
    if (read_stdin(&in, &n)) {
        tok_free(t);
        return cli_fail();
    }
    int err = 0;
    if (lines) {
        for (size_t a = 0; a < n && !err;) {
            size_t e = a;
            while (e < n && in[e] != '\n') e++;
            err = emit(t, in + a, e - a, opt, 1);
            a = e + 1;
        }
    } else {
        err = emit(t, in, n, opt, 0);
    }
    free(in);
    tok_free(t);
    if (fflush(stdout) && !err) err = dr_error(DR_ERR_IO, "writing stdout: %s", strerror(errno));
    return err ? cli_fail() : 0;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tokjson = NULL;
    int lines = 0, no_special = 0, add_bos = 0;
    cli_opt opts[] = {
        {"--model", CLI_STR, &model, "GGUF file with tokenizer.ggml.* metadata"},
        {"--tokenizer", CLI_STR, &tokjson, "Hugging Face tokenizer.json"},
        {"--lines", CLI_FLAG, &lines, "tokenize each input line (without its newline) separately"},
        {"--no-special", CLI_FLAG, &no_special, "do not parse control tokens such as <|im_end|> in the text"},
        {"--bos", CLI_FLAG, &add_bos, "prepend the BOS token when the tokenizer has one"},
    };
    int pr;
    if (cli_parse_opts("deeprec llm tokenize (--model M.gguf | --tokenizer tokenizer.json) [--lines] < text",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    int flags = (no_special ? TOK_ENC_NO_SPECIAL : 0) | (add_bos ? TOK_ENC_ADD_BOS : 0);
    return emit_stdin(model, tokjson, lines, emit_ids, flags);
}

/* Parses the integers of s[0..n); returns DR_OK or a format error. */
static int parse_ids(const char *s, size_t n, int32_t **ids, size_t *k) {
    size_t cap = 64, m = 0;
    int32_t *v = malloc(cap * sizeof(int32_t));
    if (!v) return dr_error(DR_ERR_NOMEM, "out of memory");
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == ',' || s[i] == '\n')) i++;
        if (i >= n) break;
        if (s[i] < '0' || s[i] > '9') { free(v); return dr_error(DR_ERR_FORMAT, "stdin: expected a token id, got '%c'", s[i]); }
        long long x = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            x = x * 10 + (s[i++] - '0');
            if (x > INT32_MAX) { free(v); return dr_error(DR_ERR_RANGE, "stdin: token id too large"); }
        }
        if (m == cap) {
            int32_t *nv = realloc(v, cap * 2 * sizeof(int32_t));
            if (!nv) { free(v); return dr_error(DR_ERR_NOMEM, "out of memory"); }
            v = nv; cap *= 2;
        }
        v[m++] = (int32_t)x;
    }
    *ids = v; *k = m;
    return DR_OK;
}

static int emit_text(const tokenizer *t, const char *s, size_t n, int skip, int nl) {
    int32_t *ids = NULL;
    size_t k = 0;
    int rc = parse_ids(s, n, &ids, &k);
    if (rc) return rc;
    char *txt = NULL;
    size_t tl = 0;
    rc = tok_decode(t, ids, k, skip, &txt, &tl);
    free(ids);
    if (rc) return rc;
    fwrite(txt, 1, tl, stdout);
    if (nl) fputc('\n', stdout);
    free(txt);
    return DR_OK;
}

static int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *tokjson = NULL;
    int lines = 0, skip = 0;
    cli_opt opts[] = {
        {"--model", CLI_STR, &model, "GGUF file with tokenizer.ggml.* metadata"},
        {"--tokenizer", CLI_STR, &tokjson, "Hugging Face tokenizer.json"},
        {"--lines", CLI_FLAG, &lines, "each input line of ids -> one output line of text"},
        {"--skip-special", CLI_FLAG, &skip, "leave out control tokens"},
    };
    int pr;
    if (cli_parse_opts("deeprec llm detokenize (--model M.gguf | --tokenizer tokenizer.json) [--lines] < ids",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    return emit_stdin(model, tokjson, lines, emit_text, skip);
}

static int cmd_train_tokenizer(int argc, char **argv) {
    const char *corpus = NULL, *out = NULL;
    int vocab = 0, json = 0;
    int64_t min_count = 2;
    cli_opt opts[] = {
        {"--corpus", CLI_STR, &corpus, "training text (UTF-8)"},
        {"--vocab-size", CLI_INT, &vocab, "total vocabulary: 256 bytes + merges + 11 special tokens"},
        {"--out", CLI_STR, &out, "output GGUF (tokenizer metadata only)"},
        {"--min-count", CLI_I64, &min_count, "stop when the best pair occurs fewer times (default 2)"},
        {"--json", CLI_FLAG, &json, "print a JSON summary"},
    };
    int pr;
    if (cli_parse_opts("deeprec llm train-tokenizer --corpus FILE --vocab-size N --out TOK.gguf",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    if (!corpus || !out || vocab <= 0) return cli_usage_error("--corpus, --vocab-size and --out are required");
    if (cli_claim_output(out, &corpus, 1)) return 1;
    tok_train_opts o = {.vocab_size = vocab, .min_pair_count = min_count, .progress = json ? NULL : stderr};
    tokenizer *t = NULL;
    double t0 = dr_now();
    if (tok_train_file(corpus, &o, &t)) return cli_fail();
    double secs = dr_now() - t0;
    if (tok_save_gguf(t, out)) { tok_free(t); return cli_fail(); }
    int32_t nv = tok_vocab_size(t);
    if (json) {
        json_t *j = json_pack("{s:o, s:i, s:f}", "out", dr_json_text(out, (size_t)-1), "vocab_size", (json_int_t)nv, "seconds", secs);
        cli_print_json(j, JSON_COMPACT);
    } else {
        fprintf(stderr, "wrote %s: vocabulary %d (%.2f s)%s\n", out, nv, secs,
                nv < vocab ? " (fewer pairs than asked reached --min-count)" : "");
    }
    tok_free(t);
    return 0;
}

CLI_COMMAND(llm_tokenize, "llm tokenize", "text on stdin -> token ids", cmd_tokenize)
CLI_COMMAND(llm_detokenize, "llm detokenize", "token ids on stdin -> text", cmd_detokenize)
CLI_COMMAND(llm_train_tokenizer, "llm train-tokenizer", "train a byte-level BPE tokenizer into a GGUF", cmd_train_tokenizer)
