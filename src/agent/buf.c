/* Growable byte buffer and substring search helpers for the agent module. */
#include "agent/internal.h"
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int agent_buf_add(agent_buf *b, const char *s, size_t n) {
    if (b->err) return DR_ERR_NOMEM;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->err = 1;
            return dr_error(DR_ERR_NOMEM, "out of memory (text buffer of %zu bytes)", cap);
        }
        b->s = p;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return DR_OK;
}

int agent_buf_str(agent_buf *b, const char *s) { return agent_buf_add(b, s, strlen(s)); }

int agent_buf_printf(agent_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0) return dr_error(DR_ERR_INTERNAL, "format error");
    if ((size_t)k < sizeof small) return agent_buf_add(b, small, (size_t)k);
    char *big = malloc((size_t)k + 1);
    if (!big) return dr_error(DR_ERR_NOMEM, "out of memory");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    int rc = agent_buf_add(b, big, (size_t)k);
    free(big);
    return rc;
}

char *agent_buf_take(agent_buf *b) {
    if (b->err) {
        agent_buf_free(b);
        return NULL;
    }
    if (!b->s && agent_buf_add(b, "", 0)) return NULL;
    char *s = b->s;
    b->s = NULL;
    b->n = b->cap = 0;
    return s;
}

void agent_buf_free(agent_buf *b) {
    free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
    b->err = 0;
}

const char *agent_memmem(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return NULL;
    return memmem(hay, n, needle, m);
}

const char *agent_memrmem(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return NULL;
    for (size_t i = n - m + 1; i-- > 0;)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, m)) return hay + i;
    return NULL;
}

int agent_count(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    int c = 0;
    const char *p = hay, *end = hay + n;
    while ((p = agent_memmem(p, (size_t)(end - p), needle))) {
        c++;
        p += m;
    }
    return c;
}

const char *agent_memcasemem(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return NULL;
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m && tolower((unsigned char)hay[i + k]) == tolower((unsigned char)needle[k])) k++;
        if (k == m) return hay + i;
    }
    return NULL;
}
