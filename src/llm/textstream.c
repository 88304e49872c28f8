/* Incremental detokenisation with stop strings checked on the text across token boundaries. */
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stdlib.h>
#include <string.h>

void llm_textstream_init(llm_textstream *ts, llm_piece_fn piece, void *ctx, const char *const *stops, int n_stops) {
    memset(ts, 0, sizeof *ts);
    ts->piece = piece;
    ts->piece_ctx = ctx;
    ts->stops = stops;
    ts->n_stops = n_stops;
}

static int tok_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    return tok_token_to_piece((const tokenizer *)ctx, id, buf, cap);
}

void llm_textstream_init_tok(llm_textstream *ts, const tokenizer *tok, const char *const *stops, int n_stops) {
    llm_textstream_init(ts, tok_piece, (void *)tok, stops, n_stops);
    ts->tok = tok;
    ts->skip_special = 1;
}

void llm_textstream_free(llm_textstream *ts) {
    free(ts->text);
    ts->text = NULL;
    ts->len = ts->cap = ts->released = 0;
}

static int reserve(llm_textstream *ts, size_t extra) {
    /* the stream's text fields are a dr_buf spelled out in the public struct */
    dr_buf b = {ts->text, ts->len, ts->cap, 0};
    int rc = dr_buf_reserve(&b, extra);
    ts->text = b.p;
    ts->cap = b.cap;
    return rc;
}

/* Bytes at the end of s[0..n) that form an incomplete UTF-8 sequence (0..3). */
static size_t utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

int llm_textstream_push(llm_textstream *ts, int32_t id, const char **out, size_t *out_len) {
    *out = ts->text ? ts->text + ts->released : "";
    *out_len = 0;
    if (ts->stopped) return DR_OK;
    if (!(ts->skip_special && ts->tok && tok_type_of(ts->tok, id) == TOK_TYPE_CONTROL)) {
        char small[64];
        int nb = ts->piece(ts->piece_ctx, id, small, sizeof small);
        if (nb < 0) return dr_error(DR_ERR_RANGE, "token id %d has no text", id);
        int rc = reserve(ts, (size_t)nb);
        if (rc) return rc;
        if ((size_t)nb <= sizeof small) memcpy(ts->text + ts->len, small, (size_t)nb);
        else ts->piece(ts->piece_ctx, id, ts->text + ts->len, (size_t)nb);
        ts->len += (size_t)nb;
        ts->text[ts->len] = 0;
    } else if (!ts->text && reserve(ts, 0)) {
        return DR_ERR_NOMEM;
    }
    if (!ts->text && reserve(ts, 0)) return DR_ERR_NOMEM;
    ts->text[ts->len] = 0;
    const char *base = ts->text + ts->released;
    size_t avail = ts->len - ts->released;
    /* earliest complete stop string */
    size_t cut = (size_t)-1;
    for (int i = 0; i < ts->n_stops; i++) {
        size_t sl = strlen(ts->stops[i]);
        if (!sl || sl > avail) continue;
        const char *hit = memmem(base, avail, ts->stops[i], sl);
        if (hit && (size_t)(hit - base) < cut) {
            cut = (size_t)(hit - base);
            ts->stop_index = i;
        }
    }
    if (cut != (size_t)-1) {
        ts->stopped = 1;
        ts->len = ts->released + cut;
        ts->text[ts->len] = 0;
        *out = base;
        *out_len = cut;
        ts->released = ts->len;
        return DR_OK;
    }
    /* hold back a suffix that may begin a stop string, and an incomplete UTF-8 tail */
    size_t hold = utf8_incomplete_tail(base, avail);
    for (int i = 0; i < ts->n_stops; i++) {
        size_t sl = strlen(ts->stops[i]);
        for (size_t k = sl - 1 < avail ? sl - 1 : avail; k > hold; k--)
            if (!memcmp(base + avail - k, ts->stops[i], k)) {
                hold = k;
                break;
            }
    }
    *out = base;
    *out_len = avail - hold;
    ts->released += avail - hold;
    return DR_OK;
}

void llm_textstream_flush(llm_textstream *ts, const char **out, size_t *out_len) {
    *out = ts->text ? ts->text + ts->released : "";
    *out_len = ts->len - ts->released;
    ts->released = ts->len;
}
