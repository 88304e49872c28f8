/* Int8-activation kernels with AVX-512 VNNI for Q4_0, Q5_0, Q8_0 and IQ4_NL (and, below, the
 * super-block types Q4_K, Q5_K, Q6_K and IQ4_XS), included once by qmatmul.c: two blocks per 512-bit
 * register. The activations are in the q4a layout (see q4a_pack in qmatmul.c: nb x 32 int8
 * values, nb x 8 int32 corrections -16 * (sum of 4 values), nb x 8 copies of the scale), so two
 * consecutive blocks are 64 contiguous bytes of each array and the weights' nibbles 0..15 go
 * into vpdpbusd unsigned as they are (the correction, halved, puts the -8 of the format back; each
 * int32 lane is exactly sum (n_i - 8) a_i, as in the 256-bit kernels). The float sums run in
 * two interleaved chains (even and odd blocks), so results differ from the 256-bit kernels
 * by rounding only. */
#define Q5TGT "avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512vnni"
#define Q5ATTR __attribute__((target(Q5TGT)))

/* Weights of blocks b and b + 1 of the row at p (only b when one: the odd tail, the rest zero):
 * the values as unsigned bytes, in the activations' order (16 low, 16 high, per block), and
 * their scales spread to the 8 lanes of each block. kind 0, Q4_0 (18-byte blocks: scale, 16
 * bytes of nibbles): the nibbles 0..15. kind 1, Q5_0 (22 bytes: scale, 32 fifth bits,
 * nibbles): 16 added where the value's fifth bit is set, giving 0..31; the two blocks' bit
 * words are one 64-bit byte mask, bit i for byte i, so the fifth bits cost one masked add.
 * kind 2, Q8_0 (34 bytes: scale, 32 signed bytes): the bytes plus 128 (their top bit flipped).
 * kind 3, IQ4_NL (Q4_0's layout): the nibbles through the non-linear grid plus 128, one byte
 * shuffle (IQ4_XS falls back to it at widths that are not a multiple of 256, Qwen2.5-0.5B's). */
enum { Q4A_Q4_0, Q4A_Q5_0, Q4A_Q8_0, Q4A_IQ4_NL };

/* Two runs of 16 nibble bytes (lo, then hi; hi NULL: zeros) as 64 values 0..15 in the
 * activations' order: lo's low nibbles, lo's high nibbles, then hi's. */
static inline __attribute__((always_inline)) Q5ATTR __m512i nib_pair_512(const uint8_t *lo, const uint8_t *hi) {
    const long long S4 = 0x0004000400040004LL; /* vpsrlvw counts: 0 for the low, 4 for the high nibbles */
    const __m512i sh = _mm512_set_epi64(S4, S4, 0, 0, S4, S4, 0, 0);
    __m512i x = _mm512_maskz_broadcast_i32x4(0x00FF, _mm_loadu_si128((const __m128i *)lo));
    if (hi) x = _mm512_mask_broadcast_i32x4(x, 0xFF00, _mm_loadu_si128((const __m128i *)hi));
    return _mm512_and_si512(_mm512_srlv_epi16(x, sh), _mm512_set1_epi8(15));
}

/* IQ4's nibbles through its non-linear grid, plus 128 so that they are unsigned (the offset
 * comes back through the activations' corrections, 8c). */
static inline __attribute__((always_inline)) Q5ATTR __m512i iq4_grid_512(__m512i nibbles) {
    const __m512i grid = _mm512_broadcast_i32x4(_mm_xor_si128(_mm_loadu_si128((const __m128i *)IQ4_GRID8), _mm_set1_epi8((char)0x80)));
    return _mm512_shuffle_epi8(grid, nibbles);
}
static inline __attribute__((always_inline)) Q5ATTR void q4a_weights_512(const uint8_t *p, int kind, int one, __m512i *u, __m512 *dw) {
    const int bs = kind == Q4A_Q8_0 ? 34 : kind == Q4A_Q5_0 ? 22 : 18;
    uint16_t h0, h1 = 0;
    memcpy(&h0, p, 2);
    if (!one) memcpy(&h1, p + bs, 2);
    *dw = _mm512_cvtph_ps(_mm256_mask_set1_epi16(_mm256_set1_epi16((short)h0), 0xFF00, (short)h1));
    if (kind == Q4A_Q8_0) {
        const __m256i hi = one ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(p + bs + 2));
        const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))), hi, 1);
        *u = _mm512_maskz_xor_epi32(one ? 0x00FF : 0xFFFF, x, _mm512_set1_epi8((char)0x80));
        return;
    }
    const int qs = kind == Q4A_Q5_0 ? 6 : 2;
    *u = nib_pair_512(p + qs, one ? NULL : p + bs + qs);
    if (kind == Q4A_Q5_0) {
        uint32_t b0, b1 = 0;
        memcpy(&b0, p + 2, 4);
        if (!one) memcpy(&b1, p + bs + 2, 4);
        *u = _mm512_mask_add_epi8(*u, (__mmask64)b0 | (__mmask64)b1 << 32, *u, _mm512_set1_epi8(16));
    }
    /* the tail's zero nibbles become grid values here; its activations are zero (masked loads) */
    if (kind == Q4A_IQ4_NL) *u = iq4_grid_512(*u);
}

/* Blocks b and b + 1 (only b when one) of R rows (p, p + rb, ...) into R x J accumulators
 * (acc[i * J + j]: row i, activation row j); each activation pair is loaded once for the R rows.
 * The activations' corrections c are -16 x (sums of 4 values): Q5_0's offset as it is; Q4_0's
 * is -8, so it takes c / 2 (exact: c is even), Q8_0's -128, 8c: each int32 lane is exactly
 * sum (v - offset) a. */
static inline __attribute__((always_inline)) Q5ATTR void q4a_pair_512(const uint8_t *p, int kind, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, int b, int one, __m512 *acc) {
    const __mmask16 all = one ? 0x00FF : 0xFFFF;
    __m512i u[4];
    __m512 dw[4];
    for (int i = 0; i < R; i++) q4a_weights_512(p + (size_t)i * rb, kind, one, &u[i], &dw[i]);
    for (int j = 0; j < J; j++) {
        const uint8_t *aj = ax + (size_t)j * as;
        const __m512i s = _mm512_maskz_loadu_epi32(all, aj + 32 * (size_t)b);
        __m512i c = _mm512_maskz_loadu_epi32(all, aj + 32 * ((size_t)nb + b));
        if (kind == Q4A_Q4_0) c = _mm512_srai_epi32(c, 1);
        if (kind == Q4A_Q8_0 || kind == Q4A_IQ4_NL) c = _mm512_slli_epi32(c, 3);
        const __m512 da = _mm512_maskz_loadu_ps(all, aj + 32 * (2 * (size_t)nb + b));
        for (int i = 0; i < R; i++)
            acc[i * J + j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, u[i], s)), _mm512_mul_ps(dw[i], da), acc[i * J + j]);
    }
}

/* Where a tile's prefetches start: the same column of the first tile (the R rows read
 * together, tb bytes, taken as at least 1 KiB) at least dist bytes on, and at least the next.
 * The distances are measured, not derived (Qwen2.5-0.5B shapes, 2 threads, 600 MB of weights
 * so that nothing is left in this host's large L3; without any software prefetch these
 * kernels read 22-35 GB/s): Q8_0 with one row per tile 8 KiB on, Q5_0 with two 4 KiB on; the
 * K-quants kept one tile ahead (4 rows of ffn_down, 11-14 KB), which was faster than 2-row
 * tiles at 4-8 KiB. */
static inline __attribute__((always_inline)) const char *q4a_prefetch_at(const uint8_t *p, size_t tb, size_t dist) {
    if (tb < 1024) tb = 1024;
    const size_t k = (dist + tb - 1) / tb;
    return (const char *)p + tb * (k ? k : 1);
}

/* y[i + j * ys] = row_i . a_j for R rows of rb bytes from p (R * J <= 8; R <= 4; the NAME
 * functions below take any R, more rows than a tile one at a time). */
static inline __attribute__((always_inline)) Q5ATTR void rows_q4a_512_t(const uint8_t *p, int kind, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    __m512 acc[8];
    for (int k = 0; k < R * J; k++) acc[k] = _mm512_setzero_ps();
    /* The R rows are R short streams (a row of width 896 is 8 cache lines), too short for the
     * hardware prefetcher: a tile further on (q4a_prefetch_at) is prefetched at the pace this
     * one is read, R x 2 blocks a step. */
    const int step = kind == Q4A_Q8_0 ? 68 : kind == Q4A_Q5_0 ? 44 : 36;
    const char *pf = q4a_prefetch_at(p, R * rb, kind == Q4A_Q8_0 ? 8192 : kind == Q4A_Q5_0 ? 4096 : 0);
    int b = 0;
    for (; b + 2 <= nb; b += 2, p += step, pf += step * R) {
        for (int i = 0; i < R; i++) _mm_prefetch(pf + step * i, LLM_PF_STREAM);
        q4a_pair_512(p, kind, rb, R, ax, as, J, nb, b, 0, acc);
    }
    if (b < nb) q4a_pair_512(p, kind, rb, R, ax, as, J, nb, b, 1, acc);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < J; j++) y[i + (size_t)j * ys] = _mm512_reduce_add_ps(acc[i * J + j]);
}

/* The row and batch counts as constants in each instance, so the accumulators stay in
 * registers: 4 rows at a time for one activation row (decode), 2 for two, 1 above. A call of
 * more than 4 rows for one activation row (q4a_call_rows in qmatmul.c) is a run of 2-row
 * tiles where Q5PAIRS is 1 (Q5_0), else of 1-row ones. */
#define Q5CASE(r, j) rows_q4a_512_t(p, Q5, rb, r, ax, as, j, nb, y, ys)
#define Q5ROWS(NAME)                                                                                                   \
    static Q5ATTR void NAME(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) { \
        if (Q5PAIRS && J == 1 && R > 4) {                                                                              \
            for (; R >= 2; R -= 2, p += 2 * rb, y += 2) Q5CASE(2, 1);                                                  \
            if (R) Q5CASE(1, 1);                                                                                       \
        } else if (J == 1 && R == 4) Q5CASE(4, 1);                                                                     \
        else if (J == 1 && R == 2) Q5CASE(2, 1);                                                                       \
        else if (J == 2 && R == 2) Q5CASE(2, 2);                                                                       \
        else                                                                                                           \
            for (int i = 0; i < R; i++, p += rb, y++) switch (J) {                                                     \
                case 1: Q5CASE(1, 1); break;                                                                           \
                case 2: Q5CASE(1, 2); break;                                                                           \
                case 3: Q5CASE(1, 3); break;                                                                           \
                case 4: Q5CASE(1, 4); break;                                                                           \
                case 5: Q5CASE(1, 5); break;                                                                           \
                case 6: Q5CASE(1, 6); break;                                                                           \
                case 7: Q5CASE(1, 7); break;                                                                           \
                default: Q5CASE(1, 8); break;                                                                          \
                }                                                                                                      \
    }
#define Q5PAIRS 0
#define Q5 Q4A_Q4_0
Q5ROWS(rows_q4a_512)
#undef Q5
#undef Q5PAIRS
#define Q5PAIRS 1
#define Q5 Q4A_Q5_0
Q5ROWS(rows_q5a_512)
#undef Q5
#undef Q5PAIRS
#define Q5PAIRS 0
#define Q5 Q4A_Q8_0
Q5ROWS(rows_q8a_512)
#undef Q5
#define Q5 Q4A_IQ4_NL
Q5ROWS(rows_iq4nla_512)
#undef Q5
#undef Q5CASE
#undef Q5PAIRS
#undef Q5ROWS

/* NAME(p, rb, R, ax, as, J, nb, y, ys) for the kernel KERN(ARGS p, rb, R, ax, as, J, nb, y,
 * ys) (ARGS empty, or a first argument and its comma), whose accumulators stay in registers
 * for up to 4 activation rows, each count its own instance. More rows are taken in passes of 4
 * over each row, the later ones from L1: these kernels add their sums down per activation row,
 * and in one pass of 8 that ran 30-34% slower than the q4a kernel on the file's layout (q5x,
 * 4864 x 896 from memory, 2 threads), in two at par. */
#define ROWS_IN_PASSES_OF_4(NAME, KERN, ...)                                                                           \
    static Q5ATTR void NAME(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) { \
        if (J > 4) {                                                                                                   \
            for (int i = 0; i < R; i++, p += rb, y++) {                                                                 \
                KERN(__VA_ARGS__ p, rb, 1, ax, as, 4, nb, y, ys);                                                      \
                NAME(p, rb, 1, ax + 4 * as, as, J - 4, nb, y + 4 * ys, ys);                                            \
            }                                                                                                          \
            return;                                                                                                    \
        }                                                                                                              \
        switch (J) {                                                                                                   \
        case 1: KERN(__VA_ARGS__ p, rb, R, ax, as, 1, nb, y, ys); break;                                                \
        case 2: KERN(__VA_ARGS__ p, rb, R, ax, as, 2, nb, y, ys); break;                                                \
        case 3: KERN(__VA_ARGS__ p, rb, R, ax, as, 3, nb, y, ys); break;                                                \
        default: KERN(__VA_ARGS__ p, rb, R, ax, as, 4, nb, y, ys); break;                                               \
        }                                                                                                              \
    }

/* ---- Q4_K, Q5_K and IQ4_XS (256-value super-blocks; Q6_K has its own kernel below,
 * q6kx_512_t) on the same q4a activations, a super-block a step with its integer sums added
 * down before any float work, as q5x_step_512 does and in the same lane order, so that the
 * q4a layout's q5x run d8 gives the activations' scales. One vpdpbusd a pair of blocks: Q4_K's
 * chunk of 32 bytes is blocks 2t (low nibbles) and 2t + 1 (high), multiplied as stored
 * (0..15); IQ4_XS's grid values plus 128 come back through 8c (exact int32 lanes, as above).
 * Q4_K's mins come in once a super-block, as the dot product of the 8 dmin x min with the
 * activations' block sums (run sa: d x the sum of the block's values). The kernel this
 * replaced paid a conversion, two permutes, a multiply and two FMAs per pair of blocks, row
 * and activation row; one matrix of ffn_down (896 x 4864) from memory on 2 threads read 11%
 * (1 activation row), 25% (2) and 112% (4) faster as Q4_K, 8%, 20% and 130% as Q5_K. */
enum { KQ_Q4_K, KQ_Q5_K, KQ_IQ4_XS };

/* Q4_K's 8 scales x d in lanes 0..7 and 8 mins x dmin in lanes 8..15. The 12 bytes of 6-bit
 * scales and mins (src/gguf/blocks.c) are unpacked as four 32-bit words (bytes 0-3: scales
 * 0-3, 4-7: scales 4-7, 8-11: mins 0-3, 12-15: mins 4-7) and widened in registers: a scalar
 * loop writing 16 floats to the stack and loading them as one vector stalled on store
 * forwarding once per super-block and row. */
static inline __attribute__((always_inline)) Q5ATTR __m512 q4k_scales_512(const uint8_t *p) {
    uint16_t hd, hm;
    uint32_t w0, w1, w2;
    memcpy(&hd, p, 2);
    memcpy(&hm, p + 2, 2);
    memcpy(&w0, p + 4, 4);
    memcpy(&w1, p + 8, 4);
    memcpy(&w2, p + 12, 4);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    const uint32_t sc_lo = w0 & m6, sc_hi = (w2 & m4) | (((w0 >> 6) & m2) << 4);
    const uint32_t mn_lo = w1 & m6, mn_hi = ((w2 >> 4) & m4) | (((w1 >> 6) & m2) << 4);
    const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_set_epi32((int)mn_hi, (int)mn_lo, (int)sc_hi, (int)sc_lo)));
    const __m512 f = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(_cvtsh_ss(hd)), _mm512_set1_ps(_cvtsh_ss(hm)));
    return _mm512_mul_ps(v, f);
}

/* IQ4_XS's 8 signed 6-bit scales x d in lanes 0..7: 4 low bits in p[4..7], 2 high in p[2..3];
 * byte k of ls is nibble k of lo with bits 2k, 2k + 1 of hs at bits 4-5, built in a register
 * (a scalar loop into an array stalled on store forwarding). */
static inline __attribute__((always_inline)) Q5ATTR __m512 iq4xs_scales_512(const uint8_t *p) {
    uint16_t hd, hs;
    uint32_t lo;
    memcpy(&hd, p, 2);
    memcpy(&hs, p + 2, 2);
    memcpy(&lo, p + 4, 4);
    const uint64_t ls = _pdep_u64(lo, 0x0F0F0F0F0F0F0F0FULL) | _pdep_u64(hs, 0x3030303030303030ULL);
    const __m512i vi = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_cvtsi64_si128((long long)ls)), _mm512_set1_epi32(32));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(vi), _mm512_set1_ps(_cvtsh_ss(hd)));
}

/* Blocks 2t and 2t + 1 of the super-block at r as one register of values as the kernel
 * multiplies them. Q5_K is Q4_K's layout with 32 bytes of fifth bits before the nibbles: bit
 * 2t of byte l for value l of block 2t, bit 2t + 1 for block 2t + 1. */
static inline __attribute__((always_inline)) Q5ATTR __m512i kq_pair_values_512(int kind, const uint8_t *r, int t) {
    if (kind == KQ_IQ4_XS) return iq4_grid_512(nib_pair_512(r + 8 + 32 * t, r + 24 + 32 * t));
    const long long S4 = 0x0004000400040004LL; /* vpsrlvw counts: low nibbles in the lower half, high in the upper */
    const __m512i sh = _mm512_set_epi64(S4, S4, S4, S4, 0, 0, 0, 0);
    const __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(r + (kind == KQ_Q5_K ? 48 : 16) + 32 * t)));
    __m512i u = _mm512_and_si512(_mm512_srlv_epi16(x, sh), _mm512_set1_epi8(15));
    if (kind == KQ_Q5_K) {
        const long long A = 0x0001000100010001LL * (2 * t), B = 0x0001000100010001LL * (2 * t + 1);
        const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(r + 16)));
        const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(H, _mm512_set_epi64(B, B, B, B, A, A, A, A)), _mm512_set1_epi8(1));
        u = _mm512_or_si512(u, _mm512_slli_epi16(hb, 4));
    }
    return u;
}

/* y[i + j * ys] = row i . activation row j for R rows rb bytes apart from p, J <= 4. One row at
 * a time, prefetching every cache line 4 KiB on (as q6kx_512_t). */
static inline __attribute__((always_inline)) Q5ATTR void kq_512_t(int kind, const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    const __m512i order = _mm512_set_epi32(7, 7, 3, 3, 6, 6, 2, 2, 5, 5, 1, 1, 4, 4, 0, 0);
    const int sbb = kind == KQ_Q5_K ? 176 : kind == KQ_IQ4_XS ? 136 : 144; /* bytes of a super-block */
    for (int i = 0; i < R; i++, p += rb) {
        __m512 acc[4];
        __m256 accm[4];
        for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps(), accm[j] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b += 8) {
            const uint8_t *r = p + (size_t)sbb * (b / 8);
            for (int l = 0; l < sbb; l += 64) _mm_prefetch((const char *)r + 4096 + l, LLM_PF_STREAM);
            const __m512 sv = kind == KQ_IQ4_XS ? iq4xs_scales_512(r) : q4k_scales_512(r);
            const __m512 dw = _mm512_permutexvar_ps(order, sv);
            const __m256 mw = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sv), 1));
            __m512i u[4];
            for (int t = 0; t < 4; t++) u[t] = kq_pair_values_512(kind, r, t);
            for (int j = 0; j < J; j++) {
                const uint8_t *aj = ax + (size_t)j * as;
                const int8_t *s = (const int8_t *)aj + 32 * (size_t)b;
                const int32_t *c = (const int32_t *)(aj + 32 * (size_t)nb) + 8 * (size_t)b;
                __m512i d[4];
                for (int t = 0; t < 4; t++) {
                    const __m512i c0 = kind == KQ_IQ4_XS ? _mm512_slli_epi32(_mm512_loadu_si512((const void *)(c + 16 * t)), 3) : _mm512_setzero_si512();
                    d[t] = _mm512_dpbusd_epi32(c0, u[t], _mm512_loadu_si512((const void *)(s + 64 * t)));
                }
                const __m512i e0 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[0], d[1], 0x88), _mm512_shuffle_i32x4(d[0], d[1], 0xDD));
                const __m512i e1 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[2], d[3], 0x88), _mm512_shuffle_i32x4(d[2], d[3], 0xDD));
                const __m512i f = _mm512_add_epi32(_mm512_unpacklo_epi64(e0, e1), _mm512_unpackhi_epi64(e0, e1));
                const __m512 da = _mm512_loadu_ps((const float *)(aj + Q4A_D8_AT(nb)) + 2 * (size_t)b);
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_mul_ps(dw, da), acc[j]);
                if (kind != KQ_IQ4_XS) accm[j] = _mm256_fmadd_ps(mw, _mm256_loadu_ps((const float *)(aj + Q4A_SA_AT(nb)) + b), accm[j]);
            }
        }
        for (int j = 0; j < J; j++) {
            const __m128 m = _mm_add_ps(_mm256_castps256_ps128(accm[j]), _mm256_extractf128_ps(accm[j], 1));
            const __m128 m2 = _mm_add_ps(m, _mm_movehl_ps(m, m));
            y[i + (size_t)j * ys] = _mm512_reduce_add_ps(acc[j]) - _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
        }
    }
}

ROWS_IN_PASSES_OF_4(rows_q4k_512, kq_512_t, KQ_Q4_K, )
ROWS_IN_PASSES_OF_4(rows_q5k_512, kq_512_t, KQ_Q5_K, )
ROWS_IN_PASSES_OF_4(rows_iq4xs_512, kq_512_t, KQ_IQ4_XS, )

/* ---- the q4x layout (q4x.c) x q4x activations (q4x_act_pack in qmatmul.c: nb x 32 int8
 * values, nb x 4 int32 corrections c_k = -8 * (sum of values 4k..4k+3 and 16+4k..16+4k+3), nb
 * scales). One 512-bit load is block b of 4 rows, a 128-bit lane per row: the low nibbles
 * (values 0..15) meet the activations' values 0..15 broadcast to the 4 lanes, the high
 * nibbles values 16..31, and int32 lane 4i + k holds row i's sum over values 4k..4k+3 and
 * 16+4k..16+4k+3, exactly sum (n - 8) a once c starts it: no decoding step per row, and one
 * scale multiply per block for 4 rows. The rows' scales of 4 blocks are converted at once and
 * spread to their lanes by one permute per block. */
static inline __attribute__((always_inline)) Q5ATTR void q4x_block_512(const uint8_t *g, int b, int k, __m512 w16, const uint8_t *ax, size_t as, int nb, int J, __m512 *acc) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i x = _mm512_load_si512((const void *)(g + 64 * (size_t)b));
    const __m512i lo = _mm512_and_si512(x, m4), hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512 ws = _mm512_permutexvar_ps(_mm512_add_epi32(spread, _mm512_set1_epi32(4 * k)), w16);
    for (int j = 0; j < J; j++) {
        const uint8_t *aj = ax + (size_t)j * as;
        const __m512i c = _mm512_broadcast_i32x4(_mm_loadu_si128(Q4X_AC(aj, nb, b)));
        const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(c, lo, _mm512_broadcast_i32x4(_mm_loadu_si128(Q4X_AQ(aj, b, 0)))),
                                              hi, _mm512_broadcast_i32x4(_mm_loadu_si128(Q4X_AQ(aj, b, 1))));
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(ws, _mm512_set1_ps(Q4X_AD(aj, nb, b))), acc[j]);
    }
}

/* y[i + j * ys] = row i of the group at g . activation row j, for i < nr <= 4, j < J <= 8. */
static inline __attribute__((always_inline)) Q5ATTR void q4x_512_t(const uint8_t *g, int nb, const uint8_t *ax, size_t as, int J, float *y, size_t ys, int nr) {
    /* At batch 1 and 2 the FMA into one accumulator per activation row would wait on its own
     * latency every block: even and odd blocks take separate accumulators there. */
    const int C = J <= 2 ? 2 : 1;
    __m512 acc[16];
    for (int k = 0; k < 16; k++) acc[k] = _mm512_setzero_ps();
    const uint8_t *sc = g + 64 * (size_t)nb;
    int b = 0;
    for (; b + 4 <= nb; b += 4) {
        for (int k = 0; LLM_Q4X_PREFETCH && k < 4; k++) _mm_prefetch((const char *)g + 64 * (size_t)(b + k) + LLM_Q4X_PREFETCH, LLM_PF_STREAM);
        const __m512 w16 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(sc + 8 * (size_t)b)));
        for (int k = 0; k < 4; k++) q4x_block_512(g, b + k, k, w16, ax, as, nb, J, acc + 8 * (C == 2 ? k & 1 : 0));
    }
    if (b < nb) { /* the scale run is padded: reading 4 blocks' scales stays inside the group */
        const __m512 w16 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(sc + 8 * (size_t)b)));
        for (int k = 0; b + k < nb; k++) q4x_block_512(g, b + k, k, w16, ax, as, nb, J, acc + 8 * (C == 2 ? k & 1 : 0));
    }
    const __m512i gather = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    for (int j = 0; j < J; j++) {
        __m512 a = C == 2 ? _mm512_add_ps(acc[j], acc[8 + j]) : acc[j];
        a = _mm512_add_ps(a, _mm512_permute_ps(a, 0x4E)); /* lanes of a row: (0,1,2,3) + (2,3,0,1) */
        a = _mm512_add_ps(a, _mm512_permute_ps(a, 0xB1)); /* + (1,0,3,2): the row's sum in its first lane */
        float out[4];
        _mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(gather, a)));
        for (int i = 0; i < nr; i++) y[i + (size_t)j * ys] = out[i];
    }
}

static Q5ATTR void q4x_512(const uint8_t *g, int nb, const uint8_t *ax, size_t as, int J, float *y, size_t ys, int nr) {
#define Q4X_CALL(j) q4x_512_t(g, nb, ax, as, j, y, ys, nr)
    LLM_J_SWITCH(J, Q4X_CALL)
#undef Q4X_CALL
}

/* ---- Q5_0 repacked (q5x.c): 8 blocks a step on the q4a activations. Each pair of blocks goes
 * through vpdpbusd as in q4a_pair_512, and then, before any float work, the four pairs' int32
 * lanes are added down to two lanes per block (two shuffles and an add per two pairs, an unpack
 * and an add for all four): lane 4q + 0..1 of the sum belongs to block q, lanes 4q + 2..3 to
 * block q + 4. The q4a layout's q5x run (q4a_pack_d8: 16 activation scales per 8 blocks in
 * that order) meets the weights' scales spread the same way by one permute, so the conversion,
 * the scale product and the FMA are paid once per 8 blocks instead of 4 times: at batch 1
 * those, not memory, bound the q4a kernel (Q5_0: 27 GB/s a core from memory and 29 from L2,
 * where this one does 33 and 42; scratch benchmark, 600 MB of 4864 x 896 rows). The integer
 * sums are exact, so results differ from q4a's by the float rounding order only. v: the
 * group's values (per 4 blocks 64 bytes of nibbles, low values 0..63, high 64..127, then per
 * 4 blocks 16 bytes of fifth bits), sc: its 8 fp16 scales; gs: blocks in the group (8, or 4
 * at the end of a row). */
static inline __attribute__((always_inline)) Q5ATTR void q5x_step_512(const uint8_t *v, const uint8_t *sc, int gs, int b, const uint8_t *ax, size_t as, int J, int nb, __m512 *acc) {
    const __m512i order = _mm512_set_epi32(7, 7, 3, 3, 6, 6, 2, 2, 5, 5, 1, 1, 4, 4, 0, 0);
    __m512i u[4];
    for (int h = 0; h < gs / 4; h++) q5x_unpack_512(v, gs, h, u + 2 * h);
    const __m128i h16 = gs == 8 ? _mm_loadu_si128((const __m128i *)sc) : _mm_loadl_epi64((const __m128i *)sc);
    const __m512 dw = _mm512_permutexvar_ps(order, _mm512_castps256_ps512(_mm256_cvtph_ps(h16)));
    for (int j = 0; j < J; j++) {
        const uint8_t *aj = ax + (size_t)j * as;
        const int8_t *s = (const int8_t *)aj + 32 * (size_t)b;
        const int32_t *c = (const int32_t *)(aj + 32 * (size_t)nb) + 8 * (size_t)b;
        __m512i d[4];
        for (int k = 0; k < gs / 2; k++) /* Q5_0's offset 16 back through c */
            d[k] = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(c + 16 * k)), u[k], _mm512_loadu_si512((const void *)(s + 64 * k)));
        const __m512i e0 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[0], d[1], 0x88), _mm512_shuffle_i32x4(d[0], d[1], 0xDD));
        const __m512i e1 = gs == 8 ? _mm512_add_epi32(_mm512_shuffle_i32x4(d[2], d[3], 0x88), _mm512_shuffle_i32x4(d[2], d[3], 0xDD))
                                   : _mm512_setzero_si512();
        const __m512i f = _mm512_add_epi32(_mm512_unpacklo_epi64(e0, e1), _mm512_unpackhi_epi64(e0, e1));
        const __m512 da = _mm512_loadu_ps((const float *)(aj + Q4A_D8_AT(nb)) + 2 * (size_t)b);
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_mul_ps(dw, da), acc[j]);
    }
}

/* y[i + j * ys] = row i . activation row j for R rows rb bytes apart from p (q5x layout),
 * J <= 4, nb a multiple of 4. One row at a time, prefetching every cache line 4 KiB on. */
static inline __attribute__((always_inline)) Q5ATTR void q5x_512_t(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    for (int i = 0; i < R; i++, p += rb) {
        __m512 acc[4];
        for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps();
        int b = 0;
        for (; b + 8 <= nb; b += 8) {
            const uint8_t *g = p + (size_t)22 * b;
            for (int l = 0; l < 176; l += 64) _mm_prefetch((const char *)g + 4096 + l, LLM_PF_STREAM);
            q5x_step_512(g, g + 160, 8, b, ax, as, J, nb, acc);
        }
        if (b < nb) {
            const uint8_t *g = p + (size_t)22 * b;
            q5x_step_512(g, g + 80, 4, b, ax, as, J, nb, acc);
        }
        for (int j = 0; j < J; j++) y[i + (size_t)j * ys] = _mm512_reduce_add_ps(acc[j]);
    }
}

ROWS_IN_PASSES_OF_4(rows_q5x_512, q5x_512_t, )

/* ---- Q6_K, a super-block (8 blocks) a step, its integer sums added down before any float
 * work: the per-pair float work (conversion, scale product, FMA) was most of rows_q6k_512's
 * time at batch 1 (11-13 GB/s a core and 21-26 on two threads from memory, where the plain read
 * loop gets 29-33 and 50-70; this one 17 and 27-33; scratch benchmark, 600 MB of 896 x 4864
 * rows). Value v's 6 bits are the nibble of ql and the 2 bits of qh that the format gives
 * (per half of 128 values: 64 bytes of ql, low nibbles values 0..63, high 64..127, and 32 of
 * qh, bit pairs 0-1, 2-3, 4-5, 6-7 for values l, l + 32, l + 64, l + 96), its scale v / 16.
 * Each quarter of a vpdpbusd result (16 values) has its own scale, so the 4 results of a
 * super-block are transposed and added to one lane per quarter: lane 4q + k is values
 * 64k + 16q ..+15, scale 4k + q, block 2k + q / 2. */
static inline __attribute__((always_inline)) Q5ATTR void q6kx_512_t(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    const __m512i tr = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    const __m512i blk = _mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 6, 4, 2, 0, 6, 4, 2, 0);
    for (int i = 0; i < R; i++, p += rb) {
        __m512 acc[4];
        for (int j = 0; j < J; j++) acc[j] = _mm512_setzero_ps();
        for (int b = 0; b < nb; b += 8) {
            const uint8_t *r = p + (size_t)210 * (b / 8);
            for (int l = 0; l < 210; l += 64) _mm_prefetch((const char *)r + 4096 + l, LLM_PF_STREAM);
            uint16_t hd;
            memcpy(&hd, r + 208, 2);
            const __m512 s16 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(r + 192))));
            const __m512 dw = _mm512_permutexvar_ps(tr, _mm512_mul_ps(s16, _mm512_set1_ps(_cvtsh_ss(hd))));
            __m512i u[4];
            for (int h = 0; h < 2; h++) {
                const __m512i x = _mm512_loadu_si512((const void *)(r + 64 * h));
                const __m256i q = _mm256_loadu_si256((const __m256i *)(r + 128 + 32 * h));
                const __m512i hlo = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi64(q, 2), 1);
                const __m512i hhi = _mm512_srli_epi64(hlo, 4);
                u[2 * h] = _mm512_or_si512(_mm512_and_si512(x, m4), _mm512_slli_epi16(_mm512_and_si512(hlo, m2), 4));
                u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(x, 4), m4), _mm512_slli_epi16(_mm512_and_si512(hhi, m2), 4));
            }
            for (int j = 0; j < J; j++) {
                const uint8_t *aj = ax + (size_t)j * as;
                const int8_t *s = (const int8_t *)aj + 32 * (size_t)b;
                const int32_t *c = (const int32_t *)(aj + 32 * (size_t)nb) + 8 * (size_t)b;
                __m512i d[4];
                for (int k = 0; k < 4; k++) /* the offset 32 back through 2c */
                    d[k] = _mm512_dpbusd_epi32(_mm512_slli_epi32(_mm512_loadu_si512((const void *)(c + 16 * k)), 1), u[k],
                                               _mm512_loadu_si512((const void *)(s + 64 * k)));
                const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
                const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
                const __m512i f = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
                const float *d1 = (const float *)(aj + 96 * (size_t)nb); /* q4a_pack's one scale per block */
                const __m512 da = _mm512_permutexvar_ps(blk, _mm512_castps256_ps512(_mm256_loadu_ps(d1 + b)));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_mul_ps(dw, da), acc[j]);
            }
        }
        for (int j = 0; j < J; j++) y[i + (size_t)j * ys] = _mm512_reduce_add_ps(acc[j]);
    }
}

ROWS_IN_PASSES_OF_4(rows_q6kx_512, q6kx_512_t, )

#undef ROWS_IN_PASSES_OF_4
#undef Q5TGT
#undef Q5ATTR
