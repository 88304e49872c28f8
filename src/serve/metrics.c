/* Counters and latency histograms, rendered in the Prometheus text format. */
#include "internal.h"
#include <stdio.h>
#include <string.h>

static const double bucket_le[SERVE_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const char *const ep_names[EP_N] = {"/v1/recommend", "/v1/completions", "/v1/chat/completions", "/v1/models",
                                           "/v1/users", "/health", "/metrics", "/", "other"};
static const char *const class_names[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};

const char *serve_endpoint_name(int ep) { return ep >= 0 && ep < EP_N ? ep_names[ep] : "other"; }

void serve_metrics_init(serve_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}
void serve_metrics_destroy(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

void serve_metrics_request(serve_metrics *m, int ep, int status, double seconds) {
    if (ep < 0 || ep >= EP_N) ep = EP_OTHER;
    int cls = status >= 100 && status < 600 ? status / 100 - 1 : 5;
    pthread_mutex_lock(&m->mu);
    m->requests[ep][cls]++;
    m->lat_count[ep]++;
    m->lat_sum[ep] += seconds;
    for (int b = 0; b < SERVE_N_BUCKETS; b++)
        if (seconds <= bucket_le[b]) {
            m->lat_bucket[ep][b]++;
            break;
        }
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_tokens(serve_metrics *m, long long prompt, long long gen) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt;
    m->gen_tokens += gen;
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_episodes(serve_metrics *m, long long episodes, long long calls) {
    pthread_mutex_lock(&m->mu);
    m->episodes += episodes;
    m->tool_calls += calls;
    pthread_mutex_unlock(&m->mu);
}

int serve_metrics_render(serve_metrics *m, const serve_gauges *g, dr_buf *out) {
    char line[512];
    int rc = 0;
#define OUT(...) (snprintf(line, sizeof line, __VA_ARGS__), rc = rc ? rc : dr_buf_puts(out, line))
    pthread_mutex_lock(&m->mu);
    OUT("# HELP deeprec_requests_total HTTP requests answered, by endpoint and status class.\n");
    OUT("# TYPE deeprec_requests_total counter\n");
    for (int e = 0; e < EP_N; e++)
        for (int c = 0; c < 6; c++)
            if (m->requests[e][c]) OUT("deeprec_requests_total{endpoint=\"%s\",code=\"%s\"} %lld\n", ep_names[e], class_names[c], m->requests[e][c]);
    OUT("# HELP deeprec_request_seconds Wall time from the request's arrival to its last byte queued.\n");
    OUT("# TYPE deeprec_request_seconds histogram\n");
    for (int e = 0; e < EP_N; e++) {
        if (!m->lat_count[e]) continue;
        long long cum = 0;
        for (int b = 0; b < SERVE_N_BUCKETS; b++) {
            cum += m->lat_bucket[e][b];
            OUT("deeprec_request_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %lld\n", ep_names[e], bucket_le[b], cum);
        }
        OUT("deeprec_request_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %lld\n", ep_names[e], m->lat_count[e]);
        OUT("deeprec_request_seconds_sum{endpoint=\"%s\"} %.6f\n", ep_names[e], m->lat_sum[e]);
        OUT("deeprec_request_seconds_count{endpoint=\"%s\"} %lld\n", ep_names[e], m->lat_count[e]);
    }
    /* the unlabelled samples; the counters are read under the lock, in this initialiser */
    const struct { const char *name, *type, *help; long long v; } scalars[] = {
        {"deeprec_prompt_tokens_total", "counter", "Prompt tokens of completion requests.", m->prompt_tokens},
        {"deeprec_generated_tokens_total", "counter", "Tokens generated (completions and agent episodes).",
         m->gen_tokens},
        {"deeprec_episodes_total", "counter", "Agent episodes rolled out.", m->episodes},
        {"deeprec_tool_calls_total", "counter", "TRM tool calls made by agent episodes.", m->tool_calls},
        {"deeprec_queue_depth", "gauge", "Engine jobs waiting for a slot.", g->queue_depth},
        {"deeprec_active_sequences", "gauge", "Completion sequences in the decode batch.", g->active_sequences},
        {"deeprec_sessions", "gauge", "Open client connections.", g->sessions},
        {"deeprec_prefix_cache_hits_total", "counter",
         "Agent sequences started from the cached KV of their prompt's preamble.", (long long)g->prefix_hits},
        {"deeprec_prefix_cache_reused_tokens_total", "counter", "Preamble tokens those sequences did not prefill.",
         (long long)g->prefix_reused_tokens},
    };
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++)
        OUT("# HELP %s %s\n# TYPE %s %s\n%s %lld\n", scalars[i].name, scalars[i].help, scalars[i].name,
            scalars[i].type, scalars[i].name, scalars[i].v);
#undef OUT
    return rc;
}
