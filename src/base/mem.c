/* Allocation with overflow checks: every size derived from input passes here. */
#include "deeprec/base.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int dr_mul_ok(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}

void *dr_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) dr_error(DR_ERR_NOMEM, "cannot allocate %zu bytes", n);
    return p;
}

void *dr_calloc(size_t count, size_t size) {
    size_t n;
    if (!dr_mul_ok(count, size, &n)) {
        dr_error(DR_ERR_NOMEM, "allocation size overflows (%zu x %zu)", count, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, 1);
    if (!p) dr_error(DR_ERR_NOMEM, "cannot allocate %zu bytes", n);
    return p;
}

void *dr_realloc(void *p, size_t count, size_t size) {
    size_t n;
    if (!dr_mul_ok(count, size, &n)) {
        dr_error(DR_ERR_NOMEM, "allocation size overflows (%zu x %zu)", count, size);
        return NULL;
    }
    void *q = realloc(p, n ? n : 1);
    if (!q) dr_error(DR_ERR_NOMEM, "cannot allocate %zu bytes", n);
    return q;
}

void *dr_aligned_alloc_huge(size_t n) {
    const size_t huge = (size_t)2 << 20;
    if (n < huge) return dr_aligned_alloc(n);
    void *p = NULL;
    if (posix_memalign(&p, huge, n) != 0) {
        dr_error(DR_ERR_NOMEM, "cannot allocate %zu aligned bytes", n);
        return NULL;
    }
    /* only a hint: where THP is off (or "never") the buffer simply keeps 4 KiB pages */
    madvise(p, n / huge * huge, MADV_HUGEPAGE);
    return p;
}

void *dr_aligned_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        dr_error(DR_ERR_NOMEM, "cannot allocate %zu aligned bytes", n);
        return NULL;
    }
    return p;
}

char *dr_str_concat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *p = dr_malloc(na + nb + 1);
    if (p) {
        memcpy(p, a, na);
        memcpy(p + na, b, nb + 1);
    }
    return p;
}

char *dr_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = dr_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
