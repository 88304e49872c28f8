/* deeprec agent synth | recommend: the DeepRec agent from the command line. */
#include "cli.h"
#include "llm_url.h"
#include "deeprec/serve.h"
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/llm.h"
#include "deeprec/rl.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ agent synth */
static int synth_rerank_pref(void *ctx, const agent_catalog *c, const int32_t *hist, int64_t n_hist, char **pref) {
    (void)ctx;
    return eval_history_preference(c, hist, n_hist, pref);
}

static void print_best_of(const rl_warmstart_opts *wo, const rl_warmstart_stats *ws, const char *out, int json) {
    if (json) {
        cli_print_json(json_pack("{s:o, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "out", dr_json_text(out, (size_t)-1),
                                 "written", (json_int_t)ws->written, "skipped", (json_int_t)ws->skipped, "mean_reward",
                                 ws->mean_reward, "mean_first_reward", ws->mean_first_reward, "target_in_top10",
                                 ws->hit_rate, "target_retrieved", ws->retrieved_rate, "mean_calls", ws->mean_calls,
                                 "seconds", ws->seconds),
                       CLI_JSON);
    } else {
        printf("agent synth (best of %d, %d positions per user): %lld trajectories -> %s (%lld positions "
               "skipped), stage-2 reward %.3f (first candidate %.3f), target in the top-10 %.1f%%, retrieved "
               "%.1f%%, %.2f tool calls each, %.1f s\n",
               wo->best_of, wo->positions, (long long)ws->written, out, (long long)ws->skipped, ws->mean_reward,
               ws->mean_first_reward, 100.0 * ws->hit_rate, 100.0 * ws->retrieved_rate, ws->mean_calls, ws->seconds);
    }
}

static void print_synth(const agent_synth_run_result *res, const char *out, int json) {
    double wn = res->written ? (double)res->written : 1.0;
    if (json) {
        cli_print_json(json_pack("{s:o, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "out", dr_json_text(out, (size_t)-1),
                                 "written", (json_int_t)res->written, "skipped", (json_int_t)res->skipped, "rerank_form",
                                 (json_int_t)res->rerank_form, "mean_calls", (double)res->calls / wn, "target_in_top10",
                                 (double)res->hits / wn, "target_in_text", (double)res->text_hits / wn, "seconds",
                                 res->seconds),
                       CLI_JSON);
    } else {
        printf("agent synth: %lld trajectories -> %s (%lld users skipped, %lld drawn for the rerank form), %.2f tool "
               "calls each, target in the top-10 %.1f%%, in the text %.1f%%, %.1f s\n",
               (long long)res->written, out, (long long)res->skipped, (long long)res->rerank_form,
               (double)res->calls / wn, 100.0 * (double)res->hits / wn, 100.0 * (double)res->text_hits / wn,
               res->seconds);
    }
}

static int cmd_synth(int argc, char **argv) {
    const char *data_path = NULL, *trm_path = NULL, *out = NULL;
    int users = 0, chat = 0, tool_k = AGENT_TOOL_K, max_hist = AGENT_MAX_HIST, json = 0, quiet = 0;
    int64_t seed = 1;
    double rerank_share = 0.0;
    int best_of = 0, positions = 1, varied = 0, order_by_target = 1, n_calls = 0, anchor = 0, anchor_last = 0;
    cli_opt opts[] = {
        {"--best-of", CLI_INT, &best_of,
         "outcome-aware warm start: keep the best of N candidates per training position by the stage-2 reward (0 = off)"},
        {"--positions", CLI_INT, &positions, "with --best-of: training positions per user (1 = the last train item)"},
        {"--varied", CLI_FLAG, &varied, "draw preferences from the wider pool of kinds (docs/warmstart.md)"},
        {"--order-by-target", CLI_INT, &order_by_target,
         "with --best-of: 1 puts the known next item first in the answer when retrieved (1)"},
        {"--calls", CLI_INT, &n_calls, "tool calls per trajectory, 1..3 (0 = drawn)"},
        {"--anchor", CLI_FLAG, &anchor, "first an open call (\"" AGENT_PREF_ANY "\": the TRM's own list) that leads the answer"},
        {"--anchor-last", CLI_FLAG, &anchor_last, "as --anchor, with the open call asked last (docs/warmstart.md)"},
        {"--data", CLI_STR, &data_path, "dataset (.gguf)"},
        {"--trm", CLI_STR, &trm_path, "preference-aware TRM checkpoint (.gguf)"},
        {"--out", CLI_STR, &out, "trajectories, JSON lines {prompt, completion, mask}"},
        {"--rerank-share", CLI_FLOAT, &rerank_share,
         "share of users written in the rerank form: one forced call with the history preference (0)"},
        {"--users", CLI_INT, &users, "training users to sample (0 = all)"},
        {"--seed", CLI_I64, &seed, "random seed (1)"},
        {"--chat", CLI_FLAG, &chat, "ChatML prompts (default: plain base-model prompts)"},
        {"--tool-k", CLI_INT, &tool_k, "items per tool call (20)"},
        {"--max-hist", CLI_INT, &max_hist, "history items shown in the prompt (20)"},
        CLI_QUIET_JSON_OPTS(quiet, json),
    };
    int r;
    if (cli_parse_opts("deeprec agent synth --data DATA.gguf --trm TRM.gguf --out TRAJ.jsonl [--users N] [--seed S]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data_path || !trm_path || !out) return cli_usage_error("agent synth needs --data, --trm and --out");
    if (users < 0 || tool_k < AGENT_N_REC || max_hist < 1)
        return cli_usage_error("agent synth: --users >= 0, --tool-k >= %d, --max-hist >= 1", AGENT_N_REC);
    if (!(rerank_share >= 0.0 && rerank_share <= 1.0))
        return cli_usage_error("agent synth: --rerank-share must be in [0, 1]");
    if (best_of < 0 || positions < 1 || n_calls < 0 || n_calls > 3)
        return cli_usage_error("agent synth: --best-of >= 0, --positions >= 1, --calls in 0..3");
    if (best_of > 0 && rerank_share > 0.0)
        return cli_usage_error("agent synth: --rerank-share does not combine with --best-of");
    if (anchor_last) anchor = 2;
    if (cli_claim_output(out, (const char *[]){data_path, trm_path}, 2)) return 1;
    cli_inputs in;
    agent_catalog *cat = NULL;
    agent_tool tool = {0};
    int rc;
    if ((rc = cli_inputs_load(&in, data_path, trm_path, NULL, NULL)) || (rc = agent_catalog_build(&in.data, &cat)) ||
        (rc = agent_tool_trm_new(&tool, in.trm, 1)))
        goto done;
    if (best_of > 0) {
        rl_warmstart_opts wo;
        rl_warmstart_opts_default(&wo);
        wo.synth.chat = chat;
        wo.synth.max_hist = max_hist;
        wo.synth.tool_k = tool_k;
        wo.synth.varied = varied;
        wo.synth.n_calls = n_calls;
        wo.synth.anchor = anchor;
        wo.synth.seed = (uint64_t)seed;
        wo.positions = positions;
        wo.best_of = best_of;
        wo.order_by_target = order_by_target != 0;
        wo.users = users;
        wo.progress = quiet || json ? NULL : stderr;
        rl_warmstart_stats ws;
        if (!(rc = rl_warmstart_synth(&in.data, in.trm, cat, &tool, &wo, out, &ws))) print_best_of(&wo, &ws, out, json);
        goto done;
    }
    agent_synth_run_opts ro = {{.chat = chat, .max_hist = max_hist, .tool_k = tool_k, .varied = varied, .n_calls = n_calls, .anchor = anchor}, users, (uint64_t)seed, rerank_share,
                               synth_rerank_pref, NULL, quiet || json ? NULL : stderr};
    agent_synth_run_result res;
    if (!(rc = agent_synth_run(&in.data, cat, &tool, &ro, out, &res))) print_synth(&res, out, json);
done: /* rc != 0 on the failure paths */
    agent_tool_trm_free(&tool);
    agent_catalog_free(cat);
    cli_inputs_free(&in);
    return rc ? cli_fail() : 0;
}
CLI_COMMAND(agent_synth, "agent synth", "build protocol-valid warm-start trajectories with the TRM (JSON lines)",
            cmd_synth)

/* ------------------------------------------------------------------ recommend */
static json_t *items_json(const agent_catalog *c, const int32_t *ids, const float *scores, int n, int32_t target) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_pack("{s:i, s:o}", "id", (int)ids[i], "title",
                              dr_json_text(agent_catalog_title(c, ids[i]), (size_t)-1));
        if (scores) json_object_set_new(o, "score", json_real(scores[i]));
        if (ids[i] == target) json_object_set_new(o, "target", json_true());
        json_array_append_new(a, o);
    }
    return a;
}

static const char *seg_name(int k) { return k == AGENT_SEG_PROMPT ? "prompt" : k == AGENT_SEG_GEN ? "model" : "tool"; }

/* What recommend shows of one rolled-out episode, for both printers. */
typedef struct rec_view {
    const dr_dataset *d;
    const agent_catalog *cat;
    const agent_episode *ep;
    const char *split;
    int32_t u, target;
    const int32_t *hist;
    int64_t n_hist, shown0; /* the prompt shows hist[shown0..] */
    int constrained, show_prompt;
    double secs;
    const char *llm_url; /* NULL: a local model */
} rec_view;

static void recommend_json(const rec_view *v) {
    const agent_catalog *cat = v->cat;
    const agent_episode *ep = v->ep;
    int32_t target = v->target;
    json_t *j = json_object();
    json_object_set_new(j, "user", dr_json_text(v->d->user_ids[v->u], (size_t)-1));
    json_object_set_new(j, "split", json_string(v->split));
    json_object_set_new(j, "target", target ? json_pack("{s:i, s:o}", "id", (int)target, "title",
                                                        dr_json_text(agent_catalog_title(cat, target), (size_t)-1))
                                            : json_null());
    json_object_set_new(j, "history", items_json(cat, v->hist + v->shown0, NULL, (int)(v->n_hist - v->shown0), target));
    json_t *segs = json_array();
    for (int i = 1; i < ep->n_segs; i++) {
        const agent_segment *s = &ep->segs[i];
        json_array_append_new(segs, json_pack("{s:s, s:o, s:i}", "kind", seg_name(s->kind), "text",
                                              dr_json_text(ep->text + s->chr_begin, (size_t)(s->chr_end - s->chr_begin)),
                                              "tokens", (int)(s->tok_end - s->tok_begin)));
    }
    json_object_set_new(j, "segments", segs);
    json_t *calls = json_array();
    for (int i = 0; i < ep->n_calls; i++) {
        const agent_call *c = &ep->calls[i];
        json_array_append_new(calls, json_pack("{s:o, s:o}", "preference", dr_json_text(c->preference, (size_t)-1),
                                               "items",
                                               items_json(cat, c->items, c->scores, c->n_items, target)));
    }
    json_object_set_new(j, "calls", calls);
    json_t *ans = json_array();
    for (int i = 0; i < ep->answer.n_lines; i++) {
        static const char *const how[] = {"none", "exact", "fallback"};
        json_t *o = json_pack("{s:o, s:i, s:s}", "line", dr_json_text(ep->answer.lines[i], (size_t)-1), "id",
                              (int)ep->resolved[i], "how",
                              how[ep->how[i]]);
        if (ep->resolved[i])
            json_object_set_new(o, "title", dr_json_text(agent_catalog_title(cat, ep->resolved[i]), (size_t)-1));
        json_array_append_new(ans, o);
    }
    json_object_set_new(j, "answer", ans);
    json_object_set_new(j, "outcome", json_string(agent_outcome_name(ep->outcome)));
    json_object_set_new(j, "format", json_string(agent_format_name(ep->format)));
    json_object_set_new(j, "hit_rank", json_integer(ep->hit_rank));
    json_object_set_new(j, "hit_rank_substring", json_integer(ep->hit_rank_substr));
    json_object_set_new(j, "generated_tokens", json_integer(ep->n_generated));
    json_object_set_new(j, "constrain", json_boolean(v->constrained));
    if (v->llm_url) json_object_set_new(j, "llm_url", json_string(v->llm_url));
    json_object_set_new(j, "seconds", json_real(v->secs));
    cli_print_json(j, CLI_JSON);
}

/* The model's turns and the tool calls between them, in order. */
static void recommend_text_turns(const rec_view *v) {
    const agent_episode *ep = v->ep;
    int call = 0;
    for (int i = 1; i < ep->n_segs; i++) {
        const agent_segment *s = &ep->segs[i];
        if (s->kind == AGENT_SEG_GEN) {
            char *txt = strndup(ep->text + s->chr_begin, (size_t)(s->chr_end - s->chr_begin));
            printf("\n== model (%d tokens)\n%s\n", (int)(s->tok_end - s->tok_begin), txt ? cli_text(txt, 1) : "");
            free(txt);
        } else if (s->kind == AGENT_SEG_TOOL && call < ep->n_calls) {
            const agent_call *c = &ep->calls[call++];
            printf("\n== tool call %d: \"%s\" -> %d items\n", call, cli_text(c->preference, 0), c->n_items);
            for (int k = 0; k < c->n_items; k++)
                printf("  %s%2d. %s (id %d, score %.3f)\n", c->items[k] == v->target ? "* " : "  ", k + 1,
                       cli_text(agent_catalog_title(v->cat, c->items[k]), 0), (int)c->items[k], c->scores[k]);
        }
    }
}

static void recommend_text(const rec_view *v) {
    const agent_catalog *cat = v->cat;
    const agent_episode *ep = v->ep;
    int32_t target = v->target;
    printf("user %s (%s split), %lld history items; held-out target: %s\n", cli_text(v->d->user_ids[v->u], 0), v->split,
           (long long)v->n_hist, target ? cli_text(agent_catalog_title(cat, target), 0) : "(none)");
    if (v->show_prompt) {
        char *txt = strndup(ep->text, (size_t)ep->prompt_len);
        printf("\n== prompt\n%s\n", txt ? cli_text(txt, 1) : "");
        free(txt);
    }
    printf("\n== history (last %lld, oldest first)\n", (long long)(v->n_hist - v->shown0));
    for (int64_t i = v->shown0; i < v->n_hist; i++) {
        const char *cats = agent_catalog_categories(cat, v->hist[i]);
        printf("%3lld. %s%s%s%s\n", (long long)(i - v->shown0 + 1), cli_text(agent_catalog_title(cat, v->hist[i]), 0),
               *cats ? "  [" : "", cli_text(cats, 0), *cats ? "]" : "");
    }
    recommend_text_turns(v);
    printf("\n== final list\n");
    for (int i = 0; i < ep->answer.n_lines; i++) {
        static const char *const how[] = {"unresolved", "exact", "fallback"};
        printf("  %s%2d. %s -> ", ep->resolved[i] && ep->resolved[i] == target ? "* " : "  ", i + 1,
               cli_text(ep->answer.lines[i], 0));
        if (ep->resolved[i])
            printf("id %d (%s)\n", (int)ep->resolved[i], how[ep->how[i]]);
        else
            printf("unresolved\n");
    }
    printf("\noutcome %s, format %s, %d tool calls, %d generated tokens, %.2f s; target rank %d (substring rule %d)"
           "  [* = held-out target; ranks 1-based, 0 = missed]\n",
           agent_outcome_name(ep->outcome), agent_format_name(ep->format), ep->n_calls, (int)ep->n_generated, v->secs,
           ep->hit_rank + 1, ep->hit_rank_substr + 1);
}

static int cmd_recommend(int argc, char **argv) {
    const char *data_path = NULL, *trm_path = NULL, *llm_path = NULL, *tok_path = NULL, *user = NULL,
               *split = "test";
    int json = 0, ctx = 0, show_prompt = 0;
    cli_rollout ro;
    cli_rollout_init(&ro);
    cli_llm_url url = CLI_LLM_URL_DEFAULT;
    int constrained;
    double temp = 0.0, top_p = 1.0;
    int64_t seed = 1;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data_path, "dataset (.gguf)"},
        {"--trm", CLI_STR, &trm_path, "preference-aware TRM (.gguf)"},
        {"--llm", CLI_STR, &llm_path, "policy model (.gguf, qwen2/llama)"},
        {"--tokenizer", CLI_STR, &tok_path, "tokenizer when the model has none (GGUF or tokenizer.json)"},
        {"--user", CLI_STR, &user, "user id (as in the source data; '#N' = the N-th user)"},
        {"--split", CLI_STR, &split, "test (history seq[:-1]) | valid (seq[:-2])"},
        CLI_ROLLOUT_FLAGS(ro),
        CLI_ROLLOUT_TURN_FLAG(ro),
        {"--temp", CLI_FLOAT, &temp, "sampling temperature (0 = greedy)"},
        {"--top-p", CLI_FLOAT, &top_p, "nucleus sampling mass (1 = off)"},
        {"--seed", CLI_I64, &seed, "sampling seed (1)"},
        {"--ctx", CLI_INT, &ctx, "context cap in tokens (0 = min(model, 4096))"},
        {"--show-prompt", CLI_FLAG, &show_prompt, "print the whole prompt too"},
        {"--json", CLI_FLAG, &json, "one JSON object on stdout"},
        CLI_LLM_URL_OPTS(url, "--api-key-env"),
    };
    int r;
    if (cli_parse_opts("deeprec recommend --data DATA.gguf --trm TRM.gguf --llm M.gguf --user U [--json]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data_path || !trm_path || !(llm_path || url.url) || !user)
        return cli_usage_error("recommend needs --data, --trm, --llm (or --llm-url) and --user");
    int split_id = dr_data_split_from_name(split);
    if (split_id != DR_SPLIT_TEST && split_id != DR_SPLIT_VALID) return cli_usage_error("--split must be test or valid");
    if ((r = cli_llm_url_check(&url, llm_path != NULL, ro.constrain, json, &constrained))) return r;
    if (url.url) ro.constrain = "off";
    if (cli_rollout_finish(&ro)) return 2;
    cli_inputs in;
    agent_catalog *cat = NULL;
    agent_tool tool = {0};
    agent_model model = {0};
    agent_episode *ep = NULL;
    rec_view v = {&in.data, NULL, NULL, split, -1, 0, NULL, 0, 0, ro.ro.constrain_titles, show_prompt, 0, url.url};
    int rc;
    if ((rc = cli_inputs_load(&in, data_path, trm_path, llm_path, tok_path)) ||
        (rc = dr_data_user_lookup(&in.data, user, -1, data_path, &v.u)))
        goto done;
    v.target = dr_data_split_history(&in.data, v.u, split_id, &v.hist, &v.n_hist);
    if ((rc = agent_catalog_build(&in.data, &cat)) || (rc = agent_tool_trm_new(&tool, in.trm, 1))) goto done;
    agent_llm_opts lo = {1, ctx, (float)temp, 0, (float)top_p, (uint64_t)seed, 0};
    if (url.url && cli_llm_url_model(&url, temp, top_p, (uint64_t)seed, ro.ro.max_turn_tokens, &model)) {
        rc = -1; /* printed */
        goto done;
    }
    if (!url.url && (rc = agent_model_llm_new(&model, in.llm, in.tok, &lo))) goto done;
    agent_request rq = {v.u, v.hist, v.n_hist, v.target, NULL};
    double t0 = dr_now();
    if ((rc = agent_rollout(&model, &tool, cat, &rq, 1, &ro.ro, &ep))) goto done;
    v.secs = dr_now() - t0;
    v.cat = cat, v.ep = ep;
    v.shown0 = v.n_hist > ro.ro.max_hist ? v.n_hist - ro.ro.max_hist : 0;
    if (json) recommend_json(&v);
    else recommend_text(&v);
done: /* rc != 0 on the failure paths */
    agent_episodes_free(ep, 1);
    if (url.url) serve_remote_model_free(&model);
    else agent_model_llm_free(&model);
    agent_tool_trm_free(&tool);
    agent_catalog_free(cat);
    cli_inputs_free(&in);
    return rc < 0 ? 1 : rc ? cli_fail() : 0;
}
CLI_COMMAND(recommend, "recommend", "one user's whole DeepRec trace (history, thoughts, tool calls, final list)",
            cmd_recommend)
