/* model.h: the transformer families sft trains (GPT-2; the Llama family:
 * Llama 2/3/3.1, Mistral, Qwen2), loaded from a Hugging Face model dir, with
 * a forward and a backward pass over an explicit batch.
 *
 * Memory follows llm.c: every weight lives in ONE flat float array (a
 * parameter set) with named views that carry the Hugging Face tensor names;
 * gradients mirror it; activations for the largest batch are laid out once
 * (sft_model_plan) and a training step allocates nothing. In full
 * fine-tuning the trainable set is the weights; with LoRA (lora.h) the
 * weights are frozen and the trainable set is the adapters. */
#ifndef SFT_MODEL_MODEL_H
#define SFT_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "io/config.h"
#include "io/err.h"
#include "io/safetensors.h"
#include "model/ops.h"

/* A batch, already shifted: targets[i] is the token position i must predict
 * (for causal-LM data, tokens[i+1]), or -100 for no loss. pos restarts at 0
 * for each packed record; seq names the record a token belongs to (tokens
 * attend only within their record). step_supervised_tokens counts the
 * targets != -100 over ALL micro-batches of the optimizer step, so that the
 * loss of a micro-batch, sum(-log p) / step_supervised_tokens, adds up over
 * the accumulation to the mean of one big batch. */
typedef struct sft_batch {
    int B, T;
    const int32_t *tokens;  /* [B*T] */
    const int32_t *targets; /* [B*T] */
    const int32_t *pos;     /* [B*T] */
    const int32_t *seq;     /* [B*T] */
    long step_supervised_tokens;
} sft_batch;

/* One named view into a parameter set. */
typedef struct sft_tensor {
    char name[160]; /* as transformers / PEFT name it */
    int ndim;
    int64_t shape[4];
    size_t offset; /* in floats, into the set's data and grad */
    size_t numel;
} sft_tensor;

/* A flat set of float32 tensors: what clipping, the optimizer, checkpoints
 * and an all-reduce walk over in one pass. grad is NULL when not trained. */
typedef struct sft_param_set {
    float *data;
    float *grad;
    size_t numel;
    sft_tensor *tensors;
    int count;
    int capacity;
} sft_param_set;

const sft_tensor *sft_param_set_find(const sft_param_set *set, const char *name);
/* Building a set: add every tensor (64-byte aligned offsets), then allocate
 * data (zeroed) and, when with_grad, grad. */
int sft_param_set_add(sft_param_set *set, const char *name, int ndim, int64_t d0, int64_t d1, sft_err *err);
int sft_param_set_alloc(sft_param_set *set, int with_grad, sft_err *err);
void sft_param_set_free(sft_param_set *set);

/* A linear layer y = x W^T + b (+ LoRA: scale * dropout(x) A^T B^T). */
typedef struct sft_linear {
    float *w, *dw; /* [out, in], or [in, out] when w_in_out (GPT-2 Conv1D); dw NULL when frozen */
    float *b, *db; /* [out] or NULL */
    int in, out, w_in_out;
    /* LoRA adapter (r == 0: none) */
    int r;
    float scale, dropout;
    float *lora_a, *dlora_a; /* [r, in] */
    float *lora_b, *dlora_b; /* [out, r] */
    float *xa;               /* activation [N, r]: scale * dropout(x) A^T */
    uint8_t *keep;           /* activation [N, in]: dropout mask when dropout > 0 */
} sft_linear;

/* The linears of a layer, indexed for LoRA targeting. GPT-2 uses c_attn,
 * attn_c_proj, c_fc, mlp_c_proj; the Llama family q, k, v, o, gate, up, down. */
enum {
    SFT_LIN_C_ATTN,
    SFT_LIN_ATTN_C_PROJ,
    SFT_LIN_C_FC,
    SFT_LIN_MLP_C_PROJ,
    SFT_LIN_Q,
    SFT_LIN_K,
    SFT_LIN_V,
    SFT_LIN_O,
    SFT_LIN_GATE,
    SFT_LIN_UP,
    SFT_LIN_DOWN,
    SFT_LIN_COUNT
};

typedef struct sft_layer {
    float *norm1_w, *norm1_b, *dnorm1_w, *dnorm1_b; /* ln_1 / input_layernorm (bias: GPT-2 only) */
    float *norm2_w, *norm2_b, *dnorm2_w, *dnorm2_b; /* ln_2 / post_attention_layernorm */
    sft_linear lin[SFT_LIN_COUNT];
    char lin_module[SFT_LIN_COUNT][96]; /* module path, "model.layers.0.self_attn.q_proj"; "" when absent */
    /* activations [N = B*T rows] */
    float *norm1, *norm1_mean, *norm1_rstd;
    float *qkv; /* q, k, v (GPT-2: interleaved rows of 3C; Llama: three blocks) */
    float *q, *k, *v;
    int q_stride, k_stride, v_stride;
    float *att;  /* [B, NH, T, 2]: each attention row's max score and 1/sum (ops.h) */
    float *atty; /* [N, NH*HD] */
    float *res1; /* residual after attention */
    float *norm2, *norm2_mean, *norm2_rstd;
    float *mlp_a, *mlp_b, *mlp_act; /* GPT-2: fc, -, gelu(fc); Llama: gate, up, silu(gate)*up */
    float *res2;                    /* layer output */
} sft_layer;

typedef struct sft_model {
    sft_model_config cfg;
    const sft_kernels *kernels;
    int head_dim, q_dim, kv_dim; /* HD, NH*HD, NKV*HD */

    sft_param_set weights;    /* every base weight, in one array */
    sft_param_set adapters;   /* LoRA adapters (count 0 without LoRA) */
    sft_param_set *trainable; /* &weights (full fine-tuning) or &adapters (LoRA) */
    int lora_r;
    float lora_alpha, lora_dropout;
    uint64_t dropout_seed, dropout_step; /* the dropout stream: mask = f(seed, step, layer, linear, index) */
    int training; /* dropout on (1) or off (0): LoRA dropout and config.json's attention,
                   * residual and embedding dropout (GPT-2's attn/resid/embd_pdrop,
                   * the Llama family's attention_dropout), as transformers in train mode */

    float *wte, *dwte, *wpe, *dwpe;
    float *normf_w, *normf_b, *dnormf_w, *dnormf_b;
    float *lm_head, *dlm_head; /* == wte when tied */
    sft_layer *layers;
    float *inv_freq; /* [HD/2], Llama family */

    /* activations, planned for max_B * max_T tokens */
    int max_B, max_T;
    float *arena;
    size_t arena_floats;
    uint8_t *mask_arena;
    float *x0, *normf, *normf_mean, *normf_rstd, *lse, *rope_cos, *rope_sin;
    /* [max_B*max_T, V]: the full logits of sft_model_forward, allocated by its
     * first call (after a plan) and only then: the training and evaluation
     * entries below never use it. NULL until then. */
    float *logits;
    int logits_ready; /* logits hold the last sft_model_forward's (not yet its backward's gradient) */
    /* The loss head in row chunks (sft_model_forward_backward,
     * sft_model_forward_loss): the supervised rows go through the lm_head
     * product and the cross-entropy chunk_rows at a time. */
    int loss_chunk_rows; /* set before sft_model_plan to choose the chunk; 0: automatic (model.c) */
    int chunk_rows;      /* the planned chunk */
    float *chunk_logits, *chunk_x, *chunk_dx,
        *chunk_lse;       /* [chunk_rows, V], [chunk_rows, C] x 2, [chunk_rows] */
    int32_t *index_arena; /* chunk_targets [chunk_rows] and loss_rows [max_B*max_T] */
    int32_t *chunk_targets, *loss_rows;
    float *dres, *dnorm, *dqkv, *datty, *dmlp_a, *dmlp_b, *dact;
    float *dres_dropped;                        /* [N, C]: d(branch output) through residual dropout */
    float *lora_xdrop, *lora_dxdrop, *lora_dxa; /* LoRA scratch: [N, max in], [N, max in], [N, r] */
    int cur_B, cur_T;                           /* of the last forward */
} sft_model;

/* Loads DIR/config.json and DIR/model.safetensors (or its sharded index);
 * weights in F32, BF16 or F16 are converted to float32. Any mismatch (missing
 * or unexpected tensor, wrong shape, unsupported architecture, a tokenizer
 * larger than the vocabulary) is an error naming the tensor or key. */
sft_model *sft_model_load(const char *dir, sft_err *err);
/* A model with zeroed weights for a configuration (sft_model_init_weights fills them). */
sft_model *sft_model_create(const sft_model_config *cfg, sft_err *err);
void sft_model_free(sft_model *m);

/* Normal(0, initializer_range) weights, zero biases, unit norm weights
 * (transformers' _init_weights), from a seeded generator. */
void sft_model_init_weights(sft_model *m, uint64_t seed);

/* sft init: writes OUT_DIR (config.json as given, model.safetensors with
 * sft_model_init_weights(seed) in the config's dtype, generation_config.json,
 * the tokenizer files of tokenizer_dir); OUT_DIR must not exist or be empty.
 * The dir appears complete or not at all. */
int sft_model_init_dir(const char *config_path, const char *tokenizer_dir, const char *out_dir, uint64_t seed,
                       sft_err *err);

/* Errors when the tokenizer has more ids than the model has embedding rows
 * (a model may have more rows than the tokenizer: padded vocabularies). */
int sft_model_check_vocab(const sft_model *m, size_t tokenizer_vocab, sft_err *err);

/* Turns on gradients for every weight (full fine-tuning). */
int sft_model_train_full(sft_model *m, sft_err *err);
/* Drops the weight gradients (the weights become frozen: LoRA). */
void sft_model_freeze_weights(sft_model *m);

/* Lays out the activations for batches up to max_B x max_T (call after
 * LoRA is attached). */
int sft_model_plan(sft_model *m, int max_B, int max_T, sft_err *err);
/* The rows of the loss head's chunk that sft_model_plan lays out for
 * max_B x max_T: m->loss_chunk_rows when set, else at least 512 (fewer slow
 * the lm_head products down) and more while the chunk's logits fit in
 * 64 MiB; never more than max_B * max_T. */
int sft_model_loss_chunk_rows(const sft_model *m, int max_B, int max_T);

/* Forward over a batch. *loss = sum over supervised tokens of -log p /
 * step_supervised_tokens (0 when none). Keeps logits [B*T, V] and lse [B*T]
 * for the caller until the backward. Errors on a batch the model cannot take
 * (a token id past the vocabulary, a position past GPT-2's table, B*T past
 * the plan). The full logits are max_B*max_T*V floats (206 MB for GPT-2 at
 * 4 x 256, 5 GB for Qwen2's 151936-token vocabulary at 4 x 2048), allocated
 * by the first call after a plan (an error when memory runs out): for
 * callers that read them (parity, scoring). Training and evaluation use the
 * chunked entries below, which never hold them. */
int sft_model_forward(sft_model *m, const sft_batch *batch, double *loss, sft_err *err);

/* A training micro-step: the forward and the backward of the same loss in
 * one call, ADDING the gradients to the trainable set's grad as
 * sft_model_forward + sft_model_backward do (the same loss and gradients up
 * to float rounding: dlm_head is summed chunk by chunk). After the final
 * norm, the supervised rows (targets != -100) are taken chunk_rows at a
 * time: their logits (lm_head product), the fused cross-entropy forward and
 * backward at scale 1 / step_supervised_tokens (ops.h), the input gradient
 * and lm_head's weight gradient; ignored rows cost nothing. Only one chunk's
 * logits exist at a time. m->lse gets each supervised row's log-sum-exp
 * (NaN elsewhere); m->logits is not touched. */
int sft_model_forward_backward(sft_model *m, const sft_batch *batch, double *loss, sft_err *err);

/* Evaluation: the forward's loss (as sft_model_forward's, bit for bit when
 * the products give the same logits) with the loss head in chunks as above,
 * no gradients. token_nll [B*T], when not NULL, gets -log p(target) of every
 * row in double, NaN where the target is -100 (what a scorer reads). m->lse
 * gets each supervised row's log-sum-exp (NaN elsewhere). */
int sft_model_forward_loss(sft_model *m, const sft_batch *batch, double *loss, double *token_nll,
                           sft_err *err);
/* The attention window of a layer: config.json's sliding_window on the
 * layers that use it (Mistral: all; Qwen2: from max_window_layers), else 0. */
int sft_model_layer_window(const sft_model *m, int layer);

/* Backward of the last sft_model_forward (of this batch): ADDS the gradients
 * of that loss to the trainable set's grad (zero it at the start of an
 * optimizer step). The logits are overwritten by their gradient. Returns -1
 * and does nothing when there is no such forward to differentiate (the last
 * forward was a chunked entry above, or its backward already ran). */
int sft_model_backward(sft_model *m, const sft_batch *batch);
void sft_model_zero_grad(sft_model *m);

/* Writes the weights (merged adapters included when merged) as DIR-style
 * model.safetensors in `dtype`, with transformers' names (tied lm_head left out). */
int sft_model_save_weights(const sft_model *m, const char *path, sft_dtype dtype, sft_err *err);

#endif
