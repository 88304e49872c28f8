/* The pipeline's table: one row per evaluated system on the same test users, as
 * report.json (the eval results inside) and report.md (a markdown table). */
#include "pipeline/internal.h"
#include "deeprec/evaluate.h"
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int pl_rows(const pl_run *p, pl_row *rows, int max) {
    int n = 0;
    const char *rr = p->b->rerank_warm > 0 ? "tiny_sft_rerank.gguf" : "tiny_sft.gguf";
    const pl_row all[] = {
        {"sasrec", "SASRec (CE) alone", "trm", "sasrec.gguf", NULL},
        {"trm", "pref TRM, empty preference", "trm", "trm.gguf", NULL},
        {"rerank", "rerank (one call, then rank)", "rerank", "trm.gguf", rr},
        /* the warm-start teacher comes with its eval mode (another branch); listed when the
         * build has it */
        {"teacher", "warm-start teacher", "teacher", "trm.gguf", "tiny_sft.gguf"},
        {"deeprec_warm", "DeepRec before RL", "deeprec", "trm.gguf", "tiny_sft.gguf"},
        {"deeprec_rl1", "DeepRec after RL stage 1", "deeprec", "trm.gguf", "policy1.gguf"},
        {"deeprec_rl2", "DeepRec after RL stage 2", "deeprec", "trm.gguf", "policy2.gguf"},
    };
    for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++)
        if (eval_mode_from_name(all[i].mode) >= 0) rows[n++] = all[i];
    return n;
}

static json_t *load_json(const pl_run *p, const char *name) {
    char path[PL_PATH];
    pl_path(p, name, path);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) dr_error_at(DR_ERR_FORMAT, path, e.line, "pipeline report: %s", e.text);
    return j;
}

static double num(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

/* "0.1234" or "-" for null */
static void fmt(char *buf, size_t n, json_t *v, const char *f) {
    if (!v || json_is_null(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, f, json_number_value(v));
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;
static void sb_add(sbuf *b, const char *f, ...) DR_PRINTF(2, 3);
static void sb_add(sbuf *b, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)k;
        char *s = realloc(b->s, cap);
        if (!s) return;
        b->s = s, b->cap = cap;
    }
    va_start(ap, f);
    vsnprintf(b->s + b->n, b->cap - b->n, f, ap);
    va_end(ap);
    b->n += (size_t)k;
}

int pl_report(pl_run *p, const pipeline_stage_info *stages, json_t **report, char **md) {
    *report = NULL;
    *md = NULL;
    json_t *vs = load_json(p, "valid_sasrec.json"), *vp = load_json(p, "valid_trm.json");
    if (!vs || !vp) {
        json_decref(vs);
        json_decref(vp);
        return dr_error_code();
    }
    /* the baseline: the better TRM on VALIDATION NDCG@10 (ties: SASRec, the simpler model) */
    double ns = num(vs, "ndcg@10"), np = num(vp, "ndcg@10");
    const char *best = np > ns ? "trm" : "sasrec";
    json_t *r = json_object();
    json_object_set_new(r, "data", json_string(p->o->data));
    json_object_set_new(r, "budget", json_string(p->b->name));
    json_object_set_new(r, "eval_users", json_integer(p->b->eval_users));
    json_object_set_new(r, "best_trm", json_pack("{s:s, s:f, s:{s:O, s:O}}", "row", best, "valid_ndcg@10",
                                                 np > ns ? np : ns, "valid", "sasrec", vs, "trm", vp));
    json_t *rows = json_array();
    json_object_set_new(r, "rows", rows);
    sbuf b = {0};
    sb_add(&b, "# DeepRec pipeline report\n\n");
    sb_add(&b, "data `%s`, budget `%s`; best TRM on validation NDCG@10: **%s** (SASRec %.4f, pref %.4f)\n\n",
           p->o->data, p->b->name, !strcmp(best, "trm") ? "pref TRM" : "SASRec", ns, np);
    sb_add(&b, "| row | users | R@10 | NDCG@10 | MRR | format-valid | calls | 95%% CI (NDCG@10) | paired diff. vs best TRM |\n");
    sb_add(&b, "|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    pl_row list[16];
    int n = pl_rows(p, list, 16), rc = DR_OK;
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "eval_%s.json", list[i].id);
        json_t *e = load_json(p, name);
        if (!e) {
            rc = dr_error_code();
            break;
        }
        json_t *ex = json_object_get(json_object_get(e, "metrics"), "exact");
        /* CI and paired difference: filled from eval_result once the eval module has them
         * ("ci" / "paired" in its JSON; another branch); null until then */
        json_t *ci = json_object_get(e, "ci"), *paired = json_object_get(e, "paired");
        json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:b}", "id", list[i].id,
                                "label", list[i].label, "mode", list[i].mode, "trm", list[i].trm, "users",
                                json_object_get(e, "users"), "recall@10", json_object_get(ex, "recall@10"), "ndcg@10",
                                json_object_get(ex, "ndcg@10"), "mrr", json_object_get(ex, "mrr"), "format_valid",
                                json_object_get(e, "format_valid_rate"), "calls", json_object_get(e, "mean_tool_calls"),
                                "ci", ci ? ci : json_null(), "paired_vs_best_trm", paired ? paired : json_null(),
                                "best_trm", !strcmp(list[i].id, best));
        json_object_set_new(row, "llm", list[i].llm ? json_string(list[i].llm) : json_null());
        json_object_set(row, "eval", e);
        json_array_append_new(rows, row);
        char r10[32], n10[32], mrr[32], fv[32], calls[32];
        fmt(r10, sizeof r10, json_object_get(ex, "recall@10"), "%.4f");
        fmt(n10, sizeof n10, json_object_get(ex, "ndcg@10"), "%.4f");
        fmt(mrr, sizeof mrr, json_object_get(ex, "mrr"), "%.4f");
        fmt(fv, sizeof fv, json_object_get(e, "format_valid_rate"), "%.3f");
        fmt(calls, sizeof calls, json_object_get(e, "mean_tool_calls"), "%.2f");
        sb_add(&b, "| %s%s | %lld | %s | %s | %s | %s | %s | %s | %s |\n", list[i].label,
               !strcmp(list[i].id, best) ? " (best TRM)" : "", (long long)json_integer_value(json_object_get(e, "users")),
               r10, n10, mrr, fv, calls, ci ? "see report.json" : "(pending)", paired ? "see report.json" : "(pending)");
        json_decref(e);
    }
    if (eval_mode_from_name("teacher") < 0)
        sb_add(&b, "\nThe warm-start teacher row needs the eval mode `teacher` (not in this build).\n");
    sb_add(&b, "\nExact-title resolution, greedy decoding, the same seeded test users for every row; failures count "
               "as misses. Reward curve (both RL stages): `policy2.rewards.svg`.\n");
    json_object_set_new(r, "reward_curve", json_string("policy2.rewards.svg"));
    json_t *st = json_array();
    for (int i = 0; i < PIPELINE_REPORT; i++)
        json_array_append_new(st, json_pack("{s:s, s:b, s:b, s:f, s:f}", "stage", pipeline_stage_name(i), "reused",
                                            stages[i].reused, "resumed", stages[i].resumed, "wall_s", stages[i].wall_s,
                                            "cpu_s", stages[i].cpu_s));
    json_object_set_new(r, "stages", st);
    json_decref(vs);
    json_decref(vp);
    if (!rc && !b.s) rc = dr_error(DR_ERR_NOMEM, "pipeline report: out of memory");
    char jp[PL_PATH], mp[PL_PATH];
    pl_path(p, "report.json", jp);
    pl_path(p, "report.md", mp);
    if (!rc) rc = dr_json_write_file(jp, r);
    if (!rc) rc = dr_write_file_atomic(mp, b.s, b.n);
    if (rc) {
        json_decref(r);
        free(b.s);
        return rc;
    }
    *report = r;
    *md = b.s;
    return DR_OK;
}
