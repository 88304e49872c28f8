/* Fixtures of the RL tests: a small hand-built movie dataset, a random preference-aware TRM,
 * a tiny random qwen2 with a small trained tokenizer, and hand-written episodes. */
#ifndef DEEPREC_TEST_RL_FIXTURE_H
#define DEEPREC_TEST_RL_FIXTURE_H

#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"

/* The 12 films of tests/common (tx_movie_titles) with their categories (ids assigned by the builder:
 * look them up by title), n_users users with 6..12 interactions each (deterministic). */
void rlx_dataset(dr_dataset *d, int n_users);
/* Random pref TRM for d (dim 16). */
trm_model *rlx_trm(const dr_dataset *d);
/* Tiny qwen2 (dim 32, 2 layers) + a BPE tokenizer trained on the prompt text and titles. */
void rlx_llm(llm_model **m, tokenizer **tok);

/* A finished-by-hand episode: prompt "P\n", the completion, calls with the given preferences
 * (each returning `items` when non-NULL), outcome, target; finalised with the catalog. */
void rlx_episode(agent_episode *e, const agent_catalog *c, const char *completion, int outcome, int32_t target,
                 const char *const *prefs, int n_prefs, const int32_t *items, int n_items);

#endif
