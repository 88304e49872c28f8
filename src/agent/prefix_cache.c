/* The shared-prefix KV cache: every prompt of one form starts with the same preamble
 * (agent_prompt_preamble), so its keys and values are the same for every episode. The LLM
 * adapter prefills a prompt as two calls, the preamble and then the rest; with a cache the
 * first call becomes a copy of KV rows computed once.
 *
 * Why the split is fixed (and not "the longest prefix seen before", as prompt caches of chat
 * servers do): a prefill of one chunk is not the same floats as the prefill of its pieces (a
 * chunk's size changes the order of the sums in the attention's sgemm and, under 64 tokens,
 * the matmul kernel; the last logits of the demo's prompts move by up to 3e-6), so where a
 * prompt is cut must not depend on which prompts came before, or a user's answer would depend
 * on the other requests. Cut always at the preamble,
 * the cached and the uncached sequence compute the same floats. */
#include "deeprec/agent.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "agent/internal.h"
#include <stdlib.h>
#include <string.h>

enum { N_FORMS = 4 }; /* chat x direct */

typedef struct preamble {
    int32_t *ids;
    int n;
    llm_session *kv; /* one slot holding the preamble's KV; NULL until first used */
} preamble;

struct agent_prefix_cache {
    const llm_model *m;
    preamble p[N_FORMS];
    int64_t hits, reused;
};

void agent_prefix_cache_free(agent_prefix_cache *pc) {
    if (!pc) return;
    for (int f = 0; f < N_FORMS; f++) {
        free(pc->p[f].ids);
        llm_session_free(pc->p[f].kv);
    }
    free(pc);
}

int agent_prefix_cache_new(agent_prefix_cache **out, const llm_model *m, const tokenizer *tok) {
    *out = NULL;
    if (!tok) tok = m->tok;
    if (!tok) return dr_error(DR_ERR_ARG, "the LLM has no tokenizer (load one with --tokenizer)");
    agent_prefix_cache *pc = dr_calloc(1, sizeof *pc);
    if (!pc) return dr_error_code();
    pc->m = m;
    int rc = DR_OK;
    for (int f = 0; f < N_FORMS && !rc; f++) {
        agent_prompt_opts po = {f & 1, 0, f >> 1};
        char *text = NULL;
        size_t n = 0;
        /* encoded as the adapter encodes a whole prompt (lm_encode), so a prompt's ids start
         * with these wherever BPE does not merge across the end of the preamble */
        if (!(rc = agent_prompt_preamble(&po, &text)) &&
            !(rc = tok_encode(tok, text, strlen(text), TOK_ENC_DEFAULT, &pc->p[f].ids, &n)))
            pc->p[f].n = (int)n;
        free(text);
    }
    if (rc) {
        agent_prefix_cache_free(pc);
        return rc;
    }
    *out = pc;
    return DR_OK;
}

int agent_prefix_match(const agent_prefix_cache *pc, const int32_t *ids, int n, int *which) {
    int best = 0;
    *which = -1;
    for (int f = 0; f < N_FORMS; f++) {
        const preamble *p = &pc->p[f];
        /* at least one token after it: its prefill gives the logits of the prompt's end */
        if (p->n > best && p->n < n && !memcmp(p->ids, ids, (size_t)p->n * sizeof *ids)) {
            best = p->n;
            *which = f;
        }
    }
    return best;
}

int agent_prefix_start(agent_prefix_cache *pc, int which, llm_session *s, int slot) {
    if (which < 0 || which >= N_FORMS) return dr_error(DR_ERR_RANGE, "agent prefix cache: no preamble %d", which);
    preamble *p = &pc->p[which];
    if (llm_session_model(s) != pc->m) return dr_error(DR_ERR_ARG, "agent prefix cache: built for another model");
    if (!p->kv) {
        llm_session *kv;
        int rc = llm_session_new(&kv, pc->m, 1, p->n);
        if (rc) return rc;
        /* exactly the call an uncached sequence makes: the preamble alone on an empty slot */
        if ((rc = llm_prefill(kv, 0, p->ids, p->n, NULL, 0))) {
            llm_session_free(kv);
            return rc;
        }
        p->kv = kv;
    } else {
        /* atomic: a server's /metrics reads them from another thread */
        __atomic_add_fetch(&pc->hits, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&pc->reused, (int64_t)p->n, __ATOMIC_RELAXED);
    }
    return llm_slot_copy(s, slot, p->kv, 0);
}

void agent_prefix_cache_stats(const agent_prefix_cache *pc, int64_t *hits, int64_t *reused_tokens) {
    *hits = pc ? __atomic_load_n(&pc->hits, __ATOMIC_RELAXED) : 0;
    *reused_tokens = pc ? __atomic_load_n(&pc->reused, __ATOMIC_RELAXED) : 0;
}
