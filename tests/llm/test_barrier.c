/* The spin barrier (src/llm/spin_barrier.c): no thread passes a barrier before every thread of
 * the region has reached it, many times over, with as many threads as processors and with
 * more (where waiters yield). */
#include "harness.h"
#include "llm/llm_internal.h"
#include <omp.h>
#include <stdlib.h>

/* Each thread writes its phase, waits, and checks that every thread has written the same
 * phase; a second barrier keeps the next phase's writes from racing the checks. Returns the
 * number of mismatches seen. */
static int phases_seen_wrong(int nt, int phases) {
    int *slot = calloc((size_t)nt, sizeof *slot), wrong = 0;
    if (!slot) return -1;
    llm_barrier bar;
    llm_barrier_init(&bar);
#pragma omp parallel num_threads(nt) reduction(+ : wrong)
    {
        const int me = omp_get_thread_num(), team = omp_get_num_threads();
        for (int p = 1; p <= phases; p++) {
            __atomic_store_n(&slot[me], p, __ATOMIC_RELAXED);
            llm_barrier_wait(&bar);
            for (int t = 0; t < team; t++) wrong += __atomic_load_n(&slot[t], __ATOMIC_RELAXED) != p;
            llm_barrier_wait(&bar);
        }
    }
    free(slot);
    return wrong;
}

TEST(barrier_holds_every_thread) {
    const int procs = omp_get_num_procs();
    CHECK_EQ_INT(phases_seen_wrong(procs < 2 ? 2 : procs, 20000), 0);
}

TEST(barrier_with_more_threads_than_processors) {
    CHECK_EQ_INT(phases_seen_wrong(2 * omp_get_num_procs() + 1, 500), 0);
}

TEST(barrier_outside_a_region_returns) {
    llm_barrier bar;
    llm_barrier_init(&bar);
    llm_barrier_wait(&bar); /* one thread: nothing to wait for */
    CHECK_EQ_INT(phases_seen_wrong(1, 10), 0);
}
