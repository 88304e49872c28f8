/* Latin-1 conversion and category lists (UTF-8 checks live in base/utf8.c: JSON output needs them too). */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

char *dr_latin1_to_utf8(const char *src, size_t n) {
    size_t cap;
    if (!dr_mul_ok(n, 2, &cap) || cap > SIZE_MAX - 1) return NULL;
    char *out = malloc(cap + 1);
    if (!out) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == 0) { out[w++] = '?'; continue; }
        if (c < 0x80) out[w++] = (char)c;
        else {
            out[w++] = (char)(0xC0 | (c >> 6));
            out[w++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[w] = 0;
    return out;
}

char *dr_text_utf8_or_latin1(const char *s, size_t n) {
    if (dr_utf8_valid(s, n) && !memchr(s, 0, n)) return dr_utf8_sanitize(s, n);
    return dr_latin1_to_utf8(s, n);
}

int dr_join_cats(const char *s, size_t n, const char *seps, dr_buf *out) {
    dr_buf_clear(out);
    if (dr_buf_put(out, "", 0)) return dr_error_code();
    size_t i = 0;
    while (i <= n) {
        size_t st = i;
        while (i < n && !strchr(seps, s[i])) i++;
        size_t a = st, e = i;
        while (a < e && (s[a] == ' ' || s[a] == '\t')) a++;
        while (e > a && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
        if (e > a) {
            /* repeated? compare with entries already in out */
            int dup = 0;
            size_t p = 0;
            while (p < out->n) {
                size_t q = p;
                while (q < out->n && out->p[q] != '|') q++;
                if (q - p == e - a) {
                    int same = 1;
                    for (size_t k = 0; k < e - a; k++) {
                        char c = s[a + k] == '|' ? '/' : s[a + k];
                        if (out->p[p + k] != c) { same = 0; break; }
                    }
                    if (same) { dup = 1; break; }
                }
                p = q + 1;
            }
            if (!dup) {
                if (out->n && dr_buf_putc(out, '|')) return dr_error_code();
                for (size_t k = a; k < e; k++)
                    if (dr_buf_putc(out, s[k] == '|' ? '/' : s[k])) return dr_error_code();
            }
        }
        i++;
    }
    return DR_OK;
}
