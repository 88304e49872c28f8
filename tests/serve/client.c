#include "client.h"
#include "harness.h"
#include "common/tiny_llm.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void sv_fixture(const char *dir) {
    if (dr_file_exists(dr_test_path(dir, "llm.gguf"))) return;
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b != NULL);
    dr_rng r;
    dr_rng_seed(&r, 7);
    for (int u = 0; u < 30; u++) {
        char us[16];
        snprintf(us, sizeof us, "u%d", u);
        int len = 6 + (int)dr_rng_below(&r, 6), base = (int)dr_rng_below(&r, 12);
        for (int i = 0; i < len; i++) {
            char is[16];
            snprintf(is, sizeof is, "m%d", (base + i + (int)dr_rng_below(&r, 2)) % 12);
            CHECK_OK(dr_data_builder_add(b, us, strlen(us), is, strlen(is), i, 0));
        }
    }
    for (int it = 0; it < 12; it++) {
        char is[16];
        snprintf(is, sizeof is, "m%d", it);
        CHECK_OK(dr_data_builder_item_text(b, is, strlen(is), tx_movie_titles[it], -1, tx_movie_cats[it], -1));
    }
    dr_data_filter f = {0};
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    CHECK_OK(dr_data_save(&d, dr_test_path(dir, "data.gguf")));

    trm_config tc;
    trm_config_default(&tc);
    tc.model = TRM_PREF;
    tc.n_items = d.n_items;
    tc.dim = 16;
    tc.layers = 1;
    tc.heads = 2;
    tc.max_len = 20;
    tc.text_buckets = 1024;
    trm_model *tm;
    CHECK_OK(trm_model_new(&tm, &tc, &d, 3));
    CHECK_OK(trm_save(tm, dr_test_path(dir, "trm.gguf")));
    trm_model_free(tm);

    static char corpus[32768];
    tx_movie_corpus(corpus, sizeof corpus);
    tokenizer *tok;
    llm_model *m;
    tx_tiny_llm(corpus, 600, 2048, 0.2f, &m, &tok);
    CHECK_OK(llm_model_save(m, tok, dr_test_path(dir, "llm.gguf")));
    llm_model_free(m);
    tok_free(tok);
    dr_data_free(&d);
}

void sv_start(sv_server *s, const char *dir, const char *extra) {
    const char *bin = getenv("DEEPREC_BIN");
    if (!bin || !dr_file_exists(bin)) SKIP("DEEPREC_BIN not set (make test sets it)");
    sv_fixture(dir);
    static int n_started;
    snprintf(s->log, sizeof s->log, "%s/serve%d.log", dir, n_started++);
    char cmd[4096];
    char llm[1100] = ""; /* none when the LLM is remote */
    if (!extra || !strstr(extra, "--llm-url")) snprintf(llm, sizeof llm, "--llm %s/llm.gguf", dir);
    snprintf(cmd, sizeof cmd, "exec %s serve --data %s/data.gguf --trm %s/trm.gguf %s --port 0 %s 2>%s", bin, dir, dir,
             llm, extra ? extra : "", s->log);
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test (longjmp) must not leave a server behind */
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    s->pid = pid;
    char line[1024];
    size_t n = 0;
    while (n + 1 < sizeof line) { /* the first line names the port */
        ssize_t k = read(fd[0], line + n, 1);
        if (k <= 0 || line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    close(fd[0]);
    const char *p = strstr(line, "http://127.0.0.1:");
    CHECK_MSG(p != NULL, "serve did not start: '%s' (log %s)", line, s->log);
    s->port = atoi(p + strlen("http://127.0.0.1:"));
    CHECK(s->port > 0);
}

int sv_alive(const sv_server *s) { return waitpid(s->pid, NULL, WNOHANG) == 0; }

int sv_stop(sv_server *s) {
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_MSG(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect to port %d: %s", port, strerror(errno));
    return fd;
}

void sv_request(int port, const char *method, const char *path, const char *extra_headers, const char *body,
                size_t body_len, sv_resp *r) {
    memset(r, 0, sizeof *r);
    int fd = connect_port(port);
    char head[2048];
    int hn = snprintf(head, sizeof head, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s", method, path,
                      extra_headers ? extra_headers : "");
    if (body) hn += snprintf(head + hn, sizeof head - (size_t)hn, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
    CHECK(write(fd, head, (size_t)hn) == hn);
    size_t off = 0;
    while (body && off < body_len) {
        ssize_t k = write(fd, body + off, body_len - off);
        if (k <= 0) break; /* the server may answer (413) and close before the whole body is sent */
        off += (size_t)k;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t k = read(fd, buf + n, cap - n - 1);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    CHECK_MSG(sep != NULL, "no HTTP response for %s %s (%zu bytes)", method, path, n);
    *sep = 0;
    CHECK(sscanf(buf, "HTTP/%*s %d", &r->status) == 1);
    r->headers = strdup(buf);
    r->len = n - (size_t)(sep + 4 - buf);
    r->body = malloc(r->len + 1);
    memcpy(r->body, sep + 4, r->len);
    r->body[r->len] = 0;
    free(buf);
}

void sv_resp_free(sv_resp *r) {
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

json_t *sv_post_json(int port, const char *path, const char *json, int *status) {
    sv_resp r;
    sv_request(port, "POST", path, NULL, json, strlen(json), &r);
    *status = r.status;
    json_t *j = json_loads(r.body, 0, NULL);
    sv_resp_free(&r);
    return j;
}
