/* UTF-8 decoding, Unicode categories for the pre-tokenizer, NFC normalisation. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "deeprec/tokenizer.h"
#include "text/text_internal.h"

int tok_utf8_next(const uint8_t *s, size_t n, size_t i, uint32_t *cp) {
    int len = dr_utf8_decode((const char *)s + i, n - i, cp);
    if (len) return len;
    *cp = TOK_BAD_BYTE | s[i]; /* an invalid byte stands for itself, one at a time */
    return 1;
}

int tok_utf8_put(uint32_t cp, uint8_t *buf) {
    if (cp & TOK_BAD_BYTE) { buf[0] = (uint8_t)(cp & 0xFF); return 1; }
    return dr_utf8_encode(cp, (char *)buf);
}

/* binary search in rows of 3: (start, end, value) */
static uint32_t range_lookup(const uint32_t *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < t[3 * mid]) hi = mid - 1;
        else if (cp > t[3 * mid + 1]) lo = mid + 1;
        else return t[3 * mid + 2];
    }
    return 0;
}

static const uint8_t ascii_cat[128] = {
    ['\t'] = 4, ['\n'] = 4, [0x0B] = 4, [0x0C] = 4, ['\r'] = 4, [' '] = 4,
    ['0'] = 2, ['1'] = 2, ['2'] = 2, ['3'] = 2, ['4'] = 2, ['5'] = 2, ['6'] = 2, ['7'] = 2, ['8'] = 2, ['9'] = 2,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

int tok_unicode_cat(uint32_t cp) {
    if (cp < 128) return ascii_cat[cp];
    if (cp & TOK_BAD_BYTE) return TOK_UCAT_OTHER;
    return (int)range_lookup(tok_ucat_ranges, tok_ucat_ranges_n, cp);
}

/* ---------------- NFC ---------------- */
enum { SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28,
       NCount = VCount * TCount, SCount = LCount * NCount };

static int ccc_of(uint32_t cp) {
    if (cp < 0x300 || (cp & TOK_BAD_BYTE)) return 0;
    return (int)range_lookup(tok_ccc_ranges, tok_ccc_ranges_n, cp);
}

static const uint32_t *decomp_of(uint32_t cp, int *len) {
    int lo = 0, hi = tok_decomp_index_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        uint32_t c = tok_decomp_index[3 * mid];
        if (cp < c) hi = mid - 1;
        else if (cp > c) lo = mid + 1;
        else { *len = (int)tok_decomp_index[3 * mid + 2]; return tok_decomp_pool + tok_decomp_index[3 * mid + 1]; }
    }
    return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
        return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
    if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
        return a + (b - TBase);
    int lo = 0, hi = tok_comp_pairs_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        uint32_t x = tok_comp_pairs[3 * mid], y = tok_comp_pairs[3 * mid + 1];
        if (a < x || (a == x && b < y)) hi = mid - 1;
        else if (a > x || (a == x && b > y)) lo = mid + 1;
        else return tok_comp_pairs[3 * mid + 2];
    }
    return 0;
}

/* Quick check: a code point is "unsafe" when it has a decomposition, a non-zero ccc,
 * can be the second element of a composition, or is a conjoining jamo. Text made only
 * of safe code points is already NFC. Bitmap over all code points, built once. */
static uint8_t g_unsafe[0x110000 / 8];
static pthread_once_t g_unsafe_once = PTHREAD_ONCE_INIT;
static void set_unsafe(uint32_t cp) { if (cp < 0x110000) g_unsafe[cp >> 3] |= (uint8_t)(1u << (cp & 7)); }
static void unsafe_init(void) {
    for (int i = 0; i < tok_decomp_index_n; i++) set_unsafe(tok_decomp_index[3 * i]);
    for (int i = 0; i < tok_ccc_ranges_n; i++)
        for (uint32_t c = tok_ccc_ranges[3 * i]; c <= tok_ccc_ranges[3 * i + 1]; c++) set_unsafe(c);
    for (int i = 0; i < tok_comp_pairs_n; i++) set_unsafe(tok_comp_pairs[3 * i + 1]);
    for (uint32_t c = 0x1100; c <= 0x11FF; c++) set_unsafe(c); /* conjoining jamo */
}
static int all_safe(const uint8_t *u, size_t len) {
    pthread_once(&g_unsafe_once, unsafe_init);
    for (size_t i = 0; i < len;) {
        if (u[i] < 0xCC) { i++; continue; } /* ASCII, continuation bytes and lead bytes of < U+0300 */
        uint32_t c;
        i += (size_t)tok_utf8_next(u, len, i, &c);
        if (!(c & TOK_BAD_BYTE) && (g_unsafe[c >> 3] >> (c & 7) & 1)) return 0;
    }
    return 1;
}

static int is_unsafe(uint32_t c) {
    return c >= 0x300 && !(c & TOK_BAD_BYTE) && (g_unsafe[c >> 3] >> (c & 7) & 1);
}

/* Full NFC of one region (decompose, reorder, compose); writes UTF-8 to dst, returns
 * bytes written. cp is scratch of at least 4 * len entries. */
static size_t nfc_region(const uint8_t *u, size_t len, uint32_t *cp, uint8_t *dst) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        i += (size_t)tok_utf8_next(u, len, i, &c);
        if (c >= SBase && c < SBase + SCount) {
            uint32_t si = c - SBase;
            cp[n++] = LBase + si / NCount;
            cp[n++] = VBase + (si % NCount) / TCount;
            if (si % TCount) cp[n++] = TBase + si % TCount;
            continue;
        }
        int n_decomp = 0;
        const uint32_t *d = (c >= 0xC0 && !(c & TOK_BAD_BYTE)) ? decomp_of(c, &n_decomp) : NULL;
        if (d && n_decomp <= 4) { for (int k = 0; k < n_decomp; k++) cp[n++] = d[k]; }
        else cp[n++] = c;
    }
    /* canonical ordering: stable sort of each run of non-starters by ccc */
    for (size_t a = 0; a < n;) {
        if (ccc_of(cp[a]) == 0) { a++; continue; }
        size_t b = a;
        while (b < n && ccc_of(cp[b]) != 0) b++;
        for (size_t x = a + 1; x < b; x++) { /* insertion sort */
            uint32_t v = cp[x]; int cv = ccc_of(v);
            size_t y = x;
            while (y > a && ccc_of(cp[y - 1]) > cv) { cp[y] = cp[y - 1]; y--; }
            cp[y] = v;
        }
        a = b;
    }
    /* canonical composition */
    size_t w = 0;
    long starter = -1; /* index in output of the last starter */
    int last_ccc = -1; /* -1: nothing after the starter yet */
    for (size_t r = 0; r < n; r++) {
        uint32_t c = cp[r];
        int cc = ccc_of(c);
        if (starter >= 0) {
            int blocked = (last_ccc != -1) && (last_ccc == 0 || last_ccc >= cc);
            if (!blocked) {
                uint32_t comp = compose_pair(cp[starter], c);
                if (comp) { cp[starter] = comp; continue; }
            }
        }
        if (cc == 0) { starter = (long)w; last_ccc = -1; }
        else last_ccc = cc;
        cp[w++] = c;
    }
    size_t o = 0;
    for (size_t k = 0; k < w; k++) o += (size_t)tok_utf8_put(cp[k], dst + o);
    return o;
}

int tok_nfc(const char *s, size_t len, char **out, size_t *out_len) {
    const uint8_t *u = (const uint8_t *)s;
    if (all_safe(u, len)) { /* already NFC */
        char *r = dr_malloc(len + 1);
        if (!r) return DR_ERR_NOMEM;
        if (len) memcpy(r, s, len);
        r[len] = 0;
        *out = r; *out_len = len;
        return DR_OK;
    }
    /* Only regions around "unsafe" code points need work: a region starts at the
     * starter before the first unsafe code point and ends at the next safe one (safe
     * code points have ccc 0 and never combine with what precedes them). */
    size_t cap = 0;
    if (!dr_mul_ok(len + 1, 3, &cap)) return dr_error(DR_ERR_NOMEM, "tok_nfc: input too large");
    uint8_t *r = dr_malloc(cap + 4);
    if (!r) return DR_ERR_NOMEM;
    uint32_t *scratch = NULL;
    size_t scratch_cap = 0, o = 0, copied = 0, prev = 0;
    int rc = DR_OK;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int l = tok_utf8_next(u, len, i, &c);
        if (!is_unsafe(c)) { prev = i; i += (size_t)l; continue; }
        size_t start = (prev < i && prev >= copied) ? prev : i;
        size_t end = i + (size_t)l;
        while (end < len) {
            uint32_t d;
            int d_len = tok_utf8_next(u, len, end, &d);
            if (!is_unsafe(d)) break;
            end += (size_t)d_len;
        }
        memcpy(r + o, u + copied, start - copied);
        o += start - copied;
        size_t need = 4 * (end - start) + 4;
        if (need > scratch_cap) {
            uint32_t *ns = dr_realloc(scratch, need, sizeof(uint32_t));
            if (!ns) { rc = DR_ERR_NOMEM; break; }
            scratch = ns; scratch_cap = need;
        }
        o += nfc_region(u + start, end - start, scratch, r + o);
        copied = end;
        prev = end; /* not a starter candidate for the next region: it is included below */
        i = end;
    }
    free(scratch);
    if (rc) { free(r); return rc; }
    memcpy(r + o, u + copied, len - copied);
    o += len - copied;
    r[o] = 0;
    *out = (char *)r; *out_len = o;
    return DR_OK;
}
