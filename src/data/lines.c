/* Line reader over gzip or plain files. gzip is inflated here rather than through gzread:
 * gzread reports neither a stream cut short (it serves growing files) nor bytes after the
 * last member (it ignores them), and both must be errors, not a silently shorter dataset. */
#include "internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define DR_LINES_CHUNK (1u << 18)
#define DR_LINES_IN (1u << 17)

typedef struct lines_src {
    FILE *fp;
    int gzip;            /* the file starts with the gzip magic */
    int in_member;       /* inside a gzip member (its end not seen yet) */
    z_stream z;
    unsigned char *in;   /* compressed input buffer */
    int64_t consumed;    /* raw bytes taken from the file and used */
} lines_src;

static void src_free(lines_src *s) {
    if (!s) return;
    if (s->gzip) inflateEnd(&s->z);
    if (s->fp) fclose(s->fp);
    free(s->in);
    free(s);
}

int dr_lines_open(dr_lines *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->path = path;
    struct stat st;
    if (stat(path, &st) != 0) return dr_error_at(DR_ERR_IO, path, 0, "cannot open: %s", strerror(errno));
    if (S_ISDIR(st.st_mode)) return dr_error_at(DR_ERR_IO, path, 0, "is a directory, expected a file");
    r->raw_size = (int64_t)st.st_size;
    lines_src *s = calloc(1, sizeof *s);
    if (!s) return dr_error(DR_ERR_NOMEM, "out of memory");
    s->fp = fopen(path, "rb");
    if (!s->fp) {
        int e = errno;
        free(s);
        return dr_error_at(DR_ERR_IO, path, 0, "cannot open: %s", strerror(e));
    }
    s->in = malloc(DR_LINES_IN);
    r->cap = DR_LINES_CHUNK;
    r->buf = malloc(r->cap + 1);
    if (!s->in || !r->buf) {
        src_free(s);
        free(r->buf);
        r->buf = NULL;
        return dr_error(DR_ERR_NOMEM, "out of memory");
    }
    int c0 = getc(s->fp), c1 = c0 == EOF ? EOF : getc(s->fp);
    s->gzip = c0 == 0x1f && c1 == 0x8b;
    rewind(s->fp);
    if (s->gzip) {
        /* 15 + 16: gzip only; members are re-initialised one by one in fill_gzip */
        if (inflateInit2(&s->z, 15 + 16) != Z_OK) {
            s->gzip = 0;
            src_free(s);
            free(r->buf);
            r->buf = NULL;
            return dr_error(DR_ERR_NOMEM, "out of memory (zlib)");
        }
        s->in_member = 1;
    }
    r->gz = s;
    return DR_OK;
}

void dr_lines_open_mem(dr_lines *r, const char *name, const char *data, size_t n) {
    memset(r, 0, sizeof *r);
    r->path = name;
    r->mem = data;
    r->mem_len = n;
    r->raw_size = (int64_t)n;
}

static int64_t src_pos(const lines_src *s) { return s->consumed - (s->gzip ? (int64_t)s->z.avail_in : 0); }

/* Inflates into r->buf until some output is there. Returns bytes produced, 0 at a clean
 * end (after a complete last member), or -DR_ERR_* with the message set. */
static int fill_gzip(dr_lines *r, lines_src *s) {
    s->z.next_out = (unsigned char *)r->buf;
    s->z.avail_out = (unsigned)r->cap;
    while (s->z.avail_out == r->cap) {
        if (s->z.avail_in == 0) {
            size_t k = fread(s->in, 1, DR_LINES_IN, s->fp);
            if (ferror(s->fp)) return -dr_error_at(DR_ERR_IO, r->path, 0, "read failed: %s", strerror(errno));
            if (k == 0) {
                if (!s->in_member) return 0;
                return -dr_error_at(DR_ERR_FORMAT, r->path, 0,
                                    "truncated gzip file: the data ends at byte %lld inside a compressed stream",
                                    (long long)s->consumed);
            }
            s->consumed += (int64_t)k;
            s->z.next_in = s->in;
            s->z.avail_in = (unsigned)k;
        }
        if (!s->in_member) {
            /* gzip allows several members back to back; anything else after one is junk */
            if (s->z.next_in[0] != 0x1f)
                return -dr_error_at(DR_ERR_FORMAT, r->path, 0, "%lld bytes of trailing data after the gzip stream (at byte %lld)",
                                    (long long)(r->raw_size - src_pos(s)), (long long)src_pos(s));
            inflateReset(&s->z);
            s->in_member = 1;
        }
        int zr = inflate(&s->z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END) s->in_member = 0;
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -dr_error_at(DR_ERR_FORMAT, r->path, 0, "corrupt gzip data near byte %lld: %s", (long long)src_pos(s),
                                s->z.msg ? s->z.msg : "inflate failed");
    }
    return (int)(r->cap - s->z.avail_out);
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
    lines_src *s = r->gz;
    int k;
    if (s->gzip) {
        k = fill_gzip(r, s);
        if (k < 0) return k;
    } else {
        size_t n = fread(r->buf, 1, r->cap, s->fp);
        if (ferror(s->fp)) return -dr_error_at(DR_ERR_IO, r->path, r->line_no + 1, "read failed: %s", strerror(errno));
        s->consumed += (int64_t)n;
        k = (int)n;
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

/* A UTF-8 byte order mark before the first line (spreadsheet exports) is not data: it
 * would otherwise be part of the first column's name. */
static void strip_bom(dr_lines *r, char **s, size_t *n) {
    if (r->line_no == 1 && *n >= 3 && !memcmp(*s, "\xef\xbb\xbf", 3)) *s += 3, *n -= 3;
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
                strip_bom(r, s, n);
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
    strip_bom(r, s, n);
    return 1;
}

int64_t dr_lines_raw_pos(dr_lines *r) {
    if (r->mem) return (int64_t)r->mem_pos;
    return r->gz ? src_pos(r->gz) : 0;
}

void dr_lines_close(dr_lines *r) {
    src_free(r->gz);
    free(r->buf);
    free(r->line);
    memset(r, 0, sizeof *r);
}
