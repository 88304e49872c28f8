/* JSON via jansson, with atomic file writes and JSON-lines metric streams. */
#include "deeprec/base.h"
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int dr_json_write_file(const char *path, json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!s) return dr_error(DR_ERR_NOMEM, "cannot serialise JSON");
    size_t n = strlen(s);
    s[n] = 0;
    int rc = dr_write_file_atomic(path, s, n);
    free(s);
    return rc;
}

char *dr_json_take_compact(json_t *j) {
    /* jansson >= 2.8 keeps insertion order anyway; the flag says it for older ones */
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!s) dr_error(DR_ERR_NOMEM, "cannot serialise JSON");
    return s;
}

int dr_jsonl_open(dr_jsonl *m, const char *path, int append) {
    m->fp = fopen(path, append ? "ab" : "wb");
    if (!m->fp) return dr_error_at(DR_ERR_IO, path, 0, "cannot open metrics file: %s", strerror(errno));
    return DR_OK;
}

int dr_jsonl_write(dr_jsonl *m, json_t *j) {
    if (!m || !m->fp) return DR_OK;
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s) return dr_error(DR_ERR_NOMEM, "cannot serialise JSON");
    fputs(s, m->fp);
    fputc('\n', m->fp);
    fflush(m->fp);
    free(s);
    return DR_OK;
}

void dr_jsonl_close(dr_jsonl *m) {
    if (m->fp) fclose(m->fp);
    m->fp = NULL;
}

json_t *dr_json_text(const char *s, size_t n) {
    if (!s) return json_null();
    if (n == (size_t)-1) n = strlen(s);
    json_t *j = json_stringn(s, n);
    if (j) return j;
    char *clean = dr_utf8_sanitize(s, n);
    if (!clean) return NULL;
    j = json_string(clean);
    free(clean);
    return j;
}
