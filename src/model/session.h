/* session.h: a model ready to answer: weights (with a LoRA adapter merged in
 * when one is given), its tokenizer, chat template and generation settings.
 * `sft generate` and `sft chat` are thin layers over it. */
#ifndef SFT_MODEL_SESSION_H
#define SFT_MODEL_SESSION_H

#include <stddef.h>

#include "io/config.h"
#include "io/err.h"
#include "model/generate.h"
#include "model/model.h"
#include "tok/template.h"
#include "tok/tokenizer.h"

typedef struct sft_session {
    sft_model *model;
    sft_tokenizer *tok;
    sft_chat_template *tmpl; /* NULL when the model has none and raw prompts are used */
    sft_generation_config gen;
    int32_t eos_ids[SFT_MAX_EOS + 1];
    int eos_count;
} sft_session;

/* adapter_dir and template_name may be NULL (no adapter; the template the
 * tokenizer names or detects). need_template: fail when there is none. */
int sft_session_open(sft_session *s, const char *model_dir, const char *adapter_dir,
                     const char *template_name, int need_template, sft_err *err);
void sft_session_close(sft_session *s);

/* The assistant's reply to a conversation (rendered with the chat template
 * and its generation prompt), or, when messages is NULL, the continuation of
 * the raw text `prompt` (tokenized with the tokenizer's special tokens).
 * *text is malloc'ed, decoded without special tokens; *new_tokens counts the
 * generated tokens. */
int sft_session_generate(sft_session *s, const sft_chat_message *messages, size_t count, const char *prompt,
                         int max_new, const sft_sampling *sampling, char **text, int *new_tokens,
                         sft_err *err);

#endif
