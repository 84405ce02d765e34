/* test_template_mask.c: chat templates joined with the real tokenizers: ids
 * and assistant masks equal to transformers' apply_chat_template(...,
 * return_assistant_tokens_mask=True) on the fixtures and the real-text
 * corpus, for each family; the end-of-turn token inside the mask; the
 * template read from tokenizer_config.json instead of chat_template.jinja;
 * buffers reused across calls. */
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "test.h"
#include "tok/parity_chat.h"
#include "tok/template.h"
#include "tok/template_json.h"

#define FIXTURES "tests/fixtures/hf"

static sft_tokenizer *load(const char *dir) {
    sft_err err;
    sft_tokenizer *tok = sft_tokenizer_load(dir, &err);
    if (!tok) {
        fprintf(stderr, "  %s: %s\n", dir, err.msg);
        sft_test_failures++;
    }
    return tok;
}

/* Runs the chat parity checks of one chat list quietly; returns failures
 * (and adds them to the test's). */
static long run_chat_checks(const json_t *chats, const sft_tokenizer *tok, const char *label, long want_checks) {
    FILE *quiet = fopen("/dev/null", "w");
    sft_parity p = {.out = quiet ? quiet : stderr, .verbose = 0};
    sft_err err;
    int rc = sft_parity_check_chats(chats, tok, label, &p, &err);
    if (quiet) fclose(quiet);
    if (rc) {
        fprintf(stderr, "  %s: %s\n", label, err.msg);
        sft_test_failures++;
    }
    CHECK_INT(p.checks, want_checks);
    if (p.failures) {
        /* Say which, loudly. */
        sft_parity loud = {.out = stderr, .verbose = 0};
        sft_parity_check_chats(chats, tok, label, &loud, &err);
        sft_test_failures++;
    }
    return p.failures;
}

static void check_reference_entry(const char *key) {
    sft_err err;
    json_t *ref = sft_json_load_file(FIXTURES "/reference.json", &err);
    CHECK(ref != NULL);
    if (!ref) return;
    const json_t *entry = json_object_get(ref, key);
    char dir[256];
    snprintf(dir, sizeof dir, FIXTURES "/%s", json_string_value(json_object_get(entry, "dir")));
    sft_tokenizer *tok = load(dir);
    const json_t *chats = json_object_get(entry, "chat");
    /* text, ids, assistant_mask, text_gen_prompt per chat */
    if (tok) run_chat_checks(chats, tok, key, 4 * (long)json_array_size(chats));
    sft_tokenizer_free(tok);
    json_decref(ref);
}

TEST(alpaca_ids_and_masks_equal_transformers) { check_reference_entry("tokenizer_gpt2"); }
TEST(chatml_ids_and_masks_equal_transformers) { check_reference_entry("tokenizer_gpt2-chatml"); }
TEST(llama3_ids_and_masks_equal_transformers) { check_reference_entry("tokenizer_llama3"); }
TEST(llama2_ids_and_masks_equal_transformers) { check_reference_entry("tokenizer_llama2"); }

/* 60 conversations per tokenizer over text in many languages: spans that
 * start or end inside multi-byte characters, byte-fallback tokens, Llama 2's
 * spaces folded into the next token. */
TEST(corpus_masks_equal_transformers_for_every_family) {
    sft_err err;
    char *data;
    size_t len;
    CHECK_INT(sft_read_file_maybe_gz(FIXTURES "/corpus/reference_corpus.json.gz", &data, &len, &err), 0);
    json_t *corpus = sft_json_loadb(data, len, "reference_corpus.json.gz", &err);
    free(data);
    CHECK(corpus != NULL);
    if (!corpus) return;
    const char *name;
    json_t *entry;
    int families = 0;
    json_object_foreach(json_object_get(corpus, "tokenizers"), name, entry) {
        char dir[256];
        snprintf(dir, sizeof dir, FIXTURES "/%s", json_string_value(json_object_get(entry, "dir")));
        sft_tokenizer *tok = load(dir);
        const json_t *chats = json_object_get(entry, "chat");
        CHECK_INT(json_array_size(chats), 60);
        if (tok) run_chat_checks(chats, tok, name, 3 * 60); /* text, ids, assistant_mask */
        sft_tokenizer_free(tok);
        families++;
    }
    CHECK(families >= 4);
    json_decref(corpus);
}

/* The mask covers the assistant's text and its end-of-turn token, nothing
 * of the prompt. */
static void check_end_of_turn(const char *dir, const char *end_token) {
    sft_tokenizer *tok = load(dir);
    if (!tok) return;
    sft_err err;
    sft_chat_template *t = sft_chat_template_for_tokenizer(tok, NULL, &err);
    CHECK(t != NULL);
    if (!t) {
        fprintf(stderr, "  %s\n", err.msg);
        sft_tokenizer_free(tok);
        return;
    }
    const sft_chat_message m[] = {{SFT_ROLE_USER, "Say yes.", 8}, {SFT_ROLE_ASSISTANT, "Yes.", 4}};
    sft_chat_encoding enc = {0};
    CHECK_INT(sft_chat_encode(t, tok, m, 2, 0, &enc, &err), 0);
    int32_t end_id = sft_tokenizer_token_to_id(tok, end_token);
    size_t last = enc.tokens.count;
    for (size_t i = 0; i < enc.tokens.count; i++)
        if (enc.assistant_mask[i]) last = i;
    CHECK(last < enc.tokens.count);
    if (last < enc.tokens.count) CHECK_INT(enc.tokens.ids[last], end_id);
    /* No prompt token is masked: the first masked token starts "Yes". */
    for (size_t i = 0; i < enc.tokens.count; i++) {
        if (!enc.assistant_mask[i]) continue;
        CHECK(strstr(enc.render.text + enc.tokens.offsets[2 * i], "Yes.") != NULL);
        CHECK(enc.tokens.offsets[2 * i] >= (size_t)(strstr(enc.render.text, "Say yes.") - enc.render.text) + 8);
        break;
    }
    sft_chat_encoding_free(&enc);
    sft_chat_template_free(t);
    sft_tokenizer_free(tok);
}

TEST(end_of_turn_token_is_supervised_in_every_family) {
    check_end_of_turn(FIXTURES "/tokenizers/gpt2-chatml", "<|im_end|>");
    check_end_of_turn(FIXTURES "/models/llama3-tiny", "<|eot_id|>");
    check_end_of_turn(FIXTURES "/models/llama2-tiny", "</s>");
    check_end_of_turn(FIXTURES "/models/gpt2-tiny", "<|endoftext|>");
}

/* Older checkpoints keep the template in tokenizer_config.json (a string, or
 * a list of named templates): the same renderer and the same masks. */
static void copy_file(const char *from, const char *to) {
    sft_err err;
    char *data;
    size_t len;
    CHECK_INT(sft_read_file(from, &data, &len, &err), 0);
    CHECK_INT(sft_write_file_atomic(to, data, len, &err), 0);
    free(data);
}

static void check_config_serialization(int as_list) {
    sft_err err;
    char dir[128];
    snprintf(dir, sizeof dir, "build/test-tmp/template-config-%d-%d", as_list, (int)getpid());
    CHECK_INT(sft_mkdir_p(dir, &err), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    copy_file(FIXTURES "/models/llama3-tiny/tokenizer.json", path);
    char *tmpl_text;
    size_t len;
    CHECK_INT(sft_read_file(FIXTURES "/models/llama3-tiny/chat_template.jinja", &tmpl_text, &len, &err), 0);
    json_t *config = sft_json_load_file(FIXTURES "/models/llama3-tiny/tokenizer_config.json", &err);
    if (as_list) {
        json_t *list = json_array();
        json_array_append_new(list, json_pack("{s:s, s:s}", "name", "tool_use", "template", "{{ tools }}"));
        json_array_append_new(list, json_pack("{s:s, s:s}", "name", "default", "template", tmpl_text));
        json_object_set_new(config, "chat_template", list);
    } else {
        json_object_set_new(config, "chat_template", json_string(tmpl_text));
    }
    free(tmpl_text);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *dumped = json_dumps(config, JSON_INDENT(2));
    CHECK_INT(sft_write_file_atomic(path, dumped, strlen(dumped), &err), 0);
    free(dumped);
    json_decref(config);

    sft_tokenizer *tok = load(dir);
    json_t *ref = sft_json_load_file(FIXTURES "/reference.json", &err);
    if (tok && ref) run_chat_checks(json_object_get(json_object_get(ref, "tokenizer_llama3"), "chat"), tok, dir, 16);
    sft_tokenizer_free(tok);
    json_decref(ref);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
}

TEST(template_in_tokenizer_config_string_gives_same_masks) { check_config_serialization(0); }
TEST(template_in_tokenizer_config_list_gives_same_masks) { check_config_serialization(1); }

/* The training loop encodes record after record into one sft_chat_encoding:
 * a short record after a long one must not keep anything of it. */
TEST(encoding_buffers_are_reused_cleanly) {
    sft_tokenizer *tok = load(FIXTURES "/tokenizers/gpt2-chatml");
    if (!tok) return;
    sft_err err;
    sft_chat_template *t = sft_chat_template_for_tokenizer(tok, "chatml", &err);
    char long_text[4000];
    memset(long_text, 'a', sizeof long_text);
    for (size_t i = 0; i < sizeof long_text; i += 7) long_text[i] = ' ';
    const sft_chat_message long_chat[] = {{SFT_ROLE_USER, long_text, sizeof long_text},
                                          {SFT_ROLE_ASSISTANT, long_text, sizeof long_text}};
    const sft_chat_message short_chat[] = {{SFT_ROLE_USER, "a", 1}, {SFT_ROLE_ASSISTANT, "b", 1}};
    sft_chat_encoding reused = {0}, fresh = {0};
    CHECK_INT(sft_chat_encode(t, tok, long_chat, 2, 0, &reused, &err), 0);
    CHECK_INT(sft_chat_encode(t, tok, short_chat, 2, 0, &reused, &err), 0);
    CHECK_INT(sft_chat_encode(t, tok, short_chat, 2, 0, &fresh, &err), 0);
    CHECK_INT(reused.tokens.count, fresh.tokens.count);
    CHECK_STR(reused.render.text, fresh.render.text);
    CHECK_INT(reused.render.span_count, 1);
    CHECK(!memcmp(reused.tokens.ids, fresh.tokens.ids, fresh.tokens.count * sizeof(int32_t)));
    CHECK(!memcmp(reused.assistant_mask, fresh.assistant_mask, fresh.tokens.count));
    sft_chat_encoding_free(&reused);
    sft_chat_encoding_free(&fresh);
    sft_chat_template_free(t);
    sft_tokenizer_free(tok);
}

/* A render error leaves a clear message and no stale output. */
TEST(encode_reports_render_errors) {
    sft_tokenizer *tok = load(FIXTURES "/models/llama2-tiny");
    if (!tok) return;
    sft_err err;
    sft_chat_template *t = sft_chat_template_for_tokenizer(tok, "llama2", &err);
    const sft_chat_message m[] = {{SFT_ROLE_ASSISTANT, "hi", 2}};
    sft_chat_encoding enc = {0};
    CHECK_INT(sft_chat_encode(t, tok, m, 1, 0, &enc, &err), -1);
    CHECK_ERR_HAS(err.msg, "messages[0] has role assistant where the llama2 template needs user");
    sft_chat_encoding_free(&enc);
    sft_chat_template_free(t);
    sft_tokenizer_free(tok);
}
