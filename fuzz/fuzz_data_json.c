/* Fuzz the tolerant JSON-object scanner (Amazon lines), category joining and UTF-8 sanitising. */
#include "data/internal.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const want[] = {"user_id", "asin", "title", "categories", NULL};
    dr_jobj o = {0};
    if (size && (data[size - 1] & 1)) o.want = want; /* also exercise the key filter */
    if (dr_json_scan(&o, (const char *)data, size) == 0) {
        dr_buf b = {0};
        for (int i = 0; i < o.n; i++) {
            const dr_jfield *f = &o.f[i];
            if (f->str[f->str_len] != 0) abort();
            if (f->kind == DR_JV_STRLIST) dr_join_cats(f->str, f->str_len, "\x1f", &b);
            (void)dr_json_get(&o, f->key);
        }
        dr_buf_free(&b);
    } else if (o.err_pos > size)
        abort();
    dr_json_free(&o);
    char *s = dr_utf8_sanitize((const char *)data, size);
    if (!s || !dr_utf8_valid(s, strlen(s))) abort();
    free(s);
    return 0;
}
