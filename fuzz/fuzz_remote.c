/* Fuzz what the remote LLM client reads from a server it does not control: the completions
 * answer (text, finish, the named stop, the token list in either shape), the error message it
 * quotes, the context-length test, and the base URL rules. A parse either fails with an error
 * or gives a text and a token list whose entries all exist; a quoted message is printable. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "serve/remote_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    remote_completion c;
    if (remote_completion_parse(s, size, &c) == 0) {
        if (!c.text || c.n_tokens < 0 || (c.n_tokens && (!c.tokens || !c.token_len || !c.logprobs))) abort();
        for (int i = 0; i < c.n_tokens; i++)
            if (!c.tokens[i]) abort();
        if (c.stop && !c.stop_said) abort();
        remote_completion_free(&c);
    }
    char *m = remote_error_message(s, size);
    if (!m) abort();
    for (char *p = m; *p; p++)
        if (!isprint((unsigned char)*p)) abort();
    free(m);
    (void)remote_error_is_context(s, size);
    char *url = malloc(size + 1), *norm = NULL;
    memcpy(url, s, size);
    url[size] = 0;
    if (remote_url_check(url, &norm) == 0) {
        if (!norm || strncmp(norm, "http", 4)) abort();
        free(norm);
    } else if (norm) {
        abort();
    }
    free(url);
    return 0;
}
