/* nn tests: attention (MHA/GQA/MQA, causal, padding masks, dropout, Tq != Tk) and rope.
 * The references are naive double-precision loops written from the definitions; every
 * backward is checked with central finite differences of the reference (h = 1e-5). */
#include "harness.h"
#include "nn_test.h"
#include <omp.h>
#include <string.h>

/* ---------------- attention ---------------- */
typedef struct {
    nn_attn a;
    double *q, *k, *v, *r, *out;
} at_ctx;

/* Straight from the definition: masks, softmax, dropout keep factors drawn from
 * dr_rng_split(rng, (b0 + b)*H + h), one uniform per (i, j) in row-major order. */
static void ref_attention(const nn_attn *a, double *out, const double *q, const double *k, const double *v) {
    int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, Hkv = a->Hkv, Dh = a->Dh;
    double scale = a->scale != 0.0f ? a->scale : 1.0 / sqrt((double)Dh);
    memset(out, 0, sizeof(double) * (size_t)B * Tq * H * Dh);
    double s[256];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int gkv = h / (H / Hkv);
            dr_rng r;
            if (a->dropout > 0) r = dr_rng_split(a->rng, (uint64_t)((a->b0 + b) * H + h));
            for (int i = 0; i < Tq; i++) {
                double mx = -INFINITY;
                int any = 0;
                for (int j = 0; j < Tk; j++) {
                    int vis = 1;
                    if (a->causal && j > i + (Tk - Tq)) vis = 0;
                    if (a->key_len && j >= a->key_len[b]) vis = 0;
                    if (a->key_mask && !a->key_mask[b * Tk + j]) vis = 0;
                    if (!vis) { s[j] = -INFINITY; continue; }
                    double d = 0.0;
                    for (int c = 0; c < Dh; c++)
                        d += q[((size_t)(b * Tq + i) * H + h) * Dh + c] * k[((size_t)(b * Tk + j) * Hkv + gkv) * Dh + c];
                    s[j] = scale * d;
                    mx = s[j] > mx ? s[j] : mx;
                    any = 1;
                }
                double keep[256];
                int end = Tk; /* uniforms are drawn for the keys before the row's end */
                if (a->causal && i + (Tk - Tq) + 1 < end) end = i + (Tk - Tq) + 1;
                if (a->key_len && a->key_len[b] < end) end = a->key_len[b];
                for (int j = 0; j < Tk; j++) {
                    keep[j] = 1.0;
                    if (a->dropout > 0 && j < end) keep[j] = dr_rng_float(&r) < a->dropout ? 0.0 : 1.0 / (1.0 - a->dropout);
                }
                if (!any) continue;
                double sum = 0.0;
                for (int j = 0; j < Tk; j++) sum += s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                for (int j = 0; j < Tk; j++) {
                    if (s[j] == -INFINITY) continue;
                    double pj = exp(s[j] - mx) / sum;
                    for (int c = 0; c < Dh; c++)
                        out[((size_t)(b * Tq + i) * H + h) * Dh + c] += pj * keep[j] * v[((size_t)(b * Tk + j) * Hkv + gkv) * Dh + c];
                }
            }
        }
}

static double at_obj(void *p) {
    at_ctx *c = p;
    ref_attention(&c->a, c->out, c->q, c->k, c->v);
    return nt_dot(c->r, c->out, (size_t)c->a.B * c->a.Tq * c->a.H * c->a.Dh);
}

/* Runs forward + backward of one configuration and checks both.
 * Tolerances: forward 1e-5 + 1e-5|ref|; gradients 2e-5 + 1e-3|fd|. */
/* samples == 0: every element; else about that many elements per tensor. */
static void check_attention_every(const nn_attn *a, uint64_t seed, size_t samples) {
    dr_rng g;
    dr_rng_seed(&g, seed);
    size_t nq = (size_t)a->B * a->Tq * a->H * a->Dh, nk = (size_t)a->B * a->Tk * a->Hkv * a->Dh;
    float *q = nt_randn(&g, nq, 1), *k = nt_randn(&g, nk, 1), *v = nt_randn(&g, nk, 1), *r = nt_randn(&g, nq, 1);
    float *out = nt_zeros(nq), *att = nt_zeros(nn_attention_att_size(a)), *datt = nt_zeros(nn_attention_att_size(a));
    CHECK_OK(nn_attention_forward(a, out, att, q, k, v));
    at_ctx c = {*a, nt_tod(q, nq), nt_tod(k, nk), nt_tod(v, nk), nt_tod(r, nq), nt_dzeros(nq)};
    at_obj(&c);
    CHECK_CLOSE("attention out", out, c.out, nq, 1e-5, 1e-5);
    float *dq = nt_zeros(nq), *dk = nt_zeros(nk), *dv = nt_zeros(nk);
    CHECK_OK(nn_attention_backward(a, dq, dk, dv, datt, r, q, k, v, att));
    size_t sq = samples && nq > samples ? nq / samples : 1, sk = samples && nk > samples ? nk / samples : 1;
    GRADCHECK_EVERY("attention dq", at_obj, &c, c.q, dq, nq, sq, 2e-5, 1e-3);
    GRADCHECK_EVERY("attention dk", at_obj, &c, c.k, dk, nk, sk, 2e-5, 1e-3);
    GRADCHECK_EVERY("attention dv", at_obj, &c, c.v, dv, nk, sk, 2e-5, 1e-3);
}

static void check_attention(const nn_attn *a, uint64_t seed) { check_attention_every(a, seed, 0); }

TEST(nn_attention_mha_bidirectional) {
    nn_attn a = {.B = 2, .Tq = 4, .Tk = 4, .H = 2, .Hkv = 2, .Dh = 3};
    check_attention(&a, 10);
    nt_free_all();
}

TEST(nn_attention_gqa_causal_key_len) {
    int32_t len[3] = {5, 3, 1};
    nn_attn a = {.B = 3, .Tq = 5, .Tk = 5, .H = 4, .Hkv = 2, .Dh = 4, .causal = 1, .key_len = len};
    check_attention(&a, 11);
    nt_free_all();
}

TEST(nn_attention_mqa_left_padding_causal_dropout) {
    /* left padding: row 1 starts at position 2, so its queries 0 and 1 see no key (zero output) */
    uint8_t mask[2 * 6] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
    dr_rng rng;
    dr_rng_seed(&rng, 1234);
    nn_attn a = {.B = 2, .Tq = 6, .Tk = 6, .H = 3, .Hkv = 1, .Dh = 5, .causal = 1, .key_mask = mask,
                 .dropout = 0.3f, .rng = &rng, .scale = 0.37f};
    check_attention(&a, 12);
    nt_free_all();
}

TEST(nn_attention_bidirectional_mask_odd_sizes) {
    uint8_t mask[3 * 7] = {1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1};
    int32_t len[3] = {6, 7, 7};
    nn_attn a = {.B = 3, .Tq = 7, .Tk = 7, .H = 6, .Hkv = 3, .Dh = 7, .key_len = len, .key_mask = mask};
    check_attention(&a, 13);
    nt_free_all();
}

/* Tq < Tk (a decode step over a KV cache): bottom-right causal alignment; the result must equal
 * the last rows of the full causal attention. Tolerance 1e-6 + 1e-5|ref|. */
TEST(nn_attention_decode_matches_full) {
    nn_attn dec = {.B = 2, .Tq = 2, .Tk = 7, .H = 4, .Hkv = 2, .Dh = 8, .causal = 1};
    check_attention(&dec, 14);
    dr_rng g;
    dr_rng_seed(&g, 15);
    int B = 2, T = 7, H = 4, Hkv = 2, Dh = 8, Tq = 2;
    nn_attn full = {.B = B, .Tq = T, .Tk = T, .H = H, .Hkv = Hkv, .Dh = Dh, .causal = 1};
    size_t nq = (size_t)B * T * H * Dh, nk = (size_t)B * T * Hkv * Dh;
    float *q = nt_randn(&g, nq, 1), *k = nt_randn(&g, nk, 1), *v = nt_randn(&g, nk, 1);
    float *out = nt_zeros(nq), *att = nt_zeros(nn_attention_att_size(&full));
    CHECK_OK(nn_attention_forward(&full, out, att, q, k, v));
    float *q2 = nt_zeros((size_t)B * Tq * H * Dh), *out2 = nt_zeros((size_t)B * Tq * H * Dh);
    float *att2 = nt_zeros(nn_attention_att_size(&dec));
    for (int b = 0; b < B; b++)
        memcpy(q2 + (size_t)b * Tq * H * Dh, q + ((size_t)b * T + T - Tq) * H * Dh, sizeof(float) * Tq * H * Dh);
    CHECK_OK(nn_attention_forward(&dec, out2, att2, q2, k, v));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tq * H * Dh; i++)
            CHECK_NEAR(out2[(size_t)b * Tq * H * Dh + i], out[((size_t)b * T + T - Tq) * H * Dh + i], 1e-6);
    nt_free_all();
}

/* Head dims that are multiples of the 16-wide register path (16, 32, 48, 64 -> 1..4 slices)
 * and more than one 64-key tile (T = 70, 130). Large tensors: about 40 elements per tensor
 * are finite-differenced (spread evenly). Tolerances as above. */
TEST(nn_attention_vector_path_multi_tile) {
    dr_rng rng;
    dr_rng_seed(&rng, 5);
    int32_t len[2] = {70, 41};
    nn_attn a1 = {.B = 2, .Tq = 70, .Tk = 70, .H = 2, .Hkv = 1, .Dh = 16, .causal = 1, .key_len = len};
    check_attention_every(&a1, 21, 40);
    nn_attn a2 = {.B = 1, .Tq = 5, .Tk = 130, .H = 2, .Hkv = 2, .Dh = 32, .causal = 1, .dropout = 0.2f, .rng = &rng};
    check_attention_every(&a2, 22, 40);
    nn_attn a3 = {.B = 1, .Tq = 9, .Tk = 9, .H = 3, .Hkv = 3, .Dh = 48};
    check_attention_every(&a3, 23, 40);
    nn_attn a4 = {.B = 1, .Tq = 66, .Tk = 66, .H = 2, .Hkv = 1, .Dh = 64, .causal = 1};
    check_attention_every(&a4, 24, 40);
    nt_free_all();
}

/* Random configurations: sizes, GQA ratio, causal or not, key_len, key_mask (with fully masked
 * rows), dropout, scale, and Tq <= Tk. Tolerances as above. */
TEST(nn_attention_random_shapes) {
    dr_rng g;
    dr_rng_seed(&g, 2024);
    static const int dhs[] = {1, 2, 3, 5, 8, 16, 32};
    for (int it = 0; it < 12; it++) {
        int Hkv = 1 + (int)dr_rng_below(&g, 3), H = Hkv * (1 + (int)dr_rng_below(&g, 3));
        int B = 1 + (int)dr_rng_below(&g, 3), Tk = 1 + (int)dr_rng_below(&g, 9);
        int Tq = dr_rng_below(&g, 3) == 0 ? 1 + (int)dr_rng_below(&g, Tk) : Tk;
        int32_t *len = dr_rng_below(&g, 2) ? nt_alloc(sizeof(int32_t) * B) : NULL;
        uint8_t *mask = dr_rng_below(&g, 2) ? nt_alloc((size_t)B * Tk) : NULL;
        for (int b = 0; b < B; b++) {
            if (len) len[b] = (int32_t)dr_rng_below(&g, Tk + 1);
            if (mask)
                for (int j = 0; j < Tk; j++) mask[b * Tk + j] = dr_rng_below(&g, 4) != 0;
        }
        dr_rng *rng = nt_alloc(sizeof(dr_rng));
        dr_rng_seed(rng, 1000 + it);
        nn_attn a = {.B = B, .Tq = Tq, .Tk = Tk, .H = H, .Hkv = Hkv, .Dh = dhs[dr_rng_below(&g, 7)],
                     .causal = (int)dr_rng_below(&g, 2), .key_len = len, .key_mask = mask,
                     .scale = dr_rng_below(&g, 2) ? 0.0f : 0.5f, .dropout = dr_rng_below(&g, 2) ? 0.0f : 0.25f, .rng = rng};
        check_attention(&a, 100 + it);
    }
    nt_free_all();
}

/* Forward and backward with dropout give bitwise the same results on 1 thread and on all. */
TEST(nn_attention_deterministic_across_threads_and_errors) {
    dr_rng g, rng;
    dr_rng_seed(&g, 16);
    dr_rng_seed(&rng, 77);
    int32_t len[4] = {9, 4, 9, 1};
    nn_attn a = {.B = 4, .Tq = 9, .Tk = 9, .H = 4, .Hkv = 2, .Dh = 16, .causal = 1, .key_len = len,
                 .dropout = 0.2f, .rng = &rng};
    size_t nq = (size_t)4 * 9 * 4 * 16, nk = nq / 2, na = nn_attention_att_size(&a);
    float *q = nt_randn(&g, nq, 1), *k = nt_randn(&g, nk, 1), *v = nt_randn(&g, nk, 1), *dout = nt_randn(&g, nq, 1);
    float *res[2][4];
    int nt = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run == 0 ? 1 : (nt > 1 ? nt : 2));
        float *out = nt_zeros(nq), *att = nt_zeros(na), *datt = nt_zeros(na);
        float *dq = nt_zeros(nq), *dk = nt_zeros(nk), *dv = nt_zeros(nk);
        CHECK_OK(nn_attention_forward(&a, out, att, q, k, v));
        CHECK_OK(nn_attention_backward(&a, dq, dk, dv, datt, dout, q, k, v, att));
        res[run][0] = out, res[run][1] = dq, res[run][2] = dk, res[run][3] = dv;
    }
    omp_set_num_threads(nt);
    CHECK(memcmp(res[0][0], res[1][0], nq * sizeof(float)) == 0);
    CHECK(memcmp(res[0][1], res[1][1], nq * sizeof(float)) == 0);
    CHECK(memcmp(res[0][2], res[1][2], nk * sizeof(float)) == 0);
    CHECK(memcmp(res[0][3], res[1][3], nk * sizeof(float)) == 0);
    /* batch rows [2, 4) alone with b0 = 2 draw the whole batch's masks for those rows */
    {
        nn_attn sh = a;
        sh.B = 2;
        sh.b0 = 2;
        sh.key_len = len + 2;
        size_t oq = nq / 2, ok = nk / 2, nas = nn_attention_att_size(&sh);
        float *out = nt_zeros(oq), *att = nt_zeros(nas), *datt = nt_zeros(nas);
        float *dq = nt_zeros(oq), *dk = nt_zeros(ok), *dv = nt_zeros(ok);
        CHECK_OK(nn_attention_forward(&sh, out, att, q + oq, k + ok, v + ok));
        CHECK_OK(nn_attention_backward(&sh, dq, dk, dv, datt, dout + oq, q + oq, k + ok, v + ok, att));
        CHECK(memcmp(res[0][0] + oq, out, oq * sizeof(float)) == 0);
        CHECK(memcmp(res[0][1] + oq, dq, oq * sizeof(float)) == 0);
        CHECK(memcmp(res[0][2] + ok, dk, ok * sizeof(float)) == 0);
        CHECK(memcmp(res[0][3] + ok, dv, ok * sizeof(float)) == 0);
        sh.b0 = 0; /* numbered from 0 they are other masks */
        CHECK_OK(nn_attention_forward(&sh, out, att, q + oq, k + ok, v + ok));
        CHECK(memcmp(res[0][0] + oq, out, oq * sizeof(float)) != 0);
    }
    /* a different rng gives a different dropout pattern */
    dr_rng rng2;
    dr_rng_seed(&rng2, 78);
    a.rng = &rng2;
    float *out2 = nt_zeros(nq), *att2 = nt_zeros(na);
    CHECK_OK(nn_attention_forward(&a, out2, att2, q, k, v));
    CHECK(memcmp(res[0][0], out2, nq * sizeof(float)) != 0);
    /* invalid configurations */
    nn_attn bad = {.B = 1, .Tq = 2, .Tk = 2, .H = 3, .Hkv = 2, .Dh = 4};
    CHECK_ERR(nn_attention_forward(&bad, out2, att2, q, k, v), DR_ERR_ARG);
    CHECK(strstr(dr_error_message(), "does not divide") != NULL);
    bad.Hkv = 3;
    bad.dropout = 0.5f;
    CHECK_ERR(nn_attention_forward(&bad, out2, att2, q, k, v), DR_ERR_ARG);
    bad.dropout = 1.0f;
    bad.rng = &rng;
    CHECK_ERR(nn_attention_backward(&bad, NULL, NULL, NULL, att2, q, q, k, v, att2), DR_ERR_ARG);
    bad.dropout = 0.5f;
    bad.b0 = -1;
    CHECK_ERR(nn_attention_backward(&bad, NULL, NULL, NULL, att2, q, q, k, v, att2), DR_ERR_ARG);
    nt_free_all();
}

/* ---------------- rope ---------------- */
typedef struct {
    int N, T, H, Dh, rot, mode;
    double theta;
    const int32_t *pos;
    double *x, *r, *y;
} rope_ctx;

static void ref_rope(rope_ctx *c) {
    int rot = c->rot ? c->rot : c->Dh, half = rot / 2;
    size_t n_all = (size_t)c->N * c->H * c->Dh;
    memcpy(c->y, c->x, n_all * sizeof(double));
    for (int n = 0; n < c->N; n++) {
        double p = c->pos ? c->pos[n] : n % c->T;
        for (int h = 0; h < c->H; h++) {
            const double *x = c->x + ((size_t)n * c->H + h) * c->Dh;
            double *y = c->y + ((size_t)n * c->H + h) * c->Dh;
            for (int i = 0; i < half; i++) {
                double ang = p / pow(c->theta, (2.0 * i) / rot);
                int ia = c->mode == NN_ROPE_NEOX ? i : 2 * i, ib = c->mode == NN_ROPE_NEOX ? i + half : 2 * i + 1;
                y[ia] = x[ia] * cos(ang) - x[ib] * sin(ang);
                y[ib] = x[ia] * sin(ang) + x[ib] * cos(ang);
            }
        }
    }
}

static double rope_obj(void *p) {
    rope_ctx *c = p;
    ref_rope(c);
    return nt_dot(c->r, c->y, (size_t)c->N * c->H * c->Dh);
}

/* Both pairings, full and partial rotary dims, explicit positions with offsets and default ones.
 * Tolerances: forward 1e-5 + 1e-5|ref| (positions up to 40000: angles in double);
 * gradient 1e-5 + 1e-4|fd|; in-place backward equals the accumulating one up to 1e-6. */
TEST(nn_rope_both_pairings_forward_and_grad) {
    dr_rng g;
    dr_rng_seed(&g, 20);
    int N = 6, T = 3, H = 3;
    int32_t pos[6] = {0, 1, 2, 7, 8, 40000};
    struct { int Dh, rot, mode, use_pos; float theta; } cases[] = {
        {8, 0, NN_ROPE_NEOX, 1, 10000.0f}, {8, 0, NN_ROPE_ADJACENT, 1, 10000.0f},
        {10, 6, NN_ROPE_NEOX, 0, 1000000.0f}, {6, 4, NN_ROPE_ADJACENT, 0, 500.0f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int Dh = cases[ci].Dh;
        size_t n = (size_t)N * H * Dh;
        float *x = nt_randn(&g, n, 1), *r = nt_randn(&g, n, 1), *y = nt_zeros(n);
        memcpy(y, x, n * sizeof(float));
        const int32_t *pp = cases[ci].use_pos ? pos : NULL;
        nn_rope_forward(y, pp, N, T, H, Dh, cases[ci].rot, cases[ci].theta, cases[ci].mode);
        rope_ctx c = {N, T, H, Dh, cases[ci].rot, cases[ci].mode, cases[ci].theta, pp,
                      nt_tod(x, n), nt_tod(r, n), nt_dzeros(n)};
        ref_rope(&c);
        CHECK_CLOSE("rope y", y, c.y, n, 1e-5, 1e-5);
        float *dx = nt_randn(&g, n, 1), *dx0 = nt_zeros(n);
        memcpy(dx0, dx, n * sizeof(float));
        nn_rope_backward(dx, r, pp, N, T, H, Dh, cases[ci].rot, cases[ci].theta, cases[ci].mode);
        for (size_t i = 0; i < n; i++) dx[i] -= dx0[i]; /* it accumulated */
        GRADCHECK("rope dx", rope_obj, &c, c.x, dx, n, 1e-5, 1e-4);
        float *din = nt_zeros(n);
        memcpy(din, r, n * sizeof(float));
        nn_rope_backward(din, din, pp, N, T, H, Dh, cases[ci].rot, cases[ci].theta, cases[ci].mode);
        for (size_t i = 0; i < n; i++) CHECK_NEAR(din[i], dx[i], 1e-6);
        /* backward of forward is the identity (rotation is orthogonal) */
        nn_rope_backward(y, y, pp, N, T, H, Dh, cases[ci].rot, cases[ci].theta, cases[ci].mode);
        for (size_t i = 0; i < n; i++) CHECK_NEAR(y[i], x[i], 1e-5);
    }
    nt_free_all();
}

/* The two pairings are different rotations (guards against one silently aliasing the other). */
TEST(nn_rope_pairings_differ) {
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8];
    memcpy(b, a, sizeof a);
    int32_t pos[1] = {3};
    nn_rope_forward(a, pos, 1, 1, 1, 8, 0, 10000.0f, NN_ROPE_NEOX);
    nn_rope_forward(b, pos, 1, 1, 1, 8, 0, 10000.0f, NN_ROPE_ADJACENT);
    CHECK(memcmp(a, b, sizeof a) != 0);
    /* NEOX, first pair (x0, x4) at angle 3: */
    CHECK_NEAR(a[0], 1 * cos(3.0) - 5 * sin(3.0), 1e-5);
    CHECK_NEAR(a[4], 1 * sin(3.0) + 5 * cos(3.0), 1e-5);
    /* adjacent, first pair (x0, x1) at angle 3: */
    CHECK_NEAR(b[0], 1 * cos(3.0) - 2 * sin(3.0), 1e-5);
    CHECK_NEAR(b[1], 1 * sin(3.0) + 2 * cos(3.0), 1e-5);
}

/* The table path of the inference sessions (nn_rope_table + nn_rope_apply) is the same
 * rotation as nn_rope_forward to the bit, for both pairings, partial rotary dims and more
 * pairs than nn_rope_forward's angle chunk (Dh 160: 80 pairs); frequency factors divide the
 * frequencies (factor 2 at position 2p is position p exactly, and against double). */
TEST(nn_rope_table_matches_forward) {
    dr_rng g;
    dr_rng_seed(&g, 21);
    enum { N = 5, H = 2 };
    int32_t pos[N] = {0, 3, 17, 4095, 40000}, pos2[N];
    for (int i = 0; i < N; i++) pos2[i] = 2 * pos[i];
    struct { int Dh, rot, mode; } cases[] = {{8, 8, NN_ROPE_NEOX}, {8, 8, NN_ROPE_ADJACENT}, {10, 6, NN_ROPE_NEOX},
                                              {160, 160, NN_ROPE_ADJACENT}, {160, 160, NN_ROPE_NEOX}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int Dh = cases[ci].Dh, rot = cases[ci].rot, half = rot / 2;
        size_t n = (size_t)N * H * Dh;
        float *x = nt_randn(&g, n, 1), *a = nt_zeros(n), *b = nt_zeros(n);
        float *cs = nt_zeros((size_t)N * half), *sn = nt_zeros((size_t)N * half);
        memcpy(a, x, n * sizeof(float));
        memcpy(b, x, n * sizeof(float));
        nn_rope_forward(a, pos, N, 0, H, Dh, rot, 10000.0f, cases[ci].mode);
        nn_rope_table(cs, sn, pos, N, 0, rot, 10000.0f, NULL);
        nn_rope_apply(b, cs, sn, N, H, Dh, rot, cases[ci].mode);
        CHECK(memcmp(a, b, n * sizeof(float)) == 0);
        /* factors */
        float *f = nt_zeros((size_t)half), *cs2 = nt_zeros((size_t)N * half), *sn2 = nt_zeros((size_t)N * half);
        for (int i = 0; i < half; i++) f[i] = 2.0f;
        nn_rope_table(cs2, sn2, pos2, N, 0, rot, 10000.0f, f);
        CHECK(memcmp(cs, cs2, (size_t)N * half * sizeof(float)) == 0);
        CHECK(memcmp(sn, sn2, (size_t)N * half * sizeof(float)) == 0);
        for (int i = 0; i < half; i++) f[i] = 1.0f + 7.0f * i / half;
        nn_rope_table(cs2, sn2, pos, N, 0, rot, 10000.0f, f);
        for (int k = 0; k < N; k++)
            for (int i = 0; i < half; i++) {
                double ang = pos[k] * pow(10000.0, -2.0 * i / rot) / f[i];
                CHECK_NEAR(cs2[k * half + i], cos(ang), 1e-6);
                CHECK_NEAR(sn2[k * half + i], sin(ang), 1e-6);
            }
    }
    nt_free_all();
}

/* Keys past key_len (a KV cache's unused tail) are never read: NaN there changes nothing,
 * in the forward or the backward, on both the vector path (Dh = 32) and the scalar one. */
TEST(nn_attention_ignores_keys_past_len) {
    dr_rng g;
    dr_rng_seed(&g, 31);
    for (int Dh = 5; Dh <= 32; Dh += 27) {
        int32_t len[2] = {3, 70};
        nn_attn a = {.B = 2, .Tq = 2, .Tk = 80, .H = 2, .Hkv = 1, .Dh = Dh, .causal = 1, .key_len = len};
        size_t nq = (size_t)2 * 2 * 2 * Dh, nk = (size_t)2 * 80 * Dh, na = nn_attention_att_size(&a);
        float *q = nt_randn(&g, nq, 1), *k = nt_randn(&g, nk, 1), *v = nt_randn(&g, nk, 1), *dout = nt_randn(&g, nq, 1);
        for (int b = 0; b < 2; b++)
            for (int j = len[b]; j < 80; j++)
                for (int d = 0; d < Dh; d++) k[((size_t)b * 80 + j) * Dh + d] = v[((size_t)b * 80 + j) * Dh + d] = NAN;
        float *out = nt_zeros(nq), *att = nt_zeros(na), *datt = nt_zeros(na);
        float *dq = nt_zeros(nq), *dk = nt_zeros(nk), *dv = nt_zeros(nk);
        CHECK_OK(nn_attention_forward(&a, out, att, q, k, v));
        CHECK_OK(nn_attention_backward(&a, dq, dk, dv, datt, dout, q, k, v, att));
        for (size_t i = 0; i < nq; i++) CHECK(isfinite(out[i]) && isfinite(dq[i]));
        for (size_t i = 0; i < nk; i++) CHECK(isfinite(dk[i]) && isfinite(dv[i]));
        at_ctx c = {a, nt_tod(q, nq), nt_tod(k, nk), nt_tod(v, nk), nt_tod(dout, nq), nt_dzeros(nq)};
        at_obj(&c);
        CHECK_CLOSE("attention out (NaN tail)", out, c.out, nq, 1e-5, 1e-5);
    }
    nt_free_all();
}
