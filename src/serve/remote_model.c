/* A remote OpenAI-compatible server as the agent's model. The rollout works on tokens, a
 * server on text, so each turn is one POST {url}/completions with the whole episode text as the
 * prompt and the protocol's stop strings; the answer comes back to the rollout one piece per
 * decode step (the server's tokens when it sends log-probs, else the turn's text at once), then
 * the stop tag that ended it, so the rollout sees what a local model would have written.
 *
 * Token ids are this adapter's own: 0..255 the bytes of text the rollout appends (prompts and
 * tool results: encode is byte-wise, the server tokenizes), then an end and a "full" marker,
 * then one id per slot for a turn sent whole, then the distinct token texts the servers sent. */
#include "remote_internal.h"
#include "internal.h"
#include "deeprec/agent.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum { ID_EOS = 256, ID_FULL = 257, ID_CHUNK = 258 };
static const char *const k_stops[] = {AGENT_TAG_PREF_END, AGENT_TAG_ANSWER_END};
#define N_STOPS 2

typedef struct slot {
    dr_buf text;             /* the episode so far: what the next turn sends as its prompt */
    int32_t *ids;          /* the pending pieces of the last answer */
    float *lps;
    int n, head, cap;
    char *chunk;           /* the turn's text when the server sent no tokens (id ID_CHUNK + slot) */
    size_t chunk_len;
    int busy;              /* a request is out */
    dr_rng rng;            /* seeds of this sequence's turns */
} slot;

typedef struct remote_ctx {
    serve_remote_opts o;
    char *base, *model;
    remote_http *http;
    slot *slots;
    int n_slots;
    dr_rng seeds;
    uint64_t n_started;
    /* interned token texts: ids ID_CHUNK + n_slots + i */
    char **texts;
    size_t *lens;
    int n_texts, cap_texts;
    dr_strindex index;      /* text -> t; the texts stay apart (id_text's pointers outlive interning) */
} remote_ctx;

static const char *text_key(const void *ctx, int64_t t, size_t *n) {
    const remote_ctx *c = ctx;
    *n = c->lens[t];
    return c->texts[t];
}

/* The id of a token text (interned: the same text always gets the same id). */
static int intern(remote_ctx *c, const char *s, size_t n, int32_t *id) {
    int64_t t = dr_strindex_find(&c->index, s, n);
    if (t >= 0) {
        *id = ID_CHUNK + c->n_slots + (int32_t)t;
        return DR_OK;
    }
    if (c->n_texts == c->cap_texts) {
        int cap = c->cap_texts ? c->cap_texts * 2 : 1024;
        char **t = realloc(c->texts, (size_t)cap * sizeof *t);
        if (t) c->texts = t;
        size_t *l = realloc(c->lens, (size_t)cap * sizeof *l);
        if (l) c->lens = l;
        if (!t || !l) return dr_error(DR_ERR_NOMEM, "out of memory");
        c->cap_texts = cap;
    }
    char *d = malloc(n + 1);
    if (!d) return dr_error(DR_ERR_NOMEM, "out of memory");
    memcpy(d, s, n);
    d[n] = 0;
    c->texts[c->n_texts] = d;
    c->lens[c->n_texts] = n;
    if (dr_strindex_add(&c->index, c->n_texts) < 0) {
        free(d);
        return dr_error_code();
    }
    *id = ID_CHUNK + c->n_slots + c->n_texts++;
    return DR_OK;
}

/* The text of an id (NULL for the markers and unknown ids). */
static const char *id_text(const remote_ctx *c, int32_t id, size_t *n, char *byte) {
    if (id >= 0 && id < 256) {
        *byte = (char)id;
        *n = 1;
        return byte;
    }
    if (id >= ID_CHUNK && id < ID_CHUNK + c->n_slots) {
        const slot *s = &c->slots[id - ID_CHUNK];
        *n = s->chunk_len;
        return s->chunk ? s->chunk : "";
    }
    int t = id - ID_CHUNK - c->n_slots;
    if (t >= 0 && t < c->n_texts) {
        *n = c->lens[t];
        return c->texts[t];
    }
    *n = 0;
    return NULL;
}

static int rm_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = malloc((len ? len : 1) * sizeof **ids);
    if (!*ids) return dr_error(DR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = len;
    return DR_OK;
}
static int rm_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    remote_ctx *c = ctx;
    char b;
    size_t n;
    const char *t = id_text(c, id, &n, &b);
    if (!t) return id == ID_EOS || id == ID_FULL ? 0 : -1;
    if (n <= cap) memcpy(buf, t, n);
    return (int)n;
}
static int rm_is_eos(void *ctx, int32_t id) { return id == ID_EOS ? 1 : id == ID_FULL ? AGENT_EOS_FULL : 0; }

static void drop_pending(slot *s) {
    s->n = s->head = 0;
    free(s->chunk);
    s->chunk = NULL;
    s->chunk_len = 0;
}
static int push(slot *s, int32_t id, float lp) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 256;
        int32_t *i = realloc(s->ids, (size_t)cap * sizeof *i);
        if (i) s->ids = i;
        float *l = realloc(s->lps, (size_t)cap * sizeof *l);
        if (l) s->lps = l;
        if (!i || !l) return dr_error(DR_ERR_NOMEM, "out of memory");
        s->cap = cap;
    }
    s->ids[s->n] = id;
    s->lps[s->n++] = lp;
    return DR_OK;
}

static int rm_append(void *ctx, int sl, const int32_t *ids, int n) {
    remote_ctx *c = ctx;
    if (sl < 0 || sl >= c->n_slots) return dr_error(DR_ERR_RANGE, "remote model: slot %d out of range", sl);
    slot *s = &c->slots[sl];
    if (s->text.n == 0) s->rng = dr_rng_split(&c->seeds, c->n_started++);
    drop_pending(s); /* the rollout ended the turn (a tool call): the rest of the answer is not the model's */
    for (int i = 0; i < n; i++) {
        char b;
        size_t len;
        const char *t = id_text(c, ids[i], &len, &b);
        if (!t) continue;
        if (dr_buf_put(&s->text, t, len)) return dr_error(DR_ERR_NOMEM, "out of memory");
    }
    return DR_OK;
}
static int rm_fork(void *ctx, int src, int dst) {
    remote_ctx *c = ctx;
    slot *d = &c->slots[dst];
    d->text.n = 0;
    drop_pending(d);
    if (dr_buf_put(&d->text, c->slots[src].text.p, c->slots[src].text.n)) return dr_error(DR_ERR_NOMEM, "out of memory");
    d->rng = dr_rng_split(&c->seeds, c->n_started++);
    return DR_OK;
}
static void rm_release(void *ctx, int sl) {
    remote_ctx *c = ctx;
    slot *s = &c->slots[sl];
    if (s->busy) remote_http_reset(c->http, sl);
    s->busy = 0;
    s->text.n = 0;
    drop_pending(s);
}

/* The request of a slot's next turn. */
static int start_turn(remote_ctx *c, int sl) {
    slot *s = &c->slots[sl];
    json_t *stops = json_array();
    for (int i = 0; i < N_STOPS; i++) json_array_append_new(stops, json_string(k_stops[i]));
    json_t *j = json_pack("{s:s, s:o, s:i, s:f, s:f, s:I, s:o, s:i, s:b}", "model", c->model, "prompt",
                          serve_json_text(s->text.p ? s->text.p : "", s->text.n), "max_tokens", (int)c->o.max_tokens,
                          "temperature", (double)c->o.temperature, "top_p", (double)c->o.top_p, "seed",
                          (json_int_t)(dr_rng_u64(&s->rng) & 0x7fffffff), "stop", stops, "logprobs", 1, "stream", 0);
    char *body = dr_json_take_compact(j);
    if (!body) return dr_error(DR_ERR_NOMEM, "out of memory (request body)");
    s->busy = 1;
    return remote_http_post(c->http, sl, "/completions", body);
}

static const char *our_stop(const char *s) {
    for (int i = 0; s && i < N_STOPS; i++)
        if (!strcmp(s, k_stops[i])) return k_stops[i];
    return NULL;
}
/* An open tag of this turn with no end after it. */
static int open_in(const char *t, size_t n, const char *open, const char *close) {
    const char *o = NULL, *p = t;
    while ((p = memmem(p, n - (size_t)(p - t), open, strlen(open)))) o = p++;
    return o && !memmem(o, n - (size_t)(o - t), close, strlen(close));
}

/* Which protocol stop ended a turn that stopped: the server's word when it has the field (none
 * named: the model ended, EOS); else one the server left at the end of the text (*len
 * shortened); else the tag this turn left open (an answer block, then a preference), which is
 * a guess: a model that ends (EOS) inside an open tag reads as having closed it. */
static const char *ended_by(const remote_completion *r, size_t *len) {
    const char *s = our_stop(r->stop);
    for (int i = 0; i < N_STOPS && !s && !r->stop_said; i++) {
        size_t k = strlen(k_stops[i]);
        if (*len >= k && !memcmp(r->text + *len - k, k_stops[i], k)) s = k_stops[i];
    }
    if (s && *len >= strlen(s) && !memcmp(r->text + *len - strlen(s), s, strlen(s))) *len -= strlen(s);
    if (s || r->stop_said) return s;
    if (open_in(r->text, *len, AGENT_TAG_ANSWER, AGENT_TAG_ANSWER_END)) return AGENT_TAG_ANSWER_END;
    if (open_in(r->text, *len, AGENT_TAG_PREF, AGENT_TAG_PREF_END)) return AGENT_TAG_PREF_END;
    return NULL;
}

/* The pieces of a turn's answer, queued on the slot. */
static int take_answer(remote_ctx *c, int sl, const remote_completion *r) {
    slot *s = &c->slots[sl];
    drop_pending(s);
    int length = r->finish && !strcmp(r->finish, "length");
    size_t len = r->len;
    const char *stop = length ? NULL : ended_by(r, &len);
    /* the server's tokens when they spell the text exactly */
    int k = 0;
    size_t at = 0;
    while (k < r->n_tokens && at < len && r->token_len[k] <= len - at && !memcmp(r->text + at, r->tokens[k], r->token_len[k]))
        at += r->token_len[k++];
    int rc = DR_OK;
    if (at == len && (k > 0 || len == 0)) {
        for (int i = 0; i < k && !rc; i++) {
            int32_t id;
            if (!(rc = intern(c, r->tokens[i], r->token_len[i], &id))) rc = push(s, id, r->logprobs[i]);
        }
    } else {
        k = 0;
        if (!(s->chunk = malloc(len + 1))) return dr_error(DR_ERR_NOMEM, "out of memory");
        memcpy(s->chunk, r->text, len);
        s->chunk_len = len;
        rc = push(s, ID_CHUNK + sl, 0.0f);
    }
    float next_lp = k < r->n_tokens ? r->logprobs[k] : 0.0f; /* the token that ended the turn */
    if (rc) return rc;
    if (length) return push(s, ID_FULL, 0.0f);
    if (!stop) return push(s, ID_EOS, next_lp);
    int32_t id;
    return (rc = intern(c, stop, strlen(stop), &id)) ? rc : push(s, id, next_lp);
}

/* A finished request: its pieces, or the context marker for a prompt over the server's context,
 * or the error (4xx at once; connection errors and 5xx once the retries are spent). */
static int turn_ended(remote_ctx *c, int sl) {
    slot *s = &c->slots[sl];
    s->busy = 0;
    const char *body;
    size_t n;
    long st = remote_http_result(c->http, sl, &body, &n);
    int rc = DR_OK;
    if (st == 0) {
        rc = dr_error_code();
    } else if (st == 400 && remote_error_is_context(body, n)) {
        drop_pending(s);
        rc = push(s, ID_FULL, 0.0f);
    } else if (st < 200 || st > 299) {
        char *msg = remote_error_message(body, n);
        rc = dr_error(DR_ERR_IO, "POST %s/completions: HTTP %ld: %s", c->base, st, msg ? msg : "");
        free(msg);
    } else {
        remote_completion r;
        if ((rc = remote_completion_parse(body, n, &r))) {
            dr_error_context("POST %s/completions", c->base);
        } else {
            rc = take_answer(c, sl, &r);
            remote_completion_free(&r);
        }
    }
    remote_http_reset(c->http, sl);
    return rc;
}

static int rm_decode(void *ctx, const int *slots, int n, const agent_allow *allow, int32_t *out, float *lps) {
    remote_ctx *c = ctx;
    for (int i = 0; allow && i < n; i++)
        if (allow[i].n > 0)
            return dr_error(DR_ERR_UNSUPPORTED, "constrained answers need the model's logits, which a remote LLM "
                                                "does not give (--constrain off)");
    int done[64 + 1], *dp = c->n_slots <= 64 ? done : malloc((size_t)c->n_slots * sizeof *dp);
    if (!dp) return dr_error(DR_ERR_NOMEM, "out of memory");
    int rc = DR_OK, got = 0;
    for (;;) {
        for (int i = 0; i < n && !rc; i++) {
            slot *s = &c->slots[slots[i]];
            out[i] = AGENT_TOKEN_NONE;
            lps[i] = 0;
            if (s->head < s->n) {
                int32_t id = s->ids[s->head];
                lps[i] = s->lps[s->head++];
                out[i] = id;
                char b;
                size_t len;
                const char *t = id_text(c, id, &len, &b);
                if (t && dr_buf_put(&s->text, t, len)) rc = dr_error(DR_ERR_NOMEM, "out of memory");
                got++;
            } else if (!s->busy) {
                rc = start_turn(c, slots[i]);
            }
        }
        /* drive the transfers; block only when no slot has a piece to give */
        int n_done = 0;
        if (!rc) rc = remote_http_wait(c->http, got ? 0 : -1, dp, &n_done);
        for (int k = 0; k < n_done && !rc; k++) rc = turn_ended(c, dp[k]);
        if (rc || got) break;
    }
    if (dp != done) free(dp);
    return rc;
}

int serve_remote_model_new(agent_model *out, const serve_remote_opts *o) {
    memset(out, 0, sizeof *out);
    remote_ctx *c = calloc(1, sizeof *c);
    if (!c) return dr_error(DR_ERR_NOMEM, "out of memory");
    dr_strindex_init(&c->index, text_key, c, 0);
    c->o = *o;
    c->n_slots = o->parallel > 0 ? o->parallel : 4;
    if (c->o.max_tokens <= 0) c->o.max_tokens = 1024;
    if (!(c->o.top_p > 0) || c->o.top_p > 1) c->o.top_p = 1;
    dr_rng_seed(&c->seeds, o->seed);
    int rc = remote_url_check(o->url, &c->base);
    if (rc) goto fail;
    remote_http_opts ho = {c->base, o->api_key, c->n_slots, o->max_attempts > 0 ? o->max_attempts : 5,
                           o->backoff_s > 0 ? o->backoff_s : 0.25, o->timeout_s > 0 ? o->timeout_s : 600};
    if (!(c->slots = calloc((size_t)c->n_slots, sizeof *c->slots))) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = remote_http_new(&c->http, &ho))) goto fail;
    if (o->model && *o->model) {
        c->model = strdup(o->model);
    } else {
        /* the server's own model: also checks, before any episode, that the URL answers */
        char *body = NULL;
        size_t n = 0;
        if ((rc = remote_http_get(c->http, "/models", &body, &n))) goto fail;
        json_t *j = json_loadb(body, n, 0, NULL);
        const char *id = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id"));
        if (id) c->model = strdup(id);
        json_decref(j);
        free(body);
        if (!id) {
            rc = dr_error(DR_ERR_FORMAT, "GET %s/models lists no model", c->base);
            dr_error_hint("name one with --llm-model");
            goto fail;
        }
    }
    if (!c->model) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *out = (agent_model){c, c->n_slots, 0, rm_encode, rm_piece, rm_is_eos, rm_append, rm_fork, rm_decode, rm_release};
    /* the server keeps its own context: the rollout's cap counts prompt bytes, so it is lifted */
    out->n_ctx = INT32_MAX / 2;
    return DR_OK;
fail:
    out->ctx = c;
    serve_remote_model_free(out);
    return rc;
}

void serve_remote_model_free(agent_model *m) {
    if (!m || !m->ctx) return;
    remote_ctx *c = m->ctx;
    remote_http_free(c->http);
    for (int i = 0; c->slots && i < c->n_slots; i++) {
        dr_buf_free(&c->slots[i].text);
        drop_pending(&c->slots[i]);
        free(c->slots[i].ids);
        free(c->slots[i].lps);
    }
    free(c->slots);
    for (int t = 0; t < c->n_texts; t++) free(c->texts[t]);
    free(c->texts);
    free(c->lens);
    dr_strindex_free(&c->index);
    free(c->base);
    free(c->model);
    free(c);
    memset(m, 0, sizeof *m);
}

const char *serve_remote_model_name(const agent_model *m) { return m && m->ctx ? ((remote_ctx *)m->ctx)->model : NULL; }

int serve_remote_url_ok(const char *url) {
    char *n = NULL;
    int rc = remote_url_check(url, &n);
    free(n);
    return rc;
}
