#include "fixture.h"
#include "harness.h"
#include "common/tiny_llm.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const fx_titles[] = {"", "Toy Story", "Jumanji", "Heat", "GoldenEye", "Casino",
    "Sense and Sensibility", "Four Rooms", "Babe", "Se7en", "The Usual Suspects", "Toy Story", "Apollo 13", ""};
static const char *const fx_cats[] = {"", "Animation|Children|Comedy", "Adventure|Children|Fantasy",
    "Action|Crime|Thriller", "Action|Adventure|Thriller", "Crime|Drama", "Drama|Romance", "Comedy",
    "Children|Drama", "Mystery|Thriller", "Crime|Mystery|Thriller", "Animation", "Adventure|Drama|IMAX", ""};

void fx_dataset(dr_dataset *d) {
    memset(d, 0, sizeof *d);
    static const int32_t seqs[3][8] = {{1, 2, 3, 4, 5, 6, 0}, {1, 1, 7, 8, 9, 0}, {11, 11, 11, 11, 12, 3, 0}};
    d->n_users = 3;
    d->n_items = 13;
    d->offsets = calloc(4, sizeof(int64_t));
    d->items = calloc(32, sizeof(int32_t));
    int64_t k = 0;
    for (int u = 0; u < 3; u++) {
        d->offsets[u] = k;
        for (int i = 0; seqs[u][i]; i++) d->items[k++] = seqs[u][i];
    }
    d->offsets[3] = k;
    d->n_inter = k;
    d->user_ids = calloc(3, sizeof(char *));
    for (int u = 0; u < 3; u++) {
        char b[16];
        snprintf(b, sizeof b, "u%d", u);
        d->user_ids[u] = strdup(b);
    }
    d->item_ids = calloc(14, sizeof(char *));
    d->titles = calloc(14, sizeof(char *));
    d->categories = calloc(14, sizeof(char *));
    for (int i = 0; i <= 13; i++) {
        char b[16];
        snprintf(b, sizeof b, "i%d", i);
        d->item_ids[i] = strdup(i ? b : "");
        d->titles[i] = strdup(fx_titles[i]);
        d->categories[i] = strdup(fx_cats[i]);
    }
}

void fx_dataset_free(dr_dataset *d) { dr_data_free(d); }

/* ---- scripted model ---- */
const char *const fx_tags[FX_N_TAGS] = {AGENT_TAG_THINK, AGENT_TAG_THINK_END, AGENT_TAG_PREF,   AGENT_TAG_PREF_END,
                                        AGENT_TAG_LIST,  AGENT_TAG_LIST_END,  AGENT_TAG_ANSWER, AGENT_TAG_ANSWER_END};

/* The token at text[*pos] (a byte, or a tag token with tag_tokens), advancing *pos past it. */
static int32_t fx_next_token(const fx_model *fm, const char *text, size_t len, size_t *pos) {
    for (int k = 0; fm->tag_tokens && k < FX_N_TAGS; k++) {
        size_t m = strlen(fx_tags[k]);
        if (len - *pos >= m && !memcmp(text + *pos, fx_tags[k], m)) {
            *pos += m;
            return FX_TAG0 + k;
        }
    }
    return (unsigned char)text[(*pos)++];
}
static int fx_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = malloc((len ? len : 1) * sizeof(int32_t));
    if (!*ids) return dr_error(DR_ERR_NOMEM, "oom");
    size_t k = 0;
    for (size_t i = 0; i < len;) (*ids)[k++] = fx_next_token(ctx, text, len, &i);
    *n = k;
    return 0;
}
static int fx_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    const fx_model *fm = ctx;
    if (fm->tag_tokens && id >= FX_TAG0 && id < FX_TAG0 + FX_N_TAGS) {
        size_t m = strlen(fx_tags[id - FX_TAG0]);
        memcpy(buf, fx_tags[id - FX_TAG0], m < cap ? m : cap);
        return (int)m;
    }
    if (id < 0 || id > 256) return -1;
    if (id == 256) return 0;
    if (cap) buf[0] = (char)id;
    return 1;
}
static int fx_is_eos(void *ctx, int32_t id) { return id == 256; }

/* turn t of script s: pointer and length; *end = terminator char */
static const char *fx_turn(const char *s, int t, size_t *len, char *end) {
    for (int i = 0; i < t; i++) {
        size_t n = strlen(s);
        if (!n) break;
        s += n + 1;
    }
    size_t n = strlen(s);
    *end = 0;
    if (n && (s[n - 1] == 1 || s[n - 1] == 2)) {
        *end = s[n - 1];
        n--;
    }
    *len = n;
    return s;
}

static int fx_append(void *ctx, int slot, const int32_t *ids, int n) {
    fx_model *fm = ctx;
    fm->n_appends++;
    if (!fm->slot_used[slot]) {
        fm->slot_used[slot] = 1;
        fm->slot_script[slot] = fm->started++ % fm->n_scripts;
        fm->slot_turn[slot] = 0;
        fm->slot_pos[slot] = 0;
    } else {
        fm->slot_turn[slot]++;
        fm->slot_pos[slot] = 0;
    }
    return 0;
}
static int fx_fork(void *ctx, int src, int dst) {
    fx_model *fm = ctx;
    fm->n_forks++;
    if (!fm->slot_used[src] || fm->slot_used[dst]) return dr_error(DR_ERR_INTERNAL, "bad fork %d -> %d", src, dst);
    fm->slot_used[dst] = 1;
    fm->slot_script[dst] = fm->started++ % fm->n_scripts;
    fm->slot_turn[dst] = 0;
    fm->slot_pos[dst] = 0;
    return 0;
}
static int fx_decode(void *ctx, const int *slots, int n, const agent_allow *allow, int32_t *toks, float *lps) {
    fx_model *fm = ctx;
    if (n > fm->max_batch_seen) fm->max_batch_seen = n;
    for (int i = 0; i < n; i++) {
        int s = slots[i];
        if (!fm->slot_used[s]) return dr_error(DR_ERR_INTERNAL, "decode on free slot %d", s);
        if (allow && allow[i].n > 0 && fm->follow_script == 2) {
            /* the scripted token when allowed, else a uniform pick among the allowed */
            size_t len, p = (size_t)fm->slot_pos[s];
            char end;
            const char *t = fx_turn(fm->scripts[fm->slot_script[s]], fm->slot_turn[s], &len, &end);
            int32_t want = p < len ? fx_next_token(fm, t, len, &p) : (end == 2 ? ' ' : 256);
            int ok = 0;
            for (int k = 0; k < allow[i].n && !ok; k++) ok = allow[i].ids[k] == want;
            if (ok) fm->slot_pos[s] = (int)p;
            fm->n_constrained++;
            toks[i] = ok ? want : allow[i].ids[dr_rng_below(&fm->pick, (uint64_t)allow[i].n)];
            lps[i] = -logf((float)allow[i].n);
            continue;
        }
        if (allow && allow[i].n > 0 && fm->follow_script) {
            size_t len;
            char end;
            const char *t = fx_turn(fm->scripts[fm->slot_script[s]], fm->slot_turn[s], &len, &end);
            int32_t tok = -1;
            while (tok < 0) {
                size_t p = (size_t)fm->slot_pos[s];
                int32_t want = p < len ? fx_next_token(fm, t, len, &p) : (p++, end == 2 ? ' ' : 256);
                fm->slot_pos[s] = (int)p;
                for (int k = 0; k < allow[i].n && tok < 0; k++)
                    if (allow[i].ids[k] == want) tok = want;
                if (p > len && tok < 0) return dr_error(DR_ERR_INTERNAL, "script end not allowed");
            }
            fm->n_constrained++;
            toks[i] = tok;
            lps[i] = -logf((float)allow[i].n);
            continue;
        }
        if (allow && allow[i].n > 0) {
            /* a uniform pick among the allowed tokens */
            fm->n_constrained++;
            int k = (int)dr_rng_below(&fm->pick, (uint64_t)allow[i].n);
            toks[i] = allow[i].ids[k];
            lps[i] = -logf((float)allow[i].n);
            continue;
        }
        size_t len;
        char end;
        const char *t = fx_turn(fm->scripts[fm->slot_script[s]], fm->slot_turn[s], &len, &end);
        size_t p = (size_t)fm->slot_pos[s];
        int n_lp = (int)(p % 100);
        if (p < len) toks[i] = fx_next_token(fm, t, len, &p);
        else toks[i] = end == 2 ? ' ' : 256, p++;
        fm->slot_pos[s] = (int)p;
        lps[i] = -0.5f - 0.001f * (float)n_lp;
    }
    return 0;
}
static void fx_release(void *ctx, int slot) {
    fx_model *fm = ctx;
    fm->slot_used[slot] = 0;
}

void fx_model_init(fx_model *fm, agent_model *m, int n_slots, const char *const *scripts, int n_scripts) {
    memset(fm, 0, sizeof *fm);
    fm->scripts = scripts;
    fm->n_scripts = n_scripts;
    dr_rng_seed(&fm->pick, 1);
    *m = (agent_model){fm, n_slots, 0, fx_encode, fx_piece, fx_is_eos, fx_append, fx_fork, fx_decode, fx_release};
}

/* ---- scripted tool ---- */
static int fx_retrieve(void *ctx, const int32_t *hist, int64_t n_hist, const char *pref, int k, int32_t *items,
                       float *scores, int *n_out) {
    fx_tool *ft = ctx;
    ft->calls++;
    snprintf(ft->last, sizeof ft->last, "%s", pref);
    if (!strcmp(pref, "FAIL")) return dr_error(DR_ERR_INTERNAL, "scripted failure");
    *n_out = 0;
    if (!strcmp(pref, "EMPTY")) return 0;
    int n = k < 3 ? k : 3;
    for (int i = 0; i < n; i++) {
        items[i] = 1 + (int32_t)((strlen(pref) + (size_t)i) % 12);
        scores[i] = 1.0f - 0.1f * (float)i;
    }
    *n_out = n;
    return 0;
}
void fx_tool_init(fx_tool *ft, agent_tool *t) {
    memset(ft, 0, sizeof *ft);
    *t = (agent_tool){ft, fx_retrieve};
}

char *fx_replace(const char *s, const char *old, const char *new_) {
    const char *p = strstr(s, old);
    if (!p) return NULL;
    size_t a = (size_t)(p - s), on = strlen(old), nn = strlen(new_), sn = strlen(s);
    char *r = malloc(sn - on + nn + 1);
    memcpy(r, s, a);
    memcpy(r + a, new_, nn);
    memcpy(r + a + nn, p + on, sn - a - on + 1);
    return r;
}

void fx_dataset_big(dr_dataset *d, int n_items, int n_users, int with_cats) {
    static const char *const genres[] = {"Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"};
    static const char *const words[] = {"river", "night", "garden", "machine", "winter", "stranger", "castle"};
    memset(d, 0, sizeof *d);
    d->n_items = n_items;
    d->n_users = n_users;
    d->item_ids = calloc((size_t)n_items + 1, sizeof(char *));
    d->titles = calloc((size_t)n_items + 1, sizeof(char *));
    d->categories = calloc((size_t)n_items + 1, sizeof(char *));
    d->item_ids[0] = strdup("");
    d->titles[0] = strdup("");
    d->categories[0] = strdup("");
    for (int i = 1; i <= n_items; i++) {
        char b[128];
        snprintf(b, sizeof b, "i%d", i);
        d->item_ids[i] = strdup(b);
        snprintf(b, sizeof b, "Title %d %s", i, words[i % 7]);
        d->titles[i] = strdup(b);
        b[0] = 0;
        if (with_cats) {
            int n = 1 + i % 3;
            for (int k = 0; k < n; k++) {
                if (k) strcat(b, "|");
                strcat(b, genres[(i * 5 + k * 2) % 6]);
            }
        }
        d->categories[i] = strdup(b);
    }
    d->offsets = calloc((size_t)n_users + 1, sizeof(int64_t));
    d->items = calloc((size_t)n_users * 30, sizeof(int32_t));
    d->user_ids = calloc((size_t)n_users, sizeof(char *));
    dr_rng r;
    dr_rng_seed(&r, 7);
    int64_t k = 0;
    for (int u = 0; u < n_users; u++) {
        char b[16];
        snprintf(b, sizeof b, "u%d", u);
        d->user_ids[u] = strdup(b);
        d->offsets[u] = k;
        int len = 8 + (int)dr_rng_below(&r, 23);
        for (int i = 0; i < len; i++) d->items[k++] = 1 + (int32_t)dr_rng_below(&r, (uint64_t)n_items);
    }
    d->offsets[n_users] = k;
    d->n_inter = k;
}

static int fx_hash_retrieve(void *ctx, const int32_t *hist, int64_t n_hist, const char *pref, int k, int32_t *items,
                            float *scores, int *n_out) {
    fx_hash_tool *ht = ctx;
    ht->calls++;
    uint64_t h = 1469598103934665603ull;
    for (const char *p = pref; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    int n = 0;
    for (int j = 0; j < ht->n_items && n < k; j++) {
        int32_t it = 1 + (int32_t)((h % (uint64_t)ht->n_items + (uint64_t)j * 7) % (uint64_t)ht->n_items);
        int in = 0;
        for (int64_t q = 0; q < n_hist && !in; q++) in = hist[q] == it;
        for (int q = 0; q < n && !in; q++) in = items[q] == it;
        if (in) continue;
        items[n] = it;
        scores[n] = 10.0f - 0.1f * (float)n;
        n++;
    }
    *n_out = n;
    return 0;
}
void fx_hash_tool_init(fx_hash_tool *ht, agent_tool *t, int n_items) {
    ht->n_items = n_items;
    ht->calls = 0;
    *t = (agent_tool){ht, fx_hash_retrieve};
}

/* A 400-token BPE trained on the instructions and some titles, so prompts are a few hundred
 * tokens, under the tests' tiny random qwen2. */
void fx_tiny_llm(llm_model **m, tokenizer **tok) {
    const char *corpus_parts[] = {agent_prompt_instructions(), "Heat Casino Toy Story Jumanji Babe crime thriller drama\n",
                                  "1. Heat\n2. Casino\n3. Se7en\n  - categories: Action, Crime\n"};
    char corpus[16384] = "";
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 3; i++) strncat(corpus, corpus_parts[i], sizeof corpus - strlen(corpus) - 1);
    tx_tiny_llm(corpus, 400, 4096, 0.3f, m, tok);
}
