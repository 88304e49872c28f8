/* Files: atomic writes (temp + fsync + rename) and read-only mmap. */
#include "deeprec/base.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>

/* Temporary files NAME.tmp.PID whose process is gone were left by a kill -9 or a crash:
 * remove them now (a live PID's file may be another writer's: leave it). */
static void remove_stale_temps(const char *target) {
    char *copy = dr_strdup(target), *copy2 = dr_strdup(target);
    if (!copy || !copy2) { free(copy); free(copy2); return; }
    const char *dir = dirname(copy), *base = basename(copy2);
    size_t bl = strlen(base);
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *e;
        while ((e = readdir(dp))) {
            const char *nm = e->d_name;
            if (strncmp(nm, base, bl) || strncmp(nm + bl, ".tmp.", 5)) continue;
            char *end;
            long pid = strtol(nm + bl + 5, &end, 10);
            if (*end || pid <= 0 || pid == (long)getpid()) continue;
            if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s%s%s", strcmp(dir, ".") ? dir : "", strcmp(dir, ".") ? "/" : "", nm);
            if (unlink(path) == 0)
                dr_log(DR_LOG_WARN, "removed %s: a temporary file left by process %ld, which no longer runs", path, pid);
        }
        closedir(dp);
    }
    free(copy);
    free(copy2);
}

int dr_afile_open(dr_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    char *target = NULL;
    int rc = dr_output_target(path, &target);
    if (rc) return rc;
    remove_stale_temps(target);
    size_t n = strlen(target);
    af->path = target;
    af->tmp_path = dr_malloc(n + 32);
    if (!af->tmp_path) { free(af->path); af->path = NULL; return DR_ERR_NOMEM; }
    snprintf(af->tmp_path, n + 32, "%s.tmp.%ld", target, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        int e = errno;
        dr_error_at(DR_ERR_IO, path, 0, "cannot create temporary file %s: %s", af->tmp_path, strerror(e));
        free(af->path); free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return DR_ERR_IO;
    }
    return DR_OK;
}

static void fsync_dir_of(const char *path) {
    char *copy = dr_strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
    free(copy);
}

int dr_afile_commit(dr_afile *af) {
    int rc = DR_OK;
    if (!af->fp) return dr_error(DR_ERR_INTERNAL, "dr_afile_commit on a closed file");
    if (fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0) {
        rc = dr_error_at(DR_ERR_IO, af->path, 0, "write failed: %s", strerror(errno));
    }
    if (fclose(af->fp) != 0 && rc == DR_OK) rc = dr_error_at(DR_ERR_IO, af->path, 0, "close failed: %s", strerror(errno));
    af->fp = NULL;
    if (rc == DR_OK && rename(af->tmp_path, af->path) != 0)
        rc = dr_error_at(DR_ERR_IO, af->path, 0, "cannot rename temporary file into place: %s", strerror(errno));
    if (rc != DR_OK) unlink(af->tmp_path);
    else fsync_dir_of(af->path);
    free(af->path); free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return rc;
}

void dr_afile_abort(dr_afile *af) {
    if (af->fp) { fclose(af->fp); af->fp = NULL; }
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path); free(af->tmp_path);
    af->path = af->tmp_path = NULL;
}

int dr_write_file_atomic(const char *path, const void *data, size_t n) {
    dr_afile af;
    int rc = dr_afile_open(&af, path);
    if (rc) return rc;
    if (n && fwrite(data, 1, n, af.fp) != n) {
        dr_afile_abort(&af);
        return dr_error_at(DR_ERR_IO, path, 0, "write failed: %s", strerror(errno));
    }
    return dr_afile_commit(&af);
}

/* Reads bytes [off, off + n) of fd into p + off; an errno value (EIO for a short file) or 0. */
static int read_range(int fd, uint8_t *p, size_t off, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + off + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r == 0 ? EIO : errno;
        got += (size_t)r;
    }
    return 0;
}

/* Reads all of fd into p in 64 MiB pieces across the threads: most of the time goes to the
 * kernel clearing and faulting in the fresh pages, which each thread does for its own pieces.
 * -1 with errno on a failure or a short file. */
static int read_all(int fd, uint8_t *p, size_t n) {
    const size_t piece = (size_t)64 << 20;
    const long pieces = (long)((n + piece - 1) / piece);
    int err = 0;
#pragma omp parallel for schedule(dynamic, 1) if (pieces > 1)
    for (long i = 0; i < pieces; i++) {
        const size_t off = (size_t)i * piece, len = n - off < piece ? n - off : piece;
        int e = read_range(fd, p, off, len);
        if (e) {
#pragma omp atomic write
            err = e;
        }
    }
    if (err) errno = err;
    return err ? -1 : 0;
}

static int mmap_open(dr_mmap *m, const char *path, int huge) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return dr_error_at(DR_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return dr_error_at(DR_ERR_IO, path, 0, "cannot stat: %s", strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dr_error_at(DR_ERR_IO, path, 0, "not a regular file");
    }
    const size_t n = (size_t)st.st_size, hp = (size_t)2 << 20;
    if (n == 0) {
        close(fd);
        return DR_OK;
    }
    if (huge && n >= 2 * hp) {
        /* Anonymous memory rounded to 2 MiB with the transparent huge page hint, filled from
         * the file: the decode kernels read the weights as a few long streams, and with the
         * page cache's 4 KiB pages the hardware prefetchers restart at every page (7B-shaped
         * Q4_K_M decode on one core: 3.1-4.0 tokens/s mapped, 5.2-5.4 copied). */
        const size_t cap = (n + hp - 1) / hp * hp;
        void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return dr_error_at(DR_ERR_NOMEM, path, 0, "cannot allocate %zu bytes for the file: %s", cap, strerror(errno));
        }
        madvise(p, cap, MADV_HUGEPAGE); /* a hint: without THP the copy keeps 4 KiB pages */
        if (read_all(fd, p, n) != 0) {
            int e = errno;
            munmap(p, cap);
            close(fd);
            return dr_error_at(DR_ERR_IO, path, 0, "read failed: %s", strerror(e));
        }
        mprotect(p, cap, PROT_READ);
        m->data = p;
        m->size = n;
        m->map_size = cap;
        m->copied = 1;
        m->fd = fd; /* kept for dr_mmap_release, which maps released pages back to the file */
        return DR_OK;
    }
    void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return dr_error_at(DR_ERR_IO, path, 0, "cannot mmap: %s", strerror(errno));
    m->data = p;
    m->size = m->map_size = n;
    return DR_OK;
}

int dr_mmap_open(dr_mmap *m, const char *path) { return mmap_open(m, path, 0); }

int dr_mmap_open_copy(dr_mmap *m, const char *path) { return mmap_open(m, path, 1); }

void dr_mmap_close(dr_mmap *m) {
    if (m->data) munmap((void *)m->data, m->map_size);
    if (m->copied) close(m->fd);
    memset(m, 0, sizeof *m);
}

void dr_mmap_release(const dr_mmap *m, const void *p, size_t n) {
    const uintptr_t lo = (uintptr_t)m->data, hi = lo + m->size, a = (uintptr_t)p;
    if (!m->data || a < lo || a > hi || n > hi - a) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t s = (a + page - 1) / page * page, e = (a + n) / page * page;
    if (e <= s) return;
    if (!m->copied) {
        /* MAP_PRIVATE and never written: dropping the pages loses nothing */
        madvise((void *)s, e - s, MADV_DONTNEED);
        return;
    }
    /* A copy: dropping its pages would leave zeros, so the range becomes a mapping of the
     * same bytes of the file (the copy starts at file offset 0 on a page boundary). If that
     * fails the copy simply stays resident. */
    void *r = mmap((void *)s, e - s, PROT_READ, MAP_PRIVATE | MAP_FIXED, m->fd, (off_t)(s - lo));
    (void)r;
}

int dr_read_file(const char *path, char **out, size_t *size) {
    *out = NULL;
    if (size) *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return dr_error_at(DR_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = dr_malloc(cap);
    if (!buf) { fclose(fp); return DR_ERR_NOMEM; }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = dr_realloc(buf, cap, 2);
            if (!nb) { free(buf); fclose(fp); return DR_ERR_NOMEM; }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) { free(buf); return dr_error_at(DR_ERR_IO, path, 0, "read failed"); }
    buf[n] = 0;
    *out = buf;
    if (size) *size = n;
    return DR_OK;
}

int dr_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
