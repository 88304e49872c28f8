/* Table-driven: every command x every numeric flag x {0, -1, nan, huge}. The flags and
 * their accepted ranges are read from each command's --help (so a new command or flag is
 * covered without editing this file); a value outside the range must be a usage error
 * naming the flag, a value inside must not be refused for that flag, and no run without
 * inputs may exit 0. A numeric flag without a documented range fails the test, and one
 * flag must have one range in every command (issue 16). */
#include "cli_run.h"
#include "harness.h"
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct { char name[32]; char range[96]; } seen_flag;

static double parse_bound(const char *s) {
    if (!strncmp(s, "2^63", 4)) return 9.3e18;
    if (!strncmp(s, "-2^63", 5)) return -9.3e18;
    return strtod(s, NULL);
}

/* "{[0, 100]}" -> bounds; returns 0 when it does not parse */
static int parse_range(const char *r, double *lo, double *hi, int *lo_open, int *hi_open) {
    if (r[0] != '{' || (r[1] != '[' && r[1] != '(')) return 0;
    *lo_open = r[1] == '(';
    *lo = parse_bound(r + 2);
    const char *c = strstr(r, ", ");
    if (!c) return 0;
    *hi = parse_bound(c + 2);
    const char *e = strchr(c, '}');
    if (!e) return 0;
    *hi_open = e[-1] == ')';
    return 1;
}

static int in_range(const char *v, double lo, double hi, int lo_open, int hi_open) {
    char *end;
    double x = strtod(v, &end);
    if (*end || !isfinite(x)) return 0;
    return (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
}

TEST(cli_flag_table_every_command_every_numeric_flag) {
    cli_result top = cli_run((const char *[]){"--help", NULL});
    CHECK_EQ_INT(top.rc, 0);
    static seen_flag seen[512];
    int n_seen = 0, n_cmds = 0, n_flags = 0, n_runs = 0;
    char *save = NULL;
    for (char *line = strtok_r(top.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "  ", 2) || strlen(line) < 25) continue;
        char cmd[64];
        snprintf(cmd, sizeof cmd, "%.22s", line + 2);
        for (int k = (int)strlen(cmd) - 1; k >= 0 && cmd[k] == ' '; k--) cmd[k] = 0;
        const char *words[4] = {0};
        char cw[64];
        snprintf(cw, sizeof cw, "%s", cmd);
        int nw = 0;
        char *sp = strchr(cw, ' ');
        words[nw++] = cw;
        if (sp) *sp = 0, words[nw++] = sp + 1;
        const char *hargs[4] = {words[0], nw > 1 ? words[1] : "--help", nw > 1 ? "--help" : NULL, NULL};
        cli_result h = cli_run(hargs);
        CHECK_MSG(h.rc == 0, "%s --help: exit %d", cmd, h.rc);
        n_cmds++;
        char *s2 = NULL;
        for (char *l = strtok_r(h.out, "\n", &s2); l; l = strtok_r(NULL, "\n", &s2)) {
            char flag[32], kind[4] = "";
            if (sscanf(l, " %31s %3s", flag, kind) < 1 || flag[0] != '-') continue;
            if (strcmp(kind, "N") && strcmp(kind, "X")) continue;
            n_flags++;
            const char *rb = strrchr(l, '{');
            double lo, hi;
            int lo_open, hi_open;
            CHECK_MSG(rb && parse_range(rb, &lo, &hi, &lo_open, &hi_open), "%s %s: no documented range in: %s", cmd,
                      flag, l);
            /* one flag, one range, in every command */
            int found = 0;
            for (int i = 0; i < n_seen; i++)
                if (!strcmp(seen[i].name, flag)) {
                    found = 1;
                    CHECK_MSG(!strcmp(seen[i].range, rb), "%s: %s here, %s elsewhere", flag, rb, seen[i].range);
                }
            if (!found && n_seen < 512) {
                snprintf(seen[n_seen].name, sizeof seen[n_seen].name, "%s", flag);
                snprintf(seen[n_seen].range, sizeof seen[n_seen].range, "%s", rb);
                n_seen++;
            }
            const char *vals[] = {"0", "-1", "nan", !strcmp(kind, "N") ? "99999999999" : "1e300"};
            for (int v = 0; v < 4; v++) {
                const char *args[8] = {words[0]};
                int na = 1;
                if (nw > 1) args[na++] = words[1];
                args[na++] = flag;
                args[na++] = vals[v];
                args[na] = NULL;
                cli_result r = cli_run(args);
                n_runs++;
                /* without inputs nothing can succeed */
                CHECK_MSG(r.rc != 0, "%s %s %s exited 0: %s", cmd, flag, vals[v], r.out);
                int blamed = strstr(r.err, flag) && (strstr(r.err, "must be in") || strstr(r.err, "expects"));
                if (!in_range(vals[v], lo, hi, lo_open, hi_open)) {
                    CHECK_MSG(r.rc == 2 && blamed, "%s %s %s (outside %s): exit %d, stderr: %s", cmd, flag, vals[v], rb,
                              r.rc, r.err);
                } else {
                    /* inside the range: only an int flag may still refuse a value beyond 32 bits */
                    CHECK_MSG(!blamed || (v == 3 && strstr(r.err, "expects an integer")),
                              "%s %s %s is inside %s but was refused: %s", cmd, flag, vals[v], rb, r.err);
                }
                cli_result_free(&r);
            }
        }
        cli_result_free(&h);
    }
    cli_result_free(&top);
    printf("  %d commands, %d numeric flags, %d runs\n", n_cmds, n_flags, n_runs);
    CHECK(n_cmds >= 15);
    CHECK(n_flags >= 100);
}

/* What a documented in-range value does, with inputs, for values that mean something
 * special: --max-len 0 = all, --min-rating below every rating = keep all. */
TEST(cli_flag_documented_values_with_inputs) {
    const char *dir = dr_test_tmpdir();
    const char *csv = dr_test_path(dir, "r.csv");
    const char *text = "user,item,rating,timestamp\na,x,5,1\na,y,1,2\na,z,4,3\nb,x,2,1\n";
    CHECK_OK(dr_write_file_atomic(csv, text, strlen(text)));
    char out[512];
    snprintf(out, sizeof out, "%s", dr_test_path(dir, "d.gguf"));
    cli_result r = cli_run((const char *[]){"data", "import", "--format", "csv", "--input", csv, "--out", out,
                                            "--max-len", "0", "--min-rating", "-1", "--json", NULL});
    CHECK_MSG(r.rc == 0 && strstr(r.out, "\"interactions\":4") && strstr(r.out, "\"max_len\":0"), "%s%s", r.out, r.err);
    cli_result_free(&r);
    r = cli_run((const char *[]){"data", "import", "--format", "csv", "--input", csv, "--out", out, "--min-rating", "3",
                                 "--json", NULL});
    CHECK_MSG(r.rc == 0 && strstr(r.out, "\"interactions\":2"), "%s%s", r.out, r.err);
    cli_result_free(&r);
    /* trm --epochs 0 used to write "best epoch -1": now outside the range */
    r = cli_run((const char *[]){"trm", "train", "--data", out, "--out", dr_test_path(dir, "t.gguf"), "--epochs", "0", NULL});
    CHECK_MSG(r.rc == 2 && strstr(r.err, "--epochs"), "%s", r.err);
    CHECK(access(dr_test_path(dir, "t.gguf"), F_OK) != 0);
    cli_result_free(&r);
}
