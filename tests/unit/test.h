/* test.h - a tiny unit-test harness: one standalone program per test file.
 *
 *   TEST_ASSERT(cond, fmt, ...)  count a pass, or count a failure and print
 *                                "FAIL file:line: <message>" to stderr
 *   TEST_STR_EQ(got, want, what) string equality (NULL-safe), shows both
 *   return test_report();        prints exactly "N passed, N failed" and
 *                                gives the exit status (non-zero on failure)
 * Counters are file-static: include this header from one .c file only.
 */
#ifndef TEST_H
#define TEST_H

#include <stdio.h>
#include <string.h>

static int test_passed_count;
static int test_failed_count;

#define TEST_ASSERT(cond, ...)                                                                                         \
    do {                                                                                                               \
        if (cond) {                                                                                                    \
            test_passed_count++;                                                                                       \
        } else {                                                                                                       \
            test_failed_count++;                                                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

#define TEST_STR_EQ(got, want, what)                                                                                   \
    do {                                                                                                               \
        const char *test_g_ = (got), *test_w_ = (want);                                                                \
        int test_ok_ = test_g_ != NULL && test_w_ != NULL && strcmp(test_g_, test_w_) == 0;                            \
        TEST_ASSERT(test_ok_, "%s\n  got:  %s\n  want: %s", (what), test_g_ ? test_g_ : "(null)",                      \
                    test_w_ ? test_w_ : "(null)");                                                                     \
    } while (0)

static int test_report(void)
{
    printf("%d passed, %d failed\n", test_passed_count, test_failed_count);
    fflush(stdout);
    return test_failed_count == 0 && test_passed_count > 0 ? 0 : 1;
}

#endif /* TEST_H */
