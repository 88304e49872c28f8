/* The pipeline's table: one row per evaluated system on the same test users, as
 * report.json (the eval results inside) and report.md (a markdown table). */
#include "pipeline/internal.h"
#include "deeprec/evaluate.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int pl_rows(const pl_run *p, pl_row *rows, int max) {
    int n = 0;
    const char *rr = p->b->rerank_warm > 0 ? "tiny_sft_rerank.gguf" : "tiny_sft.gguf";
    const pl_row all[] = {
        {"sasrec", "SASRec (CE) alone", "trm", "sasrec.gguf", NULL, 0},
        {"trm", "pref TRM, empty preference", "trm", "trm.gguf", NULL, 0},
        {"rerank", "rerank (one call, then rank)", "rerank", "trm.gguf", rr, 0},
        /* the warm-start teacher's own list (no LLM) */
        {"teacher", "warm-start teacher", "teacher", "trm.gguf", "tiny_sft.gguf", 0},
        {"deeprec_warm_free", "DeepRec before RL, titles unconstrained", "deeprec", "trm.gguf", "tiny_sft.gguf", 1},
        {"deeprec_warm", "DeepRec before RL", "deeprec", "trm.gguf", "tiny_sft.gguf", 0},
        {"deeprec_rl1", "DeepRec after RL stage 1", "deeprec", "trm.gguf", "policy1.gguf", 0},
        {"deeprec_rl2", "DeepRec after RL stage 2", "deeprec", "trm.gguf", "policy2.gguf", 0},
    };
    for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++) {
        /* a stage run with 0 steps is skipped, and so is its row */
        if (!strcmp(all[i].id, "deeprec_rl1") && p->b->rl1_steps <= 0) continue;
        if (!strcmp(all[i].id, "deeprec_rl2") && p->b->rl2_steps <= 0) continue;
        if (eval_mode_from_name(all[i].mode) >= 0) rows[n++] = all[i];
    }
    return n;
}

json_t *pl_ranks_json(const eval_result *r) {
    json_t *u = json_array(), *ex = json_array(), *ss = json_array();
    for (int64_t i = 0; i < r->n_users; i++) json_array_append_new(u, json_integer(r->users[i]));
    for (int64_t e = 0; e < r->n_episodes; e++) {
        json_array_append_new(ex, json_integer(r->rank[EVAL_RULE_EXACT][e]));
        json_array_append_new(ss, json_integer(r->rank[EVAL_RULE_SUBSTR][e]));
    }
    return json_pack("{s:o, s:o, s:o}", "user_ids", u, "ranks_exact", ex, "ranks_substring", ss);
}

int pl_ranks_load(json_t *e, eval_result *r) {
    memset(r, 0, sizeof *r);
    json_t *pu = json_object_get(e, "per_user");
    json_t *u = json_object_get(pu, "user_ids");
    json_t *rk[EVAL_N_RULES] = {json_object_get(pu, "ranks_exact"), json_object_get(pu, "ranks_substring")};
    int samples = (int)json_integer_value(json_object_get(e, "samples"));
    r->mode = eval_mode_from_name(json_string_value(json_object_get(e, "mode")));
    r->samples = samples > 0 ? samples : 1;
    if (!json_is_array(u) || !json_is_array(rk[0]) || !json_is_array(rk[1]) || r->mode < 0)
        return dr_error(DR_ERR_FORMAT, "pipeline report: an eval output without per-user ranks (per_user)");
    r->n_users = (int64_t)json_array_size(u);
    r->n_episodes = (int64_t)json_array_size(rk[0]);
    if ((int64_t)json_array_size(rk[1]) != r->n_episodes || r->n_episodes != r->n_users * r->samples)
        return dr_error(DR_ERR_FORMAT, "pipeline report: per_user has %lld users, %lld / %lld ranks, %d samples",
                        (long long)r->n_users, (long long)r->n_episodes, (long long)json_array_size(rk[1]), r->samples);
    r->users = dr_calloc((size_t)(r->n_users > 0 ? r->n_users : 1), sizeof *r->users);
    for (int q = 0; q < EVAL_N_RULES; q++)
        r->rank[q] = dr_calloc((size_t)(r->n_episodes > 0 ? r->n_episodes : 1), sizeof(int));
    if (!r->users || !r->rank[0] || !r->rank[1]) {
        eval_result_free(r);
        return dr_error_code();
    }
    for (int64_t i = 0; i < r->n_users; i++) r->users[i] = (int32_t)json_integer_value(json_array_get(u, (size_t)i));
    for (int q = 0; q < EVAL_N_RULES; q++)
        for (int64_t i = 0; i < r->n_episodes; i++) {
            json_t *v = json_array_get(rk[q], (size_t)i);
            r->rank[q][i] = json_is_integer(v) ? (int)json_integer_value(v) : -1;
        }
    return DR_OK;
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

/* RL stage `stage`'s kept policy (rl --keep-best): from its checkpoint marker, the step and
 * validation NDCG@10 of the best; from its step records, the input's and the last validated
 * step's. Nothing when the stage did not run or kept no best. */
static void kept_note(const pl_run *p, int stage, dr_buf *b, json_t *r) {
    char name[32], path[PL_PATH];
    snprintf(name, sizeof name, "policy%d.ckpt.json", stage);
    pl_path(p, name, path);
    json_t *m = json_load_file(path, 0, NULL);
    json_t *bs = json_object_get(m, "best_step"), *bn = json_object_get(m, "best_ndcg10");
    if (json_is_integer(bs) && json_is_number(bn)) {
        double in = -1, last = -1;
        long long users = 0, last_step = 0;
        snprintf(name, sizeof name, "policy%d.metrics.jsonl", stage);
        pl_path(p, name, path);
        FILE *f = fopen(path, "r");
        char *line = NULL;
        size_t cap = 0;
        while (f && getline(&line, &cap, f) > 0) {
            json_t *j = json_loads(line, 0, NULL);
            json_t *vs = json_object_get(j, "valid_start"), *vl = json_object_get(j, "valid");
            if (json_is_object(vs)) {
                in = json_number_value(json_object_get(vs, "ndcg@10"));
                users = (long long)json_integer_value(json_object_get(vs, "users"));
            }
            if (json_is_object(vl)) {
                last = json_number_value(json_object_get(vl, "ndcg@10"));
                last_step = (long long)json_integer_value(json_object_get(j, "step"));
            }
            json_decref(j);
        }
        free(line);
        if (f) fclose(f);
        long long step = (long long)json_integer_value(bs);
        if (step == 0)
            dr_buf_printf(b, " RL stage %d kept its input (validation NDCG@10 %.4f on %lld users; after its step %lld: %.4f).",
                          stage, json_number_value(bn), users, last_step, last);
        else
            dr_buf_printf(b, " RL stage %d kept the policy of its step %lld (validation NDCG@10 %.4f on %lld users; its input: %.4f).",
                          stage, step, json_number_value(bn), users, in);
        snprintf(name, sizeof name, "rl%d_kept_step", stage);
        json_object_set_new(r, name, json_integer(step));
    }
    json_decref(m);
}


/* Which of the two pref candidates became trm.gguf (stage_trm's record; absent where only one
 * was trained, as in runs without trm_pref_init). */
static void pref_candidates(const pl_run *p, json_t *r, dr_buf *b) {
    char path[PL_PATH];
    pl_path(p, PL_PREF_CANDIDATES, path);
    json_t *c = json_load_file(path, 0, NULL);
    if (!json_is_object(c)) {
        json_decref(c);
        return;
    }
    const char *kept = json_string_value(json_object_get(c, "kept"));
    dr_buf_printf(b, "; the pref TRM is the candidate %s (validation NDCG@10 %.4f from random weights, %.4f from the SASRec)",
                  kept && !strcmp(kept, "from_sasrec") ? "started from the SASRec" : "from random weights",
                  num(c, "random_valid_ndcg@10"), num(c, "from_sasrec_valid_ndcg@10"));
    json_object_set_new(r, "pref_candidates", c);
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
    json_object_set_new(r, "settings", pipeline_budget_json(p->b));
    json_object_set_new(r, "best_trm", json_pack("{s:s, s:f, s:{s:O, s:O}}", "row", best, "valid_ndcg@10",
                                                 np > ns ? np : ns, "valid", "sasrec", vs, "trm", vp));
    json_t *rows = json_array();
    json_object_set_new(r, "rows", rows);
    dr_buf b = {0};
    dr_buf_printf(&b, "# DeepRec pipeline report\n\n");
    dr_buf_printf(&b, "data `%s`, budget `%s`; best TRM on validation NDCG@10: **%s** (SASRec %.4f, pref %.4f)",
           p->o->data, p->b->name, !strcmp(best, "trm") ? "pref TRM" : "SASRec", ns, np);
    pref_candidates(p, r, &b);
    dr_buf_printf(&b, "\n\n");
    dr_buf_printf(&b, "| row | users | R@10 | NDCG@10 | MRR | format-valid | answer forced | calls | 95%% CI (NDCG@10) | paired diff. vs best TRM |\n");
    dr_buf_printf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    pl_row list[16];
    int n = pl_rows(p, list, 16), rc = DR_OK;
    /* every row's eval output and per-user ranks; the reference of the paired differences is
     * the best TRM's row */
    json_t *evals[16] = {0};
    eval_result ranks[16];
    memset(ranks, 0, sizeof ranks);
    int ibest = -1;
    for (int i = 0; i < n && !rc; i++) {
        char name[64];
        snprintf(name, sizeof name, "eval_%s.json", list[i].id);
        if (!(evals[i] = load_json(p, name))) rc = dr_error_code();
        else if ((rc = pl_ranks_load(evals[i], &ranks[i]))) dr_error_context("%s/%s", p->o->out_dir, name);
        if (!strcmp(list[i].id, best)) ibest = i;
    }
    if (!rc && ibest < 0) rc = dr_error(DR_ERR_INTERNAL, "pipeline report: no row for the best TRM %s", best);
    for (int i = 0; i < n && !rc; i++) {
        json_t *e = evals[i];
        json_t *ex = json_object_get(json_object_get(e, "metrics"), "exact");
        /* the 95% interval: eval_run's percentile bootstrap over users (PL_BOOTSTRAP resamples) */
        json_t *mci = json_object_get(e, "metrics_ci");
        json_t *ci = json_pack("{s:O, s:f, s:O, s:O}", "resamples",
                               json_object_get(json_object_get(e, "bootstrap"), "resamples"), "level", 0.95, "exact",
                               json_object_get(mci, "exact"), "substring", json_object_get(mci, "substring"));
        /* paired difference, user by user, against the best TRM (same users, same order) */
        eval_paired pd;
        if ((rc = eval_paired_diff(&ranks[i], &ranks[ibest], PL_BOOTSTRAP, 1, &pd))) {
            json_decref(ci);
            dr_error_context("pipeline report: row %s vs %s", list[i].id, best);
            break;
        }
        json_t *paired = eval_paired_json(&pd);
        json_object_set_new(paired, "ref", json_string(best));
        json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:o, s:o, s:b}", "id", list[i].id,
                                "label", list[i].label, "mode", list[i].mode, "trm", list[i].trm, "users",
                                json_object_get(e, "users"), "recall@10", json_object_get(ex, "recall@10"), "ndcg@10",
                                json_object_get(ex, "ndcg@10"), "mrr", json_object_get(ex, "mrr"), "format_valid",
                                json_object_get(e, "format_valid_rate"), "calls", json_object_get(e, "mean_tool_calls"),
                                "ci", ci, "paired_vs_best_trm", paired,
                                "best_trm", !strcmp(list[i].id, best));
        json_t *af = json_object_get(e, "answer_forced_rate"); /* absent in evals of older code */
        json_object_set_new(row, "answer_forced", af ? json_incref(af) : json_null());
        json_object_set_new(row, "llm", list[i].llm ? json_string(list[i].llm) : json_null());
        json_object_set(row, "eval", e);
        json_array_append_new(rows, row);
        char r10[32], n10[32], mrr[32], fv[32], forced[32], calls[32];
        fmt(r10, sizeof r10, json_object_get(ex, "recall@10"), "%.4f");
        fmt(n10, sizeof n10, json_object_get(ex, "ndcg@10"), "%.4f");
        fmt(mrr, sizeof mrr, json_object_get(ex, "mrr"), "%.4f");
        fmt(fv, sizeof fv, json_object_get(e, "format_valid_rate"), "%.3f");
        fmt(forced, sizeof forced, json_object_get(e, "answer_forced_rate"), "%.3f");
        fmt(calls, sizeof calls, json_object_get(e, "mean_tool_calls"), "%.2f");
        json_t *c10 = json_object_get(json_object_get(mci, "exact"), "ndcg@10");
        const eval_ci *d10 = &pd.diff[EVAL_RULE_EXACT][EVAL_M_NDCG10];
        char cis[96], pds[96];
        if (json_is_object(c10))
            snprintf(cis, sizeof cis, "%.4f [%.4f, %.4f]", num(c10, "mean"), num(c10, "lo"), num(c10, "hi"));
        else
            snprintf(cis, sizeof cis, "-");
        snprintf(pds, sizeof pds, "%+.4f [%+.4f, %+.4f]", d10->mean, d10->lo, d10->hi);
        dr_buf_printf(&b, "| %s%s | %lld | %s | %s | %s | %s | %s | %s | %s | %s |\n", list[i].label,
               !strcmp(list[i].id, best) ? " (best TRM)" : "", (long long)json_integer_value(json_object_get(e, "users")),
               r10, n10, mrr, fv, forced, calls, cis, pds);
    }
    for (int i = 0; i < n; i++) {
        json_decref(evals[i]);
        eval_result_free(&ranks[i]);
    }
    dr_buf_printf(&b, "\nExact-title resolution, greedy decoding, the same seeded test users for every row; failures count "
               "as misses. 95%% intervals: percentile bootstrap over the test users (%d resamples, seed 1); the "
               "paired difference is the row minus the best TRM, user by user (NDCG@10).", PL_BOOTSTRAP);
    int rl = p->b->rl2_steps > 0 || p->b->rl1_steps > 0;
    const char *curve = p->b->rl2_steps > 0 ? "policy2.rewards.svg" : "policy1.rewards.svg";
    if (rl) dr_buf_printf(&b, " Reward curve (RL): `%s`.", curve);
    for (int stage = 1; stage <= 2 && rl; stage++) kept_note(p, stage, &b, r);
    dr_buf_printf(&b, "\n");
    json_object_set_new(r, "reward_curve", rl ? json_string(curve) : json_null());
    json_t *st = json_array();
    for (int i = 0; i < PIPELINE_REPORT; i++)
        json_array_append_new(st, json_pack("{s:s, s:b, s:b, s:f, s:f}", "stage", pipeline_stage_name(i), "reused",
                                            stages[i].reused, "resumed", stages[i].resumed, "wall_s", stages[i].wall_s,
                                            "cpu_s", stages[i].cpu_s));
    json_object_set_new(r, "stages", st);
    json_decref(vs);
    json_decref(vp);
    size_t md_n = b.n;
    char *text = dr_buf_take(&b); /* NULL: an append ran out of memory (error set) */
    if (!rc && !text) rc = dr_error_context("pipeline report");
    char jp[PL_PATH], mp[PL_PATH];
    pl_path(p, "report.json", jp);
    pl_path(p, "report.md", mp);
    if (!rc) rc = dr_json_write_file(jp, r);
    if (!rc) rc = dr_write_file_atomic(mp, text, md_n);
    if (rc) {
        json_decref(r);
        free(text);
        return rc;
    }
    *report = r;
    *md = text;
    return DR_OK;
}
