/* HTTP for the remote LLM: libcurl's multi interface, so the turns of several episodes are in
 * flight at once, with bounded retries; a server that is restarting or overloaded (connection
 * refused, 502/503, 429) gets time to come back, a request it refuses (4xx) fails at once. */
#include "remote_internal.h"
#include "internal.h"
#include <curl/curl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { CALL_IDLE = 0, CALL_RUNNING, CALL_WAITING, CALL_ENDED };

typedef struct call {
    CURL *easy;
    int state;
    char *path, *body;
    dr_buf resp;
    int attempt;          /* tries started */
    double not_before;    /* CALL_WAITING: when to try again */
    long status;          /* CALL_ENDED: HTTP status, 0 = gave up (message in err) */
    char err[512];
    char curl_err[CURL_ERROR_SIZE];
} call;

struct remote_http {
    remote_http_opts o;
    char *base, *auth;
    CURLM *multi;
    struct curl_slist *hdr;
    call *calls;
};

static int curl_ready(void) {
    static int done;
    if (done) return DR_OK;
    /* once per process, before any thread uses curl (the CLI and tests are single-threaded here) */
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) return dr_error(DR_ERR_IO, "libcurl could not be initialised");
    done = 1;
    return DR_OK;
}

int remote_url_check(const char *url, char **out) {
    *out = NULL;
    if (!url || !*url) return dr_error(DR_ERR_ARG, "the LLM URL is empty (expected http://HOST:PORT/v1)");
    if (curl_ready()) return dr_error_code();
    CURLU *u = curl_url();
    if (!u) return dr_error(DR_ERR_NOMEM, "out of memory");
    char *scheme = NULL, *host = NULL, *port = NULL, *query = NULL, *frag = NULL, *user = NULL;
    int rc = DR_OK;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc) {
        rc = dr_error(DR_ERR_ARG, "'%s' is not a URL (%s); expected http://HOST:PORT/v1", url, curl_url_strerror(uc));
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
    curl_url_get(u, CURLUPART_USER, &user, 0);
    if (!scheme || (strcmp(scheme, "http") && strcmp(scheme, "https")))
        rc = dr_error(DR_ERR_ARG, "'%s': the scheme must be http or https", url);
    else if (!host || !*host)
        rc = dr_error(DR_ERR_ARG, "'%s' names no host", url);
    else if (port && (atol(port) < 1 || atol(port) > 65535))
        rc = dr_error(DR_ERR_ARG, "'%s': the port must be in 1..65535", url);
    else if (query || frag)
        rc = dr_error(DR_ERR_ARG, "'%s': a query or fragment has no place in the base URL", url);
    else if (user)
        rc = dr_error(DR_ERR_ARG, "'%s': credentials in the URL are not supported (use --api-key-env)", url);
    char *full = NULL; /* curl's own spelling: the scheme lowercased, the path normalised */
    if (!rc && (curl_url_get(u, CURLUPART_URL, &full, 0) || !full)) rc = dr_error(DR_ERR_ARG, "'%s' is not a URL", url);
    if (!rc) {
        size_t n = strlen(full);
        while (n > 0 && full[n - 1] == '/') n--;
        if (!(*out = malloc(n + 1))) rc = dr_error(DR_ERR_NOMEM, "out of memory");
        else {
            memcpy(*out, full, n);
            (*out)[n] = 0;
        }
    }
    curl_free(full);
    if (rc) dr_error_hint("the base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8081/v1");
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(query);
    curl_free(frag);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
    call *c = ud;
    return dr_buf_put(&c->resp, p, size * n) ? 0 : size * n;
}

int remote_http_new(remote_http **out, const remote_http_opts *o) {
    *out = NULL;
    int rc = curl_ready();
    if (rc) return rc;
    remote_http *h = calloc(1, sizeof *h);
    if (!h) return dr_error(DR_ERR_NOMEM, "out of memory");
    h->o = *o;
    h->base = strdup(o->base);
    h->calls = calloc((size_t)(o->n_ids > 0 ? o->n_ids : 1), sizeof *h->calls);
    h->multi = curl_multi_init();
    if (!h->base || !h->calls || !h->multi) {
        remote_http_free(h);
        return dr_error(DR_ERR_NOMEM, "out of memory (HTTP client)");
    }
    h->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (o->api_key && *o->api_key) {
        size_t n = strlen(o->api_key) + 32;
        if ((h->auth = malloc(n))) {
            snprintf(h->auth, n, "Authorization: Bearer %s", o->api_key);
            h->hdr = curl_slist_append(h->hdr, h->auth);
        }
    }
    h->o.base = h->base;
    *out = h;
    return DR_OK;
}

void remote_http_free(remote_http *h) {
    if (!h) return;
    for (int i = 0; h->calls && i < h->o.n_ids; i++) {
        remote_http_reset(h, i);
        if (h->calls[i].easy) curl_easy_cleanup(h->calls[i].easy);
    }
    if (h->multi) curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->hdr);
    free(h->calls);
    free(h->base);
    free(h->auth);
    free(h);
}

void remote_http_reset(remote_http *h, int id) {
    call *c = &h->calls[id];
    if (c->state == CALL_RUNNING) curl_multi_remove_handle(h->multi, c->easy);
    free(c->path);
    free(c->body);
    dr_buf_free(&c->resp);
    c->path = c->body = NULL;
    c->state = CALL_IDLE;
    c->attempt = 0;
    c->status = 0;
}

/* One try of call id: the easy handle (reused: its connection stays open) set up anew. */
static int try_start(remote_http *h, int id) {
    call *c = &h->calls[id];
    if (!c->easy && !(c->easy = curl_easy_init())) return dr_error(DR_ERR_NOMEM, "out of memory (HTTP client)");
    CURL *e = c->easy;
    curl_easy_reset(e);
    size_t ul = strlen(h->base) + strlen(c->path) + 1;
    char *url = malloc(ul);
    if (!url) return dr_error(DR_ERR_NOMEM, "out of memory");
    snprintf(url, ul, "%s%s", h->base, c->path);
    curl_easy_setopt(e, CURLOPT_URL, url); /* curl copies the string */
    free(url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdr);
    if (c->body) curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
    else curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(h->o.timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)(intptr_t)id);
    c->curl_err[0] = 0;
    c->resp.n = 0;
    c->attempt++;
    c->state = CALL_RUNNING;
    if (curl_multi_add_handle(h->multi, e)) return dr_error(DR_ERR_IO, "libcurl refused a transfer");
    return DR_OK;
}

int remote_http_post(remote_http *h, int id, const char *path, char *body) {
    remote_http_reset(h, id);
    call *c = &h->calls[id];
    c->path = strdup(path);
    c->body = body;
    if (!c->path) return dr_error(DR_ERR_NOMEM, "out of memory");
    return try_start(h, id);
}

static int retryable(long status) { return status == 0 || status == 408 || status == 429 || status >= 500; }

/* A try ended: keep the answer, or schedule the next try, or give up with a message. */
static void try_ended(remote_http *h, int id, CURLcode cc) {
    call *c = &h->calls[id];
    long status = 0;
    double retry_after = 0;
    curl_multi_remove_handle(h->multi, c->easy);
    if (cc == CURLE_OK) {
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_off_t ra = 0;
        if (curl_easy_getinfo(c->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) retry_after = (double)ra;
    }
    if (status && !retryable(status)) {
        c->status = status;
        c->state = CALL_ENDED;
        return;
    }
    if (c->attempt < h->o.max_attempts) {
        double wait = h->o.backoff_s * pow(2.0, c->attempt - 1);
        if (retry_after > wait) wait = retry_after < 30 ? retry_after : 30;
        c->not_before = dr_now() + wait;
        c->state = CALL_WAITING;
        return;
    }
    c->status = 0;
    c->state = CALL_ENDED;
    if (status) {
        char *msg = remote_error_message(c->resp.p ? c->resp.p : "", c->resp.n);
        snprintf(c->err, sizeof c->err, "HTTP %ld after %d tries: %s", status, c->attempt, msg ? msg : "");
        free(msg);
    } else {
        snprintf(c->err, sizeof c->err, "%s after %d tries", c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc),
                 c->attempt);
    }
}

int remote_http_wait(remote_http *h, double wait_s, int *done, int *n_done) {
    *n_done = 0;
    double until = wait_s < 0 ? INFINITY : dr_now() + wait_s;
    for (;;) {
        double now = dr_now(), next = until;
        for (int i = 0; i < h->o.n_ids; i++) {
            call *c = &h->calls[i];
            if (c->state == CALL_WAITING && c->not_before <= now) {
                int rc = try_start(h, i);
                if (rc) return rc;
            }
        }
        int running = 0;
        if (curl_multi_perform(h->multi, &running)) return dr_error(DR_ERR_IO, "libcurl transfer failed");
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            char *pv = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &pv);
            int id = (int)(intptr_t)pv;
            try_ended(h, id, m->data.result);
            if (h->calls[id].state == CALL_ENDED) done[(*n_done)++] = id;
        }
        if (*n_done) return DR_OK;
        now = dr_now();
        if (now >= until) return DR_OK;
        int waiting = running;
        for (int i = 0; i < h->o.n_ids; i++)
            if (h->calls[i].state == CALL_WAITING) {
                waiting = 1;
                if (h->calls[i].not_before < next) next = h->calls[i].not_before;
            }
        if (!waiting) return DR_OK; /* nothing in flight: nothing to wait for */
        double ms = (next - now) * 1000;
        if (ms > 1000) ms = 1000;
        if (ms < 1) ms = 1;
        if (curl_multi_poll(h->multi, NULL, 0, (int)ms, NULL)) return dr_error(DR_ERR_IO, "libcurl poll failed");
    }
}

long remote_http_result(remote_http *h, int id, const char **body, size_t *len) {
    call *c = &h->calls[id];
    *body = c->resp.p ? c->resp.p : "";
    *len = c->resp.n;
    if (c->status == 0)
        dr_error(DR_ERR_IO, "%s %s%s: %s", c->body ? "POST" : "GET", h->base, c->path ? c->path : "", c->err);
    return c->status;
}

int remote_http_get(remote_http *h, const char *path, char **body, size_t *len) {
    *body = NULL;
    remote_http_reset(h, 0);
    call *c = &h->calls[0];
    if (!(c->path = strdup(path))) return dr_error(DR_ERR_NOMEM, "out of memory");
    int rc = try_start(h, 0), n = 0, id;
    while (!rc && c->state != CALL_ENDED) rc = remote_http_wait(h, -1, &id, &n);
    if (rc) return rc;
    const char *b;
    long st = remote_http_result(h, 0, &b, len);
    if (st == 0) rc = dr_error_code();
    else if (st < 200 || st > 299) {
        char *msg = remote_error_message(b, *len);
        rc = dr_error(DR_ERR_IO, "GET %s%s: HTTP %ld: %s", h->base, path, st, msg ? msg : "");
        free(msg);
    } else if (!(*body = malloc(*len + 1))) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
    } else {
        memcpy(*body, b, *len);
        (*body)[*len] = 0;
    }
    remote_http_reset(h, 0);
    return rc;
}
