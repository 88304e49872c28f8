/* Protocol text: preference extraction, tool-result text, answer parsing, format rules. */
#include "deeprec/agent.h"
#include "agent/internal.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- preference ---- */
int agent_preference_extract(const char *text, size_t len, char **pref) {
    *pref = NULL;
    const char *b = agent_memrmem(text, len, AGENT_TAG_PREF);
    if (!b) return DR_OK;
    b += strlen(AGENT_TAG_PREF);
    const char *end = text + len;
    const char *e = agent_memmem(b, (size_t)(end - b), AGENT_TAG_PREF_END);
    if (!e) e = end;
    char *out = malloc((size_t)(e - b) + 1);
    if (!out) return dr_error(DR_ERR_NOMEM, "out of memory");
    size_t k = 0;
    int space = 0;
    static const char *const quotes[] = {"\xe2\x80\x9c", "\xe2\x80\x9d", "\xc2\xab", "\xc2\xbb", NULL}; /* “ ” « » */
    for (const char *p = b; p < e;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '`') {
            p++;
            continue;
        }
        int q = 0;
        for (int i = 0; quotes[i]; i++) {
            size_t m = strlen(quotes[i]);
            if ((size_t)(e - p) >= m && !memcmp(p, quotes[i], m)) {
                p += m;
                q = 1;
                break;
            }
        }
        if (q) continue;
        if (isspace(c)) {
            space = 1;
            p++;
            continue;
        }
        if (space && k) out[k++] = ' ';
        space = 0;
        out[k++] = (char)c;
        p++;
    }
    out[k] = 0;
    *pref = out;
    return DR_OK;
}

/* ---- tool result ---- */
int agent_tool_result_text(const agent_catalog *c, const int32_t *items, int n, char **out) {
    dr_buf b = {0};
    dr_buf_puts(&b, AGENT_TAG_LIST "\n");
    if (n <= 0) dr_buf_puts(&b, "None\n");
    for (int i = 0; i < n; i++) {
        dr_buf_printf(&b, "%d. %s\n", i + 1, agent_catalog_title(c, items[i]));
        const char *cats = agent_catalog_categories(c, items[i]);
        if (*cats) dr_buf_printf(&b, "  - categories: %s\n", cats);
    }
    dr_buf_puts(&b, AGENT_TAG_LIST_END "\n\n");
    *out = dr_buf_take(&b);
    return *out ? DR_OK : dr_error_code();
}

/* ---- answer ---- */
/* Locate the answer block content: [*b, *e). Returns 0 when there is no answer tag. */
static int answer_span(const char *s, size_t len, const char **b, const char **e) {
    const char *a = agent_memrmem(s, len, AGENT_TAG_ANSWER);
    if (!a) return 0;
    a += strlen(AGENT_TAG_ANSWER);
    const char *z = agent_memmem(a, (size_t)(s + len - a), AGENT_TAG_ANSWER_END);
    *b = a;
    *e = z ? z : s + len;
    return 1;
}

/* Strip "N." / "N)" and spaces from a line [p, q); returns number (or -1) and the title span. */
static int split_numbered(const char *p, const char *q, const char **tb, const char **te) {
    while (p < q && isspace((unsigned char)*p)) p++;
    while (q > p && isspace((unsigned char)q[-1])) q--;
    const char *d = p;
    long num = -1;
    while (d < q && isdigit((unsigned char)*d) && d - p < 6) d++;
    if (d > p && d < q && (*d == '.' || *d == ')')) {
        num = strtol(p, NULL, 10);
        p = d + 1;
        if (p < q && !isspace((unsigned char)*p)) num = -2; /* "1.title": number without space */
        while (p < q && isspace((unsigned char)*p)) p++;
    }
    *tb = p;
    *te = q;
    return (int)num;
}

int agent_answer_parse(const char *s, size_t len, agent_answer *a) {
    memset(a, 0, sizeof *a);
    const char *b, *e;
    if (!answer_span(s, len, &b, &e)) return DR_OK;
    a->found = 1;
    for (const char *p = b; p < e && a->n_lines < AGENT_N_REC;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *q = nl ? nl : e;
        const char *tb, *te;
        split_numbered(p, q, &tb, &te);
        if (te > tb) {
            char *line = malloc((size_t)(te - tb) + 1);
            if (!line) {
                agent_answer_free(a);
                return dr_error(DR_ERR_NOMEM, "out of memory");
            }
            memcpy(line, tb, (size_t)(te - tb));
            line[te - tb] = 0;
            a->lines[a->n_lines++] = line;
        }
        p = nl ? nl + 1 : e;
    }
    return DR_OK;
}

void agent_answer_free(agent_answer *a) {
    for (int i = 0; i < a->n_lines; i++) free(a->lines[i]);
    memset(a, 0, sizeof *a);
}

/* ---- format rules ---- */
static const char *const fmt_names[AGENT_FMT_N] = {
    "ok", "tool_tags_unbalanced", "no_tool_call", "think_end_count", "think_after_think_end", "answer_block",
    "tool_tag_in_answer", "no_reasoning_after_tools", "answer_lines", "template_placeholder",
};
const char *agent_format_name(int f) { return f >= 0 && f < AGENT_FMT_N ? fmt_names[f] : "?"; }

static const char *const tool_tags[4] = {AGENT_TAG_PREF, AGENT_TAG_PREF_END, AGENT_TAG_LIST, AGENT_TAG_LIST_END};

/* Next tool tag at or after p: returns its index (0..3) or -1, sets *at. */
static int next_tool_tag(const char *p, const char *end, const char **at) {
    int best = -1;
    const char *bp = NULL;
    for (int k = 0; k < 4; k++) {
        const char *x = agent_memmem(p, (size_t)(end - p), tool_tags[k]);
        if (x && (!bp || x < bp)) {
            bp = x;
            best = k;
        }
    }
    *at = bp;
    return best;
}

static int only_space(const char *p, const char *q) {
    for (; p < q; p++)
        if (!isspace((unsigned char)*p)) return 0;
    return 1;
}

static int format_check(const char *s, size_t len, int direct) {
    const char *end = s + len;
    /* tool tags: (pref, /pref, list, /list)* */
    int expect = 0, n_calls = 0;
    const char *last_list_end = NULL, *p = s, *at;
    int k;
    while ((k = next_tool_tag(p, end, &at)) >= 0) {
        if (k != expect) return AGENT_FMT_TOOL_TAGS;
        expect = (expect + 1) % 4;
        if (k == 0) n_calls++;
        if (k == 3) last_list_end = at + strlen(AGENT_TAG_LIST_END);
        p = at + strlen(tool_tags[k]);
    }
    if (expect != 0) return AGENT_FMT_TOOL_TAGS;
    if (direct && (n_calls || last_list_end)) return AGENT_FMT_TOOL_TAGS;
    if (!direct && n_calls < 1) return AGENT_FMT_NO_CALL;
    if (agent_count(s, len, AGENT_TAG_THINK_END) != 1) return AGENT_FMT_THINK_END;
    const char *te = agent_memmem(s, len, AGENT_TAG_THINK_END);
    const char *after = te + strlen(AGENT_TAG_THINK_END);
    if (agent_memmem(after, (size_t)(end - after), AGENT_TAG_THINK)) return AGENT_FMT_THINK_AFTER;
    if (agent_count(s, len, AGENT_TAG_ANSWER) != 1 || agent_count(s, len, AGENT_TAG_ANSWER_END) != 1)
        return AGENT_FMT_ANSWER_BLOCK;
    const char *ab = agent_memmem(s, len, AGENT_TAG_ANSWER), *ae = agent_memmem(s, len, AGENT_TAG_ANSWER_END);
    if (ab < after || ae < ab) return AGENT_FMT_ANSWER_BLOCK;
    const char *cb = ab + strlen(AGENT_TAG_ANSWER);
    if (next_tool_tag(cb, ae, &at) >= 0) return AGENT_FMT_TOOL_IN_ANSWER;
    if (!direct && (!last_list_end || last_list_end > te || only_space(last_list_end, te)))
        return AGENT_FMT_NO_REASONING;
    int n_lines = 0;
    for (const char *q = cb; q < ae;) {
        const char *nl = memchr(q, '\n', (size_t)(ae - q));
        const char *qe = nl ? nl : ae;
        if (!only_space(q, qe)) {
            const char *tb, *tend;
            int num = split_numbered(q, qe, &tb, &tend);
            n_lines++;
            if (num != n_lines || tend <= tb) return AGENT_FMT_ANSWER_LINES;
        }
        q = nl ? nl + 1 : ae;
    }
    if (n_lines != AGENT_N_REC) return AGENT_FMT_ANSWER_LINES;
    for (int i = 0; agent_placeholders[i]; i++)
        if (agent_memcasemem(s, len, agent_placeholders[i])) return AGENT_FMT_PLACEHOLDER;
    return AGENT_FMT_OK;
}

int agent_format_check(const char *s, size_t len) { return format_check(s, len, 0); }
int agent_format_check_direct(const char *s, size_t len) { return format_check(s, len, 1); }
