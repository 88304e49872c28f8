/* For the data-parallel equivalence tests: run $DEEPREC_BIN alone or under mpirun, and
 * compare weights. Header-only (static), included by the tests of each module. */
#ifndef DEEPREC_TEST_MPI_UTIL_H
#define DEEPREC_TEST_MPI_UTIL_H

#include "harness.h"
#include "deeprec/dist.h"
#include "deeprec/gguf.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The CLI, and mpirun when the build has MPI and the machine has OpenMPI; skips otherwise. */
__attribute__((unused)) static const char *mpi_bin(void) {
#if defined(__SANITIZE_ADDRESS__)
    SKIP("run in the optimised build's pass (both passes run the same build/deeprec under mpirun)");
#endif
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    if (!dr_dist_compiled()) SKIP("built without MPI (install libopenmpi-dev openmpi-bin, or make MPI=1)");
    if (system("command -v mpirun >/dev/null 2>&1") != 0) SKIP("mpirun not found (apt-get install openmpi-bin)");
    return b;
}

/* Runs "BIN args" with np ranks (np 0: plain, without mpirun); one thread per rank, no core
 * binding (the machine is shared), root allowed (CI containers). Returns the exit status. */
__attribute__((unused)) static int mpi_run(int np, const char *args) {
    const char *b = getenv("DEEPREC_BIN");
    char cmd[8192];
    const char *env = "OMP_WAIT_POLICY=passive DEEPREC_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 "
                      "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none"
                      " OMPI_MCA_rmaps_base_oversubscribe=1";
    if (np > 0)
        snprintf(cmd, sizeof cmd, "%s timeout 600 mpirun --oversubscribe --bind-to none -np %d %s %s", env, np, b, args);
    else
        snprintf(cmd, sizeof cmd, "%s %s %s", env, b, args);
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Largest |a - b| over the largest |a|: the weights of one run against another's. */
__attribute__((unused)) static double rel_diff(const float *a, const float *b, size_t n) {
    double mx = 0, dx = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i]), d = fabs((double)a[i] - (double)b[i]);
        if (x > mx) mx = x;
        if (d > dx || d != d) dx = d != d ? INFINITY : d;
    }
    return mx > 0 ? dx / mx : dx;
}

__attribute__((unused)) static char *read_text(const char *path) {
    char *t = NULL;
    size_t n;
    if (dr_read_file(path, &t, &n)) return NULL;
    return t;
}

/* The weights of two GGUF files (F32 tensors matched by name): the largest |a - b| over the
 * largest |a| of the whole model (a tensor missing in b gives infinity). Not per tensor: a
 * qwen2 key bias has a zero true gradient (softmax ignores a shift common to a row), so its
 * gradient is rounding noise that Adam scales to +-lr steps; relative to its own tiny size
 * it differs between any two summation orders, one process with other thread counts too
 * (measured: 4.7e-6 of the largest weight between 1 and 2 threads). Tensors whose name
 * contains `skip` (may be NULL) are left out for that reason. */
__attribute__((unused)) static double gguf_rel_diff(const char *a, const char *b, const char *skip) {
    gguf_file fa, fb;
    CHECK_OK(gguf_open(&fa, a));
    CHECK_OK(gguf_open(&fb, b));
    double dmax = 0, amax = 0;
    for (uint64_t i = 0; i < fa.n_tensors; i++) {
        const gguf_tensor_info *ta = &fa.tensors[i];
        if (ta->type != GGML_TYPE_F32) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)ta->name.len, ta->name.ptr);
        if (skip && strstr(name, skip)) continue;
        const gguf_tensor_info *tb = gguf_find_tensor(&fb, name);
        if (!tb || tb->type != GGML_TYPE_F32 || tb->n_elements != ta->n_elements) {
            dmax = INFINITY;
            continue;
        }
        const float *x = ta->data, *y = tb->data;
        double tm = 0, td = 0;
        for (uint64_t k = 0; k < ta->n_elements; k++) {
            double v = fabs((double)x[k]), d = fabs((double)x[k] - (double)y[k]);
            if (v > tm) tm = v;
            if (!(d <= td)) td = d; /* NaN wins */
        }
        if (getenv("DEEPREC_TEST_VERBOSE")) printf("    %s: max |a| %.3g, max |a - b| %.3g\n", name, tm, td);
        if (tm > amax) amax = tm;
        if (!(td <= dmax)) dmax = td;
    }
    gguf_close(&fa);
    gguf_close(&fb);
    return amax > 0 ? dmax / amax : dmax;
}

#endif
