/* GGUF/ggml type tables: names, scalar sizes, block layouts of the tensor types. */
#include "deeprec/gguf.h"
#include <string.h>

const char *gguf_type_name(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: return "u8";
    case GGUF_TYPE_INT8: return "i8";
    case GGUF_TYPE_UINT16: return "u16";
    case GGUF_TYPE_INT16: return "i16";
    case GGUF_TYPE_UINT32: return "u32";
    case GGUF_TYPE_INT32: return "i32";
    case GGUF_TYPE_FLOAT32: return "f32";
    case GGUF_TYPE_BOOL: return "bool";
    case GGUF_TYPE_STRING: return "string";
    case GGUF_TYPE_ARRAY: return "array";
    case GGUF_TYPE_UINT64: return "u64";
    case GGUF_TYPE_INT64: return "i64";
    case GGUF_TYPE_FLOAT64: return "f64";
    default: return "unknown";
    }
}

size_t gguf_type_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

int gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* Elements per block and bytes per block of each tensor type (from the ggml block structs). */
typedef struct { const char *name; uint32_t blck; uint32_t size; } type_info;

static const type_info *tinfo(uint32_t type) {
    static const type_info t_f32 = {"F32", 1, 4}, t_f16 = {"F16", 1, 2}, t_bf16 = {"BF16", 1, 2},
                           t_f64 = {"F64", 1, 8}, t_i8 = {"I8", 1, 1}, t_i16 = {"I16", 1, 2},
                           t_i32 = {"I32", 1, 4}, t_i64 = {"I64", 1, 8},
                           t_q4_0 = {"Q4_0", 32, 2 + 16}, t_q4_1 = {"Q4_1", 32, 4 + 16},
                           t_q5_0 = {"Q5_0", 32, 2 + 4 + 16}, t_q5_1 = {"Q5_1", 32, 4 + 4 + 16},
                           t_q8_0 = {"Q8_0", 32, 2 + 32}, t_q8_1 = {"Q8_1", 32, 4 + 32},
                           t_q2_k = {"Q2_K", 256, 16 + 64 + 4}, t_q3_k = {"Q3_K", 256, 32 + 64 + 12 + 2},
                           t_q4_k = {"Q4_K", 256, 4 + 12 + 128}, t_q5_k = {"Q5_K", 256, 4 + 12 + 32 + 128},
                           t_q6_k = {"Q6_K", 256, 128 + 64 + 16 + 2}, t_q8_k = {"Q8_K", 256, 4 + 256 + 32},
                           t_iq4_nl = {"IQ4_NL", 32, 2 + 16}, t_iq4_xs = {"IQ4_XS", 256, 2 + 2 + 4 + 128};
    switch (type) {
    case GGML_TYPE_F32: return &t_f32;
    case GGML_TYPE_F16: return &t_f16;
    case GGML_TYPE_BF16: return &t_bf16;
    case GGML_TYPE_F64: return &t_f64;
    case GGML_TYPE_I8: return &t_i8;
    case GGML_TYPE_I16: return &t_i16;
    case GGML_TYPE_I32: return &t_i32;
    case GGML_TYPE_I64: return &t_i64;
    case GGML_TYPE_Q4_0: return &t_q4_0;
    case GGML_TYPE_Q4_1: return &t_q4_1;
    case GGML_TYPE_Q5_0: return &t_q5_0;
    case GGML_TYPE_Q5_1: return &t_q5_1;
    case GGML_TYPE_Q8_0: return &t_q8_0;
    case GGML_TYPE_Q8_1: return &t_q8_1;
    case GGML_TYPE_Q2_K: return &t_q2_k;
    case GGML_TYPE_Q3_K: return &t_q3_k;
    case GGML_TYPE_Q4_K: return &t_q4_k;
    case GGML_TYPE_Q5_K: return &t_q5_k;
    case GGML_TYPE_Q6_K: return &t_q6_k;
    case GGML_TYPE_Q8_K: return &t_q8_k;
    case GGML_TYPE_IQ4_NL: return &t_iq4_nl;
    case GGML_TYPE_IQ4_XS: return &t_iq4_xs;
    default: return NULL;
    }
}

const char *ggml_type_name(uint32_t type) {
    const type_info *t = tinfo(type);
    return t ? t->name : "unknown";
}

uint64_t ggml_block_size(uint32_t type) {
    const type_info *t = tinfo(type);
    return t ? t->blck : 0;
}

uint64_t ggml_type_size(uint32_t type) {
    const type_info *t = tinfo(type);
    return t ? t->size : 0;
}

uint64_t ggml_row_bytes(uint32_t type, uint64_t n) {
    const type_info *t = tinfo(type);
    if (!t || n % t->blck != 0) return 0;
    uint64_t r;
    if (__builtin_mul_overflow(n / t->blck, (uint64_t)t->size, &r)) return 0;
    return r;
}
