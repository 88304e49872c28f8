/* Exact top-k selection over a catalog's scores, fed in blocks of increasing item ids.
 *
 * A k-heap keeps the best items so far; its root is the worst kept one. Because ids arrive in
 * increasing order, a later item ties with the root only to lose (ties go to the smaller id), so
 * once the heap is full an item enters exactly when its score is above the root's. Most blocks
 * of a 25,000-item catalog hold no such score: a branch-free comparison over 16 scores at a time
 * skips them, and only the few candidates touch the heap. NaN never compares above, so a NaN
 * score (a masked item) is never kept. */
#include "internal.h"
#if defined(__AVX__)
#include <immintrin.h>
#endif

/* min-heap on (score, -id): the root is the worst kept item */
static inline int worse(float sa, int32_t ia, float sb, int32_t ib) { return sa < sb || (sa == sb && ia > ib); }

static void sift_down(float *hs, int32_t *hi, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(hs[l], hi[l], hs[w], hi[w])) w = l;
        if (r < n && worse(hs[r], hi[r], hs[w], hi[w])) w = r;
        if (w == i) return;
        float ts = hs[i];
        hs[i] = hs[w];
        hs[w] = ts;
        int32_t ti = hi[i];
        hi[i] = hi[w];
        hi[w] = ti;
        i = w;
    }
}

void trm__topk_init(trm_topk_acc *t, int k, int32_t *ids, float *scores) {
    t->k = k;
    t->n = 0;
    t->ids = ids;
    t->scores = scores;
}

/* One item, in increasing id order. */
static inline void offer(trm_topk_acc *t, int32_t id, float sc) {
    if (t->n < t->k) {
        if (sc != sc) return; /* NaN */
        t->ids[t->n] = id;
        t->scores[t->n] = sc;
        if (++t->n == t->k)
            for (int j = t->k / 2 - 1; j >= 0; j--) sift_down(t->scores, t->ids, t->n, j);
    } else if (sc > t->scores[0]) {
        t->scores[0] = sc;
        t->ids[0] = id;
        sift_down(t->scores, t->ids, t->n, 0);
    }
}

enum { SKIP = 16 }; /* scores compared at once against the root */

/* Bit j set when s[j] > thr, for j < SKIP (false for NaN). */
static inline unsigned above(const float *s, float thr) {
#if defined(__AVX512F__)
    return _mm512_cmp_ps_mask(_mm512_loadu_ps(s), _mm512_set1_ps(thr), _CMP_GT_OQ);
#elif defined(__AVX__)
    __m256 t = _mm256_set1_ps(thr);
    unsigned lo = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s), t, _CMP_GT_OQ));
    unsigned hi = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 8), t, _CMP_GT_OQ));
    return lo | hi << 8;
#else
    unsigned bits = 0;
    for (int j = 0; j < SKIP; j++) bits |= (unsigned)(s[j] > thr) << j;
    return bits;
#endif
}

void trm__topk_push(trm_topk_acc *t, const float *s, int32_t first_id, int count, const uint8_t *masked) {
    int i = 0;
    for (; i < count && t->n < t->k; i++)
        if (!(masked && masked[first_id + i])) offer(t, first_id + i, s[i]);
    for (; i + SKIP <= count; i += SKIP)
        for (unsigned bits = above(s + i, t->scores[0]); bits; bits &= bits - 1) {
            int j = i + __builtin_ctz(bits);
            /* the root may have risen since the comparison */
            if (s[j] > t->scores[0] && !(masked && masked[first_id + j])) offer(t, first_id + j, s[j]);
        }
    for (; i < count; i++)
        if (!(masked && masked[first_id + i])) offer(t, first_id + i, s[i]);
}

int trm__topk_finish(trm_topk_acc *t) {
    int n = t->n;
    float *hs = t->scores;
    int32_t *hi = t->ids;
    if (n < t->k)
        for (int j = n / 2 - 1; j >= 0; j--) sift_down(hs, hi, n, j);
    /* heap sort: repeatedly move the worst to the end */
    for (int e = n - 1; e > 0; e--) {
        float ts = hs[0];
        hs[0] = hs[e];
        hs[e] = ts;
        int32_t ti = hi[0];
        hi[0] = hi[e];
        hi[e] = ti;
        sift_down(hs, hi, e, 0);
    }
    return n;
}

int trm_topk(const float *scores, int32_t n_items, const uint8_t *masked, int k, int32_t *ids, float *out_scores) {
    trm_topk_acc t;
    trm__topk_init(&t, k, ids, out_scores);
    trm__topk_push(&t, scores + 1, 1, n_items, masked);
    return trm__topk_finish(&t);
}
