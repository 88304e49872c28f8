/* A copy of a dataset without each user's last n items.
 * Why: a TRM ranks the items it was trained on as targets far better than unseen ones (the
 * demo's pref TRM: NDCG@10 0.0997 on each user's last training item against 0.0466 on the test
 * item). An agent trained against that TRM on training targets learns from a tool that is
 * twice as good as the one it meets at test time. A TRM trained on this copy, with n = 2 + P,
 * has never seen the last P training items (nor validation and test) as targets, so on those
 * positions it behaves as the real TRM does on test users. */
#include "deeprec/data.h"
#include <stdlib.h>
#include <string.h>

static int copy_strs(char **src, int64_t n, char ***out) {
    *out = NULL;
    if (!src) return DR_OK;
    char **v = dr_calloc((size_t)n, sizeof *v);
    if (!v) return dr_error_code();
    *out = v; /* partly filled on failure: dr_data_free frees what is there */
    for (int64_t i = 0; i < n; i++)
        if (src[i] && !(v[i] = dr_strdup(src[i]))) return dr_error_code();
    return DR_OK;
}

int dr_data_drop_last(const dr_dataset *d, int n, dr_dataset *out) {
    memset(out, 0, sizeof *out);
    if (n < 0) return dr_error(DR_ERR_ARG, "dr_data_drop_last: n must be >= 0 (got %d)", n);
    out->n_users = d->n_users;
    out->n_items = d->n_items;
    out->min_user_count = d->min_user_count, out->min_item_count = d->min_item_count, out->max_len = d->max_len;
    out->min_rating = d->min_rating, out->has_min_rating = d->has_min_rating;
    out->offsets = dr_malloc(((size_t)d->n_users + 1) * sizeof *out->offsets);
    out->items = dr_malloc(((size_t)d->n_inter + 1) * sizeof *out->items);
    if (d->timestamps) out->timestamps = dr_malloc(((size_t)d->n_inter + 1) * sizeof *out->timestamps);
    int rc = DR_OK;
    if (!out->offsets || !out->items || (d->timestamps && !out->timestamps)) {
        rc = dr_error_code();
        goto fail;
    }
    int64_t w = 0;
    out->offsets[0] = 0;
    for (int32_t u = 0; u < d->n_users; u++) {
        int64_t a = d->offsets[u], len = d->offsets[u + 1] - a, keep = len > n ? len - n : 0;
        memcpy(out->items + w, d->items + a, (size_t)keep * sizeof *out->items);
        if (d->timestamps) memcpy(out->timestamps + w, d->timestamps + a, (size_t)keep * sizeof *out->timestamps);
        w += keep;
        out->offsets[u + 1] = w;
    }
    out->n_inter = w;
    const int64_t ni = (int64_t)d->n_items + 1;
    if ((rc = copy_strs(d->user_ids, d->n_users, &out->user_ids)) || (rc = copy_strs(d->item_ids, ni, &out->item_ids)) ||
        (rc = copy_strs(d->titles, ni, &out->titles)) || (rc = copy_strs(d->categories, ni, &out->categories)))
        goto fail;
    if ((d->format && !(out->format = dr_strdup(d->format))) || (d->source && !(out->source = dr_strdup(d->source)))) {
        rc = dr_error_code();
        goto fail;
    }
    return DR_OK;
fail:
    dr_data_free(out);
    return rc;
}
