/* dist.h outside mpirun: the split rule, and a world of one (every collective is the identity),
 * whatever the build (make MPI=0 or MPI=1). */
#include "harness.h"
#include "deeprec/dist.h"
#include <stdlib.h>

TEST(dist_share_rule) {
    for (int size = 1; size <= 7; size++)
        for (int64_t n = 0; n <= 30; n++) {
            int64_t next = 0;
            for (int r = 0; r < size; r++) {
                int64_t lo, hi;
                dr_dist_share_of(n, r, size, &lo, &hi);
                CHECK_EQ_INT(lo, next); /* contiguous, in rank order */
                CHECK(hi >= lo);
                /* the first n % size shares are one longer */
                CHECK_EQ_INT(hi - lo, n / size + (r < n % size));
                next = hi;
            }
            CHECK_EQ_INT(next, n);
        }
    int64_t lo, hi;
    dr_dist_share_of(10, 2, 3, &lo, &hi); /* 4, 3, 3 */
    CHECK_EQ_INT(lo, 7);
    CHECK_EQ_INT(hi, 10);
}

TEST(dist_world_of_one) {
    /* not started by a launcher: a single rank even in an MPI build */
    CHECK_OK(dr_dist_init(NULL, NULL));
    CHECK_EQ_INT(dr_dist_size(), 1);
    CHECK_EQ_INT(dr_dist_rank(), 0);
    CHECK_EQ_INT(dr_dist_local_size(), 1);
    int64_t lo, hi;
    dr_dist_share(9, &lo, &hi);
    CHECK_EQ_INT(lo, 0);
    CHECK_EQ_INT(hi, 9);
    float f[3] = {1.5f, -2.0f, 3.25f};
    double g[2] = {0.1, 1e300}, mx = 4.0;
    int64_t k[2] = {5, -7};
    CHECK_OK(dr_dist_sum_f32(f, 3));
    CHECK_OK(dr_dist_sum_f64(g, 2));
    CHECK_OK(dr_dist_sum_i64(k, 2));
    CHECK_OK(dr_dist_max_f64(&mx, 1));
    CHECK(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
    CHECK(g[0] == 0.1 && g[1] == 1e300 && mx == 4.0);
    CHECK(k[0] == 5 && k[1] == -7);
    int32_t mine[4] = {4, 3, 2, 1}, all[4] = {0};
    int64_t counts[1] = {4};
    CHECK_OK(dr_dist_allgather_i32(mine, all, counts));
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(all[i], 4 - i);
    double dm[2] = {1, 2}, da[2] = {0};
    int64_t c2[1] = {2};
    CHECK_OK(dr_dist_allgather_f64(dm, da, c2));
    CHECK(da[0] == 1 && da[1] == 2);
    char buf[8] = "abc";
    CHECK_OK(dr_dist_bcast(buf, sizeof buf, 0));
    CHECK_OK(dr_dist_barrier());
    CHECK(!strcmp(buf, "abc"));
    dr_dist_stats st;
    dr_dist_get_stats(&st);
    CHECK_EQ_INT(st.calls, 0); /* nothing crossed a network */
    dr_dist_finalize();
}
