/* Fused int8 row kernels for the common block types, included by qmatmul.c once per
 * instruction set: KSUF names the variant, KTGT its target, KIDOT(u, s) the 8 int32 sums of
 * 4 products (u unsigned, s signed bytes), KIDOTACC(c, u, s) the same added to c. Each block is decoded to 32 signed bytes in a
 * register once and multiplied with up to 8 activation rows, so a batch reads the weights
 * once; decoding follows the layouts in src/gguf/blocks.c. */
#define KCAT_(a, b) a##_##b
#define KCAT(a, b) KCAT_(a, b)
#define KFN(name) KCAT(name, KSUF)
#define KATTR __attribute__((target(KTGT)))

static inline KATTR __m256i KFN(kidot)(__m256i u, __m256i s) { return KIDOT(u, s); }

static inline KATTR float KFN(f16)(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* One unit of 32 weights (qw signed bytes, dw = [d0 x4, d1 x4]) into J accumulators. */
static inline KATTR void KFN(consume)(__m256i qw, __m256 dw, const llm_ablk *a, size_t as, int J, __m256 *acc) {
    const __m256i uw = _mm256_sign_epi8(qw, qw);
    for (int j = 0; j < J; j++) {
        const llm_ablk *aj = a + (size_t)j * as;
        __m256i p = KFN(kidot)(uw, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)aj->q), qw));
        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, _mm256_set1_ps(aj->d)), acc[j]);
    }
}

static inline KATTR void KFN(mins)(float m0, float m1, const llm_ablk *a, size_t as, int J, float *macc) {
    for (int j = 0; j < J; j++) macc[j] += m0 * a[(size_t)j * as].s[0] + m1 * a[(size_t)j * as].s[1];
}

static inline KATTR __m256i KFN(nib32)(const uint8_t *qs) { /* 16 bytes: low nibbles then high nibbles */
    __m128i x = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m), _mm_and_si128(x, m));
}

/* 0xFF in byte i where bit i of the 32-bit word is set. */
static inline KATTR __m256i KFN(bits32)(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

static inline KATTR __m256 KFN(dsplat)(float d0, float d1) {
    return _mm256_set_m128(_mm_set1_ps(d1), _mm_set1_ps(d0));
}

static inline KATTR void KFN(finish)(const __m256 *acc, const float *macc, int J, float *y, size_t ys) {
    for (int j = 0; j < J; j++) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        y[(size_t)j * ys] = _mm_cvtss_f32(s) + macc[j];
    }
}

/* y[j * ys] = row . a_j for j < J <= 8; nb units of 32 in the row. */
static inline __attribute__((always_inline)) KATTR void KFN(row_q8_0_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, p += 34) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        float d = KFN(f16)(p);
        KFN(consume)(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_ps(d), a + b, as, J, acc);
    }
    KFN(finish)(acc, macc, J, y, ys);
}

/* Q4_0 on the q4a activation layout (qmatmul.c: per activation row nb x 32 int8 values, then
 * nb x 8 int32 corrections c_k = -16 * (sum of values 4k..4k+3), then nb x 8 copies of the scale).
 * The nibbles 0..15 go into KIDOTACC unsigned as they are and the -8 of the format comes back
 * through c / 2, so each int32 lane is exactly sum (n_i - 8) a_i, as when the weight's sign is
 * moved onto a (consume), and the float steps and their order are those of consume: the same
 * result as that kernel gave for Q4_0, without its subtract and two sign steps per block. */
static inline __attribute__((always_inline)) KATTR void KFN(row_q4a_t)(const uint8_t *p, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, p += 18) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        const __m256 dw = _mm256_set1_ps(KFN(f16)(p));
        const __m256i u = KFN(nib32)(p + 2);
        for (int j = 0; j < J; j++) {
            const uint8_t *aj = ax + (size_t)j * as;
            __m256i s = _mm256_loadu_si256((const __m256i *)(aj + 32 * (size_t)b));
            __m256i c = _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(aj + 32 * ((size_t)nb + b))), 1);
            __m256 sc = _mm256_mul_ps(dw, _mm256_set1_ps(*(const float *)(aj + 32 * (2 * (size_t)nb + b))));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(KIDOTACC(c, u, s)), sc, acc[j]);
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_q4_1_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, p += 20) {
        float d = KFN(f16)(p), m = KFN(f16)(p + 2);
        KFN(consume)(KFN(nib32)(p + 4), _mm256_set1_ps(d), a + b, as, J, acc);
        KFN(mins)(m, m, a + b, as, J, macc);
    }
    KFN(finish)(acc, macc, J, y, ys);
}

/* Q5_0: nibble | 0xF0 where the fifth bit is clear is (nibble | bit << 4) - 16 as a signed byte. */
static inline __attribute__((always_inline)) KATTR void KFN(row_q5_0_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i hi = _mm256_set1_epi8((char)0xF0);
    for (int b = 0; b < nb; b++, p += 22) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        float d = KFN(f16)(p);
        __m256i q = _mm256_or_si256(KFN(nib32)(p + 6), _mm256_andnot_si256(KFN(bits32)(p + 2), hi));
        KFN(consume)(q, _mm256_set1_ps(d), a + b, as, J, acc);
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_q5_1_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i b4 = _mm256_set1_epi8(16);
    for (int b = 0; b < nb; b++, p += 24) {
        float d = KFN(f16)(p), m = KFN(f16)(p + 2);
        __m256i q = _mm256_or_si256(KFN(nib32)(p + 8), _mm256_and_si256(KFN(bits32)(p + 4), b4));
        KFN(consume)(q, _mm256_set1_ps(d), a + b, as, J, acc);
        KFN(mins)(m, m, a + b, as, J, macc);
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_iq4_nl_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)IQ4_GRID8));
    for (int b = 0; b < nb; b++, p += 18) {
        float d = KFN(f16)(p);
        KFN(consume)(_mm256_shuffle_epi8(grid, KFN(nib32)(p + 2)), _mm256_set1_ps(d), a + b, as, J, acc);
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_q4_k_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int b = 0; b < nb; b += 8, p += 144) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1088, _MM_HINT_T0);
        float d = KFN(f16)(p), dmin = KFN(f16)(p + 2);
        const uint8_t *s = p + 4;
        for (int c = 0; c < 4; c++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * c));
            for (int h = 0; h < 2; h++) {
                int jj = 2 * c + h, sc, m;
                if (jj < 4) sc = s[jj] & 63, m = s[jj + 4] & 63;
                else sc = (s[jj + 4] & 15) | ((s[jj - 4] >> 6) << 4), m = (s[jj + 4] >> 4) | ((s[jj] >> 6) << 4);
                __m256i q = _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4);
                KFN(consume)(q, _mm256_set1_ps(d * (float)sc), a + b + jj, as, J, acc);
                float mm = -dmin * (float)m;
                KFN(mins)(mm, mm, a + b + jj, as, J, macc);
            }
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_q6_k_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3), o32 = _mm256_set1_epi8(32);
    for (int b = 0; b < nb; b += 8, p += 210) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1088, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1152, _MM_HINT_T0);
        const int8_t *sc = (const int8_t *)(p + 192);
        float d = KFN(f16)(p + 208);
        for (int n = 0; n < 2; n++) {
            __m256i L0 = _mm256_loadu_si256((const __m256i *)(p + 64 * n)),
                    L1 = _mm256_loadu_si256((const __m256i *)(p + 64 * n + 32)),
                    H = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * n));
            for (int k = 0; k < 4; k++) {
                __m256i L = (k & 1) ? L1 : L0;
                __m256i lo = _mm256_and_si256(k >> 1 ? _mm256_srli_epi16(L, 4) : L, m4);
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(H, 2 * k), m2);
                __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hb, 4)), o32);
                KFN(consume)(q, KFN(dsplat)(d * (float)sc[8 * n + 2 * k], d * (float)sc[8 * n + 2 * k + 1]),
                             a + b + 4 * n + k, as, J, acc);
            }
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_iq4_xs_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)IQ4_GRID8));
    for (int b = 0; b < nb; b += 8, p += 136) {
        float d = KFN(f16)(p);
        uint16_t sh;
        memcpy(&sh, p + 2, 2);
        for (int jj = 0; jj < 8; jj++) {
            int ls = ((p[4 + jj / 2] >> (4 * (jj & 1))) & 15) | ((sh >> (2 * jj)) & 3) << 4;
            KFN(consume)(_mm256_shuffle_epi8(grid, KFN(nib32)(p + 8 + 16 * jj)), _mm256_set1_ps(d * (float)(ls - 32)),
                         a + b + jj, as, J, acc);
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

static inline __attribute__((always_inline)) KATTR void KFN(row_q5_k_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    for (int b = 0; b < nb; b += 8, p += 176) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1088, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1152, _MM_HINT_T0);
        float d = KFN(f16)(p), dmin = KFN(f16)(p + 2);
        const uint8_t *s = p + 4;
        const __m256i H = _mm256_loadu_si256((const __m256i *)(p + 16));
        for (int c = 0; c < 4; c++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(p + 48 + 32 * c));
            for (int h = 0; h < 2; h++) {
                int jj = 2 * c + h, sc, m;
                if (jj < 4) sc = s[jj] & 63, m = s[jj + 4] & 63;
                else sc = (s[jj + 4] & 15) | ((s[jj - 4] >> 6) << 4), m = (s[jj + 4] >> 4) | ((s[jj] >> 6) << 4);
                __m256i lo = _mm256_and_si256(h ? _mm256_srli_epi16(x, 4) : x, m4);
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(H, jj), one);
                KFN(consume)(_mm256_or_si256(lo, _mm256_slli_epi16(hb, 4)), _mm256_set1_ps(d * (float)sc), a + b + jj, as, J, acc);
                float mm = -dmin * (float)m;
                KFN(mins)(mm, mm, a + b + jj, as, J, macc);
            }
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

/* Q3_K: 2 low bits from qs, minus 4 unless the unit's bit of hmask is set; 16 signed 6-bit scales. */
static inline __attribute__((always_inline)) KATTR void KFN(row_q3_k_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int b = 0; b < nb; b += 8, p += 110) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1088, _MM_HINT_T0);
        const uint8_t *s = p + 96;
        float d = KFN(f16)(p + 108);
        float sc[16];
        for (int i = 0; i < 16; i++) {
            int lo = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
            int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
            sc[i] = d * (float)((lo | hi << 4) - 32);
        }
        const __m256i HM = _mm256_loadu_si256((const __m256i *)p);
        for (int n = 0; n < 2; n++) {
            __m256i Q = _mm256_loadu_si256((const __m256i *)(p + 32 + 32 * n));
            for (int j = 0; j < 4; j++) {
                __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * j), m2);
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(HM, 4 * n + j), one);
                __m256i q = _mm256_sub_epi8(q2, _mm256_slli_epi16(_mm256_xor_si256(hb, one), 2));
                KFN(consume)(q, KFN(dsplat)(sc[8 * n + 2 * j], sc[8 * n + 2 * j + 1]), a + b + 4 * n + j, as, J, acc);
            }
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

/* Q2_K: 2-bit q; each 16-value half has its own 4-bit scale and min. */
static inline __attribute__((always_inline)) KATTR void KFN(row_q2_k_t)(const uint8_t *p, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys) {
    __m256 acc[8];
    float macc[8] = {0};
    for (int j = 0; j < J; j++) acc[j] = _mm256_setzero_ps();
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int b = 0; b < nb; b += 8, p += 84) {
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1088, _MM_HINT_T0);
        float d = KFN(f16)(p + 80), dmin = KFN(f16)(p + 82);
        for (int n = 0; n < 2; n++) {
            __m256i Q = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * n));
            for (int j = 0; j < 4; j++) {
                int s0 = p[8 * n + 2 * j], s1 = p[8 * n + 2 * j + 1];
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * j), m2);
                KFN(consume)(q, KFN(dsplat)(d * (float)(s0 & 15), d * (float)(s1 & 15)), a + b + 4 * n + j, as, J, acc);
                KFN(mins)(-dmin * (float)(s0 >> 4), -dmin * (float)(s1 >> 4), a + b + 4 * n + j, as, J, macc);
            }
        }
    }
    KFN(finish)(acc, macc, J, y, ys);
}

/* The batch size as a constant in each instance: the accumulators stay in registers. */
#define KDISPATCH(name, tname) KDISPATCH_A(name, tname, const llm_ablk *)
#define KDISPATCH_A(name, tname, atype)                                                                      \
    static KATTR void KFN(name)(const uint8_t *p, atype a, size_t as, int J, int nb, float *y, size_t ys) {   \
        switch (J) {                                                                                         \
        case 1: KFN(tname)(p, a, as, 1, nb, y, ys); break;                                                   \
        case 2: KFN(tname)(p, a, as, 2, nb, y, ys); break;                                                   \
        case 3: KFN(tname)(p, a, as, 3, nb, y, ys); break;                                                   \
        case 4: KFN(tname)(p, a, as, 4, nb, y, ys); break;                                                   \
        case 5: KFN(tname)(p, a, as, 5, nb, y, ys); break;                                                   \
        case 6: KFN(tname)(p, a, as, 6, nb, y, ys); break;                                                   \
        case 7: KFN(tname)(p, a, as, 7, nb, y, ys); break;                                                   \
        default: KFN(tname)(p, a, as, 8, nb, y, ys); break;                                                  \
        }                                                                                                    \
    }
KDISPATCH(row_q8_0, row_q8_0_t)
KDISPATCH_A(row_q4a, row_q4a_t, const uint8_t *)
KDISPATCH(row_q4_1, row_q4_1_t)
KDISPATCH(row_q5_0, row_q5_0_t)
KDISPATCH(row_q5_1, row_q5_1_t)
KDISPATCH(row_iq4_nl, row_iq4_nl_t)
KDISPATCH(row_q4_k, row_q4_k_t)
KDISPATCH(row_q6_k, row_q6_k_t)
KDISPATCH(row_iq4_xs, row_iq4_xs_t)
KDISPATCH(row_q5_k, row_q5_k_t)
KDISPATCH(row_q3_k, row_q3_k_t)
KDISPATCH(row_q2_k, row_q2_k_t)
#undef KDISPATCH
#undef KDISPATCH_A

/* R rows of rb bytes from p, one at a time (the q4a kernels' interface; see qkern_avx512.h). */
static KATTR void KFN(rows_q4a)(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys) {
    for (int i = 0; i < R; i++) KFN(row_q4a)(p + (size_t)i * rb, ax, as, J, nb, y + i, ys);
}

/* The q4x layout (q4x.c) x q4x activations (see q4x_512 in qkern_avx512.h, whose int32 lanes
 * these are): a 256-bit load is block b of 2 of the group's 4 rows, so the group is taken as
 * two halves (rows 0-1, then 2-3), each one pass over the blocks with at most 8 accumulators. */
static inline __attribute__((always_inline)) KATTR void KFN(q4x_block)(const uint8_t *g, int h, int b, __m256i spread, __m256 w8, const uint8_t *ax, size_t as, int nb, int J, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i x = _mm256_load_si256((const __m256i *)(g + 64 * (size_t)b + 32 * h));
    const __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
    const __m256 ws = _mm256_permutevar8x32_ps(w8, spread);
    for (int j = 0; j < J; j++) {
        const uint8_t *aj = ax + (size_t)j * as;
        __m256i s = _mm256_broadcastsi128_si256(_mm_loadu_si128(Q4X_AC(aj, nb, b)));
        s = KIDOTACC(s, lo, _mm256_broadcastsi128_si256(_mm_loadu_si128(Q4X_AQ(aj, b, 0))));
        s = KIDOTACC(s, hi, _mm256_broadcastsi128_si256(_mm_loadu_si128(Q4X_AQ(aj, b, 1))));
        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(ws, _mm256_set1_ps(Q4X_AD(aj, nb, b))), acc[j]);
    }
}

static inline __attribute__((always_inline)) KATTR void KFN(q4x_t)(const uint8_t *g, int nb, const uint8_t *ax, size_t as, int J, float *y, size_t ys, int nr) {
    const int C = J <= 2 ? 2 : 1; /* two accumulator chains at batch 1 and 2, as in q4x_512 */
    const uint8_t *sc = g + 64 * (size_t)nb;
    float out[8][4];
    for (int h = 0; h < 2; h++) {
        __m256 acc[16];
        for (int k = 0; k < 16; k++) acc[k] = _mm256_setzero_ps();
        /* the scales of blocks b, b + 1 (rows 0..3 each) as 8 floats; block b + k, rows 2h and
         * 2h + 1 take lanes 4k + 2h and 4k + 2h + 1, four times each */
        const __m256i sp0 = _mm256_set_epi32(2 * h + 1, 2 * h + 1, 2 * h + 1, 2 * h + 1, 2 * h, 2 * h, 2 * h, 2 * h);
        const __m256i sp1 = _mm256_add_epi32(sp0, _mm256_set1_epi32(4));
        int b = 0;
        for (; b + 2 <= nb; b += 2) {
            if (LLM_Q4X_PREFETCH && !h) { /* the first half's pass brings the lines in for the second */
                _mm_prefetch((const char *)g + 64 * (size_t)b + LLM_Q4X_PREFETCH, _MM_HINT_T0);
                _mm_prefetch((const char *)g + 64 * (size_t)b + 64 + LLM_Q4X_PREFETCH, _MM_HINT_T0);
            }
            const __m256 w8 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(sc + 8 * (size_t)b)));
            KFN(q4x_block)(g, h, b, sp0, w8, ax, as, nb, J, acc);
            KFN(q4x_block)(g, h, b + 1, sp1, w8, ax, as, nb, J, acc + 8 * (C - 1));
        }
        if (b < nb) /* the last block's pair partner is the scale run's zero padding */
            KFN(q4x_block)(g, h, b, sp0, _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(sc + 8 * (size_t)b))), ax, as, nb, J, acc);
        for (int j = 0; j < J; j++) {
            __m256 a = C == 2 ? _mm256_add_ps(acc[j], acc[8 + j]) : acc[j];
            __m128 t = _mm_hadd_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            t = _mm_hadd_ps(t, t); /* (row 2h, row 2h + 1, the same again) */
            out[j][2 * h] = _mm_cvtss_f32(t);
            out[j][2 * h + 1] = _mm_cvtss_f32(_mm_shuffle_ps(t, t, 1));
        }
    }
    for (int j = 0; j < J; j++)
        for (int i = 0; i < nr; i++) y[i + (size_t)j * ys] = out[j][i];
}

static KATTR void KFN(q4x)(const uint8_t *g, int nb, const uint8_t *ax, size_t as, int J, float *y, size_t ys, int nr) {
#define Q4X_CALL(j) KFN(q4x_t)(g, nb, ax, as, j, y, ys, nr)
    LLM_J_SWITCH(J, Q4X_CALL)
#undef Q4X_CALL
}

static row_fn KFN(row_kernel)(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q8_0: return KFN(row_q8_0);
    case GGML_TYPE_Q4_1: return KFN(row_q4_1);
    case GGML_TYPE_Q5_0: return KFN(row_q5_0);
    case GGML_TYPE_Q5_1: return KFN(row_q5_1);
    case GGML_TYPE_IQ4_NL: return KFN(row_iq4_nl);
    case GGML_TYPE_Q4_K: return KFN(row_q4_k);
    case GGML_TYPE_Q6_K: return KFN(row_q6_k);
    case GGML_TYPE_IQ4_XS: return KFN(row_iq4_xs);
    case GGML_TYPE_Q5_K: return KFN(row_q5_k);
    case GGML_TYPE_Q3_K: return KFN(row_q3_k);
    case GGML_TYPE_Q2_K: return KFN(row_q2_k);
    default: return NULL;
    }
}

#undef KFN
#undef KATTR
