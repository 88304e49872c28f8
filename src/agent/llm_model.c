/* The LLM engine behind the agent_model interface. */
#include "deeprec/agent.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct llm_ctx {
    const llm_model *m;
    const tokenizer *tok;
    llm_session *s;
    int vocab, n_slots;
    float *logits;      /* n_slots x vocab: logits of each slot's last position */
    float *batch;       /* n_slots x vocab scratch for llm_decode */
    dr_rng *rngs;       /* per slot */
    dr_rng base;
    uint64_t n_started;
    llm_sampler_params sp;
    void *scratch;
    int32_t *toks;
    float *masked;      /* vocab: logits outside an allowed set at -inf */
    agent_prefix_cache *prefix; /* the preambles (owned unless shared) */
    int own_prefix, use_prefix_kv;
} llm_ctx;

static int lm_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n) {
    llm_ctx *c = ctx;
    return tok_encode(c->tok, text, len, TOK_ENC_DEFAULT, ids, n);
}
static int lm_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    llm_ctx *c = ctx;
    return tok_token_to_piece(c->tok, id, buf, cap);
}
static int lm_is_eos(void *ctx, int32_t id) {
    llm_ctx *c = ctx;
    return llm_is_eos(c->m, id) || (tok_eos(c->tok) >= 0 && id == tok_eos(c->tok));
}
static void new_stream(llm_ctx *c, int slot) { c->rngs[slot] = dr_rng_split(&c->base, c->n_started++); }

static int lm_append(void *ctx, int slot, const int32_t *ids, int n) {
    llm_ctx *c = ctx;
    if (slot < 0 || slot >= c->n_slots) return dr_error(DR_ERR_RANGE, "agent llm: slot %d out of range", slot);
    if (n <= 0) {
        if (llm_slot_len(c->s, slot) == 0) new_stream(c, slot);
        return DR_OK;
    }
    if (llm_slot_len(c->s, slot) == 0) {
        new_stream(c, slot);
        /* a prompt: its preamble first, always as its own prefill (see prefix_cache.c) */
        int which, p = agent_prefix_match(c->prefix, ids, n, &which);
        if (p > 0) {
            int rc = c->use_prefix_kv ? agent_prefix_start(c->prefix, which, c->s, slot)
                                      : llm_prefill(c->s, slot, ids, p, NULL, 0);
            if (rc) return rc;
            ids += p;
            n -= p;
        }
    }
    return llm_prefill(c->s, slot, ids, n, c->logits + (size_t)slot * c->vocab, 0);
}
static int lm_fork(void *ctx, int src, int dst) {
    llm_ctx *c = ctx;
    int rc = llm_slot_fork(c->s, src, &dst, 1);
    if (rc) return rc;
    memcpy(c->logits + (size_t)dst * c->vocab, c->logits + (size_t)src * c->vocab, (size_t)c->vocab * sizeof(float));
    new_stream(c, dst);
    return DR_OK;
}
static float log_softmax_at(const float *x, int n, int32_t k) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)(x[i] - mx));
    return (float)((double)(x[k] - mx) - log(s));
}
/* log-softmax of x restricted to ids[0..n) at token k */
static float log_softmax_set(const float *x, const int32_t *ids, int n, int32_t k) {
    float mx = x[ids[0]];
    for (int i = 1; i < n; i++) mx = x[ids[i]] > mx ? x[ids[i]] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)(x[ids[i]] - mx));
    return (float)((double)(x[k] - mx) - log(s));
}

/* Sample from the allowed set: the sampler (temperature, top-k, top-p) sees the logits with
 * every other token at -inf, so it draws from the distribution renormalised over the set. */
static int sample_allowed(llm_ctx *c, int slot, const float *lg, const agent_allow *a, int32_t *out, float *lp) {
    for (int i = 0; i < a->n; i++)
        if (a->ids[i] < 0 || a->ids[i] >= c->vocab)
            return dr_error(DR_ERR_RANGE, "agent llm: allowed token %d outside the vocabulary", (int)a->ids[i]);
    for (int v = 0; v < c->vocab; v++) c->masked[v] = -INFINITY;
    for (int i = 0; i < a->n; i++) c->masked[a->ids[i]] = lg[a->ids[i]];
    int32_t t = llm_sample(c->masked, c->vocab, &c->sp, &c->rngs[slot], c->scratch);
    if (t < 0 || t >= c->vocab || c->masked[t] == -INFINITY)
        return dr_error(DR_ERR_INTERNAL, "agent llm: sampler returned %d outside the allowed set", (int)t);
    *out = t;
    *lp = log_softmax_set(lg, a->ids, a->n, t);
    return DR_OK;
}

static int lm_decode(void *ctx, const int *slots, int n, const agent_allow *allow, int32_t *out, float *lps) {
    llm_ctx *c = ctx;
    for (int i = 0; i < n; i++) {
        const float *lg = c->logits + (size_t)slots[i] * c->vocab;
        if (allow && allow[i].n > 0) {
            int rc = sample_allowed(c, slots[i], lg, &allow[i], &out[i], &lps[i]);
            if (rc) return rc;
            continue;
        }
        int32_t t = llm_sample(lg, c->vocab, &c->sp, &c->rngs[slots[i]], c->scratch);
        if (t < 0 || t >= c->vocab) return dr_error(DR_ERR_INTERNAL, "agent llm: sampler returned %d", (int)t);
        out[i] = t;
        lps[i] = log_softmax_at(lg, c->vocab, t);
    }
    int rc = llm_decode(c->s, slots, out, n, c->batch);
    if (rc) return rc;
    for (int i = 0; i < n; i++)
        memcpy(c->logits + (size_t)slots[i] * c->vocab, c->batch + (size_t)i * c->vocab, (size_t)c->vocab * sizeof(float));
    return DR_OK;
}
static void lm_release(void *ctx, int slot) {
    llm_ctx *c = ctx;
    llm_slot_truncate(c->s, slot, 0);
}

/* Frees what the constructor allocated; also on its failure paths (fields still NULL). */
static void ctx_free(llm_ctx *c) {
    if (c->s) llm_session_free(c->s);
    if (c->own_prefix) agent_prefix_cache_free(c->prefix);
    void *owned[] = {c->logits, c->batch, c->rngs, c->scratch, c->masked, c};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++) free(owned[i]);
}

int agent_model_llm_new(agent_model *out, const llm_model *m, const tokenizer *tok, const agent_llm_opts *o) {
    memset(out, 0, sizeof *out);
    agent_llm_opts def = {0};
    if (!o) o = &def;
    if (!tok) tok = m->tok;
    if (!tok) return dr_error(DR_ERR_ARG, "the LLM has no tokenizer (load one with --tokenizer)");
    llm_ctx *c = calloc(1, sizeof *c);
    if (!c) return dr_error(DR_ERR_NOMEM, "out of memory");
    c->m = m;
    c->tok = tok;
    c->vocab = m->cfg.vocab;
    c->n_slots = o->n_slots > 0 ? o->n_slots : 8;
    int n_ctx = o->n_ctx > 0 ? o->n_ctx : (m->cfg.context > 0 && m->cfg.context < 4096 ? m->cfg.context : 4096);
    llm_sampler_default(&c->sp);
    c->sp.temperature = o->temperature;
    c->sp.top_k = o->top_k;
    c->sp.top_p = o->top_p > 0 ? o->top_p : 1.0f;
    dr_rng_seed(&c->base, o->seed);
    c->n_started = o->first_stream;
    size_t lv;
    int rc = DR_OK;
    if (!dr_mul_ok((size_t)c->n_slots, (size_t)c->vocab, &lv)) {
        rc = dr_error(DR_ERR_NOMEM, "agent llm: %d slots x vocabulary %d too large", c->n_slots, c->vocab);
        goto fail;
    }
    c->logits = dr_calloc(lv, sizeof(float));
    c->batch = dr_calloc(lv, sizeof(float));
    c->rngs = dr_calloc((size_t)c->n_slots, sizeof(dr_rng));
    c->scratch = dr_malloc(llm_sample_scratch_bytes(c->vocab));
    c->masked = dr_calloc((size_t)c->vocab, sizeof(float));
    if (!c->logits || !c->batch || !c->rngs || !c->scratch || !c->masked) {
        rc = dr_error_code() ? dr_error_code() : DR_ERR_NOMEM;
        goto fail;
    }
    if ((rc = llm_session_new(&c->s, m, c->n_slots, n_ctx))) goto fail;
    if ((rc = agent_prefix_cache_new(&c->prefix, m, tok))) goto fail;
    c->own_prefix = c->use_prefix_kv = 1;
    *out = (agent_model){c, c->n_slots, n_ctx, lm_encode, lm_piece, lm_is_eos, lm_append, lm_fork, lm_decode, lm_release};
    return DR_OK;
fail:
    ctx_free(c);
    return rc;
}

void agent_model_llm_free(agent_model *mm) {
    if (!mm || !mm->ctx) return;
    ctx_free(mm->ctx);
    memset(mm, 0, sizeof *mm);
}

void agent_model_llm_share_prefix(agent_model *mm, agent_prefix_cache *share) {
    llm_ctx *c = mm->ctx;
    if (!share || share == c->prefix) return;
    if (c->own_prefix) agent_prefix_cache_free(c->prefix);
    c->prefix = share;
    c->own_prefix = 0;
}

void agent_model_llm_prefix_kv(agent_model *mm, int kv) {
    llm_ctx *c = mm->ctx;
    c->use_prefix_kv = kv != 0;
}
