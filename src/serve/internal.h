/* Internals of the serve module: request parsing, SSE framing, metrics, jobs and engines. */
#ifndef DEEPREC_SERVE_INTERNAL_H
#define DEEPREC_SERVE_INTERNAL_H

#include "deeprec/agent.h"
#include "deeprec/serve.h"
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- errors */
/* A refused request: HTTP status, the JSON error's type and code, the parameter and the limit
 * (when a limit was hit). */
typedef struct serve_err {
    int status;
    const char *type;    /* "invalid_request_error", "limit_error", "authentication_error", "server_error" */
    const char *code;    /* "invalid_json", "unknown_field", "wrong_type", "missing_field", "invalid_value",
                            "max_body_bytes", "max_tokens", "context_length", "timeout", "max_queue",
                            "max_sessions", "unauthorized", "not_found", "method_not_allowed", "internal" */
    char param[64];
    long long limit;     /* -1: none */
    char message[384];
} serve_err;
/* Fills e and returns DR_ERR_ARG (so a parser can `return serve_fail(...)`). */
int serve_fail(serve_err *e, int status, const char *type, const char *code, const char *param, long long limit,
               const char *fmt, ...) DR_PRINTF(7, 8);
/* {"error": {...}} as a heap string. */
char *serve_err_json(const serve_err *e);

/* A JSON string of model text: invalid UTF-8 bytes become U+FFFD (request.c). */
struct json_t;
struct json_t *serve_json_text(const char *s, size_t n);

/* ---------------------------------------------------------------- requests (request.c) */
enum serve_mode { SERVE_DEEPREC = 0, SERVE_TRM, SERVE_RERANK };

typedef struct serve_rec_req {
    char *user;            /* source user id (a JSON integer is written in decimal), or NULL */
    int has_history;
    int n_hist;
    int32_t *hist_ids;     /* integer entries (0 for a title entry) */
    char **hist_titles;    /* title / source-id entries (NULL for an integer entry) */
    int k;                 /* items returned, 1..10 (10) */
    double temperature;    /* 0 = greedy (0) */
    double top_p;          /* (1) */
    uint64_t seed;         /* (1) */
    int trace;             /* prompt and segments in the answer (0) */
    int mode;              /* enum serve_mode (deeprec) */
    int split;             /* enum dr_data_split: test (history seq[:-1], target seq[-1]), valid, all (no target) */
} serve_rec_req;
void serve_rec_req_free(serve_rec_req *r);

#define SERVE_MAX_STOPS 4
#define SERVE_MAX_LOGPROBS 5
typedef struct serve_msg { char *role, *content; } serve_msg;
typedef struct serve_gen_req {
    int chat;
    char *prompt;          /* completions */
    serve_msg *msgs;       /* chat */
    int n_msgs;
    int max_tokens;        /* (16 for completions as OpenAI; chat: 256) */
    double temperature;    /* (1) */
    double top_p;          /* (1) */
    uint64_t seed;
    int has_seed;
    int stream;
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    int logprobs;          /* 0: none; completions: 1 + the `logprobs` count; chat: 1 + top_logprobs */
} serve_gen_req;
void serve_gen_req_free(serve_gen_req *r);

/* Parse and validate a body. Unknown fields, wrong types, values out of range: 400 with the
 * field named; max_tokens above max_tokens_limit: 400 code max_tokens. */
int serve_parse_recommend(const char *body, size_t len, serve_rec_req *out, serve_err *e);
int serve_parse_generate(const char *body, size_t len, int chat, int max_tokens_limit, serve_gen_req *out,
                         serve_err *e);

/* ---------------------------------------------------------------- SSE (sse.c) */
/* One server-sent event: every line of data (split at \n, \r\n or \r) as "data: LINE\n",
 * then "\n". */
int serve_sse_event(dr_buf *out, const char *data, size_t len);
/* The inverse for a whole stream (the test client and the fuzz target): the data of each
 * complete event, lines joined by "\n". Calls fn for each; returns the count, -1 on a
 * line that is not "data: ..." or a comment. */
int serve_sse_parse(const char *s, size_t len, void (*fn)(void *ctx, const char *data, size_t n), void *ctx);

/* ---------------------------------------------------------------- metrics (metrics.c) */
enum serve_endpoint { EP_RECOMMEND = 0, EP_COMPLETIONS, EP_CHAT, EP_MODELS, EP_USERS, EP_HEALTH, EP_METRICS, EP_PAGE,
                      EP_OTHER, EP_N };
#define SERVE_N_BUCKETS 12
typedef struct serve_metrics {
    pthread_mutex_t mu;
    long long requests[EP_N][6];   /* by status class: 1xx..5xx, other */
    long long lat_count[EP_N];
    double lat_sum[EP_N];
    long long lat_bucket[EP_N][SERVE_N_BUCKETS]; /* cumulative at render time */
    long long prompt_tokens, gen_tokens, tool_calls, episodes;
} serve_metrics;
void serve_metrics_init(serve_metrics *m);
void serve_metrics_destroy(serve_metrics *m);
void serve_metrics_request(serve_metrics *m, int ep, int status, double seconds);
void serve_metrics_tokens(serve_metrics *m, long long prompt, long long gen);
void serve_metrics_episodes(serve_metrics *m, long long episodes, long long calls);
/* Prometheus text exposition; gauges given by the caller. */
/* The values /metrics reads at the moment it answers, besides the counters. */
typedef struct serve_gauges {
    int queue_depth, active_sequences, sessions;
    int64_t prefix_hits, prefix_reused_tokens; /* agent_prefix_cache_stats of the recommend engine */
} serve_gauges;
int serve_metrics_render(serve_metrics *m, const serve_gauges *g, dr_buf *out);
const char *serve_endpoint_name(int ep);

/* ---------------------------------------------------------------- jobs and engines */
enum job_kind { JOB_RECOMMEND = 0, JOB_GENERATE };
typedef struct serve_job serve_job;
struct serve_job {
    int kind;
    serve_job *next;         /* queue link */
    int refs;                /* the HTTP side and the engine; freed at 0 (server mutex) */
    double t_arrive, t_start, t_end, deadline;
    int cancelled;           /* the HTTP side gave up (timeout or client gone) */
    int done;
    /* results: a whole JSON body (status, body) or, when streaming, SSE bytes in `out` */
    int status;
    dr_buf out;
    int stream;
    /* recommend */
    serve_rec_req rec;
    int32_t user;            /* dataset user or -1 */
    int32_t *hist;           /* resolved history */
    int64_t n_hist;
    int32_t target;
    agent_request areq;      /* what the streamed rollout reads while the episode runs */
    /* generate */
    serve_gen_req gen;
    int32_t *prompt_ids;
    int n_prompt;
    char id[40];
    long long created;
};

typedef struct serve_engine serve_engine;
struct serve_server;

/* The whole server's shared state the engines see. */
typedef struct serve_shared {
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* engines wait for jobs */
    pthread_cond_t cv_done;  /* HTTP threads wait for results */
    serve_job *q_rec, *q_gen;      /* FIFO queues */
    int n_q_rec, n_q_gen;
    int active_seqs;
    int stop;
    serve_opts opts;
    const struct dr_dataset *data;
    struct trm_model *trm;
    const struct llm_model *llm;   /* NULL with a remote LLM */
    const struct tokenizer *tok;
    serve_remote_opts remote;      /* remote.url NULL: the local llm */
    char *remote_model, *remote_url, *remote_key; /* owned copies behind remote */
    agent_catalog *cat;
    int threads;             /* OpenMP threads of the thread that started the server: the completion
                                engine uses as many, the recommendation engines share them */
    int32_t im_end;          /* "<|im_end|>" token or -1 */
    serve_metrics metrics;
} serve_shared;

/* One recommendation engine: its thread and what only that thread touches. */
#define SERVE_MAX_REC_ENGINES 16
typedef struct serve_rec_engine_ctx {
    serve_shared *sh;
    agent_tool tool;            /* its own TRM session (zeroed until made) */
    /* the prompt preambles' KV, computed once for the server's life: every model of this
     * engine starts its prompts from it (NULL with a remote LLM) */
    agent_prefix_cache *prefix;
    int threads;                /* its OpenMP threads: the server's, split among the engines */
    pthread_t thread;
} serve_rec_engine_ctx;

/* The agent's model for n sequences: the local LLM (starting its prompts from prefix, may be
 * NULL), or the remote server. */
int serve_agent_model_new(const serve_shared *sh, agent_prefix_cache *prefix, int n, float temperature, float top_p,
                          uint64_t seed, agent_model *m);
void serve_agent_model_free(const serve_shared *sh, agent_model *m);

/* engine_rec.c / engine_gen.c: the worker loops (thread entry points; arg: a
 * serve_rec_engine_ctx for the recommendation engines, the serve_shared for completions). */
void *serve_rec_engine(void *arg);
void *serve_gen_engine(void *arg);
/* Drop a reference (server mutex held). */
void serve_job_unref(serve_job *j);
/* Mark done, wake waiters (server mutex held). */
void serve_job_finish(serve_shared *sh, serve_job *j, int status);

/* recommend.c: resolve the user / history of a parsed request (HTTP thread); 400 on unknown ids. */
int serve_rec_resolve(const serve_shared *sh, serve_job *j, serve_err *e);
/* The JSON body of a finished recommend job (engine thread). */
char *serve_rec_json(const serve_shared *sh, const serve_job *j, const agent_episode *ep, const int32_t *trm_items,
                     const float *trm_scores, int n_trm);

/* page.c */
extern const char serve_page_html[];

#endif
