/* test_main.c: the runner linked into every test binary (see test.h). */
#include <stdio.h>
#include <string.h>

#include "model/ops.h"
#include "test.h"

#define MAX_TESTS 1024

static struct {
    const char *name;
    sft_test_fn fn;
} tests[MAX_TESTS];
static int test_count;
int sft_test_failures;

void sft_test_register(const char *name, sft_test_fn fn) {
    if (test_count < MAX_TESTS) {
        tests[test_count].name = name;
        tests[test_count].fn = fn;
        test_count++;
    }
}

int main(int argc, char **argv) {
    /* Waiting OpenMP threads sleep in tests as in the sft binary
     * (model/ops.h): the test re-executes itself once with the policy set. */
    sft_thread_pool_setup(argv);
    int ran = 0, failed_tests = 0;
    for (int i = 0; i < test_count; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        int before = sft_test_failures;
        tests[i].fn();
        ran++;
        if (sft_test_failures != before) {
            failed_tests++;
            fprintf(stderr, "FAIL %s\n", tests[i].name);
        }
    }
    printf("%s: %d tests, %d failed\n", argv[0], ran, failed_tests);
    return failed_tests ? 1 : 0;
}
