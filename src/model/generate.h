/* generate.h: autoregressive decoding with a KV cache: greedy, or sampled
 * with temperature, top-k and top-p (applied in that order, as transformers'
 * logits processors), from a seeded generator; stops at the eos ids. */
#ifndef SFT_MODEL_GENERATE_H
#define SFT_MODEL_GENERATE_H

#include <stdint.h>

#include "io/err.h"
#include "model/model.h"

typedef struct sft_sampling {
    int greedy;         /* 1: argmax, the rest ignored */
    double temperature; /* > 0 */
    int top_k;          /* 0: off */
    double top_p;       /* 1.0: off */
    uint64_t seed;
} sft_sampling;

/* Generates up to max_new tokens after prompt[0..prompt_len) into out
 * (capacity max_new); *out_len is the number written, the eos token included
 * when one ended the generation. A model with a LoRA adapter must be merged
 * first (sft_lora_merge). */
int sft_generate(const sft_model *m, const int32_t *prompt, int prompt_len, int max_new, const sft_sampling *sampling,
                 const int32_t *eos_ids, int eos_count, int32_t *out, int *out_len, sft_err *err);

#endif
