/* Data parallelism over MPI, or the single-process stand-ins when built without it.
 * Only this file includes mpi.h (compiled with -DDR_MPI and mpicc's include flags). */
#include "deeprec/dist.h"
#include "deeprec/base.h"
#include <stdlib.h>
#include <string.h>
#ifdef DR_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local = 1;
static dr_dist_stats g_stats;

int dr_dist_rank(void) { return g_rank; }
int dr_dist_size(void) { return g_size; }
int dr_dist_local_size(void) { return g_local; }

void dr_dist_share_of(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
    if (size < 1) size = 1;
    int64_t q = n / size, r = n % size;
    *lo = (int64_t)rank * q + (rank < r ? rank : r);
    *hi = *lo + q + (rank < r);
}

void dr_dist_share(int64_t n, int64_t *lo, int64_t *hi) { dr_dist_share_of(n, g_rank, g_size, lo, hi); }

void dr_dist_get_stats(dr_dist_stats *s) { *s = g_stats; }

#ifdef DR_MPI
static int g_on = 0; /* MPI_Init done */

int dr_dist_compiled(void) { return 1; }

/* Started by a launcher? OpenMPI's mpirun sets OMPI_COMM_WORLD_SIZE; srun with PMIx or PMI2
 * sets PMIX_RANK / PMI_RANK. Anything else runs single, so a plain run of an MPI build
 * behaves exactly like a build without MPI (and never starts OpenMPI's singleton runtime). */
static int launched(void) {
    const char *f = getenv("DEEPREC_MPI");
    if (f && *f) return atoi(f) != 0;
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v && atoi(v) > 0 ? atoi(v) : dflt;
}

int dr_dist_init(int *argc, char ***argv) {
    if (g_on || !launched()) return DR_OK;
    int ok = 0;
    if (MPI_Initialized(&ok) == MPI_SUCCESS && !ok && MPI_Init(argc, argv) != MPI_SUCCESS)
        return dr_error(DR_ERR_IO, "MPI_Init failed");
    /* errors come back as codes (reported by the caller), not as MPI's own abort */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_local = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("SLURM_NTASKS_PER_NODE", 1));
    g_on = 1;
    return DR_OK;
}

void dr_dist_finalize(void) {
    if (!g_on) return;
    MPI_Finalize();
    g_on = 0;
}

static int mpi_fail(int err, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(err, msg, &n);
    return dr_error(DR_ERR_IO, "rank %d: %s failed: %s", g_rank, what, msg);
}

/* MPI counts are ints: large buffers go in chunks. */
#define CHUNK ((size_t)1 << 28)

static int allreduce(void *buf, size_t n, size_t esz, MPI_Datatype t, MPI_Op op) {
    if (g_size == 1 || n == 0) return DR_OK;
    double t0 = dr_now();
    for (size_t off = 0; off < n; off += CHUNK) {
        int c = (int)(n - off < CHUNK ? n - off : CHUNK);
        int err = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esz, c, t, op, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allreduce");
    }
    g_stats.calls++;
    g_stats.bytes += (int64_t)(n * esz);
    g_stats.seconds += dr_now() - t0;
    return DR_OK;
}

int dr_dist_sum_f32(float *buf, size_t n) { return allreduce(buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM); }
int dr_dist_sum_f64(double *buf, size_t n) { return allreduce(buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM); }
int dr_dist_sum_i64(int64_t *buf, size_t n) { return allreduce(buf, n, sizeof *buf, MPI_INT64_T, MPI_SUM); }
int dr_dist_max_f64(double *buf, size_t n) { return allreduce(buf, n, sizeof *buf, MPI_DOUBLE, MPI_MAX); }

static int allgather(const void *mine, void *all, const int64_t *counts, size_t esz, MPI_Datatype t) {
    int64_t total = 0;
    for (int r = 0; r < g_size; r++) total += counts[r];
    if (g_size == 1) {
        if (total > 0 && mine != all) memmove(all, mine, (size_t)total * esz);
        return DR_OK;
    }
    if (total > (int64_t)0x7fffffff)
        return dr_error(DR_ERR_UNSUPPORTED, "allgather of %lld items (the limit is 2^31 - 1)", (long long)total);
    int *cnt = malloc((size_t)g_size * sizeof(int)), *dsp = malloc((size_t)g_size * sizeof(int));
    if (!cnt || !dsp) {
        free(cnt);
        free(dsp);
        return dr_error(DR_ERR_NOMEM, "allgather: out of memory");
    }
    int64_t o = 0;
    for (int r = 0; r < g_size; r++) {
        cnt[r] = (int)counts[r];
        dsp[r] = (int)o;
        o += counts[r];
    }
    double t0 = dr_now();
    int err = MPI_Allgatherv(mine, cnt[g_rank], t, all, cnt, dsp, t, MPI_COMM_WORLD);
    free(cnt);
    free(dsp);
    if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Allgatherv");
    g_stats.calls++;
    g_stats.bytes += (int64_t)((size_t)total * esz);
    g_stats.seconds += dr_now() - t0;
    return DR_OK;
}

int dr_dist_allgather_i32(const int32_t *mine, int32_t *all, const int64_t *counts) {
    return allgather(mine, all, counts, sizeof *mine, MPI_INT32_T);
}
int dr_dist_allgather_f32(const float *mine, float *all, const int64_t *counts) {
    return allgather(mine, all, counts, sizeof *mine, MPI_FLOAT);
}
int dr_dist_allgather_f64(const double *mine, double *all, const int64_t *counts) {
    return allgather(mine, all, counts, sizeof *mine, MPI_DOUBLE);
}

int dr_dist_bcast(void *buf, size_t bytes, int root) {
    if (g_size == 1 || bytes == 0) return DR_OK;
    double t0 = dr_now();
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int c = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        int err = MPI_Bcast((char *)buf + off, c, MPI_BYTE, root, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS) return mpi_fail(err, "MPI_Bcast");
    }
    g_stats.calls++;
    g_stats.bytes += (int64_t)bytes;
    g_stats.seconds += dr_now() - t0;
    return DR_OK;
}

int dr_dist_barrier(void) {
    if (g_size == 1) return DR_OK;
    int err = MPI_Barrier(MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? DR_OK : mpi_fail(err, "MPI_Barrier");
}

void dr_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_on && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    exit(code);
}

#else /* single process */
int dr_dist_compiled(void) { return 0; }
int dr_dist_init(int *argc, char ***argv) { return DR_OK; }
void dr_dist_finalize(void) {}
int dr_dist_sum_f32(float *buf, size_t n) { return DR_OK; }
int dr_dist_sum_f64(double *buf, size_t n) { return DR_OK; }
int dr_dist_sum_i64(int64_t *buf, size_t n) { return DR_OK; }
int dr_dist_max_f64(double *buf, size_t n) { return DR_OK; }
static int gather1(const void *mine, void *all, const int64_t *counts, size_t esz) {
    if (counts[0] > 0 && mine != all) memmove(all, mine, (size_t)counts[0] * esz);
    return DR_OK;
}
int dr_dist_allgather_i32(const int32_t *mine, int32_t *all, const int64_t *counts) {
    return gather1(mine, all, counts, sizeof *mine);
}
int dr_dist_allgather_f32(const float *mine, float *all, const int64_t *counts) {
    return gather1(mine, all, counts, sizeof *mine);
}
int dr_dist_allgather_f64(const double *mine, double *all, const int64_t *counts) {
    return gather1(mine, all, counts, sizeof *mine);
}
int dr_dist_bcast(void *buf, size_t bytes, int root) { return DR_OK; }
int dr_dist_barrier(void) { return DR_OK; }
void dr_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code);
}
#endif
