/* Internal to src/text: Unicode tables, UTF-8, pre-tokenizer. */
#ifndef DEEPREC_TEXT_INTERNAL_H
#define DEEPREC_TEXT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* generated tables (unicode_tables.c): triples / index rows flattened */
extern const uint32_t tok_ucat_ranges[];   /* start, end, cat bits */
extern const int tok_ucat_ranges_n;
extern const uint32_t tok_ccc_ranges[];    /* start, end, ccc */
extern const int tok_ccc_ranges_n;
extern const uint32_t tok_decomp_index[];  /* cp, offset, len */
extern const int tok_decomp_index_n;
extern const uint32_t tok_decomp_pool[];
extern const int tok_decomp_pool_n;
extern const uint32_t tok_comp_pairs[];    /* first, second, composite (sorted) */
extern const int tok_comp_pairs_n;

/* An invalid UTF-8 byte b decodes to TOK_BAD_BYTE | b (category OTHER). */
#define TOK_BAD_BYTE 0x80000000u

/* Decode one code point at s[i] (n bytes total); returns its byte length (>= 1). */
int tok_utf8_next(const uint8_t *s, size_t n, size_t i, uint32_t *cp);
/* Encode cp (or a bad byte) into buf; returns the length. */
int tok_utf8_put(uint32_t cp, uint8_t *buf);

/* Pre-tokenizer: splits text into pieces; calls fn(start, end) with byte offsets. */
typedef void (*tok_split_fn)(void *ctx, size_t start, size_t end);
int tok_pretokenize(int pre, const char *text, size_t len, tok_split_fn fn, void *ctx);

#endif
