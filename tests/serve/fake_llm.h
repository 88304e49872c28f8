/* A scripted OpenAI-compatible server on a free loopback port (libmicrohttpd, in the test
 * process): the i-th POST gets script[min(i, n - 1)]; GET /models lists the model "fake". It
 * records the request bodies and the Authorization header, so a test sees what was sent. */
#ifndef DEEPREC_TEST_FAKE_LLM_H
#define DEEPREC_TEST_FAKE_LLM_H

#include <pthread.h>

typedef struct fake_reply {
    int status;
    const char *body;
} fake_reply;

#define FAKE_MAX_BODIES 32
typedef struct fake_llm {
    struct MHD_Daemon *d;
    int port;
    const fake_reply *script;
    int n_script;
    int n_posts, n_gets;
    char *bodies[FAKE_MAX_BODIES]; /* the first POST bodies, in arrival order */
    char auth[256];                /* the last Authorization header */
    pthread_mutex_t mu;
} fake_llm;
void fake_llm_start(fake_llm *f, const fake_reply *script, int n);
void fake_llm_stop(fake_llm *f);
/* "http://127.0.0.1:PORT/v1" in a static buffer. */
const char *fake_llm_url(const fake_llm *f);

#endif
