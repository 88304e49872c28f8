/* trm internals: parameter layout, activations, forward/backward. */
#ifndef DEEPREC_TRM_INTERNAL_H
#define DEEPREC_TRM_INTERNAL_H

#include "deeprec/trm.h"
#include "deeprec/nn.h"
#include "deeprec/data.h"
#include "deeprec/gguf.h"

#define TRM_MAX_LAYERS 16
#define TRM_MAX_ENSEMBLE 64
#define TRM_MAX_TENSORS (16 + 20 * TRM_MAX_LAYERS)

typedef struct trm_tensor {
    char name[48];
    size_t off, n;
    int nd;
    uint64_t ne[2]; /* GGUF order: ne[0] = row length */
    int init;       /* 0 normal(0.02), 1 ones, 2 zeros, 3 embedding (normal, row 0 zero),
                       4 normal(0.1) text bag, 5 normal(1/sqrt(in)) projection,
                       6 text experts: one shared normal(1/sqrt(in)) plus half of one per expert */
} trm_tensor;

typedef struct trm_layer_p {
    float *ln1_w, *ln1_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln2_w, *ln2_b, *w1, *b1, *w2, *b2;
    float *wga, *bga, *wgf, *bgf; /* gate: the attention branch's and the FFN branch's */
} trm_layer_p;

/* Pointers into one flat array (parameters, or gradients with the same layout). */
typedef struct trm_params {
    float *item_emb, *pos_emb;
    float *lne_w, *lne_b;           /* emb_ln: the embedding LayerNorm */
    trm_layer_p l[TRM_MAX_LAYERS];
    float *lnf_w, *lnf_b;
    float *out_emb;                 /* sep_out */
    float *text_emb, *item_txt_w;   /* pref: [buckets, d], [d, d] (W_t, [out,in]) */
    float *txt_exp_w;               /* text experts: [K d, d], expert k's W_t is rows k d .. k d + d - 1 */
    float *txt_gate_w, *txt_gate_b; /* text experts: the gate, [K, d] and [K] */
    float *pref_w, *lnu_w, *lnu_b;  /* pref: W_p [d,d], user LN */
} trm_params;

struct trm_model {
    trm_config cfg;
    int V;                     /* n_items + 1 */
    size_t n_params;
    float *mem;                /* parameters */
    trm_params p;
    trm_tensor t[TRM_MAX_TENSORS];
    int n_t;
    /* pref: item text features (CSR over V items) */
    int32_t *item_tok_off;     /* V + 1 */
    int32_t *item_tok;         /* bucket ids */
    /* cached scoring table F [V, d] of the paper's notation (pref: E + bag W_t^T; sasrec: the
     * output table) */
    float *score_table;
    float *input_table;        /* the items' input embeddings: pref: == score_table; sasrec: item_emb */
    float *item_bag;           /* pref: [V, d] mean text bag per item */
    /* text experts (cfg.text_experts = K >= 2), kept from the last table refresh for the
     * backward: every expert's output [V, K d], the gate's softmax [V, K], and the backward's
     * scratch for the experts' and the gate's output gradients ([V, K d], [V, K]) */
    float *item_exp, *item_gate, *exp_grad, *gate_grad;
    int tables_fresh;          /* score_table reflects the current parameters */
    /* an ensemble (cfg.ensemble = K >= 2): the members own everything above (mem is NULL here);
     * ens_table is their score tables side by side, [V, K dim] */
    int n_members;
    trm_model **members;
    float *ens_table;
};

/* Activations for a batch of B sequences of length L (capacity Bcap x max_len). */
typedef struct trm_layer_a {
    float *ln1o, *ln1m, *ln1r, *q, *k, *v, *att, *y, *s1, *ln2o, *ln2m, *ln2r, *f, *gd, *s2;
    float *ga, *ao, *gf, *fo; /* gate: each branch's sigmoid gate and its output before the gate */
    uint8_t *attn_out_mask, *ffn_act_mask, *ffn_out_mask; /* dropout masks */
} trm_layer_a;

typedef struct trm_acts {
    int Bcap, Lcap, Ncap;
    float *fmem;
    uint8_t *bmem;
    int32_t *imem;
    size_t guard;               /* sentinel elements after each buffer (tests), or 0 */
    /* current batch */
    int B, L, N;
    int train;
    int infer;                  /* no backward follows: dropout sites (off) keep no copies or masks;
                                   set by trm__acts_alloc_infer, whose workspace lacks them */
    int last_only;              /* inference: the last layer computes only each sequence's last row;
                                   the output then has B rows (row b = sequence b) */
    dr_rng rng;                 /* step stream (dropout) */
    int64_t seq0;               /* index of sequence 0 in the whole batch (a data-parallel shard
                                   holds sequences [seq0, seq0 + B)): dropout masks are drawn per
                                   sequence from stream seq0 + b, so a shard draws the whole
                                   batch's masks for its sequences */
    int32_t *ids;               /* [N] item ids (0 = pad) */
    int32_t *ids_bwd;           /* [N] ids with 0 -> -1 (no gradient to padding) */
    int32_t *pos;               /* [N] position ids */
    uint8_t *key_mask;          /* [B, L] */
    float *x0, *res0;
    float *xe, *lnem, *lner;    /* emb_ln: item + position before the LayerNorm, its mean and rstd */
    uint8_t *emb_mask;          /* the embedding dropout's */
    trm_layer_a l[TRM_MAX_LAYERS];
    float *lnfo, *lnfm, *lnfr;
    /* pref head */
    float *pbag, *z, *u, *lnum, *lnur;
    int32_t *ptok_off;          /* [N + 1] pseudo-preference bucket ids per row */
    int32_t *ptok;              /* capacity ptok_cap */
    int ptok_cap;
    /* Backward scratch. d0, d1, d2 are three [N, d] buffers that the backward rotates through
     * (each use names the gradient it holds: dh, dc, do, dy...), and the forward borrows for its
     * projections' outputs before the residual sums; dq, dk, dv, df1, df2, datt are named by the
     * gradient they hold. */
    float *d0, *d1, *d2, *dq, *dk, *dv, *df1, *df2, *datt;
    float *dg;                  /* gate: a gate's pre-activation gradient */
    float *dU;                  /* [N, d] gradient of the user vectors */
} trm_acts;

int trm__layout(trm_model *m);                 /* fills tensors + pointers for m->mem */
void trm__bind(const trm_model *m, float *base, trm_params *p);
int trm__acts_alloc(trm_acts *a, const trm_model *m, int Bcap);
/* For inference only (infer set: no backward, no dropout): without the buffers only training reads. */
int trm__acts_alloc_infer(trm_acts *a, const trm_model *m, int Bcap);
/* Tests: `guard` sentinel elements after every buffer; trm__acts_check then names the first
 * buffer written past its end (DR_ERR_INTERNAL), or returns DR_OK. */
int trm__acts_alloc_guarded(trm_acts *a, const trm_model *m, int Bcap, size_t guard, int infer);
int trm__acts_check(const trm_acts *a, const trm_model *m);
void trm__acts_free(trm_acts *a);
/* Scoring tables from the parameters (call after every update). */
void trm__refresh_tables(trm_model *m);
/* The tables refreshed when stale; DR_ERR_NOMEM when an ensemble's could not be allocated. */
int trm__tables_ready(trm_model *m);
/* Index of the first non-finite weight, or (size_t)-1 when all are finite. */
size_t trm__first_nonfinite(const trm_model *m);
/* Forward: a->ids/pos/key_mask/ptok filled by the caller for (B, L). Returns the user
 * vectors [N, d] (pointer into a). */
float *trm__forward(trm_model *m, trm_acts *a);
/* Backward from a->dU into grads (accumulated); dF [V,d] is the gradient of the
 * scoring table from the loss (pref: also used for the input table), may be NULL. */
void trm__backward(trm_model *m, trm_acts *a, trm_params *g, float *dF, float *dF_in_scratch);
/* Fill a batch: seqs[b] (len[b] items, oldest first, only the last L used). */
/* The last max_len ids of hist that are real items (1..n_items), oldest first, into out
 * [max_len]; returns their count. The history a retrieval sees. */
int64_t trm__valid_tail(const trm_model *m, const int32_t *hist, int64_t n_hist, int32_t *out);
void trm__fill_batch(trm_model *m, trm_acts *a, int B, int L, int32_t *const *seqs, const int64_t *lens);
int trm__max_feats(void);

/* eval.c: trm_evaluate over the users listed (NULL: every user); users without a target in the
 * split are skipped, as in trm_evaluate. ws: NULL, or a workspace from trm__acts_alloc_infer for
 * TRM_EVAL_USERS users, kept by a caller that evaluates again and again (training validates
 * every epoch: allocating and first touching the workspace each time cost as much as the
 * forwards). The users are scored in batches of TRM_EVAL_USERS, sorted by length. */
#define TRM_EVAL_USERS 256
struct dr_metrics_mean;
int trm__evaluate_users(trm_model *m, const dr_dataset *d, int split, int mask_history, int pref_mode,
                        const int32_t *users, int n_users, trm_acts *ws, struct dr_metrics_mean *out);
/* valid.c: the users early stopping validates on (trm_train_opts.valid_users): *users NULL for
 * all of them, else a heap array of *n users (a fixed draw: the same on every call). */
int trm__valid_users(const dr_dataset *d, int want, int32_t **users, int *n);

/* text */
int trm__item_text_build(trm_model *m, const struct dr_dataset *d);
int trm__pref_tokens(const trm_model *m, const char *text, int32_t *ids, int max_ids);
/* The preference of sequence b (its last row) from free text; rows are filled in order.
 * Returns the number of feature ids it kept. */
int trm__set_last_pref(trm_model *m, trm_acts *a, int b, const char *text);

/* pref.c: preferences made from an item's text (categories, title words) */
int trm__pseudo_pref(const dr_dataset *d, int32_t item, dr_rng *r, float p_empty, char *buf, size_t cap);
int trm__oracle_pref(const dr_dataset *d, int32_t item, char *buf, size_t cap);

/* io.c: checkpoints */
/* model.c; NULL with *rc set on failure. file: NULL, or the checkpoint to be read, whose
 * tensors are checked against the layout before anything is allocated. */
trm_model *trm__model_blank(const trm_config *cfg, const gguf_file *file, const char *prefix, int *rc);
/* An ensemble of cfg->ensemble members, all NULL (the caller makes them). */
trm_model *trm__ensemble_blank(const trm_config *cfg, int *rc);
/* The model itself, or member k of an ensemble (k < trm__n_parts): the loops that score with
 * every member. */
static inline int trm__n_parts(const trm_model *m) { return m->n_members ? m->n_members : 1; }
static inline trm_model *trm__part(const trm_model *m, int k) { return m->n_members ? m->members[k] : (trm_model *)m; }
/* The table items are scored with, [V, trm_score_dim]: an ensemble's is its members' side by side. */
static inline const float *trm__score_table(const trm_model *m) { return m->n_members ? m->ens_table : m->score_table; }
gguf_writer *trm__writer(const trm_model *m);
int trm__read_tensors(trm_model *m, const gguf_file *f, const char *prefix, float *base);
int trm__load_file(trm_model **out, const gguf_file *f);

/* Whether weight decay applies to tensor t under o->wd_params (enum trm_wd_params). */
int trm__decays(const trm_tensor *t, int wd_params);

/* For tests: the training loss and gradient of a fixed batch, the flat parameters, the
 * scoring tables after editing them, the user vector through the full forward (every row of
 * the last block), and the top-k selection on its own. */
int trm_debug_loss_grad(trm_model *m, const dr_dataset *d, const trm_train_opts *o, const int32_t *users,
                        int B, uint64_t seed, double *loss, float *grad);
/* The same with train = 1: dropout active, its masks drawn from seed (the same at every call). */
int trm_debug_loss_grad_train(trm_model *m, const dr_dataset *d, const trm_train_opts *o, const int32_t *users,
                              int B, uint64_t seed, double *loss, float *grad);
float *trm_debug_params(trm_model *m, size_t *n);
void trm_debug_refresh(trm_model *m);
int trm_debug_user_vector_full(trm_session *s, const int32_t *hist, int64_t n_hist, const char *pref, float *u);
int trm_topk(const float *scores, int32_t n_items, const uint8_t *masked, int k, int32_t *ids, float *out_scores);
/* topk.c: the same selection fed block by block, in increasing id order (scores of items
 * first_id .. first_id + count - 1; masked: NULL or indexed by item id). */
typedef struct trm_topk_acc {
    int k, n;
    int32_t *ids;
    float *scores;
} trm_topk_acc;
void trm__topk_init(trm_topk_acc *t, int k, int32_t *ids, float *scores);
void trm__topk_push(trm_topk_acc *t, const float *s, int32_t first_id, int count, const uint8_t *masked);
int trm__topk_finish(trm_topk_acc *t); /* sorts ids/scores best first; returns how many */
/* For benches: `steps` timed training steps of epoch 0, or the whole epoch when steps <= 0
 * (seconds, flops, sequences and positions done). */
int trm__bench_train(trm_model *m, const dr_dataset *d, const trm_train_opts *o, int steps, double *seconds,
                     double *flops, int64_t *seqs, int64_t *positions);

#endif
