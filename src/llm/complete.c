/* One prompt, several samples: the prompt is prefilled once and its cache forked to
 * every sample's slot, so G samples cost one prefill (llm generate --samples). */
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stdlib.h>
#include <string.h>

/* The model file's own choice (tokenizer.ggml.add_bos_token), as llama.cpp reads it. */
static int wants_bos(const llm_model *m) {
    int add_bos = 0;
    if (m->file && gguf_find_kv(m->file, "tokenizer.ggml.add_bos_token"))
        gguf_get_bool(m->file, "tokenizer.ggml.add_bos_token", &add_bos);
    return add_bos;
}

static int no_tokenizer(void) {
    int rc = dr_error(DR_ERR_ARG, "the model has no tokenizer metadata (tokenizer.ggml.*)");
    dr_error_hint("create the model with `deeprec llm init --vocab-from TOKENIZER`");
    return rc;
}

int llm_chat_prompt(const llm_model *m, const char *system, const char *user, char **out) {
    *out = NULL;
    if (!m->tok) return no_tokenizer();
    tok_chat_msg msgs[2];
    size_t n = 0;
    if (system) msgs[n++] = (tok_chat_msg){"system", system};
    msgs[n++] = (tok_chat_msg){"user", user};
    int rc = tok_chat_format_as(tok_chat_form_of(m->tok), msgs, n, 1, out);
    if (rc) dr_error_context("tokenizer.chat_template");
    return rc;
}

int llm_last_logits(const llm_model *m, const int32_t *ids, int n, int fast, float *logits) {
    if (n <= 0) return dr_error(DR_ERR_ARG, "no tokens");
    if (n > m->cfg.context) return dr_error(DR_ERR_RANGE, "%d tokens exceed the model's context of %d", n, m->cfg.context);
    llm_session *s = NULL;
    int rc = llm_session_new(&s, m, 1, n);
    if (!rc) {
        llm_session_set_fast(s, fast);
        rc = llm_prefill(s, 0, ids, n, logits, 0);
    }
    llm_session_free(s);
    return rc;
}

int llm_complete(const llm_model *m, const char *prompt, int n, int ctx, int fast, const llm_gen_params *p,
                 llm_gen_cb cb, void *cb_ctx, llm_gen_result *res, llm_complete_stats *st) {
    memset(res, 0, (size_t)(n > 0 ? n : 0) * sizeof *res);
    memset(st, 0, sizeof *st);
    if (n <= 0) return dr_error(DR_ERR_ARG, "generate needs at least one sample");
    if (!m->tok) return no_tokenizer();
    int32_t *ids = NULL, *pend = NULL;
    int *slots = NULL;
    size_t n_ids = 0;
    llm_session *s = NULL;
    int rc = tok_encode(m->tok, prompt, strlen(prompt), wants_bos(m) ? TOK_ENC_ADD_BOS : 0, &ids, &n_ids);
    if (rc) return rc;
    st->prompt_tokens = n_ids;
    if (n_ids == 0) {
        rc = dr_error(DR_ERR_ARG, "the prompt is empty");
        goto out;
    }
    if (!ctx) ctx = (int)n_ids + p->max_tokens;
    if (ctx > m->cfg.context) ctx = m->cfg.context;
    if ((int)n_ids >= ctx) {
        rc = dr_error(DR_ERR_RANGE, "the prompt has %zu tokens; the context is %d", n_ids, ctx);
        goto out;
    }
    if ((rc = llm_session_new(&s, m, n, ctx))) goto out;
    llm_session_set_fast(s, fast);
    slots = dr_calloc((size_t)n, sizeof *slots);
    pend = dr_calloc((size_t)n, sizeof *pend);
    if (!slots || !pend) {
        rc = DR_ERR_NOMEM;
        goto out;
    }
    double t0 = dr_now();
    if (n_ids > 1 && (rc = llm_prefill(s, 0, ids, (int)n_ids - 1, NULL, 0))) goto out;
    for (int i = 0; i < n; i++) slots[i] = i, pend[i] = ids[n_ids - 1];
    if (n > 1 && (rc = llm_slot_fork(s, 0, slots + 1, n - 1))) goto out;
    double t1 = dr_now();
    rc = llm_generate(s, m->tok, slots, pend, n, p, NULL, res, cb, cb_ctx);
    st->prefill_s = t1 - t0;
    st->decode_s = dr_now() - t1;
out:
    free(slots);
    free(pend);
    free(ids);
    llm_session_free(s);
    return rc;
}
