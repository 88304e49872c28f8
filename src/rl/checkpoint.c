/* Checkpoints of the RL trainer: the paths beside --out, two slots committed by a JSON marker
 * (a kill at any moment leaves the previous checkpoint intact), the input model's fingerprint
 * and an exact resume. */
#include "internal.h"
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- paths */
static char *path_base(const char *p) {
    size_t n = strlen(p);
    if (n > 5 && !strcmp(p + n - 5, ".gguf")) n -= 5;
    char *b = dr_malloc(n + 1);
    if (b) {
        memcpy(b, p, n);
        b[n] = 0;
    }
    return b;
}
int rl_ckpt_paths(rl_run *r) {
    const rl_opts *o = r->o;
    r->base = path_base(o->out);
    if (!r->base) return dr_error_code();
    r->marker = dr_str_concat(r->base, ".ckpt.json");
    r->metrics = o->metrics ? dr_strdup(o->metrics) : dr_str_concat(r->base, ".metrics.jsonl");
    r->curve = o->curve ? dr_strdup(o->curve) : dr_str_concat(r->base, ".rewards.svg");
    r->slot_model[0] = dr_str_concat(r->base, ".ckpt-a.gguf");
    r->slot_model[1] = dr_str_concat(r->base, ".ckpt-b.gguf");
    r->slot_state[0] = dr_str_concat(r->base, ".ckpt-a.state.gguf");
    r->slot_state[1] = dr_str_concat(r->base, ".ckpt-b.state.gguf");
    r->best_model[0] = dr_str_concat(r->base, ".best-a.gguf");
    r->best_model[1] = dr_str_concat(r->base, ".best-b.gguf");
    if (!r->marker || !r->metrics || !r->curve || !r->slot_model[0] || !r->slot_model[1] || !r->slot_state[0] ||
        !r->slot_state[1] || !r->best_model[0] || !r->best_model[1])
        return dr_error_code();
    /* the earlier stage's log beside the input model, for a curve of both stages */
    if (o->prev_metrics) {
        r->prev = dr_strdup(o->prev_metrics);
    } else if (o->llm_path && o->stage == RL_STAGE_2) {
        char *lb = path_base(o->llm_path);
        if (lb) {
            r->prev = dr_str_concat(lb, ".metrics.jsonl");
            free(lb);
        }
        if (r->prev && !dr_file_exists(r->prev)) {
            free(r->prev);
            r->prev = NULL;
        }
    }
    return DR_OK;
}

void rl_ckpt_paths_free(rl_run *r) {
    free(r->base);
    free(r->marker);
    free(r->metrics);
    free(r->curve);
    free(r->prev);
    for (int i = 0; i < 2; i++) {
        free(r->slot_model[i]);
        free(r->slot_state[i]);
        free(r->best_model[i]);
    }
}

/* ---------------------------------------------------------------- marker */
typedef struct ckpt_info {
    int64_t step;
    int slot; /* 0 = a, 1 = b */
    int stage;
    uint64_t seed;
    char fp[17]; /* fingerprint of the input model ("" in old markers) */
    int64_t kb_users, kb_every; /* keep_best settings (0 when off or absent) */
    int best_slot;              /* -1: none */
    int64_t best_step;
    double best_ndcg10;
    json_t *best_users; /* the best policy's NDCG@10 per validation user (array; owned) */
} ckpt_info;

/* Fingerprint of the input model: FNV-1a over the configuration and the first rows of the
 * embedding table (enough to tell a different or retrained model). */
static void model_fingerprint(const llm_model *m, char out[17]) {
    const llm_config *c = &m->cfg;
    const int cfgv[8] = {c->arch, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn, c->vocab, c->head_dim};
    uint64_t h = dr_fnv1a64(cfgv, sizeof cfgv, DR_FNV64_INIT);
    int rows = m->tok_embd.rows < 16 ? m->tok_embd.rows : 16;
    if (m->tok_embd.data) h = dr_fnv1a64(m->tok_embd.data, (size_t)rows * m->tok_embd.row_bytes, h);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int read_marker(const char *path, ckpt_info *ci) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return dr_error_at(DR_ERR_FORMAT, path, err.line, "cannot read the checkpoint marker: %s", err.text);
    json_t *st = json_object_get(j, "step"), *sl = json_object_get(j, "slot"), *sg = json_object_get(j, "stage"),
           *sd = json_object_get(j, "seed");
    int rc = DR_OK;
    if (!json_is_integer(st) || !json_is_string(sl) || !json_is_integer(sg) || !json_is_integer(sd))
        rc = dr_error_at(DR_ERR_FORMAT, path, 0, "checkpoint marker without step/slot/stage/seed");
    else {
        ci->step = json_integer_value(st);
        ci->slot = strcmp(json_string_value(sl), "b") == 0;
        ci->stage = (int)json_integer_value(sg);
        ci->seed = (uint64_t)json_integer_value(sd);
        json_t *fp = json_object_get(j, "llm_fingerprint");
        snprintf(ci->fp, sizeof ci->fp, "%s", json_is_string(fp) ? json_string_value(fp) : "");
        json_t *ku = json_object_get(j, "keep_best_users"), *ke = json_object_get(j, "keep_best_every"),
               *bs = json_object_get(j, "best_slot"), *bt = json_object_get(j, "best_step"),
               *bn = json_object_get(j, "best_ndcg10");
        ci->kb_users = json_is_integer(ku) ? json_integer_value(ku) : 0;
        ci->kb_every = json_is_integer(ke) ? json_integer_value(ke) : 0;
        ci->best_slot = -1;
        if (json_is_string(bs) && json_is_integer(bt) && json_is_number(bn)) {
            ci->best_slot = strcmp(json_string_value(bs), "b") == 0;
            ci->best_step = json_integer_value(bt);
            ci->best_ndcg10 = json_number_value(bn);
            json_t *bu = json_object_get(j, "best_user_ndcg10");
            if (json_is_array(bu)) ci->best_users = json_incref(bu);
        }
    }
    json_decref(j);
    return rc;
}

/* What a resumed run must share with the checkpoint besides stage and seed: the batch shape,
 * the probe size (which decides the training users) and the title constraint, its order rule and
 * the tag grammar (which decide the distribution the rollouts sample from). Probe 0 without the
 * constraints keeps the oldest encoding. (The probe's temperature and samples change what is
 * logged, not the training.) */
static int64_t resume_key(const rl_opts *o) {
    return ((int64_t)o->probe_users << 40) + ((int64_t)(o->rollout.constrain_titles != 0) << 39) +
           ((int64_t)(o->rollout.constrain_order != 0) << 38) + ((int64_t)(o->rollout.constrain_tags != 0) << 37) +
           (int64_t)o->prompts * 1000 + o->samples;
}

/* The trainer's user ints of a checkpoint. */
enum { U_STEP, U_STAGE, U_SEED, U_KEY };

int rl_ckpt_save(rl_run *r, int64_t step) {
    int slot = r->cur_slot == 0 ? 1 : 0;
    int64_t *u = llm_train_run_state(r->tr);
    u[U_STEP] = step;
    u[U_STAGE] = r->o->stage;
    u[U_SEED] = (int64_t)r->o->seed;
    u[U_KEY] = resume_key(r->o);
    if (dr_dist_rank() > 0) { /* rank 0 writes; the others follow which slot is committed */
        r->cur_slot = slot;
        return DR_OK;
    }
    int rc = llm_train_save_model(r->tr, r->tok, GGML_TYPE_F32, r->slot_model[slot]);
    if (!rc) rc = llm_train_save_state(r->tr, r->slot_state[slot]);
    if (rc) return rc;
    json_t *j = json_pack("{s:I, s:s, s:i, s:I, s:s, s:s, s:s}", "step", (json_int_t)step, "slot", slot ? "b" : "a",
                          "stage", r->o->stage, "seed", (json_int_t)r->o->seed, "model", r->slot_model[slot], "state",
                          r->slot_state[slot], "llm_fingerprint", r->fp);
    if (!j) return dr_error(DR_ERR_NOMEM, "out of memory");
    if (r->o->keep_best_users > 0) { /* the best policy is committed with the checkpoint */
        json_object_set_new(j, "keep_best_users", json_integer(r->o->keep_best_users));
        json_object_set_new(j, "keep_best_every", json_integer(r->o->keep_best_every));
        if (r->best_slot >= 0) {
            json_object_set_new(j, "best_slot", json_string(r->best_slot ? "b" : "a"));
            json_object_set_new(j, "best_model", json_string(r->best_model[r->best_slot]));
            json_object_set_new(j, "best_step", json_integer(r->best_step));
            json_object_set_new(j, "best_ndcg10", json_real(r->best_ndcg10));
            json_t *bu = json_array();
            for (int i = 0; bu && i < r->n_vusers; i++) json_array_append_new(bu, json_real(r->best_user_ndcg[i]));
            json_object_set_new(j, "best_user_ndcg10", bu);
        }
    }
    rc = dr_json_write_file(r->marker, j);
    json_decref(j);
    if (!rc) r->cur_slot = slot;
    return rc;
}

/* Keep the JSON lines of steps <= done (a resumed run rewrites the rest). */
static int trim_metrics(const char *path, int64_t done) {
    FILE *f = fopen(path, "rb");
    if (!f) return DR_OK;
    dr_afile af;
    int rc = dr_afile_open(&af, path);
    if (rc) {
        fclose(f);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_t *j = json_loadb(line, (size_t)len, 0, NULL);
        json_t *st = j ? json_object_get(j, "step") : NULL;
        if (json_is_integer(st) && json_integer_value(st) <= done) fwrite(line, 1, (size_t)len, af.fp);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return dr_afile_commit(&af);
}

/* The committed checkpoint, checked against this run; under full fine-tuning its model is
 * loaded into r->resume_src (LoRA resumes from the original base). */
static int resume_marker(rl_run *r, ckpt_info *ci) {
    const rl_opts *o = r->o;
    int rc = read_marker(r->marker, ci);
    if (rc) return rc;
    r->cur_slot = ci->slot;
    if (ci->fp[0] && strcmp(ci->fp, r->fp) != 0) {
        rc = dr_error(DR_ERR_ARG, "rl --resume: the checkpoint %s was made from another input model", r->marker);
        dr_error_hint("remove %s to start a new run", r->marker);
        return rc;
    }
    if (ci->stage != o->stage || ci->seed != o->seed)
        return dr_error(DR_ERR_ARG, "rl --resume: the checkpoint %s is for stage %d seed %llu (this run: stage %d seed %llu)",
                        r->marker, ci->stage, (unsigned long long)ci->seed, o->stage, (unsigned long long)o->seed);
    if (ci->kb_users != o->keep_best_users || ci->kb_every != o->keep_best_every)
        return dr_error(DR_ERR_ARG, "rl --resume: the checkpoint %s was made with --keep-best %lld every %lld (this run: %d every %d)",
                        r->marker, (long long)ci->kb_users, (long long)ci->kb_every, o->keep_best_users,
                        o->keep_best_every);
    if (ci->best_slot >= 0) { /* the paired test needs the best's per-user values */
        if (json_array_size(ci->best_users) != (size_t)r->n_vusers)
            return dr_error(DR_ERR_FORMAT, "rl --resume: the checkpoint %s has %zu per-user validation values, not %d",
                            r->marker, json_array_size(ci->best_users), r->n_vusers);
        for (int i = 0; i < r->n_vusers; i++) {
            json_t *x = json_array_get(ci->best_users, (size_t)i);
            if (!json_is_number(x))
                return dr_error(DR_ERR_FORMAT, "rl --resume: %s: best_user_ndcg10[%d] is not a number", r->marker, i);
            r->best_user_ndcg[i] = json_number_value(x);
        }
    }
    r->best_slot = ci->best_slot;
    r->best_step = ci->best_step;
    r->best_ndcg10 = ci->best_ndcg10;
    if (o->lora_rank == 0) return llm_model_load(&r->resume_src, r->slot_model[ci->slot]);
    return DR_OK;
}

int rl_ckpt_open(rl_run *r, int64_t *start, int *resumed) {
    const rl_opts *o = r->o;
    const llm_model *lm = r->env->llm;
    *start = 0;
    ckpt_info ci = {0};
    model_fingerprint(lm, r->fp);
    *resumed = o->resume && dr_file_exists(r->marker);
    int rc = *resumed ? resume_marker(r, &ci) : DR_OK;
    json_decref(ci.best_users);
    if (rc) return rc;
    llm_train_config tc;
    llm_train_config_default(&tc);
    tc.max_batch = o->micro;
    tc.max_len = r->max_ctx;
    tc.recompute = o->recompute;
    tc.lora_rank = o->lora_rank;
    tc.lora_alpha = o->lora_alpha;
    tc.lora_targets = o->lora_targets;
    tc.seed = o->seed;
    tc.lr = o->lr;
    tc.beta1 = 0.9f;
    tc.beta2 = 0.95f;
    tc.grad_clip = o->grad_clip;
    tc.weight_decay = o->weight_decay;
    tc.sched = LLM_SCHED_CONSTANT;
    if ((rc = llm_train_new(&r->tr, r->resume_src ? r->resume_src : lm, &tc))) return rc;
    if (!*resumed) return DR_OK;
    if ((rc = llm_train_load_state(r->tr, r->slot_state[ci.slot]))) return rc;
    const int64_t *u = llm_train_run_state(r->tr);
    if (u[U_STEP] != ci.step || u[U_STAGE] != o->stage || u[U_KEY] != resume_key(o))
        return dr_error(DR_ERR_ARG, "rl --resume: %s does not match its marker or this run's --prompts/--samples/--probe/--constrain",
                        r->slot_state[ci.slot]);
    *start = ci.step;
    if (dr_dist_rank() == 0) return trim_metrics(r->metrics, *start);
    return DR_OK;
}
