/* The "unclear errors and silently accepted values" of issue 16 that are not flag
 * ranges: a BOM before a header, extra RecBole columns, a JSON number written as a
 * string, a dataset given as the model, '#N' users everywhere, terminal escapes in titles. */
#include "cli_run.h"
#include "harness.h"
#include <stdlib.h>

static char *write(const char *dir, const char *name, const char *text) {
    char *p = strdup(dr_test_path(dir, name));
    CHECK_OK(dr_write_file_atomic(p, text, strlen(text)));
    return p;
}

static cli_result import(const char *fmt, const char *in, const char *out) {
    return cli_run((const char *[]){"data", "import", "--format", fmt, "--input", in, "--out", out, NULL});
}

TEST(cli_import_bom_extra_columns_string_numbers) {
    const char *dir = dr_test_tmpdir();
    char *out = strdup(dr_test_path(dir, "d.gguf"));
    /* a spreadsheet's CSV starts with a UTF-8 byte order mark */
    char *csv = write(dir, "bom.csv", "\xef\xbb\xbfuser,item,timestamp\na,x,1\na,y,2\na,z,3\n");
    cli_result r = import("csv", csv, out);
    CHECK_MSG(r.rc == 0, "BOM csv: %s", r.err);
    cli_result_free(&r);
    char *rb = write(dir, "bom.inter", "\xef\xbb\xbfuser_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n");
    r = import("recbole", rb, out);
    CHECK_MSG(r.rc == 0, "BOM recbole: %s", r.err);
    cli_result_free(&r);
    /* one field more than the header: a field-count error, not a "timestamp" one */
    char *ex = write(dir, "extra.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\tsurplus\n");
    r = import("recbole", ex, out);
    CHECK_MSG(r.rc == 1 && strstr(r.err, "extra.inter:2: 4 tab-separated fields, the header has 3"), "%s", r.err);
    cli_result_free(&r);
    char *az = write(dir, "Beauty.json",
                     "{\"reviewerID\": \"A1\", \"asin\": \"B1\", \"overall\": 5.0, \"unixReviewTime\": \"5\"}\n");
    r = import("amazon2018", az, out);
    CHECK_MSG(r.rc == 1 && strstr(r.err, "expected a JSON number, got the string \"5\""), "%s", r.err);
    cli_result_free(&r);
    free(out), free(csv), free(rb), free(ex), free(az);
}

TEST(cli_dataset_as_model_and_hash_users) {
    const char *dir = dr_test_tmpdir();
    char *out = strdup(dr_test_path(dir, "d.gguf"));
    char *csv = write(dir, "t.csv", "user,item,timestamp,title\na,x,1,Blue\na,y,2,Red\na,z,3,Green\nb,x,1,Blue\n");
    cli_result r = import("csv", csv, out);
    CHECK_EQ_INT(r.rc, 0);
    cli_result_free(&r);
    r = cli_run((const char *[]){"llm", "generate", "--model", out, "--prompt", "x", NULL});
    CHECK_MSG(r.rc == 1 && strstr(r.err, "this is a deeprec dataset file, not a language model"), "%s", r.err);
    /* the path once, not "X: X:" */
    const char *first = strstr(r.err, out);
    CHECK(first && !strstr(first + strlen(out), out));
    cli_result_free(&r);
    r = cli_run((const char *[]){"data", "show", out, "--user", "#1", NULL});
    CHECK_MSG(r.rc == 0 && strstr(r.out, "user b (#1)"), "%s%s", r.out, r.err);
    cli_result_free(&r);
    free(out), free(csv);
}

TEST(cli_titles_with_control_characters_escaped_on_a_terminal) {
    if (system("command -v script >/dev/null 2>&1") != 0) SKIP("script(1) not installed (util-linux)");
    const char *dir = dr_test_tmpdir();
    char *out = strdup(dr_test_path(dir, "d.gguf"));
    /* ESC ] 0 ; ... BEL retitles a terminal window; ESC [ 2 J clears it */
    char *csv = write(dir, "t.csv",
                      "user,item,timestamp,title\na,x,1,\x1b]0;pwned\x07" "Blue\na,y,2,\x1b[2JRed\na,z,3,Green\n");
    cli_result r = import("csv", csv, out);
    CHECK_EQ_INT(r.rc, 0);
    cli_result_free(&r);
    /* into a pipe: the bytes as they are */
    r = cli_run((const char *[]){"data", "show", out, "--user", "a", NULL});
    CHECK_MSG(r.rc == 0 && strstr(r.out, "\x1b[2JRed"), "%s", r.out);
    cli_result_free(&r);
    /* on a terminal (script(1) gives the command a pseudo-terminal): escaped */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "script -qec '%s data show %s --user a' /dev/null", cli_bin(), out);
    r = cli_sh(cmd);
    CHECK_MSG(r.rc == 0 && strstr(r.out, "\\x1b[2JRed") && strstr(r.out, "\\x1b]0;pwned\\x07Blue") &&
                  !strstr(r.out, "\x1b[2J"),
              "%s", r.out);
    cli_result_free(&r);
    free(out), free(csv);
}
