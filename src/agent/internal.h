/* Internal helpers of the agent module: small string tools, episode building, the title trie. */
#ifndef DEEPREC_AGENT_INTERNAL_H
#define DEEPREC_AGENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

/* First occurrence of needle in hay[0..n), or NULL. */
const char *agent_memmem(const char *hay, size_t n, const char *needle);
/* Last occurrence, or NULL. */
const char *agent_memrmem(const char *hay, size_t n, const char *needle);
/* Number of (non-overlapping) occurrences. */
int agent_count(const char *hay, size_t n, const char *needle);
/* Case-insensitive (ASCII) substring search. */
const char *agent_memcasemem(const char *hay, size_t n, const char *needle);

/* Episode building (episode.c). */
struct agent_episode;
int agent_ep_add_text(struct agent_episode *e, const char *s, size_t n);
int agent_ep_add_tokens(struct agent_episode *e, const int32_t *ids, int n, int generated, const float *logprobs);
/* A generated token sampled from the allowed set allowed[0..n_allowed) (n_allowed 0: the
 * whole vocabulary); lp is its log-probability under that restricted distribution. */
int agent_ep_add_choice(struct agent_episode *e, int32_t id, float lp, const int32_t *allowed, int n_allowed);

/* Token trie over the candidate titles of a title-constrained answer (constrain.c). Node 0 is
 * the root; a node's title is the one whose token sequence ends there (-1 none); avail counts
 * the unused titles at or below a node. */
typedef struct agent_trie_node {
    int32_t tok, parent, child, sibling;
    int32_t title, avail;
} agent_trie_node;
typedef struct agent_trie {
    agent_trie_node *nodes;
    int32_t n, cap;
} agent_trie;
/* Add a title (its tokens ids[0..n), n >= 1); an identical sequence is added once. *leaf (if
 * not NULL) gets the node the sequence ends at, whichever title it carries. */
int agent_trie_add(agent_trie *t, const int32_t *ids, int n, int32_t title, int32_t *leaf);
/* The tokens that may follow `node`: children with unused titles below, then `end_tok` when
 * the node's own title is unused (choosing it ends the title). out holds at least the number
 * of children + 1. Returns the count. */
int agent_trie_allowed(const agent_trie *t, int32_t node, int32_t end_tok, int32_t *out);
/* Child of node by token, or -1. */
int32_t agent_trie_child(const agent_trie *t, int32_t node, int32_t tok);
/* Mark the title ending at node as used (it is no longer offered). */
void agent_trie_use(agent_trie *t, int32_t node);
void agent_trie_free(agent_trie *t);

/* Open a segment of `kind` at the current token/text ends (closing the open one). */
int agent_ep_open_seg(struct agent_episode *e, int kind);
/* Set the open segment's ends to the current token/text ends. */
void agent_ep_close_seg(struct agent_episode *e);
int agent_ep_add_call(struct agent_episode *e, const char *pref, const int32_t *items, const float *scores, int n);

#endif
