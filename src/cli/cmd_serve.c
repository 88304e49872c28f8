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

/* The limits that serve_opts_default leaves to the user: 2 (printed) when one is out of range. */
static int check_limits(const serve_opts *so, int64_t max_body) {
    if (so->port < 0 || so->port > 65535) return cli_usage_error("--port must be in 0..65535");
    if (so->slots < 1 || so->slots > 64) return cli_usage_error("--slots must be in 1..64");
    if (max_body < 1 || so->max_queue < 0 || so->max_sessions < 1 || so->max_tokens < 1 || !(so->timeout_s > 0) ||
        so->n_ctx < 0)
        return cli_usage_error("--max-body, --max-sessions, --max-tokens and --timeout must be positive, "
                               "--max-queue and --ctx >= 0");
    return 0;
}

/* SIGINT and SIGTERM are waited for (sigwait), so they are blocked before the server's threads
 * start and inherit the mask; a client that hangs up must not kill the process (SIGPIPE). */
static void block_stop_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int cmd_serve(int argc, char **argv) {
    serve_opts so;
    serve_opts_default(&so);
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL, *tok_path = NULL, *batch = "on",
               *key_env = "DEEPREC_API_KEY", *kv_name = NULL;
    cli_llm_url url = CLI_LLM_URL_DEFAULT;
    cli_rollout ro; /* /v1/recommend's agent */
    cli_rollout_init(&ro);
    int64_t max_body = (int64_t)so.max_body;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data_path, "dataset (.gguf)"},
        {"--trm", CLI_STR, &trm_path, "preference-aware TRM (.gguf)"},
        {"--llm", CLI_STR, &llm_path, "policy model (.gguf, qwen2/llama)"},
        {"--tokenizer", CLI_STR, &tok_path, "tokenizer when the model has none (GGUF or tokenizer.json)"},
        {"--host", CLI_STR, &so.host, "IPv4 address to listen on (127.0.0.1; 0.0.0.0 = every interface)"},
        {"--port", CLI_INT, &so.port, "port (8080; 0 = any free port, printed at start)"},
        {"--api-key", CLI_STR, &so.api_key, "require \"Authorization: Bearer KEY\" on /v1/... and /metrics"},
        {"--api-key-env", CLI_STR, &key_env, "environment variable read for the key when --api-key is absent (DEEPREC_API_KEY)"},
        {"--model-name", CLI_STR, &so.model_name, "model id shown by /v1/models (deeprec)"},
        {"--max-body", CLI_I64, &max_body, "request body limit in bytes (1048576)"},
        {"--timeout", CLI_FLOAT, &so.timeout_s, "seconds per request, queue wait included (300)"},
        {"--max-queue", CLI_INT, &so.max_queue, "requests waiting for the engine (64)"},
        {"--max-sessions", CLI_INT, &so.max_sessions, "open client connections (32)"},
        {"--max-tokens", CLI_INT, &so.max_tokens, "max_tokens one completion may ask for (2048)"},
        {"--slots", CLI_INT, &so.slots, "sequences decoded together (8)"},
        {"--batch", CLI_STR, &batch, "on | off: concurrent requests share decode steps (on)"},
        {"--rec-engines", CLI_INT, &so.rec_engines,
         "recommendation engines, each on its own thread with its share of the threads and slots "
         "(0 = one per thread for a model of at most 64 MiB, else 1)"},
        CLI_ROLLOUT_FLAGS(ro),
        {"--ctx", CLI_INT, &so.n_ctx, "context per sequence in tokens (0 = min(model, 4096))"},
        CLI_KV_TYPE_OPT(kv_name),
        CLI_LLM_URL_OPTS(url, "--llm-api-key-env"),
    };
    int r;
    if (cli_parse_opts("deeprec serve --data DATA.gguf --trm TRM.gguf --llm M.gguf [--host 127.0.0.1] [--port 8080]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data_path || !trm_path || !(llm_path || url.url))
        return cli_usage_error("serve needs --data, --trm and --llm (or --llm-url)");
    int on = cli_on_off(batch), con, kv;
    if (on < 0) return cli_usage_error("--batch must be on or off");
    if (cli_kv_type("serve", kv_name, &kv)) return 2;
    if ((r = cli_llm_url_check(&url, llm_path != NULL, ro.constrain, 0, &con))) return r;
    if (url.url) ro.constrain = "off";
    if (cli_rollout_finish(&ro)) return 2;
    if ((r = check_limits(&so, max_body))) return r;
    if (!so.api_key && key_env && getenv(key_env)) so.api_key = getenv(key_env);
    int slots = so.slots; /* as asked: the listening line shows it */
    so.max_body = (size_t)max_body;
    if (url.url) so.slots = url.parallel; /* with a remote LLM a slot is a request in flight */
    so.batching = on;
    so.rollout = ro.ro;
    cli_inputs in;
    serve_server *srv = NULL;
    int rc;
    if ((rc = cli_inputs_load(&in, data_path, trm_path, llm_path, tok_path))) goto done;
    if (in.llm) llm_model_set_kv_type(in.llm, (llm_kv_type)kv);
    sigset_t set;
    block_stop_signals(&set);
    serve_remote_opts remote = cli_llm_url_remote(&url);
    serve_inputs sin = {&in.data, in.trm, in.llm, in.tok, url.url ? &remote : NULL};
    if ((rc = serve_start(&srv, &sin, &so))) goto done;
    printf("deeprec serve: listening on http://%s:%d (%d users, %d items; %s; %d slots, batching %s, %d recommendation "
           "engine%s%s)\n", so.host, serve_port(srv), (int)in.data.n_users, (int)in.data.n_items,
           llm_path ? llm_path : url.url, slots, on ? "on" : "off", serve_rec_engines(srv),
           serve_rec_engines(srv) > 1 ? "s" : "", so.api_key && so.api_key[0] ? ", API key required" : "");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "deeprec serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_stop(srv);
done:
    cli_inputs_free(&in);
    return rc ? cli_fail() : 0;
}
CLI_COMMAND(serve, "serve", "HTTP server: /v1/recommend with traces, OpenAI-compatible completions, a trace page",
            cmd_serve)
