/* Streamed admission (agent_rollout_stream, the server's continuous batching): requests that
 * arrive while the rollout runs take free slots, every episode is handed over once with its
 * id, and the episodes equal those of a plain rollout of the same requests. */
#include "harness.h"
#include "fixture.h"
#include <stdlib.h>
#include <string.h>

#define T "\0"
#define EOS "\x01" T
static const char s_call[] = AGENT_TAG_THINK "Crime.\n" AGENT_TAG_PREF "crime" AGENT_TAG_PREF_END T "done." EOS;
static const char s_short[] = AGENT_TAG_THINK "no." EOS;

typedef struct src {
    agent_request req[7];
    int n, next, done_n;
    int order[7];            /* ids in the order done saw them */
    agent_episode *got[7];
    int max_live, live;
    fx_model *fm;
} src;

static const agent_request *next(void *ctx, int *id) {
    src *s = ctx;
    /* requests "arrive" one per call, so admission happens while others run */
    if (s->next >= s->n) return NULL;
    *id = s->next;
    s->live++;
    if (s->live > s->max_live) s->max_live = s->live;
    return &s->req[s->next++];
}
static void done(void *ctx, agent_episode *e) {
    src *s = ctx;
    CHECK(e->request >= 0 && e->request < s->n && !s->got[e->request]);
    s->got[e->request] = e;
    s->order[s->done_n++] = e->request;
    s->live--;
}

TEST(rollout_stream_admits_and_hands_over) {
    dr_dataset d;
    agent_catalog *c;
    fx_dataset(&d);
    CHECK_OK(agent_catalog_build(&d, &c));
    const char *scripts[7] = {s_call, s_short, s_call, s_short, s_short, s_call, s_short};
    src s = {0};
    s.n = 7;
    for (int r = 0; r < s.n; r++) {
        int32_t u = r % 3;
        s.req[r] = (agent_request){u, dr_data_seq(&d, u), dr_data_seq_len(&d, u) - 1, 0, NULL};
    }
    fx_model fm;
    agent_model m;
    fx_model_init(&fm, &m, 2, scripts, 7);
    fx_tool ft;
    agent_tool t;
    fx_tool_init(&ft, &t);
    agent_rollout_stream st = {next, done, &s};
    agent_rollout_opts o = {0};
    o.stream = &st;
    agent_episode *eps = NULL;
    CHECK_OK(agent_rollout(&m, &t, c, NULL, 0, &o, &eps));
    agent_episodes_free(eps, 0); /* no listed requests: an empty array */
    eps = NULL;
    CHECK_EQ_INT(s.done_n, 7);
    CHECK_EQ_INT(s.max_live, 2); /* never more than the slots */
    CHECK_EQ_INT(fm.max_batch_seen, 2);
    /* a short episode admitted later ends before the long one admitted first */
    CHECK(s.order[0] == 1);

    /* the same requests in one plain rollout give the same episodes */
    fx_model fm2;
    agent_model m2;
    fx_model_init(&fm2, &m2, 2, scripts, 7);
    fx_tool ft2;
    agent_tool t2;
    fx_tool_init(&ft2, &t2);
    agent_rollout_opts o2 = {0};
    agent_episode *ref = NULL;
    CHECK_OK(agent_rollout(&m2, &t2, c, s.req, 7, &o2, &ref));
    for (int r = 0; r < 7; r++) {
        agent_episode *e = s.got[r];
        CHECK(e != NULL);
        CHECK_EQ_INT(e->request, r);
        CHECK_EQ_INT(e->outcome, ref[r].outcome);
        CHECK_EQ_INT(e->n_calls, ref[r].n_calls);
        CHECK_EQ_INT(e->text_len, ref[r].text_len);
        CHECK(!memcmp(e->text, ref[r].text, e->text_len));
        agent_episode_free(e);
        free(e);
    }
    agent_episodes_free(ref, 7);
    /* more than one sample per request is refused */
    o.samples = 2;
    CHECK_ERR(agent_rollout(&m, &t, c, NULL, 0, &o, &eps), DR_ERR_ARG);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}
