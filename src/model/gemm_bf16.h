/* gemm_bf16.h: matrix products with bfloat16 operands and float32
 * accumulation (the products of `--dtype bf16`, issue 8).
 *
 * The operands stay float32 in memory (fp32 master weights and activations);
 * the kernel rounds them to bfloat16 (round to nearest even, NaN kept NaN)
 * while it packs its panels, multiplies the bf16 pairs with AVX512_BF16's
 * vdpbf16ps and accumulates in float32. So the result equals, up to the order
 * of the float32 additions, the float32 product of the bf16-rounded operands:
 * the numerics of PyTorch's bf16 autocast for a linear layer, with a float32
 * output instead of a bf16 one.
 *
 * A CPU without AVX512_BF16 (or a build without the kernel: clang) runs the
 * portable path, which computes the same rounded-operand product in plain C:
 * correct everywhere, fast only with the instruction. (GCC's sanitizer build
 * keeps the kernel, so ASan checks its packing too.) The scalar
 * rounding is io/safetensors.h's sft_f32_to_bf16 (the same bits), except that
 * a float32 subnormal operand counts as zero: vcvtne2ps2bf16 and vdpbf16ps
 * treat subnormals as zero, and the portable path does the same, so both
 * paths multiply the same bf16 operands. (They may still differ in the order
 * of the float32 additions, and the instruction flushes subnormal products
 * and sums to zero: differences below 2^-126 per addition.) */
#ifndef SFT_MODEL_GEMM_BF16_H
#define SFT_MODEL_GEMM_BF16_H

/* 1 when this CPU and build run the AVX512_BF16 kernel; 0 means the portable
 * path (slower than float32 sgemm: callers should then fall back to float32
 * products and say so). */
int sft_bf16_supported(void);

/* C [M, N] = alpha * op(A) op(B) + beta * C, row-major, the arguments of
 * cblas_sgemm(CblasRowMajor, ...): op(A) is [M, K] (A [M, K] with leading
 * dimension lda, or A [K, M] when trans_a), op(B) is [K, N] (B [K, N], or
 * B [N, K] when trans_b). A and B are rounded to bfloat16 before the
 * product; C and the accumulation are float32. beta == 0 ignores C's old
 * contents (NaN included), as BLAS does.
 *
 * Single-threaded: the caller splits the product across its threads (as
 * ops.c's matrix products do with sgemm). Each calling thread keeps its own
 * packing buffers, allocated on its first call and grown only for a larger
 * shape, so a training step allocates nothing after the first. */
void sft_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);

/* The portable path alone (same arguments and contract as sft_gemm_bf16),
 * whatever the CPU: for tests and the benchmark, which compare it with the
 * AVX512_BF16 kernel. Training code calls sft_gemm_bf16. */
void sft_gemm_bf16_portable(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                            int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
