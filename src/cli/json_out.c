/* --json output of every command: one serialisation and one failure path, so that a
 * command never prints a half or empty line where a JSON object was promised. */
#include "cli.h"
#include <jansson.h>
#include <stdlib.h>

int cli_print_json(json_t *j, size_t flags) {
    char *s = j ? json_dumps(j, flags) : NULL;
    json_decref(j);
    if (!s) return dr_error(DR_ERR_NOMEM, "cannot serialise the JSON output");
    printf("%s\n", s);
    free(s);
    return 0;
}
