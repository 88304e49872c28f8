/* Running $DEEPREC_BIN from the CLI tests: argv straight to exec (no shell), stdout and
 * stderr captured. */
#ifndef DEEPREC_TEST_CLI_RUN_H
#define DEEPREC_TEST_CLI_RUN_H

typedef struct cli_result {
    int rc;        /* exit status; -1 when it did not exit normally */
    char *out;     /* stdout and stderr, NUL-terminated (free both) */
    char *err;
} cli_result;

/* The binary, or SKIP when DEEPREC_BIN is not set. */
const char *cli_bin(void);
/* Runs bin with argv (NULL-terminated, argv[0] is the first argument after the binary). */
cli_result cli_run(const char *const *args);
/* Same through /bin/sh -c (for redirections and pipes). */
cli_result cli_sh(const char *cmd);
void cli_result_free(cli_result *r);

#endif
