/* Fuzz the R serialization (XDR) reader: data.frame decoding. Inputs starting
 * with 'L' are split into an .rdx/.rdb pair for the lazy-load path. */
#include "deeprec/data.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dr_rframe f;
    if (size > 3 && data[0] == 'L') {
        size_t cut = 3 + ((size_t)data[1] << 8 | data[2]);
        if (cut > size) cut = size;
        if (dr_rdata_lazy_mem(data + 3, cut - 3, data + cut, size - cut, "x", &f) == 0) dr_rframe_free(&f);
        return 0;
    }
    if (dr_rdata_read_frame(data, size, &f) == 0) {
        for (int c = 0; c < f.n_cols; c++) {
            if (f.cols[c].n != f.n_rows) abort();
            if (f.cols[c].levels)
                for (int64_t i = 0; i < f.cols[c].n; i++) {
                    int32_t v = f.cols[c].ints[i];
                    (void)v;
                }
        }
        (void)dr_rframe_col(&f, "title");
        dr_rframe_free(&f);
    }
    return 0;
}
