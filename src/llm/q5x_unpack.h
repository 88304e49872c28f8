/* The values of a q5x group (q5x.c has the layout) as bytes 0..31, shared by the AVX-512 decode
 * kernel (qkern_avx512.h) and the fp32 row expansion (q5x.c). */
#ifndef DEEPREC_LLM_Q5X_UNPACK_H
#define DEEPREC_LLM_Q5X_UNPACK_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* Blocks 4h..4h+3 of the group at v (gs blocks: 8, or 4 at a row's end): u[0] holds blocks 4h
 * and 4h + 1, u[1] blocks 4h + 2 and 4h + 3, each value its nibble plus 16 where its fifth bit
 * is set (the bits are loaded as 64-bit byte masks). */
static inline __attribute__((always_inline, target("avx512f,avx512bw"))) void q5x_unpack_512(const uint8_t *v, int gs, int h, __m512i *u) {
    const __m512i m4 = _mm512_set1_epi8(15), s16 = _mm512_set1_epi8(16);
    const __m512i x = _mm512_loadu_si512((const void *)(v + 64 * h));
    __mmask64 lo, hi;
    memcpy(&lo, v + 16 * gs + 16 * h, 8);
    memcpy(&hi, v + 16 * gs + 16 * h + 8, 8);
    const __m512i l = _mm512_and_si512(x, m4), t = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
    u[0] = _mm512_mask_add_epi8(l, lo, l, s16);
    u[1] = _mm512_mask_add_epi8(t, hi, t, s16);
}
#endif
