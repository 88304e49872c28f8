/* The token trie behind title-constrained answers: the token sequences of the episode's
 * candidate titles, with a count of unused titles per node so that a listed title (and any
 * branch left without titles) is no longer offered. */
#include "deeprec/agent.h"
#include "agent/internal.h"
#include <stdlib.h>
#include <string.h>

static int32_t new_node(agent_trie *t, int32_t parent, int32_t tok) {
    if (t->n == t->cap) {
        int32_t cap = t->cap ? 2 * t->cap : 64;
        agent_trie_node *p = dr_realloc(t->nodes, (size_t)cap, sizeof *p);
        if (!p) return -1;
        t->nodes = p;
        t->cap = cap;
    }
    t->nodes[t->n] = (agent_trie_node){tok, parent, -1, -1, -1, 0};
    return t->n++;
}

int32_t agent_trie_child(const agent_trie *t, int32_t node, int32_t tok) {
    for (int32_t c = t->nodes[node].child; c >= 0; c = t->nodes[c].sibling)
        if (t->nodes[c].tok == tok) return c;
    return -1;
}

int agent_trie_add(agent_trie *t, const int32_t *ids, int n, int32_t title, int32_t *leaf) {
    if (n < 1) return dr_error(DR_ERR_ARG, "agent_trie_add: empty title");
    if (!t->n && new_node(t, -1, -1) < 0) return dr_error_code();
    int32_t node = 0;
    for (int i = 0; i < n; i++) {
        int32_t c = agent_trie_child(t, node, ids[i]);
        if (c < 0) {
            if ((c = new_node(t, node, ids[i])) < 0) return dr_error_code();
            /* appended last among the siblings: the allowed sets keep the candidates' order */
            int32_t *link = &t->nodes[node].child;
            while (*link >= 0) link = &t->nodes[*link].sibling;
            *link = c;
        }
        node = c;
    }
    if (leaf) *leaf = node;
    if (t->nodes[node].title >= 0) return DR_OK;
    t->nodes[node].title = title;
    for (int32_t p = node; p >= 0; p = t->nodes[p].parent) t->nodes[p].avail++;
    return DR_OK;
}

int agent_trie_allowed(const agent_trie *t, int32_t node, int32_t end_tok, int32_t *out) {
    int k = 0;
    const agent_trie_node *x = &t->nodes[node];
    for (int32_t c = x->child; c >= 0; c = t->nodes[c].sibling)
        if (t->nodes[c].avail > 0) out[k++] = t->nodes[c].tok;
    /* an unused title ends here: its own count is what avail has beyond the children's */
    int below = 0;
    for (int32_t c = x->child; c >= 0; c = t->nodes[c].sibling) below += t->nodes[c].avail;
    if (x->title >= 0 && x->avail > below) out[k++] = end_tok;
    return k;
}

void agent_trie_use(agent_trie *t, int32_t node) {
    for (int32_t p = node; p >= 0; p = t->nodes[p].parent) t->nodes[p].avail--;
}

void agent_trie_free(agent_trie *t) {
    free(t->nodes);
    memset(t, 0, sizeof *t);
}
