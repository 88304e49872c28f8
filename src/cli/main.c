/* deeprec: entry point and subcommand dispatch. */
#include "cli.h"
#include "deeprec/dist.h"
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; const char *summary; cli_fn fn; } command;
static command commands[64];
static int n_commands;

void cli_register(const char *name, const char *summary, cli_fn fn) {
    if (n_commands < 64) commands[n_commands++] = (command){name, summary, fn};
}

static int cmp_cmd(const void *a, const void *b) {
    return strcmp(((const command *)a)->name, ((const command *)b)->name);
}

static void usage(FILE *out) {
    fprintf(out, "usage: deeprec COMMAND [options]   (deeprec COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-22s %s\n", commands[i].name, commands[i].summary);
}

int cli_fail(void) {
    if (dr_dist_size() > 1) /* which rank failed: the others are ended with it (main) */
        fprintf(stderr, "deeprec: error (rank %d of %d): %s\n", dr_dist_rank(), dr_dist_size(), dr_error_message());
    else
        fprintf(stderr, "deeprec: error: %s\n", dr_error_message());
    return 1;
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "deeprec: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

/* Under MPI: rank 0 alone prints results and logs; a command failing on any rank ends
 * every rank (the others may be waiting for it in a collective). */
static int run_command(cli_fn fn, int argc, char **argv) {
    int rc = fn(argc, argv);
    if (rc && dr_dist_size() > 1) dr_dist_abort(rc);
    return rc;
}

/* The command argv names: two-word commands ("gguf info") win over one-word ones. *words is
 * how many words of argv it takes. */
static const command *find_command(int argc, char **argv, int *words) {
    if (argc >= 3) {
        char two[128];
        snprintf(two, sizeof two, "%s %s", argv[1], argv[2]);
        for (int i = 0; i < n_commands; i++)
            if (!strcmp(commands[i].name, two)) return *words = 2, &commands[i];
    }
    for (int i = 0; i < n_commands; i++)
        if (argc >= 2 && !strcmp(commands[i].name, argv[1])) return *words = 1, &commands[i];
    return NULL;
}

/* Commands whose time goes to token-by-token decoding: their OpenMP workers spin briefly
 * between regions (dr_wait_policy says why; docs/llm.md, "OpenMP wait policy", has the
 * measurements). Training, evaluation over many users and the pipeline wait passively. */
static dr_wait_policy wait_policy_of(const command *c) {
    static const char *const decoding[] = {"llm generate", "llm bench", "llm logits", "recommend", "serve"};
    for (size_t i = 0; c && i < sizeof decoding / sizeof *decoding; i++)
        if (!strcmp(c->name, decoding[i])) return DR_WAIT_SPIN;
    return DR_WAIT_PASSIVE;
}

int main(int argc, char **argv) {
    int words = 0;
    dr_threads_wait_policy(argv, wait_policy_of(find_command(argc, argv, &words)));
    qsort(commands, (size_t)n_commands, sizeof *commands, cmp_cmd);
    if (dr_dist_init(&argc, &argv)) {
        fprintf(stderr, "deeprec: error: %s\n", dr_error_message());
        return 1;
    }
    atexit(dr_dist_finalize); /* every way out of main, usage errors included */
    int quiet = dr_dist_rank() > 0;
    if (quiet && !freopen("/dev/null", "w", stdout)) dr_dist_abort(1);
    dr_log_set_sink(dr_log_stderr_sink, NULL,
                    quiet ? DR_LOG_WARN : getenv("DEEPREC_DEBUG") ? DR_LOG_DEBUG : DR_LOG_INFO);
    dr_threads_init();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    const command *c = find_command(argc, argv, &words); /* again: dr_dist_init may have edited argv */
    if (c) return run_command(c->fn, argc - words, argv + words);
    fprintf(stderr, "deeprec: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
