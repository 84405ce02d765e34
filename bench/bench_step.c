/* bench_step.c: the sft side of the training-step benchmark (bench/run.sh
 * drives it beside bench/torch_step.py, which defines the same models).
 *
 * One training step as the trainer runs it, through the library's public
 * API: zero_grad, sft_model_forward_backward (the trainer's entry: the
 * lm_head product and the fused cross-entropy in row chunks),
 * clip_grad_norm_(1.0) and AdamW (betas 0.9/0.95, weight decay 0.1) in the
 * trainer's fused pass (sft_adamw_step_clipped), on a model
 * built from a config.json text (sft_config_parse, the loader's own path)
 * with sft_model_init_weights, planned once for B x T. Full fine-tuning, or
 * LoRA r=8, alpha=16, no dropout on the family's default targets.
 *
 *   bench_step step SHAPE [--mode full|lora] [--dtype fp32|bf16] [--steps N] [--warmup N] [--threads N]
 *                   [--profile]
 *   bench_step sgemm SHAPE [--threads N] [--reps N] [--alt]
 *   bench_step bf16gemm SHAPE [--threads N] [--reps N]
 *   bench_step config SHAPE FILE
 *   bench_step batch SHAPE
 *
 * step:    median wall ms per step after the warm-up, CPU ms per step (all
 *          threads), tokens/s, peak RSS (getrusage ru_maxrss), the number of
 *          heap allocations made during the timed steps (the plan promises
 *          none), as one `RESULT key=value ...` line. --profile times every
 *          kernel through a copy of the model's dispatch table (m->kernels),
 *          and the optimizer phases, and prints where the step's time goes.
 *          --dtype bf16 runs the kernel table of `sft train --dtype bf16`
 *          (sft_kernels_select: bf16 operands in the products where the CPU
 *          has AVX512_BF16) as system sft-bf16; the RESULT line names the
 *          product kernel that ran (a CPU without it falls back to sgemm).
 * sgemm:   OpenBLAS's cblas_sgemm over the products of one step (forward,
 *          input gradient, weight gradient of every linear and of the
 *          lm_head, in the transpositions the engine uses), each both with
 *          OpenBLAS's own threads and split over the threads as the engine
 *          splits it; total FLOPs / total time with the faster of the two
 *          per product: the ceiling the fp32 step is measured against.
 *          --alt marks the line as a comparison (kind=matmul-alt), not the
 *          ceiling (run.sh: OpenBLAS's own kernel choice when the
 *          environment forces one with OPENBLAS_CORETYPE).
 * bf16gemm: the same products with sft_gemm_bf16 (bf16 operands, float32
 *          accumulation, AVX512_BF16), split over the threads as the
 *          engine's linear layers split them: sft's own bf16 ceiling,
 *          printed beside torch.matmul's bf16 rate. Nothing is measured
 *          where the CPU or build has no AVX512_BF16 kernel.
 * config:  writes the shape's config.json (for `sft init` in run.sh).
 * batch:   prints the shape's B and T. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_clock.h"
#include "io/config.h"
#include "model/gemm_bf16.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/optim.h"

/* Keep in sync with SHAPES in bench/torch_step.py. */
typedef struct bench_shape {
    const char *name;
    int llama; /* 0: GPT-2 */
    int layers, dim, heads, kv_heads, ffn, vocab, positions, B, T;
} bench_shape;

static const bench_shape SHAPES[] = {
    {"gpt2-6l", 0, 6, 384, 6, 6, 1536, 50257, 1024, 8, 256},
    {"gpt2-124m", 0, 12, 768, 12, 12, 3072, 50257, 1024, 4, 256},
    {"llama-100m", 1, 12, 768, 12, 4, 2048, 32000, 2048, 4, 256},
};
enum { LORA_R = 8 };

static const bench_shape *find_shape(const char *name) {
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, name)) return &SHAPES[i];
    fprintf(stderr, "bench_step: unknown shape '%s' (choices:", name);
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        fprintf(stderr, " %s", SHAPES[i].name);
    fprintf(stderr, ")\n");
    return NULL;
}

/* The shape as a Hugging Face config.json: no dropout (the PyTorch side has
 * none), tied embeddings, float32. */
static void config_json(const bench_shape *s, char *buf, size_t cap) {
    if (!s->llama)
        snprintf(
            buf, cap,
            "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"activation_function\": "
            "\"gelu_new\",\n \"n_layer\": %d, \"n_embd\": %d, \"n_head\": %d, \"n_inner\": %d, "
            "\"n_positions\": "
            "%d, \"vocab_size\": %d,\n \"layer_norm_epsilon\": 1e-05, \"initializer_range\": 0.02, "
            "\"attn_pdrop\": 0.0, \"embd_pdrop\": 0.0, \"resid_pdrop\": 0.0,\n \"bos_token_id\": 50256, "
            "\"eos_token_id\": 50256, \"tie_word_embeddings\": true, \"dtype\": \"float32\"}\n",
            s->layers, s->dim, s->heads, s->ffn, s->positions, s->vocab);
    else
        snprintf(
            buf, cap,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": "
            "\"silu\",\n"
            " \"num_hidden_layers\": %d, \"hidden_size\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d,\n \"intermediate_size\": %d, \"max_position_embeddings\": %d, "
            "\"vocab_size\": %d, \"rms_norm_eps\": 1e-05,\n \"rope_theta\": 10000.0, \"initializer_range\": "
            "0.02, \"attention_bias\": false, \"mlp_bias\": false, \"attention_dropout\": 0.0,\n"
            " \"bos_token_id\": 1, \"eos_token_id\": 2, \"tie_word_embeddings\": true, \"dtype\": "
            "\"float32\"}\n",
            s->layers, s->dim, s->heads, s->kv_heads, s->ffn, s->positions, s->vocab);
}

/* ------------------------------------------------ allocation counting
 * The plan promises a step that allocates nothing. Every heap allocation of
 * the process (the library, OpenBLAS, libgomp) goes through these, which
 * count while `counting` is set and hand over to glibc's allocator. Not
 * under AddressSanitizer, which owns malloc itself. */
#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCATIONS 0
#else
#define COUNT_ALLOCATIONS 1
#endif
static atomic_int counting;
static atomic_long allocations;
#if COUNT_ALLOCATIONS
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static void note_allocation(void) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&allocations, 1);
}
void *malloc(size_t n) {
    note_allocation();
    return __libc_malloc(n);
}
void *calloc(size_t count, size_t n) {
    note_allocation();
    return __libc_calloc(count, n);
}
void *realloc(void *p, size_t n) {
    note_allocation();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t alignment, size_t n) {
    note_allocation();
    return __libc_memalign(alignment, n);
}
int posix_memalign(void **out, size_t alignment, size_t n) {
    note_allocation();
    void *p = __libc_memalign(alignment, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
#endif

/* ------------------------------------------------ per-kernel profile
 * A copy of the dispatch table whose entries time the real kernels. The
 * kernels are called from the main thread (each one opens its own parallel
 * region), so a wall-clock pair around a call is that call's time. */
enum {
    P_EMBED_F,
    P_EMBED_B,
    P_NORM_F,
    P_NORM_B,
    P_MM_F,
    P_MM_B,
    P_MM_HEAD_F,
    P_MM_HEAD_B,
    P_MM_LORA_F,
    P_MM_LORA_B,
    P_ACT_F,
    P_ACT_B,
    P_ROPE_F,
    P_ROPE_B,
    P_ATT_F,
    P_ATT_B,
    P_CE_F,
    P_CE_B,
    P_CE_FB,
    P_DROPOUT,
    P_ZERO_GRAD,
    P_ADAMW,
    P_COUNT
};
static const char *const PROFILE_NAMES[P_COUNT] = {
    "embedding forward",
    "embedding backward",
    "norm forward",
    "norm backward",
    "matmul forward (layers)",
    "matmul backward (layers)",
    "matmul forward (lm_head)",
    "matmul backward (lm_head)",
    "matmul forward (LoRA A/B)",
    "matmul backward (LoRA A/B)",
    "gelu/swiglu forward",
    "gelu/swiglu backward",
    "rope forward",
    "rope backward",
    "attention forward",
    "attention backward",
    "cross-entropy forward",
    "cross-entropy backward",
    "cross-entropy fwd+bwd",
    "dropout",
    "zero_grad",
    "clip + adamw (fused)",
};
static double prof_s[P_COUNT], prof_flops[P_COUNT];
static long prof_calls[P_COUNT];
static int prof_vocab;
static const sft_kernels *real;

static void prof_add(int slot, double t0, double flops) {
    prof_s[slot] += bench_wall_s() - t0;
    prof_flops[slot] += flops;
    prof_calls[slot]++;
}

static void p_embedding_forward(float *o, const int32_t *t, const int32_t *p, const float *wte,
                                const float *wpe, int N, int C) {
    double t0 = bench_wall_s();
    real->embedding_forward(o, t, p, wte, wpe, N, C);
    prof_add(P_EMBED_F, t0, 0);
}
static void p_embedding_backward(float *dwte, float *dwpe, const float *d, const int32_t *t, const int32_t *p,
                                 int N, int C) {
    double t0 = bench_wall_s();
    real->embedding_backward(dwte, dwpe, d, t, p, N, C);
    prof_add(P_EMBED_B, t0, 0);
}
static void p_layernorm_forward(float *o, float *mean, float *rstd, const float *in, const float *w,
                                const float *b, int N, int C, float eps) {
    double t0 = bench_wall_s();
    real->layernorm_forward(o, mean, rstd, in, w, b, N, C, eps);
    prof_add(P_NORM_F, t0, 0);
}
static void p_layernorm_backward(float *din, float *dw, float *db, const float *d, const float *in,
                                 const float *w, const float *mean, const float *rstd, int N, int C) {
    double t0 = bench_wall_s();
    real->layernorm_backward(din, dw, db, d, in, w, mean, rstd, N, C);
    prof_add(P_NORM_B, t0, 0);
}
static void p_rmsnorm_forward(float *o, float *rstd, const float *in, const float *w, int N, int C,
                              float eps) {
    double t0 = bench_wall_s();
    real->rmsnorm_forward(o, rstd, in, w, N, C, eps);
    prof_add(P_NORM_F, t0, 0);
}
static void p_rmsnorm_backward(float *din, float *dw, const float *d, const float *in, const float *w,
                               const float *rstd, int N, int C) {
    double t0 = bench_wall_s();
    real->rmsnorm_backward(din, dw, d, in, w, rstd, N, C);
    prof_add(P_NORM_B, t0, 0);
}
/* Which product a call is: the lm_head has the vocabulary as its output
 * size; a LoRA factor has the rank as one of its sizes. */
static int matmul_slot(int C, int OC, int backward) {
    if (OC == prof_vocab) return backward ? P_MM_HEAD_B : P_MM_HEAD_F;
    if (C == LORA_R || OC == LORA_R) return backward ? P_MM_LORA_B : P_MM_LORA_F;
    return backward ? P_MM_B : P_MM_F;
}
static void p_matmul_forward(float *o, const float *in, const float *w, const float *b, int N, int C, int OC,
                             int w_in_out) {
    double t0 = bench_wall_s();
    real->matmul_forward(o, in, w, b, N, C, OC, w_in_out);
    prof_add(matmul_slot(C, OC, 0), t0, 2.0 * N * C * OC);
}
static void p_matmul_forward_add(float *o, const float *in, const float *w, int N, int C, int OC) {
    double t0 = bench_wall_s();
    real->matmul_forward_add(o, in, w, N, C, OC);
    prof_add(matmul_slot(C, OC, 0), t0, 2.0 * N * C * OC);
}
static void p_matmul_backward(float *din, float *dw, float *db, const float *d, const float *in,
                              const float *w, int N, int C, int OC, int w_in_out) {
    double t0 = bench_wall_s();
    real->matmul_backward(din, dw, db, d, in, w, N, C, OC, w_in_out);
    prof_add(matmul_slot(C, OC, 1), t0, 2.0 * N * C * OC * ((din != NULL) + (dw != NULL)));
}
static void p_gelu_forward(float *o, const float *in, size_t n) {
    double t0 = bench_wall_s();
    real->gelu_forward(o, in, n);
    prof_add(P_ACT_F, t0, 0);
}
static void p_gelu_backward(float *din, const float *in, const float *d, size_t n) {
    double t0 = bench_wall_s();
    real->gelu_backward(din, in, d, n);
    prof_add(P_ACT_B, t0, 0);
}
static void p_swiglu_forward(float *o, const float *g, const float *u, size_t n) {
    double t0 = bench_wall_s();
    real->swiglu_forward(o, g, u, n);
    prof_add(P_ACT_F, t0, 0);
}
static void p_swiglu_backward(float *dg, float *du, const float *d, const float *g, const float *u,
                              size_t n) {
    double t0 = bench_wall_s();
    real->swiglu_backward(dg, du, d, g, u, n);
    prof_add(P_ACT_B, t0, 0);
}
static void p_rope_forward(float *x, const float *c, const float *s, int N, int H, int HD, int stride) {
    double t0 = bench_wall_s();
    real->rope_forward(x, c, s, N, H, HD, stride);
    prof_add(P_ROPE_F, t0, 0);
}
static void p_rope_backward(float *x, const float *c, const float *s, int N, int H, int HD, int stride) {
    double t0 = bench_wall_s();
    real->rope_backward(x, c, s, N, H, HD, stride);
    prof_add(P_ROPE_B, t0, 0);
}
static void p_attention_forward(float *o, float *stats, const float *q, int qs, const float *k, int ks,
                                const float *v, int vs, const int32_t *seq, int B, int T, int NH, int NKV,
                                int HD, int window, float dropout, uint64_t seed) {
    double t0 = bench_wall_s();
    real->attention_forward(o, stats, q, qs, k, ks, v, vs, seq, B, T, NH, NKV, HD, window, dropout, seed);
    /* q k^T and att v over the whole T x T square (the 12 L d T convention; causal skipping would halve it)
     */
    prof_add(P_ATT_F, t0, 4.0 * B * NH * (double)T * T * HD);
}
static void p_attention_backward(float *dq, float *dk, float *dv, const float *d, const float *stats,
                                 const float *q, int qs, const float *k, int ks, const float *v, int vs,
                                 const int32_t *seq, int B, int T, int NH, int NKV, int HD, int window,
                                 float dropout, uint64_t seed) {
    double t0 = bench_wall_s();
    real->attention_backward(dq, dk, dv, d, stats, q, qs, k, ks, v, vs, seq, B, T, NH, NKV, HD, window,
                             dropout, seed);
    /* model FLOPs (the 12 L d T convention): the recomputed scores are not counted */
    prof_add(P_ATT_B, t0, 8.0 * B * NH * (double)T * T * HD);
}
static void p_dropout_forward(float *x, size_t n, float p, uint64_t seed) {
    double t0 = bench_wall_s();
    real->dropout_forward(x, n, p, seed);
    prof_add(P_DROPOUT, t0, 0);
}
static void p_dropout_backward(float *x, size_t n, float p, uint64_t seed) {
    double t0 = bench_wall_s();
    real->dropout_backward(x, n, p, seed);
    prof_add(P_DROPOUT, t0, 0);
}
static double p_cross_entropy_forward(float *lse, const float *logits, const int32_t *targets, int N, int V) {
    double t0 = bench_wall_s();
    double r = real->cross_entropy_forward(lse, logits, targets, N, V);
    prof_add(P_CE_F, t0, 0);
    return r;
}
static void p_cross_entropy_backward(float *logits, const float *lse, const int32_t *targets, int N, int V,
                                     float scale) {
    double t0 = bench_wall_s();
    real->cross_entropy_backward(logits, lse, targets, N, V, scale);
    prof_add(P_CE_B, t0, 0);
}
static double p_cross_entropy_forward_backward(float *lse, float *logits, const int32_t *targets, int N, int V,
                                               float scale) {
    double t0 = bench_wall_s();
    double r = real->cross_entropy_forward_backward(lse, logits, targets, N, V, scale);
    prof_add(P_CE_FB, t0, 0);
    return r;
}

/* The model's table with the kernels above in place of the real ones: a
 * copy first, so that an entry added to sft_kernels later keeps working
 * (untimed, counted in "model glue") until it gets its own wrapper. */
static sft_kernels profiled_kernels(const sft_kernels *base) {
    sft_kernels k = *base;
    k.embedding_forward = p_embedding_forward, k.embedding_backward = p_embedding_backward;
    k.layernorm_forward = p_layernorm_forward, k.layernorm_backward = p_layernorm_backward;
    k.rmsnorm_forward = p_rmsnorm_forward, k.rmsnorm_backward = p_rmsnorm_backward;
    k.matmul_forward = p_matmul_forward, k.matmul_forward_add = p_matmul_forward_add;
    k.matmul_backward = p_matmul_backward;
    k.gelu_forward = p_gelu_forward, k.gelu_backward = p_gelu_backward;
    k.swiglu_forward = p_swiglu_forward, k.swiglu_backward = p_swiglu_backward;
    k.rope_forward = p_rope_forward, k.rope_backward = p_rope_backward;
    k.dropout_forward = p_dropout_forward, k.dropout_backward = p_dropout_backward;
    k.attention_forward = p_attention_forward, k.attention_backward = p_attention_backward;
    k.cross_entropy_forward = p_cross_entropy_forward, k.cross_entropy_backward = p_cross_entropy_backward;
    k.cross_entropy_forward_backward = p_cross_entropy_forward_backward;
    return k;
}

/* ------------------------------------------------ the step */

typedef struct options {
    const char *mode, *dtype;
    int steps, warmup, threads, profile, reps, alt;
} options;

/* Parameters that take part in a matrix product (every linear weight and the
 * lm_head): the N of 6N + 12 L d T FLOPs per token. */
static size_t matmul_params(const sft_model *m) {
    size_t n = (size_t)m->cfg.vocab_size * m->cfg.hidden_size;
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < SFT_LIN_COUNT; i++) {
            const sft_linear *lin = &m->layers[l].lin[i];
            if (lin->w) n += (size_t)lin->in * lin->out;
        }
    return n;
}

static size_t set_params(const sft_param_set *set) {
    size_t n = 0;
    for (int i = 0; i < set->count; i++)
        n += set->tensors[i].numel;
    return n;
}

static int fail(const sft_err *err) {
    fprintf(stderr, "bench_step: %s\n", err->msg);
    return 1;
}

static int run_step(const bench_shape *s, const options *o) {
    const int lora = !strcmp(o->mode, "lora"), B = s->B, T = s->T;
    sft_set_threads(o->threads);
    char json[2048];
    config_json(s, json, sizeof json);
    sft_model_config cfg;
    sft_err err;
    if (sft_config_parse(json, strlen(json), s->name, &cfg, &err)) return fail(&err);
    sft_model *m = sft_model_create(&cfg, &err);
    if (!m) return fail(&err);
    /* --dtype bf16: the kernel table `sft train --dtype bf16` runs (bf16
     * operands in the products when the CPU has AVX512_BF16, else float32
     * products and a note); the profile below wraps whichever table this is. */
    const char *products = "openblas-sgemm";
    if (!strcmp(o->dtype, "bf16")) {
        sft_kernel_choice choice;
        if (sft_kernels_select(SFT_MATMUL_BF16, &choice, &err)) return fail(&err);
        if (choice.note) fprintf(stderr, "bench_step: %s\n", choice.note);
        m->kernels = choice.kernels;
        products = choice.product_kernel;
    }
    sft_model_init_weights(m, 1);
    if (lora) {
        sft_lora_config lc = {.r = LORA_R, .alpha = 16, .dropout = 0.0};
        sft_lora_default_targets(m, &lc);
        if (sft_lora_attach(m, &lc, 1, &err)) return fail(&err);
    } else if (sft_model_train_full(m, &err)) {
        return fail(&err);
    }
    if (sft_model_plan(m, B, T, &err)) return fail(&err);
    m->training = 1;
    sft_adamw opt;
    if (sft_adamw_init(&opt, m->trainable, 0.9, 0.95, 1e-8, 0.1, &err)) return fail(&err);

    /* The batch of torch_step.py: token ids from the same LCG, targets
     * shifted by one, the last position of each row without a target. */
    size_t n = (size_t)B * T;
    int32_t *tokens = malloc(n * sizeof *tokens), *targets = malloc(n * sizeof *targets);
    int32_t *pos = malloc(n * sizeof *pos), *seq = calloc(n, sizeof *seq);
    double *step_wall = malloc((size_t)o->steps * sizeof(double)),
           *step_cpu = malloc((size_t)o->steps * sizeof(double));
    if (!tokens || !targets || !pos || !seq || !step_wall || !step_cpu)
        return fprintf(stderr, "out of memory\n"), 1;
    uint32_t state = 12345;
    for (size_t i = 0; i < n; i++) {
        state = state * 1103515245u + 12345u;
        tokens[i] = (int32_t)((state >> 8) % (uint32_t)s->vocab);
        pos[i] = (int32_t)(i % T);
    }
    for (size_t i = 0; i < n; i++)
        targets[i] = (int)(i % T) + 1 < T ? tokens[i + 1] : SFT_IGNORE_INDEX;
    sft_batch batch = {B, T, tokens, targets, pos, seq, (long)B * (T - 1)};

    static sft_kernels profiled;
    if (o->profile) {
        real = m->kernels;
        prof_vocab = cfg.vocab_size;
        profiled = profiled_kernels(real);
        m->kernels = &profiled;
    }
    double loss = 0, loss0 = 0, phase_s[2] = {0}; /* forward+backward, clip+adamw: timed steps only */
    for (int step = 0; step < o->warmup + o->steps; step++) {
        int timed = step >= o->warmup;
        if (timed && step == o->warmup) {
            memset(prof_s, 0, sizeof prof_s), memset(prof_flops, 0, sizeof prof_flops);
            memset(prof_calls, 0, sizeof prof_calls);
            atomic_store(&counting, 1);
        }
        double t0 = bench_wall_s(), c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
        sft_model_zero_grad(m);
        double t1 = bench_wall_s();
        /* The trainer's entry (lm_head and cross-entropy in row chunks, the logits never whole):
         * one call, so forward and backward are one phase. */
        if (sft_model_forward_backward(m, &batch, &loss, &err)) return fail(&err);
        double t3 = bench_wall_s();
        /* clip_grad_norm_(1.0) and AdamW in one pass, as the trainer runs them */
        sft_adamw_step_report rep = sft_adamw_step_clipped(&opt, m->trainable, 1e-4, 1.0, isfinite(loss));
        double norm = rep.grad_norm, t5 = bench_wall_s(), c5 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (step == 0) loss0 = loss;
        fprintf(stderr, "sft %s %s %s step %d: %.0f ms (cpu %.0f ms) loss %.4f grad_norm %.3f\n", s->name,
                o->mode, o->dtype, step, (t5 - t0) * 1e3, (c5 - c0) * 1e3, loss, norm);
        if (!timed) continue;
        step_wall[step - o->warmup] = t5 - t0;
        step_cpu[step - o->warmup] = c5 - c0;
        phase_s[0] += t3 - t1, phase_s[1] += t5 - t3;
        prof_s[P_ZERO_GRAD] += t1 - t0, prof_s[P_ADAMW] += t5 - t3;
        prof_calls[P_ZERO_GRAD]++, prof_calls[P_ADAMW]++;
    }
    atomic_store(&counting, 0);
    long timed_allocations = atomic_load(&allocations);
    double total_s = 0;
    for (int i = 0; i < o->steps; i++)
        total_s += step_wall[i];
    char step_list[1024] = "";
    for (int i = 0, len = 0; i < o->steps && len < (int)sizeof step_list - 16; i++)
        len += snprintf(step_list + len, sizeof step_list - (size_t)len, "%s%.1f", i ? "," : "",
                        step_wall[i] * 1e3);
    double ms = bench_median(step_wall, o->steps) * 1e3, min_ms = step_wall[0] * 1e3; /* sorted by bench_median() */
    double cpu_ms = bench_median(step_cpu, o->steps) * 1e3;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RESULT system=sft%s dtype=%s products=%s shape=%s mode=%s threads=%d B=%d T=%d ms=%.1f min_ms=%.1f "
           "cpu_ms=%.1f "
           "tokens_s=%.1f "
           "rss_mib=%.0f params=%zu matmul_params=%zu trainable=%zu loss0=%.4f loss=%.4f steps=%d "
           "step_allocations=%ld step_ms=%s\n",
           strcmp(o->dtype, "fp32") ? "-bf16" : "", o->dtype, products, s->name, o->mode, sft_get_threads(), B, T,
           ms, min_ms, cpu_ms, B * T / (ms * 1e-3),
           ru.ru_maxrss / 1024.0, set_params(&m->weights), matmul_params(m), set_params(m->trainable), loss0,
           loss, o->steps, COUNT_ALLOCATIONS ? timed_allocations : -1L, step_list);

    if (o->profile) {
        /* Where the time of a step goes: each kernel, the optimizer phases,
         * and what is left (the model's own loops: residual adds, zero fills
         * of the gradient scratch, the LoRA scaling, the batch check). */
        double per = 1.0 / o->steps, step_ms = total_s * per * 1e3, kernels_s = 0;
        int order[P_COUNT];
        for (int i = 0; i < P_COUNT; i++)
            order[i] = i;
        for (int i = 0; i < P_COUNT; i++)
            for (int j = i + 1; j < P_COUNT; j++)
                if (prof_s[order[j]] > prof_s[order[i]]) {
                    int t = order[i];
                    order[i] = order[j], order[j] = t;
                }
        printf("PROFILE %s %s: mean %.0f ms per step over %d steps, %d threads\n", s->name, o->mode, step_ms,
               o->steps, sft_get_threads());
        printf("PROFILE   %-28s %8s %7s %6s %9s\n", "phase", "ms/step", "share", "calls", "GFLOP/s");
        for (int r = 0; r < P_COUNT; r++) {
            int i = order[r];
            if (!prof_calls[i]) continue;
            if (i != P_ZERO_GRAD && i != P_ADAMW) kernels_s += prof_s[i];
            char rate[32] = "";
            if (prof_flops[i] > 0) snprintf(rate, sizeof rate, "%.1f", prof_flops[i] / prof_s[i] * 1e-9);
            printf("PROFILE   %-28s %8.1f %6.1f%% %6ld %9s\n", PROFILE_NAMES[i], prof_s[i] * per * 1e3,
                   100.0 * prof_s[i] / total_s, prof_calls[i] / o->steps, rate);
        }
        double glue_s = phase_s[0] - kernels_s;
        printf("PROFILE   %-28s %8.1f %6.1f%%\n", "model glue (adds, zero fills)", glue_s * per * 1e3,
               100.0 * glue_s / total_s);
        printf("PROFILE   forward+backward %.0f ms, clip+adamw %.0f ms per step\n", phase_s[0] * per * 1e3,
               phase_s[1] * per * 1e3);
    }
    free(tokens), free(targets), free(pos), free(seq), free(step_wall), free(step_cpu);
    sft_adamw_free(&opt);
    sft_model_free(m);
    return 0;
}

/* ------------------------------------------------ product ceilings */

/* The linears of one layer as [in, out] pairs, then the lm_head (once per
 * step): the products the ceilings time. Returns the number of per-layer
 * linears (the lm_head is at that index). */
static int step_linears(const bench_shape *s, int lin[8][2]) {
    const int C = s->dim, FFN = s->ffn, HD = s->dim / s->heads;
    int nlin;
    if (!s->llama) {
        int g[4][2] = {{C, 3 * C}, {C, C}, {C, FFN}, {FFN, C}};
        memcpy(lin, g, sizeof g), nlin = 4;
    } else {
        int kv = s->kv_heads * HD;
        int g[7][2] = {{C, C}, {C, kv}, {C, kv}, {C, C}, {C, FFN}, {C, FFN}, {FFN, C}};
        memcpy(lin, g, sizeof g), nlin = 7;
    }
    lin[nlin][0] = C, lin[nlin][1] = s->vocab;
    return nlin;
}

/* A single-threaded product with cblas_sgemm's row-major arguments (the
 * signature of sft_gemm_bf16), so that one split serves both precisions. */
typedef void (*gemm_fn)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc);

static void gemm_f32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

/* One product of the step, split over the OpenMP threads as the engine's
 * linear layers split theirs (ops.c's split_product: the larger of the
 * output's rows and columns, columns in granules of 16 floats; keep in
 * sync), each thread running the single-threaded product on its part. */
static void gemm_split(gemm_fn gemm, int form, int BT, int in, int out, const float *a, const float *b, float *c) {
    /* C [M, N] = op(A) [M, K] op(B) [K, N] + beta C, as cblas_sgemm's row-major arguments */
    int ta, tb, M, N, K, lda, ldb;
    float beta = 1.0f;
    if (form == 0) /* out[BT, o] = x[BT, i] W[o, i]^T */
        ta = 0, tb = 1, M = BT, N = out, K = in, lda = in, ldb = in, beta = 0.0f;
    else if (form == 1) /* dx[BT, i] += dy[BT, o] W[o, i] */
        ta = 0, tb = 0, M = BT, N = in, K = out, lda = out, ldb = in;
    else /* dW[o, i] += dy[BT, o]^T x[BT, i] */
        ta = 1, tb = 0, M = out, N = in, K = BT, lda = out, ldb = in;
#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int row_lo = 0, row_hi = M, col_lo = 0, col_hi = N;
        if (N > M) {
            int granules = (N + 15) / 16;
            col_lo = (int)((long)granules * t / nt) * 16, col_hi = (int)((long)granules * (t + 1) / nt) * 16;
            col_lo = col_lo < N ? col_lo : N, col_hi = col_hi < N ? col_hi : N;
        } else {
            row_lo = (int)((long)M * t / nt), row_hi = (int)((long)M * (t + 1) / nt);
        }
        if (row_hi > row_lo && col_hi > col_lo)
            gemm(ta, tb, row_hi - row_lo, col_hi - col_lo, K, 1.0f, ta ? a + row_lo : a + (size_t)row_lo * lda, lda,
                 tb ? b + (size_t)col_lo * ldb : b + col_lo, ldb, beta, c + (size_t)row_lo * N + col_lo, N);
    }
}

/* One product with OpenBLAS's own threads over the whole of it. */
static void sgemm_threaded(int form, int BT, int in, int out, const float *a, const float *b, float *c) {
    if (form == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BT, out, in, 1.0f, a, in, b, in, 0.0f, c, out);
    else if (form == 1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BT, in, out, 1.0f, a, out, b, in, 1.0f, c, in);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, BT, 1.0f, a, out, b, in, 1.0f, c, in);
}

enum { WAY_THREADED, WAY_SPLIT_F32, WAY_SPLIT_BF16 };

/* The fastest of reps runs of one product (one more run first, to warm up). */
static double time_product(int way, int threads, int form, int BT, int in, int out, const float *a, const float *b,
                           float *c, int reps) {
    /* OpenBLAS's thread count is global: its own threads for the threaded
     * way, one (inside each OpenMP thread) for the split, as ops.c runs it. */
    openblas_set_num_threads(way == WAY_THREADED ? threads : 1);
    double best = INFINITY;
    for (int rep = 0; rep <= reps; rep++) {
        double t0 = bench_wall_s();
        if (way == WAY_THREADED)
            sgemm_threaded(form, BT, in, out, a, b, c);
        else
            gemm_split(way == WAY_SPLIT_F32 ? gemm_f32 : sft_gemm_bf16, form, BT, in, out, a, b, c);
        double dt = bench_wall_s() - t0;
        if (rep && dt < best) best = dt;
    }
    return best;
}

/* The products of one step, each with the transpositions the engine's
 * matmul uses (row-major): forward out[BT, o] = x[BT, i] W[o, i]^T, input
 * gradient dx[BT, i] = dy[BT, o] W[o, i], weight gradient
 * dW[o, i] = dy[BT, o]^T x[BT, i]; total FLOPs / total time.
 * sgemm: each product both with OpenBLAS's own threads and split over the
 * threads as the engine splits it (single-threaded sgemm per slice); the
 * ceiling takes the faster of the two per product (on a quiet machine they
 * tie at gpt2-124m's shapes, 455-480 GFLOP/s; the engine's own step has run
 * gpt2-6l's products faster than OpenBLAS's threads do, so a threaded-only
 * ceiling was too low there). bf16: the split with sft_gemm_bf16. */
static int run_ceiling(const bench_shape *s, const options *o, int bf16) {
    sft_set_threads(o->threads); /* 0: every core */
    int threads = sft_get_threads();
    if (bf16 && !sft_bf16_supported()) {
        /* The portable path is a correctness fallback, not a ceiling. */
        fprintf(stderr, "bench_step bf16gemm: this CPU or build has no AVX512_BF16 kernel; no bf16 ceiling\n");
        return 0;
    }
    const int BT = s->B * s->T;
    int lin[8][2], nlin = step_linears(s, lin);
    size_t cap = (size_t)s->vocab * (size_t)(BT > s->dim ? BT : s->dim);
    float *a = malloc(cap * sizeof(float)), *b = malloc(cap * sizeof(float)),
          *c = malloc(cap * sizeof(float));
    if (!a || !b || !c) return fprintf(stderr, "out of memory\n"), 1;
    for (size_t i = 0; i < cap; i++)
        a[i] = b[i] = c[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    /* total seconds of the step's products: [0] OpenBLAS threaded, [1] split, [2] the faster per product */
    double total_flops = 0, total_s[3] = {0};
    for (int l = 0; l <= nlin; l++) {
        int in = lin[l][0], out = lin[l][1], count = l < nlin ? s->layers : 1;
        for (int form = 0; form < 3; form++) {
            double flops = 2.0 * BT * in * out, split, threaded = INFINITY;
            split = time_product(bf16 ? WAY_SPLIT_BF16 : WAY_SPLIT_F32, threads, form, BT, in, out, a, b, c, o->reps);
            if (!bf16) threaded = time_product(WAY_THREADED, threads, form, BT, in, out, a, b, c, o->reps);
            double best = split < threaded ? split : threaded;
            const char *name = form == 0 ? "forward" : form == 1 ? "input-grad" : "weight-grad";
            if (bf16)
                fprintf(stderr, "bf16gemm %s %d->%d %s: %.1f GFLOP/s\n", s->name, in, out, name, flops / split * 1e-9);
            else
                fprintf(stderr, "sgemm %s %d->%d %s: %.1f GFLOP/s threaded, %.1f split\n", s->name, in, out, name,
                        flops / threaded * 1e-9, flops / split * 1e-9);
            total_flops += flops * count;
            total_s[0] += threaded * count, total_s[1] += split * count, total_s[2] += best * count;
        }
    }
    if (bf16) {
        printf("RESULT kind=matmul lib=sft dtype=bf16 shape=%s threads=%d path=avx512bf16 gflops=%.1f\n", s->name,
               threads, total_flops / total_s[1] * 1e-9);
    } else {
        const char *coretype = getenv("OPENBLAS_CORETYPE");
        char *corename = openblas_get_corename();
        printf("RESULT kind=%s lib=openblas dtype=fp32 shape=%s threads=%d coretype=%s corename=%s gflops=%.1f "
               "gflops_threaded=%.1f gflops_split=%.1f\n",
               o->alt ? "matmul-alt" : "matmul", s->name, threads, coretype ? coretype : "auto",
               corename ? corename : "?", total_flops / total_s[2] * 1e-9, total_flops / total_s[0] * 1e-9,
               total_flops / total_s[1] * 1e-9);
    }
    free(a), free(b), free(c);
    return 0;
}

static int usage(void) {
    fprintf(
        stderr,
        "usage: bench_step step SHAPE [--mode full|lora] [--dtype fp32|bf16] [--steps N] [--warmup N] [--threads N]\n"
        "                       [--profile]\n"
        "       bench_step sgemm SHAPE [--threads N] [--reps N] [--alt]\n"
        "       bench_step bf16gemm SHAPE [--threads N] [--reps N]\n"
        "       bench_step config SHAPE FILE\n"
        "       bench_step batch SHAPE\n"
        "shapes: gpt2-6l (B=8, T=256), gpt2-124m (B=4, T=256), llama-100m (B=4, T=256)\n");
    return 2;
}

int main(int argc, char **argv) {
    /* OpenMP threads wait passively, as in the sft binary (re-executes once when OMP_WAIT_POLICY is unset).
     */
    sft_thread_pool_setup(argv);
    if (argc < 3) return usage();
    const bench_shape *s = find_shape(argv[2]);
    if (!s) return 2;
    if (!strcmp(argv[1], "config")) {
        if (argc != 4) return usage();
        char json[2048];
        config_json(s, json, sizeof json);
        FILE *f = fopen(argv[3], "w");
        if (!f || fputs(json, f) < 0 || fclose(f)) return perror(argv[3]), 1;
        return 0;
    }
    if (!strcmp(argv[1], "batch")) return printf("%d %d\n", s->B, s->T) < 0;
    options o = {"full", "fp32", 5, 2, 0, 0, 3, 0};
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--profile") || !strcmp(a, "--alt")) {
            *(a[2] == 'p' ? &o.profile : &o.alt) = 1;
            continue;
        }
        if (!v) return usage();
        if (!strcmp(a, "--mode") && (!strcmp(v, "full") || !strcmp(v, "lora")))
            o.mode = v;
        else if (!strcmp(a, "--dtype") && (!strcmp(v, "fp32") || !strcmp(v, "bf16")))
            o.dtype = v;
        else if (!strcmp(a, "--steps") && atoi(v) > 0)
            o.steps = atoi(v);
        else if (!strcmp(a, "--warmup") && atoi(v) >= 0)
            o.warmup = atoi(v);
        else if (!strcmp(a, "--threads") && atoi(v) >= 0)
            o.threads = atoi(v);
        else if (!strcmp(a, "--reps") && atoi(v) > 0)
            o.reps = atoi(v);
        else
            return fprintf(stderr, "bench_step: bad option %s %s\n", a, v), usage();
        i++;
    }
    if (!strcmp(argv[1], "step")) return run_step(s, &o);
    if (!strcmp(argv[1], "sgemm")) return run_ceiling(s, &o, 0);
    if (!strcmp(argv[1], "bf16gemm")) return run_ceiling(s, &o, 1);
    return usage();
}
