/* test.h: the project's minimal test harness. Each tests/test_*.c is one
 * binary; TEST(name) registers a function; main() runs them all (or the
 * ones whose name contains argv[1]) and exits 1 on any failed check.
 * Fixture paths are relative to the repository root (make test runs there). */
#ifndef SFT_TEST_H
#define SFT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*sft_test_fn)(void);

/* NAME inside a scratch folder of this test binary, created on first use
 * and removed at exit; the returned buffer is one of 8 reused in turn. */
const char *sft_test_tmp_path(const char *name);
/* Writes text to path (aborts the test binary when it cannot). */
void sft_test_write_text(const char *path, const char *text);
void sft_test_register(const char *name, sft_test_fn fn);
extern int sft_test_failures;

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void register_##name(void) {                 \
        sft_test_register(#name, test_##name);                                       \
    }                                                                                \
    static void test_##name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            sft_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                              \
    do {                                                                             \
        long long va_ = (long long)(a), vb_ = (long long)(b);                        \
        if (va_ != vb_) {                                                            \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, \
                    __LINE__, #a, va_, #b, vb_);                                     \
            sft_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *sa_ = (a), *sb_ = (b);                                           \
        if (!sa_ || !sb_ || strcmp(sa_, sb_)) {                                      \
            fprintf(stderr, "  %s:%d: %s == \"%s\"\n      expected \"%s\"\n", __FILE__, \
                    __LINE__, #a, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");       \
            sft_test_failures++;                                                     \
        }                                                                            \
    } while (0)

/* |a - b| <= tol (absolute). */
#define CHECK_NEAR(a, b, tol)                                                        \
    do {                                                                             \
        double va_ = (double)(a), vb_ = (double)(b);                                 \
        if (!(fabs(va_ - vb_) <= (tol))) {                                           \
            fprintf(stderr, "  %s:%d: %s == %.9g, expected %.9g (tol %g)\n", __FILE__, \
                    __LINE__, #a, va_, vb_, (double)(tol));                          \
            sft_test_failures++;                                                     \
        }                                                                            \
    } while (0)

/* The error message contains the expected text. */
#define CHECK_ERR_HAS(errmsg, text)                                                  \
    do {                                                                             \
        if (!strstr((errmsg), (text))) {                                             \
            fprintf(stderr, "  %s:%d: error \"%s\"\n      does not contain \"%s\"\n", \
                    __FILE__, __LINE__, (errmsg), (text));                           \
            sft_test_failures++;                                                     \
        }                                                                            \
    } while (0)

#endif
