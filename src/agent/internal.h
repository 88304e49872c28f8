/* Internal helpers of the agent module: a growable byte buffer and small string tools. */
#ifndef DEEPREC_AGENT_INTERNAL_H
#define DEEPREC_AGENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "deeprec/base.h"

typedef struct agent_buf {
    char *s;
    size_t n, cap;
    int err; /* sticky: an allocation failed */
} agent_buf;

int agent_buf_add(agent_buf *b, const char *s, size_t n);
int agent_buf_str(agent_buf *b, const char *s);
int agent_buf_printf(agent_buf *b, const char *fmt, ...) DR_PRINTF(2, 3);
/* Returns the NUL-terminated string (ownership passes to the caller) or NULL (error set). */
char *agent_buf_take(agent_buf *b);
void agent_buf_free(agent_buf *b);

/* First occurrence of needle in hay[0..n), or NULL. */
const char *agent_memmem(const char *hay, size_t n, const char *needle);
/* Last occurrence, or NULL. */
const char *agent_memrmem(const char *hay, size_t n, const char *needle);
/* Number of (non-overlapping) occurrences. */
int agent_count(const char *hay, size_t n, const char *needle);
/* Case-insensitive (ASCII) substring search. */
const char *agent_memcasemem(const char *hay, size_t n, const char *needle);

/* Episode building (episode.c). */
struct agent_episode;
int agent_ep_add_text(struct agent_episode *e, const char *s, size_t n);
int agent_ep_add_tokens(struct agent_episode *e, const int32_t *ids, int n, int generated, const float *logprobs);
/* Open a segment of `kind` at the current token/text ends (closing the open one). */
int agent_ep_open_seg(struct agent_episode *e, int kind);
/* Set the open segment's ends to the current token/text ends. */
void agent_ep_close_seg(struct agent_episode *e);
int agent_ep_add_call(struct agent_episode *e, const char *pref, const int32_t *items, const float *scores, int n);

#endif
