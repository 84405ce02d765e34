/* test_gemm_bf16.c: the bf16-operand matrix product (src/model/gemm_bf16.h)
 * against a float64 reference written here: the exact product of the
 * operands rounded the way the header specifies (io/safetensors.h's
 * sft_f32_to_bf16, float32 subnormals as zero), then alpha and beta.
 *
 * Tolerance: both paths add K float32 products in some order; each product of
 * two bf16 values (8-bit significands) is exact in float32, and each of the K
 * additions, plus the alpha and beta steps, rounds with relative error at most
 * 2^-24. The classic bound for a float32 sum of K terms is then
 *   |computed - exact| <= (K + 2) * 2^-24 * (|alpha| * sum_k |a_k b_k| + |beta c|)
 * (first order), which the test doubles (2^-23) to stay clear of second-order
 * terms, plus K * 2^-126 for the subnormal products and sums the instruction
 * flushes to zero. A wrong index, transpose or missing rounding is off by
 * ~2^-9 relative, hundreds of times this bound.
 *
 * Each case runs the portable path (sft_gemm_bf16_portable) and sft_gemm_bf16
 * (the AVX512_BF16 kernel when sft_bf16_supported(), else portable again), and
 * checks the two against each other within the same bound. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/gemm_bf16.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* The specified operand rounding, written from the header's words. */
static double rounded(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7F800000u) == 0) return 0.0; /* float32 subnormal (or zero): zero */
    return (double)sft_bf16_to_f32(sft_f32_to_bf16(x));
}

static float *random_matrix(size_t count) {
    float *m = malloc(count * sizeof *m);
    for (size_t i = 0; i < count; i++)
        m[i] = (float)urand();
    return m;
}

typedef void gemm_fn(int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                     int);

/* The float64 reference of one product: expected[i * N + j] and the bound of
 * the file's header comment, bound[i * N + j]. */
static void reference(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, const float *C0, int ldc, double *expected,
                      double *bound) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double exact = 0.0, magnitude = 0.0;
            for (int k = 0; k < K; k++) {
                double a = rounded(trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                double b = rounded(trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                exact += a * b;
                magnitude += fabs(a * b);
            }
            double c0 = C0[(size_t)i * ldc + j];
            expected[(size_t)i * N + j] = alpha * exact + (beta == 0.0f ? 0.0 : beta * c0);
            bound[(size_t)i * N + j] =
                (K + 2) * 0x1p-23 * (fabs(alpha) * magnitude + (beta == 0.0f ? 0.0 : fabs(beta * c0))) +
                (K + 2) * 0x1p-126;
        }
}

/* Runs one product with `fn` on a copy of C0 into `out` and counts (as test
 * failures too) the elements farther than bound from expected. */
static int check_path(const char *path, gemm_fn *fn, int trans_a, int trans_b, int M, int N, int K,
                      float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                      const float *C0, int ldc, const double *expected, const double *bound, float *out) {
    memcpy(out, C0, (size_t)M * ldc * sizeof *out);
    fn(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, out, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double got = out[(size_t)i * ldc + j], want = expected[(size_t)i * N + j];
            if (!(fabs(got - want) <= bound[(size_t)i * N + j])) {
                if (bad < 3)
                    fprintf(stderr,
                            "  %s ta=%d tb=%d M=%d N=%d K=%d: C[%d,%d] = %.9g, expected %.9g (bound %g)\n",
                            path, trans_a, trans_b, M, N, K, i, j, got, want, bound[(size_t)i * N + j]);
                bad++;
            }
        }
    /* Elements past N in each row (ldc > N) are not part of C: untouched. */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++)
            CHECK(memcmp(&out[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], 4) == 0);
    sft_test_failures += bad;
    return bad;
}

/* One shape through both paths, with leading dimensions `pad` beyond the
 * minimum; also checks fast == portable within twice the bound (each is
 * within the bound of the exact value). */
static void check_shape(int trans_a, int trans_b, int M, int N, int K, float alpha, float beta, int pad) {
    int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    int lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
    float *A = random_matrix((size_t)a_rows * lda), *B = random_matrix((size_t)b_rows * ldb);
    float *C0 = random_matrix((size_t)M * ldc);
    float *c_portable = malloc((size_t)M * ldc * sizeof(float)),
          *c_fast = malloc((size_t)M * ldc * sizeof(float));
    double *expected = calloc((size_t)M * N, sizeof(double)), *bound = calloc((size_t)M * N, sizeof(double));
    reference(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc, expected, bound);
    check_path("portable", sft_gemm_bf16_portable, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C0,
               ldc, expected, bound, c_portable);
    check_path("sft_gemm_bf16", sft_gemm_bf16, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C0,
               ldc, expected, bound, c_fast);
    int differ = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            size_t at = (size_t)i * ldc + j;
            if (!(fabs((double)c_fast[at] - c_portable[at]) <= 2 * bound[(size_t)i * N + j])) differ++;
        }
    if (differ)
        fprintf(stderr, "  ta=%d tb=%d M=%d N=%d K=%d: %d elements fast != portable\n", trans_a, trans_b, M,
                N, K, differ);
    CHECK_INT(differ, 0);
    free(A), free(B), free(C0), free(c_portable), free(c_fast), free(expected), free(bound);
}

TEST(every_transpose_and_edge_size) {
    static const int sizes[] = {1, 2, 15, 17, 33, 63, 65};
    int n = (int)(sizeof sizes / sizeof sizes[0]);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int m = 0; m < n; m++)
                for (int nn = 0; nn < n; nn++)
                    for (int k = 0; k < n; k++)
                        check_shape(ta, tb, sizes[m], sizes[nn], sizes[k], 1.0f, 0.0f, (m + nn + k) % 3);
}

TEST(larger_shapes_cross_cache_blocks) {
    /* 129 and beyond: more than one register tile, K block and packed panel. */
    check_shape(0, 1, 129, 129, 129, 1.0f, 0.0f, 1);
    check_shape(0, 0, 130, 97, 771, 1.0f, 0.0f, 0);
    check_shape(1, 0, 67, 200, 1025, 1.0f, 1.0f, 5);
    check_shape(1, 1, 45, 515, 300, -0.5f, 0.25f, 2);
    check_shape(0, 1, 300, 70, 64, 1.0f, 0.0f, 0);
    /* long K: the portable path narrows its column blocks (64 wide here) and
     * the kernel takes 11 K blocks, one of them beta's */
    check_shape(0, 0, 3, 70, 8200, 1.0f, 0.5f, 1);
}

TEST(alpha_and_beta) {
    check_shape(0, 0, 17, 33, 65, 0.5f, -1.5f, 3);
    check_shape(0, 1, 33, 17, 15, -2.0f, 1.0f, 0);
    check_shape(1, 0, 15, 65, 33, 1.0f, 2.0f, 1);
    check_shape(1, 1, 63, 2, 17, 3.0f, 0.5f, 2);
}

TEST(leading_dimensions_beyond_the_shape) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            check_shape(ta, tb, 33, 47, 129, 1.0f, 1.0f, 19);
}

/* beta == 0 ignores C: NaN and infinity in the old C do not reach the result. */
TEST(beta_zero_ignores_nan_in_c) {
    gemm_fn *paths[2] = {sft_gemm_bf16_portable, sft_gemm_bf16};
    for (int p = 0; p < 2; p++) {
        int M = 19, N = 37, K = 23;
        float *A = random_matrix((size_t)M * K), *B = random_matrix((size_t)K * N),
              *C = malloc((size_t)M * N * 4);
        for (int i = 0; i < M * N; i++)
            C[i] = i % 2 ? NAN : INFINITY;
        paths[p](0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        int finite = 0;
        for (int i = 0; i < M * N; i++)
            finite += isfinite(C[i]) != 0;
        CHECK_INT(finite, M * N);
        free(A), free(B), free(C);
    }
}

/* alpha == 0 or K == 0: C = beta * C without reading A or B (BLAS). */
TEST(alpha_zero_and_empty_k_scale_c) {
    gemm_fn *paths[2] = {sft_gemm_bf16_portable, sft_gemm_bf16};
    for (int p = 0; p < 2; p++) {
        float A[4] = {NAN, NAN, NAN, NAN}, B[4] = {NAN, NAN, NAN, NAN}, C[4] = {1, 2, NAN, 4};
        paths[p](0, 0, 2, 2, 2, 0.0f, A, 2, B, 2, 2.0f, C, 2);
        CHECK(C[0] == 2 && C[1] == 4 && isnan(C[2]) && C[3] == 8);
        paths[p](0, 0, 2, 2, 0, 1.0f, A, 2, B, 2, 0.0f, C, 2);
        CHECK(C[0] == 0 && C[1] == 0 && C[2] == 0 && C[3] == 0);
        paths[p](0, 0, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2); /* M == 0: nothing to do */
        CHECK(C[0] == 0);
    }
}

/* NaN and infinity in the operands propagate as in a float32 product: a NaN
 * in row i of A makes row i of C NaN; inf times a positive is inf; inf times
 * zero is NaN. */
TEST(nan_and_inf_propagate) {
    gemm_fn *paths[2] = {sft_gemm_bf16_portable, sft_gemm_bf16};
    for (int p = 0; p < 2; p++) {
        int M = 20, N = 40, K = 37;
        float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)K * N * 4), *C = malloc((size_t)M * N * 4);
        for (int i = 0; i < M * K; i++)
            A[i] = 0.5f;
        for (int i = 0; i < K * N; i++)
            B[i] = 0.25f;
        A[3 * K + 30] = NAN;       /* row 3: all NaN */
        A[5 * K + 7] = INFINITY;   /* row 5: +inf where B > 0 */
        A[7 * K + 36] = -INFINITY; /* row 7: -inf, except column 9 where B is 0: NaN */
        for (int k = 0; k < K; k++)
            B[k * N + 9] = 0.0f;
        B[36 * N + 9] = 0.0f;
        paths[p](0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        for (int j = 0; j < N; j++) {
            CHECK(isnan(C[3 * N + j]));
            if (j != 9) {
                CHECK(C[5 * N + j] == INFINITY);
                CHECK(C[7 * N + j] == -INFINITY);
            } else {
                CHECK(isnan(C[5 * N + j]));
                CHECK(isnan(C[7 * N + j]));
            }
        }
        CHECK(C[0] == (float)(K * 0.125));
        free(A), free(B), free(C);
    }
}

/* The operands are rounded to nearest even, not truncated: for K = 1 the
 * result is exactly the product of the rounded values. Subnormal operands
 * count as zero in both paths (the instruction's behaviour), even against a
 * huge factor. */
TEST(operands_round_to_nearest_even_and_subnormals_are_zero) {
    gemm_fn *paths[2] = {sft_gemm_bf16_portable, sft_gemm_bf16};
    for (int p = 0; p < 2; p++) {
        /* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even, 1.
         * 1 + 3 * 2^-8 ties to 1 + 2^-6 (even). 1 + 2^-8 + 2^-20 rounds up. */
        float A[4] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, 1e-39f};
        float B[4] = {3.0f, 3.0f, 3.0f, 1e38f};
        float C[4];
        paths[p](0, 0, 4, 1, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1);
        CHECK(C[0] == 3.0f);
        CHECK(C[1] == 3.0f * (1.0f + 0x1p-6f));
        CHECK(C[2] == 3.0f * (1.0f + 0x1p-7f));
        CHECK(C[3] == 0.0f);
    }
}

/* Each OpenMP thread uses its own packing buffers: concurrent products of
 * different shapes stay correct (the way ops.c splits a product). */
TEST(concurrent_threads_use_their_own_buffers) {
    int failures = 0;
#pragma omp parallel num_threads(4) reduction(+ : failures)
    {
        int t = omp_get_thread_num();
        int M = 40 + 13 * t, N = 50 + 7 * t, K = 60 + 31 * t;
        float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)M * N * 4);
        for (int i = 0; i < M * K; i++)
            A[i] = (float)((i * 7 + t) % 13) - 6.0f;
        for (int i = 0; i < N * K; i++)
            B[i] = (float)((i * 5 + t) % 11) - 5.0f;
        for (int rep = 0; rep < 3; rep++) {
            sft_gemm_bf16(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
            /* small integers: exact in bf16 and in the float32 sums */
            for (int i = 0; i < M; i += 7)
                for (int j = 0; j < N; j += 5) {
                    float exact = 0.0f;
                    for (int k = 0; k < K; k++)
                        exact += A[(size_t)i * K + k] * B[(size_t)j * K + k];
                    failures += C[(size_t)i * N + j] != exact;
                }
        }
        free(A), free(B), free(C);
    }
    CHECK_INT(failures, 0);
}

TEST(reports_whether_the_fast_kernel_runs) {
    int supported = sft_bf16_supported();
    CHECK(supported == 0 || supported == 1);
    fprintf(stderr, "  (bf16 kernel: %s)\n", supported ? "AVX512_BF16" : "portable only");
}
