/* samples.h: sample generations while a model trains.
 *
 * At each evaluation the training loop lets the model answer a few fixed
 * validation prompts (greedy, a short max_new_tokens, KV-cache decoding of
 * the model as it is, LoRA unmerged included) and appends one line per
 * prompt to RUN/samples.jsonl in the format monitor/report.h documents:
 *   {"step": S, "prompt": "...", "output": "...", "reference": "..."}
 * so report.html shows how the answers change as training goes, next to
 * the curves. The prompts are the conversations of validation records up to
 * their last assistant turn, rendered with the run's chat template and
 * generation prompt; the reference is that turn. They are picked evenly
 * spaced through the validation set, the same ones at every evaluation;
 * records with no assistant turn to predict (plain text) are passed over. */
#ifndef SFT_TRAIN_SAMPLES_H
#define SFT_TRAIN_SAMPLES_H

#include <stdint.h>

#include "io/err.h"
#include "model/model.h"
#include "train/dataset.h"

typedef struct sft_sample_prompt {
    int32_t *ids; /* the rendered prompt, generation prompt included */
    int len;
    char *prompt;    /* what the page shows: the user's text, or "role: text" lines */
    char *reference; /* the record's answer */
} sft_sample_prompt;

typedef struct sft_samples {
    sft_sample_prompt *items;
    int count;
    int max_new_tokens;
    int32_t eos_ids[16];
    int eos_count;
    const sft_tokenizer *tok;
} sft_samples;

/* Picks up to `count` prompts from the validation set `val` (its files are
 * read again for the records' messages). eos_ids end a generation. Fewer (or
 * none) when the set has fewer usable records; prompts longer than
 * max_prompt_tokens are passed over. */
int sft_samples_init(sft_samples *s, const sft_dataset *val, const sft_encoder *enc, int count, int max_new_tokens,
                     int max_prompt_tokens, const int32_t *eos_ids, int eos_count, sft_err *err);
/* Generates every prompt's answer with m at `step` and appends the lines to
 * path (created when missing), flushed. */
int sft_samples_write(const sft_samples *s, const sft_model *m, int64_t step, const char *path, sft_err *err);
void sft_samples_free(sft_samples *s);

#endif
