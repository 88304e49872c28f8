/* Number formats: fp16 / bf16 conversions, Q8_0 quantization, Q8_0 / Q4_K / Q6_K dequantization,
 * and whole-tensor conversion to fp32. Block layouts follow ggml (little-endian, packed):
 *   Q8_0: fp16 d; int8 q[32]                                   x = d * q
 *   Q4_K: fp16 d, dmin; u8 scales[12]; u8 qs[128] (256 values)  x = d*sc*q - dmin*m, 8 sub-blocks of 32
 *   Q6_K: u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d           x = d*sc*(q - 32), 16 sub-blocks of 16 */
#include "deeprec/gguf.h"
#include <math.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "deeprec's GGUF code assumes a little-endian host"
#endif

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

float dr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * 5.9604644775390625e-8f; /* mant * 2^-24, exact */
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13)); /* inf, or NaN keeping its payload */
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t dr_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* NaN stays NaN (quiet) */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf (and inf) */
    if (ax < 0x38800000u) {                                  /* below 2^-14: fp16 subnormal or zero */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                            /* value = m * 2^-shift units of 2^-24 */
        if (e == 0 || shift > 24) return sign;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3ffu);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* carry into the exponent is right */
    return (uint16_t)(sign | h);
}

float dr_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t dr_f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ---- Q8_0 ---- */
#define QK8_0 32
#define Q8_0_BYTES 34

void dr_quantize_q8_0(const float *src, void *dst, uint64_t n) {
    uint8_t *out = dst;
    for (uint64_t b = 0; b < n / QK8_0; b++) {
        const float *x = src + b * QK8_0;
        uint8_t *blk = out + b * Q8_0_BYTES;
        float amax = 0;
        for (int i = 0; i < QK8_0; i++) {
            float a = fabsf(x[i]);
            if (a > amax) amax = a;
        }
        uint16_t dh = dr_f32_to_f16(amax / 127.0f);
        float d = dr_f16_to_f32(dh);
        float id = (d > 0 && isfinite(d)) ? 1.0f / d : 0.0f;
        memcpy(blk, &dh, 2);
        for (int i = 0; i < QK8_0; i++) {
            float v = x[i] * id;
            if (!(v == v)) v = 0;           /* NaN input */
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            blk[2 + i] = (uint8_t)(int8_t)lrintf(v);
        }
    }
}

void dr_dequantize_q8_0(const void *src, float *dst, uint64_t n) {
    const uint8_t *in = src;
    for (uint64_t b = 0; b < n / QK8_0; b++) {
        const uint8_t *blk = in + b * Q8_0_BYTES;
        float d = dr_f16_to_f32(rd16(blk));
        for (int i = 0; i < QK8_0; i++) dst[b * QK8_0 + i] = d * (float)(int8_t)blk[2 + i];
    }
}

/* ---- Q4_K ---- */
#define QK_K 256
#define Q4_K_BYTES 144
#define Q6_K_BYTES 210

/* The 8 sub-block scales and mins are 6-bit values packed into 12 bytes:
 * j < 4: low 6 bits of bytes j (scale) and j+4 (min);
 * j >= 4: low nibble / high nibble of byte j+4, with the top 2 bits from bytes j-4 / j. */
static void q4k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void q4k_block(const uint8_t *blk, float *y) {
    float d = dr_f16_to_f32(rd16(blk)), dmin = dr_f16_to_f32(rd16(blk + 2));
    const uint8_t *scales = blk + 4, *qs = blk + 16;
    /* 4 chunks of 64 values; each chunk uses 32 bytes: low nibbles give sub-block 2c, high nibbles 2c+1 */
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        q4k_scale_min(2 * c, scales, &sc0, &m0);
        q4k_scale_min(2 * c + 1, scales, &sc1, &m1);
        float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) y[64 * c + l] = d0 * (float)(q[l] & 0x0f) - mm0;
        for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d1 * (float)(q[l] >> 4) - mm1;
    }
}

void dr_dequantize_q4_k(const void *src, float *dst, uint64_t n) {
    const uint8_t *in = src;
    int64_t nb = (int64_t)(n / QK_K);
#pragma omp parallel for schedule(static) if (nb > 256)
    for (int64_t b = 0; b < nb; b++) q4k_block(in + b * Q4_K_BYTES, dst + b * QK_K);
}

/* ---- Q6_K ---- */
static void q6k_block(const uint8_t *blk, float *y) {
    const uint8_t *ql = blk, *qh = blk + 128;
    const int8_t *sc = (const int8_t *)(blk + 192);
    float d = dr_f16_to_f32(rd16(blk + 208));
    /* two halves of 128 values; in each, value index l + 32*k (k = 0..3) takes 4 low bits from
     * ql[l] (k = 0, 2: low/high nibble) or ql[l+32] (k = 1, 3) and 2 high bits from qh[l] bits 2k..2k+1 */
    for (int h = 0; h < 2; h++) {
        const uint8_t *L = ql + 64 * h, *H = qh + 32 * h;
        const int8_t *S = sc + 8 * h;
        float *Y = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q0 = ((L[l] & 0x0f) | (((H[l] >> 0) & 3) << 4)) - 32;
            int q1 = ((L[l + 32] & 0x0f) | (((H[l] >> 2) & 3) << 4)) - 32;
            int q2 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32;
            int q3 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32;
            Y[l] = d * (float)S[is] * (float)q0;
            Y[l + 32] = d * (float)S[is + 2] * (float)q1;
            Y[l + 64] = d * (float)S[is + 4] * (float)q2;
            Y[l + 96] = d * (float)S[is + 6] * (float)q3;
        }
    }
}

void dr_dequantize_q6_k(const void *src, float *dst, uint64_t n) {
    const uint8_t *in = src;
    int64_t nb = (int64_t)(n / QK_K);
#pragma omp parallel for schedule(static) if (nb > 256)
    for (int64_t b = 0; b < nb; b++) q6k_block(in + b * Q6_K_BYTES, dst + b * QK_K);
}

/* ---- whole tensors ---- */
int gguf_tensor_to_f32(const gguf_tensor_info *t, float *dst) {
    uint64_t n = t->n_elements;
    const uint8_t *p = t->data;
    if (n > 0 && (!p || !dst))
        return dr_error(DR_ERR_ARG, "tensor '%.*s': no data or no destination", (int)(t->name.len > 200 ? 200 : t->name.len),
                        t->name.ptr ? t->name.ptr : "");
    switch (t->type) {
    case GGML_TYPE_F32: if (n) memcpy(dst, p, n * 4); return DR_OK;
    case GGML_TYPE_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = dr_f16_to_f32(rd16(p + 2 * i));
        return DR_OK;
    case GGML_TYPE_BF16:
        for (uint64_t i = 0; i < n; i++) dst[i] = dr_bf16_to_f32(rd16(p + 2 * i));
        return DR_OK;
    case GGML_TYPE_F64:
        for (uint64_t i = 0; i < n; i++) { double v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; }
        return DR_OK;
    case GGML_TYPE_I8:
        for (uint64_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
        return DR_OK;
    case GGML_TYPE_I16:
        for (uint64_t i = 0; i < n; i++) { int16_t v; memcpy(&v, p + 2 * i, 2); dst[i] = (float)v; }
        return DR_OK;
    case GGML_TYPE_I32:
        for (uint64_t i = 0; i < n; i++) { int32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = (float)v; }
        return DR_OK;
    case GGML_TYPE_I64:
        for (uint64_t i = 0; i < n; i++) { int64_t v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; }
        return DR_OK;
    case GGML_TYPE_Q8_0:
        if (n % QK8_0) break;
        dr_dequantize_q8_0(p, dst, n);
        return DR_OK;
    case GGML_TYPE_Q4_K:
        if (n % QK_K) break;
        dr_dequantize_q4_k(p, dst, n);
        return DR_OK;
    case GGML_TYPE_Q6_K:
        if (n % QK_K) break;
        dr_dequantize_q6_k(p, dst, n);
        return DR_OK;
    default:
        if (dr_unpack_supported(t->type)) {
            if (n % ggml_block_size(t->type)) break;
            dr_dequantize(t->type, p, dst, n);
            return DR_OK;
        }
        return dr_error(DR_ERR_UNSUPPORTED, "tensor '%.*s': conversion of type %s to f32 is not supported",
                        (int)(t->name.len > 200 ? 200 : t->name.len), t->name.ptr ? t->name.ptr : "",
                        ggml_type_name(t->type));
    }
    return dr_error(DR_ERR_ARG, "tensor '%.*s': %llu elements is not a whole number of %s blocks",
                    (int)(t->name.len > 200 ? 200 : t->name.len), t->name.ptr ? t->name.ptr : "",
                    (unsigned long long)n, ggml_type_name(t->type));
}
