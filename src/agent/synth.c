/* Synthetic warm-start trajectories ("TRM-based data rollout"): protocol-valid texts built
 * from the history's aspects and the real tool results. */
#include "deeprec/agent.h"
#include "agent/internal.h"
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ASPECTS 256
#define RRF_K 60.0

typedef struct aspect {
    char *name;   /* lowercase */
    int count;
    int last;     /* last history position where seen */
} aspect;

typedef struct aspects {
    aspect a[MAX_ASPECTS];
    int n;
} aspects;

static void aspects_free(aspects *s) {
    for (int i = 0; i < s->n; i++) free(s->a[i].name);
    s->n = 0;
}

static int aspects_add(aspects *s, const char *p, size_t n, int pos) {
    char buf[128];
    if (n == 0) return DR_OK;
    if (n >= sizeof buf) n = sizeof buf - 1;
    for (size_t i = 0; i < n; i++) buf[i] = (char)tolower((unsigned char)p[i]);
    buf[n] = 0;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->a[i].name, buf)) {
            s->a[i].count++;
            s->a[i].last = pos;
            return DR_OK;
        }
    if (s->n == MAX_ASPECTS) return DR_OK;
    char *d = dr_strdup(buf);
    if (!d) return dr_error_code();
    s->a[s->n++] = (aspect){d, 1, pos};
    return DR_OK;
}

static int cmp_aspect(const void *x, const void *y) {
    const aspect *a = x, *b = y;
    if (a->count != b->count) return b->count - a->count;
    if (a->last != b->last) return b->last - a->last;
    return strcmp(a->name, b->name);
}

static int is_stopword(const char *p, size_t n) {
    static const char *const sw[] = {"with", "from", "that", "this", "what", "when", "your", "their", "there",
                                     "into", "about", "item", "part", "volume", "edition", NULL};
    for (int i = 0; sw[i]; i++)
        if (strlen(sw[i]) == n && !strncasecmp(sw[i], p, n)) return 1;
    return 0;
}

/* The aspects of one item: its categories ("a, b"), or title words. Calls fn for each. */
static int item_aspects(const agent_catalog *c, int32_t item, int use_cats, aspects *s, int pos) {
    int rc = DR_OK;
    if (use_cats) {
        const char *p = agent_catalog_categories(c, item);
        while (*p && !rc) {
            const char *q = strstr(p, ", ");
            size_t n = q ? (size_t)(q - p) : strlen(p);
            rc = aspects_add(s, p, n, pos);
            if (!q) break;
            p = q + 2;
        }
    } else {
        const char *p = agent_catalog_title(c, item);
        while (*p && !rc) {
            while (*p && !isalpha((unsigned char)*p)) p++;
            const char *q = p;
            while (*q && isalpha((unsigned char)*q)) q++;
            if (q - p >= 4 && !is_stopword(p, (size_t)(q - p))) rc = aspects_add(s, p, (size_t)(q - p), pos);
            p = q;
        }
    }
    return rc;
}

/* The most frequent pair of aspects inside one item (ties: the most recent, then by name),
 * other than the pair {x, y} (the dominant two). */
static int best_pair(const agent_catalog *c, const int32_t *h, int64_t n, int use_cats, const char *x, const char *y,
                     char *out, size_t cap) {
    aspects pairs = {0};
    int rc = DR_OK;
    for (int64_t i = 0; i < n && !rc; i++) {
        aspects one = {0};
        rc = item_aspects(c, h[i], use_cats, &one, (int)i);
        for (int a = 0; a < one.n && !rc; a++)
            for (int b = a + 1; b < one.n && !rc; b++) {
                char buf[260];
                int k = snprintf(buf, sizeof buf, "%s %s", one.a[a].name, one.a[b].name);
                rc = aspects_add(&pairs, buf, (size_t)(k < (int)sizeof buf ? k : (int)sizeof buf - 1), (int)i);
            }
        aspects_free(&one);
    }
    out[0] = 0;
    if (!rc && pairs.n) {
        qsort(pairs.a, (size_t)pairs.n, sizeof(aspect), cmp_aspect);
        char ex1[260] = "", ex2[260] = "";
        if (x && y) {
            snprintf(ex1, sizeof ex1, "%s %s", x, y);
            snprintf(ex2, sizeof ex2, "%s %s", y, x);
        }
        for (int i = 0; i < pairs.n; i++)
            if (strcmp(pairs.a[i].name, ex1) && strcmp(pairs.a[i].name, ex2)) {
                snprintf(out, cap, "%s", pairs.a[i].name);
                break;
            }
    }
    aspects_free(&pairs);
    return rc;
}

static void join2(const aspects *s, char *out, size_t cap) {
    out[0] = 0;
    if (s->n >= 2) snprintf(out, cap, "%s; %s", s->a[0].name, s->a[1].name);
    else if (s->n == 1) snprintf(out, cap, "%s", s->a[0].name);
}

static void words2(const aspects *s, char *out, size_t cap) {
    out[0] = 0;
    if (s->n >= 2) snprintf(out, cap, "%s and %s", s->a[0].name, s->a[1].name);
    else if (s->n == 1) snprintf(out, cap, "%s", s->a[0].name);
    else snprintf(out, cap, "varied things");
}

void agent_synth_traj_free(agent_synth_traj *t) {
    if (!t) return;
    free(t->prompt);
    free(t->completion);
    free(t->tool_spans);
    memset(t, 0, sizeof *t);
}

typedef struct cand {
    int32_t item;
    double score;
    int first; /* order of first retrieval */
} cand;

static int cmp_cand(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->first - b->first;
}

int agent_synth_one(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t n_hist,
                    const agent_synth_opts *o, agent_synth_traj *out) {
    memset(out, 0, sizeof *out);
    agent_synth_opts def = {0};
    if (!o) o = &def;
    int max_hist = o->max_hist > 0 ? o->max_hist : AGENT_MAX_HIST;
    int k = o->tool_k > 0 ? o->tool_k : AGENT_TOOL_K;
    dr_rng rng;
    dr_rng_seed(&rng, o->seed);
    const int32_t *shown = hist;
    int64_t n_shown = n_hist > max_hist ? max_hist : n_hist;
    shown = hist + (n_hist - n_shown);
    int use_cats = agent_catalog_has_categories(c);

    aspects dom = {0}, rec = {0};
    char pair[260] = "", prefs[3][300], dom_words[300], rec_words[300];
    int rc = DR_OK, n_prefs = 0;
    for (int64_t i = 0; i < n_shown && !rc; i++) rc = item_aspects(c, shown[i], use_cats, &dom, (int)i);
    for (int64_t i = n_shown > 3 ? n_shown - 3 : 0; i < n_shown && !rc; i++)
        rc = item_aspects(c, shown[i], use_cats, &rec, (int)i);
    agent_buf comp = {0};
    int32_t *ids = NULL;
    float *scores = NULL;
    cand *cands = NULL;
    int n_cands = 0, cap_cands = 0;
    int64_t(*spans)[2] = NULL;
    if (rc) goto done;
    qsort(dom.a, (size_t)dom.n, sizeof(aspect), cmp_aspect);
    qsort(rec.a, (size_t)rec.n, sizeof(aspect), cmp_aspect);
    if ((rc = best_pair(c, shown, n_shown, use_cats, dom.n >= 2 ? dom.a[0].name : NULL,
                        dom.n >= 2 ? dom.a[1].name : NULL, pair, sizeof pair)))
        goto done;
    char cand_prefs[3][300];
    join2(&dom, cand_prefs[0], sizeof cand_prefs[0]);
    join2(&rec, cand_prefs[1], sizeof cand_prefs[1]);
    snprintf(cand_prefs[2], sizeof cand_prefs[2], "%s", pair);
    if (!cand_prefs[0][0]) snprintf(cand_prefs[0], sizeof cand_prefs[0], "popular; well liked");
    int want = 1 + (int)dr_rng_below(&rng, 3);
    int forced = o->forced_preference != NULL;
    if (forced) {
        snprintf(prefs[0], sizeof prefs[0], "%s", o->forced_preference);
        n_prefs = 1;
    }
    for (int i = 0; i < 3 && n_prefs < want && !forced; i++) {
        if (!cand_prefs[i][0]) continue;
        int dup = 0;
        for (int j = 0; j < n_prefs; j++) dup |= !strcmp(prefs[j], cand_prefs[i]);
        if (!dup) memcpy(prefs[n_prefs++], cand_prefs[i], sizeof prefs[0]);
    }
    words2(&dom, dom_words, sizeof dom_words);
    words2(&rec, rec_words, sizeof rec_words);

    agent_prompt_opts po = {o->chat, max_hist, 0};
    if ((rc = agent_prompt_build(c, hist, n_hist, &po, &out->prompt))) goto done;
    ids = dr_calloc((size_t)k, sizeof *ids);
    scores = dr_calloc((size_t)k, sizeof *scores);
    spans = dr_calloc(3, sizeof *spans);
    if (!ids || !scores || !spans) {
        rc = dr_error_code();
        goto done;
    }
    static const char *const intro_fmt[] = {
        "The history is mostly %s; the latest items are %s.",
        "This user keeps coming back to %s, and lately to %s.",
        "Looking at the history: %s dominate, the most recent items are %s.",
    };
    agent_buf_str(&comp, AGENT_TAG_THINK);
    int intro = (int)dr_rng_below(&rng, 3); /* drawn in both forms so the rest stays seeded alike */
    if (!forced) {
        agent_buf_printf(&comp, intro_fmt[intro], dom_words, rec_words);
        agent_buf_str(&comp, n_prefs > 1 ? " I will search several aspects, starting with the main taste.\n"
                                         : " I will search for the main taste.\n");
    }
    static const char *const next_text[3] = {"", "Next, the recent interest.\n", "Now a combination inside one item.\n"};
    int n_spans = 0;
    for (int p = 0; p < n_prefs; p++) {
        if (p) {
            agent_buf_str(&comp, next_text[p < 3 ? p : 2]);
        }
        agent_buf_str(&comp, AGENT_TAG_PREF);
        agent_buf_str(&comp, prefs[p]);
        agent_buf_str(&comp, AGENT_TAG_PREF_END);
        int n = 0;
        if ((rc = tool->retrieve(tool->ctx, hist, n_hist, prefs[p], k, ids, scores, &n))) goto done;
        if (n < 0 || n > k) {
            rc = dr_error(DR_ERR_INTERNAL, "synth: the tool returned %d items for k = %d", n, k);
            goto done;
        }
        char *tt;
        if ((rc = agent_tool_result_text(c, ids, n, &tt))) goto done;
        /* a forced call is masked from the start of the completion, as the rollout masks it */
        spans[n_spans][0] = forced ? 0 : (int64_t)comp.n;
        agent_buf_str(&comp, tt);
        spans[n_spans][1] = (int64_t)comp.n;
        n_spans++;
        free(tt);
        for (int i = 0; i < n; i++) {
            int32_t it = ids[i], in_hist = 0;
            for (int64_t h = 0; h < n_hist && !in_hist; h++) in_hist = hist[h] == it;
            if (in_hist || it <= 0 || it > agent_catalog_n_items(c)) continue;
            int j = 0;
            while (j < n_cands && cands[j].item != it) j++;
            if (j == n_cands) {
                if (n_cands == cap_cands) {
                    cap_cands = cap_cands ? 2 * cap_cands : 64;
                    cand *nc = dr_realloc(cands, (size_t)cap_cands, sizeof *nc);
                    if (!nc) {
                        rc = dr_error_code();
                        goto done;
                    }
                    cands = nc;
                }
                cands[n_cands++] = (cand){it, 0.0, n_cands};
            }
            cands[j].score += 1.0 / (RRF_K + (double)(i + 1));
        }
        if (n > 0)
            agent_buf_printf(&comp, "%s is the closest match%s.\n", agent_catalog_title(c, ids[0]),
                             p + 1 < n_prefs ? "; more to explore" : "");
        else
            agent_buf_str(&comp, "Nothing came back for this one.\n");
    }
    if (n_cands < AGENT_N_REC) {
        rc = dr_error(DR_ERR_RANGE, "synth: only %d new items retrieved, need %d", n_cands, AGENT_N_REC);
        goto done;
    }
    qsort(cands, (size_t)n_cands, sizeof *cands, cmp_cand);
    agent_buf_printf(&comp, "I gathered %d items. Those found by several searches and near the top of a list come first.\n",
                     n_cands);
    agent_buf_str(&comp, AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n");
    for (int i = 0; i < AGENT_N_REC; i++) agent_buf_printf(&comp, "%d. %s\n", i + 1, agent_catalog_title(c, cands[i].item));
    agent_buf_str(&comp, AGENT_TAG_ANSWER_END);
    if (comp.err) {
        rc = DR_ERR_NOMEM;
        goto done;
    }
    int f = agent_format_check(comp.s, comp.n);
    if (f != AGENT_FMT_OK) {
        rc = dr_error(DR_ERR_FORMAT, "synth: the trajectory breaks the format rule '%s' (odd item titles?)",
                      agent_format_name(f));
        goto done;
    }
    out->completion = agent_buf_take(&comp);
    if (!out->completion) {
        rc = dr_error_code();
        goto done;
    }
    out->tool_spans = spans;
    spans = NULL;
    out->n_spans = n_spans;
    out->n_calls = n_prefs;
done:
    aspects_free(&dom);
    aspects_free(&rec);
    agent_buf_free(&comp);
    free(ids);
    free(scores);
    free(cands);
    free(spans);
    if (rc) agent_synth_traj_free(out);
    return rc;
}

int agent_synth_json(const agent_synth_traj *t, char **out) {
    *out = NULL;
    json_t *o = json_object(), *m = json_array();
    if (!o || !m) {
        json_decref(o);
        json_decref(m);
        return dr_error(DR_ERR_NOMEM, "out of memory");
    }
    json_object_set_new(o, "prompt", json_string(t->prompt));
    json_object_set_new(o, "completion", json_string(t->completion));
    for (int i = 0; i < t->n_spans; i++)
        json_array_append_new(m, json_pack("[II]", (json_int_t)t->tool_spans[i][0], (json_int_t)t->tool_spans[i][1]));
    json_object_set_new(o, "mask", m);
    *out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return *out ? DR_OK : dr_error(DR_ERR_FORMAT, "cannot serialise a trajectory (invalid UTF-8?)");
}
