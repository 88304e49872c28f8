/* UTF-8 validation and sanitising (invalid bytes -> U+FFFD): dataset strings at import
 * and load, and every string that goes into JSON output (jansson refuses invalid UTF-8,
 * and a refused string used to make the whole field disappear). */
#include "deeprec/base.h"
#include <stdlib.h>
#include <string.h>

int dr_utf8_decode(const char *str, size_t n, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    /* overlong forms and surrogates are not UTF-8 (jansson refuses them too) */
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int dr_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int seq_len(const unsigned char *s, size_t n) {
    uint32_t cp;
    return dr_utf8_decode((const char *)s, n, &cp);
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

