/* test_main.c: the runner linked into every test binary (see test.h). */
#include <stdio.h>
#include <stdlib.h>
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

static char scratch_dir[64];

static void remove_scratch_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", scratch_dir);
}

const char *sft_test_tmp_path(const char *name) {
    static char paths[8][512];
    static int next;
    if (!scratch_dir[0]) {
        snprintf(scratch_dir, sizeof scratch_dir, "/tmp/sft-test-XXXXXX");
        if (!mkdtemp(scratch_dir)) abort();
        atexit(remove_scratch_dir);
    }
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", scratch_dir, name);
    return p;
}

void sft_test_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) abort();
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
