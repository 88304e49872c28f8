/* The DeepRec prompt (our own wording of DESIGN §6) in base-model and ChatML forms. */
#include "deeprec/agent.h"
#include "agent/internal.h"
#include <stdlib.h>
#include <string.h>

/* Strings shown as stand-ins in the output layout below; copying one of them into an
 * answer breaks the format rules (agent_format_check). Keep in sync with the text. */
const char *const agent_placeholders[] = {
    "your reasoning about the user",
    "first aspect; second aspect",
    "items returned by the tool",
    "what you learned and what to ask next",
    "how you rank the items you found",
    "title of an item",
    NULL,
};

/* The end of both layouts: the reasoning closed, then the ten-line answer. */
#define LAYOUT_ANSWER                                                                              \
    AGENT_TAG_THINK_END "\n" AGENT_TAG_ANSWER "\n"                                                 \
    "1. title of an item\n"                                                                       \
    "...\n"                                                                                       \
    "10. title of an item\n" AGENT_TAG_ANSWER_END

static const char instructions[] =
    "You are a recommendation assistant. From the items a user interacted with, in order, you "
    "suggest the items they are most likely to want next.\n"
    "\n"
    "You cannot see the catalog of items. To find candidates you must use a retrieval tool. "
    "Call it by writing a description of what the user may be looking for between "
    AGENT_TAG_PREF " and " AGENT_TAG_PREF_END ": one or more short phrases separated by \";\" "
    "(genres, themes, styles, kinds of item). The tool answers with a numbered list of matching "
    "items between " AGENT_TAG_LIST " and " AGENT_TAG_LIST_END ". Only the tool writes item lists; "
    "never write one yourself.\n"
    "\n"
    "Rules:\n"
    "- Do all your reasoning inside " AGENT_TAG_THINK " and " AGENT_TAG_THINK_END ". Call the tool from "
    "inside the reasoning, at least once.\n"
    "- Look into the item space from several sides: call the tool several times, each time with a "
    "different preference (for example the user's main taste, their most recent interests, a "
    "combination of both).\n"
    "- After every result, think about what it tells you and refine your next preference.\n"
    "- When you have gathered enough, reason about how to rank everything you retrieved, then "
    "close the reasoning with " AGENT_TAG_THINK_END ".\n"
    "- Then write your final answer between " AGENT_TAG_ANSWER " and " AGENT_TAG_ANSWER_END ": exactly "
    "10 items, best first, one per line as \"N. title\" with N from 1 to 10, each title copied "
    "exactly as the tool listed it. Put nothing else in the answer.\n"
    "\n"
    "Layout of your reply:\n"
    AGENT_TAG_THINK "your reasoning about the user\n"
    AGENT_TAG_PREF "first aspect; second aspect" AGENT_TAG_PREF_END "items returned by the tool\n"
    "what you learned and what to ask next\n"
    "(more tool calls as needed)\n"
    "how you rank the items you found\n"
    LAYOUT_ANSWER;

static const char instructions_direct[] =
    "You are a recommendation assistant. From the items a user interacted with, in order, you "
    "suggest the items they are most likely to want next.\n"
    "\n"
    "Rules:\n"
    "- First reason inside " AGENT_TAG_THINK " and " AGENT_TAG_THINK_END ": what the user likes overall and "
    "what they turned to lately.\n"
    "- Then write your final answer between " AGENT_TAG_ANSWER " and " AGENT_TAG_ANSWER_END ": exactly "
    "10 items, best first, one per line as \"N. title\" with N from 1 to 10, using the exact titles of real "
    "items the user has not seen. Put nothing else in the answer.\n"
    "\n"
    "Layout of your reply:\n"
    AGENT_TAG_THINK "your reasoning about the user\n"
    LAYOUT_ANSWER;

const char *agent_prompt_instructions(void) { return instructions; }
const char *agent_prompt_instructions_direct(void) { return instructions_direct; }

/* Everything before the user's history: the same text for every user of one prompt form. */
static void put_preamble(dr_buf *b, const agent_prompt_opts *o) {
    const char *ins = o && o->direct ? instructions_direct : instructions;
    if (o && o->chat) {
        dr_buf_puts(b, "<|im_start|>system\n");
        dr_buf_puts(b, ins);
        dr_buf_puts(b, "<|im_end|>\n<|im_start|>user\n");
    } else {
        dr_buf_puts(b, ins);
        dr_buf_puts(b, "\n\n");
    }
}

int agent_prompt_preamble(const agent_prompt_opts *o, char **out) {
    dr_buf b = {0};
    put_preamble(&b, o);
    *out = dr_buf_take(&b);
    return *out ? DR_OK : dr_error_code();
}

int agent_prompt_build(const agent_catalog *c, const int32_t *hist, int64_t n_hist, const agent_prompt_opts *o,
                       char **out) {
    *out = NULL;
    int chat = o ? o->chat : 0;
    int max_hist = o && o->max_hist > 0 ? o->max_hist : AGENT_MAX_HIST;
    int64_t start = n_hist > max_hist ? n_hist - max_hist : 0;
    dr_buf b = {0};
    put_preamble(&b, o);
    if (n_hist - start > 0) {
        dr_buf_puts(&b, "The user's history, oldest first:\n");
        for (int64_t i = start; i < n_hist; i++) {
            dr_buf_printf(&b, "%lld. %s\n", (long long)(i - start + 1), agent_catalog_title(c, hist[i]));
            const char *cats = agent_catalog_categories(c, hist[i]);
            if (*cats) dr_buf_printf(&b, "  - categories: %s\n", cats);
        }
    } else {
        dr_buf_puts(&b, "The user has no history yet.\n");
    }
    dr_buf_puts(&b, "\nRecommend the 10 items this user is most likely to interact with next.");
    if (chat)
        dr_buf_puts(&b, "<|im_end|>\n<|im_start|>assistant\n");
    else
        dr_buf_puts(&b, "\n\nAssistant:\n");
    *out = dr_buf_take(&b);
    return *out ? DR_OK : dr_error_code();
}
