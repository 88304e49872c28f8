/* deeprec data: the in-memory dataset (item catalog + per-user time-ordered
 * sequences), importers for the formats of the field, k-core, leave-one-out
 * split, and the dataset file (GGUF).
 *
 * Ids. Items are numbered 1..n_items internally; id 0 is PADDING and never a
 * real item (so a SASRec embedding table has n_items + 1 rows and row 0 is the
 * padding row). Per-item arrays (item_ids, titles, categories) have n_items + 1
 * entries; entry 0 is "" (padding). Users are numbered 0..n_users-1 (no padding).
 *
 * Sequences. CSR: user u's full history (oldest first, sorted by timestamp,
 * ties kept in input order) is items[offsets[u] .. offsets[u+1]-1].
 * Duplicates of the same (user, item) pair are all kept (as SASRec/S3-Rec
 * preprocessing does); k-core counts count interactions, not distinct pairs.
 *
 * Split (leave-one-out). For a user with n >= 3 interactions:
 *   train  = seq[0 .. n-3]      (seq[:-2])
 *   valid  target = seq[n-2], valid prefix = seq[:-2]
 *   test   target = seq[n-1], test  prefix = seq[:-1]
 * A user with n < 3 keeps everything in train and has no valid/test target.
 *
 * max_len. The stored sequences always keep the whole history; max_len
 * (stored as deeprec.data.max_len, 0 = unlimited) is a training/inference-time
 * parameter: consumers take the last max_len items of a prefix
 * (dr_data_prefix_tail).
 *
 * Strings are UTF-8. Bytes that are not valid UTF-8 in titles/categories/ids
 * are replaced by U+FFFD at import (old MovieLens files, ml-100k/ml-1m, are
 * Latin-1: a title that is not valid UTF-8 there is converted from Latin-1).
 * Categories of one item are stored as one string, categories separated by
 * '|' (e.g. "Action|Comedy"); empty = none; repeated categories are dropped.
 *
 * Import policies (all importers):
 * - inputs: files, or folders (their regular files, sorted by name, not
 *   recursive; files a format does not know are ignored). `data import
 *   --input A --input B` or `--input A B` (extra words are inputs too).
 *   gzip is detected by content, so NAME.gz works wherever NAME does.
 * - timestamps are kept as the source gives them (seconds; Amazon 2023: ms);
 *   formats without time (s3rec, sasrec) use the file position. Sorting is
 *   stable: ties keep file order.
 * - duplicate (user, item) interactions are all kept.
 * - metadata (titles, categories) for items without any interaction is
 *   ignored; an item without metadata gets an empty title; empty titles are
 *   allowed. When an item is described twice, the last description wins.
 * - filters: --min-rating first (rating >= R; sources without a rating have
 *   rating 0), then k-core (--min-user-count / --min-item-count) repeated until
 *   stable; users and items are renumbered by first appearance in the input
 *   (so S3-Rec's Beauty.txt item k stays internal id k).
 * - a malformed line or field is an error (DR_ERR_FORMAT) naming the file,
 *   the line, the field (number and name, or the JSON key) and what was
 *   expected; nothing is written.
 */
#ifndef DEEPREC_DATA_H
#define DEEPREC_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

#define DR_DATA_PAD 0 /* padding item id */
#define DR_DATA_VERSION 1

typedef struct dr_dataset {
    int32_t n_users;
    int32_t n_items;       /* real items; ids 1..n_items */
    int64_t n_inter;       /* = offsets[n_users] */
    int64_t *offsets;      /* n_users + 1 */
    int32_t *items;        /* n_inter item ids (1..n_items), per user oldest first */
    int64_t *timestamps;   /* n_inter (seconds, or whatever the source gave; 0 if none) — may be NULL */
    char **user_ids;       /* n_users original user ids */
    char **item_ids;       /* n_items + 1 original item ids; [0] = "" */
    char **titles;         /* n_items + 1; "" when unknown */
    char **categories;     /* n_items + 1; '|'-separated; "" when unknown */
    /* provenance (may be NULL / 0) */
    char *format;          /* importer name, e.g. "recbole" */
    char *source;          /* input paths joined by ';' */
    int32_t min_user_count, min_item_count, max_len;
    double min_rating;     /* -inf (or NAN) when not filtered */
    int has_min_rating;
} dr_dataset;

void dr_data_free(dr_dataset *d); /* frees everything, zeroes *d */

/* ---- sequences and split ---- */
static inline int64_t dr_data_seq_len(const dr_dataset *d, int32_t u) { return d->offsets[u + 1] - d->offsets[u]; }
static inline const int32_t *dr_data_seq(const dr_dataset *d, int32_t u) { return d->items + d->offsets[u]; }
/* 1 when the user has valid/test targets (n >= 3). */
static inline int dr_data_has_split(const dr_dataset *d, int32_t u) { return dr_data_seq_len(d, u) >= 3; }
/* Train part: seq[:-2] (or whole seq when n < 3). Returns its length, *items set. */
int64_t dr_data_train(const dr_dataset *d, int32_t u, const int32_t **items);
/* Valid: prefix seq[:-2], returns target seq[-2]; returns 0 (PAD) when the user has no split. */
int32_t dr_data_valid(const dr_dataset *d, int32_t u, const int32_t **prefix, int64_t *prefix_len);
/* Test: prefix seq[:-1], returns target seq[-1]; 0 when no split. */
int32_t dr_data_test(const dr_dataset *d, int32_t u, const int32_t **prefix, int64_t *prefix_len);
/* Training example: history = train[:-1], target = train[-1] (the last train item: valid
 * and test stay unseen). Returns the target, or 0 (PAD) when the train part has fewer than
 * 2 items; *hist and *hist_len are set either way. */
int32_t dr_data_train_example(const dr_dataset *d, int32_t u, const int32_t **hist, int64_t *hist_len);
/* The history a request or command shows for a split, by name "test" | "valid" | "all". */
enum dr_data_split { DR_SPLIT_TEST, DR_SPLIT_VALID, DR_SPLIT_ALL };
int dr_data_split_from_name(const char *name); /* -1 when unknown */
/* test: seq[:-1] before target seq[-1]; valid: seq[:-2] before seq[-2]; all: the whole
 * sequence. Returns the target, or 0 for "all" and for users too short to hold one out
 * (then *hist is the whole sequence too). */
int32_t dr_data_split_history(const dr_dataset *d, int32_t u, int split, const int32_t **hist, int64_t *hist_len);
/* A seeded draw of users with a split (dr_data_has_split): their ids in dataset order, shuffled
 * by `seed`; *users (heap, room for all of them) gets them and *n_out = min(n, available)
 * (n = 0: all). The evaluation's users and RL's validation users are both this draw. */
int dr_data_draw_users(const dr_dataset *d, int n, uint64_t seed, int32_t **users, int *n_out);
/* Last min(len, max_len) items of a prefix (max_len <= 0: all). Returns new length, adjusts *items. */
int64_t dr_data_prefix_tail(const int32_t **items, int64_t len, int32_t max_len);

/* A deep copy of d without each user's last n items (a user with at most n keeps none); the
 * catalog (ids, titles, categories) is unchanged. For a TRM that has never seen a user's last
 * items as targets (src/data/holdout.c says why). */
int dr_data_drop_last(const dr_dataset *d, int n, dr_dataset *out);

typedef struct dr_data_stats {
    int32_t n_users, n_items;
    int64_t n_inter;
    double seq_mean, seq_median;
    int64_t seq_min, seq_max;
    double density;          /* n_inter / (n_users * n_items) */
    int32_t items_titled, items_with_categories;
    int32_t items_unused;    /* items with no interaction (possible after load of a hand-built set) */
    int32_t users_split;     /* users with valid+test targets (n >= 3) */
    int64_t train_inter;     /* interactions in train parts */
    int32_t valid_n, test_n; /* = users_split */
} dr_data_stats;
void dr_data_compute_stats(const dr_dataset *d, dr_data_stats *s);

/* Lookups (linear-time hash built lazily is not kept: these are O(n) scans; fine for CLI use). */
/* The user with this id, or "#N" for the N-th user (0-based) when no id is "#N";
 * -1 if absent. */
int32_t dr_data_find_user(const dr_dataset *d, const char *user_id);
/* The user a command or request names: by `user` (dr_data_find_user) or, when user is NULL,
 * the user at 0-based `index`. DR_ERR_ARG naming `where` (the dataset's path) and, with a
 * hint on how to name one, when there is none. */
int dr_data_user_lookup(const dr_dataset *d, const char *user, int64_t index, const char *where, int32_t *u);
int32_t dr_data_find_item(const dr_dataset *d, const char *item_id);  /* 0 if absent */

/* ---- dataset file (GGUF) ----
 * deeprec.kind = "dataset", deeprec.version, deeprec.data.{format,source,n_users,n_items,
 * n_interactions,min_user_count,min_item_count,min_rating,max_len,padding_id};
 * arrays deeprec.data.{user_ids,item_ids,titles,categories} (item arrays n_items+1 long);
 * tensors "data.offsets" (I32 [n_users+1] while n_interactions < 2^31, else I64; the loader takes both),
 * "data.items" (I32 [n_inter]), "data.timestamps" (I64 [n_inter], optional). */
int dr_data_save(const dr_dataset *d, const char *path);
int dr_data_load(dr_dataset *d, const char *path);

/* ---- building a dataset (used by the importers; usable directly) ---- */
typedef struct dr_data_builder dr_data_builder;
dr_data_builder *dr_data_builder_new(void);
void dr_data_builder_free(dr_data_builder *b);
/* One interaction. Ids are strings (copied, interned). `order` ties are broken by call order. */
int dr_data_builder_add(dr_data_builder *b, const char *user, size_t user_len, const char *item, size_t item_len,
                        int64_t timestamp, double rating);
/* Item text; unknown item ids are remembered and only attached if the item occurs in interactions.
 * Later calls for the same item overwrite. title/cats may be NULL (= leave as is). len < 0: strlen. */
int dr_data_builder_item_text(dr_data_builder *b, const char *item, size_t item_len, const char *title,
                              long title_len, const char *cats, long cats_len);

typedef struct dr_data_filter {
    int32_t min_user_count;  /* 0/1: none */
    int32_t min_item_count;
    int has_min_rating;
    double min_rating;       /* keep rating >= min_rating */
    int32_t max_len;         /* recorded only (see above) */
} dr_data_filter;
/* Applies rating filter, k-core (repeated until stable), sorts each user's
 * interactions by timestamp (stable), renumbers users (order of first
 * appearance) and items (order of first appearance in the filtered data),
 * and fills *out. The builder may be freed afterwards. */
int dr_data_builder_finish(dr_data_builder *b, const dr_data_filter *f, dr_dataset *out);

/* ---- importers ---- */
typedef struct dr_data_import_opts {
    const char *format;          /* movielens recbole s3rec sasrec amazon2018 amazon2023 dslabs csv */
    const char *const *inputs;   /* files or directories */
    int n_inputs;
    dr_data_filter filter;
    dr_progress *progress;       /* NULL: silent */
} dr_data_import_opts;
int dr_data_import(const dr_data_import_opts *o, dr_dataset *out);
/* Names of the formats, NULL-terminated. */
extern const char *const dr_data_formats[];

/* Per-format entry points: add everything in `paths` to the builder.
 * Errors: DR_ERR_FORMAT with "file:line: field N (name): expected ..., got '...'". */
int dr_import_movielens(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_recbole(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_s3rec(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_sasrec(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_amazon2018(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_amazon2023(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_csv(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);
int dr_import_dslabs(dr_data_builder *b, const char *const *paths, int n, dr_progress *p);

/* ---- R serialization (used by dslabs; exposed for tests and fuzzing) ---- */
/* Decode an R-serialized (XDR, version 2 or 3) object of the kinds a data.frame uses.
 * The `movielens`-style data.frame is flattened into columns: */
typedef struct dr_rcol {
    char *name;
    int type;          /* 0 = int (also factor codes, logical), 1 = double, 2 = string */
    int64_t n;
    int32_t *ints;     /* NA = INT32_MIN */
    double *reals;     /* NA = NaN */
    char **strs;       /* NA = NULL */
    char **levels;     /* factor levels (type 0 with levels != NULL): code k (1-based) -> levels[k-1] */
    int32_t n_levels;
} dr_rcol;
typedef struct dr_rframe {
    int n_cols;
    dr_rcol *cols;
    int64_t n_rows;
} dr_rframe;
/* Parses an uncompressed R serialization stream holding a data.frame (or a named list of vectors). */
int dr_rdata_read_frame(const uint8_t *buf, size_t n, dr_rframe *out);
void dr_rframe_free(dr_rframe *f);
const dr_rcol *dr_rframe_col(const dr_rframe *f, const char *name);
/* Lazy-load DB: find `name` in Rdata.rdx and decode the object from Rdata.rdb (in `dir`). */
int dr_rdata_load_lazy(const char *dir, const char *name, dr_rframe *out);
/* Same from memory: the .rdx bytes (gzip/zlib or plain) and the .rdb bytes. */
int dr_rdata_lazy_mem(const uint8_t *rdx, size_t rdx_n, const uint8_t *rdb, size_t rdb_n, const char *name,
                      dr_rframe *out);

/* ---- text helpers (exposed for tests/fuzzing) ---- */
/* Latin-1 bytes -> UTF-8 (new string). */
char *dr_latin1_to_utf8(const char *src, size_t n);

#endif
