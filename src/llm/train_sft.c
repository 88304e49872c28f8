/* SFT data: JSON lines {"prompt", "completion", "mask": [[start, end], ...]} tokenised with
 * per-token loss masks (see llm_train.h). */
#include "deeprec/llm_train.h"
#include "deeprec/tokenizer.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void llm_sft_free(llm_sft_data *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->ex[i].tokens);
        free(d->ex[i].mask);
    }
    free(d->ex);
    memset(d, 0, sizeof *d);
}

typedef struct span { size_t a, b; } span;

static int cmp_span(const void *x, const void *y) {
    const span *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a ? 1 : (p->b < q->b ? -1 : p->b > q->b);
}

typedef struct seqbuf { int32_t *ids; uint8_t *mask; size_t n, cap; } seqbuf;

static int push(seqbuf *s, const int32_t *ids, size_t n, uint8_t m) {
    if (s->n + n > s->cap) {
        size_t nc = s->cap ? s->cap : 64;
        while (nc < s->n + n) nc *= 2;
        int32_t *ni = dr_realloc(s->ids, nc, sizeof *ni);
        if (!ni) return DR_ERR_NOMEM;
        s->ids = ni;
        uint8_t *nm = dr_realloc(s->mask, nc, 1);
        if (!nm) return DR_ERR_NOMEM;
        s->mask = nm;
        s->cap = nc;
    }
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    memset(s->mask + s->n, m, n);
    s->n += n;
    return DR_OK;
}

static int encode_push(seqbuf *s, const tokenizer *tok, const char *text, size_t len, uint8_t m) {
    if (!len) return DR_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = tok_encode(tok, text, len, TOK_ENC_DEFAULT, &ids, &n);
    if (!rc) rc = push(s, ids, n, m);
    free(ids);
    return rc;
}

static int one_line(llm_sft_data *d, const tokenizer *tok, const char *line, size_t len, int max_len, int32_t eos,
                    const char *path, long lineno) {
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    if (!j) return dr_error_at(DR_ERR_FORMAT, path, lineno, "invalid JSON: %s", err.text);
    int rc = DR_OK;
    seqbuf s = {0};
    span *sp = NULL;
    json_t *jp = json_object_get(j, "prompt"), *jc = json_object_get(j, "completion"), *jm = json_object_get(j, "mask");
    if (!json_is_string(jp) || !json_is_string(jc)) {
        rc = dr_error_at(DR_ERR_FORMAT, path, lineno, "expected string fields \"prompt\" and \"completion\"");
        goto done;
    }
    const char *comp = json_string_value(jc);
    size_t clen = json_string_length(jc);
    size_t nsp = 0;
    if (jm && !json_is_null(jm)) {
        if (!json_is_array(jm)) {
            rc = dr_error_at(DR_ERR_FORMAT, path, lineno, "\"mask\" must be an array of [start, end] pairs");
            goto done;
        }
        nsp = json_array_size(jm);
        sp = dr_calloc(nsp ? nsp : 1, sizeof *sp);
        if (!sp) {
            rc = DR_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < nsp; i++) {
            json_t *e = json_array_get(jm, i);
            json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
            if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(a) || !json_is_integer(b) ||
                json_integer_value(a) < 0 || json_integer_value(b) < json_integer_value(a) ||
                (size_t)json_integer_value(b) > clen) {
                rc = dr_error_at(DR_ERR_FORMAT, path, lineno,
                                 "mask span %zu is not [start, end] with 0 <= start <= end <= %zu (completion bytes)", i,
                                 clen);
                goto done;
            }
            sp[i].a = (size_t)json_integer_value(a), sp[i].b = (size_t)json_integer_value(b);
        }
        qsort(sp, nsp, sizeof *sp, cmp_span);
    }
    if ((rc = encode_push(&s, tok, json_string_value(jp), json_string_length(jp), 0))) goto done;
    size_t pos = 0;
    for (size_t i = 0; i <= nsp; i++) {
        size_t a = i < nsp ? sp[i].a : clen, b = i < nsp ? sp[i].b : clen;
        if (a < pos) a = pos; /* overlapping spans merge */
        if (b < a) b = a;
        if ((rc = encode_push(&s, tok, comp + pos, a - pos, 1)) || (rc = encode_push(&s, tok, comp + a, b - a, 0))) goto done;
        pos = b;
    }
    if (eos >= 0 && !(s.n && s.ids[s.n - 1] == eos)) {
        if ((rc = push(&s, &eos, 1, 1))) goto done;
    }
    if (s.n > (size_t)max_len) s.n = (size_t)max_len;
    if (s.n < 2) goto done; /* nothing to predict */
    if (d->n % 64 == 0) {
        llm_sft_example *ne = dr_realloc(d->ex, (size_t)d->n + 64, sizeof *ne);
        if (!ne) {
            rc = DR_ERR_NOMEM;
            goto done;
        }
        d->ex = ne;
    }
    s.mask[0] = 0;
    int64_t nt = 0;
    for (size_t i = 1; i < s.n; i++) nt += s.mask[i];
    d->ex[d->n++] = (llm_sft_example){s.ids, s.mask, (int)s.n};
    d->n_tokens += (int64_t)s.n;
    d->n_targets += nt;
    s.ids = NULL, s.mask = NULL;
done:
    free(s.ids);
    free(s.mask);
    free(sp);
    json_decref(j);
    return rc;
}

int llm_sft_load(llm_sft_data *d, const char *path, const tokenizer *tok, int max_len, int32_t eos) {
    memset(d, 0, sizeof *d);
    if (max_len < 2) return dr_error(DR_ERR_ARG, "max_len must be >= 2");
    char *text;
    size_t size;
    int rc = dr_read_file(path, &text, &size);
    if (rc) return rc;
    long lineno = 0;
    for (size_t p = 0; p < size && !rc;) {
        size_t e = p;
        while (e < size && text[e] != '\n') e++;
        lineno++;
        size_t q = p;
        while (q < e && (text[q] == ' ' || text[q] == '\t' || text[q] == '\r')) q++;
        if (q < e) rc = one_line(d, tok, text + p, e - p, max_len, eos, path, lineno);
        p = e + 1;
    }
    free(text);
    if (!rc && d->n == 0) rc = dr_error(DR_ERR_FORMAT, "%s: no training example (each needs >= 2 tokens)", path);
    if (rc) llm_sft_free(d);
    return rc;
}
