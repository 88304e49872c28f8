/* Full-softmax cross-entropy fused with its logits (hidden . table^T), for catalogues too
 * large to hold one row of logits per position.
 *
 * Why fused: with K = D = 64 the three products of the unfused loss (logits, dhidden, dtable)
 * do 128 flops per logit while each [N, V] buffer (50 MB for 1,024 rows of 12,102 items) makes
 * a round trip through memory per pass; those passes, not the flops, bounded the TRM's epoch.
 * Here rows go in blocks of LCE_ROWS and candidates in tiles of NN_LCE_COLS, so every tile of
 * logits is made, turned into its gradient and consumed by both products while it is in cache.
 *
 * Per block of rows, three phases:
 *   1. per tile: logits S = F_t U^T, the tile's row max m_t and sum of exp(S - m_t); S is
 *      replaced by E = exp(S - m_t) (so the second phase needs no exp);
 *   2. per tile: every thread folds the tiles' (m_t, sum) into the rows' logsumexp; the
 *      gradient of the logits is G = E diag(sc) - g onehot (sc = exp(m_t - lse) g, g =
 *      dscale / N): dtable_t += E^T (sc U) - g U at the targets, and the tile's part of
 *      dhidden, sc (E^T F_t), goes to the tile's own slot;
 *   3. per row: dhidden += the tiles' parts in tile order - g table[target]; the row's loss.
 * Tiles are stored item-major ([item][row], 64 rows) so the row-wise max and sums are vertical
 * vector operations.
 *
 * Label smoothing (eps > 0; nn_linear_cross_entropy_ls): the target distribution is
 * (1 - eps) onehot + eps / C over the C candidates, so the gradient of the logits gains
 * -g eps / C on every one and the onehot part is scaled by (1 - eps). That constant does not
 * depend on the logit, so it never enters the tiles: dhidden_i gains -g eps / C sum_j F_j and
 * every candidate row of dtable -g eps / C sum_i U_i, one pass over the table per call; the
 * loss gains eps (lse - mean_j logit_ij), the mean being U_i . sum_j F_j / C. With eps = 0 none
 * of it runs and the bits are those of the plain loss. A tile belongs to one thread in phases 1-2, dtable_t accumulates the
 * blocks in order and dhidden the tiles in order: the result is the same for any thread
 * count. The products run in an AVX-512 kernel where the build has it, else through sgemm
 * (OpenBLAS runs single-threaded inside the parallel region). */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>
#include <omp.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cblas.h>

#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

/* Rows per block: the kernels hold one row of a tile in four 16-float vectors. */
#define LCE_ROWS 64

typedef struct lce {
    const float *h, *F; /* hidden [N, D]; F = the candidates, table + v0 * D */
    float *dh, *dF;     /* dhidden, dtable + v0 * D (NULL: not computed) */
    const int32_t *tg;
    const int32_t *xo, *xi; /* exclusions per row (NULL: none) */
    int N, C, D, v0, nt;
    float g;            /* dscale / N: the gradient of one row's loss */
    float gt;           /* g (1 - eps): the onehot part of the gradient (g when eps = 0) */
    float *S, *mt, *st, *tl, *Ut, *dUp, *rl;
} lce;

static inline int tile_len(const lce *c, int t) {
    int j0 = t * NN_LCE_COLS;
    return c->C - j0 < NN_LCE_COLS ? c->C - j0 : NN_LCE_COLS;
}

size_t nn_linear_ce_work(int N, int V, int D, int v0) {
    size_t C = V > v0 ? (size_t)(V - v0) : 0, nt = (C + NN_LCE_COLS - 1) / NN_LCE_COLS;
    size_t r = LCE_ROWS;
    /* + 2 D: the label smoothing's column sums of the table and of the rows */
    return nt * NN_LCE_COLS * r + 2 * nt * r + r + (size_t)D * r + nt * (size_t)D * r + (size_t)(N > 0 ? N : 0) +
           2 * (size_t)(D > 0 ? D : 0);
}

#if defined(__AVX512F__)
/* The row block transposed, [D][64], zero past the last row: the logits kernel loads one k of
 * all 64 rows as four vectors; zero rows give finite logits that the gradient then zeroes. */
static void pack_rows(const lce *c, int r0, int R, int k0, int k1) {
    for (int k = k0; k < k1; k++) {
        float *u = c->Ut + (size_t)k * LCE_ROWS;
        for (int i = 0; i < R; i++) u[i] = c->h[(size_t)(r0 + i) * c->D + k];
        for (int i = R; i < LCE_ROWS; i++) u[i] = 0.0f;
    }
}

/* S[j][0..63] = F[j] . U[0..63] for NJ items: NJ x 4 accumulators over k; mx[0..63] takes
 * their max (here, where they are in registers, instead of a pass over the tile). */
static inline __attribute__((always_inline)) void logits_items(float *S, float *mx, const float *F, const float *Ut,
                                                               int D, const int NJ) {
    __m512 acc[6][4];
    for (int q = 0; q < NJ; q++)
        for (int v = 0; v < 4; v++) acc[q][v] = _mm512_setzero_ps();
    for (int k = 0; k < D; k++) {
        __m512 u[4];
        for (int v = 0; v < 4; v++) u[v] = _mm512_loadu_ps(Ut + (size_t)k * LCE_ROWS + 16 * v);
        for (int q = 0; q < NJ; q++) {
            __m512 f = _mm512_set1_ps(F[(size_t)q * D + k]);
            for (int v = 0; v < 4; v++) acc[q][v] = _mm512_fmadd_ps(f, u[v], acc[q][v]);
        }
    }
    for (int v = 0; v < 4; v++) {
        __m512 m = _mm512_loadu_ps(mx + 16 * v);
        for (int q = 0; q < NJ; q++) {
            _mm512_storeu_ps(S + (size_t)q * LCE_ROWS + 16 * v, acc[q][v]);
            m = _mm512_max_ps(m, acc[q][v]);
        }
        _mm512_storeu_ps(mx + 16 * v, m);
    }
}

/* The tile's logits S [Tt][64] and their row max mx [64]. */
static void tile_logits(const lce *c, float *S, float *mx, const float *F, int r0, int R, int Tt) {
    (void)r0, (void)R;
    int j = 0;
    for (; j + 6 <= Tt; j += 6) logits_items(S + (size_t)j * LCE_ROWS, mx, F + (size_t)j * c->D, c->Ut, c->D, 6);
    switch (Tt - j) {
    case 5: logits_items(S + (size_t)j * LCE_ROWS, mx, F + (size_t)j * c->D, c->Ut, c->D, 5); break;
    case 4: logits_items(S + (size_t)j * LCE_ROWS, mx, F + (size_t)j * c->D, c->Ut, c->D, 4); break;
    case 3: logits_items(S + (size_t)j * LCE_ROWS, mx, F + (size_t)j * c->D, c->Ut, c->D, 3); break;
    case 2: logits_items(S + (size_t)j * LCE_ROWS, mx, F + (size_t)j * c->D, c->Ut, c->D, 2); break;
    case 1: logits_items(S + (size_t)j * LCE_ROWS, mx, F + (size_t)j * c->D, c->Ut, c->D, 1); break;
    default: break;
    }
}

/* dU[k][0..63] (+)= sum_j F[j][k] G[j][0..63] for NK columns k (the tile's part of dhidden,
 * transposed like Ut); from zero when first. */
static inline __attribute__((always_inline)) void dh_cols(float *dU, const float *G, const float *F, int nj, int D,
                                                          int first, const int NK) {
    __m512 acc[6][4];
    for (int q = 0; q < NK; q++)
        for (int v = 0; v < 4; v++)
            acc[q][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(dU + (size_t)q * LCE_ROWS + 16 * v);
    for (int j = 0; j < nj; j++) {
        __m512 gv[4];
        for (int v = 0; v < 4; v++) gv[v] = _mm512_loadu_ps(G + (size_t)j * LCE_ROWS + 16 * v);
        for (int q = 0; q < NK; q++) {
            __m512 f = _mm512_set1_ps(F[(size_t)j * D + q]);
            for (int v = 0; v < 4; v++) acc[q][v] = _mm512_fmadd_ps(f, gv[v], acc[q][v]);
        }
    }
    for (int q = 0; q < NK; q++)
        for (int v = 0; v < 4; v++) _mm512_storeu_ps(dU + (size_t)q * LCE_ROWS + 16 * v, acc[q][v]);
}

/* Items in chunks of DH_ITEMS: a chunk's rows of G and F (12 KB each at D = 64) stay in L1
 * while every group of 6 columns passes over them; over the whole tile they came from L2 once
 * per group. */
#define DH_ITEMS 48

static void tile_dh(const lce *c, float *dU, const float *G, const float *F, int Tt) {
    const int D = c->D;
    for (int j0 = 0; j0 < Tt; j0 += DH_ITEMS) {
        const int nj = Tt - j0 < DH_ITEMS ? Tt - j0 : DH_ITEMS, first = j0 == 0;
        const float *Gc = G + (size_t)j0 * LCE_ROWS, *Fc = F + (size_t)j0 * D;
        int k = 0;
        for (; k + 6 <= D; k += 6) dh_cols(dU + (size_t)k * LCE_ROWS, Gc, Fc + k, nj, D, first, 6);
        switch (D - k) {
        case 5: dh_cols(dU + (size_t)k * LCE_ROWS, Gc, Fc + k, nj, D, first, 5); break;
        case 4: dh_cols(dU + (size_t)k * LCE_ROWS, Gc, Fc + k, nj, D, first, 4); break;
        case 3: dh_cols(dU + (size_t)k * LCE_ROWS, Gc, Fc + k, nj, D, first, 3); break;
        case 2: dh_cols(dU + (size_t)k * LCE_ROWS, Gc, Fc + k, nj, D, first, 2); break;
        case 1: dh_cols(dU + (size_t)k * LCE_ROWS, Gc, Fc + k, nj, D, first, 1); break;
        default: break;
        }
    }
}

/* dF[j][c0..c0+63] += sum_{i<R} G[j][i] U[i][c0..c0+63] for NJ items; m masks the columns
 * past D in the last group of 16. */
static inline __attribute__((always_inline)) void df_items(float *dF, const float *G, const float *U, int R, int D,
                                                           const __mmask16 m[4], const int NJ) {
    /* the rows of dF are read only after the loop: ask for them now (they come from L3) */
    for (int q = 0; q < NJ; q++)
        for (int v = 0; v < 4; v++)
            if (m[v]) _mm_prefetch((const char *)(dF + (size_t)q * D + 16 * v), _MM_HINT_T0);
    __m512 acc[6][4];
    for (int q = 0; q < NJ; q++)
        for (int v = 0; v < 4; v++) acc[q][v] = _mm512_setzero_ps();
    for (int i = 0; i < R; i++) {
        __m512 u[4];
        for (int v = 0; v < 4; v++) u[v] = _mm512_maskz_loadu_ps(m[v], U + (size_t)i * D + 16 * v);
        for (int q = 0; q < NJ; q++) {
            __m512 gq = _mm512_set1_ps(G[(size_t)q * LCE_ROWS + i]);
            for (int v = 0; v < 4; v++) acc[q][v] = _mm512_fmadd_ps(gq, u[v], acc[q][v]);
        }
    }
    for (int q = 0; q < NJ; q++)
        for (int v = 0; v < 4; v++) {
            float *p = dF + (size_t)q * D + 16 * v;
            _mm512_mask_storeu_ps(p, m[v], _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], p), acc[q][v]));
        }
}

static void tile_df(const lce *c, float *dF, const float *G, const float *U, int R, int Tt) {
    const int D = c->D;
    for (int c0 = 0; c0 < D; c0 += 64) {
        __mmask16 m[4];
        for (int v = 0; v < 4; v++) {
            int w = D - c0 - 16 * v;
            m[v] = w >= 16 ? (__mmask16)0xffff : w <= 0 ? (__mmask16)0 : (__mmask16)((1u << w) - 1);
        }
        int j = 0;
        const float *Uc = U + c0;
        float *dFc = dF + c0;
        for (; j + 6 <= Tt; j += 6) df_items(dFc + (size_t)j * D, G + (size_t)j * LCE_ROWS, Uc, R, D, m, 6);
        switch (Tt - j) {
        case 5: df_items(dFc + (size_t)j * D, G + (size_t)j * LCE_ROWS, Uc, R, D, m, 5); break;
        case 4: df_items(dFc + (size_t)j * D, G + (size_t)j * LCE_ROWS, Uc, R, D, m, 4); break;
        case 3: df_items(dFc + (size_t)j * D, G + (size_t)j * LCE_ROWS, Uc, R, D, m, 3); break;
        case 2: df_items(dFc + (size_t)j * D, G + (size_t)j * LCE_ROWS, Uc, R, D, m, 2); break;
        case 1: df_items(dFc + (size_t)j * D, G + (size_t)j * LCE_ROWS, Uc, R, D, m, 1); break;
        default: break;
        }
    }
}
#else
static void pack_rows(const lce *c, int r0, int R, int k0, int k1) {
    (void)c, (void)r0, (void)R, (void)k0, (void)k1;
}

/* The same three products through sgemm, on the same item-major tiles. */
static void tile_logits(const lce *c, float *S, float *mx, const float *F, int r0, int R, int Tt) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tt, R, c->D, 1.0f, F, c->D, c->h + (size_t)r0 * c->D, c->D,
                0.0f, S, LCE_ROWS);
    if (R < LCE_ROWS) /* rows past the block's end: finite logits, zeroed by the gradient */
        for (int j = 0; j < Tt; j++) memset(S + (size_t)j * LCE_ROWS + R, 0, (size_t)(LCE_ROWS - R) * sizeof(float));
    for (int j = 0; j < Tt; j++) {
        const float *sj = S + (size_t)j * LCE_ROWS;
#pragma omp simd
        for (int i = 0; i < LCE_ROWS; i++) mx[i] = sj[i] > mx[i] ? sj[i] : mx[i];
    }
}

static void tile_dh(const lce *c, float *dU, const float *G, const float *F, int Tt) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->D, LCE_ROWS, Tt, 1.0f, F, c->D, G, LCE_ROWS, 0.0f, dU,
                LCE_ROWS);
}

static void tile_df(const lce *c, float *dF, const float *G, const float *U, int R, int Tt) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tt, c->D, R, 1.0f, G, LCE_ROWS, U, c->D, 1.0f, dF, c->D);
}
#endif

/* Phase 1 for tile t of the block at row r0 (R rows). */
static void lce_tile_forward(const lce *c, int t, int r0, int R) {
    const int Tt = tile_len(c, t), j0 = t * NN_LCE_COLS;
    float *S = c->S + (size_t)t * NN_LCE_COLS * LCE_ROWS;
    const float *F = c->F + (size_t)j0 * c->D;
    float mx[LCE_ROWS], sum[LCE_ROWS];
    for (int i = 0; i < LCE_ROWS; i++) mx[i] = -INFINITY, sum[i] = 0.0f;
    tile_logits(c, S, mx, F, r0, R, Tt);
    for (int i = 0; i < R; i++) {
        int j = c->tg[r0 + i] - c->v0 - j0;
        if (j >= 0 && j < Tt) c->tl[i] = S[(size_t)j * LCE_ROWS + i];
    }
    float sh[LCE_ROWS]; /* the exp's shift: the row max, 0 for a row whose candidates here are all excluded */
    memcpy(sh, mx, sizeof sh);
    if (c->xo) {
        for (int i = 0; i < R; i++) {
            int hit = 0;
            for (int e = c->xo[r0 + i]; e < c->xo[r0 + i + 1]; e++) {
                int j = c->xi[e] - c->v0 - j0;
                if (j >= 0 && j < Tt && c->xi[e] != c->tg[r0 + i]) S[(size_t)j * LCE_ROWS + i] = -INFINITY, hit = 1;
            }
            if (!hit) continue;
            float m = -INFINITY;
            for (int j = 0; j < Tt; j++) m = S[(size_t)j * LCE_ROWS + i] > m ? S[(size_t)j * LCE_ROWS + i] : m;
            mx[i] = m;
            sh[i] = m == -INFINITY ? 0.0f : m;
        }
    }
    for (int j = 0; j < Tt; j++) {
        float *s = S + (size_t)j * LCE_ROWS;
#pragma omp simd
        for (int i = 0; i < LCE_ROWS; i++) {
            float e = nn_vexp(s[i] - sh[i]);
            s[i] = e;
            sum[i] += e;
        }
    }
    memcpy(c->mt + (size_t)t * LCE_ROWS, mx, sizeof mx);
    memcpy(c->st + (size_t)t * LCE_ROWS, sum, sizeof sum);
}

/* The rows' logsumexp over all tiles, folded in tile order. */
static void lce_lse(const lce *c, float *lse) {
    for (int i = 0; i < LCE_ROWS; i++) {
        float M = -INFINITY;
        for (int t = 0; t < c->nt; t++) M = c->mt[(size_t)t * LCE_ROWS + i] > M ? c->mt[(size_t)t * LCE_ROWS + i] : M;
        float s = 0.0f;
        for (int t = 0; t < c->nt; t++)
            s += c->st[(size_t)t * LCE_ROWS + i] * nn_vexp(c->mt[(size_t)t * LCE_ROWS + i] - M);
        lse[i] = M + logf(s);
    }
}

/* Phase 2 for tile t. The tile holds E = exp(S - m_t); the gradient of the logits is
 * G = E diag(sc) - g onehot with sc = exp(m_t - lse) g per row, so sc scales the rows of U
 * going into dtable and the rows of the tile's part of dhidden (64 x D each, not the 64 x Tt
 * tile), and the onehot part is added apart: here for dtable, in phase 3 for dhidden. */
static void lce_tile_backward(const lce *c, const float *lse, int t, int r0, int R) {
    const int Tt = tile_len(c, t), j0 = t * NN_LCE_COLS, D = c->D;
    const float *E = c->S + (size_t)t * NN_LCE_COLS * LCE_ROWS;
    const float *F = c->F + (size_t)j0 * D, *U = c->h + (size_t)r0 * D;
    float *dUp = c->dUp + (size_t)t * D * LCE_ROWS;
    float sc[LCE_ROWS];
    for (int i = 0; i < LCE_ROWS; i++) sc[i] = i < R ? nn_vexp(c->mt[(size_t)t * LCE_ROWS + i] - lse[i]) * c->g : 0.0f;
    if (c->dF) {
        float *Us = dUp; /* free until the dhidden product below */
        for (int i = 0; i < R; i++)
            for (int k = 0; k < D; k++) Us[(size_t)i * D + k] = sc[i] * U[(size_t)i * D + k];
        float *dF = c->dF + (size_t)j0 * D;
        tile_df(c, dF, E, Us, R, Tt);
        for (int i = 0; i < R; i++) {
            int j = c->tg[r0 + i] - c->v0 - j0;
            if (j >= 0 && j < Tt)
                for (int k = 0; k < D; k++) dF[(size_t)j * D + k] -= c->gt * U[(size_t)i * D + k];
        }
    }
    if (c->dh) {
        tile_dh(c, dUp, E, F, Tt);
        for (int k = 0; k < D; k++) {
            float *p = dUp + (size_t)k * LCE_ROWS;
#pragma omp simd
            for (int i = 0; i < LCE_ROWS; i++) p[i] *= sc[i];
        }
    }
}

int nn_linear_cross_entropy(float *loss, float *dhidden, float *dtable, const float *hidden, const float *table,
                            const int32_t *targets, int N, int V, int D, int v0, float dscale, float *work) {
    return nn_linear_cross_entropy_ls(loss, dhidden, dtable, hidden, table, targets, N, V, D, v0, 0.0f, dscale, work);
}

/* Column sums in double, in row order (fixed by the shapes), rounded once. */
static void col_sums(float *out, const float *x, int n, int D) {
    for (int k = 0; k < D; k++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += x[(size_t)i * D + k];
        out[k] = (float)s;
    }
}

int nn_linear_cross_entropy_ls(float *loss, float *dhidden, float *dtable, const float *hidden, const float *table,
                               const int32_t *targets, int N, int V, int D, int v0, float smoothing, float dscale,
                               float *work) {
    return nn_linear_cross_entropy_excl(loss, dhidden, dtable, hidden, table, targets, N, V, D, v0, smoothing, NULL,
                                        NULL, dscale, work);
}

int nn_linear_cross_entropy_excl(float *loss, float *dhidden, float *dtable, const float *hidden, const float *table,
                                 const int32_t *targets, int N, int V, int D, int v0, float smoothing,
                                 const int32_t *excl_off, const int32_t *excl, float dscale, float *work) {
    if (!(smoothing >= 0.0f && smoothing < 1.0f))
        return dr_error(DR_ERR_ARG, "linear_cross_entropy: label smoothing %g outside [0, 1)", (double)smoothing);
    if (excl_off && (smoothing > 0.0f || !excl))
        return dr_error(DR_ERR_ARG, "linear_cross_entropy: exclusions need label smoothing 0 and a list");
    if (D <= 0 || v0 < 0 || v0 >= V)
        return dr_error(DR_ERR_ARG, "linear_cross_entropy: needs D > 0 (%d) and candidates [%d, %d)", D, v0, V);
    for (int i = 0; i < N; i++)
        if (targets[i] < v0 || targets[i] >= V)
            return dr_error(DR_ERR_RANGE, "linear_cross_entropy: target %d at row %d is out of range [%d, %d)",
                            (int)targets[i], i, v0, V);
    *loss = 0.0f;
    if (N <= 0) return DR_OK;
    lce c = {.h = hidden, .F = table + (size_t)v0 * D, .dh = dhidden, .dF = dtable ? dtable + (size_t)v0 * D : NULL,
             .tg = targets, .xo = excl_off, .xi = excl, .N = N, .C = V - v0, .D = D, .v0 = v0, .g = dscale / (float)N};
    c.gt = c.g * (1.0f - smoothing);
    c.nt = (c.C + NN_LCE_COLS - 1) / NN_LCE_COLS;
    const size_t r = LCE_ROWS;
    c.S = work;
    c.mt = c.S + (size_t)c.nt * NN_LCE_COLS * r;
    c.st = c.mt + (size_t)c.nt * r;
    c.tl = c.st + (size_t)c.nt * r;
    c.Ut = c.tl + r;
    c.dUp = c.Ut + (size_t)D * r;
    c.rl = c.dUp + (size_t)c.nt * D * r;
    /* label smoothing: Fs = sum of the candidate rows, Us = sum of the rows (before any write) */
    float *Fs = c.rl + N, *Us = Fs + D;
    const float gu = c.g * smoothing / (float)c.C; /* the uniform part of every logit's gradient */
    if (smoothing > 0.0f) {
        col_sums(Fs, c.F, c.C, D);
        col_sums(Us, hidden, N, D);
    }
    const int grad = dhidden || dtable, nb = (N + LCE_ROWS - 1) / LCE_ROWS;
#pragma omp parallel if ((size_t)N * c.C * D >= 64 * NN_PAR_MIN)
    {
        float lse[LCE_ROWS];
        /* a thread keeps the same tiles in every phase and block (its share of dtable) */
        const int nth = omp_get_num_threads(), me = omp_get_thread_num();
        const int tlo = c.nt * me / nth, thi = c.nt * (me + 1) / nth;
#pragma omp for schedule(static)
        for (int k = 0; k < D; k++) pack_rows(&c, 0, N < LCE_ROWS ? N : LCE_ROWS, k, k + 1);
        for (int b = 0; b < nb; b++) {
            const int r0 = b * LCE_ROWS, R = N - r0 < LCE_ROWS ? N - r0 : LCE_ROWS;
            for (int t = tlo; t < thi; t++) lce_tile_forward(&c, t, r0, R);
#pragma omp barrier
            lce_lse(&c, lse);
            if (grad) {
                /* back over the thread's tiles in reverse: the last ones made are still in L2 */
                for (int t = thi - 1; t >= tlo; t--) lce_tile_backward(&c, lse, t, r0, R);
#pragma omp barrier
            }
            /* the block's rows are done with the packed rows: pack the next block's beside */
            const int r1 = r0 + LCE_ROWS, R1 = N - r1 < LCE_ROWS ? N - r1 : LCE_ROWS;
#pragma omp for schedule(static)
            for (int i = 0; i < (R > D ? R : D); i++) {
                if (i < R) {
                    if (smoothing > 0.0f) {
                        const float *u = hidden + (size_t)(r0 + i) * D;
                        double mean = 0.0;
                        for (int k = 0; k < D; k++) mean += (double)u[k] * Fs[k];
                        mean /= c.C;
                        c.rl[r0 + i] = (float)(lse[i] - (1.0 - smoothing) * c.tl[i] - smoothing * mean);
                    } else {
                        c.rl[r0 + i] = lse[i] - c.tl[i];
                    }
                    if (dhidden) {
                        float *dh = dhidden + (size_t)(r0 + i) * D;
                        for (int t = 0; t < c.nt; t++) {
                            const float *p = c.dUp + (size_t)t * D * r + i;
                            for (int k = 0; k < D; k++) dh[k] += p[(size_t)k * r];
                        }
                        const float *ft = c.F + (size_t)(c.tg[r0 + i] - v0) * D;
                        for (int k = 0; k < D; k++) dh[k] -= c.gt * ft[k];
                        if (smoothing > 0.0f)
                            for (int k = 0; k < D; k++) dh[k] -= gu * Fs[k];
                    }
                }
                if (i < D && R1 > 0) pack_rows(&c, r1, R1, i, i + 1);
            }
        }
    }
    if (smoothing > 0.0f && c.dF)
        for (int j = 0; j < c.C; j++)
            for (int k = 0; k < D; k++) c.dF[(size_t)j * D + k] -= gu * Us[k];
    double tot = 0.0;
    for (int i = 0; i < N; i++) tot += c.rl[i];
    *loss = (float)(tot / N);
    return DR_OK;
}
