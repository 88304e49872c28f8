/* deeprec trm train | eval | retrieve | fusion */
#include "cli.h"
#include "deeprec/data.h"
#include "deeprec/evaluate.h"
#include "deeprec/metrics.h"
#include "deeprec/trm.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>


static void print_metrics(FILE *out, const char *label, const dr_metrics_mean *mm) {
    fprintf(out, "%s (%lld users):", label, (long long)mm->n);
    for (int i = 0; i < DR_METRIC_NK; i++) fprintf(out, " Recall@%d %.4f", dr_metric_ks[i], mm->recall[i]);
    fprintf(out, "\n%*s", (int)strlen(label) + 2, "");
    for (int i = 0; i < DR_METRIC_NK; i++) fprintf(out, " NDCG@%d %.4f", dr_metric_ks[i], mm->ndcg[i]);
    fprintf(out, " MRR %.4f\n", mm->mrr);
}

static void print_train(const char *out, const char *model, const char *loss, const trm_model *m,
                        const trm_train_result *res, const dr_metrics_mean *test, const dr_metrics_mean *test_o,
                        double wall, int json) {
    int pref = trm_model_config(m)->model == TRM_PREF;
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "out", json_string(out));
        json_object_set_new(j, "model", json_string(model));
        json_object_set_new(j, "loss", json_string(loss));
        json_object_set_new(j, "params", json_integer((json_int_t)trm_num_params(m)));
        if (trm_model_config(m)->ensemble >= 2)
            json_object_set_new(j, "ensemble", json_integer(trm_model_config(m)->ensemble));
        json_object_set_new(j, "epochs_run", json_integer(res->epochs_run));
        json_object_set_new(j, "best_epoch", json_integer(res->best_epoch));
        if (res->best_valid_ndcg10 >= 0) json_object_set_new(j, "best_valid_ndcg@10", json_real(res->best_valid_ndcg10));
        if (res->refit_epochs) json_object_set_new(j, "refit_epochs", json_integer(res->refit_epochs));
        json_object_set_new(j, "test", dr_metrics_mean_json(test));
        if (pref) json_object_set_new(j, "test_pref_oracle", dr_metrics_mean_json(test_o));
        json_object_set_new(j, "seconds", json_real(wall));
        cli_print_json(j, CLI_JSON);
    } else {
        if (trm_model_config(m)->ensemble >= 2 && res->refit_epochs)
            printf("wrote %s: an ensemble of %d refit members (no validation figure: they trained on the validation "
                   "targets), %d epochs run in all, %.1f s\n",
                   out, trm_model_config(m)->ensemble, res->epochs_run, wall);
        else if (trm_model_config(m)->ensemble >= 2)
            printf("wrote %s: an ensemble of %d (valid NDCG@10 %.4f), %d epochs run in all, %.1f s\n", out,
                   trm_model_config(m)->ensemble, res->best_valid_ndcg10, res->epochs_run, wall);
        else if (res->refit_epochs)
            printf("wrote %s: refit for %d epochs on all but the test items (the early-stopped run: best epoch %d, "
                   "valid NDCG@10 %.4f), %d epochs run, %.1f s\n",
                   out, res->refit_epochs, res->best_epoch, res->best_valid_ndcg10, res->epochs_run, wall);
        else
            printf("wrote %s: best epoch %d (valid NDCG@10 %.4f), %d epochs run, %.1f s\n", out, res->best_epoch,
                   res->best_valid_ndcg10, res->epochs_run, wall);
        print_metrics(stdout, "test (history masked)", test);
        if (pref) print_metrics(stdout, "test, oracle preference", test_o);
    }
}

/* What `trm train` was asked: the model and training options, and the CLI's own. */
typedef struct train_args {
    const char *data, *out, *model, *loss, *init;
    int json, threads, quiet;
    trm_config c;
    trm_train_opts o;
} train_args;

/* Parses and checks the options into a; nonzero means exit now with *exit_code. */
static int parse_train(int argc, char **argv, train_args *a, int *exit_code) {
    const char *act = "gelu", *metrics = NULL, *schedule = "const", *wd_params = "all";
    double dropout = 0.5, lr = 1e-3, wd = 0.0, clip = 0.0, pref_empty = 0.3, smoothing = 0.0, ema = 0.0, mixed = 0.0;
    int64_t seed = 1;
    *a = (train_args){.model = "sasrec", .loss = "ce"};
    trm_config *c = &a->c;
    trm_train_opts *o = &a->o;
    trm_config_default(c);
    trm_train_opts_default(o);
    cli_opt opts[] = {
        {"--data", CLI_STR, &a->data, "dataset (.gguf, from `deeprec data import`)"},
        {"--out", CLI_STR, &a->out, "best checkpoint (.gguf); also OUT.resume.gguf, OUT.metrics.jsonl"},
        {"--model", CLI_STR, &a->model,
         "sasrec | pref (preference-aware retriever) | text (pref whose item text goes through a mixture of experts)"},
        {"--experts", CLI_INT, &c->text_experts, "text: experts of the item-text adaptor (4)"},
        {"--init", CLI_STR, &a->init, "start from a trained TRM (.gguf): tensors of the same name and shape are copied"},
        {"--ensemble", CLI_INT, &c->ensemble,
         "K >= 2: train K models (seeds SEED..SEED+K-1, files OUT.member-N.gguf) and rank by their summed scores "
         "(0 = one model)"},
        {"--loss", CLI_STR, &a->loss, "ce (full softmax) | sampled | bce"},
        {"--neg", CLI_INT, &o->n_neg, "negatives per position for --loss sampled (100)"},
        {"--logq", CLI_FLAG, &o->logq, "sampled: logQ correction of the uniform negatives (estimates the full softmax)"},
        {"--mixed-neg", CLI_FLOAT, &mixed,
         "sampled: share of the negatives drawn from the batch's targets (in-batch), the rest uniform (0)"},
        {"--dim", CLI_INT, &c->dim, "hidden size (64)"},
        {"--layers", CLI_INT, &c->layers, "transformer blocks (2)"},
        {"--heads", CLI_INT, &c->heads, "attention heads (2)"},
        {"--ffn", CLI_INT, &c->ffn_dim, "FFN inner size (0 = 4 x dim)"},
        {"--max-len", CLI_INT, &c->max_len, "history length (50)"},
        {"--dropout", CLI_FLOAT, &dropout, "dropout (0.5)"},
        {"--act", CLI_STR, &act, "gelu | relu"},
        {"--post-ln", CLI_FLAG, &c->post_ln, "post-LN blocks (default pre-LN)"},
        {"--sep-out", CLI_FLAG, &c->sep_out, "separate output item table (sasrec)"},
        {"--scale-emb", CLI_FLAG, &c->scale_emb, "scale item embeddings by sqrt(dim)"},
        {"--emb-ln", CLI_FLAG, &c->emb_ln, "LayerNorm over item + position embedding (before its dropout)"},
        {"--gate", CLI_FLAG, &c->gate, "LiGR blocks: a sigmoid gate on each residual branch (eSASRec; pre-LN)"},
        {"--text-buckets", CLI_INT, &c->text_buckets, "pref: hashed text feature buckets (65536)"},
        {"--pref-empty", CLI_FLOAT, &pref_empty, "pref: probability of an empty pseudo-preference (0.3)"},
        {"--lr", CLI_FLOAT, &lr, "learning rate (1e-3)"},
        {"--wd", CLI_FLOAT, &wd, "AdamW weight decay (0)"},
        {"--wd-params", CLI_STR, &wd_params,
         "tensors --wd applies to: all | matrices (no LayerNorm, no bias) | linear (matrices less the embedding tables)"},
        {"--clip", CLI_FLOAT, &clip, "gradient norm clip (0 = off)"},
        {"--label-smoothing", CLI_FLOAT, &smoothing, "ce: label smoothing in [0, 1) (0 = off)"},
        {"--mask-history", CLI_FLAG, &o->mask_history,
         "ce: leave each position's history out of its softmax, as the evaluation masks it"},
        {"--lr-schedule", CLI_STR, &schedule, "const | cosine (to 0 at the last step of --epochs)"},
        {"--warmup", CLI_INT, &o->warmup, "linear learning-rate warmup steps (0)"},
        {"--ema", CLI_FLOAT, &ema, "decay of a moving average of the weights, validated and saved instead (0 = off)"},
        {"--refit", CLI_FLAG, &o->refit,
         "after early stopping, train again for the best epoch count on all but the test items (the validation item "
         "a target too); the early-stopped model is kept as OUT.early.gguf"},
        {"--batch", CLI_INT, &o->batch, "sequences per step (256)"},
        {"--epochs", CLI_INT, &o->epochs, "maximum epochs (200)"},
        {"--patience", CLI_INT, &o->patience, "early stopping: epochs without valid NDCG@10 gain (10; 0 = off)"},
        {"--valid-users", CLI_INT, &o->valid_users,
         "users early stopping validates on: -1 auto (all up to 25000, else a fixed sample of 10000), 0 all, N a "
         "fixed sample of N; the test is always over all"},
        {"--seed", CLI_I64, &seed, "random seed (1)"},
        {"--threads", CLI_INT, &a->threads, "threads (default: DEEPREC_THREADS or all cores)"},
        {"--resume", CLI_FLAG, &o->resume, "continue from OUT.resume.gguf"},
        {"--metrics", CLI_STR, &metrics, "JSON-lines metrics per epoch (default OUT.metrics.jsonl)"},
        {"--max-steps", CLI_INT, &o->max_steps, "limit steps per epoch (testing)"},
        CLI_QUIET_JSON_OPTS(a->quiet, a->json),
    };
    if (cli_parse_opts("deeprec trm train --data DATA.gguf --out TRM.gguf [options]",
                       argc, argv, opts, CLI_NOPTS(opts), exit_code))
        return 1;
    *exit_code = 2;
    if (!a->data || !a->out) return cli_usage_error("trm train needs --data and --out");
    if (!strcmp(a->model, "text")) {
        c->model = TRM_PREF;
        if (!c->text_experts) c->text_experts = TRM_TEXT_EXPERTS_DEFAULT;
    } else if ((c->model = trm_model_kind_from_name(a->model)) < 0) {
        return cli_usage_error("--model must be sasrec, pref or text, got '%s'", a->model);
    } else if (c->text_experts) {
        return cli_usage_error("--experts is for --model text");
    }
    if (c->ensemble == 1) return cli_usage_error("--ensemble needs 2 or more members (0: one model)");
    if ((o->loss = trm_loss_from_name(a->loss)) < 0)
        return cli_usage_error("--loss must be ce, sampled or bce, got '%s'", a->loss);
    if ((c->act = trm_act_from_name(act)) < 0) return cli_usage_error("--act must be gelu or relu, got '%s'", act);
    if ((o->lr_schedule = trm_lr_schedule_from_name(schedule)) < 0)
        return cli_usage_error("--lr-schedule must be const or cosine, got '%s'", schedule);
    if ((o->wd_params = trm_wd_params_from_name(wd_params)) < 0)
        return cli_usage_error("--wd-params must be all, matrices or linear, got '%s'", wd_params);
    c->dropout = (float)dropout;
    o->lr = (float)lr, o->weight_decay = (float)wd, o->grad_clip = (float)clip, o->pref_empty_p = (float)pref_empty;
    o->label_smoothing = (float)smoothing, o->ema = (float)ema, o->mixed_neg = (float)mixed;
    o->seed = (uint64_t)seed, o->out = a->out, o->metrics = metrics, o->progress = a->quiet ? NULL : stderr;
    return 0;
}

static int cmd_train(int argc, char **argv) {
    train_args a;
    int r;
    if (parse_train(argc, argv, &a, &r)) return r;
    if (a.threads > 0) dr_threads_set(a.threads);
    if (cli_claim_output(a.out, (const char *[]){a.data}, 1)) return 1;
    dr_dataset d = {0};
    trm_model *m = NULL;
    trm_train_result res;
    dr_metrics_mean test, test_o;
    int rc;
    if ((rc = dr_data_load(&d, a.data)) || (rc = trm_model_new(&m, &a.c, &d, a.o.seed))) goto done;
    if (a.init && (rc = trm_model_init_from_file(m, &d, a.init))) goto done;
    if (!a.quiet)
        fprintf(stderr, "trm train: %s model, %zu parameters, %d users, %d items, loss %s, %d threads\n", a.model,
                trm_num_params(m), d.n_users, d.n_items, a.loss, a.threads > 0 ? a.threads : dr_threads());
    double t0 = dr_now();
    if ((rc = trm_train(m, &d, &a.o, &res)) || (rc = trm_evaluate(m, &d, 1, 1, 0, &test)) ||
        (a.c.model == TRM_PREF && (rc = trm_evaluate(m, &d, 1, 1, 1, &test_o))))
        goto done;
    print_train(a.out, a.model, a.loss, m, &res, &test, &test_o, dr_now() - t0, a.json);
done: /* rc != 0 on the failure paths */
    trm_model_free(m);
    dr_data_free(&d);
    return rc ? cli_fail() : 0;
}

static int cmd_eval(int argc, char **argv) {
    const char *data = NULL, *model = NULL, *split = "test";
    int no_mask = 0, oracle = 0, json = 0;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data, "dataset (.gguf)"},
        {"--model", CLI_STR, &model, "TRM checkpoint (.gguf)"},
        {"--split", CLI_STR, &split, "test | valid | train (the last training item: a target the TRM was trained on)"},
        {"--no-mask-history", CLI_FLAG, &no_mask, "rank history items too"},
        {"--pref-oracle", CLI_FLAG, &oracle, "pref model: give the target's category words as the preference"},
        {"--json", CLI_FLAG, &json, "one JSON object on stdout"},
    };
    int r;
    if (cli_parse_opts("deeprec trm eval --data DATA.gguf --model TRM.gguf [options]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data || !model) return cli_usage_error("trm eval needs --data and --model");
    int sp;
    if ((sp = trm_eval_split_from_name(split)) < 0)
        return cli_usage_error("--split must be test, valid or train, got '%s'", split);
    dr_dataset d;
    if (dr_data_load(&d, data)) return cli_fail();
    trm_model *m = NULL;
    if (trm_load(&m, model)) {
        dr_data_free(&d);
        return cli_fail();
    }
    if (trm_check_dataset(m, &d, model, data)) {
        trm_model_free(m);
        dr_data_free(&d);
        return cli_fail();
    }
    if (oracle && trm_model_config(m)->model != TRM_PREF) {
        trm_model_free(m);
        dr_data_free(&d);
        return cli_usage_error("--pref-oracle needs a pref model");
    }
    dr_metrics_mean mm;
    double t0 = dr_now();
    int rc = trm_evaluate(m, &d, sp, !no_mask, oracle, &mm);
    double wall = dr_now() - t0;
    if (rc) {
        trm_model_free(m);
        dr_data_free(&d);
        return cli_fail();
    }
    if (json) {
        json_t *j = dr_metrics_mean_json(&mm);
        json_object_set_new(j, "split", json_string(split));
        json_object_set_new(j, "mask_history", json_boolean(!no_mask));
        json_object_set_new(j, "pref", json_string(oracle ? "oracle" : "empty"));
        json_object_set_new(j, "seconds", json_real(wall));
        cli_print_json(j, CLI_JSON);
    } else {
        char label[96];
        snprintf(label, sizeof label, "%s%s%s", split, no_mask ? "" : " (history masked)",
                 oracle ? ", oracle preference" : "");
        print_metrics(stdout, label, &mm);
    }
    trm_model_free(m);
    dr_data_free(&d);
    return 0;
}

/* target < 0: no held-out item to show (--history all). */
static void print_retrieved(const dr_dataset *d, int32_t u, const char *pref, int64_t hn, int32_t target,
                            const int32_t *ids, const float *sc, int n, double ms, int json) {
    if (json) {
        json_t *j = json_object(), *arr = json_array();
        json_object_set_new(j, "user", dr_json_text(d->user_ids[u], (size_t)-1));
        json_object_set_new(j, "pref", dr_json_text(pref ? pref : "", (size_t)-1));
        json_object_set_new(j, "history_len", json_integer(hn));
        if (target >= 0) json_object_set_new(j, "target", dr_json_text(d->item_ids[target], (size_t)-1));
        for (int i = 0; i < n; i++) {
            json_t *it = json_object();
            json_object_set_new(it, "rank", json_integer(i + 1));
            json_object_set_new(it, "item", dr_json_text(d->item_ids[ids[i]], (size_t)-1));
            json_object_set_new(it, "title", dr_json_text(d->titles[ids[i]], (size_t)-1));
            json_object_set_new(it, "categories", dr_json_text(d->categories[ids[i]], (size_t)-1));
            json_object_set_new(it, "score", json_real(sc[i]));
            json_array_append_new(arr, it);
        }
        json_object_set_new(j, "items", arr);
        json_object_set_new(j, "ms", json_real(ms));
        cli_print_json(j, CLI_JSON);
    } else {
        printf("user %s, %lld history items, preference \"%s\" (%.3f ms)\n", d->user_ids[u], (long long)hn,
               pref ? pref : "", ms);
        if (target >= 0) printf("target: %s %s\n", cli_text(d->item_ids[target], 0), cli_text(d->titles[target], 0));
        for (int i = 0; i < n; i++)
            printf("%3d. %-8s %8.4f  %s%s%s%s\n", i + 1, cli_text(d->item_ids[ids[i]], 0), sc[i], cli_text(d->titles[ids[i]], 0),
                   d->categories[ids[i]][0] ? "  [" : "", cli_text(d->categories[ids[i]], 0), d->categories[ids[i]][0] ? "]" : "");
    }
}

static int cmd_retrieve(int argc, char **argv) {
    const char *data = NULL, *model = NULL, *user = NULL, *pref = NULL, *history = "all";
    int k = 20, json = 0, no_mask = 0, index = -1;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data, "dataset (.gguf)"},
        {"--model", CLI_STR, &model, "TRM checkpoint (.gguf)"},
        {"--user", CLI_STR, &user, "original user id ('#N' = the N-th user)"},
        {"--index", CLI_INT, &index, "internal user number instead of --user"},
        {"--pref", CLI_STR, &pref, "preference text (pref model)"},
        {"-k", CLI_INT, &k, "number of items (20)"},
        {"--history", CLI_STR, &history, "all (whole sequence) | test (seq[:-1], shows the target)"},
        {"--no-mask-history", CLI_FLAG, &no_mask, "allow history items in the result"},
        {"--json", CLI_FLAG, &json, "one JSON object on stdout"},
    };
    int r;
    if (cli_parse_opts("deeprec trm retrieve --data DATA.gguf --model TRM.gguf --user U [--pref TEXT] [-k 20]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data || !model || (!user && index < 0)) return cli_usage_error("trm retrieve needs --data, --model, --user");
    if (k < 1 || k > 100000) return cli_usage_error("-k must be in 1..100000");
    int split = dr_data_split_from_name(history), test = split == DR_SPLIT_TEST;
    if (!test && split != DR_SPLIT_ALL) return cli_usage_error("--history must be all or test");
    dr_dataset d;
    if (dr_data_load(&d, data)) return cli_fail();
    int rc = 0;
    trm_model *m = NULL;
    trm_session *s = NULL;
    int32_t *ids = NULL;
    float *sc = NULL;
    int32_t u;
    if ((rc = dr_data_user_lookup(&d, user, index, data, &u))) goto out;
    if ((rc = trm_load(&m, model))) goto out;
    if ((rc = trm_check_dataset(m, &d, model, data))) goto out;
    if ((rc = trm_session_new(&s, m))) goto out;
    const int32_t *h;
    int64_t hn;
    int32_t target = dr_data_split_history(&d, u, split, &h, &hn);
    ids = malloc((size_t)k * sizeof *ids);
    sc = malloc((size_t)k * sizeof *sc);
    if (!ids || !sc) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory");
        goto out;
    }
    int n = 0;
    double t0 = dr_now();
    if ((rc = trm_retrieve(s, h, hn, pref, k, !no_mask, ids, sc, &n))) goto out;
    double ms = (dr_now() - t0) * 1e3;
    print_retrieved(&d, u, pref, hn, test ? target : -1, ids, sc, n, ms, json);
out:
    free(ids);
    free(sc);
    trm_session_free(s);
    trm_model_free(m);
    dr_data_free(&d);
    return rc ? cli_fail() : 0;
}

/* the bound on what fusing preference-conditioned calls can gain (src/eval/fusion.c) */
static int cmd_fusion(int argc, char **argv) {
    const char *data = NULL, *model = NULL, *split = "test";
    int max_hist = 20, boot = 1000, json = 0;
    long long seed = 1;
    cli_opt opts[] = {
        {"--data", CLI_STR, &data, "dataset (.gguf, with item categories)"},
        {"--model", CLI_STR, &model, "pref TRM checkpoint (.gguf)"},
        {"--split", CLI_STR, &split, "test | valid"},
        {"--max-hist", CLI_INT, &max_hist, "history items whose categories become preferences (20)"},
        {"--bootstrap", CLI_INT, &boot, "resamples of the 95% intervals (1000; 0 = off)"},
        {"--seed", CLI_I64, &seed, "bootstrap seed (1)"},
        {"--json", CLI_FLAG, &json, "one JSON object on stdout"},
    };
    int r;
    if (cli_parse_opts("deeprec trm fusion --data DATA.gguf --model TRM.gguf [--split test|valid]",
                       argc, argv, opts, CLI_NOPTS(opts), &r))
        return r;
    if (!data || !model) return cli_usage_error("trm fusion needs --data and --model");
    int sp;
    if ((sp = trm_eval_split_from_name(split)) < 0 || sp > 1)
        return cli_usage_error("--split must be test or valid, got '%s'", split);
    if (max_hist < 1 || max_hist > 1000) return cli_usage_error("--max-hist must be in 1..1000, got %d", max_hist);
    if (boot < 0 || boot > 100000) return cli_usage_error("--bootstrap must be in 0..100000, got %d", boot);
    dr_dataset d;
    if (dr_data_load(&d, data)) return cli_fail();
    trm_model *m = NULL;
    eval_fusion_result fr;
    double t0 = dr_now();
    int rc = trm_load(&m, model);
    if (!rc) rc = eval_pref_fusion(m, &d, sp, max_hist, boot, (uint64_t)seed, &fr);
    double wall = dr_now() - t0;
    trm_model_free(m);
    dr_data_free(&d);
    if (rc) return cli_fail();
    if (json) {
        json_t *j = json_object(), *rows = json_array();
        json_object_set_new(j, "split", json_string(split));
        json_object_set_new(j, "users", json_integer(fr.n_users));
        json_object_set_new(j, "bootstrap", json_integer(fr.bootstrap));
        for (int p = 0; p < EVAL_FUSION_N; p++)
            json_array_append_new(rows, json_pack("{s:s,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "policy", eval_fusion_name(p),
                                                  "recall@10", fr.recall10[p], "ndcg@10", fr.ndcg10[p].mean,
                                                  "ndcg@10_lo", fr.ndcg10[p].lo, "ndcg@10_hi", fr.ndcg10[p].hi,
                                                  "diff", fr.diff[p].mean, "diff_lo", fr.diff[p].lo, "diff_hi",
                                                  fr.diff[p].hi));
        json_object_set_new(j, "policies", rows);
        json_object_set_new(j, "seconds", json_real(wall));
        cli_print_json(j, CLI_JSON);
    } else {
        printf("fusion bound, %s split, %lld users (history masked; exact scores over the catalog; %.1f s)\n", split,
               (long long)fr.n_users, wall);
        printf("%-60s %9s %9s  %-18s  %s\n", "policy", "R@10", "NDCG@10", "95% CI", "paired diff. vs empty");
        for (int p = 0; p < EVAL_FUSION_N; p++)
            printf("%-60s %9.4f %9.4f  [%.4f, %.4f]  %+.4f [%+.4f, %+.4f]\n", eval_fusion_name(p), fr.recall10[p],
                   fr.ndcg10[p].mean, fr.ndcg10[p].lo, fr.ndcg10[p].hi, fr.diff[p].mean, fr.diff[p].lo, fr.diff[p].hi);
    }
    return 0;
}

CLI_COMMAND(trm_train, "trm train", "train SASRec or the preference-aware retriever", cmd_train)
CLI_COMMAND(trm_eval, "trm eval", "full-ranking evaluation of a TRM checkpoint", cmd_eval)
CLI_COMMAND(trm_retrieve, "trm retrieve", "top-k items for a user (and a preference)", cmd_retrieve)
CLI_COMMAND(trm_fusion, "trm fusion", "bound on what fusing preference-conditioned TRM calls can gain", cmd_fusion)
