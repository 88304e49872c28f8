/* Fuzz the line/record importers end to end (parse, builder, k-core, sort):
 * the first byte picks a format and a file name, the rest is the file. */
#include "deeprec/data.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { const char *fmt, *name; } kinds[] = {
    {"movielens", "u.data"},   {"movielens", "u.item"},      {"movielens", "ratings.dat"}, {"movielens", "movies.dat"},
    {"movielens", "ratings.csv"}, {"movielens", "movies.csv"}, {"recbole", "x.inter"},     {"recbole", "x.item"},
    {"s3rec", "s.txt"},        {"sasrec", "p.txt"},          {"amazon2018", "r.csv"},      {"amazon2018", "r.json"},
    {"amazon2018", "meta_r.json"}, {"amazon2023", "r.jsonl"}, {"amazon2023", "meta_r.jsonl"}, {"csv", "x.csv"}};

static char dir[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz_data_import_%d", (int)getpid());
        mkdir(dir, 0700);
    }
    int k = data[0] % (sizeof kinds / sizeof *kinds);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, kinds[k].name);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    const char *in[] = {path};
    dr_data_import_opts o = {0};
    o.format = kinds[k].fmt;
    o.inputs = in;
    o.n_inputs = 1;
    o.filter.min_user_count = (data[0] >> 4) & 3;
    o.filter.min_item_count = (data[0] >> 6) & 3;
    dr_dataset d;
    if (dr_data_import(&o, &d) == DR_OK) {
        dr_data_stats s;
        dr_data_compute_stats(&d, &s);
        if (s.n_inter != d.n_inter) abort();
        for (int64_t i = 0; i < d.n_inter; i++)
            if (d.items[i] < 1 || d.items[i] > d.n_items) abort();
        dr_data_free(&d);
    } else if (!dr_error_message()[0])
        abort(); /* every failure carries a message */
    unlink(path);
    return 0;
}
