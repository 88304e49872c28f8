/* agent_synth_run: warm-start trajectories for many users into one JSON-lines file (the loop
 * that `deeprec agent synth` and the pipeline share). */
#include "deeprec/agent.h"
#include "deeprec/data.h"
#include <stdlib.h>
#include <string.h>

int agent_synth_run(const dr_dataset *d, const agent_catalog *cat, const agent_tool *tool,
                    const agent_synth_run_opts *o, const char *out, agent_synth_run_result *res) {
    memset(res, 0, sizeof *res);
    if (o->rerank_share > 0.0 && !o->rerank_pref)
        return dr_error(DR_ERR_ARG, "agent synth: a rerank share needs the rerank preference rule");
    double t0 = dr_now();
    int32_t *order = dr_calloc((size_t)d->n_users + 1, sizeof *order);
    if (!order) return dr_error_code();
    int n_cand = 0;
    for (int32_t u = 0; u < d->n_users; u++) {
        const int32_t *hist;
        int64_t n_hist;
        if (dr_data_train_example(d, u, &hist, &n_hist)) order[n_cand++] = u;
    }
    dr_rng rng;
    dr_rng_seed(&rng, o->seed);
    dr_rng_shuffle_i32(&rng, order, (size_t)n_cand);
    int n_use = o->users > 0 && o->users < n_cand ? o->users : n_cand;
    dr_afile af = {0};
    int rc = dr_afile_open(&af, out);
    if (rc) {
        free(order);
        return rc;
    }
    dr_progress prog;
    dr_progress_start(&prog, o->progress, "synth", n_use, "users");
    for (int i = 0; i < n_use; i++) {
        int32_t u = order[i];
        const int32_t *hist;
        int64_t n_hist;
        int32_t target = dr_data_train_example(d, u, &hist, &n_hist);
        agent_synth_opts so = o->synth;
        dr_rng ur = dr_rng_split(&rng, (uint64_t)u);
        so.seed = dr_rng_u64(&ur);
        so.forced_preference = NULL;
        char *forced = NULL;
        /* the draw comes after the per-user seed, so rerank_share 0 writes the same files as before */
        if (o->rerank_share > 0.0 && dr_rng_double(&ur) < o->rerank_share) {
            if ((rc = o->rerank_pref(o->rerank_pref_ctx, cat, hist, n_hist, &forced))) goto fail;
            so.forced_preference = forced;
            res->rerank_form++;
        }
        agent_synth_traj t;
        rc = agent_synth_one(cat, tool, hist, n_hist, &so, &t);
        free(forced);
        if (rc == DR_ERR_RANGE || rc == DR_ERR_FORMAT) {
            dr_log(DR_LOG_DEBUG, "synth: user %s skipped: %s", d->user_ids[u], dr_error_message());
            dr_error_clear();
            rc = DR_OK;
            res->skipped++;
            dr_progress_update(&prog, i + 1);
            continue;
        }
        if (rc) goto fail;
        char *line;
        if ((rc = agent_synth_json(&t, &line))) {
            agent_synth_traj_free(&t);
            goto fail;
        }
        fputs(line, af.fp);
        fputc('\n', af.fp);
        free(line);
        res->written++;
        res->calls += t.n_calls;
        agent_answer a;
        if (!agent_answer_parse(t.completion, strlen(t.completion), &a)) {
            for (int k = 0; k < a.n_lines; k++)
                if (agent_catalog_find(cat, a.lines[k], -1) == target) res->hits++;
            agent_answer_free(&a);
        }
        if (strstr(t.completion, agent_catalog_title(cat, target))) res->text_hits++;
        agent_synth_traj_free(&t);
        dr_progress_set_extra(&prog, "%lld written", (long long)res->written);
        dr_progress_update(&prog, i + 1);
    }
    dr_progress_finish(&prog);
    free(order);
    if (ferror(af.fp)) {
        dr_afile_abort(&af);
        return dr_error_at(DR_ERR_IO, out, 0, "write failed");
    }
    if ((rc = dr_afile_commit(&af))) return rc;
    res->seconds = dr_now() - t0;
    return DR_OK;
fail:
    dr_progress_finish(&prog);
    dr_afile_abort(&af);
    free(order);
    return rc;
}
