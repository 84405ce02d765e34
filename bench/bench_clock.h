/* bench_clock.h: the clocks and the median every micro-benchmark in bench/
 * reports with (one copy, included by each bench_*.c). */
#ifndef SFT_BENCH_CLOCK_H
#define SFT_BENCH_CLOCK_H

#include <stdlib.h>
#include <time.h>

/* Seconds on a clock: CLOCK_MONOTONIC (wall), CLOCK_PROCESS_CPUTIME_ID (CPU
 * of every thread), CLOCK_THREAD_CPUTIME_ID (the calling thread's CPU: on a
 * shared machine, the time a single-threaded measurement actually ran). */
static inline double bench_clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double bench_wall_s(void) {
    return bench_clock_s(CLOCK_MONOTONIC);
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v [n] (n > 0); sorts v in place. */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
