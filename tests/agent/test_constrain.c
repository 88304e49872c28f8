/* Title-constrained answers: the token trie, and rollouts of the scripted byte-level model
 * (uniform picks among the allowed tokens) where every line must resolve exactly to a distinct
 * retrieved title, forced tokens carry mask 0, and constrained ones record their allowed set. */
#include "harness.h"
#include "fixture.h"
#include "agent/internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T "\0"

static void add_str(agent_trie *t, const char *s, int title) {
    int32_t ids[64];
    int n = (int)strlen(s);
    for (int i = 0; i < n; i++) ids[i] = (unsigned char)s[i];
    int32_t leaf = -1;
    CHECK_OK(agent_trie_add(t, ids, n, title, &leaf));
    CHECK(leaf > 0 && t->nodes[leaf].tok == ids[n - 1]);
}

static int32_t walk(const agent_trie *t, const char *s) {
    int32_t node = 0;
    for (const char *p = s; *p && node >= 0; p++) node = agent_trie_child(t, node, (unsigned char)*p);
    return node;
}

/* "Heat" is a prefix of "Heat Wave": after "Heat" both the space and the end ('\n') are
 * allowed; a listed title is no longer offered, nor a branch left without titles. */
TEST(agent_constrain_trie) {
    agent_trie t = {0};
    add_str(&t, "Heat", 0);
    add_str(&t, "Heat Wave", 1);
    add_str(&t, "Babe", 2);
    add_str(&t, "Babe", 3); /* same sequence: once */
    CHECK_EQ_INT(t.nodes[0].avail, 3);
    int32_t out[8];
    CHECK_EQ_INT(agent_trie_allowed(&t, 0, '\n', out), 2);
    CHECK_EQ_INT(out[0], 'H');
    CHECK_EQ_INT(out[1], 'B');
    int32_t heat = walk(&t, "Heat");
    CHECK(heat > 0);
    CHECK_EQ_INT(agent_trie_allowed(&t, heat, '\n', out), 2);
    CHECK_EQ_INT(out[0], ' ');
    CHECK_EQ_INT(out[1], '\n');
    CHECK_EQ_INT(agent_trie_allowed(&t, walk(&t, "Hea"), '\n', out), 1);
    CHECK_EQ_INT(out[0], 't');
    agent_trie_use(&t, heat);
    CHECK_EQ_INT(agent_trie_allowed(&t, heat, '\n', out), 1);
    CHECK_EQ_INT(out[0], ' ');
    agent_trie_use(&t, walk(&t, "Heat Wave"));
    CHECK_EQ_INT(agent_trie_allowed(&t, 0, '\n', out), 1);
    CHECK_EQ_INT(out[0], 'B');
    int32_t babe = walk(&t, "Babe");
    CHECK_EQ_INT(t.nodes[babe].title, 2);
    CHECK_EQ_INT(agent_trie_allowed(&t, babe, '\n', out), 1);
    CHECK_EQ_INT(out[0], '\n');
    agent_trie_use(&t, babe);
    CHECK_EQ_INT(t.nodes[0].avail, 0);
    CHECK_EQ_INT(agent_trie_allowed(&t, 0, '\n', out), 0);
    agent_trie_free(&t);
}

static const char s_answer[] = AGENT_TAG_THINK "x" AGENT_TAG_PREF "crime; heist" AGENT_TAG_PREF_END T
    "more" AGENT_TAG_PREF "quiet drama" AGENT_TAG_PREF_END T "ok\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER T;

/* Checks of one constrained episode of the byte model: tokens spell the text, forced tokens
 * (prompt, tools, answer structure, single continuations) have mask 0 and log-prob 0, every
 * constrained token has mask 1, lies in its recorded set (>= 2 distinct ids) and log-prob
 * -log(set size) (the scripted model's uniform pick). */
static void check_constrained(const agent_episode *e, int *n_constrained, int *n_forced_answer) {
    CHECK_EQ_INT((int64_t)e->n_tokens, (int64_t)e->text_len);
    for (int32_t k = 0; k < e->n_tokens; k++) CHECK_EQ_INT(e->tokens[k], (unsigned char)e->text[k]);
    const char *tag = strstr(e->text + e->prompt_len, AGENT_TAG_ANSWER);
    CHECK(tag != NULL);
    int32_t ans = (int32_t)(tag - e->text) + (int32_t)strlen(AGENT_TAG_ANSWER);
    for (int32_t k = 0; k < e->n_tokens; k++) {
        if (e->allow_n[k] > 0) {
            CHECK(k >= ans);
            CHECK_EQ_INT(e->mask[k], 1);
            int n = e->allow_n[k], has = 0;
            CHECK(n >= 2);
            const int32_t *ids = e->allow_ids + e->allow_off[k];
            for (int a = 0; a < n; a++) {
                has |= ids[a] == e->tokens[k];
                for (int b = 0; b < a; b++) CHECK(ids[a] != ids[b]);
            }
            CHECK(has);
            CHECK_NEAR(e->logprob[k], -logf((float)n), 1e-6);
            (*n_constrained)++;
        } else if (k >= ans) {
            CHECK_EQ_INT(e->mask[k], 0);
            CHECK(e->logprob[k] == 0.0f);
            (*n_forced_answer)++;
        }
    }
}

/* Constrained episodes of the scripted byte model (s_answer, uniform picks from `seed`) and the
 * hash tool: n_rq requests from users u0, u0 + 1, ... x 2 samples, titles constrained, the
 * order rule as asked. *n_constrained gets the model's constrained picks. */
static agent_episode *uniform_episodes(const dr_dataset *d, const agent_catalog *c, uint64_t seed, int32_t u0, int n_rq,
                                       int order, int *n_constrained) {
    fx_model fm;
    agent_model m;
    const char *sc[] = {s_answer};
    fx_model_init(&fm, &m, 2 * n_rq, sc, 1);
    dr_rng_seed(&fm.pick, seed);
    fx_hash_tool ht;
    agent_tool t;
    fx_hash_tool_init(&ht, &t, 60);
    agent_request rq[2];
    for (int r = 0; r < n_rq && r < 2; r++)
        rq[r] = (agent_request){u0 + r, dr_data_seq(d, u0 + r), dr_data_seq_len(d, u0 + r) - 1, 0, NULL};
    agent_rollout_opts o = {0};
    o.samples = 2;
    o.max_turn_tokens = 64; /* the answer is not bound by the turn budget */
    o.constrain_titles = 1;
    o.constrain_order = order;
    agent_episode *e = NULL;
    CHECK_OK(agent_rollout(&m, &t, c, rq, n_rq, &o, &e));
    *n_constrained = fm.n_constrained;
    return e;
}

/* Many seeds at "temperature 1" (uniform picks): every answer is 10 exact, distinct titles of
 * items retrieved in the episode, and the format is valid. */
TEST(agent_constrain_scripted_many_seeds) {
    dr_dataset d;
    fx_dataset_big(&d, 60, 6, 1);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    int n_constrained = 0, n_forced = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        int picks;
        agent_episode *e = uniform_episodes(&d, c, seed, 0, 2, 0, &picks);
        CHECK(picks > 0);
        for (int i = 0; i < 4; i++) {
            CHECK_STR(agent_outcome_name(e[i].outcome), "finished");
            CHECK_STR(agent_format_name(e[i].format), "ok");
            CHECK_EQ_INT(e[i].answer.n_lines, AGENT_N_REC);
            int32_t *ret;
            int n_ret;
            CHECK_OK(agent_episode_retrieved(&e[i], &ret, &n_ret));
            for (int l = 0; l < AGENT_N_REC; l++) {
                CHECK_EQ_INT(e[i].how[l], AGENT_RESOLVE_EXACT);
                CHECK_STR(e[i].answer.lines[l], agent_catalog_title(c, e[i].resolved[l]));
                int in = 0;
                for (int q = 0; q < n_ret; q++) in |= ret[q] == e[i].resolved[l];
                CHECK(in);
                for (int q = 0; q < l; q++) CHECK(e[i].resolved[q] != e[i].resolved[l]);
            }
            free(ret);
            check_constrained(&e[i], &n_constrained, &n_forced);
        }
        agent_episodes_free(e, 4);
    }
    CHECK(n_constrained > 0 && n_forced > 0);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* Fewer distinct titles than lines: "Toy Story" twice (items 1 and 11) and "Apollo 13" give
 * two lines, then the block closes; the format check reports the short list. Off: the model's
 * own text is kept (the scripted answer after the tag). */
TEST(agent_constrain_few_titles_and_off) {
    dr_dataset d;
    fx_dataset(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    /* preference of length 10: items 11, 12, 1 */
    static const char s_few[] = AGENT_TAG_THINK "x" AGENT_TAG_PREF "abcdefghij" AGENT_TAG_PREF_END T
        "ok\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n1. Heat\n" AGENT_TAG_ANSWER_END T;
    for (int on = 0; on <= 1; on++) {
        fx_model fm;
        agent_model m;
        const char *sc[] = {s_few};
        fx_model_init(&fm, &m, 1, sc, 1);
        fx_tool ft;
        agent_tool t;
        fx_tool_init(&ft, &t);
        agent_request rq = {0, dr_data_seq(&d, 0), dr_data_seq_len(&d, 0) - 1, 0, NULL};
        agent_rollout_opts o = {0};
        o.constrain_titles = on;
        agent_episode *e;
        CHECK_OK(agent_rollout(&m, &t, c, &rq, 1, &o, &e));
        CHECK_STR(agent_outcome_name(e->outcome), "finished");
        const char *ans = strstr(e->text + e->prompt_len, AGENT_TAG_ANSWER);
        if (on) {
            CHECK_EQ_INT(e->answer.n_lines, 2);
            int toy_first = !strcmp(e->answer.lines[0], "Toy Story");
            CHECK_STR(ans, toy_first ? AGENT_TAG_ANSWER "\n1. Toy Story\n2. Apollo 13\n" AGENT_TAG_ANSWER_END
                                     : AGENT_TAG_ANSWER "\n1. Apollo 13\n2. Toy Story\n" AGENT_TAG_ANSWER_END);
            CHECK_STR(agent_format_name(e->format), "answer_lines");
            CHECK_EQ_INT(fm.n_constrained, 1); /* the first title; the second is the only one left */
        } else {
            CHECK_STR(ans, AGENT_TAG_ANSWER "\n1. Heat\n" AGENT_TAG_ANSWER_END);
            CHECK_EQ_INT(fm.n_constrained, 0);
        }
        agent_episodes_free(e, 1);
    }
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* A byte tokenizer that, like BPE on ")\n", merges a title's last character with the newline
 * after it: "c\n" is one token, MERGE_NL + c, for every c other than '\n' and '>'. */
enum { MERGE_NL = 1000 };
static int merge_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = malloc((len ? len : 1) * sizeof(int32_t));
    if (!*ids) return dr_error(DR_ERR_NOMEM, "oom");
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (i + 1 < len && text[i + 1] == '\n' && ch != '\n' && ch != '>') {
            (*ids)[k++] = MERGE_NL + ch;
            i++;
        } else {
            (*ids)[k++] = ch;
        }
    }
    *n = k;
    return 0;
}
static int (*byte_piece)(void *, int32_t, char *, size_t);
static int merge_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    if (id < MERGE_NL) return byte_piece(ctx, id, buf, cap);
    if (cap >= 2) buf[0] = (char)(id - MERGE_NL), buf[1] = '\n';
    return 2;
}

/* A constrained answer has the tokens its own text encodes to: each title's last character
 * and its line's newline come as the one merged token the model saw in training text, never
 * as the pair (title's last byte, "\n"). */
TEST(agent_constrain_title_tokens_as_in_text) {
    dr_dataset d;
    fx_dataset_big(&d, 60, 6, 1);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    for (uint64_t seed = 1; seed <= 8; seed++) {
        fx_model fm;
        agent_model m;
        const char *sc[] = {s_answer};
        fx_model_init(&fm, &m, 1, sc, 1);
        byte_piece = m.piece;
        m.encode = merge_encode;
        m.piece = merge_piece;
        dr_rng_seed(&fm.pick, seed);
        fx_hash_tool ht;
        agent_tool t;
        fx_hash_tool_init(&ht, &t, 60);
        agent_request rq = {0, dr_data_seq(&d, 0), dr_data_seq_len(&d, 0) - 1, 0, NULL};
        agent_rollout_opts o = {0};
        o.max_turn_tokens = 64;
        o.constrain_titles = 1;
        agent_episode *e;
        CHECK_OK(agent_rollout(&m, &t, c, &rq, 1, &o, &e));
        CHECK_STR(agent_format_name(e->format), "ok");
        CHECK_EQ_INT(e->answer.n_lines, AGENT_N_REC);
        /* the answer's tokens from "\n1." after the tag up to the closing tag */
        const char *tag = strstr(e->text + e->prompt_len, AGENT_TAG_ANSWER);
        CHECK(tag != NULL);
        const char *body = tag + strlen(AGENT_TAG_ANSWER), *end = strstr(body, AGENT_TAG_ANSWER_END);
        CHECK(end != NULL);
        size_t off = 0;
        int32_t k = 0;
        while (k < e->n_tokens && off < (size_t)(body - e->text)) {
            char b[8];
            off += (size_t)merge_piece(&fm, e->tokens[k++], b, sizeof b);
        }
        CHECK_EQ_INT((int64_t)off, (int64_t)(body - e->text));
        int32_t *want;
        size_t n_want;
        CHECK_OK(merge_encode(NULL, body, (size_t)(end - body), &want, &n_want));
        CHECK(k + (int32_t)n_want <= e->n_tokens);
        int merged = 0;
        for (size_t i = 0; i < n_want; i++) {
            CHECK_EQ_INT(e->tokens[k + (int32_t)i], want[i]);
            merged += want[i] >= MERGE_NL;
        }
        CHECK_EQ_INT(merged, AGENT_N_REC); /* one merged end per title line */
        free(want);
        agent_episodes_free(e, 1);
    }
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* constrain_order: every line is the first not yet listed title of some call's list, so each
 * call's order survives in the answer; the choices stay recorded with their allowed sets. */
TEST(agent_constrain_order_keeps_each_calls_order) {
    dr_dataset d;
    fx_dataset_big(&d, 60, 6, 1);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    int n_constrained = 0, n_forced = 0, n_not_first = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        int picks;
        agent_episode *e = uniform_episodes(&d, c, seed, (int32_t)(seed % 6), 1, 1, &picks);
        for (int i = 0; i < 2; i++) {
            CHECK_STR(agent_format_name(e[i].format), "ok");
            CHECK_EQ_INT(e[i].n_calls, 2);
            for (int l = 0; l < AGENT_N_REC; l++) {
                int32_t it = e[i].resolved[l];
                int head_of_some = 0, first_of_first = 0;
                for (int k = 0; k < e[i].n_calls; k++) {
                    const agent_call *call = &e[i].calls[k];
                    int j = 0; /* the call's first item not listed before line l */
                    for (;;) {
                        int listed = 0;
                        for (int q = 0; q < l; q++) listed |= e[i].resolved[q] == call->items[j];
                        if (!listed || j + 1 >= call->n_items) break;
                        j++;
                    }
                    if (call->items[j] == it) head_of_some = 1, first_of_first |= k == 0;
                }
                CHECK(head_of_some);
                n_not_first += !first_of_first;
            }
            check_constrained(&e[i], &n_constrained, &n_forced);
        }
        agent_episodes_free(e, 2);
    }
    CHECK(n_constrained > 0 && n_not_first > 0); /* the model did choose between the lists */
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* constrain_tags with titles constrained: a turn that spends its budget after a tool call
 * (here: a model that lists titles in its reasoning and never closes it, as the demo's small
 * model sometimes does) is closed for the model. The rollout writes "\n</think>\n" and the
 * answer tag as forced tokens and the constrained answer follows; the episode is marked. Off,
 * the same script runs the turn out and the episode ends without an answer. */
static const char s_no_close[] = AGENT_TAG_THINK "Look.\n" AGENT_TAG_PREF "crime" AGENT_TAG_PREF_END T
    "1. Heat\n2. Casino\n3. Heat\n4. Heat\n5. Heat\n6. Heat\n" "\x02" T;

TEST(agent_constrain_turn_budget_opens_the_answer) {
    dr_dataset d;
    fx_dataset_big(&d, 60, 6, 1);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    for (int on = 0; on < 2; on++) {
        fx_model fm;
        agent_model m;
        const char *sc[] = {s_no_close};
        fx_model_init(&fm, &m, 1, sc, 1);
        fm.follow_script = 2;
        fm.tag_tokens = 1;
        fx_hash_tool ht;
        agent_tool t;
        fx_hash_tool_init(&ht, &t, 60);
        agent_request rq = {0, dr_data_seq(&d, 0), dr_data_seq_len(&d, 0) - 1, 0, NULL};
        agent_rollout_opts o = {0};
        o.max_turn_tokens = 48;
        o.constrain_titles = o.constrain_prefs = 1;
        o.constrain_tags = on;
        agent_episode *e = NULL;
        CHECK_OK(agent_rollout(&m, &t, c, &rq, 1, &o, &e));
        CHECK_EQ_INT(e->n_calls, 1);
        CHECK_EQ_INT(e->answer_forced, on);
        if (!on) {
            CHECK_STR(agent_outcome_name(e->outcome), "context_too_long");
            agent_episodes_free(e, 1);
            continue;
        }
        CHECK_STR(agent_outcome_name(e->outcome), "finished");
        CHECK_STR(agent_format_name(e->format), "ok");
        CHECK_EQ_INT(e->answer.n_lines, AGENT_N_REC);
        for (int i = 0; i < AGENT_N_REC; i++) CHECK(e->resolved[i] > 0);
        /* 48 tokens of the model's turn, then the forced close: mask 0, no set, log-prob 0 */
        const char *close = "\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER;
        const char *at = strstr(e->text + e->prompt_len, close);
        CHECK(at != NULL);
        int32_t k = e->n_prompt_tokens;
        size_t off = e->prompt_len;
        char b[64];
        while (k < e->n_tokens && off < (size_t)(at - e->text)) off += (size_t)m.piece(m.ctx, e->tokens[k++], b, sizeof b);
        CHECK_EQ_INT((int64_t)off, (int64_t)(at - e->text));
        const int32_t want[] = {'\n', FX_TAG0 + 1, '\n', FX_TAG0 + 6};
        for (int i = 0; i < 4; i++) {
            CHECK_EQ_INT(e->tokens[k + i], want[i]);
            CHECK(!e->mask[k + i] && e->allow_n[k + i] == 0 && e->logprob[k + i] == 0);
        }
        CHECK(e->mask[k - 1] && e->allow_n[k - 1] > 250); /* the turn's last token: the model's */
        agent_episodes_free(e, 1);
    }
    agent_catalog_free(c);
    fx_dataset_free(&d);
}
