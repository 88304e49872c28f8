/* Internal to src/text: the tokenizer structure and its builder. */
#ifndef DEEPREC_TOK_INTERNAL_H
#define DEEPREC_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"
#include "deeprec/tokenizer.h"

typedef struct tok_merge_slot { uint64_t key; int32_t rank; int32_t result; } tok_merge_slot;

struct tokenizer {
    int32_t n_vocab;
    char **str;          /* vocabulary strings (NUL-terminated) */
    uint32_t *len;
    uint8_t *type;
    char **piece;        /* decoded bytes of each token */
    uint32_t *piece_len;
    dr_strindex map;            /* token string -> id (of equal strings, the first id) */
    int32_t n_merges;
    int32_t *merge_a, *merge_b; /* by rank */
    uint32_t merge_cap;
    tok_merge_slot *merges;     /* hash (a,b) -> rank, result */
    int32_t byte_id[256];
    int32_t *special;    /* added tokens, longest first */
    int32_t n_special;
    uint8_t special_first[256];
    int pre, nfc, add_bos;
    int32_t bos, eos, pad;
    char *chat_template; /* the GGUF's tokenizer.chat_template, kept for saving and tok_chat_form_of; or NULL */
};

/* Build from vocabulary strings (byte-level form), types (NULL: NORMAL, and added tokens
 * must then be flagged by the caller) and merges as pairs of strings; takes nothing over. */
int tok_build(tokenizer **out, int32_t n_vocab, const char *const *strs, const uint32_t *lens, const uint8_t *types,
              int64_t n_merges, const char *const *ma, const uint32_t *ma_len, const char *const *mb,
              const uint32_t *mb_len, int pre, int nfc);
/* GPT-2 byte <-> unicode map. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if not a byte char */
/* Byte-level encoding of raw bytes into a NUL-terminated heap string. */
char *tok_bytes_to_unicode(const uint8_t *s, size_t n, size_t *out_len);

#endif
