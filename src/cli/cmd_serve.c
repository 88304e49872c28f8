/* deeprec serve: the agent and its LLM behind HTTP until SIGINT / SIGTERM. */
#include "cli.h"
#include "llm_url.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include "deeprec/serve.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_serve(int argc, char **argv) {
    serve_opts so;
    serve_opts_default(&so);
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL, *tok_path = NULL, *batch = "on",
               *key_env = "DEEPREC_API_KEY";
    cli_llm_url url = CLI_LLM_URL_DEFAULT;
    int port = so.port, max_queue = so.max_queue, max_sessions = so.max_sessions, max_tokens = so.max_tokens,
        slots = so.slots, ctx = 0;
    cli_rollout ro; /* /v1/recommend's agent */
    cli_rollout_init(&ro);
    int64_t max_body = (int64_t)so.max_body;
    double timeout = so.timeout_s;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data_path, "dataset (.gguf)"},
        {"--trm", CLI_STR, &trm_path, "preference-aware TRM (.gguf)"},
        {"--llm", CLI_STR, &llm_path, "policy model (.gguf, qwen2/llama)"},
        {"--tokenizer", CLI_STR, &tok_path, "tokenizer when the model has none (GGUF or tokenizer.json)"},
        {"--host", CLI_STR, &so.host, "IPv4 address to listen on (127.0.0.1; 0.0.0.0 = every interface)"},
        {"--port", CLI_INT, &port, "port (8080; 0 = any free port, printed at start)"},
        {"--api-key", CLI_STR, &so.api_key, "require \"Authorization: Bearer KEY\" on /v1/... and /metrics"},
        {"--api-key-env", CLI_STR, &key_env, "environment variable read for the key when --api-key is absent (DEEPREC_API_KEY)"},
        {"--model-name", CLI_STR, &so.model_name, "model id shown by /v1/models (deeprec)"},
        {"--max-body", CLI_I64, &max_body, "request body limit in bytes (1048576)"},
        {"--timeout", CLI_FLOAT, &timeout, "seconds per request, queue wait included (300)"},
        {"--max-queue", CLI_INT, &max_queue, "requests waiting for the engine (64)"},
        {"--max-sessions", CLI_INT, &max_sessions, "open client connections (32)"},
        {"--max-tokens", CLI_INT, &max_tokens, "max_tokens one completion may ask for (2048)"},
        {"--slots", CLI_INT, &slots, "sequences decoded together (8)"},
        {"--batch", CLI_STR, &batch, "on | off: concurrent requests share decode steps (on)"},
        CLI_ROLLOUT_FLAGS(ro),
        {"--ctx", CLI_INT, &ctx, "context per sequence in tokens (0 = min(model, 4096))"},
        CLI_LLM_URL_OPTS(url, "--llm-api-key-env"),
    };
    int np = 0;
    int r = cli_parse("deeprec serve --data DATA.gguf --trm TRM.gguf --llm M.gguf [--host 127.0.0.1] [--port 8080]",
                      argc, argv, opts, (int)(sizeof opts / sizeof *opts), NULL, 0, &np);
    if (r) return r > 0 ? 0 : 2;
    if (!data_path || !trm_path || !(llm_path || url.url))
        return cli_usage_error("serve needs --data, --trm and --llm (or --llm-url)");
    int on = cli_on_off(batch), con;
    if (on < 0) return cli_usage_error("--batch must be on or off");
    if ((r = cli_llm_url_check(&url, llm_path != NULL, ro.constrain, 0, &con))) return r;
    if (url.url) ro.constrain = "off";
    if (cli_rollout_finish(&ro)) return 2;
    if (port < 0 || port > 65535) return cli_usage_error("--port must be in 0..65535");
    if (slots < 1 || slots > 64) return cli_usage_error("--slots must be in 1..64");
    if (max_body < 1 || max_queue < 0 || max_sessions < 1 || max_tokens < 1 || !(timeout > 0) || ctx < 0)
        return cli_usage_error("--max-body, --max-sessions, --max-tokens and --timeout must be positive, "
                               "--max-queue and --ctx >= 0");
    if (!so.api_key && key_env && getenv(key_env)) so.api_key = getenv(key_env);
    so.port = port;
    so.max_body = (size_t)max_body;
    so.timeout_s = timeout;
    so.max_queue = max_queue;
    so.max_sessions = max_sessions;
    so.max_tokens = max_tokens;
    so.slots = url.url ? url.parallel : slots; /* with a remote LLM a slot is a request in flight */
    so.batching = on;
    so.n_ctx = ctx;
    so.rollout = ro.ro;

    dr_dataset d;
    memset(&d, 0, sizeof d);
    trm_model *tm = NULL;
    llm_model *lm = NULL;
    tokenizer *tok = NULL;
    serve_server *srv = NULL;
    int rc;
    if ((rc = dr_data_load(&d, data_path)) || (rc = trm_load(&tm, trm_path)) ||
        (llm_path && (rc = llm_model_load(&lm, llm_path))))
        goto done;
    if (tok_path && (rc = tok_load_path(&tok, tok_path))) goto done;
    /* the signals are waited for here; block them before the server's threads inherit the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    serve_remote_opts remote = {0};
    remote.url = url.url;
    remote.model = url.model;
    remote.api_key = url.key_env ? getenv(url.key_env) : NULL;
    remote.parallel = url.parallel;
    serve_inputs in = {&d, tm, lm, tok, url.url ? &remote : NULL};
    if ((rc = serve_start(&srv, &in, &so))) goto done;
    printf("deeprec serve: listening on http://%s:%d (%d users, %d items; %s; %d slots, batching %s%s)\n", so.host,
           serve_port(srv), (int)d.n_users, (int)d.n_items, llm_path ? llm_path : url.url, slots, on ? "on" : "off",
           so.api_key && so.api_key[0] ? ", API key required" : "");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "deeprec serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_stop(srv);
done:
    tok_free(tok);
    llm_model_free(lm);
    trm_model_free(tm);
    dr_data_free(&d);
    return rc ? cli_fail() : 0;
}
CLI_COMMAND(serve, "serve", "HTTP server: /v1/recommend with traces, OpenAI-compatible completions, a trace page",
            cmd_serve)
