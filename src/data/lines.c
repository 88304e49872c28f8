/* Line reader over gzip or plain files (zlib's gzread passes plain files through). */
#include "internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define DR_LINES_CHUNK (1u << 18)

int dr_lines_open(dr_lines *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    struct stat st;
    if (stat(path, &st) != 0) return dr_error_at(DR_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    if (S_ISDIR(st.st_mode)) return dr_error_at(DR_ERR_IO, path, 0, "is a directory, expected a file");
    r->raw_size = (int64_t)st.st_size;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return dr_error_at(DR_ERR_IO, path, 0, "cannot open: %s", strerror(errno ? errno : ENOMEM));
    gzbuffer(gz, 1u << 17);
    r->gz = gz;
    r->cap = DR_LINES_CHUNK;
    r->buf = malloc(r->cap + 1);
    if (!r->buf) {
        gzclose(gz);
        r->gz = NULL;
        return dr_error(DR_ERR_NOMEM, "out of memory");
    }
    return DR_OK;
}

void dr_lines_open_mem(dr_lines *r, const char *name, const char *data, size_t n) {
    memset(r, 0, sizeof *r);
    r->path = name;
    r->mem = data;
    r->mem_len = n;
    r->raw_size = (int64_t)n;
}

static int fill(dr_lines *r) {
    /* returns bytes read (>0), 0 at EOF, <0 on error */
    if (r->mem) {
        size_t k = r->mem_len - r->mem_pos;
        if (k > DR_LINES_CHUNK) k = DR_LINES_CHUNK;
        if (!r->buf) {
            r->cap = DR_LINES_CHUNK;
            r->buf = malloc(r->cap + 1);
            if (!r->buf) return -DR_ERR_NOMEM;
        }
        memcpy(r->buf, r->mem + r->mem_pos, k);
        r->mem_pos += k;
        r->beg = 0;
        r->end = k;
        return (int)k;
    }
    int k = gzread((gzFile)r->gz, r->buf, (unsigned)r->cap);
    if (k < 0) {
        int e;
        const char *m = gzerror((gzFile)r->gz, &e);
        dr_error_at(DR_ERR_IO, r->path, r->line_no + 1, "read failed: %s", m ? m : "?");
        return -DR_ERR_IO;
    }
    r->beg = 0;
    r->end = (size_t)k;
    return k;
}

static int line_append(dr_lines *r, size_t *len, const char *s, size_t n) {
    if (*len + n + 1 > r->line_cap) {
        size_t nc = r->line_cap ? r->line_cap : 4096;
        while (nc < *len + n + 1) {
            if (nc > ((size_t)1 << 40)) return -DR_ERR_NOMEM;
            nc *= 2;
        }
        char *p = realloc(r->line, nc);
        if (!p) return -DR_ERR_NOMEM;
        r->line = p;
        r->line_cap = nc;
    }
    memcpy(r->line + *len, s, n);
    *len += n;
    return 0;
}

int dr_lines_next(dr_lines *r, char **s, size_t *n) {
    if (r->eof) return 0;
    size_t len = 0;
    int assembled = 0;
    for (;;) {
        if (r->beg >= r->end) {
            int k = fill(r);
            if (k < 0) {
                if (k == -DR_ERR_NOMEM) dr_error(DR_ERR_NOMEM, "out of memory");
                return k;
            }
            if (k == 0) {
                r->eof = 1;
                if (!assembled || len == 0) {
                    if (!assembled) return 0;
                    /* a final line without newline that was empty: treat as end */
                    return 0;
                }
                break;
            }
        }
        char *b = r->buf + r->beg;
        size_t avail = r->end - r->beg;
        char *nl = memchr(b, '\n', avail);
        if (nl) {
            size_t k = (size_t)(nl - b);
            r->beg += k + 1;
            if (!assembled) {
                b[k] = 0;
                if (k && b[k - 1] == '\r') b[--k] = 0;
                r->line_no++;
                *s = b;
                *n = k;
                return 1;
            }
            if (line_append(r, &len, b, k) < 0) return -dr_error(DR_ERR_NOMEM, "out of memory");
            break;
        }
        if (line_append(r, &len, b, avail) < 0) return -dr_error(DR_ERR_NOMEM, "out of memory");
        assembled = 1;
        r->beg = r->end;
    }
    r->line[len] = 0;
    if (len && r->line[len - 1] == '\r') r->line[--len] = 0;
    r->line_no++;
    *s = r->line;
    *n = len;
    return 1;
}

int64_t dr_lines_raw_pos(dr_lines *r) {
    if (r->mem) return (int64_t)r->mem_pos;
    if (!r->gz) return 0;
    z_off_t o = gzoffset((gzFile)r->gz);
    return o < 0 ? 0 : (int64_t)o;
}

void dr_lines_close(dr_lines *r) {
    if (r->gz) gzclose((gzFile)r->gz);
    free(r->buf);
    free(r->line);
    memset(r, 0, sizeof *r);
}
