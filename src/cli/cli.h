/* The deeprec command: subcommands register themselves; a small declarative option parser. */
#ifndef DEEPREC_CLI_H
#define DEEPREC_CLI_H

#include "deeprec/agent.h"
#include "deeprec/base.h"
#include "deeprec/data.h"

typedef int (*cli_fn)(int argc, char **argv); /* argv[0] is the subcommand name */
void cli_register(const char *name, const char *summary, cli_fn fn);

/* Registers `fn` as "deeprec NAME ..." (NAME may contain a space: "gguf info"). */
#define CLI_COMMAND(id, name, summary, fn) \
    __attribute__((constructor)) static void cli_reg_##id(void) { cli_register(name, summary, fn); }

enum cli_kind { CLI_STR, CLI_INT, CLI_I64, CLI_FLOAT, CLI_FLAG, CLI_STRS };
typedef struct cli_opt {
    const char *name;  /* "--dim" or "-k" */
    int kind;
    void *dst;         /* const char **, int *, int64_t *, double *, int * (flag), cli_strs * */
    const char *help;
} cli_opt;
typedef struct cli_strs { const char *v[64]; int n; } cli_strs;

/* Parses options into their destinations and the other words into words[] (at most max_words;
 * *n_words gets their count, when not NULL). Returns 1 when the command is over, its exit code
 * in *exit_code: 0 after --help (usage printed), 2 after a usage error (printed); else 0. One
 * rule for every command, so that --help and a bad option end them all alike. */
int cli_parse_words(const char *usage, int argc, char **argv, const cli_opt *opts, int nopts, const char **words,
                    int max_words, int *n_words, int *exit_code);
/* cli_parse_words for a command that takes no words. */
int cli_parse_opts(const char *usage, int argc, char **argv, const cli_opt *opts, int nopts, int *exit_code);
#define CLI_NOPTS(opts) ((int)(sizeof(opts) / sizeof *(opts)))
/* The accepted range of a numeric option (src/cli/ranges.c), shared by every command. */
typedef struct cli_range {
    const char *name;
    double lo, hi;
    unsigned char lo_open, hi_open; /* 1: the bound itself is excluded */
} cli_range;
const cli_range *cli_range_find(const char *name);
void cli_range_format(const cli_range *r, char *buf, size_t n); /* "[0, 100]", "(0, 1]" */
/* 0 when v (as typed: text) is in name's range; else prints the error and returns -1. */
int cli_range_check(const char *name, double v, const char *text);
/* Claims an output path before the work (deeprec/base.h dr_output_claim: lock, out !=
 * inputs, regular target, writable folder). NULL out: nothing to claim. Returns 0, or
 * the exit code 1 with the error printed. */
int cli_claim_output(const char *out, const char *const *inputs, int n_inputs);
/* s for printing on stdout: unchanged into a file or pipe; on a terminal, control
 * characters escaped as \xNN (newlines and tabs kept when keep_newlines). The result
 * lives until 8 more calls. */
const char *cli_text(const char *s, int keep_newlines);
/* "on" -> 1, "off" -> 0, else -1 (for switches that default to on, like --constrain). */
int cli_on_off(const char *s);
/* The weight type of a written model, by --type name: f32 (also for NULL), f16, bf16,
 * q8_0. Returns 0, or prints a usage error naming `cmd` and returns 2. */
int cli_weight_type(const char *cmd, const char *name, uint32_t *type);
/* --kv-type f32|f16 (NULL: f32) into *kv (an llm_kv_type). Returns 0, or prints a usage
 * error naming `cmd` and returns 2. */
int cli_kv_type(const char *cmd, const char *name, int *kv);
#define CLI_KV_TYPE_OPT(var) {"--kv-type", CLI_STR, &(var), "KV cache type: f32 (default) or f16 (half the memory, ~5e-4 off)"}
/* --json output: j on stdout as one text (flags: jansson's; CLI_JSON is the house form,
 * compact with 6 significant digits), then freed. Returns 0, or DR_ERR_NOMEM with the
 * error set when j is NULL or cannot be serialised. */
#define CLI_JSON (JSON_COMPACT | JSON_REAL_PRECISION(6))
/* The two output switches of the long-running commands (a progress display; one JSON object). */
#define CLI_QUIET_JSON_OPTS(quiet, json)                                                                               \
    {"--quiet", CLI_FLAG, &(quiet), "no progress output"}, {"--json", CLI_FLAG, &(json), "one JSON object on stdout"}
struct json_t;
int cli_print_json(struct json_t *j, size_t flags);
/* The agent's rollout flags, declared once for every command that rolls the agent out (rl,
 * eval, recommend, serve) into an agent_rollout_opts: cli_rollout_init sets the defaults
 * (agent_rollout_opts_default), the table gets CLI_ROLLOUT_FLAGS (and, where the model writes
 * turns, CLI_ROLLOUT_TURN_FLAG), and cli_rollout_finish applies --constrain and checks the
 * options the agent's way (agent_rollout_opts_check). */
typedef struct cli_rollout {
    agent_rollout_opts ro;
    const char *constrain; /* "on" | "order" | "off": answer titles, one-line preferences, tag grammar: one switch */
} cli_rollout;
/* --constrain's value: "off" 0, "on" 1, "order" 2 (on, and each call's order kept), else -1. */
int cli_constrain_mode(const char *s);
void cli_rollout_init(cli_rollout *r);
#define CLI_ROLLOUT_FLAGS(r)                                                                                          \
    {"--chat", CLI_FLAG, &(r).ro.chat, "ChatML prompts (default: plain base-model prompts)"},                          \
    {"--constrain", CLI_STR, &(r).constrain,                                                                           \
     "on | order | off: answer lines only from the episode's retrieved titles, no repeats; one-line preferences; " \
     "no protocol tag where it is invalid; a turn out of budget opens the answer; order: a line continues one " \
     "call's list in its order (on)"},                                                                             \
    {"--tool-k", CLI_INT, &(r).ro.tool_k, "items per tool call (20)"},                                                 \
    {"--max-hist", CLI_INT, &(r).ro.max_hist, "history items in the prompt (20)"},                                     \
    {"--max-calls", CLI_INT, &(r).ro.max_calls, "tool calls allowed (8; rerank: 1)"}
#define CLI_ROLLOUT_TURN_FLAG(r) {"--max-tokens", CLI_INT, &(r).ro.max_turn_tokens, "generated tokens per turn (1024)"}
/* 0, or the usage exit code 2 with the message printed. */
int cli_rollout_finish(cli_rollout *r);
/* Report the library's last error on stderr and return the exit code 1. */
int cli_fail(void);
/* Print a usage error and return 2. */
int cli_usage_error(const char *fmt, ...) DR_PRINTF(1, 2);

/* A dataset and what is used with it; NULL paths are not loaded (then NULL here). The
 * TRM is checked against the dataset (trm_check_dataset). Returns the library's error
 * (reported with cli_fail); cli_inputs_free frees what was loaded either way. */
typedef struct cli_inputs {
    dr_dataset data;
    struct trm_model *trm;
    struct llm_model *llm;
    struct tokenizer *tok;
} cli_inputs;
int cli_inputs_load(cli_inputs *in, const char *data, const char *trm, const char *llm, const char *tok);
void cli_inputs_free(cli_inputs *in);

#endif
