/* Rotary position embedding, NEOX (i, i+d/2) and adjacent (2i, 2i+1) pairings: the one
 * RoPE of the project. The trainer rotates with nn_rope_forward / nn_rope_backward (angles
 * computed per token); the inference sessions compute the angles of a batch once with
 * nn_rope_table and rotate q and k of every layer with nn_rope_apply. Both paths go
 * through rope_angles and rotate_token, so they agree to the bit. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

#define ROPE_CHUNK 64 /* pairs whose angles nn_rope_forward keeps on the stack at a time */

/* cos and sin of the angles of pairs [i0, i1) at position t into c[i - i0], s[i - i0]:
 * angle_i = t * theta^(-2i/rot_dim) / factors[i] (factors NULL: 1), in double. */
static void rope_angles(float *c, float *s, double t, int i0, int i1, int rot_dim, float theta,
                        const float *factors) {
    for (int i = i0; i < i1; i++) {
        double f = pow((double)theta, -2.0 * i / rot_dim);
        if (factors) f /= factors[i];
        double ang = t * f;
        c[i - i0] = (float)cos(ang);
        s[i - i0] = (float)sin(ang);
    }
}

static double rope_pos(const int32_t *pos, int n, int T) {
    return pos ? (double)pos[n] : (double)(T > 0 ? n % T : n);
}

/* Rotates pairs [i0, i1) of the H heads of one token by +angle (dir = 1) or -angle
 * (dir = -1), cos and sin of pair i at c[i - i0], s[i - i0]: out = R in, or out += R in
 * when acc (out may equal in only when !acc). */
static void rotate_token(float *out, const float *in, const float *c, const float *s, int i0, int i1, int H,
                         int Dh, int half, int mode, int dir, int acc) {
    const int step = mode == NN_ROPE_ADJACENT ? 2 : 1, off = mode == NN_ROPE_ADJACENT ? 1 : half;
    for (int h = 0; h < H; h++) {
        const float *x = in + (size_t)h * Dh;
        float *y = out + (size_t)h * Dh;
        for (int i = i0; i < i1; i++) {
            const int ia = step * i, ib = ia + off;
            const float cs = c[i - i0], sn = dir > 0 ? s[i - i0] : -s[i - i0];
            const float xa = x[ia], xb = x[ib];
            const float ya = xa * cs - xb * sn, yb = xa * sn + xb * cs;
            if (acc) {
                y[ia] += ya;
                y[ib] += yb;
            } else {
                y[ia] = ya;
                y[ib] = yb;
            }
        }
    }
}

/* Every token n of in [N, H, Dh] rotated into out; angles from the tables cs/sn [N, half]
 * when given, else computed from pos / T, theta. */
static void rope_run(float *out, const float *in, const float *cs, const float *sn, const int32_t *pos, int N,
                     int T, int H, int Dh, int rot_dim, float theta, int mode, int dir, int acc) {
    if (rot_dim <= 0 || rot_dim > Dh) rot_dim = Dh;
    const int half = rot_dim / 2;
    NN_PAR_FOR((size_t)N * H * rot_dim >= NN_PAR_MIN, for (int n = 0; n < N; n++) {
        const size_t base = (size_t)n * H * Dh;
        if (cs) {
            rotate_token(out + base, in + base, cs + (size_t)n * half, sn + (size_t)n * half, 0, half, H, Dh, half,
                         mode, dir, acc);
        } else {
            float c[ROPE_CHUNK], s[ROPE_CHUNK];
            for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
                int i1 = i0 + ROPE_CHUNK < half ? i0 + ROPE_CHUNK : half;
                rope_angles(c, s, rope_pos(pos, n, T), i0, i1, rot_dim, theta, NULL);
                rotate_token(out + base, in + base, c, s, i0, i1, H, Dh, half, mode, dir, acc);
            }
        }
        if (acc && rot_dim < Dh) /* the unrotated tail passes the gradient through */
            for (int h = 0; h < H; h++)
                for (int d = rot_dim; d < Dh; d++) out[base + (size_t)h * Dh + d] += in[base + (size_t)h * Dh + d];
    });
}

void nn_rope_forward(float *x, const int32_t *pos, int N, int T, int H, int Dh, int rot_dim,
                     float theta, int mode) {
    rope_run(x, x, NULL, NULL, pos, N, T, H, Dh, rot_dim, theta, mode, 1, 0);
}

void nn_rope_backward(float *dx, const float *dout, const int32_t *pos, int N, int T, int H,
                      int Dh, int rot_dim, float theta, int mode) {
    rope_run(dx, dout, NULL, NULL, pos, N, T, H, Dh, rot_dim, theta, mode, -1, dx != dout);
}

void nn_rope_table(float *cs, float *sn, const int32_t *pos, int N, int T, int rot_dim, float theta,
                   const float *factors) {
    const int half = rot_dim / 2;
    NN_PAR_FOR((size_t)N * half * 16 >= NN_PAR_MIN, for (int n = 0; n < N; n++) {
        rope_angles(cs + (size_t)n * half, sn + (size_t)n * half, rope_pos(pos, n, T), 0, half, rot_dim, theta,
                    factors);
    });
}

void nn_rope_apply(float *x, const float *cs, const float *sn, int N, int H, int Dh, int rot_dim, int mode) {
    rope_run(x, x, cs, sn, NULL, N, 0, H, Dh, rot_dim, 0.0f, mode, 1, 0);
}
