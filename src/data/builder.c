/* Dataset builder: interns user/item id strings, collects interactions in
 * input order, then filters (rating, k-core), sorts per user by time (stable)
 * and renumbers into a dr_dataset. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dr_data_builder {
    dr_strpool users, items; /* the id strings, numbered in first-seen order */
    /* interactions */
    int32_t *u, *it;
    int64_t *ts;
    float *rating;
    int64_t n, cap;
    /* item text, indexed like items */
    char **title, **cats;
    int32_t text_cap;
};

/* The dataset's ids are int32: the pool's numbers, bounded. */
static int32_t intern_get(dr_strpool *t, const char *s, size_t n) {
    if (t->n >= INT32_MAX - 1 && dr_strpool_find(t, s, n) < 0)
        return dr_error(DR_ERR_RANGE, "too many distinct ids"), -1;
    int64_t id;
    if (dr_strpool_intern(t, s, n, &id, NULL)) return -1;
    return (int32_t)id;
}

dr_data_builder *dr_data_builder_new(void) {
    dr_data_builder *b = calloc(1, sizeof *b);
    if (!b) dr_error(DR_ERR_NOMEM, "out of memory");
    return b;
}

void dr_data_builder_free(dr_data_builder *b) {
    if (!b) return;
    for (int32_t i = 0; i < (int32_t)b->items.n && i < b->text_cap; i++) {
        free(b->title[i]);
        free(b->cats[i]);
    }
    free(b->title);
    free(b->cats);
    dr_strpool_free(&b->users);
    dr_strpool_free(&b->items);
    free(b->u);
    free(b->it);
    free(b->ts);
    free(b->rating);
    free(b);
}

static int ensure_text(dr_data_builder *b, int32_t idx) {
    if (idx < b->text_cap) return DR_OK;
    int32_t nc = b->text_cap ? b->text_cap : 1024;
    while (nc <= idx) nc = nc > INT32_MAX / 2 ? INT32_MAX : nc * 2;
    char **t = realloc(b->title, (size_t)nc * sizeof *t);
    if (!t) return dr_error(DR_ERR_NOMEM, "out of memory");
    b->title = t;
    char **c = realloc(b->cats, (size_t)nc * sizeof *c);
    if (!c) return dr_error(DR_ERR_NOMEM, "out of memory");
    b->cats = c;
    memset(b->title + b->text_cap, 0, (size_t)(nc - b->text_cap) * sizeof *t);
    memset(b->cats + b->text_cap, 0, (size_t)(nc - b->text_cap) * sizeof *c);
    b->text_cap = nc;
    return DR_OK;
}

int dr_data_builder_add(dr_data_builder *b, const char *user, size_t user_len, const char *item, size_t item_len,
                        int64_t timestamp, double rating) {
    if (b->n >= b->cap) {
        int64_t nc = b->cap ? b->cap * 2 : 65536;
        if (nc > ((int64_t)1 << 34)) return dr_error(DR_ERR_RANGE, "too many interactions");
        int32_t *u = realloc(b->u, (size_t)nc * sizeof *u);
        if (!u) return dr_error(DR_ERR_NOMEM, "out of memory (interactions)");
        b->u = u;
        int32_t *it = realloc(b->it, (size_t)nc * sizeof *it);
        if (!it) return dr_error(DR_ERR_NOMEM, "out of memory (interactions)");
        b->it = it;
        int64_t *ts = realloc(b->ts, (size_t)nc * sizeof *ts);
        if (!ts) return dr_error(DR_ERR_NOMEM, "out of memory (interactions)");
        b->ts = ts;
        float *r = realloc(b->rating, (size_t)nc * sizeof *r);
        if (!r) return dr_error(DR_ERR_NOMEM, "out of memory (interactions)");
        b->rating = r;
        b->cap = nc;
    }
    int32_t ui = intern_get(&b->users, user, user_len);
    if (ui < 0) return dr_error_code();
    int32_t ii = intern_get(&b->items, item, item_len);
    if (ii < 0) return dr_error_code();
    b->u[b->n] = ui;
    b->it[b->n] = ii;
    b->ts[b->n] = timestamp;
    b->rating[b->n] = (float)rating;
    b->n++;
    return DR_OK;
}

int dr_data_builder_item_text(dr_data_builder *b, const char *item, size_t item_len, const char *title,
                              long title_len, const char *cats, long cats_len) {
    int32_t ii = intern_get(&b->items, item, item_len);
    if (ii < 0) return dr_error_code();
    if (ensure_text(b, ii)) return dr_error_code();
    if (title) {
        size_t n = title_len < 0 ? strlen(title) : (size_t)title_len;
        char *t = dr_utf8_sanitize(title, n);
        if (!t) return dr_error(DR_ERR_NOMEM, "out of memory");
        free(b->title[ii]);
        b->title[ii] = t;
    }
    if (cats) {
        size_t n = cats_len < 0 ? strlen(cats) : (size_t)cats_len;
        char *t = dr_utf8_sanitize(cats, n);
        if (!t) return dr_error(DR_ERR_NOMEM, "out of memory");
        free(b->cats[ii]);
        b->cats[ii] = t;
    }
    return DR_OK;
}

typedef struct { int64_t ts; int64_t pos; int32_t item; } ev;
static int cmp_ev(const void *a, const void *b) {
    const ev *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int dr_data_builder_finish(dr_data_builder *b, const dr_data_filter *f, dr_dataset *out) {
    memset(out, 0, sizeof *out);
    dr_data_filter none = {0};
    if (!f) f = &none;
    int64_t n = b->n;
    int32_t NU = (int32_t)b->users.n, NI = (int32_t)b->items.n;
    uint8_t *keep = malloc((size_t)(n ? n : 1));
    int32_t *ucnt = calloc((size_t)NU + 1, sizeof *ucnt);
    int32_t *icnt = calloc((size_t)NI + 1, sizeof *icnt);
    int32_t *umap = malloc(((size_t)NU + 1) * sizeof *umap);
    int32_t *imap = malloc(((size_t)NI + 1) * sizeof *imap);
    int rc = DR_OK;
    ev *tmp = NULL;
    if (!keep || !ucnt || !icnt || !umap || !imap) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        keep[i] = !f->has_min_rating || (double)b->rating[i] >= f->min_rating;
    /* k-core: drop interactions of users/items below the thresholds until nothing changes */
    for (;;) {
        memset(ucnt, 0, (size_t)NU * sizeof *ucnt);
        memset(icnt, 0, (size_t)NI * sizeof *icnt);
        for (int64_t i = 0; i < n; i++)
            if (keep[i]) {
                if (ucnt[b->u[i]] < INT32_MAX) ucnt[b->u[i]]++;
                if (icnt[b->it[i]] < INT32_MAX) icnt[b->it[i]]++;
            }
        int changed = 0;
        for (int64_t i = 0; i < n; i++)
            if (keep[i] && (ucnt[b->u[i]] < f->min_user_count || icnt[b->it[i]] < f->min_item_count)) {
                keep[i] = 0;
                changed = 1;
            }
        if (!changed) break;
    }
    /* renumber in order of first appearance */
    for (int32_t i = 0; i < NU; i++) umap[i] = -1;
    for (int32_t i = 0; i < NI; i++) imap[i] = -1;
    int32_t nu = 0, ni = 0;
    int64_t nk = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        nk++;
        if (umap[b->u[i]] < 0) umap[b->u[i]] = nu++;
        if (imap[b->it[i]] < 0) imap[b->it[i]] = ++ni;
    }
    out->n_users = nu;
    out->n_items = ni;
    out->n_inter = nk;
    out->offsets = calloc((size_t)nu + 1, sizeof *out->offsets);
    out->items = malloc((size_t)(nk ? nk : 1) * sizeof *out->items);
    out->timestamps = malloc((size_t)(nk ? nk : 1) * sizeof *out->timestamps);
    out->user_ids = calloc((size_t)nu + 1, sizeof(char *));
    out->item_ids = calloc((size_t)ni + 1, sizeof(char *));
    out->titles = calloc((size_t)ni + 1, sizeof(char *));
    out->categories = calloc((size_t)ni + 1, sizeof(char *));
    if (!out->offsets || !out->items || !out->timestamps || !out->user_ids || !out->item_ids || !out->titles ||
        !out->categories) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* CSR by counting (stable in input order) */
    for (int64_t i = 0; i < n; i++)
        if (keep[i]) out->offsets[umap[b->u[i]] + 1]++;
    for (int32_t u = 0; u < nu; u++) out->offsets[u + 1] += out->offsets[u];
    int64_t *fillp = malloc(((size_t)nu + 1) * sizeof *fillp);
    if (!fillp) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(fillp, out->offsets, ((size_t)nu + 1) * sizeof *fillp);
    for (int64_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        int64_t p = fillp[umap[b->u[i]]]++;
        out->items[p] = imap[b->it[i]];
        out->timestamps[p] = b->ts[i];
    }
    free(fillp);
    /* stable sort per user by timestamp (skip users already in order) */
    int64_t tmp_cap = 0;
    for (int32_t u = 0; u < nu; u++) {
        int64_t a = out->offsets[u], e = out->offsets[u + 1];
        int sorted = 1;
        for (int64_t i = a + 1; i < e; i++)
            if (out->timestamps[i] < out->timestamps[i - 1]) { sorted = 0; break; }
        if (sorted) continue;
        if (e - a > tmp_cap) {
            free(tmp);
            tmp_cap = e - a;
            tmp = malloc((size_t)tmp_cap * sizeof *tmp);
            if (!tmp) {
                rc = dr_error(DR_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
        for (int64_t i = a; i < e; i++) tmp[i - a] = (ev){out->timestamps[i], i, out->items[i]};
        qsort(tmp, (size_t)(e - a), sizeof *tmp, cmp_ev);
        for (int64_t i = a; i < e; i++) {
            out->timestamps[i] = tmp[i - a].ts;
            out->items[i] = tmp[i - a].item;
        }
    }
    /* strings */
    for (int32_t i = 0; i < NU; i++)
        if (umap[i] >= 0) {
            out->user_ids[umap[i]] = dr_utf8_sanitize(b->users.bytes.p + b->users.off[i], b->users.len[i]);
            if (!out->user_ids[umap[i]]) { rc = dr_error(DR_ERR_NOMEM, "out of memory"); goto done; }
        }
    out->item_ids[0] = dr_strdup("");
    out->titles[0] = dr_strdup("");
    out->categories[0] = dr_strdup("");
    for (int32_t i = 0; i < NI; i++) {
        int32_t k = imap[i];
        if (k < 0) continue;
        out->item_ids[k] = dr_utf8_sanitize(b->items.bytes.p + b->items.off[i], b->items.len[i]);
        const char *t = i < b->text_cap && b->title[i] ? b->title[i] : "";
        const char *c = i < b->text_cap && b->cats[i] ? b->cats[i] : "";
        out->titles[k] = dr_strdup(t);
        out->categories[k] = dr_strdup(c);
    }
    for (int32_t i = 0; i <= ni; i++)
        if (!out->item_ids[i] || !out->titles[i] || !out->categories[i]) {
            rc = dr_error(DR_ERR_NOMEM, "out of memory");
            goto done;
        }
    out->min_user_count = f->min_user_count;
    out->min_item_count = f->min_item_count;
    out->max_len = f->max_len;
    out->has_min_rating = f->has_min_rating;
    out->min_rating = f->has_min_rating ? f->min_rating : NAN;
done:
    free(tmp);
    free(keep);
    free(ucnt);
    free(icnt);
    free(umap);
    free(imap);
    if (rc) dr_data_free(out);
    return rc;
}
