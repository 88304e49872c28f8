/* GGUF reader: parses the header, metadata and tensor table of a mapped file. Every count,
 * length and offset is checked against the bytes that remain before it is used, and counts are
 * capped by what the remaining bytes could hold before anything is allocated. Tensor data is
 * never touched here, so opening is O(metadata). */
#include "deeprec/gguf.h"
#include <stdlib.h>
#include <string.h>

#define MIN_KV_BYTES 13     /* key length (8) + type (4) + smallest value (1) */
#define MIN_TENSOR_BYTES 24 /* name length (8) + n_dims (4) + type (4) + offset (8) */

typedef struct {
    const uint8_t *base;
    size_t size, pos;
    const char *name;
} reader;

static int fail_at(const reader *r, size_t at, const char *fmt, ...) DR_PRINTF(3, 4);
static int fail_at(const reader *r, size_t at, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dr_error_at(DR_ERR_FORMAT, r->name, 0, "at byte offset %zu: %s", at, msg);
}

static size_t left(const reader *r) { return r->size - r->pos; }

static int rd_bytes(reader *r, size_t n, const void **out, const char *what) {
    *out = NULL;
    if (n > left(r))
        return fail_at(r, r->pos, "%s needs %zu bytes but only %zu remain (file truncated?)", what, n, left(r));
    *out = r->base + r->pos;
    r->pos += n;
    return DR_OK;
}

static int rd_u32(reader *r, uint32_t *v, const char *what) {
    const void *p = NULL;
    *v = 0;
    int rc = rd_bytes(r, 4, &p, what);
    if (!rc && p) memcpy(v, p, 4);
    return rc;
}

static int rd_u64(reader *r, uint64_t *v, const char *what) {
    const void *p = NULL;
    *v = 0;
    int rc = rd_bytes(r, 8, &p, what);
    if (!rc && p) memcpy(v, p, 8);
    return rc;
}

static int rd_str(reader *r, gguf_str *s, const char *what) {
    size_t at = r->pos;
    uint64_t len;
    int rc = rd_u64(r, &len, what);
    if (rc) return rc;
    if (len > left(r))
        return fail_at(r, at, "%s has length %llu but only %zu bytes remain", what, (unsigned long long)len, left(r));
    s->len = len;
    s->ptr = (const char *)r->base + r->pos;
    r->pos += (size_t)len;
    return DR_OK;
}

/* Short printable excerpt of a file string for messages. */
static const char *excerpt(gguf_str s, char *buf, size_t cap) {
    size_t j = 0;
    for (uint64_t i = 0; i < s.len && j + 4 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[j++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    if (s.len > 0 && j + 4 >= cap) { buf[j++] = '.'; buf[j++] = '.'; buf[j++] = '.'; }
    buf[j] = 0;
    return buf;
}

/* ---- name index: metadata keys and tensor names -> their entry ---- */
typedef struct {
    dr_strindex kv, t;
    const gguf_kv *kv_arr;
    const gguf_tensor_info *t_arr;
} name_index;

static const char *kv_key(const void *ctx, int64_t i, size_t *n) {
    const gguf_str *k = &((const name_index *)ctx)->kv_arr[i].key;
    *n = (size_t)k->len;
    return k->ptr;
}
static const char *t_key(const void *ctx, int64_t i, size_t *n) {
    const gguf_str *k = &((const name_index *)ctx)->t_arr[i].name;
    *n = (size_t)k->len;
    return k->ptr;
}

/* ---- values ---- */
static int check_bool(reader *r, const uint8_t *p, uint64_t n, size_t at) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1) return fail_at(r, at + (size_t)i, "bool value %u is neither 0 nor 1", p[i]);
    return DR_OK;
}

static int parse_value(reader *r, gguf_kv *kv, const char *key) {
    size_t at = r->pos;
    char what[160];
    if (kv->type == GGUF_TYPE_STRING) {
        snprintf(what, sizeof what, "string value of key '%s'", key);
        int rc = rd_str(r, &kv->str, what);
        kv->data = (const uint8_t *)r->base + at;
        return rc;
    }
    if (kv->type == GGUF_TYPE_ARRAY) {
        int rc = rd_u32(r, &kv->arr_type, "array element type");
        if (rc) return rc;
        if (kv->arr_type == GGUF_TYPE_ARRAY)
            return fail_at(r, at, "key '%s': nested arrays (arrays of arrays) are not supported", key);
        if (kv->arr_type != GGUF_TYPE_STRING && gguf_type_size(kv->arr_type) == 0)
            return fail_at(r, at, "key '%s': unknown array element type %u", key, kv->arr_type);
        size_t at_len = r->pos;
        if ((rc = rd_u64(r, &kv->arr_len, "array length"))) return rc;
        kv->data = r->base + r->pos;
        if (kv->arr_type == GGUF_TYPE_STRING) {
            if (kv->arr_len > left(r) / 8)
                return fail_at(r, at_len, "key '%s': array of %llu strings cannot fit in the %zu remaining bytes", key,
                               (unsigned long long)kv->arr_len, left(r));
            kv->arr_strs = dr_calloc((size_t)kv->arr_len, sizeof(gguf_str));
            if (!kv->arr_strs) return DR_ERR_NOMEM;
            snprintf(what, sizeof what, "string element of array '%s'", key);
            for (uint64_t i = 0; i < kv->arr_len; i++)
                if ((rc = rd_str(r, &kv->arr_strs[i], what))) return rc;
            return DR_OK;
        }
        size_t es = gguf_type_size(kv->arr_type);
        if (kv->arr_len > left(r) / es)
            return fail_at(r, at_len, "key '%s': array of %llu %s values needs more than the %zu remaining bytes", key,
                           (unsigned long long)kv->arr_len, gguf_type_name(kv->arr_type), left(r));
        size_t nb = (size_t)kv->arr_len * es;
        r->pos += nb;
        if (kv->arr_type == GGUF_TYPE_BOOL) return check_bool(r, kv->data, kv->arr_len, at_len + 8);
        return DR_OK;
    }
    size_t es = gguf_type_size(kv->type);
    if (es == 0) return fail_at(r, at - 4, "key '%s': unknown value type %u", key, kv->type);
    snprintf(what, sizeof what, "%s value of key '%s'", gguf_type_name(kv->type), key);
    const void *p = NULL;
    int rc = rd_bytes(r, es, &p, what);
    if (rc) return rc;
    kv->data = p;
    if (kv->type == GGUF_TYPE_BOOL) return check_bool(r, kv->data, 1, at);
    return DR_OK;
}

/* Integer value of a scalar kv (any integer type); 0 if not an integer. */
static int kv_int(const gguf_kv *kv, int64_t *s, uint64_t *u, int *is_unsigned) {
    const uint8_t *p = kv->data;
    *is_unsigned = 0;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: *u = p[0]; *is_unsigned = 1; return 1;
    case GGUF_TYPE_INT8: *s = (int8_t)p[0]; return 1;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; *is_unsigned = 1; return 1; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *s = v; return 1; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; *is_unsigned = 1; return 1; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *s = v; return 1; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *u = v; *is_unsigned = 1; return 1; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *s = v; return 1; }
    default: return 0;
    }
}

static void free_parsed(gguf_file *f) {
    if (f->kv) {
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].arr_strs);
        free(f->kv);
    }
    free(f->tensors);
    name_index *ix = f->index;
    if (ix) { dr_strindex_free(&ix->kv); dr_strindex_free(&ix->t); free(ix); }
    f->kv = NULL;
    f->tensors = NULL;
    f->index = NULL;
}

static int parse(gguf_file *f, const char *name) {
    reader r = {f->map.data, f->map.size, 0, name};
    const void *p = NULL;
    int rc;
    if (r.size < 4) return fail_at(&r, 0, "file too short (%zu bytes) to be GGUF", r.size);
    if ((rc = rd_bytes(&r, 4, &p, "magic"))) return rc;
    if (memcmp(p, "GGUF", 4) != 0) {
        const uint8_t *m = p;
        return fail_at(&r, 0, "bad magic %02x %02x %02x %02x: not a GGUF file (expected \"GGUF\")", m[0], m[1], m[2], m[3]);
    }
    if ((rc = rd_u32(&r, &f->version, "version"))) return rc;
    if (f->version != 2 && f->version != 3) {
        if (f->version == 1) return fail_at(&r, 4, "GGUF version 1 is not supported (only 2 and 3)");
        if ((f->version & 0xffff) == 0 && (f->version >> 24) >= 1 && (f->version >> 24) <= 3)
            return fail_at(&r, 4, "big-endian GGUF files are not supported");
        return fail_at(&r, 4, "unsupported GGUF version %u (only 2 and 3)", f->version);
    }
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u64(&r, &n_tensors, "tensor count"))) return rc;
    if ((rc = rd_u64(&r, &n_kv, "metadata count"))) return rc;
    if (n_kv > left(&r) / MIN_KV_BYTES)
        return fail_at(&r, 16, "metadata count %llu is impossible: the %zu remaining bytes hold at most %zu entries",
                       (unsigned long long)n_kv, left(&r), left(&r) / MIN_KV_BYTES);
    if (n_tensors > left(&r) / MIN_TENSOR_BYTES)
        return fail_at(&r, 8, "tensor count %llu is impossible: the %zu remaining bytes hold at most %zu tensors",
                       (unsigned long long)n_tensors, left(&r), left(&r) / MIN_TENSOR_BYTES);

    name_index *ix = dr_calloc(1, sizeof *ix);
    if (!ix) return DR_ERR_NOMEM;
    f->index = ix;
    /* per-open, so a crafted file cannot aim for colliding names */
    uint64_t seed = (uint64_t)(uintptr_t)ix * 0x9e3779b97f4a7c15ull ^ (uint64_t)(dr_now() * 1e9);
    dr_strindex_init(&ix->kv, kv_key, ix, seed);
    dr_strindex_init(&ix->t, t_key, ix, seed);
    f->kv = dr_calloc((size_t)n_kv, sizeof(gguf_kv));
    ix->kv_arr = f->kv;
    if (!f->kv || dr_strindex_reserve(&ix->kv, (size_t)n_kv)) return DR_ERR_NOMEM;

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    char kbuf[96];
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        size_t at = r.pos;
        kv->offset = at;
        f->n_kv = i + 1; /* so cleanup frees what this entry allocates */
        if ((rc = rd_str(&r, &kv->key, "metadata key"))) return rc;
        if (kv->key.len == 0) return fail_at(&r, at, "metadata entry %llu has an empty key", (unsigned long long)i);
        excerpt(kv->key, kbuf, sizeof kbuf);
        int64_t dup = dr_strindex_add(&ix->kv, (int64_t)i);
        if (dup < 0) return DR_ERR_NOMEM;
        if (dup != (int64_t)i)
            return fail_at(&r, at, "duplicate metadata key '%s' (first at byte offset %llu)", kbuf,
                           (unsigned long long)f->kv[dup].offset);
        if ((rc = rd_u32(&r, &kv->type, "metadata value type"))) return rc;
        if ((rc = parse_value(&r, kv, kbuf))) return rc;
        if (gguf_str_eq(kv->key, "general.alignment")) {
            int64_t s = 0;
            uint64_t u = 0;
            int uns;
            if (!kv_int(kv, &s, &u, &uns))
                return fail_at(&r, at, "general.alignment must be an integer, not %s", gguf_type_name(kv->type));
            if (!uns) {
                if (s <= 0) return fail_at(&r, at, "general.alignment is %lld; it must be a positive power of two", (long long)s);
                u = (uint64_t)s;
            }
            if (u == 0 || (u & (u - 1)) != 0)
                return fail_at(&r, at, "general.alignment is %llu; it must be a nonzero power of two", (unsigned long long)u);
            if (u > (1ull << 30)) return fail_at(&r, at, "general.alignment %llu is absurdly large", (unsigned long long)u);
            f->alignment = u;
        }
    }

    if (n_tensors > left(&r) / MIN_TENSOR_BYTES)
        return fail_at(&r, r.pos, "tensor count %llu is impossible: the %zu bytes after the metadata hold at most %zu tensors",
                       (unsigned long long)n_tensors, left(&r), left(&r) / MIN_TENSOR_BYTES);
    f->tensors = dr_calloc((size_t)n_tensors, sizeof(gguf_tensor_info));
    ix->t_arr = f->tensors;
    if (!f->tensors || dr_strindex_reserve(&ix->t, (size_t)n_tensors)) return DR_ERR_NOMEM;
    size_t *t_at = dr_calloc((size_t)n_tensors, sizeof(size_t));
    if (!t_at) return DR_ERR_NOMEM;

    for (uint64_t i = 0; i < n_tensors && !rc; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        size_t at = r.pos;
        f->n_tensors = i + 1;
        if ((rc = rd_str(&r, &t->name, "tensor name"))) break;
        if (t->name.len == 0) { rc = fail_at(&r, at, "tensor %llu has an empty name", (unsigned long long)i); break; }
        excerpt(t->name, kbuf, sizeof kbuf);
        int64_t dup = dr_strindex_add(&ix->t, (int64_t)i);
        if (dup < 0) {
            rc = DR_ERR_NOMEM;
            break;
        }
        if (dup != (int64_t)i) {
            rc = fail_at(&r, at, "duplicate tensor name '%s' (same as tensor %lld of %llu)", kbuf, (long long)dup,
                         (unsigned long long)n_tensors);
            break;
        }
        size_t at_dims = r.pos;
        if ((rc = rd_u32(&r, &t->n_dims, "tensor n_dims"))) break;
        if (t->n_dims > GGUF_MAX_DIMS) {
            rc = fail_at(&r, at_dims, "tensor '%s' has %u dimensions (at most %d)", kbuf, t->n_dims, GGUF_MAX_DIMS);
            break;
        }
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims && !rc; d++) {
            size_t at_ne = r.pos;
            if ((rc = rd_u64(&r, &t->ne[d], "tensor dimension"))) break;
            if (t->ne[d] > (uint64_t)INT64_MAX) {
                rc = fail_at(&r, at_ne, "tensor '%s' dimension %u is %llu (too large)", kbuf, d, (unsigned long long)t->ne[d]);
                break;
            }
            if (__builtin_mul_overflow(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX) {
                rc = fail_at(&r, at_ne, "tensor '%s': element count overflows", kbuf);
                break;
            }
        }
        if (rc) break;
        t->n_elements = nel;
        size_t at_type = r.pos;
        if ((rc = rd_u32(&r, &t->type, "tensor type"))) break;
        uint64_t bs = ggml_block_size(t->type);
        if (bs == 0) { rc = fail_at(&r, at_type, "tensor '%s' has unknown type %u", kbuf, t->type); break; }
        if (t->ne[0] % bs != 0) {
            rc = fail_at(&r, at_dims, "tensor '%s': row length %llu is not a multiple of the %s block size %llu", kbuf,
                         (unsigned long long)t->ne[0], ggml_type_name(t->type), (unsigned long long)bs);
            break;
        }
        uint64_t nb = ggml_row_bytes(t->type, t->ne[0]);
        if ((nb == 0 && t->ne[0] != 0) || (t->ne[0] && nel && __builtin_mul_overflow(nb, nel / t->ne[0], &nb))) {
            rc = fail_at(&r, at_dims, "tensor '%s': byte size overflows", kbuf);
            break;
        }
        t->n_bytes = nel ? nb : 0;
        size_t at_off = r.pos;
        if ((rc = rd_u64(&r, &t->offset, "tensor data offset"))) break;
        t_at[i] = at_off; /* where the offset field is, for the checks below */
    }
    if (rc) { free(t_at); return rc; }

    /* data section: starts at the next multiple of the alignment */
    uint64_t a = f->alignment;
    uint64_t data_off = (r.pos + a - 1) / a * a; /* r.pos <= SIZE_MAX and a <= 2^30: no overflow on 64-bit */
    f->data_offset = data_off;
    if (n_tensors > 0 && data_off > r.size) {
        free(t_at);
        return fail_at(&r, r.pos, "data section would start at byte offset %llu, past the end of the file (%zu bytes)",
                       (unsigned long long)data_off, r.size);
    }
    uint64_t data_size = n_tensors > 0 ? r.size - data_off : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        excerpt(t->name, kbuf, sizeof kbuf);
        if (t->offset % a != 0) {
            rc = fail_at(&r, t_at[i], "tensor '%s' data offset %llu is not a multiple of the alignment %llu", kbuf,
                         (unsigned long long)t->offset, (unsigned long long)a);
            break;
        }
        if (t->offset > data_size || t->n_bytes > data_size - t->offset) {
            rc = fail_at(&r, t_at[i],
                         "tensor '%s' data (%llu bytes at data offset %llu, file offset %llu) extends past the end of the "
                         "file (%zu bytes)",
                         kbuf, (unsigned long long)t->n_bytes, (unsigned long long)t->offset,
                         (unsigned long long)(data_off + t->offset), r.size);
            break;
        }
        t->data = r.base + data_off + t->offset;
    }
    free(t_at);
    return rc;
}

static int open_common(gguf_file *f, const char *name) {
    f->path = dr_strdup(name ? name : "<memory>");
    if (!f->path) return DR_ERR_NOMEM;
    int rc = parse(f, f->path);
    if (rc) {
        /* keep the message: cleanup does not touch the error slot */
        free_parsed(f);
        free(f->path);
        f->path = NULL;
    }
    return rc;
}

int gguf_open_memory(gguf_file *f, const void *data, size_t size, const char *name) {
    memset(f, 0, sizeof *f);
    f->map.data = data;
    f->map.size = data ? size : 0;
    f->owns_map = 0;
    int rc = open_common(f, name);
    if (rc) memset(f, 0, sizeof *f);
    return rc;
}

static int open_file(gguf_file *f, const char *path, int copy) {
    memset(f, 0, sizeof *f);
    int rc = copy ? dr_mmap_open_copy(&f->map, path) : dr_mmap_open(&f->map, path);
    if (rc) return rc;
    f->owns_map = 1;
    rc = open_common(f, path);
    if (rc) {
        dr_mmap_close(&f->map);
        memset(f, 0, sizeof *f);
    }
    return rc;
}

int gguf_open(gguf_file *f, const char *path) { return open_file(f, path, 0); }

int gguf_open_copy(gguf_file *f, const char *path) { return open_file(f, path, 1); }

void gguf_close(gguf_file *f) {
    if (!f) return;
    free_parsed(f);
    free(f->path);
    if (f->owns_map) dr_mmap_close(&f->map);
    memset(f, 0, sizeof *f);
}

/* ---- lookups ---- */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    const name_index *ix = f->index;
    if (!ix || !key) return NULL;
    int64_t i = dr_strindex_find(&ix->kv, key, strlen(key));
    return i >= 0 ? &f->kv[i] : NULL;
}

const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name) {
    const name_index *ix = f->index;
    if (!ix || !name || !f->tensors) return NULL;
    int64_t i = dr_strindex_find(&ix->t, name, strlen(name));
    return i >= 0 ? &f->tensors[i] : NULL;
}

static const char *fname(const gguf_file *f) { return f->path ? f->path : "<gguf>"; }

static int get_kv(const gguf_file *f, const char *key, const gguf_kv **out) {
    *out = gguf_find_kv(f, key);
    if (!*out) return dr_error_at(DR_ERR_FORMAT, fname(f), 0, "metadata key '%s' is missing", key);
    return DR_OK;
}

static int wrong_type(const gguf_file *f, const char *key, const gguf_kv *kv, const char *want) {
    if (kv->type == GGUF_TYPE_ARRAY)
        return dr_error_at(DR_ERR_FORMAT, fname(f), 0, "metadata key '%s' is an array of %s, expected %s", key,
                           gguf_type_name(kv->arr_type), want);
    return dr_error_at(DR_ERR_FORMAT, fname(f), 0, "metadata key '%s' has type %s, expected %s", key,
                       gguf_type_name(kv->type), want);
}

/* The value of an integer key of any width, when it fits a type whose largest value is `max`
 * (named `type` in the error) and, unless negative_ok, is not negative. max is at most
 * INT64_MAX, so any value that fits comes back in an int64, whether it was stored signed or not. */
static int get_int_fitting(const gguf_file *f, const char *key, int negative_ok, uint64_t max, const char *type,
                           int64_t *out) {
    const gguf_kv *kv;
    int64_t s = 0;
    uint64_t u = 0;
    int uns;
    int rc = get_kv(f, key, &kv);
    if (rc) return rc;
    if (!kv_int(kv, &s, &u, &uns)) return wrong_type(f, key, kv, "an integer");
    if (!uns && s < 0) {
        if (!negative_ok)
            return dr_error_at(DR_ERR_RANGE, fname(f), 0, "metadata key '%s' value %lld is negative", key, (long long)s);
        *out = s;
        return DR_OK;
    }
    if (!uns) u = (uint64_t)s;
    if (u > max)
        return dr_error_at(DR_ERR_RANGE, fname(f), 0, "metadata key '%s' value %llu does not fit in %s", key,
                           (unsigned long long)u, type);
    *out = (int64_t)u;
    return DR_OK;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    return get_int_fitting(f, key, 1, INT64_MAX, "int64", out);
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    int64_t v = 0;
    int rc = get_int_fitting(f, key, 0, UINT32_MAX, "uint32", &v);
    if (!rc) *out = (uint32_t)v;
    return rc;
}

int gguf_get_f64(const gguf_file *f, const char *key, double *out) {
    const gguf_kv *kv;
    int rc = get_kv(f, key, &kv);
    if (rc) return rc;
    if (kv->type == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, kv->data, 4); *out = v; return DR_OK; }
    if (kv->type == GGUF_TYPE_FLOAT64) { double v; memcpy(&v, kv->data, 8); *out = v; return DR_OK; }
    return wrong_type(f, key, kv, "f32 or f64");
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    double v = 0;
    int rc = gguf_get_f64(f, key, &v);
    if (!rc) *out = (float)v;
    return rc;
}

/* The entry of key, which must have exactly type `type` (named `want` in the error). */
static int get_kv_typed(const gguf_file *f, const char *key, uint32_t type, const char *want, const gguf_kv **kv) {
    int rc = get_kv(f, key, kv);
    if (!rc && (*kv)->type != type) rc = wrong_type(f, key, *kv, want);
    return rc;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv;
    int rc = get_kv_typed(f, key, GGUF_TYPE_BOOL, "bool", &kv);
    if (!rc) *out = kv->data[0] != 0;
    return rc;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv;
    int rc = get_kv_typed(f, key, GGUF_TYPE_STRING, "string", &kv);
    if (!rc) *out = kv->str;
    return rc;
}

int gguf_get_strdup(const gguf_file *f, const char *key, char **out) {
    gguf_str s = {0, NULL};
    int rc = gguf_get_str(f, key, &s);
    if (rc) return rc;
    char *p = dr_malloc((size_t)s.len + 1);
    if (!p) return DR_ERR_NOMEM;
    if (s.len) memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = 0;
    *out = p;
    return DR_OK;
}

int gguf_get_arr(const gguf_file *f, const char *key, uint32_t want_type, uint64_t *n, const void **data) {
    const gguf_kv *kv;
    int rc = get_kv(f, key, &kv);
    if (rc) return rc;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != want_type) {
        char want[64];
        snprintf(want, sizeof want, "an array of %s", gguf_type_name(want_type));
        return wrong_type(f, key, kv, want);
    }
    *n = kv->arr_len;
    *data = kv->data;
    return DR_OK;
}

int gguf_get_arr_str(const gguf_file *f, const char *key, uint64_t *n, const gguf_str **strs) {
    const gguf_kv *kv;
    int rc = get_kv(f, key, &kv);
    if (rc) return rc;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
        return wrong_type(f, key, kv, "an array of string");
    *n = kv->arr_len;
    *strs = kv->arr_strs;
    return DR_OK;
}

static void shape_str(char *buf, size_t cap, uint32_t n_dims, const uint64_t *ne) {
    size_t j = 0;
    j += (size_t)snprintf(buf + j, cap - j, "[");
    for (uint32_t d = 0; d < n_dims && j < cap; d++)
        j += (size_t)snprintf(buf + j, cap - j, "%s%llu", d ? ", " : "", (unsigned long long)ne[d]);
    if (j < cap) snprintf(buf + j, cap - j, "]");
}

int gguf_expect_tensor(const gguf_file *f, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                       const gguf_tensor_info **out) {
    const gguf_tensor_info *t = gguf_find_tensor(f, name);
    if (out) *out = NULL;
    if (!t) return dr_error_at(DR_ERR_FORMAT, fname(f), 0, "tensor '%s' is missing", name);
    if (type != GGUF_ANY_TYPE && t->type != type)
        return dr_error_at(DR_ERR_FORMAT, fname(f), 0, "tensor '%s' has type %s, expected %s", name, ggml_type_name(t->type),
                           ggml_type_name(type));
    if (ne) {
        if (n_dims > GGUF_MAX_DIMS) return dr_error(DR_ERR_ARG, "gguf_expect_tensor: n_dims %u > %d", n_dims, GGUF_MAX_DIMS);
        int same = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            uint64_t want = d < n_dims ? ne[d] : 1;
            if (t->ne[d] != want) same = 0;
        }
        if (!same) {
            char a[160], b[160];
            shape_str(a, sizeof a, t->n_dims, t->ne);
            shape_str(b, sizeof b, n_dims, ne);
            return dr_error_at(DR_ERR_FORMAT, fname(f), 0, "tensor '%s' has shape %s, expected %s", name, a, b);
        }
    }
    if (out) *out = t;
    return DR_OK;
}
