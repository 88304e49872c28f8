/* CPU features that gcc and clang name differently: clang 14 (Debian 12) knows neither "f16c",
 * "avxvnni" nor "avx512bf16" in __builtin_cpu_supports, so the kernels' dispatch reads them
 * from CPUID itself. The OS-state checks (AVX, AVX-512) stay with __builtin_cpu_supports. */
#include "llm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static int cpuid_bit(unsigned leaf, unsigned sub, int reg, int bit) {
    unsigned r[4] = {0, 0, 0, 0};
    if (leaf > __get_cpuid_max(0, 0)) return 0;
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    return (int)((r[reg] >> bit) & 1u);
}
int llm_cpu_f16c(void) { return cpuid_bit(1, 0, 2, 29); }       /* CPUID.1:ECX[29] */
int llm_cpu_avxvnni(void) { return cpuid_bit(7, 1, 0, 4); }     /* CPUID.(7,1):EAX[4] */
int llm_cpu_avx512bf16(void) { return cpuid_bit(7, 1, 0, 5); }  /* CPUID.(7,1):EAX[5] */
#else
int llm_cpu_f16c(void) { return 0; }
int llm_cpu_avxvnni(void) { return 0; }
int llm_cpu_avx512bf16(void) { return 0; }
#endif
