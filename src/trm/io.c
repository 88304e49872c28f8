/* TRM checkpoints (GGUF): deeprec.trm.* hyperparameters, tensors by name. */
#include "internal.h"
#include "deeprec/gguf.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The tensor-name prefix of part k into buf: "" for one model, "ensemble.K." for member K. */
static const char *member_prefix(const trm_model *m, int k, char buf[32]) {
    buf[0] = 0;
    if (m->n_members) snprintf(buf, 32, "ensemble.%d.", k);
    return buf;
}

gguf_writer *trm__writer(const trm_model *m) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return NULL;
    const trm_config *c = &m->cfg;
    int rc = 0;
    rc |= gguf_set_str(w, "deeprec.kind", "trm");
    rc |= gguf_set_u32(w, "deeprec.version", 1);
    rc |= gguf_set_str(w, "deeprec.trm.model", c->model == TRM_PREF ? "pref" : "sasrec");
    rc |= gguf_set_u32(w, "deeprec.trm.n_items", (uint32_t)c->n_items);
    rc |= gguf_set_u32(w, "deeprec.trm.dim", (uint32_t)c->dim);
    rc |= gguf_set_u32(w, "deeprec.trm.layers", (uint32_t)c->layers);
    rc |= gguf_set_u32(w, "deeprec.trm.heads", (uint32_t)c->heads);
    rc |= gguf_set_u32(w, "deeprec.trm.max_len", (uint32_t)c->max_len);
    rc |= gguf_set_u32(w, "deeprec.trm.ffn_dim", (uint32_t)c->ffn_dim);
    rc |= gguf_set_bool(w, "deeprec.trm.post_ln", c->post_ln);
    rc |= gguf_set_str(w, "deeprec.trm.act", c->act == TRM_ACT_RELU ? "relu" : "gelu");
    rc |= gguf_set_bool(w, "deeprec.trm.sep_out", c->sep_out);
    rc |= gguf_set_bool(w, "deeprec.trm.scale_emb", c->scale_emb);
    if (c->emb_ln) rc |= gguf_set_bool(w, "deeprec.trm.emb_ln", 1); /* absent: off (files of before) */
    if (c->gate) rc |= gguf_set_bool(w, "deeprec.trm.gate", 1);     /* absent: off */
    rc |= gguf_set_f32(w, "deeprec.trm.dropout", c->dropout);
    rc |= gguf_set_f32(w, "deeprec.trm.ln_eps", c->ln_eps);
    rc |= gguf_set_u32(w, "deeprec.trm.text_buckets", (uint32_t)c->text_buckets);
    if (c->text_experts) rc |= gguf_set_u32(w, "deeprec.trm.text_experts", (uint32_t)c->text_experts); /* absent: 0 */
    rc |= gguf_set_str(w, "deeprec.trm.text_hash", "fnv1a32 u:word b:w1 w2 mod buckets");
    /* an ensemble: every member's tensors under "ensemble.K." (absent key: one model) */
    if (m->n_members) rc |= gguf_set_u32(w, "deeprec.trm.ensemble", (uint32_t)m->n_members);
    char nm[96], prefix[32];
    for (int k = 0; k < trm__n_parts(m) && !rc; k++) {
        const trm_model *p = trm__part(m, k);
        member_prefix(m, k, prefix);
        for (int i = 0; i < p->n_t && !rc; i++) {
            const trm_tensor *t = &p->t[i];
            snprintf(nm, sizeof nm, "%s%s", prefix, t->name);
            rc |= gguf_add_tensor_borrowed(w, nm, GGML_TYPE_F32, (uint32_t)t->nd, t->ne, p->mem + t->off);
        }
    }
    const trm_model *t0 = trm__part(m, 0); /* the item text: the same in every member */
    if (c->model == TRM_PREF && !rc) {
        uint64_t ne = (uint64_t)t0->V + 1;
        rc |= gguf_add_tensor_borrowed(w, "text.item_offsets", GGML_TYPE_I32, 1, &ne, t0->item_tok_off);
        uint64_t nnz = (uint64_t)t0->item_tok_off[t0->V];
        static const int32_t dummy = 0;
        ne = nnz ? nnz : 1;
        rc |= gguf_add_tensor_borrowed(w, "text.item_ids", GGML_TYPE_I32, 1, &ne, nnz ? (const void *)t0->item_tok : &dummy);
    }
    if (rc) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

int trm_save(const trm_model *m, const char *path) {
    gguf_writer *w = trm__writer(m);
    if (!w) return dr_error_code() ? dr_error_code() : dr_error(DR_ERR_NOMEM, "trm: cannot build checkpoint");
    int rc = gguf_write(w, path);
    gguf_writer_free(w);
    return rc;
}

int trm__read_tensors(trm_model *m, const gguf_file *f, const char *prefix, float *base) {
    char nm[96];
    for (int i = 0; i < m->n_t; i++) {
        const trm_tensor *t = &m->t[i];
        snprintf(nm, sizeof nm, "%s%s", prefix, t->name);
        const gguf_tensor_info *ti;
        int rc = gguf_expect_tensor(f, nm, GGML_TYPE_F32, (uint32_t)t->nd, t->ne, &ti);
        if (rc) return rc;
        memcpy(base + t->off, ti->data, t->n * sizeof(float));
    }
    return DR_OK;
}

static int read_cfg(const gguf_file *f, trm_config *c) {
    trm_config_default(c);
    char *s = NULL;
    uint32_t u;
    int rc;
    if ((rc = gguf_get_strdup(f, "deeprec.kind", &s))) return rc;
    int ok = !strcmp(s, "trm");
    free(s);
    if (!ok) return dr_error(DR_ERR_FORMAT, "%s: not a TRM checkpoint (deeprec.kind)", f->path ? f->path : "");
    if ((rc = gguf_get_strdup(f, "deeprec.trm.model", &s))) return rc;
    c->model = trm_model_kind_from_name(s);
    free(s);
    if (c->model < 0) return dr_error(DR_ERR_FORMAT, "%s: deeprec.trm.model is not sasrec or pref", f->path ? f->path : "");
#define U(key, field)                                                                \
    do {                                                                             \
        if ((rc = gguf_get_u32(f, "deeprec.trm." key, &u))) return rc;               \
        if (u > (1u << 30)) return dr_error(DR_ERR_FORMAT, "trm: %s out of range", key); \
        c->field = (int)u;                                                           \
    } while (0)
    U("n_items", n_items);
    U("dim", dim);
    U("layers", layers);
    U("heads", heads);
    U("max_len", max_len);
    U("ffn_dim", ffn_dim);
    U("text_buckets", text_buckets);
    if (gguf_find_kv(f, "deeprec.trm.text_experts")) U("text_experts", text_experts); /* absent: 0 (files of before) */
    if (gguf_find_kv(f, "deeprec.trm.ensemble")) U("ensemble", ensemble);             /* absent: one model */
#undef U
    if ((rc = gguf_get_bool(f, "deeprec.trm.post_ln", &c->post_ln))) return rc;
    if ((rc = gguf_get_bool(f, "deeprec.trm.sep_out", &c->sep_out))) return rc;
    if ((rc = gguf_get_bool(f, "deeprec.trm.scale_emb", &c->scale_emb))) return rc;
    if (gguf_find_kv(f, "deeprec.trm.emb_ln") && (rc = gguf_get_bool(f, "deeprec.trm.emb_ln", &c->emb_ln))) return rc;
    if (gguf_find_kv(f, "deeprec.trm.gate") && (rc = gguf_get_bool(f, "deeprec.trm.gate", &c->gate))) return rc;
    if ((rc = gguf_get_f32(f, "deeprec.trm.dropout", &c->dropout))) return rc;
    if ((rc = gguf_get_f32(f, "deeprec.trm.ln_eps", &c->ln_eps))) return rc;
    if ((rc = gguf_get_strdup(f, "deeprec.trm.act", &s))) return rc;
    c->act = !strcmp(s, "relu") ? TRM_ACT_RELU : TRM_ACT_GELU;
    free(s);
    return DR_OK;
}

static int load_part(trm_model **out, const gguf_file *f, const trm_config *cfg, const char *prefix);

size_t trm__first_nonfinite(const trm_model *m) {
    const float *w = m->mem;
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(w[i])) return i;
    return (size_t)-1;
}

int trm__load_file(trm_model **out, const gguf_file *f) {
    *out = NULL;
    trm_config c;
    int rc = read_cfg(f, &c);
    if (rc) return rc;
    if (c.ensemble == 1 || c.ensemble > TRM_MAX_ENSEMBLE)
        return dr_error(DR_ERR_FORMAT, "%s: deeprec.trm.ensemble is %d (2 to %d members)", f->path, c.ensemble,
                        TRM_MAX_ENSEMBLE);
    if (c.ensemble >= 2) {
        trm_model *e = trm__ensemble_blank(&c, &rc);
        if (!e) return rc;
        char prefix[32];
        for (int k = 0; k < e->n_members && !rc; k++)
            rc = load_part(&e->members[k], f, &c, member_prefix(e, k, prefix));
        if (!rc) rc = trm__tables_ready(e);
        if (rc) trm_model_free(e);
        else *out = e;
        return rc;
    }
    return load_part(out, f, &c, "");
}

/* One model whose tensors are named prefix + name. */
static int load_part(trm_model **out, const gguf_file *f, const trm_config *cfg, const char *prefix) {
    *out = NULL;
    trm_config c = *cfg;
    c.ensemble = 0;
    int rc;
    trm_model *m = trm__model_blank(&c, f, prefix, &rc); /* checks the file's tensors before allocating */
    if (!m) return rc;
    if ((rc = trm__read_tensors(m, f, prefix, m->mem))) goto fail;
    {
        /* a NaN weight ranks nothing (every score NaN): refuse the file, not answer empty */
        size_t bad = trm__first_nonfinite(m);
        if (bad != (size_t)-1) {
            rc = dr_error(DR_ERR_FORMAT, "%s: weight %zu of %zu is not finite (a diverged training run?)", f->path, bad,
                          m->n_params);
            goto fail;
        }
    }
    if (c.model == TRM_PREF) {
        const gguf_tensor_info *to = gguf_find_tensor(f, "text.item_offsets"), *ti = gguf_find_tensor(f, "text.item_ids");
        if (!to || !ti || to->type != GGML_TYPE_I32 || ti->type != GGML_TYPE_I32 ||
            to->n_elements != (uint64_t)m->V + 1) {
            rc = dr_error(DR_ERR_FORMAT, "%s: pref model without valid text.item_offsets/text.item_ids", f->path);
            goto fail;
        }
        m->item_tok_off = dr_malloc(((size_t)m->V + 1) * sizeof(int32_t));
        m->item_tok = dr_malloc((size_t)ti->n_elements * sizeof(int32_t));
        if (!m->item_tok_off || !m->item_tok) {
            rc = dr_error_code();
            goto fail;
        }
        memcpy(m->item_tok_off, to->data, ((size_t)m->V + 1) * sizeof(int32_t));
        memcpy(m->item_tok, ti->data, (size_t)ti->n_elements * sizeof(int32_t));
        int32_t prev = 0;
        for (int i = 0; i <= m->V; i++) {
            if (m->item_tok_off[i] < prev || (uint64_t)m->item_tok_off[i] > ti->n_elements) {
                rc = dr_error(DR_ERR_FORMAT, "%s: text.item_offsets not monotonic / out of range", f->path);
                goto fail;
            }
            prev = m->item_tok_off[i];
        }
        for (int32_t j = 0; j < m->item_tok_off[m->V]; j++)
            if (m->item_tok[j] < 0 || m->item_tok[j] >= c.text_buckets) {
                rc = dr_error(DR_ERR_FORMAT, "%s: text.item_ids out of range", f->path);
                goto fail;
            }
    }
    trm__refresh_tables(m);
    *out = m;
    return DR_OK;
fail:
    trm_model_free(m);
    return rc;
}

int trm_load(trm_model **out, const char *path) {
    gguf_file f;
    int rc = gguf_open(&f, path);
    if (rc) return rc;
    rc = trm__load_file(out, &f);
    gguf_close(&f);
    if (rc) dr_error_context("%s", path);
    return rc;
}

int trm_model_init_from_file(trm_model *m, const dr_dataset *d, const char *path) {
    trm_model *src = NULL;
    int rc = trm_load(&src, path);
    if (!rc) rc = trm_check_dataset(src, d, path, NULL);
    if (!rc) rc = trm_model_init_from(m, src);
    trm_model_free(src);
    return rc;
}
