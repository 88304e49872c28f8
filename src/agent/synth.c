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

/* The kinds of preference of the varied pool. Each call of a varied trajectory is introduced
 * by its kind's sentence, so a student can learn which kind it is writing and when. */
enum synth_kind {
    SYNTH_KIND_DOMINANT = 0, /* the two most frequent aspects of the shown history */
    SYNTH_KIND_RECENT,       /* the two of the last three items */
    SYNTH_KIND_PAIR,         /* the most frequent pair inside one item */
    SYNTH_KIND_LAST,         /* the aspects of the last item */
    SYNTH_KIND_TOP,          /* what the previous call's top three share (a refinement) */
    SYNTH_KIND_MINOR,        /* a less frequent aspect of the history */
    SYNTH_KIND_DOMINANT1,    /* the most frequent aspect alone */
    SYNTH_N_KINDS
};
static const char *const kind_lead[SYNTH_N_KINDS] = {
    "First the main taste.\n",
    "Now the recent interest.\n",
    "Now a combination inside one item.\n",
    "Now what the last item was about.\n",
    "Refining on what the best results share.\n",
    "Now a side interest from the history.\n",
    "Now the single strongest aspect.\n",
};

/* The dominant two aspects of items[0..n) (at most 2, "a; b"), into out. */
static int top_aspects_pref(const agent_catalog *c, const int32_t *items, int n, int use_cats, char *out,
                            size_t cap) {
    aspects s = {0};
    int rc = DR_OK;
    for (int i = 0; i < n && !rc; i++) rc = item_aspects(c, items[i], use_cats, &s, i);
    if (!rc) {
        qsort(s.a, (size_t)s.n, sizeof(aspect), cmp_aspect);
        join2(&s, out, cap);
    }
    aspects_free(&s);
    return rc;
}

/* The answer as a merge that keeps each call's order, as agent_rollout_opts.constrain_order
 * decodes it: every line takes, among the first not yet listed candidate of each call, the
 * known next item when it is one of them, else the one the fusion ranks highest. cands are in
 * fusion order; call_ids holds call p's items at p * k. Writes n_cands items to out. */
static void merge_answer(const cand *cands, int n_cands, const int32_t *call_ids, const int *call_n, int n_calls,
                         int k, int32_t target, int32_t *out) {
    for (int line = 0; line < n_cands; line++) {
        int best = -1; /* index into cands */
        for (int p = 0; p < n_calls; p++)
            for (int j = 0; j < call_n[p]; j++) {
                int q = 0;
                while (q < n_cands && cands[q].item != call_ids[p * k + j]) q++;
                int listed = 0;
                for (int l = 0; l < line && !listed; l++) listed = out[l] == call_ids[p * k + j];
                if (q == n_cands || listed) continue; /* not a candidate (history), or listed */
                if (best < 0 || (cands[best].item != target && (cands[q].item == target || q < best))) best = q;
                break;
            }
        out[line] = cands[best].item;
    }
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
    char pair[260] = "", prefs[4][300], dom_words[300], rec_words[300];
    int rc = DR_OK, n_prefs = 0;
    for (int64_t i = 0; i < n_shown && !rc; i++) rc = item_aspects(c, shown[i], use_cats, &dom, (int)i);
    for (int64_t i = n_shown > 3 ? n_shown - 3 : 0; i < n_shown && !rc; i++)
        rc = item_aspects(c, shown[i], use_cats, &rec, (int)i);
    dr_buf comp = {0};
    int32_t *ids = NULL, *call_ids = NULL, *order = NULL;
    int call_n[4] = {0};
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
    if (o->n_calls > 0) want = o->n_calls < 3 ? o->n_calls : 3;
    int forced = o->forced_preference != NULL;
    int varied = o->varied && !forced;
    /* the anchored form: the open call plus 1-2 aspect calls (2-3 calls in all, as the others);
     * anchor 2 asks the open call last, where a small model's answer, which tends to follow the
     * nearest list in its context, finds the list that should lead it */
    int anchor = o->anchor && !forced, open_last = anchor && o->anchor == 2;
    if (anchor) want = want > 1 ? want - 1 : 1;
    int kinds[4] = {0, 0, 0, 0};
    if (varied) {
        /* distinct kinds in a seeded order; the refinement (TOP) needs a previous result */
        int pool[SYNTH_N_KINDS], n_pool = 0;
        for (int kd = 0; kd < SYNTH_N_KINDS; kd++) pool[n_pool++] = kd;
        for (int i = n_pool - 1; i > 0; i--) {
            int j = (int)dr_rng_below(&rng, (uint64_t)i + 1), t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
        }
        int used = 0;
        for (int i = 0; i < n_pool && n_prefs < want; i++) {
            if (pool[i] == SYNTH_KIND_TOP && n_prefs == 0) continue;
            kinds[n_prefs++] = pool[i];
            used |= 1 << pool[i];
        }
        if (n_prefs < want && !(used & (1 << SYNTH_KIND_TOP))) kinds[n_prefs++] = SYNTH_KIND_TOP;
        char minor[300] = "";
        if (dom.n > 2) {
            int m = 2 + (int)dr_rng_below(&rng, (uint64_t)(dom.n - 2));
            snprintf(minor, sizeof minor, "%s", dom.a[m].name);
        }
        for (int p = 0; p < n_prefs; p++) {
            char *dst = prefs[p];
            dst[0] = 0;
            switch (kinds[p]) {
            case SYNTH_KIND_DOMINANT: snprintf(dst, sizeof prefs[p], "%s", cand_prefs[0]); break;
            case SYNTH_KIND_RECENT: snprintf(dst, sizeof prefs[p], "%s", cand_prefs[1]); break;
            case SYNTH_KIND_PAIR: snprintf(dst, sizeof prefs[p], "%s", cand_prefs[2]); break;
            case SYNTH_KIND_LAST:
                if (n_shown > 0 && (rc = top_aspects_pref(c, shown + n_shown - 1, 1, use_cats, dst, sizeof prefs[p])))
                    goto done;
                break;
            case SYNTH_KIND_MINOR: snprintf(dst, sizeof prefs[p], "%s", minor); break;
            case SYNTH_KIND_DOMINANT1:
                if (dom.n) snprintf(dst, sizeof prefs[p], "%s", dom.a[0].name);
                break;
            default: break; /* TOP: filled from the previous result at call time */
            }
            /* an empty aspect would end the episode (preference_error): use the main taste */
            if (kinds[p] != SYNTH_KIND_TOP && !dst[0]) snprintf(dst, sizeof prefs[p], "%s", cand_prefs[0]);
        }
    }
    if (forced) {
        snprintf(prefs[0], sizeof prefs[0], "%s", o->forced_preference);
        n_prefs = 1;
    }
    for (int i = 0; i < 3 && n_prefs < want && !forced && !varied; i++) {
        if (!cand_prefs[i][0]) continue;
        int dup = 0;
        for (int j = 0; j < n_prefs; j++) dup |= !strcmp(prefs[j], cand_prefs[i]);
        if (!dup) memcpy(prefs[n_prefs++], cand_prefs[i], sizeof prefs[0]);
    }
    /* the anchored form: the open call (the TRM's own list) first, or last (open_last) */
    if (anchor) {
        for (int p = n_prefs; p > 0 && !open_last; p--) {
            memcpy(prefs[p], prefs[p - 1], sizeof prefs[0]);
            kinds[p] = kinds[p - 1];
        }
        const int at = open_last ? n_prefs : 0;
        snprintf(prefs[at], sizeof prefs[at], "%s", AGENT_PREF_ANY);
        kinds[at] = -1;
        n_prefs++;
    }
    const int open_p = open_last ? n_prefs - 1 : 0, lead = anchor && !open_last; /* lead: aspects start at 1 */
    words2(&dom, dom_words, sizeof dom_words);
    words2(&rec, rec_words, sizeof rec_words);

    agent_prompt_opts po = {o->chat, max_hist, 0};
    if ((rc = agent_prompt_build(c, hist, n_hist, &po, &out->prompt))) goto done;
    ids = dr_calloc((size_t)k, sizeof *ids);
    call_ids = dr_calloc((size_t)k * 4, sizeof *call_ids);
    scores = dr_calloc((size_t)k, sizeof *scores);
    spans = dr_calloc(4, sizeof *spans);
    if (!ids || !call_ids || !scores || !spans) {
        rc = dr_error_code();
        goto done;
    }
    static const char *const intro_fmt[] = {
        "The history is mostly %s; the latest items are %s.",
        "This user keeps coming back to %s, and lately to %s.",
        "Looking at the history: %s dominate, the most recent items are %s.",
    };
    dr_buf_puts(&comp, AGENT_TAG_THINK);
    int intro = (int)dr_rng_below(&rng, 3); /* drawn in both forms so the rest stays seeded alike */
    if (!forced) {
        dr_buf_printf(&comp, intro_fmt[intro], dom_words, rec_words);
        dr_buf_puts(&comp, open_last ? " I will search aspects, then ask for what the history alone suggests.\n"
                           : anchor  ? " I will ask for what the history alone suggests, then search aspects.\n"
                           : n_prefs > 1 ? " I will search several aspects, starting with the main taste.\n"
                                         : " I will search for the main taste.\n");
    }
    static const char *const next_text[3] = {"", "Next, the recent interest.\n", "Now a combination inside one item.\n"};
    int n_spans = 0, prev_n = 0;
    for (int p = 0; p < n_prefs; p++) {
        if (anchor && p == open_p) {
            dr_buf_puts(&comp, open_last ? "Last, what the history alone suggests.\n" : "First what the history alone suggests.\n");
        } else if (varied) {
            if (kinds[p] == SYNTH_KIND_TOP) {
                /* the previous call's top three (ids still hold its result) */
                if ((rc = top_aspects_pref(c, ids, prev_n < 3 ? prev_n : 3, use_cats, prefs[p], sizeof prefs[p])))
                    goto done;
                if (!prefs[p][0]) snprintf(prefs[p], sizeof prefs[p], "%s", cand_prefs[0]);
            }
            dr_buf_puts(&comp, kind_lead[kinds[p]]);
        } else if (p > lead) {
            dr_buf_puts(&comp, next_text[p - lead < 3 ? p - lead : 2]);
        } else if (lead) {
            dr_buf_puts(&comp, "Now the main taste.\n");
        }
        dr_buf_puts(&comp, AGENT_TAG_PREF);
        dr_buf_puts(&comp, prefs[p]);
        dr_buf_puts(&comp, AGENT_TAG_PREF_END);
        int n = 0;
        if ((rc = tool->retrieve(tool->ctx, hist, n_hist, prefs[p], k, ids, scores, &n))) goto done;
        prev_n = n;
        if (n < 0 || n > k) {
            rc = dr_error(DR_ERR_INTERNAL, "synth: the tool returned %d items for k = %d", n, k);
            goto done;
        }
        memcpy(call_ids + (size_t)p * k, ids, (size_t)n * sizeof *ids);
        call_n[p] = n;
        char *tt;
        if ((rc = agent_tool_result_text(c, ids, n, &tt))) goto done;
        /* a forced call is masked from the start of the completion, as the rollout masks it */
        spans[n_spans][0] = forced ? 0 : (int64_t)comp.n;
        dr_buf_puts(&comp, tt);
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
                /* first counts from 1: the value gcc gave the unsequenced form this replaces */
                cands[n_cands] = (cand){it, 0.0, n_cands + 1};
                n_cands++;
            }
            /* anchored: the open call's list leads, 2 / rank against 0.5 / rank shared by the
             * aspect calls (the best rank-only fusion measured, docs/ablation.md); else RRF */
            if (anchor)
                cands[j].score += (p == open_p ? 2.0 : 0.5 / (double)(n_prefs - 1)) / (double)(i + 1);
            else
                cands[j].score += 1.0 / (RRF_K + (double)(i + 1));
        }
        if (n > 0)
            dr_buf_printf(&comp, "%s is the closest match%s.\n", agent_catalog_title(c, ids[0]),
                             p + 1 < n_prefs ? "; more to explore" : "");
        else
            dr_buf_puts(&comp, "Nothing came back for this one.\n");
    }
    if (n_cands < AGENT_N_REC) {
        rc = dr_error(DR_ERR_RANGE, "synth: only %d new items retrieved, need %d", n_cands, AGENT_N_REC);
        goto done;
    }
    qsort(cands, (size_t)n_cands, sizeof *cands, cmp_cand);
    if (!(order = dr_calloc((size_t)n_cands, sizeof *order))) {
        rc = dr_error_code();
        goto done;
    }
    for (int i = 0; i < n_cands; i++) out->target_retrieved |= o->target > 0 && cands[i].item == o->target;
    if (o->order) {
        merge_answer(cands, n_cands, call_ids, call_n, n_prefs, k, o->target, order);
    } else {
        /* the fusion order; training only: the known next item first, the others keep their order */
        int t = 0;
        for (int i = 0; i < n_cands; i++)
            if (cands[i].item == o->target && o->target > 0) order[t++] = cands[i].item;
        for (int i = 0; i < n_cands; i++)
            if (cands[i].item != o->target || o->target <= 0) order[t++] = cands[i].item;
    }
    if (anchor)
        dr_buf_printf(&comp, "I gathered %d items. The %s list leads; the aspects add what fits them.\n", n_cands,
                      open_last ? "last" : "first");
    else
        dr_buf_printf(&comp,
                         "I gathered %d items. Those found by several searches and near the top of a list come first.\n",
                         n_cands);
    dr_buf_puts(&comp, AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n");
    for (int i = 0; i < AGENT_N_REC; i++) {
        dr_buf_printf(&comp, "%d. %s\n", i + 1, agent_catalog_title(c, order[i]));
        out->answer[i] = order[i];
    }
    dr_buf_puts(&comp, AGENT_TAG_ANSWER_END);
    if (comp.err) {
        rc = DR_ERR_NOMEM;
        goto done;
    }
    int f = agent_format_check(comp.p, comp.n);
    if (f != AGENT_FMT_OK) {
        rc = dr_error(DR_ERR_FORMAT, "synth: the trajectory breaks the format rule '%s' (odd item titles?)",
                      agent_format_name(f));
        goto done;
    }
    out->completion = dr_buf_take(&comp);
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
    dr_buf_free(&comp);
    free(ids);
    free(call_ids);
    free(order);
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
    *out = dr_json_take_compact(o);
    return *out ? DR_OK : dr_error(DR_ERR_FORMAT, "cannot serialise a trajectory (invalid UTF-8?)");
}
