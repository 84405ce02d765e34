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
 * when one ended the generation. An attached LoRA adapter is applied as is
 * (merged or not gives the same tokens); dropout is off. */
int sft_generate(const sft_model *m, const int32_t *prompt, int prompt_len, int max_new,
                 const sft_sampling *sampling, const int32_t *eos_ids, int eos_count, int32_t *out,
                 int *out_len, sft_err *err);

/* One sampled token from logits [V]: temperature, then top-k (ties with the
 * k-th kept), then top-p (the smallest most-likely set whose mass reaches
 * top_p, at least one token), then a draw from rng (splitmix64 state).
 * work holds V candidates. */
typedef struct sft_candidate {
    float logit;
    int32_t id;
} sft_candidate;
int32_t sft_sample_token(const float *logits, int V, const sft_sampling *sampling, sft_candidate *work,
                         uint64_t *rng);

#endif
