/* Pseudo-preferences (training) and oracle preferences (evaluation) built
 * from an item's text: categories are the '|'-separated parts of the item's
 * category string, title words its alphanumeric words. */
#include "internal.h"
#include "deeprec/data.h"
#include <string.h>

static void append(char *buf, size_t cap, size_t *n, const char *s, size_t len) {
    if (*n && *n + 3 < cap) {
        memcpy(buf + *n, " ; ", 3);
        *n += 3;
    }
    if (*n + len >= cap) len = cap - 1 - *n;
    memcpy(buf + *n, s, len);
    *n += len;
    buf[*n] = 0;
}

/* Appends k of the n parts (st, ln), drawn without replacement by a partial Fisher-Yates
 * (which leaves the drawn ones first). */
static void append_drawn(dr_rng *r, const char **st, size_t *ln, int n, int k, char *buf, size_t cap, size_t *len) {
    for (int i = 0; i < k; i++) {
        int j = i + (int)dr_rng_below(r, (uint64_t)(n - i));
        const char *ts = st[i];
        size_t tl = ln[i];
        st[i] = st[j];
        ln[i] = ln[j];
        st[j] = ts;
        ln[j] = tl;
        append(buf, cap, len, st[i], ln[i]);
    }
}

static int word_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* Splits s at any of seps into up to max parts (start, len). */
static int split(const char *s, const char *seps, const char **st, size_t *ln, int max, int words) {
    int n = 0;
    if (!s) return 0;
    while (*s && n < max) {
        while (*s && (words ? !word_char((unsigned char)*s) : strchr(seps, *s) != NULL)) s++;
        if (!*s) break;
        const char *b = s;
        while (*s && (words ? word_char((unsigned char)*s) : strchr(seps, *s) == NULL)) s++;
        st[n] = b;
        ln[n] = (size_t)(s - b);
        n++;
    }
    return n;
}

/* 1-3 random categories + 0-2 random title words; "" with probability p_empty
 * (or when the item has no text). Returns the length. */
int trm__pseudo_pref(const dr_dataset *d, int32_t item, dr_rng *r, float p_empty, char *buf, size_t cap) {
    buf[0] = 0;
    if (dr_rng_float(r) < p_empty || item <= 0 || item > d->n_items) return 0;
    const char *cst[32], *wst[32];
    size_t cln[32], wln[32];
    int nc = split(d->categories ? d->categories[item] : NULL, "|", cst, cln, 32, 0);
    int nw = split(d->titles ? d->titles[item] : NULL, "", wst, wln, 32, 1);
    size_t n = 0;
    if (nc > 0) {
        int k = 1 + (int)dr_rng_below(r, (uint64_t)(nc < 3 ? nc : 3));
        append_drawn(r, cst, cln, nc, k, buf, cap, &n);
    }
    if (nw > 0) {
        int k = (int)dr_rng_below(r, 3);
        if (k > nw) k = nw;
        if (nc == 0 && k == 0) k = 1;
        append_drawn(r, wst, wln, nw, k, buf, cap, &n);
    }
    return (int)n;
}

/* The target's category words, joined by " ; ". */
int trm__oracle_pref(const dr_dataset *d, int32_t item, char *buf, size_t cap) {
    buf[0] = 0;
    if (item <= 0 || item > d->n_items) return 0;
    const char *cst[32];
    size_t cln[32], n = 0;
    int nc = split(d->categories ? d->categories[item] : NULL, "|", cst, cln, 32, 0);
    for (int i = 0; i < nc; i++) append(buf, cap, &n, cst[i], cln[i]);
    return (int)n;
}
