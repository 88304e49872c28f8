/* LLM inference engine: qwen2 / llama transformers from GGUF, KV-cache sessions with
 * many sequence slots, batched prefill and decode, sampling, stop strings.
 *
 * Model (both architectures):
 *   x = token_embd[tok]
 *   per layer:  h = rmsnorm(x) * attn_norm
 *               q = Wq h (+bq), k = Wk h (+bk), v = Wv h (+bv)      (biases: qwen2)
 *               qwen3: each head of q and k RMS-normalised with attn_q_norm / attn_k_norm
 *               q, k rotated by RoPE at the token's position (pairing NEOX for qwen2:
 *                 (i, i+hd/2); ADJACENT for llama GGUFs: (2i, 2i+1); freq_i = theta^(-2i/hd),
 *                 divided by rope_freqs[i] when the file has rope_freqs.weight (llama 3.1+))
 *               causal attention, GQA (query head h uses kv head h / (n_heads/n_kv_heads)),
 *                 scale 1/sqrt(head_dim)
 *               x += Wo attn
 *               h = rmsnorm(x) * ffn_norm;  x += Wdown (silu(Wgate h) * Wup h)
 *   logits = Wout (rmsnorm(x) * output_norm)          (Wout = token_embd when tied)
 * rmsnorm(x) = x / sqrt(mean(x^2) + eps).
 *
 * Weight matrices follow GGUF: a tensor with ne = [in, out] is `out` rows of `in`
 * values (row-major), y = W x. Every llama.cpp weight type (F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) is used in place (from
 * the file's mmap, or from heap buffers the model owns); F64 is converted to F32 at load;
 * any other type is refused. Q4_0 matrices are moved at load into an interleaved copy for the
 * int8 kernels, and Q5_0 ones (width a multiple of 128) with the AVX-512 VNNI kernels
 * (llm_model_repack; same bytes, other order), whose file pages are then released.
 * Norm weights and biases are always held as F32.
 *
 * Threading: matmuls use OpenMP over output rows (and OpenBLAS sgemm for batches);
 * a model is immutable after loading and may be shared by sessions; one session
 * must be used by one thread at a time. */
#ifndef DEEPREC_LLM_H
#define DEEPREC_LLM_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"
#include "deeprec/nn.h"

struct gguf_file;
struct gguf_writer;
struct tokenizer;

/* ---------- configuration ---------- */
enum llm_arch { LLM_ARCH_QWEN2 = 0, LLM_ARCH_LLAMA = 1, LLM_ARCH_QWEN3 = 2 };

typedef struct llm_config {
    int arch;          /* enum llm_arch */
    int dim;           /* embedding_length */
    int n_layers;      /* block_count */
    int n_heads;       /* attention.head_count */
    int n_kv_heads;    /* attention.head_count_kv (divides n_heads) */
    int head_dim;      /* attention.key_length, default dim / n_heads */
    int ffn;           /* feed_forward_length */
    int vocab;         /* rows of token_embd.weight */
    int context;       /* context_length (the longest position the model was trained for) */
    float rms_eps;     /* attention.layer_norm_rms_epsilon */
    float rope_theta;  /* rope.freq_base */
    int rope_pairing;  /* enum nn_rope_mode: NN_ROPE_NEOX for qwen2/qwen3, NN_ROPE_ADJACENT for llama
                          (not stored in GGUF: set by the architecture) */
    int tied_output;   /* 1: no output.weight, logits use token_embd */
    int qkv_bias;      /* 1: attn_q/k/v have biases (qwen2) */
} llm_config;

/* Defaults for an architecture (eps 1e-6, theta 1e6 for qwen2 / 1e4 for llama, the
 * pairing and bias of the architecture, tied output for qwen2); sizes left 0. */
void llm_config_default(llm_config *c, int arch);
/* Checks sizes (positive, heads divide, head_dim even, ...). */
int llm_config_check(const llm_config *c);
const char *llm_arch_name(int arch);     /* "qwen2" / "llama" / "qwen3" */
int llm_arch_from_name(const char *name); /* -1 if unknown */

/* ---------- weights ---------- */
/* A weight matrix: rows x cols, row r at (const uint8_t *)data + r * row_bytes. */
typedef struct llm_mat {
    const void *data;
    uint32_t type;     /* GGML_TYPE_*: any type dr_dequantize_supported accepts */
    int rows, cols;    /* out features, in features (cols = GGUF ne[0]) */
    size_t row_bytes;
    /* Q4_0 and Q5_0 only, else NULL: the same bytes in the layout of their int8 kernels
     * (llm_model_repack: Q4_0 rows interleaved 4 at a time, q4x.c; Q5_0 blocks 8 side by side
     * within each row, q5x.c). Every kernel then reads these and never data, which stays the
     * file's bytes (for saving) but is no longer resident. */
    const void *packed;
} llm_mat;

typedef struct llm_layer {
    const float *attn_norm;            /* [dim] */
    llm_mat wq, wk, wv, wo;            /* [H*hd x dim], [K*hd x dim], [K*hd x dim], [dim x H*hd] */
    const float *bq, *bk, *bv;         /* [H*hd], [K*hd], [K*hd]; NULL without qkv_bias */
    const float *q_norm, *k_norm;      /* [head_dim]: RMSNorm of each q / k head before RoPE (qwen3); else NULL */
    const float *ffn_norm;             /* [dim] */
    llm_mat w_gate, w_up, w_down;      /* [ffn x dim], [ffn x dim], [dim x ffn] */
} llm_layer;

typedef struct llm_model {
    llm_config cfg;
    llm_mat tok_embd;          /* [vocab x dim] */
    llm_layer *layers;         /* n_layers */
    const float *output_norm;  /* [dim] */
    const float *rope_freqs;   /* [head_dim / 2] or NULL: llama 3.1+ RoPE scaling, frequency i divided by rope_freqs[i] */
    llm_mat output;            /* [vocab x dim]; a copy of tok_embd's descriptor when tied */
    int32_t *eos_ids;          /* end-of-generation ids from metadata (eos, eot, <|im_end|>, ...) */
    int n_eos;
    struct tokenizer *tok;     /* loaded from the same GGUF when it has tokenizer.ggml.*; else NULL */
    int kv_type;               /* llm_kv_type of the sessions made on it: LLM_KV_F32 unless set (llm_model_set_kv_type) */
    /* ownership (private) */
    struct gguf_file *file;    /* kept open: weights point into its mmap */
    void **owned;              /* heap buffers owned by the model */
    int n_owned, cap_owned;
} llm_model;

/* Load from a GGUF file (general.architecture qwen2 or llama, standard keys and
 * tensor names). Errors name the file and the key/tensor (missing, wrong shape/type,
 * unknown architecture, vocabulary vs embedding mismatch). */
int llm_model_load(llm_model **out, const char *path);
void llm_model_free(llm_model *m);

/* Repack every Q4_0 matrix into one allocation in the interleaved layout of the int8 kernels
 * (4 rows' blocks side by side), when this CPU's kernels use it (AVX2 and up; not with the
 * portable C kernel or DEEPREC_REPACK=0), and every Q5_0 matrix of a width that is a multiple
 * of 128 into the layout of the AVX-512 VNNI kernel (8 blocks side by side within each row;
 * with those kernels only); the copied pages of the file map are released.
 * llm_model_load does this. Nothing to do (or no memory for the copy): DR_OK, unchanged. */
int llm_model_repack(llm_model *m);
/* A model with random weights in memory: embeddings/matrices ~N(0, std^2) (a sum of four
 * uniforms: fast for big models), norms 1, biases N(0, std^2); matrices stored as `type` (F32/F16/BF16/Q8_0). Deterministic in seed. */
int llm_model_init_random(llm_model **out, const llm_config *c, uint32_t type, float std, uint64_t seed);
/* Convert every weight matrix of m to `type` (F32/F16/BF16/Q8_0) into owned buffers
 * (used for the conversion tests and `llm init --type`). */
int llm_model_convert(llm_model *m, uint32_t type);
/* Write m as a GGUF (standard keys and tensor names, matrices in their current types);
 * tokenizer metadata from tok when non-NULL (else m->tok when set). Atomic. */
int llm_model_save(const llm_model *m, const struct tokenizer *tok, const char *path);
/* The same into a writer the caller owns (to add more keys/tensors before writing). */
int llm_model_write(const llm_model *m, const struct tokenizer *tok, struct gguf_writer *w);
/* Bytes of all weight matrices (what a decode step of batch 1 reads, embeddings counted
 * once when tied: the output matrix). */
size_t llm_model_weight_bytes(const llm_model *m);
int llm_is_eos(const llm_model *m, int32_t id);

/* ---------- kernels (exposed for training and tests) ---------- */
/* y[n x rows] = x[n x cols] * W^T  (y_i = W x_i). Any llm_mat type; small n reads the
 * compact weights directly (AVX2), larger n converts weight tiles to fp32 for sgemm. */
void llm_matmul(const llm_mat *w, const float *x, int n, float *y);
/* The same with the activations rounded to int8 blocks (as llama.cpp does) for the block-quantised
 * types at batches below the sgemm crossover, and to bf16 for BF16 weights on CPUs with
 * AVX512_BF16 (every batch size): faster, off by ~1e-2 relative (int8) / ~4e-3 (bf16).
 * F32/F16 weights and large batches of block types: exactly llm_matmul. */
void llm_matmul_fast(const llm_mat *w, const float *x, int n, float *y);
/* The integer dot-product kernel chosen for this CPU: "avx512-vnni" (its own kernel for Q4_0,
 * the others as avx-vnni or avx2), "avx-vnni", "avx2" or "c" (DEEPREC_KERNEL=<name> forces a
 * lesser one). */
const char *llm_kernel_name(void);
/* Row r of W as fp32 (embedding lookup). */
void llm_mat_row(const llm_mat *w, int r, float *dst);

/* ---------- sessions: KV cache with sequence slots ---------- */
/* n_slots sequences of up to n_ctx tokens each (K and V of every layer, as the model's
 * kv_type says: fp32, or fp16 at half the memory).
 * F16: K and V are rounded to fp16 (nearest even) when written and widened exactly when read,
 * so attention differs from F32 by the rounding of K and V (about 5e-4 relative), as in
 * llama.cpp's default cache; the exact path keeps F32. */
typedef enum { LLM_KV_F32, LLM_KV_F16 } llm_kv_type;
/* "f32" / "f16" -> LLM_KV_*, or -1 */
int llm_kv_type_from_name(const char *name);
/* The KV cache type of the sessions made on m from now on (slots copy only between sessions
 * of one type). */
void llm_model_set_kv_type(llm_model *m, llm_kv_type t);
typedef struct llm_session llm_session;

int llm_session_new(llm_session **out, const llm_model *m, int n_slots, int n_ctx);
void llm_session_free(llm_session *s);
const llm_model *llm_session_model(const llm_session *s);
/* Exact (the default: fp32 activations everywhere, for tests and RL log-probs) or fast
 * (int8 activations on the block-quantised weights, see llm_matmul_fast). */
void llm_session_set_fast(llm_session *s, int fast);
int llm_session_fast(const llm_session *s);
int llm_session_ctx(const llm_session *s);
/* Tokens currently in a slot. */
int llm_slot_len(const llm_session *s, int slot);
/* Forget a slot's tokens after position len (len = 0: free the slot). */
int llm_slot_truncate(llm_session *s, int slot, int len);
/* Copy slot src's cached tokens into each slot of dst[0..n-1] (they are replaced). */
int llm_slot_fork(llm_session *s, int src, const int *dst, int n);
/* Copy slot src_slot of session src into slot dst_slot of dst (same model; the slot is
 * replaced): a prompt prefix computed once in a small session starts many sequences. */
int llm_slot_copy(llm_session *dst, int dst_slot, const llm_session *src, int src_slot);

/* Append n tokens to a slot (positions len..len+n-1), one matmul per weight for all
 * of them. logits (may be NULL): with all_logits [n x vocab] for every token, else
 * [vocab] for the last token only. DR_ERR_RANGE when the slot would exceed n_ctx. */
int llm_prefill(llm_session *s, int slot, const int32_t *tokens, int n, float *logits, int all_logits);
/* One decode step for n distinct slots: slot slots[i] gets token tokens[i];
 * logits [n x vocab] (may be NULL). One matmul per weight for the whole batch. */
int llm_decode(llm_session *s, const int *slots, const int32_t *tokens, int n, float *logits);

/* ---------- sampling ---------- */
typedef struct llm_sampler_params {
    float temperature; /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;         /* keep the k most likely (0 = all) */
    float top_p;       /* keep the smallest set whose mass >= top_p (>= 1 = all) */
    float min_p;       /* drop tokens with p < min_p * p_max (0 = off) */
} llm_sampler_params;
void llm_sampler_default(llm_sampler_params *p); /* temperature 0.7, top_k 0, top_p 0.95, min_p 0 */

/* Sample an id from logits[vocab]: temperature, then top-k, then top-p, renormalised.
 * scratch: vocab floats + vocab int32 (llm_sample_scratch_bytes) or NULL (allocates). */
size_t llm_sample_scratch_bytes(int vocab);
int32_t llm_sample(const float *logits, int vocab, const llm_sampler_params *p, dr_rng *rng, void *scratch);
int32_t llm_argmax(const float *logits, int vocab);

/* ---------- streaming text with stop strings ---------- */
/* Turns generated ids into text incrementally: bytes of each token are appended; text is
 * released only when it can no longer be the start of a stop string and is not an
 * incomplete UTF-8 sequence. When a stop string appears (possibly spread over several
 * tokens) the text is cut before it and the stream is stopped. */
typedef int (*llm_piece_fn)(void *ctx, int32_t id, char *buf, size_t cap); /* like tok_token_to_piece */
typedef struct llm_textstream {
    llm_piece_fn piece;
    void *piece_ctx;
    const char *const *stops;
    int n_stops;
    char *text;         /* all text so far (NUL-terminated), cut at the stop when stopped */
    size_t len, cap;
    size_t released;    /* bytes of text handed out so far */
    int stopped;        /* 1 once a stop string was seen */
    int stop_index;     /* which one (index into stops) once stopped */
    int skip_special;   /* do not append special tokens' text (set by llm_textstream_init_tok) */
    const struct tokenizer *tok;
} llm_textstream;
void llm_textstream_init(llm_textstream *ts, llm_piece_fn piece, void *ctx, const char *const *stops, int n_stops);
/* With a tokenizer: pieces from tok_token_to_piece; control tokens (<|im_end|>) give no text.
 * Added tokens (the protocol tags) are text, as Hugging Face and llama.cpp render them: a
 * client driving the agent protocol through a server must see its tags. */
void llm_textstream_init_tok(llm_textstream *ts, const struct tokenizer *tok, const char *const *stops, int n_stops);
/* Add a token. *out / *out_len: the newly releasable text (points into ts->text). */
int llm_textstream_push(llm_textstream *ts, int32_t id, const char **out, size_t *out_len);
/* End of generation: release everything held back (unless stopped). */
void llm_textstream_flush(llm_textstream *ts, const char **out, size_t *out_len);
void llm_textstream_free(llm_textstream *ts);

/* ---------- generation (several sequences in one batch) ---------- */
enum llm_finish { LLM_FINISH_NONE = 0, LLM_FINISH_EOS, LLM_FINISH_STOP, LLM_FINISH_LENGTH, LLM_FINISH_CONTEXT };

typedef struct llm_gen_params {
    int max_tokens;              /* new tokens per sequence (> 0) */
    llm_sampler_params sampler;
    uint64_t seed;               /* sequence i samples with dr_rng_split(seed, i) unless rngs given */
    const char *const *stops;    /* stop strings (the text is cut before them) */
    int n_stops;
} llm_gen_params;

typedef struct llm_gen_result {
    int32_t *ids;   /* generated ids (includes the EOS / the tokens that completed a stop string) */
    int n_ids;
    char *text;     /* generated text, cut before a stop string; special tokens omitted */
    size_t len;
    int finish;     /* enum llm_finish */
} llm_gen_result;

/* Called with newly released text of sequence i; a non-zero return aborts generation
 * (llm_generate then returns DR_OK with the sequences finished so far marked NONE). */
typedef int (*llm_gen_cb)(void *ctx, int i, const char *text, size_t len);

/* Generate for n slots in one batch. Each slot holds its prompt except the last token,
 * which is given in pending[i] (fed in the first decode step: so G samples of one prompt
 * are: prefill all but the last token into a slot, llm_slot_fork it into G slots, and
 * call this with the same pending token for all). tok may be NULL (then text is empty
 * and stops are ignored). rngs: NULL or n generators (advanced). res: n results the
 * caller frees with llm_gen_result_free.
 * On return slot i holds its prompt (pending included) and res[i].ids except the last
 * one (sampled, not fed yet): to continue a conversation, prefill that id followed by
 * the new turn's tokens minus its last, and call again with the last as pending. */
int llm_generate(llm_session *s, const struct tokenizer *tok, const int *slots, const int32_t *pending, int n,
                 const llm_gen_params *p, dr_rng *rngs, llm_gen_result *res, llm_gen_cb cb, void *cb_ctx);
void llm_gen_result_free(llm_gen_result *r);

/* Tokens per second of m: a prefill of P random tokens, then `steps` decode steps (after
 * one warm-up) at batch 1 and at batch B. fast: llm_session_set_fast. */
typedef struct llm_speed_result {
    double prefill_tps, decode1_tps, decodeB_tps;
} llm_speed_result;
int llm_speed(const llm_model *m, int P, int B, int steps, int fast, llm_speed_result *r);

/* A one-turn chat prompt in the model file's chat form (ChatML or Llama-3, from
 * tokenizer.chat_template): the optional system message, the user's text, and the assistant's
 * turn opened. *out is malloc'd. Fails, with a hint, when the model has no tokenizer. */
int llm_chat_prompt(const llm_model *m, const char *system, const char *user, char **out);

/* The last position's logits [vocab] of one token sequence (n <= the model's context), from a
 * fresh one-slot session. fast: llm_session_set_fast. */
int llm_last_logits(const llm_model *m, const int32_t *ids, int n, int fast, float *logits);

/* n samples of one prompt (m->tok required): encode it (with BOS when the model file's
 * tokenizer.ggml.add_bos_token says so), prefill it once, fork it to n slots, generate.
 * ctx 0: prompt + p->max_tokens, at most the model's context. fast: llm_session_set_fast.
 * res: n results, zeroed first; the caller frees each with llm_gen_result_free. */
typedef struct llm_complete_stats {
    size_t prompt_tokens;
    double prefill_s, decode_s;
} llm_complete_stats;
int llm_complete(const llm_model *m, const char *prompt, int n, int ctx, int fast, const llm_gen_params *p,
                 llm_gen_cb cb, void *cb_ctx, llm_gen_result *res, llm_complete_stats *st);

#endif
