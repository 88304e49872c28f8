/* Batched generation for several slots: decode step, sample, stop checks, streaming. */
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stdlib.h>
#include <string.h>

void llm_gen_result_free(llm_gen_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

int llm_generate(llm_session *s, const tokenizer *tok, const int *slots, const int32_t *pending, int n,
                 const llm_gen_params *p, dr_rng *rngs, llm_gen_result *res, llm_gen_cb cb, void *cb_ctx) {
    if (n <= 0) return dr_error(DR_ERR_ARG, "generate needs at least one sequence");
    if (p->max_tokens <= 0) return dr_error(DR_ERR_ARG, "max tokens must be > 0");
    const llm_model *m = llm_session_model(s);
    const int V = m->cfg.vocab;
    memset(res, 0, (size_t)n * sizeof *res);
    int rc = DR_OK;
    float *logits = malloc((size_t)n * V * sizeof(float));
    void *scratch = malloc(llm_sample_scratch_bytes(V));
    dr_rng *own_rngs = NULL;
    llm_textstream *ts = dr_calloc((size_t)n, sizeof *ts);
    int *act_slot = dr_calloc((size_t)n, sizeof(int)), *act_idx = dr_calloc((size_t)n, sizeof(int));
    int32_t *act_tok = dr_calloc((size_t)n, sizeof(int32_t)), *next = dr_calloc((size_t)n, sizeof(int32_t));
    if (!rngs) {
        own_rngs = dr_calloc((size_t)n, sizeof *own_rngs);
        if (own_rngs) {
            dr_rng root;
            dr_rng_seed(&root, p->seed);
            for (int i = 0; i < n; i++) own_rngs[i] = dr_rng_split(&root, (uint64_t)i);
        }
        rngs = own_rngs;
    }
    for (int i = 0; i < n && !rc; i++) {
        res[i].ids = dr_calloc((size_t)p->max_tokens, sizeof(int32_t));
        if (!res[i].ids) rc = DR_ERR_NOMEM;
    }
    if (!logits || !scratch || !rngs || !ts || !act_slot || !act_idx || !act_tok || !next || rc) {
        rc = dr_error(DR_ERR_NOMEM, "out of memory for generation");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (tok) llm_textstream_init_tok(&ts[i], tok, p->stops, p->n_stops);
        next[i] = pending[i];
    }
    int n_active = n, aborted = 0;
    while (n_active > 0 && !aborted) {
        int na = 0;
        for (int i = 0; i < n; i++) {
            if (res[i].finish) continue;
            if (llm_slot_len(s, slots[i]) >= llm_session_ctx(s)) {
                res[i].finish = LLM_FINISH_CONTEXT;
                n_active--;
                continue;
            }
            act_idx[na] = i;
            act_slot[na] = slots[i];
            act_tok[na++] = next[i];
        }
        if (!na) break;
        if ((rc = llm_decode(s, act_slot, act_tok, na, logits))) goto done;
        for (int a = 0; a < na && !aborted; a++) {
            int i = act_idx[a];
            int32_t id = llm_sample(logits + (size_t)a * V, V, &p->sampler, &rngs[i], scratch);
            res[i].ids[res[i].n_ids++] = id;
            next[i] = id;
            if (llm_is_eos(m, id)) res[i].finish = LLM_FINISH_EOS;
            else if (tok) {
                const char *out;
                size_t len;
                if ((rc = llm_textstream_push(&ts[i], id, &out, &len))) goto done;
                if (len && cb && cb(cb_ctx, i, out, len)) aborted = 1;
                if (ts[i].stopped) res[i].finish = LLM_FINISH_STOP;
            }
            if (!res[i].finish && res[i].n_ids >= p->max_tokens) res[i].finish = LLM_FINISH_LENGTH;
            if (res[i].finish) {
                n_active--;
                if (tok && res[i].finish != LLM_FINISH_STOP) {
                    const char *out;
                    size_t len;
                    llm_textstream_flush(&ts[i], &out, &len);
                    if (len && cb && cb(cb_ctx, i, out, len)) aborted = 1;
                }
            }
        }
    }
done:
    for (int i = 0; i < n; i++) {
        if (tok && ts) {
            res[i].text = ts[i].text;
            res[i].len = ts[i].len;
            ts[i].text = NULL;
        }
        if (!res[i].text) res[i].text = dr_calloc(1, 1);
        if (rc) llm_gen_result_free(&res[i]);
    }
    free(logits);
    free(scratch);
    free(own_rngs);
    free(ts);
    free(act_slot);
    free(act_idx);
    free(act_tok);
    free(next);
    return rc;
}
