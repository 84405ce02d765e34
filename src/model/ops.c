/* ops.c: the float32 CPU kernels declared in ops.h (forward/backward pairs
 * after llm.c's train_gpt2.c; numerics after transformers' eager float32
 * path). Parallel loops use OpenMP with static schedules and fixed reduction
 * orders, so a result depends only on the thread count, never on timing;
 * matrix products go through OpenBLAS's cblas_sgemm (the linear layers of
 * the bf16 table through gemm_bf16.h's product), each thread on its slice. */
#include "model/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "model/ops_simd.h"
#include "model/gemm_bf16.h"

/* ---------------------------------------------------------------- threads */

static int sft_threads = 0;

void sft_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    sft_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(1); /* BLAS runs inside the OpenMP threads (sft_matmul_*) */
}

/* OpenBLAS's kernels for AVX-512 cores; a core type not in this list, forced
 * on a CPU that has AVX-512, runs the products at half speed (ops.h). */
static int coretype_has_avx512(const char *name) {
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcasecmp(name, avx512_cores[i])) return 1;
    return 0;
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

void sft_thread_pool_setup(char **argv) {
    int reexec = 0;
    if (!getenv("OMP_WAIT_POLICY")) {
        if (setenv("OMP_WAIT_POLICY", "passive", 1)) return;
        reexec = 1;
    }
    const char *wanted = getenv("SFT_OPENBLAS_CORETYPE"), *forced = getenv("OPENBLAS_CORETYPE");
    if (wanted) { /* the user's explicit choice; empty: OpenBLAS's own */
        if (strcmp(forced ? forced : "", wanted)) {
            if (*wanted ? setenv("OPENBLAS_CORETYPE", wanted, 1) : unsetenv("OPENBLAS_CORETYPE")) return;
            reexec = 1;
        }
    } else if (forced && *forced && !coretype_has_avx512(forced) && cpu_has_avx512()) {
        if (unsetenv("OPENBLAS_CORETYPE")) return;
        reexec = 1;
    }
    if (!reexec) return;
    /* the binary's own path (valgrind reports the client's here, not its own) */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || n >= (ssize_t)sizeof self - 1) return;
    self[n] = 0;
    execv(self, argv); /* returns only on failure: then run as we are */
}

int sft_get_threads(void) {
    return sft_threads > 0 ? sft_threads : omp_get_max_threads();
}

/* -------------------------------------------------------------- embedding */

void sft_embedding_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *wte,
                           const float *wpe, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * C;
        const float *te = wte + (size_t)tokens[n] * C;
        if (wpe) {
            const float *pe = wpe + (size_t)pos[n] * C;
            for (int c = 0; c < C; c++)
                o[c] = te[c] + pe[c];
        } else {
            memcpy(o, te, (size_t)C * sizeof(float));
        }
    }
}

/* Serial on purpose: two tokens may share a row of wte (a scatter-add), and
 * the fixed order keeps the sums bitwise reproducible. N*C is small next to
 * the matrix products. */
void sft_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                            const int32_t *pos, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * C;
        if (dwte) {
            float *g = dwte + (size_t)tokens[n] * C;
            for (int c = 0; c < C; c++)
                g[c] += d[c];
        }
        if (dwpe) {
            float *g = dwpe + (size_t)pos[n] * C;
            for (int c = 0; c < C; c++)
                g[c] += d[c];
        }
    }
}

/* ------------------------------------------------------- column reductions */

/* acc [c0, c1) += the column sums of src (times mul) over the rows, in row
 * order; c1 - c0 <= 64. In the clones the block's 64 sums are vector lanes
 * (-70% CPU on a GPT-2 layer's bias gradients; each column's additions keep
 * their order, so the same bits). */
SFT_CLONES static void column_sums_block(float *acc, const float *src, const float *mul, int N, int C, int c0,
                                         int c1) {
    float local[64] = {0};
    const int width = c1 - c0;
    for (int n = 0; n < N; n++) {
        const float *s = src + (size_t)n * C + c0;
        if (mul) {
            const float *m = mul + (size_t)n * C + c0;
#pragma omp simd
            for (int c = 0; c < width; c++)
                local[c] += s[c] * m[c];
        } else {
#pragma omp simd
            for (int c = 0; c < width; c++)
                local[c] += s[c];
        }
    }
    for (int c = 0; c < width; c++)
        acc[c0 + c] += local[c];
}

/* acc [C] += sum over rows of src [N, C] (times `mul` [N, C] when not NULL):
 * parallel over column blocks, each summing its rows in order. */
static void column_sums(float *acc, const float *src, const float *mul, int N, int C) {
    const int nblocks = (C + 63) / 64;
#pragma omp parallel for schedule(static)
    for (int bi = 0; bi < nblocks; bi++) {
        int c0 = bi * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
        column_sums_block(acc, src, mul, N, C, c0, c1);
    }
}

/* -------------------------------------------------------------- layernorm */

/* The norms work row by row (forward, input gradient) or over blocks of 64
 * columns (weight gradients): each row's or block's sums are vectorised
 * (double accumulators for the statistics) in the clones, and each row or
 * block is computed by one thread, the same way on any thread count. */
SFT_CLONES static void layernorm_forward_row(float *o, float *mean, float *rstd, const float *x,
                                             const float *weight, const float *bias, int C, float eps) {
    double m = 0.0;
#pragma omp simd reduction(+ : m)
    for (int c = 0; c < C; c++)
        m += x[c];
    m /= C;
    double v = 0.0;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) {
        double d = x[c] - m;
        v += d * d;
    }
    v /= C;
    float s = (float)(1.0 / sqrt(v + eps));
    float mf = (float)m;
#pragma omp simd
    for (int c = 0; c < C; c++)
        o[c] = (x[c] - mf) * s * weight[c] + bias[c];
    *mean = mf;
    *rstd = s;
}

void sft_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                           const float *bias, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        layernorm_forward_row(out + (size_t)n * C, &mean[n], &rstd[n], inp + (size_t)n * C, weight, bias, C,
                              eps);
}

SFT_CLONES static void layernorm_backward_row(float *dx, const float *d, const float *x, const float *weight,
                                              float m, float s, int C) {
    double dnorm_mean = 0.0, dnorm_norm_mean = 0.0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
    for (int c = 0; c < C; c++) {
        float norm = (x[c] - m) * s;
        float dnorm = weight[c] * d[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += (double)dnorm * norm;
    }
    float a = (float)(dnorm_mean / C), b = (float)(dnorm_norm_mean / C);
#pragma omp simd
    for (int c = 0; c < C; c++) {
        float norm = (x[c] - m) * s;
        dx[c] += (weight[c] * d[c] - a - norm * b) * s;
    }
}

/* dweight [c0, c1) += sum over rows of norm * dout, dbias += sum of dout
 * (either may be NULL); c1 - c0 <= 64. */
SFT_CLONES static void layernorm_backward_columns(float *dweight, float *dbias, const float *dout,
                                                  const float *inp, const float *mean, const float *rstd,
                                                  int N, int C, int c0, int c1) {
    float dw[64] = {0}, db[64] = {0};
    const int width = c1 - c0;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C + c0, *d = dout + (size_t)n * C + c0;
        const float m = mean[n], s = rstd[n];
#pragma omp simd
        for (int c = 0; c < width; c++) {
            dw[c] += (x[c] - m) * s * d[c];
            db[c] += d[c];
        }
    }
    for (int c = 0; c < width; c++) {
        if (dweight) dweight[c0 + c] += dw[c];
        if (dbias) dbias[c0 + c] += db[c];
    }
}

void sft_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int N, int C) {
    const int nblocks = (C + 63) / 64;
    /* one parallel region for both independent loops: one wake-up of the threads, not two */
#pragma omp parallel
    {
        if (dinp) {
#pragma omp for schedule(static) nowait
            for (int n = 0; n < N; n++)
                layernorm_backward_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C,
                                       weight, mean[n], rstd[n], C);
        }
        if (dweight || dbias) {
#pragma omp for schedule(static)
            for (int bi = 0; bi < nblocks; bi++) {
                int c0 = bi * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
                layernorm_backward_columns(dweight, dbias, dout, inp, mean, rstd, N, C, c0, c1);
            }
        }
    }
}

/* ---------------------------------------------------------------- rmsnorm */

SFT_CLONES static void rmsnorm_forward_row(float *o, float *rstd, const float *x, const float *weight, int C,
                                           float eps) {
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++)
        ss += (double)x[c] * x[c];
    float s = (float)(1.0 / sqrt(ss / C + eps));
#pragma omp simd
    for (int c = 0; c < C; c++)
        o[c] = weight[c] * (x[c] * s);
    *rstd = s;
}

void sft_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                         float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rmsnorm_forward_row(out + (size_t)n * C, &rstd[n], inp + (size_t)n * C, weight, C, eps);
}

SFT_CLONES static void rmsnorm_backward_row(float *dx, const float *d, const float *x, const float *weight,
                                            float s, int C) {
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < C; c++)
        dot += (double)weight[c] * d[c] * x[c] * s;
    float b = (float)(dot / C);
#pragma omp simd
    for (int c = 0; c < C; c++)
        dx[c] += s * (weight[c] * d[c] - x[c] * s * b);
}

SFT_CLONES static void rmsnorm_backward_columns(float *dweight, const float *dout, const float *inp,
                                                const float *rstd, int N, int C, int c0, int c1) {
    float dw[64] = {0};
    const int width = c1 - c0;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C + c0, *d = dout + (size_t)n * C + c0;
        const float s = rstd[n];
#pragma omp simd
        for (int c = 0; c < width; c++)
            dw[c] += x[c] * s * d[c];
    }
    for (int c = 0; c < width; c++)
        dweight[c0 + c] += dw[c];
}

void sft_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C) {
    const int nblocks = (C + 63) / 64;
#pragma omp parallel
    {
        if (dinp) {
#pragma omp for schedule(static) nowait
            for (int n = 0; n < N; n++)
                rmsnorm_backward_row(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C, weight,
                                     rstd[n], C);
        }
        if (dweight) {
#pragma omp for schedule(static)
            for (int bi = 0; bi < nblocks; bi++) {
                int c0 = bi * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
                rmsnorm_backward_columns(dweight, dout, inp, rstd, N, C, c0, c1);
            }
        }
    }
}

/* ----------------------------------------------------------------- matmul */

/* One thread pool: OpenBLAS is kept at one thread and every product is split
 * across the OpenMP threads (rows of the output, or its columns when it has
 * more columns than rows: split_product), each thread calling a
 * single-threaded product on its slice.
 * So BLAS threads never spin against OpenMP threads on the shared cores, and
 * each output element is computed by exactly one thread (no cross-thread
 * reductions: results depend on the thread count only). */
static void blas_single_threaded(void) {
    static int done = 0;
    if (!done) {
        openblas_set_num_threads(1);
        done = 1;
    }
}

/* A single-threaded product with cblas_sgemm's row-major arguments,
 * C = alpha op(A) op(B) + beta C: OpenBLAS's sgemm for the float32 kernels,
 * gemm_bf16.h's bf16-operand product for the bf16 ones. The linear layers
 * below take it as a parameter, so that both precisions share one
 * implementation of the slicing. */
typedef void (*gemm_fn)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc);

static void gemm_f32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

/* [lo, hi) of n split in `parts` near-equal slices. */
static void slice(int n, int part, int parts, int *lo, int *hi) {
    *lo = (int)((long)n * part / parts);
    *hi = (int)((long)n * (part + 1) / parts);
}

/* One thread's part of a product's output C [M, N]: rows [row_lo, row_hi),
 * columns [col_lo, col_hi). */
typedef struct product_part {
    int row_lo, row_hi, col_lo, col_hi;
} product_part;

/* Column slices start at multiples of 16 floats (64 bytes): two threads
 * never write the same cache line of C, and the bf16 kernel's 32-column
 * tiles stay whole where the split allows. */
#define SPLIT_COLUMN_GRANULE 16

/* How C [M, N] is split over nt threads. A thread packs its slice of the
 * operand it splits and the whole of the other one: splitting the rows of C,
 * all of op(B) (K x N); splitting the columns, all of op(A) (M x K). So the
 * larger of M and N is split, which packs the least: with 2 threads, on a
 * GPT-2-124M step's products (bench/bench_split.c, bench/SPEED.md) the bf16
 * products where N > M run 5-7% faster (CPU time) split by columns and the
 * weight gradients with M > N 4-10% faster split by rows; the loss head's
 * 256-row chunks (256 x 50257 x 768 and its input gradient) 8-16% faster by
 * columns in both dtypes; sgemm's layer products gain 2-5% on the weight
 * gradients and are even (within +-2-4%) on the others. Either way one thread computes each element of C, in the same k
 * order: the bf16 kernel's results are the same bits for any split and
 * thread count (its k blocks depend on K alone; test_ops checks it), and
 * sgemm's are the same for a given thread count. */
static product_part split_product(int M, int N, int t, int nt) {
    product_part part = {0, M, 0, N};
    if (N > M) {
        int granules = (N + SPLIT_COLUMN_GRANULE - 1) / SPLIT_COLUMN_GRANULE;
        slice(granules, t, nt, &part.col_lo, &part.col_hi);
        part.col_lo = part.col_lo * SPLIT_COLUMN_GRANULE < N ? part.col_lo * SPLIT_COLUMN_GRANULE : N;
        part.col_hi = part.col_hi * SPLIT_COLUMN_GRANULE < N ? part.col_hi * SPLIT_COLUMN_GRANULE : N;
    } else
        slice(M, t, nt, &part.row_lo, &part.row_hi);
    return part;
}

/* Called by every thread of a parallel region: this thread's part of
 * C = op(A) op(B) + beta C (cblas_sgemm's row-major arguments, alpha 1), run
 * by the single-threaded `gemm`. Returns the part, empty when the thread
 * has none. */
static product_part gemm_thread_part(gemm_fn gemm, int trans_a, int trans_b, int M, int N, int K,
                                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                                     int ldc) {
    product_part part = split_product(M, N, omp_get_thread_num(), omp_get_num_threads());
    int rows = part.row_hi - part.row_lo, cols = part.col_hi - part.col_lo;
    if (rows > 0 && cols > 0) {
        const float *a_rows = trans_a ? A + part.row_lo : A + (size_t)part.row_lo * lda; /* op(A)'s rows */
        const float *b_cols = trans_b ? B + (size_t)part.col_lo * ldb : B + part.col_lo; /* op(B)'s columns */
        gemm(trans_a, trans_b, rows, cols, K, 1.0f, a_rows, lda, b_cols, ldb, beta,
             C + (size_t)part.row_lo * ldc + part.col_lo, ldc);
    }
    return part;
}

/* out [N, OC] = beta * out + inp [N, C] @ W^T (+ bias): sft_matmul_forward
 * (beta 0) and sft_matmul_forward_add (beta 1, no bias). */
static void matmul_forward_with(gemm_fn gemm, float *out, const float *inp, const float *weight,
                                const float *bias, int N, int C, int OC, int w_in_out, float beta) {
    blas_single_threaded();
#pragma omp parallel
    {
        product_part part = w_in_out /* W [C, OC] */
                                ? gemm_thread_part(gemm, 0, 0, N, OC, C, inp, C, weight, OC, beta, out, OC)
                                /* W [OC, C] */
                                : gemm_thread_part(gemm, 0, 1, N, OC, C, inp, C, weight, C, beta, out, OC);
        if (bias)
            for (int n = part.row_lo; n < part.row_hi; n++)
                for (int c = part.col_lo; c < part.col_hi; c++)
                    out[(size_t)n * OC + c] += bias[c];
    }
}

static void matmul_backward_with(gemm_fn gemm, float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, int N, int C, int OC, int w_in_out) {
    blas_single_threaded();
#pragma omp parallel
    {
        /* two products with separate outputs: no barrier between them */
        if (dinp) {
            if (w_in_out) /* W [C, OC]: dinp [N, C] += dout @ W^T */
                gemm_thread_part(gemm, 0, 1, N, C, OC, dout, OC, weight, OC, 1.0f, dinp, C);
            else /* W [OC, C]: dinp += dout @ W */
                gemm_thread_part(gemm, 0, 0, N, C, OC, dout, OC, weight, C, 1.0f, dinp, C);
        }
        if (dweight) {
            if (w_in_out) /* dW [C, OC] += inp^T @ dout */
                gemm_thread_part(gemm, 1, 0, C, OC, N, inp, C, dout, OC, 1.0f, dweight, OC);
            else /* dW [OC, C] += dout^T @ inp */
                gemm_thread_part(gemm, 1, 0, OC, C, N, dout, OC, inp, C, 1.0f, dweight, C);
        }
    }
    if (dbias) column_sums(dbias, dout, NULL, N, OC);
}

void sft_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                        int OC, int w_in_out) {
    matmul_forward_with(gemm_f32, out, inp, weight, bias, N, C, OC, w_in_out, 0.0f);
}

void sft_matmul_forward_add(float *out, const float *inp, const float *weight, int N, int C, int OC) {
    matmul_forward_with(gemm_f32, out, inp, weight, NULL, N, C, OC, 0, 1.0f);
}

void sft_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int N, int C, int OC, int w_in_out) {
    matmul_backward_with(gemm_f32, dinp, dweight, dbias, dout, inp, weight, N, C, OC, w_in_out);
}

void sft_matmul_forward_bf16(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                             int OC, int w_in_out) {
    matmul_forward_with(sft_gemm_bf16, out, inp, weight, bias, N, C, OC, w_in_out, 0.0f);
}

void sft_matmul_forward_add_bf16(float *out, const float *inp, const float *weight, int N, int C, int OC) {
    matmul_forward_with(sft_gemm_bf16, out, inp, weight, NULL, N, C, OC, 0, 1.0f);
}

void sft_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC, int w_in_out) {
    matmul_backward_with(sft_gemm_bf16, dinp, dweight, dbias, dout, inp, weight, N, C, OC, w_in_out);
}

/* ------------------------------------------------------------ activations */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

/* GELU, tanh form: 0.5 x (1 + tanh(a)) with a = sqrt(2/pi) (x + 0.044715 x^3).
 * 0.5 (1 + tanh(a)) is the logistic sigmoid of 2a, computed as 1 / (1 + e^-2a):
 * no cancellation for large negative x, where 1 + tanh(a) would lose every
 * digit. The derivative of tanh is then 1 - t^2 = 4 s (1 - s). */
SFT_CLONES static void gelu_forward_range(float *out, const float *inp, size_t lo, size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i];
        float a = GELU_SCALE * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + fast_expf(-2.0f * a));
    }
}

void sft_gelu_forward(float *out, const float *inp, size_t n) {
    SFT_ELEMENTWISE(gelu_forward_range, n, out, inp);
}

SFT_CLONES static void gelu_backward_range(float *dinp, const float *inp, const float *dout, size_t lo,
                                           size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float x = inp[i];
        float a = GELU_SCALE * (x + 0.044715f * x * x * x);
        float s = 1.0f / (1.0f + fast_expf(-2.0f * a));
        float grad = s + 2.0f * x * s * (1.0f - s) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += grad * dout[i];
    }
}

void sft_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    SFT_ELEMENTWISE(gelu_backward_range, n, dinp, inp, dout);
}

SFT_CLONES static void swiglu_forward_range(float *out, const float *gate, const float *up, size_t lo,
                                            size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + fast_expf(-g)) * up[i];
    }
}

void sft_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    SFT_ELEMENTWISE(swiglu_forward_range, n, out, gate, up);
}

SFT_CLONES static void swiglu_backward_range(float *dgate, float *dup, const float *dout, const float *gate,
                                             const float *up, size_t lo, size_t hi) {
    if (dup) {
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            float g = gate[i];
            dup[i] += g / (1.0f + fast_expf(-g)) * dout[i];
        }
    }
    if (dgate) {
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            float g = gate[i];
            float sig = 1.0f / (1.0f + fast_expf(-g));
            dgate[i] += up[i] * dout[i] * sig * (1.0f + g * (1.0f - sig));
        }
    }
}

void sft_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         size_t n) {
    SFT_ELEMENTWISE(swiglu_backward_range, n, dgate, dup, dout, gate, up);
}

/* ------------------------------------------------------------------- rope */

/* Float32 throughout, as transformers computes it: exponent 2i/d in float,
 * base ** exponent in float, and the llama3 blend in float. */
void sft_rope_inv_freq(float *inv_freq, const sft_rope_params *rp) {
    int half = rp->head_dim / 2;
    float base = (float)rp->theta;
    for (int i = 0; i < half; i++) {
        float exponent = (float)(2 * i) / (float)rp->head_dim;
        inv_freq[i] = 1.0f / powf(base, exponent);
    }
    if (!rp->llama3) return;
    /* modeling_rope_utils._compute_llama3_parameters: long wavelengths are
     * divided by `factor`, short ones kept, the band between blended. */
    float factor = (float)rp->factor;
    float low = (float)rp->low_freq_factor, high = (float)rp->high_freq_factor;
    float old_context = (float)rp->original_max_position;
    float low_freq_wavelen = (float)(rp->original_max_position / rp->low_freq_factor);
    float high_freq_wavelen = (float)(rp->original_max_position / rp->high_freq_factor);
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wavelen = (float)(2.0 * M_PI) / f;
        float scaled = wavelen > low_freq_wavelen ? f / factor : f;
        float smooth = (old_context / wavelen - low) / (high - low);
        float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
        int medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        inv_freq[i] = medium ? smoothed : scaled;
    }
}

void sft_rope_tables(float *cos_t, float *sin_t, const float *inv_freq, const int32_t *pos, int N, int HD) {
    int half = HD / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float p = (float)pos[n];
        for (int i = 0; i < half; i++) {
            float angle = inv_freq[i] * p; /* one float32 product, as torch's matmul of [d/2,1] @ [1,T] */
            cos_t[(size_t)n * half + i] = (float)cos((double)angle);
            sin_t[(size_t)n * half + i] = (float)sin((double)angle);
        }
    }
}

void sft_rope_forward(float *x, const float *cos_t, const float *sin_t, int N, int H, int HD, int stride) {
    int half = HD / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *cs = cos_t + (size_t)n * half, *sn = sin_t + (size_t)n * half;
        for (int h = 0; h < H; h++) {
            float *v = x + (size_t)n * stride + (size_t)h * HD;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

void sft_rope_backward(float *dx, const float *cos_t, const float *sin_t, int N, int H, int HD, int stride) {
    int half = HD / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *cs = cos_t + (size_t)n * half, *sn = sin_t + (size_t)n * half;
        for (int h = 0; h < H; h++) {
            float *v = dx + (size_t)n * stride + (size_t)h * HD;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] + b * sn[i];
                v[i + half] = b * cs[i] - a * sn[i];
            }
        }
    }
}

/* ---------------------------------------------------------------- dropout */

int sft_dropout_keep(uint64_t seed, uint64_t i, float p) {
    uint64_t z = seed ^ (i * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64 finaliser */
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) >= p;
}

void sft_dropout_forward(float *x, size_t n, float p, uint64_t seed) {
    const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] = sft_dropout_keep(seed, i, p) ? x[i] * keep_scale : 0.0f;
}

/* d(x * m)/dx = m: the same mask, regenerated from (seed, i). */
void sft_dropout_backward(float *dx, size_t n, float p, uint64_t seed) {
    sft_dropout_forward(dx, n, p, seed);
}

/* -------------------------------------------------------------- attention */

/* Attention in blocks of query rows, through products. For a block of query
 * rows [i0, i1) of one (batch row, head), the scores S = scale Q K^T against
 * the keys [0, i1) are one sgemm (the causal upper triangle beyond the block
 * is never computed; inside the diagonal block it is masked), the softmax
 * runs on the block's rows, and out = P V is a second sgemm. The backward
 * recomputes S and P from the per-row (max, 1/sum) stats the forward kept and
 * makes dP = dO V^T, dV += P^T dO, dQ += dS K, dK += dS^T Q as four more
 * products. Every (batch row, head) is computed the same way whichever thread
 * runs it, so the result does not depend on the thread count. The block's
 * scores live on the thread's stack: rows_per_block * T floats (two such for
 * the backward), at most 256 KiB up to T = 4096. */
static int attention_block_rows(int T) {
    int rows = 32768 / T;
    return rows > 64 ? 64 : rows < 8 ? 8 : rows;
}

/* Whether query i of a row may see key j (j <= i is the caller's). */
static inline int attention_visible(const int32_t *seq_row, int i, int j, int window) {
    return seq_row[j] == seq_row[i] && (window <= 0 || i - j < window);
}

/* S [rows, keys] = scale * Q[i0 .. i0+rows) K[0 .. keys)^T */
static void attention_scores(gemm_fn gemm, float *S, const float *q_block, int q_stride, const float *k_row,
                             int k_stride, int rows, int keys, int HD, float scale) {
    gemm(0, 1, rows, keys, HD, scale, q_block, q_stride, k_row, k_stride, 0.0f, S, keys);
}

/* Forward softmax of one score row in place: masked keys (and keys > i) get 0. */
SFT_CLONES static void attention_softmax_row(float *s, const int32_t *seq_row, int i, int keys, int window,
                                             float *row_max, float *row_inv_sum) {
    float maxv = -INFINITY;
    for (int j = 0; j < keys; j++) {
        if (j > i || !attention_visible(seq_row, i, j, window))
            s[j] = -INFINITY;
        else if (s[j] > maxv)
            maxv = s[j];
    }
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < keys; j++) {
        float e = s[j] == -INFINITY ? 0.0f : fast_expf(s[j] - maxv);
        s[j] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int j = 0; j < keys; j++)
        s[j] *= inv;
    *row_max = maxv;
    *row_inv_sum = inv;
}

/* The same row again from the stats (backward): the same bits as the forward. */
SFT_CLONES static void attention_probs_row(float *s, const int32_t *seq_row, int i, int keys, int window,
                                           float row_max, float row_inv_sum) {
    for (int j = 0; j < keys; j++)
        if (j > i || !attention_visible(seq_row, i, j, window)) s[j] = -INFINITY;
#pragma omp simd
    for (int j = 0; j < keys; j++)
        s[j] = s[j] == -INFINITY ? 0.0f : fast_expf(s[j] - row_max);
#pragma omp simd
    for (int j = 0; j < keys; j++)
        s[j] *= row_inv_sum;
}

static void attention_forward_head(gemm_fn gemm, float *out, float *stats, const float *q, int q_stride, const float *k,
                                   int k_stride, const float *v, int v_stride, const int32_t *seq, int b, int h,
                                   int T, int NH, int group, int HD, int window, float dropout, uint64_t seed) {
    const float scale = 1.0f / sqrtf((float)HD);
    const float keep_scale = dropout > 0 ? 1.0f / (1.0f - dropout) : 1.0f;
    const int kvh = h / group, block = attention_block_rows(T);
    const int32_t *seq_row = seq + (size_t)b * T;
    const float *k_row = k + (size_t)b * T * k_stride + (size_t)kvh * HD;
    const float *v_row = v + (size_t)b * T * v_stride + (size_t)kvh * HD;
    float S[block * T];
    for (int i0 = 0; i0 < T; i0 += block) {
        int rows = T - i0 < block ? T - i0 : block, keys = i0 + rows;
        attention_scores(gemm, S, q + ((size_t)b * T + i0) * q_stride + (size_t)h * HD, q_stride, k_row,
                         k_stride, rows, keys, HD, scale);
        for (int r = 0; r < rows; r++) {
            int i = i0 + r;
            size_t stat = ((size_t)b * NH + h) * T + i;
            float *s = S + (size_t)r * keys;
            attention_softmax_row(s, seq_row, i, keys, window, &stats[2 * stat], &stats[2 * stat + 1]);
            /* attention dropout acts on the probabilities that multiply V */
            if (dropout > 0)
                for (int j = 0; j <= i; j++)
                    s[j] = sft_dropout_keep(seed, stat * T + j, dropout) ? s[j] * keep_scale : 0.0f;
        }
        gemm(0, 0, rows, HD, keys, 1.0f, S, keys, v_row, v_stride, 0.0f,
             out + ((size_t)b * T + i0) * NH * HD + (size_t)h * HD, NH * HD);
    }
}

static void attention_forward_with(gemm_fn gemm, float *out, float *stats, const float *q, int q_stride,
                                   const float *k, int k_stride, const float *v, int v_stride, const int32_t *seq,
                                   int B, int T, int NH, int NKV, int HD, int window, float dropout, uint64_t seed) {
    const int group = NH / NKV;
    blas_single_threaded();
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            attention_forward_head(gemm, out, stats, q, q_stride, k, k_stride, v, v_stride, seq, b, h, T, NH, group,
                                   HD, window, dropout, seed);
}

void sft_attention_forward(float *out, float *stats, const float *q, int q_stride, const float *k,
                           int k_stride, const float *v, int v_stride, const int32_t *seq, int B, int T,
                           int NH, int NKV, int HD, int window, float dropout, uint64_t seed) {
    attention_forward_with(gemm_f32, out, stats, q, q_stride, k, k_stride, v, v_stride, seq, B, T, NH, NKV, HD,
                           window, dropout, seed);
}

void sft_attention_forward_bf16(float *out, float *stats, const float *q, int q_stride, const float *k,
                                int k_stride, const float *v, int v_stride, const int32_t *seq, int B, int T,
                                int NH, int NKV, int HD, int window, float dropout, uint64_t seed) {
    attention_forward_with(sft_gemm_bf16, out, stats, q, q_stride, k, k_stride, v, v_stride, seq, B, T, NH, NKV,
                           HD, window, dropout, seed);
}

/* dS = P (dP - sum_j P dP) * scale for one row, into dp; p becomes the
 * dropped probabilities that multiplied V (p itself without dropout). */
SFT_CLONES static void attention_dscores_row(float *p, float *dp, int i, int keys, float scale, float dropout,
                                             float keep_scale, uint64_t seed, size_t stat, int T) {
    if (dropout > 0)
        for (int j = 0; j <= i; j++)
            dp[j] = sft_dropout_keep(seed, stat * T + j, dropout) ? dp[j] * keep_scale : 0.0f;
    double weighted = 0.0;
#pragma omp simd reduction(+ : weighted)
    for (int j = 0; j < keys; j++)
        weighted += (double)p[j] * dp[j];
    float wsum = (float)weighted;
#pragma omp simd
    for (int j = 0; j < keys; j++)
        dp[j] = p[j] * (dp[j] - wsum) * scale;
    if (dropout > 0)
        for (int j = 0; j <= i; j++)
            p[j] = sft_dropout_keep(seed, stat * T + j, dropout) ? p[j] * keep_scale : 0.0f;
}

/* The query heads that share a KV head accumulate into the same dk/dv rows,
 * so one call does them all, in order. */
static void attention_backward_group(gemm_fn gemm, float *dq, float *dk, float *dv, const float *dout, const float *stats,
                                     const float *q, int q_stride, const float *k, int k_stride, const float *v,
                                     int v_stride, const int32_t *seq, int b, int kvh, int T, int NH, int group,
                                     int HD, int window, float dropout, uint64_t seed) {
    const float scale = 1.0f / sqrtf((float)HD);
    const float keep_scale = dropout > 0 ? 1.0f / (1.0f - dropout) : 1.0f;
    const int block = attention_block_rows(T);
    const int32_t *seq_row = seq + (size_t)b * T;
    const float *k_row = k + (size_t)b * T * k_stride + (size_t)kvh * HD;
    const float *v_row = v + (size_t)b * T * v_stride + (size_t)kvh * HD;
    float *dk_row = dk + (size_t)b * T * k_stride + (size_t)kvh * HD;
    float *dv_row = dv + (size_t)b * T * v_stride + (size_t)kvh * HD;
    float P[block * T], dS[block * T];
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int i0 = 0; i0 < T; i0 += block) {
            int rows = T - i0 < block ? T - i0 : block, keys = i0 + rows;
            size_t t0 = (size_t)b * T + i0;
            const float *q_block = q + t0 * q_stride + (size_t)h * HD;
            const float *do_block = dout + t0 * NH * HD + (size_t)h * HD;
            attention_scores(gemm, P, q_block, q_stride, k_row, k_stride, rows, keys, HD, scale);
            /* dP = dO V^T */
            gemm(0, 1, rows, keys, HD, 1.0f, do_block, NH * HD, v_row, v_stride, 0.0f, dS, keys);
            for (int r = 0; r < rows; r++) {
                int i = i0 + r;
                size_t stat = ((size_t)b * NH + h) * T + i;
                attention_probs_row(P + (size_t)r * keys, seq_row, i, keys, window, stats[2 * stat],
                                    stats[2 * stat + 1]);
                attention_dscores_row(P + (size_t)r * keys, dS + (size_t)r * keys, i, keys, scale, dropout,
                                      keep_scale, seed, stat, T);
            }
            /* dV[0, keys) += P^T dO; dQ[block] += dS K; dK[0, keys) += dS^T Q */
            gemm(1, 0, keys, HD, rows, 1.0f, P, keys, do_block, NH * HD, 1.0f, dv_row, v_stride);
            gemm(0, 0, rows, HD, keys, 1.0f, dS, keys, k_row, k_stride, 1.0f, dq + t0 * q_stride + (size_t)h * HD,
                 q_stride);
            gemm(1, 0, keys, HD, rows, 1.0f, dS, keys, q_block, q_stride, 1.0f, dk_row, k_stride);
        }
    }
}

static void attention_backward_with(gemm_fn gemm, float *dq, float *dk, float *dv, const float *dout,
                                    const float *stats, const float *q, int q_stride, const float *k, int k_stride,
                                    const float *v, int v_stride, const int32_t *seq, int B, int T, int NH, int NKV,
                                    int HD, int window, float dropout, uint64_t seed) {
    const int group = NH / NKV;
    blas_single_threaded();
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < NKV; kvh++)
            attention_backward_group(gemm, dq, dk, dv, dout, stats, q, q_stride, k, k_stride, v, v_stride, seq, b,
                                     kvh, T, NH, group, HD, window, dropout, seed);
}

void sft_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *stats,
                            const float *q, int q_stride, const float *k, int k_stride, const float *v,
                            int v_stride, const int32_t *seq, int B, int T, int NH, int NKV, int HD,
                            int window, float dropout, uint64_t seed) {
    attention_backward_with(gemm_f32, dq, dk, dv, dout, stats, q, q_stride, k, k_stride, v, v_stride, seq, B, T, NH,
                            NKV, HD, window, dropout, seed);
}

void sft_attention_backward_bf16(float *dq, float *dk, float *dv, const float *dout, const float *stats,
                                 const float *q, int q_stride, const float *k, int k_stride, const float *v,
                                 int v_stride, const int32_t *seq, int B, int T, int NH, int NKV, int HD,
                                 int window, float dropout, uint64_t seed) {
    attention_backward_with(sft_gemm_bf16, dq, dk, dv, dout, stats, q, q_stride, k, k_stride, v, v_stride, seq, B,
                            T, NH, NKV, HD, window, dropout, seed);
}

const sft_kernels sft_kernels_cpu = {
    .embedding_forward = sft_embedding_forward,
    .embedding_backward = sft_embedding_backward,
    .layernorm_forward = sft_layernorm_forward,
    .layernorm_backward = sft_layernorm_backward,
    .rmsnorm_forward = sft_rmsnorm_forward,
    .rmsnorm_backward = sft_rmsnorm_backward,
    .matmul_forward = sft_matmul_forward,
    .matmul_forward_add = sft_matmul_forward_add,
    .matmul_backward = sft_matmul_backward,
    .gelu_forward = sft_gelu_forward,
    .gelu_backward = sft_gelu_backward,
    .swiglu_forward = sft_swiglu_forward,
    .swiglu_backward = sft_swiglu_backward,
    .rope_forward = sft_rope_forward,
    .rope_backward = sft_rope_backward,
    .dropout_forward = sft_dropout_forward,
    .dropout_backward = sft_dropout_backward,
    .attention_forward = sft_attention_forward,
    .attention_backward = sft_attention_backward,
    .cross_entropy_forward = sft_cross_entropy_forward,
    .cross_entropy_backward = sft_cross_entropy_backward,
    .cross_entropy_forward_backward = sft_cross_entropy_forward_backward,
};
