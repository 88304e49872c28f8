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

/* Splits s at any of seps into up to max parts (start, len). */
static int split(const char *s, const char *seps, const char **st, size_t *ln, int max, int words) {
    int n = 0;
    if (!s) return 0;
    while (*s && n < max) {
        while (*s && (words ? !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                                (unsigned char)*s >= 0x80)
                            : strchr(seps, *s) != NULL))
            s++;
        if (!*s) break;
        const char *b = s;
        while (*s && (words ? ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                               (unsigned char)*s >= 0x80)
                            : strchr(seps, *s) == NULL))
            s++;
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
        for (int i = 0; i < k; i++) { /* partial Fisher-Yates */
            int j = i + (int)dr_rng_below(r, (uint64_t)(nc - i));
            const char *ts = cst[i];
            size_t tl = cln[i];
            cst[i] = cst[j];
            cln[i] = cln[j];
            cst[j] = ts;
            cln[j] = tl;
            append(buf, cap, &n, cst[i], cln[i]);
        }
    }
    if (nw > 0) {
        int k = (int)dr_rng_below(r, 3);
        if (k > nw) k = nw;
        if (nc == 0 && k == 0) k = 1;
        for (int i = 0; i < k; i++) {
            int j = i + (int)dr_rng_below(r, (uint64_t)(nw - i));
            const char *ts = wst[i];
            size_t tl = wln[i];
            wst[i] = wst[j];
            wln[i] = wln[j];
            wst[j] = ts;
            wln[j] = tl;
            append(buf, cap, &n, wst[i], wln[i]);
        }
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
