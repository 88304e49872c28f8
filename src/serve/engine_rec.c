/* The recommendation engine: queued /v1/recommend jobs go through agent_rollout (the same
 * episode code as `deeprec recommend` and `deeprec eval`).
 *   - greedy deeprec requests stream into one running rollout (agent_rollout_stream): a
 *     request takes a slot as soon as one is free and leaves when its episode ends, so it never
 *     waits for another episode while a slot is free (continuous batching);
 *   - greedy rerank requests are rolled out together, up to the slot count;
 *   - a sampled request runs alone, so its seed gives the list `deeprec recommend --seed` gives;
 *   - trm requests are one tool call.
 * The queue is served in order: a stream stops admitting when the head of the queue is a
 * request of another kind, which then runs once the stream's episodes end.
 * serve_opts.rec_engines such loops run on their own threads (serve_rec_engine_ctx: a model
 * session, TRM session and preamble cache each) and take from the one queue; each batches its
 * share of the slots, so the first stream to free a slot cannot take every request. */
#include "internal.h"
#include "deeprec/evaluate.h"
#include "deeprec/llm.h"
#include <stdlib.h>
#include <string.h>

/* The agent's model with a check before every decode step: when every request of the batch
 * has passed its deadline (or was given up) the rollout stops with an error. */
typedef struct guard {
    agent_model inner;
    serve_job **jobs;
    int n;
} guard;
static int g_encode(void *c, const char *t, size_t l, int32_t **ids, size_t *n) {
    guard *g = c;
    return g->inner.encode(g->inner.ctx, t, l, ids, n);
}
static int g_piece(void *c, int32_t id, char *b, size_t cap) {
    guard *g = c;
    return g->inner.piece(g->inner.ctx, id, b, cap);
}
static int g_is_eos(void *c, int32_t id) {
    guard *g = c;
    return g->inner.is_eos(g->inner.ctx, id);
}
static int g_append(void *c, int slot, const int32_t *ids, int n) {
    guard *g = c;
    return g->inner.append(g->inner.ctx, slot, ids, n);
}
static int g_fork(void *c, int src, int dst) {
    guard *g = c;
    return g->inner.fork(g->inner.ctx, src, dst);
}
static void g_release(void *c, int slot) {
    guard *g = c;
    g->inner.release(g->inner.ctx, slot);
}
static int g_decode(void *c, const int *slots, int n, const agent_allow *allow, int32_t *tokens, float *lps) {
    guard *g = c;
    double now = dr_now();
    int live = 0;
    for (int i = 0; i < g->n; i++)
        live += !__atomic_load_n(&g->jobs[i]->cancelled, __ATOMIC_RELAXED) && now <= g->jobs[i]->deadline;
    if (!live) return dr_error(DR_ERR_RANGE, "serve: every request of the batch ran past its time limit");
    return g->inner.decode(g->inner.ctx, slots, n, allow, tokens, lps);
}

int serve_agent_model_new(const serve_shared *sh, agent_prefix_cache *prefix, int n, float temperature, float top_p,
                          uint64_t seed, agent_model *m) {
    if (sh->llm) {
        agent_llm_opts lo = {n, sh->opts.n_ctx, temperature, 0, top_p, seed, 0};
        int rc = agent_model_llm_new(m, sh->llm, sh->tok, &lo);
        if (!rc && prefix) agent_model_llm_share_prefix(m, prefix);
        return rc;
    }
    serve_remote_opts o = sh->remote;
    o.parallel = n;
    o.temperature = temperature;
    o.top_p = top_p;
    o.seed = seed;
    return serve_remote_model_new(m, &o);
}
void serve_agent_model_free(const serve_shared *sh, agent_model *m) {
    if (sh->llm) agent_model_llm_free(m);
    else serve_remote_model_free(m);
}

static void finish_err(serve_shared *sh, serve_job *j, serve_err *e) {
    char *b = serve_err_json(e);
    j->out.n = 0;
    if (b) dr_buf_puts(&j->out, b);
    free(b);
    serve_job_finish(sh, j, e->status);
}

static void timeout_err(serve_shared *sh, serve_job *j) {
    serve_err e;
    serve_fail(&e, 504, "limit_error", "timeout", NULL, (long long)(sh->opts.timeout_s * 1000),
               "the request ran past this server's limit of %.0f ms", sh->opts.timeout_s * 1000);
    finish_err(sh, j, &e);
}

static void run_trm(serve_rec_engine_ctx *ec, serve_job *j) {
    serve_shared *sh = ec->sh;
    int32_t items[AGENT_TOOL_K];
    float scores[AGENT_TOOL_K];
    int n = 0;
    int rc = ec->tool.retrieve(ec->tool.ctx, j->hist, j->n_hist, "", AGENT_TOOL_K, items, scores, &n);
    j->t_end = dr_now();
    pthread_mutex_lock(&sh->mu);
    if (rc) {
        serve_err e;
        serve_fail(&e, 500, "server_error", "internal", NULL, -1, "the TRM failed: %s", dr_error_message());
        finish_err(sh, j, &e);
    } else {
        char *s = serve_rec_json(sh, j, NULL, items, scores, n);
        j->out.n = 0;
        if (s) dr_buf_puts(&j->out, s);
        free(s);
        serve_job_finish(sh, j, s ? 200 : 500);
    }
    pthread_mutex_unlock(&sh->mu);
}

static void run_agent(serve_rec_engine_ctx *ec, serve_job **jobs, int n) {
    serve_shared *sh = ec->sh;
    const serve_rec_req *r0 = &jobs[0]->rec;
    agent_request *reqs = calloc((size_t)n, sizeof *reqs);
    char **prefs = calloc((size_t)n, sizeof *prefs);
    agent_model model = {0};
    agent_episode *eps = NULL;
    int rc = reqs && prefs ? DR_OK : DR_ERR_NOMEM;
    for (int i = 0; i < n && !rc; i++) {
        serve_job *j = jobs[i];
        reqs[i] = (agent_request){j->user >= 0 ? j->user : 0, j->hist, j->n_hist, j->target, NULL};
        if (j->rec.mode == SERVE_RERANK) {
            rc = eval_history_preference(sh->cat, j->hist, j->n_hist, &prefs[i]);
            reqs[i].forced_preference = prefs[i];
        }
    }
    if (!rc) rc = serve_agent_model_new(sh, ec->prefix, n, (float)r0->temperature, (float)r0->top_p, r0->seed, &model);
    if (!rc) {
        guard g = {model, jobs, n};
        agent_model gm = model;
        gm.ctx = &g;
        gm.encode = g_encode;
        gm.piece = g_piece;
        gm.is_eos = g_is_eos;
        gm.append = g_append;
        gm.fork = g_fork;
        gm.decode = g_decode;
        gm.release = g_release;
        agent_rollout_opts ro = sh->opts.rollout;
        ro.samples = 1;
        if (r0->mode == SERVE_RERANK) ro.max_calls = 1;
        ro.max_ctx = sh->opts.n_ctx;
        rc = agent_rollout(&gm, &ec->tool, sh->cat, reqs, n, &ro, &eps);
    }
    double t_end = dr_now();
    serve_err e;
    if (rc) serve_fail(&e, 500, "server_error", "internal", NULL, -1, "the rollout failed: %s", dr_error_message());
    long long gen = 0, calls = 0;
    char **bodies = calloc((size_t)n, sizeof *bodies);
    for (int i = 0; i < n && !rc; i++) {
        jobs[i]->t_end = t_end;
        if (bodies) bodies[i] = serve_rec_json(sh, jobs[i], &eps[i], NULL, NULL, 0);
        gen += eps[i].n_generated;
        calls += eps[i].n_calls;
    }
    if (!rc) {
        serve_metrics_tokens(&sh->metrics, 0, gen);
        serve_metrics_episodes(&sh->metrics, n, calls);
    }
    pthread_mutex_lock(&sh->mu);
    for (int i = 0; i < n; i++) {
        serve_job *j = jobs[i];
        if (dr_now() > j->deadline) timeout_err(sh, j);
        else if (rc) finish_err(sh, j, &e);
        else {
            j->out.n = 0;
            if (bodies && bodies[i]) dr_buf_puts(&j->out, bodies[i]);
            serve_job_finish(sh, j, bodies && bodies[i] ? 200 : 500);
        }
    }
    pthread_mutex_unlock(&sh->mu);
    for (int i = 0; i < n; i++) {
        if (bodies) free(bodies[i]);
        if (prefs) free(prefs[i]);
    }
    free(bodies);
    free(prefs);
    free(reqs);
    if (eps) agent_episodes_free(eps, n);
    serve_agent_model_free(sh, &model);
}

/* ---------------------------------------------------------------- the greedy deeprec stream */
typedef struct rec_stream {
    serve_shared *sh;
    serve_job *first;        /* the job that opened the stream */
    serve_job **live;        /* [cap] jobs with a running episode, by id */
    int cap;
} rec_stream;

static int streamable(const serve_job *j) { return j->rec.mode == SERVE_DEEPREC && j->rec.temperature == 0; }

static const agent_request *st_next(void *ctx, int *id) {
    rec_stream *rs = ctx;
    serve_shared *sh = rs->sh;
    int k = 0;
    while (k < rs->cap && rs->live[k]) k++;
    if (k == rs->cap) return NULL;
    serve_job *j = rs->first;
    rs->first = NULL;
    pthread_mutex_lock(&sh->mu);
    while (!j && sh->q_rec && !sh->stop) {
        serve_job *h = sh->q_rec;
        double now = dr_now();
        if (h->cancelled || now > h->deadline) {
            sh->q_rec = h->next;
            sh->n_q_rec--;
            h->t_start = h->t_end = now;
            timeout_err(sh, h);
            serve_job_unref(h);
            continue;
        }
        if (!streamable(h)) break; /* in order: the other kind runs when this stream ends */
        sh->q_rec = h->next;
        sh->n_q_rec--;
        h->next = NULL;
        h->t_start = now;
        j = h;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!j) return NULL;
    j->areq = (agent_request){j->user >= 0 ? j->user : 0, j->hist, j->n_hist, j->target, NULL};
    rs->live[k] = j;
    *id = k;
    return &j->areq;
}

static void st_done(void *ctx, agent_episode *e) {
    rec_stream *rs = ctx;
    serve_shared *sh = rs->sh;
    serve_job *j = e->request >= 0 && e->request < rs->cap ? rs->live[e->request] : NULL;
    if (j) {
        rs->live[e->request] = NULL;
        j->t_end = dr_now();
        char *body = serve_rec_json(sh, j, e, NULL, NULL, 0);
        serve_metrics_tokens(&sh->metrics, 0, e->n_generated);
        serve_metrics_episodes(&sh->metrics, 1, e->n_calls);
        pthread_mutex_lock(&sh->mu);
        if (dr_now() > j->deadline) timeout_err(sh, j);
        else {
            j->out.n = 0;
            if (body) dr_buf_puts(&j->out, body);
            serve_job_finish(sh, j, body ? 200 : 500);
        }
        serve_job_unref(j);
        pthread_mutex_unlock(&sh->mu);
        free(body);
    }
    agent_episode_free(e);
    free(e);
}

static void run_stream(serve_rec_engine_ctx *ec, const agent_model *greedy, serve_job *first, serve_job **live, int cap) {
    serve_shared *sh = ec->sh;
    rec_stream rs = {sh, first, live, cap};
    agent_rollout_stream st = {st_next, st_done, &rs};
    agent_rollout_opts ro = sh->opts.rollout;
    ro.samples = 1;
    ro.max_ctx = sh->opts.n_ctx;
    ro.stream = &st;
    agent_episode *eps = NULL;
    int rc = agent_rollout(greedy, &ec->tool, sh->cat, NULL, 0, &ro, &eps);
    agent_episodes_free(eps, 0);
    if (rc || rs.first) { /* the jobs whose episodes did not end */
        serve_err e;
        serve_fail(&e, 500, "server_error", "internal", NULL, -1, "the rollout failed: %s", dr_error_message());
        pthread_mutex_lock(&sh->mu);
        if (rs.first) rs.live[0] = rs.first; /* never admitted (an error before the first request) */
        for (int k = 0; k < cap; k++)
            if (live[k]) {
                finish_err(sh, live[k], &e);
                serve_job_unref(live[k]);
                live[k] = NULL;
            }
        pthread_mutex_unlock(&sh->mu);
    }
}

/* Can b share a rollout with a? Same mode and prompts; greedy (a sampled request's list
 * depends on the order its sequence starts, so it runs alone). */
static int compatible(const serve_job *a, const serve_job *b) {
    return a->rec.mode == b->rec.mode && a->rec.mode != SERVE_TRM && a->rec.temperature == 0 &&
           b->rec.temperature == 0;
}

void *serve_rec_engine(void *arg) {
    serve_rec_engine_ctx *ec = arg;
    serve_shared *sh = ec->sh;
    dr_threads_set(ec->threads);
    /* the slots are the server's: each engine batches its share, so a stream that frees a slot
     * first cannot take every request while another engine waits */
    int share = sh->opts.slots / sh->opts.rec_engines;
    int cap = sh->opts.batching ? (share > 0 ? share : 1) : 1;
    serve_job **batch = calloc((size_t)cap, sizeof *batch);
    serve_job **live = calloc((size_t)cap, sizeof *live);
    /* the greedy model of the stream lives as long as the engine */
    agent_model greedy = {0};
    int have_greedy = sh->opts.batching && live && serve_agent_model_new(sh, ec->prefix, cap, 0.0f, 1.0f, 1, &greedy) == DR_OK;
    dr_error_clear();
    pthread_mutex_lock(&sh->mu);
    for (;;) {
        while (!sh->stop && !sh->q_rec) pthread_cond_wait(&sh->cv_work, &sh->mu);
        if (sh->stop) break;
        int n = 0;
        double now = dr_now();
        serve_job **pp = &sh->q_rec;
        while (*pp && n < cap && batch) {
            serve_job *j = *pp;
            if (j->cancelled || now > j->deadline) { /* dropped before it started */
                *pp = j->next;
                sh->n_q_rec--;
                j->t_start = j->t_end = now;
                timeout_err(sh, j);
                serve_job_unref(j);
                continue;
            }
            if (n > 0 && !compatible(batch[0], j)) {
                pp = &j->next;
                continue;
            }
            *pp = j->next;
            sh->n_q_rec--;
            j->next = NULL;
            j->t_start = now;
            batch[n++] = j;
            /* trm and sampled requests run alone; a greedy deeprec one opens a stream that takes the
             * following ones from the queue itself */
            if (j->rec.mode == SERVE_TRM || j->rec.temperature != 0 || (have_greedy && streamable(j))) break;
        }
        if (!n) continue;
        pthread_mutex_unlock(&sh->mu);
        if (have_greedy && streamable(batch[0])) {
            run_stream(ec, &greedy, batch[0], live, cap);
            pthread_mutex_lock(&sh->mu);
            continue;
        }
        if (batch[0]->rec.mode == SERVE_TRM) run_trm(ec, batch[0]);
        else run_agent(ec, batch, n);
        pthread_mutex_lock(&sh->mu);
        for (int i = 0; i < n; i++) serve_job_unref(batch[i]);
    }
    pthread_mutex_unlock(&sh->mu);
    serve_agent_model_free(sh, &greedy);
    free(batch);
    free(live);
    return NULL;
}
