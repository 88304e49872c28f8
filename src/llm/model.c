/* qwen2 / llama model: configuration, loading from GGUF, random init, conversion, saving. */
#include "deeprec/llm.h"
#include "deeprec/gguf.h"
#include "deeprec/nn.h"
#include "deeprec/tokenizer.h"
#include "llm_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */
const char *llm_arch_name(int arch) {
    return arch == LLM_ARCH_LLAMA ? "llama" : arch == LLM_ARCH_QWEN2 ? "qwen2" : arch == LLM_ARCH_QWEN3 ? "qwen3" : "?";
}

int llm_arch_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "qwen2")) return LLM_ARCH_QWEN2;
    if (!strcmp(name, "llama")) return LLM_ARCH_LLAMA;
    if (!strcmp(name, "qwen3")) return LLM_ARCH_QWEN3;
    return -1;
}

void llm_config_default(llm_config *c, int arch) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    if (arch == LLM_ARCH_LLAMA) {
        c->rms_eps = 1e-5f;
        c->rope_theta = 10000.0f;
        c->rope_pairing = NN_ROPE_ADJACENT;
        c->tied_output = 0;
        c->qkv_bias = 0;
    } else {
        c->rms_eps = 1e-6f;
        c->rope_theta = 1000000.0f;
        c->rope_pairing = NN_ROPE_NEOX;
        c->tied_output = 1;
        c->qkv_bias = arch == LLM_ARCH_QWEN2;
    }
}

int llm_config_check(const llm_config *c) {
    if (c->arch != LLM_ARCH_QWEN2 && c->arch != LLM_ARCH_LLAMA && c->arch != LLM_ARCH_QWEN3)
        return dr_error(DR_ERR_ARG, "unknown architecture %d", c->arch);
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 || c->ffn <= 0 ||
        c->vocab <= 0 || c->context <= 0)
        return dr_error(DR_ERR_ARG,
                        "model sizes must be positive (dim %d, layers %d, heads %d, kv heads %d, head_dim %d, ffn %d, "
                        "vocab %d, context %d)",
                        c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->vocab, c->context);
    if (c->n_heads % c->n_kv_heads)
        return dr_error(DR_ERR_ARG, "head count %d is not a multiple of the KV head count %d", c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2) return dr_error(DR_ERR_ARG, "head dimension %d is odd (RoPE needs pairs)", c->head_dim);
    if (c->dim > (1 << 20) || c->ffn > (1 << 22) || c->vocab > (1 << 26) || c->n_layers > 4096 ||
        (int64_t)c->n_heads * c->head_dim > (1 << 20) || c->context > (1 << 24))
        return dr_error(DR_ERR_RANGE, "model sizes out of range");
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0)) return dr_error(DR_ERR_ARG, "rms eps and rope theta must be > 0");
    return DR_OK;
}

/* ---------------------------------------------------------------- ownership */
int llm_model_own(llm_model *m, void *p) {
    if (!p) return DR_ERR_NOMEM;
    if (m->n_owned == m->cap_owned) {
        int nc = m->cap_owned ? 2 * m->cap_owned : 16;
        void **nv = dr_realloc(m->owned, (size_t)nc, sizeof *nv);
        if (!nv) {
            free(p);
            return DR_ERR_NOMEM;
        }
        m->owned = nv;
        m->cap_owned = nc;
    }
    m->owned[m->n_owned++] = p;
    return DR_OK;
}

void llm_model_disown_free(llm_model *m, const void *p) {
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) {
            free(m->owned[i]);
            m->owned[i] = m->owned[--m->n_owned];
            return;
        }
}

int llm_mat_type_ok(uint32_t t) {
    return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 || t == GGML_TYPE_Q8_0;
}

size_t llm_mat_bytes(uint32_t type, int rows, int cols) {
    uint64_t rb = ggml_row_bytes(type, (uint64_t)cols);
    size_t n;
    if (!rb || !dr_mul_ok((size_t)rb, (size_t)rows, &n)) return 0;
    return n;
}

void llm_model_free(llm_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->eos_ids);
    if (m->tok) tok_free(m->tok);
    if (m->file) {
        gguf_close(m->file);
        free(m->file);
    }
    free(m);
}

llm_model *llm_model_alloc(const llm_config *c) {
    llm_model *m = dr_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *c;
    m->layers = dr_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        free(m);
        return NULL;
    }
    return m;
}

int llm_is_eos(const llm_model *m, int32_t id) {
    for (int i = 0; i < m->n_eos; i++)
        if (m->eos_ids[i] == id) return 1;
    return 0;
}

static void add_eos(llm_model *m, int64_t id) {
    if (id < 0 || id >= m->cfg.vocab || llm_is_eos(m, (int32_t)id)) return;
    int32_t *n = dr_realloc(m->eos_ids, (size_t)m->n_eos + 1, sizeof *n);
    if (!n) return;
    m->eos_ids = n;
    m->eos_ids[m->n_eos++] = (int32_t)id;
}

size_t llm_model_weight_bytes(const llm_model *m) {
    const llm_config *c = &m->cfg;
    size_t b = (size_t)m->output.rows * m->output.row_bytes;
    for (int l = 0; l < c->n_layers; l++) {
        const llm_layer *L = &m->layers[l];
        const llm_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) b += (size_t)ms[i]->rows * ms[i]->row_bytes;
    }
    return b;
}

/* ---------------------------------------------------------------- loading */
static int get_u32_opt(const gguf_file *f, const char *key, uint32_t def, uint32_t *out) {
    if (!gguf_find_kv(f, key)) {
        *out = def;
        return DR_OK;
    }
    return gguf_get_u32(f, key, out);
}

static int get_f32_opt(const gguf_file *f, const char *key, float def, float *out) {
    if (!gguf_find_kv(f, key)) {
        *out = def;
        return DR_OK;
    }
    return gguf_get_f32(f, key, out);
}

static int get_int(const gguf_file *f, const char *arch, const char *suffix, int *out, int required, int def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    if (!gguf_find_kv(f, key)) {
        if (required) return dr_error(DR_ERR_FORMAT, "missing metadata key %s", key);
        *out = def;
        return DR_OK;
    }
    int rc = gguf_get_u32(f, key, &v);
    if (rc) return rc;
    if (v > (1u << 30)) return dr_error(DR_ERR_RANGE, "metadata %s = %u is out of range", key, v);
    *out = (int)v;
    return DR_OK;
}

/* Look up a tensor and check its shape; rows x cols with ne = [cols, rows] (rows == 0: 1-D [cols]). */
static int find_tensor(const gguf_file *f, const char *name, int rows, int cols, int required,
                       const gguf_tensor_info **out) {
    const gguf_tensor_info *t = gguf_find_tensor(f, name);
    *out = NULL;
    if (!t) return required ? dr_error(DR_ERR_FORMAT, "missing tensor %s", name) : DR_OK;
    int ok;
    if (rows == 0) ok = (t->n_dims == 1 && t->ne[0] == (uint64_t)cols) ||
                        (t->n_dims == 2 && t->ne[0] == (uint64_t)cols && t->ne[1] == 1);
    else ok = t->n_dims == 2 && t->ne[0] == (uint64_t)cols && t->ne[1] == (uint64_t)rows;
    if (!ok) {
        char got[96];
        int p = 0;
        for (uint32_t i = 0; i < t->n_dims && i < GGUF_MAX_DIMS; i++)
            p += snprintf(got + p, sizeof got - (size_t)p, "%s%llu", i ? ", " : "", (unsigned long long)t->ne[i]);
        if (rows == 0) return dr_error(DR_ERR_FORMAT, "tensor %s has shape [%s], expected [%d]", name, got, cols);
        return dr_error(DR_ERR_FORMAT, "tensor %s has shape [%s], expected [%d, %d] (in, out)", name, got, cols, rows);
    }
    *out = t;
    return DR_OK;
}

/* Tensor t (n values) converted to a float32 copy the model owns. */
static int owned_f32(llm_model *m, const gguf_tensor_info *t, const char *name, size_t n, float **out) {
    float *buf = dr_calloc(n, sizeof(float));
    if (!buf) return DR_ERR_NOMEM;
    int rc = gguf_tensor_to_f32(t, buf);
    if (rc) {
        free(buf);
        return dr_error_context("tensor %s", name);
    }
    if ((rc = llm_model_own(m, buf))) return rc;
    *out = buf;
    return DR_OK;
}

static int load_vec(llm_model *m, const gguf_file *f, const char *name, int n, int required, const float **out) {
    const gguf_tensor_info *t;
    int rc = find_tensor(f, name, 0, n, required, &t);
    *out = NULL;
    if (rc || !t) return rc;
    if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data % 4) == 0) {
        *out = (const float *)t->data;
        return DR_OK;
    }
    float *buf = NULL;
    if ((rc = owned_f32(m, t, name, (size_t)n, &buf))) return rc;
    *out = buf;
    return DR_OK;
}

static int load_mat(llm_model *m, const gguf_file *f, const char *name, int rows, int cols, int required, llm_mat *out) {
    const gguf_tensor_info *t;
    int rc = find_tensor(f, name, rows, cols, required, &t);
    memset(out, 0, sizeof *out);
    if (rc || !t) return rc;
    out->rows = rows;
    out->cols = cols;
    /* every llama.cpp weight type is used in place from the mmap (F32 needs aligned rows) */
    if (dr_dequantize_supported(t->type) && (t->type != GGML_TYPE_F32 || ((uintptr_t)t->data % 4) == 0)) {
        out->type = t->type;
        out->data = t->data;
        out->row_bytes = (size_t)ggml_row_bytes(t->type, (uint64_t)cols);
        if (!out->row_bytes)
            return dr_error(DR_ERR_FORMAT, "tensor %s: a row of %d values is not a whole number of %s blocks", name, cols,
                            ggml_type_name(t->type));
        return DR_OK;
    }
    if (t->type != GGML_TYPE_F64 && t->type != GGML_TYPE_F32)
        return dr_error(DR_ERR_UNSUPPORTED, "tensor %s has type %s, which is not supported", name, ggml_type_name(t->type)),
               dr_error_hint("supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, "
                             "IQ4_NL, IQ4_XS; re-quantise the model to one of them");
    size_t n;
    if (!dr_mul_ok((size_t)rows, (size_t)cols, &n)) return dr_error(DR_ERR_NOMEM, "tensor %s too large", name);
    float *buf = NULL;
    if ((rc = owned_f32(m, t, name, n, &buf))) return rc;
    out->type = GGML_TYPE_F32;
    out->data = buf;
    out->row_bytes = (size_t)cols * sizeof(float);
    return DR_OK;
}

static int load_eos(llm_model *m, const gguf_file *f) {
    static const char *keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                 "tokenizer.ggml.eom_token_id"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        int64_t v;
        if (gguf_find_kv(f, keys[i]) && gguf_get_i64(f, keys[i], &v) == DR_OK) add_eos(m, v);
    }
    uint64_t n;
    const gguf_str *strs;
    if (gguf_find_kv(f, "tokenizer.ggml.tokens") && gguf_get_arr_str(f, "tokenizer.ggml.tokens", &n, &strs) == DR_OK) {
        static const char *eog[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>",
                                    "<end_of_turn>"};
        for (uint64_t i = 0; i < n; i++) {
            if (strs[i].len < 9 || strs[i].len > 15) continue;
            for (size_t k = 0; k < sizeof eog / sizeof *eog; k++)
                if (strlen(eog[k]) == strs[i].len && !memcmp(eog[k], strs[i].ptr, strs[i].len)) add_eos(m, (int64_t)i);
        }
    }
    dr_error_clear();
    return DR_OK;
}

static int load_all(llm_model **out, gguf_file *f) {
    char *arch_s = NULL;
    if (!gguf_find_kv(f, "general.architecture") && gguf_find_kv(f, "deeprec.kind")) {
        /* one of our other files (a dataset, a TRM, an optimizer state) given as the model */
        char *kind = NULL;
        gguf_get_strdup(f, "deeprec.kind", &kind);
        dr_error(DR_ERR_ARG, "this is a deeprec %s file, not a language model", kind ? kind : "(unknown kind)");
        free(kind);
        return DR_ERR_ARG;
    }
    int rc = gguf_get_strdup(f, "general.architecture", &arch_s);
    if (rc) return rc;
    int arch = llm_arch_from_name(arch_s);
    if (arch < 0) {
        dr_error(DR_ERR_UNSUPPORTED, "unknown architecture '%s'", arch_s);
        free(arch_s);
        return dr_error_hint("supported architectures: qwen2, qwen3, llama (llama 2 and 3)");
    }
    const char *a = llm_arch_name(arch);
    free(arch_s);
    llm_config c;
    llm_config_default(&c, arch);
    if ((rc = get_int(f, a, "embedding_length", &c.dim, 1, 0)) || (rc = get_int(f, a, "block_count", &c.n_layers, 1, 0)) ||
        (rc = get_int(f, a, "attention.head_count", &c.n_heads, 1, 0)) ||
        (rc = get_int(f, a, "attention.head_count_kv", &c.n_kv_heads, 0, c.n_heads)) ||
        (rc = get_int(f, a, "feed_forward_length", &c.ffn, 1, 0)) ||
        (rc = get_int(f, a, "context_length", &c.context, 0, 4096)))
        return rc;
    if (c.n_heads <= 0) return dr_error(DR_ERR_FORMAT, "%s.attention.head_count is 0", a);
    if ((rc = get_int(f, a, "attention.key_length", &c.head_dim, 0, c.dim / c.n_heads))) return rc;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if ((rc = get_f32_opt(f, key, c.rms_eps, &c.rms_eps))) return rc;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if ((rc = get_f32_opt(f, key, c.rope_theta, &c.rope_theta))) return rc;
    uint32_t rope_dims;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if ((rc = get_u32_opt(f, key, (uint32_t)c.head_dim, &rope_dims))) return rc;
    if ((int)rope_dims != c.head_dim)
        return dr_error(DR_ERR_UNSUPPORTED, "partial RoPE (%s = %u, head dimension %d) is not supported", key, rope_dims,
                        c.head_dim);
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    const gguf_kv *sk = gguf_find_kv(f, key);
    if (sk && sk->type == GGUF_TYPE_STRING) {
        gguf_str st;
        if (gguf_get_str(f, key, &st) == DR_OK && !(st.len == 4 && !memcmp(st.ptr, "none", 4)))
            dr_log(DR_LOG_WARN, "%s: RoPE scaling '%.*s' is ignored (positions beyond the original context degrade)",
                   f->path ? f->path : "model", (int)st.len, st.ptr);
    }

    const gguf_tensor_info *te = gguf_find_tensor(f, "token_embd.weight");
    if (!te) return dr_error(DR_ERR_FORMAT, "missing tensor token_embd.weight");
    if (te->n_dims != 2 || te->ne[0] != (uint64_t)c.dim || te->ne[1] == 0 || te->ne[1] > (1u << 26))
        return dr_error(DR_ERR_FORMAT, "tensor token_embd.weight has shape [%llu, %llu], expected [%d, vocab]",
                        (unsigned long long)te->ne[0], (unsigned long long)(te->n_dims > 1 ? te->ne[1] : 0), c.dim);
    c.vocab = (int)te->ne[1];
    uint32_t vs;
    snprintf(key, sizeof key, "%s.vocab_size", a);
    if ((rc = get_u32_opt(f, key, (uint32_t)c.vocab, &vs))) return rc;
    if ((int)vs != c.vocab)
        return dr_error(DR_ERR_FORMAT, "%s = %u but token_embd.weight has %d rows (vocabulary/embedding mismatch)", key, vs,
                        c.vocab);
    if (gguf_find_kv(f, "tokenizer.ggml.tokens")) {
        uint64_t nt;
        const gguf_str *strs;
        if ((rc = gguf_get_arr_str(f, "tokenizer.ggml.tokens", &nt, &strs))) return rc;
        if (nt != (uint64_t)c.vocab)
            return dr_error(DR_ERR_FORMAT,
                            "the tokenizer has %llu tokens but token_embd.weight has %d rows (vocabulary/embedding mismatch)",
                            (unsigned long long)nt, c.vocab);
    }
    c.tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    c.qkv_bias = gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    if ((rc = llm_config_check(&c))) return rc;

    llm_model *m = llm_model_alloc(&c);
    if (!m) return DR_ERR_NOMEM;
    const int qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
    rc = load_mat(m, f, "token_embd.weight", c.vocab, c.dim, 1, &m->tok_embd);
    for (int l = 0; !rc && l < c.n_layers; l++) {
        llm_layer *L = &m->layers[l];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if ((rc = load_vec(m, f, NAME("attn_norm.weight"), c.dim, 1, &L->attn_norm)) ||
            (rc = load_mat(m, f, NAME("attn_q.weight"), qd, c.dim, 1, &L->wq)) ||
            (rc = load_mat(m, f, NAME("attn_k.weight"), kvd, c.dim, 1, &L->wk)) ||
            (rc = load_mat(m, f, NAME("attn_v.weight"), kvd, c.dim, 1, &L->wv)) ||
            (rc = load_mat(m, f, NAME("attn_output.weight"), c.dim, qd, 1, &L->wo)) ||
            (rc = load_vec(m, f, NAME("ffn_norm.weight"), c.dim, 1, &L->ffn_norm)) ||
            (rc = load_mat(m, f, NAME("ffn_gate.weight"), c.ffn, c.dim, 1, &L->w_gate)) ||
            (rc = load_mat(m, f, NAME("ffn_up.weight"), c.ffn, c.dim, 1, &L->w_up)) ||
            (rc = load_mat(m, f, NAME("ffn_down.weight"), c.dim, c.ffn, 1, &L->w_down)))
            break;
        if (c.arch == LLM_ARCH_QWEN3 && ((rc = load_vec(m, f, NAME("attn_q_norm.weight"), c.head_dim, 1, &L->q_norm)) ||
                                         (rc = load_vec(m, f, NAME("attn_k_norm.weight"), c.head_dim, 1, &L->k_norm))))
            break;
        if (c.qkv_bias && ((rc = load_vec(m, f, NAME("attn_q.bias"), qd, 1, &L->bq)) ||
                           (rc = load_vec(m, f, NAME("attn_k.bias"), kvd, 1, &L->bk)) ||
                           (rc = load_vec(m, f, NAME("attn_v.bias"), kvd, 1, &L->bv))))
            break;
#undef NAME
    }
    if (!rc) rc = load_vec(m, f, "output_norm.weight", c.dim, 1, &m->output_norm);
    if (!rc) rc = load_vec(m, f, "rope_freqs.weight", c.head_dim / 2, 0, &m->rope_freqs);
    if (!rc) {
        if (c.tied_output) m->output = m->tok_embd;
        else rc = load_mat(m, f, "output.weight", c.vocab, c.dim, 1, &m->output);
    }
    if (!rc) rc = load_eos(m, f);
    if (!rc && gguf_find_kv(f, "tokenizer.ggml.model")) {
        rc = tok_load_gguf(&m->tok, f);
        if (rc) dr_error_context("tokenizer");
    }
    if (rc) {
        llm_model_free(m);
        return rc;
    }
    m->file = f;
    llm_model_repack(m);
    *out = m;
    return DR_OK;
}

int llm_model_load(llm_model **out, const char *path) {
    *out = NULL;
    gguf_file *f = dr_calloc(1, sizeof *f);
    if (!f) return DR_ERR_NOMEM;
    /* Weights are streamed once per decode step: a copy in huge pages streams faster than
     * the page cache's mapping (dr_mmap_open_copy). DEEPREC_MMAP=1 keeps the mapping, for a
     * machine short of memory while the file is read (the page cache holds it as well). */
    const char *e = getenv("DEEPREC_MMAP");
    int rc = e && !strcmp(e, "1") ? gguf_open(f, path) : gguf_open_copy(f, path);
    if (rc) {
        free(f);
        return rc;
    }
    rc = load_all(out, f);
    if (rc) {
        /* gguf errors already start with the path */
        if (strncmp(dr_error_message(), path, strlen(path))) dr_error_context("%s", path);
        gguf_close(f);
        free(f);
    }
    return rc;
}

/* ---------------------------------------------------------------- random init / conversion */
static void f32_row_to(uint32_t type, const float *src, void *dst, int n) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case GGML_TYPE_F16:
        for (int i = 0; i < n; i++) ((uint16_t *)dst)[i] = dr_f32_to_f16(src[i]);
        break;
    case GGML_TYPE_BF16:
        for (int i = 0; i < n; i++) ((uint16_t *)dst)[i] = dr_f32_to_bf16(src[i]);
        break;
    case GGML_TYPE_Q8_0: dr_quantize_q8_0(src, dst, (uint64_t)n); break;
    default: break;
    }
}

static int check_type(uint32_t type, const llm_config *c) {
    if (!llm_mat_type_ok(type))
        return dr_error(DR_ERR_UNSUPPORTED, "weight type %s is not supported (use F32, F16, BF16 or Q8_0)",
                        ggml_type_name(type));
    if (type == GGML_TYPE_Q8_0 && (c->dim % 32 || c->ffn % 32 || (c->n_heads * c->head_dim) % 32))
        return dr_error(DR_ERR_ARG, "Q8_0 needs dim, ffn and heads*head_dim to be multiples of 32");
    return DR_OK;
}

static int random_mat(llm_model *m, llm_mat *w, int rows, int cols, uint32_t type, float std, const dr_rng *rng) {
    size_t bytes = llm_mat_bytes(type, rows, cols);
    if (!bytes) return dr_error(DR_ERR_ARG, "matrix %d x %d cannot be stored as %s", rows, cols, ggml_type_name(type));
    uint8_t *buf = dr_aligned_alloc(bytes);
    if (!buf) return DR_ERR_NOMEM;
    int rc = llm_model_own(m, buf);
    if (rc) return rc;
    w->data = buf;
    w->type = type;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = bytes / (size_t)rows;
    dr_par_error pe;
    dr_par_error_init(&pe);
#pragma omp parallel
    {
        float *tmp = dr_malloc((size_t)cols * sizeof(float));
        if (!tmp) dr_par_error_keep(&pe, 0, dr_error_code());
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            if (!tmp) continue;
            dr_rng rr = dr_rng_split(rng, (uint64_t)r);
            /* near-normal: sum of four 16-bit uniforms (Irwin-Hall, variance 1/3 per unit), one
             * rng call per value instead of Box-Muller's log/cos: ~10x faster for big models */
            const float sc = std * 1.7320508f / 65536.0f;
            for (int i = 0; i < cols; i++) {
                uint64_t u = dr_rng_u64(&rr);
                float sum = (float)(u & 0xFFFF) + (float)((u >> 16) & 0xFFFF) + (float)((u >> 32) & 0xFFFF) +
                            (float)(u >> 48);
                tmp[i] = (sum - 131070.0f) * sc;
            }
            f32_row_to(type, tmp, buf + (size_t)r * w->row_bytes, cols);
        }
        free(tmp);
    }
    return dr_par_error_raise(&pe);
}

static int random_vec(llm_model *m, const float **out, int n, float mean, float std, dr_rng *rng) {
    float *v = dr_calloc((size_t)n, sizeof(float));
    if (!v) return DR_ERR_NOMEM;
    for (int i = 0; i < n; i++) v[i] = mean + std * dr_rng_normal(rng);
    *out = v;
    return llm_model_own(m, v);
}

int llm_model_init_random(llm_model **out, const llm_config *c, uint32_t type, float std, uint64_t seed) {
    *out = NULL;
    int rc;
    if ((rc = llm_config_check(c)) || (rc = check_type(type, c))) return rc;
    if (!(std >= 0 && std <= 10)) return dr_error(DR_ERR_ARG, "the weights' standard deviation must be in [0, 10], got %g", std);
    llm_model *m = llm_model_alloc(c);
    if (!m) return DR_ERR_NOMEM;
    dr_rng root;
    dr_rng_seed(&root, seed);
    uint64_t stream = 0;
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
#define RMAT(w, r, cc)                                                                   \
    do {                                                                                 \
        dr_rng g_ = dr_rng_split(&root, ++stream);                                       \
        if (!rc) rc = random_mat(m, w, r, cc, type, std, &g_);                           \
    } while (0)
#define RVEC(v, n, mean)                                                                 \
    do {                                                                                 \
        dr_rng g_ = dr_rng_split(&root, ++stream);                                       \
        if (!rc) rc = random_vec(m, v, n, mean, (mean) != 0 ? 0.0f : std, &g_);          \
    } while (0)
    rc = DR_OK;
    RMAT(&m->tok_embd, c->vocab, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        llm_layer *L = &m->layers[l];
        RVEC(&L->attn_norm, c->dim, 1.0f);
        RMAT(&L->wq, qd, c->dim);
        RMAT(&L->wk, kvd, c->dim);
        RMAT(&L->wv, kvd, c->dim);
        if (c->qkv_bias) {
            RVEC(&L->bq, qd, 0.0f);
            RVEC(&L->bk, kvd, 0.0f);
            RVEC(&L->bv, kvd, 0.0f);
        }
        if (c->arch == LLM_ARCH_QWEN3) {
            RVEC(&L->q_norm, c->head_dim, 1.0f);
            RVEC(&L->k_norm, c->head_dim, 1.0f);
        }
        RMAT(&L->wo, c->dim, qd);
        RVEC(&L->ffn_norm, c->dim, 1.0f);
        RMAT(&L->w_gate, c->ffn, c->dim);
        RMAT(&L->w_up, c->ffn, c->dim);
        RMAT(&L->w_down, c->dim, c->ffn);
    }
    RVEC(&m->output_norm, c->dim, 1.0f);
    if (c->tied_output) m->output = m->tok_embd;
    else RMAT(&m->output, c->vocab, c->dim);
#undef RMAT
#undef RVEC
    if (rc) {
        llm_model_free(m);
        return rc;
    }
    *out = m;
    return DR_OK;
}

static int convert_mat(llm_model *m, llm_mat *w, uint32_t type) {
    if (w->type == type) return DR_OK;
    size_t bytes = llm_mat_bytes(type, w->rows, w->cols);
    if (!bytes) return dr_error(DR_ERR_ARG, "matrix %d x %d cannot be stored as %s", w->rows, w->cols, ggml_type_name(type));
    uint8_t *buf = dr_aligned_alloc(bytes);
    if (!buf) return DR_ERR_NOMEM;
    int rc = llm_model_own(m, buf);
    if (rc) return rc;
    size_t rb = bytes / (size_t)w->rows;
    dr_par_error pe;
    dr_par_error_init(&pe);
#pragma omp parallel
    {
        float *tmp = dr_malloc((size_t)w->cols * sizeof(float));
        if (!tmp) dr_par_error_keep(&pe, 0, dr_error_code());
#pragma omp for schedule(static)
        for (int r = 0; r < w->rows; r++) {
            if (!tmp) continue;
            llm_mat_row(w, r, tmp);
            f32_row_to(type, tmp, buf + (size_t)r * rb, w->cols);
        }
        free(tmp);
    }
    if ((rc = dr_par_error_raise(&pe))) return rc;
    llm_model_disown_free(m, w->data);
    w->data = buf;
    w->type = type;
    w->row_bytes = rb;
    w->packed = NULL; /* its share of the repacked allocation stays unused until the model is freed */
    return DR_OK;
}

int llm_model_convert(llm_model *m, uint32_t type) {
    int rc = check_type(type, &m->cfg);
    if (rc) return rc;
    if ((rc = convert_mat(m, &m->tok_embd, type))) return rc;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        llm_layer *L = &m->layers[l];
        llm_mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++)
            if ((rc = convert_mat(m, ms[i], type))) return rc;
    }
    if (m->cfg.tied_output) m->output = m->tok_embd;
    else if ((rc = convert_mat(m, &m->output, type))) return rc;
    return DR_OK;
}

/* ---------------------------------------------------------------- saving */
static int add_mat(gguf_writer *w, const char *name, const llm_mat *m) {
    uint64_t ne[2] = {(uint64_t)m->cols, (uint64_t)m->rows};
    return gguf_add_tensor_borrowed(w, name, m->type, 2, ne, m->data);
}

static int add_vec(gguf_writer *w, const char *name, const float *v, int n) {
    uint64_t ne[1] = {(uint64_t)n};
    return gguf_add_tensor_borrowed(w, name, GGML_TYPE_F32, 1, ne, v);
}

int llm_model_write(const llm_model *m, const tokenizer *tok, gguf_writer *w) {
    const llm_config *c = &m->cfg;
    const char *a = llm_arch_name(c->arch);
    char k[128];
    int rc = gguf_set_str(w, "general.architecture", a);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    if (!rc) rc = gguf_set_u32(w, KEY("context_length"), (uint32_t)c->context);
    if (!rc) rc = gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim);
    if (!rc) rc = gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    if (!rc) rc = gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->ffn);
    if (!rc) rc = gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    if (!rc) rc = gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    if (!rc && c->head_dim * c->n_heads != c->dim) {
        rc = gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        if (!rc) rc = gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
    if (!rc) rc = gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps);
    if (!rc) rc = gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta);
#undef KEY
    if (rc) return rc;
    if (!tok) tok = m->tok;
    if (tok) {
        if (tok_vocab_size(tok) != c->vocab)
            return dr_error(DR_ERR_ARG, "the tokenizer has %d tokens but the model's vocabulary is %d",
                            (int)tok_vocab_size(tok), c->vocab);
        if ((rc = tok_write_gguf(tok, w))) return rc;
    }
    if ((rc = add_mat(w, "token_embd.weight", &m->tok_embd))) return rc;
    const int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const llm_layer *L = &m->layers[l];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if ((rc = add_vec(w, NAME("attn_norm.weight"), L->attn_norm, c->dim)) ||
            (rc = add_mat(w, NAME("attn_q.weight"), &L->wq)) || (rc = add_mat(w, NAME("attn_k.weight"), &L->wk)) ||
            (rc = add_mat(w, NAME("attn_v.weight"), &L->wv)))
            return rc;
        if (L->q_norm && ((rc = add_vec(w, NAME("attn_q_norm.weight"), L->q_norm, c->head_dim)) ||
                          (rc = add_vec(w, NAME("attn_k_norm.weight"), L->k_norm, c->head_dim))))
            return rc;
        if (L->bq && ((rc = add_vec(w, NAME("attn_q.bias"), L->bq, qd)) ||
                      (rc = add_vec(w, NAME("attn_k.bias"), L->bk, kvd)) ||
                      (rc = add_vec(w, NAME("attn_v.bias"), L->bv, kvd))))
            return rc;
        if ((rc = add_mat(w, NAME("attn_output.weight"), &L->wo)) ||
            (rc = add_vec(w, NAME("ffn_norm.weight"), L->ffn_norm, c->dim)) ||
            (rc = add_mat(w, NAME("ffn_gate.weight"), &L->w_gate)) || (rc = add_mat(w, NAME("ffn_up.weight"), &L->w_up)) ||
            (rc = add_mat(w, NAME("ffn_down.weight"), &L->w_down)))
            return rc;
#undef NAME
    }
    if ((rc = add_vec(w, "output_norm.weight", m->output_norm, c->dim))) return rc;
    if (m->rope_freqs && (rc = add_vec(w, "rope_freqs.weight", m->rope_freqs, c->head_dim / 2))) return rc;
    if (!c->tied_output && (rc = add_mat(w, "output.weight", &m->output))) return rc;
    return DR_OK;
}

int llm_model_save(const llm_model *m, const tokenizer *tok, const char *path) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return DR_ERR_NOMEM;
    int rc = llm_model_write(m, tok, w);
    if (!rc) rc = gguf_write(w, path);
    gguf_writer_free(w);
    return rc;
}
