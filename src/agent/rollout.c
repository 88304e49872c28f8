/* The batched multi-turn rollout: many requests x G samples advance together through the
 * model's batched decode; tool calls are served as sequences reach the stop string. */
#include "deeprec/agent.h"
#include "agent/internal.h"
#include <stdlib.h>
#include <string.h>

typedef struct seq {
    int active;
    int slot;
    agent_episode *e;
    const agent_request *r;
    size_t turn_start;   /* byte offset in e->text where the current turn's generation began */
    int32_t turn_tokens;
    /* title-constrained answer */
    int answering;
    agent_trie trie;     /* candidate titles of the episode */
    int32_t node;        /* trie node of the title being written */
    int line;            /* titles listed so far */
    int32_t *allowed;    /* the pending choice (n_allowed >= 2 while answering and active) */
    int32_t *title_leaf; /* constrain_order: each title's trie leaf */
    uint8_t *title_used; /* constrain_order: titles listed so far */
    int32_t *call_titles; /* constrain_order: every call's titles in its rank order (-1: none), calls back to back */
    int n_allowed;
    int in_pref;         /* a preference is open (its begin tag written, its end tag not yet) */
    int pref_tokens;     /* tokens of the open preference so far */
    int think_closed;    /* the model has written AGENT_TAG_THINK_END */
    int streamed;        /* e came from opts.stream: handed to stream->done when it ends */
} seq;

typedef struct rollout {
    const agent_model *m;
    const agent_tool *t;
    const agent_catalog *c;
    int tool_k, max_calls;
    int32_t max_turn, max_ctx;
    int32_t *ids_buf;
    float *scores_buf;
    int constrain;
    int order;           /* constrain_order: a line takes the first unlisted title of some call */
    int32_t *pref_ok;    /* constrain_prefs: the tokens a preference may use, ascending */
    int n_pref_ok;
    int32_t *free_ok[2]; /* constrain_tags: the tokens free text may use before / after THINK_END */
    int n_free_ok[2];
    const agent_rollout_stream *stream;
} rollout;

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void answer_free(seq *s) {
    agent_trie_free(&s->trie);
    free(s->allowed);
    free(s->title_leaf);
    free(s->title_used);
    free(s->call_titles);
    s->allowed = s->title_leaf = s->call_titles = NULL;
    s->title_used = NULL;
    s->n_allowed = 0;
    s->answering = 0;
    s->in_pref = 0;
}

/* End an episode: close its segment, finalise, free its slot. */
static int finish(rollout *ro, seq *s, int outcome, int *slot_used) {
    s->e->outcome = outcome;
    agent_ep_close_seg(s->e);
    int rc = agent_episode_finalize(s->e, ro->c);
    ro->m->release(ro->m->ctx, s->slot);
    slot_used[s->slot] = 0;
    s->active = 0;
    answer_free(s);
    if (s->streamed && !rc) {
        s->streamed = 0;
        ro->stream->done(ro->stream->ctx, s->e);
    }
    return rc;
}

/* Append the text of token tok to the episode. */
static int add_piece(const agent_model *m, agent_episode *e, int32_t tok) {
    char piece[256];
    int pl = m->piece(m->ctx, tok, piece, sizeof piece);
    if (pl < 0) return dr_error(DR_ERR_RANGE, "agent_rollout: the model produced an invalid token id %d", (int)tok);
    if (pl <= (int)sizeof piece) return agent_ep_add_text(e, piece, (size_t)pl);
    char *big = malloc((size_t)pl);
    if (!big) return dr_error(DR_ERR_NOMEM, "out of memory");
    m->piece(m->ctx, tok, big, (size_t)pl);
    int rc = agent_ep_add_text(e, big, (size_t)pl);
    free(big);
    return rc;
}

/* ---- title-constrained answers ---- */

/* Tokens of a title as its line reads in context: "N. title\n", without the tokens of "N.".
 * The line's newline is part of the title because BPE merges it with the title's last
 * characters (")\n" is one token in the demo's vocabulary): a title ended by a separate
 * "\n" token would be a sequence the model never saw in its training text. Encoding
 * "1. title\n" and removing the tokens of "1." keeps both merges (the leading space joins the
 * first word); when "1." does not survive as a prefix, " title\n" alone. */
static int title_tokens(const rollout *ro, const char *title, int32_t **ids, size_t *n) {
    const agent_model *m = ro->m;
    dr_buf b = {0};
    dr_buf_puts(&b, "1. ");
    dr_buf_puts(&b, title);
    dr_buf_puts(&b, "\n");
    char *full = dr_buf_take(&b);
    if (!full) return dr_error_code();
    int32_t *p = NULL, *f = NULL;
    size_t np = 0, nf = 0;
    int rc = m->encode(m->ctx, "1.", 2, &p, &np);
    if (!rc) rc = m->encode(m->ctx, full, strlen(full), &f, &nf);
    if (!rc && nf > np && !memcmp(p, f, np * sizeof *p)) {
        memmove(f, f + np, (nf - np) * sizeof *f);
        *ids = f;
        *n = nf - np;
        f = NULL;
    } else if (!rc) {
        rc = m->encode(m->ctx, full + 2, strlen(full + 2), ids, n);
    }
    free(full);
    free(p);
    free(f);
    return rc;
}

/* The trie of the titles retrieved so far, one per normalised title (duplicates would resolve
 * to the same item), titles with a newline left out (they cannot fit one line). With
 * constrain_order also each title's leaf and every call's list as title indices. */
static int build_trie(const rollout *ro, seq *s) {
    int32_t *items = NULL;
    int n = 0, n_titles = 0;
    int rc = agent_episode_retrieved(s->e, &items, &n);
    if (rc) return rc;
    char **norm = dr_calloc((size_t)(n ? n : 1), sizeof *norm);
    int32_t *item_title = dr_calloc((size_t)(n ? n : 1), sizeof *item_title);
    s->title_leaf = dr_calloc((size_t)(n ? n : 1), sizeof *s->title_leaf);
    if (!norm || !item_title || !s->title_leaf) rc = dr_error_code();
    for (int i = 0; i < n && !rc; i++) {
        item_title[i] = -1;
        const char *title = agent_catalog_title(ro->c, items[i]);
        if (!*title || strchr(title, '\n')) continue;
        char *nt = agent_title_normalize(title, -1);
        if (!nt) {
            rc = dr_error_code();
            break;
        }
        int dup = -1; /* an earlier title that normalises the same */
        for (int k = 0; k < n_titles && dup < 0; k++)
            if (!strcmp(norm[k], nt)) dup = k;
        if (!*nt || dup >= 0) {
            item_title[i] = dup;
            free(nt);
            continue;
        }
        norm[n_titles] = nt;
        int32_t *ids = NULL;
        size_t nid = 0;
        if (!(rc = title_tokens(ro, title, &ids, &nid)) && nid > 0 &&
            !(rc = agent_trie_add(&s->trie, ids, (int)nid, n_titles, &s->title_leaf[n_titles])))
            item_title[i] = s->trie.nodes[s->title_leaf[n_titles]].title == n_titles ? n_titles : -1;
        free(ids);
        n_titles++;
    }
    if (!rc && ro->order) {
        int total = 0;
        for (int c = 0; c < s->e->n_calls; c++) total += s->e->calls[c].n_items;
        s->call_titles = dr_calloc((size_t)(total ? total : 1), sizeof *s->call_titles);
        s->title_used = dr_calloc((size_t)(n_titles ? n_titles : 1), 1);
        if (!s->call_titles || !s->title_used) rc = dr_error_code();
        for (int c = 0, k = 0; c < s->e->n_calls && !rc; c++)
            for (int j = 0; j < s->e->calls[c].n_items; j++, k++) {
                int q = 0;
                while (q < n && items[q] != s->e->calls[c].items[j]) q++;
                s->call_titles[k] = q < n ? item_title[q] : -1;
            }
    }
    for (int k = 0; k < n_titles; k++) free(norm[k]);
    free(norm);
    free(item_title);
    free(items);
    if (!rc && !(s->allowed = dr_calloc((size_t)n_titles + 2, sizeof *s->allowed))) rc = dr_error_code();
    return rc;
}

/* constrain_order: offer only the first unlisted title of each call's list (the TRM's order
 * inside a list is kept; the model chooses which list the next line continues). Recounts the
 * trie's unused titles from scratch, so a title at the head of two lists counts once. */
static void offer_heads(seq *s) {
    agent_trie *t = &s->trie;
    for (int32_t k = 0; k < t->n; k++) t->nodes[k].avail = 0;
    for (int c = 0, off = 0; c < s->e->n_calls; off += s->e->calls[c].n_items, c++)
        for (int j = 0; j < s->e->calls[c].n_items; j++) {
            int32_t ti = s->call_titles[off + j];
            if (ti < 0 || s->title_used[ti]) continue;
            int32_t leaf = s->title_leaf[ti];
            if (t->nodes[leaf].avail == 0)
                for (int32_t p = leaf; p >= 0; p = t->nodes[p].parent) t->nodes[p].avail++;
            break;
        }
}

/* Append tokens the model did not choose (mask 0, like tool text). Ends the episode at the
 * context cap. */
static int force_ids(rollout *ro, seq *s, const int32_t *ids, int n, int *slot_used) {
    agent_episode *e = s->e;
    if ((int64_t)e->n_tokens + n >= ro->max_ctx) return finish(ro, s, AGENT_CONTEXT_TOO_LONG, slot_used);
    int rc = agent_ep_add_tokens(e, ids, n, 0, NULL);
    for (int i = 0; i < n && !rc; i++) rc = add_piece(ro->m, e, ids[i]);
    return rc ? rc : ro->m->append(ro->m->ctx, s->slot, ids, n);
}

static int force_text(rollout *ro, seq *s, const char *text, int *slot_used) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = ro->m->encode(ro->m->ctx, text, strlen(text), &ids, &n);
    if (!rc && n) rc = force_ids(ro, s, ids, (int)n, slot_used);
    free(ids);
    return rc;
}

static int start_line(rollout *ro, seq *s, int *slot_used);

/* A title's last token holds its line's newline, and no title holds one inside, so a node
 * that ends a title is a leaf: reaching it completes the line. */
static int title_done(rollout *ro, seq *s, int *slot_used) {
    if (ro->order) s->title_used[s->trie.nodes[s->node].title] = 1;
    agent_trie_use(&s->trie, s->node);
    s->line++;
    return start_line(ro, s, slot_used);
}

/* Follow the trie from s->node, forcing tokens while only one is allowed, until a choice
 * between several remains (left in s->allowed for the next decode) or the title ends. */
static int descend(rollout *ro, seq *s, int *slot_used) {
    for (;;) {
        if (s->trie.nodes[s->node].title >= 0) return title_done(ro, s, slot_used);
        int n = agent_trie_allowed(&s->trie, s->node, -1, s->allowed);
        if (n == 0) return dr_error(DR_ERR_INTERNAL, "agent_rollout: constrained answer without a continuation");
        if (n >= 2) {
            s->n_allowed = n;
            return DR_OK;
        }
        s->n_allowed = 0;
        int32_t tok = s->allowed[0];
        int rc = force_ids(ro, s, &tok, 1, slot_used);
        if (rc || !s->active) return rc;
        s->node = agent_trie_child(&s->trie, s->node, tok);
    }
}

/* Next line "N." and its title, or the closing tag after the last title. */
static int start_line(rollout *ro, seq *s, int *slot_used) {
    char buf[64];
    const char *nl = s->line == 0 ? "\n" : "";
    if (ro->order) offer_heads(s);
    int more = s->line < AGENT_N_REC && s->trie.n > 0 && s->trie.nodes[0].avail > 0;
    if (more) snprintf(buf, sizeof buf, "%s%d.", nl, s->line + 1);
    else snprintf(buf, sizeof buf, "%s%s", nl, AGENT_TAG_ANSWER_END);
    int rc = force_text(ro, s, buf, slot_used);
    if (rc || !s->active) return rc;
    if (!more) return finish(ro, s, AGENT_FINISHED, slot_used);
    s->node = 0;
    return descend(ro, s, slot_used);
}

/* The model has just written the answer tag: from here the rollout drives the answer. */
static int enter_answer(rollout *ro, seq *s, int *slot_used) {
    s->answering = 1;
    s->line = 0;
    int rc = build_trie(ro, s);
    return rc ? rc : start_line(ro, s, slot_used);
}

/* A token the model chose in a constrained answer (already in the episode and the slot). */
static int answer_take(rollout *ro, seq *s, int32_t tok, int *slot_used) {
    s->node = agent_trie_child(&s->trie, s->node, tok);
    return descend(ro, s, slot_used);
}

/* A turn ended at the stop string: serve the tool call or end the episode.
 * Returns an error code only for fatal (model/memory) errors. */
static int serve_call(rollout *ro, seq *s, int *slot_used) {
    agent_episode *e = s->e;
    if (e->n_calls >= ro->max_calls) return finish(ro, s, AGENT_MANY_RECALL, slot_used);
    char *pref;
    int rc = agent_preference_extract(e->text + s->turn_start, e->text_len - s->turn_start, &pref);
    if (rc) return rc;
    if (!pref || !*pref) {
        free(pref);
        return finish(ro, s, AGENT_PREFERENCE_ERROR, slot_used);
    }
    int n = 0;
    const agent_request *r = s->r;
    if (ro->t->retrieve(ro->t->ctx, r->hist, r->n_hist, pref, ro->tool_k, ro->ids_buf, ro->scores_buf, &n) ||
        n < 0 || n > ro->tool_k) {
        dr_log(DR_LOG_DEBUG, "agent: tool failed for user %d: %s", (int)r->user, dr_error_message());
        dr_error_clear();
        rc = agent_ep_add_call(e, pref, NULL, NULL, 0);
        free(pref);
        return rc ? rc : finish(ro, s, AGENT_RECALL_ERROR, slot_used);
    }
    rc = agent_ep_add_call(e, pref, ro->ids_buf, ro->scores_buf, n);
    free(pref);
    if (rc) return rc;
    char *tool_text;
    if ((rc = agent_tool_result_text(ro->c, ro->ids_buf, n, &tool_text))) return rc;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = ro->m->encode(ro->m->ctx, tool_text, strlen(tool_text), &ids, &n_ids);
    if (rc) {
        free(tool_text);
        return rc;
    }
    if ((int64_t)e->n_tokens + (int64_t)n_ids >= ro->max_ctx) {
        free(tool_text);
        free(ids);
        return finish(ro, s, AGENT_CONTEXT_TOO_LONG, slot_used);
    }
    if (!(rc = agent_ep_open_seg(e, AGENT_SEG_TOOL)) && !(rc = agent_ep_add_text(e, tool_text, strlen(tool_text))) &&
        !(rc = agent_ep_add_tokens(e, ids, (int)n_ids, 0, NULL)) &&
        !(rc = ro->m->append(ro->m->ctx, s->slot, ids, (int)n_ids)))
        rc = agent_ep_open_seg(e, AGENT_SEG_GEN);
    free(tool_text);
    free(ids);
    s->turn_start = e->text_len;
    s->turn_tokens = 0;
    return rc;
}

/* The model's tokens whose text holds none of the tags in `banned` (NULL-terminated) and, with
 * no_newline, no newline; ascending. A piece longer than the buffer holds no tag: it is kept
 * unless no_newline asks for certainty. */
static int tokens_without(const agent_model *m, const char *const *banned, int no_newline, int32_t **out, int *n_out) {
    int cap = 1024, n = 0;
    int32_t *ok = dr_malloc((size_t)cap * sizeof *ok);
    char piece[256];
    if (!ok) return dr_error_code();
    for (int32_t id = 0;; id++) {
        int pl = m->piece(m->ctx, id, piece, sizeof piece - 1);
        if (pl < 0) break;
        int bad = pl > (int)sizeof piece - 1 && no_newline;
        if (pl <= (int)sizeof piece - 1) {
            piece[pl] = 0;
            bad = no_newline && memchr(piece, '\n', (size_t)pl) != NULL;
            for (int k = 0; banned[k] && !bad; k++) bad = strstr(piece, banned[k]) != NULL;
        }
        if (bad) continue;
        if (n == cap) {
            int32_t *g = dr_realloc(ok, (size_t)(cap *= 2), sizeof *ok);
            if (!g) {
                free(ok);
                return dr_error_code();
            }
            ok = g;
        }
        ok[n++] = id;
    }
    if (n == 0) {
        free(ok);
        return dr_error(DR_ERR_UNSUPPORTED, "agent_rollout: no token is allowed %s",
                        no_newline ? "in a preference" : "in free text");
    }
    *out = ok;
    *n_out = n;
    return DR_OK;
}

/* The tokens allowed inside a preference: every token whose text has no newline and holds no
 * protocol tag but the end of the preference. Without them a small model can run one call
 * into the next ("a; b.\nNow c.\n<|begin_of_preference|>c<|end_of_preference|>"), which breaks
 * the balanced-tags rule; a preference is one line of phrases (DESIGN §6). */
static int build_pref_ok(rollout *ro) {
    static const char *const tags[] = {AGENT_TAG_THINK,  AGENT_TAG_THINK_END, AGENT_TAG_PREF,       AGENT_TAG_LIST,
                                       AGENT_TAG_LIST_END, AGENT_TAG_ANSWER,  AGENT_TAG_ANSWER_END, NULL};
    return tokens_without(ro->m, tags, 1, &ro->pref_ok, &ro->n_pref_ok);
}

/* constrain_tags: the tokens whose text holds no tag invalid in free text, before (free_ok[0])
 * and after (free_ok[1]) the model's AGENT_TAG_THINK_END (agent_rollout_opts.constrain_tags).
 * With constrained titles the rollout writes AGENT_TAG_ANSWER_END, so the model never may. */
static int build_free_ok(rollout *ro) {
    const char *end = ro->constrain ? AGENT_TAG_ANSWER_END : NULL;
    const char *const before[] = {AGENT_TAG_PREF_END, AGENT_TAG_LIST, AGENT_TAG_LIST_END, AGENT_TAG_ANSWER, end, NULL};
    const char *const after[] = {AGENT_TAG_PREF_END, AGENT_TAG_LIST, AGENT_TAG_LIST_END, AGENT_TAG_THINK,
                                 AGENT_TAG_THINK_END, AGENT_TAG_PREF, end, NULL};
    int rc = tokens_without(ro->m, before, 0, &ro->free_ok[0], &ro->n_free_ok[0]);
    return rc ? rc : tokens_without(ro->m, after, 0, &ro->free_ok[1], &ro->n_free_ok[1]);
}

/* Text added at [old_len, text_len) of the turn: did `tag` appear ending in it? */
static int tag_in_new(const agent_episode *e, size_t turn_start, size_t old_len, const char *tag) {
    size_t m = strlen(tag);
    size_t from = old_len >= turn_start + m ? old_len - m + 1 : turn_start;
    if (from < turn_start) from = turn_start;
    return agent_memmem(e->text + from, e->text_len - from, tag) != NULL;
}

/* The token the model chose for an answer line: it must be one of the pending choice's. */
static int take_answer_token(rollout *ro, seq *s, int32_t tok, float lp, int *slot_used) {
    agent_episode *e = s->e;
    int ok = 0;
    for (int k = 0; k < s->n_allowed && !ok; k++) ok = s->allowed[k] == tok;
    if (!ok)
        return dr_error(DR_ERR_INTERNAL, "agent_rollout: the model chose token %d outside the allowed titles", (int)tok);
    int rc = agent_ep_add_choice(e, tok, lp, s->allowed, s->n_allowed);
    if (!rc) rc = add_piece(ro->m, e, tok);
    if (rc) return rc;
    if (e->n_tokens >= ro->max_ctx) return finish(ro, s, AGENT_CONTEXT_TOO_LONG, slot_used);
    return answer_take(ro, s, tok, slot_used);
}

/* Record a token of a preference or of free text, with the allowed set it was sampled from
 * (none when neither rule is on). */
static int record_token(rollout *ro, seq *s, int32_t tok, float lp) {
    const int32_t *set = NULL;
    int n_set = 0;
    if (s->in_pref) set = ro->pref_ok, n_set = ro->n_pref_ok;
    else if (ro->free_ok[0]) set = ro->free_ok[s->think_closed], n_set = ro->n_free_ok[s->think_closed];
    if (!set) return agent_ep_add_tokens(s->e, &tok, 1, 1, &lp);
    if (!bsearch(&tok, set, (size_t)n_set, sizeof *set, cmp_i32))
        return dr_error(DR_ERR_INTERNAL, "agent_rollout: the model chose token %d, not allowed %s", (int)tok,
                        s->in_pref ? "in a preference" : "here (a protocol tag)");
    if (s->in_pref) s->pref_tokens++;
    return agent_ep_add_choice(s->e, tok, lp, set, n_set);
}

/* One token the model chose for sequence s (already in its slot): record it, then apply the
 * protocol. Ends the episode (s->active = 0) when the token does. */
static int take_token(rollout *ro, seq *s, int32_t tok, float lp, int *slot_used) {
    const agent_model *m = ro->m;
    agent_episode *e = s->e;
    if (!s->answering && m->is_eos(m->ctx, tok) == AGENT_EOS_FULL)
        return finish(ro, s, AGENT_CONTEXT_TOO_LONG, slot_used); /* not a token of the model's: nothing recorded */
    if (s->answering) return take_answer_token(ro, s, tok, lp, slot_used);
    int rc = record_token(ro, s, tok, lp);
    if (rc) return rc;
    s->turn_tokens++;
    if (m->is_eos(m->ctx, tok)) {
        const char *comp = e->text + e->prompt_len;
        int has_answer = agent_memmem(comp, e->text_len - e->prompt_len, AGENT_TAG_ANSWER) != NULL;
        return finish(ro, s, has_answer ? AGENT_FINISHED : AGENT_SHOT_DOWN, slot_used);
    }
    size_t old = e->text_len;
    if ((rc = add_piece(m, e, tok))) return rc;
    if (!s->in_pref && tag_in_new(e, s->turn_start, old, AGENT_TAG_THINK_END)) s->think_closed = 1;
    if (tag_in_new(e, s->turn_start, old, AGENT_TAG_ANSWER_END)) return finish(ro, s, AGENT_FINISHED, slot_used);
    if (tag_in_new(e, s->turn_start, old, AGENT_TAG_PREF_END)) {
        s->in_pref = 0;
        return serve_call(ro, s, slot_used);
    }
    if (s->in_pref && s->pref_tokens >= AGENT_PREF_MAX_TOKENS) {
        /* the longest preference: its end tag is written for the model (mask 0, as tool text);
         * a greedy small model otherwise repeats a phrase until the turn's budget ends the episode */
        if ((rc = force_text(ro, s, AGENT_TAG_PREF_END, slot_used)) || !s->active) return rc;
        s->in_pref = 0;
        return serve_call(ro, s, slot_used);
    }
    if (ro->constrain && e->n_tokens < ro->max_ctx && tag_in_new(e, s->turn_start, old, AGENT_TAG_ANSWER))
        return enter_answer(ro, s, slot_used);
    if (ro->constrain && ro->free_ok[0] && s->turn_tokens >= ro->max_turn && e->n_tokens < ro->max_ctx &&
        e->n_calls > 0) {
        /* the turn's budget is spent after a tool call: the rollout closes the reasoning and
         * opens the answer for the model (mask 0, as tool text), and the constrained answer
         * follows. A small model that starts listing titles without the tags otherwise runs
         * the turn out and the episode ends with nothing. */
        e->answer_forced = 1;
        rc = force_text(ro, s, s->think_closed ? "\n" AGENT_TAG_ANSWER : "\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER,
                        slot_used);
        if (rc || !s->active) return rc;
        s->think_closed = 1;
        return enter_answer(ro, s, slot_used);
    }
    if (e->n_tokens >= ro->max_ctx || s->turn_tokens >= ro->max_turn)
        return finish(ro, s, AGENT_CONTEXT_TOO_LONG, slot_used);
    if (ro->pref_ok && !s->in_pref && tag_in_new(e, s->turn_start, old, AGENT_TAG_PREF)) {
        s->in_pref = 1;
        s->pref_tokens = 0;
    }
    return DR_OK;
}

void agent_rollout_opts_default(agent_rollout_opts *o) {
    *o = (agent_rollout_opts){.max_hist = AGENT_MAX_HIST, .tool_k = AGENT_TOOL_K, .max_calls = AGENT_MAX_CALLS,
                              .samples = 1, .max_turn_tokens = 1024,
                              .constrain_titles = 1, .constrain_prefs = 1, .constrain_tags = 1};
}

int agent_rollout_opts_check(const agent_rollout_opts *o) {
    if (!o->direct && o->tool_k > 0 && o->tool_k < AGENT_N_REC)
        return dr_error(DR_ERR_ARG, "agent: tool_k must be >= %d (the answer lists %d items), got %d", AGENT_N_REC,
                        AGENT_N_REC, o->tool_k);
    if (o->max_hist < 0 || o->tool_k < 0 || o->max_calls < 0 || o->samples < 0 || o->max_turn_tokens < 0 ||
        o->max_ctx < 0)
        return dr_error(DR_ERR_ARG, "agent: max_hist, tool_k, max_calls, samples, max_turn_tokens and max_ctx must be "
                                    ">= 0 (0: the default)");
    if (o->stream && (o->samples > 1 || !o->stream->next || !o->stream->done))
        return dr_error(DR_ERR_ARG, "agent_rollout: streamed requests need samples = 1, next and done");
    return DR_OK;
}

int agent_rollout(const agent_model *m, const agent_tool *t, const agent_catalog *c, const agent_request *req,
                  int n_req, const agent_rollout_opts *o, agent_episode **out) {
    *out = NULL;
    agent_rollout_opts def = {0};
    if (!o) o = &def;
    int G = o->samples > 0 ? o->samples : 1;
    if (!m || !t || !c || n_req < 0) return dr_error(DR_ERR_ARG, "agent_rollout: missing model, tool or catalog");
    int rc = agent_rollout_opts_check(o);
    if (rc) return rc;
    if (m->n_slots < G)
        return dr_error(DR_ERR_ARG, "agent_rollout: %d samples per user need at least %d model slots, model has %d",
                        G, G, m->n_slots);
    rollout ro = {.m = m, .t = t, .c = c, .tool_k = o->tool_k > 0 ? o->tool_k : AGENT_TOOL_K,
                  .max_calls = o->max_calls > 0 ? o->max_calls : AGENT_MAX_CALLS,
                  .max_turn = o->max_turn_tokens > 0 ? o->max_turn_tokens : 1024, .stream = o->stream};
    ro.max_ctx = o->max_ctx > 0 ? o->max_ctx : (m->n_ctx > 0 ? m->n_ctx : 8192);
    if (m->n_ctx > 0 && ro.max_ctx > m->n_ctx) ro.max_ctx = m->n_ctx;
    size_t n_ep;
    if (!dr_mul_ok((size_t)n_req, (size_t)G, &n_ep)) return dr_error(DR_ERR_NOMEM, "too many episodes");
    if (o->constrain_titles && !o->direct) ro.constrain = 1, ro.order = o->constrain_order != 0;
    if (o->constrain_prefs && !o->direct) {
        rc = build_pref_ok(&ro);
        if (rc) return rc;
    }
    if (o->constrain_tags && !o->direct && (rc = build_free_ok(&ro))) {
        free(ro.pref_ok);
        free(ro.free_ok[0]);
        free(ro.free_ok[1]);
        return rc;
    }
    agent_episode *eps = dr_calloc(n_ep ? n_ep : 1, sizeof *eps);
    seq *seqs = dr_calloc((size_t)m->n_slots, sizeof *seqs);
    int *slot_used = dr_calloc((size_t)m->n_slots, sizeof(int));
    int *active_slots = dr_calloc((size_t)m->n_slots, sizeof(int));
    int32_t *toks = dr_calloc((size_t)m->n_slots, sizeof(int32_t));
    float *lps = dr_calloc((size_t)m->n_slots, sizeof(float));
    agent_allow *allow = dr_calloc((size_t)m->n_slots, sizeof *allow);
    ro.ids_buf = dr_calloc((size_t)ro.tool_k, sizeof(int32_t));
    ro.scores_buf = dr_calloc((size_t)ro.tool_k, sizeof(float));
    rc = DR_OK;
    if (!eps || !seqs || !slot_used || !active_slots || !toks || !lps || !allow || !ro.ids_buf || !ro.scores_buf) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory (rollout of %d requests)", n_req);
        goto done;
    }
    agent_prompt_opts po = {o->chat, o->max_hist, o->direct};
    dr_progress prog;
    dr_progress_start(&prog, o->progress, "rollout", (int64_t)n_ep, "ep");
    int64_t n_done = 0;
    int next_req = 0;
    for (;;) {
        /* admit requests while G slots are free */
        for (;;) {
            int n_free = 0;
            for (int i = 0; i < m->n_slots; i++) n_free += !slot_used[i];
            if (n_free < G) break;
            const agent_request *r = NULL;
            agent_episode *streamed = NULL; /* a streamed request's own episode */
            int rid = next_req;
            if (next_req < n_req) r = &req[next_req];
            else if (o->stream && (r = o->stream->next(o->stream->ctx, &rid)) != NULL) {
                if (!(streamed = dr_calloc(1, sizeof *streamed))) {
                    rc = dr_error_code();
                    goto done;
                }
            } else
                break;
            char *prompt = NULL, *forced = NULL;
            int32_t *ids = NULL, *fids = NULL, *all = NULL;
            size_t n_ids = 0, n_fids = 0;
            int forced_items = 0, forced_failed = 0;
            if ((rc = agent_prompt_build(c, r->hist, r->n_hist, &po, &prompt))) goto admit_done;
            if ((rc = m->encode(m->ctx, prompt, strlen(prompt), &ids, &n_ids))) goto admit_done;
            if (r->forced_preference) {
                /* one tool call for the whole group, made for the model */
                if (t->retrieve(t->ctx, r->hist, r->n_hist, r->forced_preference, ro.tool_k, ro.ids_buf, ro.scores_buf,
                                &forced_items) || forced_items < 0 || forced_items > ro.tool_k) {
                    dr_log(DR_LOG_DEBUG, "agent: forced tool call failed for user %d: %s", (int)r->user,
                           dr_error_message());
                    dr_error_clear();
                    forced_failed = 1;
                    forced_items = 0;
                } else {
                    char *tt;
                    if ((rc = agent_tool_result_text(c, ro.ids_buf, forced_items, &tt))) goto admit_done;
                    dr_buf fb = {0};
                    dr_buf_puts(&fb, AGENT_TAG_THINK AGENT_TAG_PREF);
                    dr_buf_puts(&fb, r->forced_preference);
                    dr_buf_puts(&fb, AGENT_TAG_PREF_END);
                    dr_buf_puts(&fb, tt);
                    free(tt);
                    if (!(forced = dr_buf_take(&fb))) {
                        rc = dr_error_code();
                        goto admit_done;
                    }
                    if ((rc = m->encode(m->ctx, forced, strlen(forced), &fids, &n_fids))) goto admit_done;
                }
            }
            size_t n_all = n_ids + n_fids;
            all = dr_calloc(n_all ? n_all : 1, sizeof *all);
            if (!all) {
                rc = dr_error_code();
                goto admit_done;
            }
            if (n_ids) memcpy(all, ids, n_ids * sizeof *all);
            if (n_fids) memcpy(all + n_ids, fids, n_fids * sizeof *all);
            int first = -1;
            for (int g = 0; g < G && !rc; g++) {
                int slot = 0;
                while (slot_used[slot]) slot++;
                agent_episode *e = streamed ? streamed : &eps[(size_t)next_req * G + g];
                e->user = r->user;
                e->target = r->target;
                e->sample = g;
                e->request = rid;
                e->direct = o->direct;
                e->hit_rank = e->hit_rank_substr = -1;
                if ((rc = agent_ep_open_seg(e, AGENT_SEG_PROMPT)) || (rc = agent_ep_add_text(e, prompt, strlen(prompt))) ||
                    (rc = agent_ep_add_tokens(e, ids, (int)n_ids, 0, NULL)))
                    break;
                e->prompt_len = e->text_len;
                e->n_prompt_tokens = e->n_tokens;
                int early = -1;
                if (r->forced_preference) {
                    if ((rc = agent_ep_add_call(e, r->forced_preference, forced_failed ? NULL : ro.ids_buf,
                                                forced_failed ? NULL : ro.scores_buf, forced_items)))
                        break;
                    if (forced_failed) {
                        early = AGENT_RECALL_ERROR;
                    } else if ((rc = agent_ep_open_seg(e, AGENT_SEG_TOOL)) ||
                               (rc = agent_ep_add_text(e, forced, strlen(forced))) ||
                               (rc = agent_ep_add_tokens(e, fids, (int)n_fids, 0, NULL))) {
                        break;
                    }
                }
                if (early < 0 && (int64_t)n_all >= ro.max_ctx) early = AGENT_CONTEXT_TOO_LONG;
                if (early >= 0) {
                    e->outcome = early;
                    agent_ep_close_seg(e);
                    if ((rc = agent_episode_finalize(e, c))) break;
                    n_done++;
                    if (streamed) {
                        o->stream->done(o->stream->ctx, streamed);
                        streamed = NULL;
                    }
                    continue;
                }
                if ((rc = agent_ep_open_seg(e, AGENT_SEG_GEN))) break;
                rc = first < 0 ? m->append(m->ctx, slot, all, (int)n_all) : m->fork(m->ctx, first, slot);
                if (rc) break;
                if (first < 0) first = slot;
                slot_used[slot] = 1;
                seqs[slot] = (seq){.active = 1, .slot = slot, .e = e, .r = r, .turn_start = e->text_len,
                                   .streamed = streamed != NULL};
                streamed = NULL; /* the sequence holds it now */
            }
        admit_done:
            free(prompt);
            free(forced);
            free(ids);
            free(fids);
            free(all);
            if (streamed) {
                agent_episode_free(streamed);
                free(streamed);
            }
            if (rc) goto done;
            if (next_req < n_req) next_req++;
        }
        int n_act = 0, any_allow = 0;
        for (int i = 0; i < m->n_slots; i++)
            if (seqs[i].active) {
                int w = seqs[i].think_closed;
                allow[n_act] = seqs[i].answering ? (agent_allow){seqs[i].allowed, seqs[i].n_allowed}
                               : seqs[i].in_pref ? (agent_allow){ro.pref_ok, ro.n_pref_ok}
                                                 : (agent_allow){ro.free_ok[w], ro.n_free_ok[w]};
                any_allow |= allow[n_act].n > 0;
                active_slots[n_act++] = i;
            }
        dr_progress_update(&prog, n_done);
        if (!n_act) break;
        if ((rc = m->decode(m->ctx, active_slots, n_act, any_allow ? allow : NULL, toks, lps))) goto done;
        for (int a = 0; a < n_act; a++) {
            seq *s = &seqs[active_slots[a]];
            if (toks[a] == AGENT_TOKEN_NONE) continue;
            if ((rc = take_token(&ro, s, toks[a], lps[a], slot_used))) goto done;
            if (!s->active) n_done++;
        }
    }
    dr_progress_finish(&prog);
done:
    if (rc) {
        for (int i = 0; m && seqs && i < m->n_slots; i++) {
            if (seqs[i].active) m->release(m->ctx, i);
            if (seqs[i].streamed) {
                agent_episode_free(seqs[i].e);
                free(seqs[i].e);
            }
            answer_free(&seqs[i]);
        }
        if (eps) agent_episodes_free(eps, (int)n_ep);
        eps = NULL;
    }
    free(seqs);
    free(slot_used);
    free(active_slots);
    free(toks);
    free(lps);
    free(allow);
    free(ro.ids_buf);
    free(ro.scores_buf);
    free(ro.pref_ok);
    free(ro.free_ok[0]);
    free(ro.free_ok[1]);
    *out = eps;
    return rc;
}
