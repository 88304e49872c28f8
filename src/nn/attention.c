/* Multi-head scaled dot-product attention with grouped-query heads, causal or
 * bidirectional, key padding masks and dropout on the probabilities.
 * q [B,Tq,H,Dh], k/v [B,Tk,Hkv,Dh], att [B,H,Tq,Tk] (see nn.h). */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>
#include <string.h>

/* Let the compiler fuse a*b+c into FMA here (the build uses -std=c11, which turns
 * contraction off); results stay within the tested tolerances. */
#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

size_t nn_attention_att_size(const nn_attn *a) {
    return (size_t)a->B * a->H * a->Tq * a->Tk;
}

/* The score scale: a->scale, or 1/sqrt(Dh) when that is 0. */
static float score_scale(const nn_attn *a) { return a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)a->Dh); }

static int check_cfg(const nn_attn *a) {
    if (a->B <= 0 || a->Tq <= 0 || a->Tk <= 0 || a->H <= 0 || a->Hkv <= 0 || a->Dh <= 0)
        return dr_error(DR_ERR_ARG, "attention: sizes must be positive (B=%d Tq=%d Tk=%d H=%d Hkv=%d Dh=%d)",
                        a->B, a->Tq, a->Tk, a->H, a->Hkv, a->Dh);
    if (a->H % a->Hkv != 0)
        return dr_error(DR_ERR_ARG, "attention: n_kv_heads %d does not divide n_heads %d", a->Hkv, a->H);
    if (!(a->dropout >= 0.0f && a->dropout < 1.0f))
        return dr_error(DR_ERR_ARG, "attention: dropout %g is not in [0, 1)", (double)a->dropout);
    if (a->b0 < 0) return dr_error(DR_ERR_ARG, "attention: b0 %lld < 0", (long long)a->b0);
    if (a->dropout > 0.0f && !a->rng)
        return dr_error(DR_ERR_ARG, "attention: dropout needs an rng");
    if (a->dropout > 0.0f && a->Tk > (1 << 16)) /* the keep row lives on the stack */
        return dr_error(DR_ERR_UNSUPPORTED, "attention: dropout with more than 65536 keys (%d)", a->Tk);
    if (a->Dh > 512) /* a transposed tile of Dh x 64 floats lives on the stack */
        return dr_error(DR_ERR_UNSUPPORTED, "attention: head dimension %d > 512", a->Dh);
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

#define KB 64 /* keys per transposed tile */
#define VW 16 /* width of a register accumulator */

/* Copies rows [j0, j0+nb) of kv head g of x ([B,Tk,Hkv,Dh]) transposed into t[Dh][KB],
 * zero-padded to KB columns. */
static void load_tile_t(float *t, const float *x, const nn_attn *a, int b, int g, int j0, int nb) {
    const int Dh = a->Dh;
    for (int jj = 0; jj < KB; jj++) {
        if (jj < nb) {
            const float *xr = x + (((size_t)b * a->Tk + j0 + jj) * a->Hkv + g) * Dh;
            for (int d = 0; d < Dh; d++) t[(size_t)d * KB + jj] = xr[d];
        } else {
            for (int d = 0; d < Dh; d++) t[(size_t)d * KB + jj] = 0.0f;
        }
    }
}

/* A short float vector held in registers (GCC vector extension; on AVX-512 one zmm, on AVX2
 * two ymm). Loads and stores go through an unaligned, may_alias type; macros rather than
 * functions so that no vector crosses a function boundary (ABI differs between ISAs). */
typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef float vfu __attribute__((vector_size(VW * sizeof(float)), aligned(4), may_alias));
#define vload(p) (*(const vfu *)(p))
#define vstore(p, v) (*(vfu *)(p) = (v))

/* s[jj] = alpha * (u . column jj of the tile) for jj < n. The whole tile width (KB = 4 VW
 * columns) is accumulated at once, with d unrolled by two: eight independent register
 * chains. The padding columns of a partial tile are zero and never stored. */
static inline void tile_dots(float *s, const float *u, const float *t, int Dh, int n, float alpha) {
    vf a[4] = {{0}}, b[4] = {{0}};
    int d = 0;
    for (; d + 1 < Dh; d += 2) {
        const float *t0 = t + (size_t)d * KB, *t1 = t0 + KB;
        float u0 = u[d], u1 = u[d + 1];
        for (int c = 0; c < 4; c++) {
            a[c] += u0 * vload(t0 + c * VW);
            b[c] += u1 * vload(t1 + c * VW);
        }
    }
    if (d < Dh)
        for (int c = 0; c < 4; c++) a[c] += u[d] * vload(t + (size_t)d * KB + c * VW);
    float tmp[KB];
    for (int c = 0; c < 4; c++) vstore(tmp + c * VW, (a[c] + b[c]) * alpha);
    memcpy(s, tmp, sizeof(float) * (size_t)n);
}

/* K (1..4, a constant at each call) VW-wide slices of y kept in registers while rows stream
 * by, two rows at a time into separate accumulators. */
static inline __attribute__((always_inline)) void accum_slices(float *y, const float *w, size_t ws, const float *x,
                                                                 size_t xs, int n, const int K) {
    vf a[4], b[4];
    for (int c = 0; c < K; c++) a[c] = vload(y + c * VW), b[c] = (vf){0};
    int j = 0;
    for (; j + 1 < n; j += 2) {
        float w0 = w[j * ws], w1 = w[(j + 1) * ws];
        const float *x0 = x + j * xs, *x1 = x0 + xs;
        for (int c = 0; c < K; c++) {
            a[c] += w0 * vload(x0 + c * VW);
            b[c] += w1 * vload(x1 + c * VW);
        }
    }
    if (j < n)
        for (int c = 0; c < K; c++) a[c] += w[j * ws] * vload(x + j * xs + c * VW);
    for (int c = 0; c < K; c++) vstore(y + c * VW, a[c] + b[c]);
}

/* y[0..Dh) += sum_j w[j * ws] * x_j with x_j = x + j * xs, j < n. */
static inline void accum_rows(float *y, const float *w, size_t ws, const float *x, size_t xs, int n, int Dh) {
    if (Dh % VW == 0) {
        int d = 0;
        for (; d + 4 * VW <= Dh; d += 4 * VW) accum_slices(y + d, w, ws, x + d, xs, n, 4);
        switch ((Dh - d) / VW) {
        case 3: accum_slices(y + d, w, ws, x + d, xs, n, 3); break;
        case 2: accum_slices(y + d, w, ws, x + d, xs, n, 2); break;
        case 1: accum_slices(y + d, w, ws, x + d, xs, n, 1); break;
        default: break;
        }
    } else {
        for (int j = 0; j < n; j++) {
            float wj = w[j * ws];
            if (wj == 0.0f) continue;
            const float *xr = x + j * xs;
            for (int d = 0; d < Dh; d++) y[d] += wj * xr[d];
        }
    }
}

static inline void axpy(float *y, float a, const float *x, int n) {
    for (int d = 0; d < n; d++) y[d] += a * x[d];
}

/* The dropout stream of batch row b, head h: numbered in the whole batch (b0 + b). */
static inline dr_rng dropout_stream(const nn_attn *a, int b, int h) {
    return dr_rng_split(a->rng, (uint64_t)(a->b0 + b) * (uint64_t)a->H + (uint64_t)h);
}

/* Dropout keep factors of one row: 0 (dropped) or 1/(1-p), one uniform per key j < n. */
static inline void dropout_row(dr_rng *r, float p, float *keep, int n) {
    float inv = 1.0f / (1.0f - p);
    for (int j = 0; j < n; j++) keep[j] = dr_rng_float(r) < p ? 0.0f : inv;
}

int nn_attention_forward(const nn_attn *a, float *out, float *att, const float *q,
                         const float *k, const float *v) {
    int rc = check_cfg(a);
    if (rc) return rc;
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, Dh = a->Dh, group = H / Hkv;
    const float scale = score_scale(a), p = a->dropout;
    const size_t kv_stride = (size_t)Hkv * Dh; /* between keys j and j+1 of one head */
#pragma omp parallel if ((size_t)B * H * Tq * Tk * Dh >= NN_PAR_MIN)
    {
        float kt[Dh * KB];
        float wrow[p > 0.0f ? Tk : 1];
#pragma omp for schedule(dynamic, 1)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, g = h / group;
            float *attb = att + (size_t)bh * Tq * Tk;
            /* 1. scores, one transposed tile of keys at a time */
            const int kend = key_end(a, b, Tq - 1); /* the last row sees the most keys */
            for (int j0 = 0; j0 < kend; j0 += KB) {
                int nb = kend - j0 < KB ? kend - j0 : KB;
                load_tile_t(kt, k, a, b, g, j0, nb);
                for (int i = 0; i < Tq; i++) {
                    int end = key_end(a, b, i);
                    if (end <= j0) continue;
                    const float *qi = q + (((size_t)b * Tq + i) * H + h) * Dh;
                    tile_dots(attb + (size_t)i * Tk + j0, qi, kt, Dh, end - j0 < nb ? end - j0 : nb, scale);
                }
            }
            /* 2. per row: mask, softmax, dropout, out = P' v */
            dr_rng r;
            if (p > 0.0f) r = dropout_stream(a, b, h);
            const float *vb = v + ((size_t)b * Tk * Hkv + g) * Dh;
            for (int i = 0; i < Tq; i++) {
                float *pr = attb + (size_t)i * Tk;
                float *oi = out + (((size_t)b * Tq + i) * H + h) * Dh;
                int end = key_end(a, b, i);
                if (a->key_mask)
                    for (int j = 0; j < end; j++)
                        if (!key_visible(a, b, j)) pr[j] = -INFINITY;
                float mx = nn_rowmax(pr, end);
                for (int j = end; j < Tk; j++) pr[j] = 0.0f;
                memset(oi, 0, sizeof(float) * (size_t)Dh);
                if (p > 0.0f) dropout_row(&r, p, wrow, end);
                if (mx == -INFINITY) { /* every key masked */
                    for (int j = 0; j < end; j++) pr[j] = 0.0f;
                    continue;
                }
                float sum = nn_expsum(pr, pr, mx, end); /* masked (-inf) entries become 0 */
                float inv = 1.0f / sum;
                for (int j = 0; j < end; j++) pr[j] *= inv;
                if (p > 0.0f) {
                    for (int j = 0; j < end; j++) wrow[j] *= pr[j];
                    accum_rows(oi, wrow, 1, vb, kv_stride, end, Dh);
                } else {
                    accum_rows(oi, pr, 1, vb, kv_stride, end, Dh);
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
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, Dh = a->Dh, group = H / Hkv;
    const float scale = score_scale(a), p = a->dropout;
    const size_t kv_stride = (size_t)Hkv * Dh;
    /* One work item per (batch, kv head): it owns dk/dv of that head, and dq of its query heads. */
#pragma omp parallel if ((size_t)B * H * Tq * Tk * Dh >= NN_PAR_MIN)
    {
        float vt[Dh * KB];
        float keep[p > 0.0f ? Tk : 1];
#pragma omp for schedule(dynamic, 1)
        for (int bg = 0; bg < B * Hkv; bg++) {
            int b = bg / Hkv, g = bg % Hkv;
            /* 1. dP'_ij = do_i . v_j into datt, one transposed tile of values at a time */
            const int kend = key_end(a, b, Tq - 1); /* the last row sees the most keys */
            for (int j0 = 0; j0 < kend; j0 += KB) {
                int nb = kend - j0 < KB ? kend - j0 : KB;
                load_tile_t(vt, v, a, b, g, j0, nb);
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int i = 0; i < Tq; i++) {
                        int end = key_end(a, b, i);
                        if (end <= j0) continue;
                        const float *doi = dout + (((size_t)b * Tq + i) * H + h) * Dh;
                        float *dpr = datt + (((size_t)b * H + h) * Tq + i) * Tk + j0;
                        tile_dots(dpr, doi, vt, Dh, end - j0 < nb ? end - j0 : nb, 1.0f);
                    }
            }
            /* 2. per row: dropout, dv, softmax backward, dq and dk */
            const float *kb = k + ((size_t)b * Tk * Hkv + g) * Dh;
            for (int h = g * group; h < (g + 1) * group; h++) {
                dr_rng r;
                if (p > 0.0f) r = dropout_stream(a, b, h);
                for (int i = 0; i < Tq; i++) {
                    const float *pr = att + (((size_t)b * H + h) * Tq + i) * Tk;
                    float *ds = datt + (((size_t)b * H + h) * Tq + i) * Tk;
                    const float *doi = dout + (((size_t)b * Tq + i) * H + h) * Dh;
                    int end = key_end(a, b, i);
                    if (p > 0.0f) dropout_row(&r, p, keep, end);
                    /* dP_j = dP'_j keep_j; s = sum_j P_j dP_j; with dropout, dv_j += P_j keep_j do_i */
                    float s = 0.0f;
                    for (int j = 0; j < end; j++) {
                        if (pr[j] == 0.0f) { ds[j] = 0.0f; continue; }
                        float kf = p > 0.0f ? keep[j] : 1.0f;
                        float dpj = ds[j] * kf;
                        ds[j] = dpj;
                        s += pr[j] * dpj;
                        if (p > 0.0f && dv && kf != 0.0f)
                            axpy(dv + (((size_t)b * Tk + j) * Hkv + g) * Dh, pr[j] * kf, doi, Dh);
                    }
                    /* dS_j = P_j (dP_j - s), times the score scale; zero past the visible end */
                    for (int j = 0; j < end; j++) ds[j] = pr[j] == 0.0f ? 0.0f : scale * pr[j] * (ds[j] - s);
                    for (int j = end; j < Tk; j++) ds[j] = 0.0f;
                    if (dq) accum_rows(dq + (((size_t)b * Tq + i) * H + h) * Dh, ds, 1, kb, kv_stride, end, Dh);
                }
                /* 3. by key (columns of dS and P): dk_j += sum_i dS_ij q_i; without dropout
                 * dv_j += sum_i P_ij do_i. Rows past a key's visibility hold zeros. */
                const float *dsb = datt + ((size_t)b * H + h) * Tq * Tk, *pb = att + ((size_t)b * H + h) * Tq * Tk;
                const float *qh = q + ((size_t)b * Tq * H + h) * Dh, *doh = dout + ((size_t)b * Tq * H + h) * Dh;
                for (int j = 0; j < Tk; j++) {
                    int i0 = a->causal && j > Tk - Tq ? j - (Tk - Tq) : 0; /* first row that sees j */
                    if (i0 >= Tq || (a->key_len && j >= a->key_len[b])) continue;
                    const size_t hs = (size_t)H * Dh, off = (size_t)i0 * Tk + j;
                    if (dk) accum_rows(dk + (((size_t)b * Tk + j) * Hkv + g) * Dh, dsb + off, Tk, qh + i0 * hs, hs, Tq - i0, Dh);
                    if (dv && p == 0.0f)
                        accum_rows(dv + (((size_t)b * Tk + j) * Hkv + g) * Dh, pb + off, Tk, doh + i0 * hs, hs, Tq - i0, Dh);
                }
            }
        }
    }
    return DR_OK;
}
