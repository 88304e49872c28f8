/* The block formats of llama.cpp's weight types, unpacked into one common form.
 *
 * Every format stores a weight as (small integer) x (scale) + (offset), with the scale and
 * offset shared by a sub-block of 16 or 32 values. dr_unpack turns a block of any of them into
 * units of 32 weights: int8 q[32] with w = d[h] * q + m[h] for the half h = i / 16. The
 * dequantiser (w in fp32) and the int8 dot products of the LLM engine both start from this
 * form, so the two cannot disagree about a layout.
 *
 * Layouts (little-endian, packed; "fp16" is an IEEE half), with 32-value units u:
 *   Q4_0   fp16 d; u8 qs[16]                  q = nibble - 8 (low nibbles: values 0..15, high: 16..31)
 *   Q4_1   fp16 d, m; u8 qs[16]               q = nibble, offset m
 *   Q5_0   fp16 d; u32 qh; u8 qs[16]          q = (nibble | bit i of qh << 4) - 16
 *   Q5_1   fp16 d, m; u32 qh; u8 qs[16]       the same without -16, offset m
 *   Q8_0   fp16 d; i8 qs[32]
 *   IQ4_NL fp16 d; u8 qs[16]                  q = table[nibble] (a non-uniform 16-value grid)
 *   Q2_K   u8 sc[16]; u8 qs[64]; fp16 d, dmin  16-value sub-blocks: scale d*(sc & 15), offset -dmin*(sc >> 4);
 *                                             2-bit q: in each half of 128, unit j takes bits 2j..2j+1
 *   Q3_K   u8 hmask[32]; u8 qs[64]; u8 sc[12]; fp16 d  sixteen 6-bit scales (minus 32); q = 2 bits - 4
 *                                             unless the unit's bit of hmask is set
 *   Q4_K   fp16 d, dmin; u8 sc[12]; u8 qs[128]  eight 6-bit scales and mins; unit 2c: low nibbles of
 *                                             bytes 32c.., unit 2c+1: high nibbles
 *   Q5_K   fp16 d, dmin; u8 sc[12]; u8 qh[32]; u8 qs[128]  Q4_K plus a fifth bit: bit u of qh[l]
 *   Q6_K   u8 ql[128]; u8 qh[64]; i8 sc[16]; fp16 d  q = 4 low bits | 2 high bits << 4, - 32
 *   IQ4_XS fp16 d; u16 sc_h; u8 sc_l[4]; u8 qs[128]  eight 6-bit scales (minus 32), IQ4_NL grid */
#include "deeprec/gguf.h"
#include <string.h>

static inline float h2f(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return dr_f16_to_f32(v);
}

static const int8_t IQ4_GRID[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static inline void set_scale(dr_wblk *u, float d, float m) {
    u->d[0] = u->d[1] = d;
    u->m[0] = u->m[1] = m;
}

/* Low nibbles are values 0..15 of the unit, high nibbles 16..31 (Q4_0, Q4_1, IQ4_NL). */
static void nibbles(const uint8_t *qs, int8_t *q, int bias) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 15) + bias);
        q[j + 16] = (int8_t)((qs[j] >> 4) + bias);
    }
}

static void nibbles5(const uint8_t *qh4, const uint8_t *qs, int8_t *q, int bias) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 15) | ((qh >> j) & 1) << 4) + bias);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) + bias);
    }
}

/* The 6-bit scale and min of sub-block j of Q4_K / Q5_K (12 bytes hold 8 of each). */
static inline void k4_scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void unpack_q2_k(const uint8_t *b, dr_wblk *u) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int n = 0; n < 2; n++)         /* halves of 128 values, 32 bytes of qs each */
        for (int j = 0; j < 4; j++) {   /* unit 4n + j: bits 2j of those 32 bytes */
            dr_wblk *w = &u[4 * n + j];
            for (int h = 0; h < 2; h++) {
                int s = sc[8 * n + 2 * j + h];
                w->d[h] = d * (float)(s & 15);
                w->m[h] = -dmin * (float)(s >> 4);
            }
            for (int l = 0; l < 32; l++) w->q[l] = (int8_t)((qs[32 * n + l] >> (2 * j)) & 3);
        }
}

static void unpack_q3_k(const uint8_t *b, dr_wblk *u) {
    const uint8_t *hmask = b, *qs = b + 32, *s = b + 96; /* hmask: the high bit of each 3-bit quant */
    float d = h2f(b + 108);
    int8_t sc[16]; /* the 12 bytes: low 4 bits of scales 0..7 then 8..15 in bytes 0..7, high 2 bits in 8..11 */
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
        int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
        sc[i] = (int8_t)((lo | hi << 4) - 32);
    }
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++) {
            dr_wblk *w = &u[4 * n + j];
            int bit = 1 << (4 * n + j);
            w->d[0] = d * (float)sc[8 * n + 2 * j];
            w->d[1] = d * (float)sc[8 * n + 2 * j + 1];
            w->m[0] = w->m[1] = 0;
            for (int l = 0; l < 32; l++)
                w->q[l] = (int8_t)(((qs[32 * n + l] >> (2 * j)) & 3) - ((hmask[l] & bit) ? 0 : 4));
        }
}

/* Q4_K and Q5_K: eight units with 6-bit scales and mins after d and dmin; unit 2c takes the
 * low nibbles of qs[32c..], unit 2c+1 the high ones. Q5_K adds bit j of qh[l] as a fifth bit
 * (qh is NULL for Q4_K). Inline, so each caller gets its own loop without the NULL test. */
static inline void unpack_k4_units(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, dr_wblk *u) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *s = b + 4;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(j, s, &sc, &m);
        set_scale(&u[j], d * (float)sc, -dmin * (float)m);
        const uint8_t *q = qs + 32 * (j / 2);
        int sh = 4 * (j & 1);
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> sh) & 15;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            u[j].q[l] = (int8_t)v;
        }
    }
}

static void unpack_q4_k(const uint8_t *b, dr_wblk *u) { unpack_k4_units(b, NULL, b + 16, u); }

static void unpack_q5_k(const uint8_t *b, dr_wblk *u) { unpack_k4_units(b, b + 16, b + 48, u); }

static void unpack_q6_k(const uint8_t *b, dr_wblk *u) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int n = 0; n < 2; n++)         /* halves of 128: ql 64 bytes, qh 32 bytes, 8 scales */
        for (int k = 0; k < 4; k++) {   /* unit 4n + k: ql[l + 32 (k & 1)] nibble k >> 1, qh bits 2k */
            dr_wblk *w = &u[4 * n + k];
            const uint8_t *L = ql + 64 * n + 32 * (k & 1), *H = qh + 32 * n;
            w->d[0] = d * (float)sc[8 * n + 2 * k];
            w->d[1] = d * (float)sc[8 * n + 2 * k + 1];
            w->m[0] = w->m[1] = 0;
            for (int l = 0; l < 32; l++)
                w->q[l] = (int8_t)((((L[l] >> (4 * (k >> 1))) & 15) | ((H[l] >> (2 * k)) & 3) << 4) - 32);
        }
}

static void unpack_iq4_xs(const uint8_t *b, dr_wblk *u) {
    float d = h2f(b);
    uint16_t sh;
    memcpy(&sh, b + 2, 2);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int j = 0; j < 8; j++) {
        int ls = ((sl[j / 2] >> (4 * (j & 1))) & 15) | ((sh >> (2 * j)) & 3) << 4;
        set_scale(&u[j], d * (float)(ls - 32), 0);
        for (int l = 0; l < 16; l++) {
            u[j].q[l] = IQ4_GRID[qs[16 * j + l] & 15];
            u[j].q[l + 16] = IQ4_GRID[qs[16 * j + l] >> 4];
        }
    }
}

int dr_unpack_supported(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_IQ4_NL: case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K: case GGML_TYPE_IQ4_XS: return 1;
    default: return 0;
    }
}

void dr_unpack(uint32_t type, const void *src, uint64_t n, dr_wblk *out) {
    const uint8_t *p = src;
    const uint64_t bs = ggml_type_size(type), per = ggml_block_size(type) / 32;
    for (uint64_t b = 0; b < n / 32 / per; b++, p += bs, out += per) {
        switch (type) {
        case GGML_TYPE_Q4_0: set_scale(out, h2f(p), 0); nibbles(p + 2, out->q, -8); break;
        case GGML_TYPE_Q4_1: set_scale(out, h2f(p), h2f(p + 2)); nibbles(p + 4, out->q, 0); break;
        case GGML_TYPE_Q5_0: set_scale(out, h2f(p), 0); nibbles5(p + 2, p + 6, out->q, -16); break;
        case GGML_TYPE_Q5_1: set_scale(out, h2f(p), h2f(p + 2)); nibbles5(p + 4, p + 8, out->q, 0); break;
        case GGML_TYPE_Q8_0: set_scale(out, h2f(p), 0); memcpy(out->q, p + 2, 32); break;
        case GGML_TYPE_IQ4_NL:
            set_scale(out, h2f(p), 0);
            for (int j = 0; j < 16; j++) {
                out->q[j] = IQ4_GRID[p[2 + j] & 15];
                out->q[j + 16] = IQ4_GRID[p[2 + j] >> 4];
            }
            break;
        case GGML_TYPE_Q2_K: unpack_q2_k(p, out); break;
        case GGML_TYPE_Q3_K: unpack_q3_k(p, out); break;
        case GGML_TYPE_Q4_K: unpack_q4_k(p, out); break;
        case GGML_TYPE_Q5_K: unpack_q5_k(p, out); break;
        case GGML_TYPE_Q6_K: unpack_q6_k(p, out); break;
        case GGML_TYPE_IQ4_XS: unpack_iq4_xs(p, out); break;
        default: return;
        }
    }
}

int dr_dequantize_supported(uint32_t type) {
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 || dr_unpack_supported(type);
}

int dr_dequantize(uint32_t type, const void *src, float *dst, uint64_t n) {
    const uint8_t *p = src;
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, n * 4); return 0;
    case GGML_TYPE_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = h2f(p + 2 * i);
        return 0;
    case GGML_TYPE_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = dr_bf16_to_f32(v);
        }
        return 0;
    default: break;
    }
    if (!dr_unpack_supported(type)) return -1;
    /* a 256-value block at a time through a small buffer */
    const uint64_t blck = ggml_block_size(type), bs = ggml_type_size(type);
    dr_wblk u[8];
    for (uint64_t b = 0; b < n / blck; b++) {
        dr_unpack(type, p + b * bs, blck, u);
        for (uint64_t k = 0; k < blck / 32; k++)
            for (int i = 0; i < 32; i++) dst[b * blck + 32 * k + i] = u[k].d[i >> 4] * (float)u[k].q[i] + u[k].m[i >> 4];
    }
    return 0;
}
