/* ops.h: the float32 building blocks of the transformer, as forward/backward
 * pairs in the style of llm.c (train_gpt2.c): every op takes plain arrays and
 * sizes, states its shapes, and its backward ACCUMULATES (+=) into the input
 * and weight gradients, so a residual stream or a tied weight just adds up.
 * A gradient pointer may be NULL when nothing upstream needs it (a frozen
 * weight, the token ids).
 *
 * Conventions: N = number of tokens (B*T), C = channels, V = vocabulary,
 * NH = query heads, NKV = key/value heads, HD = head dim. Rows are tokens.
 * The numerics follow transformers' float32 eager code path (modeling_gpt2,
 * modeling_llama, modeling_rope_utils), which `sft parity` checks.
 *
 * The model calls the ops through a table (sft_kernels), so that a bf16 or
 * GPU backend can replace one op without touching the model code. */
#ifndef SFT_MODEL_OPS_H
#define SFT_MODEL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

/* Token (+ learned position) embedding.
 * out [N, C] = wte[tokens[n]] (+ wpe[pos[n]] when wpe is not NULL).
 * wte [V, C], wpe [P, C]. */
void sft_embedding_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *wte,
                           const float *wpe, int N, int C);
/* dwte [V, C] += scatter of dout rows by token; dwpe [P, C] likewise by pos. */
void sft_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                            const int32_t *pos, int N, int C);

/* LayerNorm (biased variance, eps inside the square root, as torch).
 * out [N, C], mean [N], rstd [N] (kept for backward), inp [N, C], weight/bias [C]. */
void sft_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                           const float *bias, int N, int C, float eps);
void sft_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int N, int C);

/* RMSNorm as LlamaRMSNorm: out = weight * (x * rsqrt(mean(x^2) + eps)).
 * out [N, C], rstd [N], inp [N, C], weight [C]. */
void sft_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                         float eps);
void sft_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C);

/* Linear layer through BLAS: out [N, OC] = inp [N, C] @ W^T + bias.
 * W is [OC, C] (torch nn.Linear) or, when w_in_out, [C, OC] (GPT-2 Conv1D).
 * bias [OC] or NULL. */
void sft_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                        int OC, int w_in_out);
/* out [N, OC] += inp [N, C] @ W^T with W [OC, C] (the LoRA B product). */
void sft_matmul_forward_add(float *out, const float *inp, const float *weight, int N, int C, int OC);
/* dinp [N, C] += dout @ W; dweight (same layout as W) += dout^T @ inp; dbias [OC] += column sums. */
void sft_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int N, int C, int OC, int w_in_out);

/* GELU, tanh approximation (transformers' gelu_new / NewGELUActivation).
 * out [n] from inp [n]; dinp [n] += gelu'(inp) * dout. */
void sft_gelu_forward(float *out, const float *inp, size_t n);
void sft_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* SwiGLU gate of the Llama MLP: out [n] = silu(gate) * up.
 * dgate, dup [n] += their gradients. */
void sft_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void sft_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         size_t n);

/* Rotary position embedding (RoFormer; transformers' rotate_half layout:
 * dimension i pairs with i + HD/2).
 * sft_rope_inv_freq fills inv_freq [HD/2] exactly as modeling_rope_utils
 * (rope_type "default", and "llama3" when factor > 0: the Llama 3.1 scaling
 * with low/high frequency factors and the original context length).
 * sft_rope_tables fills cos, sin [N, HD/2] for per-token positions. */
typedef struct sft_rope_params {
    double theta;
    int head_dim;
    int llama3; /* 0: default */
    double factor, low_freq_factor, high_freq_factor;
    int original_max_position;
} sft_rope_params;
void sft_rope_inv_freq(float *inv_freq, const sft_rope_params *rp);
void sft_rope_tables(float *cos_t, float *sin_t, const float *inv_freq, const int32_t *pos, int N, int HD);
/* In place on x [N, H, HD] with row stride `stride` floats between tokens. */
void sft_rope_forward(float *x, const float *cos_t, const float *sin_t, int N, int H, int HD, int stride);
/* In place on dx (same layout): applies the transposed rotation. */
void sft_rope_backward(float *dx, const float *cos_t, const float *sin_t, int N, int H, int HD, int stride);

/* Inverted dropout with a counter-based mask: element i is kept when
 * uniform(seed, i) >= p and then scaled by 1 / (1 - p). The mask is a
 * function of (seed, i) alone: the backward regenerates it instead of storing
 * it, and no thread count or call order changes it. x [n] in place;
 * dx [n] in place (the same mask). */
int sft_dropout_keep(uint64_t seed, uint64_t i, float p);
void sft_dropout_forward(float *x, size_t n, float p, uint64_t seed);
void sft_dropout_backward(float *dx, size_t n, float p, uint64_t seed);

/* Causal self-attention with grouped KV heads and packed rows.
 * q [B*T, NH, HD] (row stride q_stride), k and v [B*T, NKV, HD] (row strides
 * k_stride, v_stride); query token i of a row attends key j when j <= i and
 * seq[j] == seq[i] (seq [B*T]: the record a token belongs to, so that packed
 * records never see each other). Query head h reads KV head h / (NH / NKV).
 * out [B*T, NH, HD] contiguous. Scale 1/sqrt(HD). window > 0: sliding-window
 * attention (Mistral, Qwen2), key j also needs i - j < window.
 * The probabilities are not stored: stats [B, NH, T, 2] keeps each query
 * row's max score and 1/sum, and the backward recomputes the row from them
 * (bit for bit), so memory grows with T, not T^2.
 * dropout > 0: attention dropout on the probabilities that multiply V (mask
 * element ((b*NH + h)*T + i)*T + j of sft_dropout_keep(seed, ...)). The
 * backward takes the same seq, window, dropout and seed. */
void sft_attention_forward(float *out, float *stats, const float *q, int q_stride, const float *k,
                           int k_stride, const float *v, int v_stride, const int32_t *seq, int B, int T,
                           int NH, int NKV, int HD, int window, float dropout, uint64_t seed);
/* dq, dk, dv (same layouts and strides as q, k, v) += their gradients. */
void sft_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *stats,
                            const float *q, int q_stride, const float *k, int k_stride, const float *v,
                            int v_stride, const int32_t *seq, int B, int T, int NH, int NKV, int HD,
                            int window, float dropout, uint64_t seed);

/* Cross-entropy fused with the softmax, ignore index -100.
 * logits [N, V]; targets [N]. Writes lse [N] (log-sum-exp of every row) and
 * returns the SUM of -log p(target) over the rows whose target is not -100
 * (in double). The probabilities are never stored; each row is read once. */
#define SFT_IGNORE_INDEX (-100)
double sft_cross_entropy_forward(float *lse, const float *logits, const int32_t *targets, int N, int V);
/* Overwrites logits with d(loss)/d(logits) where loss = scale * sum:
 * row n gets scale * (softmax - onehot(target)), or zeros when ignored. */
void sft_cross_entropy_backward(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                float scale);
/* Both at once, for training (the kernels in ops_loss.c): returns the same
 * sum as the forward (to double rounding) and overwrites logits with the backward's gradient for
 * the given scale, in one pass over each row instead of three (the forward's
 * read, the backward's read and write). lse [N] gets each supervised row's
 * log-sum-exp; ignored rows get NaN and zero gradients. The gradient's
 * rounding differs from the separate pair by about one float ulp. */
double sft_cross_entropy_forward_backward(float *lse, float *logits, const int32_t *targets, int N, int V,
                                          float scale);

/* The dispatch table the model calls through; sft_kernels_cpu is the float32
 * CPU backend above. */
typedef struct sft_kernels {
    void (*embedding_forward)(float *, const int32_t *, const int32_t *, const float *, const float *, int,
                              int);
    void (*embedding_backward)(float *, float *, const float *, const int32_t *, const int32_t *, int, int);
    void (*layernorm_forward)(float *, float *, float *, const float *, const float *, const float *, int,
                              int, float);
    void (*layernorm_backward)(float *, float *, float *, const float *, const float *, const float *,
                               const float *, const float *, int, int);
    void (*rmsnorm_forward)(float *, float *, const float *, const float *, int, int, float);
    void (*rmsnorm_backward)(float *, float *, const float *, const float *, const float *, const float *,
                             int, int);
    void (*matmul_forward)(float *, const float *, const float *, const float *, int, int, int, int);
    void (*matmul_forward_add)(float *, const float *, const float *, int, int, int);
    void (*matmul_backward)(float *, float *, float *, const float *, const float *, const float *, int, int,
                            int, int);
    void (*gelu_forward)(float *, const float *, size_t);
    void (*gelu_backward)(float *, const float *, const float *, size_t);
    void (*swiglu_forward)(float *, const float *, const float *, size_t);
    void (*swiglu_backward)(float *, float *, const float *, const float *, const float *, size_t);
    void (*rope_forward)(float *, const float *, const float *, int, int, int, int);
    void (*rope_backward)(float *, const float *, const float *, int, int, int, int);
    void (*dropout_forward)(float *, size_t, float, uint64_t);
    void (*dropout_backward)(float *, size_t, float, uint64_t);
    void (*attention_forward)(float *, float *, const float *, int, const float *, int, const float *, int,
                              const int32_t *, int, int, int, int, int, int, float, uint64_t);
    void (*attention_backward)(float *, float *, float *, const float *, const float *, const float *, int,
                               const float *, int, const float *, int, const int32_t *, int, int, int, int,
                               int, int, float, uint64_t);
    double (*cross_entropy_forward)(float *, const float *, const int32_t *, int, int);
    void (*cross_entropy_backward)(float *, const float *, const int32_t *, int, int, float);
    double (*cross_entropy_forward_backward)(float *, float *, const int32_t *, int, int, float);
} sft_kernels;

extern const sft_kernels sft_kernels_cpu;

/* The bf16 mixed-precision backend (`--dtype bf16`): sft_kernels_cpu with
 * the matrix products of the linear layers (lm_head included: forward, input
 * and weight gradients, LoRA's A and B) and of attention (S = Q K^T, P V and
 * the four products of the backward) through gemm_bf16.h's product, whose
 * operands are rounded to bfloat16 and whose accumulation and output are
 * float32: the numerics of PyTorch's bf16 autocast for nn.Linear and
 * scaled_dot_product_attention. Norms, softmax (attention's per-row max and
 * 1/sum included), cross-entropy, residual adds and the optimizer stay
 * float32, as under autocast; weights, gradients and Adam moments stay
 * float32 in memory. The products are split across the threads exactly as
 * the float32 ones. Taking attention's products to bf16 was measured: 29.2
 * -> 19.5 CPU ms per GPT-2-124M layer (B=4, T=256), forward and backward. */
extern const sft_kernels sft_kernels_cpu_bf16;
void sft_matmul_forward_bf16(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                             int OC, int w_in_out);
void sft_matmul_forward_add_bf16(float *out, const float *inp, const float *weight, int N, int C, int OC);
void sft_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC, int w_in_out);
void sft_attention_forward_bf16(float *out, float *stats, const float *q, int q_stride, const float *k,
                                int k_stride, const float *v, int v_stride, const int32_t *seq, int B, int T,
                                int NH, int NKV, int HD, int window, float dropout, uint64_t seed);
void sft_attention_backward_bf16(float *dq, float *dk, float *dv, const float *dout, const float *stats,
                                 const float *q, int q_stride, const float *k, int k_stride, const float *v,
                                 int v_stride, const int32_t *seq, int B, int T, int NH, int NKV, int HD,
                                 int window, float dropout, uint64_t seed);

/* The precision of the matrix products a run asks for (run.yaml `dtype`). */
typedef enum { SFT_MATMUL_FP32, SFT_MATMUL_BF16 } sft_matmul_dtype;
const char *sft_matmul_dtype_name(sft_matmul_dtype dtype); /* "fp32", "bf16" */

/* What sft_kernels_select chose for a requested precision. */
typedef struct sft_kernel_choice {
    const sft_kernels *kernels;
    sft_matmul_dtype requested;
    sft_matmul_dtype products; /* what the products run in: fp32 when bf16 fell back */
    const char *product_kernel; /* "openblas-sgemm", "avx512-bf16" or "portable-bf16" */
    const char *note; /* NULL, or one line saying why bf16 runs fp32 products (or runs slowly) */
} sft_kernel_choice;

/* The kernel table for `requested` on this CPU. bf16 takes the bf16 products
 * when the CPU has AVX512_BF16 (sft_bf16_supported); without it the portable
 * bf16 product would be slower than float32 sgemm, so the products run in
 * float32 and `note` says so (the library does not print: the caller shows
 * the note once). The environment variable SFT_BF16, read here, overrides the
 * automatic choice for bf16 runs: "fp32" takes the float32 fallback even on a
 * CPU with AVX512_BF16 (to compare, or to test the fallback), "force" takes
 * the bf16 products even without it (the portable product: bf16 numerics on
 * any CPU, several times slower), "auto" or empty is the default. Any other
 * value is an error naming the choices. fp32 runs ignore SFT_BF16. */
int sft_kernels_select(sft_matmul_dtype requested, sft_kernel_choice *choice, sft_err *err);

/* Threads of the one thread pool (OpenMP). BLAS is set to one thread and
 * the matrix products split their output across the OpenMP threads, so the
 * BLAS library never starts threads of its own that would compete for the
 * cores. n <= 0 picks the number of cores. */
void sft_set_threads(int n);
int sft_get_threads(void);

/* Waiting OpenMP threads should sleep, not spin: on 2 cores shared with
 * other processes a spinning thread burns the core its partner needs
 * (GPT-2-124M step on the loaded 2-core build machine: 11.5 CPU s and 22.6 s
 * wall spinning, 9.1 CPU s and 19.1 s wall sleeping). libgomp reads
 * OMP_WAIT_POLICY once, when it loads, so when the variable is unset this
 * sets it to "passive" and re-executes the program (argv) once; it returns
 * only when nothing needed doing or the re-execution failed. A user's own
 * OMP_WAIT_POLICY is kept. In the same re-execution, OPENBLAS_CORETYPE naming
 * a core without AVX-512 on a CPU that has it is dropped (it forces OpenBLAS
 * onto kernels of half the speed: 230 against 450 GFLOP/s measured at the
 * GPT-2-124M step's shapes); SFT_OPENBLAS_CORETYPE, when set, is the user's
 * explicit choice and becomes OPENBLAS_CORETYPE (empty: OpenBLAS chooses). */
void sft_thread_pool_setup(char **argv);

#endif
