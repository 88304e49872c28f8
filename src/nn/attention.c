/* Multi-head scaled dot-product attention with grouped-query heads, causal or
 * bidirectional, key padding masks and dropout on the probabilities.
 * q [B,Tq,H,Dh], k/v [B,Tk,Hkv,Dh], att [B,H,Tq,Tk] (see nn.h). */
#include "deeprec/nn.h"
#include <math.h>
#include <string.h>

size_t nn_attention_att_size(const nn_attn *a) {
    return (size_t)a->B * a->H * a->Tq * a->Tk;
}

static int check_cfg(const nn_attn *a) {
    if (a->B <= 0 || a->Tq <= 0 || a->Tk <= 0 || a->H <= 0 || a->Hkv <= 0 || a->Dh <= 0)
        return dr_error(DR_ERR_ARG, "attention: sizes must be positive (B=%d Tq=%d Tk=%d H=%d Hkv=%d Dh=%d)",
                        a->B, a->Tq, a->Tk, a->H, a->Hkv, a->Dh);
    if (a->H % a->Hkv != 0)
        return dr_error(DR_ERR_ARG, "attention: n_kv_heads %d does not divide n_heads %d", a->Hkv, a->H);
    if (!(a->dropout >= 0.0f && a->dropout < 1.0f))
        return dr_error(DR_ERR_ARG, "attention: dropout %g is not in [0, 1)", (double)a->dropout);
    if (a->dropout > 0.0f && !a->rng)
        return dr_error(DR_ERR_ARG, "attention: dropout needs an rng");
    if (a->dropout > 0.0f && a->Tk > (1 << 16)) /* the keep row lives on the stack */
        return dr_error(DR_ERR_UNSUPPORTED, "attention: dropout with more than 65536 keys (%d)", a->Tk);
    return DR_OK;
}

/* Last key index query i may see (causal, bottom-right aligned), exclusive bound. */
static inline int key_end(const nn_attn *a, int b, int i) {
    int end = a->Tk;
    if (a->causal) {
        int c = i + (a->Tk - a->Tq) + 1;
        if (c < end) end = c;
    }
    if (a->key_len && a->key_len[b] < end) end = a->key_len[b];
    return end < 0 ? 0 : end;
}

static inline int key_visible(const nn_attn *a, int b, int j) {
    return !a->key_mask || a->key_mask[(size_t)b * a->Tk + j];
}

static inline float dot(const float *x, const float *y, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < n; d++) s += x[d] * y[d];
    return s;
}

/* Dropout keep factors of one row: 0 (dropped) or 1/(1-p). Draws Tk uniforms. */
static inline void dropout_row(dr_rng *r, float p, float *keep, int Tk) {
    float inv = 1.0f / (1.0f - p);
    for (int j = 0; j < Tk; j++) keep[j] = dr_rng_float(r) < p ? 0.0f : inv;
}

int nn_attention_forward(const nn_attn *a, float *out, float *att, const float *q,
                         const float *k, const float *v) {
    int rc = check_cfg(a);
    if (rc) return rc;
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, Dh = a->Dh;
    const int group = H / Hkv;
    const float scale = a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)Dh);
    const float p = a->dropout;
#pragma omp parallel
    {
        float keep[p > 0.0f ? Tk : 1];
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, g = h / group;
            dr_rng r;
            if (p > 0.0f) r = dr_rng_split(a->rng, (uint64_t)bh);
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + (((size_t)b * Tq + i) * H + h) * Dh;
                float *pr = att + (((size_t)b * H + h) * Tq + i) * Tk;
                float *oi = out + (((size_t)b * Tq + i) * H + h) * Dh;
                int end = key_end(a, b, i);
                float mx = -INFINITY;
                for (int j = 0; j < end; j++) {
                    if (!key_visible(a, b, j)) { pr[j] = -INFINITY; continue; }
                    const float *kj = k + (((size_t)b * Tk + j) * Hkv + g) * Dh;
                    float s = scale * dot(qi, kj, Dh);
                    pr[j] = s;
                    if (s > mx) mx = s;
                }
                for (int j = end; j < Tk; j++) pr[j] = 0.0f;
                memset(oi, 0, sizeof(float) * (size_t)Dh);
                if (p > 0.0f) dropout_row(&r, p, keep, Tk);
                if (mx == -INFINITY) { /* every key masked */
                    for (int j = 0; j < end; j++) pr[j] = 0.0f;
                    continue;
                }
                float sum = 0.0f;
                for (int j = 0; j < end; j++) {
                    float e = pr[j] == -INFINITY ? 0.0f : expf(pr[j] - mx);
                    pr[j] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < end; j++) {
                    pr[j] *= inv;
                    float w = p > 0.0f ? pr[j] * keep[j] : pr[j];
                    if (w == 0.0f) continue;
                    const float *vj = v + (((size_t)b * Tk + j) * Hkv + g) * Dh;
#pragma omp simd
                    for (int d = 0; d < Dh; d++) oi[d] += w * vj[d];
                }
            }
        }
    }
    return DR_OK;
}

int nn_attention_backward(const nn_attn *a, float *dq, float *dk, float *dv, float *datt,
                          const float *dout, const float *q, const float *k, const float *v,
                          const float *att) {
    int rc = check_cfg(a);
    if (rc) return rc;
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, Dh = a->Dh;
    const int group = H / Hkv;
    const float scale = a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)Dh);
    const float p = a->dropout;
    /* One work item per (batch, kv head): it owns dk/dv of that head, and dq of its query heads. */
#pragma omp parallel
    {
        float keep[p > 0.0f ? Tk : 1];
#pragma omp for schedule(dynamic, 1)
        for (int bg = 0; bg < B * Hkv; bg++) {
            int b = bg / Hkv, g = bg % Hkv;
            for (int h = g * group; h < (g + 1) * group; h++) {
                dr_rng r;
                if (p > 0.0f) r = dr_rng_split(a->rng, (uint64_t)b * H + h);
                for (int i = 0; i < Tq; i++) {
                    const float *pr = att + (((size_t)b * H + h) * Tq + i) * Tk;
                    float *ds = datt + (((size_t)b * H + h) * Tq + i) * Tk;
                    const float *qi = q + (((size_t)b * Tq + i) * H + h) * Dh;
                    const float *doi = dout + (((size_t)b * Tq + i) * H + h) * Dh;
                    int end = key_end(a, b, i);
                    if (p > 0.0f) dropout_row(&r, p, keep, Tk);
                    /* dP'_j = do_i . v_j; dP_j = dP'_j * keep_j; dv_j += P_j keep_j do_i */
                    float s = 0.0f;
                    for (int j = 0; j < end; j++) {
                        if (pr[j] == 0.0f) { ds[j] = 0.0f; continue; }
                        const float *vj = v + (((size_t)b * Tk + j) * Hkv + g) * Dh;
                        float kf = p > 0.0f ? keep[j] : 1.0f;
                        float dpj = dot(doi, vj, Dh) * kf;
                        ds[j] = dpj;
                        s += pr[j] * dpj;
                        if (dv && kf != 0.0f) {
                            float w = pr[j] * kf;
                            float *dvj = dv + (((size_t)b * Tk + j) * Hkv + g) * Dh;
#pragma omp simd
                            for (int d = 0; d < Dh; d++) dvj[d] += w * doi[d];
                        }
                    }
                    /* dS_j = P_j (dP_j - sum P dP); scores were scale * q.k */
                    float *dqi = dq ? dq + (((size_t)b * Tq + i) * H + h) * Dh : NULL;
                    for (int j = 0; j < end; j++) {
                        if (pr[j] == 0.0f) continue;
                        float dsj = scale * pr[j] * (ds[j] - s);
                        const float *kj = k + (((size_t)b * Tk + j) * Hkv + g) * Dh;
                        if (dqi) {
#pragma omp simd
                            for (int d = 0; d < Dh; d++) dqi[d] += dsj * kj[d];
                        }
                        if (dk) {
                            float *dkj = dk + (((size_t)b * Tk + j) * Hkv + g) * Dh;
#pragma omp simd
                            for (int d = 0; d < Dh; d++) dkj[d] += dsj * qi[d];
                        }
                    }
                }
            }
        }
    }
    return DR_OK;
}
