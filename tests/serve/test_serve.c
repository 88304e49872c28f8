/* A real `deeprec serve` process on a free loopback port with a tiny random model and TRM:
 * recommendations (three modes, with and without trace, by user and by history), completions
 * and chat completions (streamed and not, stop, seed, logprobs), the small endpoints, and
 * every limit answered with a 4xx/5xx JSON error while the server stays up. */
#include "client.h"
#include "harness.h"
#include "serve/internal.h"
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *outcomes[] = {"finished", "many_recall", "context_too_long", "preference_error", "shot_down",
                                 "recall_error"};

static int known_outcome(const char *s) {
    for (size_t i = 0; s && i < sizeof outcomes / sizeof *outcomes; i++)
        if (!strcmp(s, outcomes[i])) return 1;
    return 0;
}

/* The error body: {"error": {"code": code, ...}}; returns the error object (borrowed from j). */
static json_t *check_error(json_t *j, int status, int want_status, const char *code) {
    CHECK_MSG(status == want_status, "status %d, expected %d", status, want_status);
    CHECK_MSG(j != NULL, "the %d answer is not JSON", status);
    json_t *e = json_object_get(j, "error");
    CHECK(json_is_object(e));
    CHECK(json_is_string(json_object_get(e, "message")));
    CHECK_MSG(!strcmp(json_string_value(json_object_get(e, "code")), code), "code %s, expected %s",
              json_string_value(json_object_get(e, "code")), code);
    return e;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

TEST(serve_small_endpoints) {
    sv_server s;
    sv_start(&s, dr_test_tmpdir(), NULL);
    sv_resp r;
    sv_request(s.port, "GET", "/health", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    CHECK_STR(str(j, "status"), "ok");
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "items")), 12);
    json_decref(j);
    sv_resp_free(&r);

    sv_request(s.port, "GET", "/v1/models", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    j = json_loads(r.body, 0, NULL);
    CHECK_STR(str(json_array_get(json_object_get(j, "data"), 0), "id"), "deeprec");
    json_decref(j);
    sv_resp_free(&r);

    sv_request(s.port, "GET", "/v1/users?limit=5&offset=2", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    j = json_loads(r.body, 0, NULL);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "data")), 5);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "total")), 30);
    CHECK_STR(str(json_array_get(json_object_get(j, "data"), 0), "id"), "u2");
    json_decref(j);
    sv_resp_free(&r);

    /* the page: one document, nothing fetched from elsewhere */
    sv_request(s.port, "GET", "/", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.headers, "text/html") != NULL);
    CHECK(strstr(r.body, "<html") && strstr(r.body, "/v1/recommend"));
    CHECK(!strstr(r.body, "http://") && !strstr(r.body, "https://") && !strstr(r.body, "src=") &&
          !strstr(r.body, "@import") && !strstr(r.body, "url("));
    sv_resp_free(&r);

    sv_request(s.port, "GET", "/metrics", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "deeprec_requests_total{endpoint=\"/health\",code=\"2xx\"} 1") != NULL);
    CHECK(strstr(r.body, "deeprec_request_seconds_bucket{endpoint=\"/v1/models\",le=\"+Inf\"} 1") != NULL);
    CHECK(strstr(r.body, "deeprec_queue_depth 0") != NULL);
    sv_resp_free(&r);
    CHECK_EQ_INT(sv_stop(&s), 0);
}

TEST(serve_recommend) {
    sv_server s;
    sv_start(&s, dr_test_tmpdir(), NULL);
    int st;
    /* trm: the retriever's list, no trace unless asked */
    json_t *j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u3\", \"mode\": \"trm\", \"k\": 5}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR(str(j, "mode"), "trm");
    CHECK_STR(str(j, "user"), "u3");
    CHECK_EQ_INT(json_array_size(json_object_get(j, "items")), 5);
    CHECK(json_object_get(j, "trace") == NULL);
    CHECK(json_is_object(json_object_get(j, "target")));
    json_t *calls = json_object_get(j, "tool_calls");
    CHECK_EQ_INT(json_array_size(calls), 1);
    json_t *hist = json_object_get(j, "history");
    /* the history is masked out of the list */
    for (size_t i = 0; i < json_array_size(json_object_get(j, "items")); i++) {
        json_int_t id = json_integer_value(json_object_get(json_array_get(json_object_get(j, "items"), i), "id"));
        CHECK(id >= 1 && id <= 12);
        for (size_t h = 0; h < json_array_size(hist); h++)
            CHECK(id != json_integer_value(json_object_get(json_array_get(hist, h), "id")));
    }
    CHECK(json_number_value(json_object_get(json_object_get(j, "timings"), "total_ms")) >= 0);
    json_decref(j);

    /* deeprec with trace: the prompt, the model's segments, the outcome */
    j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u3\", \"trace\": true, \"temperature\": 0}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR(str(j, "mode"), "deeprec");
    CHECK(known_outcome(str(j, "outcome")));
    json_t *segs = json_object_get(json_object_get(j, "trace"), "segments");
    CHECK(json_array_size(segs) >= 2);
    CHECK_STR(str(json_array_get(segs, 0), "kind"), "prompt");
    CHECK(strstr(str(json_array_get(segs, 0), "text"), AGENT_TAG_PREF) != NULL); /* the instructions */
    CHECK_STR(str(json_array_get(segs, 1), "kind"), "model");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "generated_tokens")) > 0);
    char *first = json_dumps(json_object_get(j, "items"), JSON_COMPACT);
    const char *outcome1 = str(j, "outcome");
    char o1[64];
    snprintf(o1, sizeof o1, "%s", outcome1);
    json_decref(j);
    /* without trace; greedy gives the same episode */
    j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u3\"}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK(json_object_get(j, "trace") == NULL);
    CHECK_STR(str(j, "outcome"), o1);
    char *second = json_dumps(json_object_get(j, "items"), JSON_COMPACT);
    CHECK_STR(first, second);
    free(first);
    free(second);
    json_decref(j);

    /* rerank: one call made for the model with the history's preference, its items returned */
    j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"#4\", \"mode\": \"rerank\", \"trace\": true}", &st);
    CHECK_EQ_INT(st, 200);
    calls = json_object_get(j, "tool_calls");
    CHECK(json_array_size(calls) >= 1);
    CHECK(strlen(str(json_array_get(calls, 0), "preference")) > 0);
    CHECK(json_array_size(json_object_get(json_array_get(calls, 0), "items")) > 0);
    CHECK(json_is_number(json_object_get(json_array_get(json_object_get(json_array_get(calls, 0), "items"), 0), "score")));
    CHECK_STR(str(j, "user"), "u4");
    json_decref(j);

    /* a typed history: titles (any case) and ids; no held-out target */
    j = sv_post_json(s.port, "/v1/recommend", "{\"history\": [\"heat\", \"Casino\", 3], \"mode\": \"trm\"}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK(json_is_null(json_object_get(j, "target")));
    CHECK_EQ_INT(json_array_size(json_object_get(j, "history")), 3);
    CHECK_STR(str(json_array_get(json_object_get(j, "history"), 0), "title"), "Heat");
    CHECK_EQ_INT(json_array_size(json_object_get(j, "items")), 9); /* 12 items, 3 in the history */
    json_decref(j);

    /* unknown user / item: 404 with the entry named */
    j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"nobody\"}", &st);
    check_error(j, st, 404, "unknown_user");
    json_decref(j);
    j = sv_post_json(s.port, "/v1/recommend", "{\"history\": [\"Heat\", \"No Such Film\"]}", &st);
    json_t *e = check_error(j, st, 404, "unknown_item");
    CHECK_STR(str(e, "param"), "history[1]");
    json_decref(j);
    CHECK(sv_alive(&s));
    CHECK_EQ_INT(sv_stop(&s), 0);
}

typedef struct sse_acc {
    int n;
    int done;
    int chat;
    int saw_role;
    char text[8192];
    char finish[32];
} sse_acc;

static void on_event(void *ctx, const char *data, size_t n) {
    sse_acc *a = ctx;
    if (n == 6 && !memcmp(data, "[DONE]", 6)) {
        a->done = 1;
        return;
    }
    CHECK_MSG(!a->done, "an event after [DONE]");
    json_t *j = json_loadb(data, n, 0, NULL);
    CHECK_MSG(j != NULL, "event is not JSON: %.*s", (int)n, data);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    const char *t = a->chat ? str(json_object_get(c, "delta"), "content") : str(c, "text");
    if (a->chat && str(json_object_get(c, "delta"), "role")) a->saw_role = 1;
    if (t) strncat(a->text, t, sizeof a->text - strlen(a->text) - 1);
    if (str(c, "finish_reason")) snprintf(a->finish, sizeof a->finish, "%s", str(c, "finish_reason"));
    a->n++;
    json_decref(j);
}

static void stream(int port, const char *path, const char *body, int chat, sse_acc *a) {
    memset(a, 0, sizeof *a);
    a->chat = chat;
    sv_resp r;
    sv_request(port, "POST", path, NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.headers, "text/event-stream") != NULL);
    int n = serve_sse_parse(r.body, r.len, on_event, a);
    CHECK_MSG(n >= 2, "%d events in %s", n, r.body);
    CHECK(a->done);
    sv_resp_free(&r);
}

TEST(serve_completions) {
    sv_server s;
    sv_start(&s, dr_test_tmpdir(), NULL);
    int st;
    json_t *j = sv_post_json(s.port, "/v1/completions",
                             "{\"model\": \"deeprec\", \"prompt\": \"Heat\", \"max_tokens\": 12, \"temperature\": 0}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR(str(j, "object"), "text_completion");
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    char text[8192];
    snprintf(text, sizeof text, "%s", str(c, "text"));
    char fin[32];
    snprintf(fin, sizeof fin, "%s", str(c, "finish_reason"));
    CHECK(!strcmp(fin, "stop") || !strcmp(fin, "length"));
    json_int_t ntok = json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens"));
    CHECK(ntok >= 1 && ntok <= 12);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")) >= 1);
    json_decref(j);

    /* streamed: the same greedy text in pieces, then [DONE] */
    sse_acc a;
    stream(s.port, "/v1/completions", "{\"prompt\": \"Heat\", \"max_tokens\": 12, \"temperature\": 0, \"stream\": true}", 0,
           &a);
    CHECK_STR(a.text, text);
    CHECK_STR(a.finish, fin);

    /* logprobs: one entry per generated token, each <= 0, with 2 alternatives */
    j = sv_post_json(s.port, "/v1/completions",
                     "{\"prompt\": \"Heat\", \"max_tokens\": 12, \"temperature\": 0, \"logprobs\": 2}", &st);
    CHECK_EQ_INT(st, 200);
    json_t *lp = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    CHECK_EQ_INT(json_array_size(json_object_get(lp, "token_logprobs")), ntok);
    for (size_t i = 0; i < json_array_size(json_object_get(lp, "token_logprobs")); i++) {
        double v = json_number_value(json_array_get(json_object_get(lp, "token_logprobs"), i));
        CHECK(v <= 1e-6);
        CHECK(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), i)) >= 1);
    }
    json_decref(j);

    /* stop: the text ends before the stop string's first occurrence (an ASCII character from
     * the second half of the greedy text; the random model's text is mostly not ASCII) */
    const char *sp = NULL;
    for (size_t i = strlen(text) / 2; text[i] && !sp; i++)
        if (text[i] > 32 && text[i] < 127) sp = text + i;
    if (sp) {
        char stop[2] = {*sp, 0};
        json_t *b = json_pack("{s:s, s:i, s:f, s:s}", "prompt", "Heat", "max_tokens", 12, "temperature", 0.0, "stop", stop);
        char *bs = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        j = sv_post_json(s.port, "/v1/completions", bs, &st);
        free(bs);
        CHECK_EQ_INT(st, 200);
        c = json_array_get(json_object_get(j, "choices"), 0);
        size_t cut = (size_t)(strstr(text, stop) - text);
        CHECK_EQ_INT(strlen(str(c, "text")), cut);
        CHECK(!strncmp(str(c, "text"), text, cut));
        CHECK_STR(str(c, "finish_reason"), "stop");
        json_decref(j);
    }

    /* sampling with a seed is reproducible */
    char t1[8192];
    j = sv_post_json(s.port, "/v1/completions", "{\"prompt\": \"Fargo\", \"max_tokens\": 10, \"seed\": 7, \"top_p\": 0.9}", &st);
    CHECK_EQ_INT(st, 200);
    snprintf(t1, sizeof t1, "%s", str(json_array_get(json_object_get(j, "choices"), 0), "text"));
    json_decref(j);
    j = sv_post_json(s.port, "/v1/completions", "{\"prompt\": \"Fargo\", \"max_tokens\": 10, \"seed\": 7, \"top_p\": 0.9}", &st);
    CHECK_STR(str(json_array_get(json_object_get(j, "choices"), 0), "text"), t1);
    json_decref(j);

    /* chat, whole and streamed */
    const char *chat = "{\"messages\": [{\"role\": \"system\", \"content\": \"You recommend films.\"}, {\"role\": \"user\", "
                       "\"content\": \"Something like Heat?\"}], \"max_tokens\": 10, \"temperature\": 0%s}";
    char body[1024];
    snprintf(body, sizeof body, chat, "");
    j = sv_post_json(s.port, "/v1/chat/completions", body, &st);
    CHECK_EQ_INT(st, 200);
    CHECK_STR(str(j, "object"), "chat.completion");
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    CHECK_STR(str(msg, "role"), "assistant");
    snprintf(text, sizeof text, "%s", str(msg, "content"));
    json_decref(j);
    snprintf(body, sizeof body, chat, ", \"stream\": true");
    stream(s.port, "/v1/chat/completions", body, 1, &a);
    CHECK_STR(a.text, text);
    CHECK(a.saw_role);
    snprintf(body, sizeof body, chat, ", \"logprobs\": true, \"top_logprobs\": 3");
    j = sv_post_json(s.port, "/v1/chat/completions", body, &st);
    CHECK_EQ_INT(st, 200);
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"), "content");
    CHECK(json_array_size(content) >= 1);
    CHECK_EQ_INT(json_array_size(json_object_get(json_array_get(content, 0), "top_logprobs")), 3);
    json_decref(j);

    sv_resp r;
    sv_request(s.port, "GET", "/metrics", NULL, NULL, 0, &r);
    CHECK(strstr(r.body, "deeprec_generated_tokens_total 0") == NULL);
    CHECK(strstr(r.body, "deeprec_requests_total{endpoint=\"/v1/completions\",code=\"2xx\"}") != NULL);
    sv_resp_free(&r);
    CHECK_EQ_INT(sv_stop(&s), 0);
}

TEST(serve_limits) {
    sv_server s;
    sv_start(&s, dr_test_tmpdir(), "--max-body 2000 --max-tokens 32 --api-key sekret");
    const char *auth = "Authorization: Bearer sekret\r\n";
    sv_resp r;
    json_t *j;
#define POST(path_, hdr_, body_)                                                 \
    do {                                                                         \
        sv_request(s.port, "POST", path_, hdr_, body_, strlen(body_), &r);       \
        j = json_loads(r.body, 0, NULL);                                         \
    } while (0)
    /* API key */
    POST("/v1/completions", NULL, "{\"prompt\": \"Heat\", \"max_tokens\": 2}");
    check_error(j, r.status, 401, "unauthorized");
    CHECK(strstr(r.headers, "WWW-Authenticate: Bearer") != NULL);
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/completions", "Authorization: Bearer wrong\r\n", "{\"prompt\": \"Heat\", \"max_tokens\": 2}");
    check_error(j, r.status, 401, "unauthorized");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/completions", auth, "{\"prompt\": \"Heat\", \"max_tokens\": 2}");
    CHECK_EQ_INT(r.status, 200);
    json_decref(j);
    sv_resp_free(&r);
    sv_request(s.port, "GET", "/health", NULL, NULL, 0, &r); /* health stays open */
    CHECK_EQ_INT(r.status, 200);
    sv_resp_free(&r);
    /* body size */
    char big[3001];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = 0;
    big[0] = '{';
    big[2999] = '}';
    POST("/v1/completions", auth, big);
    json_t *e = check_error(j, r.status, 413, "max_body_bytes");
    CHECK_EQ_INT(json_integer_value(json_object_get(e, "limit")), 2000);
    json_decref(j);
    sv_resp_free(&r);
    /* max tokens */
    POST("/v1/completions", auth, "{\"prompt\": \"Heat\", \"max_tokens\": 33}");
    e = check_error(j, r.status, 400, "max_tokens");
    CHECK_EQ_INT(json_integer_value(json_object_get(e, "limit")), 32);
    json_decref(j);
    sv_resp_free(&r);
    /* bad JSON, unknown field, wrong types, missing field */
    POST("/v1/completions", auth, "{\"prompt\": \"Heat\",");
    check_error(j, r.status, 400, "invalid_json");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/chat/completions", auth, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"frobnicate\": 1}");
    e = check_error(j, r.status, 400, "unknown_field");
    CHECK_STR(str(e, "param"), "frobnicate");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/completions", auth, "{\"prompt\": 5}");
    e = check_error(j, r.status, 400, "wrong_type");
    CHECK_STR(str(e, "param"), "prompt");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/recommend", auth, "{\"user\": \"u1\", \"k\": \"ten\"}");
    e = check_error(j, r.status, 400, "wrong_type");
    CHECK_STR(str(e, "param"), "k");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/recommend", auth, "{\"user\": \"u1\", \"mode\": \"magic\"}");
    check_error(j, r.status, 400, "invalid_value");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/recommend", auth, "[1, 2]");
    check_error(j, r.status, 400, "wrong_type");
    json_decref(j);
    sv_resp_free(&r);
    POST("/v1/completions", auth, "{\"max_tokens\": 3}");
    check_error(j, r.status, 400, "missing_field");
    json_decref(j);
    sv_resp_free(&r);
    /* routing */
    sv_request(s.port, "GET", "/v2/nothing", auth, NULL, 0, &r);
    j = json_loads(r.body, 0, NULL);
    check_error(j, r.status, 404, "not_found");
    json_decref(j);
    sv_resp_free(&r);
    sv_request(s.port, "GET", "/v1/recommend", auth, NULL, 0, &r);
    j = json_loads(r.body, 0, NULL);
    check_error(j, r.status, 405, "method_not_allowed");
    json_decref(j);
    sv_resp_free(&r);
    /* still serving, and the refusals are counted */
    CHECK(sv_alive(&s));
    POST("/v1/recommend", auth, "{\"user\": \"u1\", \"mode\": \"trm\"}");
    CHECK_EQ_INT(r.status, 200);
    json_decref(j);
    sv_resp_free(&r);
    sv_request(s.port, "GET", "/metrics", auth, NULL, 0, &r);
    CHECK(strstr(r.body, "deeprec_requests_total{endpoint=\"/v1/completions\",code=\"4xx\"}") != NULL);
    sv_resp_free(&r);
#undef POST
    CHECK_EQ_INT(sv_stop(&s), 0);
}

TEST(serve_limits_time_queue_sessions) {
    sv_server s;
    int st;
    /* a deadline that passes before the engine takes the request */
    sv_start(&s, dr_test_tmpdir(), "--timeout 0.000001");
    json_t *j = sv_post_json(s.port, "/v1/completions", "{\"prompt\": \"Heat\", \"max_tokens\": 4}", &st);
    check_error(j, st, 504, "timeout");
    json_decref(j);
    j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u2\"}", &st);
    check_error(j, st, 504, "timeout");
    json_decref(j);
    CHECK(sv_alive(&s));
    CHECK_EQ_INT(sv_stop(&s), 0);

    /* no queue at all: every engine request is refused, the rest is served */
    sv_start(&s, dr_test_tmpdir(), "--max-queue 0 --max-sessions 1");
    j = sv_post_json(s.port, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &st);
    json_t *e = check_error(j, st, 503, "max_queue");
    CHECK_EQ_INT(json_integer_value(json_object_get(e, "limit")), 0);
    json_decref(j);
    /* one idle connection holds the only session: the next request is refused */
    int idle = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(idle, (struct sockaddr *)&a, sizeof a) == 0);
    sv_resp r;
    /* the server counts the idle connection once it has accepted it: /health answers 503 then */
    int refused = 0;
    for (int tries = 0; tries < 200 && !refused; tries++) {
        sv_request(s.port, "GET", "/health", NULL, NULL, 0, &r);
        if (r.status == 503) {
            j = json_loads(r.body, 0, NULL);
            e = check_error(j, r.status, 503, "max_sessions");
            CHECK_EQ_INT(json_integer_value(json_object_get(e, "limit")), 1);
            json_decref(j);
            refused = 1;
        } else
            usleep(10000);
        sv_resp_free(&r);
    }
    CHECK(refused);
    close(idle);
    int ok = 0;
    for (int tries = 0; tries < 200 && !ok; tries++) {
        sv_request(s.port, "GET", "/health", NULL, NULL, 0, &r);
        ok = r.status == 200;
        sv_resp_free(&r);
        if (!ok) usleep(10000);
    }
    CHECK(ok);
    CHECK_EQ_INT(sv_stop(&s), 0);
}

typedef struct par {
    int port, i, status, ok;
} par;
static void *par_req(void *arg) {
    par *p = arg;
    char body[256];
    int st = 0;
    json_t *j;
    if (p->i % 2) {
        snprintf(body, sizeof body, "{\"user\": \"#%d\", \"trace\": true}", p->i);
        j = sv_post_json(p->port, "/v1/recommend", body, &st);
        p->ok = j && known_outcome(str(j, "outcome")) && json_is_array(json_object_get(json_object_get(j, "trace"), "segments"));
    } else {
        snprintf(body, sizeof body, "{\"prompt\": \"Heat\", \"max_tokens\": 6, \"seed\": %d}", p->i);
        j = sv_post_json(p->port, "/v1/completions", body, &st);
        p->ok = j && json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")) >= 1;
    }
    p->status = st;
    json_decref(j);
    return NULL;
}

/* Concurrent requests share the engines (continuous batching): all are answered, and every
 * episode and token is counted; --batch off serves the same requests one at a time. */
TEST(serve_concurrent) {
    const char *modes[3] = {"--slots 4 --rec-engines 1", "--batch off --rec-engines 1", "--slots 4 --rec-engines 2"};
    const int engines[3] = {1, 1, 2};
    for (int m = 0; m < 3; m++) {
        sv_server s;
        sv_start(&s, dr_test_tmpdir(), modes[m]);
        pthread_t th[12];
        par p[12];
        for (int i = 0; i < 12; i++) {
            p[i] = (par){s.port, i, 0, 0};
            CHECK(pthread_create(&th[i], NULL, par_req, &p[i]) == 0);
        }
        for (int i = 0; i < 12; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < 12; i++) {
            CHECK_MSG(p[i].status == 200, "request %d (%s): status %d", i, modes[m], p[i].status);
            CHECK_MSG(p[i].ok, "request %d (%s): incomplete answer", i, modes[m]);
        }
        sv_resp r;
        sv_request(s.port, "GET", "/metrics", NULL, NULL, 0, &r);
        CHECK_MSG(strstr(r.body, "deeprec_episodes_total 6\n") != NULL, "%s", r.body);
        CHECK(strstr(r.body, "deeprec_requests_total{endpoint=\"/v1/recommend\",code=\"2xx\"} 6\n") != NULL);
        CHECK(strstr(r.body, "deeprec_requests_total{endpoint=\"/v1/completions\",code=\"2xx\"} 6\n") != NULL);
        CHECK(strstr(r.body, "deeprec_queue_depth 0\n") && strstr(r.body, "deeprec_active_sequences 0\n"));
        /* six recommend episodes: each engine's first prefills the preamble, the others start from it */
        const char *hits = strstr(r.body, "\ndeeprec_prefix_cache_hits_total ");
        CHECK_MSG(hits && atoi(hits + strlen("\ndeeprec_prefix_cache_hits_total ")) >= 6 - engines[m], "%s", r.body);
        sv_resp_free(&r);
        CHECK_EQ_INT(sv_stop(&s), 0);
    }
}

/* The server's greedy episode is `deeprec recommend`'s: the same outcome, tool calls and
 * generated tokens. (The comparison uses the CLI's text output: the random model's text is not
 * UTF-8, which its --json output cannot carry.) */
TEST(serve_recommend_matches_cli) {
    const char *dir = dr_test_tmpdir();
    sv_server s;
    sv_start(&s, dir, NULL);
    int st;
    json_t *srv = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u7\", \"trace\": true}", &st);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(sv_stop(&s), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s recommend --data %s/data.gguf --trm %s/trm.gguf --llm %s/llm.gguf --user u7 2>/dev/null",
             getenv("DEEPREC_BIN"), dir, dir, dir);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    CHECK_EQ_INT(pclose(p), 0);
    const char *last = strstr(buf, "\noutcome ");
    CHECK_MSG(last != NULL, "no outcome line in: %.200s", buf);
    char outcome[64];
    int calls = -1, gen = -1;
    CHECK(sscanf(last, "\noutcome %63[^,], format %*[^,], %d tool calls, %d generated tokens", outcome, &calls, &gen) == 3);
    CHECK_STR(outcome, str(srv, "outcome"));
    json_t *usage = json_object_get(srv, "usage");
    CHECK_EQ_INT(calls, json_integer_value(json_object_get(usage, "tool_calls")));
    CHECK_EQ_INT(gen, json_integer_value(json_object_get(usage, "generated_tokens")));
    fprintf(stderr, "  u7: %s, %d tool calls, %d generated tokens (server and CLI)\n", outcome, calls, gen);
    /* every model segment's token count, in order */
    json_t *segs = json_object_get(json_object_get(srv, "trace"), "segments");
    const char *q = buf;
    for (size_t i = 0; i < json_array_size(segs); i++) {
        json_t *sg = json_array_get(segs, i);
        if (strcmp(str(sg, "kind"), "model")) continue;
        q = strstr(q, "\n== model (");
        CHECK(q != NULL);
        int nt = -1;
        CHECK(sscanf(q, "\n== model (%d tokens)", &nt) == 1);
        CHECK_EQ_INT(nt, json_integer_value(json_object_get(sg, "tokens")));
        q++;
    }
    json_decref(srv);
}
