/* The remote LLM (src/serve/remote_*.c) against scripted servers in this process: the answer
 * parser, the URL rules, retries (503 twice, then an answer), giving up (500 always), no retry on
 * 401, the API key, the request the protocol needs (stops, the growing prompt), and a whole
 * episode of agent_rollout whose turns come from the script. */
#include "client.h"
#include "fake_llm.h"
#include "harness.h"
#include "serve/remote_internal.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/serve.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define OK_BODY(text, extra)                                                                                         \
    "{\"id\": \"c1\", \"object\": \"text_completion\", \"choices\": [{\"index\": 0, \"text\": \"" text "\", "          \
    "\"finish_reason\": \"stop\"" extra "}], \"usage\": {\"prompt_tokens\": 5, \"completion_tokens\": 2}}"

TEST(remote_parse_answers) {
    remote_completion c;
    const char *b = "{\"choices\": [{\"text\": \"ab\", \"finish_reason\": \"stop\", \"stop_reason\": \"</x>\", "
                    "\"logprobs\": {\"tokens\": [\"a\", \"b\", \"</x>\"], \"token_logprobs\": [-0.5, -1, -2]}}], "
                    "\"usage\": {\"completion_tokens\": 3}}";
    CHECK_OK(remote_completion_parse(b, strlen(b), &c));
    CHECK_EQ_INT(c.len, 2);
    CHECK_STR(c.text, "ab");
    CHECK_STR(c.finish, "stop");
    CHECK_STR(c.stop, "</x>");
    CHECK_EQ_INT(c.n_tokens, 3);
    CHECK_STR(c.tokens[1], "b");
    CHECK_NEAR(c.logprobs[0], -0.5, 1e-6);
    CHECK_EQ_INT(c.completion_tokens, 3);
    remote_completion_free(&c);
    /* the chat form of log-probs (llama.cpp) and llama.cpp's stopping_word */
    b = "{\"choices\": [{\"text\": \"x\", \"finish_reason\": \"stop\", \"stopping_word\": \"</y>\", "
        "\"logprobs\": {\"content\": [{\"token\": \"x\", \"logprob\": -0.25}]}}]}";
    CHECK_OK(remote_completion_parse(b, strlen(b), &c));
    CHECK_STR(c.stop, "</y>");
    CHECK_EQ_INT(c.n_tokens, 1);
    CHECK_NEAR(c.logprobs[0], -0.25, 1e-6);
    CHECK_EQ_INT(c.completion_tokens, -1);
    remote_completion_free(&c);
    /* a token list with a hole is dropped, the text kept */
    b = "{\"choices\": [{\"text\": \"x\", \"logprobs\": {\"tokens\": [\"x\", 3]}}]}";
    CHECK_OK(remote_completion_parse(b, strlen(b), &c));
    CHECK_EQ_INT(c.n_tokens, 0);
    CHECK(c.finish == NULL);
    remote_completion_free(&c);
    CHECK_ERR(remote_completion_parse("<html>502</html>", 16, &c), DR_ERR_FORMAT);
    CHECK_ERR(remote_completion_parse("{\"choices\": []}", 15, &c), DR_ERR_FORMAT);

    const char *e401 = "{\"error\": {\"message\": \"bad key\", \"code\": \"unauthorized\"}}";
    char *m = remote_error_message(e401, strlen(e401));
    CHECK_STR(m, "bad key");
    free(m);
    const char *det = "{\"detail\": \"Not Found\"}";
    m = remote_error_message(det, strlen(det));
    CHECK_STR(m, "Not Found");
    free(m);
    m = remote_error_message("oops\n", 5);
    CHECK_STR(m, "oops ");
    free(m);
    const char *ctx = "{\"error\": {\"code\": \"context_length_exceeded\", \"message\": \"too long\"}}";
    CHECK(remote_error_is_context(ctx, strlen(ctx)));
    ctx = "{\"error\": {\"code\": 400, \"message\": \"the request exceeds the available context size, try increasing it\", "
          "\"type\": \"exceed_context_size_error\"}}";
    CHECK(remote_error_is_context(ctx, strlen(ctx)));
    const char *key = "{\"error\": {\"message\": \"bad key\"}}";
    CHECK(!remote_error_is_context(key, strlen(key)));
}

TEST(remote_url_rules) {
    char *n = NULL;
    CHECK_OK(remote_url_check("http://127.0.0.1:8081/v1/", &n));
    CHECK_STR(n, "http://127.0.0.1:8081/v1");
    free(n);
    CHECK_OK(remote_url_check("https://example.org/v1", &n));
    free(n);
    const char *bad[] = {"", "127.0.0.1:8081/v1", "ftp://h/v1", "http://", "http://h:99999/v1", "http://h/v1?x=1",
                         "http://u:p@h/v1", "http://h/v1#f", "not a url"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(remote_url_check(bad[i], &n) == DR_ERR_ARG, "'%s' was accepted", bad[i]);
        CHECK(n == NULL);
    }
}

/* A model on the fake server with fast retries; the prompt "hi" in slot 0. */
static void open_model(agent_model *m, const fake_llm *f, const char *model, const char *key) {
    serve_remote_opts o = {0};
    o.url = fake_llm_url(f);
    o.model = model;
    o.api_key = key;
    o.parallel = 2;
    o.backoff_s = 0.01;
    o.max_attempts = 4;
    CHECK_OK(serve_remote_model_new(m, &o));
    int32_t *ids;
    size_t n;
    CHECK_OK(m->encode(m->ctx, "hi", 2, &ids, &n));
    CHECK_OK(m->append(m->ctx, 0, ids, (int)n));
    free(ids);
}

/* Decode slot 0 until the end of the turn; the pieces' text and the last token. */
static int turn_text(agent_model *m, char *out, size_t cap, int32_t *last) {
    size_t at = 0;
    int slot = 0;
    for (int step = 0; step < 100; step++) {
        int32_t t;
        float lp;
        int rc = m->decode(m->ctx, &slot, 1, NULL, &t, &lp);
        if (rc) return rc;
        if (t == AGENT_TOKEN_NONE) continue;
        *last = t;
        if (m->is_eos(m->ctx, t)) break;
        char buf[256];
        int k = m->piece(m->ctx, t, buf, sizeof buf);
        CHECK(k >= 0 && at + (size_t)k < cap);
        memcpy(out + at, buf, (size_t)k);
        at += (size_t)k;
        out[at] = 0;
        if (strstr(out, AGENT_TAG_PREF_END)) break;
    }
    return DR_OK;
}

TEST(remote_retries_then_answers) {
    fake_reply script[] = {{503, "{\"error\": {\"message\": \"loading model\"}}"},
                           {503, "{\"error\": {\"message\": \"loading model\"}}"},
                           {200, OK_BODY("hello", "")}};
    fake_llm f;
    fake_llm_start(&f, script, 3);
    agent_model m;
    open_model(&m, &f, "fake", "sekret");
    char text[512] = "";
    int32_t last = -1;
    CHECK_OK(turn_text(&m, text, sizeof text, &last));
    CHECK_STR(text, "hello");
    CHECK_EQ_INT(m.is_eos(m.ctx, last), 1); /* no stop named or left open: the model ended */
    CHECK_EQ_INT(f.n_posts, 3);
    CHECK_STR(f.auth, "Bearer sekret");
    /* what the protocol needs of the request: the episode as the prompt, the end tags as stops */
    json_t *j = json_loads(f.bodies[2], 0, NULL);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "prompt")), "hi");
    CHECK_STR(json_string_value(json_object_get(j, "model")), "fake");
    json_t *stops = json_object_get(j, "stop");
    CHECK_EQ_INT(json_array_size(stops), 2);
    CHECK_STR(json_string_value(json_array_get(stops, 0)), AGENT_TAG_PREF_END);
    CHECK_STR(json_string_value(json_array_get(stops, 1)), AGENT_TAG_ANSWER_END);
    json_decref(j);
    serve_remote_model_free(&m);
    fake_llm_stop(&f);
}

/* A server that answers only `status`: the turn fails with an error naming the URL, the status
 * and the server's message (and `tries` when it retried) after `posts` requests. */
static void check_failure(int status, const char *body, const char *model, const char *key, const char *tries,
                          int posts, const char *says) {
    fake_reply script[] = {{status, body}};
    fake_llm f;
    fake_llm_start(&f, script, 1);
    agent_model m;
    open_model(&m, &f, model, key);
    CHECK_EQ_INT(f.n_gets, model ? 0 : 1); /* no name given: GET /models */
    char text[512] = "", want[32];
    int32_t last;
    CHECK_ERR(turn_text(&m, text, sizeof text, &last), DR_ERR_IO);
    const char *msg = dr_error_message();
    snprintf(want, sizeof want, "HTTP %d", status);
    CHECK_MSG(strstr(msg, fake_llm_url(&f)) && strstr(msg, want) && (!tries || strstr(msg, tries)) && strstr(msg, says),
              "message: %s", msg);
    CHECK_EQ_INT(f.n_posts, posts);
    char auth[64] = "";
    if (key) snprintf(auth, sizeof auth, "Bearer %s", key);
    CHECK_STR(f.auth, auth);
    serve_remote_model_free(&m);
    fake_llm_stop(&f);
}

TEST(remote_gives_up_on_500) {
    check_failure(500, "{\"error\": {\"message\": \"the GPU caught fire\"}}", NULL, NULL, "4 tries", 4,
                  "the GPU caught fire");
}

TEST(remote_no_retry_on_401) {
    check_failure(401, "{\"error\": {\"message\": \"invalid API key\", \"code\": \"unauthorized\"}}", "fake", "wrong",
                  NULL, 1, "invalid API key");
}

/* A prompt over the server's context ends the episode (the "full" marker), not the run; a
 * "length" finish too; constrained answers are refused. */
TEST(remote_context_and_length) {
    fake_reply script[] = {{400, "{\"error\": {\"code\": \"context_length\", \"message\": \"prompt too long\"}}"},
                           {200, "{\"choices\": [{\"text\": \"abc\", \"finish_reason\": \"length\"}]}"}};
    fake_llm f;
    fake_llm_start(&f, script, 2);
    agent_model m;
    open_model(&m, &f, "fake", NULL);
    char text[512] = "";
    int32_t last;
    CHECK_OK(turn_text(&m, text, sizeof text, &last));
    CHECK_EQ_INT(m.is_eos(m.ctx, last), AGENT_EOS_FULL);
    m.release(m.ctx, 0);
    int32_t *ids;
    size_t n;
    CHECK_OK(m.encode(m.ctx, "x", 1, &ids, &n));
    CHECK_OK(m.append(m.ctx, 0, ids, (int)n));
    free(ids);
    CHECK_OK(turn_text(&m, text, sizeof text, &last));
    CHECK_STR(text, "abc"); /* no log-probs: the turn is one piece */
    CHECK_EQ_INT(m.is_eos(m.ctx, last), AGENT_EOS_FULL);
    int slot = 0;
    int32_t allowed[2] = {1, 2}, t;
    float lp;
    agent_allow al = {allowed, 2};
    CHECK_ERR(m.decode(m.ctx, &slot, 1, &al, &t, &lp), DR_ERR_UNSUPPORTED);
    serve_remote_model_free(&m);
    fake_llm_stop(&f);
}

/* A whole episode: turn 1 opens a preference and the server stops at its end tag without
 * naming it (the adapter sees the open tag), the tool runs, turn 2 writes the answer and the
 * server names the stop (stop_reason); the rollout's episode is what a local model's would be. */
TEST(remote_episode_through_rollout) {
    const char *dir = dr_test_tmpdir();
    sv_fixture(dir);
    fake_reply script[] = {
        {200, "{\"choices\": [{\"text\": \"<think>I like crime.<|begin_of_preference|>crime; thriller\", "
              "\"finish_reason\": \"stop\", \"logprobs\": {\"tokens\": [\"<think>\", \"I like crime.\", "
              "\"<|begin_of_preference|>\", \"crime; thriller\", \"<|end_of_preference|>\"], "
              "\"token_logprobs\": [-0.1, -0.2, -0.3, -0.4, -0.5]}}]}"},
        {200, "{\"choices\": [{\"text\": \"Heat fits.</think>\\n<recommendation_list>\\n1. Heat\\n2. Casino\\n\", "
              "\"finish_reason\": \"stop\", \"stop_reason\": \"</recommendation_list>\"}]}"}};
    fake_llm f;
    fake_llm_start(&f, script, 2);
    dr_dataset d;
    CHECK_OK(dr_data_load(&d, dr_test_path(dir, "data.gguf")));
    trm_model *tm;
    CHECK_OK(trm_load(&tm, dr_test_path(dir, "trm.gguf")));
    agent_catalog *cat;
    CHECK_OK(agent_catalog_build(&d, &cat));
    agent_tool tool;
    CHECK_OK(agent_tool_trm_new(&tool, tm, 1));
    agent_model m;
    serve_remote_opts o = {0};
    o.url = fake_llm_url(&f);
    o.model = "fake";
    CHECK_OK(serve_remote_model_new(&m, &o));
    agent_request rq = {0};
    rq.user = 0;
    rq.target = dr_data_test(&d, 0, &rq.hist, &rq.n_hist);
    agent_rollout_opts ro = {0};
    agent_episode *ep;
    CHECK_OK(agent_rollout(&m, &tool, cat, &rq, 1, &ro, &ep));
    CHECK_STR(agent_outcome_name(ep->outcome), "finished");
    CHECK_EQ_INT(ep->n_calls, 1);
    CHECK_STR(ep->calls[0].preference, "crime; thriller");
    CHECK_EQ_INT(ep->answer.n_lines, 2);
    CHECK_STR(agent_catalog_title(cat, ep->resolved[0]), "Heat");
    CHECK_STR(agent_catalog_title(cat, ep->resolved[1]), "Casino");
    CHECK_EQ_INT(ep->n_generated, 5 + 2); /* turn 1's five tokens; turn 2 whole, then its stop */
    CHECK(strstr(ep->text + ep->prompt_len, "crime; thriller<|end_of_preference|><|begin_of_item_list|>") != NULL);
    const char *end = ep->text + ep->text_len - strlen(AGENT_TAG_ANSWER_END);
    CHECK_STR(end, AGENT_TAG_ANSWER_END);
    /* turn 2 sent everything so far: the prompt, turn 1, its end tag and the tool's result */
    CHECK_EQ_INT(f.n_posts, 2);
    json_t *j = json_loads(f.bodies[1], 0, NULL);
    const char *p2 = json_string_value(json_object_get(j, "prompt"));
    size_t before_answer = (size_t)(strstr(ep->text, "Heat fits.") - ep->text);
    CHECK_EQ_INT(strlen(p2), before_answer);
    CHECK(!strncmp(p2, ep->text, before_answer));
    json_decref(j);
    agent_episodes_free(ep, 1);
    serve_remote_model_free(&m);
    agent_tool_trm_free(&tool);
    agent_catalog_free(cat);
    trm_model_free(tm);
    dr_data_free(&d);
    fake_llm_stop(&f);
}
