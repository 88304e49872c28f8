/* Reports of the evaluation: a terminal table and a JSON object per result. */
#include "deeprec/evaluate.h"
#include <jansson.h>
#include <string.h>

static const char *const rule_names[EVAL_N_RULES] = {"exact", "substring"};

static const char *const metric_labels[EVAL_N_METRICS] = {"R@1", "R@5", "R@10", "NDCG@5", "NDCG@10", "MRR@10"};

/* "0.0374 [0.0290, 0.0461]", or the mean alone when no bootstrap ran. */
static void fmt_ci(char *buf, size_t cap, const eval_ci *c, int B, int sign) {
    if (B > 0)
        snprintf(buf, cap, sign ? "%+.4f [%+.4f, %+.4f]" : "%.4f [%.4f, %.4f]", c->mean, c->lo, c->hi);
    else
        snprintf(buf, cap, sign ? "%+.4f" : "%.4f", c->mean);
}

/* One metric of one mode: the exact and the substring rule side by side. */
static void put_row(FILE *out, int mode, int metric, int64_t users, const eval_ci ci[EVAL_N_RULES][EVAL_N_METRICS],
                    int B, int sign) {
    char ex[64], ss[64];
    fmt_ci(ex, sizeof ex, &ci[EVAL_RULE_EXACT][metric], B, sign);
    fmt_ci(ss, sizeof ss, &ci[EVAL_RULE_SUBSTR][metric], B, sign);
    fprintf(out, "%-8s %-8s %6lld  %-27s  %s\n", eval_mode_name(mode), metric_labels[metric], (long long)users, ex, ss);
}

void eval_report_table(const eval_result *r, int n, FILE *out) {
    int B = n > 0 ? r[0].bootstrap : 0;
    fprintf(out, "%-8s %-8s %6s  %-27s  %s\n", "mode", "metric", "users", B > 0 ? "exact [95% CI]" : "exact",
            B > 0 ? "substring [95% CI]" : "substring");
    for (int i = 0; i < n; i++)
        for (int m = 0; m < EVAL_N_METRICS; m++) put_row(out, r[i].mode, m, r[i].n_users, r[i].ci, r[i].bootstrap, 0);
    if (B > 0)
        fprintf(out, "(95%% percentile bootstrap over users, %d resamples)\n", B);
    fprintf(out, "\n%-8s %8s %6s %6s %6s %6s %6s %6s %8s %7s %7s %8s %8s\n", "mode", "episodes", "fin", "many", "ctx",
            "pref", "shot", "recall", "fmt-ok", "forced", "calls", "gen-tok", "s/user");
    for (int i = 0; i < n; i++) {
        const eval_result *x = &r[i];
        fprintf(out, "%-8s %8lld ", eval_mode_name(x->mode), (long long)x->n_episodes);
        if (x->llm) {
            for (int k = 0; k < AGENT_N_OUTCOMES; k++) fprintf(out, "%6lld ", (long long)x->outcomes[k]);
            fprintf(out, "%7.1f%% %6.1f%% %7.2f %8.1f ", 100.0 * x->format_valid_rate, 100.0 * x->answer_forced_rate,
                    x->mean_tool_calls, x->mean_gen_tokens);
        } else {
            for (int k = 0; k < AGENT_N_OUTCOMES; k++) fprintf(out, "%6s ", "n/a");
            fprintf(out, "%8s %7s %7s %8s ", "n/a", "n/a", "n/a", "n/a");
        }
        fprintf(out, "%8.4f\n", x->seconds_per_user);
    }
    fprintf(out, "(outcomes: fin = finished, many = many_recall, ctx = context_too_long, pref = preference_error, "
                 "shot = shot_down, recall = recall_error; forced = answers the turn budget opened; failures count as "
                 "misses)\n");
}

void eval_report_paired(const eval_paired *p, int n, FILE *out) {
    if (n <= 0) return;
    fprintf(out, "\npaired difference against %s (per user, mode minus %s, same users)\n", eval_mode_name(p[0].ref),
            eval_mode_name(p[0].ref));
    fprintf(out, "%-8s %-8s %6s  %-27s  %s\n", "mode", "metric", "users", "exact [95% CI]", "substring [95% CI]");
    for (int i = 0; i < n; i++)
        for (int m = 0; m < EVAL_N_METRICS; m++) put_row(out, p[i].mode, m, p[i].n_users, p[i].diff, p[i].bootstrap, 1);
}

static json_t *ci_json(const eval_ci *c) {
    return json_pack("{s:f, s:f, s:f}", "mean", c->mean, "lo", c->lo, "hi", c->hi);
}

/* {"exact": {"recall@1": {"mean", "lo", "hi"}, ...}, "substring": {...}} */
static json_t *ci_table_json(const eval_ci ci[EVAL_N_RULES][EVAL_N_METRICS]) {
    json_t *j = json_object();
    for (int q = 0; q < EVAL_N_RULES; q++) {
        json_t *m = json_object();
        for (int k = 0; k < EVAL_N_METRICS; k++) json_object_set_new(m, eval_metric_name(k), ci_json(&ci[q][k]));
        json_object_set_new(j, rule_names[q], m);
    }
    return j;
}

json_t *eval_paired_json(const eval_paired *p) {
    json_t *j = ci_table_json(p->diff);
    json_object_set_new(j, "ref", json_string(eval_mode_name(p->ref)));
    json_object_set_new(j, "users", json_integer(p->n_users));
    json_object_set_new(j, "resamples", json_integer(p->bootstrap));
    return j;
}

json_t *eval_result_json(const eval_result *r) {
    json_t *j = json_object();
    json_object_set_new(j, "mode", json_string(eval_mode_name(r->mode)));
    json_object_set_new(j, "users", json_integer(r->n_users));
    json_object_set_new(j, "episodes", json_integer(r->n_episodes));
    json_object_set_new(j, "samples", json_integer(r->samples));
    json_t *metrics = json_object();
    for (int q = 0; q < EVAL_N_RULES; q++) {
        json_t *m = json_object();
        json_object_set_new(m, "recall@1", json_real(r->recall[q][0]));
        json_object_set_new(m, "recall@5", json_real(r->recall[q][1]));
        json_object_set_new(m, "recall@10", json_real(r->recall[q][2]));
        json_object_set_new(m, "ndcg@5", json_real(r->ndcg[q][0]));
        json_object_set_new(m, "ndcg@10", json_real(r->ndcg[q][1]));
        json_object_set_new(m, "mrr", json_real(r->mrr[q]));
        json_object_set_new(metrics, rule_names[q], m);
    }
    json_object_set_new(j, "metrics", metrics);
    json_object_set_new(j, "metrics_ci", ci_table_json(r->ci));
    json_object_set_new(j, "bootstrap", json_pack("{s:i, s:f}", "resamples", r->bootstrap, "level", 0.95));
    if (r->llm) {
        json_t *o = json_object();
        for (int k = 0; k < AGENT_N_OUTCOMES; k++) json_object_set_new(o, agent_outcome_name(k), json_integer(r->outcomes[k]));
        json_object_set_new(j, "outcomes", o);
        json_object_set_new(j, "format_valid_rate", json_real(r->format_valid_rate));
        json_t *ff = json_object();
        for (int k = AGENT_FMT_OK + 1; k < AGENT_FMT_N; k++)
            if (r->format_fails[k]) json_object_set_new(ff, agent_format_name(k), json_integer(r->format_fails[k]));
        json_object_set_new(j, "format_failures", ff);
        json_object_set_new(j, "with_tool_call_rate", json_real(r->with_call_rate));
        json_object_set_new(j, "answer_forced_rate", json_real(r->answer_forced_rate));
        json_object_set_new(j, "mean_tool_calls", json_real(r->mean_tool_calls));
        json_object_set_new(j, "mean_generated_tokens", json_real(r->mean_gen_tokens));
    } else {
        json_object_set_new(j, "outcomes", json_null());
        json_object_set_new(j, "format_valid_rate", json_null());
        json_object_set_new(j, "format_failures", json_null());
        json_object_set_new(j, "with_tool_call_rate", json_null());
        json_object_set_new(j, "answer_forced_rate", json_null());
        json_object_set_new(j, "mean_tool_calls", json_null());
        json_object_set_new(j, "mean_generated_tokens", json_null());
    }
    json_object_set_new(j, "seconds", json_real(r->seconds));
    json_object_set_new(j, "seconds_per_user", json_real(r->seconds_per_user));
    return j;
}
