/* parity_model.h: the `sft parity` checkers for model_* and lora_* entries of
 * a fixture dir laid out like tests/fixtures/hf (see its README): forward
 * (loss, logsumexp, argmax, logits), backward (every gradient statistic),
 * clipping, two AdamW steps, greedy decoding and, for LoRA, merged weights,
 * each against the numbers transformers and PEFT produced. */
#ifndef SFT_MODEL_PARITY_MODEL_H
#define SFT_MODEL_PARITY_MODEL_H

#include <jansson.h>

#include "io/err.h"
#include "io/parity.h"

/* Both record one line per check in p; they return -1 only when the entry
 * could not be run at all (err says why: a missing model dir, a malformed entry). */
int sft_parity_check_model(const json_t *entry, const char *key, const char *dir, sft_parity *p,
                           sft_err *err);
int sft_parity_check_lora(const json_t *entry, const char *key, const char *dir, sft_parity *p, sft_err *err);

#endif
