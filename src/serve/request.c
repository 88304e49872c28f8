/* Request bodies: strict JSON parsing (unknown fields and wrong types are refused, each
 * naming the field) into the structs the engines take. Pure functions: fuzzed. */
#include "internal.h"
#include "deeprec/data.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int serve_fail(serve_err *e, int status, const char *type, const char *code, const char *param, long long limit,
               const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->limit = limit;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return DR_ERR_ARG;
}

char *serve_err_json(const serve_err *e) {
    /* the message may quote the request, cut at a byte count: keep it valid UTF-8 */
    json_t *o = json_pack("{s:o, s:s, s:s}", "message", serve_json_text(e->message, strlen(e->message)), "type",
                          e->type ? e->type : "server_error", "code", e->code ? e->code : "internal");
    json_object_set_new(o, "param", e->param[0] ? serve_json_text(e->param, strlen(e->param)) : json_null());
    if (e->limit >= 0) json_object_set_new(o, "limit", json_integer(e->limit));
    json_t *j = json_pack("{s:o}", "error", o);
    return dr_json_take_compact(j);
}

/* ---------------------------------------------------------------- field helpers */
static int bad_json(serve_err *e, const json_error_t *je) {
    return serve_fail(e, 400, "invalid_request_error", "invalid_json", NULL, -1,
                      "the body is not valid JSON: %s (line %d, column %d)", je->text, je->line, je->column);
}
static int wrong_type(serve_err *e, const char *field, const char *want) {
    return serve_fail(e, 400, "invalid_request_error", "wrong_type", field, -1, "field '%s' must be %s", field, want);
}
static int bad_value(serve_err *e, const char *field, const char *what) {
    return serve_fail(e, 400, "invalid_request_error", "invalid_value", field, -1, "field '%s' must be %s", field,
                      what);
}
/* Every key of o must be in allowed (NULL-terminated). */
static int only_fields(json_t *o, const char *const *allowed, serve_err *e, const char *where) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(key, allowed[i]);
        if (!ok) {
            char list[256] = "";
            for (int i = 0; allowed[i]; i++) {
                if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, allowed[i], sizeof list - strlen(list) - 1);
            }
            return serve_fail(e, 400, "invalid_request_error", "unknown_field", key, -1,
                              "unknown field '%.60s'%s; known fields: %s", key, where, list);
        }
    }
    return DR_OK;
}
static int get_num(json_t *o, const char *f, double lo, double hi, double *out, serve_err *e) {
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v)) return DR_OK;
    if (!json_is_number(v)) return wrong_type(e, f, "a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        char w[96];
        snprintf(w, sizeof w, "a number in [%g, %g]", lo, hi);
        return bad_value(e, f, w);
    }
    *out = x;
    return DR_OK;
}
static int get_int(json_t *o, const char *f, long long lo, long long hi, long long *out, int *present, serve_err *e) {
    json_t *v = json_object_get(o, f);
    if (present) *present = 0;
    if (!v || json_is_null(v)) return DR_OK;
    if (!json_is_integer(v)) return wrong_type(e, f, "an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char w[96];
        snprintf(w, sizeof w, "an integer in [%lld, %lld]", lo, hi);
        return bad_value(e, f, w);
    }
    *out = x;
    if (present) *present = 1;
    return DR_OK;
}
static int get_bool(json_t *o, const char *f, int *out, serve_err *e) {
    json_t *v = json_object_get(o, f);
    if (!v || json_is_null(v)) return DR_OK;
    if (!json_is_boolean(v)) return wrong_type(e, f, "true or false");
    *out = json_is_true(v);
    return DR_OK;
}
static int parse_object(const char *body, size_t len, json_t **out, serve_err *e) {
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j) return bad_json(e, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return serve_fail(e, 400, "invalid_request_error", "wrong_type", NULL, -1, "the body must be a JSON object");
    }
    *out = j;
    return DR_OK;
}

/* ---------------------------------------------------------------- /v1/recommend */
void serve_rec_req_free(serve_rec_req *r) {
    free(r->user);
    if (r->hist_titles)
        for (int i = 0; i < r->n_hist; i++) free(r->hist_titles[i]);
    free(r->hist_titles);
    free(r->hist_ids);
    memset(r, 0, sizeof *r);
}

#define SERVE_MAX_HISTORY 1000

static int rec_fields(json_t *j, serve_rec_req *r, serve_err *e) {
    static const char *const allowed[] = {"user", "history", "k", "temperature", "top_p", "seed", "trace", "mode",
                                          "split", NULL};
    int rc;
    if ((rc = only_fields(j, allowed, e, " in a recommend request"))) return rc;
    json_t *u = json_object_get(j, "user"), *h = json_object_get(j, "history");
    if (u && json_is_null(u)) u = NULL;
    if (h && json_is_null(h)) h = NULL;
    if (!u == !h)
        return serve_fail(e, 400, "invalid_request_error", u ? "invalid_value" : "missing_field", u ? "history" : "user",
                          -1, "give exactly one of 'user' (a user id) and 'history' (item ids or titles)");
    if (u) {
        char buf[32];
        if (json_is_string(u)) r->user = strdup(json_string_value(u));
        else if (json_is_integer(u)) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(u));
            r->user = strdup(buf);
        } else
            return wrong_type(e, "user", "a string or an integer (the source user id; \"#N\" = the N-th user)");
        if (!r->user) return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
    } else {
        if (!json_is_array(h)) return wrong_type(e, "history", "an array of item ids (integers) or titles (strings)");
        size_t n = json_array_size(h);
        if (n == 0) return bad_value(e, "history", "a non-empty array");
        if (n > SERVE_MAX_HISTORY)
            return serve_fail(e, 400, "limit_error", "max_history", "history", SERVE_MAX_HISTORY,
                              "history has %zu entries; at most %d", n, SERVE_MAX_HISTORY);
        r->has_history = 1;
        r->hist_ids = calloc(n, sizeof *r->hist_ids);
        r->hist_titles = calloc(n, sizeof *r->hist_titles);
        if (!r->hist_ids || !r->hist_titles) return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
        r->n_hist = (int)n;
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(h, i);
            if (json_is_integer(v)) {
                long long id = json_integer_value(v);
                if (id < 1 || id > INT32_MAX) {
                    char f[32];
                    snprintf(f, sizeof f, "history[%zu]", i);
                    return bad_value(e, f, "a positive item id");
                }
                r->hist_ids[i] = (int32_t)id;
            } else if (json_is_string(v)) {
                if (!(r->hist_titles[i] = strdup(json_string_value(v))))
                    return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
            } else {
                char f[32];
                snprintf(f, sizeof f, "history[%zu]", i);
                return wrong_type(e, f, "an item id (integer) or a title (string)");
            }
        }
    }
    long long k = r->k, seed = (long long)r->seed;
    if ((rc = get_int(j, "k", 1, AGENT_N_REC, &k, NULL, e))) return rc;
    r->k = (int)k;
    if ((rc = get_int(j, "seed", 0, INT64_MAX, &seed, NULL, e))) return rc;
    r->seed = (uint64_t)seed;
    if ((rc = get_num(j, "temperature", 0.0, 2.0, &r->temperature, e))) return rc;
    if ((rc = get_num(j, "top_p", 0.0, 1.0, &r->top_p, e))) return rc;
    if ((rc = get_bool(j, "trace", &r->trace, e))) return rc;
    json_t *m = json_object_get(j, "mode");
    if (m && !json_is_null(m)) {
        if (!json_is_string(m)) return wrong_type(e, "mode", "a string: deeprec, trm or rerank");
        const char *s = json_string_value(m);
        if (!strcmp(s, "deeprec")) r->mode = SERVE_DEEPREC;
        else if (!strcmp(s, "trm")) r->mode = SERVE_TRM;
        else if (!strcmp(s, "rerank")) r->mode = SERVE_RERANK;
        else return bad_value(e, "mode", "one of deeprec, trm, rerank");
    }
    json_t *sp = json_object_get(j, "split");
    if (sp && !json_is_null(sp)) {
        if (!json_is_string(sp)) return wrong_type(e, "split", "a string: test, valid or all");
        const char *s = json_string_value(sp);
        if ((r->split = dr_data_split_from_name(s)) < 0) return bad_value(e, "split", "one of test, valid, all");
        if (r->has_history) return bad_value(e, "split", "given only with 'user' (a history has no held-out item)");
    }
    return DR_OK;
}

int serve_parse_recommend(const char *body, size_t len, serve_rec_req *r, serve_err *e) {
    memset(r, 0, sizeof *r);
    r->k = AGENT_N_REC;
    r->top_p = 1.0;
    r->seed = 1;
    json_t *j;
    int rc = parse_object(body, len, &j, e);
    if (rc) return rc;
    rc = rec_fields(j, r, e);
    json_decref(j);
    if (rc) serve_rec_req_free(r);
    return rc;
}

/* ---------------------------------------------------------------- completions */
void serve_gen_req_free(serve_gen_req *r) {
    free(r->prompt);
    for (int i = 0; i < r->n_msgs; i++) {
        free(r->msgs[i].role);
        free(r->msgs[i].content);
    }
    free(r->msgs);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}

static int gen_stops(json_t *j, serve_gen_req *r, serve_err *e) {
    json_t *s = json_object_get(j, "stop");
    if (!s || json_is_null(s)) return DR_OK;
    if (json_is_string(s)) {
        if (!json_string_length(s)) return bad_value(e, "stop", "a non-empty string");
        r->stops[r->n_stops++] = strdup(json_string_value(s));
        return DR_OK;
    }
    if (!json_is_array(s)) return wrong_type(e, "stop", "a string or an array of up to 4 strings");
    if (json_array_size(s) > SERVE_MAX_STOPS)
        return serve_fail(e, 400, "limit_error", "max_stops", "stop", SERVE_MAX_STOPS, "at most %d stop strings",
                          SERVE_MAX_STOPS);
    for (size_t i = 0; i < json_array_size(s); i++) {
        json_t *v = json_array_get(s, i);
        if (!json_is_string(v) || !json_string_length(v)) return wrong_type(e, "stop", "an array of non-empty strings");
        r->stops[r->n_stops++] = strdup(json_string_value(v));
    }
    return DR_OK;
}

static int gen_messages(json_t *j, serve_gen_req *r, serve_err *e) {
    json_t *m = json_object_get(j, "messages");
    if (!m) return serve_fail(e, 400, "invalid_request_error", "missing_field", "messages", -1, "'messages' is required");
    if (!json_is_array(m) || json_array_size(m) == 0)
        return wrong_type(e, "messages", "a non-empty array of {\"role\", \"content\"}");
    size_t n = json_array_size(m);
    if (n > 256) return serve_fail(e, 400, "limit_error", "max_messages", "messages", 256, "at most 256 messages");
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(m, i);
        char f[48];
        snprintf(f, sizeof f, "messages[%zu]", i);
        if (!json_is_object(o)) return wrong_type(e, f, "an object {\"role\", \"content\"}");
        static const char *const allowed[] = {"role", "content", "name", NULL};
        int rc = only_fields(o, allowed, e, " in a message");
        if (rc) return rc;
        json_t *role = json_object_get(o, "role"), *content = json_object_get(o, "content");
        if (!json_is_string(role)) return wrong_type(e, f, "an object whose 'role' is a string");
        const char *rs = json_string_value(role);
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "developer"))
            return bad_value(e, f, "a message whose role is system, developer, user or assistant");
        if (!json_is_string(content)) return wrong_type(e, f, "an object whose 'content' is a string");
        r->msgs[r->n_msgs].role = strdup(rs);
        r->msgs[r->n_msgs].content = strdup(json_string_value(content));
        r->n_msgs++;
    }
    return DR_OK;
}

static int gen_fields(json_t *j, int chat, int max_tokens_limit, serve_gen_req *r, serve_err *e) {
    static const char *const allowed_c[] = {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream",
                                            "stop", "seed", "logprobs", "user", NULL};
    static const char *const allowed_chat[] = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                                               "top_p", "n", "stream", "stop", "seed", "logprobs", "top_logprobs",
                                               "user", NULL};
    int rc;
    if ((rc = only_fields(j, chat ? allowed_chat : allowed_c, e, chat ? " in a chat completion request" : " in a completion request")))
        return rc;
    json_t *v;
    if ((v = json_object_get(j, "model")) && !json_is_string(v)) return wrong_type(e, "model", "a string");
    if ((v = json_object_get(j, "user")) && !json_is_string(v)) return wrong_type(e, "user", "a string");
    if (chat) {
        if ((rc = gen_messages(j, r, e))) return rc;
    } else {
        v = json_object_get(j, "prompt");
        if (!v) return serve_fail(e, 400, "invalid_request_error", "missing_field", "prompt", -1, "'prompt' is required");
        if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
            v = json_array_get(v, 0); /* OpenAI clients send a batch of one */
        if (!json_is_string(v)) return wrong_type(e, "prompt", "a string (or an array of one string)");
        if (!(r->prompt = strdup(json_string_value(v))))
            return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
    }
    long long mt = r->max_tokens, n = 1, seed = 0, lp = 0;
    const char *mt_name = chat && json_object_get(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (chat && json_object_get(j, "max_completion_tokens") && json_object_get(j, "max_tokens"))
        return bad_value(e, "max_completion_tokens", "given without max_tokens (they are the same limit)");
    if ((rc = get_int(j, mt_name, 1, INT32_MAX, &mt, NULL, e))) return rc;
    if (mt > max_tokens_limit)
        return serve_fail(e, 400, "limit_error", "max_tokens", mt_name, max_tokens_limit,
                          "%s = %lld is above this server's limit of %d tokens per request", mt_name, mt,
                          max_tokens_limit);
    r->max_tokens = (int)mt;
    if ((rc = get_int(j, "n", 1, 1, &n, NULL, e))) return rc;
    if ((rc = get_int(j, "seed", INT64_MIN, INT64_MAX, &seed, &r->has_seed, e))) return rc;
    r->seed = (uint64_t)seed;
    if ((rc = get_num(j, "temperature", 0.0, 2.0, &r->temperature, e))) return rc;
    if ((rc = get_num(j, "top_p", 0.0, 1.0, &r->top_p, e))) return rc;
    if ((rc = get_bool(j, "stream", &r->stream, e))) return rc;
    if ((rc = gen_stops(j, r, e))) return rc;
    for (int i = 0; i < r->n_stops; i++)
        if (!r->stops[i]) return serve_fail(e, 500, "server_error", "internal", NULL, -1, "out of memory");
    if (chat) {
        int want = 0, p = 0;
        if ((rc = get_bool(j, "logprobs", &want, e))) return rc;
        if ((rc = get_int(j, "top_logprobs", 0, SERVE_MAX_LOGPROBS, &lp, &p, e))) return rc;
        if (p && !want) return bad_value(e, "top_logprobs", "given with \"logprobs\": true");
        r->logprobs = want ? 1 + (int)lp : 0;
    } else {
        int p = 0;
        if ((rc = get_int(j, "logprobs", 0, SERVE_MAX_LOGPROBS, &lp, &p, e))) return rc;
        r->logprobs = p ? 1 + (int)lp : 0;
    }
    return DR_OK;
}

int serve_parse_generate(const char *body, size_t len, int chat, int max_tokens_limit, serve_gen_req *r,
                         serve_err *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = chat ? 256 : 16;
    if (r->max_tokens > max_tokens_limit) r->max_tokens = max_tokens_limit;
    r->temperature = 1.0;
    r->top_p = 1.0;
    json_t *j;
    int rc = parse_object(body, len, &j, e);
    if (rc) return rc;
    rc = gen_fields(j, chat, max_tokens_limit, r, e);
    json_decref(j);
    if (rc) serve_gen_req_free(r);
    return rc;
}

/* ---------------------------------------------------------------- text for JSON */
/* Model text is bytes; a JSON string must be UTF-8, so invalid bytes become U+FFFD. */
json_t *serve_json_text(const char *s, size_t n) {
    dr_buf b = {0};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = (size_t)dr_utf8_decode(s + i, n - i, &cp);
        if (k) {
            if (dr_buf_put(&b, s + i, k)) break;
            i += k;
        } else {
            if (dr_buf_put(&b, "\xEF\xBF\xBD", 3)) break;
            i++;
        }
    }
    json_t *j = json_stringn_nocheck(b.p ? b.p : "", b.n);
    dr_buf_free(&b);
    return j;
}
