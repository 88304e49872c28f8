/* deeprec serve: the DeepRec agent and its LLM behind HTTP (issue 14; docs/serve.md).
 *
 * Endpoints (libmicrohttpd, one thread per connection; the models run on two engine
 * threads that own their LLM sessions):
 *   POST /v1/recommend          a user id or a history -> the list, the tool calls, the outcome,
 *                               the timings (and with "trace": the prompt and every segment)
 *   POST /v1/completions        OpenAI-compatible completions of the loaded LLM
 *   POST /v1/chat/completions   OpenAI-compatible chat completions (ChatML), both with SSE streaming
 *   GET  /v1/models, /v1/users, /health, /metrics (Prometheus text), / (the trace page)
 *
 * Every refusal is an HTTP error with a JSON body {"error": {"message", "type", "code",
 * "param", "limit"}}; code names the rule or the limit that was hit. */
#ifndef DEEPREC_SERVE_H
#define DEEPREC_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/agent.h"
#include "deeprec/base.h"

struct dr_dataset;
struct trm_model;
struct llm_model;
struct tokenizer;

typedef struct serve_opts {
    const char *host;      /* address to bind ("127.0.0.1") */
    int port;              /* 0: a free port chosen by the kernel (serve_port tells which) */
    const char *api_key;   /* NULL or "": no key; else every /v1 endpoint and /metrics need "Authorization: Bearer KEY" */
    const char *model_name; /* the id /v1/models lists ("deeprec") */
    size_t max_body;       /* request body bytes (1 MiB) */
    double timeout_s;      /* seconds per request, queue wait included (300) */
    int max_queue;         /* engine jobs waiting for a slot (64) */
    int max_sessions;      /* open client connections (32) */
    int max_tokens;        /* tokens one completion may ask for (2048) */
    int slots;             /* sequences decoded together (8); the continuous batch of completions
                              and the largest rollout batch of /v1/recommend */
    int batching;          /* 1: requests share decode steps; 0: one request at a time */
    int32_t n_ctx;         /* context per sequence (0: min(model, 4096)) */
    /* /v1/recommend's agent (agent_rollout_opts_default): chat prompts, max_hist, tool_k,
     * max_calls (rerank: 1), max_turn_tokens, both constraints; samples, max_ctx (= n_ctx)
     * and stream are the engine's */
    agent_rollout_opts rollout;
} serve_opts;
void serve_opts_default(serve_opts *o);

typedef struct serve_inputs {
    const struct dr_dataset *data;
    struct trm_model *trm;
    const struct llm_model *llm;
    const struct tokenizer *tok; /* NULL: the model's own */
} serve_inputs;

typedef struct serve_server serve_server;
/* Builds the catalog and the TRM tool, starts the engine threads and the HTTP daemon.
 * The inputs are borrowed until serve_stop. */
int serve_start(serve_server **out, const serve_inputs *in, const serve_opts *o);
int serve_port(const serve_server *s); /* the bound port */
/* Stops accepting, finishes nothing further, joins the threads, frees the server. */
void serve_stop(serve_server *s);

#endif
