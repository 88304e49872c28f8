/* String -> id lookup by open addressing (linear probing, at most half full). The index
 * holds ids only; the strings stay where their owner keeps them (a vocabulary, a file's
 * names, a catalog) and are reached through the key function, so no string is copied. */
#include "deeprec/base.h"
#include <stdlib.h>
#include <string.h>

void dr_strindex_init(dr_strindex *x, dr_strindex_key key, const void *ctx, uint64_t seed) {
    memset(x, 0, sizeof *x);
    x->key = key;
    x->ctx = ctx;
    x->seed = seed;
}

static int same(const dr_strindex *x, int64_t id, const char *s, size_t n) {
    size_t len;
    const char *k = x->key(x->ctx, id, &len);
    return len == n && (n == 0 || !memcmp(k, s, n));
}

/* The slot holding s's id, or the empty slot where it would go. */
static size_t probe(const dr_strindex *x, const char *s, size_t n) {
    size_t mask = x->cap - 1, h = (size_t)dr_hash_bytes(s, n, x->seed) & mask;
    while (x->slot[h] >= 0 && !same(x, x->slot[h], s, n)) h = (h + 1) & mask;
    return h;
}

static int grow(dr_strindex *x) {
    size_t cap = x->cap ? x->cap * 2 : 16;
    int64_t *slot = dr_calloc(cap, sizeof *slot);
    if (!slot) return DR_ERR_NOMEM;
    memset(slot, 0xff, cap * sizeof *slot);
    dr_strindex old = *x;
    x->slot = slot;
    x->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slot[i] < 0) continue;
        size_t len;
        const char *k = x->key(x->ctx, old.slot[i], &len);
        x->slot[probe(x, k, len)] = old.slot[i];
    }
    free(old.slot);
    return DR_OK;
}

int dr_strindex_reserve(dr_strindex *x, size_t n) {
    while (x->cap < 2 * n + 2)
        if (grow(x)) return DR_ERR_NOMEM;
    return DR_OK;
}

int64_t dr_strindex_find(const dr_strindex *x, const char *s, size_t n) {
    if (!x->cap) return -1;
    return x->slot[probe(x, s, n)];
}

int64_t dr_strindex_add(dr_strindex *x, int64_t id) {
    if (dr_strindex_reserve(x, x->n + 1)) return -1;
    size_t len;
    const char *k = x->key(x->ctx, id, &len);
    size_t h = probe(x, k, len);
    if (x->slot[h] >= 0) return x->slot[h];
    x->slot[h] = id;
    x->n++;
    return id;
}

void dr_strindex_replace(dr_strindex *x, int64_t id) {
    size_t len;
    const char *k = x->key(x->ctx, id, &len);
    if (!x->cap) return;
    size_t h = probe(x, k, len);
    if (x->slot[h] >= 0) x->slot[h] = id;
}

void dr_strindex_free(dr_strindex *x) {
    free(x->slot);
    x->slot = NULL;
    x->cap = x->n = 0;
}
