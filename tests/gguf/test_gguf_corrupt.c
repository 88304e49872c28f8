/* Hostile and corrupted GGUF input: every case must give DR_ERR_FORMAT with a message naming the
 * byte offset, never a crash (these run under ASan+UBSan too). Files are built byte by byte here,
 * recording where each field sits, so single fields can be corrupted. */
#include "harness.h"
#include "deeprec/gguf.h"
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct { uint8_t *p; size_t n, cap; } buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static size_t u32(buf *b, uint32_t v) { size_t at = b->n; put(b, &v, 4); return at; }
static size_t u64(buf *b, uint64_t v) { size_t at = b->n; put(b, &v, 8); return at; }
static size_t str(buf *b, const char *s) { size_t at = u64(b, strlen(s)); put(b, s, strlen(s)); return at; }
static void pad(buf *b, size_t a) { while (b->n % a) { uint8_t z = 0; put(b, &z, 1); } }
static void set32(buf *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }
static void set64(buf *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }

/* Field positions of the reference file. */
typedef struct {
    size_t version, n_tensors, n_kv, key0_len, align_val, arr_type, arr_len, str_arr_len, str_elem_len, bool_val;
    size_t t0_ndims, t0_ne0, t0_type, t0_off, t1_name, t1_off, t1_type, data_start, required;
} layout;

/* A small valid v3 file: 5 kv (string, u32 alignment, u32 array, string array, bool) and two tensors. */
static buf reference(layout *L) {
    buf b = {0};
    put(&b, "GGUF", 4);
    L->version = u32(&b, 3);
    L->n_tensors = u64(&b, 2);
    L->n_kv = u64(&b, 5);
    L->key0_len = str(&b, "general.architecture");
    u32(&b, GGUF_TYPE_STRING);
    str(&b, "tiny");
    str(&b, "general.alignment");
    u32(&b, GGUF_TYPE_UINT32);
    L->align_val = u32(&b, 32);
    str(&b, "a.u32");
    u32(&b, GGUF_TYPE_ARRAY);
    L->arr_type = u32(&b, GGUF_TYPE_UINT32);
    L->arr_len = u64(&b, 3);
    u32(&b, 1); u32(&b, 2); u32(&b, 3);
    str(&b, "a.str");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_STRING);
    L->str_arr_len = u64(&b, 2);
    L->str_elem_len = str(&b, "ab");
    str(&b, "cde");
    str(&b, "flag");
    u32(&b, GGUF_TYPE_BOOL);
    L->bool_val = b.n;
    put(&b, "\x01", 1);
    /* tensor 0: F32 [4, 2] at 0 (32 bytes); tensor 1: Q8_0 [32] at 32 (34 bytes) */
    str(&b, "w0");
    L->t0_ndims = u32(&b, 2);
    L->t0_ne0 = u64(&b, 4);
    u64(&b, 2);
    L->t0_type = u32(&b, GGML_TYPE_F32);
    L->t0_off = u64(&b, 0);
    L->t1_name = str(&b, "w1");
    u32(&b, 1);
    u64(&b, 32);
    L->t1_type = u32(&b, GGML_TYPE_Q8_0);
    L->t1_off = u64(&b, 32);
    pad(&b, 32);
    L->data_start = b.n;
    for (int i = 0; i < 8; i++) { float v = (float)i; put(&b, &v, 4); }
    uint16_t d = 0x3c00;
    put(&b, &d, 2);
    for (int i = 0; i < 32; i++) { int8_t q = (int8_t)(i - 16); put(&b, &q, 1); }
    L->required = b.n;
    pad(&b, 32);
    return b;
}

/* Opens an exact-size heap copy (so ASan sees any overread). */
static int open_copy(const uint8_t *p, size_t n, gguf_file *f) {
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, p, n);
    int rc = gguf_open_memory(f, c, n, "bad.gguf");
    if (rc == DR_OK) {
        /* walk everything like a consumer would */
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor_info *t = &f->tensors[i];
            if (t->n_elements <= 4096) {
                float *dst = malloc((t->n_elements ? t->n_elements : 1) * sizeof(float));
                gguf_tensor_to_f32(t, dst);
                free(dst);
            }
        }
        gguf_close(f);
    }
    free(c);
    return rc;
}

static void expect_format(buf *b, const char *what) {
    gguf_file f;
    int rc = open_copy(b->p, b->n, &f);
    CHECK_MSG(rc == DR_ERR_FORMAT, "%s: expected a format error, got %d (%s)", what, rc, dr_error_message());
    CHECK_MSG(strstr(dr_error_message(), "bad.gguf: at byte offset ") == dr_error_message(), "%s: message '%s'", what,
              dr_error_message());
}

static buf copy_of(const buf *b) {
    buf c = {malloc(b->n), b->n, b->n};
    memcpy(c.p, b->p, b->n);
    return c;
}

TEST(gguf_reference_file_is_valid) {
    layout L;
    buf b = reference(&L);
    gguf_file f;
    CHECK_OK(gguf_open_memory(&f, b.p, b.n, "ok.gguf"));
    CHECK_EQ_INT(f.n_kv, 5);
    CHECK_EQ_INT(f.n_tensors, 2);
    CHECK_EQ_INT(f.data_offset, L.data_start);
    float out[32];
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "w1"), out));
    for (int i = 0; i < 32; i++) CHECK(out[i] == (float)(i - 16));
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "w0"), out));
    for (int i = 0; i < 8; i++) CHECK(out[i] == (float)i);
    gguf_close(&f);
    /* version 2 reads the same */
    set32(&b, L.version, 2);
    CHECK_OK(gguf_open_memory(&f, b.p, b.n, "v2.gguf"));
    CHECK_EQ_INT(f.version, 2);
    gguf_close(&f);
    free(b.p);
}

TEST(gguf_truncated_at_every_byte) {
    layout L;
    buf b = reference(&L);
    gguf_file f;
    for (size_t n = 0; n < b.n; n++) {
        int rc = open_copy(b.p, n, &f);
        if (n < L.required) {
            CHECK_MSG(rc == DR_ERR_FORMAT, "truncated to %zu bytes: got %d (%s)", n, rc, dr_error_message());
            CHECK(strstr(dr_error_message(), "byte offset") != NULL);
        } else {
            CHECK_MSG(rc == DR_OK, "truncated in the final padding (%zu bytes): %s", n, dr_error_message());
        }
    }
    /* a writer-made file with every kind of metadata, truncated everywhere */
    gguf_writer *w = gguf_writer_new();
    const char *ss[] = {"x", "", "yz"};
    gguf_set_str(w, "s", "str");
    gguf_set_f64(w, "d", 1.0);
    gguf_set_arr_str(w, "as", ss, 3);
    gguf_set_arr(w, "ab", GGUF_TYPE_BOOL, (uint8_t[]){1, 0}, 2);
    gguf_set_bool(w, "b", 1);
    float x[64] = {1};
    gguf_add_tensor_from_f32(w, "q", GGML_TYPE_Q8_0, 2, (uint64_t[]){32, 2}, x);
    gguf_add_tensor_from_f32(w, "h", GGML_TYPE_F16, 1, (uint64_t[]){3}, x);
    uint8_t *out;
    size_t size;
    CHECK_OK(gguf_write_memory(w, &out, &size));
    gguf_writer_free(w);
    CHECK_OK(gguf_open_memory(&f, out, size, "w"));
    size_t required = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        size_t end = f.data_offset + f.tensors[i].offset + f.tensors[i].n_bytes;
        if (end > required) required = end;
    }
    gguf_close(&f);
    for (size_t n = 0; n < size; n++) {
        int rc = open_copy(out, n, &f);
        CHECK_MSG(rc == (n < required ? DR_ERR_FORMAT : DR_OK), "writer file truncated to %zu: %d", n, rc);
    }
    free(out);
    free(b.p);
}

TEST(gguf_bad_header) {
    layout L;
    buf b = reference(&L), c;
    c = copy_of(&b); c.p[0] = 'X'; expect_format(&c, "bad magic");
    CHECK(strstr(dr_error_message(), "magic") != NULL); free(c.p);
    c = copy_of(&b); set32(&c, L.version, 1); expect_format(&c, "version 1"); free(c.p);
    c = copy_of(&b); set32(&c, L.version, 4); expect_format(&c, "version 4"); free(c.p);
    c = copy_of(&b); set32(&c, L.version, 0); expect_format(&c, "version 0"); free(c.p);
    c = copy_of(&b); set32(&c, L.version, 0x03000000); expect_format(&c, "big endian");
    CHECK(strstr(dr_error_message(), "big-endian") != NULL); free(c.p);
    c = copy_of(&b); set64(&c, L.n_kv, 1ull << 60); expect_format(&c, "huge n_kv"); free(c.p);
    c = copy_of(&b); set64(&c, L.n_tensors, 1ull << 60); expect_format(&c, "huge n_tensors"); free(c.p);
    c = copy_of(&b); set64(&c, L.n_kv, UINT64_MAX); expect_format(&c, "max n_kv"); free(c.p);
    c = copy_of(&b); set64(&c, L.n_tensors, 3); expect_format(&c, "one tensor too many"); free(c.p);
    c = copy_of(&b); set64(&c, L.n_kv, 6); expect_format(&c, "one kv too many"); free(c.p);
    c = copy_of(&b); set64(&c, L.n_kv, 4); expect_format(&c, "one kv too few"); free(c.p);
    gguf_file f;
    CHECK_ERR(open_copy((const uint8_t *)"GGU", 3, &f), DR_ERR_FORMAT);
    CHECK_ERR(gguf_open_memory(&f, NULL, 0, "empty"), DR_ERR_FORMAT);
    free(b.p);
}

TEST(gguf_bad_metadata) {
    layout L;
    buf b = reference(&L), c;
    c = copy_of(&b); set64(&c, L.key0_len, c.n - L.key0_len - 8 + 1); expect_format(&c, "key past end");
    CHECK(strstr(dr_error_message(), "remain") != NULL); free(c.p);
    c = copy_of(&b); set64(&c, L.key0_len, UINT64_MAX); expect_format(&c, "key len max"); free(c.p);
    c = copy_of(&b); set64(&c, L.key0_len, 0); expect_format(&c, "empty key"); free(c.p);
    c = copy_of(&b); set32(&c, L.key0_len + 8 + 20, 13); expect_format(&c, "unknown value type");
    CHECK(strstr(dr_error_message(), "unknown value type 13") != NULL); free(c.p);
    c = copy_of(&b); set32(&c, L.key0_len + 8 + 20, 0xffffffffu); expect_format(&c, "unknown value type max"); free(c.p);
    c = copy_of(&b); set32(&c, L.arr_type, GGUF_TYPE_ARRAY); expect_format(&c, "nested array");
    CHECK(strstr(dr_error_message(), "nested") != NULL); free(c.p);
    c = copy_of(&b); set32(&c, L.arr_type, 77); expect_format(&c, "unknown array type"); free(c.p);
    c = copy_of(&b); set64(&c, L.arr_len, 1ull << 62); expect_format(&c, "huge array"); free(c.p);
    c = copy_of(&b); set64(&c, L.arr_len, (1ull << 62) + 3); expect_format(&c, "array n*4 wraps"); free(c.p);
    c = copy_of(&b); set64(&c, L.str_arr_len, 1ull << 60); expect_format(&c, "huge string array"); free(c.p);
    c = copy_of(&b); set64(&c, L.str_arr_len, 3); expect_format(&c, "string array one too long"); free(c.p);
    c = copy_of(&b); set64(&c, L.str_elem_len, 1ull << 40); expect_format(&c, "string element past end"); free(c.p);
    c = copy_of(&b); c.p[L.bool_val] = 2; expect_format(&c, "bool 2"); free(c.p);
    /* alignment: zero, not a power of two, wrong type */
    c = copy_of(&b); set32(&c, L.align_val, 0); expect_format(&c, "alignment 0");
    CHECK(strstr(dr_error_message(), "alignment") != NULL); free(c.p);
    c = copy_of(&b); set32(&c, L.align_val, 48); expect_format(&c, "alignment 48"); free(c.p);
    c = copy_of(&b); set32(&c, L.align_val, 0x80000000u); expect_format(&c, "alignment 2^31"); free(c.p);
    c = copy_of(&b); set32(&c, L.align_val - 4, GGUF_TYPE_FLOAT32); expect_format(&c, "alignment f32"); free(c.p);
    c = copy_of(&b); set32(&c, L.align_val - 4, GGUF_TYPE_INT32); set32(&c, L.align_val, (uint32_t)-32);
    expect_format(&c, "alignment negative"); free(c.p);
    /* alignment 16: tensor offset 32 still aligned, data start moves -> tensor data past end? no: still valid */
    c = copy_of(&b); set32(&c, L.align_val, 16);
    {
        gguf_file f;
        int rc = open_copy(c.p, c.n, &f);
        CHECK(rc == DR_OK || rc == DR_ERR_FORMAT);
    }
    free(c.p);
    /* duplicate key: rename "a.u32" to "a.str" */
    c = copy_of(&b);
    uint8_t *k = memmem(c.p, c.n, "a.u32", 5);
    CHECK(k != NULL);
    memcpy(k, "a.str", 5);
    expect_format(&c, "duplicate key");
    CHECK(strstr(dr_error_message(), "duplicate metadata key 'a.str'") != NULL);
    free(c.p);
    free(b.p);
}

TEST(gguf_bad_tensor_info) {
    layout L;
    buf b = reference(&L), c;
    c = copy_of(&b); set32(&c, L.t0_ndims, 5); expect_format(&c, "n_dims 5"); free(c.p);
    c = copy_of(&b); set32(&c, L.t0_ndims, 0xffffffffu); expect_format(&c, "n_dims max"); free(c.p);
    c = copy_of(&b); set32(&c, L.t0_type, 99); expect_format(&c, "unknown tensor type");
    CHECK(strstr(dr_error_message(), "unknown type 99") != NULL); free(c.p);
    c = copy_of(&b); set32(&c, L.t0_type, 4); expect_format(&c, "removed type 4"); free(c.p);
    c = copy_of(&b); set64(&c, L.t0_ne0, 1ull << 62); expect_format(&c, "ne overflow"); free(c.p);
    c = copy_of(&b); set64(&c, L.t0_ne0, UINT64_MAX); expect_format(&c, "ne max"); free(c.p);
    c = copy_of(&b); set64(&c, L.t0_ne0, 100); expect_format(&c, "tensor bytes past end of data"); free(c.p);
    c = copy_of(&b); set64(&c, L.t0_off, 4); expect_format(&c, "misaligned offset");
    CHECK(strstr(dr_error_message(), "not a multiple of the alignment") != NULL); free(c.p);
    c = copy_of(&b); set64(&c, L.t1_off, 64); expect_format(&c, "offset past end"); free(c.p);
    c = copy_of(&b); set64(&c, L.t1_off, UINT64_MAX - 31); expect_format(&c, "offset wraps"); free(c.p);
    c = copy_of(&b); set64(&c, L.t1_off, 1ull << 40); expect_format(&c, "offset far"); free(c.p);
    c = copy_of(&b); set32(&c, L.t1_type, GGML_TYPE_Q4_K); expect_format(&c, "row not a multiple of the block"); free(c.p);
    c = copy_of(&b); set32(&c, L.t1_type, GGML_TYPE_F64); expect_format(&c, "F64 32 elems past end"); free(c.p);
    c = copy_of(&b); set64(&c, L.t1_name, 1ull << 50); expect_format(&c, "tensor name past end"); free(c.p);
    c = copy_of(&b); set64(&c, L.t1_name, 0); expect_format(&c, "empty tensor name"); free(c.p);
    /* duplicate tensor name: rename w1 -> w0 */
    c = copy_of(&b); c.p[L.t1_name + 8 + 1] = '0'; expect_format(&c, "duplicate tensor");
    CHECK(strstr(dr_error_message(), "duplicate tensor name 'w0'") != NULL); free(c.p);
    free(b.p);
}

/* Every single-byte change and many random multi-byte changes: never a crash (ASan / UBSan). */
TEST(gguf_mutations_never_crash) {
    layout L;
    buf b = reference(&L);
    gguf_file f;
    const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x09};
    for (size_t i = 0; i < L.data_start; i++)
        for (size_t v = 0; v < sizeof vals; v++) {
            buf c = copy_of(&b);
            c.p[i] = vals[v];
            int rc = open_copy(c.p, c.n, &f);
            CHECK(rc == DR_OK || rc == DR_ERR_FORMAT);
            free(c.p);
        }
    dr_rng r;
    dr_rng_seed(&r, 99);
    for (int it = 0; it < 3000; it++) {
        buf c = copy_of(&b);
        int k = 1 + (int)dr_rng_below(&r, 6);
        for (int j = 0; j < k; j++) c.p[dr_rng_below(&r, L.data_start)] = (uint8_t)dr_rng_u64(&r);
        int rc = open_copy(c.p, c.n - dr_rng_below(&r, 3), &f);
        CHECK(rc == DR_OK || rc == DR_ERR_FORMAT);
        free(c.p);
    }
    free(b.p);
}

/* Opening reads only the metadata: a 1 GiB sparse tensor file opens without touching its data. */
TEST(gguf_open_large_sparse_file) {
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 1);
    u64(&b, 1);
    str(&b, "general.name");
    u32(&b, GGUF_TYPE_STRING);
    str(&b, "big");
    str(&b, "big.weight");
    u32(&b, 2);
    u64(&b, 1 << 16);
    u64(&b, 1 << 12);
    u32(&b, GGML_TYPE_F32);
    u64(&b, 0);
    pad(&b, 32);
    const char *path = dr_test_path(dr_test_tmpdir(), "big.gguf");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, b.p, b.n) == (ssize_t)b.n);
    off_t total = (off_t)b.n + ((off_t)1 << 30);
    if (ftruncate(fd, total) != 0) { close(fd); free(b.p); SKIP("cannot create a 1 GiB sparse file"); }
    close(fd);
    double t0 = dr_now();
    gguf_file f;
    CHECK_OK(gguf_open(&f, path));
    double dt = dr_now() - t0;
    CHECK_EQ_INT(f.tensors[0].n_bytes, 1ull << 30);
    gguf_close(&f);
    printf("  (opened a 1 GiB file in %.3f ms)\n", dt * 1e3);
    /* one byte short: format error naming the file */
    CHECK(truncate(path, total - 1) == 0);
    CHECK_ERR(gguf_open(&f, path), DR_ERR_FORMAT);
    CHECK(strncmp(dr_error_message(), path, strlen(path)) == 0);
    unlink(path);
    free(b.p);
}
