/* Sampling: greedy, temperature, top-k, top-p (nucleus), min-p. */
#include "deeprec/llm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand { float p; int32_t id; } cand;

void llm_sampler_default(llm_sampler_params *p) {
    p->temperature = 0.7f;
    p->top_k = 0;
    p->top_p = 0.95f;
    p->min_p = 0.0f;
}

size_t llm_sample_scratch_bytes(int vocab) { return (size_t)(vocab > 0 ? vocab : 1) * (sizeof(cand) + sizeof(float)); }

int32_t llm_argmax(const float *logits, int vocab) {
    int32_t best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* k-th largest value (1-based k) of v[0..n-1]; v is reordered. */
static float kth_largest(float *v, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float piv = v[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] > piv) i++;
            while (v[j] < piv) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return v[want];
    }
    return v[want];
}

int32_t llm_sample(const float *logits, int vocab, const llm_sampler_params *p, dr_rng *rng, void *scratch) {
    if (vocab <= 0) return -1;
    if (!(p->temperature > 0)) return llm_argmax(logits, vocab);
    void *own = NULL;
    if (!scratch) scratch = own = malloc(llm_sample_scratch_bytes(vocab));
    if (!scratch) return llm_argmax(logits, vocab);
    cand *c = scratch;
    float *tmp = (float *)(c + vocab);
    /* candidate threshold from top-k */
    float lo = -INFINITY;
    int k = p->top_k > 0 && p->top_k < vocab ? p->top_k : vocab;
    if (k < vocab) {
        memcpy(tmp, logits, (size_t)vocab * sizeof(float));
        lo = kth_largest(tmp, vocab, k);
    }
    float mx = logits[llm_argmax(logits, vocab)];
    const float invt = 1.0f / p->temperature;
    /* probabilities (unnormalised) of the candidates */
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        float e = logits[i] >= lo ? expf((logits[i] - mx) * invt) : 0.0f;
        tmp[i] = e;
        total += e;
    }
    /* min-p: drop tokens below min_p * p_max (p_max's weight is exp(0) = 1) */
    float thr = p->min_p > 0 ? p->min_p : 0.0f;
    int need_sort = k < vocab || (p->top_p > 0 && p->top_p < 1);
    int n = 0;
    double kept = 0;
    if (!need_sort) {
        for (int i = 0; i < vocab; i++)
            if (tmp[i] > 0 && tmp[i] >= thr) {
                c[n].p = tmp[i];
                c[n++].id = i;
                kept += tmp[i];
            }
    } else {
        /* Sort only the likely part: try a high threshold first; if the nucleus is not
         * reached inside it, lower the threshold (exact: everything excluded is smaller). */
        float cut = 1e-3f > thr ? 1e-3f : thr;
        for (;;) {
            n = 0;
            for (int i = 0; i < vocab; i++)
                if (tmp[i] > 0 && tmp[i] >= cut) {
                    c[n].p = tmp[i];
                    c[n++].id = i;
                }
            qsort(c, (size_t)n, sizeof *c, cand_cmp);
            if (n > k) n = k;
            double target = (p->top_p > 0 && p->top_p < 1 ? p->top_p : 1.0) * total, cum = 0;
            int m = 0;
            while (m < n && cum < target) cum += c[m++].p;
            if (cum >= target * (1 - 1e-12) || cut <= thr || n == k) {
                n = m;
                kept = cum;
                break;
            }
            cut = cut > 1e-9f ? cut * 1e-3f : thr;
            if (cut < thr) cut = thr;
        }
    }
    int32_t out = c[0].id;
    if (n > 1) {
        double r = dr_rng_double(rng) * kept, acc = 0;
        out = c[n - 1].id;
        for (int i = 0; i < n; i++) {
            acc += c[i].p;
            if (r < acc) {
                out = c[i].id;
                break;
            }
        }
    } else if (n == 0) {
        out = llm_argmax(logits, vocab);
    }
    free(own);
    return out;
}
