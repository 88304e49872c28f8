/* Generic CSV with a header: user,item[,timestamp][,rating][,title][,categories].
 * Columns are found by name (user|user_id|userId, item|item_id|itemId,
 * timestamp|time|ts, rating, title, categories|category|genres). Fields may be
 * "quoted" (RFC 4180). Categories are '|'-separated. Without a timestamp column
 * the file order is the time. The title of an item is the last non-empty one seen. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define CSV_MAX 64

typedef struct {
    dr_data_builder *b;
    const char *path;
    int header_done, ncol;
    int c_user, c_item, c_ts, c_rating, c_title, c_cat;
    int64_t order;
    dr_buf cats;
} csvctx;

static int col(dr_span *f, int k, const char *const *names) {
    for (int i = 0; i < k; i++)
        for (int j = 0; names[j]; j++)
            if (f[i].n == strlen(names[j]) && !strncasecmp(f[i].p, names[j], f[i].n)) return i;
    return -1;
}

static int csv_line(void *ctx, dr_lines *r, char *s, size_t n) {
    csvctx *c = ctx;
    dr_span f[CSV_MAX];
    if (n == 0) return DR_OK;
    int k = dr_split_csv(s, n, f, CSV_MAX);
    if (k < 0) return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "unterminated quoted field");
    if (!c->header_done) {
        static const char *const user[] = {"user", "user_id", "userid", NULL};
        static const char *const item[] = {"item", "item_id", "itemid", NULL};
        static const char *const ts[] = {"timestamp", "time", "ts", NULL};
        static const char *const rating[] = {"rating", NULL};
        static const char *const title[] = {"title", "name", NULL};
        static const char *const cat[] = {"categories", "category", "genres", NULL};
        c->header_done = 1;
        c->ncol = k;
        c->c_user = col(f, k, user);
        c->c_item = col(f, k, item);
        c->c_ts = col(f, k, ts);
        c->c_rating = col(f, k, rating);
        c->c_title = col(f, k, title);
        c->c_cat = col(f, k, cat);
        if (c->c_user < 0 || c->c_item < 0)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "header: expected columns user,item[,timestamp][,rating][,title][,categories]");
        return DR_OK;
    }
    if (k != c->ncol)
        return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "expected %d comma-separated fields (as the header), got %d",
                           c->ncol, k);
    if (f[c->c_user].n == 0) return dr_field_error(c->path, r->line_no, c->c_user + 1, "user", "a user id", f[c->c_user]);
    if (f[c->c_item].n == 0) return dr_field_error(c->path, r->line_no, c->c_item + 1, "item", "an item id", f[c->c_item]);
    int64_t ts = c->order++;
    double rating = 0;
    if (c->c_ts >= 0 && dr_parse_ts(f[c->c_ts], &ts))
        return dr_field_error(c->path, r->line_no, c->c_ts + 1, "timestamp", "a number", f[c->c_ts]);
    if (c->c_rating >= 0 && dr_parse_f64(f[c->c_rating], &rating))
        return dr_field_error(c->path, r->line_no, c->c_rating + 1, "rating", "a number", f[c->c_rating]);
    int rc = dr_data_builder_add(c->b, f[c->c_user].p, f[c->c_user].n, f[c->c_item].p, f[c->c_item].n, ts, rating);
    if (rc) return rc;
    const char *title = NULL, *cats = NULL;
    long tl = 0;
    if (c->c_title >= 0 && f[c->c_title].n) {
        title = f[c->c_title].p;
        tl = (long)f[c->c_title].n;
    }
    if (c->c_cat >= 0 && f[c->c_cat].n) {
        if (dr_join_cats(f[c->c_cat].p, f[c->c_cat].n, "|", &c->cats)) return dr_error_code();
        cats = c->cats.p;
    }
    if (title || cats) rc = dr_data_builder_item_text(c->b, f[c->c_item].p, f[c->c_item].n, title, tl, cats, -1);
    return rc;
}

int dr_import_csv(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    csvctx c = {0};
    int rc = DR_OK;
    if (n == 0) return dr_error(DR_ERR_ARG, "csv: no input file");
    for (int i = 0; i < n && !rc; i++) {
        dr_buf cats = c.cats;
        int64_t order = c.order;
        memset(&c, 0, sizeof c);
        c.cats = cats;
        c.order = order;
        c.b = b;
        c.path = paths[i];
        rc = dr_for_lines(paths[i], p, csv_line, &c);
    }
    dr_buf_free(&c.cats);
    return rc;
}
