/* A minimal reader of R's serialization format (XDR, versions 2 and 3) for the
 * objects a data.frame is made of, and of R's lazy-load databases
 * (NAME.rdx index + NAME.rdb objects) as shipped in R packages' data/ folders.
 *
 * Supported: NULL, symbols, pairlists (attributes), CHARSXP (NA_STRING; Latin-1
 * converted to UTF-8), logical/integer/double/complex/string/raw vectors, lists,
 * environments (read and ignored), references, persistent-name placeholders,
 * S4 objects (no slots kept), and the ALTREP classes compact_intseq,
 * compact_realseq, wrap_* and deferred_string. Closures, byte code, external
 * pointers and weak references are refused (DR_ERR_UNSUPPORTED). */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum {
    R_NILSXP = 0, R_SYMSXP = 1, R_LISTSXP = 2, R_CLOSXP = 3, R_ENVSXP = 4, R_PROMSXP = 5, R_LANGSXP = 6,
    R_SPECIALSXP = 7, R_BUILTINSXP = 8, R_CHARSXP = 9, R_LGLSXP = 10, R_INTSXP = 13, R_REALSXP = 14,
    R_CPLXSXP = 15, R_STRSXP = 16, R_DOTSXP = 17, R_VECSXP = 19, R_EXPRSXP = 20, R_BCODESXP = 21,
    R_EXTPTRSXP = 22, R_WEAKREFSXP = 23, R_RAWSXP = 24, R_S4SXP = 25,
    R_REFSXP = 255, R_NILVALUE = 254, R_GLOBALENV = 253, R_UNBOUNDVALUE = 252, R_MISSINGARG = 251,
    R_BASENAMESPACE = 250, R_NAMESPACESXP = 249, R_PACKAGESXP = 248, R_PERSISTSXP = 247,
    R_EMPTYENV = 242, R_BASEENV = 241, R_ATTRLANGSXP = 240, R_ATTRLISTSXP = 239, R_ALTREP = 238
};

#define R_MAX_DEPTH 64
#define R_MAX_LEN ((int64_t)1 << 31)

typedef struct robj {
    int type;
    int64_t n;
    int32_t *ints;        /* LGLSXP, INTSXP */
    double *reals;        /* REALSXP */
    char **strs;          /* STRSXP (NULL = NA) */
    struct robj **elts;   /* VECSXP/EXPRSXP; pairlist values */
    char **tags;          /* pairlist tags (symbol names; may be NULL) */
    char *str;            /* CHARSXP / SYMSXP name (NULL = NA) */
    struct robj *attr;    /* pairlist of attributes */
} robj;

typedef struct rreader {
    const uint8_t *b;
    size_t n, pos;
    robj **all;
    size_t n_all, cap_all;
    robj **refs;
    size_t n_refs, cap_refs;
    int version;
} rreader;

static robj r_nil = {R_NILSXP, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL};

static robj *node(rreader *r, int type) {
    if (r->n_all >= r->cap_all) {
        size_t nc = r->cap_all ? r->cap_all * 2 : 256;
        robj **p = realloc(r->all, nc * sizeof *p);
        if (!p) return NULL;
        r->all = p;
        r->cap_all = nc;
    }
    robj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->type = type;
    r->all[r->n_all++] = o;
    return o;
}

static int add_ref(rreader *r, robj *o) {
    if (r->n_refs >= r->cap_refs) {
        size_t nc = r->cap_refs ? r->cap_refs * 2 : 64;
        robj **p = realloc(r->refs, nc * sizeof *p);
        if (!p) return dr_error(DR_ERR_NOMEM, "out of memory");
        r->refs = p;
        r->cap_refs = nc;
    }
    r->refs[r->n_refs++] = o;
    return DR_OK;
}

static void obj_free(robj *o) {
    if (o->strs)
        for (int64_t i = 0; i < o->n; i++) free(o->strs[i]);
    if (o->tags)
        for (int64_t i = 0; i < o->n; i++) free(o->tags[i]);
    free(o->ints);
    free(o->reals);
    free(o->strs);
    free(o->elts);
    free(o->tags);
    free(o->str);
    free(o);
}

static void reader_free(rreader *r) {
    for (size_t i = 0; i < r->n_all; i++) obj_free(r->all[i]);
    free(r->all);
    free(r->refs);
}

static int trunc_err(rreader *r) {
    return dr_error(DR_ERR_FORMAT, "R data: truncated at byte %zu of %zu", r->pos, r->n);
}

static int rd_int(rreader *r, int32_t *v) {
    *v = 0;
    if (r->n - r->pos < 4) return trunc_err(r);
    const uint8_t *p = r->b + r->pos;
    *v = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    r->pos += 4;
    return DR_OK;
}

static int rd_len(rreader *r, int64_t *len) {
    int32_t a;
    *len = 0;
    if (rd_int(r, &a)) return dr_error_code();
    if (a == -1) {
        int32_t hi, lo;
        if (rd_int(r, &hi) || rd_int(r, &lo)) return dr_error_code();
        uint64_t u = ((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo;
        if (u > (uint64_t)R_MAX_LEN) return dr_error(DR_ERR_FORMAT, "R data: bad vector length %llu", (unsigned long long)u);
        *len = (int64_t)u;
    } else
        *len = a;
    if (*len < 0 || *len > R_MAX_LEN) return dr_error(DR_ERR_FORMAT, "R data: bad vector length %lld", (long long)*len);
    return DR_OK;
}

/* Bytes left must cover `count` elements of `size` bytes. */
static int need_bytes(rreader *r, int64_t count, size_t size) {
    size_t tot;
    if (!dr_mul_ok((size_t)count, size, &tot) || tot > r->n - r->pos) return trunc_err(r);
    return DR_OK;
}

static int read_item(rreader *r, int depth, robj **out);

static int read_charsxp_body(rreader *r, int32_t flags, char **out, int *na) {
    int32_t len;
    if (rd_int(r, &len)) return dr_error_code();
    *out = NULL;
    *na = 0;
    if (len == -1) {
        *na = 1;
        return DR_OK;
    }
    if (len < 0) return dr_error(DR_ERR_FORMAT, "R data: bad string length %d", len);
    if (need_bytes(r, len, 1)) return dr_error_code();
    const char *s = (const char *)r->b + r->pos;
    int levels = flags >> 12;
    char *v = (levels & 4) ? dr_latin1_to_utf8(s, (size_t)len) : dr_utf8_sanitize(s, (size_t)len);
    if (!v) return dr_error(DR_ERR_NOMEM, "out of memory");
    r->pos += (size_t)len;
    *out = v;
    return DR_OK;
}

static int read_stringvec(rreader *r, int depth, robj *o) {
    int32_t z = 0;
    if (rd_int(r, &z)) return dr_error_code();
    if (z != 0) return dr_error(DR_ERR_FORMAT, "R data: bad string vector marker");
    int64_t len;
    if (rd_len(r, &len)) return dr_error_code();
    if (need_bytes(r, len, 8)) return dr_error_code();
    o->strs = calloc((size_t)(len ? len : 1), sizeof(char *));
    if (!o->strs) return dr_error(DR_ERR_NOMEM, "out of memory");
    o->n = len;
    for (int64_t i = 0; i < len; i++) {
        robj *c;
        if (read_item(r, depth + 1, &c)) return dr_error_code();
        if (c->type == R_CHARSXP && c->str) o->strs[i] = dr_strdup(c->str);
    }
    return DR_OK;
}

static const char *sym_name(robj *o) { return o && o->type == R_SYMSXP ? o->str : NULL; }

/* A pairlist (LISTSXP and friends): cars into elts, tags into tags; read iteratively along the CDR. */
static int read_pairlist(rreader *r, int32_t flags, int depth, robj **out) {
    robj *o = node(r, R_LISTSXP);
    if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
    size_t cap = 0;
    for (;;) {
        int type = flags & 0xFF;
        if (type == R_NILVALUE) break;
        if (!(type == R_LISTSXP || type == R_LANGSXP || type == R_CLOSXP || type == R_PROMSXP || type == R_DOTSXP ||
              type == R_ATTRLISTSXP || type == R_ATTRLANGSXP)) {
            /* dotted pair: read and drop the final CDR */
            r->pos -= 4;
            robj *junk;
            if (read_item(r, depth + 1, &junk)) return dr_error_code();
            break;
        }
        robj *attr = NULL, *tag = NULL, *car = NULL;
        if ((flags & (1 << 9)) && read_item(r, depth + 1, &attr)) return dr_error_code();
        if ((flags & (1 << 10)) && read_item(r, depth + 1, &tag)) return dr_error_code();
        if (read_item(r, depth + 1, &car)) return dr_error_code();
        if ((size_t)o->n >= cap) {
            cap = cap ? cap * 2 : 8;
            robj **e = realloc(o->elts, cap * sizeof *e);
            if (!e) return dr_error(DR_ERR_NOMEM, "out of memory");
            o->elts = e;
            char **t = realloc(o->tags, cap * sizeof *t);
            if (!t) return dr_error(DR_ERR_NOMEM, "out of memory");
            o->tags = t;
        }
        o->elts[o->n] = car;
        const char *nm = sym_name(tag);
        o->tags[o->n] = nm ? dr_strdup(nm) : NULL;
        o->n++;
        if (!o->attr && attr) o->attr = attr;
        if (rd_int(r, &flags)) return dr_error_code();
    }
    *out = o;
    return DR_OK;
}

static robj *attr_get(robj *o, const char *name) {
    robj *a = o ? o->attr : NULL;
    if (!a || a->type != R_LISTSXP) return NULL;
    for (int64_t i = 0; i < a->n; i++)
        if (a->tags[i] && !strcmp(a->tags[i], name)) return a->elts[i];
    return NULL;
}

static int read_altrep(rreader *r, int depth, robj **out) {
    robj *info, *state, *attr;
    if (read_item(r, depth + 1, &info) || read_item(r, depth + 1, &state) || read_item(r, depth + 1, &attr))
        return dr_error_code();
    const char *cls = info && info->type == R_LISTSXP && info->n >= 1 ? sym_name(info->elts[0]) : NULL;
    if (!cls) return dr_error(DR_ERR_FORMAT, "R data: ALTREP object without a class");
    robj *o = NULL;
    if (!strcmp(cls, "compact_intseq") || !strcmp(cls, "compact_realseq")) {
        if (state->type != R_REALSXP || state->n != 3) return dr_error(DR_ERR_FORMAT, "R data: bad %s state", cls);
        double n = state->reals[0], n1 = state->reals[1], inc = state->reals[2];
        if (!(n >= 0 && n <= (double)R_MAX_LEN) || !isfinite(n1) || !isfinite(inc))
            return dr_error(DR_ERR_FORMAT, "R data: bad %s length", cls);
        int is_int = cls[8] == 'i';
        o = node(r, is_int ? R_INTSXP : R_REALSXP);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        o->n = (int64_t)n;
        if (is_int) {
            o->ints = malloc((size_t)(o->n ? o->n : 1) * sizeof *o->ints);
            if (!o->ints) return dr_error(DR_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; i < o->n; i++) {
                double v = n1 + inc * (double)i;
                o->ints[i] = v > INT32_MAX || v < -INT32_MAX ? INT32_MIN : (int32_t)v;
            }
        } else {
            o->reals = malloc((size_t)(o->n ? o->n : 1) * sizeof *o->reals);
            if (!o->reals) return dr_error(DR_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; i < o->n; i++) o->reals[i] = n1 + inc * (double)i;
        }
    } else if (!strncmp(cls, "wrap_", 5)) {
        if (state->type != R_LISTSXP && state->type != R_VECSXP) return dr_error(DR_ERR_FORMAT, "R data: bad %s state", cls);
        if (state->n < 1) return dr_error(DR_ERR_FORMAT, "R data: bad %s state", cls);
        o = state->elts[0];
    } else if (!strcmp(cls, "deferred_string")) {
        robj *arg = state->type == R_LISTSXP && state->n >= 1 ? state->elts[0] : NULL;
        if (!arg || (arg->type != R_INTSXP && arg->type != R_REALSXP))
            return dr_error(DR_ERR_FORMAT, "R data: bad deferred_string state");
        o = node(r, R_STRSXP);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        o->n = arg->n;
        o->strs = calloc((size_t)(o->n ? o->n : 1), sizeof(char *));
        if (!o->strs) return dr_error(DR_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < o->n; i++) {
            char tmp[40];
            if (arg->type == R_INTSXP) {
                if (arg->ints[i] == INT32_MIN) continue;
                snprintf(tmp, sizeof tmp, "%d", arg->ints[i]);
            } else {
                if (isnan(arg->reals[i])) continue;
                snprintf(tmp, sizeof tmp, "%.15g", arg->reals[i]);
            }
            o->strs[i] = dr_strdup(tmp);
        }
    } else
        return dr_error(DR_ERR_UNSUPPORTED, "R data: ALTREP class '%s' not supported", cls);
    if (attr && attr->type == R_LISTSXP) o->attr = attr;
    *out = o;
    return DR_OK;
}

static int read_item(rreader *r, int depth, robj **out) {
    *out = &r_nil;
    if (depth > R_MAX_DEPTH) return dr_error(DR_ERR_FORMAT, "R data: nesting deeper than %d", R_MAX_DEPTH);
    int32_t flags;
    if (rd_int(r, &flags)) return dr_error_code();
    int type = flags & 0xFF;
    int has_attr = (flags >> 9) & 1;
    robj *o = NULL;
    switch (type) {
    case R_NILVALUE: *out = &r_nil; return DR_OK;
    case R_EMPTYENV: case R_BASEENV: case R_GLOBALENV: case R_UNBOUNDVALUE: case R_MISSINGARG:
    case R_BASENAMESPACE:
        o = node(r, R_ENVSXP);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        *out = o;
        return DR_OK;
    case R_REFSXP: {
        int32_t idx = (int32_t)((uint32_t)flags >> 8);
        if (idx == 0 && rd_int(r, &idx)) return dr_error_code();
        if (idx < 1 || (size_t)idx > r->n_refs) return dr_error(DR_ERR_FORMAT, "R data: bad reference %d", idx);
        *out = r->refs[idx - 1];
        return DR_OK;
    }
    case R_PERSISTSXP: case R_PACKAGESXP: case R_NAMESPACESXP:
        o = node(r, R_ENVSXP);
        if (!o || add_ref(r, o)) return dr_error(DR_ERR_NOMEM, "out of memory");
        if (read_stringvec(r, depth, o)) return dr_error_code();
        *out = o;
        return DR_OK;
    case R_SYMSXP: {
        o = node(r, R_SYMSXP);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        robj *c;
        if (read_item(r, depth + 1, &c)) return dr_error_code();
        if (c->type != R_CHARSXP) return dr_error(DR_ERR_FORMAT, "R data: symbol name is not a string");
        o->str = c->str ? dr_strdup(c->str) : dr_strdup("NA");
        if (add_ref(r, o)) return dr_error_code();
        *out = o;
        return DR_OK;
    }
    case R_ENVSXP: {
        o = node(r, R_ENVSXP);
        if (!o || add_ref(r, o)) return dr_error(DR_ERR_NOMEM, "out of memory");
        int32_t locked;
        robj *x;
        if (rd_int(r, &locked)) return dr_error_code();
        for (int k = 0; k < 4; k++)
            if (read_item(r, depth + 1, &x)) return dr_error_code();
        *out = o;
        return DR_OK;
    }
    case R_LISTSXP: case R_LANGSXP: case R_PROMSXP: case R_DOTSXP: case R_ATTRLISTSXP: case R_ATTRLANGSXP:
        return read_pairlist(r, flags, depth, out);
    case R_ALTREP:
        return read_altrep(r, depth, out);
    case R_CHARSXP: {
        o = node(r, R_CHARSXP);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        int na;
        if (read_charsxp_body(r, flags, &o->str, &na)) return dr_error_code();
        *out = o;
        return DR_OK;
    }
    case R_LGLSXP: case R_INTSXP: case R_REALSXP: case R_CPLXSXP: case R_STRSXP: case R_VECSXP: case R_EXPRSXP:
    case R_RAWSXP: {
        int64_t len;
        if (rd_len(r, &len)) return dr_error_code();
        o = node(r, type == R_LGLSXP ? R_INTSXP : type == R_EXPRSXP ? R_VECSXP : type);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        o->n = len;
        size_t cnt = (size_t)(len ? len : 1);
        if (type == R_LGLSXP || type == R_INTSXP) {
            if (need_bytes(r, len, 4)) return dr_error_code();
            o->ints = malloc(cnt * 4);
            if (!o->ints) return dr_error(DR_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; i < len; i++) rd_int(r, &o->ints[i]);
        } else if (type == R_REALSXP || type == R_CPLXSXP) {
            size_t per = type == R_CPLXSXP ? 16 : 8;
            if (need_bytes(r, len, per)) return dr_error_code();
            if (type == R_REALSXP) {
                o->reals = malloc(cnt * 8);
                if (!o->reals) return dr_error(DR_ERR_NOMEM, "out of memory");
                for (int64_t i = 0; i < len; i++) {
                    const uint8_t *p = r->b + r->pos + 8 * (size_t)i;
                    uint64_t u = 0;
                    for (int k = 0; k < 8; k++) u = (u << 8) | p[k];
                    memcpy(&o->reals[i], &u, 8);
                }
            }
            r->pos += (size_t)len * per;
        } else if (type == R_RAWSXP) {
            if (need_bytes(r, len, 1)) return dr_error_code();
            r->pos += (size_t)len;
        } else if (type == R_STRSXP) {
            if (need_bytes(r, len, 8)) return dr_error_code();
            o->strs = calloc(cnt, sizeof(char *));
            if (!o->strs) return dr_error(DR_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; i < len; i++) {
                int32_t cf = 0;
                if (rd_int(r, &cf)) return dr_error_code();
                if ((cf & 0xFF) != R_CHARSXP) return dr_error(DR_ERR_FORMAT, "R data: string vector element is not a string");
                int na;
                if (read_charsxp_body(r, cf, &o->strs[i], &na)) return dr_error_code();
            }
        } else { /* VECSXP */
            if (need_bytes(r, len, 4)) return dr_error_code();
            o->elts = calloc(cnt, sizeof *o->elts);
            if (!o->elts) return dr_error(DR_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; i < len; i++)
                if (read_item(r, depth + 1, &o->elts[i])) return dr_error_code();
        }
        break;
    }
    case R_S4SXP:
        o = node(r, R_S4SXP);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        break;
    default:
        return dr_error(DR_ERR_UNSUPPORTED, "R data: object type %d not supported", type);
    }
    if (has_attr) {
        robj *a;
        if (read_item(r, depth + 1, &a)) return dr_error_code();
        if (a->type == R_LISTSXP) o->attr = a;
    }
    *out = o;
    return DR_OK;
}

static int read_header(rreader *r) {
    if (r->n < 2 || r->b[0] != 'X' || r->b[1] != '\n') {
        if (r->n >= 2 && (r->b[0] == 'A' || r->b[0] == 'B'))
            return dr_error(DR_ERR_UNSUPPORTED, "R data: only the XDR serialization format is supported");
        return dr_error(DR_ERR_FORMAT, "R data: not an R serialization (expected 'X\\n')");
    }
    r->pos = 2;
    int32_t ver = 0, writer_version, min_reader_version; /* both unused: R's own versions */
    if (rd_int(r, &ver) || rd_int(r, &writer_version) || rd_int(r, &min_reader_version)) return dr_error_code();
    if (ver != 2 && ver != 3) return dr_error(DR_ERR_UNSUPPORTED, "R data: serialization version %d not supported", ver);
    r->version = ver;
    if (ver == 3) {
        int32_t nelen = 0;
        if (rd_int(r, &nelen)) return dr_error_code();
        if (nelen < 0 || nelen > 64 || need_bytes(r, nelen, 1)) return dr_error(DR_ERR_FORMAT, "R data: bad encoding name");
        r->pos += (size_t)nelen;
    }
    return DR_OK;
}

static int parse(rreader *r, const uint8_t *buf, size_t n, robj **root) {
    memset(r, 0, sizeof *r);
    r->b = buf;
    r->n = n;
    if (read_header(r)) return dr_error_code();
    return read_item(r, 0, root);
}

static int has_class(robj *o, const char *cls) {
    robj *c = attr_get(o, "class");
    if (!c || c->type != R_STRSXP) return 0;
    for (int64_t i = 0; i < c->n; i++)
        if (c->strs[i] && !strcmp(c->strs[i], cls)) return 1;
    return 0;
}

void dr_rframe_free(dr_rframe *f) {
    if (!f || !f->cols) return;
    for (int c = 0; c < f->n_cols; c++) {
        dr_rcol *k = &f->cols[c];
        free(k->name);
        free(k->ints);
        free(k->reals);
        if (k->strs)
            for (int64_t i = 0; i < k->n; i++) free(k->strs[i]);
        free(k->strs);
        if (k->levels)
            for (int32_t i = 0; i < k->n_levels; i++) free(k->levels[i]);
        free(k->levels);
    }
    free(f->cols);
    memset(f, 0, sizeof *f);
}

static int to_frame(robj *root, dr_rframe *out) {
    memset(out, 0, sizeof *out);
    if (root->type != R_VECSXP) return dr_error(DR_ERR_FORMAT, "R data: expected a data.frame (a list), got type %d", root->type);
    robj *names = attr_get(root, "names");
    if (!names || names->type != R_STRSXP || names->n != root->n)
        return dr_error(DR_ERR_FORMAT, "R data: the list has no column names");
    if (root->n > 4096) return dr_error(DR_ERR_FORMAT, "R data: too many columns");
    out->cols = calloc((size_t)(root->n ? root->n : 1), sizeof *out->cols);
    if (!out->cols) return dr_error(DR_ERR_NOMEM, "out of memory");
    out->n_cols = (int)root->n;
    out->n_rows = -1;
    for (int c = 0; c < out->n_cols; c++) {
        robj *v = root->elts[c];
        dr_rcol *k = &out->cols[c];
        k->name = dr_strdup(names->strs[c] ? names->strs[c] : "NA");
        if (!k->name) goto nomem;
        k->n = v->n;
        size_t cnt = (size_t)(v->n ? v->n : 1);
        if (v->type == R_INTSXP) {
            k->type = 0;
            k->ints = malloc(cnt * 4);
            if (!k->ints) goto nomem;
            if (v->n) memcpy(k->ints, v->ints, (size_t)v->n * 4);
            robj *lv = attr_get(v, "levels");
            if (lv && lv->type == R_STRSXP && has_class(v, "factor")) {
                k->n_levels = (int32_t)lv->n;
                k->levels = calloc((size_t)(lv->n ? lv->n : 1), sizeof(char *));
                if (!k->levels) goto nomem;
                for (int64_t i = 0; i < lv->n; i++) {
                    k->levels[i] = dr_strdup(lv->strs[i] ? lv->strs[i] : "");
                    if (!k->levels[i]) goto nomem;
                }
            }
        } else if (v->type == R_REALSXP) {
            k->type = 1;
            k->reals = malloc(cnt * 8);
            if (!k->reals) goto nomem;
            if (v->n) memcpy(k->reals, v->reals, (size_t)v->n * 8);
        } else if (v->type == R_STRSXP) {
            k->type = 2;
            k->strs = calloc(cnt, sizeof(char *));
            if (!k->strs) goto nomem;
            for (int64_t i = 0; i < v->n; i++)
                if (v->strs[i] && !(k->strs[i] = dr_strdup(v->strs[i]))) goto nomem;
        } else {
            dr_rframe_free(out);
            return dr_error(DR_ERR_UNSUPPORTED, "R data: column %d has type %d (not int/double/string)", c + 1, v->type);
        }
        if (out->n_rows >= 0 && out->n_rows != k->n) {
            long long a = (long long)out->n_rows, b = (long long)k->n;
            dr_rframe_free(out);
            return dr_error(DR_ERR_FORMAT, "R data: columns have different lengths (%lld vs %lld)", a, b);
        }
        out->n_rows = k->n;
    }
    if (out->n_rows < 0) out->n_rows = 0;
    return DR_OK;
nomem:
    dr_rframe_free(out);
    return dr_error(DR_ERR_NOMEM, "out of memory");
}

int dr_rdata_read_frame(const uint8_t *buf, size_t n, dr_rframe *out) {
    memset(out, 0, sizeof *out);
    rreader r;
    robj *root = NULL;
    int rc = parse(&r, buf, n, &root);
    if (!rc) rc = to_frame(root, out);
    reader_free(&r);
    return rc;
}

const dr_rcol *dr_rframe_col(const dr_rframe *f, const char *name) {
    for (int c = 0; c < f->n_cols; c++)
        if (!strcmp(f->cols[c].name, name)) return &f->cols[c];
    return NULL;
}

/* ---- lazy-load database ---- */

/* Inflate zlib (or gzip, auto-detected) data of known output size (<= 1 GiB). */
static int inflate_all(const uint8_t *in, size_t n, size_t out_n, uint8_t **out, int gzip_auto) {
    if (out_n > ((size_t)1 << 30)) return dr_error(DR_ERR_FORMAT, "R data: object too large (%zu bytes)", out_n);
    uint8_t *o = malloc(out_n ? out_n : 1);
    if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, gzip_auto ? 15 + 32 : 15) != Z_OK) {
        free(o);
        return dr_error(DR_ERR_INTERNAL, "zlib init failed");
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = o;
    z.avail_out = (uInt)out_n;
    int zr = inflate(&z, Z_FINISH);
    size_t got = out_n - z.avail_out;
    inflateEnd(&z);
    if (zr != Z_STREAM_END || got != out_n) {
        free(o);
        return dr_error(DR_ERR_FORMAT, "R data: zlib data corrupt or of the wrong size (%s)", zr == Z_STREAM_END ? "size" : "stream");
    }
    *out = o;
    return DR_OK;
}

/* gunzip of unknown size (the .rdx), capped at 64 MiB. */
static int gunzip_any(const uint8_t *in, size_t n, uint8_t **out, size_t *out_n) {
    if (n >= 2 && in[0] == 'X' && in[1] == '\n') { /* not compressed */
        uint8_t *o = malloc(n);
        if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
        memcpy(o, in, n);
        *out = o;
        *out_n = n;
        return DR_OK;
    }
    size_t cap = 4096, len = 0;
    uint8_t *o = malloc(cap);
    if (!o) return dr_error(DR_ERR_NOMEM, "out of memory");
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) {
        free(o);
        return dr_error(DR_ERR_INTERNAL, "zlib init failed");
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    int zr;
    do {
        if (len == cap) {
            if (cap >= ((size_t)64 << 20)) { zr = Z_MEM_ERROR; break; }
            uint8_t *p = realloc(o, cap * 2);
            if (!p) { zr = Z_MEM_ERROR; break; }
            o = p;
            cap *= 2;
        }
        z.next_out = o + len;
        z.avail_out = (uInt)(cap - len);
        zr = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
    } while (zr == Z_OK);
    inflateEnd(&z);
    if (zr != Z_STREAM_END) {
        free(o);
        return dr_error(DR_ERR_FORMAT, "R data: index (.rdx) is not valid gzip/zlib data");
    }
    *out = o;
    *out_n = len;
    return DR_OK;
}

int dr_rdata_lazy_mem(const uint8_t *rdx, size_t rdx_n, const uint8_t *rdb, size_t rdb_n, const char *name,
                      dr_rframe *out) {
    memset(out, 0, sizeof *out);
    uint8_t *idx = NULL, *obj = NULL;
    size_t idx_n = 0;
    rreader r;
    memset(&r, 0, sizeof r);
    robj *root = NULL;
    int rc = gunzip_any(rdx, rdx_n, &idx, &idx_n);
    if (rc) return rc;
    rc = parse(&r, idx, idx_n, &root);
    if (rc) goto done;
    robj *names = root->type == R_VECSXP ? attr_get(root, "names") : NULL;
    robj *vars = NULL, *comp = NULL;
    if (names && names->type == R_STRSXP && names->n == root->n)
        for (int64_t i = 0; i < root->n; i++) {
            if (names->strs[i] && !strcmp(names->strs[i], "variables")) vars = root->elts[i];
            if (names->strs[i] && !strcmp(names->strs[i], "compressed")) comp = root->elts[i];
        }
    if (!vars || vars->type != R_VECSXP) {
        rc = dr_error(DR_ERR_FORMAT, "R data: the .rdx index has no 'variables' list");
        goto done;
    }
    robj *vn = attr_get(vars, "names");
    robj *ent = NULL;
    if (vn && vn->type == R_STRSXP && vn->n == vars->n)
        for (int64_t i = 0; i < vars->n; i++)
            if (vn->strs[i] && !strcmp(vn->strs[i], name)) ent = vars->elts[i];
    if (!ent) {
        rc = dr_error(DR_ERR_FORMAT, "R data: no object named '%s' in the index", name);
        goto done;
    }
    double off, len;
    if (ent->type == R_INTSXP && ent->n == 2) {
        off = ent->ints[0];
        len = ent->ints[1];
    } else if (ent->type == R_REALSXP && ent->n == 2) {
        off = ent->reals[0];
        len = ent->reals[1];
    } else {
        rc = dr_error(DR_ERR_FORMAT, "R data: bad index entry for '%s'", name);
        goto done;
    }
    if (!(off >= 0 && len >= 5 && off + len <= (double)rdb_n)) {
        rc = dr_error(DR_ERR_FORMAT, "R data: index entry for '%s' (%.0f, %.0f) is outside the .rdb (%zu bytes)", name,
                      off, len, rdb_n);
        goto done;
    }
    int ctype = 1;
    if (comp && comp->type == R_INTSXP && comp->n >= 1) ctype = comp->ints[0];
    else if (comp && comp->type == R_REALSXP && comp->n >= 1) ctype = (int)comp->reals[0];
    const uint8_t *p = rdb + (size_t)off;
    size_t pl = (size_t)len;
    size_t ulen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (ctype == 1) rc = inflate_all(p + 4, pl - 4, ulen, &obj, 0);
    else if (ctype == 2 || ctype == 3) {
        char t = (char)p[4];
        if (t == 'Z') rc = inflate_all(p + 5, pl - 5, ulen, &obj, 0);
        else if (t == '0') {
            if (ulen > pl - 5) rc = dr_error(DR_ERR_FORMAT, "R data: stored object is truncated");
            else if (!(obj = malloc(ulen ? ulen : 1))) rc = dr_error(DR_ERR_NOMEM, "out of memory");
            else memcpy(obj, p + 5, ulen);
        } else
            rc = dr_error(DR_ERR_UNSUPPORTED, "R data: compression '%c' (bzip2/xz) is not supported; only zlib", t);
    } else
        rc = dr_error(DR_ERR_UNSUPPORTED, "R data: compression type %d is not supported", ctype);
    if (rc) goto done;
    rc = dr_rdata_read_frame(obj, ulen, out);
    if (rc) dr_error_context("R object '%s'", name);
done:
    reader_free(&r);
    free(idx);
    free(obj);
    return rc;
}

int dr_rdata_load_lazy(const char *dir, const char *name, dr_rframe *out) {
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/Rdata.rdx", dir);
    snprintf(b, sizeof b, "%s/Rdata.rdb", dir);
    dr_mmap mx = {0}, mb = {0};
    int rc = dr_mmap_open(&mx, a);
    if (rc) return rc;
    rc = dr_mmap_open(&mb, b);
    if (rc) {
        dr_mmap_close(&mx);
        return rc;
    }
    rc = dr_rdata_lazy_mem(mx.data, mx.size, mb.data, mb.size, name, out);
    if (rc) dr_error_context("%s", dir);
    dr_mmap_close(&mx);
    dr_mmap_close(&mb);
    return rc;
}
