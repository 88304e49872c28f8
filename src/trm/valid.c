/* The users early stopping validates on. Full-ranking validation costs one forward and one pass
 * over the catalog per user: on Sports (35,598 users, 18,357 items) it took four times as long as
 * the epoch's training. A fixed sample of users keeps the comparison between epochs paired (the
 * same users each time), so its noise is far below that of a new draw each epoch. */
#include "internal.h"
#include <stdlib.h>

/* The draw depends on the dataset only: runs with other training seeds validate on the same users. */
#define TRM_VALID_SEED 0x76616c6964ULL /* "valid" */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int trm__valid_users(const dr_dataset *d, int want, int32_t **users, int *n) {
    *users = NULL;
    *n = 0;
    if (want < TRM_VALID_USERS_AUTO)
        return dr_error(DR_ERR_ARG, "trm: valid users must be >= 0 (0 = all) or %d (auto), got %d",
                        TRM_VALID_USERS_AUTO, want);
    if (want == 0) return DR_OK;
    int32_t *u;
    int avail;
    int rc = dr_data_draw_users(d, 0, TRM_VALID_SEED, &u, &avail);
    if (rc) return rc;
    if (want == TRM_VALID_USERS_AUTO) want = avail <= TRM_VALID_AUTO_MAX ? avail : TRM_VALID_AUTO_SAMPLE;
    if (want >= avail) { /* all of them: trm_evaluate's own path, bit for bit */
        free(u);
        return DR_OK;
    }
    /* dataset order, so that a list printed or compared reads plainly */
    qsort(u, (size_t)want, sizeof *u, cmp_i32);
    *users = u;
    *n = want;
    return DR_OK;
}
