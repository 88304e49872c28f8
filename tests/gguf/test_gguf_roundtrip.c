/* GGUF writer -> reader round trips: every metadata type, every stored tensor type, getters,
 * insertion order, alignment, atomic file writes. */
#include "harness.h"
#include "deeprec/gguf.h"
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const STRS[] = {"", "hello", "ünïcödé ✓", "a longer string with spaces and \"quotes\""};

static void fill_writer(gguf_writer *w) {
    CHECK_OK(gguf_set_str(w, "general.architecture", "test"));
    CHECK_OK(gguf_set_u8(w, "t.u8", 200));
    CHECK_OK(gguf_set_i8(w, "t.i8", -100));
    CHECK_OK(gguf_set_u16(w, "t.u16", 60000));
    CHECK_OK(gguf_set_i16(w, "t.i16", -30000));
    CHECK_OK(gguf_set_u32(w, "t.u32", 4000000000u));
    CHECK_OK(gguf_set_i32(w, "t.i32", -2000000000));
    CHECK_OK(gguf_set_u64(w, "t.u64", 18000000000000000000ull));
    CHECK_OK(gguf_set_i64(w, "t.i64", -9000000000000000000ll));
    CHECK_OK(gguf_set_f32(w, "t.f32", 3.25f));
    CHECK_OK(gguf_set_f64(w, "t.f64", -1e300));
    CHECK_OK(gguf_set_bool(w, "t.bool", 1));
    CHECK_OK(gguf_set_bool(w, "t.bool0", 0));
    CHECK_OK(gguf_set_str(w, "t.str", "hello world"));
    CHECK_OK(gguf_set_str(w, "t.empty", ""));
    CHECK_OK(gguf_set_strn(w, "t.nul", "a\0b", 3));
    uint8_t au8[] = {1, 2, 255};
    int8_t ai8[] = {-1, 0, 127};
    uint16_t au16[] = {1, 65535};
    int16_t ai16[] = {-32768, 32767};
    uint32_t au32[] = {0, 1, 4294967295u};
    int32_t ai32[] = {-5, 7};
    uint64_t au64[] = {1ull << 63};
    int64_t ai64[] = {-1, 1ll << 62};
    float af32[] = {1.5f, -2.25f, 0.0f};
    double af64[] = {3.141592653589793};
    uint8_t abool[] = {1, 0, 1, 1};
    CHECK_OK(gguf_set_arr(w, "a.u8", GGUF_TYPE_UINT8, au8, 3));
    CHECK_OK(gguf_set_arr(w, "a.i8", GGUF_TYPE_INT8, ai8, 3));
    CHECK_OK(gguf_set_arr(w, "a.u16", GGUF_TYPE_UINT16, au16, 2));
    CHECK_OK(gguf_set_arr(w, "a.i16", GGUF_TYPE_INT16, ai16, 2));
    CHECK_OK(gguf_set_arr(w, "a.u32", GGUF_TYPE_UINT32, au32, 3));
    CHECK_OK(gguf_set_arr(w, "a.i32", GGUF_TYPE_INT32, ai32, 2));
    CHECK_OK(gguf_set_arr(w, "a.u64", GGUF_TYPE_UINT64, au64, 1));
    CHECK_OK(gguf_set_arr(w, "a.i64", GGUF_TYPE_INT64, ai64, 2));
    CHECK_OK(gguf_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, af32, 3));
    CHECK_OK(gguf_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, af64, 1));
    CHECK_OK(gguf_set_arr(w, "a.bool", GGUF_TYPE_BOOL, abool, 4));
    CHECK_OK(gguf_set_arr(w, "a.empty", GGUF_TYPE_INT32, NULL, 0));
    CHECK_OK(gguf_set_arr_str(w, "a.str", STRS, 4));
    CHECK_OK(gguf_set_arr_str(w, "a.str_empty", NULL, 0));
}

#define NT 11
static const uint32_t TTYPES[NT] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_I8,
                                    GGML_TYPE_I16, GGML_TYPE_I32, GGML_TYPE_I64, GGML_TYPE_F64, GGML_TYPE_Q4_K,
                                    GGML_TYPE_Q6_K};
static const uint64_t TNE[NT][4] = {{5, 3}, {7}, {3, 2, 2}, {64, 2}, {9}, {4, 4}, {1, 1, 1, 3}, {2}, {3, 1}, {256}, {256, 2}};
static const uint32_t TDIMS[NT] = {2, 1, 3, 2, 1, 2, 4, 1, 2, 1, 2};

static uint8_t *tensor_bytes(int i, uint64_t *nb) {
    uint64_t nel = 1;
    for (uint32_t d = 0; d < TDIMS[i]; d++) nel *= TNE[i][d];
    *nb = ggml_row_bytes(TTYPES[i], TNE[i][0]) * (nel / TNE[i][0]);
    uint8_t *p = malloc(*nb);
    for (uint64_t k = 0; k < *nb; k++) p[k] = (uint8_t)(k * 37 + i * 11 + 1);
    if (TTYPES[i] == GGML_TYPE_Q8_0 || TTYPES[i] == GGML_TYPE_F16 || TTYPES[i] == GGML_TYPE_Q4_K) {
        /* keep fp16 scales finite: clear the exponent's top bit of every 16-bit word */
        for (uint64_t k = 1; k < *nb; k += 2) p[k] &= 0x3f;
    }
    return p;
}

static void check_file(const gguf_file *f, uint64_t align) {
    CHECK_EQ_INT(f->version, 3);
    CHECK_EQ_INT(f->alignment, align);
    CHECK_EQ_INT(f->data_offset % align, 0);
    uint32_t u32;
    int64_t i64;
    float f32;
    double f64;
    int b;
    gguf_str s;
    char *dup;
    CHECK_OK(gguf_get_u32(f, "t.u8", &u32)); CHECK_EQ_INT(u32, 200);
    CHECK_OK(gguf_get_i64(f, "t.i8", &i64)); CHECK_EQ_INT(i64, -100);
    CHECK_OK(gguf_get_u32(f, "t.u16", &u32)); CHECK_EQ_INT(u32, 60000);
    CHECK_OK(gguf_get_i64(f, "t.i16", &i64)); CHECK_EQ_INT(i64, -30000);
    CHECK_OK(gguf_get_u32(f, "t.u32", &u32)); CHECK(u32 == 4000000000u);
    CHECK_OK(gguf_get_i64(f, "t.i32", &i64)); CHECK_EQ_INT(i64, -2000000000);
    CHECK_ERR(gguf_get_i64(f, "t.u64", &i64), DR_ERR_RANGE);
    CHECK_ERR(gguf_get_u32(f, "t.i8", &u32), DR_ERR_RANGE);
    CHECK_ERR(gguf_get_u32(f, "t.i64", &u32), DR_ERR_RANGE);
    const gguf_kv *kv = gguf_find_kv(f, "t.u64");
    CHECK(kv && kv->type == GGUF_TYPE_UINT64);
    uint64_t u64;
    memcpy(&u64, kv->data, 8);
    CHECK(u64 == 18000000000000000000ull);
    CHECK_OK(gguf_get_i64(f, "t.i64", &i64)); CHECK(i64 == -9000000000000000000ll);
    CHECK_OK(gguf_get_f32(f, "t.f32", &f32)); CHECK(f32 == 3.25f);
    CHECK_OK(gguf_get_f64(f, "t.f64", &f64)); CHECK(f64 == -1e300);
    CHECK_OK(gguf_get_f64(f, "t.f32", &f64)); CHECK(f64 == 3.25);
    CHECK_OK(gguf_get_bool(f, "t.bool", &b)); CHECK_EQ_INT(b, 1);
    CHECK_OK(gguf_get_bool(f, "t.bool0", &b)); CHECK_EQ_INT(b, 0);
    CHECK_OK(gguf_get_str(f, "t.str", &s)); CHECK(gguf_str_eq(s, "hello world"));
    CHECK_OK(gguf_get_str(f, "t.empty", &s)); CHECK_EQ_INT(s.len, 0);
    CHECK_OK(gguf_get_str(f, "t.nul", &s)); CHECK(s.len == 3 && !memcmp(s.ptr, "a\0b", 3));
    CHECK_OK(gguf_get_strdup(f, "general.architecture", &dup)); CHECK_STR(dup, "test"); free(dup);
    /* wrong type / missing: errors naming the key */
    CHECK_ERR(gguf_get_str(f, "t.u8", &s), DR_ERR_FORMAT);
    CHECK(strstr(dr_error_message(), "t.u8") != NULL);
    CHECK_ERR(gguf_get_u32(f, "no.such.key", &u32), DR_ERR_FORMAT);
    CHECK(strstr(dr_error_message(), "no.such.key") != NULL);
    CHECK_ERR(gguf_get_f32(f, "t.str", &f32), DR_ERR_FORMAT);
    CHECK_ERR(gguf_get_bool(f, "t.u8", &b), DR_ERR_FORMAT);

    uint64_t n;
    const void *data;
    CHECK_OK(gguf_get_arr(f, "a.u8", GGUF_TYPE_UINT8, &n, &data)); CHECK(n == 3 && !memcmp(data, (uint8_t[]){1, 2, 255}, 3));
    CHECK_OK(gguf_get_arr(f, "a.i8", GGUF_TYPE_INT8, &n, &data)); CHECK(n == 3 && !memcmp(data, (int8_t[]){-1, 0, 127}, 3));
    CHECK_OK(gguf_get_arr(f, "a.u16", GGUF_TYPE_UINT16, &n, &data)); CHECK(n == 2 && !memcmp(data, (uint16_t[]){1, 65535}, 4));
    CHECK_OK(gguf_get_arr(f, "a.i16", GGUF_TYPE_INT16, &n, &data)); CHECK(n == 2 && !memcmp(data, (int16_t[]){-32768, 32767}, 4));
    CHECK_OK(gguf_get_arr(f, "a.u32", GGUF_TYPE_UINT32, &n, &data));
    CHECK(n == 3 && !memcmp(data, (uint32_t[]){0, 1, 4294967295u}, 12));
    CHECK_OK(gguf_get_arr(f, "a.i32", GGUF_TYPE_INT32, &n, &data)); CHECK(n == 2 && !memcmp(data, (int32_t[]){-5, 7}, 8));
    CHECK_OK(gguf_get_arr(f, "a.u64", GGUF_TYPE_UINT64, &n, &data)); CHECK(n == 1 && !memcmp(data, (uint64_t[]){1ull << 63}, 8));
    CHECK_OK(gguf_get_arr(f, "a.i64", GGUF_TYPE_INT64, &n, &data)); CHECK(n == 2 && !memcmp(data, (int64_t[]){-1, 1ll << 62}, 16));
    CHECK_OK(gguf_get_arr(f, "a.f32", GGUF_TYPE_FLOAT32, &n, &data));
    CHECK(n == 3 && !memcmp(data, (float[]){1.5f, -2.25f, 0.0f}, 12));
    CHECK_OK(gguf_get_arr(f, "a.f64", GGUF_TYPE_FLOAT64, &n, &data));
    CHECK(n == 1 && !memcmp(data, (double[]){3.141592653589793}, 8));
    CHECK_OK(gguf_get_arr(f, "a.bool", GGUF_TYPE_BOOL, &n, &data)); CHECK(n == 4 && !memcmp(data, (uint8_t[]){1, 0, 1, 1}, 4));
    CHECK_OK(gguf_get_arr(f, "a.empty", GGUF_TYPE_INT32, &n, &data)); CHECK_EQ_INT(n, 0);
    CHECK_ERR(gguf_get_arr(f, "a.u8", GGUF_TYPE_INT8, &n, &data), DR_ERR_FORMAT);
    const gguf_str *strs;
    CHECK_OK(gguf_get_arr_str(f, "a.str", &n, &strs));
    CHECK_EQ_INT(n, 4);
    for (int i = 0; i < 4; i++) CHECK(gguf_str_eq(strs[i], STRS[i]));
    CHECK_OK(gguf_get_arr_str(f, "a.str_empty", &n, &strs)); CHECK_EQ_INT(n, 0);
    CHECK_ERR(gguf_get_arr_str(f, "a.u8", &n, &strs), DR_ERR_FORMAT);

    /* insertion order is kept */
    CHECK(gguf_str_eq(f->kv[0].key, "general.architecture"));
    CHECK(gguf_str_eq(f->kv[1].key, "t.u8"));
    CHECK(gguf_str_eq(f->kv[f->n_kv - 1].key, "a.str_empty") || gguf_str_eq(f->kv[f->n_kv - 1].key, "general.alignment"));

    CHECK_EQ_INT(f->n_tensors, NT);
    for (int i = 0; i < NT; i++) {
        char name[32];
        snprintf(name, sizeof name, "tensor.%d", i);
        const gguf_tensor_info *t;
        CHECK_OK(gguf_expect_tensor(f, name, TTYPES[i], TDIMS[i], TNE[i], &t));
        CHECK(gguf_str_eq(f->tensors[i].name, name)); /* order */
        CHECK_EQ_INT(t->n_dims, TDIMS[i]);
        CHECK_EQ_INT(t->offset % align, 0);
        CHECK_EQ_INT(((const uint8_t *)t->data - f->map.data) % align, 0);
        uint64_t nb;
        uint8_t *want = tensor_bytes(i, &nb);
        CHECK_EQ_INT(t->n_bytes, nb);
        CHECK(memcmp(t->data, want, nb) == 0);
        free(want);
    }
    CHECK_ERR(gguf_expect_tensor(f, "tensor.0", GGML_TYPE_F16, 2, TNE[0], NULL), DR_ERR_FORMAT);
    CHECK(strstr(dr_error_message(), "tensor.0") && strstr(dr_error_message(), "F16"));
    CHECK_ERR(gguf_expect_tensor(f, "tensor.0", GGML_TYPE_F32, 2, (uint64_t[]){3, 5}, NULL), DR_ERR_FORMAT);
    CHECK(strstr(dr_error_message(), "[5, 3]") != NULL);
    CHECK_ERR(gguf_expect_tensor(f, "missing", GGUF_ANY_TYPE, 0, NULL, NULL), DR_ERR_FORMAT);
    CHECK_OK(gguf_expect_tensor(f, "tensor.8", GGUF_ANY_TYPE, 1, (uint64_t[]){3}, NULL)); /* trailing 1 */
    CHECK(gguf_find_tensor(f, "tensor.1") == &f->tensors[1]);
    CHECK(gguf_find_tensor(f, "tensor.") == NULL);
}

static gguf_writer *make_writer(uint8_t **bufs) {
    gguf_writer *w = gguf_writer_new();
    CHECK(w);
    fill_writer(w);
    for (int i = 0; i < NT; i++) {
        char name[32];
        snprintf(name, sizeof name, "tensor.%d", i);
        uint64_t nb;
        bufs[i] = tensor_bytes(i, &nb);
        if (i % 2) CHECK_OK(gguf_add_tensor_borrowed(w, name, TTYPES[i], TDIMS[i], TNE[i], bufs[i]));
        else CHECK_OK(gguf_add_tensor(w, name, TTYPES[i], TDIMS[i], TNE[i], bufs[i]));
    }
    return w;
}

TEST(gguf_roundtrip_memory_every_type) {
    uint8_t *bufs[NT];
    gguf_writer *w = make_writer(bufs);
    uint8_t *out;
    size_t size;
    CHECK_OK(gguf_write_memory(w, &out, &size));
    gguf_file f;
    CHECK_OK(gguf_open_memory(&f, out, size, "mem"));
    check_file(&f, 32);
    gguf_close(&f);
    free(out);

    /* custom alignment honoured; setting an existing key replaces it in place */
    CHECK_OK(gguf_set_u32(w, "general.alignment", 64));
    CHECK_OK(gguf_set_u8(w, "t.u8", 7));
    CHECK_OK(gguf_set_u8(w, "t.u8", 200));
    CHECK_OK(gguf_write_memory(w, &out, &size));
    CHECK_OK(gguf_open_memory(&f, out, size, "mem64"));
    check_file(&f, 64);
    gguf_close(&f);
    free(out);

    /* bad alignment values are refused by the writer */
    CHECK_OK(gguf_set_u32(w, "general.alignment", 48));
    CHECK_ERR(gguf_write_memory(w, &out, &size), DR_ERR_ARG);
    CHECK_OK(gguf_set_str(w, "general.alignment", "32"));
    CHECK_ERR(gguf_write_memory(w, &out, &size), DR_ERR_ARG);
    gguf_writer_free(w);
    for (int i = 0; i < NT; i++) free(bufs[i]);
}

TEST(gguf_roundtrip_file_atomic) {
    uint8_t *bufs[NT];
    gguf_writer *w = make_writer(bufs);
    const char *dir = dr_test_tmpdir();
    const char *path = dr_test_path(dir, "rt.gguf");
    CHECK_OK(gguf_write(w, path));
    gguf_file f;
    CHECK_OK(gguf_open(&f, path));
    CHECK_STR(f.path, path);
    check_file(&f, 32);
    gguf_close(&f);
    gguf_close(&f); /* idempotent */

    /* a failing write leaves the old file untouched and no temporary behind */
    struct stat st0, st1;
    CHECK(stat(path, &st0) == 0);
    CHECK_OK(gguf_set_u32(w, "general.alignment", 3));
    CHECK(gguf_write(w, path) != DR_OK);
    CHECK(stat(path, &st1) == 0 && st1.st_size == st0.st_size);
    CHECK_ERR(gguf_write(w, dr_test_path(dir, "nope/x.gguf")), DR_ERR_ARG);
    CHECK_OK(gguf_set_u32(w, "general.alignment", 32));
    CHECK_ERR(gguf_write(w, dr_test_path(dir, "nope/x.gguf")), DR_ERR_IO);
    CHECK(!dr_file_exists(dr_test_path(dir, "nope/x.gguf")));
    gguf_writer_free(w);
    for (int i = 0; i < NT; i++) free(bufs[i]);
    CHECK_ERR(gguf_open(&f, dr_test_path(dir, "missing.gguf")), DR_ERR_IO);
}

TEST(gguf_writer_rejects_bad_input) {
    gguf_writer *w = gguf_writer_new();
    float x[32] = {0};
    CHECK_ERR(gguf_set_u32(w, "", 1), DR_ERR_ARG);
    CHECK_ERR(gguf_set_arr(w, "k", GGUF_TYPE_STRING, x, 1), DR_ERR_ARG);
    CHECK_ERR(gguf_set_arr(w, "k", GGUF_TYPE_ARRAY, x, 1), DR_ERR_ARG);
    CHECK_ERR(gguf_set_arr(w, "k", GGUF_TYPE_BOOL, (uint8_t[]){2}, 1), DR_ERR_ARG);
    CHECK_OK(gguf_add_tensor(w, "t", GGML_TYPE_F32, 1, (uint64_t[]){4}, x));
    CHECK_ERR(gguf_add_tensor(w, "t", GGML_TYPE_F32, 1, (uint64_t[]){4}, x), DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor(w, "", GGML_TYPE_F32, 1, (uint64_t[]){4}, x), DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor(w, "u", 99, 1, (uint64_t[]){4}, x), DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor(w, "u", GGML_TYPE_F32, 5, (uint64_t[]){1, 1, 1, 1, 1}, x), DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor(w, "u", GGML_TYPE_Q8_0, 1, (uint64_t[]){31}, x), DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor(w, "u", GGML_TYPE_F32, 4, (uint64_t[]){1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}, x),
              DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor(w, "u", GGML_TYPE_F32, 1, (uint64_t[]){4}, NULL), DR_ERR_ARG);
    CHECK_ERR(gguf_add_tensor_from_f32(w, "u", GGML_TYPE_Q4_K, 1, (uint64_t[]){256}, x), DR_ERR_UNSUPPORTED);
    /* empty tensor and a 0-dim (scalar) tensor are fine */
    CHECK_OK(gguf_add_tensor(w, "empty", GGML_TYPE_F32, 2, (uint64_t[]){0, 3}, NULL));
    CHECK_OK(gguf_add_tensor(w, "scalar", GGML_TYPE_F32, 0, NULL, x));
    uint8_t *out;
    size_t size;
    CHECK_OK(gguf_write_memory(w, &out, &size));
    gguf_file f;
    CHECK_OK(gguf_open_memory(&f, out, size, "m"));
    const gguf_tensor_info *t = gguf_find_tensor(&f, "empty");
    CHECK(t && t->n_elements == 0 && t->n_bytes == 0);
    t = gguf_find_tensor(&f, "scalar");
    CHECK(t && t->n_elements == 1 && t->n_bytes == 4 && t->n_dims == 0);
    gguf_close(&f);
    free(out);
    gguf_writer_free(w);
}

TEST(gguf_from_f32_and_to_f32) {
    enum { N = 64 };
    float src[2 * N], back[2 * N];
    dr_rng rng;
    dr_rng_seed(&rng, 7);
    for (int i = 0; i < 2 * N; i++) src[i] = dr_rng_normal(&rng) * 3.0f;
    gguf_writer *w = gguf_writer_new();
    uint64_t ne[2] = {N, 2};
    CHECK_OK(gguf_add_tensor_from_f32(w, "f32", GGML_TYPE_F32, 2, ne, src));
    CHECK_OK(gguf_add_tensor_from_f32(w, "f16", GGML_TYPE_F16, 2, ne, src));
    CHECK_OK(gguf_add_tensor_from_f32(w, "bf16", GGML_TYPE_BF16, 2, ne, src));
    CHECK_OK(gguf_add_tensor_from_f32(w, "q8", GGML_TYPE_Q8_0, 2, ne, src));
    double d64[3] = {1.5, -2.0, 1e10};
    int32_t i32[3] = {-7, 0, 123456};
    CHECK_OK(gguf_add_tensor(w, "f64", GGML_TYPE_F64, 1, (uint64_t[]){3}, d64));
    CHECK_OK(gguf_add_tensor(w, "i32", GGML_TYPE_I32, 1, (uint64_t[]){3}, i32));
    CHECK_OK(gguf_add_tensor(w, "q81", GGML_TYPE_Q8_1, 1, (uint64_t[]){32}, (uint8_t[36]){0}));
    uint8_t *out;
    size_t size;
    CHECK_OK(gguf_write_memory(w, &out, &size));
    gguf_writer_free(w);
    gguf_file f;
    CHECK_OK(gguf_open_memory(&f, out, size, "m"));
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "f32"), back));
    for (int i = 0; i < 2 * N; i++) CHECK(back[i] == src[i]);
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "f16"), back));
    for (int i = 0; i < 2 * N; i++) CHECK(back[i] == dr_f16_to_f32(dr_f32_to_f16(src[i])));
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "bf16"), back));
    for (int i = 0; i < 2 * N; i++) CHECK(back[i] == dr_bf16_to_f32(dr_f32_to_bf16(src[i])));
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "q8"), back));
    for (int i = 0; i < 2 * N; i++) CHECK_NEAR(back[i], src[i], 0.1);
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "f64"), back));
    CHECK(back[0] == 1.5f && back[1] == -2.0f && back[2] == 1e10f);
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "i32"), back));
    CHECK(back[0] == -7.0f && back[1] == 0.0f && back[2] == 123456.0f);
    CHECK_ERR(gguf_tensor_to_f32(gguf_find_tensor(&f, "q81"), back), DR_ERR_UNSUPPORTED);
    CHECK(strstr(dr_error_message(), "q81") && strstr(dr_error_message(), "Q8_1"));
    gguf_close(&f);
    free(out);
}

TEST(gguf_type_tables) {
    CHECK_EQ_INT(ggml_row_bytes(GGML_TYPE_F32, 10), 40);
    CHECK_EQ_INT(ggml_row_bytes(GGML_TYPE_Q8_0, 64), 68);
    CHECK_EQ_INT(ggml_row_bytes(GGML_TYPE_Q4_K, 512), 288);
    CHECK_EQ_INT(ggml_row_bytes(GGML_TYPE_Q6_K, 256), 210);
    CHECK_EQ_INT(ggml_row_bytes(GGML_TYPE_Q8_0, 33), 0);
    CHECK_EQ_INT(ggml_row_bytes(99, 1), 0);
    CHECK_EQ_INT(ggml_row_bytes(GGML_TYPE_F64, UINT64_MAX / 4), 0); /* overflow */
    CHECK_EQ_INT(ggml_block_size(GGML_TYPE_Q4_K), 256);
    CHECK_STR(ggml_type_name(GGML_TYPE_BF16), "BF16");
    CHECK_STR(ggml_type_name(1234), "unknown");
    CHECK_STR(gguf_type_name(GGUF_TYPE_STRING), "string");
    CHECK_EQ_INT(gguf_type_size(GGUF_TYPE_FLOAT64), 8);
    CHECK_EQ_INT(gguf_type_size(GGUF_TYPE_ARRAY), 0);
}

/* Fuzz seeds: with DEEPREC_WRITE_FUZZ_SEEDS=DIR this writes small valid files covering every
 * metadata type and tensor type into DIR (fuzz/corpus/fuzz_gguf); otherwise it just checks them. */
static void seed(const char *dir, const char *name, gguf_writer *w) {
    uint8_t *out;
    size_t size;
    CHECK_OK(gguf_write_memory(w, &out, &size));
    gguf_file f;
    CHECK_OK(gguf_open_memory(&f, out, size, name));
    gguf_close(&f);
    if (dir) CHECK_OK(dr_write_file_atomic(dr_test_path(dir, name), out, size));
    free(out);
    gguf_writer_free(w);
}

TEST(gguf_fuzz_seeds) {
    const char *dir = getenv("DEEPREC_WRITE_FUZZ_SEEDS");
    gguf_writer *w = gguf_writer_new();
    fill_writer(w);
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = (float)i * 0.25f - 10.0f;
    CHECK_OK(gguf_add_tensor_from_f32(w, "f32", GGML_TYPE_F32, 2, (uint64_t[]){4, 2}, x));
    CHECK_OK(gguf_add_tensor_from_f32(w, "f16", GGML_TYPE_F16, 1, (uint64_t[]){6}, x));
    CHECK_OK(gguf_add_tensor_from_f32(w, "bf16", GGML_TYPE_BF16, 3, (uint64_t[]){2, 2, 1}, x));
    CHECK_OK(gguf_add_tensor_from_f32(w, "q8", GGML_TYPE_Q8_0, 1, (uint64_t[]){32}, x));
    seed(dir, "all_metadata", w);

    w = gguf_writer_new();
    CHECK_OK(gguf_set_u32(w, "general.alignment", 64));
    CHECK_OK(gguf_set_str(w, "general.architecture", "qwen2"));
    uint8_t q4k[144], q6k[210];
    for (int i = 0; i < 144; i++) q4k[i] = (uint8_t)(i * 29 + 3);
    for (int i = 0; i < 210; i++) q6k[i] = (uint8_t)(i * 17 + 5);
    q4k[1] = q4k[3] = 0x38; /* finite fp16 scales */
    q6k[209] = 0x30;
    CHECK_OK(gguf_add_tensor(w, "blk.0.q4k", GGML_TYPE_Q4_K, 1, (uint64_t[]){256}, q4k));
    CHECK_OK(gguf_add_tensor(w, "blk.0.q6k", GGML_TYPE_Q6_K, 1, (uint64_t[]){256}, q6k));
    seed(dir, "kquants", w);

    w = gguf_writer_new();
    int8_t i8[4] = {-1, 2, -3, 4};
    int16_t i16[4] = {-300, 2, 3, 400};
    int32_t i32[4] = {-70000, 2, 3, 4};
    int64_t i64[2] = {-1, 1ll << 40};
    double f64[2] = {0.5, -1e100};
    CHECK_OK(gguf_add_tensor(w, "i8", GGML_TYPE_I8, 1, (uint64_t[]){4}, i8));
    CHECK_OK(gguf_add_tensor(w, "i16", GGML_TYPE_I16, 2, (uint64_t[]){2, 2}, i16));
    CHECK_OK(gguf_add_tensor(w, "i32", GGML_TYPE_I32, 4, (uint64_t[]){1, 2, 1, 2}, i32));
    CHECK_OK(gguf_add_tensor(w, "i64", GGML_TYPE_I64, 1, (uint64_t[]){2}, i64));
    CHECK_OK(gguf_add_tensor(w, "f64", GGML_TYPE_F64, 1, (uint64_t[]){2}, f64));
    CHECK_OK(gguf_add_tensor(w, "empty", GGML_TYPE_F32, 2, (uint64_t[]){0, 4}, NULL));
    seed(dir, "int_tensors", w);

    w = gguf_writer_new();
    const char *toks[] = {"<|endoftext|>", "a", "b", "ab", "\xc4\xa0the"};
    CHECK_OK(gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5));
    CHECK_OK(gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, (int32_t[]){3, 1, 1, 1, 1}, 5));
    CHECK_OK(gguf_set_arr(w, "flags", GGUF_TYPE_BOOL, (uint8_t[]){1, 0}, 2));
    seed(dir, "tokenizer_only", w);
}
