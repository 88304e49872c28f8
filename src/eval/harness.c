/* The evaluation harness: user selection, metric accumulation over episodes, and the run
 * of one mode (deeprec / trm / rerank / direct / teacher) over the selected test users. */
#include "deeprec/metrics.h"
#include "deeprec/evaluate.h"
#include "deeprec/data.h"
#include "deeprec/dist.h"
#include "deeprec/llm.h"
#include "deeprec/trm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[EVAL_N_MODES] = {"deeprec", "trm", "rerank", "direct", "teacher"};

const char *eval_mode_name(int mode) { return mode >= 0 && mode < EVAL_N_MODES ? mode_names[mode] : "?"; }

int eval_mode_from_name(const char *name) {
    for (int i = 0; name && i < EVAL_N_MODES; i++)
        if (!strcmp(name, mode_names[i])) return i;
    return -1;
}

int eval_mode_uses_llm(int mode) { return mode != EVAL_TRM && mode != EVAL_TEACHER; }

/* ---------------------------------------------------------------- accumulation */
void eval_acc_init(eval_acc *a) { memset(a, 0, sizeof *a); }

static void add_rank(eval_acc *a, int rule, int rank) {
    static const int ks_recall[3] = {1, 5, 10}, ks_ndcg[2] = {5, 10};
    if (rank < 0 || rank >= AGENT_N_REC) return; /* a miss adds zeros */
    for (int k = 0; k < 3; k++)
        if (rank < ks_recall[k]) a->recall[rule][k] += 1.0;
    for (int k = 0; k < 2; k++)
        a->ndcg[rule][k] += dr_metrics_ndcg_at(rank + 1, ks_ndcg[k]);
    a->mrr[rule] += 1.0 / ((double)rank + 1.0);
}

void eval_acc_add_ranks(eval_acc *a, int rank_exact, int rank_substr) {
    a->n_episodes++;
    add_rank(a, EVAL_RULE_EXACT, rank_exact);
    add_rank(a, EVAL_RULE_SUBSTR, rank_substr);
}

void eval_acc_add_episode(eval_acc *a, const agent_episode *e) {
    int fin = e->outcome == AGENT_FINISHED;
    eval_acc_add_ranks(a, fin ? e->hit_rank : -1, fin ? e->hit_rank_substr : -1);
    if (e->outcome >= 0 && e->outcome < AGENT_N_OUTCOMES) a->outcomes[e->outcome]++;
    a->format_valid += e->format == AGENT_FMT_OK;
    if (e->format > AGENT_FMT_OK && e->format < AGENT_FMT_N) a->format_fails[e->format]++;
    a->with_call += e->n_calls > 0;
    a->answer_forced += e->answer_forced != 0;
    a->tool_calls += e->n_calls;
    a->gen_tokens += e->n_generated;
}

void eval_acc_merge(eval_acc *a, const eval_acc *b) {
    a->n_episodes += b->n_episodes;
    for (int r = 0; r < EVAL_N_RULES; r++) {
        for (int k = 0; k < 3; k++) a->recall[r][k] += b->recall[r][k];
        for (int k = 0; k < 2; k++) a->ndcg[r][k] += b->ndcg[r][k];
        a->mrr[r] += b->mrr[r];
    }
    for (int i = 0; i < AGENT_N_OUTCOMES; i++) a->outcomes[i] += b->outcomes[i];
    a->format_valid += b->format_valid;
    for (int i = 0; i < AGENT_FMT_N; i++) a->format_fails[i] += b->format_fails[i];
    a->with_call += b->with_call;
    a->answer_forced += b->answer_forced;
    a->tool_calls += b->tool_calls;
    a->gen_tokens += b->gen_tokens;
}

void eval_acc_finish(const eval_acc *a, int mode, int64_t n_users, int samples, double seconds, eval_result *r) {
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->llm = eval_mode_uses_llm(mode);
    r->n_users = n_users;
    r->n_episodes = a->n_episodes;
    r->samples = samples;
    r->seconds = seconds;
    r->seconds_per_user = n_users > 0 ? seconds / (double)n_users : 0.0;
    memcpy(r->outcomes, a->outcomes, sizeof r->outcomes);
    memcpy(r->format_fails, a->format_fails, sizeof r->format_fails);
    if (a->n_episodes <= 0) return;
    double n = (double)a->n_episodes;
    for (int q = 0; q < EVAL_N_RULES; q++) {
        for (int k = 0; k < 3; k++) r->recall[q][k] = a->recall[q][k] / n;
        for (int k = 0; k < 2; k++) r->ndcg[q][k] = a->ndcg[q][k] / n;
        r->mrr[q] = a->mrr[q] / n;
    }
    for (int q = 0; q < EVAL_N_RULES; q++) {
        const double v[EVAL_N_METRICS] = {r->recall[q][0], r->recall[q][1], r->recall[q][2],
                                          r->ndcg[q][0],   r->ndcg[q][1],   r->mrr[q]};
        for (int m = 0; m < EVAL_N_METRICS; m++) r->ci[q][m] = (eval_ci){v[m], v[m], v[m]};
    }
    r->format_valid_rate = (double)a->format_valid / n;
    r->with_call_rate = (double)a->with_call / n;
    r->answer_forced_rate = (double)a->answer_forced / n;
    r->mean_tool_calls = (double)a->tool_calls / n;
    r->mean_gen_tokens = (double)a->gen_tokens / n;
}

void eval_result_free(eval_result *r) {
    if (!r) return;
    free(r->users);
    r->users = NULL;
    for (int q = 0; q < EVAL_N_RULES; q++) {
        free(r->rank[q]);
        r->rank[q] = NULL;
    }
}

/* ---------------------------------------------------------------- options, users */
void eval_opts_default(eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = EVAL_DEEPREC;
    o->seed = 1;
    o->samples = 1;
    agent_rollout_opts_default(&o->rollout);
    o->batch = 16;
    o->bootstrap = 1000;
    o->bootstrap_seed = 1;
}

/* ---------------------------------------------------------------- running */
/* Where a run puts its episodes: the sums, and the ranks in episode order. */
typedef struct sink {
    eval_acc acc;
    int *rank[EVAL_N_RULES];
    int64_t n, cap;
} sink;

static void sink_ranks(sink *s, int rank_exact, int rank_substr) {
    if (s->n >= s->cap) return; /* cannot happen: cap = users x samples */
    s->rank[EVAL_RULE_EXACT][s->n] = rank_exact;
    s->rank[EVAL_RULE_SUBSTR][s->n] = rank_substr;
    s->n++;
}

/* The same ranks for each of the user's samples (trm and teacher are deterministic). */
static void sink_user(sink *s, int samples, int rank_exact, int rank_substr) {
    for (int g = 0; g < samples; g++) {
        eval_acc_add_ranks(&s->acc, rank_exact, rank_substr);
        sink_ranks(s, rank_exact, rank_substr);
    }
}

/* The direct baseline has no tool: a call the model still makes fails (recall_error). */
static int no_tool(void *ctx, const int32_t *hist, int64_t n_hist, const char *pref, int k, int32_t *items,
                   float *scores, int *n_out) {
    *n_out = 0;
    return dr_error(DR_ERR_UNSUPPORTED, "the direct baseline has no retrieval tool");
}

/* The two modes without a policy score each user's list from the TRM tool alone: the TRM's
 * own list, or (teacher) the synthesiser's rule over the TRM's lists. One loop serves both so
 * that they walk the users, split and samples the same way. */
static int run_tool_only(const eval_inputs *in, const eval_opts *o, const int32_t *users, int n, sink *out) {
    const int teacher = o->mode == EVAL_TEACHER;
    agent_synth_opts so = {0};
    if (o->synth) {
        so = *o->synth;
    } else {
        so.chat = o->rollout.chat;
        so.max_hist = o->rollout.max_hist;
        so.tool_k = o->rollout.tool_k;
        so.seed = o->seed;
    }
    dr_rng base;
    dr_rng_seed(&base, so.seed);
    agent_tool tool = {0};
    int rc = agent_tool_trm_new(&tool, in->trm, 1);
    if (rc) return rc;
    dr_progress p;
    dr_progress_start(&p, o->progress, teacher ? "eval teacher" : "eval trm", n, "users");
    for (int i = 0; i < n && !rc; i++) {
        const int32_t *hist;
        int64_t n_hist;
        int32_t target = dr_data_split_history(in->data, users[i], o->split, &hist, &n_hist);
        int re, rs;
        if (teacher) {
            /* per user, not per position: the same user gets the same list in any selection */
            dr_rng ur = dr_rng_split(&base, (uint64_t)users[i]);
            so.seed = dr_rng_u64(&ur);
            rc = eval_teacher_one(in->catalog, &tool, hist, n_hist, target, &so, &re, &rs);
        } else {
            rc = eval_trm_one(in->catalog, &tool, hist, n_hist, target, &re, &rs);
        }
        if (rc) break;
        sink_user(out, o->samples > 0 ? o->samples : 1, re, rs);
        dr_progress_update(&p, i + 1);
    }
    dr_progress_finish(&p);
    agent_tool_trm_free(&tool);
    return rc;
}

static int run_llm(const eval_inputs *in, const eval_opts *o, const int32_t *users, int n, int64_t first, sink *out) {
    int G = o->samples > 0 ? o->samples : 1;
    int slots = o->batch > 0 ? o->batch : 16;
    if (slots < G) slots = G;
    agent_model model = {0};
    agent_tool tool = {0};
    int have_trm_tool = 0;
    agent_request *req = NULL;
    char **prefs = NULL;
    int rc;
    if (o->mode == EVAL_DIRECT) {
        tool.ctx = NULL;
        tool.retrieve = no_tool;
    } else {
        if (!in->trm) return dr_error(DR_ERR_ARG, "eval %s: a TRM is needed", eval_mode_name(o->mode));
        if ((rc = agent_tool_trm_new(&tool, in->trm, 1))) return rc;
        have_trm_tool = 1;
    }
    /* Under MPI this rank's users come after `first` users of other ranks: its sampling
     * streams start after theirs (exact unless an earlier user's episodes ended before
     * sampling, e.g. a prompt over the context: docs/distributed.md). */
    agent_llm_opts lo = {slots, o->n_ctx, o->temperature, o->top_k, o->top_p, o->seed, (uint64_t)first * (uint64_t)G};
    if (!in->model && (rc = agent_model_llm_new(&model, in->llm, in->tok, &lo))) goto done;
    const agent_model *am = in->model ? in->model : &model;
    int chunk = o->chunk > 0 ? o->chunk : 1024;
    if (chunk < 1) chunk = 1;
    req = dr_calloc((size_t)(n > 0 ? n : 1), sizeof *req);
    prefs = dr_calloc((size_t)(n > 0 ? n : 1), sizeof *prefs);
    if (!req || !prefs) {
        rc = dr_error_code();
        goto done;
    }
    for (int i = 0; i < n; i++) {
        agent_request *q = &req[i];
        q->user = users[i];
        q->target = dr_data_split_history(in->data, users[i], o->split, &q->hist, &q->n_hist);
        if (o->mode == EVAL_RERANK) {
            if ((rc = eval_history_preference(in->catalog, q->hist, q->n_hist, &prefs[i]))) goto done;
            q->forced_preference = prefs[i];
        }
    }
    agent_rollout_opts ro = o->rollout;
    /* rerank is the LLM ranking one list: keeping that list's order would leave it nothing to rank */
    if (o->mode == EVAL_RERANK) ro.max_calls = 1, ro.constrain_order = 0;
    ro.samples = G;
    ro.progress = o->progress;
    ro.direct = o->mode == EVAL_DIRECT;
    for (int b = 0; b < n; b += chunk) {
        int m = n - b < chunk ? n - b : chunk;
        agent_episode *eps = NULL;
        if ((rc = agent_rollout(am, &tool, in->catalog, req + b, m, &ro, &eps))) goto done;
        for (int i = 0; i < m * G; i++) {
            /* request r's samples at [r G, (r + 1) G): the sink's episode order */
            int fin = eps[i].outcome == AGENT_FINISHED;
            eval_acc_add_episode(&out->acc, &eps[i]);
            sink_ranks(out, fin ? eps[i].hit_rank : -1, fin ? eps[i].hit_rank_substr : -1);
        }
        agent_episodes_free(eps, m * G);
    }
done:
    if (prefs)
        for (int i = 0; i < n; i++) free(prefs[i]);
    free(prefs);
    free(req);
    agent_model_llm_free(&model);
    if (have_trm_tool) agent_tool_trm_free(&tool);
    return rc;
}

/* Under MPI: every rank ran its share of the users into `s`; after this every rank holds the
 * whole run's sink, the sums rebuilt from the ranks in episode order (the order one process
 * adds them in), so the metrics are bit for bit those of one process. */
static int gather_sink(sink *s, int n, int G, double *secs) {
    const int size = dr_dist_size();
    int64_t *counts = dr_calloc((size_t)size, sizeof *counts);
    int *all[EVAL_N_RULES] = {0};
    int rc = DR_OK;
    for (int q = 0; q < EVAL_N_RULES; q++) all[q] = dr_calloc((size_t)n * G + 1, sizeof(int));
    if (!counts || !all[EVAL_RULE_EXACT] || !all[EVAL_RULE_SUBSTR]) {
        rc = dr_error_code();
        goto out;
    }
    for (int r = 0; r < size; r++) {
        int64_t lo, hi;
        dr_dist_share_of(n, r, size, &lo, &hi);
        counts[r] = (hi - lo) * G;
    }
    _Static_assert(sizeof(int) == sizeof(int32_t), "ranks are gathered as int32");
    for (int q = 0; q < EVAL_N_RULES && !rc; q++)
        rc = dr_dist_allgather_i32((const int32_t *)s->rank[q], (int32_t *)all[q], counts);
    if (rc) goto out;
    /* the counters are integers: summed in any order they are exact */
    eval_acc *a = &s->acc;
    int64_t c[AGENT_N_OUTCOMES + AGENT_FMT_N + 5], k = 0;
    for (int i = 0; i < AGENT_N_OUTCOMES; i++) c[k++] = a->outcomes[i];
    for (int i = 0; i < AGENT_FMT_N; i++) c[k++] = a->format_fails[i];
    c[k++] = a->format_valid;
    c[k++] = a->with_call;
    c[k++] = a->answer_forced;
    c[k++] = a->tool_calls;
    c[k++] = a->gen_tokens;
    if ((rc = dr_dist_sum_i64(c, (size_t)k)) || (rc = dr_dist_max_f64(secs, 1))) goto out;
    eval_acc_init(a);
    for (int64_t i = 0; i < (int64_t)n * G; i++) eval_acc_add_ranks(a, all[EVAL_RULE_EXACT][i], all[EVAL_RULE_SUBSTR][i]);
    k = 0;
    for (int i = 0; i < AGENT_N_OUTCOMES; i++) a->outcomes[i] = c[k++];
    for (int i = 0; i < AGENT_FMT_N; i++) a->format_fails[i] = c[k++];
    a->format_valid = c[k++];
    a->with_call = c[k++];
    a->answer_forced = c[k++];
    a->tool_calls = c[k++];
    a->gen_tokens = c[k++];
    for (int q = 0; q < EVAL_N_RULES; q++) {
        free(s->rank[q]);
        s->rank[q] = all[q];
        all[q] = NULL;
    }
    s->n = s->cap = (int64_t)n * G;
out:
    free(counts);
    for (int q = 0; q < EVAL_N_RULES; q++) free(all[q]);
    return rc;
}

int eval_run(const eval_inputs *in, const eval_opts *o, eval_result *r) {
    memset(r, 0, sizeof *r);
    if (!in || !in->data || !in->catalog) return dr_error(DR_ERR_ARG, "eval_run: missing dataset or catalog");
    if (o->mode < 0 || o->mode >= EVAL_N_MODES) return dr_error(DR_ERR_ARG, "eval_run: unknown mode %d", o->mode);
    if ((o->mode == EVAL_TRM || o->mode == EVAL_TEACHER) && !in->trm)
        return dr_error(DR_ERR_ARG, "eval %s: a TRM is needed (--trm)", eval_mode_name(o->mode));
    if (o->bootstrap < 0) return dr_error(DR_ERR_ARG, "eval: bootstrap resamples must be >= 0, got %d", o->bootstrap);
    if (o->split != DR_SPLIT_TEST && o->split != DR_SPLIT_VALID)
        return dr_error(DR_ERR_ARG, "eval: split %d (need DR_SPLIT_TEST or DR_SPLIT_VALID)", o->split);
    if (eval_mode_uses_llm(o->mode) && !in->llm && !in->model)
        return dr_error(DR_ERR_ARG, "eval %s: an LLM is needed (--llm or --llm-url)", eval_mode_name(o->mode));
    if (o->mode != EVAL_TRM) { /* the agent's rules, before the users are drawn */
        agent_rollout_opts ro = o->rollout;
        ro.direct = o->mode == EVAL_DIRECT;
        int rc = agent_rollout_opts_check(&ro);
        if (rc) return rc;
    }
    int32_t *users;
    int n;
    int rc = dr_data_draw_users(in->data, o->users, o->seed, &users, &n);
    if (rc) return rc;
    int G = o->samples > 0 ? o->samples : 1;
    /* under MPI each rank runs its share of the users (dist.h's rule) */
    int64_t lo = 0, hi = n;
    dr_dist_share(n, &lo, &hi);
    sink out = {0};
    eval_acc_init(&out.acc);
    out.cap = (hi - lo) * G;
    for (int q = 0; q < EVAL_N_RULES; q++) out.rank[q] = dr_calloc((size_t)(out.cap > 0 ? out.cap : 1), sizeof(int));
    if (!out.rank[EVAL_RULE_EXACT] || !out.rank[EVAL_RULE_SUBSTR]) {
        rc = dr_error_code();
        goto fail;
    }
    double t0 = dr_now();
    if (o->mode == EVAL_TRM || o->mode == EVAL_TEACHER) rc = run_tool_only(in, o, users + lo, (int)(hi - lo), &out);
    else rc = run_llm(in, o, users + lo, (int)(hi - lo), lo, &out);
    double secs = dr_now() - t0;
    if (rc) goto fail;
    if (out.n != out.cap) {
        rc = dr_error(DR_ERR_INTERNAL, "eval: %lld episodes for %d users x %d samples", (long long)out.n,
                      (int)(hi - lo), G);
        goto fail;
    }
    if (dr_dist_size() > 1 && (rc = gather_sink(&out, n, G, &secs))) goto fail;
    eval_acc_finish(&out.acc, o->mode, n, G, secs, r);
    r->users = users;
    for (int q = 0; q < EVAL_N_RULES; q++) r->rank[q] = out.rank[q];
    return eval_result_bootstrap(r, o->bootstrap, o->bootstrap_seed);
fail:
    free(users);
    for (int q = 0; q < EVAL_N_RULES; q++) free(out.rank[q]);
    return rc;
}
