/* The hashes: FNV-1a, whose values some files and models keep (the RL fingerprint, the TRM's
 * text buckets), and the table hash, FNV-1a finished by a mix so that the low bits an
 * open-addressing table masks depend on every input byte. */
#include "deeprec/base.h"

uint64_t dr_fnv1a64(const void *p, size_t n, uint64_t h) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

uint32_t dr_fnv1a32(const void *p, size_t n, uint32_t h) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

uint64_t dr_mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

uint64_t dr_hash_bytes(const void *p, size_t n, uint64_t seed) {
    return dr_mix64(dr_fnv1a64(p, n, DR_FNV64_INIT ^ seed));
}
