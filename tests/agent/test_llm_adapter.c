/* The LLM adapter (agent_model over llm sessions) on a tiny random qwen2 model with a
 * small trained tokenizer: recorded log-probs equal a fresh full-sequence recomputation
 * (KV cache, fork and tool appends are wired right), greedy decoding, determinism. */
#include "harness.h"
#include "fixture.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <stdlib.h>
#include <string.h>

/* log-softmax of logits at position p-1 for token t, from a fresh prefill of ids[0..n). */
static void check_logprobs(const llm_model *m, const int32_t *ids, int n, const uint8_t *mask, const float *lp) {
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, 1, n + 1));
    int V = m->cfg.vocab;
    float *lg = malloc((size_t)n * V * sizeof(float));
    CHECK_OK(llm_prefill(s, 0, ids, n, lg, 1));
    int checked = 0;
    for (int p = 1; p < n; p++) {
        if (!mask[p]) continue;
        const float *x = lg + (size_t)(p - 1) * V;
        double mx = x[0], z = 0;
        for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < V; i++) z += exp(x[i] - mx);
        double want = x[ids[p]] - mx - log(z);
        CHECK_NEAR(lp[p], want, 2e-3);
        checked++;
    }
    CHECK(checked > 0);
    free(lg);
    llm_session_free(s);
}

TEST(agent_llm_adapter_logprobs_fork_append) {
    llm_model *m;
    tokenizer *tok;
    fx_tiny_llm(&m, &tok);
    agent_model am;
    agent_llm_opts o = {4, 256, 1.0f, 0, 1.0f, 42, 0};
    CHECK_OK(agent_model_llm_new(&am, m, tok, &o));
    int32_t seq[2][200];
    uint8_t mask[2][200];
    float lp[2][200];
    int n[2] = {0, 0};
    int32_t *ids;
    size_t nid;
    const char *prompt = "The user's history:\n1. Heat\n";
    CHECK_OK(am.encode(am.ctx, prompt, strlen(prompt), &ids, &nid));
    CHECK_OK(am.append(am.ctx, 0, ids, (int)nid));
    CHECK_OK(am.fork(am.ctx, 0, 2));
    int slots[2] = {0, 2};
    for (int k = 0; k < 2; k++) {
        memcpy(seq[k], ids, nid * sizeof(int32_t));
        memset(mask[k], 0, nid);
        n[k] = (int)nid;
    }
    free(ids);
    for (int round = 0; round < 2; round++) {
        for (int step = 0; step < 6; step++) {
            int32_t t[2];
            float l[2];
            CHECK_OK(am.decode(am.ctx, slots, 2, NULL, t, l));
            for (int k = 0; k < 2; k++) {
                CHECK(l[k] <= 0);
                seq[k][n[k]] = t[k];
                mask[k][n[k]] = 1;
                lp[k][n[k]] = l[k];
                n[k]++;
            }
        }
        /* a tool result into slot 2 only */
        const char *tool = AGENT_TAG_LIST "\n1. Casino\n" AGENT_TAG_LIST_END "\n\n";
        CHECK_OK(am.encode(am.ctx, tool, strlen(tool), &ids, &nid));
        CHECK_OK(am.append(am.ctx, 2, ids, (int)nid));
        memcpy(seq[1] + n[1], ids, nid * sizeof(int32_t));
        memset(mask[1] + n[1], 0, nid);
        n[1] += (int)nid;
        free(ids);
    }
    for (int k = 0; k < 2; k++) check_logprobs(m, seq[k], n[k], mask[k], lp[k]);
    am.release(am.ctx, 0);
    am.release(am.ctx, 2);
    agent_model_llm_free(&am);
    llm_model_free(m);
    tok_free(tok);
}

static agent_episode *roll(const llm_model *m, const tokenizer *tok, agent_catalog *c, const dr_dataset *d, float temp,
                           uint64_t seed) {
    agent_model am;
    agent_llm_opts o = {4, 0, temp, 0, 1.0f, seed, 0};
    CHECK_OK(agent_model_llm_new(&am, m, tok, &o));
    fx_tool ft;
    agent_tool t;
    fx_tool_init(&ft, &t);
    agent_request rq[2];
    for (int r = 0; r < 2; r++) rq[r] = (agent_request){r, dr_data_seq(d, r), dr_data_seq_len(d, r) - 1, 0, NULL};
    agent_rollout_opts ro = {0};
    ro.samples = 2;
    ro.max_turn_tokens = 24;
    agent_episode *e;
    CHECK_OK(agent_rollout(&am, &t, c, rq, 2, &ro, &e));
    agent_model_llm_free(&am);
    return e;
}

TEST(agent_llm_adapter_rollout) {
    llm_model *m;
    tokenizer *tok;
    fx_tiny_llm(&m, &tok);
    dr_dataset d;
    fx_dataset(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    agent_episode *a = roll(m, tok, c, &d, 1.0f, 9), *b = roll(m, tok, c, &d, 1.0f, 9);
    for (int i = 0; i < 4; i++) {
        CHECK(a[i].outcome == AGENT_CONTEXT_TOO_LONG || a[i].outcome == AGENT_SHOT_DOWN ||
              a[i].outcome == AGENT_PREFERENCE_ERROR || a[i].outcome == AGENT_FINISHED);
        CHECK(a[i].n_generated > 0);
        /* same seed: same episode */
        CHECK_EQ_INT(a[i].n_tokens, b[i].n_tokens);
        CHECK(!memcmp(a[i].tokens, b[i].tokens, sizeof(int32_t) * (size_t)a[i].n_tokens));
        check_logprobs(m, a[i].tokens, a[i].n_tokens, a[i].mask, a[i].logprob);
        /* text of the generated segments = decoded generated tokens (special tokens have text here) */
        for (int s = 0; s < a[i].n_segs; s++) {
            const agent_segment *g = &a[i].segs[s];
            if (g->kind != AGENT_SEG_GEN) continue;
            int32_t end = g->tok_end;
            if (end > g->tok_begin && (llm_is_eos(m, a[i].tokens[end - 1]) || a[i].tokens[end - 1] == tok_eos(tok))) end--;
            char *txt;
            size_t len;
            CHECK_OK(tok_decode(tok, a[i].tokens + g->tok_begin, (size_t)(end - g->tok_begin), 0, &txt, &len));
            CHECK_EQ_INT((int64_t)len, g->chr_end - g->chr_begin);
            CHECK(!memcmp(txt, a[i].text + g->chr_begin, len));
            free(txt);
        }
    }
    /* prompt tokens are the prompt's encoding */
    int32_t *ids;
    size_t nid;
    CHECK_OK(tok_encode(tok, a[0].text, a[0].prompt_len, 0, &ids, &nid));
    CHECK_EQ_INT((int64_t)nid, a[0].n_prompt_tokens);
    CHECK(!memcmp(ids, a[0].tokens, nid * sizeof(int32_t)));
    free(ids);
    agent_episodes_free(a, 4);
    agent_episodes_free(b, 4);
    /* greedy: both samples of a request are identical */
    a = roll(m, tok, c, &d, 0.0f, 1);
    CHECK_EQ_INT(a[0].n_tokens, a[1].n_tokens);
    CHECK(!memcmp(a[0].tokens, a[1].tokens, sizeof(int32_t) * (size_t)a[0].n_tokens));
    agent_episodes_free(a, 4);
    agent_catalog_free(c);
    fx_dataset_free(&d);
    llm_model_free(m);
    tok_free(tok);
}

/* Decoding under allowed sets: greedy takes the argmax over the set, sampling stays inside it,
 * and the recorded log-prob is the log-softmax over the set of a fresh prefill's logits. */
TEST(agent_llm_adapter_allowed_sets) {
    llm_model *m;
    tokenizer *tok;
    fx_tiny_llm(&m, &tok);
    const int V = m->cfg.vocab;
    const char *prompt = "The user's history:\n1. Heat\n";
    int32_t *ids;
    size_t nid;
    CHECK_OK(tok_encode(tok, prompt, strlen(prompt), 0, &ids, &nid));
    llm_session *s;
    CHECK_OK(llm_session_new(&s, m, 1, (int)nid + 1));
    float *lg = malloc((size_t)V * sizeof(float));
    CHECK_OK(llm_prefill(s, 0, ids, (int)nid, lg, 0));
    int32_t set[5] = {7, 40, 41, 99, 250};
    for (int greedy = 1; greedy >= 0; greedy--) {
        agent_model am;
        agent_llm_opts o = {2, 256, greedy ? 0.0f : 1.0f, 0, 1.0f, 5, 0};
        CHECK_OK(agent_model_llm_new(&am, m, tok, &o));
        for (int trial = 0; trial < (greedy ? 1 : 20); trial++) {
            CHECK_OK(am.append(am.ctx, 0, ids, (int)nid));
            int slot = 0;
            agent_allow a = {set, 5};
            int32_t t;
            float lp;
            CHECK_OK(am.decode(am.ctx, &slot, 1, &a, &t, &lp));
            int best = 0, in = 0;
            for (int k = 0; k < 5; k++) {
                if (lg[set[k]] > lg[set[best]]) best = k;
                in |= set[k] == t;
            }
            CHECK(in);
            if (greedy) CHECK_EQ_INT(t, set[best]);
            double mx = lg[set[best]], z = 0;
            for (int k = 0; k < 5; k++) z += exp(lg[set[k]] - mx);
            CHECK_NEAR(lp, lg[t] - mx - log(z), 2e-4);
            am.release(am.ctx, 0);
        }
        agent_model_llm_free(&am);
    }
    free(lg);
    free(ids);
    llm_session_free(s);
    llm_model_free(m);
    tok_free(tok);
}
