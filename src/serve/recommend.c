/* /v1/recommend: the request's user or history resolved against the dataset, and the answer
 * (items, tool calls, outcome, timings, optional trace) built from a rolled-out episode. */
#include "internal.h"
#include "deeprec/data.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const split_names[3] = {"test", "valid", "all"};
static const char *const mode_names[3] = {"deeprec", "trm", "rerank"};

int serve_rec_resolve(const serve_shared *sh, serve_job *j, serve_err *e) {
    const dr_dataset *d = sh->data;
    const serve_rec_req *r = &j->rec;
    j->user = -1;
    j->target = 0;
    if (r->user) {
        int32_t u = dr_data_find_user(d, r->user); /* "#N" included */
        if (u < 0)
            return serve_fail(e, 404, "invalid_request_error", "unknown_user", "user", -1,
                              "user '%.100s' is not in the dataset (give a source user id, or \"#N\" for the N-th of %d)",
                              r->user, (int)d->n_users);
        const int32_t *h;
        int64_t n;
        int32_t target = dr_data_split_history(d, u, r->split, &h, &n);
        j->user = u;
        j->target = target;
        j->hist = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
        if (!j->hist) return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
        memcpy(j->hist, h, (size_t)n * sizeof(int32_t));
        j->n_hist = n;
        return DR_OK;
    }
    j->hist = malloc((size_t)r->n_hist * sizeof(int32_t));
    if (!j->hist) return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
    for (int i = 0; i < r->n_hist; i++) {
        char f[32];
        snprintf(f, sizeof f, "history[%d]", i);
        int32_t id = r->hist_ids[i];
        if (r->hist_titles[i]) {
            id = agent_catalog_find(sh->cat, r->hist_titles[i], -1);
            if (!id) id = dr_data_find_item(d, r->hist_titles[i]);
            if (!id)
                return serve_fail(e, 404, "invalid_request_error", "unknown_item", f, -1,
                                  "%s: no item titled '%.100s' (nor with that source id)", f, r->hist_titles[i]);
        } else if (id < 1 || id > d->n_items)
            return serve_fail(e, 404, "invalid_request_error", "unknown_item", f, -1, "%s: item id %d is not in 1..%d", f,
                              (int)id, (int)d->n_items);
        j->hist[i] = id;
    }
    j->n_hist = r->n_hist;
    return DR_OK;
}

static json_t *item_json(const agent_catalog *c, int32_t id, int32_t target) {
    const char *t = agent_catalog_title(c, id), *cs = agent_catalog_categories(c, id);
    json_t *o = json_pack("{s:i, s:o, s:o}", "id", (int)id, "title", serve_json_text(t, strlen(t)), "categories",
                          serve_json_text(cs, strlen(cs)));
    if (target && id == target) json_object_set_new(o, "target", json_true());
    return o;
}

static const char *seg_kind(int k) { return k == AGENT_SEG_PROMPT ? "prompt" : k == AGENT_SEG_GEN ? "model" : "tool"; }

char *serve_rec_json(const serve_shared *sh, const serve_job *j, const agent_episode *ep, const int32_t *trm_items,
                     const float *trm_scores, int n_trm) {
    const agent_catalog *c = sh->cat;
    const serve_rec_req *r = &j->rec;
    json_t *o = json_pack("{s:s, s:s, s:s}", "id", j->id, "object", "recommendation", "mode", mode_names[r->mode]);
    json_object_set_new(o, "user", j->user >= 0 ? json_string(sh->data->user_ids[j->user]) : json_null());
    json_object_set_new(o, "split", j->user >= 0 ? json_string(split_names[r->split]) : json_null());
    json_object_set_new(o, "target", j->target ? item_json(c, j->target, 0) : json_null());
    int max_hist = sh->opts.rollout.max_hist > 0 ? sh->opts.rollout.max_hist : AGENT_MAX_HIST; /* as the prompt shows it */
    int64_t h0 = j->n_hist > max_hist ? j->n_hist - max_hist : 0;
    json_t *hist = json_array();
    for (int64_t i = h0; i < j->n_hist; i++) json_array_append_new(hist, item_json(c, j->hist[i], 0));
    json_object_set_new(o, "history", hist);
    json_object_set_new(o, "history_length", json_integer(j->n_hist));
    json_t *items = json_array(), *calls = json_array();
    int hit = 0;
    if (ep) {
        static const char *const how[] = {"none", "exact", "fallback"};
        int32_t *retrieved = NULL;
        int n_ret = 0;
        agent_episode_retrieved(ep, &retrieved, &n_ret);
        for (int i = 0; i < ep->answer.n_lines && i < r->k; i++) {
            int32_t id = ep->resolved[i];
            json_t *it = id ? item_json(c, id, j->target) : json_object();
            json_object_set_new(it, "rank", json_integer(i + 1));
            if (!id) json_object_set_new(it, "id", json_null());
            json_object_set_new(it, "line", serve_json_text(ep->answer.lines[i], strlen(ep->answer.lines[i])));
            json_object_set_new(it, "resolved", json_string(how[ep->how[i]]));
            int was_retrieved = 0;
            for (int k = 0; k < n_ret && id && !was_retrieved; k++) was_retrieved = retrieved[k] == id;
            json_object_set_new(it, "retrieved", json_boolean(was_retrieved));
            json_array_append_new(items, it);
        }
        free(retrieved);
        for (int i = 0; i < ep->n_calls; i++) {
            const agent_call *ac = &ep->calls[i];
            json_t *ci = json_array();
            for (int k = 0; k < ac->n_items; k++) {
                json_t *it = item_json(c, ac->items[k], j->target);
                json_object_set_new(it, "rank", json_integer(k + 1));
                json_object_set_new(it, "score", json_real(ac->scores[k]));
                json_array_append_new(ci, it);
            }
            const char *pf = ac->preference ? ac->preference : "";
            json_array_append_new(calls, json_pack("{s:o, s:o}", "preference", serve_json_text(pf, strlen(pf)), "items", ci));
        }
        json_object_set_new(o, "outcome", json_string(agent_outcome_name(ep->outcome)));
        json_object_set_new(o, "format", json_string(agent_format_name(ep->format)));
        hit = ep->hit_rank >= 0 && ep->hit_rank < r->k ? ep->hit_rank + 1 : 0;
        json_object_set_new(o, "usage", json_pack("{s:i, s:i, s:i}", "prompt_tokens", (int)ep->n_prompt_tokens,
                                                  "generated_tokens", (int)ep->n_generated, "tool_calls", ep->n_calls));
        if (r->trace) {
            json_t *segs = json_array();
            for (int i = 0; i < ep->n_segs; i++) {
                const agent_segment *s = &ep->segs[i];
                json_array_append_new(segs, json_pack("{s:s, s:o, s:i}", "kind", seg_kind(s->kind), "text",
                                                      serve_json_text(ep->text + s->chr_begin,
                                                                      (size_t)(s->chr_end - s->chr_begin)),
                                                      "tokens", (int)(s->tok_end - s->tok_begin)));
            }
            json_object_set_new(o, "trace", json_pack("{s:o}", "segments", segs));
        }
    } else {
        json_t *ci = json_array();
        for (int i = 0; i < n_trm; i++) {
            json_t *it = item_json(c, trm_items[i], j->target);
            json_object_set_new(it, "rank", json_integer(i + 1));
            json_object_set_new(it, "score", json_real(trm_scores[i]));
            if (i < r->k) json_array_append(items, it);
            json_array_append_new(ci, it);
            if (j->target && trm_items[i] == j->target && i < r->k && !hit) hit = i + 1;
        }
        json_array_append_new(calls, json_pack("{s:s, s:o}", "preference", "", "items", ci));
        json_object_set_new(o, "outcome", json_string(agent_outcome_name(AGENT_FINISHED)));
        json_object_set_new(o, "usage", json_pack("{s:i, s:i, s:i}", "prompt_tokens", 0, "generated_tokens", 0,
                                                  "tool_calls", 1));
        if (r->trace) json_object_set_new(o, "trace", json_pack("{s:[]}", "segments"));
    }
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "tool_calls", calls);
    json_object_set_new(o, "hit_rank", j->target ? json_integer(hit) : json_null());
    json_object_set_new(o, "timings", json_pack("{s:f, s:f, s:f}", "queue_ms", 1000.0 * (j->t_start - j->t_arrive),
                                                "run_ms", 1000.0 * (j->t_end - j->t_start), "total_ms",
                                                1000.0 * (j->t_end - j->t_arrive)));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    return s;
}
