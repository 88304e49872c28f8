/* Matmuls on the block-quantised types (Q4_0 ... IQ4_XS), read in place, one weight row at a
 * time for every activation row of the batch:
 *   exact: the row is expanded to fp32 in a per-thread buffer that stays in L1 and multiplied
 *          with fp32 activations (what tests and RL log-probs use: it matches a float64
 *          reference to ~1e-6 relative);
 *   fast:  the activations are rounded to int8 blocks of 32 (one fp32 scale each, as
 *          llama.cpp does) and each block is one integer dot product:
 *            sum_i w_i a_i = da * sum_h d_h * sum_{i in h} q_i qa_i + sum_h m_h * (da * sum_{i in h} qa_i).
 *          Fused per-type kernels (qkern_x86.h) decode each block in registers and use AVX2
 *          (vpmaddubsw) or AVX-VNNI (vpdpbusd) when the CPU has them, chosen at run time;
 *          otherwise a portable C loop over the row unpacked into the common form of
 *          src/gguf/blocks.c (32 int8 values, a scale and an offset per half). Q4_0 repacked
 *          at load (q4x.c) takes the q4x kernels, 4 rows per 512-bit load (or two 256-bit);
 *          Q5_0 repacked (q5x.c) the AVX-512 q5x kernel, 8 blocks a step. Other kernels read
 *          a repacked row given back in the file's form (llm_packed_row). */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include "deeprec/nn.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLM_X86 1
#endif

/* ---------------------------------------------------------------- activations */
static void quantize_act_c(const float *x, int n, llm_ablk *out) {
    for (int b = 0; b < n / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; i++) {
            int q = (int)lrintf(v[i] * id);
            out[b].q[i] = (int8_t)q;
            if (i < 16) s0 += q;
            else s1 += q;
        }
        out[b].d = d;
        out[b].s[0] = d * (float)s0;
        out[b].s[1] = d * (float)s1;
    }
}

/* ---------------------------------------------------------------- block dot products */
static float dot_c(const dr_wblk *w, const llm_ablk *a, int nb) {
    float acc = 0;
    for (int b = 0; b < nb; b++) {
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 16; i++) s0 += w[b].q[i] * a[b].q[i];
        for (int i = 16; i < 32; i++) s1 += w[b].q[i] * a[b].q[i];
        acc += a[b].d * (w[b].d[0] * (float)s0 + w[b].d[1] * (float)s1) + w[b].m[0] * a[b].s[0] + w[b].m[1] * a[b].s[1];
    }
    return acc;
}

#ifdef LLM_X86
/* Fused row kernels (qkern_x86.h): y[j * ys] = row . a_j for j < J <= 8. KIDOT gives 8 int32
 * sums of 4 products each (lanes 0..3: values 0..15 of the unit, 4..7: values 16..31) of
 * unsigned by signed bytes: the sign of w moves onto a, and |qa| <= 127, |qw| <= 128 keep
 * vpmaddubsw's pairwise int16 sums from saturating. */
typedef void (*row_fn)(const uint8_t *row, const llm_ablk *a, size_t as, int J, int nb, float *y, size_t ys);
/* CALL(j) with the batch size J (1..8) as a constant in each instance: the accumulators stay in registers. */
#define LLM_J_SWITCH(J, CALL)                                                                                           \
    switch (J) {                                                                                                       \
    case 1: CALL(1); break;                                                                                            \
    case 2: CALL(2); break;                                                                                            \
    case 3: CALL(3); break;                                                                                            \
    case 4: CALL(4); break;                                                                                            \
    case 5: CALL(5); break;                                                                                            \
    case 6: CALL(6); break;                                                                                            \
    case 7: CALL(7); break;                                                                                            \
    default: CALL(8); break;                                                                                           \
    }
/* The q4x activation layout (q4x_act_pack), in one place for the kernels: row aj, block b's
 * 32 int8 values (16 low-nibble partners, then 16 high), its 4 int32 corrections, its scale. */
#define Q4X_AQ(aj, b, half) ((const __m128i *)((aj) + 32 * (size_t)(b) + 16 * (half)))
#define Q4X_AC(aj, nb, b) ((const __m128i *)((aj) + 32 * (size_t)(nb) + 16 * (size_t)(b)))
#define Q4X_AD(aj, nb, b) (((const float *)((aj) + 48 * (size_t)(nb)))[b])
/* The runs of the q4a activation layout (q4a_pack_blocks) after the per-block ones, in one
 * place for the packer and the kernels that add 8 blocks' sums first: the scale run d8 (16
 * floats per 8 blocks) and the block-sums run sa (8 floats per 8 blocks). */
#define Q4A_D8_AT(nb) ((size_t)100 * (size_t)(nb))
#define Q4A_SA_AT(nb) (Q4A_D8_AT(nb) + (size_t)64 * (size_t)(((nb) + 7) / 8))
/* Bytes ahead that the q4x kernels prefetch. Each thread reads one sequential stream, but at
 * batch 1 the kernel still stalled on the first line of every 256 bytes (perf): the hardware
 * prefetcher does not run far enough ahead. Measured on the Q4_0 bench file, 2 threads
 * (passive wait), 96 decode steps, two rounds (runs another job disturbed left out): decode 1
 * 81-90 tok/s with none, 90-92 at 512, 92 at 1024, 96-97 at 2048, 94-98 at 4096; decode 8
 * 339-349, 353-363, 378, 378-379, 381-384. */
#ifndef LLM_Q4X_PREFETCH
#define LLM_Q4X_PREFETCH 4096
#endif
static const int8_t IQ4_GRID8[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
#define KSUF avx2
#define KTGT "avx2,fma,f16c"
#define KIDOT(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#define KIDOTACC(c, u, s) _mm256_add_epi32(c, KIDOT(u, s))
#include "qkern_x86.h"
#undef KSUF
#undef KTGT
#undef KIDOT
#undef KIDOTACC
#if defined(__GNUC__) && (__GNUC__ >= 11)
#define KSUF vnni
#define KTGT "avx2,fma,f16c,avxvnni"
#define KIDOT(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
#define KIDOTACC(c, u, s) _mm256_dpbusd_avx_epi32(c, u, s)
#include "qkern_x86.h"
#undef KSUF
#undef KTGT
#undef KIDOT
#undef KIDOTACC
#define LLM_HAVE_VNNI 1
#endif
#if defined(__GNUC__) && (__GNUC__ >= 8)
#include "q5x_unpack.h"
#include "qkern_avx512.h"
#define LLM_HAVE_AVX512 1
#endif
#endif

/* The kernel family in use: chosen from the CPU at first use, or forced (tests, benches).
 * avx512-vnni has its own kernels for Q4_0, Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K and IQ4_XS
 * (kernel_512); the other types then take the avx-vnni kernels when the CPU has AVX-VNNI, else
 * the avx2 ones (g_vnni256, set with g_kern). */
enum { KERN_UNSET = -1, KERN_C, KERN_AVX2, KERN_VNNI, KERN_AVX512 };
static int g_kern = KERN_UNSET, g_vnni256;
static const char *KERN_NAMES[] = {"c", "avx2", "avx-vnni", "avx512-vnni"};

static int kern_supported(int k) {
    if (k == KERN_C) return 1;
#ifdef LLM_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && llm_cpu_f16c();
    if (k == KERN_AVX2) return avx2;
#ifdef LLM_HAVE_VNNI
    if (k == KERN_VNNI) return avx2 && llm_cpu_avxvnni();
#endif
#ifdef LLM_HAVE_AVX512
    if (k == KERN_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("bmi2");
#endif
#endif
    return 0;
}

static void kern_set(int k) {
    __atomic_store_n(&g_vnni256, k >= KERN_VNNI && kern_supported(KERN_VNNI), __ATOMIC_RELAXED);
    __atomic_store_n(&g_kern, k, __ATOMIC_RELAXED);
}

/* Sessions on several threads may race to set it: relaxed atomics, every racer stores the same value. */
static int kern(void) {
    int k0 = __atomic_load_n(&g_kern, __ATOMIC_RELAXED);
    if (k0 != KERN_UNSET) return k0;
    const char *force = getenv("DEEPREC_KERNEL"); /* a lesser kernel by name, for benches */
    int k = KERN_AVX512;
    while (!kern_supported(k)) k--;
    for (int f = KERN_C; force && f < k; f++)
        if (!strcmp(force, KERN_NAMES[f]) && kern_supported(f)) k = f;
    kern_set(k);
    return k;
}

const char *llm_kernel_name(void) { return KERN_NAMES[kern()]; }

#ifdef LLM_X86
/* quantize_act_c with 8 lanes: the same operations on each value (|v| max, the one division,
 * v * id rounded to nearest even as lrintf does in the default mode), so the same bytes. It
 * runs on one thread before every int8 matmul, while the others wait: at batch 1 the scalar
 * loop (fmaxf and lrintf are library calls there) was 5% of a decode step. */
__attribute__((target("avx2,fma"))) static void quantize_act_avx2(const float *x, int n, llm_ablk *out) {
    const __m256 mag = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int b = 0; b < n / 32; b++) {
        const float *v = x + 32 * b;
        __m256 f[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            f[i] = _mm256_loadu_ps(v + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(f[i], mag));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h), d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(f[i], _mm256_set1_ps(id)));
        /* packs work within 128-bit lanes: values 0-3 8-11 4-7 12-15 | 16-19 24-27 20-23 28-31 */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].q, p);
        __m256i t = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        t = _mm256_hadd_epi32(t, t); /* per 128-bit lane: (half 0, half 1, the same) */
        const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        out[b].d = d;
        out[b].s[0] = d * (float)_mm_cvtsi128_si32(s);
        out[b].s[1] = d * (float)_mm_extract_epi32(s, 1);
    }
}
#endif

void llm_quantize_act(const float *x, int n, llm_ablk *out) {
#ifdef LLM_X86
    if (kern() >= KERN_AVX2) {
        quantize_act_avx2(x, n, out);
        return;
    }
#endif
    quantize_act_c(x, n, out);
}

/* DEEPREC_REPACK=0 keeps every matrix in the file's layout, for benches. */
static int repack_allowed(void) {
    const char *e = getenv("DEEPREC_REPACK");
    return !(e && !strcmp(e, "0"));
}

int llm_q4x_wanted(void) { return kern() >= KERN_AVX2 && repack_allowed(); }

int llm_q5x_wanted(void) { return kern() == KERN_AVX512 && repack_allowed(); }

int llm_kernel_force(const char *name) {
    for (int k = KERN_C; k <= KERN_AVX512; k++)
        if (!strcmp(name, KERN_NAMES[k]) && kern_supported(k)) {
            kern_set(k);
            return 0;
        }
    return -1;
}

#ifdef LLM_X86
static row_fn row_kernel(uint32_t type) {
    const int k = kern();
#ifdef LLM_HAVE_VNNI
    if (k >= KERN_VNNI && __atomic_load_n(&g_vnni256, __ATOMIC_RELAXED)) return row_kernel_vnni(type);
#endif
    if (k >= KERN_AVX2) return row_kernel_avx2(type);
    return NULL;
}

/* Q4_0 takes its own kernels on the q4a activation layout: per activation row, nb x 32 int8
 * values, nb x 8 int32 c_k = -16 * (sum of values 4k..4k+3), nb x 8 copies of the scale, nb
 * scales (q4a_pack), so that the weights' nibbles are multiplied as they are stored (0..15) and two
 * blocks' activations are contiguous for the 512-bit kernel. c is Q5_0's offset as it is (the
 * type with the most kernel work per block); the other types shift it (Q4_0: c / 2, Q6_K: 2c,
 * Q8_0 and the IQ4 grids: 8c). Q4_K's and Q5_K's mins take the block sums run sa instead. */
typedef llm_q8kern q4a_fn; /* llm_internal.h */
/* Bytes per activation row: 96 per block, then one scale per block (q6kx_512_t permutes 8 of
 * them at once), then for the kernels that add 8 blocks' sums first (q5x, the K-quants) 16
 * scales per 8 blocks in the order those sums come in (per 128 bits: blocks q, q, q + 4,
 * q + 4; 0 where a block is past the end), then the run sa of each block's scale times the sum
 * of its values (Q4_K's and Q5_K's mins; 8 per 8 blocks), rounded up to an odd number of cache
 * lines: with 8 activation rows read at the same offset (batches), a stride near a multiple of
 * 4 KiB put them all in the same L1 sets (the d8 run alone made width 4864's stride 4 KiB + 32
 * bytes). */
static size_t q4a_act_bytes(int nb) {
    const size_t lines = (Q4A_SA_AT(nb) + (size_t)32 * ((nb + 7) / 8) + 63) / 64;
    return 64 * (lines | 1);
}
size_t llm_q8act_bytes(int nb) { return q4a_act_bytes(nb); }

/* Block b's two entries of the scale run d8 (and, from the row's last block, zeros for
 * the blocks its last group of 8 lacks). */
static void q4a_pack_d8(float *d8, int b, int nb, float d) {
    const int g = b / 8, k = b % 8, l = 4 * (k % 4) + (k < 4 ? 0 : 2);
    d8[16 * g + l] = d8[16 * g + l + 1] = d;
    if (b == nb - 1)
        for (int m = k + 1; m < 8; m++) {
            const int lm = 4 * (m % 4) + (m < 4 ? 0 : 2);
            d8[16 * g + lm] = d8[16 * g + lm + 1] = 0.0f;
        }
}

/* q4a_pack's runs with 8 lanes, the same integers: it runs on one thread before each decode
 * matmul, and its scalar loop took about as long as rounding the activations. */
__attribute__((target("avx2,fma"))) static void q4a_pack_avx2(const llm_ablk *a, int b0, int b1, int8_t *q, int32_t *c, float *d, float *d1, float *sa) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int b = b0; b < b1; b++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)a[b].q);
        _mm256_storeu_si256((__m256i *)(q + 32 * b), v);
        /* sums of 4 consecutive values: byte pairs (1 x v, unsigned x signed), then word pairs */
        const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16);
        _mm256_storeu_si256((__m256i *)(c + 8 * b), _mm256_mullo_epi32(s4, _mm256_set1_epi32(-16)));
        _mm256_storeu_ps(d + 8 * b, _mm256_set1_ps(a[b].d));
        d1[b] = a[b].d;
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        sa[b] = a[b].d * (float)_mm_cvtsi128_si32(h);
    }
}

/* Blocks b0..b1-1 (a[b0..b1-1]) of an activation row of nb blocks into its q4a layout at out. */
static void q4a_pack_blocks(const llm_ablk *a, int b0, int b1, int nb, uint8_t *out) {
    int8_t *q = (int8_t *)out;
    int32_t *c = (int32_t *)(out + 32 * (size_t)nb);
    float *d = (float *)(out + 64 * (size_t)nb), *d1 = (float *)(out + 96 * (size_t)nb);
    float *d8 = (float *)(out + Q4A_D8_AT(nb)), *sa = (float *)(out + Q4A_SA_AT(nb));
    for (int b = b0; b < b1; b++) q4a_pack_d8(d8, b, nb, a[b].d);
    if (kern() >= KERN_AVX2) {
        q4a_pack_avx2(a, b0, b1, q, c, d, d1, sa);
        return;
    }
    for (int b = b0; b < b1; b++) {
        memcpy(q + 32 * b, a[b].q, 32);
        int sum = 0;
        for (int k = 0; k < 8; k++) {
            const int8_t *v = a[b].q + 4 * k;
            c[8 * b + k] = -16 * (v[0] + v[1] + v[2] + v[3]);
            d[8 * b + k] = a[b].d;
            sum += v[0] + v[1] + v[2] + v[3];
        }
        d1[b] = a[b].d;
        sa[b] = a[b].d * (float)sum;
    }
}

static void q4a_pack(const llm_ablk *a, int nb, uint8_t *out) { q4a_pack_blocks(a, 0, nb, nb, out); }

/* Repacked Q4_0 (llm_mat.packed, q4x.c) takes the q4x kernels: one group of 4 rows x up to 8
 * activation rows per call, on the q4x activation layout (q4x_act_pack). */
typedef void (*q4x_fn)(const uint8_t *g, int nb, const uint8_t *ax, size_t as, int J, float *y, size_t ys, int nr);

/* The family's Q4_0 kernels for the file's layout (q4a) and the repacked one (q4x); NULLs for
 * the portable C kernel. */
typedef struct q4_kernels { q4a_fn file; q4x_fn packed; } q4_kernels;

static q4_kernels q4_kernel(void) {
    const int k = kern();
#ifdef LLM_HAVE_AVX512
    if (k == KERN_AVX512) return (q4_kernels){rows_q4a_512, q4x_512};
#endif
#ifdef LLM_HAVE_VNNI
    if (k >= KERN_VNNI && __atomic_load_n(&g_vnni256, __ATOMIC_RELAXED)) return (q4_kernels){rows_q4a_vnni, q4x_vnni};
#endif
    if (k >= KERN_AVX2) return (q4_kernels){rows_q4a_avx2, q4x_avx2};
    return (q4_kernels){NULL, NULL};
}

/* Per activation row: nb x 32 int8 values, nb x 4 int32 c_k = -8 * (sum of values 4k..4k+3 and
 * 16+4k..16+4k+3: the two halves one int32 lane of the kernels sums), nb scales. */
static size_t q4x_act_bytes(int nb) { return ((size_t)52 * nb + 63) / 64 * 64; }

static void q4x_act_pack(const llm_ablk *a, int nb, uint8_t *out) {
    int8_t *q = (int8_t *)out;
    int32_t *c = (int32_t *)(out + 32 * (size_t)nb);
    float *d = (float *)(out + 48 * (size_t)nb);
    for (int b = 0; b < nb; b++) {
        const int8_t *v = a[b].q;
        memcpy(q + 32 * b, v, 32);
        for (int k = 0; k < 4; k++)
            c[4 * b + k] = -8 * (v[4 * k] + v[4 * k + 1] + v[4 * k + 2] + v[4 * k + 3] + v[16 + 4 * k] + v[17 + 4 * k] +
                                 v[18 + 4 * k] + v[19 + 4 * k]);
        d[b] = a[b].d;
    }
}

/* Groups split over threads in contiguous runs (guided), so each thread reads sequential streams;
 * batches above 8 take a group's 4 rows again from L1 per 8 activation rows. -1 when out of memory. */
static int matmul_q4x(const llm_mat *w, q4x_fn fn, const llm_ablk *xa, int n, float *y) {
    const int rows = w->rows, nb = w->cols / 32, groups = (rows + LLM_Q4X_ROWS - 1) / LLM_Q4X_ROWS;
    const size_t as = q4x_act_bytes(nb), gb = llm_q4x_group_bytes(nb);
    uint8_t *ax = aligned_alloc(64, as * n);
    if (!ax) return -1;
    for (int j = 0; j < n; j++) q4x_act_pack(xa + (size_t)j * nb, nb, ax + (size_t)j * as);
    const uint8_t *packed = w->packed;
    double work = (double)rows * w->cols * n;
#pragma omp parallel for schedule(guided) if (work > 65536) /* as q4a_tiles (static / guided 1.00-1.02 for Q4_0) */
    for (int g = 0; g < groups; g++) {
        const int r = g * LLM_Q4X_ROWS, nr = rows - r < LLM_Q4X_ROWS ? rows - r : LLM_Q4X_ROWS;
        for (int j = 0; j < n; j += 8)
            fn(packed + (size_t)g * gb, nb, ax + (size_t)j * as, as, n - j < 8 ? n - j : 8, y + (size_t)j * rows + r, (size_t)rows, nr);
    }
    free(ax);
    return 0;
}

/* Rows per tile of the q4a kernels: each activation block is loaded once per tile, but each
 * row of a tile is a stream of its own for the prefetchers. At batch 1, with the weights
 * streamed from memory (2 threads, Qwen2.5-0.5B shapes, 600 MB per shape), Q8_0 read
 * ffn_gate/up at 53.6 GB/s with 1 row per tile against 44.8 with 4, the output matrix at 56.5
 * against 41.8, ffn_down at 42.8 against 38.9; Q5_0's ffn_gate/up at 45.9 with 2 rows, 34.7
 * with 4 and 33.1 with 1 (its decoding costs more instructions, which the shared activation
 * loads offset); the K-quants' ffn_down was slower with 2 rows (Q4_K 32-34 against 37.9). The
 * other types keep their 4 rows (not measured again). Batch 2 takes 2 rows, larger batches 1. */
static int q4a_rows_per_tile(uint32_t type, int n) {
    if (n == 2) return 2;
    if (n > 2) return 1;
    return type == GGML_TYPE_Q8_0 ? 1 : type == GGML_TYPE_Q5_0 ? 2 : 4;
}

/* Rows per kernel call: one-row tiles go Q4A_CALL_ROWS to a call (the kernels loop over the
 * rows of a call one at a time), and so do Q5_0's 2-row tiles at batch 1 (the kernel takes a
 * call of more than 4 rows as 2-row tiles), so the call, its dispatch and its prefetch setup
 * are not paid per row of 952 bytes (Q8_0) or per 2 rows of 616 (Q5_0). Only up to 8
 * activation rows (one pass over the call's rows). */
#define Q4A_CALL_ROWS 32
static int q4a_call_rows(int R, int n) { return (R == 1 && n <= 8) || (R == 2 && n == 1) ? Q4A_CALL_ROWS : R; }

/* The tiles split into nt even runs, one a thread (llm_q8plan_run). */
static void q8plan_split(llm_q8plan *pl, int nt) {
    pl->nt = nt < 1 ? 1 : nt > LLM_Q8PLAN_MAX_THREADS ? LLM_Q8PLAN_MAX_THREADS : nt;
    for (int t = 0; t < pl->nt; t++) {
        const uint64_t lo = (uint64_t)((long)pl->tiles * t / pl->nt), hi = (uint64_t)((long)pl->tiles * (t + 1) / pl->nt);
        __atomic_store_n(&pl->left[t].r, hi << 32 | lo, __ATOMIC_RELAXED);
    }
}

/* A plan's tiles: q4a_rows_per_tile rows of each matrix (q4a_call_rows to a kernel call), the
 * tiles of all matrices one index space, batches of up to 8 activation rows per pass over a
 * tile. Kernels fn[k] are the caller's (the 512-bit ones, or Q4_0's for its file layout). */
static void q8plan_make(llm_q8plan *pl, const llm_mat *const *w, const q4a_fn *fn, int nw, const uint8_t *ax, int n, float *const *y, int nt) {
    pl->nw = nw, pl->n = n, pl->nb = w[0]->cols / 32, pl->as = q4a_act_bytes(w[0]->cols / 32), pl->ax = ax;
    pl->first[0] = 0, pl->work = 0;
    for (int k = 0; k < nw; k++) {
        pl->w[k] = w[k], pl->fn[k] = fn[k], pl->y[k] = y[k];
        pl->R[k] = q4a_call_rows(q4a_rows_per_tile(w[k]->type, n), n);
        pl->first[k + 1] = pl->first[k] + (w[k]->rows + pl->R[k] - 1) / pl->R[k];
        pl->work += (double)w[k]->rows * w[k]->cols * n;
    }
    pl->tiles = pl->first[nw];
    q8plan_split(pl, nt);
}

/* Tile t of the plan. prev: the tile this thread ran last, to see where a run of tiles starts. */
static void q8plan_tile(const llm_q8plan *pl, int t, int *prev) {
    int k = 0;
    while (t >= pl->first[k + 1]) k++;
    const llm_mat *w = pl->w[k];
    const int n = pl->n, rows = w->rows, r = (t - pl->first[k]) * pl->R[k], nr = rows - r < pl->R[k] ? rows - r : pl->R[k];
    const uint8_t *row = (const uint8_t *)(w->packed ? w->packed : w->data) + (size_t)r * w->row_bytes;
    /* The kernels prefetch some KiB or a tile ahead of what they read, so the start of each
     * run of tiles a thread takes was read by demand misses; its first 8 KiB are asked for at
     * once here. Decode steps alternated in one process, with / without: 0.988-1.000 (Q4_K_M,
     * Q8_0). */
    if (t != *prev + 1) {
        const size_t left = (size_t)(rows - r) * w->row_bytes, pre = left < 8192 ? left : 8192;
        for (size_t o = 0; o < pre; o += 64) _mm_prefetch((const char *)row + o, LLM_PF_STREAM);
    }
    *prev = t;
    for (int j = 0; j < n; j += 8)
        pl->fn[k](row, w->row_bytes, nr, pl->ax + (size_t)j * pl->as, pl->as, n - j < 8 ? n - j : 8, pl->nb,
                  pl->y[k] + (size_t)j * rows + r, (size_t)rows);
}

/* Takes the later half of the largest run of tiles another thread has left, as this thread's
 * own (me); 0 when none is left. */
static int q8plan_steal(llm_q8plan *pl, int me) {
    for (;;) {
        int victim = -1;
        uint64_t v = 0, most = 0;
        for (int t = 0; t < pl->nt; t++) {
            const uint64_t x = __atomic_load_n(&pl->left[t].r, __ATOMIC_ACQUIRE), lo = x & 0xffffffffu, hi = x >> 32;
            if (t != me && hi > lo && hi - lo > most) victim = t, v = x, most = hi - lo;
        }
        if (victim < 0) return 0;
        const uint64_t lo = v & 0xffffffffu, hi = v >> 32, cut = hi - (hi - lo + 1) / 2;
        if (__atomic_compare_exchange_n(&pl->left[victim].r, &v, cut << 32 | lo, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&pl->left[me].r, hi << 32 | cut, __ATOMIC_RELEASE);
            return 1;
        }
    }
}

/* The plan's tiles over the threads of the enclosing region. Each thread starts on its own
 * contiguous share and takes its tiles one at a time from the front; one that runs out takes
 * the later half of the largest share left. So each thread reads a few long runs, and the
 * faster one (the two vCPUs of the development VM ran the same kernels 10-30% apart, and the
 * split that evens them out moved from call to call: 0.38-0.61 of the tiles for the first
 * thread in a scratch that measured it) takes the rest. libgomp's guided schedule, used
 * before, hands out runs that halve from the first, about 8 per thread and matrix, and each
 * run starts with misses the prefetches have not covered; smaller runs (a quarter of what is
 * left) were 5-10% slower still. Bench-shaped decode steps alternated in one process (guided
 * against this): Q4_K_M 0.945-1.02, mostly 0.97-0.99; Q8_0 0.96-1.01. */
void llm_q8plan_run(llm_q8plan *pl, llm_barrier *bar) {
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    int prev = -2;
    if (nt == 1) {
        for (int t = 0; t < pl->tiles; t++) q8plan_tile(pl, t, &prev);
        return;
    }
    if (nt != pl->nt) { /* a region of another size than the plan's: libgomp's guided split */
#pragma omp for schedule(guided)
        for (int t = 0; t < pl->tiles; t++) q8plan_tile(pl, t, &prev);
        return;
    }
    uint64_t *mine = &pl->left[me].r;
    do {
        uint64_t v = __atomic_load_n(mine, __ATOMIC_ACQUIRE);
        for (;;) {
            const uint64_t lo = v & 0xffffffffu, hi = v >> 32;
            if (lo >= hi) break;
            if (!__atomic_compare_exchange_n(mine, &v, hi << 32 | (lo + 1), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
            q8plan_tile(pl, (int)lo, &prev);
            v = __atomic_load_n(mine, __ATOMIC_ACQUIRE);
        }
    } while (q8plan_steal(pl, me));
    llm_barrier_wait(bar);
}

/* The threads a region opened for this much work will have. */
static int region_threads(double work) { return work > 65536 ? omp_get_max_threads() : 1; }

/* y_k = W_k x for nw <= LLM_Q8PLAN_MAX_W matrices of one width in one parallel region. */
static void q4a_tiles(const llm_mat *const *w, const q4a_fn *fn, int nw, const uint8_t *ax, int n, float *const *y) {
    llm_q8plan pl;
    q8plan_make(&pl, w, fn, nw, ax, n, y, 1);
    q8plan_split(&pl, region_threads(pl.work));
    llm_barrier bar;
    llm_barrier_init(&bar);
#pragma omp parallel num_threads(pl.nt)
    llm_q8plan_run(&pl, &bar);
}

/* Room for n activation rows of nb blocks in the q4a layout (whole cache lines each, aligned
 * for the kernels), or NULL when out of memory. */
static uint8_t *q4a_alloc_rows(int n, int nb) { return aligned_alloc(64, q4a_act_bytes(nb) * n); }

/* n activation rows in the q4a layout, or NULL when out of memory. */
static uint8_t *q4a_pack_rows(const llm_ablk *xa, int n, int nb) {
    uint8_t *ax = q4a_alloc_rows(n, nb);
    if (ax)
        for (int j = 0; j < n; j++) q4a_pack(xa + (size_t)j * nb, nb, ax + (size_t)j * q4a_act_bytes(nb));
    return ax;
}

void llm_q8act_round(const float *x, int n, int cols, llm_ablk *xa, uint8_t *ax) {
    const int nb = cols / 32;
    for (int j = 0; j < n; j++) {
        llm_quantize_act(x + (size_t)j * cols, cols, xa + (size_t)j * nb);
        q4a_pack(xa + (size_t)j * nb, nb, ax + (size_t)j * q4a_act_bytes(nb));
    }
}

#ifdef LLM_HAVE_AVX512
/* n rows of x (cols floats each) rounded into xa (cols / 32 blocks a row) and packed, or NULL
 * when out of memory (for the grouped and fused matmuls, 512-bit kernels only). */
static uint8_t *q4a_round_rows(const float *x, int n, int cols, llm_ablk *xa) {
    uint8_t *ax = q4a_alloc_rows(n, cols / 32);
    if (ax) llm_q8act_round(x, n, cols, xa, ax);
    return ax;
}
#endif

void llm_q8act_round_blocks(const float *x, int nb, int b0, int b1, llm_ablk *xa, uint8_t *ax) {
    if (b1 <= b0) return;
    llm_quantize_act(x + 32 * (size_t)b0, 32 * (b1 - b0), xa + b0);
    q4a_pack_blocks(xa, b0, b1, nb, ax);
}

/* A static share of the blocks: they all cost the same. */
void llm_q8act_round_share(float *x, const float *up, size_t ld, int n, int nb, llm_ablk *xa, uint8_t *ax) {
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int b0 = (int)((long)nb * tid / nt), b1 = (int)((long)nb * (tid + 1) / nt);
    for (int j = 0; j < n && b1 > b0; j++) {
        float *xj = x + (size_t)j * ld;
        if (up) nn_swiglu_forward(xj + 32 * (size_t)b0, xj + 32 * (size_t)b0, up + (size_t)j * ld + 32 * (size_t)b0, 32 * (size_t)(b1 - b0));
        llm_q8act_round_blocks(xj, nb, b0, b1, xa + (size_t)j * nb, ax + (size_t)j * q4a_act_bytes(nb));
    }
}

/* y = W x with a q4a kernel (q4a_tiles for one matrix). -1 when out of memory. */
static int matmul_q4a(const llm_mat *w, q4a_fn fn, const llm_ablk *xa, int n, float *y) {
    uint8_t *ax = q4a_pack_rows(xa, n, w->cols / 32);
    if (!ax) return -1;
    q4a_tiles(&w, &fn, 1, ax, n, &y);
    free(ax);
    return 0;
}

#ifdef LLM_HAVE_AVX512
/* The 512-bit kernel on the q4a activations for a type and n activation rows of nb blocks, or
 * NULL for the row kernels. They take two blocks per register: Q5_0's fifth bits become a byte
 * mask (the 256-bit kernel spent a broadcast, a shuffle and a compare per block on them, which
 * kept Q5_0 decode at about half the read bandwidth). Above 4 activation rows a row meets up to
 * 8 of them per pass, and the q4a layout's 96 bytes per block and row (against llm_ablk's 44)
 * made those passes read L2 at its limit on wide rows (7B-shaped Q4_K_M, 16-token prefill: 3.0
 * tokens/s against 5.2-5.5 with the 256-bit row kernels); so the 32-value types take them
 * beyond 4 rows only on rows of up to 64 blocks (8 rows' activations in 48 KiB; at width 896
 * Q5_0's was the faster at 16 rows too: 124-135 against 107-112 tokens per CPU s). The
 * super-block kernels take more than 4 activation rows in passes of 4 over each row, the later
 * ones from L1, and their limits are measured (one matrix from memory, 2 threads, 896 x 4864
 * and 3584 x 18944, against the row kernels): Q4_K 1.8-3.0x and Q5_K 1.6-1.9x as fast at 8,
 * 16 and 32 rows, so at every batch below the sgemm path; IQ4_XS 1.0x at 8, 1.2x at 16, 0.6x
 * at 32; Q6_K 1.0-1.2x at 6 and 8, 0.9-1.1x at 16, 0.8x at 32. */
static q4a_fn kernel_512(uint32_t type, int n, int nb) {
    const int narrow = n <= 4 || nb <= 64;
    switch (type) {
    case GGML_TYPE_Q5_0: return narrow ? rows_q5a_512 : NULL;
    case GGML_TYPE_Q8_0: return narrow ? rows_q8a_512 : NULL;
    case GGML_TYPE_IQ4_NL: return narrow ? rows_iq4nla_512 : NULL;
    case GGML_TYPE_Q4_K: return rows_q4k_512;
    case GGML_TYPE_Q5_K: return rows_q5k_512;
    case GGML_TYPE_Q6_K: return n <= 8 ? rows_q6kx_512 : NULL;
    case GGML_TYPE_IQ4_XS: return n <= 16 ? rows_iq4xs_512 : NULL;
    default: return NULL;
    }
}

/* The 512-bit q4a kernel for W at a batch of n on this CPU, or NULL: the CPU's kernels are
 * another family, W's width is not whole blocks, W is repacked Q4_0 (the q4x kernels), or its
 * type and the batch take none. Repacked Q5_0 takes the q5x kernel at every batch: it is the
 * only 512-bit kernel that reads its layout. */
static q4a_fn kernel_512_for(const llm_mat *w, int n) {
    if (kern() != KERN_AVX512 || w->cols % 32) return NULL;
    if (w->packed) return w->type == GGML_TYPE_Q5_0 ? rows_q5x_512 : NULL; /* repacked Q4_0: q4x */
    return kernel_512(w->type, n, w->cols / 32);
}
#endif
#endif

/* ---------------------------------------------------------------- matmuls */
/* y_k = W_k x for nw matrices with one input (q, k, v; gate, up) in one parallel region, the
 * activations rounded and packed once: a decode step had a region per matrix, and on this
 * 2-core VM a region costs about 3 us to open and close (an empty one measured 3.1-3.5 us
 * with libgomp's spin wait), more than k and v take to stream at Qwen2.5-0.5B's shape (0.12 MB
 * each). The tiles of all matrices are one index space split over the threads, so each
 * thread still reads one contiguous run of every matrix it meets. Results are those of one
 * llm_matmul_q8act per matrix, bit for bit (the same tiles and kernels). -1 (nothing written)
 * unless every matrix takes a 512-bit q4a kernel at this batch and they share a width. */
int llm_matmul_q8act_group(const llm_mat *const *w, int nw, const float *x, int n, float *const *y) {
#ifdef LLM_HAVE_AVX512
    if (nw < 1 || nw > LLM_Q8PLAN_MAX_W) return -1;
    const int cols = w[0]->cols;
    q4a_fn fn[LLM_Q8PLAN_MAX_W];
    for (int k = 0; k < nw; k++)
        if (w[k]->cols != cols || !(fn[k] = kernel_512_for(w[k], n))) return -1;
    llm_ablk *xa = malloc((size_t)n * (cols / 32) * sizeof *xa);
    if (!xa) return -1;
    uint8_t *ax = q4a_round_rows(x, n, cols, xa);
    free(xa);
    if (!ax) return -1;
    q4a_tiles(w, fn, nw, ax, n, y);
    free(ax);
    return 0;
#else
    (void)w, (void)nw, (void)x, (void)n, (void)y;
    return -1;
#endif
}

static int g_fused = 1;
int llm_fused_regions_set(int on) {
    const int was = g_fused;
    g_fused = on != 0;
    return was;
}

int llm_q8act_fusable(const llm_mat *w, int n) {
#ifdef LLM_HAVE_AVX512
    return g_fused && n < llm_sgemm_min_n() && kernel_512_for(w, n) != NULL;
#else
    (void)w, (void)n;
    return 0;
#endif
}

int llm_q8plan_init(llm_q8plan *pl, const llm_mat *const *w, int nw, int n, const uint8_t *ax, float *const *y, int nt) {
#ifdef LLM_HAVE_AVX512
    if (nw < 1 || nw > LLM_Q8PLAN_MAX_W || !g_fused || n >= llm_sgemm_min_n()) return -1; /* as llm_q8act_fusable */
    q4a_fn fn[LLM_Q8PLAN_MAX_W];
    for (int k = 0; k < nw; k++)
        if (w[k]->cols != w[0]->cols || !(fn[k] = kernel_512_for(w[k], n))) return -1;
    q8plan_make(pl, w, fn, nw, ax, n, y, nt);
    return 0;
#else
    (void)pl, (void)w, (void)nw, (void)n, (void)ax, (void)y, (void)nt;
    return -1;
#endif
}

/* y = W x where x (n rows of W's width) is written inside the same parallel region by
 * produce(ctx), which ends with a barrier (an orphaned omp for has one): then each thread rounds
 * and packs its share of x's blocks, and the tiles follow. One token's attention and the o
 * matrix had a region each, with the rounding of the 896 values on one thread between them; a
 * static split of the heads leaves each thread the blocks of its own heads to round. Results
 * as llm_matmul_q8act's bit for bit. -1 (nothing run, produce neither) unless W takes a 512-bit
 * q4a kernel at this batch below the sgemm path's. */
int llm_matmul_q8act_after(const llm_mat *w, float *x, int n, void (*produce)(void *ctx), void *ctx, float *y) {
#ifndef LLM_HAVE_AVX512
    (void)w, (void)x, (void)n, (void)produce, (void)ctx, (void)y;
    return -1;
#else
    const int nb = w->cols / 32;
    llm_q8plan pl;
    if (llm_q8plan_init(&pl, &w, 1, n, NULL, &y, 1)) return -1;
    llm_ablk *xa = malloc((size_t)n * nb * sizeof *xa);
    uint8_t *ax = q4a_alloc_rows(n, nb);
    if (!xa || !ax) {
        free(xa), free(ax);
        return -1;
    }
    pl.ax = ax;
    q8plan_split(&pl, region_threads(pl.work));
    llm_barrier bar;
    llm_barrier_init(&bar);
#pragma omp parallel num_threads(pl.nt)
    {
        produce(ctx);
        llm_q8act_round_share(x, NULL, (size_t)w->cols, n, nb, xa, ax);
        llm_barrier_wait(&bar);
        llm_q8plan_run(&pl, &bar);
    }
    free(ax), free(xa);
    return 0;
#endif
}

/* The feed-forward block on the fast path, y = W_down (silu(W_gate x) * W_up x), in one
 * parallel region: the gate/up tiles, then each thread's share of the SwiGLU and of the
 * rounding and packing of ffn_down's input (blocks of 32), then the ffn_down tiles, with
 * barriers between. At batch 1 the step had two regions (2-2.5 us to open and about 2 to close
 * each on the development VM) with the SwiGLU and the packing of 4864 values on one thread
 * between them. The same kernels, tiles and activation bytes as gate/up through
 * llm_matmul_q8act_group then nn_swiglu_forward then ffn_down through llm_matmul_q8act, so
 * the same results bit for bit; g and u hold W_gate x (then the SwiGLU) and W_up x. -1
 * (nothing written) unless all three matrices take 512-bit q4a kernels at this batch and the
 * batch is below the sgemm path's. */
int llm_ffn_q8act(const llm_mat *gate, const llm_mat *up, const llm_mat *down, const float *x, int n, float *g, float *u, float *y) {
#ifndef LLM_HAVE_AVX512
    (void)gate, (void)up, (void)down, (void)x, (void)n, (void)g, (void)u, (void)y;
    return -1;
#else
    const int D = gate->cols, F = gate->rows, nb = D / 32, nbf = F / 32;
    const llm_mat *gu[2] = {gate, up}, *dn[1] = {down};
    float *const gu_y[2] = {g, u}, *const dn_y[1] = {y};
    llm_q8plan pg, pd;
    if (up->rows != F || down->cols != F || llm_q8plan_init(&pg, gu, 2, n, NULL, gu_y, 1) || llm_q8plan_init(&pd, dn, 1, n, NULL, dn_y, 1))
        return -1;
    /* xa holds x's blocks, then (once they are packed) ffn_down's input's */
    llm_ablk *xa = malloc((size_t)n * (nb > nbf ? nb : nbf) * sizeof *xa);
    uint8_t *af = q4a_alloc_rows(n, nbf), *ax = xa && af ? q4a_round_rows(x, n, D, xa) : NULL;
    if (!ax) {
        free(xa), free(af);
        return -1;
    }
    const int nt = region_threads(pg.work + pd.work);
    pg.ax = ax, pd.ax = af;
    q8plan_split(&pg, nt);
    q8plan_split(&pd, nt);
    llm_barrier bar;
    llm_barrier_init(&bar);
#pragma omp parallel num_threads(pg.nt)
    {
        llm_q8plan_run(&pg, &bar);
        llm_q8act_round_share(g, u, (size_t)F, n, nbf, xa, af);
        llm_barrier_wait(&bar);
        llm_q8plan_run(&pd, &bar);
    }
    free(ax), free(af), free(xa);
    return 0;
#endif
}

/* A multiply of n contiguous floats that gcc vectorises without reordering a reduction. */
static inline float fdot(const float *a, const float *b, int n) {
    float p[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int i = 0; i < 8; i++) p[i] += a[k + i] * b[k + i];
    float s = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
    for (; k < n; k++) s += a[k] * b[k];
    return s;
}

void llm_matmul_rows_exact(const llm_mat *w, const float *x, int n, float *y) {
    const int rows = w->rows, cols = w->cols;
    double work = (double)rows * cols * n;
    /* The row lives on each worker's stack (cols is a model width: tens of KB at most): a
     * worker whose malloc failed used to skip its rows and leave y unwritten, unnoticed. */
#pragma omp parallel if (work > 65536)
    {
        float row[cols];
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            llm_mat_row(w, r, row);
            for (int j = 0; j < n; j++) y[(size_t)j * rows + r] = fdot(row, x + (size_t)j * cols, cols);
        }
    }
}

int llm_matmul_q8act(const llm_mat *w, const float *x, int n, float *y) {
    const int rows = w->rows, cols = w->cols, nb = cols / 32;
    if (!dr_unpack_supported(w->type) || cols % 32) return -1;
    llm_ablk *xa = malloc((size_t)n * nb * sizeof *xa);
    if (!xa) return -1;
    for (int j = 0; j < n; j++) llm_quantize_act(x + (size_t)j * cols, cols, xa + (size_t)j * nb);
#ifdef LLM_X86
    const q4_kernels q4k = w->type == GGML_TYPE_Q4_0 ? q4_kernel() : (q4_kernels){NULL, NULL};
    if (w->packed && q4k.packed) {
        int rc = matmul_q4x(w, q4k.packed, xa, n, y);
        free(xa);
        return rc;
    }
    if (!w->packed && q4k.file) {
        int rc = matmul_q4a(w, q4k.file, xa, n, y);
        free(xa);
        return rc;
    }
#ifdef LLM_HAVE_AVX512
    const q4a_fn f512 = kernel_512_for(w, n);
    if (f512) {
        int rc = matmul_q4a(w, f512, xa, n, y);
        free(xa);
        return rc;
    }
#endif
    const row_fn rk = row_kernel(w->type);
#else
    const void *rk = NULL;
#endif
    int failed = 0;
    double work = (double)rows * cols * n;
#pragma omp parallel if (work > 65536)
    {
        dr_wblk *u = rk ? NULL : malloc((size_t)nb * sizeof *u);
        /* a repacked row is put back in file form for the row and portable kernels */
        uint8_t *fr = w->packed ? malloc(w->row_bytes) : NULL;
        if ((!rk && !u) || (w->packed && !fr)) {
#pragma omp atomic write
            failed = 1;
            free(u);
            u = NULL;
        }
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
            if (w->packed) {
                if (!fr) continue;
                llm_packed_row(w, r, 0, nb, fr);
                row = fr;
            }
#ifdef LLM_X86
            if (rk) {
                for (int j = 0; j < n; j += 8)
                    rk(row, xa + (size_t)j * nb, (size_t)nb, n - j < 8 ? n - j : 8, nb, y + (size_t)j * rows + r, (size_t)rows);
                continue;
            }
#endif
            if (!u) continue;
            dr_unpack(w->type, row, (uint64_t)cols, u);
            for (int j = 0; j < n; j++) y[(size_t)j * rows + r] = dot_c(u, xa + (size_t)j * nb, nb);
        }
        free(u);
        free(fr);
    }
    free(xa);
    return failed ? -1 : 0;
}
