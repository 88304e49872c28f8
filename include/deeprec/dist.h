/* deeprec dist: data parallelism across processes over MPI.
 *
 * One API whatever the build. Built with MPI (make MPI=1, or mpicc found), a program
 * launched by mpirun/srun runs as one rank of a world; launched any other way, or built
 * without MPI, it is the single rank 0 of a world of 1 and every call below is a no-op
 * (a reduction of one contribution is the contribution itself).
 *
 * Collectives must be called by every rank in the same order. Library code that hits an
 * error on one rank returns it as usual; the CLI reports it and calls dr_dist_abort, which
 * ends every rank (a rank waiting in a collective would otherwise wait for ever).
 *
 * The split rule: n items cut into `size` contiguous shares in rank order, the first
 * n % size shares one item longer (dr_dist_share). Every rank computes every share, so
 * no rank needs to be told where another's share lies. */
#ifndef DEEPREC_DIST_H
#define DEEPREC_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Joins the world when the process was started by an MPI launcher (OpenMPI's mpirun, or
 * Slurm/PMIx); otherwise stays single. Returns 0, or a dr_err code with the message set.
 * Call once, before threads start. */
int dr_dist_init(int *argc, char ***argv);
void dr_dist_finalize(void);
int dr_dist_rank(void);       /* 0 when single */
int dr_dist_size(void);       /* 1 when single */
int dr_dist_local_size(void); /* ranks on this machine (the launcher's count), 1 when single */
int dr_dist_compiled(void);   /* 1 when built with MPI */

/* This rank's (or any rank's) share [lo, hi) of n items. */
void dr_dist_share(int64_t n, int64_t *lo, int64_t *hi);
void dr_dist_share_of(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* In-place sums over every rank; every rank gets the same result. */
int dr_dist_sum_f32(float *buf, size_t n);
int dr_dist_sum_f64(double *buf, size_t n);
int dr_dist_sum_i64(int64_t *buf, size_t n);
int dr_dist_max_f64(double *buf, size_t n);
/* Gather: rank r contributes count[r] items (every rank passes the same counts array);
 * all[] receives them in rank order on every rank. */
int dr_dist_allgather_i32(const int32_t *mine, int32_t *all, const int64_t *counts);
int dr_dist_allgather_f32(const float *mine, float *all, const int64_t *counts);
int dr_dist_allgather_f64(const double *mine, double *all, const int64_t *counts);
/* Bytes from root to every rank. */
int dr_dist_bcast(void *buf, size_t bytes, int root);
int dr_dist_barrier(void);

/* Ends every rank with exit code `code` (MPI_Abort); single: exit(code). For the CLI. */
void dr_dist_abort(int code);

/* Communication counters of this rank since start (for benches and logs). */
typedef struct dr_dist_stats {
    int64_t calls;
    int64_t bytes;   /* payload bytes handed to collectives by this rank */
    double seconds;  /* wall time inside collectives (includes waiting for slower ranks) */
} dr_dist_stats;
void dr_dist_get_stats(dr_dist_stats *s);

#endif
