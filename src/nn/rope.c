/* Rotary position embedding, NEOX (i, i+d/2) and adjacent (2i, 2i+1) pairings. */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <math.h>

/* Rotate every pair of token n by +angle (dir = 1) or -angle (dir = -1):
 * out = R x, or out += R x when acc (out may equal in only when !acc). */
static void rope_apply(float *out, const float *in, const int32_t *pos, int N, int T, int H, int Dh,
                       int rot_dim, float theta, int mode, int dir, int acc) {
    if (rot_dim <= 0 || rot_dim > Dh) rot_dim = Dh;
    const int half = rot_dim / 2;
#pragma omp parallel for schedule(static) if ((size_t)N * H * rot_dim >= NN_PAR_MIN)
    for (int n = 0; n < N; n++) {
        double t = pos ? (double)pos[n] : (double)(T > 0 ? n % T : n);
        for (int i = 0; i < half; i++) {
            double ang = t * pow((double)theta, -2.0 * i / rot_dim);
            float c = (float)cos(ang), s = (float)(dir * sin(ang));
            int ia = mode == NN_ROPE_ADJACENT ? 2 * i : i;
            int ib = mode == NN_ROPE_ADJACENT ? 2 * i + 1 : i + half;
            for (int h = 0; h < H; h++) {
                size_t base = ((size_t)n * H + h) * Dh;
                float xa = in[base + ia], xb = in[base + ib];
                float ya = xa * c - xb * s, yb = xa * s + xb * c;
                if (acc) {
                    out[base + ia] += ya;
                    out[base + ib] += yb;
                } else {
                    out[base + ia] = ya;
                    out[base + ib] = yb;
                }
            }
        }
        if (acc && rot_dim < Dh) /* the unrotated tail passes the gradient through */
            for (int h = 0; h < H; h++) {
                size_t base = ((size_t)n * H + h) * Dh;
                for (int d = rot_dim; d < Dh; d++) out[base + d] += in[base + d];
            }
    }
}

void nn_rope_forward(float *x, const int32_t *pos, int N, int T, int H, int Dh, int rot_dim,
                     float theta, int mode) {
    rope_apply(x, x, pos, N, T, H, Dh, rot_dim, theta, mode, 1, 0);
}

void nn_rope_backward(float *dx, const float *dout, const int32_t *pos, int N, int T, int H,
                      int Dh, int rot_dim, float theta, int mode) {
    rope_apply(dx, dout, pos, N, T, H, Dh, rot_dim, theta, mode, -1, dx != dout);
}
