/* bench_gemm.c: the bf16-operand product (src/model/gemm_bf16.h) against
 * OpenBLAS's cblas_sgemm on the matrix shapes of a GPT-2 training step, and
 * against the machine's vdpbf16ps peak.
 *
 *   bench_gemm [--full] [--reps N] [--threads N] [--only NAME] [--shape M,N,K,TA,TB]
 *
 * 1. Peak: one core issuing independent vdpbf16ps (24 accumulators, no
 *    loads), and the same for float32 vfmadd (the sgemm ceiling): FLOP/s with
 *    a multiply and an add counted as 2, the median of 9 short tries (the
 *    best one can be an artefact of CPU-time accounting on a loaded machine).
 * 2. Shapes: the products of one GPT-2-124M step at B*T = 1024 tokens, C = 768,
 *    as each of two threads sees them (sft splits the rows of the forward and
 *    input-gradient products and the output channels of the weight
 *    gradients), gpt2-6l's (d = 384, B*T = 2048) and three of attention's
 *    small per-head products (single-threaded runs only). Each shape runs
 *    sft_gemm_bf16 and cblas_sgemm alternately, REPS times each after one
 *    warm-up, and prints the median GFLOP/s, the ratio bf16/sgemm and the
 *    fraction of the bf16 peak. Single-threaded runs are timed in the
 *    thread's CPU time (the machine is shared: time spent descheduled is not
 *    the kernel's), multi-threaded ones in wall time.
 * --threads N runs each product on N OpenMP threads with the output split
 * the way src/model/ops.c's linear layers split it (the shapes are then the
 * whole step's: forward and input gradient M = 1024 rows). The default run
 * (single thread, 3 repetitions, the lm_head shapes left out) takes a few
 * seconds; --full adds the lm_head shapes and uses 7 repetitions. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "model/gemm_bf16.h"
#include "model/ops.h"

/* ---- peak: independent multiply-adds, 24 chains, no memory operands ---- */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

#define PEAK_ITERS 400000 /* x 24 instructions: ~5 ms per try */
#define PEAK_TRIES 9      /* the median try is the peak */
#define PEAK_CHAINS 24

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static double peak_bf16_gflops(void) {
    __m512 acc[PEAK_CHAINS];
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm512_set1_ps((float)i);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x00000000);
    double tries_s[PEAK_TRIES];
    for (int try = 0; try < PEAK_TRIES; try++) {
        double t0 = bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
        for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 24
            for (int i = 0; i < PEAK_CHAINS; i++)
                acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
            __asm__ volatile("" : "+v"(a), "+v"(b)); /* keep the loop from being folded */
        }
        double elapsed = bench_clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
        tries_s[try] = elapsed;
    }
    double seconds = bench_median(tries_s, PEAK_TRIES);
    float sink = 0;
    for (int i = 0; i < PEAK_CHAINS; i++)
        sink += _mm512_reduce_add_ps(acc[i]);
    if (sink == -1.0f) fprintf(stderr, "unreachable\n");
    return (double)PEAK_ITERS * PEAK_CHAINS * 64 / seconds * 1e-9; /* 16 lanes x 2 products x 2 FLOP */
}

__attribute__((target("avx512f"))) static double peak_fma_gflops(void) {
    __m512 acc[PEAK_CHAINS];
    for (int i = 0; i < PEAK_CHAINS; i++)
        acc[i] = _mm512_set1_ps((float)i);
    __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(0.0f);
    double tries_s[PEAK_TRIES];
    for (int try = 0; try < PEAK_TRIES; try++) {
        double t0 = bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
        for (long it = 0; it < PEAK_ITERS; it++) {
#pragma GCC unroll 24
            for (int i = 0; i < PEAK_CHAINS; i++)
                acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
            __asm__ volatile("" : "+v"(a), "+v"(b));
        }
        double elapsed = bench_clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
        tries_s[try] = elapsed;
    }
    double seconds = bench_median(tries_s, PEAK_TRIES);
    float sink = 0;
    for (int i = 0; i < PEAK_CHAINS; i++)
        sink += _mm512_reduce_add_ps(acc[i]);
    if (sink == -1.0f) fprintf(stderr, "unreachable\n");
    return (double)PEAK_ITERS * PEAK_CHAINS * 32 / seconds * 1e-9; /* 16 lanes x 2 FLOP */
}
#else /* the bf16 kernel is GCC on x86-64 only: nothing to measure elsewhere */
static double peak_bf16_gflops(void) {
    return 0.0;
}
static double peak_fma_gflops(void) {
    return 0.0;
}
#endif

/* ---- the step's shapes ---- */

typedef struct shape {
    const char *name;
    int trans_a, trans_b, M, N, K;
    int lm_head;   /* large: only with --full */
    int per_block; /* attention's per-(row, head) products: single-threaded runs only */
} shape;

/* Per-thread shapes of two threads (M = 512 of 1024 rows; weight gradients:
 * half the output channels). "linear" weights are [OC, C] (transposed in the
 * forward), "conv1d" ones GPT-2's [C, OC]. */
static const shape shapes_per_thread[] = {
    {"124m fwd qkv      linear ", 0, 1, 512, 2304, 768, 0, 0},
    {"124m fwd qkv      conv1d ", 0, 0, 512, 2304, 768, 0, 0},
    {"124m fwd attnproj linear ", 0, 1, 512, 768, 768, 0, 0},
    {"124m fwd fc       linear ", 0, 1, 512, 3072, 768, 0, 0},
    {"124m fwd fcproj   linear ", 0, 1, 512, 768, 3072, 0, 0},
    {"124m fwd lm_head  linear ", 0, 1, 512, 50257, 768, 1, 0},
    {"124m dinp qkv     linear ", 0, 0, 512, 768, 2304, 0, 0},
    {"124m dinp qkv     conv1d ", 0, 1, 512, 768, 2304, 0, 0},
    {"124m dinp fc      linear ", 0, 0, 512, 768, 3072, 0, 0},
    {"124m dinp fcproj  linear ", 0, 0, 512, 3072, 768, 0, 0},
    {"124m dinp lm_head linear ", 0, 0, 512, 768, 50257, 1, 0},
    {"124m dW qkv       linear ", 1, 0, 1152, 768, 1024, 0, 0},
    {"124m dW qkv       conv1d ", 1, 0, 768, 1152, 1024, 0, 0},
    {"124m dW fc        linear ", 1, 0, 1536, 768, 1024, 0, 0},
    {"124m dW fcproj    linear ", 1, 0, 384, 3072, 1024, 0, 0},
    {"124m dW lm_head   linear ", 1, 0, 25129, 768, 1024, 1, 0},
    {"6l   fwd qkv      linear ", 0, 1, 1024, 1152, 384, 0, 0},
    {"6l   fwd fc       linear ", 0, 1, 1024, 1536, 384, 0, 0},
    {"6l   fwd fcproj   linear ", 0, 1, 1024, 384, 1536, 0, 0},
    {"6l   fwd lm_head  linear ", 0, 1, 1024, 50257, 384, 1, 0},
    {"6l   dinp fc      linear ", 0, 0, 1024, 384, 1536, 0, 0},
    {"6l   dW fc        linear ", 1, 0, 768, 384, 2048, 0, 0},
    /* attention at T = 256, head dim 64, 64-query blocks (ops.c), the last block */
    {"124m attn S = Q K^T      ", 0, 1, 64, 256, 64, 0, 1},
    {"124m attn out = P V      ", 0, 0, 64, 64, 256, 0, 1},
    {"124m attn dV += P^T dO   ", 1, 0, 256, 64, 64, 0, 1},
};

typedef void gemm_fn(int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                     int);

static void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The product on `threads` threads, split like ops.c: rows of C when each
 * thread gets at least 32 (the forward and input-gradient products),
 * otherwise columns; weight gradients (trans_a) by their rows, the output
 * channels. Single-threaded when threads == 1. */
static void run_split(gemm_fn *gemm, int threads, const shape *s, const float *A, const float *B, float *C) {
    int lda = s->trans_a ? s->M : s->K, ldb = s->trans_b ? s->K : s->N, ldc = s->N;
    if (threads == 1) {
        gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int by_rows = s->trans_a || s->M >= nt * 32;
        int n = by_rows ? s->M : s->N, lo = (int)((long)n * t / nt), hi = (int)((long)n * (t + 1) / nt);
        if (hi > lo) {
            if (by_rows) {
                const float *a_rows = s->trans_a ? A + lo : A + (size_t)lo * lda;
                gemm(s->trans_a, s->trans_b, hi - lo, s->N, s->K, 1.0f, a_rows, lda, B, ldb, 0.0f,
                     C + (size_t)lo * ldc, ldc);
            } else {
                const float *b_cols = s->trans_b ? B + (size_t)lo * ldb : B + lo;
                gemm(s->trans_a, s->trans_b, s->M, hi - lo, s->K, 1.0f, A, lda, b_cols, ldb, 0.0f, C + lo,
                     ldc);
            }
        }
    }
}

static float *random_floats(size_t count) {
    float *m = malloc(count * sizeof *m);
    if (!m) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    unsigned state = 12345;
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        m[i] = (float)((state >> 9) & 0xFFFF) / 65536.0f - 0.5f;
    }
    return m;
}

int main(int argc, char **argv) {
    sft_thread_pool_setup(argv);
    int full = 0, reps = 0, threads = 1;
    const char *only = NULL;
    shape custom = {"custom", 0, 0, 0, 0, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--full"))
            full = 1;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d,%d,%d,%d", &custom.M, &custom.N, &custom.K, &custom.trans_a,
                       &custom.trans_b) != 5 ||
                custom.M <= 0 || custom.N <= 0 || custom.K <= 0) {
                fprintf(stderr, "bench_gemm: --shape takes M,N,K,TRANS_A,TRANS_B (positive sizes), got %s\n",
                        argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(
                stderr,
                "usage: bench_gemm [--full] [--reps N] [--threads N] [--only NAME] [--shape M,N,K,TA,TB]\n");
            return 2;
        }
    }
    if (reps <= 0) reps = full ? 7 : 3;
    if (threads <= 0) threads = 1;
    openblas_set_num_threads(1);
    if (!sft_bf16_supported()) {
        printf("bench_gemm: this CPU (or build) has no AVX512_BF16 kernel; sft_gemm_bf16 runs the portable "
               "path, "
               "nothing to measure\n");
        return 0;
    }

    double peak_bf16 = peak_bf16_gflops(), peak_fma = peak_fma_gflops();
    printf("one core: vdpbf16ps peak %.1f GFLOP/s, float32 vfmadd peak %.1f GFLOP/s\n", peak_bf16, peak_fma);
    printf("%d thread(s), median of %d alternating runs (%s); %%peak = of %d x the vdpbf16ps peak\n", threads,
           reps, threads == 1 ? "thread CPU time" : "wall time", threads);
    printf("%-26s %5s %5s %5s  %9s %9s %7s %6s\n", "shape", "M", "N", "K", "bf16 GF/s", "sgemm", "ratio",
           "%peak");

    int shape_count = (int)(sizeof shapes_per_thread / sizeof shapes_per_thread[0]);
    double *bf16_s = malloc(sizeof(double) * reps), *sgemm_s = malloc(sizeof(double) * reps);
    for (int i = 0; i < (custom.M ? 1 : shape_count); i++) {
        shape s = custom.M ? custom : shapes_per_thread[i];
        if ((s.lm_head && !full) || (s.per_block && threads > 1)) continue;
        if (only && !strstr(s.name, only)) continue;
        /* per-thread shapes scaled to the whole step's: the split dimension
         * (rows of M, for forward/dinp and for weight gradients) times threads */
        s.M *= threads;
        size_t a_count = (size_t)s.M * s.K, b_count = (size_t)s.K * s.N, c_count = (size_t)s.M * s.N;
        float *A = random_floats(a_count), *B = random_floats(b_count), *C = random_floats(c_count);
        run_split(sft_gemm_bf16, threads, &s, A, B, C); /* warm-up: buffers, caches, clocks */
        run_split(sgemm, threads, &s, A, B, C);
        /* one thread: its CPU time (what it ran on a shared machine); more: wall */
        clockid_t clock = threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
        for (int r = 0; r < reps; r++) {
            double t0 = bench_clock_s(clock);
            run_split(sft_gemm_bf16, threads, &s, A, B, C);
            double t1 = bench_clock_s(clock);
            run_split(sgemm, threads, &s, A, B, C);
            double t2 = bench_clock_s(clock);
            bf16_s[r] = t1 - t0;
            sgemm_s[r] = t2 - t1;
        }
        double flop = 2.0 * s.M * s.N * s.K;
        double bf16_gflops = flop / bench_median(bf16_s, reps) * 1e-9,
               sgemm_gflops = flop / bench_median(sgemm_s, reps) * 1e-9;
        printf("%-26s %5d %5d %5d  %9.1f %9.1f %6.2fx %5.0f%%\n", s.name, s.M, s.N, s.K, bf16_gflops,
               sgemm_gflops, bf16_gflops / sgemm_gflops, 100.0 * bf16_gflops / (peak_bf16 * threads));
        fflush(stdout);
        free(A), free(B), free(C);
    }
    free(bf16_s), free(sgemm_s);
    return 0;
}
