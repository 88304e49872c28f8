/* Q5_0 weights repacked at load into the layout of the AVX-512 decode kernel (q5x).
 *
 * The file stores each block as 22 bytes (fp16 scale, 32 fifth bits, 16 bytes of nibbles).
 * The q4a kernel spends a float conversion, a multiply and an FMA per pair of blocks, and at
 * batch 1 it is bound by those, not by memory (about 27 GB/s a core where the read loop gets
 * 35). Eight blocks side by side let the kernel add their integer dot products down to two
 * lanes per block first, so one conversion, multiply and FMA serve eight blocks. Each row keeps
 * its size and place (row r at r x row_bytes); inside a row, per group of 8 blocks (176 bytes):
 *   nibbles: 2 x 64 bytes, one per 4 blocks: byte k holds value k of those blocks (their 128
 *            values in order) in its low nibble and value 64 + k in its high one;
 *   bits:    2 x 16 bytes, bit i (byte i / 8, bit i % 8) the fifth bit of value i of the 4;
 *   scales:  8 fp16, the blocks' own.
 * A row whose block count is 4 more than a multiple of 8 ends in a group of 4 (64 + 16 + 8
 * bytes); other counts are not repacked (llm_q5x_repackable). The bytes are the file's,
 * moved: any row can be given back in its file form (llm_q5x_row), which is how the exact
 * path, the prefill tiles and every kernel but the q5x one read a repacked matrix. */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include "q5x_unpack.h"
#define Q5X_AVX512 1
#endif

#define Q5_0_BYTES 22

int llm_q5x_repackable(const llm_mat *w) {
    return w->type == GGML_TYPE_Q5_0 && w->rows > 0 && w->cols > 0 && w->cols % 128 == 0 &&
           w->row_bytes == (size_t)w->cols / 32 * Q5_0_BYTES;
}

/* Where block b of a row of nb blocks lives: its group's start, the group's size (8, or 4 at
 * the end), and the block's place k in the group. */
static const uint8_t *group_of(const uint8_t *row, int nb, int b, int *gs, int *k) {
    const int g = b / 8;
    *gs = nb - 8 * g >= 8 ? 8 : 4;
    *k = b % 8;
    return row + (size_t)g * 8 * Q5_0_BYTES;
}

/* Block k of a group (k % 4 = q within its 4) is values 32 q .. 32 q + 31 of their run of 128:
 * nibble bytes 32 (q % 2) .. + 31, in the low nibbles for q < 2, the high ones else; its 32
 * fifth bits are bits 32 q .. 32 q + 31 of the run's 128, the file's qh word as it is. Whole
 * bytes at a time (a loop over single values and bits made loading a 0.5B model's 172 MB of
 * Q5_0 take a second longer). */
static void pack_row(const uint8_t *src, int nb, uint8_t *dst) {
    memset(dst, 0, (size_t)nb * Q5_0_BYTES);
    for (int b = 0; b < nb; b++, src += Q5_0_BYTES) {
        int gs, k;
        uint8_t *g = (uint8_t *)group_of(dst, nb, b, &gs, &k);
        const int q = k % 4, sh = q < 2 ? 0 : 4;
        uint8_t *o = g + 64 * (k / 4) + 32 * (q % 2);
        for (int i = 0; i < 16; i++) {
            o[i] |= (uint8_t)((src[6 + i] & 15) << sh);
            o[16 + i] |= (uint8_t)((src[6 + i] >> 4) << sh);
        }
        memcpy(g + 16 * gs + 16 * (k / 4) + 4 * q, src + 2, 4);
        memcpy(g + 20 * gs + 2 * k, src, 2);
    }
}

void llm_q5x_pack(const llm_mat *w, uint8_t *dst) {
    const int nb = w->cols / 32;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < w->rows; r++)
        pack_row((const uint8_t *)w->data + (size_t)r * w->row_bytes, nb, dst + (size_t)r * w->row_bytes);
}

void llm_q5x_row(const llm_mat *w, int r, int b0, int n, uint8_t *out) {
    const int nb = w->cols / 32;
    const uint8_t *row = (const uint8_t *)w->packed + (size_t)r * w->row_bytes;
    for (int b = b0; b < b0 + n; b++, out += Q5_0_BYTES) {
        int gs, k;
        const uint8_t *g = group_of(row, nb, b, &gs, &k);
        const int q = k % 4, sh = q < 2 ? 0 : 4;
        const uint8_t *o = g + 64 * (k / 4) + 32 * (q % 2);
        for (int i = 0; i < 16; i++) out[6 + i] = (uint8_t)((o[i] >> sh & 15) | (o[16 + i] >> sh & 15) << 4);
        memcpy(out, g + 20 * gs + 2 * k, 2);
        memcpy(out + 2, g + 16 * gs + 16 * (k / 4) + 4 * q, 4);
    }
}

#ifdef Q5X_AVX512
/* Row r as fp32 straight from the q5x layout with AVX-512: each 64 bytes of nibbles and their
 * fifth-bit masks give 4 blocks' values as bytes (as the kernel builds them), widened 16 at a
 * time and scaled. */
__attribute__((target("avx512f,avx512bw,f16c"))) static void row_f32_512(const uint8_t *row, int nb, float *dst) {
    const __m512i s16 = _mm512_set1_epi8(16);
    for (int g0 = 0; g0 < nb; g0 += 8, row += 8 * Q5_0_BYTES) {
        const int gs = nb - g0 >= 8 ? 8 : 4;
        for (int h = 0; h < gs / 4; h++) {
            __m512i v[2];
            q5x_unpack_512(row, gs, h, v);
            v[0] = _mm512_sub_epi8(v[0], s16); /* the format's offset: signed values -16..15 */
            v[1] = _mm512_sub_epi8(v[1], s16);
            for (int q = 0; q < 4; q++) { /* block 4h + q: 32 bytes of v[q / 2] */
                const int k = 4 * h + q;
                uint16_t hd;
                memcpy(&hd, row + 20 * gs + 2 * k, 2);
                const __m512 d = _mm512_set1_ps(_cvtsh_ss(hd));
                const __m256i b = q % 2 ? _mm512_extracti64x4_epi64(v[q / 2], 1) : _mm512_castsi512_si256(v[q / 2]);
                float *o = dst + 32 * (size_t)(g0 + k);
                /* + 0 as dr_dequantize's d q + m does: a zero value of a negative scale is +0 */
                const __m512 z = _mm512_setzero_ps();
                _mm512_storeu_ps(o, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(b))), d), z));
                _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(b, 1))), d), z));
            }
        }
    }
}
#endif

int llm_q5x_row_f32(const llm_mat *w, int r, float *dst) {
#ifdef Q5X_AVX512
    if (__builtin_cpu_supports("avx512bw") && llm_cpu_f16c()) {
        row_f32_512((const uint8_t *)w->packed + (size_t)r * w->row_bytes, w->cols / 32, dst);
        return 0;
    }
#endif
    (void)w, (void)r, (void)dst;
    return -1;
}
