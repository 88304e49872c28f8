/* xoshiro256** (Blackman & Vigna) seeded via splitmix64. */
#include "deeprec/base.h"
#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void dr_rng_seed(dr_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

dr_rng dr_rng_split(const dr_rng *r, uint64_t stream) {
    /* Hash the parent state with the stream id: children of different ids
     * (and of different parents) get unrelated seeds. */
    uint64_t x = r->s[0] ^ rotl(r->s[1], 17) ^ rotl(r->s[2], 31) ^ rotl(r->s[3], 47);
    x ^= splitmix64(&stream);
    dr_rng c;
    dr_rng_seed(&c, x);
    return c;
}

uint64_t dr_rng_u64(dr_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t dr_rng_below(dr_rng *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = dr_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float dr_rng_float(dr_rng *r) { return (float)(dr_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
double dr_rng_double(dr_rng *r) { return (double)(dr_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float dr_rng_normal(dr_rng *r) {
    /* Box-Muller; one value per call keeps the stream position simple. */
    double u1 = dr_rng_double(r), u2 = dr_rng_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void dr_rng_shuffle_i32(dr_rng *r, int32_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)dr_rng_below(r, i);
        int32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
