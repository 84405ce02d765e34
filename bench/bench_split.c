/* bench_split.c: how a matrix product is split across the OpenMP threads
 * (issue 8; the choice ops.c's linear layers make, bench/SPEED.md).
 *
 *   bench_split [--threads N] [--reps N] [--dtype fp32|bf16|both] [--only TEXT]
 *
 * Every thread of a split product runs a single-threaded product on its
 * slice of C [M, N] and packs, besides its slice of the split operand, the
 * whole of the other one: splitting the rows of C, each thread packs all of
 * op(B) (K x N); splitting the columns, all of op(A) (M x K). For each
 * whole product of a GPT-2 training step (in the transpositions ops.c uses:
 * GPT-2's Conv1D weights are [C, OC], the tied lm_head [V, C]) this times
 * both splits, alternating rows, columns, rows, ..., with OpenBLAS's sgemm
 * and with sft_gemm_bf16, and prints medians of the wall time and of the
 * CPU time the threads spent in their products (summed over the threads;
 * steadier than wall time on a shared machine, where a thread may wait for
 * a core). "pick" is the faster split by CPU time, "rule" the one ops.c's
 * rule takes (split the larger of M and N). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "model/gemm_bf16.h"
#include "model/ops.h"

typedef void gemm_fn(int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                     int);

static void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
}

typedef struct product {
    const char *name;
    int trans_a, trans_b, M, N, K;
} product;

/* Whole products (all threads together) of one training step: 124M at
 * B 4 x T 256 (1024 rows, C 768), the 6-layer d 384 model at B 8 x T 256
 * (2048 rows). Forward C = x W (Conv1D) or x W^T (lm_head); input gradient
 * dx += dy W^T (Conv1D) or dy W (lm_head); weight gradient dW [C, OC] +=
 * x^T dy (Conv1D) or dW [V, C] += dy^T x (lm_head). The training step runs
 * the lm_head in row chunks (model.c): "head/2" is one of 124M's two
 * 512-row chunks, "head/4" one of four 256-row ones. */
static const product products[] = {
    {"124m fwd  c_attn  ", 0, 0, 1024, 2304, 768},
    {"124m fwd  attnprj ", 0, 0, 1024, 768, 768},
    {"124m fwd  c_fc    ", 0, 0, 1024, 3072, 768},
    {"124m fwd  mlpprj  ", 0, 0, 1024, 768, 3072},
    {"124m fwd  lm_head ", 0, 1, 1024, 50257, 768},
    {"124m dinp c_attn  ", 0, 1, 1024, 768, 2304},
    {"124m dinp attnprj ", 0, 1, 1024, 768, 768},
    {"124m dinp c_fc    ", 0, 1, 1024, 768, 3072},
    {"124m dinp mlpprj  ", 0, 1, 1024, 3072, 768},
    {"124m dinp lm_head ", 0, 0, 1024, 768, 50257},
    {"124m dW   c_attn  ", 1, 0, 768, 2304, 1024},
    {"124m dW   attnprj ", 1, 0, 768, 768, 1024},
    {"124m dW   c_fc    ", 1, 0, 768, 3072, 1024},
    {"124m dW   mlpprj  ", 1, 0, 3072, 768, 1024},
    {"124m dW   lm_head ", 1, 0, 50257, 768, 1024},
    /* the loss head in row chunks (model.c's LOSS_CHUNK_MIN_ROWS): 1024 rows in 2 or 4 */
    {"124m fwd  head/2  ", 0, 1, 512, 50257, 768},
    {"124m dinp head/2  ", 0, 0, 512, 768, 50257},
    {"124m dW   head/2  ", 1, 0, 50257, 768, 512},
    {"124m fwd  head/4  ", 0, 1, 256, 50257, 768},
    {"124m dinp head/4  ", 0, 0, 256, 768, 50257},
    {"124m dW   head/4  ", 1, 0, 50257, 768, 256},
    {"6l   fwd  c_attn  ", 0, 0, 2048, 1152, 384},
    {"6l   fwd  c_fc    ", 0, 0, 2048, 1536, 384},
    {"6l   fwd  lm_head ", 0, 1, 2048, 50257, 384},
    {"6l   dinp mlpprj  ", 0, 1, 2048, 1536, 384},
    {"6l   dW   c_fc    ", 1, 0, 384, 1536, 2048},
    {"6l   dW   mlpprj  ", 1, 0, 1536, 384, 2048},
    {"6l   dW   lm_head ", 1, 0, 50257, 384, 2048},
};

/* C = op(A) op(B) on `threads` threads, split by rows of C or by columns
 * (16-column granules, as ops.c slices them); returns the wall time and
 * adds the threads' CPU time in their products to *cpu. */
static double run_split(gemm_fn *gemm, int threads, int by_columns, const product *p, const float *A,
                        const float *B, float *C, double *cpu) {
    int lda = p->trans_a ? p->M : p->K, ldb = p->trans_b ? p->K : p->N, ldc = p->N;
    double cpu_sum = 0, t0 = bench_wall_s();
#pragma omp parallel num_threads(threads) reduction(+ : cpu_sum)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        double c0 = bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (by_columns) {
            int granules = (p->N + 15) / 16;
            int lo = 16 * (int)((long)granules * t / nt), hi = 16 * (int)((long)granules * (t + 1) / nt);
            if (hi > p->N) hi = p->N;
            if (hi > lo)
                gemm(p->trans_a, p->trans_b, p->M, hi - lo, p->K, 1.0f, A, lda,
                     p->trans_b ? B + (size_t)lo * ldb : B + lo, ldb, 0.0f, C + lo, ldc);
        } else {
            int lo = (int)((long)p->M * t / nt), hi = (int)((long)p->M * (t + 1) / nt);
            if (hi > lo)
                gemm(p->trans_a, p->trans_b, hi - lo, p->N, p->K, 1.0f,
                     p->trans_a ? A + lo : A + (size_t)lo * lda, lda, B, ldb, 0.0f, C + (size_t)lo * ldc,
                     ldc);
        }
        cpu_sum += bench_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
    double elapsed = bench_wall_s() - t0;
    *cpu += cpu_sum;
    return elapsed;
}

static float *random_floats(size_t count, unsigned state) {
    float *m = malloc(count * sizeof *m);
    if (!m) {
        fprintf(stderr, "bench_split: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        m[i] = (float)((state >> 9) & 0xFFFF) / 65536.0f - 0.5f;
    }
    return m;
}

int main(int argc, char **argv) {
    sft_thread_pool_setup(argv); /* OMP_WAIT_POLICY=passive, as the trainer runs */
    int threads = 2, reps = 5, want_fp32 = 1, want_bf16 = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            want_fp32 = !strcmp(d, "fp32") || !strcmp(d, "both");
            want_bf16 = !strcmp(d, "bf16") || !strcmp(d, "both");
            if (!want_fp32 && !want_bf16) {
                fprintf(stderr, "bench_split: --dtype takes fp32, bf16 or both, got '%s'\n", d);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: bench_split [--threads N] [--reps N] [--dtype fp32|bf16|both] [--only TEXT]\n");
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    if (want_bf16 && !sft_bf16_supported()) {
        printf("no AVX512_BF16 kernel on this CPU or build: bf16 skipped\n");
        want_bf16 = 0;
    }
    openblas_set_num_threads(1);
    printf("%d threads, medians of %d alternating runs; ms wall / ms CPU (threads' product time, summed)\n",
           threads, reps);
    printf("%-18s %-5s %5s %5s %5s | %8s %8s | %8s %8s | %6s %4s %4s\n", "product", "dtype", "M", "N", "K",
           "rows", "cols", "rows cpu", "cols cpu", "cols/r", "pick", "rule");
    double *wall[2], *cpu[2];
    for (int s = 0; s < 2; s++) {
        wall[s] = malloc(sizeof(double) * reps);
        cpu[s] = malloc(sizeof(double) * reps);
    }
    for (size_t pi = 0; pi < sizeof products / sizeof products[0]; pi++) {
        const product *p = &products[pi];
        if (only && !strstr(p->name, only)) continue;
        float *A = random_floats((size_t)p->M * p->K, 1), *B = random_floats((size_t)p->K * p->N, 2);
        float *C = random_floats((size_t)p->M * p->N, 3);
        for (int d = 0; d < 2; d++) {
            if ((d == 0 && !want_fp32) || (d == 1 && !want_bf16)) continue;
            gemm_fn *gemm = d == 0 ? sgemm : sft_gemm_bf16;
            double ignored = 0;
            run_split(gemm, threads, 0, p, A, B, C, &ignored); /* warm-up: buffers, caches */
            run_split(gemm, threads, 1, p, A, B, C, &ignored);
            for (int r = 0; r < reps; r++)
                for (int s = 0; s < 2; s++) {
                    cpu[s][r] = 0;
                    wall[s][r] = run_split(gemm, threads, s, p, A, B, C, &cpu[s][r]);
                }
            double w_rows = bench_median(wall[0], reps), w_cols = bench_median(wall[1], reps);
            double c_rows = bench_median(cpu[0], reps), c_cols = bench_median(cpu[1], reps);
            printf("%-18s %-5s %5d %5d %5d | %8.2f %8.2f | %8.2f %8.2f | %6.3f %4s %4s\n", p->name,
                   d == 0 ? "fp32" : "bf16", p->M, p->N, p->K, 1e3 * w_rows, 1e3 * w_cols, 1e3 * c_rows,
                   1e3 * c_cols, c_cols / c_rows, c_cols < c_rows ? "cols" : "rows",
                   p->N > p->M ? "cols" : "rows");
            fflush(stdout);
        }
        free(A), free(B), free(C);
    }
    for (int s = 0; s < 2; s++)
        free(wall[s]), free(cpu[s]);
    return 0;
}
