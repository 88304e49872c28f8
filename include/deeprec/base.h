/* deeprec base: errors, logging, progress, files, rng, threads, timers.
 * Library code never prints or exits: it returns a non-zero dr_err code and
 * leaves a message (where, what, hint) in a thread-local slot the caller reads. */
#ifndef DEEPREC_BASE_H
#define DEEPREC_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>

#define DR_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---------- errors ---------- */
enum dr_err {
    DR_OK = 0,
    DR_ERR_IO,          /* open/read/write/rename failed */
    DR_ERR_FORMAT,      /* input file malformed */
    DR_ERR_ARG,         /* bad argument from the caller / command line */
    DR_ERR_NOMEM,       /* allocation failed or size absurd */
    DR_ERR_RANGE,       /* value out of range */
    DR_ERR_UNSUPPORTED, /* valid but not supported here */
    DR_ERR_INTERNAL     /* a bug */
};

/* Set the error (replacing any previous) and return code, so library code
 * writes `return dr_error(DR_ERR_FORMAT, "...")`. */
int dr_error(int code, const char *fmt, ...) DR_PRINTF(2, 3);
/* Same, prefixed with "file:line: " (line <= 0 gives "file: "). */
int dr_error_at(int code, const char *file, long line, const char *fmt, ...) DR_PRINTF(4, 5);
/* Append "\n  hint: ..." to the current message. Returns the current code. */
int dr_error_hint(const char *fmt, ...) DR_PRINTF(1, 2);
/* Prepend "context: " to the current message (a caller adding what it was doing). */
int dr_error_context(const char *fmt, ...) DR_PRINTF(1, 2);
int dr_error_code(void);
const char *dr_error_message(void);
const char *dr_error_name(int code);
void dr_error_clear(void);

/* Errors raised on an OpenMP worker land in that thread's own slot, which the caller never
 * reads. A parallel region that can fail declares a dr_par_error before it (dr_par_error_init),
 * hands each failure to dr_par_error_keep on the thread that raised it, and after the region
 * dr_par_error_raise puts the kept one in the caller's slot. Of several failures it keeps the
 * one with the lowest index (e.g. the loop iteration), so the message does not depend on
 * scheduling. */
#define DR_ERROR_CAP 2048
typedef struct dr_par_error {
    int code; /* DR_OK while nothing failed */
    int64_t index;
    char msg[DR_ERROR_CAP];
} dr_par_error;
void dr_par_error_init(dr_par_error *e);
/* Keeps this thread's current error (code, as returned by the failing call) for `index`.
 * Returns code, so a worker writes `dr_par_error_keep(&pe, i, dr_error(...))`. */
int dr_par_error_keep(dr_par_error *e, int64_t index, int code);
/* Whether some worker failed already (lets the others skip their remaining work). */
int dr_par_error_failed(const dr_par_error *e);
/* On the calling thread, after the region: the kept error becomes the current one and its
 * code is returned; DR_OK (and the slot untouched) when nothing failed. */
int dr_par_error_raise(const dr_par_error *e);

/* ---------- memory ---------- */
/* Allocation with overflow-checked sizes; on failure set DR_ERR_NOMEM and return NULL. */
void *dr_malloc(size_t n);
void *dr_calloc(size_t count, size_t size);
void *dr_realloc(void *p, size_t count, size_t size);
/* 64-byte aligned allocation (free with free()). */
void *dr_aligned_alloc(size_t n);
/* The same for a large buffer that kernels stream through (repacked weights): from 2 MiB on,
 * 2 MiB aligned and backed by transparent huge pages where the system allows them (fewer
 * page faults to fill it, fewer TLB misses to read it). Freed with free(). */
void *dr_aligned_alloc_huge(size_t n);
/* Returns 1 and sets *out when a*b does not overflow. */
int dr_mul_ok(size_t a, size_t b, size_t *out);
char *dr_strdup(const char *s);
char *dr_str_concat(const char *a, const char *b); /* a new string a + b (paths: base + suffix); NULL: out of memory */

/* ---------- byte buffer ---------- */
/* A growable byte string, always NUL-terminated once anything was added ({0} is empty).
 * A failed allocation is sticky (err): later appends return DR_ERR_NOMEM and
 * dr_buf_take gives NULL, so a writer may append many pieces and check once. */
typedef struct dr_buf {
    char *p;
    size_t n, cap;
    int err;
} dr_buf;
int dr_buf_reserve(dr_buf *b, size_t extra); /* room for extra more bytes and the NUL */
int dr_buf_put(dr_buf *b, const void *s, size_t n);
int dr_buf_putc(dr_buf *b, char c);
int dr_buf_puts(dr_buf *b, const char *s);
int dr_buf_printf(dr_buf *b, const char *fmt, ...) DR_PRINTF(2, 3);
void dr_buf_clear(dr_buf *b); /* n = 0, memory kept */
/* The string (the caller frees it; "" when nothing was added), the buffer emptied;
 * NULL (error set) after a failed allocation. */
char *dr_buf_take(dr_buf *b);
void dr_buf_free(dr_buf *b);

/* ---------- hashing ---------- */
/* FNV-1a continuing from h (start from the _INIT value): files and models keep these
 * values (the RL model fingerprint, the TRM's text buckets), so they never change. The
 * 64-bit start is a digit short of FNV's published basis (14695981039346656037); it is the
 * one deeprec's fingerprints were made with, so it stays. */
#define DR_FNV64_INIT 1469598103934665603ull
#define DR_FNV32_INIT 2166136261u
uint64_t dr_fnv1a64(const void *p, size_t n, uint64_t h);
uint32_t dr_fnv1a32(const void *p, size_t n, uint32_t h);
/* MurmurHash3's 64-bit finaliser: every input bit reaches the low bits a table masks. */
uint64_t dr_mix64(uint64_t x);
/* The hash of hash tables: dr_mix64 of FNV-1a from DR_FNV64_INIT ^ seed (a seed per table
 * keeps crafted input from aiming at one chain). */
uint64_t dr_hash_bytes(const void *p, size_t n, uint64_t seed);

/* ---------- string index ---------- */
/* Byte string -> id (int64 >= 0) by open addressing. The index holds ids only; key(ctx, id)
 * gives the string of an id from wherever its owner keeps it, so ctx must stay put while the
 * index is used. Zeroed and dr_strindex_init'ed; ids need not be dense. */
typedef const char *(*dr_strindex_key)(const void *ctx, int64_t id, size_t *len);
typedef struct dr_strindex {
    int64_t *slot; /* id, or -1 when empty */
    size_t cap, n; /* cap a power of two, at least 2n + 2 */
    uint64_t seed;
    dr_strindex_key key;
    const void *ctx;
} dr_strindex;
void dr_strindex_init(dr_strindex *x, dr_strindex_key key, const void *ctx, uint64_t seed);
int dr_strindex_reserve(dr_strindex *x, size_t n); /* room for n ids without regrowing */
int64_t dr_strindex_find(const dr_strindex *x, const char *s, size_t n); /* the id, or -1 */
/* Adds id under its string: returns id, or the id already there under an equal string
 * (nothing changed), or -1 when out of memory (error set). */
int64_t dr_strindex_add(dr_strindex *x, int64_t id);
/* The id of id's string becomes id (an equal string must be there: a rule such as "the
 * most popular item of a title wins" replaces the earlier one). */
void dr_strindex_replace(dr_strindex *x, int64_t id);
void dr_strindex_free(dr_strindex *x);

/* Interned strings: each distinct byte string stored once (NUL-terminated, in one arena),
 * numbered 0.. in the order first seen. {0} is an empty pool. */
typedef struct dr_strpool {
    dr_buf bytes;
    size_t *off;
    uint32_t *len;
    int64_t n, cap;
    dr_strindex index;
} dr_strpool;
/* *id: s's number (a new one when first seen; *added, if given, says which). */
int dr_strpool_intern(dr_strpool *p, const char *s, size_t n, int64_t *id, int *added);
int64_t dr_strpool_find(const dr_strpool *p, const char *s, size_t n); /* -1: absent */
const char *dr_strpool_str(const dr_strpool *p, int64_t id, size_t *len);
void dr_strpool_free(dr_strpool *p);

/* ---------- logging ---------- */
/* Messages go to a sink the program installs; the default sink drops them,
 * so library code may log without printing. The CLI installs stderr. */
enum dr_log_level { DR_LOG_ERROR = 0, DR_LOG_WARN, DR_LOG_INFO, DR_LOG_DEBUG };
typedef void (*dr_log_sink)(int level, const char *msg, void *ctx);
void dr_log_set_sink(dr_log_sink sink, void *ctx, int max_level);
void dr_log_stderr_sink(int level, const char *msg, void *ctx);
void dr_log(int level, const char *fmt, ...) DR_PRINTF(2, 3);

/* ---------- progress ---------- */
/* A live bar with rate and ETA when `out` is a terminal; otherwise a plain
 * line every `plain_every_s` seconds (and at the end). out == NULL: silent. */
typedef struct dr_progress {
    FILE *out;
    int tty;
    char label[64];
    char unit[16];
    int64_t total, done;
    double t_start, t_last;
    double plain_every_s;
    char extra[128];
} dr_progress;
void dr_progress_start(dr_progress *p, FILE *out, const char *label, int64_t total, const char *unit);
void dr_progress_update(dr_progress *p, int64_t done);
void dr_progress_set_extra(dr_progress *p, const char *fmt, ...) DR_PRINTF(2, 3);
void dr_progress_finish(dr_progress *p);

/* ---------- files ---------- */
/* Atomic write: write to a temporary file beside the target, then
 * fsync + rename on commit; abort (or never committing) leaves no trace. */
typedef struct dr_afile {
    FILE *fp;
    char *path;
    char *tmp_path;
} dr_afile;
int dr_afile_open(dr_afile *af, const char *path);
int dr_afile_commit(dr_afile *af);
void dr_afile_abort(dr_afile *af);
/* Whole-buffer convenience. */
int dr_write_file_atomic(const char *path, const void *data, size_t n);
/* The file a write to `path` really replaces: path itself, or a symbolic link's resolved
 * target (written through, not replaced). An existing target that is not a regular
 * file (device, directory, FIFO) is an error. dr_afile_open uses it, and it also removes
 * PATH.tmp.PID files of processes that no longer run (logged as a warning). */
int dr_output_target(const char *path, char **resolved);
/* Claims an output before the work starts: refuses out == one of inputs[] (same file,
 * whatever the path), a non-regular target or a folder where the temporary file cannot
 * be created, and takes an advisory lock (flock on OUT.lock, left in place) that fails
 * at once when another process holds it. *lock_fd stays open for the lock's lifetime
 * (process exit releases it). */
int dr_output_claim(const char *out, const char *const *inputs, int n_inputs, int *lock_fd);

/* Read-only memory map of a whole file. An empty file maps to data=NULL,size=0. */
typedef struct dr_mmap {
    const uint8_t *data;
    size_t size;
    size_t map_size; /* bytes mapped at data: size, or the copy's size rounded to 2 MiB */
    int copied;      /* 1: data is a copy (dr_mmap_open_copy) and fd its file, kept open */
    int fd;
} dr_mmap;
int dr_mmap_open(dr_mmap *m, const char *path);
/* The same view, but a read-only copy of the file in anonymous memory with the transparent
 * huge page hint (files of 4 MiB and more; smaller ones are mapped as dr_mmap_open does). For
 * weights that are streamed again and again: the same resident size as the mapping once it
 * is all read, faster to stream. */
int dr_mmap_open_copy(dr_mmap *m, const char *path);
void dr_mmap_close(dr_mmap *m);
/* The bytes [p, p + n) of the map are no longer read: the whole pages inside them leave this
 * process's resident set (a later read brings them back from the file). Bytes outside the map
 * are ignored, so a heap pointer is never passed to the kernel. */
void dr_mmap_release(const dr_mmap *m, const void *p, size_t n);
/* Read a whole (small) file into a NUL-terminated heap buffer. */
int dr_read_file(const char *path, char **out, size_t *size);
int dr_file_exists(const char *path);
/* The part of path after its last '/' (a pointer into path). */
const char *dr_basename(const char *path);
int dr_ends_with(const char *s, const char *suffix);

/* ---------- rng ---------- */
/* xoshiro256** seeded through splitmix64. dr_rng_split derives an independent
 * stream from a parent state and a stream id without advancing the parent, so
 * parallel work stays reproducible regardless of scheduling. */
typedef struct dr_rng { uint64_t s[4]; } dr_rng;
void dr_rng_seed(dr_rng *r, uint64_t seed);
dr_rng dr_rng_split(const dr_rng *r, uint64_t stream);
uint64_t dr_rng_u64(dr_rng *r);
uint64_t dr_rng_below(dr_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
float dr_rng_float(dr_rng *r);                /* uniform in [0, 1) */
double dr_rng_double(dr_rng *r);              /* uniform in [0, 1) */
float dr_rng_normal(dr_rng *r);               /* standard normal */
void dr_rng_shuffle_i32(dr_rng *r, int32_t *a, size_t n);

/* ---------- threads ---------- */
/* DEEPREC_THREADS if set (>0), else the number of cores. dr_threads_init
 * applies it to OpenMP and OpenBLAS; call it once at program start. */
int dr_threads(void);
void dr_threads_init(void);
void dr_threads_set(int n);
/* The count OpenMP gives the calling thread's parallel regions. OpenMP keeps it per thread: a
 * thread started with pthread_create gets the default (all cores), not what dr_threads_set gave
 * the thread that started it, so a library thread doing model work applies its starter's count. */
int dr_threads_current(void);
/* How OpenMP's idle workers wait between parallel regions. libgomp reads the policy when it
 * loads, before main, so setting it means re-executing the program once (/proc/self/exe, same
 * argv) with the variable set.
 * - DR_WAIT_PASSIVE (OMP_WAIT_POLICY=passive): sleep at once. Work made of long regions
 *   (training, evaluation) loses nothing, and on a shared machine spinning workers steal the
 *   cores that do the work (docs/llm.md, "OpenMP wait policy").
 * - DR_WAIT_SPIN: spin DR_WAIT_SPIN_COUNT polls (GOMP_SPINCOUNT), then sleep. A decode step is
 *   about 170 regions a few microseconds apart: a sleeping worker is woken for each, which costs
 *   decode up to 30% on idle cores; the short spin catches the next region and still yields the
 *   core within a fraction of a millisecond when there is none.
 * A policy already in the environment (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is respected, so
 * every policy can be measured; then, and when the re-execution fails, it returns with nothing
 * changed but the variable. For a program's main, first thing. */
typedef enum { DR_WAIT_PASSIVE, DR_WAIT_SPIN } dr_wait_policy;
#define DR_WAIT_SPIN_COUNT "10000" /* about 0.1 ms of polling (libgomp: ~100,000 polls per ms) */
void dr_threads_wait_policy(char **argv, dr_wait_policy policy);
/* dr_threads_wait_policy(argv, DR_WAIT_PASSIVE) */
void dr_threads_prefer_passive(char **argv);

/* ---------- timers ---------- */
double dr_now(void); /* monotonic seconds */
double dr_cpu_now(void); /* CPU seconds of the whole process (all threads): beside wall time on shared machines */

/* ---------- text ---------- */
/* The code point of the UTF-8 sequence at s[0..n) (n >= 1) in *cp; returns its length
 * (1..4), or 0 when it is not valid UTF-8 there (a stray or bad continuation byte, cut
 * short, overlong, a surrogate, above U+10FFFF). A NUL byte is valid (length 1). */
int dr_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* cp (below U+110000) as UTF-8 into out; returns the length (1..4). */
int dr_utf8_encode(uint32_t cp, char out[4]);
/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
int dr_utf8_valid(const char *s, size_t n);
/* Copy src[0..n) into a new NUL-terminated UTF-8 string; invalid sequences and NUL
 * bytes -> U+FFFD. NULL when out of memory. */
char *dr_utf8_sanitize(const char *src, size_t n);

/* ---------- json ---------- */
/* JSON uses jansson (json_t). These helpers add atomic writes and JSON lines. */
struct json_t;
int dr_json_write_file(const char *path, struct json_t *j);
/* A JSON string of s[0..n) (n == (size_t)-1: strlen) with invalid UTF-8 replaced by
 * U+FFFD: never NULL for a non-NULL s, so a field is never silently dropped. NULL s
 * gives JSON null. */
struct json_t *dr_json_text(const char *s, size_t n);
/* j as one line of JSON (compact, keys in insertion order: what the server sends and the
 * trajectories store), taking j (json_decref'ed; NULL j is allowed). The caller frees the
 * text; NULL (error set) when j is NULL or cannot be serialised. */
char *dr_json_take_compact(struct json_t *j);
/* JSON-lines metrics: one compact object per line, flushed each write. */
typedef struct dr_jsonl { FILE *fp; } dr_jsonl;
int dr_jsonl_open(dr_jsonl *m, const char *path, int append);
int dr_jsonl_write(dr_jsonl *m, struct json_t *j); /* does not steal j */
void dr_jsonl_close(dr_jsonl *m);

#endif
