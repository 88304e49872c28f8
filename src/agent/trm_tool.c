/* The TRM as the agent's tool. */
#include "deeprec/agent.h"
#include "deeprec/trm.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int agent_pref_is_any(const char *pref) {
    if (!pref) return 0;
    while (isspace((unsigned char)*pref)) pref++;
    size_t n = strlen(pref), k = strlen(AGENT_PREF_ANY);
    while (n > 0 && isspace((unsigned char)pref[n - 1])) n--;
    return n == k && !strncasecmp(pref, AGENT_PREF_ANY, k);
}

typedef struct trm_tool_ctx {
    trm_session *s;
    int mask_history;
} trm_tool_ctx;

static int trm_tool_retrieve(void *ctx, const int32_t *hist, int64_t n_hist, const char *pref, int k, int32_t *items,
                             float *scores, int *n_out) {
    trm_tool_ctx *c = ctx;
    return trm_retrieve(c->s, hist, n_hist, agent_pref_is_any(pref) ? "" : pref, k, c->mask_history, items, scores,
                        n_out);
}

int agent_tool_trm_new(agent_tool *t, trm_model *m, int mask_history) {
    t->ctx = NULL;
    t->retrieve = NULL;
    trm_tool_ctx *c = calloc(1, sizeof *c);
    if (!c) return dr_error(DR_ERR_NOMEM, "out of memory");
    int rc = trm_session_new(&c->s, m);
    if (rc) {
        free(c);
        return rc;
    }
    c->mask_history = mask_history;
    t->ctx = c;
    t->retrieve = trm_tool_retrieve;
    return DR_OK;
}

void agent_tool_trm_free(agent_tool *t) {
    if (!t || !t->ctx) return;
    trm_tool_ctx *c = t->ctx;
    trm_session_free(c->s);
    free(c);
    t->ctx = NULL;
    t->retrieve = NULL;
}
