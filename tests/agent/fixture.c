#include "fixture.h"
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
static int fx_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = malloc((len ? len : 1) * sizeof(int32_t));
    if (!*ids) return dr_error(DR_ERR_NOMEM, "oom");
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return 0;
}
static int fx_piece(void *ctx, int32_t id, char *buf, size_t cap) {
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
static int fx_decode(void *ctx, const int *slots, int n, int32_t *toks, float *lps) {
    fx_model *fm = ctx;
    if (n > fm->max_batch_seen) fm->max_batch_seen = n;
    for (int i = 0; i < n; i++) {
        int s = slots[i];
        if (!fm->slot_used[s]) return dr_error(DR_ERR_INTERNAL, "decode on free slot %d", s);
        size_t len;
        char end;
        const char *t = fx_turn(fm->scripts[fm->slot_script[s]], fm->slot_turn[s], &len, &end);
        int p = fm->slot_pos[s]++;
        if ((size_t)p < len) toks[i] = (unsigned char)t[p];
        else toks[i] = end == 2 ? ' ' : 256;
        lps[i] = -0.5f - 0.001f * (float)(p % 100);
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
