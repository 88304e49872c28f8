/* The completion engine: continuous batching over the slots of one llm_session. Between two
 * decode steps, queued requests take free slots (their prompt is prefilled) and finished
 * ones leave, so a request never waits for another one to end while a slot is free. Each
 * sequence samples with its own parameters and generator. */
#include "internal.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct gen_seq {
    serve_job *j;
    int slot;
    dr_rng rng;
    llm_sampler_params sp;
    llm_textstream ts;
    int n_gen;
    json_t *lp;           /* logprobs of the whole answer (non-streamed) */
    const char *finish;   /* "stop", "length", NULL = running */
    int timed_out;
    int sent_role;        /* chat streams: the first delta carries the role */
} gen_seq;

typedef struct gen_engine {
    serve_shared *sh;
    const tokenizer *tok;
    llm_session *s;
    int vocab, n_slots, n_ctx;
    float *logits;   /* n_slots x vocab: each slot's last logits */
    float *batch;
    void *scratch;
    float *lsm;      /* vocab: log-softmax scratch */
    gen_seq *seqs;   /* by slot; j == NULL: free */
} gen_engine;

static double now_s(void) { return dr_now(); }

static void log_softmax(const float *x, int n, float *y) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)(x[i] - mx));
    float ls = (float)log(s);
    for (int i = 0; i < n; i++) y[i] = x[i] - mx - ls;
}

static json_t *piece_json(const tokenizer *tok, int32_t id) {
    char buf[256];
    int n = tok_token_to_piece(tok, id, buf, sizeof buf);
    if (n < 0) n = 0;
    return serve_json_text(buf, (size_t)n);
}
static json_t *bytes_json(const tokenizer *tok, int32_t id) {
    char buf[256];
    int n = tok_token_to_piece(tok, id, buf, sizeof buf);
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)buf[i]));
    return a;
}

/* The log-probability record of one sampled token: the completions form {token: lp} map for
 * the top alternatives, or the chat form {token, logprob, bytes, top_logprobs: [...]}. */
static json_t *token_logprob(gen_engine *g, gen_seq *q, int32_t t) {
    int top = q->j->gen.logprobs - 1;
    int32_t best[SERVE_MAX_LOGPROBS];
    int nb = 0;
    for (int k = 0; k < top; k++) {
        int32_t bi = -1;
        for (int v = 0; v < g->vocab; v++) {
            int used = 0;
            for (int u = 0; u < nb && !used; u++) used = best[u] == v;
            if (!used && (bi < 0 || g->lsm[v] > g->lsm[bi])) bi = v;
        }
        best[nb++] = bi;
    }
    if (q->j->gen.chat) {
        json_t *alts = json_array();
        for (int k = 0; k < nb; k++)
            json_array_append_new(alts, json_pack("{s:o, s:f, s:o}", "token", piece_json(g->tok, best[k]), "logprob",
                                                  (double)g->lsm[best[k]], "bytes", bytes_json(g->tok, best[k])));
        return json_pack("{s:o, s:f, s:o, s:o}", "token", piece_json(g->tok, t), "logprob", (double)g->lsm[t], "bytes",
                         bytes_json(g->tok, t), "top_logprobs", alts);
    }
    json_t *alts = json_object();
    for (int k = 0; k < nb; k++) {
        json_t *key = piece_json(g->tok, best[k]);
        json_object_set_new(alts, json_string_value(key), json_real(g->lsm[best[k]]));
        json_decref(key);
    }
    return json_pack("{s:o, s:f, s:o}", "token", piece_json(g->tok, t), "logprob", (double)g->lsm[t], "top", alts);
}

/* Completions keep logprobs as parallel arrays; a record from token_logprob is split into them. */
static void lp_append(json_t *acc, json_t *rec, int chat, size_t offset) {
    if (chat) {
        json_array_append(json_object_get(acc, "content"), rec);
        return;
    }
    json_array_append(json_object_get(acc, "tokens"), json_object_get(rec, "token"));
    json_array_append(json_object_get(acc, "token_logprobs"), json_object_get(rec, "logprob"));
    json_array_append(json_object_get(acc, "top_logprobs"), json_object_get(rec, "top"));
    json_array_append_new(json_object_get(acc, "text_offset"), json_integer((json_int_t)offset));
}
static json_t *lp_new(int chat) {
    if (chat) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static json_t *chunk_base(gen_engine *g, const serve_job *j) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", j->gen.chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", g->sh->opts.model_name);
}

static void emit_event(serve_job *j, json_t *ev) {
    char *s = dr_json_take_compact(ev);
    if (s) serve_sse_event(&j->out, s, strlen(s));
    free(s);
}

/* A streamed delta (text may be empty when only log-probs are new). Server mutex held. */
static void emit_delta(gen_engine *g, gen_seq *q, const char *text, size_t len, json_t *lprec, const char *finish) {
    serve_job *j = q->j;
    json_t *ev = chunk_base(g, j), *choice;
    if (j->gen.chat) {
        json_t *delta = json_object();
        if (!q->sent_role) json_object_set_new(delta, "role", json_string("assistant"));
        q->sent_role = 1;
        if (len || !finish) json_object_set_new(delta, "content", serve_json_text(text, len));
        choice = json_pack("{s:i, s:o}", "index", 0, "delta", delta);
        if (lprec) json_object_set_new(choice, "logprobs", json_pack("{s:[O]}", "content", lprec));
        else json_object_set_new(choice, "logprobs", json_null());
    } else {
        choice = json_pack("{s:i, s:o}", "index", 0, "text", serve_json_text(text, len));
        if (lprec) {
            json_t *acc = lp_new(0);
            lp_append(acc, lprec, 0, q->ts.released - len);
            json_object_set_new(choice, "logprobs", acc);
        } else
            json_object_set_new(choice, "logprobs", json_null());
    }
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(ev, "choices", json_pack("[o]", choice));
    emit_event(j, ev);
}

static json_t *usage_json(const serve_job *j, int n_gen) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", j->n_prompt, "completion_tokens", n_gen, "total_tokens",
                     j->n_prompt + n_gen);
}

/* The stop string that ended the text (vLLM's stop_reason): a client that gave several stops
 * (the agent protocol's end tags) learns which one the model wrote, since the text leaves it out. */
static json_t *stop_reason(const gen_seq *q) {
    if (!q->ts.stopped || q->ts.stop_index < 0 || q->ts.stop_index >= q->j->gen.n_stops) return json_null();
    return json_string(q->j->gen.stops[q->ts.stop_index]);
}

/* End a sequence: the last text, the answer (whole JSON or the final events), the slot freed.
 * Server mutex held. */
static void seq_end(gen_engine *g, gen_seq *q) {
    serve_job *j = q->j;
    serve_shared *sh = g->sh;
    const char *tail = NULL;
    size_t tail_n = 0;
    if (!q->ts.stopped) llm_textstream_flush(&q->ts, &tail, &tail_n);
    if (q->timed_out) {
        serve_err e;
        serve_fail(&e, 504, "limit_error", "timeout", NULL, (long long)(sh->opts.timeout_s * 1000),
                   "the request ran past this server's limit of %.0f ms (%d tokens generated)", sh->opts.timeout_s * 1000,
                   q->n_gen);
        char *body = serve_err_json(&e);
        j->out.n = j->stream ? j->out.n : 0;
        if (j->stream) {
            if (body) serve_sse_event(&j->out, body, strlen(body));
        } else if (body)
            dr_buf_puts(&j->out, body);
        free(body);
        serve_job_finish(sh, j, 504);
    } else if (j->stream) {
        if (tail_n) emit_delta(g, q, tail, tail_n, NULL, NULL);
        json_t *ev = chunk_base(g, j);
        json_t *choice = j->gen.chat ? json_pack("{s:i, s:{}, s:n}", "index", 0, "delta", "logprobs")
                                     : json_pack("{s:i, s:s, s:n}", "index", 0, "text", "", "logprobs");
        json_object_set_new(choice, "finish_reason", json_string(q->finish));
        json_object_set_new(choice, "stop_reason", stop_reason(q));
        json_object_set_new(ev, "choices", json_pack("[o]", choice));
        json_object_set_new(ev, "usage", usage_json(j, q->n_gen));
        emit_event(j, ev);
        dr_buf_puts(&j->out, "data: [DONE]\n\n");
        serve_job_finish(sh, j, 200);
    } else {
        json_t *r = json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", j->gen.chat ? "chat.completion" : "text_completion",
                              "created", (json_int_t)j->created, "model", sh->opts.model_name);
        json_t *choice;
        if (j->gen.chat)
            choice = json_pack("{s:i, s:{s:s, s:o}}", "index", 0, "message", "role", "assistant", "content",
                               serve_json_text(q->ts.text, q->ts.len));
        else
            choice = json_pack("{s:i, s:o}", "index", 0, "text", serve_json_text(q->ts.text, q->ts.len));
        json_object_set_new(choice, "logprobs", q->lp ? json_incref(q->lp) : json_null());
        json_object_set_new(choice, "finish_reason", json_string(q->finish));
        json_object_set_new(choice, "stop_reason", stop_reason(q));
        json_object_set_new(r, "choices", json_pack("[o]", choice));
        json_object_set_new(r, "usage", usage_json(j, q->n_gen));
        char *s = dr_json_take_compact(r);
        if (s) dr_buf_puts(&j->out, s);
        free(s);
        serve_job_finish(sh, j, s ? 200 : 500);
    }
    serve_metrics_tokens(&sh->metrics, j->n_prompt, q->n_gen);
    json_decref(q->lp);
    llm_textstream_free(&q->ts);
    llm_slot_truncate(g->s, q->slot, 0);
    serve_job_unref(j);
    q->j = NULL;
    sh->active_seqs--;
}

/* A new sequence in a free slot (server mutex NOT held: the prefill is long). */
static int seq_start(gen_engine *g, gen_seq *q) {
    serve_job *j = q->j;
    q->n_gen = 0;
    q->finish = NULL;
    q->timed_out = 0;
    q->sent_role = 0;
    llm_sampler_default(&q->sp);
    q->sp.temperature = (float)j->gen.temperature;
    q->sp.top_p = (float)j->gen.top_p;
    q->sp.top_k = 0;
    q->sp.min_p = 0;
    dr_rng_seed(&q->rng, j->gen.seed);
    llm_textstream_init_tok(&q->ts, g->tok, (const char *const *)j->gen.stops, j->gen.n_stops);
    q->lp = j->gen.logprobs && !j->stream ? lp_new(j->gen.chat) : NULL;
    return llm_prefill(g->s, q->slot, j->prompt_ids, j->n_prompt, g->logits + (size_t)q->slot * g->vocab, 0);
}

static int is_end(gen_engine *g, const serve_job *j, int32_t t) {
    const llm_model *m = g->sh->llm;
    return llm_is_eos(m, t) || (tok_eos(g->tok) >= 0 && t == tok_eos(g->tok)) || (j->gen.chat && t == g->sh->im_end);
}

/* One token for every running sequence; returns how many continue (their slots/tokens in
 * slots/toks). Server mutex held. */
static int step_sample(gen_engine *g, int *slots, int32_t *toks) {
    int n = 0;
    double now = now_s();
    for (int s = 0; s < g->n_slots; s++) {
        gen_seq *q = &g->seqs[s];
        if (!q->j) continue;
        serve_job *j = q->j;
        if (j->cancelled || now > j->deadline) {
            q->timed_out = 1;
            q->finish = "timeout";
            seq_end(g, q);
            continue;
        }
        const float *lg = g->logits + (size_t)s * g->vocab;
        int32_t t = llm_sample(lg, g->vocab, &q->sp, &q->rng, g->scratch);
        q->n_gen++;
        json_t *lprec = NULL;
        if (j->gen.logprobs) {
            log_softmax(lg, g->vocab, g->lsm);
            lprec = token_logprob(g, q, t);
        }
        if (is_end(g, j, t)) {
            if (lprec && q->lp) lp_append(q->lp, lprec, j->gen.chat, q->ts.len);
            json_decref(lprec);
            q->finish = "stop";
            seq_end(g, q);
            continue;
        }
        size_t before = q->ts.len;
        const char *txt = NULL;
        size_t tn = 0;
        llm_textstream_push(&q->ts, t, &txt, &tn);
        if (q->lp && lprec) lp_append(q->lp, lprec, j->gen.chat, before);
        if (j->stream && (tn || lprec)) emit_delta(g, q, txt ? txt : "", tn, lprec, NULL);
        json_decref(lprec);
        if (j->stream && tn) pthread_cond_broadcast(&g->sh->cv_done);
        if (q->ts.stopped) q->finish = "stop";
        else if (q->n_gen >= j->gen.max_tokens || llm_slot_len(g->s, s) + 1 >= g->n_ctx) q->finish = "length";
        if (q->finish) {
            seq_end(g, q);
            continue;
        }
        slots[n] = s;
        toks[n] = t;
        n++;
    }
    return n;
}

void *serve_gen_engine(void *arg) {
    serve_shared *sh = arg;
    dr_threads_set(sh->threads);
    gen_engine g = {0};
    g.sh = sh;
    g.tok = sh->tok;
    g.vocab = sh->llm->cfg.vocab;
    g.n_slots = sh->opts.batching ? sh->opts.slots : 1;
    g.n_ctx = sh->opts.n_ctx;
    int *slots = calloc((size_t)g.n_slots, sizeof *slots);
    int32_t *toks = calloc((size_t)g.n_slots, sizeof *toks);
    g.logits = calloc((size_t)g.n_slots * g.vocab, sizeof(float));
    g.batch = calloc((size_t)g.n_slots * g.vocab, sizeof(float));
    g.lsm = calloc((size_t)g.vocab, sizeof(float));
    g.scratch = malloc(llm_sample_scratch_bytes(g.vocab));
    g.seqs = calloc((size_t)g.n_slots, sizeof *g.seqs);
    int ok = slots && toks && g.logits && g.batch && g.lsm && g.scratch && g.seqs &&
             llm_session_new(&g.s, sh->llm, g.n_slots, g.n_ctx) == DR_OK;
    for (int s = 0; s < g.n_slots && g.seqs; s++) g.seqs[s].slot = s;
    pthread_mutex_lock(&sh->mu);
    for (;;) {
        int running = 0;
        for (int s = 0; s < g.n_slots && ok; s++) running += g.seqs[s].j != NULL;
        while (!sh->stop && !running && !sh->q_gen) pthread_cond_wait(&sh->cv_work, &sh->mu);
        if (sh->stop) break;
        /* admit queued requests into free slots */
        gen_seq *fresh[64];
        int n_fresh = 0;
        for (int s = 0; s < g.n_slots && sh->q_gen; s++) {
            if (!ok) break;
            if (g.seqs[s].j) continue;
            serve_job *j = sh->q_gen;
            sh->q_gen = j->next;
            sh->n_q_gen--;
            j->next = NULL;
            j->t_start = now_s();
            g.seqs[s].j = j;
            sh->active_seqs++;
            if (n_fresh < 64) fresh[n_fresh++] = &g.seqs[s];
        }
        if (!ok) { /* the engine could not start: every request fails */
            while (sh->q_gen) {
                serve_job *j = sh->q_gen;
                sh->q_gen = j->next;
                sh->n_q_gen--;
                serve_err e;
                serve_fail(&e, 500, "server_error", "internal", NULL, -1, "the completion engine could not start");
                char *b = serve_err_json(&e);
                if (b) dr_buf_puts(&j->out, b);
                free(b);
                serve_job_finish(sh, j, 500);
                serve_job_unref(j);
            }
            continue;
        }
        pthread_mutex_unlock(&sh->mu);
        for (int i = 0; i < n_fresh; i++) {
            if (seq_start(&g, fresh[i])) {
                pthread_mutex_lock(&sh->mu);
                fresh[i]->finish = "length";
                seq_end(&g, fresh[i]);
                pthread_mutex_unlock(&sh->mu);
            }
        }
        pthread_mutex_lock(&sh->mu);
        int n = step_sample(&g, slots, toks);
        pthread_cond_broadcast(&sh->cv_done);
        if (!n) continue;
        pthread_mutex_unlock(&sh->mu);
        int rc = llm_decode(g.s, slots, toks, n, g.batch);
        pthread_mutex_lock(&sh->mu);
        for (int i = 0; i < n; i++) {
            gen_seq *q = &g.seqs[slots[i]];
            if (rc) {
                q->finish = "length";
                seq_end(&g, q);
            } else
                memcpy(g.logits + (size_t)slots[i] * g.vocab, g.batch + (size_t)i * g.vocab, (size_t)g.vocab * sizeof(float));
        }
    }
    /* shutting down: end every running sequence */
    for (int s = 0; s < g.n_slots && g.seqs; s++)
        if (g.seqs[s].j) {
            g.seqs[s].finish = "stop";
            seq_end(&g, &g.seqs[s]);
        }
    pthread_mutex_unlock(&sh->mu);
    llm_session_free(g.s);
    free(slots);
    free(toks);
    free(g.logits);
    free(g.batch);
    free(g.lsm);
    free(g.scratch);
    free(g.seqs);
    return NULL;
}
