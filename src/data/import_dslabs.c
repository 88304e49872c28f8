/* dslabs: the `movielens` data.frame of the R package dslabs as Debian ships it
 * (r-cran-dslabs: usr/lib/R/site-library/dslabs/data/Rdata.{rdx,rdb}).
 * Input: the data folder, the package folder (…/dslabs), the root of an
 * extracted .deb (`dpkg-deb -x`), or the .deb file itself (its data archive is
 * read through `dpkg-deb --fsys-tarfile`, so dpkg-deb must be installed — it is
 * on every Debian system; no xz library is linked).
 * Columns used: userId, movieId, rating, timestamp, title, year, genres (a factor
 * of '|'-separated genres; "(no genres listed)" = none). The stored title is
 * "title (year)" as in MovieLens' own movies.csv ("title" alone when year is NA).
 * Row order is the file order. */
#include "internal.h"
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int is_dir_with_rdata(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%.4000s/Rdata.rdx", dir);
    return dr_file_exists(p);
}

static char *find_data_dir(const char *in) {
    static const char *const subs[] = {"", "/data", "/dslabs/data", "/usr/lib/R/site-library/dslabs/data",
                                       "/site-library/dslabs/data", NULL};
    char p[4200];
    for (int i = 0; subs[i]; i++) {
        snprintf(p, sizeof p, "%.4000s%s", in, subs[i]);
        if (is_dir_with_rdata(p)) return dr_strdup(p);
    }
    return NULL;
}

/* Read the two files out of the .deb through dpkg-deb's tar stream. */
static int read_deb(const char *deb, uint8_t **rdx, size_t *rdx_n, uint8_t **rdb, size_t *rdb_n) {
    int fd[2];
    if (pipe(fd) != 0) return dr_error(DR_ERR_IO, "pipe failed: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    char *argv[] = {"dpkg-deb", "--fsys-tarfile", (char *)deb, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, "dpkg-deb", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (e != 0) {
        close(fd[0]);
        dr_error_at(DR_ERR_UNSUPPORTED, deb, 0, "cannot run dpkg-deb: %s", strerror(e));
        return dr_error_hint("extract the package with `dpkg-deb -x FILE.deb DIR` and give DIR as input");
    }
    FILE *f = fdopen(fd[0], "rb");
    int rc = DR_OK;
    *rdx = *rdb = NULL;
    uint8_t hdr[512];
    while (f && fread(hdr, 1, 512, f) == 512) {
        if (!hdr[0]) break;
        char name[260] = {0};
        memcpy(name, hdr, 100);
        if (hdr[345] && !memcmp(hdr + 257, "ustar", 5)) {
            char full[260];
            snprintf(full, sizeof full, "%.155s/%.100s", (const char *)hdr + 345, name);
            memcpy(name, full, sizeof name);
        }
        char sz[13] = {0};
        memcpy(sz, hdr + 124, 12);
        size_t size = (size_t)strtoull(sz, NULL, 8);
        size_t padded = (size + 511) & ~(size_t)511;
        uint8_t **dst = NULL;
        size_t *dn = NULL;
        if (hdr[156] == '0' || hdr[156] == 0) {
            if (dr_ends_with(name, "dslabs/data/Rdata.rdx")) { dst = rdx; dn = rdx_n; }
            else if (dr_ends_with(name, "dslabs/data/Rdata.rdb")) { dst = rdb; dn = rdb_n; }
        }
        if (dst && size <= ((size_t)1 << 30)) {
            uint8_t *buf = malloc(padded ? padded : 1);
            if (!buf || fread(buf, 1, padded, f) != padded) {
                free(buf);
                rc = dr_error_at(DR_ERR_FORMAT, deb, 0, "truncated package archive");
                break;
            }
            free(*dst);
            *dst = buf;
            *dn = size;
        } else {
            uint8_t skip[4096];
            size_t left = padded;
            while (left) {
                size_t k = left < sizeof skip ? left : sizeof skip;
                if (fread(skip, 1, k, f) != k) break;
                left -= k;
            }
            if (left) break;
        }
    }
    if (f) {
        /* drain so the child can finish */
        uint8_t junk[4096];
        while (fread(junk, 1, sizeof junk, f) > 0) {}
        fclose(f);
    } else
        close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!rc && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        rc = dr_error_at(DR_ERR_FORMAT, deb, 0, "dpkg-deb could not read the package (exit status %d)",
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (!rc && (!*rdx || !*rdb))
        rc = dr_error_at(DR_ERR_FORMAT, deb, 0, "no dslabs/data/Rdata.rdx and Rdata.rdb in this package");
    if (rc) {
        free(*rdx);
        free(*rdb);
        *rdx = *rdb = NULL;
    }
    return rc;
}

static int need_col(const dr_rframe *fr, const char *name, const dr_rcol **out) {
    *out = dr_rframe_col(fr, name);
    if (!*out) return dr_error(DR_ERR_FORMAT, "dslabs: the movielens data frame has no column '%s'", name);
    return DR_OK;
}

/* value of row i as a string id (int, double, string or factor) */
static int cell_str(const dr_rcol *c, int64_t i, char *buf, size_t cap, const char **out) {
    if (c->type == 0) {
        int32_t v = c->ints[i];
        if (v == INT32_MIN) return -1;
        if (c->levels) {
            if (v < 1 || v > c->n_levels) return -1;
            *out = c->levels[v - 1];
            return 0;
        }
        snprintf(buf, cap, "%d", v);
    } else if (c->type == 1) {
        double v = c->reals[i];
        if (isnan(v)) return -1;
        snprintf(buf, cap, "%.15g", v);
    } else {
        if (!c->strs[i]) return -1;
        *out = c->strs[i];
        return 0;
    }
    *out = buf;
    return 0;
}

static int cell_num(const dr_rcol *c, int64_t i, double *v) {
    if (c->type == 0) {
        if (c->ints[i] == INT32_MIN || c->levels) return -1;
        *v = c->ints[i];
    } else if (c->type == 1) {
        if (isnan(c->reals[i])) return -1;
        *v = c->reals[i];
    } else
        return -1;
    return 0;
}

int dr_import_dslabs(dr_data_builder *b, const char *const *paths, int n, dr_progress *p) {
    if (n != 1) return dr_error(DR_ERR_ARG, "dslabs: give one input (the package .deb, its extracted folder or its data folder)");
    const char *in = paths[0];
    dr_rframe fr;
    int rc;
    struct stat st;
    if (stat(in, &st) != 0) return dr_error_at(DR_ERR_IO, in, 0, "cannot open: %s", strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char *dir = find_data_dir(in);
        if (!dir)
            return dr_error_at(DR_ERR_ARG, in, 0,
                               "no Rdata.rdx here (looked in ., data, dslabs/data, usr/lib/R/site-library/dslabs/data)");
        rc = dr_rdata_load_lazy(dir, "movielens", &fr);
        free(dir);
    } else {
        uint8_t *rdx = NULL, *rdb = NULL;
        size_t nx = 0, nb = 0;
        rc = read_deb(in, &rdx, &nx, &rdb, &nb);
        if (rc) return rc;
        rc = dr_rdata_lazy_mem(rdx, nx, rdb, nb, "movielens", &fr);
        if (rc) dr_error_context("%s", in);
        free(rdx);
        free(rdb);
    }
    if (rc) return rc;
    const dr_rcol *cu, *ci, *cr, *ct, *cti, *cg, *cy = dr_rframe_col(&fr, "year");
    if ((rc = need_col(&fr, "userId", &cu)) || (rc = need_col(&fr, "movieId", &ci)) ||
        (rc = need_col(&fr, "rating", &cr)) || (rc = need_col(&fr, "timestamp", &ct)) ||
        (rc = need_col(&fr, "title", &cti)) || (rc = need_col(&fr, "genres", &cg)))
        goto done;
    if (p) {
        p->total = fr.n_rows;
        p->done = 0;
    }
    dr_buf cats = {0}, tbuf = {0};
    for (int64_t i = 0; i < fr.n_rows && !rc; i++) {
        char ub[48], ib[48], tb[48], gb[48];
        const char *u, *it, *title = NULL, *genres = NULL;
        double rating, ts;
        if (cell_str(cu, i, ub, sizeof ub, &u)) { rc = dr_error(DR_ERR_FORMAT, "dslabs: row %lld: userId is NA", (long long)i + 1); break; }
        if (cell_str(ci, i, ib, sizeof ib, &it)) { rc = dr_error(DR_ERR_FORMAT, "dslabs: row %lld: movieId is NA", (long long)i + 1); break; }
        if (cell_num(ct, i, &ts)) { rc = dr_error(DR_ERR_FORMAT, "dslabs: row %lld: timestamp is NA", (long long)i + 1); break; }
        if (cell_num(cr, i, &rating)) rating = NAN;
        rc = dr_data_builder_add(b, u, strlen(u), it, strlen(it), (int64_t)ts, rating);
        if (rc) break;
        if (cell_str(cti, i, tb, sizeof tb, &title)) title = NULL;
        double year;
        if (title && cy && cell_num(cy, i, &year) == 0 && year > 0 && year < 10000) {
            tbuf.n = 0;
            char yb[32];
            snprintf(yb, sizeof yb, " (%d)", (int)year);
            if ((rc = dr_buf_put(&tbuf, title, strlen(title))) || (rc = dr_buf_put(&tbuf, yb, strlen(yb)))) break;
            title = tbuf.p;
        }
        if (cell_str(cg, i, gb, sizeof gb, &genres)) genres = NULL;
        if (genres && !strcmp(genres, "(no genres listed)")) genres = "";
        if (genres && (rc = dr_join_cats(genres, strlen(genres), "|", &cats))) break;
        if (title || genres) rc = dr_data_builder_item_text(b, it, strlen(it), title, -1, genres ? cats.p : NULL, -1);
        if (p && (i & 0xFFFF) == 0) dr_progress_update(p, i);
    }
    if (p && !rc) dr_progress_update(p, fr.n_rows);
    dr_buf_free(&cats);
    dr_buf_free(&tbuf);
done:
    dr_rframe_free(&fr);
    return rc;
}
