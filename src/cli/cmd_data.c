/* deeprec data import | stats | show: build a dataset file from raw data, describe it, print a user's history. */
#include "cli.h"
#include "deeprec/data.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *stats_json(const dr_dataset *d, const dr_data_stats *s) {
    json_t *j = json_object();
    json_object_set_new(j, "format", dr_json_text(d->format ? d->format : "", (size_t)-1));
    json_object_set_new(j, "source", dr_json_text(d->source ? d->source : "", (size_t)-1));
    json_object_set_new(j, "users", json_integer(s->n_users));
    json_object_set_new(j, "items", json_integer(s->n_items));
    json_object_set_new(j, "interactions", json_integer(s->n_inter));
    json_object_set_new(j, "seq_len_mean", json_real(s->seq_mean));
    json_object_set_new(j, "seq_len_median", json_real(s->seq_median));
    json_object_set_new(j, "seq_len_min", json_integer(s->seq_min));
    json_object_set_new(j, "seq_len_max", json_integer(s->seq_max));
    json_object_set_new(j, "density", json_real(s->density));
    json_object_set_new(j, "items_titled", json_integer(s->items_titled));
    json_object_set_new(j, "items_with_categories", json_integer(s->items_with_categories));
    json_object_set_new(j, "train_interactions", json_integer(s->train_inter));
    json_object_set_new(j, "valid_users", json_integer(s->valid_n));
    json_object_set_new(j, "test_users", json_integer(s->test_n));
    json_object_set_new(j, "users_without_split", json_integer(s->n_users - s->users_split));
    json_object_set_new(j, "min_user_count", json_integer(d->min_user_count));
    json_object_set_new(j, "min_item_count", json_integer(d->min_item_count));
    json_object_set_new(j, "min_rating", d->has_min_rating ? json_real(d->min_rating) : json_null());
    json_object_set_new(j, "max_len", json_integer(d->max_len));
    return j;
}

static void stats_text(const dr_dataset *d, const dr_data_stats *s) {
    printf("format        %s\n", d->format ? d->format : "");
    printf("source        %s\n", d->source ? d->source : "");
    printf("users         %d\n", s->n_users);
    printf("items         %d   (ids 1..%d, 0 = padding)\n", s->n_items, s->n_items);
    printf("interactions  %lld\n", (long long)s->n_inter);
    printf("seq length    mean %.2f, median %.1f, min %lld, max %lld\n", s->seq_mean, s->seq_median,
           (long long)s->seq_min, (long long)s->seq_max);
    printf("density       %.6f\n", s->density);
    printf("titled items  %d (%.1f%%), with categories %d\n", s->items_titled,
           s->n_items ? 100.0 * s->items_titled / s->n_items : 0.0, s->items_with_categories);
    printf("split         train %lld interactions, valid %d users, test %d users, %d users train-only (<3)\n",
           (long long)s->train_inter, s->valid_n, s->test_n, s->n_users - s->users_split);
    printf("filters       min-user-count %d, min-item-count %d, min-rating ", d->min_user_count, d->min_item_count);
    if (d->has_min_rating) printf("%g", d->min_rating);
    else printf("none");
    printf(", max-len %d%s\n", d->max_len, d->max_len ? "" : " (unlimited)");
}

static int cmd_import(int argc, char **argv) {
    const char *format = NULL, *out = NULL;
    cli_strs inputs = {0};
    int min_u = 0, min_i = 0, max_len = 0, json = 0;
    double min_rating = NAN;
    cli_opt opts[] = {
        {"--format", CLI_STR, &format, "movielens recbole s3rec sasrec amazon2018 amazon2023 dslabs csv"},
        {"--input", CLI_STRS, &inputs, "input file or folder (repeat for several; words after it are inputs too)"},
        {"--out", CLI_STR, &out, "output dataset file (.gguf)"},
        {"--min-user-count", CLI_INT, &min_u, "k-core: drop users with fewer interactions (repeated until stable)"},
        {"--min-item-count", CLI_INT, &min_i, "k-core: drop items with fewer interactions"},
        {"--min-rating", CLI_FLOAT, &min_rating, "keep interactions with rating >= R"},
        {"--max-len", CLI_INT, &max_len, "history length used at training time (recorded; 0 = all)"},
        {"--json", CLI_FLAG, &json, "print a JSON summary on stdout"},
    };
    const char *pos[64];
    int npos = 0, r;
    if (cli_parse_words("deeprec data import --format F --input PATH [PATH...] --out DATA.gguf [options]", argc, argv,
                        opts, CLI_NOPTS(opts), pos, 64, &npos, &r))
        return r;
    const char *in[128];
    int nin = 0;
    for (int i = 0; i < inputs.n; i++) in[nin++] = inputs.v[i];
    for (int i = 0; i < npos; i++) in[nin++] = pos[i];
    if (!format) return cli_usage_error("data import: --format is required");
    if (!nin) return cli_usage_error("data import: --input is required");
    if (!out) return cli_usage_error("data import: --out is required");
    if (min_u < 0 || min_i < 0 || max_len < 0) return cli_usage_error("data import: counts must be >= 0");
    if (cli_claim_output(out, in, nin)) return 1;
    dr_progress prog;
    dr_progress_start(&prog, stderr, "import", 0, "B");
    if (!strcmp(format, "dslabs")) snprintf(prog.unit, sizeof prog.unit, "rows");
    dr_data_import_opts o = {0};
    o.format = format;
    o.inputs = in;
    o.n_inputs = nin;
    o.filter.min_user_count = min_u;
    o.filter.min_item_count = min_i;
    o.filter.max_len = max_len;
    o.filter.has_min_rating = !isnan(min_rating);
    o.filter.min_rating = min_rating;
    o.progress = &prog;
    dr_dataset d;
    double t0 = dr_now();
    if (dr_data_import(&o, &d)) return cli_fail();
    if (prog.t_last > prog.t_start) dr_progress_finish(&prog);
    if (dr_data_save(&d, out)) {
        dr_data_free(&d);
        return cli_fail();
    }
    dr_data_stats s;
    dr_data_compute_stats(&d, &s);
    double dt = dr_now() - t0;
    if (json) {
        json_t *j = stats_json(&d, &s);
        json_object_set_new(j, "out", json_string(out));
        json_object_set_new(j, "seconds", json_real(dt));
        cli_print_json(j, JSON_COMPACT);
    } else {
        printf("wrote %s: %d users, %d items, %lld interactions (%.2f s)\n", out, s.n_users, s.n_items,
               (long long)s.n_inter, dt);
    }
    dr_data_free(&d);
    return 0;
}

static int cmd_stats(int argc, char **argv) {
    int json = 0;
    cli_opt opts[] = {{"--json", CLI_FLAG, &json, "one JSON object on stdout"}};
    const char *pos[1];
    int npos = 0, r;
    if (cli_parse_words("deeprec data stats DATA.gguf [--json]", argc, argv, opts, 1, pos, 1, &npos, &r)) return r;
    if (npos != 1) return cli_usage_error("data stats: give one dataset file");
    dr_dataset d;
    if (dr_data_load(&d, pos[0])) return cli_fail();
    dr_data_stats s;
    dr_data_compute_stats(&d, &s);
    if (json) {
        json_t *j = stats_json(&d, &s);
        cli_print_json(j, JSON_COMPACT);
    } else
        stats_text(&d, &s);
    dr_data_free(&d);
    return 0;
}

static int cmd_show(int argc, char **argv) {
    const char *user = NULL;
    int json = 0, index = -1;
    cli_opt opts[] = {{"--user", CLI_STR, &user, "original user id ('#N' = the N-th user)"},
                      {"--index", CLI_INT, &index, "internal user number (0-based) instead of --user"},
                      {"--json", CLI_FLAG, &json, "one JSON object on stdout"}};
    const char *pos[1];
    int npos = 0, r;
    if (cli_parse_words("deeprec data show DATA.gguf --user U [--json]", argc, argv, opts, 3, pos, 1, &npos, &r))
        return r;
    if (npos != 1) return cli_usage_error("data show: give one dataset file");
    if (!user && index < 0) return cli_usage_error("data show: --user U (or --index N) is required");
    dr_dataset d;
    if (dr_data_load(&d, pos[0])) return cli_fail();
    int32_t u;
    if (dr_data_user_lookup(&d, user, index, pos[0], &u)) {
        dr_data_free(&d);
        return cli_fail();
    }
    int64_t n = dr_data_seq_len(&d, u);
    const int32_t *seq = dr_data_seq(&d, u);
    const int64_t *ts = d.timestamps ? d.timestamps + d.offsets[u] : NULL;
    if (json) {
        json_t *j = json_object(), *h = json_array();
        json_object_set_new(j, "user", dr_json_text(d.user_ids[u], (size_t)-1));
        json_object_set_new(j, "index", json_integer(u));
        json_object_set_new(j, "length", json_integer(n));
        for (int64_t i = 0; i < n; i++) {
            json_t *e = json_object();
            int32_t it = seq[i];
            json_object_set_new(e, "item", json_integer(it));
            json_object_set_new(e, "id", dr_json_text(d.item_ids[it], (size_t)-1));
            json_object_set_new(e, "title", dr_json_text(d.titles[it], (size_t)-1));
            json_object_set_new(e, "categories", dr_json_text(d.categories[it], (size_t)-1));
            if (ts) json_object_set_new(e, "timestamp", json_integer(ts[i]));
            json_object_set_new(e, "split", json_string(n >= 3 && i == n - 1 ? "test" : n >= 3 && i == n - 2 ? "valid" : "train"));
            json_array_append_new(h, e);
        }
        json_object_set_new(j, "history", h);
        cli_print_json(j, JSON_COMPACT);
    } else {
        printf("user %s (#%d): %lld interactions%s\n", cli_text(d.user_ids[u], 0), u, (long long)n,
               n >= 3 ? "" : " (fewer than 3: train only)");
        for (int64_t i = 0; i < n; i++) {
            int32_t it = seq[i];
            const char *tag = n >= 3 && i == n - 1 ? "test " : n >= 3 && i == n - 2 ? "valid" : "train";
            printf("%4lld. [%s] %s", (long long)i + 1, tag, d.titles[it][0] ? cli_text(d.titles[it], 0) : "(no title)");
            printf("  (id %s", cli_text(d.item_ids[it], 0));
            if (ts) printf(", t=%lld", (long long)ts[i]);
            printf(")\n");
            if (d.categories[it][0]) {
                printf("        - categories: ");
                for (const char *c = cli_text(d.categories[it], 0); *c; c++) {
                    if (*c == '|') fputs(", ", stdout);
                    else fputc(*c, stdout);
                }
                printf("\n");
            }
        }
    }
    dr_data_free(&d);
    return 0;
}

CLI_COMMAND(data_import, "data import", "import raw data (movielens, recbole, s3rec, amazon, dslabs, csv) into a dataset file", cmd_import)
CLI_COMMAND(data_stats, "data stats", "statistics of a dataset file (counts, lengths, density, split sizes)", cmd_stats)
CLI_COMMAND(data_show, "data show", "print one user's history with titles", cmd_show)
