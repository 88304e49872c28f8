/* The remote-LLM options of eval, recommend and serve (--llm-url and its companions), declared
 * once so the three commands spell and check them alike. */
#ifndef DEEPREC_CLI_LLM_URL_H
#define DEEPREC_CLI_LLM_URL_H

#include "cli.h"
#include "deeprec/agent.h"
#include "deeprec/serve.h"

typedef struct cli_llm_url {
    const char *url, *model, *key_env;
    int parallel;
} cli_llm_url;
#define CLI_LLM_URL_DEFAULT {NULL, NULL, NULL, 4}
/* The four options; key_flag names the API-key option ("--api-key-env", or on serve, whose
 * --api-key-env is its own key, "--llm-api-key-env"). */
#define CLI_LLM_URL_OPTS(u, key_flag)                                                                              \
    {"--llm-url", CLI_STR, &(u).url, "OpenAI-compatible server as the agent's model: http://HOST:PORT/v1 (instead of --llm)"}, \
    {"--llm-model", CLI_STR, &(u).model, "model name sent to --llm-url (default: the first the server lists)"},     \
    {key_flag, CLI_STR, &(u).key_env, "environment variable holding the --llm-url API key (Authorization: Bearer)"}, \
    {"--llm-parallel", CLI_INT, &(u).parallel, "requests in flight to --llm-url (4)"}

/* The options' checks (usage errors: 2), given whether --llm was given too and the
 * --constrain value (NULL = not given). *constrained gets the switch: off with a URL (a server
 * gives no logits; a note says so on stderr unless quiet), else the --constrain value. */
int cli_llm_url_check(const cli_llm_url *u, int have_llm, const char *constrain, int quiet, int *constrained);
/* The server's address, model, key (read from the environment) and parallelism as the serve
 * library takes them; the sampling fields are left zero for the caller. */
serve_remote_opts cli_llm_url_remote(const cli_llm_url *u);
/* The remote model (serve_remote_model_new); 0 or the exit code 1 with the error printed. */
int cli_llm_url_model(const cli_llm_url *u, double temp, double top_p, uint64_t seed, int max_tokens, agent_model *out);

#endif
