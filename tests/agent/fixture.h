/* Shared fixtures of the agent tests: a hand-built dataset, a scripted byte-level model
 * and a scripted tool. */
#ifndef DEEPREC_TEST_AGENT_FIXTURE_H
#define DEEPREC_TEST_AGENT_FIXTURE_H

#include "deeprec/agent.h"
#include "deeprec/data.h"

/* 13 items (12 titled, item 13 untitled, item 11 duplicates item 1's title), 3 users. */
void fx_dataset(dr_dataset *d);
void fx_dataset_free(dr_dataset *d);
/* n_items items "Title k <word>" with 1-3 of six genres (none when !with_cats); n_users
 * users with 8..30 items each, drawn deterministically. */
void fx_dataset_big(dr_dataset *d, int n_items, int n_users, int with_cats);
/* A deterministic tool over n_items: top-k by a hash of (preference, item), history masked. */
typedef struct fx_hash_tool { int n_items; int calls; } fx_hash_tool;
void fx_hash_tool_init(fx_hash_tool *ht, agent_tool *t, int n_items);

/* Scripted model: byte tokens (id = byte), EOS = 256. Under an allowed set it picks one of
 * the allowed tokens uniformly (log-prob -log n). Episode k (in the order the rollout
 * starts them) plays scripts[k]: a NUL-separated list of turns ending with "\x01" meaning
 * "emit EOS after this turn" or "\x02" "stop emitting (loop on spaces)". Each append after
 * the prompt (a tool result) moves to the next turn. */
typedef struct fx_model {
    const char *const *scripts;
    int n_scripts;
    int started;
    int slot_script[64], slot_turn[64], slot_pos[64], slot_used[64];
    int max_batch_seen;
    int n_appends, n_forks;
    int n_constrained;   /* decode choices made under an allowed set */
    dr_rng pick;         /* uniform picks among allowed tokens (seed 1; reseed after init) */
    /* 1: under an allowed set, follow the script, skipping scripted bytes outside the set (a
     * model whose likeliest token is forbidden takes its next one); 2: the scripted token when
     * allowed, else a uniform pick; 0: a uniform pick */
    int follow_script;
    /* 1: the protocol's tags are single tokens (FX_TAG0 + index in fx_tags), as special tokens
     * of a real vocabulary; the scripts are then read token by token */
    int tag_tokens;
} fx_model;
enum { FX_TAG0 = 257, FX_N_TAGS = 8 };
extern const char *const fx_tags[FX_N_TAGS];
void fx_model_init(fx_model *fm, agent_model *m, int n_slots, const char *const *scripts, int n_scripts);

/* Scripted tool: preference "FAIL" fails; "EMPTY" returns nothing; else returns items
 * (1 + (strlen(pref) + i) % 12) for i < min(k, 3). Counts calls. */
typedef struct fx_tool { int calls; char last[256]; } fx_tool;
void fx_tool_init(fx_tool *ft, agent_tool *t);

/* A tiny random LLM (qwen2, dim 32, 2 layers) and a small BPE trained on the prompt's words. */
struct llm_model;
struct tokenizer;
void fx_tiny_llm(struct llm_model **m, struct tokenizer **tok);

/* s with the first occurrence of old replaced by new (heap). */
char *fx_replace(const char *s, const char *old, const char *new_);

#endif
