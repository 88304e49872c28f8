/* The rollout engine on a scripted byte-level model and a scripted tool: every outcome,
 * token masks, segments, old log-probs, batching. */
#include "harness.h"
#include "fixture.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define T "\0"       /* turn separator */
#define EOS "\x01" T  /* emit EOS after this turn */
#define HANG "\x02" T /* never stop: spaces forever */

#define ANSWER                                                                                                 \
    AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n1. Heat\n2. Casino\n3. Se7en\n4. Usual Suspects\n5. GoldenEye\n" \
    "6. Babe\n7. Jumanji\n8. Four Rooms\n9. Toy Story\n10. Nothing Like This\n" AGENT_TAG_ANSWER_END

/* finished: two calls, then an answer (stops at the answer's end tag, no EOS needed) */
static const char s_finished[] = AGENT_TAG_THINK "Crime fan.\n" AGENT_TAG_PREF "crime" AGENT_TAG_PREF_END T
    "Good. Now recent ones.\n" AGENT_TAG_PREF "\"heist\"; thriller" AGENT_TAG_PREF_END T
    "Ranking what I found.\n" ANSWER "ignored after the end" T;
static const char s_eos_answer[] = AGENT_TAG_THINK "a" AGENT_TAG_PREF "crime" AGENT_TAG_PREF_END T
    "ok\n" AGENT_TAG_THINK_END AGENT_TAG_ANSWER "\n1. Heat" EOS;
static const char s_shot_down[] = AGENT_TAG_THINK "I will not call anything." EOS;
static const char s_pref_error[] = AGENT_TAG_THINK "x" AGENT_TAG_PREF " \"  \" " AGENT_TAG_PREF_END T "never" EOS;
static const char s_no_begin[] = AGENT_TAG_THINK "x" AGENT_TAG_PREF_END T "never" EOS;
static const char s_recall_error[] = AGENT_TAG_THINK "x" AGENT_TAG_PREF "FAIL" AGENT_TAG_PREF_END T "never" EOS;
static const char s_hang[] = AGENT_TAG_THINK "thinking forever" HANG;
static const char s_empty_result[] = AGENT_TAG_PREF "EMPTY" AGENT_TAG_PREF_END T "hmm" EOS;
#define CALL AGENT_TAG_PREF "c" AGENT_TAG_PREF_END T
static const char s_many[] = CALL CALL CALL CALL CALL CALL CALL CALL CALL "never" EOS;

static void setup(dr_dataset *d, agent_catalog **c) {
    fx_dataset(d);
    CHECK_OK(agent_catalog_build(d, c));
}

/* Invariants every episode must satisfy. */
static void check_episode_invariants(const agent_episode *e) {
    CHECK(e->n_segs >= 1);
    CHECK_EQ_INT(e->segs[0].kind, AGENT_SEG_PROMPT);
    CHECK_EQ_INT(e->segs[0].tok_begin, 0);
    CHECK_EQ_INT(e->segs[0].tok_end, e->n_prompt_tokens);
    CHECK_EQ_INT(e->segs[0].chr_end, (int64_t)e->prompt_len);
    int32_t gen = 0;
    for (int i = 0; i < e->n_segs; i++) {
        const agent_segment *s = &e->segs[i];
        if (i) {
            CHECK_EQ_INT(s->tok_begin, e->segs[i - 1].tok_end);
            CHECK_EQ_INT(s->chr_begin, e->segs[i - 1].chr_end);
        }
        for (int32_t k = s->tok_begin; k < s->tok_end; k++) {
            CHECK_EQ_INT(e->mask[k], s->kind == AGENT_SEG_GEN);
            if (s->kind == AGENT_SEG_GEN) CHECK(e->logprob[k] < 0);
            else CHECK(e->logprob[k] == 0);
        }
        if (s->kind == AGENT_SEG_GEN) gen += s->tok_end - s->tok_begin;
        /* byte model: the tokens of a segment spell its text (an EOS token adds no text) */
        int32_t nt = s->tok_end - s->tok_begin;
        int64_t nc = s->chr_end - s->chr_begin;
        int eos_last = nt > 0 && e->tokens[s->tok_end - 1] == 256;
        CHECK_EQ_INT(nt - eos_last, nc);
        for (int64_t k = 0; k < nc; k++) CHECK_EQ_INT(e->tokens[s->tok_begin + k], (unsigned char)e->text[s->chr_begin + k]);
    }
    CHECK_EQ_INT(e->segs[e->n_segs - 1].tok_end, e->n_tokens);
    CHECK_EQ_INT(e->segs[e->n_segs - 1].chr_end, (int64_t)e->text_len);
    CHECK_EQ_INT(gen, e->n_generated);
}

static agent_episode *run(const char *const *scripts, int n_scripts, int n_req, int G, int n_slots,
                          const agent_rollout_opts *extra, fx_model *fm, fx_tool *ft, agent_catalog *c,
                          const dr_dataset *d) {
    agent_model m;
    agent_tool t;
    fx_model_init(fm, &m, n_slots, scripts, n_scripts);
    fx_tool_init(ft, &t);
    agent_request *req = calloc((size_t)n_req, sizeof *req);
    for (int r = 0; r < n_req; r++) {
        int32_t u = r % 3;
        req[r].user = u;
        req[r].hist = dr_data_seq(d, u);
        req[r].n_hist = dr_data_seq_len(d, u) - 1;
        req[r].target = dr_data_seq(d, u)[dr_data_seq_len(d, u) - 1];
    }
    agent_rollout_opts o = extra ? *extra : (agent_rollout_opts){0};
    o.samples = G;
    agent_episode *eps = NULL;
    CHECK_OK(agent_rollout(&m, &t, c, req, n_req, &o, &eps));
    free(req);
    for (int i = 0; i < n_req * G; i++) check_episode_invariants(&eps[i]);
    return eps;
}

TEST(agent_rollout_finished_two_calls) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    fx_model fm;
    fx_tool ft;
    const char *sc[] = {s_finished};
    agent_episode *e = run(sc, 1, 1, 1, 1, NULL, &fm, &ft, c, &d);
    CHECK_STR(agent_outcome_name(e->outcome), "finished");
    CHECK_EQ_INT(e->n_calls, 2);
    CHECK_STR(e->calls[0].preference, "crime");
    CHECK_STR(e->calls[1].preference, "heist; thriller");
    CHECK_EQ_INT(e->calls[0].n_items, 3);
    CHECK_EQ_INT(ft.calls, 2);
    /* segments: prompt, gen, tool, gen, tool, gen */
    CHECK_EQ_INT(e->n_segs, 6);
    int kinds[] = {0, 1, 2, 1, 2, 1};
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(e->segs[i].kind, kinds[i]);
    /* the tool text is exactly the formatted result of the call */
    char *tt;
    CHECK_OK(agent_tool_result_text(c, e->calls[0].items, e->calls[0].n_items, &tt));
    CHECK_EQ_INT(e->segs[2].chr_end - e->segs[2].chr_begin, (int64_t)strlen(tt));
    CHECK(!memcmp(e->text + e->segs[2].chr_begin, tt, strlen(tt)));
    free(tt);
    /* the generated text before the tool ends with the stop string */
    CHECK(!memcmp(e->text + e->segs[2].chr_begin - strlen(AGENT_TAG_PREF_END), AGENT_TAG_PREF_END,
                  strlen(AGENT_TAG_PREF_END)));
    /* generation stopped at the answer's end tag */
    CHECK(!strstr(e->text, "ignored after"));
    size_t L = strlen(AGENT_TAG_ANSWER_END);
    CHECK(e->text_len > L && !strcmp(e->text + e->text_len - L, AGENT_TAG_ANSWER_END));
    /* the answer is format-valid; lines resolved: exact, fallback (retrieved), unresolved */
    CHECK_STR(agent_format_name(e->format), "ok");
    CHECK_EQ_INT(e->answer.n_lines, 10);
    CHECK_EQ_INT(e->resolved[0], 3);
    CHECK_EQ_INT(e->how[0], AGENT_RESOLVE_EXACT);
    CHECK_EQ_INT(e->resolved[9], 0);
    CHECK_EQ_INT(e->how[9], AGENT_RESOLVE_NONE);
    /* user 0's held-out target is item 6 (not listed) */
    CHECK_EQ_INT(e->target, 6);
    CHECK_EQ_INT(e->hit_rank, -1);
    /* masks: the prompt and tool tokens are 0, the rest 1 */
    int32_t n1 = 0;
    for (int32_t i = 0; i < e->n_tokens; i++) n1 += e->mask[i];
    CHECK_EQ_INT(n1, e->n_generated);
    CHECK_EQ_INT(e->n_tokens, e->n_prompt_tokens + e->n_generated + (e->segs[2].tok_end - e->segs[2].tok_begin) +
                                  (e->segs[4].tok_end - e->segs[4].tok_begin));
    agent_episodes_free(e, 1);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

TEST(agent_rollout_hits_and_eos) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    fx_model fm;
    fx_tool ft;
    /* user 1 (request 1): history 1 1 7 8, target 9 = "Se7en", listed third */
    const char *sc[] = {s_finished};
    agent_episode *e = run(sc, 1, 2, 1, 1, NULL, &fm, &ft, c, &d);
    CHECK_EQ_INT(e[1].target, 9);
    CHECK_EQ_INT(e[1].outcome, AGENT_FINISHED);
    CHECK_EQ_INT(e[1].hit_rank, 2);
    CHECK_EQ_INT(e[1].hit_rank_substr, 2);
    agent_episodes_free(e, 2);
    /* an answer then EOS: finished (format invalid: 1 line) */
    const char *sc2[] = {s_eos_answer};
    e = run(sc2, 1, 1, 1, 1, NULL, &fm, &ft, c, &d);
    CHECK_EQ_INT(e->outcome, AGENT_FINISHED);
    CHECK_EQ_INT(e->tokens[e->n_tokens - 1], 256);
    CHECK_EQ_INT(e->mask[e->n_tokens - 1], 1);
    CHECK_EQ_INT(e->format, AGENT_FMT_ANSWER_BLOCK);
    CHECK_EQ_INT(e->answer.n_lines, 1);
    agent_episodes_free(e, 1);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

static int outcome_of(const char *script, const agent_rollout_opts *o, dr_dataset *d, agent_catalog *c,
                      fx_tool *ft, int *n_calls) {
    fx_model fm;
    const char *sc[] = {script};
    agent_episode *e = run(sc, 1, 1, 1, 1, o, &fm, ft, c, d);
    int out = e->outcome;
    if (n_calls) *n_calls = e->n_calls;
    CHECK_EQ_INT(e->hit_rank, -1);
    agent_episodes_free(e, 1);
    return out;
}

TEST(agent_rollout_outcomes) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    fx_tool ft;
    int nc;
    CHECK_EQ_INT(outcome_of(s_shot_down, NULL, &d, c, &ft, &nc), AGENT_SHOT_DOWN);
    CHECK_EQ_INT(nc, 0);
    CHECK_EQ_INT(outcome_of(s_pref_error, NULL, &d, c, &ft, &nc), AGENT_PREFERENCE_ERROR);
    CHECK_EQ_INT(ft.calls, 0);
    CHECK_EQ_INT(outcome_of(s_no_begin, NULL, &d, c, &ft, &nc), AGENT_PREFERENCE_ERROR);
    CHECK_EQ_INT(outcome_of(s_recall_error, NULL, &d, c, &ft, &nc), AGENT_RECALL_ERROR);
    CHECK_EQ_INT(ft.calls, 1);
    CHECK_EQ_INT(nc, 1);
    /* a tool returning nothing: "None" is inserted and the episode continues (then EOS: shot_down) */
    CHECK_EQ_INT(outcome_of(s_empty_result, NULL, &d, c, &ft, &nc), AGENT_SHOT_DOWN);
    CHECK_EQ_INT(nc, 1);
    /* 9th call: many_recall, only 8 served */
    CHECK_EQ_INT(outcome_of(s_many, NULL, &d, c, &ft, &nc), AGENT_MANY_RECALL);
    CHECK_EQ_INT(nc, 8);
    CHECK_EQ_INT(ft.calls, 8);
    agent_rollout_opts o = {0};
    o.max_calls = 2;
    CHECK_EQ_INT(outcome_of(s_many, &o, &d, c, &ft, &nc), AGENT_MANY_RECALL);
    CHECK_EQ_INT(nc, 2);
    /* the per-turn budget */
    o = (agent_rollout_opts){0};
    o.max_turn_tokens = 50;
    CHECK_EQ_INT(outcome_of(s_hang, &o, &d, c, &ft, &nc), AGENT_CONTEXT_TOO_LONG);
    /* the context cap: during generation, when a tool result would not fit, and for the prompt itself */
    fx_model fm;
    const char *sc[] = {s_finished};
    o = (agent_rollout_opts){0};
    agent_episode *e = run(sc, 1, 1, 1, 1, &o, &fm, &ft, c, &d);
    int32_t prompt = e->n_prompt_tokens, first_turn = e->segs[1].tok_end - e->segs[1].tok_begin;
    agent_episodes_free(e, 1);
    o.max_ctx = prompt + 5;
    e = run(sc, 1, 1, 1, 1, &o, &fm, &ft, c, &d);
    CHECK_EQ_INT(e->outcome, AGENT_CONTEXT_TOO_LONG);
    CHECK_EQ_INT(e->n_tokens, prompt + 5);
    agent_episodes_free(e, 1);
    o.max_ctx = prompt + first_turn + 10; /* the tool text does not fit */
    e = run(sc, 1, 1, 1, 1, &o, &fm, &ft, c, &d);
    CHECK_EQ_INT(e->outcome, AGENT_CONTEXT_TOO_LONG);
    CHECK_EQ_INT(e->n_calls, 1);
    CHECK_EQ_INT(e->n_tokens, prompt + first_turn);
    agent_episodes_free(e, 1);
    o.max_ctx = prompt;
    e = run(sc, 1, 1, 1, 1, &o, &fm, &ft, c, &d);
    CHECK_EQ_INT(e->outcome, AGENT_CONTEXT_TOO_LONG);
    CHECK_EQ_INT(e->n_generated, 0);
    CHECK_EQ_INT(fm.n_appends, 0);
    agent_episodes_free(e, 1);
    for (int i = 0; i < AGENT_N_OUTCOMES; i++) CHECK(strcmp(agent_outcome_name(i), "?") != 0);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

TEST(agent_rollout_batched_groups) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    fx_model fm;
    fx_tool ft;
    /* 5 requests x 4 samples on 8 slots: two requests at a time, mixed outcomes */
    const char *sc[] = {s_finished, s_shot_down, s_many, s_recall_error};
    agent_episode *e = run(sc, 4, 5, 4, 8, NULL, &fm, &ft, c, &d);
    CHECK_EQ_INT(fm.max_batch_seen, 8);
    CHECK_EQ_INT(fm.n_forks, 5 * 3);
    int want[] = {AGENT_FINISHED, AGENT_SHOT_DOWN, AGENT_MANY_RECALL, AGENT_RECALL_ERROR};
    for (int r = 0; r < 5; r++)
        for (int g = 0; g < 4; g++) {
            const agent_episode *x = &e[r * 4 + g];
            CHECK_EQ_INT(x->request, r);
            CHECK_EQ_INT(x->sample, g);
            CHECK_EQ_INT(x->user, r % 3);
            CHECK_EQ_INT(x->outcome, want[g]);
            /* samples of one request share the prompt */
            CHECK_EQ_INT(x->prompt_len, e[r * 4].prompt_len);
            CHECK(!memcmp(x->text, e[r * 4].text, x->prompt_len));
        }
    for (int i = 0; i < 64; i++) CHECK_EQ_INT(fm.slot_used[i], 0); /* every slot released */
    agent_episodes_free(e, 20);
    /* more samples than slots: an argument error */
    agent_model m;
    agent_tool t;
    fx_model_init(&fm, &m, 2, sc, 1);
    fx_tool_init(&ft, &t);
    agent_request rq = {0, dr_data_seq(&d, 0), 3, 4, NULL};
    agent_rollout_opts o = {0};
    o.samples = 3;
    agent_episode *none = (agent_episode *)1;
    CHECK_ERR(agent_rollout(&m, &t, c, &rq, 1, &o, &none), DR_ERR_ARG);
    CHECK(none == NULL);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

static const char s_after_forced[] = "The list fits.\n" ANSWER T;

TEST(agent_rollout_forced_preference) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    fx_model fm;
    fx_tool ft;
    agent_model m;
    agent_tool t;
    const char *sc[] = {s_after_forced};
    fx_model_init(&fm, &m, 4, sc, 1);
    fx_tool_init(&ft, &t);
    agent_request rq[2] = {{0, dr_data_seq(&d, 0), 5, 6, "crime; \"drama\""}, {1, dr_data_seq(&d, 1), 4, 9, "FAIL"}};
    agent_rollout_opts o = {0};
    o.samples = 2;
    agent_episode *e;
    CHECK_OK(agent_rollout(&m, &t, c, rq, 2, &o, &e));
    CHECK_EQ_INT(ft.calls, 2); /* once per request, not per sample */
    for (int g = 0; g < 2; g++) {
        agent_episode *x = &e[g];
        check_episode_invariants(x);
        CHECK_EQ_INT(x->outcome, AGENT_FINISHED);
        CHECK_EQ_INT(x->n_calls, 1);
        CHECK_EQ_INT(x->calls[0].n_items, 3);
        CHECK_EQ_INT(x->n_segs, 3);
        CHECK_EQ_INT(x->segs[1].kind, AGENT_SEG_TOOL);
        CHECK_EQ_INT(x->segs[2].kind, AGENT_SEG_GEN);
        const char *comp = x->text + x->prompt_len;
        CHECK(!strncmp(comp, AGENT_TAG_THINK AGENT_TAG_PREF "crime; \"drama\"" AGENT_TAG_PREF_END AGENT_TAG_LIST "\n",
                       strlen(AGENT_TAG_THINK AGENT_TAG_PREF "crime; \"drama\"" AGENT_TAG_PREF_END AGENT_TAG_LIST "\n")));
        CHECK_EQ_INT(x->format, AGENT_FMT_OK);
        /* fallback resolution sees the forced call's items */
        CHECK(x->answer.n_lines == 10);
    }
    CHECK_EQ_INT(fm.n_forks, 1);
    for (int g = 2; g < 4; g++) {
        check_episode_invariants(&e[g]);
        CHECK_EQ_INT(e[g].outcome, AGENT_RECALL_ERROR);
        CHECK_EQ_INT(e[g].n_generated, 0);
        CHECK_EQ_INT(e[g].n_calls, 1);
    }
    agent_episodes_free(e, 4);
    /* max_calls 1: a further call by the model is many_recall */
    const char *sc2[] = {"Another.\n" AGENT_TAG_PREF "more" AGENT_TAG_PREF_END T};
    fx_model_init(&fm, &m, 4, sc2, 1);
    o.samples = 1;
    o.max_calls = 1;
    CHECK_OK(agent_rollout(&m, &t, c, rq, 1, &o, &e));
    CHECK_EQ_INT(e->outcome, AGENT_MANY_RECALL);
    agent_episodes_free(e, 1);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* One scripted episode of `script` (the model follows it where a choice is constrained) with
 * constrain_prefs on or off. */
static agent_episode *pref_episode(const char *script, int on, const dr_dataset *d, const agent_catalog *c) {
    fx_model fm;
    fx_tool ft;
    agent_model m;
    agent_tool t;
    const char *sc[] = {script};
    fx_model_init(&fm, &m, 1, sc, 1);
    fm.follow_script = 1;
    fx_tool_init(&ft, &t);
    agent_request rq = {0, dr_data_seq(d, 0), dr_data_seq_len(d, 0) - 1, 0, NULL};
    agent_rollout_opts o = {0};
    o.constrain_prefs = on;
    agent_episode *e;
    CHECK_OK(agent_rollout(&m, &t, c, &rq, 1, &o, &e));
    return e;
}

/* constrain_prefs: inside an open preference no newline can be chosen (the scripted model then
 * takes its next byte); those tokens carry the allowed set, the others none; off, the same
 * script runs one call's text into the next line. */
static const char s_newline_pref[] = AGENT_TAG_THINK "Look.\n" AGENT_TAG_PREF "drama\nNow" AGENT_TAG_PREF_END T
    "Ranked.\n" ANSWER T;

TEST(agent_rollout_preference_is_one_line) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    for (int on = 0; on < 2; on++) {
        agent_episode *e = pref_episode(s_newline_pref, on, &d, c);
        check_episode_invariants(e);
        CHECK_STR(agent_outcome_name(e->outcome), "finished");
        CHECK_EQ_INT(e->n_calls, 1);
        CHECK_STR(e->calls[0].preference, on ? "dramaNow" : "drama Now");
        /* the allowed sets: on the preference's bytes and its end tag only, without '\n' */
        const char *pb = strstr(e->text + e->prompt_len, AGENT_TAG_PREF) + strlen(AGENT_TAG_PREF);
        int64_t first = pb - e->text, last = strstr(pb, AGENT_TAG_PREF_END) - e->text + (int64_t)strlen(AGENT_TAG_PREF_END);
        int n_set = 0;
        for (int32_t k = 0; k < e->n_tokens; k++) {
            int na = e->allow_n ? e->allow_n[k] : 0;
            if (!on) {
                CHECK_EQ_INT(na, 0);
                continue;
            }
            /* byte model: token k of the generated segment spells text byte k (no EOS inside) */
            int in_pref = 0;
            for (int sg = 0; sg < e->n_segs; sg++) {
                const agent_segment *s = &e->segs[sg];
                if (k >= s->tok_begin && k < s->tok_end && s->kind == AGENT_SEG_GEN) {
                    int64_t ch = s->chr_begin + (k - s->tok_begin);
                    in_pref = ch >= first && ch < last; /* up to the end tag's last byte, which closes it */
                }
            }
            if (!in_pref) {
                CHECK_EQ_INT(na, 0);
                continue;
            }
            n_set++;
            CHECK(na > 200);
            const int32_t *ids = e->allow_ids + e->allow_off[k];
            int has_nl = 0, has_tok = 0;
            for (int q = 0; q < na; q++) {
                has_nl |= ids[q] == '\n';
                has_tok |= ids[q] == e->tokens[k];
            }
            CHECK(!has_nl && has_tok);
            CHECK_NEAR(e->logprob[k], -logf((float)na), 1e-6);
        }
        if (on) CHECK_EQ_INT(n_set, (int)strlen("dramaNow") + (int)strlen(AGENT_TAG_PREF_END));
        agent_episodes_free(e, 1);
    }
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* constrain_prefs: a preference is closed for the model after AGENT_PREF_MAX_TOKENS tokens. The
 * script's preference never ends (41 bytes, no end tag); the rollout writes the end tag (mask
 * 0, no allowed set, as forced answer tokens) and calls the tool with the first 32 bytes. For
 * the scripted model each append is a turn boundary, so the forced tag skips one turn. Off,
 * the same script never closes its preference and the episode does not finish. */
static const char s_long_pref[] = AGENT_TAG_THINK "Look.\n" AGENT_TAG_PREF "drama drama drama drama drama drama drama" T
    "(skipped: the forced end tag is an append)" T "Ranked.\n" ANSWER T;

TEST(agent_rollout_preference_length_cap) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    for (int on = 0; on < 2; on++) {
        agent_episode *e = pref_episode(s_long_pref, on, &d, c);
        if (!on) {
            CHECK(e->outcome != AGENT_FINISHED);
            CHECK_EQ_INT(e->n_calls, 0);
            agent_episodes_free(e, 1);
            continue;
        }
        CHECK_STR(agent_outcome_name(e->outcome), "finished");
        CHECK_EQ_INT(e->n_calls, 1);
        CHECK_EQ_INT(AGENT_PREF_MAX_TOKENS, 32);
        CHECK_STR(e->calls[0].preference, "drama drama drama drama drama dr");
        /* 32 chosen preference tokens with their allowed set, then the end tag's bytes forced */
        const char *pb = strstr(e->text + e->prompt_len, AGENT_TAG_PREF) + strlen(AGENT_TAG_PREF);
        const char *pe = strstr(pb, AGENT_TAG_PREF_END);
        CHECK(pe == pb + 32);
        int n_set = 0, n_forced = 0;
        for (int sg = 0; sg < e->n_segs; sg++) {
            const agent_segment *s = &e->segs[sg];
            if (s->kind != AGENT_SEG_GEN) continue;
            for (int32_t k = s->tok_begin; k < s->tok_end; k++) {
                const char *ch = e->text + s->chr_begin + (k - s->tok_begin);
                if (ch >= pb && ch < pe) {
                    n_set += e->mask[k] && e->allow_n[k] > 200;
                } else if (ch >= pe && ch < pe + strlen(AGENT_TAG_PREF_END)) {
                    n_forced += !e->mask[k] && e->allow_n[k] == 0 && e->logprob[k] == 0;
                }
            }
        }
        CHECK_EQ_INT(n_set, 32);
        CHECK_EQ_INT(n_forced, (int)strlen(AGENT_TAG_PREF_END));
        agent_episodes_free(e, 1);
    }
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* constrain_tags: a model whose protocol tags are single tokens writes tags where they are
 * invalid: an end tag with no preference open (a small model's failure: the episode ended with
 * preference_error), an answer tag before </think>, a preference after it. On, the model takes
 * its next token instead (follow_script) and the episode is valid; every free token carries
 * the set it was sampled from, one copy per run of free text. Off, the first stray tag ends it. */
static const char s_stray_tags[] = AGENT_TAG_THINK "Look.\n" AGENT_TAG_PREF "crime" AGENT_TAG_PREF_END T
    "Snoir" AGENT_TAG_PREF_END "\n" AGENT_TAG_PREF "drama" AGENT_TAG_PREF_END T "Ranked." AGENT_TAG_ANSWER "\n"
    AGENT_TAG_THINK_END AGENT_TAG_PREF "\n" AGENT_TAG_ANSWER "\n1. Heat\n2. Casino\n3. Se7en\n4. Usual Suspects\n"
    "5. GoldenEye\n6. Babe\n7. Jumanji\n8. Four Rooms\n9. Toy Story\n10. Nothing Like This\n" AGENT_TAG_ANSWER_END T;

static int set_has(const int32_t *ids, int n, int32_t tok) {
    for (int i = 0; i < n; i++)
        if (ids[i] == tok) return 1;
    return 0;
}

TEST(agent_rollout_free_text_keeps_the_tag_grammar) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    for (int on = 0; on < 2; on++) {
        fx_model fm;
        fx_tool ft;
        agent_model m;
        agent_tool t;
        const char *sc[] = {s_stray_tags};
        fx_model_init(&fm, &m, 1, sc, 1);
        fm.follow_script = fm.tag_tokens = 1;
        fx_tool_init(&ft, &t);
        agent_request rq = {0, dr_data_seq(&d, 0), dr_data_seq_len(&d, 0) - 1, 0, NULL};
        agent_rollout_opts o = {0};
        o.constrain_tags = o.constrain_prefs = on;
        agent_episode *e;
        CHECK_OK(agent_rollout(&m, &t, c, &rq, 1, &o, &e));
        /* the tokens spell the text (tags as one token each) */
        size_t at = 0;
        for (int32_t k = 0; k < e->n_tokens; k++) {
            char b[64];
            int pl = m.piece(m.ctx, e->tokens[k], b, sizeof b);
            CHECK(pl >= 0 && at + (size_t)pl <= e->text_len && !memcmp(e->text + at, b, (size_t)pl));
            at += (size_t)pl;
        }
        CHECK_EQ_INT((int64_t)at, (int64_t)e->text_len);
        if (!on) {
            CHECK_STR(agent_outcome_name(e->outcome), "preference_error");
            CHECK_EQ_INT(e->n_calls, 1);
            CHECK_EQ_INT(e->n_allow_ids, 0);
            agent_episodes_free(e, 1);
            continue;
        }
        CHECK_STR(agent_outcome_name(e->outcome), "finished");
        CHECK_STR(agent_format_name(e->format), "ok");
        CHECK_EQ_INT(e->n_calls, 2);
        CHECK_STR(e->calls[1].preference, "drama");
        CHECK(strstr(e->text, "Snoir\n" AGENT_TAG_PREF "drama") != NULL);
        CHECK(strstr(e->text, "Ranked.\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER) != NULL);
        /* each generated token: its set lacks the tags invalid at its place and holds it */
        int64_t sum_sets = 0, n_free = 0, think_closed = 0;
        for (int sg = 0; sg < e->n_segs; sg++) {
            const agent_segment *g = &e->segs[sg];
            if (g->kind != AGENT_SEG_GEN) continue;
            for (int32_t k = g->tok_begin; k < g->tok_end; k++) {
                int na = e->allow_n[k];
                CHECK(na > 250);
                const int32_t *ids = e->allow_ids + e->allow_off[k];
                CHECK(set_has(ids, na, e->tokens[k]));
                CHECK_NEAR(e->logprob[k], -logf((float)na), 1e-6);
                sum_sets += na;
                if (set_has(ids, na, FX_TAG0 + 3)) continue; /* PREF_END allowed: a preference token */
                n_free++;
                CHECK(!set_has(ids, na, FX_TAG0 + 4) && !set_has(ids, na, FX_TAG0 + 5)); /* item lists */
                CHECK(set_has(ids, na, 256));                                              /* EOS */
                CHECK_EQ_INT(set_has(ids, na, FX_TAG0 + 6), think_closed);                 /* answer */
                CHECK_EQ_INT(set_has(ids, na, FX_TAG0 + 1), !think_closed);                /* </think> */
                CHECK_EQ_INT(set_has(ids, na, FX_TAG0 + 2), !think_closed);                /* preference */
                if (e->tokens[k] == FX_TAG0 + 1) think_closed = 1;
            }
        }
        CHECK(think_closed && n_free > 20);
        /* the pool holds one copy per run of one set: 4 free runs (the last changes its set at
         * </think>) and 2 preference runs, against a copy per token before */
        CHECK(e->n_allow_ids <= 6 * 265 && sum_sets > 40 * 250);
        agent_episodes_free(e, 1);
    }
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

/* The options are checked by the agent itself, whoever calls it (rl, eval, serve, recommend). */
TEST(agent_rollout_checks_its_options) {
    dr_dataset d;
    agent_catalog *c;
    setup(&d, &c);
    agent_rollout_opts o;
    agent_rollout_opts_default(&o);
    CHECK_EQ_INT(o.tool_k, AGENT_TOOL_K);
    CHECK_EQ_INT(o.max_calls, AGENT_MAX_CALLS);
    CHECK_EQ_INT(o.max_hist, AGENT_MAX_HIST);
    CHECK(o.constrain_titles && o.constrain_prefs && o.constrain_tags);
    CHECK_OK(agent_rollout_opts_check(&o));
    o.tool_k = AGENT_N_REC - 1; /* a tool result shorter than the answer */
    CHECK_ERR(agent_rollout_opts_check(&o), DR_ERR_ARG);
    fx_model fm;
    fx_tool ft;
    agent_model m;
    agent_tool t;
    const char *sc[] = {s_finished};
    fx_model_init(&fm, &m, 1, sc, 1);
    fx_tool_init(&ft, &t);
    agent_request rq = {0, dr_data_seq(&d, 0), dr_data_seq_len(&d, 0) - 1, 0, NULL};
    agent_episode *eps = NULL;
    CHECK_ERR(agent_rollout(&m, &t, c, &rq, 1, &o, &eps), DR_ERR_ARG);
    CHECK(eps == NULL && ft.calls == 0);
    o.direct = 1; /* no tool: tool_k does not matter */
    CHECK_OK(agent_rollout_opts_check(&o));
    o = (agent_rollout_opts){0};
    o.max_calls = -1;
    CHECK_ERR(agent_rollout_opts_check(&o), DR_ERR_ARG);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}
