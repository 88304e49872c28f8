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
                              and the largest rollout batch of /v1/recommend, split among the
                              recommendation engines */
    int batching;          /* 1: requests share decode steps; 0: one request at a time */
    /* Recommendation engines (1): each a thread with its own model session, TRM session and
     * prompt-preamble cache, all taking /v1/recommend jobs from the one queue, with the
     * server's OpenMP threads split among them. Batching shares weight reads inside an engine;
     * more engines use more cores at once (the prefill of each episode's own text, which no
     * batch shares, is most of a deeprec episode: docs/serve.md). 0: automatic, one per
     * OpenMP thread (at most SERVE_AUTO_REC_ENGINES) for a local model of at most
     * SERVE_SMALL_MODEL_BYTES of weights, whose matmuls are too small to split between threads;
     * else 1, with all the slots, where a decode step's weight reads are worth sharing. */
    int rec_engines;
    int32_t n_ctx;         /* context per sequence (0: min(model, 4096)) */
    /* /v1/recommend's agent (agent_rollout_opts_default): chat prompts, max_hist, tool_k,
     * max_calls (rerank: 1), max_turn_tokens, both constraints; samples, max_ctx (= n_ctx)
     * and stream are the engine's */
    agent_rollout_opts rollout;
} serve_opts;
#define SERVE_AUTO_REC_ENGINES 4
#define SERVE_SMALL_MODEL_BYTES ((size_t)64 << 20)
void serve_opts_default(serve_opts *o);

struct serve_remote_opts;
typedef struct serve_inputs {
    const struct dr_dataset *data;
    struct trm_model *trm;
    const struct llm_model *llm;
    const struct tokenizer *tok; /* NULL: the model's own */
    /* Instead of llm: /v1/recommend's episodes run on this OpenAI-compatible server (the
     * request's temperature, top_p and seed are passed on; constrain_titles must be off), and
     * the completion endpoints answer 404 (ask that server). Copied at start. */
    const struct serve_remote_opts *remote;
} serve_inputs;

typedef struct serve_server serve_server;
/* Builds the catalog and the TRM tool, starts the engine threads and the HTTP daemon.
 * The inputs are borrowed until serve_stop. */
int serve_start(serve_server **out, const serve_inputs *in, const serve_opts *o);
int serve_port(const serve_server *s);
/* The recommendation engines it runs (serve_opts.rec_engines, resolved when 0). */
int serve_rec_engines(const serve_server *s); /* the bound port */
/* Stops accepting, finishes nothing further, joins the threads, frees the server. */
void serve_stop(serve_server *s);

/* ---------------------------------------------------------------- a remote LLM as the agent's model
 * (src/serve/remote_model.c, docs/serve.md "Remote LLMs"). An agent_model whose turns are
 * POST {url}/completions on any OpenAI-compatible server (llama.cpp's llama-server, vLLM,
 * Ollama, deeprec serve), the whole episode text as the prompt and the protocol's end tags
 * (AGENT_TAG_PREF_END, AGENT_TAG_ANSWER_END) as stop strings, so agent_rollout runs the
 * protocol unchanged. Up to `parallel` turns are in flight (libcurl multi). Connection errors,
 * 5xx, 408 and 429 are retried with exponential back-off; other statuses fail at once with the
 * server's message, except a prompt over the server's context, which ends that episode as
 * context_too_long. A server gives no logits: constrained answers (agent_rollout_opts
 * constrain_titles / constrain_prefs) fail with DR_ERR_UNSUPPORTED; run them off. Token ids are
 * the adapter's own (the episode's prompt and tool texts count one per byte; generated tokens
 * are the server's when it returns log-probs, else one per turn), and RL cannot use them. */
struct agent_model;
typedef struct serve_remote_opts {
    const char *url;          /* base URL: http://HOST:PORT/v1 (remote_url_check's rules) */
    const char *model;        /* "model" of the requests; NULL: the first id GET {url}/models lists */
    const char *api_key;      /* NULL: none; else "Authorization: Bearer KEY" */
    int parallel;             /* requests in flight = the model's slots (<= 0: 4) */
    int max_attempts;         /* tries per request (<= 0: 5) */
    double backoff_s;         /* first wait between tries, doubled after each (<= 0: 0.25) */
    double timeout_s;         /* per try (<= 0: 600) */
    float temperature;        /* 0 = greedy */
    float top_p;              /* <= 0 or >= 1: 1 */
    uint64_t seed;            /* each sequence's turns get seeds from dr_rng_split(seed, k) */
    int32_t max_tokens;       /* per turn: the rollout's max_turn_tokens (<= 0: 1024) */
} serve_remote_opts;
int serve_remote_model_new(struct agent_model *out, const serve_remote_opts *o);
void serve_remote_model_free(struct agent_model *m);
const char *serve_remote_model_name(const struct agent_model *m); /* the model the requests name */
/* DR_OK when url is a usable base URL, else DR_ERR_ARG saying what is wrong (for option checks). */
int serve_remote_url_ok(const char *url);

#endif
