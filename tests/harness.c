/* Test runner: runs registered tests (optionally filtered by substring),
 * one line per test, and a final "N passed, N failed" line. */
#include "harness.h"
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { const char *name; dr_test_fn fn; const char *file; } test_entry;
static test_entry *tests;
static int n_tests, cap_tests;
static jmp_buf jump;
static char fail_msg[4096];
static int skipped;
static char tmpdir[512];
static int tmpdir_made;

void dr_test_register(const char *name, dr_test_fn fn, const char *file) {
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? cap_tests * 2 : 64;
        tests = realloc(tests, (size_t)cap_tests * sizeof *tests);
        if (!tests) abort();
    }
    tests[n_tests++] = (test_entry){name, fn, file};
}

void dr_test_fail(const char *file, int line, const char *fmt, ...) {
    int n = snprintf(fail_msg, sizeof fail_msg, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fail_msg + n, sizeof fail_msg - (size_t)n, fmt, ap);
    va_end(ap);
    longjmp(jump, 1);
}

void dr_test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fail_msg, sizeof fail_msg, fmt, ap);
    va_end(ap);
    skipped = 1;
    longjmp(jump, 2);
}

const char *dr_test_tmpdir(void) {
    if (!tmpdir_made) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/deeprec-test-%ld-XXXXXX", base && *base ? base : "/tmp", (long)getpid());
        if (!mkdtemp(tmpdir)) dr_test_fail(__FILE__, __LINE__, "mkdtemp failed");
        tmpdir_made = 1;
    }
    return tmpdir;
}

const char *dr_test_shared_data(void) {
    static char buf[1024];
    const char *e = getenv("DEEPREC_SHARED_DATA");
    snprintf(buf, sizeof buf, "%s", e && *e ? e : "../shared/data");
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? buf : NULL;
}

const char *dr_test_path(const char *dir, const char *name) {
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

static void cleanup_tmpdir(void) {
    if (!tmpdir_made) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    tmpdir_made = 0;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    static int passed, failed, nskip;
    dr_threads_init();
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        skipped = 0;
        fail_msg[0] = 0;
        dr_error_clear();
        double t0 = dr_now();
        int r = setjmp(jump);
        if (r == 0) tests[i].fn();
        double ms = (dr_now() - t0) * 1e3;
        if (r == 0) {
            printf("PASS %s (%.0f ms)\n", tests[i].name, ms);
            passed++;
            cleanup_tmpdir();
        } else if (r == 2) {
            printf("SKIP %s: %s\n", tests[i].name, fail_msg);
            nskip++;
            passed++;
            cleanup_tmpdir();
        } else {
            printf("FAIL %s: %s\n", tests[i].name, fail_msg);
            failed++;
            tmpdir_made = 0; /* keep the directory for inspection */
        }
        fflush(stdout);
    }
    if (nskip) printf("(%d of the passed were skipped, see SKIP lines)\n", nskip);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
