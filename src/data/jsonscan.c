/* A tolerant scanner for one JSON object per line (Amazon reviews/metadata).
 * Accepts real JSON and the Python-dict-like lines of some Amazon dumps
 * ('single quotes', True/False/None, \xNN escapes). Only top-level members are
 * reported; nested objects are skipped; arrays of strings (at any nesting) are
 * flattened into a '\x1f'-joined list. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* bytes that end a bare value (numbers, true/false/null/None...) */
static int is_delim(char ch) {
    switch (ch) {
    case ',': case ':': case ']': case '}': case ' ': case '\t': case '\r': case '\n': return 1;
    default: return 0;
    }
}

typedef struct {
    const char *s;
    size_t n, i;
    dr_jobj *o;
} scan;

static void ws(scan *c) {
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\r' || c->s[c->i] == '\n')) c->i++;
}

static int fail(scan *c, const char *what) {
    c->o->err_pos = c->i;
    c->o->err_what = what;
    return -1;
}

static int put_cp(dr_buf *b, uint32_t cp) {
    char t[4];
    return dr_buf_put(b, t, (size_t)dr_utf8_encode(cp, t));
}

static int hexv(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int hexn(scan *c, int k, uint32_t *out) {
    if (c->i + (size_t)k > c->n) return -1;
    uint32_t v = 0;
    for (int j = 0; j < k; j++) {
        int h = hexv(c->s[c->i + (size_t)j]);
        if (h < 0) return -1;
        v = v * 16 + (uint32_t)h;
    }
    c->i += (size_t)k;
    *out = v;
    return 0;
}

/* Reads a quoted string at c->i into scratch (appends); out = bytes appended. */
static int str(scan *c, dr_buf *b) {
    char q = c->s[c->i];
    c->i++;
    while (c->i < c->n) {
        const char *p = c->s + c->i;
        size_t run = 0;
        while (c->i + run < c->n && p[run] != q && p[run] != '\\') run++;
        if (run && b && dr_buf_put(b, p, run)) return -2;
        c->i += run;
        if (c->i >= c->n) break;
        char ch = c->s[c->i];
        if (ch == q) { c->i++; return 0; }
        /* escape */
        c->i++;
        if (c->i >= c->n) break;
        char e = c->s[c->i++];
        char lit = 0;
        switch (e) {
        case '"': lit = '"'; break;
        case '\'': lit = '\''; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hexn(c, 4, &cp)) return fail(c, "4 hex digits after \\u");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (c->i + 1 < c->n && c->s[c->i] == '\\' && c->s[c->i + 1] == 'u') {
                    c->i += 2;
                    if (hexn(c, 4, &lo)) return fail(c, "4 hex digits after \\u");
                    if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    else cp = 0xFFFD;
                } else cp = 0xFFFD;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) cp = 0xFFFD;
            if (cp == 0) cp = 0xFFFD; /* no embedded NULs */
            if (b && put_cp(b, cp)) return -2;
            continue;
        }
        case 'x': { /* Python repr */
            uint32_t cp;
            if (hexn(c, 2, &cp)) return fail(c, "2 hex digits after \\x");
            if (b && put_cp(b, cp ? cp : 0xFFFD)) return -2;
            continue;
        }
        default:
            /* unknown escape: keep it as is (lenient) */
            if (b && (dr_buf_putc(b, '\\') || dr_buf_putc(b, e))) return -2;
            continue;
        }
        if (b && dr_buf_putc(b, lit)) return -2;
    }
    return fail(c, "a closing quote");
}

/* Skips any value (iteratively for nesting). */
static int skip_value(scan *c) {
    int depth = 0;
    for (;;) {
        ws(c);
        if (c->i >= c->n) { return fail(c, "a value"); }
        char ch = c->s[c->i];
        if (ch == '"' || ch == '\'') {
            int r = str(c, NULL);
            if (r) return r;
        } else if (ch == '{' || ch == '[') {
            depth++;
            c->i++;
            continue;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0) { return fail(c, "a value"); }
            depth--;
            c->i++;
        } else if (ch == ',' || ch == ':') {
            if (depth == 0) { return fail(c, "a value"); }
            c->i++;
            continue;
        } else {
            size_t st = c->i;
            while (c->i < c->n && !is_delim(c->s[c->i])) c->i++;
            if (c->i == st) { return fail(c, "a value"); }
        }
        if (depth == 0) break;
    }
    return 0;
}

/* Array of strings / nested arrays of strings → list. Returns 1 if flattened, 0 if not a string list
 * (then the array has been skipped), <0 on error. */
static int strlist(scan *c, dr_buf *b, int *count, int depth) {
    if (depth > 16) return fail(c, "less nesting");
    c->i++; /* '[' */
    int ok = 1;
    for (;;) {
        ws(c);
        if (c->i >= c->n) return fail(c, "']'");
        char ch = c->s[c->i];
        if (ch == ']') { c->i++; return ok; }
        if (ch == '"' || ch == '\'') {
            if (*count && dr_buf_putc(b, '\x1f')) return -2;
            int r = str(c, b);
            if (r) return r;
            (*count)++;
        } else if (ch == '[') {
            int r = strlist(c, b, count, depth + 1);
            if (r < 0) return r;
            if (r == 0) ok = 0;
        } else {
            int r = skip_value(c);
            if (r) return r;
            ok = 0;
        }
        ws(c);
        if (c->i < c->n && c->s[c->i] == ',') { c->i++; continue; }
        if (c->i < c->n && c->s[c->i] == ']') continue;
        return fail(c, "',' or ']'");
    }
}

int dr_json_scan(dr_jobj *o, const char *s, size_t n) {
    scan c = {s, n, 0, o};
    o->n = 0;
    o->scratch.n = 0;
    o->err_what = NULL;
    o->err_pos = 0;
    ws(&c);
    if (c.i >= n || s[c.i] != '{') return fail(&c, "'{'");
    c.i++;
    ws(&c);
    if (c.i < n && s[c.i] == '}') { c.i++; goto tail; }
    for (;;) {
        ws(&c);
        if (c.i >= n || (s[c.i] != '"' && s[c.i] != '\'')) return fail(&c, "a quoted key");
        if (o->n >= o->cap) {
            int nc = o->cap ? o->cap * 2 : 16;
            dr_jfield *p = realloc(o->f, (size_t)nc * sizeof *p);
            if (!p) return fail(&c, "memory");
            o->f = p;
            o->cap = nc;
        }
        dr_jfield *f = &o->f[o->n];
        memset(f, 0, sizeof *f);
        f->key_off = o->scratch.n;
        if (str(&c, &o->scratch)) return -1;
        f->key_len = o->scratch.n - f->key_off;
        if (dr_buf_putc(&o->scratch, 0)) return fail(&c, "memory");
        ws(&c);
        if (c.i >= n || s[c.i] != ':') return fail(&c, "':'");
        c.i++;
        ws(&c);
        if (c.i >= n) return fail(&c, "a value");
        if (o->want) {
            int wanted = 0;
            for (int k = 0; o->want[k] && !wanted; k++)
                wanted = strlen(o->want[k]) == f->key_len && !memcmp(o->want[k], o->scratch.p + f->key_off, f->key_len);
            if (!wanted) {
                o->scratch.n = f->key_off;
                if (skip_value(&c)) return -1;
                goto next;
            }
        }
        char ch = s[c.i];
        f->str_off = o->scratch.n;
        if (ch == '"' || ch == '\'') {
            if (str(&c, &o->scratch)) return -1;
            f->kind = DR_JV_STR;
        } else if (ch == '[') {
            int cnt = 0;
            int r = strlist(&c, &o->scratch, &cnt, 0);
            if (r < 0) return -1;
            f->kind = r ? DR_JV_STRLIST : DR_JV_OTHER;
            f->list_n = cnt;
        } else if (ch == '{') {
            if (skip_value(&c)) return -1;
            f->kind = DR_JV_OTHER;
        } else {
            size_t st = c.i;
            while (c.i < n && !is_delim(s[c.i])) c.i++;
            if (c.i == st) return fail(&c, "a value");
            if (dr_buf_put(&o->scratch, s + st, c.i - st)) return fail(&c, "memory");
            f->kind = DR_JV_NUM;
        }
        f->str_len = o->scratch.n - f->str_off;
        if (dr_buf_putc(&o->scratch, 0)) return fail(&c, "memory");
        o->n++;
    next:
        ws(&c);
        if (c.i < n && s[c.i] == ',') { c.i++; continue; }
        if (c.i < n && s[c.i] == '}') { c.i++; break; }
        return fail(&c, "',' or '}'");
    }
tail:
    ws(&c);
    if (c.i != n) return fail(&c, "end of line after the object");
    for (int k = 0; k < o->n; k++) {
        o->f[k].key = o->scratch.p + o->f[k].key_off;
        o->f[k].str = o->scratch.p + o->f[k].str_off;
    }
    return 0;
}

const dr_jfield *dr_json_get(const dr_jobj *o, const char *key) {
    size_t kl = strlen(key);
    for (int i = 0; i < o->n; i++)
        if (o->f[i].key_len == kl && !memcmp(o->f[i].key, key, kl)) return &o->f[i];
    return NULL;
}

void dr_json_free(dr_jobj *o) {
    free(o->f);
    dr_buf_free(&o->scratch);
    memset(o, 0, sizeof *o);
}
