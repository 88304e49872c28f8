/* Field splitting and strict number parsing for the line-based importers; error messages. */
#include "internal.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int dr_split(char *s, size_t n, char sep, dr_span *out, int max) {
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && k < max; i++) {
        if (i == n || (s[i] == sep && k < max - 1)) {
            out[k].p = s + start;
            out[k].n = i - start;
            k++;
            start = i + 1;
            if (i == n) break;
        }
    }
    return k;
}

int dr_split_str(char *s, size_t n, const char *sep, dr_span *out, int max) {
    size_t sl = strlen(sep);
    int k = 0;
    size_t start = 0, i = 0;
    while (k < max) {
        const char *hit = NULL;
        if (k < max - 1 && sl <= n)
            for (; i + sl <= n; i++)
                if (!memcmp(s + i, sep, sl)) { hit = s + i; break; }
        if (!hit) {
            out[k].p = s + start;
            out[k].n = n - start;
            k++;
            break;
        }
        out[k].p = s + start;
        out[k].n = (size_t)(hit - (s + start));
        k++;
        i = (size_t)(hit - s) + sl;
        start = i;
    }
    return k;
}

int dr_split_ws(const char *s, size_t n, dr_span **out, int *cap) {
    int k = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i >= n) break;
        size_t st = i;
        while (i < n && s[i] != ' ' && s[i] != '\t') i++;
        if (k >= *cap) {
            int nc = *cap ? *cap * 2 : 64;
            dr_span *p = realloc(*out, (size_t)nc * sizeof *p);
            if (!p) return -1;
            *out = p;
            *cap = nc;
        }
        (*out)[k].p = s + st;
        (*out)[k].n = i - st;
        k++;
    }
    return k;
}

int dr_split_csv(char *s, size_t n, dr_span *out, int max) {
    int k = 0;
    size_t i = 0;
    for (;;) {
        if (k >= max) return k;
        if (i < n && s[i] == '"') {
            size_t w = i; /* write position (unescape in place) */
            size_t st = i;
            i++;
            int closed = 0;
            while (i < n) {
                if (s[i] == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        s[w++] = '"';
                        i += 2;
                        continue;
                    }
                    closed = 1;
                    i++;
                    break;
                }
                s[w++] = s[i++];
            }
            if (!closed) return -1;
            out[k].p = s + st;
            out[k].n = w - st;
            k++;
            /* anything up to the next comma after a closing quote is ignored only if blank */
            while (i < n && s[i] != ',') {
                if (s[i] != ' ' && s[i] != '\t') return -1;
                i++;
            }
        } else {
            size_t st = i;
            while (i < n && s[i] != ',') i++;
            out[k].p = s + st;
            out[k].n = i - st;
            k++;
        }
        if (i >= n) return k;
        i++; /* the comma */
    }
}

int dr_parse_i64(dr_span f, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (f.n && (f.p[0] == '-' || f.p[0] == '+')) {
        neg = f.p[0] == '-';
        i = 1;
    }
    if (i >= f.n || f.n - i > 19) return -1;
    uint64_t v = 0;
    for (; i < f.n; i++) {
        if (f.p[i] < '0' || f.p[i] > '9') return -1;
        v = v * 10 + (uint64_t)(f.p[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int dr_parse_f64(dr_span f, double *out) {
    char tmp[64];
    if (f.n == 0 || f.n >= sizeof tmp) return -1;
    memcpy(tmp, f.p, f.n);
    tmp[f.n] = 0;
    if (tmp[0] == ' ' || tmp[0] == '\t') return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + f.n || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int dr_parse_ts(dr_span f, int64_t *out) {
    if (dr_parse_i64(f, out) == 0) return 0;
    double v;
    if (dr_parse_f64(f, &v) != 0 || v > 9.2e18 || v < -9.2e18) return -1;
    *out = (int64_t)v;
    return 0;
}

int dr_field_error(const char *path, long line, int field_no, const char *field_name, const char *expected,
                   dr_span got) {
    char shown[64];
    size_t k = 0;
    for (size_t i = 0; i < got.n && k < 40; i++) {
        unsigned char c = (unsigned char)got.p[i];
        shown[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    shown[k] = 0;
    char *clean = dr_utf8_sanitize(shown, k);
    int rc;
    if (field_no > 0)
        rc = dr_error_at(DR_ERR_FORMAT, path, line, "field %d (%s): expected %s, got '%s%s'", field_no, field_name,
                         expected, clean ? clean : "", got.n > 40 ? "..." : "");
    else
        rc = dr_error_at(DR_ERR_FORMAT, path, line, "field '%s': expected %s, got '%s%s'", field_name, expected,
                         clean ? clean : "", got.n > 40 ? "..." : "");
    free(clean);
    return rc;
}

/* ---- inputs ---- */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void dr_free_strs(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int dr_expand_inputs(const char *const *in, int n, char ***out, int *nout) {
    char **v = NULL;
    int k = 0, cap = 0;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(in[i], &st) != 0) {
            dr_free_strs(v, k);
            return dr_error_at(DR_ERR_IO, in[i], 0, "cannot open: %s", strerror(errno));
        }
        char **add = NULL;
        int na = 0, ca = 0;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(in[i]);
            if (!d) {
                dr_free_strs(v, k);
                return dr_error_at(DR_ERR_IO, in[i], 0, "cannot open directory: %s", strerror(errno));
            }
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.') continue;
                size_t L = strlen(in[i]) + strlen(e->d_name) + 2;
                char *p = malloc(L);
                if (!p) break;
                snprintf(p, L, "%s/%s", in[i], e->d_name);
                struct stat s2;
                if (stat(p, &s2) != 0 || !S_ISREG(s2.st_mode)) {
                    free(p);
                    continue;
                }
                if (na >= ca) {
                    ca = ca ? ca * 2 : 16;
                    char **q = realloc(add, (size_t)ca * sizeof *q);
                    if (!q) { free(p); break; }
                    add = q;
                }
                add[na++] = p;
            }
            closedir(d);
            if (na) qsort(add, (size_t)na, sizeof *add, cmp_str);
        } else {
            add = malloc(sizeof *add);
            if (add) add[na++] = dr_strdup(in[i]);
        }
        for (int j = 0; j < na; j++) {
            if (k >= cap) {
                cap = cap ? cap * 2 : 16;
                char **q = realloc(v, (size_t)cap * sizeof *q);
                if (!q) {
                    dr_free_strs(add, na);
                    dr_free_strs(v, k);
                    return dr_error(DR_ERR_NOMEM, "out of memory");
                }
                v = q;
            }
            v[k++] = add[j];
        }
        free(add);
    }
    *out = v;
    *nout = k;
    return DR_OK;
}


void dr_import_tick(dr_progress *p, int64_t base, dr_lines *r) {
    if (p && (r->line_no & 0xFFFF) == 0) dr_progress_update(p, base + dr_lines_raw_pos(r));
}

int dr_for_lines(const char *path, dr_progress *p, dr_line_fn fn, void *ctx) {
    dr_lines r;
    int rc = dr_lines_open(&r, path);
    if (rc) return rc;
    int64_t base = p ? p->done : 0;
    char *s;
    size_t n;
    int k;
    while ((k = dr_lines_next(&r, &s, &n)) == 1) {
        dr_import_tick(p, base, &r);
        if ((rc = fn(ctx, &r, s, n)) != DR_OK) break;
    }
    if (k < 0) rc = -k;
    if (p) dr_progress_update(p, base + r.raw_size);
    dr_lines_close(&r);
    return rc;
}
