/* UTF-8 validation/sanitising (invalid bytes -> U+FFFD), Latin-1 conversion, byte buffers. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static int seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
    return len;
}

int dr_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) { i++; continue; }
        int k = seq_len(u + i, n - i);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

char *dr_utf8_sanitize(const char *src, size_t n) {
    size_t cap;
    if (!dr_mul_ok(n, 3, &cap) || cap > SIZE_MAX - 1) return NULL;
    char *out = malloc(cap + 1);
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)src;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (u[i] && u[i] < 0x80) { out[w++] = (char)u[i++]; continue; }
        int k = u[i] ? seq_len(u + i, n - i) : 0;
        if (!k) {
            /* invalid byte (or an embedded NUL): U+FFFD */
            out[w++] = (char)0xEF; out[w++] = (char)0xBF; out[w++] = (char)0xBD;
            i++;
            continue;
        }
        memcpy(out + w, u + i, (size_t)k);
        w += (size_t)k;
        i += (size_t)k;
    }
    out[w] = 0;
    return out;
}

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

int dr_buf_put(dr_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) {
            if (nc > ((size_t)1 << 40)) return dr_error(DR_ERR_NOMEM, "buffer too large");
            nc *= 2;
        }
        char *p = realloc(b->p, nc);
        if (!p) return dr_error(DR_ERR_NOMEM, "out of memory");
        b->p = p;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return DR_OK;
}

int dr_buf_putc(dr_buf *b, char c) { return dr_buf_put(b, &c, 1); }

void dr_buf_free(dr_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *dr_text_utf8_or_latin1(const char *s, size_t n) {
    if (dr_utf8_valid(s, n) && !memchr(s, 0, n)) return dr_utf8_sanitize(s, n);
    return dr_latin1_to_utf8(s, n);
}

int dr_join_cats(const char *s, size_t n, const char *seps, dr_buf *out) {
    out->n = 0;
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
