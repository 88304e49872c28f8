/* The accepted range of every numeric option, by name, in one table: the same flag means
 * the same range in every command (the rollout options of recommend, eval, rl and agent
 * synth; the training options of trm train, llm sft and rl). The option parser checks each value
 * given on the command line against it, and --help prints it. NaN and infinities are
 * never accepted. A value a command documents as special (0 = off, 0 = default) is
 * inside its range; what a command cannot know from the flag alone (a LoRA rank against
 * the model's sizes, --tool-k against the catalog) is checked where it is known. */
#include "cli.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define BIG 1e9
#define I32 2147483647.0

static const cli_range ranges[] = {
    /* rollout: how an episode is sampled and what the agent may do */
    {"--temp", 0, 100, 0, 0},          /* 0 = greedy */
    {"--probe-temp", 0, 100, 0, 0},
    {"--top-p", 0, 1, 1, 0},           /* 1 = off */
    {"--top-k", 0, 1e6, 0, 0},         /* 0 = off */
    {"--min-p", 0, 1, 0, 1},           /* 0 = off */
    {"--tool-k", 10, 1000, 0, 0},      /* the answer has AGENT_N_REC = 10 lines */
    {"--max-hist", 1, 10000, 0, 0},
    {"--max-calls", 1, 64, 0, 0},
    {"--max-tokens", 1, 1 << 20, 0, 0},
    {"--ctx", 0, 1 << 24, 0, 0},       /* 0 = the model's (at most 4096) */
    {"--samples", 1, 4096, 0, 0},
    {"--probe-samples", 0, 4096, 0, 0},
    {"--slots", 0, 65536, 0, 0},       /* 0 = automatic */
    {"--rec-engines", 0, 16, 0, 0},    /* serve: 0 = automatic; SERVE_MAX_REC_ENGINES */
    {"--llm-parallel", 1, 256, 0, 0},  /* requests in flight to --llm-url */
    {"-n", 1, 1 << 20, 0, 0},
    /* training */
    {"--ensemble", 0, 64, 0, 0},       /* trm train: 0 = one model; 1 is refused there */
    {"--lr", 0, 10, 1, 0},
    {"--wd", 0, 1, 0, 0},
    {"--weight-decay", 0, 1, 0, 0},
    {"--clip", 0, 1e6, 0, 0},          /* 0 = off */
    {"--grad-clip", 0, 1e6, 0, 0},
    {"--warmup", 0, BIG, 0, 0},
    {"--min-lr-ratio", 0, 1, 0, 0},
    {"--epochs", 1, 1e6, 0, 0},
    {"--batch", 1, 1 << 20, 0, 0},
    {"--accum", 1, 65536, 0, 0},
    {"--micro", 1, 65536, 0, 0},
    {"--updates", 1, 10000, 0, 0},
    {"--steps", 1, BIG, 0, 0},
    {"--max-steps", 0, 1e15, 0, 0},    /* 0 = no limit */
    {"--save-every", 1, BIG, 0, 0},
    {"--patience", 0, 1e6, 0, 0},      /* 0 = off */
    {"--valid-users", -1, I32, 0, 0},  /* -1 = auto, 0 = all users */
    {"--lora", 0, 65536, 0, 0},        /* 0 = full fine-tuning */
    {"--lora-alpha", 0, 1e6, 0, 0},    /* 0 = 2 x rank */
    {"--kl-beta", 0, 100, 0, 0},
    {"--clip-low", 0, 1, 0, 0},
    {"--clip-high", 0, 100, 0, 0},
    {"--dropout", 0, 1, 0, 1},
    {"--pref-empty", 0, 1, 0, 0},
    {"--label-smoothing", 0, 1, 0, 1}, /* 0 = off */
    {"--ema", 0, 1, 0, 1},             /* trm train: 0 = off; 1 excluded */
    {"--neg", 1, 1e6, 0, 0},
    {"--mixed-neg", 0, 1, 0, 0},       /* trm train: 0 = uniform only, 1 = in-batch only */
    {"--prompts", 1, 1e7, 0, 0},
    {"--select-k", 0, 1e6, 0, 0},      /* 0 = all users */
    {"--probe", 0, 1e6, 0, 0},
    {"--keep-best", 0, 1e9, 0, 0},
    {"--keep-best-every", 0, 1e9, 0, 0},
    /* model shapes */
    {"--dim", 1, 65536, 0, 0},
    {"--layers", 1, 4096, 0, 0},
    {"--heads", 1, 4096, 0, 0},
    {"--kv-heads", 0, 4096, 0, 0},     /* 0 = --heads */
    {"--head-dim", 0, 65536, 0, 0},    /* 0 = dim / heads */
    {"--ffn", 0, 1 << 22, 0, 0},       /* trm: 0 = 4 x dim */
    {"--max-len", 0, 1 << 20, 0, 0},   /* import, sft: 0 = all / default */
    {"--context", 1, 1 << 24, 0, 0},
    {"--vocab", 1, 1 << 26, 0, 0},
    {"--vocab-size", 1, 1 << 26, 0, 0},
    {"--min-count", 1, 1e15, 0, 0},
    {"--text-buckets", 1, 1 << 26, 0, 0},
    {"--experts", 2, 64, 0, 0},        /* trm text: TRM_TEXT_EXPERTS_MAX */
    {"--std", 0, 10, 0, 0},
    {"--rope-theta", 0, 1e12, 1, 0},
    {"--rms-eps", 0, 1, 1, 1},
    /* data and selection */
    {"--min-rating", -1e9, 1e9, 0, 0},
    {"--min-user-count", 0, BIG, 0, 0},
    {"--min-item-count", 0, BIG, 0, 0},
    {"--users", 0, BIG, 0, 0},         /* 0 = all */
    {"--index", 0, I32, 0, 0},
    {"-k", 1, 100000, 0, 0},
    {"--bootstrap", 0, 1e6, 0, 0},     /* 0 = off */
    {"--best-of", 0, 1024, 0, 0},      /* 0 = off */
    {"--positions", 1, 10000, 0, 0},
    {"--calls", 0, 3, 0, 0},           /* 0 = drawn */
    {"--order-by-target", 0, 1, 0, 0},
    {"--rerank-share", 0, 1, 0, 0},
    {"--stage", 1, 2, 0, 0},
    /* serving */
    {"--port", 0, 65535, 0, 0},        /* 0 = any free port */
    {"--max-body", 1, 1 << 30, 0, 0},
    {"--timeout", 0, 86400, 1, 0},
    {"--max-queue", 0, 1e6, 0, 0},     /* 0 = nothing waits: busy is 503 at once */
    {"--max-sessions", 1, 65536, 0, 0},
    /* machine */
    {"--threads", 0, 4096, 0, 0},      /* 0 = DEEPREC_THREADS or all cores */
    {"--prompt-tokens", 1, 1 << 20, 0, 0},
    {"--seed", -9.3e18, 9.3e18, 0, 0}, /* any 64-bit integer */
};

const cli_range *cli_range_find(const char *name) {
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        if (!strcmp(ranges[i].name, name)) return &ranges[i];
    return NULL;
}

static void fmt_num(char *b, size_t n, double v) {
    if (v >= 9e18) snprintf(b, n, "2^63");
    else if (v <= -9e18) snprintf(b, n, "-2^63");
    else snprintf(b, n, "%.10g", v);
}

void cli_range_format(const cli_range *r, char *buf, size_t n) {
    char lo[32], hi[32];
    fmt_num(lo, sizeof lo, r->lo);
    fmt_num(hi, sizeof hi, r->hi);
    snprintf(buf, n, "%c%s, %s%c", r->lo_open ? '(' : '[', lo, hi, r->hi_open ? ')' : ']');
}

int cli_range_check(const char *name, double v, const char *text) {
    const cli_range *r = cli_range_find(name);
    if (!r) {
        /* a numeric option without a range is a programming error the flag test catches */
        fprintf(stderr, "deeprec: internal error: option %s has no range in src/cli/ranges.c\n", name);
        return -1;
    }
    int ok = isfinite(v) && (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
    if (ok) return 0;
    char rb[80];
    cli_range_format(r, rb, sizeof rb);
    fprintf(stderr, "deeprec: option %s must be in %s, got '%s'\n", name, rb, text);
    return -1;
}
