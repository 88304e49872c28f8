/* CPU features that gcc and clang name differently: clang 14 (Debian 12) knows neither "f16c",
 * "avxvnni" nor "avx512bf16" in __builtin_cpu_supports, so the kernels' dispatch reads them
 * from CPUID itself. The OS-state checks (AVX, AVX-512) stay with __builtin_cpu_supports. */
#include "llm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static int cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
    unsigned r[4] = {0, 0, 0, 0};
    if (leaf > (unsigned)__get_cpuid_max(0, 0)) return 0; /* int in clang's cpuid.h, unsigned in gcc's */
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    return (int)((r[reg] >> bit) & 1u);
}
/* Each bit is read once: CPUID traps to the hypervisor on a VM (1.6 us a call on the
 * development VM), and llm_q5x_row_f32 asks for F16C once per row it expands. Relaxed atomics:
 * racing callers store the same value. */
static int cached_bit(int *slot, unsigned leaf, unsigned sub, int reg, int bit) {
    int v = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (v < 0) {
        v = cpuid_bit(leaf, sub, reg, bit);
        __atomic_store_n(slot, v, __ATOMIC_RELAXED);
    }
    return v;
}
static int g_f16c = -1, g_avxvnni = -1, g_avx512bf16 = -1;
int llm_cpu_f16c(void) { return cached_bit(&g_f16c, 1, 0, 2, 29); }              /* CPUID.1:ECX[29] */
int llm_cpu_avxvnni(void) { return cached_bit(&g_avxvnni, 7, 1, 0, 4); }         /* CPUID.(7,1):EAX[4] */
int llm_cpu_avx512bf16(void) { return cached_bit(&g_avx512bf16, 7, 1, 0, 5); }  /* CPUID.(7,1):EAX[5] */
#else
int llm_cpu_f16c(void) { return 0; }
int llm_cpu_avxvnni(void) { return 0; }
int llm_cpu_avx512bf16(void) { return 0; }
#endif
