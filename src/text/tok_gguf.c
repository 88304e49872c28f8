/* Tokenizer <-> GGUF metadata (tokenizer.ggml.*, as llama.cpp writes it). */
#include <stdlib.h>
#include <string.h>
#include "deeprec/gguf.h"
#include "deeprec/tokenizer.h"
#include "text/tok_internal.h"

static int opt_id(const gguf_file *f, const char *key, int32_t *out) {
    *out = -1;
    if (!gguf_find_kv(f, key)) return DR_OK;
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc) return rc;
    *out = (v >= 0 && v < INT32_MAX) ? (int32_t)v : -1;
    return DR_OK;
}

int tok_load_gguf(tokenizer **out, const gguf_file *f) {
    *out = NULL;
    char *model = NULL, *pre = NULL;
    int rc = gguf_get_strdup(f, "tokenizer.ggml.model", &model);
    if (rc) return rc;
    if (strcmp(model, "gpt2")) {
        rc = dr_error(DR_ERR_UNSUPPORTED, "tokenizer.ggml.model \"%s\" is not supported (byte-level BPE \"gpt2\" only)", model);
        free(model);
        return rc;
    }
    free(model);
    int kind = TOK_PRE_QWEN2;
    if (gguf_find_kv(f, "tokenizer.ggml.pre")) {
        if ((rc = gguf_get_strdup(f, "tokenizer.ggml.pre", &pre))) return rc;
        if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) kind = TOK_PRE_QWEN2;
        else if (!strcmp(pre, "gpt2") || !strcmp(pre, "default")) kind = TOK_PRE_GPT2;
        else {
            rc = dr_error(DR_ERR_UNSUPPORTED, "tokenizer.ggml.pre \"%s\" is not supported (qwen2, gpt2)", pre);
            free(pre);
            return rc;
        }
        free(pre);
    }
    int nfc = kind == TOK_PRE_QWEN2;
    if (gguf_find_kv(f, "deeprec.tokenizer.nfc") && (rc = gguf_get_bool(f, "deeprec.tokenizer.nfc", &nfc))) return rc;
    uint64_t nt = 0, nm = 0, ntt = 0;
    const gguf_str *toks = NULL, *merges = NULL;
    if ((rc = gguf_get_arr_str(f, "tokenizer.ggml.tokens", &nt, &toks))) return rc;
    if (nt == 0 || nt > (1u << 24)) return dr_error(DR_ERR_FORMAT, "tokenizer.ggml.tokens: bad count %llu", (unsigned long long)nt);
    if (gguf_find_kv(f, "tokenizer.ggml.merges") && (rc = gguf_get_arr_str(f, "tokenizer.ggml.merges", &nm, &merges)))
        return rc;
    const void *tt = NULL;
    if (gguf_find_kv(f, "tokenizer.ggml.token_type")) {
        if ((rc = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &ntt, &tt))) return rc;
        if (ntt != nt) return dr_error(DR_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries, tokens %llu",
                                       (unsigned long long)ntt, (unsigned long long)nt);
    }
    const char **strs = dr_calloc(nt, sizeof(char *));
    uint32_t *lens = dr_calloc(nt, sizeof(uint32_t));
    uint8_t *types = dr_calloc(nt, 1);
    const char **ma = dr_calloc(nm + 1, sizeof(char *)), **mb = dr_calloc(nm + 1, sizeof(char *));
    uint32_t *mal = dr_calloc(nm + 1, sizeof(uint32_t)), *mbl = dr_calloc(nm + 1, sizeof(uint32_t));
    rc = DR_ERR_NOMEM;
    if (!strs || !lens || !types || !ma || !mb || !mal || !mbl) goto done;
    for (uint64_t i = 0; i < nt; i++) {
        if (toks[i].len > (1u << 20)) { rc = dr_error(DR_ERR_FORMAT, "tokenizer.ggml.tokens[%llu] too long", (unsigned long long)i); goto done; }
        strs[i] = toks[i].ptr;
        lens[i] = (uint32_t)toks[i].len;
        int32_t ty = TOK_TYPE_NORMAL;
        if (tt) memcpy(&ty, (const uint8_t *)tt + 4 * i, 4);
        types[i] = (ty >= 0 && ty <= TOK_TYPE_BYTE) ? (uint8_t)ty : TOK_TYPE_NORMAL;
    }
    for (uint64_t i = 0; i < nm; i++) {
        const char *s = merges[i].ptr;
        uint64_t n = merges[i].len, k = 0;
        while (k < n && s[k] != ' ') k++;
        if (k == n || n > (1u << 20)) { rc = dr_error(DR_ERR_FORMAT, "tokenizer.ggml.merges[%llu] is not \"a b\"", (unsigned long long)i); goto done; }
        ma[i] = s; mal[i] = (uint32_t)k;
        mb[i] = s + k + 1; mbl[i] = (uint32_t)(n - k - 1);
    }
    rc = tok_build(out, (int32_t)nt, strs, lens, types, (int64_t)nm, ma, mal, mb, mbl, kind, nfc);
    if (!rc) {
        tokenizer *t = *out;
        int32_t bos, eos, pad;
        int add_bos = 0;
        if ((rc = opt_id(f, "tokenizer.ggml.bos_token_id", &bos)) || (rc = opt_id(f, "tokenizer.ggml.eos_token_id", &eos)) ||
            (rc = opt_id(f, "tokenizer.ggml.padding_token_id", &pad))) {
            tok_free(t); *out = NULL; goto done;
        }
        if (gguf_find_kv(f, "tokenizer.ggml.add_bos_token") && (rc = gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos))) {
            tok_free(t); *out = NULL; goto done;
        }
        tok_set_special(t, bos, eos, pad);
        t->add_bos = add_bos;
        if (gguf_find_kv(f, "tokenizer.chat_template") && (rc = gguf_get_strdup(f, "tokenizer.chat_template", &t->chat_template))) {
            tok_free(t); *out = NULL; goto done;
        }
    }
done:
    free(strs); free(lens); free(types); free(ma); free(mb); free(mal); free(mbl);
    return rc;
}

int tok_load_gguf_path(tokenizer **out, const char *path) {
    gguf_file f;
    int rc = gguf_open(&f, path);
    if (rc) return rc;
    rc = tok_load_gguf(out, &f);
    gguf_close(&f);
    if (rc) dr_error_context("%s", path);
    return rc;
}

int tok_load_path(tokenizer **out, const char *path) {
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return tok_load_json(out, path);
    return tok_load_gguf_path(out, path);
}

int tok_write_gguf(const tokenizer *t, gguf_writer *w) {
    int rc;
    if ((rc = gguf_set_str(w, "tokenizer.ggml.model", "gpt2"))) return rc;
    if ((rc = gguf_set_str(w, "tokenizer.ggml.pre", t->pre == TOK_PRE_GPT2 ? "gpt2" : "qwen2"))) return rc;
    if ((rc = gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)t->str, (uint64_t)t->n_vocab))) return rc;
    int32_t *ty = dr_malloc((size_t)t->n_vocab * sizeof(int32_t));
    if (!ty) return DR_ERR_NOMEM;
    for (int32_t i = 0; i < t->n_vocab; i++) ty[i] = t->type[i];
    rc = gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, ty, (uint64_t)t->n_vocab);
    free(ty);
    if (rc) return rc;
    char **ms = dr_calloc((size_t)t->n_merges + 1, sizeof(char *));
    if (!ms) return DR_ERR_NOMEM;
    for (int32_t r = 0; r < t->n_merges && !rc; r++) {
        const char *a = t->str[t->merge_a[r]], *b = t->str[t->merge_b[r]];
        size_t la = strlen(a), lb = strlen(b);
        ms[r] = dr_malloc(la + lb + 2);
        if (!ms[r]) { rc = DR_ERR_NOMEM; break; }
        memcpy(ms[r], a, la); ms[r][la] = ' '; memcpy(ms[r] + la + 1, b, lb + 1);
    }
    if (!rc) rc = gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, (uint64_t)t->n_merges);
    for (int32_t r = 0; r < t->n_merges; r++) free(ms[r]);
    free(ms);
    if (rc) return rc;
    if (t->bos >= 0 && (rc = gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos))) return rc;
    if (t->eos >= 0 && (rc = gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos))) return rc;
    if (t->pad >= 0 && (rc = gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad))) return rc;
    if ((rc = gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos))) return rc;
    if (t->chat_template && (rc = gguf_set_str(w, "tokenizer.chat_template", t->chat_template))) return rc;
    return gguf_set_bool(w, "deeprec.tokenizer.nfc", t->nfc);
}

int tok_save_gguf(const tokenizer *t, const char *path) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return DR_ERR_NOMEM;
    int rc = gguf_set_str(w, "deeprec.kind", "tokenizer");
    if (!rc) rc = tok_write_gguf(t, w);
    if (!rc) rc = gguf_write(w, path);
    gguf_writer_free(w);
    return rc;
}
