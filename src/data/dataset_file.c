/* Dataset file: GGUF with deeprec.* metadata, string arrays and integer tensors. */
#include "deeprec/data.h"
#include "deeprec/gguf.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int dr_data_save(const dr_dataset *d, const char *path) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return dr_error(DR_ERR_NOMEM, "out of memory");
    int rc = DR_OK;
    int32_t *off32 = NULL;
    int64_t ni1 = (int64_t)d->n_items + 1;
#define T(x) do { if ((rc = (x)) != DR_OK) goto done; } while (0)
    T(gguf_set_str(w, "general.type", "dataset"));
    T(gguf_set_str(w, "deeprec.kind", "dataset"));
    T(gguf_set_u32(w, "deeprec.version", DR_DATA_VERSION));
    T(gguf_set_str(w, "deeprec.data.format", d->format ? d->format : ""));
    T(gguf_set_str(w, "deeprec.data.source", d->source ? d->source : ""));
    T(gguf_set_i32(w, "deeprec.data.n_users", d->n_users));
    T(gguf_set_i32(w, "deeprec.data.n_items", d->n_items));
    T(gguf_set_i64(w, "deeprec.data.n_interactions", d->n_inter));
    T(gguf_set_i32(w, "deeprec.data.padding_id", DR_DATA_PAD));
    T(gguf_set_i32(w, "deeprec.data.min_user_count", d->min_user_count));
    T(gguf_set_i32(w, "deeprec.data.min_item_count", d->min_item_count));
    T(gguf_set_bool(w, "deeprec.data.has_min_rating", d->has_min_rating));
    T(gguf_set_f64(w, "deeprec.data.min_rating", d->has_min_rating ? d->min_rating : 0.0));
    T(gguf_set_i32(w, "deeprec.data.max_len", d->max_len));
    T(gguf_set_str(w, "deeprec.data.split", "leave-one-out: test=seq[-1], valid=seq[-2], train=seq[:-2]; users with <3 interactions: train only"));
    T(gguf_set_str(w, "deeprec.data.categories_sep", "|"));
    T(gguf_set_arr_str(w, "deeprec.data.user_ids", (const char *const *)d->user_ids, (uint64_t)d->n_users));
    T(gguf_set_arr_str(w, "deeprec.data.item_ids", (const char *const *)d->item_ids, (uint64_t)ni1));
    T(gguf_set_arr_str(w, "deeprec.data.titles", (const char *const *)d->titles, (uint64_t)ni1));
    T(gguf_set_arr_str(w, "deeprec.data.categories", (const char *const *)d->categories, (uint64_t)ni1));
    {
        uint64_t ne[1] = {(uint64_t)d->n_users + 1};
        if (d->n_inter < INT32_MAX) {
            off32 = malloc((size_t)ne[0] * sizeof *off32);
            if (!off32) { rc = dr_error(DR_ERR_NOMEM, "out of memory"); goto done; }
            for (int64_t i = 0; i < (int64_t)ne[0]; i++) off32[i] = (int32_t)d->offsets[i];
            T(gguf_add_tensor_borrowed(w, "data.offsets", GGML_TYPE_I32, 1, ne, off32));
        } else
            T(gguf_add_tensor_borrowed(w, "data.offsets", GGML_TYPE_I64, 1, ne, d->offsets));
        uint64_t ni[1] = {(uint64_t)d->n_inter};
        if (d->n_inter > 0) {
            T(gguf_add_tensor_borrowed(w, "data.items", GGML_TYPE_I32, 1, ni, d->items));
            if (d->timestamps) T(gguf_add_tensor_borrowed(w, "data.timestamps", GGML_TYPE_I64, 1, ni, d->timestamps));
        }
    }
    T(gguf_write(w, path));
#undef T
done:
    gguf_writer_free(w);
    free(off32);
    return rc;
}

static int copy_strs(const gguf_file *f, const char *key, int64_t want, char ***out) {
    uint64_t n;
    const gguf_str *s;
    int rc = gguf_get_arr_str(f, key, &n, &s);
    if (rc) return rc;
    if ((int64_t)n != want)
        return dr_error_at(DR_ERR_FORMAT, f->path, 0, "%s has %llu entries, expected %lld", key,
                           (unsigned long long)n, (long long)want);
    /* importers write UTF-8 only; a file with other bytes was made elsewhere or damaged,
     * and such strings would later vanish from JSON output or reach a terminal raw */
    for (uint64_t i = 0; i < n; i++)
        if (!dr_utf8_valid(s[i].ptr, (size_t)s[i].len) || memchr(s[i].ptr, 0, (size_t)s[i].len))
            return dr_error_at(DR_ERR_FORMAT, f->path, 0, "%s[%llu] is not valid UTF-8 text", key, (unsigned long long)i);
    char **v = calloc((size_t)(n ? n : 1), sizeof *v);
    if (!v) return dr_error(DR_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        v[i] = malloc((size_t)s[i].len + 1);
        if (!v[i]) {
            for (uint64_t j = 0; j < i; j++) free(v[j]);
            free(v);
            return dr_error(DR_ERR_NOMEM, "out of memory");
        }
        memcpy(v[i], s[i].ptr, (size_t)s[i].len);
        v[i][s[i].len] = 0;
    }
    *out = v;
    return DR_OK;
}

int dr_data_load(dr_dataset *d, const char *path) {
    memset(d, 0, sizeof *d);
    gguf_file f;
    int rc = gguf_open(&f, path);
    if (rc) return rc;
    char *kind = NULL;
#define T(x) do { if ((rc = (x)) != DR_OK) goto done; } while (0)
    T(gguf_get_strdup(&f, "deeprec.kind", &kind));
    if (strcmp(kind, "dataset") != 0) {
        rc = dr_error_at(DR_ERR_FORMAT, path, 0, "deeprec.kind is '%s', expected 'dataset'", kind);
        goto done;
    }
    uint32_t ver;
    T(gguf_get_u32(&f, "deeprec.version", &ver));
    if (ver > DR_DATA_VERSION) {
        rc = dr_error_at(DR_ERR_UNSUPPORTED, path, 0, "dataset version %u is newer than this program (%d)", ver,
                         DR_DATA_VERSION);
        goto done;
    }
    int64_t nu, ni, nint;
    T(gguf_get_i64(&f, "deeprec.data.n_users", &nu));
    T(gguf_get_i64(&f, "deeprec.data.n_items", &ni));
    T(gguf_get_i64(&f, "deeprec.data.n_interactions", &nint));
    if (nu < 0 || nu >= INT32_MAX || ni < 0 || ni >= INT32_MAX - 1 || nint < 0) {
        rc = dr_error_at(DR_ERR_FORMAT, path, 0, "bad counts: users %lld, items %lld, interactions %lld",
                         (long long)nu, (long long)ni, (long long)nint);
        goto done;
    }
    d->n_users = (int32_t)nu;
    d->n_items = (int32_t)ni;
    d->n_inter = nint;
    T(gguf_get_strdup(&f, "deeprec.data.format", &d->format));
    T(gguf_get_strdup(&f, "deeprec.data.source", &d->source));
    {
        int64_t v;
        if (gguf_get_i64(&f, "deeprec.data.min_user_count", &v) == 0) d->min_user_count = (int32_t)v;
        if (gguf_get_i64(&f, "deeprec.data.min_item_count", &v) == 0) d->min_item_count = (int32_t)v;
        if (gguf_get_i64(&f, "deeprec.data.max_len", &v) == 0) d->max_len = (int32_t)v;
        int b = 0;
        double r = 0;
        if (gguf_get_bool(&f, "deeprec.data.has_min_rating", &b) == 0 && b &&
            gguf_get_f64(&f, "deeprec.data.min_rating", &r) == 0) {
            d->has_min_rating = 1;
            d->min_rating = r;
        } else
            d->min_rating = NAN;
        dr_error_clear();
    }
    T(copy_strs(&f, "deeprec.data.user_ids", nu, &d->user_ids));
    T(copy_strs(&f, "deeprec.data.item_ids", ni + 1, &d->item_ids));
    T(copy_strs(&f, "deeprec.data.titles", ni + 1, &d->titles));
    T(copy_strs(&f, "deeprec.data.categories", ni + 1, &d->categories));
    d->offsets = malloc(((size_t)nu + 1) * sizeof *d->offsets);
    d->items = malloc((size_t)(nint ? nint : 1) * sizeof *d->items);
    if (!d->offsets || !d->items) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto done;
    }
    {
        const gguf_tensor_info *t = gguf_find_tensor(&f, "data.offsets");
        if (!t || t->n_dims != 1 || t->ne[0] != (uint64_t)nu + 1 ||
            (t->type != GGML_TYPE_I32 && t->type != GGML_TYPE_I64)) {
            rc = dr_error_at(DR_ERR_FORMAT, path, 0, "tensor data.offsets missing or not I32/I64 [%lld]",
                             (long long)nu + 1);
            goto done;
        }
        for (int64_t i = 0; i <= nu; i++) {
            int64_t v;
            if (t->type == GGML_TYPE_I32) {
                int32_t x;
                memcpy(&x, (const char *)t->data + 4 * i, 4);
                v = x;
            } else
                memcpy(&v, (const char *)t->data + 8 * i, 8);
            d->offsets[i] = v;
            if (v < 0 || v > nint || (i > 0 && v < d->offsets[i - 1]) || (i == 0 && v != 0)) {
                rc = dr_error_at(DR_ERR_FORMAT, path, 0, "data.offsets[%lld] = %lld is not a valid offset",
                                 (long long)i, (long long)v);
                goto done;
            }
        }
        if (d->offsets[nu] != nint) {
            rc = dr_error_at(DR_ERR_FORMAT, path, 0, "data.offsets ends at %lld, expected %lld",
                             (long long)d->offsets[nu], (long long)nint);
            goto done;
        }
    }
    if (nint > 0) {
        uint64_t ne[1] = {(uint64_t)nint};
        const gguf_tensor_info *t;
        T(gguf_expect_tensor(&f, "data.items", GGML_TYPE_I32, 1, ne, &t));
        memcpy(d->items, t->data, (size_t)nint * 4);
        for (int64_t i = 0; i < nint; i++)
            if (d->items[i] < 1 || d->items[i] > d->n_items) {
                rc = dr_error_at(DR_ERR_FORMAT, path, 0, "data.items[%lld] = %d is not an item id (1..%d)",
                                 (long long)i, d->items[i], d->n_items);
                goto done;
            }
        t = gguf_find_tensor(&f, "data.timestamps");
        if (t) {
            T(gguf_expect_tensor(&f, "data.timestamps", GGML_TYPE_I64, 1, ne, &t));
            d->timestamps = malloc((size_t)nint * 8);
            if (!d->timestamps) {
                rc = dr_error(DR_ERR_NOMEM, "out of memory");
                goto done;
            }
            memcpy(d->timestamps, t->data, (size_t)nint * 8);
        }
    }
#undef T
done:
    free(kind);
    gguf_close(&f);
    if (rc) dr_data_free(d);
    return rc;
}
