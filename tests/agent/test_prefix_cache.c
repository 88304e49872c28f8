/* The shared-prefix KV cache (agent_prefix_cache) on a tiny random qwen2: every prompt form's
 * preamble is found at the start of its prompts, and episodes started from the cache equal
 * those that prefill their preamble themselves token by token and log-prob by log-prob (bit
 * for bit): sampled with G > 1, greedy through the streamed (server) rollout, and with a
 * cache shared by two models. */
#include "harness.h"
#include "fixture.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stdlib.h>
#include <string.h>

typedef struct world {
    llm_model *m;
    tokenizer *tok;
    dr_dataset d;
    agent_catalog *c;
    agent_request req[6];
} world;

static void world_init(world *w) {
    fx_tiny_llm(&w->m, &w->tok);
    fx_dataset_big(&w->d, 40, 6, 1);
    CHECK_OK(agent_catalog_build(&w->d, &w->c));
    for (int r = 0; r < 6; r++)
        w->req[r] = (agent_request){r, dr_data_seq(&w->d, r), dr_data_seq_len(&w->d, r) - 1, 0, NULL};
}
static void world_free(world *w) {
    agent_catalog_free(w->c);
    fx_dataset_free(&w->d);
    llm_model_free(w->m);
    tok_free(w->tok);
}

/* Same tokens, mask, log-probs (bitwise), outcome and text. */
static void check_same(const agent_episode *a, const agent_episode *b, int n) {
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(a[i].user, b[i].user);
        CHECK_EQ_INT(a[i].n_tokens, b[i].n_tokens);
        CHECK_EQ_INT(a[i].n_prompt_tokens, b[i].n_prompt_tokens);
        CHECK(!memcmp(a[i].tokens, b[i].tokens, sizeof(int32_t) * (size_t)a[i].n_tokens));
        CHECK(!memcmp(a[i].mask, b[i].mask, (size_t)a[i].n_tokens));
        CHECK(!memcmp(a[i].logprob, b[i].logprob, sizeof(float) * (size_t)a[i].n_tokens));
        CHECK_EQ_INT(a[i].outcome, b[i].outcome);
        CHECK_EQ_INT((int64_t)a[i].text_len, (int64_t)b[i].text_len);
        CHECK(!memcmp(a[i].text, b[i].text, a[i].text_len));
    }
}

TEST(prefix_cache_finds_each_preamble) {
    world w;
    world_init(&w);
    agent_prefix_cache *pc;
    CHECK_OK(agent_prefix_cache_new(&pc, w.m, w.tok));
    int seen[4] = {0, 0, 0, 0};
    for (int f = 0; f < 4; f++) {
        agent_prompt_opts po = {f & 1, 5, f >> 1};
        char *pre, *prompt;
        int32_t *pids, *ids;
        size_t np, n;
        CHECK_OK(agent_prompt_preamble(&po, &pre));
        CHECK_OK(agent_prompt_build(w.c, w.req[1].hist, w.req[1].n_hist, &po, &prompt));
        CHECK(!strncmp(prompt, pre, strlen(pre)));
        CHECK_OK(tok_encode(w.tok, pre, strlen(pre), 0, &pids, &np));
        CHECK_OK(tok_encode(w.tok, prompt, strlen(prompt), 0, &ids, &n));
        int which;
        CHECK_EQ_INT(agent_prefix_match(pc, ids, (int)n, &which), (int64_t)np);
        CHECK(which >= 0 && which < 4 && !seen[which]);
        seen[which] = 1;
        /* the preamble alone leaves no token for the prompt's last logits: no match */
        CHECK_EQ_INT(agent_prefix_match(pc, ids, (int)np, &which), 0);
        CHECK_EQ_INT(which, -1);
        /* a prompt that does not start with a preamble */
        CHECK_EQ_INT(agent_prefix_match(pc, ids + 1, (int)n - 1, &which), 0);
        free(pre);
        free(prompt);
        free(pids);
        free(ids);
    }
    int64_t hits, reused;
    agent_prefix_cache_stats(pc, &hits, &reused);
    CHECK_EQ_INT(hits, 0);
    CHECK_EQ_INT(reused, 0);
    agent_prefix_cache_free(pc);
    world_free(&w);
}

/* Four users x G = 2 samples at temperature 1 on 4 slots (admissions while others decode, forks),
 * both constraints on. kv 0: the preamble prefilled per sequence; 1: from the model's own cache,
 * or from `share` when given. */
static agent_episode *roll(world *w, int kv, agent_prefix_cache *share, int chat) {
    agent_model am;
    agent_llm_opts lo = {4, 1024, 1.0f, 0, 1.0f, 7, 0};
    CHECK_OK(agent_model_llm_new(&am, w->m, w->tok, &lo));
    agent_model_llm_prefix_kv(&am, kv);
    if (share) agent_model_llm_share_prefix(&am, share);
    fx_hash_tool ht;
    agent_tool t;
    fx_hash_tool_init(&ht, &t, 40);
    agent_rollout_opts ro;
    agent_rollout_opts_default(&ro);
    ro.samples = 2;
    ro.chat = chat;
    ro.tool_k = 10;
    ro.max_hist = 6;
    ro.max_turn_tokens = 16;
    agent_episode *e;
    CHECK_OK(agent_rollout(&am, &t, w->c, w->req, 4, &ro, &e));
    agent_model_llm_free(&am);
    return e;
}

TEST(prefix_cache_rollout_equals_uncached) {
    world w;
    world_init(&w);
    for (int chat = 0; chat <= 1; chat++) {
        agent_prefix_cache *pc;
        CHECK_OK(agent_prefix_cache_new(&pc, w.m, w.tok));
        agent_episode *ref = roll(&w, 0, NULL, chat), *own = roll(&w, 1, NULL, chat), *shared = roll(&w, 1, pc, chat);
        check_same(ref, own, 8);
        check_same(ref, shared, 8);
        for (int i = 0; i < 8; i++) CHECK(ref[i].n_generated > 0);
        /* four prompts (the second sample of each is a fork): the first computes the preamble */
        int64_t hits, reused, P = ref[0].n_prompt_tokens;
        agent_prefix_cache_stats(pc, &hits, &reused);
        CHECK_EQ_INT(hits, 3);
        CHECK(reused > 0 && reused == 3 * (reused / 3) && reused / 3 < P);
        /* a second model on the same cache starts every prompt from it */
        agent_episode *again = roll(&w, 1, pc, chat);
        check_same(ref, again, 8);
        agent_prefix_cache_stats(pc, &hits, &reused);
        CHECK_EQ_INT(hits, 7);
        agent_episodes_free(ref, 8);
        agent_episodes_free(own, 8);
        agent_episodes_free(shared, 8);
        agent_episodes_free(again, 8);
        agent_prefix_cache_free(pc);
    }
    world_free(&w);
}

/* The server's path: greedy requests streamed into a running rollout (agent_rollout_stream) on
 * a model that lives across streams, as serve's recommendation engine keeps it. */
typedef struct feed {
    const agent_request *req;
    int n, next;
    agent_episode got[6];
} feed;
static const agent_request *feed_next(void *ctx, int *id) {
    feed *f = ctx;
    if (f->next >= f->n) return NULL;
    *id = f->next;
    return &f->req[f->next++];
}
static void feed_done(void *ctx, agent_episode *e) {
    feed *f = ctx;
    CHECK(e->request >= 0 && e->request < f->n);
    f->got[e->request] = *e; /* takes the episode's buffers */
    free(e);
}
static void stream(world *w, const agent_model *am, feed *f) {
    memset(f, 0, sizeof *f);
    f->req = w->req;
    f->n = 6;
    fx_hash_tool ht;
    agent_tool t;
    fx_hash_tool_init(&ht, &t, 40);
    agent_rollout_stream st = {feed_next, feed_done, f};
    agent_rollout_opts ro;
    agent_rollout_opts_default(&ro);
    ro.tool_k = 10;
    ro.max_hist = 6;
    ro.max_turn_tokens = 16;
    ro.stream = &st;
    agent_episode *none = NULL;
    CHECK_OK(agent_rollout(am, &t, w->c, NULL, 0, &ro, &none));
    agent_episodes_free(none, 0);
}

TEST(prefix_cache_streamed_rollout_equals_uncached) {
    world w;
    world_init(&w);
    agent_llm_opts lo = {3, 1024, 0.0f, 0, 1.0f, 1, 0};
    agent_model cached, plain;
    CHECK_OK(agent_model_llm_new(&cached, w.m, w.tok, &lo));
    CHECK_OK(agent_model_llm_new(&plain, w.m, w.tok, &lo));
    agent_model_llm_prefix_kv(&plain, 0);
    feed ref, a, b;
    stream(&w, &plain, &ref);
    stream(&w, &cached, &a);
    stream(&w, &cached, &b); /* every prompt of the second stream starts from the cache */
    check_same(ref.got, a.got, 6);
    check_same(ref.got, b.got, 6);
    for (int i = 0; i < 6; i++) {
        agent_episode_free(&ref.got[i]);
        agent_episode_free(&a.got[i]);
        agent_episode_free(&b.got[i]);
    }
    agent_model_llm_free(&cached);
    agent_model_llm_free(&plain);
    world_free(&w);
}
