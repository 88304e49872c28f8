/* UTF-8 validation and sanitising (invalid bytes -> U+FFFD): dataset strings at import
 * and load, and every string that goes into JSON output (jansson refuses invalid UTF-8,
 * and a refused string used to make the whole field disappear). */
#include "deeprec/base.h"
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

