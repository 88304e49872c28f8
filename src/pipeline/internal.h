/* The pipeline's shared state and the step protocol (keys, reuse, resume). */
#ifndef DEEPREC_PIPELINE_INTERNAL_H
#define DEEPREC_PIPELINE_INTERNAL_H

#include "deeprec/agent.h"
#include "deeprec/data.h"
#include "deeprec/pipeline.h"

#define PL_PATH 1024
#define PL_KEY 8192
#define PL_WS_FILE "traj_ws.jsonl" /* the outcome-aware warm start's trajectories */
#define PL_ENV_TRM "env_trm.gguf"  /* the held-out TRM the agent trains against (budget env_holdout) */
#define PL_PREF_CANDIDATES "trm.candidates.json" /* the two pref candidates' validation and which became trm.gguf */

typedef struct pl_run {
    const pipeline_opts *o;
    const pipeline_budget *b;
    dr_dataset d;
    agent_catalog *cat;
    int stage;                   /* the running stage */
    pipeline_stage_info *info;   /* its record */
} pl_run;

/* A settings key: text lines "name value..." then one line per input file. */
typedef struct pl_key {
    char s[PL_KEY];
    size_t n;
} pl_key;
void pl_key_init(pl_key *k, const char *step);
void pl_key_add(pl_key *k, const char *fmt, ...) DR_PRINTF(2, 3);
/* The input's identity: its name, size and modification time (ns). */
int pl_key_input(pl_key *k, const char *path);

/* "dir/name" */
void pl_path(const pl_run *p, const char *name, char out[PL_PATH]);

/* Decide what to do with one output: *reuse = 1 when it was finished with this key; else
 * the caller makes it, continuing from its checkpoint when *resume (an interrupted run of the
 * same key and opts->resume). Refuses outputs of other settings unless opts->force. */
int pl_step_begin(pl_run *p, const char *out, const pl_key *k, int *reuse, int *resume);
/* The output is complete: record its key (the stage's kill point comes first). */
int pl_step_commit(pl_run *p, const char *out);
/* Testing: SIGKILL when opts->kill_at is the running stage. */
void pl_kill_point(pl_run *p);

int pl_catalog(pl_run *p); /* builds p->cat once */

/* report.c: reads the eval outputs, writes report.json and report.md. */
int pl_report(pl_run *p, const pipeline_stage_info *stages, struct json_t **report, char **md);

/* The rows of the table (report.c owns the list; stages.c evaluates them). */
typedef struct pl_row {
    const char *id, *label, *mode;
    const char *trm;   /* file name of the TRM */
    const char *llm;   /* file name of the model, NULL for trm rows */
    int unconstrained; /* 1: answers written freely (title-constrained decoding off: the ablation row) */
} pl_row;
int pl_rows(const pl_run *p, pl_row *rows, int max); /* rows of this budget (teacher when the mode exists) */

/* Resamples of the 95% bootstrap intervals (CI and paired differences; seed 1). */
#define PL_BOOTSTRAP 1000
struct eval_result;
/* {"user_ids": [...], "ranks_exact": [...], "ranks_substring": [...]}: the evaluated users in
 * selection order and each episode's 0-based rank of the target (-1 = miss), episode e of
 * user e / samples; the eval JSON's "per_user" (new reference) */
struct json_t *pl_ranks_json(const struct eval_result *r);
/* An eval_result with users, samples and ranks read back from an eval JSON's "per_user"
 * (eval_result_free); enough for eval_result_bootstrap / eval_paired_diff. */
int pl_ranks_load(struct json_t *eval, struct eval_result *r);

#endif
