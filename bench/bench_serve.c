/* Load on `deeprec serve` over loopback: the server runs in this process (serve_start on a
 * free port), N client threads send a fixed number of requests each, one at a time, over
 * plain HTTP/1.0 sockets. Reports requests/s, latency p50/p95/p99, and CPU time beside wall
 * time, for /v1/recommend (trm and deeprec modes) and /v1/completions, with the batched
 * decode on and off, at 1 and N clients. The machine's sgemm GFLOP/s is printed first.
 *
 *   build/bench/bench_serve --data D.gguf --trm T.gguf --llm M.gguf [--clients 8] [--requests 32]
 *                           [--max-tokens 32] [--slots 8] [--rec-engines 0] [--chat] [--only trm,deeprec,completions] */
#include "bench_common.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include "deeprec/serve.h"
#include "deeprec/trm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct load {
    int port, n_req, client, n_users;
    const char *path, *mode;
    int max_tokens;
    double *lat;   /* n_req seconds */
    int failed;
} load;

/* One POST; returns the HTTP status (0 when the connection failed). */
static int post(int port, const char *path, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return 0;
    }
    char head[512];
    int n = snprintf(head, sizeof head, "POST %s HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, strlen(body));
    if (write(fd, head, (size_t)n) != n || write(fd, body, strlen(body)) != (ssize_t)strlen(body)) {
        close(fd);
        return 0;
    }
    char buf[16384];
    int status = 0, first = 1;
    ssize_t k;
    while ((k = read(fd, buf, sizeof buf - 1)) > 0) {
        if (first) {
            buf[k] = 0;
            sscanf(buf, "HTTP/%*s %d", &status);
            first = 0;
        }
    }
    close(fd);
    return status;
}

static void *client(void *arg) {
    load *l = arg;
    char body[512];
    for (int i = 0; i < l->n_req; i++) {
        int u = (l->client * l->n_req + i) % l->n_users;
        if (l->mode)
            snprintf(body, sizeof body, "{\"user\": \"#%d\", \"mode\": \"%s\", \"temperature\": 0}", u, l->mode);
        else
            snprintf(body, sizeof body,
                     "{\"prompt\": \"A user who liked Heat, Casino and Fargo will also like\", \"max_tokens\": %d, "
                     "\"temperature\": 0, \"seed\": %d}", l->max_tokens, u);
        double t0 = dr_now();
        int st = post(l->port, l->path, body);
        l->lat[i] = dr_now() - t0;
        if (st != 200) l->failed++;
    }
    return NULL;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Returns requests/s. */
static double run(int port, const char *label, const char *path, const char *mode, int clients, int total,
                  int max_tokens, int n_users) {
    pthread_t th[64];
    load l[64];
    int per = (total + clients - 1) / clients;
    double *lat = calloc((size_t)per * clients, sizeof(double));
    double t0 = dr_now(), c0 = cpu_s();
    for (int c = 0; c < clients; c++) {
        l[c] = (load){port, per, c, n_users, path, mode, max_tokens, lat + (size_t)c * per, 0};
        pthread_create(&th[c], NULL, client, &l[c]);
    }
    int failed = 0;
    for (int c = 0; c < clients; c++) {
        pthread_join(th[c], NULL);
        failed += l[c].failed;
    }
    double wall = dr_now() - t0, cpu = cpu_s() - c0;
    int n = per * clients;
    qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
    double rps = n / wall;
    printf("%-22s %2d clients %4d req  %7.2f req/s  p50 %7.1f ms  p95 %7.1f ms  p99 %7.1f ms  wall %6.2f s  cpu %6.2f s%s\n",
           label, clients, n, rps, 1e3 * lat[n / 2], 1e3 * lat[(int)(0.95 * (n - 1))], 1e3 * lat[(int)(0.99 * (n - 1))],
           wall, cpu, failed ? "  FAILED REQUESTS" : "");
    fflush(stdout);
    free(lat);
    return failed ? 0 : rps;
}

int main(int argc, char **argv) {
    dr_threads_prefer_passive(argv);
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL, *only = "trm,deeprec,completions";
    int clients = 8, requests = 32, max_tokens = 32, slots = 8, chat = 0, rec_engines = 0;
    const char *usage = "bench_serve --data D.gguf --trm T.gguf --llm M.gguf [--clients 8] [--requests 32] "
                        "[--max-tokens 32] [--slots 8] [--rec-engines 0] [--only trm,deeprec,completions] [--chat]";
    const bench_arg args[] = {{"--data", BENCH_STR, &data_path},       {"--trm", BENCH_STR, &trm_path},
                              {"--llm", BENCH_STR, &llm_path},         {"--clients", BENCH_INT, &clients},
                              {"--requests", BENCH_INT, &requests},    {"--max-tokens", BENCH_INT, &max_tokens},
                              {"--slots", BENCH_INT, &slots},          {"--only", BENCH_STR, &only},
                              {"--chat", BENCH_SWITCH, &chat},         {"--rec-engines", BENCH_INT, &rec_engines}};
    if (bench_parse_args(argc, argv, args, (int)(sizeof args / sizeof *args), usage)) return 2;
    if (!data_path || !trm_path || !llm_path || clients < 1 || clients > 64 || requests < 1) {
        fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    dr_threads_init();
    dr_dataset d;
    memset(&d, 0, sizeof d);
    trm_model *tm = NULL;
    llm_model *lm = NULL;
    if (dr_data_load(&d, data_path) || trm_load(&tm, trm_path) || llm_model_load(&lm, llm_path)) {
        fprintf(stderr, "bench_serve: %s\n", dr_error_message());
        return 1;
    }
    printf("machine: sgemm %.1f GFLOP/s (512^3, %d threads); model %s (dim %d, %d layers); %d users\n",
           bench_sgemm_gflops(512, 512, 512), dr_threads(), llm_path, lm->cfg.dim, lm->cfg.n_layers, (int)d.n_users);
    double ratio[2] = {0, 0};
    for (int batching = 1; batching >= 0; batching--) {
        serve_opts o;
        serve_opts_default(&o);
        o.port = 0;
        o.slots = slots;
        o.batching = batching;
        o.rec_engines = rec_engines;
        o.rollout.chat = chat;
        o.max_queue = 1024;
        o.max_sessions = 256;
        serve_inputs in = {&d, tm, lm, NULL, NULL};
        serve_server *srv;
        if (serve_start(&srv, &in, &o)) {
            fprintf(stderr, "bench_serve: %s\n", dr_error_message());
            return 1;
        }
        int port = serve_port(srv);
        printf("-- batched decode %s (%d slots, %d recommendation engine%s)\n", batching ? "on" : "off", slots,
               serve_rec_engines(srv), serve_rec_engines(srv) > 1 ? "s" : "");
        /* warm-up (threads, pages, caches), not counted */
        post(port, "/v1/recommend", "{\"user\": \"#0\", \"mode\": \"trm\"}");
        if (strstr(only, "deeprec")) post(port, "/v1/recommend", "{\"user\": \"#0\", \"temperature\": 0}");
        post(port, "/v1/completions", "{\"prompt\": \"warm\", \"max_tokens\": 4}");
        int cs[2] = {1, clients};
        double rps[3][2];
        for (int k = 0; k < 2; k++) {
            /* one client sends the same requests (the same users) one after another: episodes
             * differ in length from user to user, so other users would be other work */
            int total = requests;
            rps[0][k] = rps[1][k] = rps[2][k] = 0;
            if (strstr(only, "trm"))
                rps[0][k] = run(port, "recommend mode=trm", "/v1/recommend", "trm", cs[k], total, 0, (int)d.n_users);
            if (strstr(only, "deeprec"))
                rps[1][k] = run(port, "recommend mode=deeprec", "/v1/recommend", "deeprec", cs[k], total, 0, (int)d.n_users);
            if (strstr(only, "completions"))
                rps[2][k] = run(port, "completions", "/v1/completions", NULL, cs[k], total, max_tokens, (int)d.n_users);
        }
        printf("   %d clients vs 1: trm %.2fx, deeprec %.2fx, completions %.2fx\n", clients,
               rps[0][0] > 0 ? rps[0][1] / rps[0][0] : 0, rps[1][0] > 0 ? rps[1][1] / rps[1][0] : 0,
               rps[2][0] > 0 ? rps[2][1] / rps[2][0] : 0);
        ratio[batching] = rps[1][0] > 0 ? rps[1][1] / rps[1][0] : 0;
        serve_stop(srv);
    }
    if (strstr(only, "deeprec"))
        printf("goal: deeprec-mode throughput with %d clients >= 4x one client (batched): %.2fx %s\n", clients, ratio[1],
               ratio[1] >= 4 ? "(met)" : "(NOT met)");
    llm_model_free(lm);
    trm_model_free(tm);
    dr_data_free(&d);
    return 0;
}
