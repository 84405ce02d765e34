/* tokens.c: token counts for `sft data stats/filter --tokenizer DIR`, with the
 * project's tokenizer and chat templates and the training encoder, so that
 * the numbers are the ones training will see (see pipeline.h). */
#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "tok/template.h"
#include "tok/tokenizer.h"
#include "train/dataset.h"

struct sft_token_counter {
    sft_tokenizer *tok;
    sft_chat_template *tmpl;
    sft_encoder enc;
    sft_encoded encoded;
    sft_encoding plain;
    char note[SFT_ERR_MSG_MAX];
};

sft_token_counter *sft_token_counter_open(const char *tokenizer_dir, const char *template_name,
                                          sft_err *err) {
    sft_token_counter *tc = calloc(1, sizeof *tc);
    if (!tc) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    if (!(tc->tok = sft_tokenizer_load(tokenizer_dir, err))) {
        free(tc);
        return NULL;
    }
    sft_err terr = {{0}};
    tc->tmpl = sft_chat_template_for_tokenizer(tc->tok, template_name, &terr);
    if (!tc->tmpl) {
        /* A template asked for by name must exist; an undetectable one only
         * costs the record-level counts. */
        if (template_name && strcmp(template_name, "auto")) {
            snprintf(err->msg, sizeof err->msg, "%s", terr.msg);
            sft_token_counter_free(tc);
            return NULL;
        }
        snprintf(tc->note, sizeof tc->note, "%s", terr.msg);
    }
    if (sft_encoder_init(&tc->enc, tc->tok, tc->tmpl, tokenizer_dir, err)) {
        sft_token_counter_free(tc);
        return NULL;
    }
    return tc;
}

void sft_token_counter_free(sft_token_counter *tc) {
    if (!tc) return;
    sft_encoded_free(&tc->encoded);
    sft_encoding_free(&tc->plain);
    sft_chat_template_free(tc->tmpl);
    sft_tokenizer_free(tc->tok);
    free(tc);
}

int sft_token_counter_has_template(const sft_token_counter *tc) {
    return tc->tmpl != NULL;
}
const char *sft_token_counter_template_note(const sft_token_counter *tc) {
    return tc->note;
}
const char *sft_token_counter_template_name(const sft_token_counter *tc) {
    return tc->tmpl ? sft_chat_template_name(tc->tmpl) : "none";
}

int sft_token_count_text(sft_token_counter *tc, const char *text, size_t len, size_t *tokens, sft_err *err) {
    if (sft_tokenizer_encode(tc->tok, text, len, 0, &tc->plain, err)) return -1;
    *tokens = tc->plain.count;
    return 0;
}

int sft_token_count_record(sft_token_counter *tc, const sft_record *rec, size_t *tokens, size_t *supervised,
                           sft_err *err) {
    if (sft_encode_record(&tc->enc, rec, 0, &tc->encoded, err)) return -1;
    *tokens = tc->encoded.count;
    size_t n = 0;
    for (size_t i = 0; i < tc->encoded.count; i++)
        n += tc->encoded.mask[i] != 0;
    *supervised = n;
    return 0;
}
