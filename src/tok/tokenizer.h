/* tokenizer.h: a Hugging Face tokenizer.json, encoded and decoded exactly as
 * the tokenizers library does, for the BPE families of GPT-2, Llama 3,
 * Qwen2, SmolLM (byte-level) and Llama 2 / Mistral (SentencePiece-style,
 * byte fallback).
 *
 * Understood components (anything else is refused by name at load time):
 *   model           BPE (merges "a b" or [a, b], unk_token, fuse_unk,
 *                   byte_fallback, ignore_merges, subword prefix/suffix)
 *   normalizer      Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD
 *   pre_tokenizer   Sequence, ByteLevel, Split, Metaspace, Digits
 *   post_processor  Sequence, ByteLevel, TemplateProcessing
 *   decoder         Sequence, ByteLevel, Metaspace, Replace, ByteFallback,
 *                   Fuse, Strip
 *   added_tokens    special or not, lstrip, rstrip, normalized, single_word
 * Regexes run on PCRE2 with Oniguruma's meaning of \s, \w, ^ and $ (see
 * regex.c). truncation and padding are not applied (sft has --max-len). */
#ifndef SFT_TOK_TOKENIZER_H
#define SFT_TOK_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

typedef struct sft_tokenizer sft_tokenizer;

/* Loads DIR/tokenizer.json (and, for the special-token names,
 * DIR/tokenizer_config.json when present). */
sft_tokenizer *sft_tokenizer_load(const char *dir, sft_err *err);
sft_tokenizer *sft_tokenizer_load_file(const char *tokenizer_json_path, sft_err *err);
void sft_tokenizer_free(sft_tokenizer *tok);

/* The result of an encoding; owned by the caller (sft_encoding_free). */
typedef struct sft_encoding {
    int32_t *ids;
    size_t count;
    /* offsets[2*i], offsets[2*i+1]: byte range of token i in the input text
     * (the tokenizers library reports character offsets in Python; we report
     * byte offsets into the UTF-8 input; added post-processor tokens get 0,0). */
    size_t *offsets;
    size_t capacity;
    /* tokens[i]: token i's string as the tokenizers library reports it
     * (Encoding.tokens: the vocabulary string, or for an added token the
     * text it matched); valid until the next encode into this struct or
     * sft_encoding_free, and while the tokenizer lives. */
    const char **tokens;
    char *token_storage; /* holds the token strings that are not the tokenizer's own */
} sft_encoding;

/* Encodes text (len bytes, need not be NUL-terminated nor valid UTF-8:
 * invalid bytes are encoded as bytes, never an error). add_special: apply
 * the post-processor's special tokens (BOS for Llama). `out` must be
 * zero-initialised ({0}) or hold a previous result, whose buffers are
 * reused (its count is reset). The empty string gives zero ids (plus the
 * special tokens with add_special). Safe to call from several threads. */
int sft_tokenizer_encode(const sft_tokenizer *tok, const char *text, size_t len, int add_special,
                         sft_encoding *out, sft_err *err);
void sft_encoding_free(sft_encoding *enc);

/* Decodes ids to a malloc'ed NUL-terminated string (*len bytes), as
 * tokenizers' decode(ids, skip_special_tokens=skip_special). */
int sft_tokenizer_decode(const sft_tokenizer *tok, const int32_t *ids, size_t count, int skip_special,
                         char **text, size_t *len, sft_err *err);

/* Including added tokens: every id the tokenizer can produce is below it
 * (the largest id + 1). */
size_t sft_tokenizer_vocab_size(const sft_tokenizer *tok);
/* The token string of an id (NULL when out of range). */
const char *sft_tokenizer_id_to_token(const sft_tokenizer *tok, int32_t id);
/* -1 when absent. */
int32_t sft_tokenizer_token_to_id(const sft_tokenizer *tok, const char *token);

/* 1 when id is an added token marked special (what skip_special drops). */
int sft_tokenizer_is_special_id(const sft_tokenizer *tok, int32_t id);

/* Special tokens named by tokenizer_config.json (bos_token, eos_token,
 * pad_token, unk_token): the string, or NULL when absent. */
const char *sft_tokenizer_bos_token(const sft_tokenizer *tok);
const char *sft_tokenizer_eos_token(const sft_tokenizer *tok);
const char *sft_tokenizer_pad_token(const sft_tokenizer *tok);
const char *sft_tokenizer_unk_token(const sft_tokenizer *tok);
/* The chat template from DIR/chat_template.jinja or tokenizer_config.json's
 * chat_template (a string, or the "default" of a list of named templates);
 * NULL when none. */
const char *sft_tokenizer_chat_template(const sft_tokenizer *tok);

#endif
