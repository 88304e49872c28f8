/* Server-sent events framing (the WHATWG event-stream format): a payload with line breaks
 * becomes several "data:" lines, which the client joins with "\n". */
#include "internal.h"
#include <string.h>

int serve_sse_event(sbuf *out, const char *data, size_t len) {
    size_t i = 0;
    int rc;
    for (;;) {
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r') j++;
        if ((rc = sbuf_add(out, "data: ", 6)) || (rc = sbuf_add(out, data + i, j - i)) || (rc = sbuf_add(out, "\n", 1)))
            return rc;
        if (j == len) break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n') j++;
        i = j + 1;
    }
    return sbuf_add(out, "\n", 1);
}

int serve_sse_parse(const char *s, size_t len, void (*fn)(void *ctx, const char *data, size_t n), void *ctx) {
    sbuf cur = {0};
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
            if (have && sbuf_add(&cur, "\n", 1)) goto fail;
            if (sbuf_add(&cur, s + k, j - k)) goto fail;
            have = 1;
        } else {
            goto fail;
        }
        if (s[j] == '\r' && j + 1 < len && s[j + 1] == '\n') j++;
        i = j + 1;
    }
    sbuf_free(&cur);
    return count;
fail:
    sbuf_free(&cur);
    return -1;
}
