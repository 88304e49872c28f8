/* Server-sent events framing (the WHATWG event-stream format): a payload with line breaks
 * becomes several "data:" lines, which the client joins with "\n". */
#include "internal.h"
#include <string.h>

int serve_sse_event(dr_buf *out, const char *data, size_t len) {
    size_t i = 0;
    int rc;
    for (;;) {
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r') j++;
        if ((rc = dr_buf_put(out, "data: ", 6)) || (rc = dr_buf_put(out, data + i, j - i)) || (rc = dr_buf_put(out, "\n", 1)))
            return rc;
        if (j == len) break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n') j++;
        i = j + 1;
    }
    return dr_buf_put(out, "\n", 1);
}

int serve_sse_parse(const char *s, size_t len, void (*fn)(void *ctx, const char *data, size_t n), void *ctx) {
    dr_buf cur = {0};
    int have = 0, count = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '\n' && s[j] != '\r') j++;
        if (j == len) break; /* an incomplete last line is not an event yet */
        size_t n = j - i;
        if (n == 0) {
            if (have) {
                if (fn) fn(ctx, cur.p ? cur.p : "", cur.n);
                count++;
            }
            cur.n = 0;
            have = 0;
        } else if (s[i] == ':') {
            /* comment */
        } else if (n >= 5 && !memcmp(s + i, "data:", 5)) {
            size_t k = i + 5;
            if (k < j && s[k] == ' ') k++;
            if (have && dr_buf_put(&cur, "\n", 1)) goto fail;
            if (dr_buf_put(&cur, s + k, j - k)) goto fail;
            have = 1;
        } else {
            goto fail;
        }
        if (s[j] == '\r' && j + 1 < len && s[j + 1] == '\n') j++;
        i = j + 1;
    }
    dr_buf_free(&cur);
    return count;
fail:
    dr_buf_free(&cur);
    return -1;
}
