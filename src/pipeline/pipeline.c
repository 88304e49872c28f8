/* deeprec pipeline: the stage runner, the settings keys beside every output, reuse / resume,
 * per-stage times (see include/deeprec/pipeline.h for the rules). */
#include "pipeline/internal.h"
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* stages.c */
int pl_stage_trm_sasrec(pl_run *p);
int pl_stage_trm_pref(pl_run *p);
int pl_stage_synth(pl_run *p);
int pl_stage_tokenizer(pl_run *p);
int pl_stage_init(pl_run *p);
int pl_stage_sft(pl_run *p);
int pl_stage_rl1(pl_run *p);
int pl_stage_rl2(pl_run *p);
int pl_stage_eval(pl_run *p);

static const char *const stage_names[PIPELINE_N_STAGES] = {"trm_sasrec", "trm_pref", "synth", "tokenizer", "init",
                                                           "sft",        "rl1",      "rl2",   "eval",      "report"};

const char *pipeline_stage_name(int s) { return s >= 0 && s < PIPELINE_N_STAGES ? stage_names[s] : "?"; }

int pipeline_stage_from_name(const char *name) {
    for (int i = 0; name && i < PIPELINE_N_STAGES; i++)
        if (!strcmp(stage_names[i], name)) return i;
    return -1;
}

void pipeline_opts_default(pipeline_opts *o) {
    memset(o, 0, sizeof *o);
    o->budget = pipeline_budget_get("demo");
    o->kill_at = -1;
    o->until = -1;
}

/* ------------------------------------------------------------------ keys */
void pl_key_init(pl_key *k, const char *step) {
    k->n = 0;
    k->s[0] = 0;
    pl_key_add(k, "step %s\n", step);
}

void pl_key_add(pl_key *k, const char *fmt, ...) {
    if (k->n >= sizeof k->s - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(k->s + k->n, sizeof k->s - k->n, fmt, ap);
    va_end(ap);
    if (n > 0) k->n = k->n + (size_t)n < sizeof k->s ? k->n + (size_t)n : sizeof k->s - 1;
}

int pl_key_input(pl_key *k, const char *path) {
    struct stat st;
    if (stat(path, &st)) return dr_error_at(DR_ERR_IO, path, 0, "pipeline: input missing: %s", strerror(errno));
    pl_key_add(k, "input %s %lld %lld.%09ld\n", dr_basename(path), (long long)st.st_size,
               (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    return DR_OK;
}

void pl_path(const pl_run *p, const char *name, char out[PL_PATH]) {
    snprintf(out, PL_PATH, "%s/%s", p->o->out_dir, name);
}

/* The file's text, or NULL when missing. */
static char *read_text(const char *path) {
    if (!dr_file_exists(path)) return NULL;
    char *s = NULL;
    size_t n;
    if (dr_read_file(path, &s, &n)) {
        dr_error_clear();
        return NULL;
    }
    return s;
}

int pl_step_begin(pl_run *p, const char *out, const pl_key *k, int *reuse, int *resume) {
    char kp[PL_PATH + 16], pp[PL_PATH + 16];
    snprintf(kp, sizeof kp, "%s.key", out);
    snprintf(pp, sizeof pp, "%s.pending", out);
    *reuse = *resume = 0;
    char *key = read_text(kp), *pend = read_text(pp);
    int have_out = dr_file_exists(out);
    int rc = DR_OK;
    if (key && have_out && !strcmp(key, k->s)) {
        *reuse = 1;
        goto done;
    }
    if (pend && !strcmp(pend, k->s)) {
        /* interrupted with these settings: continue (or start over without --resume) */
        *resume = p->o->resume;
    } else if ((key || pend || have_out) && !p->o->force) {
        rc = dr_error(DR_ERR_ARG, "pipeline: %s was made with other settings or inputs (%s)", out,
                      key ? "its .key differs" : pend ? "an interrupted run of other settings" : "it has no .key");
        dr_error_hint("use another --out, delete the directory, or pass --force to rebuild the outputs that differ");
        goto done;
    }
    remove(kp);
    if (!*resume && (rc = dr_write_file_atomic(pp, k->s, k->n))) goto done;
    p->info->reused = 0;
done:
    free(key);
    free(pend);
    return rc;
}

void pl_kill_point(pl_run *p) {
    if (p->o->kill_at >= 0 && p->o->kill_at == p->stage) raise(SIGKILL);
}

int pl_step_commit(pl_run *p, const char *out) {
    pl_kill_point(p);
    char kp[PL_PATH + 16], pp[PL_PATH + 16];
    snprintf(kp, sizeof kp, "%s.key", out);
    snprintf(pp, sizeof pp, "%s.pending", out);
    if (rename(pp, kp)) return dr_error_at(DR_ERR_IO, kp, 0, "pipeline: cannot record the key: %s", strerror(errno));
    return DR_OK;
}

int pl_catalog(pl_run *p) {
    if (p->cat) return DR_OK;
    return agent_catalog_build(&p->d, &p->cat);
}

/* ------------------------------------------------------------------ runner */
static json_t *times_json(const pipeline_stage_info *st, int n, double wall, double cpu) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:b, s:b, s:b, s:f, s:f}", "stage", pipeline_stage_name(st[i].stage),
                                           "reused", st[i].reused, "resumed", st[i].resumed, "skipped", st[i].skipped,
                                           "wall_s", st[i].wall_s, "cpu_s", st[i].cpu_s));
    return json_pack("{s:o, s:f, s:f}", "stages", a, "wall_s", wall, "cpu_s", cpu);
}

int pipeline_run(const pipeline_opts *o, pipeline_result *res) {
    memset(res, 0, sizeof *res);
    if (!o->data || !o->out_dir || !o->budget) return dr_error(DR_ERR_ARG, "pipeline: data, out_dir and budget are required");
    const pipeline_budget *b = o->budget;
    if (b->n_synth_seeds < 1 || b->n_synth_seeds > PIPELINE_MAX_SEEDS)
        return dr_error(DR_ERR_ARG, "pipeline: budget %s needs 1..%d synth seeds", b->name, PIPELINE_MAX_SEEDS);
    if (b->ws_anchor > 2)
        return dr_error(DR_ERR_ARG, "pipeline: ws_anchor is %d (0 off, 1 the open call first, 2 last)", b->ws_anchor);
    if (b->ws_best_of > 0 && b->ws_positions < 1)
        return dr_error(DR_ERR_ARG, "pipeline: the warm start (ws_best_of %d) needs ws_positions >= 1", b->ws_best_of);
    if (b->ws_best_of > 0 && b->rerank_share > 0)
        return dr_error(DR_ERR_ARG, "pipeline: rerank_share applies to the classic warm start only (ws_best_of = 0)");
    if (!(b->trm_pref_empty >= 0 && b->trm_pref_empty <= 1))
        return dr_error(DR_ERR_ARG, "pipeline: trm_pref_empty must be in [0, 1], got %g", b->trm_pref_empty);
    if (mkdir(o->out_dir, 0777) && errno != EEXIST)
        return dr_error_at(DR_ERR_IO, o->out_dir, 0, "pipeline: cannot create the directory: %s", strerror(errno));
    pl_run p;
    memset(&p, 0, sizeof p);
    p.o = o;
    p.b = b;
    int rc = dr_data_load(&p.d, o->data);
    if (rc) return rc;
    int titled = 0;
    for (int32_t i = 1; i <= p.d.n_items && !titled; i++) titled = p.d.titles && p.d.titles[i] && p.d.titles[i][0];
    if (!titled) {
        dr_data_free(&p.d);
        dr_error(DR_ERR_ARG, "pipeline: %s has no item titles (the agent names items by title)", o->data);
        return dr_error_hint("import a dataset with titles (e.g. MovieLens with u.item / movies.dat)");
    }
    static int (*const fns[PIPELINE_N_STAGES - 1])(pl_run *) = {
        pl_stage_trm_sasrec, pl_stage_trm_pref, pl_stage_synth, pl_stage_tokenizer, pl_stage_init,
        pl_stage_sft,        pl_stage_rl1,      pl_stage_rl2,   pl_stage_eval};
    double w0 = dr_now(), c0 = dr_cpu_now();
    for (int s = 0; s < PIPELINE_N_STAGES; s++) {
        pipeline_stage_info *in = &res->stages[s];
        in->stage = s;
        in->reused = 1;
        p.stage = s;
        p.info = in;
        if (o->on_stage) o->on_stage(o->on_stage_ctx, s, NULL);
        double w = dr_now(), c = dr_cpu_now();
        if (s < PIPELINE_REPORT) {
            rc = fns[s](&p);
        } else {
            in->reused = 0;
            rc = pl_report(&p, res->stages, &res->report, &res->report_md);
        }
        in->wall_s = dr_now() - w;
        in->cpu_s = dr_cpu_now() - c;
        if (rc) {
            dr_error_context("pipeline stage %s", pipeline_stage_name(s));
            break;
        }
        if (o->on_stage) o->on_stage(o->on_stage_ctx, s, in);
        if (o->until >= 0 && s == o->until) break;
    }
    res->wall_s = dr_now() - w0;
    res->cpu_s = dr_cpu_now() - c0;
    if (!rc) {
        char tp[PL_PATH];
        pl_path(&p, "times.json", tp);
        json_t *t = times_json(res->stages, PIPELINE_N_STAGES, res->wall_s, res->cpu_s);
        rc = dr_json_write_file(tp, t);
        json_decref(t);
    }
    agent_catalog_free(p.cat);
    dr_data_free(&p.d);
    return rc;
}

void pipeline_result_free(pipeline_result *res) {
    json_decref(res->report);
    free(res->report_md);
    memset(res, 0, sizeof *res);
}
