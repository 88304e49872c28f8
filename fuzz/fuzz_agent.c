/* Fuzz the protocol parsers that read model output: preference extraction,
 * format rules (tool and direct), answer parsing. Model text is untrusted input. */
#include <stdint.h>
#include <stdlib.h>
#include "deeprec/agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    char *pref = NULL;
    if (agent_preference_extract(text, size, &pref) == 0) free(pref);
    (void)agent_format_check(text, size);
    (void)agent_format_check_direct(text, size);
    agent_answer a;
    if (agent_answer_parse(text, size, &a) == 0) agent_answer_free(&a);
    return 0;
}
