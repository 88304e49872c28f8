/* Q4_0 weights repacked at load into the layout of the int8 decode kernels (q4x).
 *
 * The file stores each row as its own run of 18-byte blocks (fp16 scale, 16 bytes of
 * nibbles). A decode kernel that reads one row at a time decodes one block per 32 weights and
 * keeps several short streams in flight; 4 rows side by side give one 512-bit load per block
 * column holding 128 weights, and one sequential stream per thread. Layout, per group of
 * LLM_Q4X_ROWS = 4 rows (the last group padded with zero rows, whose outputs are dropped):
 *   nibbles: nb x 64 bytes, block b at 64 b: the 16 nibble bytes of row 0, 1, 2, 3, each as
 *            in the file (byte k: value k in the low nibble, value k + 16 in the high one);
 *   scales:  nb x 4 fp16 at 64 nb + 8 b (row 0..3), zero-padded to a multiple of 64 bytes,
 *            so a kernel may read the scales of 4 blocks at once past the last block.
 * Every group starts on a 64-byte boundary. The bytes are those of the file, moved: any row
 * can be given back in its file form (llm_q4x_row), which is how the exact path, the
 * prefill tiles and the portable C kernel read a repacked matrix. */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include <string.h>

#define Q4_0_BYTES 18

size_t llm_q4x_group_bytes(int nb) { return 64 * (size_t)nb + ((size_t)8 * nb + 63) / 64 * 64; }

size_t llm_q4x_bytes(const llm_mat *w) {
    size_t groups = ((size_t)w->rows + LLM_Q4X_ROWS - 1) / LLM_Q4X_ROWS, n;
    return dr_mul_ok(groups, llm_q4x_group_bytes(w->cols / 32), &n) ? n : 0;
}

void llm_q4x_pack(const llm_mat *w, uint8_t *dst) {
    const int nb = w->cols / 32, groups = (w->rows + LLM_Q4X_ROWS - 1) / LLM_Q4X_ROWS;
    const size_t gb = llm_q4x_group_bytes(nb);
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        uint8_t *q = dst + (size_t)g * gb, *sc = q + 64 * (size_t)nb;
        if (g * LLM_Q4X_ROWS + LLM_Q4X_ROWS > w->rows) memset(q, 0, gb); /* zero rows pad the last group */
        else memset(sc + 8 * (size_t)nb, 0, gb - 64 * (size_t)nb - 8 * (size_t)nb);
        for (int i = 0; i < LLM_Q4X_ROWS && g * LLM_Q4X_ROWS + i < w->rows; i++) {
            const uint8_t *src = (const uint8_t *)w->data + (size_t)(g * LLM_Q4X_ROWS + i) * w->row_bytes;
            for (int b = 0; b < nb; b++, src += Q4_0_BYTES) {
                memcpy(sc + 8 * (size_t)b + 2 * i, src, 2);
                memcpy(q + 64 * (size_t)b + 16 * i, src + 2, 16);
            }
        }
    }
}

void llm_q4x_row(const llm_mat *w, int r, int b0, int n, uint8_t *out) {
    const int nb = w->cols / 32, i = r % LLM_Q4X_ROWS;
    const uint8_t *q = (const uint8_t *)w->packed + (size_t)(r / LLM_Q4X_ROWS) * llm_q4x_group_bytes(nb);
    const uint8_t *sc = q + 64 * (size_t)nb;
    for (int b = b0; b < b0 + n; b++, out += Q4_0_BYTES) {
        memcpy(out, sc + 8 * (size_t)b + 2 * i, 2);
        memcpy(out + 2, q + 64 * (size_t)b + 16 * i, 16);
    }
}

int llm_q4x_repackable(const llm_mat *w) {
    return w->type == GGML_TYPE_Q4_0 && !w->packed && w->rows > 0 && w->cols > 0 && w->cols % 32 == 0 &&
           w->row_bytes == (size_t)w->cols / 32 * Q4_0_BYTES;
}
