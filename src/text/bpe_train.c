/* Byte-level BPE trainer over qwen2 pre-tokenizer word counts, with incremental
 * pair-count updates and a lazy max-heap of pairs. */
#include <stdlib.h>
#include <string.h>
#include "deeprec/tokenizer.h"
#include "text/text_internal.h"
#include "text/tok_internal.h"

static const char *const k_control[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
static const char *const k_user[] = {"<think>", "</think>", "<|begin_of_preference|>", "<|end_of_preference|>",
                                     "<|begin_of_item_list|>", "<|end_of_item_list|>", "<recommendation_list>",
                                     "</recommendation_list>"};
#define N_CONTROL 3
#define N_USER 8
#define N_SPECIAL (N_CONTROL + N_USER)

/* ---- string table: interned byte strings, each with a count ---- */
typedef struct strtab {
    dr_strpool s;
    int64_t *cnt;
    size_t cnt_cap;
} strtab;

/* index of s (inserted when absent), its count += add; -1 on allocation failure */
static int64_t strtab_add(strtab *t, const uint8_t *s, size_t n, int64_t add) {
    int64_t i;
    int added;
    if (dr_strpool_intern(&t->s, (const char *)s, n, &i, &added)) return -1;
    if (added) {
        if ((size_t)i >= t->cnt_cap) {
            size_t nc = t->cnt_cap ? t->cnt_cap * 2 : 1024;
            int64_t *c = dr_realloc(t->cnt, nc, sizeof(int64_t));
            if (!c) return -1;
            t->cnt = c; t->cnt_cap = nc;
        }
        t->cnt[i] = 0;
    }
    t->cnt[i] += add;
    return i;
}
static const uint8_t *strtab_bytes(const strtab *t, size_t i) { return (const uint8_t *)dr_strpool_str(&t->s, (int64_t)i, NULL); }
static void strtab_free(strtab *t) { dr_strpool_free(&t->s); free(t->cnt); }

/* ---- pairs ---- */
typedef struct pair_info {
    uint64_t key; int64_t count;
    int32_t *words; uint32_t nw, cw; /* words that (may) contain the pair */
} pair_info;
typedef struct pairtab { pair_info *p; size_t n, cap; int64_t *slot; size_t scap; } pairtab;

static int64_t pair_get(pairtab *t, uint64_t key, int create) {
    if (t->n * 2 + 2 > t->scap) {
        size_t nc = t->scap ? t->scap * 2 : 4096;
        int64_t *s = dr_malloc(nc * sizeof(int64_t));
        if (!s) return -1;
        memset(s, 0xff, nc * sizeof(int64_t));
        for (size_t i = 0; i < t->n; i++) {
            size_t k = dr_mix64(t->p[i].key) & (nc - 1);
            while (s[k] >= 0) k = (k + 1) & (nc - 1);
            s[k] = (int64_t)i;
        }
        free(t->slot);
        t->slot = s; t->scap = nc;
    }
    size_t mask = t->scap - 1, k = dr_mix64(key) & mask;
    while (t->slot[k] >= 0) {
        if (t->p[t->slot[k]].key == key) return t->slot[k];
        k = (k + 1) & mask;
    }
    if (!create) return -2;
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4096;
        pair_info *np = dr_realloc(t->p, nc, sizeof(pair_info));
        if (!np) return -1;
        t->p = np; t->cap = nc;
    }
    memset(&t->p[t->n], 0, sizeof(pair_info));
    t->p[t->n].key = key;
    t->slot[k] = (int64_t)t->n;
    return (int64_t)t->n++;
}

static int pair_add_word(pair_info *p, int32_t w) {
    if (p->nw && p->words[p->nw - 1] == w) return DR_OK;
    if (p->nw == p->cw) {
        uint32_t nc = p->cw ? p->cw * 2 : 4;
        int32_t *nw = dr_realloc(p->words, nc, sizeof(int32_t));
        if (!nw) return DR_ERR_NOMEM;
        p->words = nw; p->cw = nc;
    }
    p->words[p->nw++] = w;
    return DR_OK;
}

typedef struct hent { int64_t count; uint64_t key; } hent;
typedef struct maxheap { hent *h; size_t n, cap; } maxheap;
static int hbetter(const hent *x, const hent *y) { /* higher count, then smaller (a, b) */
    return x->count > y->count || (x->count == y->count && x->key < y->key);
}
static int heap_push(maxheap *q, int64_t count, uint64_t key) {
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 4096;
        hent *nh = dr_realloc(q->h, nc, sizeof(hent));
        if (!nh) return DR_ERR_NOMEM;
        q->h = nh; q->cap = nc;
    }
    size_t i = q->n++;
    q->h[i] = (hent){count, key};
    while (i) {
        size_t p = (i - 1) / 2;
        if (!hbetter(&q->h[i], &q->h[p])) break;
        hent t = q->h[i]; q->h[i] = q->h[p]; q->h[p] = t;
        i = p;
    }
    return DR_OK;
}
static hent heap_pop(maxheap *q) {
    hent top = q->h[0];
    q->h[0] = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && hbetter(&q->h[l], &q->h[m])) m = l;
        if (r < q->n && hbetter(&q->h[r], &q->h[m])) m = r;
        if (m == i) break;
        hent t = q->h[i]; q->h[i] = q->h[m]; q->h[m] = t;
        i = m;
    }
    return top;
}

typedef struct word { int32_t *sym; int32_t len; int64_t cnt; } word;

typedef struct count_ctx { strtab *words; const char *text; int err; } count_ctx;
static void on_word(void *ctx, size_t a, size_t b) {
    count_ctx *c = ctx;
    if (c->err) return;
    if (strtab_add(c->words, (const uint8_t *)c->text + a, b - a, 1) < 0) c->err = DR_ERR_NOMEM;
}

/* Counts pre-token words of a segment (no special tokens inside). */
static int count_segment(strtab *words, const char *s, size_t n) {
    if (!n) return DR_OK;
    char *norm = NULL;
    size_t nn = 0;
    int rc = tok_nfc(s, n, &norm, &nn);
    if (rc) return rc;
    count_ctx c = {words, norm, 0};
    rc = tok_pretokenize(TOK_PRE_QWEN2, norm, nn, on_word, &c);
    free(norm);
    return rc ? rc : c.err;
}

static int update_word_pairs(pairtab *pt, word *w, int32_t wi, int sign) {
    for (int32_t k = 0; k + 1 < w->len; k++) {
        uint64_t key = ((uint64_t)(uint32_t)w->sym[k] << 32) | (uint32_t)w->sym[k + 1];
        int64_t pi = pair_get(pt, key, sign > 0);
        if (pi == -1) return DR_ERR_NOMEM;
        if (pi < 0) continue;
        pt->p[pi].count += sign * w->cnt;
        if (sign > 0 && pair_add_word(&pt->p[pi], wi)) return DR_ERR_NOMEM;
    }
    return DR_OK;
}

int tok_train(const char *text, size_t len, const tok_train_opts *opts, tokenizer **out) {
    *out = NULL;
    int32_t vocab_target = opts ? opts->vocab_size : 0;
    int64_t min_count = (opts && opts->min_pair_count > 0) ? opts->min_pair_count : 2;
    if (vocab_target < 256 + N_SPECIAL)
        return dr_error(DR_ERR_ARG, "vocabulary size %d too small (at least %d: 256 bytes + %d special tokens)",
                        vocab_target, 256 + N_SPECIAL, N_SPECIAL);
    if (vocab_target > (1 << 22)) return dr_error(DR_ERR_ARG, "vocabulary size %d too large", vocab_target);
    int rc = DR_OK;
    strtab words = {0}, toks = {0};
    pairtab pt = {0};
    maxheap q = {0};
    word *W = NULL;
    int32_t *stamp = NULL, *tmp = NULL;
    int32_t *ma = NULL, *mb = NULL;
    int32_t n_tok = 0, n_merge = 0;
    size_t tmp_cap = 0;
    dr_progress prog;
    int prog_on = 0;

    /* 1. word counts; special-token strings in the corpus are separators */
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        size_t hit = 0;
        if (text[i] == '<') {
            for (int k = 0; k < N_SPECIAL && !hit; k++) {
                const char *sp = k < N_CONTROL ? k_control[k] : k_user[k - N_CONTROL];
                size_t l = strlen(sp);
                if (l <= len - i && !memcmp(text + i, sp, l)) hit = l;
            }
        }
        if (!hit) { i++; continue; }
        if ((rc = count_segment(&words, text + seg, i - seg))) goto done;
        i += hit;
        seg = i;
    }
    if ((rc = count_segment(&words, text + seg, len - seg))) goto done;

    /* 2. tokens: the 256 bytes (id = byte value) */
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if (strtab_add(&toks, &c, 1, 0) < 0) { rc = DR_ERR_NOMEM; goto done; }
    }
    n_tok = 256;
    int32_t max_merges = vocab_target - N_SPECIAL - 256;
    ma = dr_calloc((size_t)max_merges + 1, sizeof(int32_t));
    mb = dr_calloc((size_t)max_merges + 1, sizeof(int32_t));
    W = dr_calloc((size_t)words.s.n + 1, sizeof(word));
    stamp = dr_malloc(((size_t)words.s.n + 1) * sizeof(int32_t));
    if (!ma || !mb || !W || !stamp) { rc = DR_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < (size_t)words.s.n; i++) {
        W[i].len = (int32_t)words.s.len[i];
        W[i].cnt = words.cnt[i];
        W[i].sym = dr_malloc((size_t)W[i].len * sizeof(int32_t) + 4);
        if (!W[i].sym) { rc = DR_ERR_NOMEM; goto done; }
        const uint8_t *wb = strtab_bytes(&words, i);
        for (int32_t k = 0; k < W[i].len; k++) W[i].sym[k] = wb[k];
        stamp[i] = -1;
        if ((rc = update_word_pairs(&pt, &W[i], (int32_t)i, +1))) goto done;
    }
    for (size_t i = 0; i < pt.n; i++)
        if ((rc = heap_push(&q, pt.p[i].count, pt.p[i].key))) goto done;
    if (opts && opts->progress) { dr_progress_start(&prog, opts->progress, "bpe merges", max_merges, "merges"); prog_on = 1; }

    /* 3. merges */
    while (n_merge < max_merges && q.n) {
        hent e = heap_pop(&q);
        int64_t pi = pair_get(&pt, e.key, 0);
        if (pi == -1) { rc = DR_ERR_NOMEM; goto done; }
        if (pi < 0) continue;
        int64_t cur = pt.p[pi].count;
        if (cur != e.count) {
            if (cur > 0 && (rc = heap_push(&q, cur, e.key))) goto done;
            continue;
        }
        if (cur < min_count) break;
        int32_t a = (int32_t)(e.key >> 32), b = (int32_t)(e.key & 0xffffffffu);
        /* the merged token (an existing id when the same bytes were built before) */
        size_t la = toks.s.len[a], lb = toks.s.len[b];
        if (la + lb > tmp_cap) {
            size_t nc = (la + lb) * 2;
            int32_t *nt = realloc(tmp, nc);
            if (!nt) { rc = dr_error(DR_ERR_NOMEM, "out of memory"); goto done; }
            tmp = nt; tmp_cap = nc;
        }
        uint8_t *buf = (uint8_t *)tmp;
        memcpy(buf, strtab_bytes(&toks, (size_t)a), la);
        memcpy(buf + la, strtab_bytes(&toks, (size_t)b), lb);
        int64_t c = strtab_add(&toks, buf, la + lb, 0);
        if (c < 0) { rc = DR_ERR_NOMEM; goto done; }
        n_tok = (int32_t)toks.s.n;
        ma[n_merge] = a; mb[n_merge] = b;
        /* rewrite the words that contain (a, b) */
        uint32_t nw = pt.p[pi].nw;
        int32_t *wl = pt.p[pi].words;
        pt.p[pi].words = NULL; pt.p[pi].nw = pt.p[pi].cw = 0;
        for (uint32_t k = 0; k < nw; k++) {
            int32_t wi = wl[k];
            if (stamp[wi] == n_merge) continue;
            stamp[wi] = n_merge;
            word *w = &W[wi];
            int found = 0;
            for (int32_t x = 0; x + 1 < w->len; x++)
                if (w->sym[x] == a && w->sym[x + 1] == b) { found = 1; break; }
            if (!found) continue;
            if ((rc = update_word_pairs(&pt, w, wi, -1))) { free(wl); goto done; }
            int32_t o = 0;
            for (int32_t x = 0; x < w->len;) {
                if (x + 1 < w->len && w->sym[x] == a && w->sym[x + 1] == b) { w->sym[o++] = (int32_t)c; x += 2; }
                else w->sym[o++] = w->sym[x++];
            }
            w->len = o;
            if ((rc = update_word_pairs(&pt, w, wi, +1))) { free(wl); goto done; }
            /* pairs with the new token gained counts: (re)announce them */
            for (int32_t x = 0; x < w->len; x++) {
                if (w->sym[x] != (int32_t)c) continue;
                if (x > 0) {
                    uint64_t key = ((uint64_t)(uint32_t)w->sym[x - 1] << 32) | (uint32_t)c;
                    int64_t p2 = pair_get(&pt, key, 0);
                    if (p2 >= 0 && (rc = heap_push(&q, pt.p[p2].count, key))) { free(wl); goto done; }
                }
                if (x + 1 < w->len) {
                    uint64_t key = ((uint64_t)(uint32_t)c << 32) | (uint32_t)w->sym[x + 1];
                    int64_t p2 = pair_get(&pt, key, 0);
                    if (p2 >= 0 && (rc = heap_push(&q, pt.p[p2].count, key))) { free(wl); goto done; }
                }
            }
        }
        free(wl);
        pt.p[pi].count = 0;
        n_merge++;
        if (prog_on) dr_progress_update(&prog, n_merge);
    }
    if (prog_on) dr_progress_finish(&prog);

    /* 4. build the tokenizer: byte-level strings, merges, specials */
    {
        int32_t nv = n_tok + N_SPECIAL;
        char **strs = dr_calloc((size_t)nv, sizeof(char *));
        uint32_t *lens = dr_calloc((size_t)nv, sizeof(uint32_t));
        uint8_t *types = dr_calloc((size_t)nv, 1);
        const char **sa = dr_calloc((size_t)n_merge + 1, sizeof(char *)), **sb = dr_calloc((size_t)n_merge + 1, sizeof(char *));
        uint32_t *la = dr_calloc((size_t)n_merge + 1, sizeof(uint32_t)), *lb = dr_calloc((size_t)n_merge + 1, sizeof(uint32_t));
        if (!strs || !lens || !types || !sa || !sb || !la || !lb) rc = DR_ERR_NOMEM;
        for (int32_t i = 0; !rc && i < n_tok; i++) {
            size_t l = 0;
            strs[i] = tok_bytes_to_unicode(strtab_bytes(&toks, (size_t)i), toks.s.len[i], &l);
            if (!strs[i]) { rc = DR_ERR_NOMEM; break; }
            lens[i] = (uint32_t)l;
            types[i] = TOK_TYPE_NORMAL;
        }
        for (int k = 0; !rc && k < N_SPECIAL; k++) {
            const char *sp = k < N_CONTROL ? k_control[k] : k_user[k - N_CONTROL];
            strs[n_tok + k] = dr_strdup(sp);
            if (!strs[n_tok + k]) { rc = DR_ERR_NOMEM; break; }
            lens[n_tok + k] = (uint32_t)strlen(sp);
            types[n_tok + k] = k < N_CONTROL ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
        }
        for (int32_t r = 0; !rc && r < n_merge; r++) {
            sa[r] = strs[ma[r]]; la[r] = lens[ma[r]];
            sb[r] = strs[mb[r]]; lb[r] = lens[mb[r]];
        }
        if (!rc)
            rc = tok_build(out, nv, (const char *const *)strs, lens, types, n_merge, sa, la, sb, lb, TOK_PRE_QWEN2, 1);
        if (!rc) {
            tok_set_special(*out, n_tok + 0, n_tok + 2, n_tok + 0);
            (*out)->add_bos = 0;
        }
        if (strs) for (int32_t i = 0; i < nv; i++) free(strs[i]);
        free(strs); free(lens); free(types); free(sa); free(sb); free(la); free(lb);
    }
done:
    if (W) for (size_t i = 0; i < (size_t)words.s.n; i++) free(W[i].sym);
    free(W); free(stamp); free(tmp); free(ma); free(mb);
    for (size_t i = 0; i < pt.n; i++) free(pt.p[i].words);
    free(pt.p); free(pt.slot); free(q.h);
    strtab_free(&words); strtab_free(&toks);
    return rc;
}

int tok_train_file(const char *path, const tok_train_opts *opts, tokenizer **out) {
    *out = NULL;
    dr_mmap m;
    int rc = dr_mmap_open(&m, path);
    if (rc) return rc;
    rc = tok_train((const char *)m.data, m.size, opts, out);
    dr_mmap_close(&m);
    if (rc) dr_error_context("%s", path);
    return rc;
}
