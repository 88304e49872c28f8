/* Interned strings: every distinct byte string stored once, numbered 0.. in the order first
 * seen (the dataset builder's user and item ids, the BPE trainer's words, a remote model's
 * token texts). One arena holds the bytes, so a million short ids cost no million mallocs. */
#include "deeprec/base.h"
#include <stdlib.h>
#include <string.h>

static const char *pool_key(const void *ctx, int64_t id, size_t *len) {
    const dr_strpool *p = ctx;
    *len = p->len[id];
    return p->bytes.p + p->off[id];
}

/* The index reaches the strings through the pool's address: set it on every use, so a pool
 * that was moved (copied into a struct, say) while empty of lookups still works. */
static void bind(const dr_strpool *p) {
    dr_strpool *q = (dr_strpool *)p;
    q->index.key = pool_key;
    q->index.ctx = p;
}

int64_t dr_strpool_find(const dr_strpool *p, const char *s, size_t n) {
    bind(p);
    return dr_strindex_find(&p->index, s, n);
}

int dr_strpool_intern(dr_strpool *p, const char *s, size_t n, int64_t *id, int *added) {
    if (added) *added = 0;
    int64_t have = dr_strpool_find(p, s, n);
    if (have >= 0) {
        *id = have;
        return DR_OK;
    }
    if (n > UINT32_MAX) return dr_error(DR_ERR_RANGE, "string of %zu bytes too long to intern", n);
    if (p->n == p->cap) {
        int64_t cap = p->cap ? p->cap * 2 : 1024;
        size_t *off = dr_realloc(p->off, (size_t)cap, sizeof *off);
        if (!off) return DR_ERR_NOMEM;
        p->off = off;
        uint32_t *len = dr_realloc(p->len, (size_t)cap, sizeof *len);
        if (!len) return DR_ERR_NOMEM;
        p->len = len;
        p->cap = cap;
    }
    p->off[p->n] = p->bytes.n;
    p->len[p->n] = (uint32_t)n;
    /* each string NUL-terminated, so dr_strpool_str can be used as a C string */
    if (dr_buf_put(&p->bytes, s, n) || dr_buf_putc(&p->bytes, 0)) return DR_ERR_NOMEM;
    if (dr_strindex_add(&p->index, p->n) < 0) return DR_ERR_NOMEM;
    *id = p->n++;
    if (added) *added = 1;
    return DR_OK;
}

const char *dr_strpool_str(const dr_strpool *p, int64_t id, size_t *len) {
    if (len) *len = p->len[id];
    return p->bytes.p + p->off[id];
}

void dr_strpool_free(dr_strpool *p) {
    dr_buf_free(&p->bytes);
    free(p->off);
    free(p->len);
    dr_strindex_free(&p->index);
    memset(p, 0, sizeof *p);
}
