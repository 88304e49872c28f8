/* Private helpers shared by the llm sources. */
#ifndef DEEPREC_LLM_INTERNAL_H
#define DEEPREC_LLM_INTERNAL_H

#include "deeprec/gguf.h"
#include "deeprec/llm.h"

/* Register a heap buffer as owned by the model (freed by llm_model_free). */
int llm_model_own(llm_model *m, void *p);
/* A model with cfg set and n_layers zeroed layers, nothing loaded (NULL: out of memory). */
llm_model *llm_model_alloc(const llm_config *c);
/* Free an owned buffer early (no-op when p is not owned). */
void llm_model_disown_free(llm_model *m, const void *p);
/* Bytes of a rows x cols matrix of type (0 if invalid). */
size_t llm_mat_bytes(uint32_t type, int rows, int cols);
int llm_mat_type_ok(uint32_t type); /* F32/F16/BF16/Q8_0 */


/* Activations rounded to int8 in blocks of 32: x_i ~ d * q_i; s[h] = d * sum of q over half h. */
typedef struct llm_ablk { int8_t q[32]; float d; float s[2]; } llm_ablk;
void llm_quantize_act(const float *x, int n, llm_ablk *out); /* n a multiple of 32 */
/* sum over nb units of w . a (portable C; the reference the fused kernels are tested against). */
/* Use the named kernel ("c", "avx2", "avx-vnni", "avx512-vnni") from now on; -1 if this CPU lacks it. */
int llm_kernel_force(const char *name);
float llm_block_dot(const dr_wblk *w, const llm_ablk *a, int nb);
/* Any in-place type: rows expanded to fp32, fp32 dot products (exact path of the block types). */
void llm_matmul_rows_exact(const llm_mat *w, const float *x, int n, float *y);
/* Block types with int8 activations; -1 (nothing written) for other types or no memory. */
int llm_matmul_q8act(const llm_mat *w, const float *x, int n, float *y);
/* The same for nw <= 4 matrices sharing the input x (q, k, v; gate, up), in one parallel
 * region; -1 (nothing written) where they cannot all take the 512-bit kernels. */
int llm_matmul_q8act_group(const llm_mat *const *w, int nw, const float *x, int n, float *const *y);
/* y[k] = W[k] x as llm_matmul_fast does, grouped where llm_matmul_q8act_group can. */
void llm_matmul_fast_group(const llm_mat *const *w, int nw, const float *x, int n, float *const *y);
/* y = W_down (silu(W_gate x) * W_up x) on the fast path in one parallel region (g, u: F floats
 * per row, overwritten); -1 (nothing written) where its kernels do not apply. */
int llm_ffn_q8act(const llm_mat *gate, const llm_mat *up, const llm_mat *down, const float *x, int n, float *g, float *u, float *y);
/* y = W x, x written in the same parallel region by produce(ctx), which ends with a barrier (an
 * orphaned omp for); -1 (nothing run) where its kernel does not apply. */
int llm_matmul_q8act_after(const llm_mat *w, float *x, int n, void (*produce)(void *ctx), void *ctx, float *y);
/* ---- pieces of a decode step that keeps one parallel region open (session.c) ---- */
#if defined(__x86_64__) || defined(__i386__)
#define LLM_ONE_REGION 1 /* qmatmul.c builds the plans and roundings below on x86 only */
#endif
/* A barrier for the threads of the enclosing parallel region (all of them wait on it) that spins
 * instead of calling the kernel (spin_barrier.c says why). Initialise it before the region; it
 * must live as long as the region. Outside any region it returns at once. */
typedef struct llm_barrier { _Alignas(64) int count; _Alignas(64) int gen; } llm_barrier;
void llm_barrier_init(llm_barrier *b);
void llm_barrier_wait(llm_barrier *b);

/* One call of a 512-bit (or Q4_0 file-layout) kernel: R rows of rb bytes at p times J <= 8
 * activation rows of the q4a layout (as bytes apart) of nb blocks, into y (ys apart). */
typedef void (*llm_q8kern)(const uint8_t *p, size_t rb, int R, const uint8_t *ax, size_t as, int J, int nb, float *y, size_t ys);
#define LLM_Q8PLAN_MAX_W 4
#define LLM_Q8PLAN_MAX_THREADS 64
/* y_k = W_k x for nw <= LLM_Q8PLAN_MAX_W matrices of one width, x packed once (ax): their tiles
 * are one index space, which the nt threads of a region share out (qmatmul.c, llm_q8plan_run). */
typedef struct llm_q8plan {
    const llm_mat *w[LLM_Q8PLAN_MAX_W];
    llm_q8kern fn[LLM_Q8PLAN_MAX_W];
    float *y[LLM_Q8PLAN_MAX_W];
    int first[LLM_Q8PLAN_MAX_W + 1], R[LLM_Q8PLAN_MAX_W];
    int nw, n, nb, tiles, nt;
    size_t as;
    const uint8_t *ax;
    double work; /* multiply-adds */
    /* each thread's tiles left, [lo, hi) as lo | hi << 32, one cache line each */
    struct { _Alignas(64) uint64_t r; } left[LLM_Q8PLAN_MAX_THREADS];
} llm_q8plan;
/* 1 when W takes a 512-bit kernel on the int8 activations at a batch of n below the sgemm path
 * (and the fused regions are on): the matrices that llm_q8plan_init accepts. */
int llm_q8act_fusable(const llm_mat *w, int n);
/* A plan for nt threads (0, or -1 when some matrix is not fusable or the widths differ). */
int llm_q8plan_init(llm_q8plan *pl, const llm_mat *const *w, int nw, int n, const uint8_t *ax, float *const *y, int nt);
/* Run by every thread of the region (the plan's nt of them), or by the one thread outside any;
 * returns once all tiles are done (bar, a barrier of the region). */
void llm_q8plan_run(llm_q8plan *pl, llm_barrier *bar);
/* Bytes of one activation row of nb blocks in the kernels' layout (whole cache lines). */
size_t llm_q8act_bytes(int nb);
/* n rows of x (cols floats each) rounded into xa (cols / 32 blocks a row) and packed into ax. */
void llm_q8act_round(const float *x, int n, int cols, llm_ablk *xa, uint8_t *ax);
/* Blocks b0..b1-1 of one row x of nb blocks, rounded into xa and packed into the row ax. */
void llm_q8act_round_blocks(const float *x, int nb, int b0, int b1, llm_ablk *xa, uint8_t *ax);
/* Inside a region: this thread's share of the blocks of n rows of x (ld apart), rounded into xa
 * and packed into ax; with up, x first becomes its SwiGLU with up, in place. */
void llm_q8act_round_share(float *x, const float *up, size_t ld, int n, int nb, llm_ablk *xa, uint8_t *ax);

/* 1 when a decode step of one token takes one parallel region (session.c, decode_one): the
 * fast path, and every matrix fusable at batch 1. */
int llm_session_one_region(const llm_session *s);

/* Turns llm_ffn_q8act and llm_matmul_q8act_after off (0) or on (1, the default), for tests and
 * benches; returns the old setting. */
int llm_fused_regions_set(int on);
/* BF16 weights x bf16-rounded activations with AVX512_BF16 (bf16dp.c); -1 when the type is not
 * BF16, the CPU lacks the instructions, or no memory (nothing written). */
int llm_bf16dp_available(void);
/* The batch size from which the block types take the prefill path (sgemm, or bf16 tiles when fast). */
int llm_sgemm_min_n(void);
int llm_matmul_bf16dp(const llm_mat *w, const float *x, int n, float *y);
/* One token times nw <= 4 BF16 matrices sharing x, in one parallel region; -1 as above. */
int llm_matmul_bf16dp_group(const llm_mat *const *w, int nw, const float *x, float *const *y);
/* Any in-place type as fp32 panels times fp32 activations with AVX-512 (f32gemm.c), for
 * prefill batches; -1 (nothing to use) without AVX-512, with DEEPREC_GEMM=blas, or no memory. */
int llm_f32gemm_available(void);
int llm_f32gemm(const llm_mat *w, const float *x, int n, float *y);

/* Q4_0 repacked 4 rows at a time (q4x.c has the layout; llm_mat.packed). */
#define LLM_Q4X_ROWS 4
size_t llm_q4x_group_bytes(int nb); /* one group of LLM_Q4X_ROWS rows of nb blocks */
size_t llm_q4x_bytes(const llm_mat *w); /* all of w's groups (0: too large) */
/* w's rows (file form, at w->data) into dst (llm_q4x_bytes(w) bytes, 64-byte aligned). */
void llm_q4x_pack(const llm_mat *w, uint8_t *dst);
/* Blocks b0..b0+n-1 of row r of a repacked matrix, in the file's form (18 bytes each). */
void llm_q4x_row(const llm_mat *w, int r, int b0, int n, uint8_t *out);
/* 1 when the kernel family in use has q4x kernels and DEEPREC_REPACK is not 0. */
int llm_q4x_wanted(void);
int llm_q4x_repackable(const llm_mat *w); /* Q4_0 in the file's row layout, not yet repacked */
/* Q5_0 repacked 8 blocks at a time within each row (q5x.c has the layout; llm_mat.packed):
 * the same size and row places as the file. Width a multiple of 128. */
int llm_q5x_repackable(const llm_mat *w);
void llm_q5x_pack(const llm_mat *w, uint8_t *dst); /* w->rows x w->row_bytes bytes */
void llm_q5x_row(const llm_mat *w, int r, int b0, int n, uint8_t *out); /* file form, 22 bytes a block */
/* Row r as fp32 (w->cols values) straight from the q5x layout, as llm_mat_row gives it: 0, or
 * -1 (nothing written) when the CPU lacks AVX-512 BW (then llm_q5x_row and dr_dequantize). */
int llm_q5x_row_f32(const llm_mat *w, int r, float *dst);
/* 1 when the AVX-512 VNNI kernels are in use (the q5x kernel's family) and DEEPREC_REPACK is
 * not 0. */
int llm_q5x_wanted(void);
/* Blocks b0..b0+n-1 of row r of a repacked matrix (Q4_0 or Q5_0), in the file's form. */
void llm_packed_row(const llm_mat *w, int r, int b0, int n, uint8_t *out);
/* Row r of a repacked matrix as fp32, the values llm_mat_row gives for the file's form (Q5_0
 * straight from its layout where the CPU allows, else through the file form). */
void llm_packed_row_f32(const llm_mat *w, int r, float *dst);

/* The hint of the decode kernels' software prefetches of weights (AVX-512 q4a, q5x and K-quant
 * kernels, BF16): each weight is read once per token, and on this host's Zen 5 the same streams
 * ran faster with PREFETCHNTA than with PREFETCHT0: Q8_0 matrices from memory 57-63 against 45-49
 * GB/s on 2 threads in a quiet minute, bench-shaped decode steps 0.90-0.98 (Q8_0), 0.93-1.00
 * (Q4_K_M) and 0.95-0.99 (BF16) of the time (steps alternated in one process; no step slower
 * beyond the alternation's own 1-3%). Expands where <immintrin.h> is included. */
#define LLM_PF_STREAM _MM_HINT_NTA

/* CPUID features (src/llm/cpu.c): 1 when the CPU has them */
int llm_cpu_f16c(void);
int llm_cpu_avxvnni(void);
int llm_cpu_avx512bf16(void);

#endif
