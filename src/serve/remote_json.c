/* The answers of an OpenAI-compatible server, read leniently: servers differ in the fields
 * they add (log-probs in two shapes, the matched stop under two names), and any of them may
 * send something else entirely (a proxy's HTML page), which must end in a clear error. */
#include "remote_internal.h"
#include "deeprec/base.h"
#include <ctype.h>
#include <strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}
static char *dup_json_str(json_t *v, size_t *len) {
    if (!json_is_string(v)) return NULL;
    size_t n = json_string_length(v);
    if (len) *len = n;
    return dup_n(json_string_value(v), n);
}

void remote_completion_free(remote_completion *c) {
    free(c->text);
    free(c->finish);
    free(c->stop);
    for (int i = 0; i < c->n_tokens; i++) free(c->tokens[i]);
    free(c->tokens);
    free(c->token_len);
    free(c->logprobs);
    memset(c, 0, sizeof *c);
}

/* The token list: {tokens: [...], token_logprobs: [...]} or {content: [{token, logprob}, ...]}.
 * A list that is not well formed is left out (the text alone still works). */
static int take_tokens(json_t *lp, remote_completion *c) {
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs");
    json_t *content = json_object_get(lp, "content");
    size_t n;
    if (json_is_array(toks)) n = json_array_size(toks);
    else if (json_is_array(content)) n = json_array_size(content);
    else return DR_OK;
    if (n == 0 || n > (1u << 24)) return DR_OK;
    c->tokens = calloc(n, sizeof *c->tokens);
    c->token_len = calloc(n, sizeof *c->token_len);
    c->logprobs = calloc(n, sizeof *c->logprobs);
    if (!c->tokens || !c->token_len || !c->logprobs) return dr_error(DR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t, *l;
        if (json_is_array(toks)) {
            t = json_array_get(toks, i);
            l = json_is_array(lps) ? json_array_get(lps, i) : NULL;
        } else {
            json_t *rec = json_array_get(content, i);
            t = json_object_get(rec, "token");
            l = json_object_get(rec, "logprob");
        }
        if (!json_is_string(t)) break;
        if (!(c->tokens[i] = dup_json_str(t, &c->token_len[i]))) return dr_error(DR_ERR_NOMEM, "out of memory");
        c->logprobs[i] = json_is_number(l) ? (float)json_number_value(l) : 0.0f;
        c->n_tokens = (int)i + 1;
    }
    if ((size_t)c->n_tokens != n) { /* a hole: no token list rather than a wrong one */
        for (int i = 0; i < c->n_tokens; i++) free(c->tokens[i]);
        c->n_tokens = 0;
    }
    return DR_OK;
}

int remote_completion_parse(const char *body, size_t len, remote_completion *c) {
    memset(c, 0, sizeof *c);
    c->completion_tokens = -1;
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    if (!j) return dr_error(DR_ERR_FORMAT, "the answer is not JSON (%s, line %d)", je.text, je.line);
    int rc = DR_OK;
    json_t *choice = json_array_get(json_object_get(j, "choices"), 0);
    json_t *text = json_object_get(choice, "text");
    if (!json_is_object(choice) || !json_is_string(text)) {
        rc = dr_error(DR_ERR_FORMAT, "the answer has no choices[0].text");
        goto out;
    }
    if (!(c->text = dup_json_str(text, &c->len))) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto out;
    }
    json_t *fin = json_object_get(choice, "finish_reason");
    if (json_is_string(fin) && !(c->finish = dup_json_str(fin, NULL))) rc = dr_error(DR_ERR_NOMEM, "out of memory");
    json_t *stop = json_object_get(choice, "stop_reason");
    if (!stop) stop = json_object_get(choice, "stopping_word");
    if (!stop) stop = json_object_get(j, "stopping_word");
    c->stop_said = stop != NULL;
    if (!rc && json_is_string(stop) && json_string_length(stop) > 0 && !(c->stop = dup_json_str(stop, NULL)))
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
    json_t *lp = json_object_get(choice, "logprobs");
    if (!rc && json_is_object(lp)) rc = take_tokens(lp, c);
    json_t *ct = json_object_get(json_object_get(j, "usage"), "completion_tokens");
    if (json_is_integer(ct) && json_integer_value(ct) >= 0) c->completion_tokens = (long)json_integer_value(ct);
out:
    json_decref(j);
    if (rc) remote_completion_free(c);
    return rc;
}

static char *printable(const char *s, size_t n) {
    if (n > 300) n = 300;
    char *d = dup_n(s, n);
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!isprint((unsigned char)d[i])) d[i] = ' ';
    return d;
}

char *remote_error_message(const char *body, size_t len) {
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
    if (!json_is_string(m)) m = json_object_get(j, "message");
    if (!json_is_string(m)) m = json_object_get(j, "detail");
    char *out = json_is_string(m) ? printable(json_string_value(m), json_string_length(m)) : printable(body, len);
    json_decref(j);
    return out;
}

static int has_ci(const char *s, const char *needle) {
    size_t n = strlen(needle);
    for (; s && *s; s++)
        if (!strncasecmp(s, needle, n)) return 1;
    return 0;
}

int remote_error_is_context(const char *body, size_t len) {
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *fields[3] = {json_string_value(json_object_get(e, "code")), json_string_value(json_object_get(e, "type")),
                             json_string_value(json_is_object(e) ? json_object_get(e, "message") : e)};
    int yes = 0;
    for (int i = 0; i < 3 && !yes; i++)
        yes = has_ci(fields[i], "context_length") || has_ci(fields[i], "context length") ||
              has_ci(fields[i], "context size") || has_ci(fields[i], "exceed_context");
    json_decref(j);
    return yes;
}
