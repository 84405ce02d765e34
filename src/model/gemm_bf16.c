/* gemm_bf16.c: C = alpha * op(A) op(B) + beta * C with bfloat16-rounded
 * operands and float32 accumulation (the contract is in gemm_bf16.h).
 *
 * Portable path: op(B) is rounded into a float32 block of PORTABLE_NB columns
 * ([K][PORTABLE_NB], row-major), each row of op(A) is rounded once per block,
 * and the row's dot products accumulate along K into a float32 row buffer,
 * so the innermost loop runs over contiguous columns and vectorises. */
#include "model/gemm_bf16.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

/* The operand rounding both paths share: sft_f32_to_bf16 (round to nearest
 * even, NaN kept quiet), with float32 subnormals taken as signed zero the way
 * vcvtne2ps2bf16 and vdpbf16ps take them. Returned widened back to float. */
static float round_operand(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7F800000u) == 0) bits &= 0x80000000u;
    else bits = (uint32_t)sft_f32_to_bf16(x) << 16;
    float rounded;
    memcpy(&rounded, &bits, sizeof rounded);
    return rounded;
}

/* op(A)[i, k] and op(B)[k, j] of the row-major operands. */
static inline float op_a(const float *A, int lda, int trans_a, int i, int k) {
    return trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}
static inline float op_b(const float *B, int ldb, int trans_b, int k, int j) {
    return trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

/* ---- per-thread workspace ----
 * One growable buffer per calling thread, found through a pthread key whose
 * destructor frees it when the thread ends: allocated on a thread's first
 * call, grown only for a larger shape, never freed per call. */
typedef struct workspace {
    void *memory;
    size_t capacity_bytes;
} workspace;

static pthread_key_t workspace_key;
static pthread_once_t workspace_key_once = PTHREAD_ONCE_INIT;

static void workspace_free(void *ptr) {
    workspace *ws = ptr;
    free(ws->memory);
    free(ws);
}

static void workspace_key_create(void) {
    pthread_key_create(&workspace_key, workspace_free);
}

/* At least `bytes` of 64-byte aligned scratch for this thread; NULL when
 * memory runs out (the callers then compute without a workspace). */
static void *workspace_get(size_t bytes) {
    pthread_once(&workspace_key_once, workspace_key_create);
    workspace *ws = pthread_getspecific(workspace_key);
    if (!ws) {
        ws = calloc(1, sizeof *ws);
        if (!ws) return NULL;
        if (pthread_setspecific(workspace_key, ws)) {
            free(ws);
            return NULL;
        }
    }
    if (ws->capacity_bytes < bytes) {
        size_t grown = bytes + bytes / 4;
        grown = (grown + 63) & ~(size_t)63;
        void *memory = aligned_alloc(64, grown);
        if (!memory) return NULL;
        free(ws->memory);
        ws->memory = memory;
        ws->capacity_bytes = grown;
    }
    return ws->memory;
}

/* ---- shared edge cases ---- */

/* C = beta * C (beta == 0 writes zeros whatever C held): the whole product
 * when K == 0 or alpha == 0, as BLAS defines it. */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c_row = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
    }
}

/* ---- portable path ---- */

#define PORTABLE_NB 256

/* Without a workspace (out of memory): one rounded dot product per element. */
static void gemm_unbuffered(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++)
                sum += round_operand(op_a(A, lda, trans_a, i, k)) * round_operand(op_b(B, ldb, trans_b, k, j));
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? alpha * sum : alpha * sum + beta * *c;
        }
}

void sft_gemm_bf16_portable(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    size_t block_floats = (size_t)K * PORTABLE_NB, row_floats = (size_t)K + PORTABLE_NB;
    float *b_block = workspace_get((block_floats + row_floats) * sizeof(float));
    if (!b_block) {
        gemm_unbuffered(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *a_row = b_block + block_floats, *acc = a_row + K;
    for (int j0 = 0; j0 < N; j0 += PORTABLE_NB) {
        int nb = N - j0 < PORTABLE_NB ? N - j0 : PORTABLE_NB;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < nb; j++) b_block[(size_t)k * nb + j] = round_operand(op_b(B, ldb, trans_b, k, j0 + j));
        for (int i = 0; i < M; i++) {
            for (int k = 0; k < K; k++) a_row[k] = round_operand(op_a(A, lda, trans_a, i, k));
            for (int j = 0; j < nb; j++) acc[j] = 0.0f;
            for (int k = 0; k < K; k++) {
                const float a = a_row[k], *b_row = b_block + (size_t)k * nb;
                for (int j = 0; j < nb; j++) acc[j] += a * b_row[j];
            }
            float *c_row = C + (size_t)i * ldc + j0;
            if (beta == 0.0f)
                for (int j = 0; j < nb; j++) c_row[j] = alpha * acc[j];
            else
                for (int j = 0; j < nb; j++) c_row[j] = alpha * acc[j] + beta * c_row[j];
        }
    }
}

int sft_bf16_supported(void) {
    return 0;
}

void sft_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    sft_gemm_bf16_portable(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
