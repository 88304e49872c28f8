/* Dataset and model text printed for a person: on a terminal, control characters are
 * shown escaped (\x1b, not an escape sequence the terminal would obey: a title could
 * otherwise recolour, move the cursor or retitle the window). Files and pipes get the
 * bytes as they are. */
#include "cli.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int stdout_is_tty = -1;

const char *cli_text(const char *s, int keep_newlines) {
    static char *bufs[8];
    static size_t caps[8];
    static int next;
    if (!s) return "";
    if (stdout_is_tty < 0) stdout_is_tty = isatty(1);
    if (!stdout_is_tty) return s;
    size_t n = strlen(s), need = 4 * n + 1;
    int k = next++ & 7;
    if (caps[k] < need) {
        char *p = realloc(bufs[k], need);
        if (!p) return "(out of memory)";
        bufs[k] = p, caps[k] = need;
    }
    char *o = bufs[k];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int c1 = c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9F;
        if (c1) { /* C1 controls (U+0080..U+009F) act like ESC sequences on some terminals */
            o += sprintf(o, "\\x%02x", (unsigned char)s[++i]);
        } else if ((c < 0x20 && !(keep_newlines && (c == '\n' || c == '\t'))) || c == 0x7f) {
            o += sprintf(o, "\\x%02x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o = 0;
    return bufs[k];
}
