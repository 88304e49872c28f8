/* Baselines of the evaluation: the fixed history preference of "rerank", the
 * retriever-alone "trm" top-10 and the warm-start teacher's list ("teacher"). */
#include "deeprec/evaluate.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PREF_LAST 10  /* history items the rerank preference looks at */
#define PREF_TERMS 3  /* terms it keeps */

typedef struct term {
    char *s;
    int count;
    int64_t last; /* most recent history position where it occurred */
} term;

typedef struct terms {
    term *v;
    int n, cap;
} terms;

static int terms_add(terms *t, const char *s, size_t len, int64_t pos) {
    for (int i = 0; i < t->n; i++)
        if (strlen(t->v[i].s) == len && !strncasecmp(t->v[i].s, s, len)) {
            t->v[i].count++;
            if (pos > t->v[i].last) t->v[i].last = pos;
            return DR_OK;
        }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        term *v = dr_realloc(t->v, (size_t)cap, sizeof *v);
        if (!v) return dr_error_code();
        t->v = v;
        t->cap = cap;
    }
    char *c = dr_malloc(len + 1);
    if (!c) return dr_error_code();
    memcpy(c, s, len);
    c[len] = 0;
    t->v[t->n++] = (term){c, 1, pos};
    return DR_OK;
}

static void terms_free(terms *t) {
    for (int i = 0; i < t->n; i++) free(t->v[i].s);
    free(t->v);
}

static int term_cmp(const void *a, const void *b) {
    const term *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->last != y->last) return x->last > y->last ? -1 : 1;
    return strcmp(x->s, y->s);
}

/* Categories "a, b" of the catalog (split on ','), or title words of 4+ letters. */
static int collect(const agent_catalog *c, const int32_t *hist, int64_t from, int64_t n_hist, int use_cats, terms *t) {
    int rc = DR_OK;
    for (int64_t i = from; i < n_hist && !rc; i++) {
        const char *s = use_cats ? agent_catalog_categories(c, hist[i]) : agent_catalog_title(c, hist[i]);
        const char *p = s;
        while (*p && !rc) {
            if (use_cats) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                const char *b = p;
                while (len && isspace((unsigned char)*b)) b++, len--;
                while (len && isspace((unsigned char)b[len - 1])) len--;
                if (len && b[0] != '(') rc = terms_add(t, b, len, i); /* "(no genres listed)" */
                p = e ? e + 1 : p + strlen(p);
            } else {
                while (*p && !isalpha((unsigned char)*p)) p++;
                const char *b = p;
                while (isalpha((unsigned char)*p)) p++;
                if (p - b >= 4) rc = terms_add(t, b, (size_t)(p - b), i);
            }
        }
    }
    return rc;
}

int eval_history_preference(const agent_catalog *c, const int32_t *hist, int64_t n_hist, char **out) {
    *out = NULL;
    if (n_hist <= 0) {
        *out = dr_strdup("");
        return *out ? DR_OK : dr_error_code();
    }
    int64_t from = n_hist > PREF_LAST ? n_hist - PREF_LAST : 0;
    terms t = {0};
    int rc = collect(c, hist, from, n_hist, 1, &t);
    if (!rc && t.n == 0) rc = collect(c, hist, from, n_hist, 0, &t);
    if (rc) {
        terms_free(&t);
        return rc;
    }
    if (t.n == 0) {
        terms_free(&t);
        *out = dr_strdup(agent_catalog_title(c, hist[n_hist - 1]));
        return *out ? DR_OK : dr_error_code();
    }
    qsort(t.v, (size_t)t.n, sizeof *t.v, term_cmp);
    size_t len = 1;
    int k = t.n < PREF_TERMS ? t.n : PREF_TERMS;
    for (int i = 0; i < k; i++) len += strlen(t.v[i].s) + 2;
    char *s = dr_malloc(len);
    if (!s) {
        terms_free(&t);
        return dr_error_code();
    }
    s[0] = 0;
    for (int i = 0; i < k; i++) {
        if (i) strcat(s, "; ");
        strcat(s, t.v[i].s);
    }
    terms_free(&t);
    *out = s;
    return DR_OK;
}

int eval_trm_one(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t n_hist, int32_t target,
                 int *rank_exact, int *rank_substr) {
    int32_t ids[AGENT_N_REC];
    float scores[AGENT_N_REC];
    int n = 0;
    *rank_exact = *rank_substr = -1;
    int rc = tool->retrieve(tool->ctx, hist, n_hist, "", AGENT_N_REC, ids, scores, &n);
    if (rc) return rc;
    if (n < 0 || n > AGENT_N_REC) return dr_error(DR_ERR_INTERNAL, "eval trm: the tool returned %d items", n);
    for (int i = 0; i < n; i++) {
        if (*rank_exact < 0 && ids[i] == target) *rank_exact = i;
        if (*rank_substr < 0 && agent_line_mentions(c, agent_catalog_title(c, ids[i]), target)) *rank_substr = i;
    }
    return DR_OK;
}

int eval_teacher_one(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t n_hist,
                     int32_t target, const agent_synth_opts *o, int *rank_exact, int *rank_substr) {
    *rank_exact = *rank_substr = -1;
    agent_synth_traj t;
    int rc = agent_synth_one(c, tool, hist, n_hist, o, &t);
    if (rc == DR_ERR_RANGE || rc == DR_ERR_FORMAT) { /* the warm start skips such users; here a miss */
        dr_error_clear();
        return DR_OK;
    }
    if (rc) return rc;
    agent_answer a;
    rc = agent_answer_parse(t.completion, strlen(t.completion), &a);
    agent_synth_traj_free(&t);
    if (rc) return rc;
    /* the lines are catalog titles: the exact step resolves them, no fallback list needed */
    for (int i = 0; i < a.n_lines; i++) {
        if (*rank_exact < 0 && agent_resolve_line(c, a.lines[i], NULL, 0, NULL) == target) *rank_exact = i;
        if (*rank_substr < 0 && agent_line_mentions(c, a.lines[i], target)) *rank_substr = i;
    }
    agent_answer_free(&a);
    return DR_OK;
}
