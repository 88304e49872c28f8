/* GGUF v3 container: read (mmap, every count/offset validated) and write (atomic).
 * Every file deeprec writes is GGUF: datasets, TRM and LLM checkpoints, optimizer state. */
#ifndef DEEPREC_GGUF_H
#define DEEPREC_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

/* Metadata value types (numbering of the GGUF spec). */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12
};

/* Tensor types (ggml numbering). */
enum ggml_type {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15, GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25, GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28, GGML_TYPE_BF16 = 30
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the mapped file: not NUL-terminated. */
typedef struct gguf_str { uint64_t len; const char *ptr; } gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    uint32_t type;       /* enum gguf_type */
    uint32_t arr_type;   /* element type when type == ARRAY */
    uint64_t arr_len;    /* element count when type == ARRAY */
    const uint8_t *data; /* scalar bytes, or array payload (strings: len-prefixed) in the file */
    gguf_str *arr_strs;  /* for arrays of strings: arr_len entries (owned by the reader) */
    /* additions */
    gguf_str str;        /* the value when type == STRING */
    uint64_t offset;     /* byte offset of this entry (its key) in the file */
} gguf_kv;

typedef struct gguf_tensor_info {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length) */
    uint32_t type;              /* enum ggml_type */
    uint64_t offset;            /* relative to the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
    const void *data;           /* pointer into the mapping */
} gguf_tensor_info;

typedef struct gguf_file {
    dr_mmap map;
    char *path;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor_info *tensors;
    uint64_t alignment;
    uint64_t data_offset;
    /* additions (private to the reader) */
    int owns_map;        /* 1: map came from gguf_open and is unmapped by gguf_close */
    void *index;         /* name lookup tables */
} gguf_file;

/* ---- reading ----
 * The reader accepts versions 2 and 3 (little-endian). Anything malformed gives DR_ERR_FORMAT
 * with a message "FILE: at byte offset N: ...". Nested arrays are rejected. Tensor types with a
 * known block layout are accepted (Q4_0 ... Q8_K too); gguf_tensor_to_f32 converts a subset. */
int gguf_open(gguf_file *f, const char *path);          /* mmap + validate everything */
/* The same, over a copy of the file in huge-page memory (dr_mmap_open_copy): for model weights. */
int gguf_open_copy(gguf_file *f, const char *path);
int gguf_open_memory(gguf_file *f, const void *data, size_t size, const char *name); /* for fuzzing/tests; data must outlive f */
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name);
/* Typed getters: return DR_OK, or an error naming the key (missing / wrong type). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);  /* accepts any integer type that fits */
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);   /* accepts any integer type */
int gguf_get_f32(const gguf_file *f, const char *key, float *out);     /* accepts f32/f64 */
int gguf_get_f64(const gguf_file *f, const char *key, double *out);
int gguf_get_bool(const gguf_file *f, const char *key, int *out);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Copy into a NUL-terminated heap string (caller frees). */
int gguf_get_strdup(const gguf_file *f, const char *key, char **out);
/* Arrays: element count and raw payload (numeric) or string list. */
int gguf_get_arr(const gguf_file *f, const char *key, uint32_t want_type, uint64_t *n, const void **data);
int gguf_get_arr_str(const gguf_file *f, const char *key, uint64_t *n, const gguf_str **strs);

/* Tensor data as fp32: converts F32/F16/BF16/F64 and every type of dr_dequantize into dst (n_elements floats).
 * (also I8/I16/I32/I64, converted by value; other types: DR_ERR_UNSUPPORTED) */
int gguf_tensor_to_f32(const gguf_tensor_info *t, float *dst);
/* Checks name exists with the given type and shape (ne[0..n_dims-1]); error names the tensor.
 * type GGUF_ANY_TYPE accepts any type; ne NULL skips the shape check. Shapes compare with
 * missing trailing dimensions taken as 1 (writers such as ggml drop trailing 1s). */
#define GGUF_ANY_TYPE 0xFFFFFFFFu
int gguf_expect_tensor(const gguf_file *f, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                       const gguf_tensor_info **out);

/* 1 when the (non-NUL-terminated) s equals the C string c. */
int gguf_str_eq(gguf_str s, const char *c);
/* Size in bytes of one scalar metadata value of `type` (0 for STRING/ARRAY/unknown). */
size_t gguf_type_size(uint32_t type);
/* Bytes per block of a ggml type (0 if unknown); ggml_block_size gives the elements per block. */
uint64_t ggml_type_size(uint32_t type);

const char *gguf_type_name(uint32_t type);
const char *ggml_type_name(uint32_t type);
/* Bytes for n elements of a ggml type (n must be a multiple of the block size); 0 if invalid. */
uint64_t ggml_row_bytes(uint32_t type, uint64_t n);
uint64_t ggml_block_size(uint32_t type);

/* ---- conversions ---- */
float dr_f16_to_f32(uint16_t h);
uint16_t dr_f32_to_f16(float f);
float dr_bf16_to_f32(uint16_t h);
uint16_t dr_f32_to_bf16(float f); /* round to nearest even */
/* Q8_0: blocks of 32 values, fp16 scale + 32 int8. */
void dr_quantize_q8_0(const float *src, void *dst, uint64_t n);
void dr_dequantize_q8_0(const void *src, float *dst, uint64_t n);
void dr_dequantize_q4_k(const void *src, float *dst, uint64_t n);
void dr_dequantize_q6_k(const void *src, float *dst, uint64_t n);
/* Any weight type llama.cpp models use: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS. n must be a whole number of blocks. Returns 0 on success,
 * -1 for a type it does not know (nothing written). */
int dr_dequantize(uint32_t type, const void *src, float *dst, uint64_t n);
int dr_dequantize_supported(uint32_t type);
/* The common form of the quantised types (src/gguf/blocks.c): 32 weights w_i = d[i/16] * q[i] + m[i/16]. */
typedef struct dr_wblk { int8_t q[32]; float d[2], m[2]; } dr_wblk;
int dr_unpack_supported(uint32_t type); /* the block types above, not F32/F16/BF16 */
/* n values (a whole number of blocks) from src into n / 32 units. */
void dr_unpack(uint32_t type, const void *src, uint64_t n, dr_wblk *out);

/* ---- writing ---- */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Metadata (keys copied). Order of insertion is kept. */
int gguf_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_set_f32(gguf_writer *w, const char *key, float v);
int gguf_set_f64(gguf_writer *w, const char *key, double v);
int gguf_set_bool(gguf_writer *w, const char *key, int v);
int gguf_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_set_strn(gguf_writer *w, const char *key, const char *v, size_t len);
/* Numeric array of `elem_type` (data copied). */
int gguf_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Tensor: data is copied at add time unless borrowed (must then stay valid until write). ne as in gguf_tensor_info. */
int gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                    const void *data);
int gguf_add_tensor_borrowed(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                             const void *data);
/* fp32 source converted to `type` (F32/F16/BF16/Q8_0) while adding. */
int gguf_add_tensor_from_f32(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                             const float *data);
/* Atomic write (temp + fsync + rename); honours a general.alignment key if set. */
int gguf_write(gguf_writer *w, const char *path);
/* Serialise to a heap buffer (for tests/fuzz seeds). */
int gguf_write_memory(gguf_writer *w, uint8_t **out, size_t *size);

#endif
