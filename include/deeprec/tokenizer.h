/* Byte-level BPE tokenizer (GPT-2 / Qwen2 style), loaded from GGUF metadata
 * (tokenizer.ggml.*) or a Hugging Face tokenizer.json; a BPE trainer.
 *
 * Encoding: special/added tokens are matched first (longest match, leftmost),
 * the text between them is NFC-normalised (when the tokenizer asks for it),
 * split by the pre-tokenizer (qwen2 or gpt2 regex, implemented by hand with
 * Unicode property tables), mapped byte -> unicode and merged by rank.
 * Invalid UTF-8 input: each invalid byte is treated as a code point of the
 * category "other" (not letter/number/space) and encoded as its own byte, so
 * decode(encode(x)) == x holds for any byte string (bar NFC changes).
 * A tokenizer is immutable after loading and may be shared between threads. */
#ifndef DEEPREC_TOKENIZER_H
#define DEEPREC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

struct gguf_file;
struct gguf_writer;

/* Token types (llama.cpp numbering, tokenizer.ggml.token_type). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0, TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6
};

/* Pre-tokenizer split rules. */
enum tok_pre { TOK_PRE_QWEN2 = 0, TOK_PRE_GPT2 = 1 };

typedef struct tokenizer tokenizer;

/* ---- loading / saving ---- */
/* From an open GGUF: tokenizer.ggml.model must be "gpt2"; reads .pre ("qwen2" default,
 * "gpt2"), .tokens, .merges, .token_type (optional), .eos/.bos/.padding_token_id
 * (optional), .add_bos_token (optional), deeprec.tokenizer.nfc (optional bool; default
 * 1 for qwen2). */
int tok_load_gguf(tokenizer **out, const struct gguf_file *f);
/* Convenience: open path, load, close. */
int tok_load_gguf_path(tokenizer **out, const char *path);
/* From a Hugging Face tokenizer.json (model.type "BPE", ByteLevel; pre-tokenizer the qwen2
 * Split regex or GPT-2 ByteLevel(use_regex); normalizer NFC or none). added_tokens with
 * "special": true become CONTROL, the others USER_DEFINED. Special ids: eos = <|im_end|>
 * when present else <|endoftext|>; bos = pad = <|endoftext|>; add_bos off (as for Qwen);
 * change them with tok_set_special. */
int tok_load_json(tokenizer **out, const char *path);
int tok_load_json_mem(tokenizer **out, const char *json, size_t len);
/* Either: a path ending in .json -> tok_load_json, else GGUF. */
int tok_load_path(tokenizer **out, const char *path);
void tok_free(tokenizer *t);

/* Write tokenizer.ggml.* keys (model, pre, tokens, token_type, merges, eos/bos/padding ids,
 * add_bos_token) into a GGUF writer. */
int tok_write_gguf(const tokenizer *t, struct gguf_writer *w);
/* A GGUF file with only the tokenizer metadata (+ deeprec.kind = "tokenizer"), atomically. */
int tok_save_gguf(const tokenizer *t, const char *path);

/* ---- encoding / decoding ---- */
enum tok_encode_flags {
    TOK_ENC_DEFAULT = 0,
    TOK_ENC_NO_SPECIAL = 1, /* do not match CONTROL tokens: "<|im_end|>" is encoded as plain text
                               (USER_DEFINED added tokens such as <think> are still matched, as llama.cpp does) */
    TOK_ENC_ADD_BOS = 2     /* prepend bos when the tokenizer has one */
};
/* Encode len bytes of text. *ids is heap-allocated (caller frees), *n_ids its length.
 * An empty input gives n_ids = 0 and *ids = NULL or an empty allocation. */
int tok_encode(const tokenizer *t, const char *text, size_t len, int flags, int32_t **ids, size_t *n_ids);
/* Decode ids to bytes (NUL-terminated heap string, *len excludes the NUL). Added tokens
 * are written as their text; skip_special leaves out CONTROL tokens. Out-of-range ids:
 * DR_ERR_RANGE. Concatenating tok_token_to_piece of each id gives the same bytes. */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len);
/* The raw bytes of one token (the piece after byte->unicode reversal). Returns the number
 * of bytes (may be > cap: then only cap written), or -1 for an invalid id. */
int tok_token_to_piece(const tokenizer *t, int32_t id, char *buf, size_t cap);
/* The vocabulary string of a token as stored (byte-level unicode form), NUL-terminated; NULL if invalid. */
const char *tok_token_str(const tokenizer *t, int32_t id);
/* id of a vocabulary string (exact, as stored), or -1. Works for special tokens: tok_find(t, "<|im_end|>"). */
int32_t tok_find(const tokenizer *t, const char *str);

/* ---- properties ---- */
int32_t tok_vocab_size(const tokenizer *t);
int tok_type_of(const tokenizer *t, int32_t id); /* enum tok_type; -1 if invalid */
int tok_is_special(const tokenizer *t, int32_t id); /* CONTROL or USER_DEFINED (added) */
int32_t tok_eos(const tokenizer *t); /* -1 if none */
int32_t tok_pad(const tokenizer *t);
int tok_pre(const tokenizer *t);     /* enum tok_pre */
/* Override special ids (-1 = none) */
void tok_set_special(tokenizer *t, int32_t bos, int32_t eos, int32_t pad);

/* ---- chat formatting (ChatML: qwen2, qwen3; Llama-3) ---- */
typedef struct tok_chat_msg { const char *role; const char *content; } tok_chat_msg;
typedef enum { TOK_CHAT_CHATML, TOK_CHAT_LLAMA3, TOK_CHAT_UNKNOWN } tok_chat_form;
/* The family of a GGUF's tokenizer.chat_template, by the tags it writes (no Jinja is run):
 * <|start_header_id|> -> Llama-3, <|im_start|> -> ChatML, NULL (no template: our own models)
 * -> ChatML, anything else -> UNKNOWN. */
tok_chat_form tok_chat_form_detect(const char *tmpl);
tok_chat_form tok_chat_form_of(const tokenizer *t);
const char *tok_chat_template(const tokenizer *t); /* NULL when the file had none */
/* ChatML: "<|im_start|>role\ncontent<|im_end|>\n" per message, then "<|im_start|>assistant\n"
 * if add_generation_prompt. Llama-3: "<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>"
 * per message, then "<|start_header_id|>assistant<|end_header_id|>\n\n"; the BOS that the
 * template begins with is the tokenizer's to add (tokenizer.ggml.add_bos_token), as llama.cpp
 * does. UNKNOWN is an error. Heap string, caller frees. */
int tok_chat_format_as(tok_chat_form form, const tok_chat_msg *msgs, size_t n, int add_generation_prompt, char **out);
/* tok_chat_format_as(TOK_CHAT_CHATML, ...): the agent's protocol form */
int tok_chat_format(const tok_chat_msg *msgs, size_t n, int add_generation_prompt, char **out);

/* ---- trainer ---- */
typedef struct tok_train_opts {
    int32_t vocab_size;   /* total, including the 256 byte tokens and the special tokens */
    int64_t min_pair_count; /* stop when the best pair occurs fewer times (default 2 when 0) */
    FILE *progress;       /* progress bar sink or NULL */
} tok_train_opts;
/* Byte-level BPE over the qwen2 pre-tokenizer word counts (NFC first; special-token
 * strings in the corpus act as separators): 256 byte tokens (id = byte value), merges
 * (most frequent pair; ties broken by the smaller (left id, right id)), then the special tokens <|endoftext|>, <|im_start|>, <|im_end|>
 * (CONTROL) and the protocol tags <think> </think> <|begin_of_preference|>
 * <|end_of_preference|> <|begin_of_item_list|> <|end_of_item_list|>
 * <recommendation_list> </recommendation_list> (USER_DEFINED). eos = <|im_end|>,
 * pad = <|endoftext|>. */
int tok_train(const char *text, size_t len, const tok_train_opts *opts, tokenizer **out);
int tok_train_file(const char *path, const tok_train_opts *opts, tokenizer **out);

/* ---- Unicode helpers (exposed for tests) ---- */
enum tok_ucat { TOK_UCAT_OTHER = 0, TOK_UCAT_LETTER = 1, TOK_UCAT_NUMBER = 2, TOK_UCAT_SPACE = 4 };
int tok_unicode_cat(uint32_t cp); /* bit set of enum tok_ucat (\p{L}, \p{N}, \s as in JS regex) */
/* NFC normalisation of valid UTF-8 (invalid bytes are copied through). Heap result. */
int tok_nfc(const char *s, size_t len, char **out, size_t *out_len);

#endif
