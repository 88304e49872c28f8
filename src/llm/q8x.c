/* Q8_0 weights repacked at load for the AVX-512 decode kernel (q8x), for the reason Q5_0 is
 * (q5x.c): with 8 blocks side by side the kernel adds their integer dot products down before
 * any float work. Row r starts at r x llm_packed_stride (row_bytes rounded up to 64, so that
 * every row starts on a cache line; 960 bytes against 952 at width 896):
 *   values: nb x 32 bytes, the blocks' int8 values in order, each plus 128 (its top bit
 *           flipped), so that they go into vpdpbusd as unsigned bytes with no work, and every
 *           load of 2 blocks is one aligned 64-byte line;
 *   scales: nb fp16 after them, then zero padding.
 * Widths a multiple of 128 only (the kernel's steps are 8 blocks, or 4 at the end of a row).
 * In the file's layout (34-byte blocks) the kernel's 64-byte loads straddled cache lines; this
 * layout with the 8-block sums read 31-32 GB/s a core and 56-60 on two threads where the q4a
 * kernel read 26-28 and 50-51 and the plain read loop 33-36 and 55-57 (scratch benchmark, 600 MB
 * of rows of 896). Any row can be given back in its file form (llm_q8x_row), which is how the
 * exact path, the prefill tiles and every other kernel read it. */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "llm_internal.h"
#include <string.h>

#define Q8_0_BYTES 34

int llm_q8x_repackable(const llm_mat *w) {
    return w->type == GGML_TYPE_Q8_0 && w->rows > 0 && w->cols > 0 && w->cols % 128 == 0 &&
           w->row_bytes == (size_t)w->cols / 32 * Q8_0_BYTES;
}

void llm_q8x_pack(const llm_mat *w, uint8_t *dst) {
    const int nb = w->cols / 32;
    const size_t stride = llm_packed_stride(w);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < w->rows; r++) {
        const uint8_t *src = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        uint8_t *row = dst + (size_t)r * stride, *sc = row + 32 * (size_t)nb;
        memset(sc, 0, stride - 32 * (size_t)nb);
        for (int b = 0; b < nb; b++, src += Q8_0_BYTES) {
            for (int i = 0; i < 32; i++) row[32 * b + i] = src[2 + i] ^ 0x80;
            memcpy(sc + 2 * b, src, 2);
        }
    }
}

void llm_q8x_row(const llm_mat *w, int r, int b0, int n, uint8_t *out) {
    const int nb = w->cols / 32;
    const uint8_t *row = (const uint8_t *)w->packed + (size_t)r * llm_packed_stride(w), *sc = row + 32 * (size_t)nb;
    for (int b = b0; b < b0 + n; b++, out += Q8_0_BYTES) {
        memcpy(out, sc + 2 * b, 2);
        for (int i = 0; i < 32; i++) out[2 + i] = row[32 * b + i] ^ 0x80;
    }
}
