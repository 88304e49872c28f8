/* File-name helpers: the importers tell formats by name, the pipeline keys inputs by name. */
#include "deeprec/base.h"
#include <string.h>

const char *dr_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int dr_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}
