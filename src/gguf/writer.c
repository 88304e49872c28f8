/* GGUF v3 writer: metadata and tensors kept in insertion order; output is streamed to an atomic
 * file (dr_afile) or to a heap buffer. Tensor data starts at a multiple of the alignment and each
 * tensor is padded to it (as ggml does). */
#include "deeprec/gguf.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;
    uint32_t type;
    uint8_t *val; /* encoded value as it appears after the type tag */
    size_t val_len;
} wkv;

typedef struct {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t n_bytes;
    const void *data;
    void *owned;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

gguf_writer *gguf_writer_new(void) { return dr_calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { free(w->kv[i].key); free(w->kv[i].val); }
    for (size_t i = 0; i < w->n_t; i++) { free(w->t[i].name); free(w->t[i].owned); }
    free(w->kv);
    free(w->t);
    free(w);
}

/* Stores (takes ownership of) an encoded value under key, replacing an existing value in place. */
static int put_kv(gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t val_len) {
    if (!w || !key || !*key) { free(val); return dr_error(DR_ERR_ARG, "gguf: metadata key must be a non-empty string"); }
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_len = val_len;
            return DR_OK;
        }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *nk = dr_realloc(w->kv, nc, sizeof *nk);
        if (!nk) { free(val); return DR_ERR_NOMEM; }
        w->kv = nk;
        w->cap_kv = nc;
    }
    char *k = dr_strdup(key);
    if (!k) { free(val); return DR_ERR_NOMEM; }
    w->kv[w->n_kv++] = (wkv){k, type, val, val_len};
    return DR_OK;
}

static int put_scalar(gguf_writer *w, const char *key, uint32_t type, const void *v) {
    size_t n = gguf_type_size(type);
    uint8_t *val = dr_malloc(n);
    if (!val) return DR_ERR_NOMEM;
    memcpy(val, v, n);
    return put_kv(w, key, type, val, n);
}

int gguf_set_u8(gguf_writer *w, const char *key, uint8_t v) { return put_scalar(w, key, GGUF_TYPE_UINT8, &v); }
int gguf_set_i8(gguf_writer *w, const char *key, int8_t v) { return put_scalar(w, key, GGUF_TYPE_INT8, &v); }
int gguf_set_u16(gguf_writer *w, const char *key, uint16_t v) { return put_scalar(w, key, GGUF_TYPE_UINT16, &v); }
int gguf_set_i16(gguf_writer *w, const char *key, int16_t v) { return put_scalar(w, key, GGUF_TYPE_INT16, &v); }
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { return put_scalar(w, key, GGUF_TYPE_UINT32, &v); }
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { return put_scalar(w, key, GGUF_TYPE_INT32, &v); }
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v) { return put_scalar(w, key, GGUF_TYPE_UINT64, &v); }
int gguf_set_i64(gguf_writer *w, const char *key, int64_t v) { return put_scalar(w, key, GGUF_TYPE_INT64, &v); }
int gguf_set_f32(gguf_writer *w, const char *key, float v) { return put_scalar(w, key, GGUF_TYPE_FLOAT32, &v); }
int gguf_set_f64(gguf_writer *w, const char *key, double v) { return put_scalar(w, key, GGUF_TYPE_FLOAT64, &v); }
int gguf_set_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return put_scalar(w, key, GGUF_TYPE_BOOL, &b);
}

int gguf_set_strn(gguf_writer *w, const char *key, const char *v, size_t len) {
    if (!v && len) return dr_error(DR_ERR_ARG, "gguf: NULL string for key '%s'", key ? key : "");
    size_t n;
    if (__builtin_add_overflow(len, (size_t)8, &n)) return dr_error(DR_ERR_NOMEM, "gguf: string too long");
    uint8_t *val = dr_malloc(n);
    if (!val) return DR_ERR_NOMEM;
    uint64_t l = len;
    memcpy(val, &l, 8);
    if (len) memcpy(val + 8, v, len);
    return put_kv(w, key, GGUF_TYPE_STRING, val, n);
}

int gguf_set_str(gguf_writer *w, const char *key, const char *v) {
    if (!v) return dr_error(DR_ERR_ARG, "gguf: NULL string for key '%s'", key ? key : "");
    return gguf_set_strn(w, key, v, strlen(v));
}

int gguf_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n) {
    size_t es = gguf_type_size(elem_type);
    if (es == 0)
        return dr_error(DR_ERR_ARG, "gguf: key '%s': gguf_set_arr needs a numeric element type, got %s", key ? key : "",
                        gguf_type_name(elem_type));
    size_t nb, total;
    if (n > SIZE_MAX || !dr_mul_ok((size_t)n, es, &nb) || __builtin_add_overflow(nb, (size_t)12, &total))
        return dr_error(DR_ERR_NOMEM, "gguf: key '%s': array too large", key ? key : "");
    if (n && !data) return dr_error(DR_ERR_ARG, "gguf: key '%s': NULL array data", key ? key : "");
    if (elem_type == GGUF_TYPE_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return dr_error(DR_ERR_ARG, "gguf: key '%s': bool array element %llu is not 0 or 1", key ? key : "",
                                (unsigned long long)i);
    uint8_t *val = dr_malloc(total);
    if (!val) return DR_ERR_NOMEM;
    memcpy(val, &elem_type, 4);
    memcpy(val + 4, &n, 8);
    if (nb) memcpy(val + 12, data, nb);
    return put_kv(w, key, GGUF_TYPE_ARRAY, val, total);
}

int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    if (n && !strs) return dr_error(DR_ERR_ARG, "gguf: key '%s': NULL string array", key ? key : "");
    size_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) return dr_error(DR_ERR_ARG, "gguf: key '%s': string %llu is NULL", key ? key : "", (unsigned long long)i);
        if (__builtin_add_overflow(total, strlen(strs[i]) + 8, &total))
            return dr_error(DR_ERR_NOMEM, "gguf: key '%s': array too large", key ? key : "");
    }
    uint8_t *val = dr_malloc(total);
    if (!val) return DR_ERR_NOMEM;
    uint32_t et = GGUF_TYPE_STRING;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    size_t pos = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = strlen(strs[i]);
        memcpy(val + pos, &l, 8);
        memcpy(val + pos + 8, strs[i], (size_t)l);
        pos += 8 + (size_t)l;
    }
    return put_kv(w, key, GGUF_TYPE_ARRAY, val, total);
}

/* ---- tensors ---- */
static int check_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                        uint64_t *n_bytes, uint64_t *n_el) {
    if (!w || !name || !*name) return dr_error(DR_ERR_ARG, "gguf: tensor name must be a non-empty string");
    if (n_dims > GGUF_MAX_DIMS) return dr_error(DR_ERR_ARG, "gguf: tensor '%s' has %u dimensions (at most %d)", name, n_dims, GGUF_MAX_DIMS);
    if (n_dims && !ne) return dr_error(DR_ERR_ARG, "gguf: tensor '%s': NULL shape", name);
    uint64_t bs = ggml_block_size(type);
    if (!bs) return dr_error(DR_ERR_ARG, "gguf: tensor '%s': unknown tensor type %u", name, type);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(nel, ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return dr_error(DR_ERR_ARG, "gguf: tensor '%s': element count overflows", name);
    uint64_t ne0 = n_dims ? ne[0] : 1;
    if (ne0 % bs) return dr_error(DR_ERR_ARG, "gguf: tensor '%s': row length %llu is not a multiple of the %s block size %llu",
                                  name, (unsigned long long)ne0, ggml_type_name(type), (unsigned long long)bs);
    uint64_t nb = 0;
    if (nel) {
        nb = ggml_row_bytes(type, ne0);
        if (nb == 0 || __builtin_mul_overflow(nb, nel / ne0, &nb) || nb > (uint64_t)SIZE_MAX)
            return dr_error(DR_ERR_ARG, "gguf: tensor '%s': byte size overflows", name);
    }
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return dr_error(DR_ERR_ARG, "gguf: duplicate tensor name '%s'", name);
    *n_bytes = nb;
    *n_el = nel;
    return DR_OK;
}

static int push_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                       uint64_t n_bytes, const void *data, void *owned) {
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *nt = dr_realloc(w->t, nc, sizeof *nt);
        if (!nt) { free(owned); return DR_ERR_NOMEM; }
        w->t = nt;
        w->cap_t = nc;
    }
    char *nm = dr_strdup(name);
    if (!nm) { free(owned); return DR_ERR_NOMEM; }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
    t->n_bytes = n_bytes;
    t->data = data;
    t->owned = owned;
    return DR_OK;
}

static int add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                      const void *data, int borrow) {
    uint64_t nb = 0, nel = 0;
    int rc = check_tensor(w, name, type, n_dims, ne, &nb, &nel);
    if (rc) return rc;
    if (nb && !data) return dr_error(DR_ERR_ARG, "gguf: tensor '%s': NULL data", name);
    if (borrow || nb == 0) return push_tensor(w, name, type, n_dims, ne, nb, nb ? data : NULL, NULL);
    void *copy = dr_malloc((size_t)nb);
    if (!copy) return DR_ERR_NOMEM;
    memcpy(copy, data, (size_t)nb);
    return push_tensor(w, name, type, n_dims, ne, nb, copy, copy);
}

int gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                    const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, 0);
}

int gguf_add_tensor_borrowed(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                             const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, 1);
}

int gguf_add_tensor_from_f32(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                             const float *data) {
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16 && type != GGML_TYPE_Q8_0)
        return dr_error(DR_ERR_UNSUPPORTED, "gguf: tensor '%s': cannot convert f32 to %s (F32, F16, BF16, Q8_0 only)",
                        name ? name : "", ggml_type_name(type));
    uint64_t nb = 0, nel = 0;
    int rc = check_tensor(w, name, type, n_dims, ne, &nb, &nel);
    if (rc) return rc;
    if (nb && !data) return dr_error(DR_ERR_ARG, "gguf: tensor '%s': NULL data", name);
    if (nb == 0) return push_tensor(w, name, type, n_dims, ne, 0, NULL, NULL);
    uint8_t *out = dr_malloc((size_t)nb);
    if (!out) return DR_ERR_NOMEM;
    switch (type) {
    case GGML_TYPE_F32: memcpy(out, data, (size_t)nb); break;
    case GGML_TYPE_F16:
        for (uint64_t i = 0; i < nel; i++) { uint16_t h = dr_f32_to_f16(data[i]); memcpy(out + 2 * i, &h, 2); }
        break;
    case GGML_TYPE_BF16:
        for (uint64_t i = 0; i < nel; i++) { uint16_t h = dr_f32_to_bf16(data[i]); memcpy(out + 2 * i, &h, 2); }
        break;
    default: dr_quantize_q8_0(data, out, nel); break;
    }
    return push_tensor(w, name, type, n_dims, ne, nb, out, out);
}

/* ---- output ---- */
typedef struct {
    int (*write)(void *ctx, const void *p, size_t n);
    void *ctx;
} sink;

typedef struct { uint8_t *buf; size_t cap, len; } mem_ctx;

static int count_write(void *ctx, const void *p, size_t n) {
    mem_ctx *m = ctx;
    if (__builtin_add_overflow(m->len, n, &m->len)) return dr_error(DR_ERR_NOMEM, "gguf: output too large");
    return DR_OK;
}

static int mem_write(void *ctx, const void *p, size_t n) {
    mem_ctx *m = ctx;
    if (n > m->cap - m->len) return dr_error(DR_ERR_INTERNAL, "gguf: output size changed while writing");
    if (n) memcpy(m->buf + m->len, p, n);
    m->len += n;
    return DR_OK;
}

typedef struct { FILE *fp; const char *path; } file_ctx;

static int file_write(void *ctx, const void *p, size_t n) {
    file_ctx *fc = ctx;
    if (n && fwrite(p, 1, n, fc->fp) != n) return dr_error_at(DR_ERR_IO, fc->path, 0, "write failed: %s", strerror(errno));
    return DR_OK;
}

static int get_alignment(const gguf_writer *w, uint64_t *out) {
    *out = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        const wkv *k = &w->kv[i];
        uint64_t v = 0;
        int64_t sv = 0;
        switch (k->type) {
        case GGUF_TYPE_UINT8: v = k->val[0]; break;
        case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, k->val, 2); v = x; break; }
        case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, k->val, 4); v = x; break; }
        case GGUF_TYPE_UINT64: memcpy(&v, k->val, 8); break;
        case GGUF_TYPE_INT8: sv = (int8_t)k->val[0]; v = sv > 0 ? (uint64_t)sv : 0; break;
        case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, k->val, 2); v = x > 0 ? (uint64_t)x : 0; break; }
        case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, k->val, 4); v = x > 0 ? (uint64_t)x : 0; break; }
        case GGUF_TYPE_INT64: memcpy(&sv, k->val, 8); v = sv > 0 ? (uint64_t)sv : 0; break;
        default: return dr_error(DR_ERR_ARG, "gguf: general.alignment must be an integer (u32), not %s", gguf_type_name(k->type));
        }
        if (v == 0 || (v & (v - 1)) || v > (1ull << 30))
            return dr_error(DR_ERR_ARG, "gguf: general.alignment %llu is not a power of two in [1, 2^30]", (unsigned long long)v);
        *out = v;
    }
    return DR_OK;
}

static int emit_padding(sink *s, uint64_t pos, uint64_t align) {
    static const uint8_t zeros[256];
    uint64_t pad = (align - pos % align) % align;
    while (pad) {
        size_t n = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        int rc = s->write(s->ctx, zeros, n);
        if (rc) return rc;
        pad -= n;
    }
    return DR_OK;
}

#define EMIT(p, n) do { int rc_ = s->write(s->ctx, (p), (n)); if (rc_) return rc_; pos += (n); } while (0)

static int emit(const gguf_writer *w, sink *s) {
    uint64_t align;
    int rc = get_alignment(w, &align);
    if (rc) return rc;
    uint64_t pos = 0;
    uint32_t version = 3;
    uint64_t n_t = w->n_t, n_kv = w->n_kv;
    EMIT("GGUF", 4);
    EMIT(&version, 4);
    EMIT(&n_t, 8);
    EMIT(&n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        EMIT(&kl, 8);
        EMIT(w->kv[i].key, (size_t)kl);
        EMIT(&w->kv[i].type, 4);
        EMIT(w->kv[i].val, w->kv[i].val_len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        EMIT(&nl, 8);
        EMIT(t->name, (size_t)nl);
        EMIT(&t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) EMIT(&t->ne[d], 8);
        EMIT(&t->type, 4);
        EMIT(&off, 8);
        if (__builtin_add_overflow(off, t->n_bytes + (align - t->n_bytes % align) % align, &off))
            return dr_error(DR_ERR_NOMEM, "gguf: output too large");
    }
    if ((rc = emit_padding(s, pos, align))) return rc;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (t->n_bytes && (rc = s->write(s->ctx, t->data, (size_t)t->n_bytes))) return rc;
        if ((rc = emit_padding(s, t->n_bytes, align))) return rc;
    }
    return DR_OK;
}

int gguf_write_memory(gguf_writer *w, uint8_t **out, size_t *size) {
    *out = NULL;
    *size = 0;
    if (!w) return dr_error(DR_ERR_ARG, "gguf_write_memory: NULL writer");
    mem_ctx m = {NULL, 0, 0};
    sink s = {count_write, &m};
    int rc = emit(w, &s);
    if (rc) return rc;
    m.buf = dr_malloc(m.len);
    if (!m.buf) return DR_ERR_NOMEM;
    m.cap = m.len;
    m.len = 0;
    s.write = mem_write;
    rc = emit(w, &s);
    if (rc) { free(m.buf); return rc; }
    *out = m.buf;
    *size = m.len;
    return DR_OK;
}

int gguf_write(gguf_writer *w, const char *path) {
    if (!w || !path) return dr_error(DR_ERR_ARG, "gguf_write: NULL writer or path");
    uint64_t align;
    int rc = get_alignment(w, &align); /* fail before creating anything */
    if (rc) return dr_error_context("%s", path);
    dr_afile af;
    if ((rc = dr_afile_open(&af, path))) return rc;
    file_ctx fc = {af.fp, path};
    sink s = {file_write, &fc};
    rc = emit(w, &s);
    if (rc) {
        dr_afile_abort(&af);
        return rc;
    }
    return dr_afile_commit(&af);
}
