/* session.c: loading a model dir for generation (see session.h): model,
 * tokenizer (checked against the vocabulary), optional PEFT adapter merged
 * into the weights, chat template, and the eos ids of generation_config.json
 * plus the tokenizer's eos token (the end-of-turn token of chat models). */
#include "model/session.h"

#include <stdlib.h>
#include <string.h>

#include "model/lora.h"

void sft_session_close(sft_session *s) {
    sft_model_free(s->model);
    sft_tokenizer_free(s->tok);
    sft_chat_template_free(s->tmpl);
    memset(s, 0, sizeof *s);
}

int sft_session_open(sft_session *s, const char *model_dir, const char *adapter_dir,
                     const char *template_name, int need_template, sft_err *err) {
    memset(s, 0, sizeof *s);
    s->model = sft_model_load(model_dir, err);
    if (!s->model) return -1;
    s->tok = sft_tokenizer_load(model_dir, err);
    if (!s->tok) goto fail;
    if (sft_model_check_vocab(s->model, sft_tokenizer_vocab_size(s->tok), err)) {
        sft_err_prefix(err, "%s", model_dir);
        goto fail;
    }
    if (adapter_dir) {
        if (sft_lora_load(s->model, adapter_dir, err)) goto fail;
        sft_lora_merge(s->model);
    }
    if (sft_generation_config_load(model_dir, &s->model->cfg, &s->gen, err)) goto fail;
    for (int i = 0; i < s->gen.eos_count; i++)
        s->eos_ids[s->eos_count++] = s->gen.eos_token_ids[i];
    const char *eos = sft_tokenizer_eos_token(s->tok);
    int32_t eos_id = eos ? sft_tokenizer_token_to_id(s->tok, eos) : -1;
    int known = 0;
    for (int i = 0; i < s->eos_count; i++)
        known |= s->eos_ids[i] == eos_id;
    if (eos_id >= 0 && !known) s->eos_ids[s->eos_count++] = eos_id;
    if (need_template || template_name) {
        s->tmpl = sft_chat_template_for_tokenizer(s->tok, template_name, err);
        if (!s->tmpl) {
            sft_err_prefix(err, "%s", model_dir);
            goto fail;
        }
    }
    return 0;
fail:
    sft_session_close(s);
    return -1;
}

int sft_session_generate(sft_session *s, const sft_chat_message *messages, size_t count, const char *prompt,
                         int max_new, const sft_sampling *sampling, char **text, int *new_tokens,
                         sft_err *err) {
    *text = NULL;
    *new_tokens = 0;
    if (max_new <= 0) return sft_errf(err, "max_new_tokens %d must be positive", max_new);
    const int32_t *ids;
    size_t n_ids;
    sft_chat_encoding chat;
    sft_encoding raw;
    memset(&chat, 0, sizeof chat);
    memset(&raw, 0, sizeof raw);
    if (messages) {
        if (!s->tmpl) return sft_errf(err, "the model has no chat template (give one with --template)");
        if (sft_chat_encode(s->tmpl, s->tok, messages, count, 1, &chat, err)) return -1;
        ids = chat.tokens.ids, n_ids = chat.tokens.count;
    } else {
        if (sft_tokenizer_encode(s->tok, prompt, strlen(prompt), 1, &raw, err)) return -1;
        ids = raw.ids, n_ids = raw.count;
    }
    int32_t *out = malloc(sizeof(int32_t) * (size_t)max_new);
    int rc = -1, n = 0;
    size_t len;
    if (!out) {
        sft_errf(err, "out of memory");
        goto done;
    }
    if (sft_generate(s->model, ids, (int)n_ids, max_new, sampling, s->eos_ids, s->eos_count, out, &n, err))
        goto done;
    if (sft_tokenizer_decode(s->tok, out, (size_t)n, 1, text, &len, err)) goto done;
    *new_tokens = n;
    rc = 0;
done:
    free(out);
    if (messages)
        sft_chat_encoding_free(&chat);
    else
        sft_encoding_free(&raw);
    return rc;
}
