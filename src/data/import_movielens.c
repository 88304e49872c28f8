/* MovieLens: ml-100k (u.data + u.item), ml-1m (ratings.dat + movies.dat, '::'),
 * ml-latest / ml-latest-small / ml-20m+ (ratings.csv + movies.csv, quoted CSV).
 * Titles are kept as in the source (with the year, e.g. "Toy Story (1995)").
 * ml-100k/ml-1m are Latin-1: a title that is not valid UTF-8 is converted from Latin-1. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

static const char *const ml100k_genres[19] = {
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"};

typedef struct {
    dr_data_builder *b;
    const char *path;
    int kind; /* 0 u.data, 1 u.item, 2 ratings.dat, 3 movies.dat, 4 ratings.csv, 5 movies.csv */
    int header_done;
    dr_buf cats;
} mlctx;

static int add_rating(mlctx *c, dr_lines *r, dr_span *f, const char *const *names) {
    int64_t ts;
    double rating;
    if (f[0].n == 0) return dr_field_error(c->path, r->line_no, 1, names[0], "a user id", f[0]);
    if (f[1].n == 0) return dr_field_error(c->path, r->line_no, 2, names[1], "an item id", f[1]);
    if (dr_parse_f64(f[2], &rating)) return dr_field_error(c->path, r->line_no, 3, names[2], "a number", f[2]);
    if (dr_parse_ts(f[3], &ts)) return dr_field_error(c->path, r->line_no, 4, names[3], "an integer timestamp", f[3]);
    return dr_data_builder_add(c->b, f[0].p, f[0].n, f[1].p, f[1].n, ts, rating);
}

static int add_movie(mlctx *c, dr_span id, dr_span title, const char *cats) {
    char *t = dr_text_utf8_or_latin1(title.p, title.n);
    if (!t) return dr_error(DR_ERR_NOMEM, "out of memory");
    int rc = dr_data_builder_item_text(c->b, id.p, id.n, t, -1, cats, -1);
    free(t);
    return rc;
}

static int ml_line(void *ctx, dr_lines *r, char *s, size_t n) {
    mlctx *c = ctx;
    dr_span f[32];
    if (n == 0) return DR_OK;
    switch (c->kind) {
    case 0: {
        static const char *const names[4] = {"user id", "item id", "rating", "timestamp"};
        int k = dr_split(s, n, '\t', f, 5);
        if (k != 4)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 4 tab-separated fields (user item rating timestamp), got %d", k);
        return add_rating(c, r, f, names);
    }
    case 2: {
        static const char *const names[4] = {"UserID", "MovieID", "Rating", "Timestamp"};
        int k = dr_split_str(s, n, "::", f, 5);
        if (k != 4)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 4 '::'-separated fields (UserID::MovieID::Rating::Timestamp), got %d", k);
        return add_rating(c, r, f, names);
    }
    case 4: {
        static const char *const names[4] = {"userId", "movieId", "rating", "timestamp"};
        if (!c->header_done) {
            c->header_done = 1;
            if (n >= 6 && !memcmp(s, "userId", 6)) return DR_OK;
        }
        int k = dr_split_csv(s, n, f, 5);
        if (k != 4)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 4 comma-separated fields (userId,movieId,rating,timestamp), got %d", k);
        return add_rating(c, r, f, names);
    }
    case 1: {
        int k = dr_split(s, n, '|', f, 25);
        if (k < 2) return dr_field_error(c->path, r->line_no, 2, "movie title", "'|' then a title", (dr_span){s, n});
        if (f[0].n == 0) return dr_field_error(c->path, r->line_no, 1, "movie id", "an item id", f[0]);
        c->cats.n = 0;
        dr_buf_put(&c->cats, "", 0);
        if (k == 24) {
            for (int g = 0; g < 19; g++) {
                dr_span v = f[5 + g];
                if (v.n != 1 || (v.p[0] != '0' && v.p[0] != '1'))
                    return dr_field_error(c->path, r->line_no, 6 + g, ml100k_genres[g], "0 or 1", v);
                if (v.p[0] == '1' && g > 0) {
                    if (c->cats.n) dr_buf_putc(&c->cats, '|');
                    dr_buf_put(&c->cats, ml100k_genres[g], strlen(ml100k_genres[g]));
                }
            }
        } else if (k != 2 && k != 5) {
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 24 '|'-separated fields (id|title|date|video date|url|19 genre flags), got %d",
                               k);
        }
        return add_movie(c, f[0], f[1], c->cats.p);
    }
    case 3:
    case 5: {
        int k;
        if (c->kind == 3) k = dr_split_str(s, n, "::", f, 4);
        else {
            if (!c->header_done) {
                c->header_done = 1;
                if (n >= 7 && !memcmp(s, "movieId", 7)) return DR_OK;
            }
            k = dr_split_csv(s, n, f, 4);
            if (k < 0) return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no, "unterminated quoted field");
        }
        if (k != 3)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 3 fields (movieId, title, genres), got %d", k);
        if (f[0].n == 0) return dr_field_error(c->path, r->line_no, 1, "movieId", "an item id", f[0]);
        if (f[2].n == 18 && !memcmp(f[2].p, "(no genres listed)", 18)) f[2].n = 0;
        if (dr_join_cats(f[2].p, f[2].n, "|", &c->cats)) return dr_error_code();
        return add_movie(c, f[0], f[1], c->cats.p);
    }
    }
    return DR_OK;
}

int dr_import_movielens(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    static const struct { const char *name; int kind; } known[] = {
        {"u.data", 0}, {"u.item", 1}, {"ratings.dat", 2}, {"movies.dat", 3}, {"ratings.csv", 4}, {"movies.csv", 5}};
    int n_ratings = 0;
    mlctx c = {0};
    c.b = b;
    int rc = DR_OK;
    /* interactions first, then item files (both orders work; this keeps memory lower) */
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (int i = 0; i < n && !rc; i++) {
            const char *base = dr_basename(paths[i]);
            int kind = -1;
            for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
                size_t L = strlen(known[k].name);
                if (!strncmp(base, known[k].name, L) && (!base[L] || !strcmp(base + L, ".gz"))) kind = known[k].kind;
            }
            if (kind < 0) {
                if (pass == 0) dr_log(DR_LOG_DEBUG, "movielens: ignoring %s", paths[i]);
                continue;
            }
            int is_rating = kind == 0 || kind == 2 || kind == 4;
            if (is_rating != (pass == 0)) continue;
            n_ratings += is_rating;
            c.path = paths[i];
            c.kind = kind;
            c.header_done = 0;
            rc = dr_for_lines(paths[i], p, ml_line, &c);
        }
    dr_buf_free(&c.cats);
    if (!rc && !n_ratings)
        rc = dr_error(DR_ERR_ARG, "movielens: no ratings file among the inputs (expected u.data, ratings.dat or ratings.csv, "
                                  "with u.item, movies.dat or movies.csv for titles)");
    return rc;
}
