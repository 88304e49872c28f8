/* The serve module's pure parts: request parsing (defaults, every refusal with its code and
 * field), the SSE framing and its parser, UTF-8 repair, and the Prometheus text. */
#include "harness.h"
#include "serve/internal.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int rec(const char *body, serve_rec_req *r, serve_err *e) { return serve_parse_recommend(body, strlen(body), r, e); }
static int gen(const char *body, int chat, serve_gen_req *g, serve_err *e) {
    return serve_parse_generate(body, strlen(body), chat, 100, g, e);
}

TEST(parse_recommend) {
    serve_rec_req r;
    serve_err e;
    CHECK_OK(rec("{\"user\": 196}", &r, &e));
    CHECK_STR(r.user, "196");
    CHECK_EQ_INT(r.k, 10);
    CHECK_EQ_INT(r.mode, SERVE_DEEPREC);
    CHECK_EQ_INT(r.split, 0);
    CHECK(r.temperature == 0 && r.top_p == 1 && r.seed == 1 && !r.trace);
    serve_rec_req_free(&r);
    CHECK_OK(rec("{\"history\": [\"Heat\", 7], \"k\": 3, \"mode\": \"rerank\", \"trace\": true, \"seed\": 4, "
                 "\"temperature\": 0.5}", &r, &e));
    CHECK_EQ_INT(r.n_hist, 2);
    CHECK_STR(r.hist_titles[0], "Heat");
    CHECK(r.hist_titles[1] == NULL);
    CHECK_EQ_INT(r.hist_ids[1], 7);
    CHECK(r.k == 3 && r.mode == SERVE_RERANK && r.trace && r.seed == 4 && r.temperature == 0.5);
    serve_rec_req_free(&r);
    static const struct { const char *body, *code, *param; } bad[] = {
        {"{}", "missing_field", "user"},
        {"{\"user\": \"a\", \"history\": [1]}", "invalid_value", "history"},
        {"{\"user\": true}", "wrong_type", "user"},
        {"{\"history\": []}", "invalid_value", "history"},
        {"{\"history\": [0]}", "invalid_value", "history[0]"},
        {"{\"history\": [1, {}]}", "wrong_type", "history[1]"},
        {"{\"user\": \"a\", \"k\": 11}", "invalid_value", "k"},
        {"{\"user\": \"a\", \"k\": 2.5}", "wrong_type", "k"},
        {"{\"user\": \"a\", \"temperature\": \"hot\"}", "wrong_type", "temperature"},
        {"{\"user\": \"a\", \"temperature\": 3}", "invalid_value", "temperature"},
        {"{\"user\": \"a\", \"split\": \"train\"}", "invalid_value", "split"},
        {"{\"history\": [1], \"split\": \"test\"}", "invalid_value", "split"},
        {"{\"user\": \"a\", \"trace\": 1}", "wrong_type", "trace"},
        {"{\"user\": \"a\", \"colour\": 1}", "unknown_field", "colour"},
        {"{\"user\": \"a\", \"user\": \"b\"}", "invalid_json", ""},
        {"{\"user\": \"a\"", "invalid_json", ""},
        {"\"u\"", "wrong_type", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(rec(bad[i].body, &r, &e) == DR_ERR_ARG, "accepted %s", bad[i].body);
        CHECK_EQ_INT(e.status, 400);
        CHECK_MSG(!strcmp(e.code, bad[i].code), "%s: code %s, expected %s", bad[i].body, e.code, bad[i].code);
        CHECK_MSG(!strcmp(e.param, bad[i].param), "%s: param %s, expected %s", bad[i].body, e.param, bad[i].param);
        char *j = serve_err_json(&e);
        json_t *o = json_loads(j, 0, NULL);
        CHECK(o && !strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "code")), bad[i].code));
        json_decref(o);
        free(j);
    }
}

TEST(parse_generate) {
    serve_gen_req g;
    serve_err e;
    CHECK_OK(gen("{\"prompt\": \"hi\"}", 0, &g, &e));
    CHECK_STR(g.prompt, "hi");
    CHECK(g.max_tokens == 16 && g.temperature == 1 && g.top_p == 1 && !g.stream && !g.has_seed && !g.logprobs);
    serve_gen_req_free(&g);
    CHECK_OK(gen("{\"prompt\": [\"hi\"], \"max_tokens\": 100, \"stop\": [\"a\", \"bc\"], \"seed\": -3, \"logprobs\": 0, "
                 "\"stream\": true, \"model\": \"x\", \"n\": 1}", 0, &g, &e));
    CHECK(g.max_tokens == 100 && g.n_stops == 2 && g.has_seed && g.seed == (uint64_t)-3 && g.logprobs == 1 && g.stream);
    CHECK_STR(g.stops[1], "bc");
    serve_gen_req_free(&g);
    CHECK_OK(gen("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": 5, "
                 "\"logprobs\": true, \"top_logprobs\": 2, \"stop\": \"\\n\"}", 1, &g, &e));
    CHECK(g.n_msgs == 1 && g.max_tokens == 5 && g.logprobs == 3 && g.n_stops == 1);
    CHECK_STR(g.msgs[0].role, "user");
    serve_gen_req_free(&g);
    static const struct { const char *body; int chat; const char *code, *param; } bad[] = {
        {"{\"prompt\": \"a\", \"max_tokens\": 101}", 0, "max_tokens", "max_tokens"},
        {"{\"prompt\": \"a\", \"max_tokens\": 0}", 0, "invalid_value", "max_tokens"},
        {"{\"prompt\": \"a\", \"n\": 2}", 0, "invalid_value", "n"},
        {"{\"prompt\": \"a\", \"stop\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}", 0, "max_stops", "stop"},
        {"{\"prompt\": \"a\", \"stop\": 5}", 0, "wrong_type", "stop"},
        {"{\"prompt\": \"a\", \"logprobs\": 6}", 0, "invalid_value", "logprobs"},
        {"{\"prompt\": \"a\", \"messages\": []}", 0, "unknown_field", "messages"},
        {"{\"prompt\": [\"a\", \"b\"]}", 0, "wrong_type", "prompt"},
        {"{\"messages\": []}", 1, "wrong_type", "messages"},
        {"{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", 1, "invalid_value", "messages[0]"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 1}]}", 1, "wrong_type", "messages[0]"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]}", 1, "unknown_field", "tool_calls"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", 1, "invalid_value", "top_logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 1, \"max_completion_tokens\": 1}", 1,
         "invalid_value", "max_completion_tokens"},
        {"{\"prompt\": \"a\"}", 1, "unknown_field", "prompt"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(gen(bad[i].body, bad[i].chat, &g, &e) == DR_ERR_ARG, "accepted %s", bad[i].body);
        CHECK_MSG(!strcmp(e.code, bad[i].code), "%s: code %s, expected %s", bad[i].body, e.code, bad[i].code);
        CHECK_MSG(!strcmp(e.param, bad[i].param), "%s: param %s, expected %s", bad[i].body, e.param, bad[i].param);
    }
    CHECK_ERR(gen("{\"prompt\": \"a\", \"max_tokens\": 101}", 0, &g, &e), DR_ERR_ARG);
    CHECK_EQ_INT(e.limit, 100);
}

typedef struct evs { int n; char data[4][64]; } evs;
static void on_ev(void *ctx, const char *d, size_t n) {
    evs *v = ctx;
    if (v->n < 4) snprintf(v->data[v->n], sizeof v->data[0], "%.*s", (int)n, d);
    v->n++;
}

TEST(sse_frames) {
    dr_buf b = {0};
    CHECK_OK(serve_sse_event(&b, "{\"a\":1}", 7));
    CHECK_STR(b.p, "data: {\"a\":1}\n\n");
    CHECK_OK(serve_sse_event(&b, "x\ny\r\nz", 6));
    CHECK_OK(serve_sse_event(&b, "", 0));
    CHECK_STR(b.p, "data: {\"a\":1}\n\ndata: x\ndata: y\ndata: z\n\ndata: \n\n");
    evs v = {0};
    CHECK_EQ_INT(serve_sse_parse(b.p, b.n, on_ev, &v), 3);
    CHECK_STR(v.data[0], "{\"a\":1}");
    CHECK_STR(v.data[1], "x\ny\nz");
    CHECK_STR(v.data[2], "");
    /* comments are skipped, an unterminated event is not one yet, other fields are refused */
    const char *s = ": keep-alive\ndata:no-space\n\ndata: partial";
    memset(&v, 0, sizeof v);
    CHECK_EQ_INT(serve_sse_parse(s, strlen(s), on_ev, &v), 1);
    CHECK_STR(v.data[0], "no-space");
    CHECK_EQ_INT(serve_sse_parse("event: x\n\n", 10, NULL, NULL), -1);
    dr_buf_free(&b);
}

TEST(json_text_repairs_utf8) {
    const char in[] = "ok \xC3\xA9 \xFF \xE2\x82 end \xF0\x9F\x98\x80";
    json_t *j = serve_json_text(in, sizeof in - 1);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(j), "ok \xC3\xA9 \xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD end \xF0\x9F\x98\x80");
    json_decref(j);
    j = serve_json_text("\xED\xA0\x80", 3); /* a surrogate is not UTF-8 */
    CHECK_STR(json_string_value(j), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    json_decref(j);
}

TEST(metrics_text) {
    serve_metrics m;
    serve_metrics_init(&m);
    serve_metrics_request(&m, EP_RECOMMEND, 200, 0.003);
    serve_metrics_request(&m, EP_RECOMMEND, 200, 0.2);
    serve_metrics_request(&m, EP_RECOMMEND, 413, 100.0);
    serve_metrics_tokens(&m, 5, 7);
    serve_metrics_episodes(&m, 2, 3);
    dr_buf b = {0};
    serve_gauges g = {4, 2, 3, 5, 1760};
    CHECK_OK(serve_metrics_render(&m, &g, &b));
    CHECK(strstr(b.p, "deeprec_requests_total{endpoint=\"/v1/recommend\",code=\"2xx\"} 2\n"));
    CHECK(strstr(b.p, "deeprec_requests_total{endpoint=\"/v1/recommend\",code=\"4xx\"} 1\n"));
    CHECK(strstr(b.p, "deeprec_request_seconds_bucket{endpoint=\"/v1/recommend\",le=\"0.005\"} 1\n"));
    CHECK(strstr(b.p, "deeprec_request_seconds_bucket{endpoint=\"/v1/recommend\",le=\"0.25\"} 2\n"));
    CHECK(strstr(b.p, "deeprec_request_seconds_bucket{endpoint=\"/v1/recommend\",le=\"30\"} 2\n"));
    CHECK(strstr(b.p, "deeprec_request_seconds_bucket{endpoint=\"/v1/recommend\",le=\"+Inf\"} 3\n"));
    CHECK(strstr(b.p, "deeprec_request_seconds_count{endpoint=\"/v1/recommend\"} 3\n"));
    CHECK(strstr(b.p, "deeprec_generated_tokens_total 7\n") && strstr(b.p, "deeprec_prompt_tokens_total 5\n"));
    CHECK(strstr(b.p, "deeprec_tool_calls_total 3\n") && strstr(b.p, "deeprec_episodes_total 2\n"));
    CHECK(strstr(b.p, "deeprec_queue_depth 4\n") && strstr(b.p, "deeprec_active_sequences 2\n") &&
          strstr(b.p, "deeprec_sessions 3\n"));
    CHECK(strstr(b.p, "deeprec_prefix_cache_hits_total 5\n") && strstr(b.p, "deeprec_prefix_cache_reused_tokens_total 1760\n"));
    CHECK(strstr(b.p, "# HELP deeprec_queue_depth Engine jobs waiting for a slot.\n# TYPE deeprec_queue_depth gauge\n"
                      "deeprec_queue_depth 4\n"));
    CHECK(strstr(b.p, "# TYPE deeprec_episodes_total counter\ndeeprec_episodes_total 2\n"));
    CHECK(!strstr(b.p, "/v1/completions")); /* endpoints never hit are not listed */
    dr_buf_free(&b);
    serve_metrics_destroy(&m);
}
