/* Pure protocol logic: catalog, titles, prompt, preference, tool text, answer, format rules. */
#include "harness.h"
#include "fixture.h"
#include <stdlib.h>
#include <string.h>

TEST(agent_title_normalize) {
    char *s = agent_title_normalize("  **Toy   Story**!! \n", -1);
    CHECK_STR(s, "toy story");
    free(s);
    s = agent_title_normalize("Se7en (1995)", -1);
    CHECK_STR(s, "se7en (1995");
    free(s);
    s = agent_title_normalize("...", -1);
    CHECK_STR(s, "");
    free(s);
    s = agent_title_normalize("Am\xc3\xa9lie\t(2001)", 12);
    CHECK_STR(s, "am\xc3\xa9lie (200");
    free(s);
}

TEST(agent_catalog_titles_and_index) {
    dr_dataset d;
    fx_dataset(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    CHECK_EQ_INT(agent_catalog_n_items(c), 13);
    CHECK_STR(agent_catalog_title(c, 3), "Heat");
    CHECK_STR(agent_catalog_categories(c, 3), "Action, Crime, Thriller");
    CHECK_STR(agent_catalog_title(c, 13), "item i13"); /* untitled item */
    CHECK_STR(agent_catalog_categories(c, 13), "");
    CHECK_STR(agent_catalog_title(c, 0), "");
    CHECK_STR(agent_catalog_title(c, 99), "");
    CHECK(agent_catalog_has_categories(c));
    CHECK_EQ_INT(agent_catalog_find(c, "heat", -1), 3);
    CHECK_EQ_INT(agent_catalog_find(c, " HEAT. ", -1), 3);
    CHECK_EQ_INT(agent_catalog_find(c, "the usual suspects", -1), 10);
    CHECK_EQ_INT(agent_catalog_find(c, "Nope", -1), 0);
    CHECK_EQ_INT(agent_catalog_find(c, "", -1), 0);
    /* "Toy Story" is items 1 and 11: 11 has 4 train interactions, 1 has 3 -> 11 */
    CHECK_EQ_INT(agent_catalog_find(c, "toy story", -1), 11);
    CHECK_EQ_INT(agent_catalog_find(c, "item i13", -1), 13);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

TEST(agent_jaccard) {
    CHECK_NEAR(agent_title_jaccard("The Usual Suspects", "usual suspects"), 2.0 / 3.0, 1e-12);
    CHECK_NEAR(agent_title_jaccard("Heat", "heat"), 1.0, 1e-12);
    CHECK_NEAR(agent_title_jaccard("a b", "c d"), 0.0, 1e-12);
    CHECK_NEAR(agent_title_jaccard("", "c d"), 0.0, 1e-12);
    CHECK_NEAR(agent_title_jaccard("a a b", "a"), 0.5, 1e-12); /* sets, not bags */
}

TEST(agent_resolve_lines) {
    dr_dataset d;
    fx_dataset(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    int how;
    int32_t ret[] = {9, 10, 12};
    /* exact (normalised) */
    CHECK_EQ_INT(agent_resolve_line(c, "  casino. ", ret, 3, &how), 5);
    CHECK_EQ_INT(how, AGENT_RESOLVE_EXACT);
    /* exact wins even when not retrieved */
    CHECK_EQ_INT(agent_resolve_line(c, "Babe", ret, 3, &how), 8);
    CHECK_EQ_INT(how, AGENT_RESOLVE_EXACT);
    /* fallback among retrieved: Jaccard {usual, suspects} vs {the, usual, suspects} = 2/3 */
    CHECK_EQ_INT(agent_resolve_line(c, "Usual Suspects", ret, 3, &how), 10);
    CHECK_EQ_INT(how, AGENT_RESOLVE_FALLBACK);
    CHECK_EQ_INT(agent_resolve_line(c, "Apollo 13 (IMAX)", ret, 3, &how), 12);
    CHECK_EQ_INT(how, AGENT_RESOLVE_FALLBACK);
    /* the same line when the item was not retrieved: unresolved */
    CHECK_EQ_INT(agent_resolve_line(c, "Usual Suspects", ret, 1, &how), 0);
    CHECK_EQ_INT(how, AGENT_RESOLVE_NONE);
    /* below the threshold: {suspects} vs {the usual suspects} = 1/3 */
    CHECK_EQ_INT(agent_resolve_line(c, "suspects", ret, 3, &how), 0);
    CHECK_EQ_INT(how, AGENT_RESOLVE_NONE);
    CHECK_EQ_INT(agent_resolve_line(c, "Something else entirely", ret, 3, &how), 0);
    CHECK_EQ_INT(agent_resolve_line(c, "", NULL, 0, NULL), 0);
    /* substring rule */
    CHECK(agent_line_mentions(c, "The Usual Suspects (1995) - a classic", 10));
    CHECK(agent_line_mentions(c, "HEAT", 3));
    CHECK(!agent_line_mentions(c, "Usual Suspects", 10));
    CHECK(!agent_line_mentions(c, "anything", 0));
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

TEST(agent_prompt_content) {
    dr_dataset d;
    fx_dataset(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    int32_t hist[25];
    for (int i = 0; i < 25; i++) hist[i] = 1 + i % 12;
    agent_prompt_opts o = {0, 0, 0};
    char *p;
    CHECK_OK(agent_prompt_build(c, hist, 25, &o, &p));
    const char *tags[] = {AGENT_TAG_THINK, AGENT_TAG_THINK_END, AGENT_TAG_PREF, AGENT_TAG_PREF_END, AGENT_TAG_LIST,
                          AGENT_TAG_LIST_END, AGENT_TAG_ANSWER, AGENT_TAG_ANSWER_END};
    for (int i = 0; i < 8; i++) CHECK_MSG(strstr(p, tags[i]) != NULL, "prompt lacks %s", tags[i]);
    /* the instructions of DESIGN §6 */
    CHECK(strstr(p, "cannot see the catalog"));
    CHECK(strstr(p, "separated by \";\""));
    CHECK(strstr(p, "numbered list"));
    CHECK(strstr(p, "several times"));
    CHECK(strstr(p, "different preference"));
    CHECK(strstr(p, "refine"));
    CHECK(strstr(p, "rank"));
    CHECK(strstr(p, "exactly 10 items"));
    CHECK(strstr(p, "\"N. title\""));
    /* every placeholder the validator rejects appears in the prompt's layout */
    for (int i = 0; agent_placeholders[i]; i++) CHECK_MSG(strstr(p, agent_placeholders[i]), "%s", agent_placeholders[i]);
    /* last 20 of 25 items, oldest first: hist[5] = 6 is line 1, hist[24] = 1 is line 20 */
    CHECK(strstr(p, "oldest first:\n1. Sense and Sensibility\n  - categories: Drama, Romance\n2. Four Rooms\n"));
    CHECK(strstr(p, "\n20. Toy Story\n  - categories: Animation, Children, Comedy\n"));
    CHECK(!strstr(p, "\n21. "));
    CHECK(!strstr(p, "<|im_start|>"));
    size_t n = strlen(p);
    CHECK(n > 13 && !strcmp(p + n - 12, "\nAssistant:\n"));
    free(p);
    /* ChatML form, max_hist 2, item without categories */
    int32_t h2[] = {3, 13, 7};
    o = (agent_prompt_opts){1, 2, 0};
    CHECK_OK(agent_prompt_build(c, h2, 3, &o, &p));
    CHECK(!strncmp(p, "<|im_start|>system\nYou are", 26));
    CHECK(strstr(p, "<|im_end|>\n<|im_start|>user\nThe user's history, oldest first:\n1. item i13\n2. Four Rooms\n  - categories: Comedy\n"));
    n = strlen(p);
    const char *tail = "<|im_end|>\n<|im_start|>assistant\n";
    CHECK(n > strlen(tail) && !strcmp(p + n - strlen(tail), tail));
    CHECK(!strstr(p, "Heat"));
    free(p);
    /* the direct baseline: no tool instructions */
    o = (agent_prompt_opts){0, 2, 1};
    CHECK_OK(agent_prompt_build(c, h2, 3, &o, &p));
    CHECK(!strstr(p, AGENT_TAG_PREF) && !strstr(p, AGENT_TAG_LIST));
    CHECK(strstr(p, AGENT_TAG_THINK_END) && strstr(p, AGENT_TAG_ANSWER) && strstr(p, "exactly 10 items"));
    CHECK(strstr(p, "1. Heat\n") == NULL && strstr(p, "2. Four Rooms\n"));
    free(p);
    /* empty history */
    CHECK_OK(agent_prompt_build(c, NULL, 0, NULL, &p));
    CHECK(strstr(p, "no history"));
    free(p);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

static void check_pref(const char *text, const char *want) {
    char *p;
    CHECK_OK(agent_preference_extract(text, strlen(text), &p));
    if (!want) {
        CHECK_MSG(p == NULL, "expected no preference in '%s', got '%s'", text, p);
    } else {
        CHECK_STR(p, want);
    }
    free(p);
}

TEST(agent_preference_extraction) {
    check_pref("<think>x " AGENT_TAG_PREF "crime; thriller" AGENT_TAG_PREF_END, "crime; thriller");
    check_pref(AGENT_TAG_PREF " \"dark\"  \n comedy ;\t`heist`  " AGENT_TAG_PREF_END, "dark comedy ; heist");
    check_pref(AGENT_TAG_PREF "\xe2\x80\x9c" "space" "\xe2\x80\x9d; \xc2\xab" "war\xc2\xbb" AGENT_TAG_PREF_END,
               "space; war");
    /* the last begin tag counts */
    check_pref(AGENT_TAG_PREF "old" AGENT_TAG_PREF_END " more " AGENT_TAG_PREF "new one" AGENT_TAG_PREF_END, "new one");
    /* apostrophes stay */
    check_pref(AGENT_TAG_PREF "children's films" AGENT_TAG_PREF_END, "children's films");
    /* empty after cleaning */
    check_pref(AGENT_TAG_PREF " \" \" " AGENT_TAG_PREF_END, "");
    check_pref(AGENT_TAG_PREF AGENT_TAG_PREF_END, "");
    /* no begin tag */
    check_pref("just text" AGENT_TAG_PREF_END, NULL);
    /* no end tag: up to the end */
    check_pref(AGENT_TAG_PREF "drama", "drama");
}

TEST(agent_tool_result_format) {
    dr_dataset d;
    fx_dataset(&d);
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    char *t;
    int32_t ids[] = {3, 13};
    CHECK_OK(agent_tool_result_text(c, ids, 2, &t));
    CHECK_STR(t, AGENT_TAG_LIST "\n1. Heat\n  - categories: Action, Crime, Thriller\n2. item i13\n" AGENT_TAG_LIST_END
                 "\n\n");
    free(t);
    CHECK_OK(agent_tool_result_text(c, NULL, 0, &t));
    CHECK_STR(t, AGENT_TAG_LIST "\nNone\n" AGENT_TAG_LIST_END "\n\n");
    free(t);
    agent_catalog_free(c);
    fx_dataset_free(&d);
}

#define VALID                                                                                                  \
    AGENT_TAG_THINK "The user watches crime thrillers lately.\n" AGENT_TAG_PREF "crime; thriller" AGENT_TAG_PREF_END \
    AGENT_TAG_LIST "\n1. Heat\n  - categories: Action, Crime, Thriller\n2. Casino\n" AGENT_TAG_LIST_END "\n\n"        \
    "Heat and Casino fit. Ranking by fit.\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n"                        \
    "1. Heat\n2. Casino\n3. Se7en\n4. The Usual Suspects\n5. GoldenEye\n6. Babe\n7. Jumanji\n8. Four Rooms\n"       \
    "9. Toy Story\n10. Apollo 13\n" AGENT_TAG_ANSWER_END

static void check_fmt(const char *s, int want) {
    CHECK_MSG(s != NULL, "replacement failed");
    int f = agent_format_check(s, strlen(s));
    CHECK_MSG(f == want, "format %s, expected %s for:\n%s", agent_format_name(f), agent_format_name(want), s);
}

static void check_fmt_repl(const char *old, const char *new_, int want) {
    char *s = fx_replace(VALID, old, new_);
    check_fmt(s, want);
    free(s);
}

TEST(agent_format_rules) {
    check_fmt(VALID, AGENT_FMT_OK);
    /* two calls, reasoning between them, trailing EOS-less whitespace */
    check_fmt_repl("Heat and Casino", "Next.\n" AGENT_TAG_PREF "drama" AGENT_TAG_PREF_END AGENT_TAG_LIST "\nNone\n"
                   AGENT_TAG_LIST_END "\n\nHeat and Casino", AGENT_FMT_OK);
    /* 1. balanced tool tags */
    check_fmt_repl(AGENT_TAG_LIST_END, "", AGENT_FMT_TOOL_TAGS);
    check_fmt_repl(AGENT_TAG_PREF "crime", "crime", AGENT_FMT_TOOL_TAGS);
    check_fmt_repl("Ranking by fit.", "Ranking by fit." AGENT_TAG_PREF "x", AGENT_FMT_TOOL_TAGS);
    check_fmt_repl("Ranking by fit.", AGENT_TAG_LIST_END, AGENT_FMT_TOOL_TAGS);
    /* 2. at least one call */
    {
        const char *a = strstr(VALID, AGENT_TAG_PREF), *b = strstr(VALID, AGENT_TAG_LIST_END "\n\n");
        char call[512];
        size_t n = (size_t)(b - a) + strlen(AGENT_TAG_LIST_END "\n\n");
        memcpy(call, a, n);
        call[n] = 0;
        check_fmt_repl(call, "", AGENT_FMT_NO_CALL);
    }
    /* 3. exactly one </think> */
    check_fmt_repl(AGENT_TAG_THINK_END, "", AGENT_FMT_THINK_END);
    check_fmt_repl("lately.", "lately." AGENT_TAG_THINK_END, AGENT_FMT_THINK_END);
    /* 4. no <think> after </think> */
    check_fmt_repl(AGENT_TAG_THINK_END "\n", AGENT_TAG_THINK_END "\n" AGENT_TAG_THINK, AGENT_FMT_THINK_AFTER);
    /* 5. exactly one answer block after </think> */
    check_fmt_repl(AGENT_TAG_ANSWER_END, "", AGENT_FMT_ANSWER_BLOCK);
    check_fmt_repl(AGENT_TAG_ANSWER_END, AGENT_TAG_ANSWER_END AGENT_TAG_ANSWER "\n1. Heat\n" AGENT_TAG_ANSWER_END,
                   AGENT_FMT_ANSWER_BLOCK);
    {
        /* the answer block before </think> */
        char *s = fx_replace(VALID, "Ranking by fit.\n" AGENT_TAG_THINK_END "\n", "Ranking by fit.\n");
        char *s2 = fx_replace(s, AGENT_TAG_ANSWER_END, AGENT_TAG_ANSWER_END AGENT_TAG_THINK_END);
        check_fmt(s2, AGENT_FMT_ANSWER_BLOCK);
        free(s);
        free(s2);
    }
    /* 6. no tool tags inside the answer */
    check_fmt_repl("5. GoldenEye\n", "5. GoldenEye " AGENT_TAG_PREF "x" AGENT_TAG_PREF_END AGENT_TAG_LIST "\nNone\n"
                   AGENT_TAG_LIST_END "\n", AGENT_FMT_TOOL_IN_ANSWER);
    /* 7. reasoning between the last tool result and </think> */
    check_fmt_repl("Heat and Casino fit. Ranking by fit.\n", " \n", AGENT_FMT_NO_REASONING);
    {
        /* a tool call after </think> (outside the answer) */
        char *s = fx_replace(VALID, AGENT_TAG_THINK_END "\n", AGENT_TAG_THINK_END "\n" AGENT_TAG_PREF "y"
                             AGENT_TAG_PREF_END AGENT_TAG_LIST "\nNone\n" AGENT_TAG_LIST_END "\n\n");
        check_fmt(s, AGENT_FMT_NO_REASONING);
        free(s);
    }
    /* 8. exactly 10 lines "N. title" numbered 1..10 */
    check_fmt_repl("10. Apollo 13\n", "", AGENT_FMT_ANSWER_LINES);
    check_fmt_repl("10. Apollo 13\n", "10. Apollo 13\n11. Heat\n", AGENT_FMT_ANSWER_LINES);
    check_fmt_repl("3. Se7en", "4. Se7en", AGENT_FMT_ANSWER_LINES);
    check_fmt_repl("3. Se7en", "Se7en", AGENT_FMT_ANSWER_LINES);
    check_fmt_repl("3. Se7en", "3.Se7en", AGENT_FMT_ANSWER_LINES);
    check_fmt_repl("3. Se7en", "3. ", AGENT_FMT_ANSWER_LINES);
    check_fmt_repl("3. Se7en\n", "3. Se7en\n\n   \n", AGENT_FMT_OK); /* blank lines are ignored */
    /* 9. no template placeholders */
    check_fmt_repl("2. Casino", "2. Title of an item", AGENT_FMT_PLACEHOLDER);
    check_fmt_repl("lately.", "your reasoning about the user", AGENT_FMT_PLACEHOLDER);
    for (int f = 0; f < AGENT_FMT_N; f++) CHECK(strcmp(agent_format_name(f), "?") != 0);
}

TEST(agent_format_rules_direct) {
    const char *d = AGENT_TAG_THINK "Likes crime.\n" AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n1. Heat\n2. Casino\n"
                    "3. Se7en\n4. B\n5. C\n6. D\n7. E\n8. F\n9. G\n10. H\n" AGENT_TAG_ANSWER_END;
    CHECK_EQ_INT(agent_format_check_direct(d, strlen(d)), AGENT_FMT_OK);
    CHECK_EQ_INT(agent_format_check(d, strlen(d)), AGENT_FMT_NO_CALL);
    CHECK_EQ_INT(agent_format_check_direct(VALID, strlen(VALID)), AGENT_FMT_TOOL_TAGS);
    char *s = fx_replace(d, "10. H\n", "");
    CHECK_EQ_INT(agent_format_check_direct(s, strlen(s)), AGENT_FMT_ANSWER_LINES);
    free(s);
    s = fx_replace(d, "Likes crime.", "your reasoning about the user");
    CHECK_EQ_INT(agent_format_check_direct(s, strlen(s)), AGENT_FMT_PLACEHOLDER);
    free(s);
    s = fx_replace(d, AGENT_TAG_THINK_END "\n", AGENT_TAG_THINK_END AGENT_TAG_THINK_END);
    CHECK_EQ_INT(agent_format_check_direct(s, strlen(s)), AGENT_FMT_THINK_END);
    free(s);
}

TEST(agent_answer_parsing) {
    agent_answer a;
    const char *s = VALID;
    CHECK_OK(agent_answer_parse(s, strlen(s), &a));
    CHECK(a.found);
    CHECK_EQ_INT(a.n_lines, 10);
    CHECK_STR(a.lines[0], "Heat");
    CHECK_STR(a.lines[3], "The Usual Suspects");
    CHECK_STR(a.lines[9], "Apollo 13");
    agent_answer_free(&a);
    const char *t = "x" AGENT_TAG_ANSWER "\n 1) Heat \n\n2. Casino\nBabe\n12. A\n5. B\n6. C\n7. D\n8. E\n9. F\n10. G\n11. H";
    CHECK_OK(agent_answer_parse(t, strlen(t), &a));
    CHECK_EQ_INT(a.n_lines, 10);
    CHECK_STR(a.lines[0], "Heat");
    CHECK_STR(a.lines[2], "Babe");
    CHECK_STR(a.lines[3], "A");
    CHECK_STR(a.lines[9], "G");
    agent_answer_free(&a);
    CHECK_OK(agent_answer_parse("nothing", 7, &a));
    CHECK(!a.found);
    CHECK_EQ_INT(a.n_lines, 0);
    agent_answer_free(&a);
}

/* Random texts built from tags, digits, newlines and words: the parsers never crash and
 * agree with each other (a valid completion always parses to 10 lines). */
TEST(agent_parsers_random_texts) {
    static const char *const parts[] = {AGENT_TAG_THINK, AGENT_TAG_THINK_END, AGENT_TAG_PREF, AGENT_TAG_PREF_END,
                                        AGENT_TAG_LIST, AGENT_TAG_LIST_END, AGENT_TAG_ANSWER, AGENT_TAG_ANSWER_END,
                                        "\n", "1. ", "10. ", "x", " Heat", "\"", "<|", "|>", "\xe2\x80", "\xff", ". ", "  "};
    dr_rng r;
    dr_rng_seed(&r, 3);
    char buf[4096];
    int valid = 0;
    for (int it = 0; it < 20000; it++) {
        size_t n = 0;
        int k = 1 + (int)dr_rng_below(&r, 60);
        for (int i = 0; i < k; i++) {
            const char *p = parts[dr_rng_below(&r, sizeof parts / sizeof *parts)];
            size_t m = strlen(p);
            if (n + m >= sizeof buf) break;
            memcpy(buf + n, p, m);
            n += m;
        }
        /* not NUL-terminated on purpose: the parsers take lengths */
        char *heap = malloc(n ? n : 1);
        memcpy(heap, buf, n);
        int f = agent_format_check(heap, n);
        CHECK(f >= 0 && f < AGENT_FMT_N);
        agent_answer a;
        CHECK_OK(agent_answer_parse(heap, n, &a));
        if (f == AGENT_FMT_OK) {
            valid++;
            CHECK_EQ_INT(a.n_lines, 10);
        }
        agent_answer_free(&a);
        char *p;
        CHECK_OK(agent_preference_extract(heap, n, &p));
        if (p) CHECK(!strchr(p, '"') && !strstr(p, "  "));
        free(p);
        free(heap);
    }
    (void)valid;
}
