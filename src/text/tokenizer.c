/* Byte-level BPE tokenizer: vocabulary, merges, encode/decode, ChatML. */
#include <stdlib.h>
#include <string.h>
#include "deeprec/tokenizer.h"
#include "text/text_internal.h"
#include "text/tok_internal.h"

/* ---------------- byte <-> unicode (GPT-2) ---------------- */
/* Printable bytes 33..126, 161..172, 174..255 stand for themselves; the other 68
 * bytes map, in increasing order, to U+0100 + n. */
uint32_t tok_byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33u + (uint32_t)(b - 127);
    return 256u + 67u; /* 173 */
}

int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp < 256 || cp > 256 + 67) return -1;
    uint32_t n = cp - 256;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(127 + n - 33);
    return 173;
}

char *tok_bytes_to_unicode(const uint8_t *s, size_t n, size_t *out_len) {
    char *r = dr_malloc(n * 2 + 1);
    if (!r) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)tok_utf8_put(tok_byte_to_cp(s[i]), (uint8_t *)r + o);
    r[o] = 0;
    if (out_len) *out_len = o;
    return r;
}

/* ---------------- lookup ---------------- */
static const char *vocab_key(const void *ctx, int64_t id, size_t *n) {
    const tokenizer *t = ctx;
    *n = t->len[id];
    return t->str[id];
}
static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n * 2 && c < (1u << 30)) c <<= 1;
    return c;
}

static int32_t map_find(const tokenizer *t, const char *s, size_t n) {
    return (int32_t)dr_strindex_find(&t->map, s, n);
}

static const tok_merge_slot *merge_find(const tokenizer *t, int32_t a, int32_t b) {
    if (!t->merge_cap) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t i = (uint32_t)dr_mix64(key) & mask;; i = (i + 1) & mask) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

/* ---------------- building ---------------- */
void tok_free(tokenizer *t) {
    if (!t) return;
    if (t->str) for (int32_t i = 0; i < t->n_vocab; i++) free(t->str[i]);
    if (t->piece) for (int32_t i = 0; i < t->n_vocab; i++) free(t->piece[i]);
    free(t->str); free(t->len); free(t->type); free(t->piece); free(t->piece_len);
    dr_strindex_free(&t->map); free(t->merge_a); free(t->merge_b); free(t->merges); free(t->special);
    free(t->chat_template);
    free(t);
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int tok_finish(tokenizer *t) {
    /* decoded pieces */
    t->piece = dr_calloc((size_t)t->n_vocab, sizeof(char *));
    t->piece_len = dr_calloc((size_t)t->n_vocab, sizeof(uint32_t));
    if (!t->piece || !t->piece_len) return DR_ERR_NOMEM;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const uint8_t *s = (const uint8_t *)t->str[i];
        size_t n = t->len[i], o = 0;
        char *p = dr_malloc(n + 1);
        if (!p) return DR_ERR_NOMEM;
        if (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED) {
            memcpy(p, s, n); o = n;
        } else {
            for (size_t k = 0; k < n;) {
                uint32_t c;
                int l = tok_utf8_next(s, n, k, &c);
                int b = (c & TOK_BAD_BYTE) ? -1 : tok_cp_to_byte(c);
                if (b >= 0) p[o++] = (char)b;
                else { memcpy(p + o, s + k, (size_t)l); o += (size_t)l; }
                k += (size_t)l;
            }
        }
        p[o] = 0;
        t->piece[i] = p; t->piece_len[i] = (uint32_t)o;
    }
    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        uint8_t buf[4];
        int l = tok_utf8_put(tok_byte_to_cp((uint8_t)b), buf);
        t->byte_id[b] = map_find(t, (const char *)buf, (size_t)l);
    }
    /* specials */
    int32_t ns = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED) && t->len[i] > 0) ns++;
    t->special = dr_calloc((size_t)ns + 1, sizeof(int32_t));
    if (!t->special) return DR_ERR_NOMEM;
    ns = 0;
    memset(t->special_first, 0, sizeof t->special_first);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED) && t->len[i] > 0) {
            t->special[ns++] = i;
            t->special_first[(uint8_t)t->str[i][0]] = 1;
        }
    t->n_special = ns;
    qsort_r(t->special, (size_t)ns, sizeof(int32_t), cmp_special, t);
    return DR_OK;
}

int tok_build(tokenizer **out, int32_t n_vocab, const char *const *strs, const uint32_t *lens, const uint8_t *types,
              int64_t n_merges, const char *const *ma, const uint32_t *ma_len, const char *const *mb,
              const uint32_t *mb_len, int pre, int nfc) {
    *out = NULL;
    if (n_vocab <= 0) return dr_error(DR_ERR_FORMAT, "tokenizer: empty vocabulary");
    if (n_merges < 0 || n_merges > INT32_MAX / 2) return dr_error(DR_ERR_FORMAT, "tokenizer: bad merge count");
    tokenizer *t = dr_calloc(1, sizeof *t);
    if (!t) return DR_ERR_NOMEM;
    t->n_vocab = n_vocab;
    t->pre = pre; t->nfc = nfc;
    t->bos = t->eos = t->pad = -1;
    t->str = dr_calloc((size_t)n_vocab, sizeof(char *));
    t->len = dr_calloc((size_t)n_vocab, sizeof(uint32_t));
    t->type = dr_calloc((size_t)n_vocab, 1);
    dr_strindex_init(&t->map, vocab_key, t, 0);
    int rc = DR_ERR_NOMEM;
    if (!t->str || !t->len || !t->type || dr_strindex_reserve(&t->map, (size_t)n_vocab)) goto fail;
    for (int32_t i = 0; i < n_vocab; i++) {
        uint32_t n = lens[i];
        t->str[i] = dr_malloc((size_t)n + 1);
        if (!t->str[i]) goto fail;
        memcpy(t->str[i], strs[i], n);
        t->str[i][n] = 0;
        t->len[i] = n;
        t->type[i] = types ? types[i] : TOK_TYPE_NORMAL;
        if (t->type[i] > TOK_TYPE_BYTE) t->type[i] = TOK_TYPE_NORMAL;
        if (dr_strindex_add(&t->map, i) < 0) goto fail; /* duplicate string: the first id wins */
    }
    /* merges */
    t->merge_cap = pow2_at_least((uint64_t)n_merges + 1);
    t->merges = dr_malloc((size_t)t->merge_cap * sizeof(tok_merge_slot));
    t->merge_a = dr_calloc((size_t)n_merges + 1, sizeof(int32_t));
    t->merge_b = dr_calloc((size_t)n_merges + 1, sizeof(int32_t));
    if (!t->merges || !t->merge_a || !t->merge_b) goto fail;
    for (uint32_t i = 0; i < t->merge_cap; i++) t->merges[i].rank = -1;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (int64_t r = 0; r < n_merges; r++) {
        int32_t a = map_find(t, ma[r], ma_len[r]), b = map_find(t, mb[r], mb_len[r]);
        size_t need = (size_t)ma_len[r] + mb_len[r];
        if (need > tmp_cap) {
            char *nt = realloc(tmp, need + 1);
            if (!nt) { free(tmp); goto fail; }
            tmp = nt; tmp_cap = need;
        }
        memcpy(tmp, ma[r], ma_len[r]);
        memcpy(tmp + ma_len[r], mb[r], mb_len[r]);
        int32_t res = map_find(t, tmp, need);
        if (a < 0 || b < 0 || res < 0) continue; /* unusable merge: skipped (keeps ranks of others in order) */
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        uint32_t mask = t->merge_cap - 1, k = (uint32_t)dr_mix64(key) & mask;
        int dup = 0;
        while (t->merges[k].rank >= 0) {
            if (t->merges[k].key == key) { dup = 1; break; }
            k = (k + 1) & mask;
        }
        if (dup) continue;
        t->merges[k].key = key;
        t->merges[k].rank = t->n_merges;
        t->merges[k].result = res;
        t->merge_a[t->n_merges] = a;
        t->merge_b[t->n_merges] = b;
        t->n_merges++;
    }
    free(tmp);
    if ((rc = tok_finish(t))) goto fail;
    *out = t;
    return DR_OK;
fail:
    tok_free(t);
    return rc ? rc : DR_ERR_NOMEM;
}

/* ---------------- properties ---------------- */
int32_t tok_vocab_size(const tokenizer *t) { return t->n_vocab; }
int tok_type_of(const tokenizer *t, int32_t id) { return (id < 0 || id >= t->n_vocab) ? -1 : t->type[id]; }
int tok_is_special(const tokenizer *t, int32_t id) {
    int ty = tok_type_of(t, id);
    return ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED;
}
int32_t tok_eos(const tokenizer *t) { return t->eos; }
int32_t tok_pad(const tokenizer *t) { return t->pad; }
int tok_pre(const tokenizer *t) { return t->pre; }
void tok_set_special(tokenizer *t, int32_t bos, int32_t eos, int32_t pad) {
    t->bos = (bos >= 0 && bos < t->n_vocab) ? bos : -1;
    t->eos = (eos >= 0 && eos < t->n_vocab) ? eos : -1;
    t->pad = (pad >= 0 && pad < t->n_vocab) ? pad : -1;
}
const char *tok_token_str(const tokenizer *t, int32_t id) {
    return (id < 0 || id >= t->n_vocab) ? NULL : t->str[id];
}
int32_t tok_find(const tokenizer *t, const char *s) { return map_find(t, s, strlen(s)); }

int tok_token_to_piece(const tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    size_t n = t->piece_len[id];
    if (buf && cap) memcpy(buf, t->piece[id], n < cap ? n : cap);
    return (int)n;
}

/* ---------------- encoding ---------------- */
typedef struct ivec { int32_t *v; size_t n, cap; int err; } ivec;
static void ivec_push(ivec *a, int32_t x) {
    if (a->err) return;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = dr_realloc(a->v, nc, sizeof(int32_t));
        if (!nv) { a->err = DR_ERR_NOMEM; return; }
        a->v = nv; a->cap = nc;
    }
    a->v[a->n++] = x;
}

typedef struct heap_ent { int32_t rank; int32_t pos; int32_t a, b; } heap_ent;
typedef struct bpe_work {
    int32_t *id, *prev, *next;
    heap_ent *heap;
    size_t cap, hn, hcap;
    int err;
} bpe_work;

static int heap_less(const heap_ent *x, const heap_ent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}
static void heap_push(bpe_work *w, heap_ent e) {
    size_t i = w->hn++;
    w->heap[i] = e;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&w->heap[i], &w->heap[p])) break;
        heap_ent t = w->heap[i]; w->heap[i] = w->heap[p]; w->heap[p] = t;
        i = p;
    }
}
static heap_ent heap_pop(bpe_work *w) {
    heap_ent top = w->heap[0];
    w->heap[0] = w->heap[--w->hn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->hn && heap_less(&w->heap[l], &w->heap[m])) m = l;
        if (r < w->hn && heap_less(&w->heap[r], &w->heap[m])) m = r;
        if (m == i) break;
        heap_ent t = w->heap[i]; w->heap[i] = w->heap[m]; w->heap[m] = t;
        i = m;
    }
    return top;
}
static void try_pair(const tokenizer *t, bpe_work *w, int32_t pos) {
    int32_t nx = w->next[pos];
    if (nx < 0) return;
    const tok_merge_slot *m = merge_find(t, w->id[pos], w->id[nx]);
    if (m) heap_push(w, (heap_ent){m->rank, pos, w->id[pos], w->id[nx]});
}

static void bpe_piece(const tokenizer *t, bpe_work *w, const uint8_t *s, size_t n, ivec *out) {
    if (n == 0) return;
    if (n > w->cap) {
        size_t nc = n < 64 ? 64 : n;
        int32_t *a = dr_realloc(w->id, nc, sizeof(int32_t)), *b = NULL, *c = NULL;
        if (a) w->id = a;
        if (a) b = dr_realloc(w->prev, nc, sizeof(int32_t));
        if (b) w->prev = b;
        if (b) c = dr_realloc(w->next, nc, sizeof(int32_t));
        if (c) w->next = c;
        heap_ent *h = c ? dr_realloc(w->heap, nc * 2, sizeof(heap_ent)) : NULL;
        if (!h) { out->err = DR_ERR_NOMEM; return; }
        w->heap = h; w->cap = nc; w->hcap = nc * 2;
    }
    for (size_t i = 0; i < n; i++) {
        w->id[i] = t->byte_id[s[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = (i + 1 < n) ? (int32_t)i + 1 : -1;
    }
    w->hn = 0;
    /* a byte without a token (incomplete vocabulary) has id -1 and never merges */
    for (size_t i = 0; i + 1 < n; i++)
        if (w->id[i] >= 0 && w->id[i + 1] >= 0) try_pair(t, w, (int32_t)i);
    while (w->hn) {
        heap_ent e = heap_pop(w);
        int32_t p = e.pos, q = w->next[p];
        if (w->id[p] != e.a || q < 0 || w->id[q] != e.b) continue; /* stale */
        const tok_merge_slot *m = merge_find(t, e.a, e.b);
        w->id[p] = m->result;
        w->id[q] = -2; /* dead */
        w->next[p] = w->next[q];
        if (w->next[q] >= 0) w->prev[w->next[q]] = p;
        /* heap has room: each merge removes one symbol and adds at most two entries;
         * compact when nearly full by dropping stale entries */
        if (w->hn + 2 > w->hcap) {
            size_t k = 0;
            for (size_t i = 0; i < w->hn; i++) {
                heap_ent x = w->heap[i];
                if (w->id[x.pos] == x.a && w->next[x.pos] >= 0 && w->id[w->next[x.pos]] == x.b) w->heap[k++] = x;
            }
            size_t keep = k;
            w->hn = 0;
            for (size_t i = 0; i < keep; i++) heap_push(w, w->heap[i]);
        }
        if (w->prev[p] >= 0) try_pair(t, w, w->prev[p]);
        try_pair(t, w, p);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i]) {
        if (w->id[i] >= 0) ivec_push(out, w->id[i]);
        else {
            /* unmapped byte: nothing in the vocabulary can stand for it */
            if (!out->err) out->err = dr_error(DR_ERR_FORMAT, "tokenizer: byte 0x%02x has no token", s[i]);
        }
    }
}

/* Per-call cache of short pieces (long inputs repeat words a lot). */
#define CACHE_MAX_PIECE 24
typedef struct cache_ent { uint64_t h; uint8_t len, nids; char bytes[CACHE_MAX_PIECE]; int32_t ids[CACHE_MAX_PIECE]; } cache_ent;
typedef struct piece_cache { cache_ent *e; uint32_t n, cap; } piece_cache;

typedef struct seg_ctx { const tokenizer *t; bpe_work *w; const char *text; ivec *out; piece_cache *cache; } seg_ctx;
static void on_piece(void *ctx, size_t a, size_t b) {
    seg_ctx *c = ctx;
    const uint8_t *s = (const uint8_t *)c->text + a;
    size_t n = b - a;
    if (!c->cache || n > CACHE_MAX_PIECE) { bpe_piece(c->t, c->w, s, n, c->out); return; }
    uint64_t h = dr_hash_bytes(s, n, 0);
    uint32_t mask = c->cache->cap - 1, k = (uint32_t)h & mask;
    cache_ent *e = c->cache->e;
    while (e[k].len) {
        if (e[k].h == h && e[k].len == n && !memcmp(e[k].bytes, s, n)) {
            for (uint32_t i = 0; i < e[k].nids; i++) ivec_push(c->out, e[k].ids[i]);
            return;
        }
        k = (k + 1) & mask;
    }
    size_t before = c->out->n;
    bpe_piece(c->t, c->w, s, n, c->out);
    if (c->out->err || c->cache->n >= c->cache->cap / 2) return;
    e[k].h = h; e[k].len = (uint8_t)n; e[k].nids = (uint8_t)(c->out->n - before);
    memcpy(e[k].bytes, s, n);
    memcpy(e[k].ids, c->out->v + before, (c->out->n - before) * sizeof(int32_t));
    c->cache->n++;
}

static int encode_segment(const tokenizer *t, bpe_work *w, piece_cache *cache, const char *s, size_t n, ivec *out) {
    if (n == 0) return DR_OK;
    char *norm = NULL;
    size_t nn = n;
    if (t->nfc) {
        int rc = tok_nfc(s, n, &norm, &nn);
        if (rc) return rc;
        s = norm;
    }
    seg_ctx c = {t, w, s, out, cache};
    int rc = tok_pretokenize(t->pre, s, nn, on_piece, &c);
    free(norm);
    return rc;
}

int tok_encode(const tokenizer *t, const char *text, size_t len, int flags, int32_t **ids, size_t *n_ids) {
    *ids = NULL; *n_ids = 0;
    ivec out = {0};
    bpe_work w = {0};
    piece_cache cache = {0}, *pc = NULL;
    int rc = DR_OK;
    if (len >= 4096) { /* worth a cache: about one slot per 4 bytes of text, at most 32k */
        cache.cap = 1024;
        while (cache.cap < len / 4 && cache.cap < (1u << 15)) cache.cap <<= 1;
        cache.e = dr_calloc(cache.cap, sizeof(cache_ent));
        if (cache.e) pc = &cache;
    }
    if ((flags & TOK_ENC_ADD_BOS) && t->bos >= 0) ivec_push(&out, t->bos);
    const uint8_t *u = (const uint8_t *)text;
    size_t seg = 0;
    if (t->n_special) {
        for (size_t i = 0; i < len;) {
            int32_t hit = -1;
            if (t->special_first[u[i]]) {
                for (int32_t k = 0; k < t->n_special; k++) {
                    int32_t id = t->special[k];
                    if ((flags & TOK_ENC_NO_SPECIAL) && t->type[id] == TOK_TYPE_CONTROL) continue;
                    if (t->len[id] <= len - i && memcmp(t->str[id], text + i, t->len[id]) == 0) { hit = id; break; }
                }
            }
            if (hit < 0) { i++; continue; }
            if ((rc = encode_segment(t, &w, pc, text + seg, i - seg, &out))) goto done;
            ivec_push(&out, hit);
            i += t->len[hit];
            seg = i;
        }
    }
    rc = encode_segment(t, &w, pc, text + seg, len - seg, &out);
done:
    free(cache.e);
    if (!rc && out.err) rc = out.err == DR_ERR_NOMEM ? dr_error(DR_ERR_NOMEM, "tokenizer: out of memory") : out.err;
    free(w.id); free(w.prev); free(w.next); free(w.heap);
    if (rc) { free(out.v); return rc; }
    *ids = out.v; *n_ids = out.n;
    return DR_OK;
}

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return dr_error(DR_ERR_RANGE, "tokenizer: token id %d out of range (vocabulary %d)", ids[i], t->n_vocab);
        total += t->piece_len[ids[i]];
    }
    char *r = dr_malloc(total + 1);
    if (!r) return DR_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (t->type[id] == TOK_TYPE_CONTROL)) continue;
        memcpy(r + o, t->piece[id], t->piece_len[id]);
        o += t->piece_len[id];
    }
    r[o] = 0;
    *out = r;
    if (len) *len = o;
    return DR_OK;
}

/* ---------------- ChatML ---------------- */
/* Recognised by the tags each family's template writes, as llama.cpp recognises templates:
 * no Jinja is run. */
tok_chat_form tok_chat_form_detect(const char *tmpl) {
    if (!tmpl) return TOK_CHAT_CHATML;
    if (strstr(tmpl, "<|start_header_id|>")) return TOK_CHAT_LLAMA3;
    if (strstr(tmpl, "<|im_start|>")) return TOK_CHAT_CHATML;
    return TOK_CHAT_UNKNOWN;
}

tok_chat_form tok_chat_form_of(const tokenizer *t) { return tok_chat_form_detect(t->chat_template); }
const char *tok_chat_template(const tokenizer *t) { return t->chat_template; }

int tok_chat_format_as(tok_chat_form form, const tok_chat_msg *msgs, size_t n, int add_generation_prompt, char **out) {
    *out = NULL;
    if (form != TOK_CHAT_CHATML && form != TOK_CHAT_LLAMA3)
        return dr_error(DR_ERR_UNSUPPORTED, "the chat template is neither ChatML nor Llama-3"),
               dr_error_hint("give the prompt already in the model's chat form");
    /* per message: the role, the content and the form's tags */
    static const char *const open[] = {"<|im_start|>", "<|start_header_id|>"}, *const mid[] = {"\n", "<|end_header_id|>\n\n"},
                             *const close[] = {"<|im_end|>\n", "<|eot_id|>"};
    const int f = form == TOK_CHAT_LLAMA3;
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role) return dr_error(DR_ERR_ARG, "chat message %zu has no role", i);
        total += strlen(msgs[i].role) + (msgs[i].content ? strlen(msgs[i].content) : 0) + 48;
    }
    total += 48;
    char *r = dr_malloc(total);
    if (!r) return DR_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(r + o, total - o, "%s%s%s%s%s", open[f], msgs[i].role, mid[f],
                              msgs[i].content ? msgs[i].content : "", close[f]);
    if (add_generation_prompt) o += (size_t)snprintf(r + o, total - o, "%sassistant%s", open[f], mid[f]);
    *out = r;
    return DR_OK;
}

int tok_chat_format(const tok_chat_msg *msgs, size_t n, int add_generation_prompt, char **out) {
    return tok_chat_format_as(TOK_CHAT_CHATML, msgs, n, add_generation_prompt, out);
}
