/* Substring search helpers for the agent module. */
#include "agent/internal.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *agent_memmem(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return NULL;
    return memmem(hay, n, needle, m);
}

const char *agent_memrmem(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return NULL;
    for (size_t i = n - m + 1; i-- > 0;)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, m)) return hay + i;
    return NULL;
}

int agent_count(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    int c = 0;
    const char *p = hay, *end = hay + n;
    while ((p = agent_memmem(p, (size_t)(end - p), needle))) {
        c++;
        p += m;
    }
    return c;
}

const char *agent_memcasemem(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return NULL;
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m && tolower((unsigned char)hay[i + k]) == tolower((unsigned char)needle[k])) k++;
        if (k == m) return hay + i;
    }
    return NULL;
}
