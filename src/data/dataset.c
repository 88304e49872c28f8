/* The in-memory dataset: accessors, split, statistics, lookups. */
#include "deeprec/data.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void free_strs(char **v, int64_t n) {
    if (!v) return;
    for (int64_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void dr_data_free(dr_dataset *d) {
    if (!d) return;
    free(d->offsets);
    free(d->items);
    free(d->timestamps);
    free_strs(d->user_ids, d->n_users);
    free_strs(d->item_ids, (int64_t)d->n_items + 1);
    free_strs(d->titles, (int64_t)d->n_items + 1);
    free_strs(d->categories, (int64_t)d->n_items + 1);
    free(d->format);
    free(d->source);
    memset(d, 0, sizeof *d);
}

int64_t dr_data_train(const dr_dataset *d, int32_t u, const int32_t **items) {
    int64_t n = dr_data_seq_len(d, u);
    *items = dr_data_seq(d, u);
    return n >= 3 ? n - 2 : n;
}

/* The item `back` places from the end of u's sequence and what precedes it; users with
 * fewer than 3 items have no held-out items (PAD, the whole sequence as prefix). */
static int32_t held_out(const dr_dataset *d, int32_t u, int64_t back, const int32_t **prefix, int64_t *prefix_len) {
    int64_t n = dr_data_seq_len(d, u);
    const int32_t *s = dr_data_seq(d, u);
    *prefix = s;
    if (n < 3) {
        *prefix_len = n;
        return DR_DATA_PAD;
    }
    *prefix_len = n - back;
    return s[n - back];
}

int32_t dr_data_valid(const dr_dataset *d, int32_t u, const int32_t **prefix, int64_t *prefix_len) {
    return held_out(d, u, 2, prefix, prefix_len);
}

int32_t dr_data_test(const dr_dataset *d, int32_t u, const int32_t **prefix, int64_t *prefix_len) {
    return held_out(d, u, 1, prefix, prefix_len);
}

int32_t dr_data_train_example(const dr_dataset *d, int32_t u, const int32_t **hist, int64_t *hist_len) {
    int64_t n = dr_data_train(d, u, hist);
    if (n < 2) {
        *hist_len = n;
        return DR_DATA_PAD;
    }
    *hist_len = n - 1;
    return (*hist)[n - 1];
}

int dr_data_split_from_name(const char *name) {
    return !strcmp(name, "test") ? DR_SPLIT_TEST : !strcmp(name, "valid") ? DR_SPLIT_VALID
                                                 : !strcmp(name, "all")   ? DR_SPLIT_ALL
                                                                          : -1;
}

int32_t dr_data_split_history(const dr_dataset *d, int32_t u, int split, const int32_t **hist, int64_t *hist_len) {
    int32_t target = split == DR_SPLIT_TEST ? dr_data_test(d, u, hist, hist_len)
                   : split == DR_SPLIT_VALID ? dr_data_valid(d, u, hist, hist_len)
                                             : DR_DATA_PAD;
    if (!target) {
        *hist = dr_data_seq(d, u);
        *hist_len = dr_data_seq_len(d, u);
    }
    return target;
}

int dr_data_draw_users(const dr_dataset *d, int n, uint64_t seed, int32_t **users, int *n_out) {
    *users = NULL;
    *n_out = 0;
    if (n < 0) return dr_error(DR_ERR_ARG, "the number of users to draw must be >= 0 (0 = all), got %d", n);
    int32_t *u = dr_calloc((size_t)d->n_users + 1, sizeof *u);
    if (!u) return dr_error_code();
    int m = 0;
    for (int32_t i = 0; i < d->n_users; i++)
        if (dr_data_has_split(d, i)) u[m++] = i;
    dr_rng rng;
    dr_rng_seed(&rng, seed);
    dr_rng_shuffle_i32(&rng, u, (size_t)m);
    *users = u;
    *n_out = n > 0 && n < m ? n : m;
    return DR_OK;
}

int64_t dr_data_prefix_tail(const int32_t **items, int64_t len, int32_t max_len) {
    if (max_len <= 0 || len <= max_len) return len;
    *items += len - max_len;
    return max_len;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

void dr_data_compute_stats(const dr_dataset *d, dr_data_stats *s) {
    memset(s, 0, sizeof *s);
    s->n_users = d->n_users;
    s->n_items = d->n_items;
    s->n_inter = d->n_inter;
    if (d->n_users > 0) {
        int64_t *len = malloc((size_t)d->n_users * sizeof *len);
        s->seq_min = INT64_MAX;
        for (int32_t u = 0; u < d->n_users; u++) {
            int64_t n = dr_data_seq_len(d, u);
            if (len) len[u] = n;
            if (n < s->seq_min) s->seq_min = n;
            if (n > s->seq_max) s->seq_max = n;
            if (n >= 3) {
                s->users_split++;
                s->train_inter += n - 2;
            } else
                s->train_inter += n;
        }
        s->seq_mean = (double)d->n_inter / d->n_users;
        if (len) {
            qsort(len, (size_t)d->n_users, sizeof *len, cmp_i64);
            int32_t m = d->n_users / 2;
            s->seq_median = d->n_users % 2 ? (double)len[m] : 0.5 * ((double)len[m - 1] + (double)len[m]);
            free(len);
        }
    }
    if (d->n_users > 0 && d->n_items > 0) s->density = (double)d->n_inter / ((double)d->n_users * d->n_items);
    for (int32_t i = 1; i <= d->n_items; i++) {
        if (d->titles && d->titles[i] && d->titles[i][0]) s->items_titled++;
        if (d->categories && d->categories[i] && d->categories[i][0]) s->items_with_categories++;
    }
    uint8_t *used = calloc((size_t)d->n_items + 1, 1);
    if (used) {
        for (int64_t i = 0; i < d->n_inter; i++)
            if (d->items[i] > 0 && d->items[i] <= d->n_items) used[d->items[i]] = 1;
        for (int32_t i = 1; i <= d->n_items; i++) s->items_unused += !used[i];
        free(used);
    }
    s->valid_n = s->test_n = s->users_split;
}

int32_t dr_data_find_user(const dr_dataset *d, const char *user_id) {
    for (int32_t u = 0; u < d->n_users; u++)
        if (d->user_ids[u] && !strcmp(d->user_ids[u], user_id)) return u;
    /* "#N": the N-th user (0-based), for every command that takes --user; a real id
     * spelled "#N" wins above */
    if (user_id[0] == '#' && user_id[1] >= '0' && user_id[1] <= '9') {
        char *end;
        long k = strtol(user_id + 1, &end, 10);
        if (!*end && k >= 0 && k < d->n_users) return (int32_t)k;
    }
    return -1;
}

int dr_data_user_lookup(const dr_dataset *d, const char *user, int64_t index, const char *where, int32_t *u) {
    *u = user ? dr_data_find_user(d, user) : index >= 0 && index < d->n_users ? (int32_t)index : -1;
    if (*u >= 0) return DR_OK;
    int rc = user ? dr_error(DR_ERR_ARG, "user '%s' is not in %s", user, where)
                  : dr_error(DR_ERR_ARG, "user number %lld is not in %s", (long long)index, where);
    dr_error_hint("give the user id of the source data, or '#N' for the N-th user (0..%d)", (int)d->n_users - 1);
    return rc;
}

int32_t dr_data_find_item(const dr_dataset *d, const char *item_id) {
    for (int32_t i = 1; i <= d->n_items; i++)
        if (d->item_ids[i] && !strcmp(d->item_ids[i], item_id)) return i;
    return 0;
}
