/* Embedding lookup (gather) and its backward (deterministic scatter-add). */
#include "deeprec/nn.h"
#include "nn/nn_impl.h"
#include <string.h>

static int check_ids(const int32_t *ids, int N, int V) {
    for (int i = 0; i < N; i++)
        if (ids[i] >= V)
            return dr_error(DR_ERR_RANGE, "embedding: id %d at position %d is out of range (table has %d rows)",
                            (int)ids[i], i, V);
    return DR_OK;
}

int nn_embedding_forward(float *out, const float *table, const int32_t *ids, int N, int V, int D) {
    int rc = check_ids(ids, N, V);
    if (rc) return rc;
    NN_PAR_FOR((size_t)N * D >= NN_PAR_MIN, for (int i = 0; i < N; i++) {
        float *o = out + (size_t)i * D;
        if (ids[i] < 0) memset(o, 0, sizeof(float) * (size_t)D);
        else memcpy(o, table + (size_t)ids[i] * D, sizeof(float) * (size_t)D);
    });
    return DR_OK;
}

int nn_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int V, int D) {
    int rc = check_ids(ids, N, V);
    if (rc) return rc;
    /* Columns are split into blocks; a block's owner adds rows i = 0..N-1 in order. */
    const int blk = 16;
    int nblk = (D + blk - 1) / blk;
#pragma omp parallel for schedule(static) if ((size_t)N * D >= NN_PAR_MIN)
    for (int cb = 0; cb < nblk; cb++) {
        int c0 = cb * blk, c1 = c0 + blk < D ? c0 + blk : D;
        for (int i = 0; i < N; i++) {
            if (ids[i] < 0) continue;
            float *t = dtable + (size_t)ids[i] * D;
            const float *g = dout + (size_t)i * D;
            for (int c = c0; c < c1; c++) t[c] += g[c];
        }
    }
    return DR_OK;
}
