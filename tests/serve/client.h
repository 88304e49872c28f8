/* Test helpers of the serve tests: tiny model files, a `deeprec serve` child process on a free
 * loopback port, and a plain-socket HTTP/1.0 client. */
#ifndef DEEPREC_TEST_SERVE_CLIENT_H
#define DEEPREC_TEST_SERVE_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

/* data.gguf, trm.gguf, llm.gguf (12 titled movies, 30 users, a random pref TRM, a random tiny
 * qwen2 with a trained BPE tokenizer) in dir; built once per test binary. */
void sv_fixture(const char *dir);

typedef struct sv_server {
    pid_t pid;
    int port;
    char log[512];
} sv_server;
/* Starts $DEEPREC_BIN serve on 127.0.0.1 port 0 with the fixture plus extra options (the
 * fixture's LLM unless they give --llm-url); reads the port from its first line. SKIPs when
 * DEEPREC_BIN is unset. */
void sv_start(sv_server *s, const char *dir, const char *extra);
/* SIGTERM, then the exit status (0 = clean shutdown). */
int sv_stop(sv_server *s);
/* 1 while the process runs. */
int sv_alive(const sv_server *s);

typedef struct sv_resp {
    int status;
    char *headers;
    char *body;
    size_t len;
} sv_resp;
/* One request (Connection: close); extra_headers: "Name: value\r\n..." or NULL. */
void sv_request(int port, const char *method, const char *path, const char *extra_headers, const char *body,
                size_t body_len, sv_resp *r);
void sv_resp_free(sv_resp *r);
/* POST JSON; the body parsed (NULL when not JSON). */
json_t *sv_post_json(int port, const char *path, const char *json, int *status);

#endif
