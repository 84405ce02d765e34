/* test_template.c: chat-template rendering (text, generation prompt,
 * assistant spans) for each built-in family against the HF fixtures and the
 * real-text corpus, detection from template text, and the error messages.
 * The tokenized side (ids, assistant masks) is in test_template_mask.c. */
#include "io/file.h"
#include "io/json.h"
#include "test.h"
#include "tok/template.h"
#include "tok/template_json.h"

#define FIXTURES "tests/fixtures/hf"

/* A fixture dir's template text and special tokens, read here directly
 * (chat_template.jinja, else tokenizer_config.json's chat_template). */
typedef struct {
    char *text;
    char bos[64], eos[64];
} fixture_template;

static void special_token(const json_t *config, const char *key, char *out, size_t cap) {
    const json_t *v = json_object_get(config, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    out[0] = 0;
    if (json_is_string(v)) snprintf(out, cap, "%s", json_string_value(v));
}

static int load_fixture_template(const char *dir, fixture_template *ft) {
    sft_err err;
    char path[512];
    size_t len;
    memset(ft, 0, sizeof *ft);
    snprintf(path, sizeof path, "%s/%s/tokenizer_config.json", FIXTURES, dir);
    json_t *config = sft_json_load_file(path, &err);
    if (!config) return -1;
    special_token(config, "bos_token", ft->bos, sizeof ft->bos);
    special_token(config, "eos_token", ft->eos, sizeof ft->eos);
    snprintf(path, sizeof path, "%s/%s/chat_template.jinja", FIXTURES, dir);
    if (sft_read_file(path, &ft->text, &len, &err)) {
        const json_t *t = json_object_get(config, "chat_template");
        ft->text = json_is_string(t) ? strdup(json_string_value(t)) : NULL;
    }
    json_decref(config);
    return ft->text ? 0 : -1;
}

static sft_chat_template *fixture_chat_template(const char *dir, const char *expect_name) {
    fixture_template ft;
    if (load_fixture_template(dir, &ft)) {
        fprintf(stderr, "  cannot read the template of %s\n", dir);
        sft_test_failures++;
        return NULL;
    }
    sft_err err;
    sft_chat_template *t = sft_chat_template_new(NULL, ft.text, ft.bos[0] ? ft.bos : NULL, ft.eos[0] ? ft.eos : NULL,
                                                 &err);
    free(ft.text);
    if (!t) {
        fprintf(stderr, "  %s: %s\n", dir, err.msg);
        sft_test_failures++;
        return NULL;
    }
    CHECK_STR(sft_chat_template_name(t), expect_name);
    return t;
}

/* Renders every chat of chats[] (text and, when present, text_gen_prompt
 * over all but the last message) and compares with the reference; returns
 * the number of chats compared. */
static int check_chats_render(const sft_chat_template *t, const json_t *chats, const char *what) {
    sft_chat_message *messages = NULL;
    size_t cap = 0, count;
    sft_chat_render r = {0};
    sft_err err;
    int compared = 0;
    for (size_t i = 0; i < json_array_size(chats); i++) {
        const json_t *chat = json_array_get(chats, i);
        if (sft_chat_messages_from_json(json_object_get(chat, "messages"), &messages, &cap, &count, &err)) {
            fprintf(stderr, "  %s chat[%zu]: %s\n", what, i, err.msg);
            sft_test_failures++;
            continue;
        }
        if (sft_chat_render_messages(t, messages, count, 0, &r, &err)) {
            fprintf(stderr, "  %s chat[%zu]: %s\n", what, i, err.msg);
            sft_test_failures++;
            continue;
        }
        const json_t *want = json_object_get(chat, "text");
        if (r.len != json_string_length(want) || memcmp(r.text, json_string_value(want), r.len)) {
            fprintf(stderr, "  %s chat[%zu] text differs:\n    got      %s\n    expected %s\n", what, i, r.text,
                    json_string_value(want));
            sft_test_failures++;
        }
        /* Every span covers an assistant turn ending in the end-of-turn text. */
        CHECK(r.span_count > 0);
        for (size_t k = 0; k < r.span_count; k++) CHECK(r.spans[k].start < r.spans[k].end && r.spans[k].end <= r.len);
        const json_t *want_gen = json_object_get(chat, "text_gen_prompt");
        if (want_gen) {
            if (sft_chat_render_messages(t, messages, count - 1, 1, &r, &err)) {
                fprintf(stderr, "  %s chat[%zu] gen: %s\n", what, i, err.msg);
                sft_test_failures++;
            } else if (r.len != json_string_length(want_gen) || memcmp(r.text, json_string_value(want_gen), r.len)) {
                fprintf(stderr, "  %s chat[%zu] text_gen_prompt differs:\n    got      %s\n    expected %s\n", what, i,
                        r.text, json_string_value(want_gen));
                sft_test_failures++;
            }
        }
        compared++;
    }
    free(messages);
    sft_chat_render_free(&r);
    return compared;
}

static void check_reference_family(const char *key, const char *dir, const char *name) {
    sft_err err;
    json_t *ref = sft_json_load_file(FIXTURES "/reference.json", &err);
    CHECK(ref != NULL);
    if (!ref) return;
    sft_chat_template *t = fixture_chat_template(dir, name);
    const json_t *chats = json_object_get(json_object_get(ref, key), "chat");
    if (t) CHECK_INT(check_chats_render(t, chats, key), json_array_size(chats));
    CHECK(json_array_size(chats) >= 4);
    sft_chat_template_free(t);
    json_decref(ref);
}

TEST(alpaca_renders_fixture_chats) { check_reference_family("tokenizer_gpt2", "models/gpt2-tiny", "alpaca"); }
TEST(chatml_renders_fixture_chats) {
    check_reference_family("tokenizer_gpt2-chatml", "tokenizers/gpt2-chatml", "chatml");
}
TEST(llama3_renders_fixture_chats) { check_reference_family("tokenizer_llama3", "models/llama3-tiny", "llama3"); }
TEST(llama2_renders_fixture_chats) {
    check_reference_family("tokenizer_llama2", "models/llama2-tiny", "llama2-trim");
}

/* The 60 corpus conversations per tokenizer: real text in many languages,
 * system prompts in some, 1 to 3 turns. */
TEST(corpus_chats_render_for_every_family) {
    sft_err err;
    char *data;
    size_t len;
    CHECK_INT(sft_read_file_maybe_gz(FIXTURES "/corpus/reference_corpus.json.gz", &data, &len, &err), 0);
    json_t *corpus = sft_json_loadb(data, len, "reference_corpus.json.gz", &err);
    free(data);
    CHECK(corpus != NULL);
    if (!corpus) return;
    static const struct {
        const char *name, *expect;
    } families[] = {{"gpt2", "alpaca"}, {"gpt2-chatml", "chatml"}, {"llama3", "llama3"}, {"llama2", "llama2-trim"}};
    for (size_t f = 0; f < 4; f++) {
        const json_t *entry = json_object_get(json_object_get(corpus, "tokenizers"), families[f].name);
        CHECK(entry != NULL);
        if (!entry) continue;
        sft_chat_template *t = fixture_chat_template(json_string_value(json_object_get(entry, "dir")),
                                                     families[f].expect);
        const json_t *chats = json_object_get(entry, "chat");
        if (t) CHECK_INT(check_chats_render(t, chats, families[f].name), 60);
        sft_chat_template_free(t);
    }
    json_decref(corpus);
}

/* ---- hand-written conversations: exact text and spans ----------------- */

static sft_chat_template *by_name(const char *name) {
    sft_err err;
    sft_chat_template *t = sft_chat_template_new(name, NULL, "<s>", "</s>", &err);
    if (!t) {
        fprintf(stderr, "  %s: %s\n", name, err.msg);
        sft_test_failures++;
    }
    return t;
}

/* The renderer name a template text is detected as, or the error. */
static const char *detected(const char *text);

#define MSG(role, text) {SFT_ROLE_##role, text, sizeof(text) - 1}

static const sft_chat_message multi_turn[] = {
    MSG(SYSTEM, "Be brief."), MSG(USER, " Hi "), MSG(ASSISTANT, "Hello!\n"), MSG(USER, "2+2?"), MSG(ASSISTANT, " 4"),
};

/* Renders multi_turn and checks the text and the text of each span. */
static void check_render(const char *name, const char *want, const char *const *want_spans, int gen) {
    sft_chat_template *t = by_name(name);
    if (!t) return;
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, multi_turn, 5, gen, &r, &err), 0);
    CHECK_STR(r.text, want);
    size_t n = 0;
    while (want_spans[n]) n++;
    CHECK_INT(r.span_count, n);
    for (size_t k = 0; k < n && k < r.span_count; k++) {
        char span[256];
        snprintf(span, sizeof span, "%.*s", (int)(r.spans[k].end - r.spans[k].start), r.text + r.spans[k].start);
        CHECK_STR(span, want_spans[k]);
    }
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(chatml_multi_turn_with_system) {
    const char *spans[] = {"Hello!\n<|im_end|>", " 4<|im_end|>", NULL};
    check_render("chatml",
                 "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                 "<|im_start|>assistant\nHello!\n<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                 "<|im_start|>assistant\n 4<|im_end|>\n<|im_start|>assistant\n",
                 spans, 1);
}

TEST(qwen2_writes_its_default_system_only_without_one) {
    sft_chat_template *t = by_name("qwen2");
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, multi_turn + 1, 2, 0, &r, &err), 0);
    CHECK_STR(r.text, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                      "<|im_start|>assistant\nHello!\n<|im_end|>\n");
    CHECK_INT(sft_chat_render_messages(t, multi_turn, 3, 0, &r, &err), 0);
    CHECK(!strstr(r.text, "helpful"));
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(llama3_trims_and_writes_bos_and_eot) {
    const char *spans[] = {"Hello!<|eot_id|>", "4<|eot_id|>", NULL};
    sft_chat_template *t = NULL;
    sft_err err;
    t = sft_chat_template_new("llama3", NULL, "<|begin_of_text|>", "<|eot_id|>", &err);
    CHECK(t != NULL);
    sft_chat_render r = {0};
    CHECK_INT(sft_chat_render_messages(t, multi_turn, 5, 1, &r, &err), 0);
    CHECK_STR(r.text, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK_INT(r.span_count, 2);
    for (size_t k = 0; k < 2 && k < r.span_count; k++) {
        char span[64];
        snprintf(span, sizeof span, "%.*s", (int)(r.spans[k].end - r.spans[k].start), r.text + r.spans[k].start);
        CHECK_STR(span, spans[k]);
    }
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(llama31_always_writes_the_dated_system_header) {
    sft_err err;
    sft_chat_template *t = sft_chat_template_new("llama3.1", NULL, "<|begin_of_text|>", "<|eot_id|>", &err);
    CHECK(t != NULL);
    sft_chat_render r = {0};
    CHECK_INT(sft_chat_render_messages(t, multi_turn + 1, 2, 0, &r, &err), 0);
    CHECK_STR(r.text, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>");
    CHECK_INT(sft_chat_render_messages(t, multi_turn, 3, 0, &r, &err), 0);
    CHECK(strstr(r.text, "26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user") != NULL);
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(llama2_trim_variant_trims_each_message) {
    const char *spans[] = {" Hello! </s>", " 4 </s>", NULL};
    check_render("llama2-trim",
                 "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST] 4 </s>", spans,
                 1);
}

/* Meta's template strips "<<SYS>>...<</SYS>>\n\n" + content as one string:
 * the first user message keeps its leading space. */
TEST(llama2_meta_strips_system_block_with_first_message) {
    const char *spans[] = {" Hello! </s>", " 4 </s>", NULL};
    check_render("llama2",
                 "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] 2+2? [/INST] 4 </s>", spans,
                 0);
}

TEST(llama2_meta_whitespace_only_first_message_strips_into_the_block) {
    sft_chat_template *t = by_name("llama2");
    const sft_chat_message m[] = {MSG(SYSTEM, "S"), MSG(USER, " \n\t"), MSG(ASSISTANT, "a")};
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, m, 3, 0, &r, &err), 0);
    CHECK_STR(r.text, "<s>[INST] <<SYS>>\nS\n<</SYS>> [/INST] a </s>");
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

/* Mixtral 8x7B Instruct's template as its tokenizer_config.json holds it. */
TEST(mistral_detected_and_rendered_without_spaces_or_system) {
    CHECK_STR(detected("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % "
                       "2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/"
                       "...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' "
                       "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else "
                       "%}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor "
                       "%}"),
              "mistral");
    /* The same in another spelling: whitespace control, message.content. */
    CHECK_STR(detected("{{- bos_token -}}\n{%- for message in messages -%}\n  {%- if message.role == \"user\" -%}\n"
                       "    {{- \"[INST] \" + message.content + \" [/INST]\" -}}\n  {%- else -%}\n    {{- "
                       "message.content + eos_token -}}\n  {%- endif -%}\n{%- endfor -%}\n"),
              "mistral");
    sft_chat_template *t = by_name("mistral");
    const sft_chat_message m[] = {MSG(USER, " Hi "), MSG(ASSISTANT, "Hello! "), MSG(USER, "2+2?"), MSG(ASSISTANT, "4")};
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, m, 4, 1, &r, &err), 0);
    CHECK_STR(r.text, "<s>[INST]  Hi  [/INST]Hello! </s>[INST] 2+2? [/INST]4</s>");
    CHECK_INT(r.span_count, 2);
    if (r.span_count == 2) {
        CHECK_INT(r.spans[0].start, 22);
        CHECK_INT(r.spans[0].end, 33); /* "Hello! </s>" */
        CHECK_INT(r.spans[1].end, r.len);
    }
    CHECK_INT(sft_chat_render_messages(t, multi_turn, 5, 0, &r, &err), -1);
    CHECK_STR(err.msg, "messages[0]: the mistral template has no system messages (only user and assistant)");
    CHECK_INT(sft_chat_render_messages(t, m + 1, 1, 0, &r, &err), -1);
    CHECK_ERR_HAS(err.msg, "messages[0] has role assistant where the mistral template needs user");
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(alpaca_multi_turn_and_empty_generation_prompt) {
    const char *spans[] = {"Hello!\n</s>", " 4</s>", NULL};
    check_render("alpaca",
                 "Be brief.\n\n### Instruction:\n Hi \n\n### Response:\nHello!\n</s>\n\n### Instruction:\n2+2?\n\n"
                 "### Response:\n 4</s>\n\n",
                 spans, 1);
}

/* Jinja's trim is Python's str.strip(): the 29 code points of
 * str.isspace(), not C's isspace and not U+200B or U+FEFF. */
TEST(trim_uses_python_whitespace) {
    sft_err err;
    sft_chat_template *t = sft_chat_template_new("llama3", NULL, "B", "E", &err);
    /* U+3000, U+0085, U+001F, NBSP around; U+200B (not a space) kept. */
    const sft_chat_message m[] = {MSG(USER, "\xe3\x80\x80\xc2\x85\x1f x \xc2\xa0"),
                                  MSG(ASSISTANT, "\xe2\x80\x8by\xe2\x80\xa8\xe2\x80\xaf")};
    sft_chat_render r = {0};
    CHECK_INT(sft_chat_render_messages(t, m, 2, 0, &r, &err), 0);
    CHECK_STR(r.text, "B<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n\xe2\x80\x8by<|eot_id|>");
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

/* ---- detection ---------------------------------------------------------- */

static const char *detected(const char *text) {
    static char name[SFT_ERR_MSG_MAX];
    sft_err err;
    sft_chat_template *t = sft_chat_template_new(NULL, text, "<s>", "</s>", &err);
    snprintf(name, sizeof name, "%s", t ? sft_chat_template_name(t) : err.msg);
    sft_chat_template_free(t);
    return name;
}

/* Real upstream templates, as their tokenizer_config.json hold them. */
TEST(detects_upstream_templates_by_their_markers) {
    CHECK_STR(detected("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                       "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
                       "}}{% endif %}"),
              "chatml");
    CHECK_STR(detected("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
                       "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' "
                       "+ message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"),
              "qwen2");
    CHECK_STR(detected("{%- if tools %}{{- '<|im_start|>system\\n' }}{%- else %}{%- if messages[0]['role'] == "
                       "'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else "
                       "%}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                       "assistant.<|im_end|>\\n' }}{%- endif %}{%- endif %}"),
              "qwen2.5");
    CHECK_STR(detected("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
                       "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                       "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
                       "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"),
              "smollm2");
    CHECK_STR(detected("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                       "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
                       "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
                       "%}{{ content }}{% endfor %}"),
              "llama3");
    CHECK_STR(detected("{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" "
                       "%}{%- endif %}{%- set system_message = messages[0]['content']|trim %}{{- "
                       "\"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: "
                       "December 2023\\n\" }}{{- \"<|eot_id|>\" }}"),
              "llama3.1");
    CHECK_STR(detected("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
                       "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
                       "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
                       "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
                       "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% "
                       "endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
                       "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
                       "eos_token }}{% endif %}{% endfor %}"),
              "llama2");
}

TEST(refuses_variants_it_would_render_differently) {
    CHECK_ERR_HAS(detected("{{ bos_token }}{% if not date_string is defined %}{% set date_string = "
                           "strftime_now(\"%d %b %Y\") %}{% endif %}<|start_header_id|>Cutting Knowledge "
                           "Date{{ message['content'] | trim }}<|eot_id|>"),
                  "strftime_now");
    /* Mistral 7B v0.1's template with the answer followed by a space. */
    CHECK_ERR_HAS(detected("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
                           "message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token + ' ' }}{% "
                           "endif %}{% endfor %}"),
                  "not Mistral 7B Instruct v0.1");
    /* Later Mistral templates put the system message into a user turn. */
    CHECK_ERR_HAS(detected("{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] "
                           "%}{%- endif %}{{- bos_token }}{%- for message in messages %}{%- if message['role'] == "
                           "'user' %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- else %}{{- "
                           "message['content'] + eos_token }}{%- endif %}{%- endfor %}"),
                  "not Mistral 7B Instruct v0.1");
    CHECK_ERR_HAS(detected("<|im_start|>assistant\\n<think>\\n"), "<think>");
    CHECK_ERR_HAS(detected("{{ '<|im_start|>system\\nYou are Hermes.<|im_end|>\\n' }}<|im_start|>"),
                  "You are Hermes.");
    /* In double quotes, with an apostrophe, and escapes unescaped. */
    CHECK_ERR_HAS(detected("{{ \"<|im_start|>system\\nYou're \\\"Hermes\\\".<|im_end|>\\n\" }}{{ '<|im_start|>' }}"),
                  "(\"You're \"Hermes\".\")");
    CHECK_ERR_HAS(detected("Below is an instruction that describes a task. ### Instruction: ### Response:"),
                  "preamble");
    CHECK_ERR_HAS(detected("{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
                           "{% elif true == true and not '<<SYS>>' in messages[0]['content'] %}{% set system_message = "
                           "'You are a helpful assistant.' %}{% endif %}{{ bos_token + '[INST] ' + content.strip() + ' "
                           "[/INST]' + eos_token }}"),
                  "default system prompt");
    /* Same markers, other behaviour: no trim in a Llama 3 template, no eos
     * in an Alpaca one. */
    CHECK_ERR_HAS(detected("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                           "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"),
                  "does not trim");
    CHECK_ERR_HAS(detected("{% for message in messages %}{{ '### Instruction:\n' + message['content'] + "
                           "'\n\n### Response:\n' }}{% endfor %}"),
                  "without eos_token");
}

/* Jinja as transformers configures it (trim_blocks, lstrip_blocks): the
 * newline after a block tag and the indentation before one vanish, so a
 * multi-line template renders the same characters; a newline after a {{ }}
 * expression is written out, so that template is another one. */
static const char multi_line_llama31[] =
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{#- The system message, trimmed, goes into the header. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n";

TEST(multi_line_templates_follow_jinja_whitespace_rules) {
    CHECK_STR(detected(multi_line_llama31), "llama3.1");
    /* Block tags without '-': trim_blocks drops the newline after each. */
    CHECK_STR(detected("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|im_start|>user\\n' + "
                       "message['content'] + '<|im_end|>\\n' }}{% else %}\n  {{- '<|im_start|>' + message['role'] + "
                       "'\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}\n{% endfor %}\n"),
              "chatml");
    /* A newline after an expression is output: refused, with where. */
    CHECK_ERR_HAS(detected("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
                           "message['content'] + '<|im_end|>' }}\n{% endfor %}"),
                  "literal text outside its {{ }} expressions (at byte 110: \"\\n{% endfor \")");
    CHECK_ERR_HAS(detected("<|im_start|>{{ message['role'] }}"), "at byte 0");
}

/* Found by fuzz_template: a name that only starts like message.content at
 * the very end of the template made the normaliser read past it. */
TEST(template_ending_in_a_longer_name_is_read_safely) {
    CHECK_ERR_HAS(detected("{{ bos_token }}[INST]message.contente"), "not Mistral 7B Instruct v0.1");
    CHECK_ERR_HAS(detected("{{ bos_token }}[INST]message.roles"), "not Mistral 7B Instruct v0.1");
}

TEST(unrecognised_template_lists_the_names) {
    sft_err err;
    CHECK(sft_chat_template_new(NULL, "{{ messages | tojson }}", "<s>", "</s>", &err) == NULL);
    CHECK_ERR_HAS(err.msg, "not one sft recognises");
    CHECK_ERR_HAS(err.msg, "--template NAME (one of: chatml, qwen2, qwen2.5, smollm2, llama3, llama3.1, llama2, "
                           "llama2-trim, mistral, alpaca)");
    CHECK(sft_chat_template_new(NULL, NULL, "<s>", "</s>", &err) == NULL);
    CHECK_ERR_HAS(err.msg, "no chat template");
    CHECK_ERR_HAS(err.msg, "--template NAME");
}

TEST(unknown_template_name_suggests_nearest) {
    sft_err err;
    CHECK(sft_chat_template_new("lama3", NULL, "<s>", "</s>", &err) == NULL);
    CHECK_ERR_HAS(err.msg, "unknown chat template 'lama3' (did you mean 'llama3'?)");
    CHECK_ERR_HAS(err.msg, "chatml, qwen2");
}

TEST(name_overrides_the_model_template) {
    sft_err err;
    sft_chat_template *t = sft_chat_template_new("alpaca", "<|im_start|>", "<s>", "</s>", &err);
    CHECK(t != NULL);
    if (t) CHECK_STR(sft_chat_template_name(t), "alpaca");
    sft_chat_template_free(t);
}

TEST(family_without_its_special_token_is_an_error) {
    sft_err err;
    CHECK(sft_chat_template_new("llama2", NULL, "<s>", NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "eos_token");
    CHECK(sft_chat_template_new("llama3", NULL, NULL, NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "bos_token");
}

/* ---- bad conversations -------------------------------------------------- */

TEST(bad_role_in_json_is_named) {
    sft_err err;
    const char *text = "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", \"content\": \"b\"}]";
    json_t *j = sft_json_loadb(text, strlen(text), "x", &err);
    sft_chat_message *m = NULL;
    size_t cap = 0, n;
    CHECK_INT(sft_chat_messages_from_json(j, &m, &cap, &n, &err), -1);
    CHECK_STR(err.msg, "messages[1]: unknown role 'robot' (expected system, user or assistant)");
    json_decref(j);
    text = "[{\"role\": \"user\"}]";
    j = sft_json_loadb(text, strlen(text), "x", &err);
    CHECK_INT(sft_chat_messages_from_json(j, &m, &cap, &n, &err), -1);
    CHECK_STR(err.msg, "messages[0] (user) has no 'content'");
    json_decref(j);
    text = "[{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]";
    j = sft_json_loadb(text, strlen(text), "x", &err);
    CHECK_INT(sft_chat_messages_from_json(j, &m, &cap, &n, &err), -1);
    CHECK_STR(err.msg, "messages[0] (user): 'content' must be a string");
    json_decref(j);
    free(m);
}

TEST(llama2_meta_rejects_roles_out_of_turn) {
    sft_chat_template *t = by_name("llama2");
    const sft_chat_message m[] = {MSG(USER, "a"), MSG(USER, "b")};
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, m, 2, 0, &r, &err), -1);
    CHECK_ERR_HAS(err.msg, "messages[1] has role user where the llama2 template needs assistant");
    CHECK_ERR_HAS(err.msg, "alternate");
    const sft_chat_message late_system[] = {MSG(USER, "a"), MSG(ASSISTANT, "b"), MSG(SYSTEM, "c")};
    CHECK_INT(sft_chat_render_messages(t, late_system, 3, 0, &r, &err), -1);
    CHECK_ERR_HAS(err.msg, "messages[2]: a system message is only accepted first");
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(invalid_utf8_and_empty_conversations_are_errors) {
    sft_chat_template *t = by_name("chatml");
    const sft_chat_message m[] = {MSG(USER, "ok"), MSG(ASSISTANT, "bad \xc3\x28")};
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, m, 2, 0, &r, &err), -1);
    CHECK_STR(err.msg, "messages[1] (assistant): content is not valid UTF-8 at byte 4");
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

/* apply_chat_template([]) works for the loop-only templates (the
 * generation prompt alone) and fails where the template reads messages[0]. */
/* An empty message may come as {NULL, 0} from C callers. */
TEST(empty_message_content_may_be_null) {
    sft_chat_template *t = by_name("llama2");
    const sft_chat_message m[] = {{SFT_ROLE_USER, NULL, 0}, {SFT_ROLE_ASSISTANT, NULL, 0}};
    sft_chat_render r = {0};
    sft_err err;
    CHECK_INT(sft_chat_render_messages(t, m, 2, 0, &r, &err), 0);
    CHECK_STR(r.text, "<s>[INST]  [/INST]  </s>");
    sft_chat_render_free(&r);
    sft_chat_template_free(t);
}

TEST(empty_conversation_renders_only_where_transformers_does) {
    sft_chat_render r = {0};
    sft_err err;
    sft_chat_template *t = by_name("chatml");
    CHECK_INT(sft_chat_render_messages(t, NULL, 0, 1, &r, &err), 0);
    CHECK_STR(r.text, "<|im_start|>assistant\n");
    CHECK_INT(r.span_count, 0);
    sft_chat_template_free(t);
    t = by_name("qwen2");
    CHECK_INT(sft_chat_render_messages(t, NULL, 0, 0, &r, &err), 0);
    CHECK_STR(r.text, "");
    sft_chat_template_free(t);
    t = by_name("mistral");
    CHECK_INT(sft_chat_render_messages(t, NULL, 0, 0, &r, &err), 0);
    CHECK_STR(r.text, "<s>");
    sft_chat_template_free(t);
    static const char *const refusing[] = {"qwen2.5", "llama3", "llama3.1", "llama2", "llama2-trim"};
    for (size_t i = 0; i < 5; i++) {
        t = by_name(refusing[i]);
        CHECK_INT(sft_chat_render_messages(t, NULL, 0, 0, &r, &err), -1);
        CHECK_ERR_HAS(err.msg, "no messages to render");
        sft_chat_template_free(t);
    }
    sft_chat_render_free(&r);
}

/* ---- the mask rule on hand-made offsets ---------------------------------- */

/* transformers: tokens from char_to_token(start) through
 * char_to_token(end - 1); a start in no token stops; an end in no token (or
 * in token 0) runs to the end of the sequence. */
TEST(assistant_mask_follows_transformers_rules) {
    const char *text = "ab cd ef";
    size_t off[] = {0, 2, 2, 5, 5, 8}; /* "ab" " cd" " ef" */
    uint8_t mask[3];
    sft_chat_span span = {3, 5}; /* "cd" */
    sft_chat_assistant_mask(text, 8, &span, 1, off, 3, mask);
    CHECK(mask[0] == 0 && mask[1] == 1 && mask[2] == 0);
    /* Span ending in token 0: masked through the end, as transformers does
     * (`end_token + 1 if end_token else len(input_ids)`). */
    sft_chat_span first = {0, 1};
    sft_chat_assistant_mask(text, 8, &first, 1, off, 3, mask);
    CHECK(mask[0] == 1 && mask[1] == 1 && mask[2] == 1);
    /* A start that no token holds stops the walk: later spans get nothing. */
    size_t gap[] = {0, 2, 3, 5, 5, 8}; /* the space at 2 is in no token */
    sft_chat_span two[] = {{2, 5}, {6, 8}};
    sft_chat_assistant_mask(text, 8, two, 2, gap, 3, mask);
    CHECK(mask[0] == 0 && mask[1] == 0 && mask[2] == 0);
    /* An end that no token holds runs to the end of the sequence. */
    sft_chat_span to_gap = {0, 3};
    sft_chat_assistant_mask(text, 8, &to_gap, 1, gap, 3, mask);
    CHECK(mask[0] == 1 && mask[1] == 1 && mask[2] == 1);
}

/* Offsets are bytes, transformers' spans are characters: a token ending in
 * the middle of a multi-byte character does not hold that character (the
 * tokenizers byte->char conversion rounds its end down). */
TEST(assistant_mask_counts_characters_not_bytes) {
    const char *text = "x\xc3\xa9y"; /* x é y: 4 bytes, 3 characters */
    size_t off[] = {0, 2, 2, 4}; /* token 0 = x + first byte of é, token 1 = rest */
    uint8_t mask[2];
    sft_chat_span span = {1, 3}; /* "é" */
    sft_chat_assistant_mask(text, 4, &span, 1, off, 2, mask);
    /* é starts at byte 1: token 0's char range is [x, é) so é is in token 1. */
    CHECK(mask[0] == 0 && mask[1] == 1);
}

/* ---- the Jinja text of each renderer (for exported models) -------------- */

static char *fixture_template_text(const char *dir) {
    fixture_template ft;
    return load_fixture_template(dir, &ft) ? NULL : ft.text;
}

/* The exported template of each renderer is detected back as that renderer,
 * and for the fixture families it is the fixture's template byte for byte
 * (so transformers renders what sft trained on). */
TEST(jinja_of_each_renderer_detects_back_to_it) {
    size_t count;
    const char *const *names = sft_chat_template_names(&count);
    CHECK_INT(count, 10);
    for (size_t i = 0; i < count; i++) {
        sft_err err;
        sft_chat_template *t = sft_chat_template_new(names[i], NULL, "<s>", "</s>", &err);
        CHECK(t != NULL);
        if (!t) continue;
        CHECK(strstr(sft_chat_template_jinja(t), "{% generation %}") != NULL);
        CHECK_STR(detected(sft_chat_template_jinja(t)), names[i]);
        sft_chat_template_free(t);
    }
    static const struct {
        const char *name, *dir;
    } fixtures[] = {{"chatml", "tokenizers/gpt2-chatml"},
                    {"llama3", "models/llama3-tiny"},
                    {"llama2-trim", "models/llama2-tiny"},
                    {"alpaca", "models/gpt2-tiny"}};
    for (size_t i = 0; i < 4; i++) {
        sft_err err;
        sft_chat_template *t = sft_chat_template_new(fixtures[i].name, NULL, "<s>", "</s>", &err);
        char *text = fixture_template_text(fixtures[i].dir);
        CHECK_STR(sft_chat_template_jinja(t), text);
        free(text);
        sft_chat_template_free(t);
    }
}

/* ---- the mask against a character-level model of transformers ----------- */

/* A direct transcription of what Python does, in characters: tokenizers'
 * BytesToCharOffsetConverter (byte -> index of the char holding it; an end
 * past the text maps to the last char + 1; a start past it stays as it
 * was), Encoding.char_to_token (first token with start <= c < end) and
 * apply_chat_template's loop over the generation spans. */
static void reference_mask(const char *text, size_t len, const sft_chat_span *spans, size_t span_count,
                           const size_t *offsets, size_t token_count, uint8_t *mask) {
    size_t *char_of = malloc((len + 1) * sizeof *char_of), nchars = 0;
    for (size_t b = 0; b < len; b++) {
        if (b && ((unsigned char)text[b] & 0xC0) != 0x80) nchars++;
        char_of[b] = nchars;
    }
    if (len) nchars++;
    size_t *cs = malloc((token_count + 1) * sizeof *cs), *ce = malloc((token_count + 1) * sizeof *ce);
    for (size_t i = 0; i < token_count; i++) {
        size_t s = offsets[2 * i], e = offsets[2 * i + 1];
        if (s >= len) {
            cs[i] = s, ce[i] = e; /* not converted */
        } else if (e < len) {
            cs[i] = char_of[s], ce[i] = char_of[e];
        } else {
            cs[i] = char_of[s], ce[i] = (e ? char_of[e - 1] : cs[i]) + 1;
        }
    }
    memset(mask, 0, token_count);
    for (size_t k = 0; k < span_count; k++) {
        long start_char = spans[k].start < len ? (long)char_of[spans[k].start] : (long)nchars;
        long end_char = spans[k].end < len ? (long)char_of[spans[k].end] : (long)nchars;
        long first = -1, last = -1;
        for (size_t i = 0; i < token_count && first < 0; i++)
            if ((long)cs[i] <= start_char && start_char < (long)ce[i]) first = (long)i;
        for (size_t i = 0; i < token_count && last < 0; i++)
            if ((long)cs[i] <= end_char - 1 && end_char - 1 < (long)ce[i]) last = (long)i;
        if (first < 0) break;
        size_t stop = last > 0 ? (size_t)last + 1 : token_count;
        for (size_t i = (size_t)first; i < stop; i++) mask[i] = 1;
    }
    free(char_of);
    free(cs);
    free(ce);
}

/* Random texts of 1- to 4-byte characters, token offsets that are monotone
 * or not, overlapping, empty, cut inside characters, and spans on
 * character boundaries: the fast mask equals the reference every time. */
TEST(assistant_mask_equals_character_level_reference_on_random_cases) {
    static const char *const pieces[] = {"a", " ", "\n", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "<|x|>"};
    unsigned long long rng = 12345;
#define NEXT() (rng = rng * 6364136223846793005ULL + 1442695040888963407ULL, (unsigned)(rng >> 33))
    int mismatches = 0;
    for (int trial = 0; trial < 3000; trial++) {
        char text[512];
        size_t len = 0, bounds[256], nb = 0;
        int n_pieces = 1 + (int)(NEXT() % 40);
        for (int p = 0; p < n_pieces; p++) {
            const char *piece = pieces[NEXT() % 7];
            bounds[nb++] = len;
            memcpy(text + len, piece, strlen(piece));
            len += strlen(piece);
        }
        bounds[nb++] = len;
        text[len] = 0;
        /* Tokens: mostly consecutive cuts at any byte, sometimes odd ones. */
        size_t offsets[2 * 200], count = 0, at = 0;
        while (at < len && count < 190) {
            size_t w = 1 + NEXT() % 5;
            if (at + w > len) w = len - at;
            size_t s = at, e = at + w;
            unsigned kind = NEXT() % 20;
            if (kind == 0) s = e = 0;                       /* a post-processor token */
            else if (kind == 1 && s) s -= 1 + NEXT() % s;   /* overlaps earlier text */
            else if (kind == 2) e = s;                      /* empty */
            offsets[2 * count] = s;
            offsets[2 * count + 1] = e;
            count++;
            at += w;
        }
        /* Spans on character boundaries, in order, sometimes empty. */
        sft_chat_span spans[6];
        size_t span_count = 0, from = 0;
        while (span_count < 1 + NEXT() % 5 && from + 1 < nb) {
            size_t a = from + NEXT() % (nb - from);
            size_t b = a + NEXT() % (nb - a);
            spans[span_count++] = (sft_chat_span){bounds[a], bounds[b]};
            from = b + 1;
        }
        uint8_t fast[200], slow[200];
        sft_chat_assistant_mask(text, len, spans, span_count, offsets, count, fast);
        reference_mask(text, len, spans, span_count, offsets, count, slow);
        if (memcmp(fast, slow, count)) mismatches++;
    }
    CHECK_INT(mismatches, 0);
#undef NEXT
}
