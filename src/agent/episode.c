/* Episodes: building, finalising (answer, resolution, format), freeing. */
#include "deeprec/agent.h"
#include "agent/internal.h"
#include <stdlib.h>
#include <string.h>

static const char *const outcome_names[AGENT_N_OUTCOMES] = {
    "finished", "many_recall", "context_too_long", "preference_error", "shot_down", "recall_error",
};
const char *agent_outcome_name(int o) { return o >= 0 && o < AGENT_N_OUTCOMES ? outcome_names[o] : "?"; }

int agent_ep_add_text(agent_episode *e, const char *s, size_t n) {
    /* the episode's text fields are a dr_buf spelled out in the public struct */
    dr_buf b = {e->text, e->text_len, e->text_cap, 0};
    int rc = dr_buf_put(&b, s, n);
    e->text = b.p;
    e->text_len = b.n;
    e->text_cap = b.cap;
    return rc;
}

int agent_ep_add_tokens(agent_episode *e, const int32_t *ids, int n, int generated, const float *lps) {
    if (n <= 0) return DR_OK;
    if (e->n_tokens + n > e->tok_cap) {
        int32_t cap = e->tok_cap ? e->tok_cap : 512;
        while (cap < e->n_tokens + n) cap *= 2;
        int32_t *t = dr_realloc(e->tokens, (size_t)cap, sizeof *t);
        if (!t) return dr_error_code();
        e->tokens = t;
        uint8_t *m = dr_realloc(e->mask, (size_t)cap, sizeof *m);
        if (!m) return dr_error_code();
        e->mask = m;
        float *l = dr_realloc(e->logprob, (size_t)cap, sizeof *l);
        if (!l) return dr_error_code();
        e->logprob = l;
        int32_t *ao = dr_realloc(e->allow_off, (size_t)cap, sizeof *ao);
        if (!ao) return dr_error_code();
        e->allow_off = ao;
        int32_t *an = dr_realloc(e->allow_n, (size_t)cap, sizeof *an);
        if (!an) return dr_error_code();
        e->allow_n = an;
        e->tok_cap = cap;
    }
    for (int i = 0; i < n; i++) {
        e->tokens[e->n_tokens + i] = ids[i];
        e->mask[e->n_tokens + i] = (uint8_t)(generated ? 1 : 0);
        e->logprob[e->n_tokens + i] = generated && lps ? lps[i] : 0.0f;
        e->allow_off[e->n_tokens + i] = 0;
        e->allow_n[e->n_tokens + i] = 0;
    }
    e->n_tokens += n;
    if (generated) e->n_generated += n;
    return DR_OK;
}

/* The allowed set of the token before the next one, when it equals allowed[0..n): then the
 * new token shares its ids. Runs of free text or preference tokens all have the same set, about
 * the vocabulary's size, so the pool holds one copy per run instead of one per token. */
static int32_t same_set_as_last(const agent_episode *e, const int32_t *allowed, int n) {
    int32_t t = e->n_tokens - 1;
    if (t < 0 || e->allow_n[t] != n) return -1;
    const int32_t *last = e->allow_ids + e->allow_off[t];
    return memcmp(last, allowed, (size_t)n * sizeof *allowed) ? -1 : e->allow_off[t];
}

int agent_ep_add_choice(agent_episode *e, int32_t id, float lp, const int32_t *allowed, int n_allowed) {
    int32_t shared = n_allowed > 0 ? same_set_as_last(e, allowed, n_allowed) : -1;
    if (shared >= 0) {
        int rc = agent_ep_add_tokens(e, &id, 1, 1, &lp);
        if (rc) return rc;
        e->allow_off[e->n_tokens - 1] = shared;
        e->allow_n[e->n_tokens - 1] = n_allowed;
        return DR_OK;
    }
    if (n_allowed > 0 && e->n_allow_ids + n_allowed > e->allow_cap) {
        int32_t cap = e->allow_cap ? e->allow_cap : 256;
        while (cap < e->n_allow_ids + n_allowed) cap *= 2;
        int32_t *a = dr_realloc(e->allow_ids, (size_t)cap, sizeof *a);
        if (!a) return dr_error_code();
        e->allow_ids = a;
        e->allow_cap = cap;
    }
    int rc = agent_ep_add_tokens(e, &id, 1, 1, &lp);
    if (rc || n_allowed <= 0) return rc;
    memcpy(e->allow_ids + e->n_allow_ids, allowed, (size_t)n_allowed * sizeof *allowed);
    e->allow_off[e->n_tokens - 1] = e->n_allow_ids;
    e->allow_n[e->n_tokens - 1] = n_allowed;
    e->n_allow_ids += n_allowed;
    return DR_OK;
}

void agent_ep_close_seg(agent_episode *e) {
    if (e->n_segs <= 0) return;
    agent_segment *s = &e->segs[e->n_segs - 1];
    s->tok_end = e->n_tokens;
    s->chr_end = (int64_t)e->text_len;
}

int agent_ep_open_seg(agent_episode *e, int kind) {
    agent_ep_close_seg(e);
    if (e->n_segs == e->seg_cap) {
        int cap = e->seg_cap ? 2 * e->seg_cap : 8;
        agent_segment *s = dr_realloc(e->segs, (size_t)cap, sizeof *s);
        if (!s) return dr_error_code();
        e->segs = s;
        e->seg_cap = cap;
    }
    e->segs[e->n_segs++] = (agent_segment){kind, e->n_tokens, e->n_tokens, (int64_t)e->text_len, (int64_t)e->text_len};
    return DR_OK;
}

int agent_ep_add_call(agent_episode *e, const char *pref, const int32_t *items, const float *scores, int n) {
    if (e->n_calls == e->call_cap) {
        int cap = e->call_cap ? 2 * e->call_cap : 4;
        agent_call *c = dr_realloc(e->calls, (size_t)cap, sizeof *c);
        if (!c) return dr_error_code();
        e->calls = c;
        e->call_cap = cap;
    }
    agent_call *c = &e->calls[e->n_calls];
    memset(c, 0, sizeof *c);
    c->preference = dr_strdup(pref ? pref : "");
    if (!c->preference) return dr_error_code();
    if (n > 0) {
        c->items = dr_calloc((size_t)n, sizeof(int32_t));
        c->scores = dr_calloc((size_t)n, sizeof(float));
        if (!c->items || !c->scores) {
            free(c->preference);
            free(c->items);
            free(c->scores);
            return dr_error_code();
        }
        memcpy(c->items, items, (size_t)n * sizeof(int32_t));
        if (scores) memcpy(c->scores, scores, (size_t)n * sizeof(float));
        c->n_items = n;
    }
    e->n_calls++;
    return DR_OK;
}

void agent_episode_free(agent_episode *e) {
    if (!e) return;
    free(e->text);
    free(e->tokens);
    free(e->mask);
    free(e->logprob);
    free(e->allow_off);
    free(e->allow_n);
    free(e->allow_ids);
    free(e->segs);
    for (int i = 0; i < e->n_calls; i++) {
        free(e->calls[i].preference);
        free(e->calls[i].items);
        free(e->calls[i].scores);
    }
    free(e->calls);
    agent_answer_free(&e->answer);
    memset(e, 0, sizeof *e);
}

void agent_episodes_free(agent_episode *e, int n) {
    if (!e) return;
    for (int i = 0; i < n; i++) agent_episode_free(&e[i]);
    free(e);
}

int agent_episode_retrieved(const agent_episode *e, int32_t **items, int *n) {
    *items = NULL;
    *n = 0;
    int total = 0;
    for (int i = 0; i < e->n_calls; i++) total += e->calls[i].n_items;
    if (!total) return DR_OK;
    int32_t *out = dr_calloc((size_t)total, sizeof *out);
    if (!out) return dr_error_code();
    int k = 0;
    for (int i = 0; i < e->n_calls; i++)
        for (int j = 0; j < e->calls[i].n_items; j++) {
            int32_t it = e->calls[i].items[j], dup = 0;
            for (int q = 0; q < k && !dup; q++) dup = out[q] == it;
            if (!dup) out[k++] = it;
        }
    *items = out;
    *n = k;
    return DR_OK;
}

int agent_episode_finalize(agent_episode *e, const agent_catalog *c) {
    const char *comp = e->text ? e->text + e->prompt_len : "";
    size_t clen = e->text ? e->text_len - e->prompt_len : 0;
    agent_answer_free(&e->answer);
    e->format = e->direct ? agent_format_check_direct(comp, clen) : agent_format_check(comp, clen);
    int rc = agent_answer_parse(comp, clen, &e->answer);
    if (rc) return rc;
    int32_t *ret;
    int n_ret;
    if ((rc = agent_episode_retrieved(e, &ret, &n_ret))) return rc;
    e->hit_rank = e->hit_rank_substr = -1;
    for (int i = 0; i < AGENT_N_REC; i++) {
        int how = AGENT_RESOLVE_NONE;
        e->resolved[i] = i < e->answer.n_lines ? agent_resolve_line(c, e->answer.lines[i], ret, n_ret, &how) : 0;
        e->how[i] = (uint8_t)how;
    }
    free(ret);
    if (e->outcome == AGENT_FINISHED && e->target > 0) {
        for (int i = 0; i < e->answer.n_lines && e->hit_rank < 0; i++)
            if (e->resolved[i] == e->target) e->hit_rank = i;
        for (int i = 0; i < e->answer.n_lines && e->hit_rank_substr < 0; i++)
            if (agent_line_mentions(c, e->answer.lines[i], e->target)) e->hit_rank_substr = i;
    }
    return DR_OK;
}
