/* Amazon Reviews 2018 and 2023 (gzip or plain; each line is decided on its own).
 *
 * 2018: ratings CSV `item,user,rating,timestamp` (no header; a first line whose
 * rating is not a number is taken as a header and skipped); reviews JSON lines
 * (reviewerID, asin, unixReviewTime, overall); metadata JSON lines (asin,
 * title, category = list, or the 2014 `categories` = list of lists). Both real
 * JSON and the Python-dict-like lines ('single quotes', True/False/None) of
 * some dumps are read.
 * 2023: reviews JSON lines (user_id, parent_asin (or asin), timestamp in
 * milliseconds, rating); metadata JSON lines (parent_asin, title, categories;
 * main_category when categories is empty). Timestamps are kept as given (ms).
 *
 * Metadata for items that have no interaction is ignored. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    dr_data_builder *b;
    const char *path;
    int y2023;
    int csv, first;
    dr_jobj o;
    dr_buf cats;
} amzctx;

static int json_err(amzctx *c, dr_lines *r, const char *s, size_t n) {
    size_t pos = c->o.err_pos;
    dr_span got = {s + (pos < n ? pos : n), pos < n ? n - pos : 0};
    if (got.n > 20) got.n = 20;
    char shown[32];
    size_t k = 0;
    for (size_t i = 0; i < got.n; i++) shown[k++] = (got.p[i] < 0x20 && got.p[i] >= 0) ? '?' : got.p[i];
    shown[k] = 0;
    char *clean = dr_utf8_sanitize(shown, k);
    int rc = dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "column %zu: expected %s (JSON object), got '%s'",
                         pos + 1, c->o.err_what ? c->o.err_what : "JSON", clean ? clean : "");
    free(clean);
    return rc;
}

static const dr_jfield *need(amzctx *c, dr_lines *r, const char *key, int kind, int *rc) {
    const dr_jfield *f = dr_json_get(&c->o, key);
    if (f && kind == DR_JV_NUM && f->kind == DR_JV_STR) {
        /* "unixReviewTime": "5" used to read "expected a number, got '5'" */
        char *v = dr_utf8_sanitize(f->str, f->str_len > 40 ? 40 : f->str_len);
        *rc = dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "field '%s': expected a JSON number, got the string \"%s\"",
                          key, v ? v : "");
        free(v);
        return NULL;
    }
    if (!f || f->kind != kind || (kind == DR_JV_STR && f->str_len == 0)) {
        *rc = dr_field_error(c->path, r->line_no, 0, key, kind == DR_JV_STR ? "a non-empty string" : "a number",
                             f ? (dr_span){f->str, f->kind == DR_JV_STR || f->kind == DR_JV_NUM ? f->str_len : 0}
                               : (dr_span){"(missing)", 9});
        return NULL;
    }
    return f;
}

static int meta(amzctx *c, const dr_jfield *id) {
    const dr_jfield *t = dr_json_get(&c->o, "title");
    const char *title = NULL;
    long tl = 0;
    if (t && t->kind == DR_JV_STR) {
        title = t->str;
        tl = (long)t->str_len;
    }
    const char *cats = NULL;
    const dr_jfield *cf = dr_json_get(&c->o, "categories");
    if (!cf || cf->kind != DR_JV_STRLIST || !cf->list_n) cf = dr_json_get(&c->o, "category");
    if (c->y2023 && (!cf || cf->kind != DR_JV_STRLIST || !cf->list_n)) cf = dr_json_get(&c->o, "main_category");
    if (cf && (cf->kind == DR_JV_STRLIST || cf->kind == DR_JV_STR)) {
        if (dr_join_cats(cf->str, cf->str_len, cf->kind == DR_JV_STRLIST ? "\x1f" : "", &c->cats)) return dr_error_code();
        cats = c->cats.p;
    }
    if (!title && !cats) return DR_OK;
    return dr_data_builder_item_text(c->b, id->str, id->str_len, title, tl, cats, -1);
}

static int amz_line(void *ctx, dr_lines *r, char *s, size_t n) {
    amzctx *c = ctx;
    size_t a = 0;
    while (a < n && (s[a] == ' ' || s[a] == '\t')) a++;
    if (a == n) return DR_OK;
    int first = c->first;
    c->first = 0;
    if (c->csv) {
        dr_span f[5];
        int k = dr_split_csv(s, n, f, 5);
        if (k < 0) return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "unterminated quoted field");
        if (k != 4)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 4 comma-separated fields (item,user,rating,timestamp), got %d", k);
        double rating;
        int64_t ts;
        if (dr_parse_f64(f[2], &rating)) {
            if (first) return DR_OK; /* header */
            return dr_field_error(c->path, r->line_no, 3, "rating", "a number", f[2]);
        }
        if (dr_parse_ts(f[3], &ts)) return dr_field_error(c->path, r->line_no, 4, "timestamp", "an integer", f[3]);
        if (!f[0].n) return dr_field_error(c->path, r->line_no, 1, "item", "an item id", f[0]);
        if (!f[1].n) return dr_field_error(c->path, r->line_no, 2, "user", "a user id", f[1]);
        return dr_data_builder_add(c->b, f[1].p, f[1].n, f[0].p, f[0].n, ts, rating);
    }
    if (dr_json_scan(&c->o, s, n)) return json_err(c, r, s, n);
    int rc = DR_OK;
    const char *ukey = c->y2023 ? "user_id" : "reviewerID";
    const char *tkey = c->y2023 ? "timestamp" : "unixReviewTime";
    const char *rkey = c->y2023 ? "rating" : "overall";
    const dr_jfield *user = dr_json_get(&c->o, ukey);
    const dr_jfield *item = NULL;
    if (c->y2023) {
        item = dr_json_get(&c->o, "parent_asin");
        if (!item || item->kind != DR_JV_STR || !item->str_len) item = dr_json_get(&c->o, "asin");
    } else
        item = dr_json_get(&c->o, "asin");
    if (!user) {
        /* metadata line */
        if (!item || item->kind != DR_JV_STR || !item->str_len) {
            int dummy = DR_ERR_FORMAT;
            need(c, r, c->y2023 ? "parent_asin" : "asin", DR_JV_STR, &dummy);
            return dummy;
        }
        return meta(c, item);
    }
    if (!need(c, r, ukey, DR_JV_STR, &rc)) return rc;
    if (!item || item->kind != DR_JV_STR || !item->str_len) {
        need(c, r, c->y2023 ? "parent_asin" : "asin", DR_JV_STR, &rc);
        return rc;
    }
    const dr_jfield *tf = need(c, r, tkey, DR_JV_NUM, &rc);
    if (!tf) return rc;
    int64_t ts;
    if (dr_parse_ts((dr_span){tf->str, tf->str_len}, &ts))
        return dr_field_error(c->path, r->line_no, 0, tkey, "an integer timestamp", (dr_span){tf->str, tf->str_len});
    double rating = 0;
    const dr_jfield *rating_f = dr_json_get(&c->o, rkey);
    if (rating_f && rating_f->kind == DR_JV_NUM && dr_parse_f64((dr_span){rating_f->str, rating_f->str_len}, &rating))
        return dr_field_error(c->path, r->line_no, 0, rkey, "a number", (dr_span){rating_f->str, rating_f->str_len});
    return dr_data_builder_add(c->b, user->str, user->str_len, item->str, item->str_len, ts, rating);
}

static int is_meta_name(const char *path) {
    const char *b = dr_basename(path);
    return !strncmp(b, "meta", 4);
}

static int run(dr_data_builder *b, const char *const *paths, int n, dr_progress *p, int y2023) {
    static const char *const want18[] = {"reviewerID", "asin", "unixReviewTime", "overall", "title", "category",
                                         "categories", NULL};
    static const char *const want23[] = {"user_id", "parent_asin", "asin", "timestamp", "rating", "title",
                                         "categories", "main_category", NULL};
    amzctx c = {0};
    c.b = b;
    c.y2023 = y2023;
    c.o.want = y2023 ? want23 : want18;
    int rc = DR_OK;
    if (n == 0) return dr_error(DR_ERR_ARG, "amazon: no input file");
    /* reviews/ratings first, then metadata files (named meta*), so unknown items cost nothing */
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (int i = 0; i < n && !rc; i++) {
            if (is_meta_name(paths[i]) != (pass == 1)) continue;
            c.path = paths[i];
            c.csv = !y2023 && (dr_ends_with(paths[i], ".csv") || dr_ends_with(paths[i], ".csv.gz"));
            c.first = 1;
            rc = dr_for_lines(paths[i], p, amz_line, &c);
        }
    dr_json_free(&c.o);
    dr_buf_free(&c.cats);
    return rc;
}

int dr_import_amazon2018(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    return run(b, paths, n, p, 0);
}

int dr_import_amazon2023(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    return run(b, paths, n, p, 1);
}
