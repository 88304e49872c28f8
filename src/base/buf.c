/* Growable NUL-terminated byte buffer: the one that prompts, JSON bodies, dataset fields,
 * episode text and streamed detokenisation all append to. */
#include "deeprec/base.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int dr_buf_reserve(dr_buf *b, size_t extra) {
    if (b->err) return DR_ERR_NOMEM;
    if (extra > SIZE_MAX / 2 - b->n - 1) {
        b->err = 1;
        return dr_error(DR_ERR_NOMEM, "buffer too large (%zu + %zu bytes)", b->n, extra);
    }
    size_t need = b->n + extra + 1;
    if (need <= b->cap) return DR_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->err = 1;
        return dr_error(DR_ERR_NOMEM, "out of memory (buffer of %zu bytes)", cap);
    }
    b->p = p;
    b->cap = cap;
    return DR_OK;
}

int dr_buf_put(dr_buf *b, const void *s, size_t n) {
    if (dr_buf_reserve(b, n)) return DR_ERR_NOMEM;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return DR_OK;
}

int dr_buf_putc(dr_buf *b, char c) { return dr_buf_put(b, &c, 1); }

int dr_buf_puts(dr_buf *b, const char *s) { return dr_buf_put(b, s, strlen(s)); }

int dr_buf_printf(dr_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return dr_error(DR_ERR_INTERNAL, "format error");
    if (dr_buf_reserve(b, (size_t)k)) return DR_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
    return DR_OK;
}

void dr_buf_clear(dr_buf *b) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

char *dr_buf_take(dr_buf *b) {
    if (b->err) {
        dr_buf_free(b);
        return NULL;
    }
    if (!b->p && dr_buf_reserve(b, 0)) return NULL;
    b->p[b->n] = 0;
    char *s = b->p;
    memset(b, 0, sizeof *b);
    return s;
}

void dr_buf_free(dr_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
