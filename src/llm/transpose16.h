/* A 16 x 16 block of 32-bit values transposed in registers, for the panel packing of the
 * prefill kernels (f32gemm.c: fp32; bf16dp.c: pairs of bf16 as one 32-bit value). Include
 * after <immintrin.h>, from code built for x86 with gcc or clang. */
#ifndef DEEPREC_LLM_TRANSPOSE16_H
#define DEEPREC_LLM_TRANSPOSE16_H

/* v[i] = row i of a 16 x 16 block -> v[m] = column m (unpack pairs, then quads, then 128-bit
 * lanes: 64 shuffles per 256 values). */
static inline __attribute__((always_inline, target("avx512f"))) void llm_transpose16(__m512 v[16]) {
    __m512 t[16], s[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* s[4i + c], 128-bit lane L: column 4L + c of rows 4i..4i+3 */
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
        __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        s[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        s[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        s[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        s[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int c = 0; c < 4; c++) {
        __m512 a = _mm512_shuffle_f32x4(s[c], s[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
        __m512 b = _mm512_shuffle_f32x4(s[c], s[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
        __m512 e = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
        __m512 f = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
        v[c] = _mm512_shuffle_f32x4(a, e, _MM_SHUFFLE(2, 0, 2, 0));
        v[8 + c] = _mm512_shuffle_f32x4(a, e, _MM_SHUFFLE(3, 1, 3, 1));
        v[4 + c] = _mm512_shuffle_f32x4(b, f, _MM_SHUFFLE(2, 0, 2, 0));
        v[12 + c] = _mm512_shuffle_f32x4(b, f, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

#endif
