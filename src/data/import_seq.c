/* S3-Rec sequence files (`user item item ...`, one user a line, time-ordered)
 * and SASRec pair files (`user item` per line, time-ordered per user).
 * Neither has timestamps: the position in the file is the time. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    dr_data_builder *b;
    const char *path;
    int64_t order;
    dr_span *f;
    int cap;
    int pairs;
} seqctx;

static int seq_line(void *ctx, dr_lines *r, char *s, size_t n) {
    seqctx *c = ctx;
    int k = dr_split_ws(s, n, &c->f, &c->cap);
    if (k < 0) return dr_error(DR_ERR_NOMEM, "out of memory");
    if (k == 0) return DR_OK;
    if (c->pairs) {
        if (k != 2)
            return dr_error_at(DR_ERR_FORMAT, c->path, r->line_no,
                               "expected 2 fields (user item), got %d", k);
    } else if (k < 2)
        return dr_field_error(c->path, r->line_no, 2, "item", "at least one item after the user id", (dr_span){"", 0});
    for (int i = 1; i < k; i++) {
        int rc = dr_data_builder_add(c->b, c->f[0].p, c->f[0].n, c->f[i].p, c->f[i].n, c->order++, 0);
        if (rc) return rc;
    }
    return DR_OK;
}

static int run(dr_data_builder *b, const char *const *paths, int n, dr_progress *p, int pairs) {
    seqctx c = {0};
    c.b = b;
    c.pairs = pairs;
    int rc = DR_OK;
    if (n == 0) return dr_error(DR_ERR_ARG, "%s: no input file", pairs ? "sasrec" : "s3rec");
    for (int i = 0; i < n && !rc; i++) {
        c.path = paths[i];
        rc = dr_for_lines(paths[i], p, seq_line, &c);
    }
    free(c.f);
    return rc;
}

int dr_import_s3rec(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    return run(b, paths, n, p, 0);
}

int dr_import_sasrec(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    return run(b, paths, n, p, 1);
}
