/* config.h: a Hugging Face config.json (and generation_config.json) read
 * the way transformers reads it, for the model types gpt2, llama, mistral
 * and qwen2. Both spellings of real checkpoints are accepted: the older
 * top-level rope_theta / rope_scaling / torch_dtype and the transformers-5
 * rope_parameters / dtype. Anything unsupported is an error that names the
 * key; nothing is guessed. */
#ifndef SFT_IO_CONFIG_H
#define SFT_IO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

typedef enum { SFT_ARCH_GPT2, SFT_ARCH_LLAMA } sft_arch;
typedef enum { SFT_ROPE_DEFAULT, SFT_ROPE_LLAMA3 } sft_rope_type;

#define SFT_MAX_EOS 8

typedef struct sft_model_config {
    char model_type[32]; /* as written: gpt2, llama, mistral, qwen2 */
    sft_arch arch;       /* gpt2, or the llama family for llama/mistral/qwen2 */
    int vocab_size;
    int hidden_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int intermediate_size;
    int max_position_embeddings;
    double norm_eps;          /* rms_norm_eps or layer_norm_epsilon */
    double initializer_range; /* 0.02 when absent */
    int tie_word_embeddings;
    int attention_bias; /* q/k/v (and for llama o) biases: llama's attention_bias; qwen2: q/k/v always */
    int o_proj_bias;
    int mlp_bias;
    char hidden_act[32]; /* gelu_new, silu */
    /* rope (llama family) */
    double rope_theta;
    sft_rope_type rope_type;
    double rope_factor;                 /* llama3 */
    double rope_low_freq_factor;        /* llama3 */
    double rope_high_freq_factor;       /* llama3 */
    int rope_original_max_position;     /* llama3 */
    int sliding_window;                 /* 0 when none */
    char dtype[16];                     /* float32, float16, bfloat16 ("" when absent) */
    int bos_token_id;                   /* -1 when absent */
    int eos_token_ids[SFT_MAX_EOS];
    int eos_count;
    int pad_token_id;                   /* -1 when absent */
    /* Layers at or past this index attend within sliding_window tokens
     * (mistral: 0; qwen2: max_window_layers or its layer_types). */
    int sliding_window_first_layer;
    /* Dropout probabilities used in training mode, as transformers applies
     * them: gpt2 attn_pdrop / resid_pdrop / embd_pdrop (0.1 when absent);
     * the llama family has only attention_dropout (0.0 when absent). */
    double attention_dropout;
    double residual_dropout;
    double embedding_dropout;
} sft_model_config;

/* Reads DIR/config.json. */
int sft_config_load(const char *dir, sft_model_config *cfg, sft_err *err);
/* Reads a config.json at an explicit path. */
int sft_config_load_file(const char *path, sft_model_config *cfg, sft_err *err);
/* Parses config.json text already in memory; `name` names it in errors. */
int sft_config_parse(const char *text, size_t len, const char *name, sft_model_config *cfg, sft_err *err);

/* generation_config.json: eos ids (a number or a list) and sampling defaults. */
typedef struct sft_generation_config {
    int bos_token_id;
    int eos_token_ids[SFT_MAX_EOS];
    int eos_count;
    int pad_token_id;
    int do_sample;
    double temperature; /* 1.0 when absent */
    int top_k;          /* 50 when absent, as transformers */
    double top_p;       /* 1.0 when absent */
    int max_new_tokens; /* 0 when absent */
} sft_generation_config;

/* Reads DIR/generation_config.json; when the file is absent, fills the
 * defaults from cfg (its bos/eos ids) and returns 0. */
int sft_generation_config_load(const char *dir, const sft_model_config *cfg, sft_generation_config *gen,
                               sft_err *err);
/* Parses generation_config.json text already in memory (defaults from cfg). */
int sft_generation_config_parse(const char *text, size_t len, const char *name, const sft_model_config *cfg,
                                sft_generation_config *gen, sft_err *err);

#endif
