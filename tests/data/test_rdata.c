/* R serialization reader on a hand-built XDR stream (data.frame with an int column
 * with NA, a factor, strings with NA and Latin-1, a double column, an ALTREP
 * compact sequence, symbol references), plus every truncation of it. */
#include "harness.h"
#include "deeprec/data.h"
#include <stdlib.h>

typedef struct { uint8_t b[4096]; size_t n; } wbuf;
static void put_int(wbuf *w, int32_t v) {
    uint32_t u = (uint32_t)v;
    w->b[w->n++] = (uint8_t)(u >> 24);
    w->b[w->n++] = (uint8_t)(u >> 16);
    w->b[w->n++] = (uint8_t)(u >> 8);
    w->b[w->n++] = (uint8_t)u;
}
static void put_real(wbuf *w, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int k = 7; k >= 0; k--) w->b[w->n++] = (uint8_t)(u >> (8 * k));
}
static void put_chars(wbuf *w, const char *s, int levels) {
    if (!s) {
        put_int(w, 9);
        put_int(w, -1);
        return;
    }
    put_int(w, 9 | (levels << 12));
    put_int(w, (int32_t)strlen(s));
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}
static void put_sym(wbuf *w, const char *name) {
    put_int(w, 1);
    put_chars(w, name, 64);
}
static void put_strs(wbuf *w, int n, const char *const *s, int flags_extra) {
    put_int(w, 16 | flags_extra);
    put_int(w, n);
    for (int i = 0; i < n; i++) put_chars(w, s[i], 8);
}

static size_t build(uint8_t *out) {
    wbuf w = {{0}, 0};
    w.b[w.n++] = 'X';
    w.b[w.n++] = '\n';
    put_int(&w, 3);
    put_int(&w, 0x040101);
    put_int(&w, 0x030500);
    put_int(&w, 5);
    memcpy(w.b + w.n, "UTF-8", 5);
    w.n += 5;
    put_int(&w, 19 | (1 << 8) | (1 << 9)); /* VECSXP, object, attributes */
    put_int(&w, 5);
    /* col id: INTSXP 1 NA 3 */
    put_int(&w, 13);
    put_int(&w, 3);
    put_int(&w, 1);
    put_int(&w, INT32_MIN);
    put_int(&w, 3);
    /* col g: factor codes 2 1 2, levels "a|b" "c" */
    put_int(&w, 13 | (1 << 8) | (1 << 9));
    put_int(&w, 3);
    put_int(&w, 2);
    put_int(&w, 1);
    put_int(&w, 2);
    put_int(&w, 2 | (1 << 10));
    put_sym(&w, "levels"); /* ref 1 */
    const char *lv[] = {"a|b", "c"};
    put_strs(&w, 2, lv, 0);
    put_int(&w, 2 | (1 << 10));
    put_sym(&w, "class"); /* ref 2 */
    const char *fc[] = {"factor"};
    put_strs(&w, 1, fc, 0);
    put_int(&w, 254);
    /* col s: "x" NA latin-1 e-acute */
    put_int(&w, 16);
    put_int(&w, 3);
    put_chars(&w, "x", 64);
    put_chars(&w, NULL, 0);
    put_chars(&w, "\xe9t\xe9", 4);
    /* col r: 1.5 NA 2.5 */
    put_int(&w, 14);
    put_int(&w, 3);
    put_real(&w, 1.5);
    uint64_t na = 0x7FF00000000007A2ull;
    double dna;
    memcpy(&dna, &na, 8);
    put_real(&w, dna);
    put_real(&w, 2.5);
    /* col q: ALTREP compact_intseq 10..12 */
    put_int(&w, 238);
    put_int(&w, 2);
    put_sym(&w, "compact_intseq"); /* ref 3 */
    put_int(&w, 2);
    put_sym(&w, "base"); /* ref 4 */
    put_int(&w, 2);
    put_int(&w, 13);
    put_int(&w, 1);
    put_int(&w, 13);
    put_int(&w, 254);
    put_int(&w, 14);
    put_int(&w, 3);
    put_real(&w, 3);
    put_real(&w, 10);
    put_real(&w, 1);
    put_int(&w, 254);
    /* root attributes: names, class (a reference to the symbol), row.names */
    put_int(&w, 2 | (1 << 10));
    put_sym(&w, "names");
    const char *nm[] = {"id", "g", "s", "r", "q"};
    put_strs(&w, 5, nm, 0);
    put_int(&w, 2 | (1 << 10));
    put_int(&w, (2 << 8) | 255); /* REFSXP to "class" */
    const char *dc[] = {"data.frame"};
    put_strs(&w, 1, dc, 0);
    put_int(&w, 2 | (1 << 10));
    put_sym(&w, "row.names");
    put_int(&w, 13);
    put_int(&w, 2);
    put_int(&w, INT32_MIN);
    put_int(&w, -3);
    put_int(&w, 254);
    memcpy(out, w.b, w.n);
    return w.n;
}

TEST(rdata_frame_by_hand) {
    uint8_t buf[4096];
    size_t n = build(buf);
    dr_rframe f;
    CHECK_OK(dr_rdata_read_frame(buf, n, &f));
    CHECK_EQ_INT(f.n_cols, 5);
    CHECK_EQ_INT(f.n_rows, 3);
    const dr_rcol *id = dr_rframe_col(&f, "id"), *g = dr_rframe_col(&f, "g"), *s = dr_rframe_col(&f, "s"),
                  *r = dr_rframe_col(&f, "r"), *q = dr_rframe_col(&f, "q");
    CHECK(id && g && s && r && q);
    CHECK_EQ_INT(id->type, 0);
    CHECK_EQ_INT(id->ints[1], INT32_MIN);
    CHECK_EQ_INT(id->ints[2], 3);
    CHECK(id->levels == NULL);
    CHECK_EQ_INT(g->n_levels, 2);
    CHECK_STR(g->levels[g->ints[0] - 1], "c");
    CHECK_STR(g->levels[g->ints[1] - 1], "a|b");
    CHECK_EQ_INT(s->type, 2);
    CHECK_STR(s->strs[0], "x");
    CHECK(s->strs[1] == NULL);
    CHECK_STR(s->strs[2], "\xc3\xa9t\xc3\xa9");
    CHECK_EQ_INT(r->type, 1);
    CHECK_NEAR(r->reals[0], 1.5, 0);
    CHECK(isnan(r->reals[1]));
    CHECK_EQ_INT(q->type, 0);
    CHECK_EQ_INT(q->ints[0], 10);
    CHECK_EQ_INT(q->ints[2], 12);
    CHECK(dr_rframe_col(&f, "zz") == NULL);
    dr_rframe_free(&f);
}

TEST(rdata_truncations_and_corruptions_fail_cleanly) {
    uint8_t buf[4096];
    size_t n = build(buf);
    for (size_t k = 0; k < n; k++) {
        dr_rframe f;
        int rc = dr_rdata_read_frame(buf, k, &f);
        CHECK_MSG(rc != 0, "prefix of %zu bytes accepted", k);
        CHECK(dr_error_message()[0] != 0);
    }
    /* flip each byte: must not crash (result may be ok or an error) */
    for (size_t k = 0; k < n; k++) {
        uint8_t c[4096];
        memcpy(c, buf, n);
        c[k] ^= 0x5A;
        dr_rframe f;
        if (dr_rdata_read_frame(c, n, &f) == 0) dr_rframe_free(&f);
    }
    uint8_t ascii[] = "A\n3\n";
    dr_rframe f;
    CHECK_ERR(dr_rdata_read_frame(ascii, 4, &f), DR_ERR_UNSUPPORTED);
}
