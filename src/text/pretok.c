/* The pre-tokenizer regexes, by hand:
 * qwen2: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * gpt2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * \s, \p{L}, \p{N} as in JavaScript Unicode regexes (tables in unicode_tables.c). */
#include <stdlib.h>
#include "deeprec/tokenizer.h"
#include "text/text_internal.h"

#define IS_L(k) (cat[k] & TOK_UCAT_LETTER)
#define IS_N(k) (cat[k] & TOK_UCAT_NUMBER)
#define IS_S(k) (cat[k] & TOK_UCAT_SPACE)
#define IS_NL(k) (cp[k] == '\r' || cp[k] == '\n')
#define IS_PUNCT(k) (!(cat[k] & (TOK_UCAT_LETTER | TOK_UCAT_NUMBER | TOK_UCAT_SPACE)))

static int lower_eq(uint32_t c, char want) {
    if (c < 128) return (c | 0x20) == (uint32_t)want;
    return want == 's' && c == 0x17F; /* LATIN SMALL LETTER LONG S case-folds to s */
}

/* length in code points of a contraction at k, or 0 */
static size_t contraction(const uint32_t *cp, size_t n, size_t k, int icase) {
    if (cp[k] != '\'' || k + 1 >= n) return 0;
    uint32_t a = cp[k + 1];
    uint32_t b = k + 2 < n ? cp[k + 2] : 0;
    if (!icase) {
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
        return 0;
    }
    if (lower_eq(a, 's') || lower_eq(a, 't')) return 2;
    if (k + 2 < n && ((lower_eq(a, 'r') && lower_eq(b, 'e')) || (lower_eq(a, 'v') && lower_eq(b, 'e')))) return 3;
    if (lower_eq(a, 'm')) return 2;
    if (k + 2 < n && lower_eq(a, 'l') && lower_eq(b, 'l')) return 3;
    if (lower_eq(a, 'd')) return 2;
    return 0;
}

/* whitespace rules shared by both: \s+(?!\S)|\s+ ; returns match end */
static size_t ws_tail(const uint8_t *cat, size_t n, size_t k) {
    size_t e = k;
    while (e < n && (cat[e] & TOK_UCAT_SPACE)) e++;
    if (e == n || e - k == 1) return e;
    return e - 1;
}

int tok_pretokenize(int pre, const char *text, size_t len, tok_split_fn fn, void *ctx) {
    if (len == 0) return DR_OK;
    const uint8_t *u = (const uint8_t *)text;
    uint32_t *cp = dr_malloc((len + 1) * sizeof(uint32_t));
    size_t *off = dr_malloc((len + 1) * sizeof(size_t));
    uint8_t *cat = dr_malloc(len + 1);
    if (!cp || !off || !cat) { free(cp); free(off); free(cat); return DR_ERR_NOMEM; }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int l = tok_utf8_next(u, len, i, &c);
        cp[n] = c; off[n] = i; cat[n] = (uint8_t)tok_unicode_cat(c);
        n++; i += (size_t)l;
    }
    off[n] = len;
    size_t k = 0;
    while (k < n) {
        size_t e = 0;
        if (pre == TOK_PRE_GPT2) {
            size_t c = contraction(cp, n, k, 0);
            size_t j = k + (cp[k] == ' ' && k + 1 < n ? 1 : 0);
            if (c) e = k + c;
            else if (IS_L(j)) { e = j; while (e < n && IS_L(e)) e++; }
            else if (IS_N(j)) { e = j; while (e < n && IS_N(e)) e++; }
            else if (IS_PUNCT(j)) { e = j; while (e < n && IS_PUNCT(e)) e++; }
            else e = ws_tail(cat, n, k);
        } else {
            size_t c = contraction(cp, n, k, 1);
            if (c) e = k + c;
            else if (IS_L(k) || (!IS_NL(k) && !IS_N(k) && k + 1 < n && IS_L(k + 1))) {
                e = k + 1;
                while (e < n && IS_L(e)) e++;
            } else if (IS_N(k)) e = k + 1;
            else {
                size_t j = k + (cp[k] == ' ' ? 1 : 0);
                if (j < n && IS_PUNCT(j)) {
                    e = j;
                    while (e < n && IS_PUNCT(e)) e++;
                    while (e < n && IS_NL(e)) e++;
                } else {
                    /* k is whitespace here */
                    size_t w = k, last_nl = (size_t)-1;
                    while (w < n && IS_S(w)) { if (IS_NL(w)) last_nl = w; w++; }
                    if (last_nl != (size_t)-1) e = last_nl + 1;
                    else e = ws_tail(cat, n, k);
                }
            }
        }
        if (e <= k) e = k + 1; /* cannot happen; guards progress */
        fn(ctx, off[k], off[e]);
        k = e;
    }
    free(cp); free(off); free(cat);
    return DR_OK;
}
