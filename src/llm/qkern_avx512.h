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

/* Weights of blocks b and b + 1 of the row at p (only b when one: the odd tail, the rest zero):
 * the nibbles as unsigned bytes, in the activations' order (16 low, 16 high, per block), and
 * their scales spread to the 8 lanes of each block. */
static inline __attribute__((always_inline)) Q5ATTR void q4a_weights_512(const uint8_t *p, int one, __m512i *u, __m512 *dw) {
    const long long S4 = 0x0004000400040004LL; /* vpsrlvw counts: 0 for the low, 4 for the high nibbles */
    const __m512i sh = _mm512_set_epi64(S4, S4, 0, 0, S4, S4, 0, 0);
    __m512i x = _mm512_maskz_broadcast_i32x4(one ? 0x00FF : 0xFFFF, _mm_loadu_si128((const __m128i *)(p + 2)));
    uint16_t h0, h1 = 0;
    memcpy(&h0, p, 2);
    if (!one) {
        x = _mm512_mask_broadcast_i32x4(x, 0xFF00, _mm_loadu_si128((const __m128i *)(p + 20)));
        memcpy(&h1, p + 18, 2);
    }
    *u = _mm512_and_si512(_mm512_srlv_epi16(x, sh), _mm512_set1_epi8(15));
    *dw = _mm512_cvtph_ps(_mm256_mask_set1_epi16(_mm256_set1_epi16((short)h0), 0xFF00, (short)h1));
}

/* Blocks b and b + 1 (only b when one) of R rows (p, p + rb, ...) into R x J accumulators
 * (acc[i * J + j]: row i, activation row j); each activation pair is loaded once for the R rows. */
static inline __attribute__((always_inline)) Q5ATTR void q4a_pair_512(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, int b, int one, __m512 *acc) {
    const __mmask16 all = one ? 0x00FF : 0xFFFF;
    __m512i u[4];
    __m512 dw[4];
    for (int i = 0; i < R; i++) q4a_weights_512(p + (size_t)i * rb, one, &u[i], &dw[i]);
    for (int j = 0; j < J; j++) {
        const uint8_t *aj = ax + (size_t)j * as;
        const __m512i s = _mm512_maskz_loadu_epi32(all, aj + 32 * (size_t)b);
        const __m512i c = _mm512_maskz_loadu_epi32(all, aj + 32 * ((size_t)nb + b));
        const __m512 da = _mm512_maskz_loadu_ps(all, aj + 32 * (2 * (size_t)nb + b));
        for (int i = 0; i < R; i++)
            acc[i * J + j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, u[i], s)), _mm512_mul_ps(dw[i], da), acc[i * J + j]);
    }
}

/* y[i + j * ys] = row_i . a_j for R rows of rb bytes from p (R * J <= 8; R <= 4). */
static inline __attribute__((always_inline)) Q5ATTR void rows_q4a_512_t(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    __m512 acc[8];
    for (int k = 0; k < R * J; k++) acc[k] = _mm512_setzero_ps();
    /* The R rows are R short streams (a row of width 896 is 8 cache lines), too short for the
     * hardware prefetcher: the next tile (R * rb bytes on) is prefetched at the pace this one
     * is read, R x 36 bytes a step. */
    const char *pf = (const char *)p + (R * rb < 1024 ? 1024 : R * rb);
    int b = 0;
    for (; b + 2 <= nb; b += 2, p += 36, pf += 36 * R) {
        for (int i = 0; i < R; i++) _mm_prefetch(pf + 36 * i, _MM_HINT_T0);
        q4a_pair_512(p, rb, R, ax, as, J, nb, b, 0, acc);
    }
    if (b < nb) q4a_pair_512(p, rb, R, ax, as, J, nb, b, 1, acc);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < J; j++) y[i + (size_t)j * ys] = _mm512_reduce_add_ps(acc[i * J + j]);
}

/* The row and batch counts as constants in each instance, so the accumulators stay in
 * registers: 4 rows at a time for one activation row (decode), 2 for two, 1 above. */
static Q5ATTR void rows_q4a_512(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
#define Q5CASE(r, j) rows_q4a_512_t(p, rb, r, ax, as, j, nb, y, ys)
    if (J == 1 && R == 4) Q5CASE(4, 1);
    else if (J == 1 && R == 2) Q5CASE(2, 1);
    else if (J == 2 && R == 2) Q5CASE(2, 2);
    else
        for (int i = 0; i < R; i++, p += rb, y++) switch (J) {
            case 1: Q5CASE(1, 1); break;
            case 2: Q5CASE(1, 2); break;
            case 3: Q5CASE(1, 3); break;
            case 4: Q5CASE(1, 4); break;
            case 5: Q5CASE(1, 5); break;
            case 6: Q5CASE(1, 6); break;
            case 7: Q5CASE(1, 7); break;
            default: Q5CASE(1, 8); break;
            }
#undef Q5CASE
}

#undef Q5TGT
#undef Q5ATTR
