/* Losses: full-softmax cross-entropy, sampled-softmax cross-entropy, binary
 * cross-entropy with logits, and the per-row log-softmax gather used by RL.
 * Sums over rows are split into a fixed number of chunks (independent of the
 * thread count), each summed in order in double, then the chunks in order. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

#define NCHUNK 64

static inline size_t chunk_lo(size_t n, int c) { return n * (size_t)c / NCHUNK; }

/* logsumexp of a row, max-subtracted. */
static inline float row_lse(const float *x, int V) {
    float mx = nn_rowmax(x, V);
    return mx + logf(nn_expsum_only(x, mx, V));
}

int nn_cross_entropy(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                     const float *weights, int N, int V, int ignore_index, float dscale) {
    double wsum = 0.0;
    for (int i = 0; i < N; i++) {
        int t = targets[i];
        if (t == ignore_index) continue;
        if (t < 0 || t >= V)
            return dr_error(DR_ERR_RANGE, "cross_entropy: target %d at row %d is out of range [0, %d)", t, i, V);
        wsum += weights ? weights[i] : 1.0;
    }
    if (wsum == 0.0) {
        *loss = 0.0f;
        return DR_OK;
    }
    double part[NCHUNK];
#pragma omp parallel for schedule(dynamic, 1) if ((size_t)N * V >= NN_PAR_MIN)
    for (int c = 0; c < NCHUNK; c++) {
        double acc = 0.0;
        for (size_t i = chunk_lo(N, c); i < chunk_lo(N, c + 1); i++) {
            int t = targets[i];
            if (t == ignore_index) continue;
            float w = weights ? weights[i] : 1.0f;
            if (w == 0.0f) continue;
            const float *x = logits + i * V;
            float lse = row_lse(x, V);
            acc += (double)w * (lse - x[t]);
            if (dlogits) {
                float gs = (float)(dscale * w / wsum);
                float *d = dlogits + i * V;
                nn_expaxpy(d, gs, x, lse, V);
                d[t] -= gs;
            }
        }
        part[c] = acc;
    }
    double tot = 0.0;
    for (int c = 0; c < NCHUNK; c++) tot += part[c];
    *loss = (float)(tot / wsum);
    return DR_OK;
}

int nn_sampled_softmax_ce(float *loss, float *dhidden, float *dtable, const float *hidden,
                          const float *table, const int32_t *pos, const int32_t *neg,
                          const float *weights, int N, int K, int D, int V, int ignore_index,
                          float dscale, float *work) {
    return nn_sampled_softmax_ce_logq(loss, dhidden, dtable, hidden, table, pos, neg, NULL, weights, N, K, D, V,
                                      ignore_index, dscale, work);
}

int nn_sampled_softmax_ce_logq(float *loss, float *dhidden, float *dtable, const float *hidden,
                               const float *table, const int32_t *pos, const int32_t *neg, const float *neg_logq,
                               const float *weights, int N, int K, int D, int V, int ignore_index,
                               float dscale, float *work) {
    const int K1 = K + 1;
    double wsum = 0.0;
    for (int i = 0; i < N; i++) {
        if (pos[i] == ignore_index) continue;
        if (pos[i] < 0 || pos[i] >= V)
            return dr_error(DR_ERR_RANGE, "sampled_softmax_ce: positive id %d at row %d is out of range [0, %d)",
                            (int)pos[i], i, V);
        for (int k = 0; k < K; k++)
            if (neg[(size_t)i * K + k] >= V)
                return dr_error(DR_ERR_RANGE, "sampled_softmax_ce: negative id %d at row %d is out of range [0, %d)",
                                (int)neg[(size_t)i * K + k], i, V);
        wsum += weights ? weights[i] : 1.0;
    }
    if (wsum == 0.0) {
        *loss = 0.0f;
        return DR_OK;
    }
    double part[NCHUNK];
    /* Pass 1: per row, scores -> loss and gradient coefficients g_ik (in work). */
#pragma omp parallel for schedule(dynamic, 1) if ((size_t)N * K1 * D >= NN_PAR_MIN)
    for (int c = 0; c < NCHUNK; c++) {
        double acc = 0.0;
        for (size_t i = chunk_lo(N, c); i < chunk_lo(N, c + 1); i++) {
            float *g = work + i * K1;
            float w = weights ? weights[i] : 1.0f;
            if (pos[i] == ignore_index || w == 0.0f) {
                for (int k = 0; k < K1; k++) g[k] = 0.0f;
                continue;
            }
            const float *h = hidden + i * D;
            float mx = -INFINITY;
            for (int k = 0; k < K1; k++) {
                int id = k == 0 ? pos[i] : neg[i * K + k - 1];
                if (k > 0 && (id < 0 || id == pos[i])) { g[k] = -INFINITY; continue; }
                const float *e = table + (size_t)id * D;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int d = 0; d < D; d++) s += h[d] * e[d];
                /* the correction is a constant of the parameters: the gradient keeps its form */
                if (neg_logq && k > 0) s -= neg_logq[i * K + k - 1];
                g[k] = s;
                mx = s > mx ? s : mx;
            }
            float sum = 0.0f;
            for (int k = 0; k < K1; k++) sum += g[k] == -INFINITY ? 0.0f : expf(g[k] - mx);
            float lse = mx + logf(sum);
            acc += (double)w * (lse - g[0]);
            float gs = (float)(dscale * w / wsum);
            for (int k = 0; k < K1; k++)
                g[k] = g[k] == -INFINITY ? 0.0f : gs * (expf(g[k] - lse) - (k == 0 ? 1.0f : 0.0f));
            if (dhidden) {
                float *dh = dhidden + i * D;
                for (int k = 0; k < K1; k++) {
                    if (g[k] == 0.0f) continue;
                    const float *e = table + (size_t)(k == 0 ? pos[i] : neg[i * K + k - 1]) * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) dh[d] += g[k] * e[d];
                }
            }
        }
        part[c] = acc;
    }
    double tot = 0.0;
    for (int c = 0; c < NCHUNK; c++) tot += part[c];
    *loss = (float)(tot / wsum);
    /* Pass 2: dtable scatter, column blocks owned by one thread, rows in order. */
    if (dtable) {
        const int blk = 16;
        int nblk = (D + blk - 1) / blk;
#pragma omp parallel for schedule(static) if ((size_t)N * K1 * D >= NN_PAR_MIN)
        for (int cb = 0; cb < nblk; cb++) {
            int d_begin = cb * blk, d_end = d_begin + blk < D ? d_begin + blk : D;
            for (size_t i = 0; i < (size_t)N; i++) {
                const float *g = work + i * K1, *h = hidden + i * D;
                for (int k = 0; k < K1; k++) {
                    if (g[k] == 0.0f) continue;
                    float *e = dtable + (size_t)(k == 0 ? pos[i] : neg[i * K + k - 1]) * D;
                    for (int d = d_begin; d < d_end; d++) e[d] += g[k] * h[d];
                }
            }
        }
    }
    return DR_OK;
}

int nn_bce_with_logits(float *loss, float *dlogits, const float *logits, const float *labels,
                       const float *weights, size_t n, float dscale) {
    double wsum = 0.0;
    if (weights) for (size_t i = 0; i < n; i++) wsum += weights[i];
    else wsum = (double)n;
    if (wsum == 0.0) {
        *loss = 0.0f;
        return DR_OK;
    }
    double part[NCHUNK];
#pragma omp parallel for schedule(static) if (n >= NN_PAR_MIN)
    for (int c = 0; c < NCHUNK; c++) {
        double acc = 0.0;
        for (size_t i = chunk_lo(n, c); i < chunk_lo(n, c + 1); i++) {
            float w = weights ? weights[i] : 1.0f;
            if (w == 0.0f) continue;
            float x = logits[i], y = labels[i];
            float l = (x > 0.0f ? x : 0.0f) - x * y + log1pf(expf(-fabsf(x)));
            acc += (double)w * l;
            if (dlogits) {
                /* sigmoid without overflow */
                float s = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
                dlogits[i] += (float)(dscale * w / wsum) * (s - y);
            }
        }
        part[c] = acc;
    }
    double tot = 0.0;
    for (int c = 0; c < NCHUNK; c++) tot += part[c];
    *loss = (float)(tot / wsum);
    return DR_OK;
}

/* The gather's targets: a negative one is a masked row, only one past the vocabulary is an
 * error (checked before the parallel loop, which cannot return one). */
static int check_gather_targets(const char *fn, const int32_t *targets, int N, int V) {
    for (int i = 0; i < N; i++)
        if (targets[i] >= V)
            return dr_error(DR_ERR_RANGE, "%s: target %d at row %d is out of range [0, %d)", fn, (int)targets[i], i, V);
    return DR_OK;
}

int nn_logprob_gather(float *logp, const float *logits, const int32_t *targets, int N, int V) {
    int rc = check_gather_targets("logprob_gather", targets, N, V);
    if (rc) return rc;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= NN_PAR_MIN)
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) { logp[i] = 0.0f; continue; }
        const float *x = logits + (size_t)i * V;
        logp[i] = x[targets[i]] - row_lse(x, V);
    }
    return DR_OK;
}

int nn_logprob_gather_backward(float *dlogits, const float *dlogp, const float *logits,
                               const int32_t *targets, const float *logp, int N, int V) {
    int rc = check_gather_targets("logprob_gather_backward", targets, N, V);
    if (rc) return rc;
#pragma omp parallel for schedule(static) if ((size_t)N * V >= NN_PAR_MIN)
    for (int i = 0; i < N; i++) {
        int t = targets[i];
        if (t < 0 || dlogp[i] == 0.0f) continue;
        const float *x = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        float lse = x[t] - logp[i], g = dlogp[i];
        nn_expaxpy(d, -g, x, lse, V);
        d[t] += g;
    }
    return DR_OK;
}
