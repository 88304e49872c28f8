/* Q4_0 x int8 activations with AVX-512 VNNI, included once by qmatmul.c: two blocks per 512-bit
 * register. The activations are in the q4a layout (see q4a_pack in qmatmul.c: nb x 32 int8
 * values, nb x 8 int32 corrections -8 * (sum of 4 values), nb x 8 copies of the scale), so two
 * consecutive blocks are 64 contiguous bytes of each array and the weights' nibbles 0..15 go
 * into vpdpbusd unsigned as they are (the correction puts the -8 of the format back; each
 * int32 lane is exactly sum (n_i - 8) a_i, as in the 256-bit kernels). The float sums run in
 * two interleaved chains (even and odd blocks), so results differ from the 256-bit kernels
 * by rounding only. */
#define Q5TGT "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
#define Q5ATTR __attribute__((target(Q5TGT)))

/* Blocks b and b + 1 (only b when one == 1: the odd tail, the rest masked to zero) of a row at p
 * into J accumulators. */
static inline __attribute__((always_inline)) Q5ATTR void q4a_pair_512(const uint8_t *p, const uint8_t *ax, size_t as, int J, int nb, int b, int one, __m512 *acc) {
    const __mmask16 lo = 0x00FF, all = one ? lo : 0xFFFF;
    const long long S4 = 0x0004000400040004LL; /* vpsrlvw counts: 0 for the low, 4 for the high nibbles */
    const __m512i sh = _mm512_set_epi64(S4, S4, 0, 0, S4, S4, 0, 0);
    __m512i x = _mm512_maskz_broadcast_i32x4(one ? 0x00FF : 0xFFFF, _mm_loadu_si128((const __m128i *)(p + 2)));
    uint16_t h0, h1 = 0;
    memcpy(&h0, p, 2);
    if (!one) {
        x = _mm512_mask_broadcast_i32x4(x, 0xFF00, _mm_loadu_si128((const __m128i *)(p + 20)));
        memcpy(&h1, p + 18, 2);
    }
    const __m512i u = _mm512_and_si512(_mm512_srlv_epi16(x, sh), _mm512_set1_epi8(15));
    const __m512 dw = _mm512_cvtph_ps(_mm256_mask_set1_epi16(_mm256_set1_epi16((short)h0), 0xFF00, (short)h1));
    for (int j = 0; j < J; j++) {
        const uint8_t *aj = ax + (size_t)j * as;
        __m512i s = _mm512_maskz_loadu_epi32(all, aj + 32 * (size_t)b);
        __m512i c = _mm512_maskz_loadu_epi32(all, aj + 32 * ((size_t)nb + b));
        __m512 sc = _mm512_mul_ps(dw, _mm512_maskz_loadu_ps(all, aj + 32 * (2 * (size_t)nb + b)));
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, u, s)), sc, acc[j]);
    }
}

static inline __attribute__((always_inline)) Q5ATTR void row_q4a_512_t(const uint8_t *p, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    __m512 acc[8];
    for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2, p += 36) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        q4a_pair_512(p, ax, as, J, nb, b, 0, acc);
    }
    if (b < nb) q4a_pair_512(p, ax, as, J, nb, b, 1, acc);
    for (int j = 0; j < J; j++) y[(size_t)j * ys] = _mm512_reduce_add_ps(acc[j]);
}

static Q5ATTR void row_q4a_512(const uint8_t *p, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    switch (J) { /* the batch size as a constant in each instance: the accumulators stay in registers */
    case 1: row_q4a_512_t(p, ax, as, 1, nb, y, ys); break;
    case 2: row_q4a_512_t(p, ax, as, 2, nb, y, ys); break;
    case 3: row_q4a_512_t(p, ax, as, 3, nb, y, ys); break;
    case 4: row_q4a_512_t(p, ax, as, 4, nb, y, ys); break;
    case 5: row_q4a_512_t(p, ax, as, 5, nb, y, ys); break;
    case 6: row_q4a_512_t(p, ax, as, 6, nb, y, ys); break;
    case 7: row_q4a_512_t(p, ax, as, 7, nb, y, ys); break;
    default: row_q4a_512_t(p, ax, as, 8, nb, y, ys); break;
    }
}

#undef Q5TGT
#undef Q5ATTR
