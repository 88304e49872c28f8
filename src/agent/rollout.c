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
} seq;

typedef struct rollout {
    const agent_model *m;
    const agent_tool *t;
    const agent_catalog *c;
    int tool_k, max_calls;
    int32_t max_turn, max_ctx;
    int32_t *ids_buf;
    float *scores_buf;
} rollout;

/* End an episode: close its segment, finalise, free its slot. */
static int finish(rollout *ro, seq *s, int outcome, int *slot_used) {
    s->e->outcome = outcome;
    agent_ep_close_seg(s->e);
    int rc = agent_episode_finalize(s->e, ro->c);
    ro->m->release(ro->m->ctx, s->slot);
    slot_used[s->slot] = 0;
    s->active = 0;
    return rc;
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

/* Text added at [old_len, text_len) of the turn: did `tag` appear ending in it? */
static int tag_in_new(const agent_episode *e, size_t turn_start, size_t old_len, const char *tag) {
    size_t m = strlen(tag);
    size_t from = old_len >= turn_start + m ? old_len - m + 1 : turn_start;
    if (from < turn_start) from = turn_start;
    return agent_memmem(e->text + from, e->text_len - from, tag) != NULL;
}

int agent_rollout(const agent_model *m, const agent_tool *t, const agent_catalog *c, const agent_request *req,
                  int n_req, const agent_rollout_opts *o, agent_episode **out) {
    *out = NULL;
    agent_rollout_opts def = {0};
    if (!o) o = &def;
    int G = o->samples > 0 ? o->samples : 1;
    if (!m || !t || !c || n_req < 0) return dr_error(DR_ERR_ARG, "agent_rollout: missing model, tool or catalog");
    if (m->n_slots < G)
        return dr_error(DR_ERR_ARG, "agent_rollout: %d samples per user need at least %d model slots, model has %d",
                        G, G, m->n_slots);
    rollout ro = {m, t, c, o->tool_k > 0 ? o->tool_k : AGENT_TOOL_K, o->max_calls > 0 ? o->max_calls : AGENT_MAX_CALLS,
                  o->max_turn_tokens > 0 ? o->max_turn_tokens : 1024, 0, NULL, NULL};
    ro.max_ctx = o->max_ctx > 0 ? o->max_ctx : (m->n_ctx > 0 ? m->n_ctx : 8192);
    if (m->n_ctx > 0 && ro.max_ctx > m->n_ctx) ro.max_ctx = m->n_ctx;
    size_t n_ep;
    if (!dr_mul_ok((size_t)n_req, (size_t)G, &n_ep)) return dr_error(DR_ERR_NOMEM, "too many episodes");
    agent_episode *eps = dr_calloc(n_ep ? n_ep : 1, sizeof *eps);
    seq *seqs = dr_calloc((size_t)m->n_slots, sizeof *seqs);
    int *slot_used = dr_calloc((size_t)m->n_slots, sizeof(int));
    int *active_slots = dr_calloc((size_t)m->n_slots, sizeof(int));
    int32_t *toks = dr_calloc((size_t)m->n_slots, sizeof(int32_t));
    float *lps = dr_calloc((size_t)m->n_slots, sizeof(float));
    ro.ids_buf = dr_calloc((size_t)ro.tool_k, sizeof(int32_t));
    ro.scores_buf = dr_calloc((size_t)ro.tool_k, sizeof(float));
    int rc = DR_OK;
    if (!eps || !seqs || !slot_used || !active_slots || !toks || !lps || !ro.ids_buf || !ro.scores_buf) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory (rollout of %d requests)", n_req);
        goto done;
    }
    agent_prompt_opts po = {o->chat, o->max_hist, o->direct};
    dr_progress prog;
    dr_progress_start(&prog, o->progress, "rollout", (int64_t)n_ep, "ep");
    int64_t n_done = 0;
    int next_req = 0;
    char piece[256];
    for (;;) {
        /* admit requests while G slots are free */
        while (next_req < n_req) {
            int n_free = 0;
            for (int i = 0; i < m->n_slots; i++) n_free += !slot_used[i];
            if (n_free < G) break;
            const agent_request *r = &req[next_req];
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
                    agent_buf fb = {0};
                    agent_buf_str(&fb, AGENT_TAG_THINK AGENT_TAG_PREF);
                    agent_buf_str(&fb, r->forced_preference);
                    agent_buf_str(&fb, AGENT_TAG_PREF_END);
                    agent_buf_str(&fb, tt);
                    free(tt);
                    if (!(forced = agent_buf_take(&fb))) {
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
                agent_episode *e = &eps[(size_t)next_req * G + g];
                e->user = r->user;
                e->target = r->target;
                e->sample = g;
                e->request = next_req;
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
                    continue;
                }
                if ((rc = agent_ep_open_seg(e, AGENT_SEG_GEN))) break;
                rc = first < 0 ? m->append(m->ctx, slot, all, (int)n_all) : m->fork(m->ctx, first, slot);
                if (rc) break;
                if (first < 0) first = slot;
                slot_used[slot] = 1;
                seqs[slot] = (seq){1, slot, e, r, e->text_len, 0};
            }
        admit_done:
            free(prompt);
            free(forced);
            free(ids);
            free(fids);
            free(all);
            if (rc) goto done;
            next_req++;
        }
        int n_act = 0;
        for (int i = 0; i < m->n_slots; i++)
            if (seqs[i].active) active_slots[n_act++] = i;
        dr_progress_update(&prog, n_done);
        if (!n_act) break;
        if ((rc = m->decode(m->ctx, active_slots, n_act, toks, lps))) goto done;
        for (int a = 0; a < n_act; a++) {
            seq *s = &seqs[active_slots[a]];
            agent_episode *e = s->e;
            int32_t tok = toks[a];
            if ((rc = agent_ep_add_tokens(e, &tok, 1, 1, &lps[a]))) goto done;
            s->turn_tokens++;
            if (m->is_eos(m->ctx, tok)) {
                const char *comp = e->text + e->prompt_len;
                int has_answer = agent_memmem(comp, e->text_len - e->prompt_len, AGENT_TAG_ANSWER) != NULL;
                if ((rc = finish(&ro, s, has_answer ? AGENT_FINISHED : AGENT_SHOT_DOWN, slot_used))) goto done;
                n_done++;
                continue;
            }
            int pl = m->piece(m->ctx, tok, piece, sizeof piece);
            if (pl < 0) {
                rc = dr_error(DR_ERR_RANGE, "agent_rollout: the model produced an invalid token id %d", (int)tok);
                goto done;
            }
            size_t old = e->text_len;
            if (pl > (int)sizeof piece) {
                char *big = malloc((size_t)pl);
                if (!big) {
                    rc = dr_error(DR_ERR_NOMEM, "out of memory");
                    goto done;
                }
                m->piece(m->ctx, tok, big, (size_t)pl);
                rc = agent_ep_add_text(e, big, (size_t)pl);
                free(big);
            } else {
                rc = agent_ep_add_text(e, piece, (size_t)pl);
            }
            if (rc) goto done;
            if (tag_in_new(e, s->turn_start, old, AGENT_TAG_ANSWER_END)) {
                if ((rc = finish(&ro, s, AGENT_FINISHED, slot_used))) goto done;
                n_done++;
            } else if (tag_in_new(e, s->turn_start, old, AGENT_TAG_PREF_END)) {
                if ((rc = serve_call(&ro, s, slot_used))) goto done;
                if (!s->active) n_done++;
            } else if (e->n_tokens >= ro.max_ctx || s->turn_tokens >= ro.max_turn) {
                if ((rc = finish(&ro, s, AGENT_CONTEXT_TOO_LONG, slot_used))) goto done;
                n_done++;
            }
        }
    }
    dr_progress_finish(&prog);
done:
    if (rc) {
        for (int i = 0; m && seqs && i < m->n_slots; i++)
            if (seqs[i].active) m->release(m->ctx, i);
        if (eps) agent_episodes_free(eps, (int)n_ep);
        eps = NULL;
    }
    free(seqs);
    free(slot_used);
    free(active_slots);
    free(toks);
    free(lps);
    free(ro.ids_buf);
    free(ro.scores_buf);
    *out = eps;
    return rc;
}
