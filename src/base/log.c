/* Logging through an installable sink; the default drops messages so that
 * library code stays silent unless the program asks to hear it. */
#include "deeprec/base.h"

static dr_log_sink g_sink;
static void *g_ctx;
static int g_max = DR_LOG_INFO;

void dr_log_set_sink(dr_log_sink sink, void *ctx, int max_level) {
    g_sink = sink;
    g_ctx = ctx;
    g_max = max_level;
}

void dr_log_stderr_sink(int level, const char *msg, void *ctx) {
    (void)ctx;
    static const char *names[] = {"error", "warning", "info", "debug"};
    const char *name = level >= 0 && level <= DR_LOG_DEBUG ? names[level] : "log";
    fprintf(stderr, "deeprec: %s: %s\n", name, msg);
}

void dr_log(int level, const char *fmt, ...) {
    if (!g_sink || level > g_max) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_sink(level, buf, g_ctx);
}
