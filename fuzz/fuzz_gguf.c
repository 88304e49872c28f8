/* libFuzzer target: GGUF reader on arbitrary bytes. Opens from memory, walks every metadata
 * entry and tensor (lookups, getters, conversion of small tensors to fp32), then reads the file
 * as a TRM checkpoint (its configuration, text experts included, and tensors). Any crash,
 * sanitizer report or leak is a bug; an error return is fine. */
#include "deeprec/gguf.h"
#include "trm/internal.h" /* trm__load_file */
#include <stdlib.h>
#include <string.h>

static void walk(const gguf_file *f) {
    volatile uint64_t sink = 0;
    char key[128];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        size_t n = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
        memcpy(key, kv->key.ptr, n);
        key[n] = 0;
        const gguf_kv *found = gguf_find_kv(f, key);
        sink += found != NULL;
        uint32_t u32;
        int64_t i64;
        float f32;
        double f64;
        int b;
        gguf_str s;
        uint64_t an;
        const void *ad;
        const gguf_str *strs;
        if (!gguf_get_u32(f, key, &u32)) sink += u32;
        if (!gguf_get_i64(f, key, &i64)) sink += (uint64_t)i64;
        if (!gguf_get_f32(f, key, &f32)) sink += f32 == f32;
        if (!gguf_get_f64(f, key, &f64)) sink += f64 == f64;
        if (!gguf_get_bool(f, key, &b)) sink += (uint64_t)b;
        if (!gguf_get_str(f, key, &s)) sink += s.len ? (unsigned char)s.ptr[s.len - 1] : 0;
        char *dup = NULL;
        if (!gguf_get_strdup(f, key, &dup)) { sink += strlen(dup); free(dup); }
        if (kv->type == GGUF_TYPE_ARRAY) {
            if (!gguf_get_arr(f, key, kv->arr_type, &an, &ad) && an && kv->arr_type != GGUF_TYPE_STRING) {
                size_t es = gguf_type_size(kv->arr_type);
                sink += ((const uint8_t *)ad)[an * es - 1];
            }
            if (!gguf_get_arr_str(f, key, &an, &strs))
                for (uint64_t k = 0; k < an; k++) sink += strs[k].len ? (unsigned char)strs[k].ptr[strs[k].len - 1] : 0;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        char name[128];
        size_t n = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
        memcpy(name, t->name.ptr, n);
        name[n] = 0;
        sink += gguf_find_tensor(f, name) != NULL;
        sink += gguf_expect_tensor(f, name, t->type, t->n_dims, t->ne, NULL) == 0;
        if (t->n_bytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->n_bytes - 1];
        if (t->n_elements <= (1u << 16)) {
            float *dst = malloc((size_t)(t->n_elements ? t->n_elements : 1) * sizeof(float));
            if (dst && gguf_tensor_to_f32(t, dst) == 0 && t->n_elements) sink += dst[t->n_elements - 1] == 0;
            free(dst);
        }
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* exact-size copy so any overread is caught by ASan */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    gguf_file f;
    if (gguf_open_memory(&f, copy, size, "fuzz") == 0) {
        walk(&f);
        trm_model *m = NULL;
        if (trm__load_file(&m, &f) == 0) trm_model_free(m);
        gguf_close(&f);
    }
    free(copy);
    return 0;
}
