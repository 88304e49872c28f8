/* deeprec nn: fp32 kernels with forward and backward, shared by the TRM and the LLM.
 *
 * Conventions for every function here:
 * - fp32, row-major, contiguous unless a leading dimension is given. Shapes are
 *   written [rows, cols]; "N" is the number of rows (tokens, positions) of a batch.
 * - Backward functions ACCUMULATE into gradient buffers (`dx += ...`), so a
 *   caller can sum the gradient of a tensor used in several places; zero the
 *   buffers yourself before the first use. A gradient pointer that is NULL is
 *   not computed (skipped), unless stated otherwise.
 * - Input and output buffers do not alias unless a function says they may.
 * - No allocation inside: where a kernel needs room it is a caller argument.
 * - Parallel with OpenMP over rows/heads; results do not depend on the thread
 *   count (reductions are done in a fixed order, scatter-adds are partitioned,
 *   dropout streams are derived with dr_rng_split per row / (batch row, head), numbered
 *   from the caller's offset into its whole batch, so a shard draws the whole batch's masks).
 * - Kernels that take ids from data (embedding, losses) validate them and return
 *   DR_ERR_RANGE with a message on an out-of-range id; the others trust their
 *   sizes (void) except where a configuration can be invalid (attention).
 * - Randomness: kernels take `const dr_rng *rng` and never advance it; they derive
 *   sub-streams with dr_rng_split. Give each call its own rng (for example
 *   dr_rng_split(&step_rng, layer_id * 16 + site)) so that masks differ between
 *   calls, and pass the SAME rng to the matching backward. */
#ifndef DEEPREC_NN_H
#define DEEPREC_NN_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

/* ---------------- matmul (OpenBLAS cblas_sgemm) ---------------- */
/* C[M,N] = alpha * op(A) op(B) + beta * C, with op(A) of shape [M,K], op(B) of shape [K,N].
 * transA == 0: A is stored [M,K]; transA != 0: A is stored [K,M] (op(A) = A^T).
 * transB == 0: B is stored [K,N]; transB != 0: B is stored [N,K] (op(B) = B^T).
 * beta == 0 ignores the old contents of C (NaNs included). Zero sizes are allowed (K == 0
 * gives C = beta C). */
void nn_matmul(float *C, const float *A, const float *B, int M, int N, int K,
               int transA, int transB, float alpha, float beta);
/* Backward of C = alpha * op(A) op(B): dA += alpha * d/dA, dB += alpha * d/dB, stored in the
 * same layout as A and B (dA is [K,M] when transA). dA or dB may be NULL. */
void nn_matmul_backward(float *dA, float *dB, const float *dC, const float *A, const float *B,
                        int M, int N, int K, int transA, int transB, float alpha);

/* ---------------- linear layer (PyTorch convention) ---------------- */
/* y[N,out] = x[N,in] W^T + b, with W stored [out,in] and b [out] (b may be NULL). */
void nn_linear_forward(float *y, const float *x, const float *W, const float *b,
                       int N, int in, int out);
/* dx[N,in] += dy W;  dW[out,in] += dy^T x;  db[out] += sum over rows of dy.
 * Any of dx, dW, db may be NULL. */
void nn_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int N, int in, int out);

/* ---------------- embedding ---------------- */
/* out[N,D] = table[ids[i], :]. An id < 0 is padding: its row of out is zero (and it gets
 * no gradient). An id >= V returns DR_ERR_RANGE (out is then unspecified). */
int nn_embedding_forward(float *out, const float *table, const int32_t *ids, int N, int V, int D);
/* dtable[ids[i], :] += dout[i, :] for ids >= 0. Deterministic: the columns of the table are
 * partitioned among threads and every thread adds the rows in order i = 0..N-1, so repeated
 * ids sum in a fixed order. Returns DR_ERR_RANGE on an id >= V (before touching dtable). */
int nn_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int V, int D);

/* ---------------- normalisation ---------------- */
/* LayerNorm over the last dimension C of x[N,C]:
 * out = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps), var the biased variance.
 * w or b may be NULL (then 1 and 0). mean[N] and rstd[N] are saved for the backward; they may
 * be NULL when no backward follows. out may equal x (in place) only when no backward follows. */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int N, int C, float eps);
/* dx += ..., dw[C] += ..., db[C] += ... (each may be NULL); w may be NULL as in the forward. */
void nn_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                           const float *w, const float *mean, const float *rstd, int N, int C);

/* RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps). w may be NULL (ones).
 * rstd[N] saved for the backward (may be NULL when no backward follows). out may equal x (in
 * place) only when no backward follows. */
void nn_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
void nn_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *rstd, int N, int C);

/* ---------------- attention ---------------- */
/* Multi-head scaled dot-product attention with grouped-query heads.
 * Layouts (contiguous):
 *   q, out, dq : [B, Tq, H,   Dh]   (i.e. the [B*Tq, H*Dh] output of a linear layer)
 *   k, v, dk, dv: [B, Tk, Hkv, Dh]
 *   att        : [B, H, Tq, Tk]     softmax probabilities saved by the forward (before dropout)
 * Query head h uses key/value head h / (H / Hkv) (Hkv must divide H; Hkv == H is plain MHA,
 * Hkv == 1 is multi-query).
 * Masks (combined with AND):
 *   causal: query i attends key j only when j <= i + (Tk - Tq) (bottom-right aligned, so a
 *           decode step with Tq=1 sees every cached key; Tq == Tk is the usual triangle);
 *   key_len [B] (or NULL): keys j >= key_len[b] are masked (right padding);
 *   key_mask [B,Tk] (or NULL): key_mask[b*Tk + j] == 0 masks key j (any padding pattern).
 * A query whose every key is masked gets att row 0 and out row 0, and no gradient.
 * Keys at or past key_len[b], or past the causal bound, are never read (a KV cache may hold
 * garbage there); everything else of q, k, v (and dout) must be finite, padding positions
 * included, because masked entries are multiplied by 0 rather than skipped.
 * Dropout (p = dropout in [0,1)) is applied to the probabilities: out = (P .* M / (1-p)) V, with
 * M drawn from dr_rng_split(rng, (b0 + b)*H + h): row by row (i = 0..Tq-1), one uniform per key j below
 * the row's end (min of the causal bound and key_len; key_mask does not change it); the
 * backward regenerates the same M from the same rng, so pass the same config to both. */
typedef struct nn_attn {
    int B, Tq, Tk;            /* batch, query length, key length */
    int H, Hkv, Dh;           /* query heads, key/value heads, head dimension */
    int causal;               /* 1: causal as above; 0: bidirectional */
    const int32_t *key_len;   /* [B] valid keys per batch row, or NULL */
    const uint8_t *key_mask;  /* [B, Tk] 1 = visible, 0 = masked, or NULL */
    float scale;              /* score scale; 0 means 1/sqrt(Dh) */
    float dropout;            /* dropout probability on attention probabilities, 0 = off */
    const dr_rng *rng;        /* parent stream for dropout (required when dropout > 0) */
    int64_t b0;               /* index of batch row 0 in the whole batch (dropout streams; 0 unless
                                 this is a shard of a larger batch) */
} nn_attn;

/* Number of floats of att (and of datt): B * H * Tq * Tk. */
size_t nn_attention_att_size(const nn_attn *a);
/* out = softmax(mask(scale * q k^T)) v per head; att receives the probabilities (required).
 * Returns DR_ERR_ARG on an invalid configuration (sizes <= 0, H % Hkv != 0, dropout out of
 * range or without rng). */
int nn_attention_forward(const nn_attn *a, float *out, float *att, const float *q,
                         const float *k, const float *v);
/* dq += ..., dk += ..., dv += ... (each may be NULL). att is the forward's output; datt is
 * scratch of nn_attention_att_size floats (contents on return unspecified). Deterministic:
 * parallel over (batch, kv-head) so no two threads add into the same dk/dv rows. */
int nn_attention_backward(const nn_attn *a, float *dq, float *dk, float *dv, float *datt,
                          const float *dout, const float *q, const float *k, const float *v,
                          const float *att);

/* ---------------- rotary position embedding ---------------- */
/* The one RoPE of the project: the trainer and the inference sessions (and the LLM config's
 * rope_pairing) use this enum and these functions. */
enum nn_rope_mode {
    NN_ROPE_NEOX = 0,     /* pairs (i, i + rot_dim/2): GPT-NeoX, Qwen2, HF Llama */
    NN_ROPE_ADJACENT = 1  /* pairs (2i, 2i + 1): original RoPE / GPT-J / Meta Llama GGUFs */
};
/* Rotates x [N, H, Dh] (N tokens, H heads) in place: for pair index i in [0, rot_dim/2),
 * angle = pos_n * theta^(-2i/rot_dim), (a, b) -> (a cos - b sin, a sin + b cos), where the
 * pair (a, b) is (x[i], x[i + rot_dim/2]) for NEOX and (x[2i], x[2i+1]) for ADJACENT.
 * pos [N] holds each token's position (use it for offsets, e.g. a KV cache or left padding);
 * pos == NULL: token n has position n % T (a batch of sequences of length T, N = B*T).
 * rot_dim (even, <= Dh) rotates the first rot_dim dims of each head; 0 means Dh.
 * Angles are computed in double (exact for long positions), then cos and sin rounded to float. */
void nn_rope_forward(float *x, const int32_t *pos, int N, int T, int H, int Dh, int rot_dim,
                     float theta, int mode);
/* Backward is the inverse rotation: dx += R^T dout. If dx == dout it transforms in place
 * (dx := R^T dout, no accumulation). */
void nn_rope_backward(float *dx, const float *dout, const int32_t *pos, int N, int T, int H,
                      int Dh, int rot_dim, float theta, int mode);
/* The same rotation with the angles computed once for several uses (the q and k of every
 * layer of an inference step). nn_rope_table fills cs and sn [N, rot_dim/2] (rot_dim even,
 * > 0) with cos and sin of pos_n * theta^(-2i/rot_dim) / factors[i] (pos and T as above;
 * factors [rot_dim/2] or NULL for 1: llama 3.1's rope_freqs). nn_rope_apply rotates x
 * [N, H, Dh] in place by such a table; with factors NULL, table + apply gives exactly
 * nn_rope_forward. */
void nn_rope_table(float *cs, float *sn, const int32_t *pos, int N, int T, int rot_dim, float theta,
                   const float *factors);
void nn_rope_apply(float *x, const float *cs, const float *sn, int N, int H, int Dh, int rot_dim, int mode);

/* ---------------- activations (elementwise over n values) ---------------- */
enum nn_gelu_mode {
    NN_GELU_ERF = 0, /* exact 0.5 x (1 + erf(x/sqrt 2)), PyTorch nn.GELU() default */
    NN_GELU_TANH = 1 /* tanh approximation, nn.GELU(approximate='tanh') */
};
/* y may equal x (in place) when no backward needs x. */
void nn_gelu_forward(float *y, const float *x, size_t n, int mode);
void nn_gelu_backward(float *dx, const float *dy, const float *x, size_t n, int mode);
void nn_relu_forward(float *y, const float *x, size_t n);
void nn_relu_backward(float *dx, const float *dy, const float *x, size_t n);
/* silu(x) = x * sigmoid(x) */
void nn_silu_forward(float *y, const float *x, size_t n);
void nn_silu_backward(float *dx, const float *dy, const float *x, size_t n);
/* swiglu: y = silu(gate) * up (the Llama/Qwen2 MLP); y may equal gate or up when no backward
 * follows. dgate or dup may be NULL. */
void nn_swiglu_forward(float *y, const float *gate, const float *up, size_t n);
void nn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                        const float *up, size_t n);
/* A gated residual (LiGR): g = sigmoid(pre) (written over pre's values into g, which may be pre),
 * y = base + g * branch. The backward adds dy * g to dbranch and dy * branch * g (1 - g) to dpre. */
void nn_gated_residual_forward(float *y, float *g, const float *pre, const float *branch, const float *base, size_t n);
void nn_gated_residual_backward(float *dbranch, float *dpre, const float *dy, const float *g, const float *branch,
                                size_t n);

/* ---------------- softmax over rows ---------------- */
/* y[N,C] = softmax of each row of x (max-subtracted). y may equal x. */
void nn_softmax_forward(float *y, const float *x, int N, int C);
/* One row of C values, on the calling thread (no OpenMP region: for callers already inside a
 * parallel loop, such as the attention of the inference sessions). y may equal x. */
void nn_softmax_row(float *y, const float *x, int C);
/* dx += y .* (dy - sum(dy .* y)) per row, from the forward's output y. */
void nn_softmax_backward(float *dx, const float *dy, const float *y, int N, int C);

/* ---------------- dropout ---------------- */
/* y = x .* mask / (1 - p), mask[i] = 1 with probability 1 - p. mask (uint8, n) is written by
 * the forward and read by the backward. The n elements are rows of `row` (> 0) elements, the
 * last one possibly shorter; row i draws its mask from dr_rng_split(rng, row0 + i), one
 * uniform per element in order, so a row's mask depends only on rng, its index row0 + i and
 * p, not on n or the thread count: a caller holding rows [r0, r1) of a larger tensor passes
 * row0 = r0 and draws that tensor's masks for those rows (the TRM: a row is one sequence's
 * activations, row0 its index in the global batch). p == 0: y = x, mask all 1 (mask may be
 * NULL then). y may equal x. */
void nn_dropout_forward(float *y, uint8_t *mask, const float *x, size_t n, size_t row, uint64_t row0, float p,
                        const dr_rng *rng);
/* dx += dy .* mask / (1 - p) (mask may be NULL when p == 0). */
void nn_dropout_backward(float *dx, const float *dy, const uint8_t *mask, size_t n, float p);

/* ---------------- losses ---------------- */
/* All losses are weighted means: loss = sum_i w_i * l_i / sum_i w_i over the rows that count
 * (target != ignore_index; weights NULL means w_i = 1). If no row counts (or sum w == 0) the
 * loss is 0 and no gradient is added. The gradient written is
 *     dX += dscale * d(loss)/dX
 * (dscale = 1 for a plain loss; 1/accum_steps for gradient accumulation, etc.).
 * Ids are validated before anything is written: DR_ERR_RANGE on a bad id. */

/* Full-softmax cross-entropy over logits [N,V]: l_i = logsumexp(logits_i) - logits_i[t_i].
 * dlogits [N,V] may be NULL (loss only). */
int nn_cross_entropy(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                     const float *weights, int N, int V, int ignore_index, float dscale);

/* Full-softmax cross-entropy over the logits hidden . table^T, fused (the TRM's loss over a
 * whole item catalogue): the [N, V] logits are never stored, only tiles of them, so the cost is
 * that of the three products (logits, dhidden, dtable) at cache speed. Candidates are the rows
 * [v0, V) of table [V, D]; rows below v0 (a padding item) are never candidates and get no
 * gradient. Every row counts: l_i = logsumexp_{j >= v0}(hidden_i . table_j) - hidden_i .
 * table_{t_i}, loss = mean over the N rows; dhidden [N, D] += dscale * d(loss)/dhidden and
 * dtable [V, D] += dscale * d(loss)/dtable (either may be NULL: not computed). The sums run in
 * an order fixed by the shapes (not the thread count), but not in nn_cross_entropy's: the bits
 * differ from the unfused loss by rounding. work: nn_linear_ce_work(N, V, D, v0) floats.
 * DR_ERR_RANGE on a target outside [v0, V), DR_ERR_ARG on D <= 0 or v0 outside [0, V). */
size_t nn_linear_ce_work(int N, int V, int D, int v0);
int nn_linear_cross_entropy(float *loss, float *dhidden, float *dtable, const float *hidden, const float *table,
                            const int32_t *targets, int N, int V, int D, int v0, float dscale, float *work);
/* The same with label smoothing eps in [0, 1): the target of row i is (1 - eps) onehot(t_i) +
 * eps / C uniform over the C = V - v0 candidates, l_i = lse_i - (1 - eps) s_{i,t_i} - eps mean_j
 * s_ij (PyTorch's cross_entropy(label_smoothing=eps)). eps = 0 gives nn_linear_cross_entropy's
 * bits; DR_ERR_ARG outside [0, 1). Same work size. */
int nn_linear_cross_entropy_ls(float *loss, float *dhidden, float *dtable, const float *hidden, const float *table,
                               const int32_t *targets, int N, int V, int D, int v0, float smoothing, float dscale,
                               float *work);
/* nn_linear_cross_entropy_ls with candidates left out per row: row i's softmax runs over the
 * candidates but excl[excl_off[i] .. excl_off[i + 1]) (ids outside [v0, V) and the row's own
 * target are ignored), which get no probability and no gradient: a recommender's history,
 * which the evaluation masks too. excl_off NULL: none (the bits of nn_linear_cross_entropy_ls).
 * Exclusions need smoothing 0 (DR_ERR_ARG). Same work size. */
int nn_linear_cross_entropy_excl(float *loss, float *dhidden, float *dtable, const float *hidden, const float *table,
                                 const int32_t *targets, int N, int V, int D, int v0, float smoothing,
                                 const int32_t *excl_off, const int32_t *excl, float dscale, float *work);

/* Sampled-softmax cross-entropy for item recommenders (SASRec style), logits computed here:
 * for row i, scores s_0 = hidden_i . table[pos_i], s_k = hidden_i . table[neg_ik] (k=1..K),
 * l_i = logsumexp(s) - s_0. hidden [N,D], table [V,D], pos [N], neg [N,K].
 * A row with pos_i == ignore_index does not count (its ids are not read). A negative that is < 0 or equals pos_i
 * (an accidental hit) is left out of that row's softmax.
 * dhidden [N,D] += ..., dtable [V,D] += ... (each may be NULL; dtable is deterministic as in
 * nn_embedding_backward). work: N*(K+1) floats of scratch (required). */
int nn_sampled_softmax_ce(float *loss, float *dhidden, float *dtable, const float *hidden,
                          const float *table, const int32_t *pos, const int32_t *neg,
                          const float *weights, int N, int K, int D, int V, int ignore_index,
                          float dscale, float *work);
/* The same with the logQ correction of sampled softmax: neg_logq [N,K] (NULL = none, the bits of
 * nn_sampled_softmax_ce) is subtracted from the negatives' logits, s_k - log(K q_k) with q_k the
 * probability that one draw gives that item; the positive's logit is left as it is. Then
 * sum_k exp(s_k) / (K q_k) estimates the sum over all items, and the loss approximates the full
 * softmax's (Bengio & Senecal 2008; Yi et al. 2019 for the recommender form). */
int nn_sampled_softmax_ce_logq(float *loss, float *dhidden, float *dtable, const float *hidden,
                               const float *table, const int32_t *pos, const int32_t *neg, const float *neg_logq,
                               const float *weights, int N, int K, int D, int V, int ignore_index,
                               float dscale, float *work);

/* Binary cross-entropy with logits over n values, numerically stable:
 * l_i = max(x,0) - x*y + log(1 + exp(-|x|)), labels y in [0,1]. weights NULL = plain mean;
 * a weight 0 excludes a value (use it for padding). dlogits may be NULL. Returns DR_OK. */
int nn_bce_with_logits(float *loss, float *dlogits, const float *logits, const float *labels,
                       const float *weights, size_t n, float dscale);

/* Per-row log-probability of a target token: logp[i] = logits_i[t_i] - logsumexp(logits_i),
 * logits [N,V], targets [N]. Used by RL (policy log-probs). A target < 0 gives logp 0
 * (masked position); >= V gives DR_ERR_RANGE. */
int nn_logprob_gather(float *logp, const float *logits, const int32_t *targets, int N, int V);
/* dlogits_i += dlogp_i * (onehot(t_i) - softmax(logits_i)), using the forward's logp to get
 * logsumexp without a second max pass. Rows with target < 0 get nothing. */
int nn_logprob_gather_backward(float *dlogits, const float *dlogp, const float *logits,
                               const int32_t *targets, const float *logp, int N, int V);

/* ---------------- optimizer ---------------- */
/* One AdamW step (PyTorch torch.optim.AdamW semantics) over a flat array of n parameters:
 *   p  *= 1 - lr * weight_decay                       (decoupled weight decay)
 *   m   = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   p  -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
 * t is the 1-based step number (t = 1 on the first call). m and v start at zero. */
void nn_adamw_step(float *param, const float *grad, float *m, float *v, size_t n, int64_t t,
                   float lr, float beta1, float beta2, float eps, float weight_decay);

/* Global-norm gradient clipping over a list of buffers. */
typedef struct nn_buf { float *ptr; size_t len; } nn_buf;
/* Returns the global L2 norm (accumulated in double) BEFORE clipping. If max_norm > 0 and the
 * norm exceeds it, every buffer is multiplied by max_norm / (norm + 1e-6). A non-finite norm is
 * returned as is and nothing is scaled (the caller should skip the step). */
float nn_clip_grad_norm(const nn_buf *bufs, int nbufs, float max_norm);

#endif
