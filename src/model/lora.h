/* lora.h: LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
 * Language Models") as PEFT implements them: y = W x + b + (alpha / r) *
 * B A dropout(x) on the target linears, A [r, in] and B [out, r] in
 * float32 in the model's trainable set, the base weights frozen.
 * Adapters are read and written in PEFT's format: adapter_config.json and
 * adapter_model.safetensors with the names
 * base_model.model.<module>.lora_A.weight / lora_B.weight. */
#ifndef SFT_MODEL_LORA_H
#define SFT_MODEL_LORA_H

#include <stdint.h>

#include "io/err.h"
#include "model/model.h"

#define SFT_LORA_MAX_TARGETS 16

typedef struct sft_lora_config {
    int r;
    double alpha;
    double dropout;
    /* PEFT's target_modules: a list of names, each matching a module whose path
     * equals it or ends with "." + it (q_proj ... down_proj; c_attn c_proj c_fc;
     * or longer suffixes such as "mlp.c_proj"), or, when target_regex is not
     * empty, a regular expression the whole module path must match. */
    int target_count;
    char targets[SFT_LORA_MAX_TARGETS][96];
    char target_regex[256];
} sft_lora_config;

/* The default targets of a family: every projection (q k v o gate up down;
 * GPT-2: c_attn c_proj c_fc). */
void sft_lora_default_targets(const sft_model *m, sft_lora_config *cfg);
/* Parses "a,b,c" into cfg->targets; unknown names are an error with the nearest valid one. */
int sft_lora_parse_targets(const sft_model *m, const char *list, sft_lora_config *cfg, sft_err *err);

/* Adds adapters to every targeted linear and freezes the base weights.
 * A is initialised as PEFT does (kaiming-uniform, a = sqrt(5)), B to zero,
 * from `seed`. Call before sft_model_plan. */
int sft_lora_attach(sft_model *m, const sft_lora_config *cfg, uint64_t seed, sft_err *err);

/* Reads DIR/adapter_config.json and DIR/adapter_model.safetensors and
 * attaches that adapter (its r, alpha, dropout and targets). */
int sft_lora_load(sft_model *m, const char *dir, sft_err *err);

/* Writes DIR/adapter_config.json and DIR/adapter_model.safetensors
 * (float32), atomically; base_model names the base model dir in the config. */
int sft_lora_save(const sft_model *m, const char *dir, const char *base_model, sft_err *err);

/* W += (alpha / r) * B A for every adapter (transposed for GPT-2's [in, out]
 * Conv1D weights), then removes the adapters: the model is a plain model
 * again, ready for sft_model_save_weights or generation. */
void sft_lora_merge(sft_model *m);

/* The PEFT name of an adapter tensor as the trainable set holds it:
 * base_model.model.<module>.lora_A.weight. */

#endif
