/* The agent's view of the item catalog: display titles, categories, normalised-title
 * index, and the resolution of answer lines to items. */
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "agent/internal.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct agent_catalog {
    int32_t n_items;
    char **titles;  /* n_items + 1 */
    char **cats;    /* n_items + 1, "a, b" */
    char **norm;    /* n_items + 1, normalised titles */
    int has_cats;
    dr_strindex index; /* normalised title -> item id */
};

static const char *norm_key(const void *ctx, int64_t i, size_t *n) {
    const agent_catalog *c = ctx;
    *n = strlen(c->norm[i]);
    return c->norm[i];
}

static int is_ascii_punct_space(unsigned char c) { return c < 0x80 && (ispunct(c) || isspace(c)); }

char *agent_title_normalize(const char *s, long len) {
    size_t n = len < 0 ? strlen(s) : (size_t)len;
    char *out = malloc(n + 1);
    if (!out) {
        dr_error(DR_ERR_NOMEM, "out of memory");
        return NULL;
    }
    size_t a = 0, b = n;
    while (a < b && is_ascii_punct_space((unsigned char)s[a])) a++;
    while (b > a && is_ascii_punct_space((unsigned char)s[b - 1])) b--;
    size_t k = 0;
    int space = 0;
    for (size_t i = a; i < b; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && isspace(c)) {
            space = 1;
            continue;
        }
        if (space && k) out[k++] = ' ';
        space = 0;
        out[k++] = (char)(c < 0x80 ? tolower(c) : c);
    }
    out[k] = 0;
    return out;
}

static char *cats_display(const char *raw) {
    dr_buf b = {0};
    const char *p = raw ? raw : "";
    int first = 1;
    while (*p) {
        const char *q = strchr(p, '|');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        size_t a = 0;
        while (a < n && isspace((unsigned char)p[a])) a++;
        while (n > a && isspace((unsigned char)p[n - 1])) n--;
        if (n > a) {
            if (!first) dr_buf_puts(&b, ", ");
            dr_buf_put(&b, p + a, n - a);
            first = 0;
        }
        if (!q) break;
        p = q + 1;
    }
    return dr_buf_take(&b);
}

int agent_catalog_build(const dr_dataset *d, agent_catalog **out) {
    *out = NULL;
    if (!d || d->n_items < 0) return dr_error(DR_ERR_ARG, "agent_catalog_build: no dataset");
    agent_catalog *c = calloc(1, sizeof *c);
    if (!c) return dr_error(DR_ERR_NOMEM, "out of memory");
    int32_t n = d->n_items;
    c->n_items = n;
    c->titles = dr_calloc((size_t)n + 1, sizeof(char *));
    c->cats = dr_calloc((size_t)n + 1, sizeof(char *));
    c->norm = dr_calloc((size_t)n + 1, sizeof(char *));
    int64_t *pop = dr_calloc((size_t)n + 1, sizeof(int64_t));
    dr_strindex_init(&c->index, norm_key, c, 0);
    if (!c->titles || !c->cats || !c->norm || !pop || dr_strindex_reserve(&c->index, (size_t)n)) goto nomem;
    for (int32_t u = 0; u < d->n_users; u++) {
        const int32_t *items;
        int64_t k = dr_data_train(d, u, &items);
        for (int64_t i = 0; i < k; i++)
            if (items[i] > 0 && items[i] <= n) pop[items[i]]++;
    }
    c->titles[0] = dr_strdup("");
    c->cats[0] = dr_strdup("");
    c->norm[0] = dr_strdup("");
    if (!c->titles[0] || !c->cats[0] || !c->norm[0]) goto nomem;
    for (int32_t i = 1; i <= n; i++) {
        const char *t = d->titles ? d->titles[i] : NULL;
        if (t && *t) {
            c->titles[i] = dr_strdup(t);
        } else {
            dr_buf b = {0};
            dr_buf_printf(&b, "item %s", d->item_ids && d->item_ids[i] ? d->item_ids[i] : "");
            if (!d->item_ids || !d->item_ids[i] || !*d->item_ids[i]) {
                b.n = 0;
                dr_buf_printf(&b, "item %d", (int)i);
            }
            c->titles[i] = dr_buf_take(&b);
        }
        c->cats[i] = cats_display(d->categories ? d->categories[i] : "");
        if (!c->titles[i] || !c->cats[i]) goto nomem;
        if (*c->cats[i]) c->has_cats = 1;
        c->norm[i] = agent_title_normalize(c->titles[i], -1);
        if (!c->norm[i]) goto nomem;
        if (!*c->norm[i]) continue;
        int32_t j = (int32_t)dr_strindex_add(&c->index, i);
        if (j < 0) goto nomem;
        if (pop[i] > pop[j]) dr_strindex_replace(&c->index, i); /* most popular; ties keep the smaller id */
    }
    free(pop);
    *out = c;
    return DR_OK;
nomem:
    free(pop);
    agent_catalog_free(c);
    return dr_error(DR_ERR_NOMEM, "out of memory building the title index (%d items)", (int)n);
}

void agent_catalog_free(agent_catalog *c) {
    if (!c) return;
    for (int32_t i = 0; i <= c->n_items; i++) {
        if (c->titles) free(c->titles[i]);
        if (c->cats) free(c->cats[i]);
        if (c->norm) free(c->norm[i]);
    }
    free(c->titles);
    free(c->cats);
    free(c->norm);
    dr_strindex_free(&c->index);
    free(c);
}

int32_t agent_catalog_n_items(const agent_catalog *c) { return c->n_items; }
const char *agent_catalog_title(const agent_catalog *c, int32_t i) {
    return i > 0 && i <= c->n_items ? c->titles[i] : "";
}
const char *agent_catalog_categories(const agent_catalog *c, int32_t i) {
    return i > 0 && i <= c->n_items ? c->cats[i] : "";
}
int agent_catalog_has_categories(const agent_catalog *c) { return c->has_cats; }

static int32_t find_norm(const agent_catalog *c, const char *norm) {
    if (!*norm) return 0;
    int64_t j = dr_strindex_find(&c->index, norm, strlen(norm));
    return j < 0 ? 0 : (int32_t)j;
}

int32_t agent_catalog_find(const agent_catalog *c, const char *title, long len) {
    char *nt = agent_title_normalize(title, len);
    if (!nt) return 0;
    int32_t r = find_norm(c, nt);
    free(nt);
    return r;
}

/* ---- word-set Jaccard ---- */
typedef struct { const char *p; size_t n; } word;

static int is_word_byte(unsigned char c) { return c >= 0x80 || isalnum(c); }

static int split_words(const char *s, word **out) {
    int n = 0, cap = 0;
    word *w = NULL;
    for (const char *p = s; *p;) {
        if (!is_word_byte((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *q = p;
        while (*q && is_word_byte((unsigned char)*q)) q++;
        int dup = 0;
        for (int i = 0; i < n && !dup; i++)
            if (w[i].n == (size_t)(q - p) && !strncasecmp(w[i].p, p, w[i].n)) dup = 1;
        if (!dup) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                word *nw = realloc(w, (size_t)cap * sizeof *w);
                if (!nw) {
                    free(w);
                    *out = NULL;
                    return -1;
                }
                w = nw;
            }
            w[n++] = (word){p, (size_t)(q - p)};
        }
        p = q;
    }
    *out = w;
    return n;
}

double agent_title_jaccard(const char *a, const char *b) {
    word *wa, *wb;
    int na = split_words(a, &wa), nb = split_words(b, &wb);
    double r = 0;
    if (na > 0 && nb > 0) {
        int inter = 0;
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++)
                if (wa[i].n == wb[j].n && !strncasecmp(wa[i].p, wb[j].p, wa[i].n)) {
                    inter++;
                    break;
                }
        r = (double)inter / (double)(na + nb - inter);
    }
    free(wa);
    free(wb);
    return r;
}

int32_t agent_resolve_line(const agent_catalog *c, const char *line, const int32_t *retrieved, int n_retrieved,
                           int *how) {
    if (how) *how = AGENT_RESOLVE_NONE;
    if (!line) return 0;
    char *nl = agent_title_normalize(line, -1);
    if (!nl) return 0;
    int32_t id = find_norm(c, nl);
    free(nl);
    if (id) {
        if (how) *how = AGENT_RESOLVE_EXACT;
        return id;
    }
    double best = 0;
    int32_t best_id = 0;
    for (int i = 0; i < n_retrieved; i++) {
        int32_t it = retrieved[i];
        if (it <= 0 || it > c->n_items) continue;
        double j = agent_title_jaccard(line, c->titles[it]);
        if (j > best) {
            best = j;
            best_id = it;
        }
    }
    if (best_id && best >= AGENT_FALLBACK_JACCARD) {
        if (how) *how = AGENT_RESOLVE_FALLBACK;
        return best_id;
    }
    return 0;
}

int agent_line_mentions(const agent_catalog *c, const char *line, int32_t item) {
    if (!line || item <= 0 || item > c->n_items || !*c->norm[item]) return 0;
    char *nl = agent_title_normalize(line, -1);
    if (!nl) return 0;
    int r = strstr(nl, c->norm[item]) != NULL;
    free(nl);
    return r;
}
