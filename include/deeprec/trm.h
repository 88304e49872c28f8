/* deeprec trm: the traditional recommendation model the agent calls as a tool.
 *
 * Two models share one code path:
 *   sasrec  SASRec (Kang & McAuley 2018): item + learned position embeddings,
 *           N causal self-attention blocks (pre-LN default, post-LN option),
 *           GELU (default) / ReLU FFN, final LayerNorm, logits = h . F^T with
 *           F the (shared) item table (a separate output table is optional).
 *   pref    the preference-aware retriever: F = E_id + Bag(text(item)) . W_t
 *           (hashed word unigrams + bigrams -> learned embedding bag, mean),
 *           user vector u = LN_u(h_seq + Bag(text(pref)) . W_p), scored against F.
 *
 * Ids follow the dataset: items 1..n_items, 0 = padding (a zero row, never a
 * candidate, never updated). Sequences are left-padded to max_len; the last
 * item of a window always sits at position max_len-1.
 *
 * Weights are stored row-major as [in, out] (y = x . W); in GGUF the tensor
 * shape is ne = {out, in}. Checkpoint keys: deeprec.kind = "trm",
 * deeprec.trm.* hyperparameters; tensors by name (see docs/trm.md).
 */
#ifndef DEEPREC_TRM_H
#define DEEPREC_TRM_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

struct dr_dataset;

enum trm_model_kind { TRM_SASREC = 0, TRM_PREF = 1 };
enum trm_loss { TRM_LOSS_CE = 0, TRM_LOSS_SAMPLED = 1, TRM_LOSS_BCE = 2 };
enum trm_act { TRM_ACT_GELU = 0, TRM_ACT_RELU = 1 };
enum trm_lr_schedule { TRM_LR_CONST = 0, TRM_LR_COSINE = 1 };
/* The tensors weight decay applies to: all of them (the default), the matrices only (no LayerNorm
 * gain or bias, no linear bias), or the linear layers' matrices only (the matrices less the
 * embedding tables: items, positions, output items, text). */
enum trm_wd_params { TRM_WD_ALL = 0, TRM_WD_MATRICES = 1, TRM_WD_LINEAR = 2 };
#define TRM_TEXT_EXPERTS_MAX 64
#define TRM_TEXT_EXPERTS_DEFAULT 4 /* `--model text` without `--experts` */
/* By name: "sasrec" | "pref", "ce" | "sampled" | "bce", "gelu" | "relu", "const" | "cosine";
 * -1 when unknown. */
int trm_model_kind_from_name(const char *s);
int trm_loss_from_name(const char *s);
int trm_act_from_name(const char *s);
int trm_lr_schedule_from_name(const char *s);
int trm_wd_params_from_name(const char *s); /* "all" | "matrices" | "linear"; -1 when unknown */
int trm_eval_split_from_name(const char *s); /* "valid" 0, "test" 1, "train" 2 (trm_evaluate's split), else -1 */

typedef struct trm_config {
    int model;        /* enum trm_model_kind */
    int n_items;      /* real items; tables have n_items + 1 rows */
    int dim;          /* 64 */
    int layers;       /* 2 */
    int heads;        /* 2 */
    int max_len;      /* 50 */
    int ffn_dim;      /* 4 * dim */
    int post_ln;      /* 0 = pre-LN */
    int act;          /* enum trm_act */
    int sep_out;      /* separate output item table */
    int scale_emb;    /* multiply item embeddings by sqrt(dim) on input (SASRec paper); default 0 */
    int emb_ln;       /* LayerNorm over item + position embedding before the embedding dropout
                       * (RecBole, FMLP-Rec); default 0 */
    /* LiGR blocks (eSASRec, after LinkedIn's LiGR): each residual branch is scaled by a sigmoid
     * gate of its own normalised input, x + sigmoid(W_g LN(x) + b_g) * branch(LN(x)); pre-LN
     * only; default 0 */
    int gate;
    float dropout;    /* 0.5 */
    float ln_eps;     /* 1e-5 */
    int text_buckets; /* pref: hashed text feature buckets (default 1 << 16) */
    /* pref: how an item's text bag becomes its text vector. 0 (the default): one linear
     * projection W_t. K >= 2 (`--model text`): a mixture of K linear experts whose weights are a
     * softmax over a linear gate of the same bag, so items of different kinds of text get
     * different projections (the paper's mixture-of-experts adaptor). */
    int text_experts;
    /* K >= 2: an ensemble of K models of this configuration, trained one after another with
     * seeds seed, seed + 1, ... (each with its own early stopping). An item's score is the sum
     * of the members' scores, so the ranking is that of the sum of their log-softmaxes (a
     * product of the members' distributions, the usual ensemble of softmax models); the user
     * vector and the item table are the members' concatenated (trm_score_dim). 0 or 1: one
     * model (the default). */
    int ensemble;
} trm_config;

void trm_config_default(trm_config *c); /* the defaults listed above (n_items = 0) */

typedef struct trm_train_opts {
    int loss;            /* enum trm_loss */
    int n_neg;           /* sampled: negatives per position (100) */
    int logq;            /* sampled: subtract log(K q) from the negatives' logits (q = 1 / n_items,
                          * the uniform draw), so the loss estimates the full softmax's; 0 = off */
    /* sampled: mixed negatives, the share in [0, 1] of the draws taken from the batch's own
     * targets (in-batch negatives, so drawn about as often as items are consumed), the rest
     * uniform; with logq, q is the mixture's probability of the item in that batch,
     * (1 - mix) / n_items + mix * count / targets. 0 (the default): uniform only. One process
     * only (a shard sees only its part of the batch). */
    float mixed_neg;
    float lr;            /* 1e-3 */
    float beta1, beta2;  /* 0.9, 0.999 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* AdamW decoupled (0 = Adam) */
    int wd_params;       /* enum trm_wd_params: the tensors weight_decay applies to (TRM_WD_ALL) */
    /* ce: leave each position's history (the sequence's items up to and including its input)
     * out of that position's softmax, as the evaluation masks a user's history (0 = off) */
    int mask_history;
    float grad_clip;     /* global norm clip; 0 = off (default 0) */
    /* ce: label smoothing eps in [0, 1): the target is (1 - eps) onehot + eps uniform over the
     * items (0 = off, the default) */
    float label_smoothing;
    /* Learning rate per step (trm_lr_at): linear warmup from lr / warmup to lr over the first
     * `warmup` steps (0 = none), then constant (TRM_LR_CONST, the default) or a cosine from lr
     * down to 0 at the last step of `epochs` epochs (TRM_LR_COSINE). Defaults: const, 0. */
    int lr_schedule;
    int warmup;
    int batch;           /* sequences per step (256) */
    int epochs;          /* 200 */
    int patience;        /* 10; 0 = no early stopping */
    int eval_every;      /* 1 */
    /* Users of the validation that early stopping watches (the final test is always over all):
     * TRM_VALID_USERS_AUTO (default): all when at most TRM_VALID_AUTO_MAX users have a valid
     * target, else a fixed sample of TRM_VALID_AUTO_SAMPLE; 0: all; N > 0: a fixed sample of N
     * (all when no more than N). The sample is a seeded draw that depends on the dataset only:
     * the same users every epoch, across resumes and for every training seed. */
    int valid_users;
    uint64_t seed;       /* 1 */
    float pref_empty_p;  /* pref: probability of an empty pseudo-preference (0.3) */
    int resume;          /* continue from OUT.resume.gguf when it exists */
    const char *out;      /* best checkpoint path (required) */
    const char *metrics;  /* JSON-lines path; NULL = OUT.metrics.jsonl; "" = none */
    const char *resume_path; /* NULL = OUT.resume.gguf */
    FILE *progress;       /* progress bars (NULL = silent) */
    int max_steps;        /* testing: stop each epoch after this many steps (0 = all) */
    /* Decay of an exponential moving average of the weights, updated after every step
     * (avg += (1 - ema) (w - avg), starting from the initial weights). When set, validation,
     * the best checkpoint and the model trm_train ends with are the average, and training
     * goes on from the raw weights (0 = off, the default; in [0, 1)). */
    float ema;
    /* Refit (`--refit`): after early stopping, train again from the same initial weights on
     * every item but each user's test item (the validation item becomes a target too) for the
     * early-stopped run's best epoch count, and end with that model. The early-stopped model is
     * kept as OUT.early.gguf; OUT is the refit model, which has trained on the validation
     * targets, so its validation figures are in-sample (the pipeline does not refit). 0 = off. */
    int refit;
    /* internal (the refit's second run): train on the validation items too, never validate,
     * end with the last epoch's weights */
    int fit_valid;
    int quiet_eval;       /* unused (reserved) */
    /* Called after every epoch once its resume state is saved (may be NULL): a hook for
     * callers that watch or interrupt training (the pipeline's kill test). */
    void (*on_epoch)(void *ctx, int epoch);
    void *on_epoch_ctx;
} trm_train_opts;

void trm_train_opts_default(trm_train_opts *o);
/* The learning rate of step `step` (1 = the first) of `total` (the steps of o->epochs epochs):
 * exactly o->lr for the constant schedule without warmup. */
float trm_lr_at(const trm_train_opts *o, int64_t step, int64_t total);
#define TRM_VALID_USERS_AUTO (-1)
#define TRM_VALID_AUTO_MAX 25000   /* Beauty (22,363), Toys (19,412), MovieLens sets: all users */
#define TRM_VALID_AUTO_SAMPLE 10000 /* Sports (35,598): a quarter of the validation time */

typedef struct trm_model trm_model;

/* A randomly initialised model for dataset d (the pref model takes the item
 * text of d: titles and categories). */
int trm_model_new(trm_model **out, const trm_config *cfg, const struct dr_dataset *d, uint64_t seed);
/* Starts m from a trained model: every tensor of src with the same name and shape is copied
 * into m. A pref model started from a SASRec gets its item-text projection zeroed, so its items
 * and, with an empty preference, its scores start where the SASRec's are (up to the user
 * LayerNorm applied to an already normalised vector); the text and preference channels then
 * learn on top. Fails when no tensor matches or the dimensions differ. */
int trm_model_init_from(trm_model *m, const trm_model *src);
/* (m an ensemble: every member from src; src an ensemble: DR_ERR_UNSUPPORTED.) */
/* trm_model_init_from with the source loaded from path and checked against dataset d. */
int trm_model_init_from_file(trm_model *m, const struct dr_dataset *d, const char *path);
void trm_model_free(trm_model *m);
const trm_config *trm_model_config(const trm_model *m);
/* The length of a user vector and of an item table row: dim, or K dim for an ensemble of K. */
int trm_score_dim(const trm_model *m);
/* DR_OK when m was made for dataset d (same item count), else DR_ERR_ARG naming both
 * files (paths may be NULL). Every command that takes a TRM and a dataset calls it. */
int trm_check_dataset(const trm_model *m, const struct dr_dataset *d, const char *model_path, const char *data_path);
int trm_save(const trm_model *m, const char *path);     /* atomic GGUF */
int trm_load(trm_model **out, const char *path);
size_t trm_num_params(const trm_model *m);

/* Train on d's train sequences, early-stop on valid NDCG@10; the best model is
 * written to opts->out after every improvement. *m ends holding the best weights. */
typedef struct trm_train_result {
    int epochs_run, best_epoch;
    int refit_epochs;          /* --refit: epochs of the refit run (the best epoch); else 0 */
    double best_valid_ndcg10;  /* an ensemble of refit members: -1 (its validation would be in-sample) */
    double seconds;
} trm_train_result;
int trm_train(trm_model *m, const struct dr_dataset *d, const trm_train_opts *o, trm_train_result *res);

/* Full-ranking evaluation (deeprec/metrics.h). split: 0 = valid, 1 = test, 2 = each user's last
 * training item given the training items before it (a target the TRM was trained on).
 * pref_mode: 0 = empty preference, 1 = oracle (the target's category words). */
struct dr_metrics_mean;
int trm_evaluate(trm_model *m, const struct dr_dataset *d, int split, int mask_history, int pref_mode,
                 struct dr_metrics_mean *out);

/* ---- retrieval (in-process API for the agent) ----
 * A session holds the per-call workspace; use one per thread. */
typedef struct trm_session trm_session;
int trm_session_new(trm_session **out, trm_model *m);
void trm_session_free(trm_session *s);
/* User vector [trm_score_dim] from history (oldest first; the last max_len are used;
 * ids outside 1..n_items are skipped) and preference text (NULL or "" = none;
 * ignored by sasrec). */
int trm_user_vector(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, float *u);
/* Exact top-k over the whole catalog: one sgemv + a heap (an ensemble: one per member, summed). mask_history: skip
 * the history items. ids/scores need room for k; *n_out = min(k, candidates).
 * Ordered by score descending (ties: smaller id first). */
int trm_retrieve(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, int k, int mask_history,
                 int32_t *ids, float *scores, int *n_out);
/* The same top-k for many users at once: the users sorted by history length and cut into
 * groups of up to 64, one group per OpenMP thread at a time (a batched forward, then the scores
 * one block of 1,024 items at a time, fed to the users' top-k). A trm_batch holds one workspace
 * per thread (the OpenMP threads at trm_batch_new; later calls use at most that many), allocated
 * once: reuse it across calls, one trm_batch per calling thread as with sessions. hists[i],
 * n_hists[i], prefs[i] (prefs may be NULL); ids/scores are [n_users, k] row-major, n_out[n_users].
 * Scores agree with trm_retrieve's to rounding (another summation order), so the order of
 * near-ties may differ. An ensemble: each member's forward in turn, then one product with the
 * members' tables side by side, as trm_retrieve. */
typedef struct trm_batch trm_batch;
int trm_batch_new(trm_batch **out, trm_model *m, int max_users);
void trm_batch_free(trm_batch *b);
int trm_retrieve_batch(trm_batch *b, int n_users, const int32_t *const *hists, const int64_t *n_hists,
                       const char *const *prefs, int k, int mask_history, int32_t *ids, float *scores, int *n_out);
/* The item table used for scoring, [n_items + 1, trm_score_dim] row-major (row 0 = 0). */
const float *trm_item_embeddings(trm_model *m);
/* Text embedding of a string (mean embedding bag of hashed unigrams+bigrams,
 * projected by W_p) into out[trm_score_dim] (an ensemble: the members' concatenated); pref
 * model only (sasrec: DR_ERR_UNSUPPORTED).
 * An empty text gives zeros. */
int trm_text_embedding(trm_model *m, const char *text, float *out);

/* ---- text features ----
 * Lowercase ASCII, split on non-alphanumerics (bytes >= 0x80 count as letters),
 * unigrams and adjacent-word bigrams, FNV-1a 32-bit hash ("u:" word /
 * "b:" w1 " " w2) modulo n_buckets. Returns the number of ids written (at most
 * max_ids; extra features are dropped). */
int trm_text_hash(const char *text, uint32_t n_buckets, uint32_t *ids, int max_ids);
uint32_t trm_fnv1a(const void *data, size_t n, uint32_t h);

#endif
