/* Data selection of DESIGN §7: training users whose target is in the TRM's top k. */
#include "deeprec/rl.h"
#include "deeprec/data.h"
#include "deeprec/trm.h"
#include <stdlib.h>

int rl_select_users(const dr_dataset *d, struct trm_model *m, int k, int32_t **users, int *n) {
    *users = NULL;
    *n = 0;
    int32_t *u = dr_calloc((size_t)d->n_users + 1, sizeof *u);
    if (!u) return dr_error_code();
    trm_session *s = NULL;
    int32_t *ids = NULL;
    float *sc = NULL;
    int rc = DR_OK;
    if (k > 0) {
        ids = dr_calloc((size_t)k, sizeof *ids);
        sc = dr_calloc((size_t)k, sizeof *sc);
        if (!ids || !sc) {
            rc = dr_error_code();
            goto done;
        }
        if ((rc = trm_session_new(&s, m))) goto done;
    }
    int cnt = 0;
    for (int32_t i = 0; i < d->n_users; i++) {
        const int32_t *hist;
        int64_t n_hist;
        int32_t target = dr_data_train_example(d, i, &hist, &n_hist);
        if (!target) continue;
        if (k > 0) {
            int got = 0, in = 0;
            if ((rc = trm_retrieve(s, hist, n_hist, "", k, 1, ids, sc, &got))) goto done;
            for (int j = 0; j < got && !in; j++) in = ids[j] == target;
            if (!in) continue;
        }
        u[cnt++] = i;
    }
    *users = u;
    *n = cnt;
    u = NULL;
done:
    trm_session_free(s);
    free(ids);
    free(sc);
    free(u);
    return rc;
}
