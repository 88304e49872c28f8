/* Writing outputs (issue 16, findings 7-9): symbolic links written through, devices and
 * folders never replaced, an input never overwritten, one writer per output (flock),
 * stale temporary files of dead processes removed; and JSON text never dropped (2). */
#include "harness.h"
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *slurp(const char *p) {
    char *s = NULL;
    size_t n;
    CHECK_OK(dr_read_file(p, &s, &n));
    return s;
}

TEST(output_symlink_is_written_through) {
    const char *dir = dr_test_tmpdir();
    char target[512], link[512];
    snprintf(target, sizeof target, "%s/real.txt", dir);
    snprintf(link, sizeof link, "%s/link.txt", dir);
    CHECK(symlink("real.txt", link) == 0); /* relative and dangling: the target is created */
    CHECK_OK(dr_write_file_atomic(link, "one", 3));
    struct stat st;
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    char *s = slurp(target);
    CHECK_STR(s, "one");
    free(s);
    CHECK_OK(dr_write_file_atomic(link, "two", 3));
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    s = slurp(target);
    CHECK_STR(s, "two");
    free(s);
}

/* A FIFO stands for any special file (a device like /dev/full): never /dev itself here, so
 * a broken implementation run as root cannot replace a real device. */
TEST(output_non_regular_targets_are_refused) {
    const char *dir = dr_test_tmpdir();
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_ERR(dr_write_file_atomic(fifo, "x", 1), DR_ERR_IO);
    CHECK_MSG(strstr(dr_error_message(), "not a regular file"), "%s", dr_error_message());
    struct stat st;
    CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK_ERR(dr_write_file_atomic(dir, "x", 1), DR_ERR_IO);
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    int fd;
    CHECK_ERR(dr_output_claim(fifo, NULL, 0, &fd), DR_ERR_IO);
    /* a link to a special file: the target counts */
    char link[512];
    snprintf(link, sizeof link, "%s/to-fifo", dir);
    CHECK(symlink(fifo, link) == 0);
    CHECK_ERR(dr_write_file_atomic(link, "x", 1), DR_ERR_IO);
    CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
}

TEST(output_equal_to_an_input_is_refused) {
    const char *dir = dr_test_tmpdir();
    char in[512], other[512];
    snprintf(in, sizeof in, "%s/in.txt", dir);
    snprintf(other, sizeof other, "%s/./in.txt", dir); /* another spelling of the same file */
    CHECK_OK(dr_write_file_atomic(in, "data", 4));
    const char *inputs[] = {"/nonexistent", in};
    int fd = -1;
    CHECK_ERR(dr_output_claim(other, inputs, 2, &fd), DR_ERR_ARG);
    CHECK_MSG(strstr(dr_error_message(), "same file as the input"), "%s", dr_error_message());
    char *s = slurp(in);
    CHECK_STR(s, "data");
    free(s);
}

TEST(output_lock_refuses_a_second_writer) {
    const char *dir = dr_test_tmpdir();
    char out[512], lock[512];
    snprintf(out, sizeof out, "%s/m.gguf", dir);
    snprintf(lock, sizeof lock, "%s/m.gguf.lock", dir);
    int fd = -1;
    CHECK_OK(dr_output_claim(out, NULL, 0, &fd));
    CHECK(fd >= 0);
    /* another process: flock locks belong to open files, a child's fresh open conflicts */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd2 = -1;
        int rc = dr_output_claim(out, NULL, 0, &fd2);
        _exit(rc == DR_ERR_IO && strstr(dr_error_message(), "another process") ? 0 : 1);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the second claim was not refused");
    close(fd); /* released: the next claim succeeds */
    CHECK_OK(dr_output_claim(out, NULL, 0, &fd));
    close(fd);
}

TEST(output_unwritable_folder_found_before_the_work) {
    int fd = -1;
    CHECK_ERR(dr_output_claim("/nonexistent-dir/x/out.gguf", NULL, 0, &fd), DR_ERR_IO);
    CHECK(fd < 0);
}

TEST(output_stale_temp_of_dead_process_removed) {
    const char *dir = dr_test_tmpdir();
    char out[512], stale[600], live[600];
    snprintf(out, sizeof out, "%s/o.bin", dir);
    /* a child that has exited: its PID runs no process */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0);
    CHECK(waitpid(pid, NULL, 0) == pid);
    snprintf(stale, sizeof stale, "%s.tmp.%ld", out, (long)pid);
    snprintf(live, sizeof live, "%s.tmp.%ld", out, (long)getppid());
    CHECK_OK(dr_write_file_atomic(stale, "junk", 4));
    CHECK_OK(dr_write_file_atomic(live, "busy", 4));
    CHECK_OK(dr_write_file_atomic(out, "new", 3));
    CHECK(access(stale, F_OK) != 0);
    CHECK(access(live, F_OK) == 0); /* a running process's file is left alone */
}

TEST(json_text_replaces_invalid_utf8) {
    /* a multi-byte character cut in the middle, as `-n` cuts generated text */
    json_t *j = dr_json_text("caf\xc3", 4);
    CHECK(j != NULL && json_is_string(j));
    CHECK_STR(json_string_value(j), "caf\xef\xbf\xbd");
    json_decref(j);
    j = dr_json_text("ok \xe2\x82\xac", (size_t)-1);
    CHECK_STR(json_string_value(j), "ok \xe2\x82\xac");
    json_decref(j);
    j = dr_json_text(NULL, 0);
    CHECK(json_is_null(j));
    json_decref(j);
}
