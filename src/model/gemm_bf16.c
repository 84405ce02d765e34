/* gemm_bf16.c: C = alpha * op(A) op(B) + beta * C with bfloat16-rounded
 * operands and float32 accumulation (the contract is in gemm_bf16.h).
 *
 * The fast path follows the layered blocking of Goto and van de Geijn,
 * "Anatomy of High-Performance Matrix Multiplication" (ACM TOMS, 2008), in the
 * loop order of BLIS (Van Zee and van de Geijn, "BLIS: A Framework for Rapidly
 * Instantiating BLAS Functionality", ACM TOMS, 2015):
 *
 *   for jc over N in NC columns          op(B) block KC x NC, packed, in L3
 *     for pc over K in KC steps          (packing rounds to bf16: vcvtne2ps2bf16)
 *       pack op(B)[pc.., jc..]  into NR-column micro-panels
 *       for ic over M in MC rows         op(A) block MC x KC, packed, in L2
 *         pack op(A)[ic.., pc..] into MR-row micro-panels
 *         for jr over NC in NR           one B micro-panel, from L2 to L1
 *           for ir over MC in MR         one A micro-panel, from L2
 *             micro-kernel: an MR x NR tile of C in zmm accumulators
 *
 * Per thread: each caller's thread packs into its own buffer (no sharing, no
 * locks); the caller splits a product across threads (ops.c).
 *
 * Packed layout (both operands alike): a micro-panel of width W (MR rows of
 * op(A), or NR columns of op(B)) over kc values of k is [ceil(kc/2)][W][2]
 * bf16: for each pair of k, each row (column) holds its two consecutive-k
 * values in one 32-bit word, which is what vdpbf16ps multiplies: lane j of
 * the accumulator gets a[2p] * b[2p] + a[2p+1] * b[2p+1]. An odd kc is padded
 * with a zero k, rows past M and columns past N with zeros (never stored).
 * The micro-kernel loads NR/16 zmm of B per k pair and broadcasts one 32-bit
 * A pair per row: MR x NR/16 independent accumulators hide vdpbf16ps's
 * latency at two instructions per cycle.
 *
 * Rounding: vcvtne2ps2bf16 rounds to nearest even, keeps NaN quiet, and takes
 * float32 subnormals as zero (checked on this CPU: 0x00400000 -> 0x0000,
 * 0x007fffff -> 0x0000, 0x7f800001 -> 0x7fc0, 0xff812345 -> 0xffc1, ties to
 * even); vdpbf16ps takes subnormal inputs and results as zero, and adds the
 * two products of a pair one after the other, each rounded (1 + 2^-24 + 2^-24
 * gives 1). The portable path rounds each operand to the same bits
 * (round_operand) and accumulates in float32 in k order, so the two paths
 * differ only in the order of the float32 additions and in subnormal flushes.
 *
 * Portable path: op(B) is rounded into a float32 block of up to PORTABLE_NB
 * columns ([K][columns], row-major), each row of op(A) is rounded once per block,
 * and the row's dot products accumulate along K into a float32 row buffer,
 * so the innermost loop runs over contiguous columns and vectorises
 * (target_clones for AVX-512 and AVX2: ~56 GFLOP/s on one Zen 5 core, against
 * 7 for the scalar loop; the AVX512_BF16 kernel reaches 400-470). */
#include "model/gemm_bf16.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "io/safetensors.h"
#include "model/ops_simd.h"

/* The operand rounding both paths share: sft_f32_to_bf16 (round to nearest
 * even, NaN kept quiet), with float32 subnormals taken as signed zero the way
 * vcvtne2ps2bf16 and vdpbf16ps take them. Returned widened back to float. */
static float round_operand(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7F800000u) == 0)
        bits &= 0x80000000u;
    else
        bits = (uint32_t)sft_f32_to_bf16(x) << 16;
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

#define HUGE_PAGE_BYTES ((size_t)2 << 20)

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
        /* Packed panels of several MiB: 2 MiB aligned and backed by huge
         * pages where the kernel allows, so the micro-kernel's walk over
         * them needs few TLB entries. */
        size_t grown = bytes + bytes / 4, alignment = grown >= HUGE_PAGE_BYTES ? HUGE_PAGE_BYTES : 64;
        grown = (grown + alignment - 1) & ~(alignment - 1);
        void *memory = aligned_alloc(alignment, grown);
        if (!memory) return NULL;
        if (alignment == HUGE_PAGE_BYTES)
            madvise(memory, grown, MADV_HUGEPAGE); /* a hint: failure is harmless */
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
        for (int j = 0; j < N; j++)
            c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
    }
}

/* ---- portable path ---- */

#define PORTABLE_NB 256
/* ...fewer when K is long, so that the block stays within ~4 MiB (the
 * lm_head's input gradient has K = 50257); never fewer than 16. */
#define PORTABLE_BLOCK_FLOATS ((size_t)1 << 20)

/* Without a workspace (out of memory): one rounded dot product per element. */
static void gemm_unbuffered(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++)
                sum +=
                    round_operand(op_a(A, lda, trans_a, i, k)) * round_operand(op_b(B, ldb, trans_b, k, j));
            float *c = C + (size_t)i * ldc + j;
            *c = beta == 0.0f ? alpha * sum : alpha * sum + beta * *c;
        }
}

/* acc[0, width) += sum over k of a_row[k] * b_block[k][0, width), width a
 * multiple of 16: fixed-length inner loops the compiler vectorises, compiled
 * for AVX-512, AVX2 and the baseline (each column's additions run in k order
 * in every clone: the same bits whichever one runs). */
SFT_CLONES static void accumulate_row(float *restrict acc, const float *restrict a_row,
                                      const float *restrict b_block, int K, int width) {
    for (int k = 0; k < K; k++) {
        const float a = a_row[k], *b_row = b_block + (size_t)k * width;
        for (int j0 = 0; j0 < width; j0 += 16)
            for (int j = 0; j < 16; j++)
                acc[j0 + j] += a * b_row[j0 + j];
    }
}

void sft_gemm_bf16_portable(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    int block_columns = PORTABLE_NB;
    while (block_columns > 16 && (size_t)K * block_columns > PORTABLE_BLOCK_FLOATS)
        block_columns /= 2;
    size_t block_floats = (size_t)K * block_columns, row_floats = (size_t)K + block_columns;
    float *b_block = workspace_get((block_floats + row_floats) * sizeof(float));
    if (!b_block) {
        gemm_unbuffered(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *a_row = b_block + block_floats, *acc = a_row + K;
    for (int j0 = 0; j0 < N; j0 += block_columns) {
        /* nb columns of C, stored `width` wide (zero columns up to a multiple of 16) */
        int nb = N - j0 < block_columns ? N - j0 : block_columns, width = (nb + 15) / 16 * 16;
        for (int k = 0; k < K; k++) {
            float *b_row = b_block + (size_t)k * width;
            for (int j = 0; j < nb; j++)
                b_row[j] = round_operand(op_b(B, ldb, trans_b, k, j0 + j));
            for (int j = nb; j < width; j++)
                b_row[j] = 0.0f;
        }
        for (int i = 0; i < M; i++) {
            for (int k = 0; k < K; k++)
                a_row[k] = round_operand(op_a(A, lda, trans_a, i, k));
            for (int j = 0; j < width; j++)
                acc[j] = 0.0f;
            accumulate_row(acc, a_row, b_block, K, width);
            float *c_row = C + (size_t)i * ldc + j0;
            if (beta == 0.0f)
                for (int j = 0; j < nb; j++)
                    c_row[j] = alpha * acc[j];
            else
                for (int j = 0; j < nb; j++)
                    c_row[j] = alpha * acc[j] + beta * c_row[j];
        }
    }
}

/* ---- AVX512_BF16 path ----
 * Compiled with GCC's target attribute so the rest of the build stays
 * portable, and called only after the runtime check in sft_bf16_supported.
 * Clang builds (the fuzzers) take the portable path: the GCC-only
 * __builtin_cpu_supports("avx512bf16") is what guards the instruction. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SFT_GEMM_BF16_KERNEL 1
#include <immintrin.h>

#define SFT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* Register tile (MR rows x NR columns of C: MR * NR/16 = 28 zmm accumulators)
 * and cache blocks, for Zen 5's 48 KiB L1 and 1 MiB L2 per core. KC = 768:
 * most of the step's K values (768, 1024 = 2 x 512, 2304 = 3 x 768) in as
 * few passes over C as possible; a B micro-panel is then KC/2 x NR words
 * (48 KiB), read from L2 with the A micro-panel (21 KiB) at ~13 bytes per
 * cycle. MC x KC bf16 of A (252 KiB) stays in L2; KC x NC bf16 of B (6 MiB)
 * in L3. KC 384 (B panel in L1, two passes over C) was 9-14% slower on the
 * large-N shapes; 6 x 64 tiles no faster. Measurements: bench/SPEED.md. */
#define MR 14
#define NR 32
#define NR_VECS (NR / 16)
#define KC 768
#define MC (MR * 12)
#define NC 4096
#define PREFETCH_ROWS 32 /* strided packing: source rows fetched this far ahead */
#define PREFETCH_K 128   /* contiguous packing: k values fetched this far ahead in each row */

/* Lanes [0, n) of a 16-lane mask, n clamped to [0, 16]. */
static inline __mmask16 lanes_mask(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* Packs `rows` rows (rows of op(A), or columns of op(B)) into micro-panels
 * of `width`, one after another ([panel][ceil(kc/2)][width] words), from a
 * source whose k runs across memory rows: element (r, k) at src[k * ld + r]
 * (op(A) with trans_a, op(B) without trans_b). Two source rows (k, k+1) of 16
 * elements become 16 bf16 pairs: one conversion and one word permutation
 * interleaving them. The k pairs are the outer loop so that the source is
 * read row after row, in the order the hardware prefetcher follows. */
SFT_AVX512BF16 static void pack_block_k_strided(uint32_t *dst, const float *src, int ld, int width, int rows,
                                                int kc) {
    /* word 2j takes element j of the first (low) half, word 2j+1 element j of the second */
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int pairs = (kc + 1) / 2, panels = (rows + width - 1) / width;
    for (int p = 0; p < pairs; p++) {
        const float *row0 = src + (size_t)(2 * p) * ld;
        int has_second = 2 * p + 1 < kc;
        /* The rows are short strided segments the hardware prefetcher does
         * not follow: ask for the ones PREFETCH_ROWS ahead. */
        if (2 * p + PREFETCH_ROWS + 1 < kc)
            for (int c = 0; c < rows; c += 16) {
                _mm_prefetch((const char *)(row0 + (size_t)PREFETCH_ROWS * ld + c), _MM_HINT_T0);
                _mm_prefetch((const char *)(row0 + (size_t)(PREFETCH_ROWS + 1) * ld + c), _MM_HINT_T0);
            }
        for (int panel = 0; panel < panels; panel++) {
            int first = panel * width;
            uint32_t *dst_pair = dst + ((size_t)panel * pairs + p) * width;
            for (int c = 0; c < width; c += 16) {
                int valid = rows - first - c < width - c ? rows - first - c : width - c;
                __mmask16 load_mask = lanes_mask(valid);
                __m512 k0 = _mm512_maskz_loadu_ps(load_mask, row0 + first + c);
                __m512 k1 = has_second ? _mm512_maskz_loadu_ps(load_mask, row0 + ld + first + c)
                                       : _mm512_setzero_ps();
                __m512i words = (__m512i)_mm512_cvtne2ps_pbh(k1, k0);
                __m512i pairs_of_k = _mm512_permutexvar_epi16(interleave, words);
                _mm512_mask_storeu_epi32(dst_pair + c, lanes_mask(width - c), pairs_of_k);
            }
        }
    }
}

/* 16 x 16 transpose of 32-bit elements: rows[i] lane j -> rows[j] lane i. */
SFT_AVX512BF16 static inline void transpose_16x16(__m512i rows[16]) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) { /* pairs of rows, 32-bit interleave within 128-bit lanes */
        t[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* u[4g + j], lane l: rows 4g..4g+3 of column 4l + j */
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) { /* 4 x 4 transpose of 128-bit lanes across u[j], u[4+j], u[8+j], u[12+j] */
        __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88),
                v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        __m512i v3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
        rows[j] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        rows[4 + j] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        rows[8 + j] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        rows[12 + j] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/* One micro-panel of pack_block_k_contiguous. Blocks of 16 rows x 32 k:
 * each row's 32 values convert to 16 bf16 pairs in one register, and a
 * 16 x 16 transpose of those 32-bit pairs gives, per pair of k, the 16 rows
 * side by side. */
SFT_AVX512BF16 static void pack_panel_k_contiguous(uint32_t *dst, const float *src, int ld, int width,
                                                   int rows, int kc) {
    for (int r0 = 0; r0 < width; r0 += 16) {
        int block_rows = rows - r0 < 16 ? rows - r0 : 16;
        __mmask16 store_mask = lanes_mask(width - r0);
        for (int k = 0; k < kc; k += 32) {
            __mmask16 mask_lo = lanes_mask(kc - k), mask_hi = lanes_mask(kc - k - 16);
            __m512i block[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                if (i < block_rows) {
                    const float *row = src + (size_t)(r0 + i) * ld + k;
                    /* 16 interleaved row streams: fetch each one PREFETCH_K ahead */
                    if (k + PREFETCH_K < kc) _mm_prefetch((const char *)(row + PREFETCH_K), _MM_HINT_T0);
                    if (k + PREFETCH_K + 16 < kc)
                        _mm_prefetch((const char *)(row + PREFETCH_K + 16), _MM_HINT_T0);
                    __m512 lo = _mm512_maskz_loadu_ps(mask_lo, row),
                           hi = _mm512_maskz_loadu_ps(mask_hi, row + 16);
                    block[i] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
                } else
                    block[i] = _mm512_setzero_si512();
            }
            transpose_16x16(block);
            int block_pairs = (kc - k + 1) / 2 < 16 ? (kc - k + 1) / 2 : 16;
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++)
                if (q < block_pairs)
                    _mm512_mask_storeu_epi32(dst + (size_t)(k / 2 + q) * width + r0, store_mask, block[q]);
        }
    }
}

/* Packs `rows` rows into micro-panels of `width` as pack_block_k_strided
 * does, from a source whose k runs along memory: element (r, k) at
 * src[r * ld + k] (op(A) without trans_a, op(B) with trans_b). */
SFT_AVX512BF16 static void pack_block_k_contiguous(uint32_t *dst, const float *src, int ld, int width,
                                                   int rows, int kc) {
    int pairs = (kc + 1) / 2;
    for (int first = 0; first < rows; first += width)
        pack_panel_k_contiguous(dst + (size_t)(first / width) * pairs * width, src + (size_t)first * ld, ld,
                                width, rows - first < width ? rows - first : width, kc);
}

/* The MR x NR tile: acc = sum over `pairs` k pairs of the packed panels, then
 * C[:rows, :cols] = alpha * acc + beta * C (C not read when beta == 0). */
SFT_AVX512BF16 static void micro_kernel(int pairs, const uint32_t *a_panel, const uint32_t *b_panel, float *c,
                                        int ldc, int rows, int cols, float alpha, float beta) {
    /* C's lines are needed only after the k loop: fetch them now, so the
     * final load-and-store does not wait on L3 or memory. */
    for (int r = 0; r < rows; r++)
        for (int line = 0; line < cols; line += 16)
            _mm_prefetch((const char *)(c + (size_t)r * ldc + line), _MM_HINT_T0);
    __m512 acc[MR][NR_VECS];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NR_VECS; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++) {
        __m512bh b[NR_VECS];
#pragma GCC unroll 4
        for (int v = 0; v < NR_VECS; v++)
            b[v] = (__m512bh)_mm512_loadu_si512(b_panel + (size_t)p * NR + 16 * v);
        const uint32_t *a_pairs = a_panel + (size_t)p * MR;
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)a_pairs[r]);
#pragma GCC unroll 4
            for (int v = 0; v < NR_VECS; v++)
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
        }
    }
    __m512 alpha_v = _mm512_set1_ps(alpha), beta_v = _mm512_set1_ps(beta);
    __mmask16 col_mask[NR_VECS];
#pragma GCC unroll 4
    for (int v = 0; v < NR_VECS; v++)
        col_mask[v] = lanes_mask(cols - 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
#pragma GCC unroll 4
        for (int v = 0; v < NR_VECS; v++) {
            float *c_vec = c + (size_t)r * ldc + 16 * v;
            __m512 result = _mm512_mul_ps(acc[r][v], alpha_v);
            if (beta != 0.0f)
                result = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(col_mask[v], c_vec), beta_v, result);
            _mm512_mask_storeu_ps(c_vec, col_mask[v], result);
        }
    }
}

/* Scratch for the packed panels: the B block then the A block. */
static size_t packed_b_words(int N) {
    int nc = N < NC ? N : NC;
    return (size_t)(KC / 2) * ((nc + NR - 1) / NR * NR);
}
static size_t packed_a_words(int M) {
    int mc = M < MC ? M : MC;
    return (size_t)(KC / 2) * ((mc + MR - 1) / MR * MR);
}

SFT_AVX512BF16 static void gemm_avx512bf16(int trans_a, int trans_b, int M, int N, int K, float alpha,
                                           const float *A, int lda, const float *B, int ldb, float beta,
                                           float *C, int ldc, uint32_t *packed_b, uint32_t *packed_a) {
    /* K in equal even blocks of at most KC (1024 = 2 x 512, not 768 + 256):
     * no thin last block paying a full pass over C */
    int k_blocks = (K + KC - 1) / KC, k_block = ((K + k_blocks - 1) / k_blocks + 1) & ~1;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += k_block) {
            int kc = K - pc < k_block ? K - pc : k_block, pairs = (kc + 1) / 2;
            if (trans_b) /* B [N, K] */
                pack_block_k_contiguous(packed_b, B + (size_t)jc * ldb + pc, ldb, NR, nc, kc);
            else /* B [K, N] */
                pack_block_k_strided(packed_b, B + (size_t)pc * ldb + jc, ldb, NR, nc, kc);
            /* the first K block applies beta; the later ones add to it */
            float block_beta = pc == 0 ? beta : 1.0f;
            for (int ic = 0; ic < M; ic += MC) {
                int mc = M - ic < MC ? M - ic : MC;
                if (trans_a) /* A [K, M] */
                    pack_block_k_strided(packed_a, A + (size_t)pc * lda + ic, lda, MR, mc, kc);
                else /* A [M, K] */
                    pack_block_k_contiguous(packed_a, A + (size_t)ic * lda + pc, lda, MR, mc, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    int cols = nc - jr < NR ? nc - jr : NR;
                    const uint32_t *b_panel = packed_b + (size_t)(jr / NR) * pairs * NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int rows = mc - ir < MR ? mc - ir : MR;
                        micro_kernel(pairs, packed_a + (size_t)(ir / MR) * pairs * MR, b_panel,
                                     C + (size_t)(ic + ir) * ldc + jc + jr, ldc, rows, cols, alpha,
                                     block_beta);
                    }
                }
            }
        }
    }
}
#endif

/* Whether this process runs the AVX512_BF16 kernel: checked once (the CPU's
 * features, and the operating system's saving of the zmm state, which GCC's
 * cpu model checks through XGETBV). */
static int bf16_kernel_available(void) {
#ifdef SFT_GEMM_BF16_KERNEL
    static int available = -1;
    int known = __atomic_load_n(&available, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
        __atomic_store_n(&available, known, __ATOMIC_RELAXED);
    }
    return known;
#else
    return 0;
#endif
}

int sft_bf16_supported(void) {
    return bf16_kernel_available();
}

void sft_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
#ifdef SFT_GEMM_BF16_KERNEL
    if (M > 0 && N > 0 && K > 0 && alpha != 0.0f && bf16_kernel_available()) {
        size_t b_words = packed_b_words(N), a_words = packed_a_words(M);
        uint32_t *packed_b = workspace_get((b_words + a_words) * sizeof(uint32_t));
        if (packed_b) {
            gemm_avx512bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, packed_b,
                            packed_b + b_words);
            return;
        }
    }
#endif
    sft_gemm_bf16_portable(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
