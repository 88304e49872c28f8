/* Several modes in one evaluation (deeprec eval --mode a,b --paired a): the mode list,
 * and the runs with their paired differences against a reference mode. */
#include "deeprec/evaluate.h"
#include <string.h>

int eval_modes_parse(const char *list, int *modes, int *n) {
    *n = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char name[32];
        if (len == 0 || len >= sizeof name) return dr_error(DR_ERR_ARG, "bad mode list '%s'", list);
        memcpy(name, p, len);
        name[len] = 0;
        int m = eval_mode_from_name(name);
        if (m < 0) return dr_error(DR_ERR_ARG, "unknown mode '%s' (deeprec, trm, rerank, direct, teacher)", name);
        for (int i = 0; i < *n; i++)
            if (modes[i] == m) return dr_error(DR_ERR_ARG, "'%s' is listed twice", name);
        modes[(*n)++] = m;
        p = e ? e + 1 : p + len;
    }
    if (!*n) return dr_error(DR_ERR_ARG, "the mode list is empty");
    return DR_OK;
}

int eval_run_modes(const eval_inputs *in, const eval_opts *o, const int *modes, int n, int ref, eval_result *res,
                   eval_paired *pair) {
    memset(res, 0, (size_t)n * sizeof *res);
    eval_opts mo = *o;
    for (int i = 0; i < n; i++) {
        mo.mode = modes[i];
        if (mo.progress) fprintf(mo.progress, "eval: mode %s\n", eval_mode_name(mo.mode));
        int rc = eval_run(in, &mo, &res[i]);
        if (rc) {
            dr_error_context("eval --mode %s", eval_mode_name(mo.mode));
            return rc;
        }
    }
    for (int i = 0; i < n && ref >= 0; i++) {
        int rc = eval_paired_diff(&res[i], &res[ref], o->bootstrap, o->bootstrap_seed, &pair[i]);
        if (rc) return rc;
    }
    return DR_OK;
}
