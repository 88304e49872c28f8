/* See cli_run.h. */
#include "cli_run.h"
#include "harness.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

const char *cli_bin(void) {
    const char *b = getenv("DEEPREC_BIN");
    if (!b || access(b, X_OK) != 0) SKIP("DEEPREC_BIN not set (make test sets it)");
    return b;
}

static char *read_all(int fd) {
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) s = realloc(s, cap *= 2);
        ssize_t k = read(fd, s + n, cap - n - 1);
        if (k <= 0) break;
        n += (size_t)k;
    }
    s[n] = 0;
    return s;
}

static cli_result run_argv(char *const *argv) {
    /* files, not pipes: no deadlock however much either stream holds */
    char po[] = "/tmp/deeprec-cli-out-XXXXXX", pe[] = "/tmp/deeprec-cli-err-XXXXXX";
    int fo = mkstemp(po), fe = mkstemp(pe);
    CHECK(fo >= 0 && fe >= 0);
    unlink(po);
    unlink(pe);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        setenv("OMP_WAIT_POLICY", "passive", 1); /* also spares deeprec's re-exec */
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    cli_result r;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    lseek(fo, 0, SEEK_SET);
    lseek(fe, 0, SEEK_SET);
    r.out = read_all(fo);
    r.err = read_all(fe);
    close(fo);
    close(fe);
    return r;
}

cli_result cli_run(const char *const *args) {
    char *argv[128];
    int n = 0;
    argv[n++] = (char *)cli_bin();
    for (int i = 0; args[i] && n < 127; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return run_argv(argv);
}

cli_result cli_sh(const char *cmd) {
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    return run_argv(argv);
}

void cli_result_free(cli_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
