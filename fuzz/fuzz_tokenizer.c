/* fuzz_tokenizer.c: libFuzzer target for tokenizer encoding and decoding
 * (src/tok). The input is arbitrary bytes (valid UTF-8 or not), encoded with
 * the GPT-2, Llama 3 and Llama 2 tokenizers of the fixtures, loaded once.
 * Checked for every input:
 *   - encoding never fails, ids are in the vocabulary, offsets lie inside
 *     the input and do not run backwards, token strings are present;
 *   - byte-level tokenizers (GPT-2, Llama 3) lose nothing: decoding gives
 *     the input back, with invalid UTF-8 replaced as Rust's
 *     String::from_utf8_lossy does;
 *   - Llama 2 (byte fallback) gives valid UTF-8 back; the input itself when
 *     it is valid UTF-8 without "▁" or an added token's text (those are the
 *     documented lossy cases of its legacy normalizer and decoder).
 * Fixtures are read from tests/fixtures/hf (run from the repository root) or
 * from $SFT_FIXTURES. Build: make fuzz; run: see fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"
#include "tok/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sft_tokenizer *gpt2, *llama3, *llama2;

static sft_tokenizer *load(const char *name) {
    const char *root = getenv("SFT_FIXTURES") ? getenv("SFT_FIXTURES") : "tests/fixtures/hf";
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", root, name);
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(path, &err);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root or set SFT_FIXTURES)\n", err.msg);
        exit(1);
    }
    return tok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    gpt2 = load("gpt2-tiny");
    llama3 = load("llama3-tiny");
    llama2 = load("llama2-tiny");
    return 0;
}

/* Encodes, checks the encoding's invariants, decodes; returns the decoded text. */
static char *round_trip(const sft_tokenizer *tok, const char *text, size_t len, size_t *out_len) {
    sft_encoding enc = {0};
    sft_err err;
    if (sft_tokenizer_encode(tok, text, len, 0, &enc, &err)) {
        fprintf(stderr, "encode failed: %s\n", err.msg);
        abort();
    }
    if (!len && enc.count) abort();
    size_t vocab = sft_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < enc.count; i++) {
        if (enc.ids[i] < 0 || (size_t)enc.ids[i] >= vocab || !enc.tokens[i]) abort();
        if (enc.offsets[2 * i] > enc.offsets[2 * i + 1] || enc.offsets[2 * i + 1] > len) abort();
    }
    char *dec;
    if (sft_tokenizer_decode(tok, enc.ids, enc.count, 0, &dec, out_len, &err)) {
        fprintf(stderr, "decode failed: %s\n", err.msg);
        abort();
    }
    /* With special tokens: the same ids behind the post-processor's. */
    size_t plain = enc.count;
    if (sft_tokenizer_encode(tok, text, len, 1, &enc, &err) || enc.count < plain) abort();
    sft_encoding_free(&enc);
    return dec;
}

static int contains(const char *s, size_t len, const char *needle) {
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0; /* long inputs add time, not coverage */
    const char *text = (const char *)data;
    char *lossy = malloc(3 * size + 1);
    if (!lossy) abort();
    size_t lossy_len = tok_utf8_lossy(text, size, lossy);
    const sft_tokenizer *byte_level[2] = {gpt2, llama3};
    for (int k = 0; k < 2; k++) {
        size_t n;
        char *dec = round_trip(byte_level[k], text, size, &n);
        if (n != lossy_len || memcmp(dec, lossy, n)) {
            fprintf(stderr, "byte-level round trip differs (%s)\n", k ? "llama3" : "gpt2");
            abort();
        }
        free(dec);
    }
    size_t n;
    char *dec = round_trip(llama2, text, size, &n);
    if (!tok_utf8_is_valid(dec, n)) abort();
    int valid = tok_utf8_is_valid(text, size);
    if (valid && !contains(text, size, "\xE2\x96\x81") && !contains(text, size, "<unk>") &&
        !contains(text, size, "<s>") && !contains(text, size, "</s>") &&
        (n != size || memcmp(dec, text, n))) {
        fprintf(stderr, "llama2 round trip differs\n");
        abort();
    }
    free(dec);
    free(lossy);
    return 0;
}
