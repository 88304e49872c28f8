/* Text features of the preference-aware retriever: hashed word unigrams and
 * adjacent-word bigrams (FNV-1a 32-bit, modulo the bucket count). */
#include "internal.h"
#include "deeprec/data.h"
#include <stdlib.h>
#include <string.h>

#define TRM_MAX_WORD 64
#define TRM_MAX_FEATS 256

int trm__max_feats(void) { return TRM_MAX_FEATS; }

/* h == 0 starts a hash (the bucket ids saved with a model were made this way, so a chained
 * value of 0 restarts too). */
uint32_t trm_fnv1a(const void *data, size_t n, uint32_t h) { return dr_fnv1a32(data, n, h ? h : DR_FNV32_INIT); }

static int is_word(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch >= 0x80;
}

int trm_text_hash(const char *text, uint32_t n_buckets, uint32_t *ids, int max_ids) {
    if (!text || n_buckets == 0 || max_ids <= 0) return 0;
    int n = 0;
    char prev[TRM_MAX_WORD], cur[TRM_MAX_WORD];
    size_t plen = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (*s && n < max_ids) {
        while (*s && !is_word(*s)) s++;
        if (!*s) break;
        size_t len = 0;
        while (*s && is_word(*s)) {
            unsigned char ch = *s++;
            if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
            if (len < TRM_MAX_WORD) cur[len++] = (char)ch;
        }
        uint32_t h = trm_fnv1a("u:", 2, 0);
        h = trm_fnv1a(cur, len, h);
        ids[n++] = h % n_buckets;
        if (plen > 0 && n < max_ids) {
            uint32_t b = trm_fnv1a("b:", 2, 0);
            b = trm_fnv1a(prev, plen, b);
            b = trm_fnv1a(" ", 1, b);
            b = trm_fnv1a(cur, len, b);
            ids[n++] = b % n_buckets;
        }
        memcpy(prev, cur, len);
        plen = len;
    }
    return n;
}

int trm__pref_tokens(const trm_model *m, const char *text, int32_t *ids, int max_ids) {
    uint32_t tmp[TRM_MAX_FEATS];
    if (max_ids > TRM_MAX_FEATS) max_ids = TRM_MAX_FEATS;
    int n = trm_text_hash(text, (uint32_t)m->cfg.text_buckets, tmp, max_ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)tmp[i];
    return n;
}

/* Item text = title + " ; " + categories (with '|' as separator). */
int trm__item_text_build(trm_model *m, const dr_dataset *d) {
    int V = m->V;
    free(m->item_tok_off);
    free(m->item_tok);
    m->item_tok = NULL;
    m->item_tok_off = dr_calloc((size_t)V + 1, sizeof(int32_t));
    if (!m->item_tok_off) return dr_error_code();
    size_t cap = (size_t)V * 8 + 16, n = 0;
    m->item_tok = dr_malloc(cap * sizeof(int32_t));
    if (!m->item_tok) return dr_error_code();
    char buf[2048];
    int32_t ids[TRM_MAX_FEATS];
    for (int i = 0; i < V; i++) {
        m->item_tok_off[i] = (int32_t)n;
        if (i == 0 || !d) continue;
        const char *t = d->titles ? d->titles[i] : NULL, *c = d->categories ? d->categories[i] : NULL;
        snprintf(buf, sizeof buf, "%s ; %s", t ? t : "", c ? c : "");
        int k = trm__pref_tokens(m, buf, ids, 64);
        if (n + (size_t)k > cap) {
            cap = cap * 2 + (size_t)k;
            int32_t *nt = dr_realloc(m->item_tok, cap, sizeof(int32_t));
            if (!nt) return dr_error_code();
            m->item_tok = nt;
        }
        memcpy(m->item_tok + n, ids, (size_t)k * sizeof(int32_t));
        n += (size_t)k;
    }
    m->item_tok_off[V] = (int32_t)n;
    return DR_OK;
}
