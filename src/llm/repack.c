/* Quantised weights moved at load into the layouts of the int8 decode kernels: Q4_0 into q4x
 * (q4x.c, 4 rows side by side; with the AVX2 kernels and up) and Q5_0 into q5x (q5x.c, 8 blocks
 * side by side within each row; with the AVX-512 VNNI kernels only). The file's pages of a
 * repacked matrix are released, so the resident size stays the file's; the kernels that have
 * no repacked variant read rows given back in file form (llm_packed_row). */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include <stdint.h>
#include <stdlib.h>

/* Matrix i of the model: the embeddings, 7 per layer, then the output unless tied (NULL past the end). */
static llm_mat *mat_at(llm_model *m, int i) {
    if (i == 0) return &m->tok_embd;
    i--;
    if (i < 7 * m->cfg.n_layers) {
        llm_layer *L = &m->layers[i / 7];
        llm_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        return ms[i % 7];
    }
    return i == 7 * m->cfg.n_layers && !m->cfg.tied_output ? &m->output : NULL;
}

/* Bytes of w's repacked form rounded up to 64 (the kernels read groups and rows aligned), or
 * 0 when w stays in the file's layout (or cannot be sized). */
static size_t packed_bytes(const llm_mat *w, int q4x, int q5x) {
    size_t b = 0;
    if (w->packed) return 0;
    if (q4x && llm_q4x_repackable(w)) b = llm_q4x_bytes(w);
    else if (q5x && llm_q5x_repackable(w) && !dr_mul_ok((size_t)w->rows, w->row_bytes, &b)) b = 0;
    return b > SIZE_MAX - 63 ? 0 : (b + 63) / 64 * 64;
}

int llm_model_repack(llm_model *m) {
    const int q4x = llm_q4x_wanted(), q5x = llm_q5x_wanted();
    if (!q4x && !q5x) return DR_OK;
    size_t total = 0;
    for (int i = 0; mat_at(m, i); i++) {
        const size_t b = packed_bytes(mat_at(m, i), q4x, q5x);
        if (total + b < total) return DR_OK; /* cannot be sized: the file's layout serves */
        total += b;
    }
    if (!total) return DR_OK;
    uint8_t *buf = dr_aligned_alloc_huge(total);
    if (!buf || llm_model_own(m, buf)) { /* slower, not wrong: the kernels read the file's layout */
        dr_log(DR_LOG_WARN, "no memory to repack the Q4_0/Q5_0 weights (%zu bytes): decoding them as stored", total);
        dr_error_clear();
        return DR_OK;
    }
    size_t off = 0;
    for (int i = 0; mat_at(m, i); i++) {
        llm_mat *w = mat_at(m, i);
        const size_t b = packed_bytes(w, q4x, q5x);
        if (!b) continue;
        if (w->type == GGML_TYPE_Q4_0) llm_q4x_pack(w, buf + off);
        else llm_q5x_pack(w, buf + off);
        w->packed = buf + off;
        off += b;
        if (m->file) dr_mmap_release(&m->file->map, w->data, (size_t)w->rows * w->row_bytes);
    }
    if (m->cfg.tied_output) m->output = m->tok_embd;
    return DR_OK;
}

void llm_packed_row(const llm_mat *w, int r, int b0, int n, uint8_t *out) {
    if (w->type == GGML_TYPE_Q4_0) llm_q4x_row(w, r, b0, n, out);
    else llm_q5x_row(w, r, b0, n, out);
}

void llm_packed_row_f32(const llm_mat *w, int r, float *dst) {
    if (w->type == GGML_TYPE_Q5_0 && !llm_q5x_row_f32(w, r, dst)) return;
    uint8_t blk[32 * 22]; /* the blocks put back in file form, a stack-sized run at a time */
    const int nb = w->cols / 32;
    for (int b0 = 0; b0 < nb; b0 += 32) {
        const int k = nb - b0 < 32 ? nb - b0 : 32;
        llm_packed_row(w, r, b0, k, blk);
        dr_dequantize(w->type, blk, dst + 32 * (size_t)b0, 32 * (uint64_t)k);
    }
}
