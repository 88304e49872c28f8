/* The HTTP layer: libmicrohttpd with one thread per connection. A connection thread parses
 * and checks the request, queues a job for an engine thread and waits for its result (or,
 * when streaming, hands libmicrohttpd a reader that blocks until the engine wrote more). */
#include "internal.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct serve_server {
    serve_shared sh;
    struct MHD_Daemon *d;
    serve_rec_engine_ctx *rec; /* [sh.opts.rec_engines] */
    int n_rec;        /* recommendation engine threads started */
    pthread_t t_gen;
    int gen_started;
    int sessions;     /* open connections (atomic) */
    long long next_id;
    int port;
};

void serve_opts_default(serve_opts *o) {
    /* loopback, no API key; the limits, each answered with its own 4xx or 503 */
    *o = (serve_opts){.host = "127.0.0.1", .port = 8080, .model_name = "deeprec",
                      .max_body = 1 << 20, .timeout_s = 300, .max_queue = 64, .max_sessions = 32, .max_tokens = 2048,
                      .slots = 8, .batching = 1, .rec_engines = 0};
    agent_rollout_opts_default(&o->rollout);
}

/* ---------------------------------------------------------------- jobs */
void serve_job_unref(serve_job *j) {
    if (--j->refs > 0) return;
    serve_rec_req_free(&j->rec);
    serve_gen_req_free(&j->gen);
    free(j->hist);
    free(j->prompt_ids);
    dr_buf_free(&j->out);
    free(j);
}
void serve_job_finish(serve_shared *sh, serve_job *j, int status) {
    j->status = status;
    j->done = 1;
    if (!j->t_end) j->t_end = dr_now();
    pthread_cond_broadcast(&sh->cv_done);
}

/* ---------------------------------------------------------------- per-connection state */
typedef struct req {
    dr_buf body;
    int too_large;
    double t0;
    int ep;
    int status;
} req;

static enum MHD_Result send_buf(struct MHD_Connection *c, req *r, int status, const char *type, const char *data,
                                size_t n) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ok;
}
static enum MHD_Result send_json(struct MHD_Connection *c, req *r, int status, const char *body) {
    return send_buf(c, r, status, "application/json", body, strlen(body));
}
static enum MHD_Result send_err(struct MHD_Connection *c, req *r, const serve_err *e) {
    char *b = serve_err_json(e);
    enum MHD_Result ok = b ? send_json(c, r, e->status, b) : MHD_NO;
    free(b);
    return ok;
}
static enum MHD_Result send_jobj(struct MHD_Connection *c, req *r, int status, json_t *j) {
    char *s = dr_json_take_compact(j);
    enum MHD_Result ok = s ? send_json(c, r, status, s) : MHD_NO;
    free(s);
    return ok;
}

/* ---------------------------------------------------------------- streaming */
typedef struct stream_st {
    serve_server *srv;
    serve_job *job;
    size_t sent;
} stream_st;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_st *st = cls;
    serve_shared *sh = &st->srv->sh;
    serve_job *j = st->job;
    ssize_t n = 0;
    pthread_mutex_lock(&sh->mu);
    for (;;) {
        if (j->out.n > st->sent) {
            size_t k = j->out.n - st->sent;
            if (k > max) k = max;
            memcpy(buf, j->out.p + st->sent, k);
            st->sent += k;
            n = (ssize_t)k;
            break;
        }
        if (j->done || sh->stop) {
            n = MHD_CONTENT_READER_END_OF_STREAM;
            break;
        }
        /* the engine ends a sequence at its deadline; this is the backstop if it cannot */
        double wait_until = j->deadline + 5.0;
        if (dr_now() > wait_until) {
            j->cancelled = 1;
            n = MHD_CONTENT_READER_END_WITH_ERROR;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&sh->cv_done, &sh->mu, &ts);
    }
    pthread_mutex_unlock(&sh->mu);
    return n;
}
static void stream_free(void *cls) {
    stream_st *st = cls;
    serve_shared *sh = &st->srv->sh;
    pthread_mutex_lock(&sh->mu);
    st->job->cancelled = 1; /* a client that left stops its sequence */
    serve_job_unref(st->job);
    pthread_mutex_unlock(&sh->mu);
    free(st);
}

/* ---------------------------------------------------------------- engine requests */
static int enqueue(serve_server *srv, serve_job *j, serve_err *e) {
    serve_shared *sh = &srv->sh;
    pthread_mutex_lock(&sh->mu);
    int depth = sh->n_q_rec + sh->n_q_gen;
    if (depth >= sh->opts.max_queue) {
        pthread_mutex_unlock(&sh->mu);
        return serve_fail(e, 503, "limit_error", "max_queue", NULL, sh->opts.max_queue,
                          "the queue is full (%d requests wait for the engine; limit %d): retry later", depth,
                          sh->opts.max_queue);
    }
    serve_job **pp = j->kind == JOB_RECOMMEND ? &sh->q_rec : &sh->q_gen;
    while (*pp) pp = &(*pp)->next;
    *pp = j;
    if (j->kind == JOB_RECOMMEND) sh->n_q_rec++;
    else sh->n_q_gen++;
    j->refs = 2;
    pthread_cond_broadcast(&sh->cv_work);
    pthread_mutex_unlock(&sh->mu);
    return DR_OK;
}

/* Wait for a whole answer; at the deadline the request is given up (504). */
static enum MHD_Result wait_and_send(serve_server *srv, struct MHD_Connection *c, req *r, serve_job *j) {
    serve_shared *sh = &srv->sh;
    pthread_mutex_lock(&sh->mu);
    while (!j->done && !sh->stop) {
        /* the engines answer 504 themselves at the deadline; this waits a little longer for that */
        if (dr_now() > j->deadline + 1.0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&sh->cv_done, &sh->mu, &ts);
    }
    enum MHD_Result ok;
    if (j->done) {
        char *body = j->out.p ? strdup(j->out.p) : strdup("{}");
        int status = j->status;
        serve_job_unref(j);
        pthread_mutex_unlock(&sh->mu);
        ok = body ? send_json(c, r, status, body) : MHD_NO;
        free(body);
        return ok;
    }
    j->cancelled = 1;
    serve_job_unref(j);
    pthread_mutex_unlock(&sh->mu);
    serve_err e;
    if (sh->stop) serve_fail(&e, 503, "server_error", "shutting_down", NULL, -1, "the server is shutting down");
    else
        serve_fail(&e, 504, "limit_error", "timeout", NULL, (long long)(sh->opts.timeout_s * 1000),
                   "the request ran past this server's limit of %.0f ms", sh->opts.timeout_s * 1000);
    return send_err(c, r, &e);
}

static serve_job *job_new(serve_server *srv, int kind, double t0, const char *prefix) {
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->kind = kind;
    j->t_arrive = t0;
    j->deadline = t0 + srv->sh.opts.timeout_s;
    j->created = (long long)time(NULL);
    snprintf(j->id, sizeof j->id, "%s-%lld", prefix, __atomic_add_fetch(&srv->next_id, 1, __ATOMIC_RELAXED));
    j->refs = 1;
    return j;
}

static enum MHD_Result do_recommend(serve_server *srv, struct MHD_Connection *c, req *r) {
    serve_err e;
    serve_job *j = job_new(srv, JOB_RECOMMEND, r->t0, "rec");
    if (!j) return MHD_NO;
    if (serve_parse_recommend(r->body.p ? r->body.p : "", r->body.n, &j->rec, &e) || serve_rec_resolve(&srv->sh, j, &e) ||
        enqueue(srv, j, &e)) {
        serve_job_unref(j);
        return send_err(c, r, &e);
    }
    return wait_and_send(srv, c, r, j);
}

static enum MHD_Result do_generate(serve_server *srv, struct MHD_Connection *c, req *r, int chat) {
    serve_shared *sh = &srv->sh;
    serve_err e;
    serve_job *j = job_new(srv, JOB_GENERATE, r->t0, chat ? "chatcmpl" : "cmpl");
    if (!j) return MHD_NO;
    if (serve_parse_generate(r->body.p ? r->body.p : "", r->body.n, chat, sh->opts.max_tokens, &j->gen, &e)) goto refuse;
    if (!j->gen.has_seed) j->gen.seed = (uint64_t)__atomic_add_fetch(&srv->next_id, 1, __ATOMIC_RELAXED);
    j->stream = j->gen.stream;
    char *text = NULL;
    if (chat) {
        tok_chat_msg *m = calloc((size_t)j->gen.n_msgs, sizeof *m);
        if (!m) goto oom;
        for (int i = 0; i < j->gen.n_msgs; i++) m[i] = (tok_chat_msg){j->gen.msgs[i].role, j->gen.msgs[i].content};
        int rc = tok_chat_format_as(tok_chat_form_of(sh->tok), m, (size_t)j->gen.n_msgs, 1, &text);
        free(m);
        if (rc) goto oom;
    } else if (!(text = strdup(j->gen.prompt)))
        goto oom;
    size_t n = 0;
    int rc = tok_encode(sh->tok, text, strlen(text), TOK_ENC_DEFAULT, &j->prompt_ids, &n);
    free(text);
    if (rc) goto oom;
    j->n_prompt = (int)n;
    if (n == 0) {
        serve_fail(&e, 400, "invalid_request_error", "invalid_value", "prompt", -1, "the prompt is empty");
        goto refuse;
    }
    if ((long long)n >= sh->opts.n_ctx) {
        serve_fail(&e, 400, "limit_error", "context_length", chat ? "messages" : "prompt", sh->opts.n_ctx,
                   "the prompt has %zu tokens; the context holds %d (prompt and answer together)", n, (int)sh->opts.n_ctx);
        goto refuse;
    }
    if (enqueue(srv, j, &e)) goto refuse;
    if (!j->stream) return wait_and_send(srv, c, r, j);
    stream_st *st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    st->srv = srv;
    st->job = j; /* the HTTP side's reference passes to the stream */
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return ok;
oom:
    serve_fail(&e, 500, "server_error", "internal", NULL, -1, "could not build the prompt: %s", dr_error_message());
refuse:
    serve_job_unref(j);
    return send_err(c, r, &e);
}

/* ---------------------------------------------------------------- small endpoints */
static int query_int(struct MHD_Connection *c, const char *name, long lo, long hi, long def, long *out, serve_err *e) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    *out = def;
    if (!v) return DR_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return serve_fail(e, 400, "invalid_request_error", "invalid_value", name, -1,
                          "query parameter '%s' must be an integer in [%ld, %ld]", name, lo, hi);
    *out = x;
    return DR_OK;
}

static enum MHD_Result do_users(serve_server *srv, struct MHD_Connection *c, req *r) {
    const dr_dataset *d = srv->sh.data;
    serve_err e;
    long off, lim;
    if (query_int(c, "offset", 0, d->n_users, 0, &off, &e) || query_int(c, "limit", 1, 1000, 100, &lim, &e))
        return send_err(c, r, &e);
    json_t *a = json_array();
    for (long u = off; u < d->n_users && u < off + lim; u++)
        json_array_append_new(a, json_pack("{s:s, s:i, s:I}", "id", d->user_ids[u], "index", (int)u, "history_length",
                                           (json_int_t)dr_data_seq_len(d, (int32_t)u)));
    return send_jobj(c, r, 200, json_pack("{s:s, s:i, s:i, s:o}", "object", "list", "total", (int)d->n_users, "offset",
                                          (int)off, "data", a));
}

static enum MHD_Result do_metrics(serve_server *srv, struct MHD_Connection *c, req *r) {
    serve_shared *sh = &srv->sh;
    pthread_mutex_lock(&sh->mu);
    int depth = sh->n_q_rec + sh->n_q_gen, active = sh->active_seqs;
    pthread_mutex_unlock(&sh->mu);
    serve_gauges g = {depth, active, __atomic_load_n(&srv->sessions, __ATOMIC_RELAXED), 0, 0};
    for (int e = 0; e < sh->opts.rec_engines; e++) {
        int64_t hits = 0, reused = 0;
        agent_prefix_cache_stats(srv->rec[e].prefix, &hits, &reused);
        g.prefix_hits += hits, g.prefix_reused_tokens += reused;
    }
    dr_buf b = {0};
    int rc = serve_metrics_render(&sh->metrics, &g, &b);
    enum MHD_Result ok = rc ? MHD_NO : send_buf(c, r, 200, "text/plain; version=0.0.4", b.p, b.n);
    dr_buf_free(&b);
    return ok;
}

/* ---------------------------------------------------------------- routing */
static int route(const char *url) {
    static const struct { const char *url; int ep; } t[] = {
        {"/v1/recommend", EP_RECOMMEND}, {"/v1/completions", EP_COMPLETIONS}, {"/v1/chat/completions", EP_CHAT},
        {"/v1/models", EP_MODELS},       {"/v1/users", EP_USERS},             {"/health", EP_HEALTH},
        {"/metrics", EP_METRICS},        {"/", EP_PAGE},                      {"/index.html", EP_PAGE}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strcmp(url, t[i].url)) return t[i].ep;
    return EP_OTHER;
}

/* Constant-time comparison of the bearer token with the key. */
static int key_ok(const char *auth, const char *key) {
    if (!auth || strncmp(auth, "Bearer ", 7)) return 0;
    const char *g = auth + 7;
    size_t gl = strlen(g), kl = strlen(key);
    unsigned diff = gl != kl;
    for (size_t i = 0; i < kl; i++) diff |= (unsigned)(unsigned char)key[i] ^ (unsigned char)(i < gl ? g[i] : 0);
    return diff == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    serve_server *srv = cls;
    serve_shared *sh = &srv->sh;
    req *r = *con_cls;
    serve_err e;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->t0 = dr_now();
        r->ep = route(url);
        *con_cls = r;
        /* refuse a declared oversized body before reading it */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sh->opts.max_body) {
            serve_fail(&e, 413, "limit_error", "max_body_bytes", NULL, (long long)sh->opts.max_body,
                       "the body has %s bytes; this server takes at most %zu", cl, sh->opts.max_body);
            return send_err(c, r, &e);
        }
        return MHD_YES;
    }
    if (r->status) return MHD_YES; /* answered early: drop the rest of the upload */
    if (*upload_size) {
        if (r->body.n + *upload_size > sh->opts.max_body) r->too_large = 1;
        else if (dr_buf_put(&r->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large) {
        serve_fail(&e, 413, "limit_error", "max_body_bytes", NULL, (long long)sh->opts.max_body,
                   "the body is larger than this server's limit of %zu bytes", sh->opts.max_body);
        return send_err(c, r, &e);
    }
    if (__atomic_load_n(&srv->sessions, __ATOMIC_RELAXED) > sh->opts.max_sessions) {
        serve_fail(&e, 503, "limit_error", "max_sessions", NULL, sh->opts.max_sessions,
                   "%d connections are open; this server serves at most %d at once: retry later",
                   __atomic_load_n(&srv->sessions, __ATOMIC_RELAXED), sh->opts.max_sessions);
        return send_err(c, r, &e);
    }
    int ep = r->ep;
    int post = ep == EP_RECOMMEND || ep == EP_COMPLETIONS || ep == EP_CHAT;
    if (ep == EP_OTHER) {
        serve_fail(&e, 404, "invalid_request_error", "not_found", NULL, -1, "no endpoint %.100s", url);
        return send_err(c, r, &e);
    }
    if (strcmp(method, post ? "POST" : "GET")) {
        serve_fail(&e, 405, "invalid_request_error", "method_not_allowed", NULL, -1, "%.100s takes %s", url,
                   post ? "POST" : "GET");
        return send_err(c, r, &e);
    }
    int protected_ = ep != EP_PAGE && ep != EP_HEALTH;
    if (protected_ && sh->opts.api_key && sh->opts.api_key[0] &&
        !key_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), sh->opts.api_key)) {
        serve_fail(&e, 401, "authentication_error", "unauthorized", NULL, -1,
                   "this server needs an API key: send the header \"Authorization: Bearer KEY\"");
        return send_err(c, r, &e);
    }
    switch (ep) {
    case EP_RECOMMEND: return do_recommend(srv, c, r);
    case EP_COMPLETIONS:
    case EP_CHAT:
        if (!sh->llm) {
            serve_fail(&e, 404, "invalid_request_error", "not_found", NULL, -1,
                       "this server's LLM is remote (%.200s): ask it for completions", sh->remote.url);
            return send_err(c, r, &e);
        }
        return do_generate(srv, c, r, ep == EP_CHAT);
    case EP_MODELS:
        return send_jobj(c, r, 200,
                         json_pack("{s:s, s:[{s:s, s:s, s:i, s:s}]}", "object", "list", "data", "id", sh->opts.model_name,
                                   "object", "model", "created", 0, "owned_by", "deeprec"));
    case EP_USERS: return do_users(srv, c, r);
    case EP_HEALTH:
        return send_jobj(c, r, 200, json_pack("{s:s, s:s, s:i, s:i}", "status", "ok", "model", sh->opts.model_name,
                                              "users", (int)sh->data->n_users, "items", (int)sh->data->n_items));
    case EP_METRICS: return do_metrics(srv, c, r);
    default: return send_buf(c, r, 200, "text/html; charset=utf-8", serve_page_html, strlen(serve_page_html));
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    serve_server *srv = cls;
    req *r = *con_cls;
    if (!r) return;
    serve_metrics_request(&srv->sh.metrics, r->ep, r->status ? r->status : 500, dr_now() - r->t0);
    dr_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

static void notify_conn(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode t) {
    serve_server *srv = cls;
    if (t == MHD_CONNECTION_NOTIFY_STARTED) __atomic_add_fetch(&srv->sessions, 1, __ATOMIC_RELAXED);
    else __atomic_sub_fetch(&srv->sessions, 1, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- start / stop */
/* serve_opts.rec_engines 0: see serve.h */
static int auto_rec_engines(const llm_model *llm, int threads) {
    if (!llm || llm_model_weight_bytes(llm) > SERVE_SMALL_MODEL_BYTES) return 1;
    return threads < 1 ? 1 : threads > SERVE_AUTO_REC_ENGINES ? SERVE_AUTO_REC_ENGINES : threads;
}

int serve_start(serve_server **out, const serve_inputs *in, const serve_opts *o) {
    *out = NULL;
    const serve_remote_opts *ro = in->remote && in->remote->url ? in->remote : NULL;
    if (!in->data || !in->trm || !(in->llm || ro))
        return dr_error(DR_ERR_ARG, "serve needs a dataset, a TRM and an LLM (local or remote)");
    if (ro && o->rollout.constrain_titles)
        return dr_error(DR_ERR_ARG, "serve: constrained answers need the model's logits, which a remote LLM does not give");
    if (o->slots < 1 || o->slots > 64) return dr_error(DR_ERR_ARG, "serve: slots must be in 1..64 (got %d)", o->slots);
    if (o->rec_engines < 0 || o->rec_engines > SERVE_MAX_REC_ENGINES)
        return dr_error(DR_ERR_ARG, "serve: rec_engines must be in 0..%d (got %d)", SERVE_MAX_REC_ENGINES, o->rec_engines);
    if (o->max_tokens < 1 || o->max_queue < 0 || o->max_sessions < 1 || !(o->timeout_s > 0) || o->max_body < 1)
        return dr_error(DR_ERR_ARG, "serve: limits must be positive (max_tokens, max_sessions, timeout, max_body; "
                                    "max_queue >= 0)");
    const tokenizer *tok = in->tok ? in->tok : in->llm ? in->llm->tok : NULL;
    if (!tok && !ro) return dr_error(DR_ERR_ARG, "the LLM has no tokenizer (give one with --tokenizer)");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
        return dr_error(DR_ERR_ARG, "serve: host '%s' is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)", o->host);
    if (o->port < 0 || o->port > 65535) return dr_error(DR_ERR_ARG, "serve: port %d is not in 0..65535", o->port);
    serve_server *srv = calloc(1, sizeof *srv);
    if (!srv) return dr_error(DR_ERR_NOMEM, "out of memory");
    serve_shared *sh = &srv->sh;
    sh->opts = *o;
    if (!sh->opts.model_name) sh->opts.model_name = "deeprec";
    int32_t mctx = in->llm ? in->llm->cfg.context : 0;
    if (sh->opts.n_ctx <= 0) sh->opts.n_ctx = mctx > 0 && mctx < 4096 ? mctx : 4096;
    if (ro) sh->opts.n_ctx = 0; /* the remote server keeps its context; the rollout would count prompt bytes */
    sh->data = in->data;
    sh->trm = in->trm;
    sh->llm = in->llm;
    sh->tok = tok;
    sh->im_end = -1;
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok && tok_encode(tok, "<|im_end|>", 10, TOK_ENC_DEFAULT, &ids, &n) == DR_OK && n == 1) sh->im_end = ids[0];
    free(ids);
    dr_error_clear();
    int rc;
    if (ro) {
        /* one model now: the URL answers and the server's model name is known before any request */
        sh->remote = *ro;
        agent_model probe;
        if ((rc = serve_remote_model_new(&probe, ro))) {
            free(srv);
            return rc;
        }
        /* owned copies: the caller's strings need not outlive this call */
        sh->remote_model = strdup(serve_remote_model_name(&probe));
        serve_remote_model_free(&probe);
        sh->remote_url = strdup(ro->url);
        sh->remote_key = ro->api_key ? strdup(ro->api_key) : NULL;
        if (!sh->remote_model || !sh->remote_url || (ro->api_key && !sh->remote_key)) {
            free(sh->remote_model);
            free(sh->remote_url);
            free(sh->remote_key);
            free(srv);
            return dr_error(DR_ERR_NOMEM, "out of memory");
        }
        sh->remote.model = sh->remote_model;
        sh->remote.url = sh->remote_url;
        sh->remote.api_key = sh->remote_key;
    }
    sh->threads = dr_threads_current();
    if (sh->opts.rec_engines == 0) sh->opts.rec_engines = auto_rec_engines(in->llm, sh->threads);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv_work, NULL);
    pthread_cond_init(&sh->cv_done, NULL);
    serve_metrics_init(&sh->metrics);
    if ((rc = agent_catalog_build(in->data, &sh->cat))) goto fail;
    /* every engine's tool and cache are made here, before any thread runs: the TRM's scoring
     * table is refreshed by the first session, once */
    int ne = sh->opts.rec_engines;
    if (!(srv->rec = calloc((size_t)ne, sizeof *srv->rec))) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int e = 0; e < ne; e++) {
        serve_rec_engine_ctx *ec = &srv->rec[e];
        ec->sh = sh;
        ec->threads = sh->threads / ne > 0 ? sh->threads / ne : 1;
        if ((rc = agent_tool_trm_new(&ec->tool, in->trm, 1))) goto fail;
        if (sh->llm && (rc = agent_prefix_cache_new(&ec->prefix, sh->llm, sh->tok))) goto fail;
    }
    for (; srv->n_rec < ne; srv->n_rec++)
        if (pthread_create(&srv->rec[srv->n_rec].thread, NULL, serve_rec_engine, &srv->rec[srv->n_rec])) {
            rc = dr_error(DR_ERR_INTERNAL, "serve: could not start recommendation engine thread %d", srv->n_rec + 1);
            goto fail;
        }
    if (sh->llm && pthread_create(&srv->t_gen, NULL, serve_gen_engine, sh)) {
        rc = dr_error(DR_ERR_INTERNAL, "serve: could not start the completion engine thread");
        goto fail;
    }
    srv->gen_started = sh->llm != NULL;
    srv->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, (uint16_t)o->port, NULL,
                              NULL, handle, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, srv, MHD_OPTION_NOTIFY_CONNECTION, notify_conn, srv,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!srv->d) {
        rc = dr_error(DR_ERR_IO, "serve: could not listen on %s:%d (%s)", o->host, o->port, strerror(errno));
        dr_error_hint("the port may be in use: choose another with --port (0 = any free port)");
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : o->port;
    *out = srv;
    return DR_OK;
fail:
    serve_stop(srv);
    return rc;
}

int serve_port(const serve_server *s) { return s->port; }
int serve_rec_engines(const serve_server *s) { return s->sh.opts.rec_engines; }

void serve_stop(serve_server *srv) {
    if (!srv) return;
    serve_shared *sh = &srv->sh;
    pthread_mutex_lock(&sh->mu);
    sh->stop = 1;
    pthread_cond_broadcast(&sh->cv_work);
    pthread_cond_broadcast(&sh->cv_done);
    pthread_mutex_unlock(&sh->mu);
    if (srv->d) MHD_stop_daemon(srv->d);
    for (int e = 0; e < srv->n_rec; e++) pthread_join(srv->rec[e].thread, NULL);
    if (srv->gen_started) pthread_join(srv->t_gen, NULL);
    /* jobs still queued: only the engines' references are left */
    serve_job *qs[2] = {sh->q_rec, sh->q_gen};
    for (int q = 0; q < 2; q++)
        for (serve_job *j = qs[q], *nx; j; j = nx) {
            nx = j->next;
            serve_job_unref(j);
        }
    for (int e = 0; srv->rec && e < sh->opts.rec_engines; e++) {
        agent_tool_trm_free(&srv->rec[e].tool);
        agent_prefix_cache_free(srv->rec[e].prefix);
    }
    free(srv->rec);
    agent_catalog_free(sh->cat);
    free(sh->remote_model);
    free(sh->remote_url);
    free(sh->remote_key);
    serve_metrics_destroy(&sh->metrics);
    pthread_cond_destroy(&sh->cv_work);
    pthread_cond_destroy(&sh->cv_done);
    pthread_mutex_destroy(&sh->mu);
    free(srv);
}
