/* Internals of the OpenAI-compatible client (the remote agent_model): the response parser
 * (remote_json.c, fuzzed), the URL check and the HTTP layer with retries (remote_http.c). */
#ifndef DEEPREC_SERVE_REMOTE_INTERNAL_H
#define DEEPREC_SERVE_REMOTE_INTERNAL_H

#include <stddef.h>

/* One choice of a /completions answer. */
typedef struct remote_completion {
    char *text;              /* choices[0].text (may hold NUL bytes: len counts) */
    size_t len;
    char *finish;            /* finish_reason, or NULL */
    /* The stop string that ended the text when the server names it (vLLM's stop_reason,
     * llama.cpp's stopping_word); NULL when it does not say (or it was not a string). */
    char *stop;
    int stop_said;           /* the server has the field (null or "": no stop string ended the text) */
    /* Per-token text and log-probability when the server sent them (the completions form
     * {tokens, token_logprobs} or the chat form {content: [{token, logprob}]}); 0 tokens else. */
    char **tokens;
    size_t *token_len;
    float *logprobs;
    int n_tokens;
    long completion_tokens;  /* usage.completion_tokens, -1 when absent */
} remote_completion;
/* DR_ERR_FORMAT (with what was wrong) when the body is not a completions answer. */
int remote_completion_parse(const char *body, size_t len, remote_completion *out);
void remote_completion_free(remote_completion *c);

/* The server's message from an error body ({"error": {"message"}}, {"error": "..."},
 * {"message": "..."}, {"detail": "..."}), else the body's start, printable; heap string. */
char *remote_error_message(const char *body, size_t len);
/* 1 when an error body says the prompt does not fit the model's context (OpenAI's
 * context_length_exceeded, deeprec's context_length, llama.cpp's exceed_context_size_error, or a
 * message about the context length / size). */
int remote_error_is_context(const char *body, size_t len);

/* The base URL (http:// or https://, a host, an optional port and path; no query, fragment or
 * credentials) without its trailing slashes; DR_ERR_ARG naming what is wrong. Heap string. */
int remote_url_check(const char *url, char **normalised);

/* ---------------------------------------------------------------- HTTP (remote_http.c)
 * One libcurl multi handle, one call slot per id: POSTs run in parallel and are retried with
 * exponential back-off on connection errors, 5xx, 408 and 429 (a server's Retry-After, capped
 * at 30 s, when longer); any other status ends the call at once. */
typedef struct remote_http remote_http;
typedef struct remote_http_opts {
    const char *base;        /* normalised base URL (remote_url_check) */
    const char *api_key;     /* NULL: no Authorization header */
    int n_ids;               /* call slots */
    int max_attempts;        /* tries per call */
    double backoff_s;        /* first wait; doubled after each try */
    double timeout_s;        /* per try */
} remote_http_opts;
int remote_http_new(remote_http **out, const remote_http_opts *o);
void remote_http_free(remote_http *h);
/* Start POST {base}{path} with a JSON body (taken) on call slot id (which must be idle). */
int remote_http_post(remote_http *h, int id, const char *path, char *body);
/* Drive the transfers, waiting up to wait_s (< 0: until a call ends) for one to end; the ids of
 * the calls that ended are written to done (n_ids entries at most), their count to *n_done. */
int remote_http_wait(remote_http *h, double wait_s, int *done, int *n_done);
/* An ended call: its HTTP status and body, or 0 with the error already set (it gave up: the
 * message names the URL, the tries and the last status or connection error). */
long remote_http_result(remote_http *h, int id, const char **body, size_t *len);
/* Make slot id idle (cancels a running call). */
void remote_http_reset(remote_http *h, int id);
/* A blocking GET {base}{path} with the same retries; the body (heap, NUL-terminated) of a 2xx,
 * else an error naming the URL and the status with the server's message. */
int remote_http_get(remote_http *h, const char *path, char **body, size_t *len);

#endif
