/* template_encode.c: chat templates joined with the tokenizer: the template
 * of a tokenizer directory, and render + encode + assistant mask in one call
 * (what apply_chat_template(..., tokenize=True, return_dict=True,
 * return_assistant_tokens_mask=True) returns). Kept apart from template.c so
 * that rendering needs no tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "tok/template.h"

sft_chat_template *sft_chat_template_for_tokenizer(const sft_tokenizer *tok, const char *name, sft_err *err) {
    return sft_chat_template_new(name, sft_tokenizer_chat_template(tok), sft_tokenizer_bos_token(tok),
                                 sft_tokenizer_eos_token(tok), err);
}

int sft_chat_encode(const sft_chat_template *tmpl, const sft_tokenizer *tok, const sft_chat_message *messages,
                    size_t count, int add_generation_prompt, sft_chat_encoding *out, sft_err *err) {
    if (sft_chat_render_messages(tmpl, messages, count, add_generation_prompt, &out->render, err)) return -1;
    /* add_special_tokens=False: the template already wrote BOS where the
     * model wants it. */
    if (sft_tokenizer_encode(tok, out->render.text, out->render.len, 0, &out->tokens, err)) return -1;
    size_t n = out->tokens.count;
    if (n > out->mask_cap) {
        uint8_t *p = realloc(out->assistant_mask, n);
        if (!p) return sft_errf(err, "out of memory for an assistant mask of %zu tokens", n);
        out->assistant_mask = p;
        out->mask_cap = n;
    }
    sft_chat_assistant_mask(out->render.text, out->render.len, out->render.spans, out->render.span_count,
                            out->tokens.offsets, n, out->assistant_mask);
    return 0;
}

void sft_chat_encoding_free(sft_chat_encoding *enc) {
    sft_chat_render_free(&enc->render);
    sft_encoding_free(&enc->tokens);
    free(enc->assistant_mask);
    memset(enc, 0, sizeof *enc);
}
