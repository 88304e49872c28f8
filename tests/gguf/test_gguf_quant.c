/* Number formats: fp16 / bf16 conversions, Q8_0 error bound, Q4_K / Q6_K dequantization of
 * hand-built blocks (expected values computed here from the block description, by encoding). */
#include "harness.h"
#include "deeprec/gguf.h"
#include <stdlib.h>

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float fbits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

TEST(gguf_f16_special_values) {
    CHECK_EQ_INT(dr_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(dr_f32_to_f16(-2.0f), 0xc000);
    CHECK_EQ_INT(dr_f32_to_f16(0.0f), 0x0000);
    CHECK_EQ_INT(dr_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(dr_f32_to_f16(65504.0f), 0x7bff);     /* largest finite */
    CHECK_EQ_INT(dr_f32_to_f16(65519.99f), 0x7bff);
    CHECK_EQ_INT(dr_f32_to_f16(65520.0f), 0x7c00);     /* tie rounds to even = inf */
    CHECK_EQ_INT(dr_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_INT(dr_f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(1, -14)), 0x0400); /* smallest normal */
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(1, -24)), 0x0001); /* smallest subnormal */
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(1, -25)), 0x0000); /* tie -> even (0) */
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(1.0001f, -25)), 0x0001);
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(3, -25)), 0x0002);  /* 1.5 units: tie -> 2 */
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(5, -25)), 0x0002);  /* 2.5 units: tie -> 2 */
    CHECK_EQ_INT(dr_f32_to_f16(ldexpf(1023.5f, -24)), 0x0400); /* rounds up into the normals */
    CHECK_EQ_INT(dr_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00); /* tie -> even */
    CHECK_EQ_INT(dr_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);
    CHECK_EQ_INT(dr_f32_to_f16(fbits(0x00000001)), 0x0000); /* f32 subnormal */
    uint16_t hn = dr_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    hn = dr_f32_to_f16(fbits(0x7f800001)); /* NaN with payload only in low bits must stay NaN */
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    CHECK(dr_f16_to_f32(0x7c00) == INFINITY);
    CHECK(dr_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(isnan(dr_f16_to_f32(0x7e00)));
    CHECK(dr_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(dr_f16_to_f32(0x03ff) == ldexpf(1023, -24));
    CHECK(bits(dr_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(dr_f16_to_f32(0x3555) == (1.0f + 0x155 / 1024.0f) * 0.25f);
}

TEST(gguf_f16_exhaustive_roundtrip_and_nearest) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dr_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            uint16_t b = dr_f32_to_f16(f);
            CHECK((b & 0x7c00) == 0x7c00 && (b & 0x3ff));
            continue;
        }
        CHECK_EQ_INT(dr_f32_to_f16(f), h);
        /* the exact midpoint to the next half value rounds to the even one */
        if ((h & 0x7fff) < 0x7bff) {
            double mid = ((double)f + (double)dr_f16_to_f32((uint16_t)(h + 1))) / 2;
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            CHECK_EQ_INT(dr_f32_to_f16((float)mid), want);
        }
    }
    /* random floats: result is a nearest half value (checked against the neighbours) */
    dr_rng r;
    dr_rng_seed(&r, 3);
    for (int i = 0; i < 200000; i++) {
        float x = (dr_rng_float(&r) * 2 - 1) * ldexpf(1, (int)dr_rng_below(&r, 43) - 26); /* 2^-26 .. 2^16 */
        if (isnan(x) || fabsf(x) >= 65504.0f) continue;
        uint16_t h = dr_f32_to_f16(x);
        double e = fabs((double)dr_f16_to_f32(h) - x);
        uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        if ((up & 0x7c00) != 0x7c00) CHECK(e <= fabs((double)dr_f16_to_f32(up) - x));
        if ((h & 0x7fff) != 0) CHECK(e <= fabs((double)dr_f16_to_f32(dn) - x));
    }
}

TEST(gguf_bf16_rounding) {
    CHECK_EQ_INT(dr_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x3f808000)), 0x3f80); /* tie, even stays */
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x3f808001)), 0x3f81);
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x3f807fff)), 0x3f80);
    CHECK_EQ_INT(dr_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ_INT(dr_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x7f7fffff)), 0x7f80); /* FLT_MAX rounds to inf */
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x00018000)), 0x0002); /* subnormal tie, odd -> up */
    CHECK_EQ_INT(dr_f32_to_bf16(fbits(0x00008000)), 0x0000); /* subnormal tie, even */
    CHECK_EQ_INT(dr_f32_to_bf16(-0.0f), 0x8000);
    uint16_t n = dr_f32_to_bf16(fbits(0x7f800001));
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    n = dr_f32_to_bf16(fbits(0xffc00000));
    CHECK(isnan(dr_bf16_to_f32(n)));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dr_bf16_to_f32((uint16_t)h);
        CHECK(bits(f) == h << 16);
        if (!isnan(f)) CHECK_EQ_INT(dr_f32_to_bf16(f), h);
    }
}

TEST(gguf_q8_0_error_bound) {
    enum { NB = 64, N = NB * 32 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint8_t *q = malloc(NB * 34);
    dr_rng r;
    dr_rng_seed(&r, 11);
    for (int i = 0; i < N; i++) x[i] = dr_rng_normal(&r) * (float)(1 + i / 32);
    for (int i = 0; i < 32; i++) x[i] = 0; /* an all-zero block */
    for (int i = 0; i < 32; i++) x[32 + i] = (float)(i - 16) * 0.5f; /* exactly representable */
    x[32 + 31] = 63.5f;
    dr_quantize_q8_0(x, q, N);
    dr_dequantize_q8_0(q, y, N);
    for (int b = 0; b < NB; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        double bound = 0.5 * amax / 127.0 * (1 + 1.0 / 1024) + 1e-12;
        for (int i = 0; i < 32; i++) CHECK_NEAR(y[b * 32 + i], x[b * 32 + i], bound);
    }
    for (int i = 0; i < 64; i++) CHECK(y[i] == x[i]);
    free(x);
    free(y);
    free(q);
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* Q4_K block: fp16 d, fp16 dmin, 12 bytes holding eight 6-bit scales sc[j] and mins m[j], 128 bytes
 * of 4-bit quants. Sub-block j covers values 32j..32j+31; value = d*sc[j]*q - dmin*m[j].
 * Packing: bytes 0-3 hold sc[0..3] (low 6 bits) + top 2 bits of sc[4..7]; bytes 4-7 hold m[0..3] +
 * top 2 bits of m[4..7]; bytes 8-11 hold the low 4 bits of sc[4..7] (low nibble) and m[4..7] (high).
 * Quants: values 64c..64c+31 are the low nibbles of qs[32c..32c+31], 64c+32.. the high nibbles. */
TEST(gguf_q4_k_dequant_hand_block) {
    uint8_t blk[2][144];
    float want[512];
    const uint8_t sc[2][8] = {{1, 63, 17, 32, 48, 5, 62, 33}, {0, 2, 4, 8, 16, 32, 63, 1}};
    const uint8_t mn[2][8] = {{0, 10, 63, 1, 49, 18, 2, 61}, {63, 62, 61, 60, 59, 58, 57, 56}};
    const float d[2] = {0.5f, -0.125f}, dmin[2] = {0.25f, 1.0f};
    for (int b = 0; b < 2; b++) {
        uint8_t *B = blk[b];
        memset(B, 0, 144);
        put16(B, dr_f32_to_f16(d[b]));
        put16(B + 2, dr_f32_to_f16(dmin[b]));
        uint8_t *s = B + 4;
        for (int j = 0; j < 4; j++) {
            s[j] = (uint8_t)(sc[b][j] | ((sc[b][j + 4] >> 4) << 6));
            s[j + 4] = (uint8_t)(mn[b][j] | ((mn[b][j + 4] >> 4) << 6));
            s[j + 8] = (uint8_t)((sc[b][j + 4] & 15) | ((mn[b][j + 4] & 15) << 4));
        }
        uint8_t *qs = B + 16;
        for (int i = 0; i < 256; i++) {
            int q = (i * 7 + b * 3 + i / 32) & 15;
            int c = i / 64, r = i % 64;
            if (r < 32) qs[32 * c + r] |= (uint8_t)q;
            else qs[32 * c + r - 32] |= (uint8_t)(q << 4);
            int j = i / 32;
            want[256 * b + i] = d[b] * sc[b][j] * (float)q - dmin[b] * mn[b][j];
        }
    }
    float got[512];
    dr_dequantize_q4_k(blk, got, 512);
    for (int i = 0; i < 512; i++) CHECK_NEAR(got[i], want[i], 1e-5);
    /* through a tensor too */
    gguf_writer *w = gguf_writer_new();
    CHECK_OK(gguf_add_tensor(w, "q4k", GGML_TYPE_Q4_K, 2, (uint64_t[]){256, 2}, blk));
    uint8_t *out;
    size_t size;
    CHECK_OK(gguf_write_memory(w, &out, &size));
    gguf_writer_free(w);
    gguf_file f;
    CHECK_OK(gguf_open_memory(&f, out, size, "q4k"));
    memset(got, 0, sizeof got);
    CHECK_OK(gguf_tensor_to_f32(gguf_find_tensor(&f, "q4k"), got));
    for (int i = 0; i < 512; i++) CHECK_NEAR(got[i], want[i], 1e-5);
    gguf_close(&f);
    free(out);
}

/* Q6_K block: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales, fp16 d.
 * Sixteen sub-blocks of 16 values; value i = d * scale[i/16] * (q - 32), q 6-bit.
 * Within each half h (values 128h..128h+127), value 128h + 32k + l (k = 0..3, l = 0..31) keeps
 * its low 4 bits in ql[64h + l + 32*(k&1)] (low nibble for k < 2, high nibble for k >= 2) and its
 * high 2 bits in bits 2k, 2k+1 of qh[32h + l]. */
TEST(gguf_q6_k_dequant_hand_block) {
    uint8_t blk[2][210];
    float want[512];
    const float d[2] = {0.03125f, -2.0f};
    for (int b = 0; b < 2; b++) {
        uint8_t *B = blk[b];
        memset(B, 0, 210);
        uint8_t *ql = B, *qh = B + 128;
        int8_t *scales = (int8_t *)(B + 192);
        for (int s = 0; s < 16; s++) scales[s] = (int8_t)((s * 37 + b * 5) % 255 - 127);
        put16(B + 208, dr_f32_to_f16(d[b]));
        for (int i = 0; i < 256; i++) {
            int q = (i * 13 + b * 29 + i / 64) & 63;
            int h = i / 128, k = (i % 128) / 32, l = i % 32;
            uint8_t *lo = &ql[64 * h + l + 32 * (k & 1)];
            *lo |= (uint8_t)(k < 2 ? (q & 15) : (q & 15) << 4);
            qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
            want[256 * b + i] = d[b] * (float)scales[i / 16] * (float)(q - 32);
        }
    }
    float got[512];
    dr_dequantize_q6_k(blk, got, 512);
    for (int i = 0; i < 512; i++) CHECK_NEAR(got[i], want[i], 1e-4);
    gguf_tensor_info t = {.name = {3, "q6k"}, .n_dims = 1, .ne = {512, 1, 1, 1}, .type = GGML_TYPE_Q6_K,
                          .n_elements = 512, .n_bytes = 420, .data = blk};
    memset(got, 0, sizeof got);
    CHECK_OK(gguf_tensor_to_f32(&t, got));
    for (int i = 0; i < 512; i++) CHECK_NEAR(got[i], want[i], 1e-4);
}
