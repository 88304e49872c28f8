/* data module internals: line reader (gzip or plain), field helpers, a tolerant
 * JSON-object scanner, error helpers. Not part of the public API. */
#ifndef DEEPREC_DATA_INTERNAL_H
#define DEEPREC_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/data.h"

/* ---- line reader: gzip or plain (zlib's gzread reads plain files transparently) ---- */
typedef struct dr_lines {
    void *gz;          /* lines_src (lines.c): the file and its inflate state */
    const char *path;
    char *buf;         /* read buffer */
    size_t cap, beg, end;
    char *line;        /* assembled long line */
    size_t line_cap;
    long line_no;      /* 1-based number of the line last returned */
    int eof;
    int64_t raw_size;  /* file size on disk (for progress) */
    /* in-memory mode (fuzzing, tests): */
    const char *mem;
    size_t mem_len, mem_pos;
} dr_lines;
int dr_lines_open(dr_lines *r, const char *path);
void dr_lines_open_mem(dr_lines *r, const char *name, const char *data, size_t n);
/* Next line without the newline (and without a trailing '\r'). Returns 1 and
 * sets s and n; 0 at the end; a negated DR_ERR_* code on error (message set).
 * The line is valid until the next call; it is writable and NUL-terminated. */
int dr_lines_next(dr_lines *r, char **s, size_t *n);
int64_t dr_lines_raw_pos(dr_lines *r); /* compressed bytes consumed so far */
void dr_lines_close(dr_lines *r);

/* ---- fields ---- */
typedef struct dr_span { const char *p; size_t n; } dr_span;
/* Split on a single-byte separator (no quoting). Returns number of fields (<= max; extra are merged into the last). */
int dr_split(char *s, size_t n, char sep, dr_span *out, int max);
/* Split on a multi-byte separator ("::"). */
int dr_split_str(char *s, size_t n, const char *sep, dr_span *out, int max);
/* Split on runs of spaces/tabs. Returns count (all fields: *out grows via realloc). */
int dr_split_ws(const char *s, size_t n, dr_span **out, int *cap);
/* CSV (RFC 4180): fields separated by ',', "quoted" fields with "" escapes. Unquoted
 * values are spans into s; quoted ones are unescaped in place. Returns the count,
 * or -1 when a quote is not closed. */
int dr_split_csv(char *s, size_t n, dr_span *out, int max);

int dr_parse_i64(dr_span f, int64_t *out);  /* strict decimal integer */
int dr_parse_f64(dr_span f, double *out);   /* strict number (strtod, whole field) */
/* A timestamp: integer or a number like "881250949.0" (truncated). */
int dr_parse_ts(dr_span f, int64_t *out);

/* Sets DR_ERR_FORMAT: "path:line: field N (name): expected WHAT, got 'VALUE'" (value shortened). */
int dr_field_error(const char *path, long line, int field_no, const char *field_name, const char *expected,
                   dr_span got);

/* ---- strings ---- */
/* Valid UTF-8 is kept; anything else is taken as Latin-1 (old MovieLens files). New string. */
char *dr_text_utf8_or_latin1(const char *s, size_t n);
/* Join categories: split `s` on any byte of `seps`, trim spaces, drop empty and repeated
 * entries, replace '|' inside an entry by '/', join with '|' into out (reset first). */
int dr_join_cats(const char *s, size_t n, const char *seps, dr_buf *out);

/* ---- tolerant JSON object scanner ----
 * Scans one JSON object (or a Python-dict-like object with 'single-quoted'
 * strings, True/False/None) and reports its top-level members. String values
 * are unescaped into a scratch buffer. Arrays of strings (and arrays of arrays
 * of strings, the 2014/2018 Amazon "categories") are flattened. */
enum { DR_JV_NONE = 0, DR_JV_STR, DR_JV_NUM, DR_JV_STRLIST, DR_JV_OTHER };
typedef struct dr_jfield {
    const char *key; size_t key_len;
    int kind;
    const char *str; size_t str_len; /* DR_JV_STR / DR_JV_NUM (raw text) */
    /* DR_JV_STRLIST: strings joined with '\x1f' in str/str_len; list_n entries */
    int list_n;
    size_t key_off, str_off; /* offsets into scratch (internal) */
} dr_jfield;
typedef struct dr_jobj {
    dr_jfield *f; int n, cap;
    dr_buf scratch;  /* holds unescaped strings; offsets fixed up after scan */
    size_t err_pos;  /* where scanning failed */
    const char *err_what;
    const char *const *want; /* optional NULL-terminated key list: other members are
                                validated and skipped (not copied, not reported) */
} dr_jobj;
/* Returns 0 (DR_OK) or -1 on a syntax error (err_pos/err_what set). */
int dr_json_scan(dr_jobj *o, const char *s, size_t n);
const dr_jfield *dr_json_get(const dr_jobj *o, const char *key);
void dr_json_free(dr_jobj *o);

/* ---- input expansion ---- */
/* Expand directories into their regular files (sorted by name, not recursive). */
int dr_expand_inputs(const char *const *in, int n, char ***out, int *nout);
void dr_free_strs(char **v, int n);
/* Progress: update every 64k lines with base + compressed bytes read. */
void dr_import_tick(dr_progress *p, int64_t base, dr_lines *r);
/* Reads a whole line-based file, calling fn for each line; handles progress and errors. */
typedef int (*dr_line_fn)(void *ctx, dr_lines *r, char *s, size_t n);
int dr_for_lines(const char *path, dr_progress *p, dr_line_fn fn, void *ctx);

#endif
