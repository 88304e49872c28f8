/* Declarative option parsing shared by every subcommand. */
#include "cli.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One line per option: its name, the kind of value (N integer, X number, S text), the
 * help and, for numbers, the accepted range ({...}; tests/cli reads it). */
static void print_usage(const char *usage, const cli_opt *opts, int nopts) {
    printf("usage: %s\n", usage);
    if (nopts) printf("options:\n");
    for (int i = 0; i < nopts; i++) {
        const cli_opt *o = &opts[i];
        const char *kind = o->kind == CLI_INT || o->kind == CLI_I64 ? " N" : o->kind == CLI_FLOAT ? " X"
                         : o->kind == CLI_FLAG ? "" : " S";
        char name[64], range[96] = "";
        snprintf(name, sizeof name, "%s%s", o->name, kind);
        const cli_range *r = cli_range_find(o->name);
        if (r && (o->kind == CLI_INT || o->kind == CLI_I64 || o->kind == CLI_FLOAT)) {
            char rb[80];
            cli_range_format(r, rb, sizeof rb);
            snprintf(range, sizeof range, " {%s}", rb);
        }
        printf("  %-22s %s%s\n", name, o->help ? o->help : "", range);
    }
}

/* 0, 1 after --help (usage printed), -1 after a usage error (printed). */
static int parse(const char *usage, int argc, char **argv, const cli_opt *opts, int nopts, const char **pos,
                 int max_pos, int *npos) {
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(usage, opts, nopts);
            return 1;
        }
        if (a[0] != '-' || a[1] == 0 || (a[1] >= '0' && a[1] <= '9')) {
            if (np >= max_pos) {
                fprintf(stderr, "deeprec: unexpected argument '%s'\nusage: %s\n", a, usage);
                return -1;
            }
            pos[np++] = a;
            continue;
        }
        const cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (!strcmp(opts[k].name, a)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "deeprec: unknown option '%s'\nusage: %s\n", a, usage);
            return -1;
        }
        if (o->kind == CLI_FLAG) {
            *(int *)o->dst = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "deeprec: option %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        switch (o->kind) {
        case CLI_STR: *(const char **)o->dst = v; break;
        case CLI_STRS: {
            cli_strs *s = o->dst;
            if (s->n >= 64) { fprintf(stderr, "deeprec: too many %s values\n", a); return -1; }
            s->v[s->n++] = v;
            break;
        }
        case CLI_INT: {
            long x = strtol(v, &end, 10);
            if (errno || !*v || *end || x < -2147483647L || x > 2147483647L) {
                fprintf(stderr, "deeprec: option %s expects an integer, got '%s'\n", a, v);
                return -1;
            }
            if (cli_range_check(a, (double)x, v)) return -1;
            *(int *)o->dst = (int)x;
            break;
        }
        case CLI_I64: {
            long long x = strtoll(v, &end, 10);
            if (errno || !*v || *end) {
                fprintf(stderr, "deeprec: option %s expects an integer, got '%s'\n", a, v);
                return -1;
            }
            if (cli_range_check(a, (double)x, v)) return -1;
            *(int64_t *)o->dst = x;
            break;
        }
        case CLI_FLOAT: {
            double x = strtod(v, &end);
            if (errno || !*v || *end) {
                fprintf(stderr, "deeprec: option %s expects a number, got '%s'\n", a, v);
                return -1;
            }
            if (cli_range_check(a, x, v)) return -1;
            *(double *)o->dst = x;
            break;
        }
        }
    }
    if (npos) *npos = np;
    return 0;
}

int cli_parse_words(const char *usage, int argc, char **argv, const cli_opt *opts, int nopts, const char **words,
                    int max_words, int *n_words, int *exit_code) {
    int r = parse(usage, argc, argv, opts, nopts, words, max_words, n_words);
    *exit_code = r > 0 ? 0 : 2;
    return r != 0;
}

int cli_parse_opts(const char *usage, int argc, char **argv, const cli_opt *opts, int nopts, int *exit_code) {
    return cli_parse_words(usage, argc, argv, opts, nopts, NULL, 0, NULL, exit_code);
}

int cli_weight_type(const char *cmd, const char *name, uint32_t *type) {
    if (!name || !strcmp(name, "f32")) *type = GGML_TYPE_F32;
    else if (!strcmp(name, "f16")) *type = GGML_TYPE_F16;
    else if (!strcmp(name, "bf16")) *type = GGML_TYPE_BF16;
    else if (!strcmp(name, "q8_0")) *type = GGML_TYPE_Q8_0;
    else return cli_usage_error("%s: unknown --type '%s' (f32, f16, bf16, q8_0)", cmd, name);
    return 0;
}

int cli_kv_type(const char *cmd, const char *name, int *kv) {
    *kv = name ? llm_kv_type_from_name(name) : LLM_KV_F32;
    return *kv < 0 ? cli_usage_error("%s: unknown --kv-type '%s' (f32, f16)", cmd, name) : 0;
}

int cli_on_off(const char *s) {
    if (s && !strcmp(s, "on")) return 1;
    if (s && !strcmp(s, "off")) return 0;
    return -1;
}

/* CLI_INT writes an int: max_turn_tokens is an int32_t */
_Static_assert(sizeof(int32_t) == sizeof(int), "CLI_INT into an int32_t field");

void cli_rollout_init(cli_rollout *r) {
    agent_rollout_opts_default(&r->ro);
    r->constrain = NULL; /* not given: on (NULL tells --llm-url's check that it was not asked for) */
}

int cli_constrain_mode(const char *s) {
    if (!strcmp(s, "order")) return 2;
    return cli_on_off(s);
}

int cli_rollout_finish(cli_rollout *r) {
    int mode = cli_constrain_mode(r->constrain ? r->constrain : "on");
    if (mode < 0) return cli_usage_error("--constrain must be on, order or off");
    r->ro.constrain_titles = r->ro.constrain_prefs = r->ro.constrain_tags = mode > 0;
    r->ro.constrain_order = mode == 2;
    if (agent_rollout_opts_check(&r->ro)) return cli_usage_error("%s", dr_error_message());
    return 0;
}
