/* The tiny random LLM of the agent, RL and serve tests, built one way: a BPE trained on a small
 * corpus and a random qwen2 of one small shape over it. Linked into the test binaries of the
 * modules listed in the Makefile's TEST_COMMON_USERS. */
#ifndef DEEPREC_TEST_COMMON_TINY_LLM_H
#define DEEPREC_TEST_COMMON_TINY_LLM_H

#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stddef.h>

/* Twelve MovieLens films and their categories, as the RL and serve fixtures name them. */
enum { TX_N_MOVIES = 12 };
extern const char *const tx_movie_titles[TX_N_MOVIES];
extern const char *const tx_movie_cats[TX_N_MOVIES];

/* The shape: qwen2, dim 32, 2 layers, 4 heads of 8 (2 KV heads), ffn 64. */
void tx_tiny_config(llm_config *c, int vocab, int context);
/* The agent's instructions, then each film's title and categories, three times over: the text
 * of the prompts those fixtures write, so that their tokenizer has merges for it. */
void tx_movie_corpus(char *buf, size_t cap);
/* *tok: a BPE of vocab_size trained on corpus; *m: an F32 model of the tiny shape over it,
 * weights drawn with standard deviation std from seed 5. Fails the test on an error. */
void tx_tiny_llm(const char *corpus, int vocab_size, int context, float std, llm_model **m, tokenizer **tok);

#endif
