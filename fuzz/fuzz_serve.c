/* Fuzz what the server takes from clients and what it writes to them: the request parsers
 * (recommend, completions, chat; every error must come back as a filled serve_err whose JSON
 * is valid), the SSE writer (its stream must parse back to the payload, line breaks
 * normalised to "\n") and the UTF-8 repair of model text for JSON. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "serve/internal.h"

typedef struct got { char *p; size_t n; int count; } got;
static void on_event(void *ctx, const char *data, size_t n) {
    got *g = ctx;
    free(g->p);
    g->p = malloc(n + 1);
    memcpy(g->p, data, n);
    g->n = n;
    g->count++;
}

static void check_err(const serve_err *e) {
    if (e->status < 400 || e->status > 599 || !e->code) abort();
    char *s = serve_err_json(e);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    if (!j) abort();
    json_decref(j);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    serve_err e;
    serve_rec_req rr;
    if (serve_parse_recommend(s, size, &rr, &e) == 0) {
        if (rr.k < 1 || rr.k > AGENT_N_REC || (!rr.user && !rr.has_history)) abort();
        serve_rec_req_free(&rr);
    } else
        check_err(&e);
    for (int chat = 0; chat < 2; chat++) {
        serve_gen_req g;
        if (serve_parse_generate(s, size, chat, 64, &g, &e) == 0) {
            if (g.max_tokens < 1 || g.max_tokens > 64 || g.n_stops > SERVE_MAX_STOPS) abort();
            serve_gen_req_free(&g);
        } else
            check_err(&e);
    }
    /* SSE round trip: the payload with \r\n and \r turned into \n */
    dr_buf out = {0};
    if (serve_sse_event(&out, s, size) == 0) {
        got g = {0};
        if (serve_sse_parse(out.p, out.n, on_event, &g) != 1 || g.count != 1) abort();
        char *norm = malloc(size + 1);
        size_t m = 0;
        for (size_t i = 0; i < size; i++) {
            if (s[i] == '\r') {
                norm[m++] = '\n';
                if (i + 1 < size && s[i + 1] == '\n') i++;
            } else
                norm[m++] = s[i];
        }
        if (g.n != m || memcmp(g.p, norm, m)) abort();
        free(norm);
        free(g.p);
    }
    dr_buf_free(&out);
    /* model text to a JSON string and back: valid JSON, and valid UTF-8 input is kept */
    json_t *arr = json_pack("[o]", serve_json_text(s, size));
    char *dump = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    json_t *back = dump ? json_loads(dump, JSON_ALLOW_NUL, NULL) : NULL; /* NUL bytes are \u0000 */
    if (!back) abort();
    json_decref(back);
    free(dump);
    return 0;
}
