/* llm_sft_run: one supervised fine-tuning run from files to a saved model (the loop of
 * `deeprec llm sft`, shared with the pipeline).
 *
 * Under MPI (dist.h) it is data-parallel: every rank loads the model and the data, takes its
 * share of each step's examples (the same shuffled order everywhere), and the gradients are
 * summed before the one optimizer step all ranks take alike. Each rank's loss is normalised
 * by the whole step's target weight, so the sum is the single-process gradient. Rank 0 alone
 * writes the model, the state, the metrics and the progress. */
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/llm_train.h"
#include "deeprec/tokenizer.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* What the optimizer state records of the run (llm_train_run_state slots), so --resume with
 * other data, another model or other batch settings is refused, as trm train and rl do. */
enum { U_EPOCH, U_POS, U_BATCH, U_ACCUM, U_MAXLEN, U_DATA, U_MODEL, U_SEED };

/* A file's content fingerprint: CRC-32 and Adler-32 (zlib, fast) of the bytes, never 0. */
static int file_fingerprint(const char *path, int64_t *fp) {
    dr_mmap m;
    int rc = dr_mmap_open(&m, path);
    if (rc) return rc;
    uLong c = crc32(0L, Z_NULL, 0), a = adler32(0L, Z_NULL, 0);
    for (size_t off = 0; off < m.size; off += 1u << 30) {
        uInt k = (uInt)(m.size - off < (1u << 30) ? m.size - off : (1u << 30));
        c = crc32(c, m.data + off, k);
        a = adler32(a, m.data + off, k);
    }
    dr_mmap_close(&m);
    *fp = (int64_t)(((uint64_t)c << 32) | (uint64_t)a) | 1;
    return DR_OK;
}

static int check_resume(const llm_sft_run_opts *o, const int64_t *u, const int64_t *now) {
    static const char *what[] = {"", "", "--batch", "--accum", "--max-len", "--data file", "--model file", "--seed"};
    for (int k = U_BATCH; k <= U_SEED; k++) {
        if (u[k] == now[k]) continue;
        dr_error(DR_ERR_ARG, "%s: the state was saved by a run with another %s", o->resume, what[k]);
        if (k == U_MODEL)
            dr_error_hint(o->lora ? "LoRA resumes on the same base --model as the run that saved the state"
                                  : "full fine-tuning resumes from the model that run wrote (its --out)");
        else if (k <= U_MAXLEN || k == U_SEED)
            dr_error_hint("the state's run used %s %lld", what[k], (long long)u[k]);
        return DR_ERR_ARG;
    }
    return DR_OK;
}

void llm_sft_run_opts_default(llm_sft_run_opts *o) {
    /* warmup -1: the schedule's own default */
    *o = (llm_sft_run_opts){.epochs = 1, .batch = 8, .accum = 1, .seed = 1, .out_type = GGML_TYPE_F32,
                            .sched = LLM_SCHED_COSINE, .warmup = -1, .min_lr_ratio = 0.1f, .grad_clip = 1.0f};
}

int llm_sft_run(const llm_sft_run_opts *o, llm_sft_run_result *res) {
    memset(res, 0, sizeof *res);
    res->first_loss = res->last_loss = NAN;
    res->best_loss = INFINITY;
    if (!o->model || !o->data || !o->out) return dr_error(DR_ERR_ARG, "llm sft: model, data and out are required");
    if (o->lora < 0 || o->epochs <= 0 || o->batch <= 0 || o->accum <= 0 || o->max_len < 0)
        return dr_error(DR_ERR_ARG, "llm sft: lora >= 0, epochs, batch, accum > 0 and max_len >= 0 required");
    llm_model *m = NULL;
    llm_train *t = NULL;
    llm_sft_data d = {0};
    int32_t *perm = NULL, *tok = NULL, *lens = NULL;
    uint8_t *mask = NULL;
    dr_jsonl metrics = {0};
    dr_progress prog;
    int prog_on = 0;
    int batch = o->batch, accum = o->accum, max_len = o->max_len, epochs = o->epochs;
    const int lead = dr_dist_rank() == 0;
    FILE *progress = lead ? o->progress : NULL;
    int rc = llm_model_load(&m, o->model);
    if (rc) goto out;
    if (!m->tok) {
        rc = dr_error(DR_ERR_ARG, "%s has no tokenizer metadata (tokenizer.ggml.*)", o->model);
        goto out;
    }
    if (!max_len) max_len = m->cfg.context < 512 ? m->cfg.context : 512;
    if ((rc = llm_sft_load(&d, o->data, m->tok, max_len, tok_eos(m->tok)))) goto out;
    if (d.n_targets == 0) {
        /* every completion was cut away: a run would "succeed" with loss 0 and learn nothing */
        rc = dr_error(DR_ERR_ARG, "%s: no completion token is left to train on (%d examples, %lld tokens)", o->data, d.n,
                      (long long)d.n_tokens);
        dr_error_hint("with --max-len %d every example ends inside its prompt: raise --max-len or shorten the prompts",
                      max_len);
        goto out;
    }
    int T = 2;
    for (int i = 0; i < d.n; i++) T = d.ex[i].len > T ? d.ex[i].len : T;
    if (batch > d.n) batch = d.n;
    const int64_t per_epoch = (d.n + (int64_t)batch * accum - 1) / ((int64_t)batch * accum);
    const int64_t total = per_epoch * epochs; /* the schedule's length (max_steps only stops early) */
    const int64_t stop = o->max_steps > 0 && o->max_steps < total ? o->max_steps : total;

    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = batch, tc.max_len = T, tc.recompute = o->recompute, tc.lora_rank = o->lora;
    tc.lora_alpha = o->lora_alpha, tc.lora_targets = o->lora_targets, tc.seed = o->seed;
    tc.lr = o->lr > 0 ? o->lr : o->lora ? 2e-4f : 1e-3f;
    tc.weight_decay = o->weight_decay, tc.grad_clip = o->grad_clip, tc.sched = o->sched, tc.total_steps = total;
    tc.warmup_steps = o->warmup >= 0 ? o->warmup : total / 20;
    tc.min_lr_ratio = o->min_lr_ratio;
    if ((rc = llm_train_new(&t, m, &tc))) goto out;
    int64_t *run = llm_train_run_state(t);
    int64_t now[LLM_TRAIN_RUN_STATE_N] = {0};
    now[U_BATCH] = o->batch, now[U_ACCUM] = accum, now[U_MAXLEN] = max_len, now[U_SEED] = (int64_t)o->seed;
    if ((rc = file_fingerprint(o->data, &now[U_DATA])) || (rc = file_fingerprint(o->model, &now[U_MODEL]))) goto out;
    if (o->resume) {
        if ((rc = llm_train_load_state(t, o->resume))) goto out;
        if (!run[U_DATA]) {
            rc = dr_error(DR_ERR_ARG, "%s: the state has no record of its run's data and model (an older version "
                          "wrote it): cannot check that resuming continues the same run", o->resume);
            goto out;
        }
        if ((rc = check_resume(o, run, now))) goto out;
    } else {
        for (int k = U_BATCH; k <= U_SEED; k++) run[k] = now[k];
    }
    if (lead && o->metrics && (rc = dr_jsonl_open(&metrics, o->metrics, o->resume != NULL))) goto out;
    perm = dr_calloc((size_t)d.n, sizeof *perm);
    tok = dr_calloc((size_t)batch * T, sizeof *tok);
    mask = dr_calloc((size_t)batch * T, 1);
    lens = dr_calloc((size_t)batch, sizeof *lens);
    if (!perm || !tok || !mask || !lens) {
        rc = DR_ERR_NOMEM;
        goto out;
    }
    res->examples = d.n;
    res->params = llm_train_n_params(t);
    if (progress)
        fprintf(progress, "llm sft: %d examples (%lld tokens, %lld in the loss), %s, %zu trainable parameters, "
                             "%lld steps, activations+state %.1f MB\n",
                d.n, (long long)d.n_tokens, (long long)d.n_targets, o->lora ? "LoRA" : "full fine-tuning",
                llm_train_n_params(t), (long long)total, llm_train_memory_bytes(t) / 1e6);
    dr_progress_start(&prog, progress, "sft", stop, "steps");
    prog_on = 1;
    dr_progress_update(&prog, llm_train_steps(t));
    int64_t tokens = 0;
    double t0 = dr_now();
    dr_rng order_root = *llm_train_rng(t);
    while (llm_train_steps(t) < stop && run[U_EPOCH] < epochs) {
        for (int i = 0; i < d.n; i++) perm[i] = i;
        dr_rng er = dr_rng_split(&order_root, (uint64_t)run[U_EPOCH]);
        dr_rng_shuffle_i32(&er, perm, (size_t)d.n);
        while (run[U_POS] < d.n && llm_train_steps(t) < stop) {
            /* total weight of the step (token mean over all its micro-batches) */
            int64_t pos = run[U_POS], end = pos + (int64_t)batch * accum;
            if (end > d.n) end = d.n;
            double wtot = 0;
            for (int64_t i = pos; i < end; i++) {
                const llm_sft_example *e = &d.ex[perm[i]];
                for (int k = 1; k < e->len; k++) wtot += e->mask[k];
            }
            double sums[3] = {0, 0, 0}; /* ce, weight, tokens of the step */
            int64_t mlo = pos, mhi = end; /* this rank's examples of the step */
            dr_dist_share(end - pos, &mlo, &mhi);
            mlo += pos, mhi += pos;
            for (int64_t p0 = mlo; p0 < mhi; p0 += batch) {
                int nb = (int)(mhi - p0 < batch ? mhi - p0 : batch), bt = 2;
                for (int b = 0; b < nb; b++) bt = d.ex[perm[p0 + b]].len > bt ? d.ex[perm[p0 + b]].len : bt;
                memset(mask, 0, (size_t)nb * bt);
                for (int b = 0; b < nb; b++) {
                    const llm_sft_example *e = &d.ex[perm[p0 + b]];
                    memcpy(tok + (size_t)b * bt, e->tokens, (size_t)e->len * sizeof *tok);
                    memcpy(mask + (size_t)b * bt, e->mask, (size_t)e->len);
                    lens[b] = e->len;
                    sums[2] += e->len;
                }
                llm_batch bb = {nb, bt, tok, lens, NULL, mask, NULL, NULL, NULL};
                double ce, w;
                if ((rc = llm_train_sft(t, &bb, (float)wtot, &ce, &w))) goto out;
                sums[0] += ce, sums[1] += w;
            }
            if (dr_dist_size() > 1) {
                size_t n_grads;
                float *g = llm_train_grads(t, &n_grads);
                if ((rc = dr_dist_sum_f32(g, n_grads)) || (rc = dr_dist_sum_f64(sums, 3))) goto out;
            }
            double ce_step = sums[0], w_step = sums[1];
            tokens += (int64_t)sums[2];
            float gnorm = 0, lr_used = llm_train_lr(t);
            double loss = w_step > 0 ? ce_step / w_step : 0;
            /* NaN/Inf stops the run: the --out of an earlier run is left as it was */
            if (!isfinite(loss)) {
                rc = dr_error(DR_ERR_RANGE, "llm sft: the loss is not finite at step %lld (lr %.3g): nothing written",
                              (long long)llm_train_steps(t) + 1, (double)lr_used);
                dr_error_hint("lower --lr or keep --clip on");
                goto out;
            }
            if ((rc = llm_train_step(t, &gnorm))) {
                dr_error_context("llm sft (lr %.3g): nothing written", (double)lr_used);
                goto out;
            }
            run[U_POS] = end;
            if (isnan(res->first_loss)) res->first_loss = loss;
            res->last_loss = loss;
            if (loss < res->best_loss) res->best_loss = loss;
            double el = dr_now() - t0;
            dr_progress_set_extra(&prog, "loss %.4f lr %.2e", loss, lr_used);
            dr_progress_update(&prog, llm_train_steps(t));
            if (metrics.fp) {
                json_t *j = json_pack("{s:I, s:I, s:f, s:f, s:f, s:I, s:f}", "step", (json_int_t)llm_train_steps(t),
                                      "epoch", (json_int_t)run[U_EPOCH], "loss", loss, "lr", (double)lr_used, "grad_norm",
                                      (double)gnorm, "tokens", (json_int_t)tokens, "tokens_per_s",
                                      el > 0 ? tokens / el : 0.0);
                if (j) {
                    dr_jsonl_write(&metrics, j);
                    json_decref(j);
                }
            }
        }
        if (run[U_POS] >= d.n) run[U_EPOCH]++, run[U_POS] = 0;
    }
    dr_progress_finish(&prog);
    prog_on = 0;
    double el = dr_now() - t0;
    res->seconds = el;
    res->tokens = tokens;
    res->tokens_per_s = el > 0 ? tokens / el : 0.0;
    res->steps = llm_train_steps(t);
    if (lead && (rc = llm_train_save_model(t, m->tok, o->out_type, o->out))) goto out;
    /* full fine-tuning continues from the model just written: that is the --model a resume must give */
    if (lead && o->save_state && !o->lora && (rc = file_fingerprint(o->out, &run[U_MODEL]))) goto out;
    if (lead && o->save_state && (rc = llm_train_save_state(t, o->save_state))) goto out;
    if (progress)
        fprintf(progress, "loss %.4f -> %.4f (best %.4f), %.0f tokens/s; wrote %s\n", res->first_loss,
                res->last_loss, res->best_loss, res->tokens_per_s, o->out);
out:
    if (prog_on) dr_progress_finish(&prog);
    if (metrics.fp) dr_jsonl_close(&metrics);
    free(perm), free(tok), free(mask), free(lens);
    llm_sft_free(&d);
    llm_train_free(t);
    llm_model_free(m);
    return rc;
}
