/* Thread count: DEEPREC_THREADS or the number of cores, applied to OpenMP and OpenBLAS; the
 * OpenMP wait policy of the programs (deeprec, the benches). */
#include "deeprec/base.h"
#include "deeprec/dist.h"
#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int n); /* from OpenBLAS */

int dr_threads(void) {
    const char *e = getenv("DEEPREC_THREADS");
    if (e && *e) {
        int n = atoi(e);
        if (n > 0) return n;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    /* ranks sharing a machine share its cores */
    c /= dr_dist_local_size();
    return c > 0 ? (int)c : 1;
}

void dr_threads_set(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

void dr_threads_init(void) { dr_threads_set(dr_threads()); }

int dr_threads_current(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Measured: a SASRec step on 2 threads ran at 13% of sgemm with a second job on the machine,
 * 42% with passive waiting (docs/llm.md has the decode figures of each policy). */
void dr_threads_wait_policy(char **argv, dr_wait_policy policy) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (policy == DR_WAIT_SPIN)
        setenv("GOMP_SPINCOUNT", DR_WAIT_SPIN_COUNT, 1);
    else
        setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv); /* returns only on failure: carry on as we are */
}

void dr_threads_prefer_passive(char **argv) { dr_threads_wait_policy(argv, DR_WAIT_PASSIVE); }
