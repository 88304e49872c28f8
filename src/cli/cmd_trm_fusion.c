/* deeprec trm fusion: the bound on what fusing preference-conditioned calls can gain */
#include "cli.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int cmd_fusion(int argc, char **argv) {
    const char *data = NULL, *model = NULL, *split = "test";
    int max_hist = 20, boot = 1000, json = 0;
    long long seed = 1;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data, "dataset (.gguf, with item categories)"},
        {"--model", CLI_STR, &model, "pref TRM checkpoint (.gguf)"},
        {"--split", CLI_STR, &split, "test | valid"},
        {"--max-hist", CLI_INT, &max_hist, "history items whose categories become preferences (20)"},
        {"--bootstrap", CLI_INT, &boot, "resamples of the 95% intervals (1000; 0 = off)"},
        {"--seed", CLI_I64, &seed, "bootstrap seed (1)"},
        {"--json", CLI_FLAG, &json, "one JSON object on stdout"},
    };
    int np = 0;
    int r = cli_parse("deeprec trm fusion --data DATA.gguf --model TRM.gguf [--split test|valid]", argc, argv, opts,
                      (int)(sizeof opts / sizeof *opts), NULL, 0, &np);
    if (r) return r > 0 ? 0 : 2;
    if (!data || !model) return cli_usage_error("trm fusion needs --data and --model");
    int sp;
    if (!strcmp(split, "test")) sp = 1;
    else if (!strcmp(split, "valid")) sp = 0;
    else return cli_usage_error("--split must be test or valid, got '%s'", split);
    if (max_hist < 1 || max_hist > 1000) return cli_usage_error("--max-hist must be in 1..1000, got %d", max_hist);
    if (boot < 0 || boot > 100000) return cli_usage_error("--bootstrap must be in 0..100000, got %d", boot);
    dr_dataset d;
    if (dr_data_load(&d, data)) return cli_fail();
    trm_model *m = NULL;
    eval_fusion_result fr;
    double t0 = dr_now();
    int rc = trm_load(&m, model);
    if (!rc) rc = eval_pref_fusion(m, &d, sp, max_hist, boot, (uint64_t)seed, &fr);
    double wall = dr_now() - t0;
    trm_model_free(m);
    dr_data_free(&d);
    if (rc) return cli_fail();
    if (json) {
        json_t *j = json_object(), *rows = json_array();
        json_object_set_new(j, "split", json_string(split));
        json_object_set_new(j, "users", json_integer(fr.n_users));
        json_object_set_new(j, "bootstrap", json_integer(fr.bootstrap));
        for (int p = 0; p < EVAL_FUSION_N; p++)
            json_array_append_new(rows, json_pack("{s:s,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "policy", eval_fusion_name(p),
                                                  "recall@10", fr.recall10[p], "ndcg@10", fr.ndcg10[p].mean,
                                                  "ndcg@10_lo", fr.ndcg10[p].lo, "ndcg@10_hi", fr.ndcg10[p].hi,
                                                  "diff", fr.diff[p].mean, "diff_lo", fr.diff[p].lo, "diff_hi",
                                                  fr.diff[p].hi));
        json_object_set_new(j, "policies", rows);
        json_object_set_new(j, "seconds", json_real(wall));
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (s) printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        printf("fusion bound, %s split, %lld users (history masked; exact scores over the catalog; %.1f s)\n", split,
               (long long)fr.n_users, wall);
        printf("%-60s %9s %9s  %-18s  %s\n", "policy", "R@10", "NDCG@10", "95% CI", "paired diff. vs empty");
        for (int p = 0; p < EVAL_FUSION_N; p++)
            printf("%-60s %9.4f %9.4f  [%.4f, %.4f]  %+.4f [%+.4f, %+.4f]\n", eval_fusion_name(p), fr.recall10[p],
                   fr.ndcg10[p].mean, fr.ndcg10[p].lo, fr.ndcg10[p].hi, fr.diff[p].mean, fr.diff[p].lo, fr.diff[p].hi);
    }
    return 0;
}

CLI_COMMAND(trm_fusion, "trm fusion", "bound on what fusing preference-conditioned TRM calls can gain", cmd_fusion)
