/* Minimal test harness: TEST(name) registers a test at load time; the
 * runner prints every test by name and ends with "N passed, N failed". */
#ifndef DEEPREC_TEST_HARNESS_H
#define DEEPREC_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "deeprec/base.h"

typedef void (*dr_test_fn)(void);
void dr_test_register(const char *name, dr_test_fn fn, const char *file);
void dr_test_fail(const char *file, int line, const char *fmt, ...) DR_PRINTF(3, 4) __attribute__((noreturn));
void dr_test_skip(const char *fmt, ...) DR_PRINTF(1, 2) __attribute__((noreturn));
/* A fresh empty directory for this test (removed after a pass). */
const char *dr_test_tmpdir(void);
/* Path to ../shared/data (or $DEEPREC_SHARED_DATA) if present, else NULL. */
const char *dr_test_shared_data(void);
/* Build "dir/name" in a static rotating buffer. */
const char *dr_test_path(const char *dir, const char *name);

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void register_##name(void) {                 \
        dr_test_register(#name, test_##name, __FILE__);                              \
    }                                                                                \
    static void test_##name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) dr_test_fail(__FILE__, __LINE__, "check failed: %s", #cond);   \
    } while (0)
#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) dr_test_fail(__FILE__, __LINE__, __VA_ARGS__);                  \
    } while (0)
#define CHECK_OK(expr)                                                               \
    do {                                                                             \
        int rc_ = (expr);                                                            \
        if (rc_ != 0)                                                                \
            dr_test_fail(__FILE__, __LINE__, "%s returned %d (%s): %s", #expr, rc_,  \
                         dr_error_name(rc_), dr_error_message());                    \
    } while (0)
#define CHECK_ERR(expr, code)                                                        \
    do {                                                                             \
        int rc_ = (expr);                                                            \
        if (rc_ != (code))                                                           \
            dr_test_fail(__FILE__, __LINE__, "%s returned %d, expected %d (msg: %s)", \
                         #expr, rc_, (int)(code), dr_error_message());               \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                           \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_)                                                                \
            dr_test_fail(__FILE__, __LINE__, "%s == %s failed: %lld vs %lld", #a, #b, a_, b_); \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                        \
    do {                                                                             \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);               \
        if (!(fabs(a_ - b_) <= t_))                                                  \
            dr_test_fail(__FILE__, __LINE__, "|%s - %s| <= %g failed: %.9g vs %.9g", #a, #b, t_, a_, b_); \
    } while (0)
#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                       \
            dr_test_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" vs \"%s\"", #a, #b, \
                         a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
    } while (0)
#define SKIP(...) dr_test_skip(__VA_ARGS__)

#endif
