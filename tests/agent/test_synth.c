/* Synthetic warm-start trajectories: valid format, spans over the tool text, identical to
 * what the rollout produces when a model replays the generated parts, JSON round trip. */
#include "harness.h"
#include "fixture.h"
#include "agent/internal.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void check_traj(const agent_catalog *c, const agent_tool *tool, const dr_dataset *d, int32_t u,
                       const agent_synth_traj *t, int chat) {
    const char *comp = t->completion;
    size_t n = strlen(comp);
    CHECK_EQ_INT(agent_format_check(comp, n), AGENT_FMT_OK);
    CHECK(t->n_calls >= 1 && t->n_calls <= 3);
    CHECK_EQ_INT(t->n_spans, t->n_calls);
    /* spans: exactly the tool-result texts, right after each stop string */
    for (int i = 0; i < t->n_spans; i++) {
        int64_t b = t->tool_spans[i][0], e = t->tool_spans[i][1];
        CHECK(b >= (int64_t)strlen(AGENT_TAG_PREF_END) && e > b && e <= (int64_t)n);
        CHECK(!strncmp(comp + b - strlen(AGENT_TAG_PREF_END), AGENT_TAG_PREF_END, strlen(AGENT_TAG_PREF_END)));
        CHECK(!strncmp(comp + b, AGENT_TAG_LIST "\n", strlen(AGENT_TAG_LIST) + 1));
        const char *tail = AGENT_TAG_LIST_END "\n\n";
        CHECK(!strncmp(comp + e - strlen(tail), tail, strlen(tail)));
        if (i) CHECK(b > t->tool_spans[i - 1][1]);
    }
    CHECK_EQ_INT(agent_count(comp, n, AGENT_TAG_LIST), t->n_spans);
    /* the answer: 10 exact titles, none from the history */
    agent_answer a;
    CHECK_OK(agent_answer_parse(comp, n, &a));
    CHECK_EQ_INT(a.n_lines, 10);
    const int32_t *h = dr_data_seq(d, u);
    int64_t nh = dr_data_seq_len(d, u);
    for (int i = 0; i < 10; i++) {
        int how;
        int32_t it = agent_resolve_line(c, a.lines[i], NULL, 0, &how);
        CHECK_MSG(it > 0 && how == AGENT_RESOLVE_EXACT, "line '%s' does not resolve", a.lines[i]);
        for (int64_t q = 0; q < nh; q++) CHECK(h[q] != it);
    }
    agent_answer_free(&a);
    /* replay: a model that writes the generated parts reproduces the same episode */
    size_t cap = n + 16;
    char *script = calloc(cap, 1);
    size_t w = 0;
    int64_t pos = 0;
    for (int i = 0; i < t->n_spans; i++) {
        memcpy(script + w, comp + pos, (size_t)(t->tool_spans[i][0] - pos));
        w += (size_t)(t->tool_spans[i][0] - pos);
        script[w++] = 0;
        pos = t->tool_spans[i][1];
    }
    memcpy(script + w, comp + pos, n - (size_t)pos);
    w += n - (size_t)pos;
    script[w++] = 0;
    script[w++] = 0;
    const char *scripts[] = {script};
    fx_model fm;
    agent_model m;
    fx_model_init(&fm, &m, 1, scripts, 1);
    agent_request rq = {u, h, nh, 0, NULL};
    agent_rollout_opts o = {0};
    o.chat = chat;
    agent_episode *e;
    CHECK_OK(agent_rollout(&m, tool, c, &rq, 1, &o, &e));
    CHECK_EQ_INT(e->outcome, AGENT_FINISHED);
    CHECK_EQ_INT(e->n_calls, t->n_calls);
    CHECK_STR(e->text + e->prompt_len, comp);
    CHECK(!strncmp(e->text, t->prompt, e->prompt_len) && strlen(t->prompt) == e->prompt_len);
    /* the episode's tool segments are the synth spans */
    int k = 0;
    for (int i = 0; i < e->n_segs; i++)
        if (e->segs[i].kind == AGENT_SEG_TOOL) {
            CHECK_EQ_INT(e->segs[i].chr_begin - (int64_t)e->prompt_len, t->tool_spans[k][0]);
            CHECK_EQ_INT(e->segs[i].chr_end - (int64_t)e->prompt_len, t->tool_spans[k][1]);
            k++;
        }
    CHECK_EQ_INT(k, t->n_spans);
    agent_episodes_free(e, 1);
    free(script);
}

/* The dataset (120 items), its catalog and the hash tool over its items, as the tests here use
 * them; the tool's context lives in the struct, so it is set up in place. */
typedef struct synth_env {
    dr_dataset d;
    agent_catalog *c;
    fx_hash_tool ht;
    agent_tool tool;
} synth_env;
static void env_init(synth_env *e, int n_users, int with_cats) {
    fx_dataset_big(&e->d, 120, n_users, with_cats);
    CHECK_OK(agent_catalog_build(&e->d, &e->c));
    fx_hash_tool_init(&e->ht, &e->tool, 120);
}
static void env_free(synth_env *e) {
    agent_catalog_free(e->c);
    fx_dataset_free(&e->d);
}

static void run_synth(int with_cats, int chat) {
    synth_env e;
    env_init(&e, 12, with_cats);
    dr_dataset d = e.d;
    agent_catalog *c = e.c;
    agent_tool tool = e.tool;
    int calls_seen[4] = {0};
    for (int32_t u = 0; u < d.n_users; u++) {
        agent_synth_opts o = {.chat = chat, .max_hist = 0, .tool_k = 0, .seed = 1000 + (uint64_t)u};
        agent_synth_traj t;
        CHECK_OK(agent_synth_one(c, &tool, dr_data_seq(&d, u), dr_data_seq_len(&d, u), &o, &t));
        calls_seen[t.n_calls]++;
        check_traj(c, &tool, &d, u, &t, chat);
        /* JSON line round trip */
        char *js;
        CHECK_OK(agent_synth_json(&t, &js));
        CHECK(!strchr(js, '\n'));
        json_error_t err;
        json_t *j = json_loads(js, 0, &err);
        CHECK(j != NULL);
        CHECK_STR(json_string_value(json_object_get(j, "prompt")), t.prompt);
        CHECK_STR(json_string_value(json_object_get(j, "completion")), t.completion);
        json_t *mk = json_object_get(j, "mask");
        CHECK_EQ_INT(json_array_size(mk), t.n_spans);
        for (int i = 0; i < t.n_spans; i++) {
            CHECK_EQ_INT(json_integer_value(json_array_get(json_array_get(mk, i), 0)), t.tool_spans[i][0]);
            CHECK_EQ_INT(json_integer_value(json_array_get(json_array_get(mk, i), 1)), t.tool_spans[i][1]);
        }
        json_decref(j);
        free(js);
        agent_synth_traj_free(&t);
    }
    /* the number of calls varies */
    int kinds = 0;
    for (int i = 1; i <= 3; i++) kinds += calls_seen[i] > 0;
    CHECK(kinds >= 2);
    env_free(&e);
}

TEST(agent_synth_valid_with_categories) { run_synth(1, 0); }
TEST(agent_synth_valid_title_words_chat) { run_synth(0, 1); }

TEST(agent_synth_content) {
    synth_env e;
    env_init(&e, 4, 1);
    dr_dataset d = e.d;
    agent_catalog *c = e.c;
    agent_tool tool = e.tool;
    /* history: four items with the categories Romance, Action, Drama (ids 2, 8, 14, 20) */
    int32_t h[4] = {2, 8, 14, 20};
    int nh = 4;
    for (int i = 0; i < nh; i++) CHECK_STR(d.categories[h[i]], "Romance|Action|Drama");
    /* all three aspects tie: alphabetical -> "action; drama"; the recent aspect is the same
     * (skipped); the pair inside one item is "romance action" */
    agent_synth_traj t;
    int seen[4] = {0};
    for (uint64_t s = 0; s < 12; s++) {
        agent_synth_opts o = {.chat = 0, .max_hist = 0, .tool_k = 0, .seed = s};
        CHECK_OK(agent_synth_one(c, &tool, h, nh, &o, &t));
        CHECK(t.n_calls == 1 || t.n_calls == 2);
        seen[t.n_calls]++;
        const char *p1 = strstr(t.completion, AGENT_TAG_PREF);
        CHECK(p1 && !strncmp(p1, AGENT_TAG_PREF "action; drama" AGENT_TAG_PREF_END,
                             strlen(AGENT_TAG_PREF "action; drama" AGENT_TAG_PREF_END)));
        if (t.n_calls == 2) CHECK(strstr(t.completion, AGENT_TAG_PREF "romance action" AGENT_TAG_PREF_END));
        CHECK(strstr(t.completion, "action and drama"));
        agent_synth_traj_free(&t);
    }
    CHECK(seen[1] > 0 && seen[2] > 0);
    /* too few candidates: a tool that returns 3 items */
    fx_tool ft;
    fx_tool_init(&ft, &tool);
    agent_synth_opts o = {.chat = 0, .max_hist = 0, .tool_k = 0, .seed = 1};
    CHECK_ERR(agent_synth_one(c, &tool, h, nh, &o, &t), DR_ERR_RANGE);
    CHECK(t.completion == NULL && t.prompt == NULL);
    env_free(&e);
}

/* The rerank form: one forced call written as the rollout writes it, masked from byte 0; a
 * model replaying the generated tail under agent_request.forced_preference reproduces it. */
TEST(agent_synth_forced_rerank_form) {
    synth_env e;
    env_init(&e, 12, 1);
    dr_dataset d = e.d;
    agent_catalog *c = e.c;
    agent_tool tool = e.tool;
    const char *pref = "romance; drama";
    for (int32_t u = 0; u < 4; u++) {
        agent_synth_opts o = {.seed = 7 + (uint64_t)u, .forced_preference = pref};
        agent_synth_traj t;
        const int32_t *h = dr_data_seq(&d, u);
        int64_t nh = dr_data_seq_len(&d, u);
        CHECK_OK(agent_synth_one(c, &tool, h, nh, &o, &t));
        const char *comp = t.completion;
        size_t n = strlen(comp);
        CHECK_EQ_INT(agent_format_check(comp, n), AGENT_FMT_OK);
        CHECK_EQ_INT(t.n_calls, 1);
        CHECK_EQ_INT(t.n_spans, 1);
        CHECK_EQ_INT(t.tool_spans[0][0], 0);
        const char *head = AGENT_TAG_THINK AGENT_TAG_PREF "romance; drama" AGENT_TAG_PREF_END AGENT_TAG_LIST "\n";
        CHECK(!strncmp(comp, head, strlen(head)));
        /* replay: the script is the text after the forced span */
        size_t tail = n - (size_t)t.tool_spans[0][1];
        char *script = calloc(tail + 2, 1);
        memcpy(script, comp + t.tool_spans[0][1], tail);
        const char *scripts[] = {script};
        fx_model fm;
        agent_model m;
        fx_model_init(&fm, &m, 1, scripts, 1);
        agent_request rq = {u, h, nh, 0, pref};
        agent_rollout_opts ro = {0};
        ro.max_calls = 1;
        agent_episode *e;
        CHECK_OK(agent_rollout(&m, &tool, c, &rq, 1, &ro, &e));
        CHECK_EQ_INT(e->outcome, AGENT_FINISHED);
        CHECK_EQ_INT(e->n_calls, 1);
        CHECK_STR(e->text + e->prompt_len, comp);
        int k = 0;
        for (int i = 0; i < e->n_segs; i++)
            if (e->segs[i].kind == AGENT_SEG_TOOL) {
                CHECK_EQ_INT(e->segs[i].chr_begin - (int64_t)e->prompt_len, t.tool_spans[0][0]);
                CHECK_EQ_INT(e->segs[i].chr_end - (int64_t)e->prompt_len, t.tool_spans[0][1]);
                k++;
            }
        CHECK_EQ_INT(k, 1);
        agent_episodes_free(e, 1);
        free(script);
        agent_synth_traj_free(&t);
    }
    env_free(&e);
}

/* The anchored form: the open call first (anchor 1) or last (anchor 2), 2-3 calls in all, and
 * the open list's best new item leads the answer (2/1 for it against at most 0.5 in all from the
 * aspect calls). */
TEST(agent_synth_anchored_form) {
    synth_env e;
    env_init(&e, 12, 1);
    dr_dataset d = e.d;
    agent_catalog *c = e.c;
    agent_tool tool = e.tool;
    int calls_seen[5] = {0};
    const char *open = AGENT_TAG_PREF AGENT_PREF_ANY AGENT_TAG_PREF_END;
    for (int32_t u = 0; u < d.n_users; u++) {
        for (int form = 0; form < 4; form++) {
            agent_synth_opts o = {0};
            o.seed = 50 + (uint64_t)u;
            o.varied = form & 1;
            o.anchor = 1 + (form >> 1);
            const int32_t *h = dr_data_seq(&d, u);
            int64_t nh = dr_data_seq_len(&d, u);
            agent_synth_traj t;
            CHECK_OK(agent_synth_one(c, &tool, h, nh, &o, &t));
            check_traj(c, &tool, &d, u, &t, 0);
            CHECK(t.n_calls >= 2 && t.n_calls <= 3);
            calls_seen[t.n_calls]++;
            /* the open call is the first call, or the last and only there */
            const char *p1 = strstr(t.completion, AGENT_TAG_PREF), *last = p1;
            for (const char *q = p1; q && (q = strstr(q + 1, AGENT_TAG_PREF));) last = q;
            CHECK(p1 && !strncmp(o.anchor == 2 ? last : p1, open, strlen(open)));
            if (o.anchor == 2) CHECK(strstr(t.completion, open) == last);
            /* the open call's first item outside the history */
            int32_t ids[AGENT_TOOL_K];
            float sc[AGENT_TOOL_K];
            int n = 0;
            CHECK_OK(tool.retrieve(tool.ctx, h, nh, AGENT_PREF_ANY, AGENT_TOOL_K, ids, sc, &n));
            int32_t first = 0;
            for (int i = 0; i < n && !first; i++) {
                int in_hist = 0;
                for (int64_t q = 0; q < nh; q++) in_hist |= h[q] == ids[i];
                if (!in_hist) first = ids[i];
            }
            CHECK(first > 0);
            CHECK_EQ_INT(t.answer[0], first);
            agent_synth_traj_free(&t);
        }
    }
    CHECK(calls_seen[2] > 0 && calls_seen[3] > 0);
    env_free(&e);
}

TEST(agent_pref_is_any_rule) {
    CHECK(agent_pref_is_any(AGENT_PREF_ANY));
    CHECK(agent_pref_is_any("  Anything \n"));
    CHECK(agent_pref_is_any("ANYTHING"));
    CHECK(!agent_pref_is_any("anything goes"));
    CHECK(!agent_pref_is_any("any"));
    CHECK(!agent_pref_is_any(""));
    CHECK(!agent_pref_is_any(NULL));
}

/* The lists of the calls a trajectory made, re-run on the deterministic tool from the
 * preferences written in its completion; returns the number of calls. */
static int rerun_calls(const agent_tool *tool, const int32_t *h, int64_t nh, const char *comp,
                       int32_t lists[4][AGENT_TOOL_K], int n_list[4]) {
    int n_calls = 0;
    for (const char *p = comp; (p = strstr(p, AGENT_TAG_PREF)) && n_calls < 4; n_calls++) {
        p += strlen(AGENT_TAG_PREF);
        const char *e = strstr(p, AGENT_TAG_PREF_END);
        CHECK(e != NULL);
        char pref[300];
        snprintf(pref, sizeof pref, "%.*s", (int)(e - p), p);
        float sc[AGENT_TOOL_K];
        CHECK_OK(tool->retrieve(tool->ctx, h, nh, pref, AGENT_TOOL_K, lists[n_calls], sc, &n_list[n_calls]));
    }
    return n_calls;
}

/* The first item of a list outside the history and the first `l` answer lines (0 if none). */
static int32_t list_head(const int32_t *list, int n, const int32_t *h, int64_t nh, const int32_t *answer, int l) {
    for (int j = 0; j < n; j++) {
        int skip = 0;
        for (int64_t q = 0; q < nh; q++) skip |= h[q] == list[j];
        for (int q = 0; q < l; q++) skip |= answer[q] == list[j];
        if (!skip) return list[j];
    }
    return 0;
}

/* order: the answer is a merge that keeps each call's order (every line is the first unlisted
 * non-history item of some call's list, as constrain_order decodes), and a known next item
 * that is such a head goes first. */
TEST(agent_synth_order_keeps_each_calls_order) {
    synth_env e;
    env_init(&e, 12, 1);
    dr_dataset d = e.d;
    agent_catalog *c = e.c;
    agent_tool tool = e.tool;
    int not_open = 0, targeted = 0;
    for (int32_t u = 0; u < d.n_users; u++) {
        const int32_t *h = dr_data_seq(&d, u);
        int64_t nh = dr_data_seq_len(&d, u);
        agent_synth_opts o = {0};
        o.seed = 90 + (uint64_t)u;
        o.varied = 1;
        o.anchor = 1;
        o.order = 1;
        for (int with_target = 0; with_target < 2; with_target++) {
            agent_synth_traj t;
            CHECK_OK(agent_synth_one(c, &tool, h, nh, &o, &t));
            check_traj(c, &tool, &d, u, &t, 0);
            int32_t lists[4][AGENT_TOOL_K];
            int n_list[4] = {0};
            int n_calls = rerun_calls(&tool, h, nh, t.completion, lists, n_list);
            CHECK_EQ_INT(n_calls, t.n_calls);
            for (int l = 0; l < AGENT_N_REC; l++) {
                int head_of_some = 0;
                for (int k = 0; k < n_calls; k++)
                    if (list_head(lists[k], n_list[k], h, nh, t.answer, l) == t.answer[l]) {
                        head_of_some = 1;
                        not_open += k > 0 && list_head(lists[0], n_list[0], h, nh, t.answer, l) != t.answer[l];
                    }
                CHECK(head_of_some);
            }
            if (with_target) {
                CHECK_EQ_INT(t.answer[0], o.target);
                targeted++;
            } else {
                /* next: the second call's head as the known next item, where the fusion put another first */
                int32_t h2 = list_head(lists[1], n_list[1], h, nh, t.answer, 0);
                o.target = h2 != t.answer[0] ? h2 : 0;
            }
            agent_synth_traj_free(&t);
            if (!o.target) break;
        }
    }
    CHECK(not_open > 0); /* the aspect calls did place items */
    CHECK(targeted > 0);
    env_free(&e);
}
