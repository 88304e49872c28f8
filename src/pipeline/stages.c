/* The stages of the pipeline: each makes its outputs through the library (trm_train,
 * agent_synth_run, tok_train_file, llm_model_init_random, llm_sft_run, rl_train, eval_run),
 * one step per output file, reusing the outputs whose keys match. */
#include "pipeline/internal.h"
#include "deeprec/evaluate.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/metrics.h"
#include "deeprec/rl.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ TRMs */
static void on_epoch(void *ctx, int epoch) {
    (void)epoch;
    pl_kill_point(ctx);
}

/* The second pref candidate: the same training started from the SASRec (trm_model_init_from).
 * On ml-100k the pref TRM from random weights ties SASRec on validation and is 0.012 below it on
 * test, the one from SASRec is above both; on dslabs the SASRec is weak (validation 0.021
 * against 0.052) and the pref TRM started from it stays there. So both are trained and the one
 * with the higher validation NDCG@10 becomes trm.gguf (docs/trm.md). */
static int pref_from_sasrec(pl_run *p, const trm_config *c, const trm_train_opts *o_rand, const char *sasrec,
                            const char *out, double valid_rand) {
    char alt[PL_PATH], alt_resume[PL_PATH + 32];
    pl_path(p, "trm.from_sasrec.gguf", alt);
    snprintf(alt_resume, sizeof alt_resume, "%s.resume.gguf", alt);
    trm_train_opts o = *o_rand;
    o.out = alt;
    if (!o.resume) remove(alt_resume); /* as for the random candidate: an earlier attempt's state */
    trm_model *m = NULL;
    trm_train_result tr;
    int rc = trm_model_new(&m, c, &p->d, 1);
    if (!rc) rc = trm_model_init_from_file(m, &p->d, sasrec);
    if (!rc) rc = trm_train(m, &p->d, &o, &tr);
    trm_model_free(m);
    if (rc) return rc;
    const int keep = tr.best_valid_ndcg10 > valid_rand;
    if (o.progress)
        fprintf(o.progress, "pipeline: pref TRM from random weights: valid NDCG@10 %.4f; from the SASRec: %.4f; kept: %s\n",
                valid_rand, tr.best_valid_ndcg10, keep ? "from the SASRec" : "random");
    /* the report names the kept candidate; written before the rename, so a kill between the
     * two leaves the stage unfinished (no key) and both are made again */
    char rec[PL_PATH];
    pl_path(p, PL_PREF_CANDIDATES, rec);
    json_t *j = json_pack("{s:f, s:f, s:s}", "random_valid_ndcg@10", valid_rand, "from_sasrec_valid_ndcg@10",
                          tr.best_valid_ndcg10, "kept", keep ? "from_sasrec" : "random");
    rc = j ? dr_json_write_file(rec, j) : dr_error(DR_ERR_NOMEM, "pipeline: out of memory");
    json_decref(j);
    if (rc) return rc;
    /* trm_train wrote alt atomically; a rename keeps out whole at every instant */
    if (keep && rename(alt, out))
        return dr_error(DR_ERR_IO, "pipeline: could not rename %s to %s", alt, out);
    return DR_OK;
}

/* holdout > 0: the agent's training tool, trained without each user's last 2 + holdout items
 * (src/data/holdout.c says why) */
static int stage_trm(pl_run *p, int kind, const char *name, int holdout) {
    const pipeline_budget *b = p->b;
    char out[PL_PATH];
    pl_path(p, name, out);
    pl_key k;
    pl_key_init(&k, name);
    pl_key_add(&k, "model %s loss ce epochs %d patience %d batch %d dim %d layers %d max_len %d max_steps %d seed 1\n",
               kind == TRM_PREF ? "pref" : "sasrec", b->trm_max_epochs, b->trm_patience, b->trm_batch, b->trm_dim,
               b->trm_layers, b->trm_max_len, b->trm_max_steps);
    if (kind == TRM_PREF) pl_key_add(&k, "pref_empty %.17g\n", b->trm_pref_empty);
    if (kind == TRM_PREF && b->trm_experts) pl_key_add(&k, "text experts %d\n", b->trm_experts);
    if (kind == TRM_PREF && b->trm_ensemble >= 2) pl_key_add(&k, "ensemble %d\n", b->trm_ensemble);
    /* only when on: the keys of runs without it (the demo's cache) stay as they were */
    if (b->trm_label_smoothing > 0) pl_key_add(&k, "label_smoothing %.17g\n", b->trm_label_smoothing);
    const int from_sasrec = kind == TRM_PREF && holdout == 0 && b->trm_pref_init;
    char sasrec[PL_PATH];
    pl_path(p, "sasrec.gguf", sasrec);
    if (from_sasrec) pl_key_add(&k, "two candidates, random weights and the SASRec's; the higher validation NDCG@10 kept\n");
    if (holdout > 0) pl_key_add(&k, "trained without each user's last %d items\n", 2 + holdout);
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, p->o->data)) || (from_sasrec && (rc = pl_key_input(&k, sasrec))) ||
        (rc = pl_step_begin(p, out, &k, &reuse, &resume)))
        return rc;
    if (reuse) return DR_OK;
    char rp[PL_PATH + 32];
    snprintf(rp, sizeof rp, "%s.resume.gguf", out);
    if (!resume) remove(rp); /* a state of an earlier attempt: start over */
    else if (dr_file_exists(rp)) p->info->resumed = 1;
    if (kind == TRM_PREF && holdout == 0) { /* this run's record only (pref_from_sasrec) */
        char rec[PL_PATH];
        pl_path(p, PL_PREF_CANDIDATES, rec);
        remove(rec);
    }
    trm_config c;
    trm_config_default(&c);
    c.model = kind, c.dim = b->trm_dim, c.layers = b->trm_layers, c.max_len = b->trm_max_len;
    if (kind == TRM_PREF) c.text_experts = b->trm_experts, c.ensemble = b->trm_ensemble;
    trm_train_opts o; /* the budget's schedule; loss, seed and output are the pipeline's own */
    trm_train_opts_default(&o);
    o.loss = TRM_LOSS_CE, o.seed = 1, o.resume = resume, o.out = out, o.progress = p->o->progress;
    o.batch = b->trm_batch, o.epochs = b->trm_max_epochs, o.patience = b->trm_patience, o.max_steps = b->trm_max_steps;
    o.label_smoothing = (float)b->trm_label_smoothing;
    if (kind == TRM_PREF) o.pref_empty_p = (float)b->trm_pref_empty;
    o.on_epoch = on_epoch, o.on_epoch_ctx = p;
    dr_dataset held = {0};
    const dr_dataset *d = &p->d;
    if (holdout > 0) {
        if ((rc = dr_data_drop_last(&p->d, 2 + holdout, &held))) return rc;
        d = &held;
    }
    trm_model *m = NULL;
    trm_train_result tr;
    rc = trm_model_new(&m, &c, d, 1);
    if (!rc) rc = trm_train(m, d, &o, &tr);
    trm_model_free(m);
    if (!rc && from_sasrec) rc = pref_from_sasrec(p, &c, &o, sasrec, out, tr.best_valid_ndcg10);
    dr_data_free(&held);
    return rc ? rc : pl_step_commit(p, out);
}

int pl_stage_trm_sasrec(pl_run *p) { return stage_trm(p, TRM_SASREC, "sasrec.gguf", 0); }
int pl_stage_trm_pref(pl_run *p) {
    int rc = stage_trm(p, TRM_PREF, "trm.gguf", 0);
    if (!rc && p->b->env_holdout > 0) rc = stage_trm(p, TRM_PREF, PL_ENV_TRM, p->b->env_holdout);
    return rc;
}

/* The TRM the agent is trained against (warm start, RL): the held-out one when there is one.
 * Evaluation always uses trm.gguf. */
static const char *train_tool(const pl_run *p) { return p->b->env_holdout > 0 ? PL_ENV_TRM : "trm.gguf"; }

/* ------------------------------------------------------------------ warm-start data */
static int rerank_pref(void *ctx, const agent_catalog *c, const int32_t *hist, int64_t n_hist, char **pref) {
    (void)ctx;
    return eval_history_preference(c, hist, n_hist, pref);
}

typedef struct synth_state {
    trm_model *tm;
    agent_tool tool;
    int ready;
} synth_state;

/* Begin a synth output (its key covers the data and the TRM); unless it is reused, load the
 * catalog and the TRM tool once for all the synth outputs of the stage. */
static int synth_begin(pl_run *p, synth_state *s, pl_key *k, const char *out, const char *trm, int *reuse) {
    int rc, resume;
    if ((rc = pl_key_input(k, p->o->data)) || (rc = pl_key_input(k, trm)) ||
        (rc = pl_step_begin(p, out, k, reuse, &resume)))
        return rc;
    if (*reuse || s->ready) return DR_OK;
    if ((rc = pl_catalog(p)) || (rc = trm_load(&s->tm, trm)) || (rc = agent_tool_trm_new(&s->tool, s->tm, 1)))
        return rc;
    s->ready = 1;
    return DR_OK;
}

static int synth_step(pl_run *p, synth_state *s, const char *name, int seed, int tool_k, int max_hist, double share) {
    char out[PL_PATH], trm[PL_PATH];
    pl_path(p, name, out);
    pl_path(p, "trm.gguf", trm);
    pl_key k;
    pl_key_init(&k, name);
    pl_key_add(&k, "synth seed %d users %d tool_k %d max_hist %d rerank_share %.17g chat 0\n", seed, p->b->synth_users,
               tool_k, max_hist, share);
    int rc, reuse;
    if ((rc = synth_begin(p, s, &k, out, trm, &reuse))) return rc;
    if (reuse) return DR_OK;
    agent_synth_run_opts o;
    memset(&o, 0, sizeof o);
    o.synth.max_hist = max_hist;
    o.synth.tool_k = tool_k;
    o.users = p->b->synth_users;
    o.seed = (uint64_t)seed;
    o.rerank_share = share;
    o.rerank_pref = rerank_pref;
    o.progress = p->o->progress;
    agent_synth_run_result r;
    if ((rc = agent_synth_run(&p->d, p->cat, &s->tool, &o, out, &r))) return rc;
    if (r.written == 0) return dr_error(DR_ERR_RANGE, "pipeline: agent synth wrote no trajectory into %s", out);
    return pl_step_commit(p, out);
}

/* the outcome-aware warm start: one file of the best of ws_best_of candidates per training position */
static int warmstart_step(pl_run *p, synth_state *s) {
    const pipeline_budget *b = p->b;
    char out[PL_PATH], trm[PL_PATH];
    pl_path(p, PL_WS_FILE, out);
    pl_path(p, train_tool(p), trm);
    pl_key k;
    pl_key_init(&k, PL_WS_FILE);
    pl_key_add(&k,
               "warmstart seed %d users %d positions %d best_of %d varied %d order_by_target %d min_prefix 2 tool_k %d "
               "max_hist %d chat 0\n",
               b->ws_seed, b->synth_users, b->ws_positions, b->ws_best_of, b->ws_varied, b->ws_order_by_target,
               b->tool_k, b->max_hist);
    if (b->ws_anchor == 1) pl_key_add(&k, "anchor 1\n");
    if (b->ws_anchor == 2) pl_key_add(&k, "anchor last\n");
    if (b->ws_call_order) pl_key_add(&k, "answers keep each call's order\n");
    if (b->env_holdout > 0) pl_key_add(&k, "positions among the last %d train items\n", b->env_holdout);
    int rc, reuse;
    if ((rc = synth_begin(p, s, &k, out, trm, &reuse))) return rc;
    if (reuse) return DR_OK;
    rl_warmstart_opts o;
    rl_warmstart_opts_default(&o);
    o.synth.max_hist = b->max_hist;
    o.synth.tool_k = b->tool_k;
    o.synth.varied = b->ws_varied != 0;
    o.synth.anchor = b->ws_anchor;
    o.synth.order = b->ws_call_order != 0;
    o.synth.seed = (uint64_t)b->ws_seed;
    o.positions = b->ws_positions;
    o.recent = b->env_holdout;
    o.best_of = b->ws_best_of;
    o.order_by_target = b->ws_order_by_target != 0;
    o.users = b->synth_users;
    o.progress = p->o->progress;
    rl_warmstart_stats st;
    if ((rc = rl_warmstart_synth(&p->d, s->tm, p->cat, &s->tool, &o, out, &st))) return rc;
    if (st.written == 0) return dr_error(DR_ERR_RANGE, "pipeline: the warm start wrote no trajectory into %s", out);
    return pl_step_commit(p, out);
}

int pl_stage_synth(pl_run *p) {
    const pipeline_budget *b = p->b;
    synth_state s;
    memset(&s, 0, sizeof s);
    int rc = DR_OK, last = b->synth_seeds[b->n_synth_seeds - 1];
    char name[64];
    if (b->ws_best_of > 0) rc = warmstart_step(p, &s);
    for (int i = 0; b->ws_best_of == 0 && i < b->n_synth_seeds && !rc; i++) {
        /* rerank-form examples only in the last seed (SFT run 2): in run 1 they cost format validity */
        snprintf(name, sizeof name, "traj_s%d.jsonl", b->synth_seeds[i]);
        rc = synth_step(p, &s, name, b->synth_seeds[i], b->tool_k, b->max_hist,
                        i == b->n_synth_seeds - 1 ? b->rerank_share : 0.0);
    }
    /* the tokenizer's extra run: the agent's default sizes show more titles */
    if (!rc) rc = synth_step(p, &s, "traj_corpus.jsonl", b->corpus_seed, AGENT_TOOL_K, AGENT_MAX_HIST, 0.0);
    if (!rc && b->rerank_warm > 0) {
        snprintf(name, sizeof name, "traj_rerank_s%d.jsonl", last);
        rc = synth_step(p, &s, name, last, b->tool_k, b->max_hist, b->rerank_warm);
    }
    if (s.ready) agent_tool_trm_free(&s.tool);
    trm_model_free(s.tm);
    return rc;
}

/* ------------------------------------------------------------------ tokenizer */
/* prompt + completion of every line of `in`, one text per line, appended to fp */
static int corpus_add(FILE *fp, const char *in) {
    FILE *f = fopen(in, "rb");
    if (!f) return dr_error_at(DR_ERR_IO, in, 0, "cannot open");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = DR_OK;
    long ln = 0;
    while (!rc && (n = getline(&line, &cap, f)) > 0) {
        ln++;
        json_error_t e;
        json_t *j = json_loadb(line, (size_t)n, 0, &e);
        const char *pr = j ? json_string_value(json_object_get(j, "prompt")) : NULL;
        const char *co = j ? json_string_value(json_object_get(j, "completion")) : NULL;
        if (!pr || !co) rc = dr_error_at(DR_ERR_FORMAT, in, ln, "not a trajectory line {prompt, completion}");
        else {
            fputs(pr, fp);
            fputs(co, fp);
            fputc('\n', fp);
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return rc;
}

int pl_stage_tokenizer(pl_run *p) {
    const pipeline_budget *b = p->b;
    char corpus[PL_PATH], tok[PL_PATH], extra[PL_PATH], first[PL_PATH], name[64];
    pl_path(p, "corpus.txt", corpus);
    pl_path(p, "tok.gguf", tok);
    pl_path(p, "traj_corpus.jsonl", extra);
    if (b->ws_best_of > 0) snprintf(name, sizeof name, "%s", PL_WS_FILE);
    else snprintf(name, sizeof name, "traj_s%d.jsonl", b->synth_seeds[0]);
    pl_path(p, name, first);
    /* corpus: the extra run (more titles) and the first training file (the warm start's, or
     * the first seed's) */
    pl_key k;
    pl_key_init(&k, "corpus.txt");
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, extra)) || (rc = pl_key_input(&k, first)) ||
        (rc = pl_step_begin(p, corpus, &k, &reuse, &resume)))
        return rc;
    if (!reuse) {
        dr_afile af = {0};
        if ((rc = dr_afile_open(&af, corpus))) return rc;
        if ((rc = corpus_add(af.fp, extra)) || (rc = corpus_add(af.fp, first))) {
            dr_afile_abort(&af);
            return rc;
        }
        if (ferror(af.fp)) {
            dr_afile_abort(&af);
            return dr_error_at(DR_ERR_IO, corpus, 0, "write failed");
        }
        if ((rc = dr_afile_commit(&af)) || (rc = pl_step_commit(p, corpus))) return rc;
    }
    pl_key_init(&k, "tok.gguf");
    pl_key_add(&k, "bpe vocab %d min_count 2\n", b->vocab);
    if ((rc = pl_key_input(&k, corpus)) || (rc = pl_step_begin(p, tok, &k, &reuse, &resume))) return rc;
    if (reuse) return DR_OK;
    tok_train_opts to = {.vocab_size = b->vocab, .min_pair_count = 2, .progress = p->o->progress};
    tokenizer *t = NULL;
    if ((rc = tok_train_file(corpus, &to, &t))) return rc;
    rc = tok_save_gguf(t, tok);
    tok_free(t);
    return rc ? rc : pl_step_commit(p, tok);
}

/* ------------------------------------------------------------------ tiny model */
int pl_stage_init(pl_run *p) {
    const pipeline_budget *b = p->b;
    char out[PL_PATH], tokp[PL_PATH];
    pl_path(p, "tiny0.gguf", out);
    pl_path(p, "tok.gguf", tokp);
    pl_key k;
    pl_key_init(&k, "tiny0.gguf");
    pl_key_add(&k, "init qwen2 dim %d layers %d heads %d kv_heads %d ffn %d context %d std 0.02 seed 1 f32\n", b->llm_dim,
               b->llm_layers, b->llm_heads, b->llm_kv_heads, b->llm_ffn, b->ctx);
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, tokp)) || (rc = pl_step_begin(p, out, &k, &reuse, &resume))) return rc;
    if (reuse) return DR_OK;
    tokenizer *tok = NULL;
    if ((rc = tok_load_path(&tok, tokp))) return rc;
    llm_config c;
    llm_config_default(&c, LLM_ARCH_QWEN2);
    c.dim = b->llm_dim, c.n_layers = b->llm_layers, c.n_heads = b->llm_heads, c.n_kv_heads = b->llm_kv_heads;
    c.head_dim = b->llm_dim / b->llm_heads, c.ffn = b->llm_ffn, c.vocab = tok_vocab_size(tok), c.context = b->ctx;
    llm_model *m = NULL;
    rc = llm_model_init_random(&m, &c, GGML_TYPE_F32, 0.02f, 1);
    if (!rc) rc = llm_model_save(m, tok, out);
    llm_model_free(m);
    tok_free(tok);
    return rc ? rc : pl_step_commit(p, out);
}

/* ------------------------------------------------------------------ SFT */
static int concat_files(const char *out, char paths[][PL_PATH], int n) {
    dr_afile af = {0};
    int rc = dr_afile_open(&af, out);
    if (rc) return rc;
    for (int i = 0; i < n && !rc; i++) {
        char *s = NULL;
        size_t len;
        if ((rc = dr_read_file(paths[i], &s, &len))) break;
        if (fwrite(s, 1, len, af.fp) != len) rc = dr_error_at(DR_ERR_IO, out, 0, "write failed");
        free(s);
    }
    if (rc) {
        dr_afile_abort(&af);
        return rc;
    }
    return dr_afile_commit(&af);
}

/* one epoch-bounded SFT run from `model` on the trajectory files */
static int sft_step(pl_run *p, const char *label, const char *model, const char *outname, double lr,
                    char trajs[][PL_PATH], int n) {
    const pipeline_budget *b = p->b;
    char out[PL_PATH], data[PL_PATH], metrics[PL_PATH], name[64];
    pl_path(p, outname, out);
    pl_key k;
    pl_key_init(&k, outname);
    pl_key_add(&k, "sft lr %.17g batch %d max_len %d epochs %d max_steps %d seed 1 cosine clip 1\n", lr, b->sft_batch,
               b->sft_max_len, b->sft_epochs, b->sft_max_steps);
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, model))) return rc;
    for (int i = 0; i < n; i++)
        if ((rc = pl_key_input(&k, trajs[i]))) return rc;
    if ((rc = pl_step_begin(p, out, &k, &reuse, &resume))) return rc;
    if (reuse) return DR_OK;
    if (n > 1) {
        snprintf(name, sizeof name, "traj_%s.jsonl", label);
        pl_path(p, name, data);
        if ((rc = concat_files(data, trajs, n))) return rc;
    } else {
        snprintf(data, sizeof data, "%s", trajs[0]);
    }
    snprintf(name, sizeof name, "%s.metrics.jsonl", label);
    pl_path(p, name, metrics);
    llm_sft_run_opts o;
    llm_sft_run_opts_default(&o);
    o.model = model, o.data = data, o.out = out, o.lr = (float)lr, o.batch = b->sft_batch, o.max_len = b->sft_max_len;
    o.epochs = b->sft_epochs, o.max_steps = b->sft_max_steps, o.seed = 1, o.metrics = metrics;
    o.progress = p->o->progress;
    llm_sft_run_result r;
    if ((rc = llm_sft_run(&o, &r))) return rc;
    return pl_step_commit(p, out);
}

/* The rerank baseline's model: a run at lr2 from `base` on the last seed written partly in the
 * rerank form, so the baseline is measured with a model that has seen its prompt shape (none
 * when rerank_warm is 0). trajs[0] is used as the path buffer. */
static int rerank_sft_step(pl_run *p, const char *base, char (*trajs)[PL_PATH]) {
    const pipeline_budget *b = p->b;
    if (b->rerank_warm <= 0) return DR_OK;
    char name[64];
    snprintf(name, sizeof name, "traj_rerank_s%d.jsonl", b->synth_seeds[b->n_synth_seeds - 1]);
    pl_path(p, name, trajs[0]);
    return sft_step(p, "sft2_rerank", base, "tiny_sft_rerank.gguf", b->sft_lr2, trajs, 1);
}

int pl_stage_sft(pl_run *p) {
    const pipeline_budget *b = p->b;
    char (*trajs)[PL_PATH] = dr_calloc(PIPELINE_MAX_SEEDS, PL_PATH);
    if (!trajs) return dr_error_code();
    char tiny0[PL_PATH], tiny1[PL_PATH], name[64];
    pl_path(p, "tiny0.gguf", tiny0);
    int ns = b->n_synth_seeds, rc = DR_OK;
    if (b->ws_best_of > 0) {
        /* the outcome-aware warm start: ONE run over traj_ws.jsonl at lr1 from the initial
         * model; the rerank baseline's warm-up continues from the agent's model at lr2 */
        char agent[PL_PATH];
        pl_path(p, PL_WS_FILE, trajs[0]);
        pl_path(p, "tiny_sft.gguf", agent);
        rc = sft_step(p, "sft", tiny0, "tiny_sft.gguf", b->sft_lr1, trajs, 1);
        if (!rc) rc = rerank_sft_step(p, agent, trajs);
        free(trajs);
        return rc;
    }
    for (int i = 0; i < ns; i++) {
        snprintf(name, sizeof name, "traj_s%d.jsonl", b->synth_seeds[i]);
        pl_path(p, name, trajs[i]);
    }
    /* run 1: all seeds but the last; with one seed, run 2 alone from the initial model */
    if (ns > 1) {
        pl_path(p, "tiny_sft1.gguf", tiny1);
        rc = sft_step(p, "sft1", tiny0, "tiny_sft1.gguf", b->sft_lr1, trajs, ns - 1);
    } else {
        snprintf(tiny1, sizeof tiny1, "%s", tiny0);
    }
    /* run 2: fresh trajectories (the last seed) at a lower rate */
    if (!rc) rc = sft_step(p, "sft2", tiny1, "tiny_sft.gguf", b->sft_lr2, trajs + ns - 1, 1);
    if (!rc) rc = rerank_sft_step(p, tiny1, trajs);
    free(trajs);
    return rc;
}

/* ------------------------------------------------------------------ RL */
static void on_rl_step(void *ctx, const rl_step_stats *s) {
    /* after step 2 the checkpoint of step 1 is committed: a kill here tests --resume */
    if (s->step >= 2) pl_kill_point(ctx);
}

static int stage_rl(pl_run *p, int stage) {
    const pipeline_budget *b = p->b;
    char out[PL_PATH], in[PL_PATH], trm[PL_PATH];
    pl_path(p, stage == 1 ? "policy1.gguf" : "policy2.gguf", out);
    /* stage 2 starts from stage 1's policy, or from the warm start when stage 1 has no steps */
    pl_path(p, stage == 1 || b->rl1_steps <= 0 ? "tiny_sft.gguf" : "policy1.gguf", in);
    pl_path(p, train_tool(p), trm);
    int steps = stage == 1 ? b->rl1_steps : b->rl2_steps;
    if (steps <= 0) { /* no RL in this run (an ablation): nothing to make */
        p->info->skipped = 1;
        return DR_OK;
    }
    double lr = stage == 1 ? b->rl_lr1 : b->rl_lr2;
    double ptemp = stage == 1 ? b->rl_probe_temp1 : b->rl_probe_temp2;
    int psamples = stage == 1 ? b->rl_probe_samples1 : b->rl_probe_samples2;
    pl_key k;
    pl_key_init(&k, stage == 1 ? "policy1.gguf" : "policy2.gguf");
    pl_key_add(&k,
               "rl stage %d steps %d prompts %d samples %d lr %.17g updates %d micro %d select_k %d seed 1 probe %d "
               "probe_temp %.17g probe_samples %d ctx %d max_hist %d tool_k %d max_tokens %d\n",
               stage, steps, b->rl_prompts, b->rl_samples, lr, b->rl_updates, b->rl_micro, b->rl_select_k, b->rl_probe,
               ptemp, psamples, b->ctx, b->max_hist, b->tool_k, b->max_tokens);
    pl_key_add(&k, "rollouts: constrained titles, one-line preferences, tag grammar\n");
    if (b->constrain_order) pl_key_add(&k, "answers keep each call's order\n");
    if (b->rl_keep_best > 0)
        pl_key_add(&k, "keep_best %d every %d, paired z %.17g\n", b->rl_keep_best, b->rl_keep_best_every, RL_KEEP_BEST_Z);
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, p->o->data)) || (rc = pl_key_input(&k, trm)) || (rc = pl_key_input(&k, in)) ||
        (rc = pl_step_begin(p, out, &k, &reuse, &resume)))
        return rc;
    if (reuse) return DR_OK;
    char ck[PL_PATH + 32];
    snprintf(ck, sizeof ck, "%.*s.ckpt.json", (int)(strlen(out) - 5), out);
    if (!resume) remove(ck); /* an earlier attempt's checkpoint: start over */
    else if (dr_file_exists(ck)) p->info->resumed = 1;
    rl_opts o;
    rl_opts_default(&o, stage);
    o.steps = steps, o.prompts = b->rl_prompts, o.samples = b->rl_samples, o.lr = (float)lr, o.updates = b->rl_updates;
    o.micro = b->rl_micro, o.seed = 1, o.select_k = b->rl_select_k;
    o.probe_users = b->rl_probe, o.probe_temperature = (float)ptemp, o.probe_samples = psamples;
    o.keep_best_users = b->rl_keep_best, o.keep_best_every = b->rl_keep_best_every;
    o.max_ctx = b->ctx, o.rollout.max_hist = b->max_hist, o.rollout.tool_k = b->tool_k, o.rollout.max_turn_tokens = b->max_tokens;
    o.rollout.constrain_order = b->constrain_order != 0;
    o.resume = resume;
    o.out = out;
    o.llm_path = in;
    o.progress = p->o->progress;
    o.on_step = on_rl_step;
    o.on_step_ctx = p;
    trm_model *tm = NULL;
    llm_model *lm = NULL;
    if ((rc = trm_load(&tm, trm)) || (rc = llm_model_load(&lm, in))) goto out;
    rl_env env = {&p->d, tm, lm, NULL};
    rl_result r;
    if ((rc = rl_train(&env, &o, &r))) goto out;
    rc = pl_step_commit(p, out);
out:
    llm_model_free(lm);
    trm_model_free(tm);
    return rc;
}

int pl_stage_rl1(pl_run *p) { return stage_rl(p, 1); }
int pl_stage_rl2(pl_run *p) { return stage_rl(p, 2); }

/* ------------------------------------------------------------------ evaluation */
/* validation metrics of a TRM (picks the best TRM of the table) */
static int valid_step(pl_run *p, const char *trm_name, const char *outname) {
    char out[PL_PATH], trm[PL_PATH];
    pl_path(p, outname, out);
    pl_path(p, trm_name, trm);
    pl_key k;
    pl_key_init(&k, outname);
    pl_key_add(&k, "trm valid split, history masked, empty preference\n");
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, p->o->data)) || (rc = pl_key_input(&k, trm)) ||
        (rc = pl_step_begin(p, out, &k, &reuse, &resume)))
        return rc;
    if (reuse) return DR_OK;
    trm_model *m = NULL;
    dr_metrics_mean mm;
    if ((rc = trm_load(&m, trm)) || (rc = trm_evaluate(m, &p->d, 0, 1, 0, &mm))) {
        trm_model_free(m);
        return rc;
    }
    trm_model_free(m);
    json_t *j = dr_metrics_mean_json(&mm);
    rc = dr_json_write_file(out, j);
    json_decref(j);
    return rc ? rc : pl_step_commit(p, out);
}

static int eval_step(pl_run *p, const pl_row *row) {
    const pipeline_budget *b = p->b;
    char out[PL_PATH], trm[PL_PATH], llm[PL_PATH], name[64];
    snprintf(name, sizeof name, "eval_%s.json", row->id);
    pl_path(p, name, out);
    pl_path(p, row->trm, trm);
    if (row->llm) pl_path(p, row->llm, llm);
    int mode = eval_mode_from_name(row->mode);
    if (mode < 0) return dr_error(DR_ERR_INTERNAL, "pipeline: no eval mode %s", row->mode);
    pl_key k;
    pl_key_init(&k, name);
    pl_key_add(&k,
               "eval mode %s users %d seed 1 temp 0 max_hist %d tool_k %d max_tokens %d ctx %d batch %d bootstrap %d "
               "seed 1, per-user ranks\n",
               row->mode, b->eval_users, b->max_hist, b->tool_k, b->max_tokens, b->ctx, b->eval_batch, PL_BOOTSTRAP);
    if (row->unconstrained) pl_key_add(&k, "titles unconstrained\n");
    else if (row->llm) pl_key_add(&k, "rollouts: constrained titles, one-line preferences, tag grammar\n");
    /* the order rule is the agent's; the rerank baseline stays the LLM's own ranking of one list */
    int order = !row->unconstrained && b->constrain_order && mode == EVAL_DEEPREC;
    if (order) pl_key_add(&k, "answers keep each call's order\n");
    /* the teacher writes the pipeline's warm-start trajectories (varied as they were; no target) */
    int varied = b->ws_best_of > 0 && b->ws_varied;
    if (mode == EVAL_TEACHER) pl_key_add(&k, "teacher synth varied %d seed 1\n", varied);
    if (mode == EVAL_TEACHER && b->ws_anchor) pl_key_add(&k, b->ws_anchor == 2 ? "teacher anchor last\n" : "teacher anchor 1\n");
    if (mode == EVAL_TEACHER && b->ws_call_order) pl_key_add(&k, "teacher keeps each call's order\n");
    int rc, reuse, resume;
    if ((rc = pl_key_input(&k, p->o->data)) || (rc = pl_key_input(&k, trm)) || (row->llm && (rc = pl_key_input(&k, llm))) ||
        (rc = pl_step_begin(p, out, &k, &reuse, &resume)))
        return rc;
    if (reuse) return DR_OK;
    trm_model *tm = NULL;
    llm_model *lm = NULL;
    if ((rc = pl_catalog(p)) || (rc = trm_load(&tm, trm)) || (row->llm && (rc = llm_model_load(&lm, llm)))) goto out;
    eval_opts eo;
    eval_opts_default(&eo);
    eo.mode = mode, eo.users = b->eval_users, eo.seed = 1, eo.temperature = 0, eo.rollout.tool_k = b->tool_k;
    eo.rollout.max_hist = b->max_hist, eo.rollout.max_turn_tokens = b->max_tokens, eo.n_ctx = b->ctx, eo.batch = b->eval_batch;
    eo.bootstrap = PL_BOOTSTRAP, eo.bootstrap_seed = 1;
    eo.rollout.constrain_titles = eo.rollout.constrain_prefs = eo.rollout.constrain_tags = !row->unconstrained;
    eo.rollout.constrain_order = order;
    eo.progress = p->o->progress;
    agent_synth_opts so;
    memset(&so, 0, sizeof so);
    so.max_hist = b->max_hist, so.tool_k = b->tool_k, so.seed = 1, so.varied = varied;
    so.anchor = b->ws_anchor;
    so.order = b->ws_call_order != 0;
    if (mode == EVAL_TEACHER) eo.synth = &so;
    eval_inputs in = {&p->d, p->cat, tm, lm, NULL, NULL};
    eval_result r;
    memset(&r, 0, sizeof r);
    if ((rc = eval_run(&in, &eo, &r))) {
        eval_result_free(&r);
        goto out;
    }
    json_t *j = eval_result_json(&r);
    json_object_set_new(j, "trm", json_string(row->trm));
    json_object_set_new(j, "llm", row->llm ? json_string(row->llm) : json_null());
    json_object_set_new(j, "per_user", pl_ranks_json(&r));
    eval_result_free(&r);
    rc = dr_json_write_file(out, j);
    json_decref(j);
    if (!rc) rc = pl_step_commit(p, out);
out:
    llm_model_free(lm);
    trm_model_free(tm);
    return rc;
}

int pl_stage_eval(pl_run *p) {
    int rc;
    if ((rc = valid_step(p, "sasrec.gguf", "valid_sasrec.json")) || (rc = valid_step(p, "trm.gguf", "valid_trm.json")))
        return rc;
    pl_row rows[16];
    int n = pl_rows(p, rows, 16);
    for (int i = 0; i < n; i++)
        if ((rc = eval_step(p, &rows[i]))) return rc;
    return DR_OK;
}
