/* RecBole atomic files: NAME.inter (+ NAME.item). Tab-separated, header of
 * `name:type` columns; fields are found by name: user_id, item_id, timestamp
 * (optional: file order otherwise), rating (optional, for --min-rating);
 * in .item: item_id, a title field (movie_title, title, item_title, name,
 * product_title) and a category field (class, categories, category, genre,
 * genres, sales_type). token_seq categories are space-separated words. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define RB_MAX_COLS 64

typedef struct {
    dr_data_builder *b;
    const char *path;
    int is_item;
    int header_done;
    int ncol;
    char names[RB_MAX_COLS][64];
    int seq[RB_MAX_COLS]; /* column type is a *_seq */
    int c_user, c_item, c_ts, c_rating, c_title, c_cat;
    int64_t order;
    dr_buf cats;
    dr_span *f;
} rbctx;

static int find_col(rbctx *c, const char *const *cands) {
    for (int k = 0; cands[k]; k++)
        for (int i = 0; i < c->ncol; i++)
            if (!strcmp(c->names[i], cands[k])) return i;
    return -1;
}

static int rb_header(rbctx *c, dr_lines *r, char *s, size_t n) {
    dr_span f[RB_MAX_COLS];
    int k = dr_split(s, n, '\t', f, RB_MAX_COLS);
    c->ncol = k;
    for (int i = 0; i < k; i++) {
        const char *colon = memchr(f[i].p, ':', f[i].n);
        size_t L = colon ? (size_t)(colon - f[i].p) : f[i].n;
        if (!colon || L == 0 || L >= 64)
            return dr_field_error(c->path, r->line_no, i + 1, "header", "a column 'name:type'", f[i]);
        memcpy(c->names[i], f[i].p, L);
        c->names[i][L] = 0;
        size_t tl = f[i].n - L - 1;
        c->seq[i] = tl >= 4 && !memcmp(colon + 1 + tl - 4, "_seq", 4);
    }
    static const char *const user[] = {"user_id", "userId", "user", NULL};
    static const char *const item[] = {"item_id", "itemId", "item", "movie_id", NULL};
    static const char *const ts[] = {"timestamp", "time", NULL};
    static const char *const rating[] = {"rating", "score", NULL};
    static const char *const title[] = {"movie_title", "title", "item_title", "name", "product_title", NULL};
    static const char *const cat[] = {"class", "categories", "category", "genre", "genres", "sales_type", NULL};
    c->c_user = find_col(c, user);
    c->c_item = find_col(c, item);
    c->c_ts = find_col(c, ts);
    c->c_rating = find_col(c, rating);
    c->c_title = find_col(c, title);
    c->c_cat = find_col(c, cat);
    if (c->c_item < 0)
        return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "header: no item_id column (expected 'item_id:token')");
    if (!c->is_item && c->c_user < 0)
        return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "header: no user_id column (expected 'user_id:token')");
    return DR_OK;
}

static int rb_line(void *ctx, dr_lines *r, char *s, size_t n) {
    rbctx *c = ctx;
    if (!c->header_done) {
        c->header_done = 1;
        return rb_header(c, r, s, n);
    }
    if (n == 0) return DR_OK;
    dr_span *f = c->f;
    int k = dr_split(s, n, '\t', f, RB_MAX_COLS);
    if (k > c->ncol)
        return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "%d tab-separated fields, the header has %d columns",
                           k, c->ncol);
    if (k < c->ncol)
        return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "field %d (%s): missing (line has %d of %d fields)",
                           k + 1, c->names[k], k, c->ncol);
    if (f[c->c_item].n == 0) return dr_field_error(c->path, r->line_no, c->c_item + 1, "item_id", "an item id", f[c->c_item]);
    if (c->is_item) {
        const char *title = NULL;
        long tl = 0;
        if (c->c_title >= 0) {
            title = f[c->c_title].p;
            tl = (long)f[c->c_title].n;
        }
        const char *cats = NULL;
        if (c->c_cat >= 0) {
            if (dr_join_cats(f[c->c_cat].p, f[c->c_cat].n, c->seq[c->c_cat] ? " " : "", &c->cats)) return dr_error_code();
            cats = c->cats.p;
        }
        if (!title && !cats) return DR_OK;
        return dr_data_builder_item_text(c->b, f[c->c_item].p, f[c->c_item].n, title, tl, cats, -1);
    }
    if (f[c->c_user].n == 0) return dr_field_error(c->path, r->line_no, c->c_user + 1, "user_id", "a user id", f[c->c_user]);
    int64_t ts = c->order++;
    double rating = 0;
    if (c->c_ts >= 0 && dr_parse_ts(f[c->c_ts], &ts))
        return dr_field_error(c->path, r->line_no, c->c_ts + 1, c->names[c->c_ts], "a number", f[c->c_ts]);
    if (c->c_rating >= 0 && dr_parse_f64(f[c->c_rating], &rating))
        return dr_field_error(c->path, r->line_no, c->c_rating + 1, c->names[c->c_rating], "a number", f[c->c_rating]);
    return dr_data_builder_add(c->b, f[c->c_user].p, f[c->c_user].n, f[c->c_item].p, f[c->c_item].n, ts, rating);
}

int dr_import_recbole(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    int n_inter = 0, rc = DR_OK;
    rbctx *c = calloc(1, sizeof *c);
    dr_span *f = calloc(RB_MAX_COLS, sizeof *f);
    if (!c || !f) {
        free(c);
        free(f);
        return dr_error(DR_ERR_NOMEM, "out of memory");
    }
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (int i = 0; i < n && !rc; i++) {
            int inter = dr_ends_with(paths[i], ".inter") || dr_ends_with(paths[i], ".inter.gz");
            int item = dr_ends_with(paths[i], ".item") || dr_ends_with(paths[i], ".item.gz");
            if (!inter && !item) continue;
            if (inter != (pass == 0)) continue;
            n_inter += inter;
            dr_buf cats = c->cats;
            int64_t order = c->order;
            memset(c, 0, sizeof *c);
            c->cats = cats;
            c->order = order;
            c->b = b;
            c->f = f;
            c->path = paths[i];
            c->is_item = item;
            rc = dr_for_lines(paths[i], p, rb_line, c);
        }
    dr_buf_free(&c->cats);
    free(c);
    free(f);
    if (!rc && !n_inter) rc = dr_error(DR_ERR_ARG, "recbole: no .inter file among the inputs");
    return rc;
}
