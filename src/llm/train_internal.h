/* Private state of the LLM trainer (src/llm/train_*.c). */
#ifndef DEEPREC_LLM_TRAIN_INTERNAL_H
#define DEEPREC_LLM_TRAIN_INTERNAL_H

#include "deeprec/llm_train.h"

/* One projection y = x W^T (+ b) (+ s (x A^T) B^T). */
typedef struct tlin {
    int in, out;
    llm_mat base;          /* weights as used by the forward (F32 view over params in full FT) */
    float *w, *gw;         /* full FT: fp32 master and gradient [out x in]; NULL in LoRA */
    const float *b;        /* bias [out] or NULL */
    float *gb;             /* bias gradient (full FT) or NULL */
    float *A, *B, *gA, *gB;/* LoRA factors [r x in], [out x r] and gradients, or NULL */
} tlin;

enum { TL_Q, TL_K, TL_V, TL_O, TL_GATE, TL_UP, TL_DOWN, TL_N };

typedef struct tlayer {
    const float *attn_norm, *ffn_norm;
    float *g_attn_norm, *g_ffn_norm; /* NULL in LoRA */
    tlin lin[TL_N];
} tlayer;

/* Saved activations of one layer (rows N = B*T). */
typedef struct tacts {
    float *rstd1, *h1, *q, *k, *v, *att, *ao, *xmid, *rstd2, *h2, *gate, *up;
    float *lu[TL_N]; /* LoRA x A^T [N x r] */
} tacts;

typedef struct tseg { size_t off, len; int decay; } tseg;

struct llm_train {
    llm_config c;
    llm_train_config tc;
    const llm_model *src;
    int lora;              /* rank (0 = full) */
    float lora_scale;
    /* parameters (one allocation each) */
    float *params, *grads, *m, *v;
    size_t n_params;
    tseg *segs;
    int n_segs, cap_segs;
    /* model view */
    llm_mat tok_embd, output;        /* F32 views (full) or the model's (LoRA) */
    float *w_embd, *g_embd;          /* full FT */
    float *w_out, *g_out;            /* full FT, separate output (tied: = w_embd) */
    const float *output_norm;
    float *g_output_norm;
    tlayer *layers;
    /* activations */
    int Nmax;
    float *xs;                       /* (n_layers + 1) x [Nmax x dim] */
    tacts *acts;                     /* n_layers sets, or 1 with recompute */
    int n_acts;
    float *rstdf, *hf;               /* final norm */
    float *logits, *dlogits;         /* [lrows x V] (logits may hold all N rows: keep_logits) */
    int lrows, keep_logits;
    float *rowlogp;                  /* [Nmax] logp per source row */
    int32_t *ids, *tgt;              /* [Nmax] token ids (pads -1), targets per source row (-1 none) */
    int32_t *lens;                   /* [max_batch] */
    float *act;                      /* [Nmax x ffn] swiglu output (forward scratch / backward) */
    float *tmp;                      /* [Nmax x dim] */
    /* backward scratch */
    float *dX, *dh, *dq, *dk, *dv, *dao, *datt, *dgate, *dup, *dact, *du, *tile, *drow;
    size_t tile_floats;
    void *block;                     /* the activation allocation */
    size_t act_bytes;
    /* last forward */
    int fB, fT, have_fwd;
    /* restricted targets of the last forward (per source row; rn 0 = whole vocabulary) */
    int32_t *roff, *rn, *rids;
    size_t rids_cap;
    int restricted;
    /* optimizer / bookkeeping */
    int64_t step;
    dr_rng rng;
    int64_t run_state[LLM_TRAIN_RUN_STATE_N];
};

/* train_model.c */
void llm_train_lin_forward(llm_train *t, const tlin *L, const float *x, int N, float *y, float *u);
void llm_train_lin_backward(llm_train *t, const tlin *L, const float *dy, const float *x, const float *u, int N,
                            float *dx);
/* dx[N x cols] += dy[N x rows] W for any llm_mat type (tiles converted to fp32). */
void llm_train_mat_backward_x(const llm_mat *w, const float *dy, int N, float *dx, float *tile, size_t tile_floats);

#endif
