/* ops_bf16.c: the bf16 mixed-precision kernel table and the choice of a
 * table for a run's `dtype` (see ops.h).
 *
 * The table follows PyTorch's CPU autocast for bfloat16 (torch.amp,
 * "CPU Ops that can autocast to bfloat16"): the linear layers' products and
 * attention's (autocast runs scaled_dot_product_attention in bf16) take bf16
 * operands; layer norms, softmax, cross-entropy, the residual stream and the
 * optimizer stay float32, and so do attention's per-row softmax statistics.
 * Unlike autocast, the products' outputs stay float32 (gemm_bf16.h), which
 * only removes rounding. Master weights,
 * gradients and the AdamW moments are never stored in bf16 (mixed precision
 * after Micikevicius et al., "Mixed Precision Training", 2018). */
#include <stdlib.h>
#include <string.h>

#include "model/gemm_bf16.h"
#include "model/ops.h"

const sft_kernels sft_kernels_cpu_bf16 = {
    .embedding_forward = sft_embedding_forward,
    .embedding_backward = sft_embedding_backward,
    .layernorm_forward = sft_layernorm_forward,
    .layernorm_backward = sft_layernorm_backward,
    .rmsnorm_forward = sft_rmsnorm_forward,
    .rmsnorm_backward = sft_rmsnorm_backward,
    .matmul_forward = sft_matmul_forward_bf16,
    .matmul_forward_add = sft_matmul_forward_add_bf16,
    .matmul_backward = sft_matmul_backward_bf16,
    .gelu_forward = sft_gelu_forward,
    .gelu_backward = sft_gelu_backward,
    .swiglu_forward = sft_swiglu_forward,
    .swiglu_backward = sft_swiglu_backward,
    .rope_forward = sft_rope_forward,
    .rope_backward = sft_rope_backward,
    .dropout_forward = sft_dropout_forward,
    .dropout_backward = sft_dropout_backward,
    .attention_forward = sft_attention_forward_bf16,
    .attention_backward = sft_attention_backward_bf16,
    .cross_entropy_forward = sft_cross_entropy_forward,
    .cross_entropy_backward = sft_cross_entropy_backward,
    .cross_entropy_forward_backward = sft_cross_entropy_forward_backward,
};

const char *sft_matmul_dtype_name(sft_matmul_dtype dtype) {
    return dtype == SFT_MATMUL_BF16 ? "bf16" : "fp32";
}

int sft_kernels_select(sft_matmul_dtype requested, sft_kernel_choice *choice, sft_err *err) {
    *choice = (sft_kernel_choice){.kernels = &sft_kernels_cpu,
                                  .requested = requested,
                                  .products = SFT_MATMUL_FP32,
                                  .product_kernel = "openblas-sgemm",
                                  .note = NULL};
    if (requested != SFT_MATMUL_BF16) return 0;
    const char *policy = getenv("SFT_BF16");
    int supported = sft_bf16_supported();
    if (!policy || !*policy || !strcmp(policy, "auto")) {
        if (!supported) {
            choice->note = "dtype bf16: this CPU (or build) has no AVX512_BF16 kernel, so the matrix products run "
                           "in fp32 (set SFT_BF16=force for the slow portable bf16 products)";
            return 0;
        }
    } else if (!strcmp(policy, "fp32")) {
        choice->note = "dtype bf16: SFT_BF16=fp32, so the matrix products run in fp32";
        return 0;
    } else if (!strcmp(policy, "force")) {
        if (!supported)
            choice->note = "dtype bf16: SFT_BF16=force on a CPU (or build) without the AVX512_BF16 kernel: bf16 "
                           "products through the portable kernel, several times slower than fp32";
    } else {
        return sft_errf(err, "environment variable SFT_BF16='%s': expected auto, fp32 or force", policy);
    }
    choice->kernels = &sft_kernels_cpu_bf16;
    choice->products = SFT_MATMUL_BF16;
    choice->product_kernel = supported ? "avx512-bf16" : "portable-bf16";
    return 0;
}
