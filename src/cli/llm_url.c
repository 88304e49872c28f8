/* --llm-url and its companions: checked here, the model built by the serve library. */
#include "llm_url.h"
#include <stdio.h>
#include <stdlib.h>

int cli_llm_url_check(const cli_llm_url *u, int have_llm, const char *constrain, int quiet, int *constrained) {
    int on = cli_constrain_mode(constrain ? constrain : "on");
    if (on < 0) return cli_usage_error("--constrain must be on, order or off");
    *constrained = on > 0;
    if (!u->url) {
        if (u->model || u->key_env) return cli_usage_error("--llm-model and the API key variable go with --llm-url");
        return 0;
    }
    if (have_llm) return cli_usage_error("give --llm (a local model) or --llm-url (a server), not both");
    if (serve_remote_url_ok(u->url)) return cli_usage_error("--llm-url: %s", dr_error_message());
    if (u->key_env && !getenv(u->key_env))
        return cli_usage_error("the API key variable %s is not set in the environment", u->key_env);
    if (constrain && on)
        return cli_usage_error("--constrain on|order needs the model's logits, which a server (--llm-url) does not give");
    if (!constrain && !quiet)
        fprintf(stderr, "deeprec: note: with --llm-url constrained answers are off (a server gives no logits)\n");
    *constrained = 0;
    return 0;
}

serve_remote_opts cli_llm_url_remote(const cli_llm_url *u) {
    serve_remote_opts o = {0};
    o.url = u->url;
    o.model = u->model;
    o.api_key = u->key_env ? getenv(u->key_env) : NULL;
    o.parallel = u->parallel;
    return o;
}

int cli_llm_url_model(const cli_llm_url *u, double temp, double top_p, uint64_t seed, int max_tokens, agent_model *out) {
    serve_remote_opts o = cli_llm_url_remote(u);
    o.temperature = (float)temp;
    o.top_p = (float)top_p;
    o.seed = seed;
    o.max_tokens = max_tokens;
    return serve_remote_model_new(out, &o) ? cli_fail() : 0;
}
