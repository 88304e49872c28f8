/* A barrier for the threads of one OpenMP parallel region that never enters the kernel while
 * the threads are busy.
 *
 * libgomp's barriers end with a futex wake system call every time, whether or not a thread
 * sleeps: on the development VM (a paravirtualised guest, where system calls are dear) an
 * `omp barrier` between 2 threads took 1.4-1.6 us and opening and closing an empty region 2.9
 * us, against 0.33-0.42 us for this barrier (a scratch program, 20,000 of each, strace: 1.5
 * futex calls per barrier). A decode step meets about ten barriers a layer.
 *
 * Arrivals count up; the last one resets the count and then moves the generation on, which
 * releases the waiters (they poll the generation, on its own cache line). A waiter that has
 * polled a while yields the CPU between polls, so more threads than cores still make progress. */
#include "llm_internal.h"
#include <omp.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_POLLS 4096 /* polls (each with a pause, 21 ns here: 85 us) before a waiter starts to yield */

/* omp_get_num_procs, asked once: libgomp asks the kernel for the affinity mask on every call
 * (1.4 us here, as much as the barrier this one replaces). */
static int processors(void) {
    static int n;
    int p = __atomic_load_n(&n, __ATOMIC_RELAXED);
    if (!p) __atomic_store_n(&n, p = omp_get_num_procs(), __ATOMIC_RELAXED);
    return p;
}

void llm_barrier_init(llm_barrier *b) {
    __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->gen, 0, __ATOMIC_RELAXED);
}

void llm_barrier_wait(llm_barrier *b) {
    const int nt = omp_get_num_threads();
    if (nt <= 1) return;
    const int g = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == nt) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, g + 1, __ATOMIC_RELEASE);
        return;
    }
    /* more threads than processors: a spinning thread may hold the processor of the one it
     * waits for, so yield from the first poll */
    const int spin = nt > processors() ? 0 : SPIN_POLLS;
    for (int polls = 0; __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == g; polls++) {
        if (polls < spin)
            CPU_RELAX();
        else
            sched_yield();
    }
}
