#include "fake_llm.h"
#include "harness.h"
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

typedef struct upload {
    char *p;
    size_t n;
} upload;

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *data_size, void **con_cls) {
    fake_llm *f = cls;
    if (!strcmp(method, "GET")) {
        pthread_mutex_lock(&f->mu);
        f->n_gets++;
        pthread_mutex_unlock(&f->mu);
        return reply(c, 200, "{\"object\": \"list\", \"data\": [{\"id\": \"fake\", \"object\": \"model\"}]}");
    }
    upload *u = *con_cls;
    if (!u) { /* the first call only announces the request */
        *con_cls = calloc(1, sizeof *u);
        return MHD_YES;
    }
    if (*data_size) {
        u->p = realloc(u->p, u->n + *data_size + 1);
        memcpy(u->p + u->n, data, *data_size);
        u->n += *data_size;
        u->p[u->n] = 0;
        *data_size = 0;
        return MHD_YES;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&f->mu);
    int i = f->n_posts++;
    if (i < FAKE_MAX_BODIES) f->bodies[i] = u->p ? strdup(u->p) : strdup("");
    snprintf(f->auth, sizeof f->auth, "%s", auth ? auth : "");
    const fake_reply *r = &f->script[i < f->n_script ? i : f->n_script - 1];
    pthread_mutex_unlock(&f->mu);
    return reply(c, r->status, r->body);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    upload *u = *con_cls;
    if (u) free(u->p);
    free(u);
    *con_cls = NULL;
}

void fake_llm_start(fake_llm *f, const fake_reply *script, int n) {
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->script = script;
    f->n_script = n;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL, handle, f,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a, MHD_OPTION_NOTIFY_COMPLETED, completed, f,
                            MHD_OPTION_END);
    CHECK_MSG(f->d != NULL, "the fake LLM server did not start");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    CHECK(info != NULL && info->port > 0);
    f->port = info->port;
}

void fake_llm_stop(fake_llm *f) {
    if (f->d) MHD_stop_daemon(f->d);
    for (int i = 0; i < FAKE_MAX_BODIES; i++) free(f->bodies[i]);
    pthread_mutex_destroy(&f->mu);
    memset(f, 0, sizeof *f);
}

const char *fake_llm_url(const fake_llm *f) {
    static char buf[64];
    snprintf(buf, sizeof buf, "http://127.0.0.1:%d/v1", f->port);
    return buf;
}
