/* Import dispatcher: expands directories, runs the format's reader into a
 * builder, filters/sorts/renumbers, records provenance. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const dr_data_formats[] = {"movielens", "recbole", "s3rec", "sasrec", "amazon2018",
                                       "amazon2023", "dslabs", "csv", NULL};

typedef int (*import_fn)(dr_data_builder *, const char *const *, int, dr_progress *);

int dr_data_import(const dr_data_import_opts *o, dr_dataset *out) {
    memset(out, 0, sizeof *out);
    static const struct { const char *name; import_fn fn; } fns[] = {
        {"movielens", dr_import_movielens}, {"recbole", dr_import_recbole},   {"s3rec", dr_import_s3rec},
        {"sasrec", dr_import_sasrec},       {"amazon2018", dr_import_amazon2018}, {"amazon2023", dr_import_amazon2023},
        {"dslabs", dr_import_dslabs},       {"csv", dr_import_csv}};
    import_fn fn = NULL;
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        if (o->format && !strcmp(o->format, fns[i].name)) fn = fns[i].fn;
    if (!fn) {
        dr_error(DR_ERR_ARG, "unknown format '%s'", o->format ? o->format : "(none)");
        return dr_error_hint("formats: movielens recbole s3rec sasrec amazon2018 amazon2023 dslabs csv");
    }
    if (o->n_inputs <= 0) return dr_error(DR_ERR_ARG, "no input given");
    char **files = NULL;
    int nf = 0;
    int rc;
    dr_data_builder *b = dr_data_builder_new();
    if (!b) return dr_error_code();
    if (!strcmp(o->format, "dslabs")) {
        /* dslabs takes the package folder, its data folder, or the .deb itself */
        rc = dr_import_dslabs(b, o->inputs, o->n_inputs, o->progress);
    } else {
        rc = dr_expand_inputs(o->inputs, o->n_inputs, &files, &nf);
        if (!rc) {
            int64_t total = 0;
            for (int i = 0; i < nf; i++) {
                struct stat st;
                if (stat(files[i], &st) == 0) total += (int64_t)st.st_size;
            }
            if (o->progress) {
                o->progress->total = total;
                o->progress->done = 0;
            }
            rc = fn(b, (const char *const *)files, nf, o->progress);
        }
    }
    if (!rc) rc = dr_data_builder_finish(b, &o->filter, out);
    dr_data_builder_free(b);
    dr_free_strs(files, nf);
    if (rc) return rc;
    out->format = dr_strdup(o->format);
    dr_buf src = {0};
    for (int i = 0; i < o->n_inputs; i++) {
        if (i) dr_buf_putc(&src, ';');
        dr_buf_put(&src, o->inputs[i], strlen(o->inputs[i]));
    }
    out->source = src.p ? src.p : dr_strdup("");
    if (!out->format || !out->source) {
        dr_data_free(out);
        return dr_error(DR_ERR_NOMEM, "out of memory");
    }
    if (out->n_inter == 0) {
        dr_data_free(out);
        return dr_error(DR_ERR_FORMAT, "no interactions left (empty input, or everything filtered out)");
    }
    return DR_OK;
}
