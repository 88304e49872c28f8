/* deeprec llm logits: the last position's logits for a token sequence (for checks against a reference). */
#include "cli.h"
#include "deeprec/llm.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* "1 2 3" or "1,2,3" into ids; an error names the offending item. */
static int parse_tokens(const char *s, int32_t **out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 0, item = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        item++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\n", *end))) {
            free(*out);
            *out = NULL;
            return dr_error(DR_ERR_ARG, "--tokens: item %d ('%.*s') is not a token id (a non-negative integer)", item,
                            (int)strcspn(p, " ,\t\n"), p);
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            int32_t *nv = realloc(*out, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(*out);
                *out = NULL;
                return DR_ERR_NOMEM;
            }
            *out = nv;
        }
        (*out)[(*n)++] = (int32_t)v;
        p = end;
    }
    if (*n == 0) return dr_error(DR_ERR_ARG, "--tokens: no token ids given");
    return DR_OK;
}

static int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tokens_s = NULL;
    int exact = 0, json = 0;
    cli_opt opts[] = {
        {"--model", CLI_STR, &model_path, "GGUF model"},
        {"--tokens", CLI_STR, &tokens_s, "token ids, separated by spaces or commas"},
        {"--exact", CLI_FLAG, &exact, "fp32 activations on quantised weights (default: int8, as llm generate)"},
        {"--json", CLI_FLAG, &json, "print one JSON object"},
    };
    int pr;
    if (cli_parse_opts("deeprec llm logits --model M.gguf --tokens \"1 2 3\" [--exact] [--json]",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    if (!model_path) return cli_usage_error("llm logits: --model is required");
    if (!tokens_s) return cli_usage_error("llm logits: --tokens is required");
    int32_t *ids = NULL;
    int n = 0;
    if (parse_tokens(tokens_s, &ids, &n)) return cli_fail();
    llm_model *m = NULL;
    float *lg = NULL;
    int rc = llm_model_load(&m, model_path);
    if (!rc) rc = (lg = dr_malloc((size_t)m->cfg.vocab * sizeof(float))) ? llm_last_logits(m, ids, n, !exact, lg)
                                                                           : dr_error_code();
    if (!rc && json) {
        json_t *o = json_object(), *arr = json_array();
        for (int v = 0; v < m->cfg.vocab; v++) json_array_append_new(arr, json_real(lg[v]));
        json_object_set_new(o, "model", json_string(model_path));
        json_object_set_new(o, "tokens", json_integer(n));
        json_object_set_new(o, "exact", json_boolean(exact));
        json_object_set_new(o, "logits", arr);
        rc = cli_print_json(o, JSON_COMPACT | JSON_REAL_PRECISION(9)); /* 9 digits: every float exact */
    } else if (!rc) {
        for (int v = 0; v < m->cfg.vocab; v++) printf("%.9g\n", lg[v]);
    }
    free(lg);
    free(ids);
    llm_model_free(m);
    return rc ? cli_fail() : 0;
}
CLI_COMMAND(llm_logits, "llm logits", "print the last position's logits for a token sequence", cmd_logits)
