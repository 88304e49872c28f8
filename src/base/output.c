/* Claiming an output path before the work: one writer per output (an advisory flock on
 * OUT.lock), never an input overwritten, never a device or a directory replaced by a
 * regular file, and a directory we cannot write found before hours of training. */
#include "deeprec/base.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Follows symbolic links one by one (not realpath: a dangling link's target may be an
 * output still to create). */
int dr_output_target(const char *path, char **resolved) {
    *resolved = NULL;
    char cur[PATH_MAX], link[PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
        return dr_error_at(DR_ERR_ARG, path, 0, "path too long");
    struct stat st;
    for (int depth = 0;; depth++) {
        if (lstat(cur, &st) != 0) {
            if (errno != ENOENT) return dr_error_at(DR_ERR_IO, path, 0, "cannot stat %s: %s", cur, strerror(errno));
            *resolved = dr_strdup(cur);
            return *resolved ? DR_OK : DR_ERR_NOMEM;
        }
        if (!S_ISLNK(st.st_mode)) break;
        if (depth == 16) return dr_error_at(DR_ERR_IO, path, 0, "too many levels of symbolic links");
        ssize_t k = readlink(cur, link, sizeof link - 1);
        if (k < 0) return dr_error_at(DR_ERR_IO, path, 0, "cannot read the link %s: %s", cur, strerror(errno));
        link[k] = 0;
        if (link[0] == '/') {
            memcpy(cur, link, (size_t)k + 1);
        } else {
            /* relative to the folder of the link */
            char *slash = strrchr(cur, '/');
            size_t dir_len = slash ? (size_t)(slash - cur) + 1 : 0;
            if (dir_len + (size_t)k + 1 > sizeof cur) return dr_error_at(DR_ERR_ARG, path, 0, "path too long");
            memcpy(cur + dir_len, link, (size_t)k + 1);
        }
    }
    if (!S_ISREG(st.st_mode))
        return dr_error_at(DR_ERR_IO, path, 0, "is not a regular file (%s); refusing to replace it",
                           S_ISDIR(st.st_mode) ? "a directory" : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                           : S_ISFIFO(st.st_mode) ? "a FIFO" : "a special file");
    *resolved = dr_strdup(cur);
    return *resolved ? DR_OK : DR_ERR_NOMEM;
}

int dr_output_claim(const char *out, const char *const *inputs, int n_inputs, int *lock_fd) {
    *lock_fd = -1;
    char *target = NULL;
    int rc = dr_output_target(out, &target);
    if (rc) return rc;
    struct stat so;
    int exists = stat(target, &so) == 0;
    for (int i = 0; i < n_inputs && exists; i++) {
        struct stat si;
        if (inputs[i] && stat(inputs[i], &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            free(target);
            return dr_error_at(DR_ERR_ARG, out, 0, "is the same file as the input %s; refusing to overwrite an input",
                               inputs[i]);
        }
    }
    /* the lock first: a second writer must not even probe with its temp file */
    size_t n = strlen(target) + 16;
    char *lock = dr_malloc(n), *probe = dr_malloc(n + 24);
    if (!lock || !probe) {
        free(lock); free(probe); free(target);
        return DR_ERR_NOMEM;
    }
    snprintf(lock, n, "%s.lock", target);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = dr_error_at(DR_ERR_IO, out, 0, "cannot create the lock file %s: %s", lock, strerror(errno));
        dr_error_hint("is the folder writable?");
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            rc = dr_error_at(DR_ERR_IO, out, 0, "another process is writing this output (%s is locked)", lock);
        else
            rc = dr_error_at(DR_ERR_IO, out, 0, "cannot lock %s: %s", lock, strerror(e));
        goto done;
    }
    /* can we create the temporary file the atomic write needs? (a read-only folder or
     * file system is found now, not after the work) */
    snprintf(probe, n + 24, "%s.tmp.%ld", target, (long)getpid());
    int pfd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (pfd < 0) {
        rc = dr_error_at(DR_ERR_IO, out, 0, "cannot write beside the output (%s): %s", probe, strerror(errno));
        close(fd);
        goto done;
    }
    close(pfd);
    unlink(probe);
    *lock_fd = fd;
done:
    free(lock);
    free(probe);
    free(target);
    return rc;
}
