/* The shared primitives: byte buffer, hashes, string index, string pool. */
#include "harness.h"
#include <stdlib.h>
#include <string.h>

TEST(base_buf_appends_and_takes) {
    dr_buf b = {0};
    CHECK_OK(dr_buf_puts(&b, "ab"));
    CHECK_OK(dr_buf_putc(&b, 'c'));
    CHECK_OK(dr_buf_put(&b, "d\0e", 3)); /* bytes, NUL included */
    CHECK_EQ_INT((int)b.n, 6);
    CHECK(memcmp(b.p, "abcd\0e", 7) == 0); /* always NUL-terminated */
    /* a formatted piece longer than any small stack buffer */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_OK(dr_buf_printf(&b, "[%s|%d]", big, 42));
    CHECK_EQ_INT((int)b.n, 6 + 1 + 1999 + 4);
    CHECK_STR(b.p + b.n - 4, "|42]");
    dr_buf_clear(&b);
    CHECK_EQ_INT((int)b.n, 0);
    CHECK_STR(b.p, "");
    CHECK_OK(dr_buf_puts(&b, "z"));
    char *s = dr_buf_take(&b);
    CHECK_STR(s, "z");
    CHECK(b.p == NULL && b.n == 0 && b.cap == 0);
    free(s);
    /* nothing added: take gives "" (a string, not NULL) */
    s = dr_buf_take(&b);
    CHECK(s && !*s);
    free(s);
    dr_buf_free(&b);
}

TEST(base_buf_error_is_sticky) {
    dr_buf b = {0};
    CHECK_OK(dr_buf_puts(&b, "ok"));
    CHECK_ERR(dr_buf_reserve(&b, SIZE_MAX - 8), DR_ERR_NOMEM);
    CHECK_ERR(dr_buf_puts(&b, "more"), DR_ERR_NOMEM); /* later appends refuse too */
    CHECK(dr_buf_take(&b) == NULL);
    CHECK(b.p == NULL);
    dr_error_clear();
}

TEST(base_hashes_keep_their_values) {
    /* FNV-1a reference values: models and checkpoints store hashes made with these */
    CHECK(dr_fnv1a32("a", 1, DR_FNV32_INIT) == 0xe40c292cu);
    /* deeprec's 64-bit start value is a digit short of FNV's 14695981039346656037; RL
     * checkpoints record fingerprints made from it, so it stays */
    CHECK(DR_FNV64_INIT == 1469598103934665603ull);
    CHECK(dr_fnv1a64("a", 1, DR_FNV64_INIT) == 0x44bd8ad473cd9906ull);
    CHECK(dr_fnv1a64("", 0, DR_FNV64_INIT) == DR_FNV64_INIT);
    /* chaining = hashing the concatenation */
    CHECK(dr_fnv1a64("bc", 2, dr_fnv1a64("a", 1, DR_FNV64_INIT)) == dr_fnv1a64("abc", 3, DR_FNV64_INIT));
    CHECK(dr_mix64(0) == 0);
    CHECK(dr_hash_bytes("abc", 3, 0) == dr_mix64(dr_fnv1a64("abc", 3, DR_FNV64_INIT)));
    CHECK(dr_hash_bytes("abc", 3, 1) != dr_hash_bytes("abc", 3, 0));
}

typedef struct words { const char *w[64]; } words;
static const char *word_key(const void *ctx, int64_t id, size_t *n) {
    const char *s = ((const words *)ctx)->w[id];
    *n = strlen(s);
    return s;
}

TEST(base_strindex_finds_adds_and_replaces) {
    words ws;
    char names[64][8];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof names[i], "w%d", i % 40); /* ids 40..63 repeat 0..23 */
        ws.w[i] = names[i];
    }
    dr_strindex x;
    dr_strindex_init(&x, word_key, &ws, 12345);
    CHECK(dr_strindex_find(&x, "w1", 2) == -1); /* empty index */
    for (int64_t i = 0; i < 64; i++) {
        int64_t got = dr_strindex_add(&x, i); /* grows from empty past several doublings */
        CHECK(got == (i < 40 ? i : i - 40));  /* a repeat returns the first id */
    }
    CHECK_EQ_INT((int)x.n, 40);
    CHECK(x.cap >= 2 * x.n + 2);
    for (int i = 0; i < 40; i++) CHECK(dr_strindex_find(&x, names[i], strlen(names[i])) == i);
    CHECK(dr_strindex_find(&x, "w40", 3) == -1);
    CHECK(dr_strindex_find(&x, "w", 1) == -1);
    dr_strindex_replace(&x, 45); /* "w5" now answers 45 */
    CHECK(dr_strindex_find(&x, "w5", 2) == 45);
    dr_strindex_free(&x);
}

TEST(base_strpool_interns_in_first_seen_order) {
    dr_strpool p = {0};
    const char *in[] = {"b", "a", "b", "", "a\0x", "a", ""};
    size_t len[] = {1, 1, 1, 0, 3, 1, 0};
    int64_t want[] = {0, 1, 0, 2, 3, 1, 2};
    int want_added[] = {1, 1, 0, 1, 1, 0, 0};
    for (int i = 0; i < 7; i++) {
        int64_t id;
        int added;
        CHECK_OK(dr_strpool_intern(&p, in[i], len[i], &id, &added));
        CHECK(id == want[i]);
        CHECK_EQ_INT(added, want_added[i]);
    }
    CHECK(p.n == 4);
    size_t n;
    CHECK(!memcmp(dr_strpool_str(&p, 3, &n), "a\0x", 4) && n == 3); /* bytes kept, NUL-terminated */
    CHECK_STR(dr_strpool_str(&p, 0, NULL), "b");
    CHECK(dr_strpool_find(&p, "a", 1) == 1);
    CHECK(dr_strpool_find(&p, "c", 1) == -1);
    /* many strings: the arena moves as it grows, lookups still hold */
    char k[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        int64_t id;
        CHECK_OK(dr_strpool_intern(&p, k, strlen(k), &id, NULL));
        CHECK(id == 4 + i);
    }
    CHECK(dr_strpool_find(&p, "key4321", 7) == 4 + 4321);
    CHECK_STR(dr_strpool_str(&p, 4 + 17, NULL), "key17");
    dr_strpool_free(&p);
    CHECK(p.n == 0 && dr_strpool_find(&p, "a", 1) == -1);
}
