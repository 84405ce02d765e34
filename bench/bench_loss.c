/* bench_loss.c: the cross-entropy kernels (src/model/ops_loss.c) against the
 * memory floor of this machine, at the shape of a training step's logits.
 *
 *   bench_loss [--rows N] [--vocab V] [--reps R]
 *
 * Defaults: 1024 rows (gpt2-124m's B*T = 4 x 256), V = 50257 (GPT-2's
 * vocabulary), 5 repetitions; gpt2-6l's step is --rows 2048. Threads: the
 * OpenMP default (`make bench` runs it with OMP_NUM_THREADS=1).
 *
 * Each repetition times, in turn and on the same logits (random, uniform in
 * [-10, 10)): a plain read of the logits (a vectorised sum: the floor of any
 * forward), a plain in-place read-write (x *= c: the floor of the backward and
 * of the fused pass), the forward, the backward and the fused
 * forward-backward. The logits are far larger than the caches, so each pass
 * goes to memory; before every timed pass a fresh copy of the logits is
 * made (untimed), so every pass starts from the same cache state.
 * Printed per pass: median wall ms and CPU ms (all threads), the bytes it
 * must move and the rate, and the ratio to its memory floor in wall and in
 * CPU time (on a shared machine the CPU ratio is the steadier one). Last, the
 * forward's log-sum-exp against a float64 reference on the first rows. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "model/ops.h"

enum { READ_FLOOR, RW_FLOOR, FORWARD, BACKWARD, FUSED, PASSES };
static const char *const pass_names[PASSES] = {"memory read (floor)", "memory read-write (floor)",
                                               "cross-entropy forward", "cross-entropy backward",
                                               "fused forward-backward"};

static float read_floor(const float *x, size_t n) {
    float sum = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < n; i++)
        sum += x[i];
    return sum;
}

static void read_write_floor(float *x, size_t n, float factor) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] *= factor;
}

static int parse_positive(const char *flag, const char *value, int *out) {
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || v <= 0 || v > 1000000) {
        fprintf(stderr, "bench_loss: %s needs a positive integer, got '%s'\n", flag, value ? value : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    sft_thread_pool_setup(argv);
    int N = 1024, V = 50257, reps = 5;
    for (int i = 1; i < argc; i++) {
        int *target = !strcmp(argv[i], "--rows")    ? &N
                      : !strcmp(argv[i], "--vocab") ? &V
                      : !strcmp(argv[i], "--reps")  ? &reps
                                                    : NULL;
        if (!target) {
            fprintf(stderr, "usage: bench_loss [--rows N] [--vocab V] [--reps R]\n");
            return 2;
        }
        if (parse_positive(argv[i], i + 1 < argc ? argv[i + 1] : NULL, target)) return 2;
        i++;
    }
    const size_t n = (size_t)N * V, bytes = n * sizeof(float);
    float *logits = malloc(bytes), *work = malloc(bytes), *lse = malloc(sizeof(float) * (size_t)N);
    int32_t *targets = malloc(sizeof(int32_t) * (size_t)N);
    double *wall = malloc(sizeof(double) * PASSES * (size_t)reps),
           *cpu = malloc(sizeof(double) * PASSES * (size_t)reps);
    if (!logits || !work || !lse || !targets || !wall || !cpu) {
        fprintf(stderr, "bench_loss: out of memory for %d x %d logits\n", N, V);
        return 1;
    }
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        logits[i] = (float)((double)(state >> 40) / 16777216.0 * 20.0 - 10.0);
    }
    for (int r = 0; r < N; r++) /* one row in 8 ignored, as a prompt token would be */
        targets[r] = r % 8 == 7 ? SFT_IGNORE_INDEX : (int32_t)(((uint64_t)r * 7919u) % (uint64_t)V);
    const float scale = 1.0f / (float)N;
    volatile float factor = 1.0001f; /* volatile: the read-write floor stays a real pass */
    double sink = 0.0;

    for (int rep = 0; rep < reps; rep++) {
        for (int pass = 0; pass < PASSES; pass++) {
            memcpy(work, logits, bytes);
            double w0 = bench_clock_s(CLOCK_MONOTONIC), c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
            switch (pass) {
            case READ_FLOOR:
                sink += read_floor(logits, n);
                break;
            case RW_FLOOR:
                read_write_floor(work, n, factor);
                break;
            case FORWARD:
                sink += sft_cross_entropy_forward(lse, logits, targets, N, V);
                break;
            case BACKWARD:
                sft_cross_entropy_backward(work, lse, targets, N, V, scale);
                break;
            case FUSED:
                sink += sft_cross_entropy_forward_backward(lse, work, targets, N, V, scale);
                break;
            }
            wall[pass * reps + rep] = bench_clock_s(CLOCK_MONOTONIC) - w0;
            cpu[pass * reps + rep] = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        }
    }

    printf("cross-entropy at %d x %d logits (%.0f MB), %d threads, median of %d\n", N, V, bytes / 1e6,
           omp_get_max_threads(), reps);
    printf("%-28s %9s %9s %9s %8s %12s %11s\n", "pass", "wall ms", "CPU ms", "MB moved", "GB/s",
           "x floor wall", "x floor CPU");
    double floor_wall_ms[2] = {0, 0}, floor_cpu_ms[2] = {0, 0}, wall_ms[PASSES];
    for (int pass = 0; pass < PASSES; pass++) {
        wall_ms[pass] = bench_median(wall + pass * reps, reps) * 1e3;
        double cpu_ms = bench_median(cpu + pass * reps, reps) * 1e3;
        int writes = pass == RW_FLOOR || pass == BACKWARD || pass == FUSED;
        double moved = (double)bytes * (writes ? 2 : 1);
        if (pass <= RW_FLOOR) floor_wall_ms[pass] = wall_ms[pass], floor_cpu_ms[pass] = cpu_ms;
        int floor = writes ? RW_FLOOR : READ_FLOOR;
        printf("%-28s %9.2f %9.2f %9.0f %8.1f %12.2f %11.2f\n", pass_names[pass], wall_ms[pass], cpu_ms,
               moved / 1e6, moved / (wall_ms[pass] * 1e-3) / 1e9, wall_ms[pass] / floor_wall_ms[floor],
               cpu_ms / floor_cpu_ms[floor]);
    }
    printf("forward + backward %.2f ms against fused %.2f ms (%.2fx)\n", wall_ms[FORWARD] + wall_ms[BACKWARD],
           wall_ms[FUSED], (wall_ms[FORWARD] + wall_ms[BACKWARD]) / wall_ms[FUSED]);

    /* numerics: the forward's lse against float64 on the first rows */
    int check_rows = N < 32 ? N : 32;
    sft_cross_entropy_forward(lse, logits, targets, check_rows, V);
    double worst = 0.0;
    for (int r = 0; r < check_rows; r++) {
        const float *z = logits + (size_t)r * V;
        double mx = -INFINITY, s = 0.0;
        for (int i = 0; i < V; i++)
            mx = fmax(mx, z[i]);
        for (int i = 0; i < V; i++)
            s += exp((double)z[i] - mx);
        double want = mx + log(s);
        worst = fmax(worst, fabs(lse[r] - want) / fabs(want));
    }
    printf("lse against float64 on %d rows: worst relative error %.2g (float epsilon 1.2e-7)\n", check_rows,
           worst);
    if (sink == 12345.0) printf(" "); /* keeps the timed results alive */
    free(cpu);
    free(wall);
    free(targets);
    free(lse);
    free(work);
    free(logits);
    return 0;
}
