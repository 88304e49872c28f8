/* deeprec agent: the DeepRec protocol (DESIGN §6) — prompts, the multi-turn
 * LLM <-> TRM rollout, parsing of the model's output, the format rules of §7,
 * and resolution of answer titles to catalog items.
 *
 * Layers (each usable alone):
 *   - catalog:   display titles / categories of every item + a normalised-title index;
 *   - protocol:  prompt builder, preference extraction, tool-result text, answer parsing,
 *                format validator (pure text functions, no model needed);
 *   - episode:   one trajectory (text, tokens, mask, old log-probs, segments, tool calls,
 *                outcome, answer, resolved ids);
 *   - rollout:   a batched engine driving any model that implements agent_model (the LLM
 *                adapter agent_model_llm, or a scripted model in tests) and any tool that
 *                implements agent_tool (the TRM adapter agent_tool_trm);
 *   - synth:     TRM-based warm-start trajectories (agent_synth_*).
 *
 * Texts are UTF-8. Item ids are dataset ids (1..n_items, 0 = none). */
#ifndef DEEPREC_AGENT_H
#define DEEPREC_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

struct dr_dataset;

/* ---------------------------------------------------------------- tags and limits */
#define AGENT_TAG_THINK "<think>"
#define AGENT_TAG_THINK_END "</think>"
#define AGENT_TAG_PREF "<|begin_of_preference|>"
#define AGENT_TAG_PREF_END "<|end_of_preference|>"
#define AGENT_TAG_LIST "<|begin_of_item_list|>"
#define AGENT_TAG_LIST_END "<|end_of_item_list|>"
#define AGENT_TAG_ANSWER "<recommendation_list>"
#define AGENT_TAG_ANSWER_END "</recommendation_list>"

#define AGENT_N_REC 10      /* lines of the final answer */
#define AGENT_MAX_HIST 20   /* history items shown in the prompt */
#define AGENT_MAX_CALLS 8   /* tool calls allowed; the 9th is many_recall */
#define AGENT_TOOL_K 20     /* items per tool result */
#define AGENT_PREF_MAX_TOKENS 32 /* constrain_prefs: a preference this long is closed for the model */
/* The open preference: the TRM tool answers it as the empty preference, i.e. with what the
 * history alone suggests (its own list). The protocol ends an episode on an empty preference,
 * so asking for the TRM's own list needs a word (compared case-insensitively, trimmed). */
#define AGENT_PREF_ANY "anything"
int agent_pref_is_any(const char *pref);
#define AGENT_FALLBACK_JACCARD 0.5 /* minimum word-set Jaccard of the title fallback */

/* The template placeholders the prompt shows in its output layout; a completion that
 * contains one of them (case-insensitive) breaks the format rules. NULL-terminated. */
extern const char *const agent_placeholders[];

/* ---------------------------------------------------------------- catalog */
/* Display title of every item (the dataset title; "item <original id>" when the dataset
 * has none), categories as "a, b" (from the '|'-separated field; "" when none), and a hash
 * index normalised title -> item. Duplicate normalised titles map to the most popular item
 * (most interactions in the train parts), ties to the smaller id. Immutable once built:
 * share it between threads. Borrows nothing from the dataset after building. */
typedef struct agent_catalog agent_catalog;
int agent_catalog_build(const struct dr_dataset *d, agent_catalog **out);
void agent_catalog_free(agent_catalog *c);
int32_t agent_catalog_n_items(const agent_catalog *c);
const char *agent_catalog_title(const agent_catalog *c, int32_t item);      /* "" for 0 / out of range */
const char *agent_catalog_categories(const agent_catalog *c, int32_t item); /* "a, b" or "" */
int agent_catalog_has_categories(const agent_catalog *c); /* any item has categories */
/* Item whose normalised title equals the normalised `title` (len < 0: strlen), else 0. */
int32_t agent_catalog_find(const agent_catalog *c, const char *title, long len);

/* Title normalisation: ASCII letters lowercased, every run of whitespace -> one space,
 * ASCII punctuation and whitespace stripped at both ends (non-ASCII bytes untouched).
 * Heap string. */
char *agent_title_normalize(const char *s, long len);
/* Jaccard similarity of the word sets of two titles (words: maximal runs of ASCII
 * alphanumerics or non-ASCII bytes, after lowercasing). 0 when either has no word. */
double agent_title_jaccard(const char *a, const char *b);

/* How an answer line was resolved. */
enum agent_resolve { AGENT_RESOLVE_NONE = 0, AGENT_RESOLVE_EXACT = 1, AGENT_RESOLVE_FALLBACK = 2 };
/* Resolve one answer line (the title text, numbering already removed):
 * 1. exact: the normalised line equals a normalised catalog title;
 * 2. fallback: the item with the highest word Jaccard (>= AGENT_FALLBACK_JACCARD) among
 *    `retrieved` (the items the tool returned in this episode, in order; ties -> earlier);
 * else 0. *how (may be NULL) gets enum agent_resolve. */
int32_t agent_resolve_line(const agent_catalog *c, const char *line, const int32_t *retrieved, int n_retrieved,
                           int *how);
/* The paper's rule: 1 when the normalised title of `item` is a non-empty substring of the
 * normalised line. */
int agent_line_mentions(const agent_catalog *c, const char *line, int32_t item);

/* ---------------------------------------------------------------- prompt */
typedef struct agent_prompt_opts {
    int chat;      /* 1: ChatML (system + user + "<|im_start|>assistant\n"); 0: plain text for base models */
    int max_hist;  /* last items shown (<= 0: AGENT_MAX_HIST) */
    int direct;    /* 1: the "direct" baseline: the same task without the tool (no tool instructions) */
} agent_prompt_opts;
/* The instructions (our wording of every rule of DESIGN §6). Static string. */
const char *agent_prompt_instructions(void);
/* The instructions of the direct baseline (think, then 10 titles; no tool). Static string. */
const char *agent_prompt_instructions_direct(void);
/* The whole prompt for a history (oldest first; the last max_hist items are shown,
 * numbered from 1, each followed by "  - categories: a, b" when the item has categories).
 * Heap string. */
int agent_prompt_build(const agent_catalog *c, const int32_t *hist, int64_t n_hist, const agent_prompt_opts *o,
                       char **out);
/* The preamble: the part of every prompt of this form (chat, direct) before the user's
 * history. Every agent_prompt_build text starts with it, whatever the history and max_hist;
 * the LLM adapter keeps its KV once (agent_prefix_cache). Heap string. */
int agent_prompt_preamble(const agent_prompt_opts *o, char **out);

/* ---------------------------------------------------------------- protocol text */
/* Preference of the last tool call in text[0..len): the text after the last
 * AGENT_TAG_PREF up to the next AGENT_TAG_PREF_END (or the end), with quote characters
 * (" “ ” « » `) removed, whitespace runs collapsed to one space and trimmed.
 * *pref = NULL when there is no begin tag; "" when the preference is empty. */
int agent_preference_extract(const char *text, size_t len, char **pref);
/* The text the tool appends after a generated AGENT_TAG_PREF_END:
 * "<|begin_of_item_list|>\n1. title\n  - categories: a, b\n2. ...\n<|end_of_item_list|>\n\n"
 * (categories line only for items that have categories), or
 * "<|begin_of_item_list|>\nNone\n<|end_of_item_list|>\n\n" when n == 0. Heap string. */
int agent_tool_result_text(const agent_catalog *c, const int32_t *items, int n, char **out);

/* Format rules of DESIGN §7, checked in this order; agent_format_check returns the first
 * rule broken (AGENT_FMT_OK = valid). `completion` is everything after the prompt
 * (generated text and tool results). */
enum agent_fmt {
    AGENT_FMT_OK = 0,
    AGENT_FMT_TOOL_TAGS,      /* tool tags not balanced: must be (pref, /pref, list, /list)* in order */
    AGENT_FMT_NO_CALL,        /* no tool call */
    AGENT_FMT_THINK_END,      /* not exactly one </think> */
    AGENT_FMT_THINK_AFTER,    /* a <think> after </think> */
    AGENT_FMT_ANSWER_BLOCK,   /* not exactly one complete answer block, after </think> */
    AGENT_FMT_TOOL_IN_ANSWER, /* a tool tag inside the answer block */
    AGENT_FMT_NO_REASONING,   /* no text between the last tool result and </think> (or a call after it) */
    AGENT_FMT_ANSWER_LINES,   /* not exactly 10 non-empty lines "N. title" numbered 1..10 */
    AGENT_FMT_PLACEHOLDER,    /* a template placeholder copied from the prompt */
    AGENT_FMT_N
};
int agent_format_check(const char *completion, size_t len);
/* The same rules for the direct baseline (no tool): any tool tag is AGENT_FMT_TOOL_TAGS; the
 * "at least one call" and "reasoning after the last tool result" rules do not apply. */
int agent_format_check_direct(const char *completion, size_t len);
const char *agent_format_name(int fmt);

/* The final answer: the lines of the last answer block (text between the last
 * AGENT_TAG_ANSWER and the following AGENT_TAG_ANSWER_END, or the end of the text).
 * Each non-empty line loses a leading "N." / "N)" and surrounding spaces; at most
 * AGENT_N_REC lines are kept. */
typedef struct agent_answer {
    int found;                    /* an answer tag was present */
    int n_lines;
    char *lines[AGENT_N_REC];     /* heap strings */
} agent_answer;
int agent_answer_parse(const char *completion, size_t len, agent_answer *a);
void agent_answer_free(agent_answer *a);

/* ---------------------------------------------------------------- episodes */
enum agent_outcome {
    AGENT_FINISHED = 0,       /* the model ended with an answer */
    AGENT_MANY_RECALL,        /* more than max_calls tool calls */
    AGENT_CONTEXT_TOO_LONG,   /* context cap or the per-turn token budget reached */
    AGENT_PREFERENCE_ERROR,   /* a tool call with an empty (or missing) preference */
    AGENT_SHOT_DOWN,          /* the model stopped without a tool call or an answer */
    AGENT_RECALL_ERROR,       /* the tool failed */
    AGENT_N_OUTCOMES
};
const char *agent_outcome_name(int outcome);

enum agent_seg_kind { AGENT_SEG_PROMPT = 0, AGENT_SEG_GEN = 1, AGENT_SEG_TOOL = 2 };
typedef struct agent_segment {
    int kind;                 /* enum agent_seg_kind */
    int32_t tok_begin, tok_end;   /* token span [begin, end) in agent_episode.tokens */
    int64_t chr_begin, chr_end;   /* byte span [begin, end) in agent_episode.text */
} agent_segment;

typedef struct agent_call {
    char *preference;         /* cleaned preference */
    int32_t *items;           /* retrieved ids (n_items) */
    float *scores;
    int n_items;
} agent_call;

typedef struct agent_episode {
    int32_t user, target;     /* target = held-out item, 0 when unknown */
    int sample;               /* 0..G-1 within its request */
    int request;              /* index of the request */
    /* text = prompt + completion; the completion starts at prompt_len */
    char *text;
    size_t text_len, prompt_len;
    /* tokens: prompt, then generated and tool tokens; mask[i] = 1 when the model
     * generated token i (the policy loss uses only these), logprob[i] = the sampling
     * log-probability of a generated token (0 elsewhere) */
    int32_t *tokens;
    uint8_t *mask;
    float *logprob;
    int32_t n_tokens, n_prompt_tokens, n_generated;
    /* Title-constrained answers (agent_rollout_opts.constrain_titles): token i was sampled
     * from the allowed set allow_ids[allow_off[i] .. allow_off[i] + allow_n[i]) (restricted
     * softmax; logprob[i] is the log-softmax over that set at temperature 1); allow_n[i] = 0:
     * the whole vocabulary (tokens in a run with the same set share one range). The RL update
     * recomputes log-probs with the same sets. */
    int32_t *allow_off, *allow_n;
    int32_t *allow_ids;
    int32_t n_allow_ids;
    agent_segment *segs;
    int n_segs;
    agent_call *calls;
    int n_calls;
    int outcome;              /* enum agent_outcome */
    int format;               /* enum agent_fmt of the completion (direct rules when direct) */
    int direct;               /* rolled out with the direct-baseline prompt */
    int answer_forced;        /* constrain_tags: the turn budget ran out and the rollout wrote the
                                 answer tag for the model */
    agent_answer answer;
    int32_t resolved[AGENT_N_REC]; /* resolved ids (0 = unresolved) */
    uint8_t how[AGENT_N_REC];      /* enum agent_resolve */
    int hit_rank;             /* 0-based rank of target in resolved (first occurrence), -1 none;
                                 always -1 unless outcome == AGENT_FINISHED */
    int hit_rank_substr;      /* same with the substring rule */
    /* internal cap bookkeeping */
    size_t text_cap;
    int32_t tok_cap, seg_cap, call_cap, allow_cap;
} agent_episode;
void agent_episode_free(agent_episode *e);
void agent_episodes_free(agent_episode *e, int n); /* frees each, then the array */
/* Fill answer, resolved[], how[], hit ranks and format from the completion text and
 * calls (done by the rollout at the end of every episode; exposed for synth and tests). */
int agent_episode_finalize(agent_episode *e, const agent_catalog *c);
/* Every item retrieved in the episode, in call order, duplicates removed. Heap array (may
 * be NULL when *n == 0). */
int agent_episode_retrieved(const agent_episode *e, int32_t **items, int *n);

/* ---------------------------------------------------------------- model and tool interfaces */
/* A tool: top-k items for (history, preference). Non-zero return = a tool failure
 * (the episode ends with AGENT_RECALL_ERROR). Must be callable from the rollout thread. */
typedef struct agent_tool {
    void *ctx;
    int (*retrieve)(void *ctx, const int32_t *hist, int64_t n_hist, const char *preference, int k, int32_t *items,
                    float *scores, int *n_out);
} agent_tool;

/* An allowed set for one decode slot: the token must be one of ids[0..n); n == 0: any token. */
typedef struct agent_allow {
    const int32_t *ids;
    int n;
} agent_allow;

/* A generator with n_slots sequence slots (each a growing context):
 *   encode: text -> token ids (protocol tags matched as special tokens where the vocabulary has them);
 *   piece:  bytes of one token (return value as tok_token_to_piece: length, -1 invalid);
 *   is_eos: 1 when the token ends generation;
 *   append: add tokens to a slot's context (prompt or tool text) and process them;
 *   fork:   make slot dst a copy of slot src (shares its prefix); dst must be free;
 *   decode: for each listed slot, sample the next token from its context, append it,
 *           and return it with its log-probability under the sampling distribution
 *           (the policy's log-softmax at temperature 1 when the adapter is built for RL);
 *           allow NULL, or allow[i] restricts slot slots[i] to a set of tokens: the token is
 *           sampled from the softmax renormalised over the set and its log-probability is the
 *           log-softmax over the set (temperature 1); a model that generates elsewhere (a remote
 *           server) may answer AGENT_TOKEN_NONE for a slot whose text is not back yet (the rollout
 *           asks again at the next step), but gives at least one token per call;
 *   release: free a slot.
 * is_eos answers AGENT_EOS_FULL for a token that ends generation because the model's context
 * or its per-turn length ran out where the rollout cannot count it (a remote server that
 * stopped on "length"): the episode ends as AGENT_CONTEXT_TOO_LONG, the token not recorded. */
#define AGENT_TOKEN_NONE (-1)
#define AGENT_EOS_FULL 2
typedef struct agent_model {
    void *ctx;
    int n_slots;
    int32_t n_ctx; /* the model's context size (0 = unlimited) */
    int (*encode)(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n);
    int (*piece)(void *ctx, int32_t id, char *buf, size_t cap);
    int (*is_eos)(void *ctx, int32_t id);
    int (*append)(void *ctx, int slot, const int32_t *ids, int n);
    int (*fork)(void *ctx, int src, int dst);
    int (*decode)(void *ctx, const int *slots, int n, const agent_allow *allow, int32_t *tokens, float *logprobs);
    void (*release)(void *ctx, int slot);
} agent_model;

/* ---------------------------------------------------------------- rollout */
typedef struct agent_rollout_opts {
    int chat;            /* prompt form */
    int max_hist;        /* <= 0: AGENT_MAX_HIST */
    int tool_k;          /* <= 0: AGENT_TOOL_K */
    int max_calls;       /* <= 0: AGENT_MAX_CALLS */
    int samples;         /* G per request (<= 0: 1) */
    int32_t max_turn_tokens; /* generated tokens per turn (<= 0: 1024) */
    int32_t max_ctx;     /* total tokens per episode (<= 0: the model's n_ctx, else 8192) */
    FILE *progress;      /* progress sink or NULL */
    int direct;          /* prompts of the direct baseline (agent_prompt_opts.direct) */
    /* 1: title-constrained answers. Once the model has written AGENT_TAG_ANSWER, the rollout
     * writes the structure of every line ("\nN.") and the closing tag itself (forced tokens:
     * mask 0, log-prob 0) and the model only chooses, token by token, among the titles of the
     * items retrieved in this episode that are not listed yet (a token trie; a token with one
     * possible continuation is forced too). Every line then resolves exactly and no line
     * repeats. Fewer than 10 distinct titles: all of them are listed, then the block closes
     * (the format check then fails on the line count, as for a model that stopped early).
     * The answer is bounded, so the per-turn budget does not apply to it (the context cap
     * does). Ignored with direct. */
    int constrain_titles;
    /* 1 (with constrain_titles): each call's order is kept. A line may only take the first
     * not yet listed title of some call's list, so the model chooses which list the next line
     * continues, not where inside a list. Why: a model too small to copy a list from its
     * context (the demo's 0.9 M parameters) otherwise scatters the TRM's order (docs/agent.md). */
    int constrain_order;
    /* 1: a preference is one line. While a preference is open (AGENT_TAG_PREF written, its end
     * tag not yet), the model chooses only among the tokens whose text holds no newline and no
     * protocol tag other than AGENT_TAG_PREF_END; each such token is recorded with that allowed
     * set (agent_episode.allow_*), so RL scores it under the distribution it was sampled from.
     * The set is about the vocabulary's size per token: cheap for the built-in vocabularies,
     * about 0.6 MB per preference token for a 151k vocabulary. After AGENT_PREF_MAX_TOKENS
     * such tokens the rollout writes AGENT_TAG_PREF_END itself (not the model's tokens: mask 0,
     * as tool text) and calls the tool. Ignored with direct. */
    int constrain_prefs;
    /* 1: free text keeps the protocol's grammar. Outside a preference and an answer the model
     * may not choose a token whose text holds a tag that is invalid there: AGENT_TAG_PREF_END
     * (no preference is open), the item-list tags (the tool writes them), AGENT_TAG_ANSWER_END
     * (with constrain_titles the rollout writes it); before AGENT_TAG_THINK_END also
     * AGENT_TAG_ANSWER, after it AGENT_TAG_THINK, AGENT_TAG_THINK_END and AGENT_TAG_PREF (the
     * format check refuses each of these, docs/agent.md). Free tokens are recorded with their
     * allowed set, as preference tokens are, so RL scores them under the distribution they were
     * sampled from. A tag the tokenizer splits over several tokens is not caught.
     * With constrain_titles too, a turn that spends max_turn_tokens after at least one tool call
     * is closed for the model: the rollout writes AGENT_TAG_THINK_END (when still open) and
     * AGENT_TAG_ANSWER (mask 0, as tool text; agent_episode.answer_forced is set) and the
     * constrained answer follows. Why: a small model that writes a preference's end tag without
     * its begin tag, or lists titles in its reasoning, ends its episode with nothing (12% of the
     * test episodes of one demo warm start). Ignored with direct. */
    int constrain_tags;
    /* NULL, or requests that keep arriving (a server): see agent_rollout_stream. */
    const struct agent_rollout_stream *stream;
} agent_rollout_opts;

/* The defaults, set once for every caller (rl_opts and eval_opts embed these options): the
 * AGENT_* limits, one sample, 1024 tokens per turn, the model's context, and the constraints
 * on (one switch, --constrain). A zeroed struct means the same except the constraints (off). */
void agent_rollout_opts_default(agent_rollout_opts *o);
/* DR_ERR_ARG when the options cannot make an episode: a tool call that shows fewer items than
 * the answer lists (0 < tool_k < AGENT_N_REC; direct has no tool), negative limits, or a
 * stream with samples > 1. agent_rollout checks its options with it; callers that do other
 * work first (eval, rl) call it up front. */
int agent_rollout_opts_check(const agent_rollout_opts *o);

/* Streaming admission (continuous batching for a server; samples must be 1): once the listed
 * requests are all admitted, next is called whenever a slot is free; it returns a request
 * (valid until its episode is handed to done) and an id stored in the episode's `request`,
 * or NULL when none waits now. Each streamed episode is handed to done when it ends (the
 * callee owns it: agent_episode_free, then free). agent_rollout returns when no sequence is
 * active and next gives nothing; on an error, streamed episodes not yet handed over are freed. */
typedef struct agent_rollout_stream {
    const struct agent_request *(*next)(void *ctx, int *id);
    void (*done)(void *ctx, struct agent_episode *e);
    void *ctx;
} agent_rollout_stream;

typedef struct agent_request {
    int32_t user;
    const int32_t *hist;  /* history, oldest first (the tool sees all of it; the prompt the tail) */
    int64_t n_hist;
    int32_t target;       /* held-out item or 0 */
    /* NULL, or a first tool call made for the model (the "rerank" baseline): the completion
     * starts with "<think>" + the call with this preference + its tool result, all masked
     * (mask 0, one AGENT_SEG_TOOL segment) and recorded as call 0; the model goes on from
     * there. The call counts toward max_calls. */
    const char *forced_preference;
} agent_request;

/* Roll out every request `samples` times. *out gets n_req * samples episodes, request r's
 * samples at [r * samples, (r + 1) * samples). Sequences advance together through
 * model->decode (continuous batching over model->n_slots; requests wait until `samples`
 * slots are free; samples of one request share its prompt by fork). Model or tool errors
 * other than the tool's own failure abort the whole call. */
int agent_rollout(const agent_model *m, const agent_tool *t, const agent_catalog *c, const agent_request *req,
                  int n_req, const agent_rollout_opts *o, agent_episode **out);

/* ---------------------------------------------------------------- adapters */
struct trm_model;
struct llm_model;
struct tokenizer;

/* The preference-aware TRM as the tool (src/agent/trm_tool.c): trm_retrieve with the whole
 * history and the preference; mask_history = 1 skips the history items (the convention of
 * DESIGN §3). Owns a trm_session (one thread). Free with agent_tool_trm_free. */
int agent_tool_trm_new(agent_tool *t, struct trm_model *m, int mask_history);
void agent_tool_trm_free(agent_tool *t);

/* The LLM engine as the generator (src/agent/llm_model.c): an llm_session of n_slots x n_ctx;
 * each slot keeps the logits of its last position; decode samples from them (temperature /
 * top-k / top-p of `sampler`; temperature <= 0 = greedy), records the log-probability of the
 * sampled token under the model's plain softmax (temperature 1, no truncation: the policy's
 * log-prob that PPO needs), then feeds all sampled tokens in one llm_decode batch. Every new
 * sequence (a prompt appended to an empty slot, or a fork) samples with
 * dr_rng_split(seed, k) for the k-th sequence started, so results do not depend on timing.
 * EOS: llm_is_eos or the tokenizer's eos. tok NULL: the model's own tokenizer. */
typedef struct agent_llm_opts {
    int n_slots;         /* <= 0: 8 */
    int32_t n_ctx;       /* <= 0: min(model context, 4096) */
    float temperature;   /* 0 = greedy */
    int top_k;           /* 0 = all */
    float top_p;         /* >= 1 or 0 = all */
    uint64_t seed;
    /* Sampling streams are split from the seed, one per started episode in start order; the
     * first gets this number (0). A data-parallel rank starts where the episodes of the ranks
     * before it end, so its samples are those one process would draw (dist.h). */
    uint64_t first_stream;
} agent_llm_opts;
int agent_model_llm_new(agent_model *out, const struct llm_model *m, const struct tokenizer *tok,
                        const agent_llm_opts *o);
void agent_model_llm_free(agent_model *m);
/* The adapter prefills a prompt as its preamble (agent_prompt_preamble), then the rest, and
 * takes the preamble's KV from its own agent_prefix_cache. share: use this cache instead
 * (borrowed; same model; the models sharing it used by one thread at a time, as the models of
 * one serve engine are). */
typedef struct agent_prefix_cache agent_prefix_cache;
void agent_model_llm_share_prefix(agent_model *m, agent_prefix_cache *share);
/* kv 0: prefill the preamble in every sequence instead (the same floats: the reference the
 * tests compare the cache with); 1: the cache (the default). */
void agent_model_llm_prefix_kv(agent_model *m, int kv);

/* The shared-prefix KV cache (prefix_cache.c): the KV of each prompt form's preamble,
 * computed on first use by a prefill of the preamble alone, then copied into every sequence
 * whose prompt starts with it. So a cached sequence holds the floats an uncached one computes
 * (its preamble prefilled alone, the rest after it). Not thread-safe: one user at a time. */
int agent_prefix_cache_new(agent_prefix_cache **out, const struct llm_model *m, const struct tokenizer *tok);
void agent_prefix_cache_free(agent_prefix_cache *pc);
/* Tokens of the longest preamble that ids[0..n) starts with and that leaves at least one
 * token after it (0: none; then *which = -1). */
int agent_prefix_match(const agent_prefix_cache *pc, const int32_t *ids, int n, int *which);
/* Fill the slot with preamble `which` (its KV computed on the first call). */
struct llm_session;
int agent_prefix_start(agent_prefix_cache *pc, int which, struct llm_session *s, int slot);
/* Sequences started from an already computed preamble, and the preamble tokens they reused. */
void agent_prefix_cache_stats(const agent_prefix_cache *pc, int64_t *hits, int64_t *reused_tokens);

/* ---------------------------------------------------------------- synthetic warm start */
typedef struct agent_synth_opts {
    int chat;
    int max_hist;        /* prompt history (<= 0: AGENT_MAX_HIST) */
    int tool_k;          /* <= 0: AGENT_TOOL_K */
    uint64_t seed;
    /* NULL, or the "rerank" form: ONE call with this preference made for the model, written
     * exactly as agent_rollout writes a forced call ("<think>" + the call + its result, all
     * one masked span), then the reasoning and the answer from that call alone. */
    const char *forced_preference;
    /* The outcome-aware warm start (rl_warmstart_synth) varies these per candidate: */
    int varied;          /* 1: preferences drawn from a wider pool (SYNTH_KIND_*: dominant, recent, pair,
                            last item, aspects of the TRM's own top items, a less frequent aspect, the
                            dominant one alone), each call introduced by a sentence naming its kind;
                            0: the classic three (dominant, recent, pair) in that order */
    int n_calls;         /* 1..3 calls (0: drawn from seed) */
    int32_t target;      /* > 0: the known next item (training positions only): when retrieved it is
                            put first in the answer, the rest keep the fusion order */
    int anchor;          /* 1: first an open call (AGENT_PREF_ANY: the TRM's own list), then the
                            aspect calls; the answer fuses by 2/rank for the open list and 0.5/rank
                            shared by the others (rank 1-based), not RRF. 2: the same with the open
                            call asked last (docs/warmstart.md) */
    int order;           /* 1: the answer keeps each call's order, as agent_rollout_opts.constrain_order
                            decodes: each line takes, among the first unlisted candidate of every call,
                            the target when it is one of them, else the best-fused one */
} agent_synth_opts;

/* One trajectory: the prompt and a completion with the tool results of `tool` inserted
 * exactly as the rollout would; tool_spans (byte offsets in the completion, pairs
 * [begin, end)) cover the tool-result text. */
typedef struct agent_synth_traj {
    char *prompt;
    char *completion;
    int64_t (*tool_spans)[2];
    int n_spans;
    int n_calls;
    int32_t answer[AGENT_N_REC]; /* the ids of the answer lines, in order */
    int target_retrieved;        /* opts.target was among the retrieved items */
} agent_synth_traj;
void agent_synth_traj_free(agent_synth_traj *t);

/* Build one trajectory for a history (oldest first; the held-out target is not an input).
 * Aspects come from the categories of the shown history (or, when the catalog has no
 * categories, from title words of 4+ letters): the dominant two, the two of the last three
 * items, and the most frequent pair inside one item. 1-3 distinct preferences (the number
 * drawn from `seed`; dominant first, then recent, then the pair) are called through `tool`
 * with the whole history; the reasoning names the aspects and what came back; the final
 * top-10 is the reciprocal-rank fusion over the calls (score = sum of 1 / (60 + rank),
 * rank 1-based; ties: first retrieved first), history items excluded. The result passes
 * agent_format_check (else DR_ERR_FORMAT, e.g. a title with a newline); fewer than 10
 * candidates: DR_ERR_RANGE. Callers skip users on these two codes. With o->forced_preference
 * the trajectory is the rerank form (one forced call, no intro sentence; tool_spans[0]
 * starts at 0 and covers "<think>", the call and its result). */
int agent_synth_one(const agent_catalog *c, const agent_tool *tool, const int32_t *hist, int64_t n_hist,
                    const agent_synth_opts *o, agent_synth_traj *out);
/* The JSON line of a trajectory: {"prompt", "completion", "mask": [[begin, end], ...]}
 * with mask spans as byte offsets into the UTF-8 completion (tool-result text, excluded
 * from the SFT loss). Heap string without newline. */
int agent_synth_json(const agent_synth_traj *t, char **out);

/* ---------------------------------------------------------------- warm-start runs
 * agent synth over many users into one JSON-lines file (src/agent/synth_run.c): the training
 * users with >= 2 train items (history = train[:-1], target = train[-1]) in dataset order,
 * shuffled by dr_rng(seed); the first `users` of them (0 = all). Per user, an rng split from
 * the run's by user id gives the trajectory seed, then (only when rerank_share > 0) the draw
 * for the rerank form, so rerank_share 0 writes the same file as a run without it. Users
 * whose trajectory cannot be built (DR_ERR_RANGE / DR_ERR_FORMAT) are skipped and counted.
 * The file is written atomically. */
typedef int (*agent_synth_pref_fn)(void *ctx, const agent_catalog *c, const int32_t *hist, int64_t n_hist,
                                   char **pref);
typedef struct agent_synth_run_opts {
    agent_synth_opts synth;  /* per-trajectory options; seed and forced_preference are set per user */
    int users;               /* users to sample (0 = all) */
    uint64_t seed;
    double rerank_share;     /* share of users in the rerank form (needs rerank_pref) */
    /* The rerank form's fixed preference for a history (heap string). A callback because the
     * rule lives above this module (eval_history_preference). */
    agent_synth_pref_fn rerank_pref;
    void *rerank_pref_ctx;
    FILE *progress;          /* progress bar sink or NULL */
} agent_synth_run_opts;
typedef struct agent_synth_run_result {
    int64_t written, skipped, rerank_form;
    int64_t calls;           /* tool calls over the written trajectories */
    int64_t hits;            /* the target among the answer's resolved lines */
    int64_t text_hits;       /* the target's title anywhere in the completion */
    double seconds;
} agent_synth_run_result;
int agent_synth_run(const struct dr_dataset *d, const agent_catalog *c, const agent_tool *tool,
                    const agent_synth_run_opts *o, const char *out, agent_synth_run_result *res);

#endif
