/* test_tokenizer.c: the tokenizer (src/tok) against outputs of the Hugging
 * Face tokenizers library. Family cases use the fixtures' real vocabularies
 * (GPT-2, Llama 3, Llama 2) with expected ids copied from
 * tests/fixtures/hf/reference.json; behaviours the fixtures do not reach
 * (added-token flags, Metaspace, decoders, bad files) use small
 * tokenizer.json files written here, with the expected result worked out
 * from the library's source (tokenizers/src). Each big tokenizer is loaded
 * once, so that the test stays fast under valgrind. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tok/tokenizer.h"

#define FIX "tests/fixtures/hf/"

/* ---------- helpers ---------- */

static char tmp_dir[64];

/* Writes NAME in a fresh temporary folder; returns the folder. */
static const char *write_tmp(const char *name, const char *text) {
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "/tmp/sft-test-tok-XXXXXX");
        if (!mkdtemp(tmp_dir)) abort();
    }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    return tmp_dir;
}

static void clean_tmp(void) {
    if (!tmp_dir[0]) return;
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"};
    for (size_t i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, names[i]);
        unlink(path);
    }
    rmdir(tmp_dir);
    tmp_dir[0] = 0;
}

/* Loads a tokenizer.json given as text. */
static sft_tokenizer *tiny(const char *json, sft_err *err) {
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", write_tmp("tokenizer.json", json));
    sft_tokenizer *tok = sft_tokenizer_load_file(path, err);
    clean_tmp();
    return tok;
}

/* Encodes and compares the ids; prints both lists on a mismatch. */
static void check_ids(const sft_tokenizer *tok, const char *text, size_t len, int add_special,
                      const int32_t *want, size_t n, int line) {
    sft_encoding enc = {0};
    sft_err err;
    if (sft_tokenizer_encode(tok, text, len, add_special, &enc, &err)) {
        fprintf(stderr, "  line %d: encode failed: %s\n", line, err.msg);
        sft_test_failures++;
        return;
    }
    int same = enc.count == n;
    for (size_t i = 0; same && i < n; i++)
        same = enc.ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "  line %d: ids of \"%.*s\": got", line, (int)len, text);
        for (size_t i = 0; i < enc.count; i++)
            fprintf(stderr, " %d", enc.ids[i]);
        fprintf(stderr, ", expected");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
        sft_test_failures++;
    }
    sft_encoding_free(&enc);
}
#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))
#define CHECK_IDS(tok, text, special, ...)                                                                   \
    check_ids(tok, text, strlen(text), special, IDS(__VA_ARGS__), __LINE__)
#define CHECK_NO_IDS(tok, text, special) check_ids(tok, text, strlen(text), special, NULL, 0, __LINE__)

static void check_decode(const sft_tokenizer *tok, const int32_t *ids, size_t n, int skip, const char *want,
                         size_t want_len, int line) {
    char *text;
    size_t len;
    sft_err err;
    if (sft_tokenizer_decode(tok, ids, n, skip, &text, &len, &err)) {
        fprintf(stderr, "  line %d: decode failed: %s\n", line, err.msg);
        sft_test_failures++;
        return;
    }
    if (len != want_len || memcmp(text, want, len)) {
        fprintf(stderr, "  line %d: decoded \"%s\", expected \"%.*s\"\n", line, text, (int)want_len, want);
        sft_test_failures++;
    }
    free(text);
}
#define CHECK_DECODE(tok, skip, want, ...)                                                                   \
    check_decode(tok, IDS(__VA_ARGS__), skip, want, strlen(want), __LINE__)

/* The encoding of text; the caller frees it. */
static sft_encoding encode(const sft_tokenizer *tok, const char *text) {
    sft_encoding enc = {0};
    sft_err err;
    if (sft_tokenizer_encode(tok, text, strlen(text), 0, &enc, &err)) {
        fprintf(stderr, "  encode failed: %s\n", err.msg);
        sft_test_failures++;
    }
    return enc;
}

/* ---------- the real families ---------- */

TEST(gpt2_family_encodes_decodes_and_reports_byte_offsets) {
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(FIX "models/gpt2-tiny", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_INT(sft_tokenizer_vocab_size(tok), 50257);
    CHECK_IDS(tok, "Hello world", 0, 15496, 995);
    /* ByteLevel post-processor: no special tokens even when asked. */
    CHECK_IDS(tok, "Hello world", 1, 15496, 995);
    /* Characters split into bytes: "ñ" is two byte-level tokens. */
    CHECK_IDS(tok, "ã é ñ ü ß", 0, 26102, 38251, 6184, 109, 6184, 120, 6184, 253);
    /* <|endoftext|> (normalized=true) is matched inside the text. */
    CHECK_IDS(tok, "The end.<|endoftext|>Next doc", 0, 464, 886, 13, 50256, 10019, 2205);
    CHECK_DECODE(tok, 0, "The end.<|endoftext|>Next doc", 464, 886, 13, 50256, 10019, 2205);
    CHECK_DECODE(tok, 1, "The end.Next doc", 464, 886, 13, 50256, 10019, 2205);
    /* No ids: the empty string (a fuzz finding: the byte-level decoder once did pointer arithmetic on NULL).
     */
    check_decode(tok, NULL, 0, 0, "", 0, __LINE__);
    CHECK_NO_IDS(tok, "", 0);

    sft_encoding enc = encode(tok, "naïve ñ");
    /* "na" "ïve" " Ã" "±": offsets are bytes of the input; both halves of ñ cover all of it. */
    CHECK_INT(enc.count, 4);
    if (enc.count == 4) {
        CHECK_INT(enc.offsets[2], 2);
        CHECK_INT(enc.offsets[3], 6);
        CHECK_INT(enc.offsets[4], 6);
        CHECK_INT(enc.offsets[5], 9);
        CHECK_INT(enc.offsets[6], 7);
        CHECK_INT(enc.offsets[7], 9);
        CHECK_STR(enc.tokens[1], "Ã¯ve");
    }
    sft_encoding_free(&enc);
    CHECK_STR(sft_tokenizer_id_to_token(tok, 995), "Ġworld");
    CHECK_INT(sft_tokenizer_token_to_id(tok, "<|endoftext|>"), 50256);
    CHECK_INT(sft_tokenizer_token_to_id(tok, "no such token"), -1);
    CHECK(sft_tokenizer_id_to_token(tok, 50257) == NULL);
    CHECK_STR(sft_tokenizer_bos_token(tok), "<|endoftext|>");
    CHECK_STR(sft_tokenizer_eos_token(tok), "<|endoftext|>");
    CHECK(sft_tokenizer_chat_template(tok) != NULL);
    sft_tokenizer_free(tok);
}

TEST(llama3_family_splits_with_its_regex_and_adds_bos) {
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(FIX "models/llama3-tiny", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_INT(sft_tokenizer_vocab_size(tok), 128256);
    CHECK_IDS(tok, "Hello world", 0, 9906, 1917);
    CHECK_IDS(tok, "Hello world", 1, 128000, 9906, 1917);
    CHECK_IDS(tok, "<|eot_id|> appears in text", 0, 128009, 8111, 304, 1495);
    /* ignore_merges: "¬ģ" is a vocabulary entry, taken whole. */
    CHECK_IDS(tok, "ﬁ ligature", 0, 171, 71831, 29413, 1598);
    CHECK_NO_IDS(tok, "", 0);
    CHECK_IDS(tok, "", 1, 128000);
    CHECK_DECODE(tok, 0, "<|begin_of_text|>Hello world", 128000, 9906, 1917);
    CHECK_DECODE(tok, 1, "Hello world", 128000, 9906, 1917);
    CHECK_STR(sft_tokenizer_eos_token(tok), "<|eot_id|>");
    CHECK(sft_tokenizer_is_special_id(tok, 128009));
    CHECK(!sft_tokenizer_is_special_id(tok, 9906));
    sft_tokenizer_free(tok);
}

TEST(llama2_family_byte_fallback_and_legacy_normalizer) {
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(FIX "models/llama2-tiny", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "Hello world", 0, 15043, 3186);
    CHECK_IDS(tok, "Hello world", 1, 1, 15043, 3186);
    /* The legacy Prepend("▁") runs on each piece between special tokens. */
    CHECK_IDS(tok, "<s> and </s> literal", 0, 1, 29871, 322, 29871, 2, 29871, 16333);
    CHECK_DECODE(tok, 0, "<s>  and </s>  literal", 1, 29871, 322, 29871, 2, 29871, 16333);
    /* "\n" has no token: byte fallback <0x0A>. */
    CHECK_IDS(tok, "user\nhi", 0, 1404, 13, 2918);
    CHECK_DECODE(tok, 0, "user\nhi", 1404, 13, 2918);
    CHECK_IDS(tok, "", 1, 1);
    /* Byte tokens that are not valid UTF-8 decode to one U+FFFD each. */
    CHECK_DECODE(tok, 0, "\xEF\xBF\xBD\xEF\xBF\xBD", 231, 231);
    sft_tokenizer_free(tok);
}

TEST(invalid_utf8_is_encoded_as_bytes) {
    sft_err err;
    sft_tokenizer *gpt2 = sft_tokenizer_load(FIX "models/gpt2-tiny", &err);
    sft_tokenizer *llama2 = sft_tokenizer_load(FIX "models/llama2-tiny", &err);
    CHECK(gpt2 && llama2);
    if (!gpt2 || !llama2) {
        sft_tokenizer_free(gpt2);
        sft_tokenizer_free(llama2);
        return;
    }
    const char bad[] = "ok\xff\xc3(";
    sft_encoding enc = {0};
    CHECK_INT(sft_tokenizer_encode(gpt2, bad, 5, 0, &enc, &err), 0);
    /* Each invalid byte becomes its byte-level token: 0xFF is "ÿ", 0xC3 is "Ã". */
    int32_t want_ff = sft_tokenizer_token_to_id(gpt2, "ÿ"), want_c3 = sft_tokenizer_token_to_id(gpt2, "Ã");
    int saw_ff = 0, saw_c3 = 0;
    for (size_t i = 0; i < enc.count; i++) {
        saw_ff |= enc.ids[i] == want_ff;
        saw_c3 |= enc.ids[i] == want_c3;
    }
    CHECK(saw_ff && saw_c3);
    char *text;
    size_t len;
    CHECK_INT(sft_tokenizer_decode(gpt2, enc.ids, enc.count, 0, &text, &len, &err), 0);
    /* Decoding gives the bytes back, invalid ones as U+FFFD (from_utf8_lossy). */
    CHECK_STR(text, "ok\xEF\xBF\xBD\xEF\xBF\xBD(");
    free(text);
    CHECK_INT(sft_tokenizer_encode(llama2, bad, 5, 0, &enc, &err), 0);
    CHECK_INT(sft_tokenizer_token_to_id(llama2, "<0xFF>"), 258);
    int saw = 0;
    for (size_t i = 0; i < enc.count; i++)
        saw |= enc.ids[i] == 258;
    CHECK(saw);
    sft_encoding_free(&enc);
    sft_tokenizer_free(gpt2);
    sft_tokenizer_free(llama2);
}

/* ---------- small tokenizers for the flags the fixtures do not use ---------- */

/* Characters a b c, merges a+b then ab+c, an unk token, no pre-tokenizer. */
#define TINY_MODEL(extra)                                                                                    \
    "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\"" extra ", \"vocab\": "                          \
    "{\"<unk>\": 0, \"a\": 1, \"b\": 2, \"c\": 3, \"ab\": 4, \"abc\": 5, \" \": 6, \"bc\": 7}, \"merges\": " \
    "[\"a b\", \"ab c\", \"b c\"]}"

TEST(bpe_merges_by_rank_and_fuses_unknown_characters) {
    sft_err err;
    sft_tokenizer *tok = tiny("{" TINY_MODEL(", \"fuse_unk\": true") "}", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "abc", 0, 5);     /* a b c -> ab c -> abc */
    CHECK_IDS(tok, "bcab", 0, 7, 4); /* rank 2 "b c" only where "a b" is not first */
    CHECK_IDS(tok, "xxa", 0, 0, 1);  /* two unknown characters fused into one <unk> */
    CHECK_NO_IDS(tok, "", 0);
    /* No decoder: tokens joined by spaces. */
    CHECK_DECODE(tok, 0, "abc <unk> a", 5, 0, 1);
    sft_tokenizer_free(tok);
}

TEST(unknown_characters_stay_separate_without_fuse_unk) {
    sft_err err;
    sft_tokenizer *tok = tiny("{" TINY_MODEL(", \"fuse_unk\": false") "}", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "xxa", 0, 0, 0, 1);
    sft_tokenizer_free(tok);
}

TEST(merges_given_as_pairs_equal_merges_given_as_strings) {
    sft_err err;
    sft_tokenizer *tok =
        tiny("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"c\": 3, "
             "\"abc\": 4}, \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"]]}}",
             &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "abcab", 0, 4, 2);
    sft_tokenizer_free(tok);
}

TEST(ignore_merges_takes_a_whole_word_from_the_vocabulary) {
    /* "abc" is in the vocabulary but no merge reaches it (only "b c"): with
     * ignore_merges the word is one token, without it "a" + "bc". */
    const char *fmt =
        "{\"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, "
        "\"bc\": 3, \"abc\": 4}, \"merges\": [\"b c\"]}}";
    char json[512];
    sft_err err;
    snprintf(json, sizeof json, fmt, "true");
    sft_tokenizer *tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_IDS(tok, "abc", 0, 4);
    sft_tokenizer_free(tok);
    snprintf(json, sizeof json, fmt, "false");
    tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_IDS(tok, "abc", 0, 0, 3);
    sft_tokenizer_free(tok);
}

/* Added tokens with lstrip/rstrip ("[M]") and single_word ("<w>"), matched in the raw text. */
#define ADDED_TOKENS                                                                                         \
    "\"added_tokens\": [{\"id\": 8, \"content\": \"[M]\", \"single_word\": false, \"lstrip\": true, "        \
    "\"rstrip\": true, \"normalized\": false, \"special\": true}, {\"id\": 9, \"content\": \"<w>\", "        \
    "\"single_word\": true, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": "      \
    "false}, "                                                                                               \
    "{\"id\": 10, \"content\": \"cc\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "       \
    "\"normalized\": true, \"special\": false}, {\"id\": 11, \"content\": \"cccc\", \"single_word\": "       \
    "false, "                                                                                                \
    "\"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false}]"

TEST(added_tokens_strip_spaces_and_respect_single_word) {
    sft_err err;
    sft_tokenizer *tok = tiny("{" ADDED_TOKENS ", " TINY_MODEL(", \"fuse_unk\": true") "}", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    /* lstrip and rstrip take the spaces around "[M]" into its match. */
    sft_encoding enc = encode(tok, "a [M] b");
    CHECK_INT(enc.count, 3);
    if (enc.count == 3) {
        CHECK_INT(enc.ids[1], 8);
        CHECK_STR(enc.tokens[1], " [M] ");
        CHECK_INT(enc.offsets[2], 1);
        CHECK_INT(enc.offsets[3], 6);
    }
    sft_encoding_free(&enc);
    /* single_word: "<w>" glued to letters is not the added token ("<w>" becomes one fused unk). */
    CHECK_IDS(tok, "a<w>c", 0, 1, 0, 3);
    CHECK_IDS(tok, "a <w> c", 0, 1, 6, 9, 6, 3);
    /* Leftmost-longest: "cccc" wins over "cc" at the same start. */
    CHECK_IDS(tok, "acccccc", 0, 1, 11, 10);
    /* skip_special drops "[M]" (special) but not "<w>"; without a decoder tokens are joined by spaces. */
    CHECK_DECODE(tok, 1, "a   <w>", 1, 8, 6, 9);
    CHECK_DECODE(tok, 0, "a [M]   <w>", 1, 8, 6, 9);
    sft_tokenizer_free(tok);
}

TEST(normalized_added_tokens_are_matched_after_the_normalizer) {
    /* Replace("x", "c") runs first, so "xc" becomes "cc" and matches the added token. */
    sft_err err;
    sft_tokenizer *tok = tiny("{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \"x\"}, "
                              "\"content\": \"c\"}, " ADDED_TOKENS ", " TINY_MODEL("") "}",
                              &err);
    CHECK(tok != NULL);
    if (!tok) return;
    sft_encoding enc = encode(tok, "axc");
    CHECK_INT(enc.count, 2);
    if (enc.count == 2) {
        CHECK_INT(enc.ids[0], 1);
        CHECK_INT(enc.ids[1], 10);
        CHECK_STR(enc.tokens[1], "cc");
        /* The token's offsets are in the original text: "xc" at bytes 1..3. */
        CHECK_INT(enc.offsets[2], 1);
        CHECK_INT(enc.offsets[3], 3);
    }
    sft_encoding_free(&enc);
    sft_tokenizer_free(tok);
}

/* A Llama-2-style model with the newer Metaspace pre-tokenizer. */
#define METASPACE(scheme, split)                                                                             \
    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false, "      \
    "\"rstrip\": false, \"normalized\": false, \"special\": true}], \"normalizer\": null, "                  \
    "\"pre_tokenizer\": "                                                                                    \
    "{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"" scheme                   \
    "\", \"split\": " split                                                                                  \
    "}, \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"" scheme   \
    "\", \"split\": " split                                                                                  \
    "}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"<s>\": 0, \"\u2581\": 1, \"a\": 2, "                    \
    "\"b\": 3, \"\u2581a\": 4, \"\u2581b\": 5}, \"merges\": [\"\u2581 a\", \"\u2581 b\"]}}"

TEST(metaspace_prepends_only_at_the_start_with_scheme_first) {
    sft_err err;
    sft_tokenizer *tok = tiny(METASPACE("first", "false"), &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "a b", 0, 4, 5);
    /* After "<s>" the piece does not start the text: no "▁" prepended. */
    CHECK_IDS(tok, "<s>a b", 0, 0, 2, 5);
    /* The first token's "▁" is dropped when decoding, the others become spaces. */
    CHECK_DECODE(tok, 0, "a b", 4, 5);
    CHECK_DECODE(tok, 0, "<s>a b", 0, 2, 5);
    sft_tokenizer_free(tok);
    tok = tiny(METASPACE("always", "true"), &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "<s>a b", 0, 0, 4, 5);
    /* Already starting with a space: nothing more is prepended. */
    CHECK_IDS(tok, " a", 0, 4);
    sft_tokenizer_free(tok);
    tok = tiny(METASPACE("never", "true"), &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "a b", 0, 2, 5);
    CHECK_DECODE(tok, 0, " a b", 4, 5);
    sft_tokenizer_free(tok);
}

TEST(split_pre_tokenizer_behaviours) {
    /* Split on "-" (a String pattern) with each behaviour; the model has every
     * character and the merge "a -" so that the grouping shows in the ids. */
    const char *fmt =
        "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\", "
        "\"invert\": false}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"-\": 1, \"a-\": 2, "
        "\"-a\": 3}, \"merges\": [\"a -\", \"- a\"]}}";
    struct {
        const char *behavior;
        int32_t ids[4];
        size_t n;
    } cases[] = {
        {"Removed", {0, 0}, 2},            /* a | a */
        {"Isolated", {0, 1, 0}, 3},        /* a | - | a */
        {"MergedWithPrevious", {2, 0}, 2}, /* a- | a */
        {"MergedWithNext", {0, 3}, 2},     /* a | -a */
        {"Contiguous", {0, 1, 0}, 3},      /* a | - | a */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json, fmt, cases[i].behavior);
        sft_err err;
        sft_tokenizer *tok = tiny(json, &err);
        CHECK(tok != NULL);
        if (!tok) continue;
        check_ids(tok, "a-a", 3, 0, cases[i].ids, cases[i].n, __LINE__);
        sft_tokenizer_free(tok);
    }
}

TEST(llama2_style_decoder_chain) {
    /* Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0) as Llama 2 writes it. */
    sft_err err;
    sft_tokenizer *tok = tiny("{\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", "
                              "\"pattern\": {\"String\": "
                              "\"\u2581\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": "
                              "\"Fuse\"}, {\"type\": \"Strip\", "
                              "\"content\": \" \", \"start\": 1, \"stop\": 0}]}, \"model\": {\"type\": "
                              "\"BPE\", \"byte_fallback\": true, "
                              "\"vocab\": {\"\u2581hi\": 0, \"<0xC3>\": 1, \"<0xA9>\": 2, \"<0xFF>\": 3, "
                              "\"\u2581\": 4}, \"merges\": []}}",
                              &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_DECODE(tok, 0, "hi\xC3\xA9", 0, 1, 2);  /* <0xC3><0xA9> is "é" */
    CHECK_DECODE(tok, 0, "hi\xEF\xBF\xBD", 0, 3); /* a lone 0xFF: U+FFFD */
    CHECK_DECODE(tok, 0, " hi", 4, 0);            /* only one leading space is stripped */
    CHECK_IDS(tok, "\xC3\xA9", 0, 1, 2);          /* no "é" token: its bytes */
    sft_tokenizer_free(tok);
}

TEST(template_post_processor_adds_tokens_only_when_asked) {
    sft_err err;
    sft_tokenizer *tok = tiny(
        "{\"added_tokens\": [{\"id\": 8, \"content\": \"[M]\", \"special\": true}], \"post_processor\": "
        "{\"type\": "
        "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"[M]\", \"type_id\": 0}}, "
        "{\"Sequence\": "
        "{\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"[M]\", \"type_id\": 0}}], \"pair\": "
        "[], "
        "\"special_tokens\": {\"[M]\": {\"id\": \"[M]\", \"ids\": [8], \"tokens\": [\"[M]\"]}}}, " TINY_MODEL(
            "") "}",
        &err);
    CHECK(tok != NULL);
    if (!tok) return;
    CHECK_IDS(tok, "abc", 0, 5);
    CHECK_IDS(tok, "abc", 1, 8, 5, 8);
    CHECK_IDS(tok, "", 1, 8, 8);
    sft_tokenizer_free(tok);
}

/* ---------- configuration around tokenizer.json ---------- */

TEST(tokenizer_config_tokens_and_named_chat_templates) {
    write_tmp("tokenizer.json", "{" TINY_MODEL("") "}");
    write_tmp(
        "tokenizer_config.json",
        "{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\", "
        "\"chat_template\": "
        "[{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}");
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(tmp_dir, &err);
    CHECK(tok != NULL);
    if (tok) {
        CHECK_STR(sft_tokenizer_bos_token(tok), "<s>");
        CHECK_STR(sft_tokenizer_eos_token(tok), "</s>");
        CHECK(sft_tokenizer_pad_token(tok) == NULL);
        CHECK_STR(sft_tokenizer_chat_template(tok), "D");
        sft_tokenizer_free(tok);
    }
    /* chat_template.jinja wins over tokenizer_config.json. */
    write_tmp("chat_template.jinja", "J");
    tok = sft_tokenizer_load(tmp_dir, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_STR(sft_tokenizer_chat_template(tok), "J");
    sft_tokenizer_free(tok);
    clean_tmp();
}

/* ---------- bad files: one clear error each ---------- */

TEST(merges_naming_unknown_tokens_are_an_error) {
    sft_err err;
    err.msg[0] = 0;
    sft_tokenizer *tok = tiny("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                              "\"merges\": [\"a b\", \"a zz\"]}}",
                              &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "tokenizer.json: model.merges[1] \"a zz\": token \"zz\" is not in the vocabulary");
    tok = tiny(
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}",
        &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "model.merges[0] \"a b\": the merged token \"ab\" is not in the vocabulary");
    tok = tiny("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a  a\"]}}", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "model.merges[0] \"a  a\": expected two tokens separated by one space");
}

TEST(invalid_json_is_an_error_with_its_position) {
    sft_err err;
    sft_tokenizer *tok = tiny("{\"model\": {\"type\": \"BPE\",, }", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "tokenizer.json:1:");
    CHECK_ERR_HAS(err.msg, "invalid JSON");
    tok = sft_tokenizer_load("/nonexistent/folder", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "/nonexistent/folder/tokenizer.json: no tokenizer.json");
}

TEST(unsupported_components_are_named) {
    sft_err err;
    sft_tokenizer *tok = tiny("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "model type \"WordPiece\" is not supported");
    tok = tiny("{\"normalizer\": {\"type\": \"Lowercase\"}, " TINY_MODEL("") "}", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "normalizer type \"Lowercase\" is not supported");
    tok = tiny("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
               "\"Whitespace\"}]}, " TINY_MODEL("") "}",
               &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "pre_tokenizer type \"Whitespace\" is not supported");
    tok = tiny("{\"decoder\": {\"type\": \"WordPiece\"}, " TINY_MODEL("") "}", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "decoder type \"WordPiece\" is not supported");
    tok = tiny("{\"post_processor\": {\"type\": \"BertProcessing\"}, " TINY_MODEL("") "}", &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "post_processor type \"BertProcessing\" is not supported");
    tok = tiny("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
               "\"Isolated\", "
               "\"invert\": false}, " TINY_MODEL("") "}",
               &err);
    CHECK(tok == NULL);
    CHECK_ERR_HAS(err.msg, "pre_tokenizer Split: invalid regex /(/");
}

TEST(unicode_normalizers_compose_and_decompose) {
    /* NFC (Qwen2's normalizer): "e" + U+0301 -> "é", Hangul jamo L + V -> one syllable. */
    const char *fmt =
        "{\"normalizer\": {\"type\": \"%s\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"\u00e9\": 0, "
        "\"\uac00\": 1, \"e\": 2, \"\u0301\": 3, \"f\": 4, \"i\": 5, \"\ufb01\": 6, \"x\": 7}, \"merges\": "
        "[]}}";
    char json[512];
    sft_err err;
    snprintf(json, sizeof json, fmt, "NFC");
    sft_tokenizer *tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) {
        CHECK_IDS(tok, "xe\xcc\x81x", 0, 7, 0, 7);
        CHECK_IDS(tok, "\xe1\x84\x80\xe1\x85\xa1", 0, 1);
        CHECK_IDS(tok, "\xef\xac\x81", 0, 6); /* "ﬁ" is already NFC */
        sft_encoding enc = encode(tok, "xe\xcc\x81x");
        /* The composed "é" covers both original characters (bytes 1..4). */
        if (enc.count == 3) {
            CHECK_INT(enc.offsets[2], 1);
            CHECK_INT(enc.offsets[3], 4);
            CHECK_INT(enc.offsets[4], 4);
        }
        sft_encoding_free(&enc);
        sft_tokenizer_free(tok);
    }
    snprintf(json, sizeof json, fmt, "NFD");
    tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_IDS(tok, "\xc3\xa9", 0, 2, 3);
    sft_tokenizer_free(tok);
    snprintf(json, sizeof json, fmt, "NFKC");
    tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_IDS(tok, "\xef\xac\x81", 0, 4, 5); /* "ﬁ" -> "f" "i" */
    sft_tokenizer_free(tok);
}

/* Two threads encode the same texts at once (sharing the word cache) and
 * must get what one thread gets. */
struct thread_job {
    const sft_tokenizer *tok;
    long checksum;
    int failed;
};

static const char *thread_texts[] = {"The quick brown fox jumps over the lazy dog.", "naïve café résumé",
                                     "def f(x):\n    return x ** 2  # square\n", "中文分词测试，你好世界。",
                                     "I'm sure you'll see they've said it's fine"};

static void *encode_many(void *arg) {
    struct thread_job *job = arg;
    sft_encoding enc = {0};
    sft_err err;
    for (int round = 0; round < 200; round++)
        for (size_t k = 0; k < sizeof thread_texts / sizeof thread_texts[0]; k++) {
            if (sft_tokenizer_encode(job->tok, thread_texts[k], strlen(thread_texts[k]), 0, &enc, &err)) {
                job->failed = 1;
                break;
            }
            for (size_t i = 0; i < enc.count; i++)
                job->checksum += (long)enc.ids[i] * (long)(i + 1);
        }
    sft_encoding_free(&enc);
    return NULL;
}

TEST(encoding_from_two_threads_gives_the_same_ids) {
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(FIX "models/gpt2-tiny", &err);
    CHECK(tok != NULL);
    if (!tok) return;
    struct thread_job alone = {tok, 0, 0};
    encode_many(&alone);
    sft_tokenizer_free(tok);
    tok = sft_tokenizer_load(FIX "models/gpt2-tiny", &err); /* a fresh, empty word cache */
    if (!tok) return;
    struct thread_job jobs[2] = {{tok, 0, 0}, {tok, 0, 0}};
    pthread_t threads[2];
    for (int t = 0; t < 2; t++)
        CHECK_INT(pthread_create(&threads[t], NULL, encode_many, &jobs[t]), 0);
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    for (int t = 0; t < 2; t++) {
        CHECK(!jobs[t].failed);
        CHECK_INT(jobs[t].checksum, alone.checksum);
    }
    sft_tokenizer_free(tok);
}

TEST(digits_pre_tokenizer_splits_numbers) {
    /* SmolLM-style: Digits(individual_digits) before the model; "12" exists but digits stay apart. */
    const char *fmt =
        "{\"pre_tokenizer\": {\"type\": \"Digits\", \"individual_digits\": %s}, \"model\": {\"type\": "
        "\"BPE\", \"vocab\": {\"a\": 0, \"1\": 1, \"2\": 2, \"12\": 3, \"a1\": 4, \"\u0662\": 5}, "
        "\"merges\": [\"1 2\", \"a 1\"]}}";
    char json[512];
    sft_err err;
    snprintf(json, sizeof json, fmt, "true");
    sft_tokenizer *tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_IDS(tok, "a12\xd9\xa2", 0, 0, 1, 2, 5); /* U+0662 ARABIC-INDIC TWO is numeric too */
    sft_tokenizer_free(tok);
    snprintf(json, sizeof json, fmt, "false");
    tok = tiny(json, &err);
    CHECK(tok != NULL);
    if (tok) CHECK_IDS(tok, "a12", 0, 0, 3);
    sft_tokenizer_free(tok);
}
