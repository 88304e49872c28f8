/* Reports of the evaluation: a terminal table and a JSON object per result. */
#include "deeprec/evaluate.h"
#include <jansson.h>
#include <string.h>

static const char *const rule_names[EVAL_N_RULES] = {"exact", "substring"};

void eval_report_table(const eval_result *r, int n, FILE *out) {
    fprintf(out, "%-8s %-9s %6s %8s %8s %8s %8s %8s %8s\n", "mode", "rule", "users", "R@1", "R@5", "R@10", "NDCG@5",
            "NDCG@10", "MRR@10");
    for (int i = 0; i < n; i++)
        for (int q = 0; q < EVAL_N_RULES; q++)
            fprintf(out, "%-8s %-9s %6lld %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f\n", eval_mode_name(r[i].mode),
                    rule_names[q], (long long)r[i].n_users, r[i].recall[q][0], r[i].recall[q][1], r[i].recall[q][2],
                    r[i].ndcg[q][0], r[i].ndcg[q][1], r[i].mrr[q]);
    fprintf(out, "\n%-8s %8s %6s %6s %6s %6s %6s %6s %8s %7s %8s %8s\n", "mode", "episodes", "fin", "many", "ctx",
            "pref", "shot", "recall", "fmt-ok", "calls", "gen-tok", "s/user");
    for (int i = 0; i < n; i++) {
        const eval_result *x = &r[i];
        fprintf(out, "%-8s %8lld ", eval_mode_name(x->mode), (long long)x->n_episodes);
        if (x->llm) {
            for (int k = 0; k < AGENT_N_OUTCOMES; k++) fprintf(out, "%6lld ", (long long)x->outcomes[k]);
            fprintf(out, "%7.1f%% %7.2f %8.1f ", 100.0 * x->format_valid_rate, x->mean_tool_calls, x->mean_gen_tokens);
        } else {
            for (int k = 0; k < AGENT_N_OUTCOMES; k++) fprintf(out, "%6s ", "n/a");
            fprintf(out, "%8s %7s %8s ", "n/a", "n/a", "n/a");
        }
        fprintf(out, "%8.4f\n", x->seconds_per_user);
    }
    fprintf(out, "(outcomes: fin = finished, many = many_recall, ctx = context_too_long, pref = preference_error, "
                 "shot = shot_down, recall = recall_error; failures count as misses)\n");
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
        json_object_set_new(j, "mean_tool_calls", json_real(r->mean_tool_calls));
        json_object_set_new(j, "mean_generated_tokens", json_real(r->mean_gen_tokens));
    } else {
        json_object_set_new(j, "outcomes", json_null());
        json_object_set_new(j, "format_valid_rate", json_null());
        json_object_set_new(j, "format_failures", json_null());
        json_object_set_new(j, "with_tool_call_rate", json_null());
        json_object_set_new(j, "mean_tool_calls", json_null());
        json_object_set_new(j, "mean_generated_tokens", json_null());
    }
    json_object_set_new(j, "seconds", json_real(r->seconds));
    json_object_set_new(j, "seconds_per_user", json_real(r->seconds_per_user));
    return j;
}
