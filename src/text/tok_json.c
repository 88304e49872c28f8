/* Loading a Hugging Face tokenizer.json (BPE model, ByteLevel). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "deeprec/tokenizer.h"
#include "text/tok_internal.h"

#define QWEN2_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Finds the pre-tokenizer kind; returns -1 when unsupported. */
static int detect_pre(json_t *pt) {
    if (!json_is_object(pt)) return -1;
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return -1;
    if (!strcmp(type, "ByteLevel")) {
        json_t *ur = json_object_get(pt, "use_regex");
        return (!ur || json_is_true(ur)) ? TOK_PRE_GPT2 : -1;
    }
    if (!strcmp(type, "Split")) {
        const char *re = json_string_value(json_object_get(json_object_get(pt, "pattern"), "Regex"));
        if (re && !strcmp(re, QWEN2_REGEX)) return TOK_PRE_QWEN2;
        if (re && !strcmp(re, GPT2_REGEX)) return TOK_PRE_GPT2;
        return -1;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(pt, "pretokenizers");
        size_t i;
        json_t *v;
        int found = -1;
        json_array_foreach(arr, i, v) {
            const char *ty = json_string_value(json_object_get(v, "type"));
            if (!ty) return -1;
            if (!strcmp(ty, "ByteLevel")) {
                json_t *ur = json_object_get(v, "use_regex");
                if (ur && json_is_true(ur)) { if (found >= 0) return -1; found = TOK_PRE_GPT2; }
                continue;
            }
            int k = detect_pre(v);
            if (k < 0 || found >= 0) return -1;
            found = k;
        }
        return found;
    }
    return -1;
}

static int detect_nfc(json_t *norm) {
    if (!norm || json_is_null(norm)) return 0;
    const char *type = json_string_value(json_object_get(norm, "type"));
    if (!type) return -1;
    if (!strcmp(type, "NFC")) return 1;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(norm, "normalizers");
        if (!json_is_array(arr)) return -1;
        if (json_array_size(arr) == 0) return 0;
        if (json_array_size(arr) == 1) return detect_nfc(json_array_get(arr, 0));
    }
    return -1;
}

int tok_load_json_mem(tokenizer **out, const char *text, size_t len) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (!root) return dr_error(DR_ERR_FORMAT, "tokenizer.json: line %d: %s", jerr.line, jerr.text);
    int rc = DR_OK;
    const char **strs = NULL, **ma = NULL, **mb = NULL;
    uint32_t *lens = NULL, *ma_len = NULL, *mb_len = NULL;
    uint8_t *types = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    int32_t n_vocab = 0;
    int64_t n_merges = 0;
    json_t *model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || (mtype && strcmp(mtype, "BPE"))) {
        rc = dr_error(DR_ERR_UNSUPPORTED, "tokenizer.json: model type %s is not supported (BPE only)",
                      mtype ? mtype : "(missing)");
        goto done;
    }
    if (json_is_true(json_object_get(model, "ignore_merges"))) {
        rc = dr_error(DR_ERR_UNSUPPORTED, "tokenizer.json: ignore_merges=true is not supported");
        goto done;
    }
    int pre = detect_pre(json_object_get(root, "pre_tokenizer"));
    if (pre < 0) {
        rc = dr_error(DR_ERR_UNSUPPORTED, "tokenizer.json: unsupported pre_tokenizer (qwen2 split regex or GPT-2 ByteLevel expected)");
        goto done;
    }
    int nfc = detect_nfc(json_object_get(root, "normalizer"));
    if (nfc < 0) { rc = dr_error(DR_ERR_UNSUPPORTED, "tokenizer.json: unsupported normalizer (only NFC or none)"); goto done; }
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) { rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: model.vocab missing"); goto done; }
    /* vocabulary size = 1 + largest id */
    int64_t maxid = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 22)) {
            rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: bad id for token \"%.40s\"", key);
            goto done;
        }
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *id = json_object_get(val, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 22) ||
            !json_is_string(json_object_get(val, "content"))) {
            rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: bad added_tokens entry %zu", i);
            goto done;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    n_vocab = (int32_t)(maxid + 1);
    if (n_vocab <= 0) { rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: empty vocabulary"); goto done; }
    strs = dr_calloc((size_t)n_vocab, sizeof(char *));
    lens = dr_calloc((size_t)n_vocab, sizeof(uint32_t));
    types = dr_calloc((size_t)n_vocab, 1);
    owned = dr_calloc((size_t)n_vocab, sizeof(char *));
    if (!strs || !lens || !types || !owned) { rc = DR_ERR_NOMEM; goto done; }
    json_object_foreach(vocab, key, val) {
        int64_t id = json_integer_value(val);
        strs[id] = key;
        lens[id] = (uint32_t)strlen(key);
        types[id] = TOK_TYPE_NORMAL;
    }
    json_array_foreach(added, i, val) {
        int64_t id = json_integer_value(json_object_get(val, "id"));
        json_t *c = json_object_get(val, "content");
        strs[id] = json_string_value(c);
        lens[id] = (uint32_t)json_string_length(c);
        types[id] = json_is_true(json_object_get(val, "special")) ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }
    for (int32_t k = 0; k < n_vocab; k++)
        if (!strs[k]) { /* a hole: filler as llama.cpp's converter writes */
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%d]", k);
            owned[n_owned] = dr_strdup(buf);
            if (!owned[n_owned]) { rc = DR_ERR_NOMEM; goto done; }
            strs[k] = owned[n_owned++];
            lens[k] = (uint32_t)strlen(strs[k]);
            types[k] = TOK_TYPE_UNUSED;
        }
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_array(merges)) { rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: model.merges is not an array"); goto done; }
    n_merges = (int64_t)json_array_size(merges);
    ma = dr_calloc((size_t)n_merges + 1, sizeof(char *));
    mb = dr_calloc((size_t)n_merges + 1, sizeof(char *));
    ma_len = dr_calloc((size_t)n_merges + 1, sizeof(uint32_t));
    mb_len = dr_calloc((size_t)n_merges + 1, sizeof(uint32_t));
    if (!ma || !mb || !ma_len || !mb_len) { rc = DR_ERR_NOMEM; goto done; }
    json_array_foreach(merges, i, val) {
        if (json_is_string(val)) {
            const char *s = json_string_value(val);
            const char *sp = strchr(s, ' ');
            if (!sp) { rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: merge %zu has no space", i); goto done; }
            ma[i] = s; ma_len[i] = (uint32_t)(sp - s);
            mb[i] = sp + 1; mb_len[i] = (uint32_t)strlen(sp + 1);
        } else if (json_is_array(val) && json_array_size(val) == 2 && json_is_string(json_array_get(val, 0)) &&
                   json_is_string(json_array_get(val, 1))) {
            ma[i] = json_string_value(json_array_get(val, 0));
            ma_len[i] = (uint32_t)json_string_length(json_array_get(val, 0));
            mb[i] = json_string_value(json_array_get(val, 1));
            mb_len[i] = (uint32_t)json_string_length(json_array_get(val, 1));
        } else {
            rc = dr_error(DR_ERR_FORMAT, "tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", i);
            goto done;
        }
    }
    rc = tok_build(out, n_vocab, strs, lens, types, n_merges, ma, ma_len, mb, mb_len, pre, nfc);
    if (!rc) {
        tokenizer *t = *out;
        int32_t eot = tok_find(t, "<|endoftext|>"), ime = tok_find(t, "<|im_end|>");
        tok_set_special(t, eot, ime >= 0 ? ime : eot, eot);
        t->add_bos = 0;
    }
done:
    for (size_t k = 0; k < n_owned; k++) free(owned[k]);
    free(owned); free(strs); free(lens); free(types); free(ma); free(mb); free(ma_len); free(mb_len);
    json_decref(root);
    return rc;
}

int tok_load_json(tokenizer **out, const char *path) {
    *out = NULL;
    char *text = NULL;
    size_t n = 0;
    int rc = dr_read_file(path, &text, &n);
    if (rc) return rc;
    rc = tok_load_json_mem(out, text, n);
    free(text);
    if (rc) dr_error_context("%s", path);
    return rc;
}
