/* test_synth.c: model-based generation (data/synth.h) on the tiny fixture
 * models: seeded sampling reproduces, records keep their fields and are
 * tagged with their origin, and the Self-Instruct / Evol-Instruct filters
 * eliminate what the papers eliminate. A random model writes noise, so the
 * content of generations is not judged here, only the machinery. */
#include <unistd.h>

#include "data/synth.h"
#include "io/file.h"
#include "io/json.h"
#include "model/ops.h"
#include "test.h"

#define GPT2 "tests/fixtures/hf/models/gpt2-tiny"
/* Llama 3's positions are not capped like GPT-2's 64: room for the Evol-Instruct prompts */
#define LLAMA3 "tests/fixtures/hf/models/llama3-tiny"

static char *read_text(const char *path) {
    char *text = NULL;
    size_t len;
    sft_err err;
    if (sft_read_file(path, &text, &len, &err)) return NULL;
    return text;
}

static sft_synth_options model_options(uint64_t seed) {
    sft_synth_options o;
    sft_synth_options_default(&o);
    o.model_dir = GPT2;
    o.max_new_tokens = 6;
    o.seed = seed;
    return o;
}

static int answer_file(const char *prompts, const char *out, uint64_t seed, double temperature) {
    sft_synth_options o = model_options(seed);
    o.temperature = temperature;
    sft_data_io io = {NULL, 0, SFT_FORMAT_AUTO, 0, out, NULL, 0};
    sft_synth_summary s;
    sft_err err;
    int rc = sft_data_answer(&io, prompts, SFT_FORMAT_MESSAGES, &o, &s, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    return rc;
}

TEST(seeded_answers_reproduce_and_seeds_differ) {
    const char *prompts = sft_test_tmp_path("prompts.txt");
    sft_test_write_text(prompts, "What is two plus two?\n\nName a colour.\n");
    const char *a = sft_test_tmp_path("a.jsonl"), *b = sft_test_tmp_path("b.jsonl"), *c = sft_test_tmp_path("c.jsonl");
    CHECK(answer_file(prompts, a, 7, 0.7) == 0);
    CHECK(answer_file(prompts, b, 7, 0.7) == 0);
    CHECK(answer_file(prompts, c, 8, 0.7) == 0);
    char *ta = read_text(a), *tb = read_text(b), *tc = read_text(c);
    CHECK(ta && tb && tc);
    if (ta && tb && tc) {
        CHECK_STR(ta, tb);
        CHECK(strcmp(ta, tc) != 0);
        /* two prompts (the blank line is not one), each tagged with its line */
        CHECK(strstr(ta, "\"line\":1") && strstr(ta, "\"line\":3"));
        CHECK(strstr(ta, "\"method\":\"answer\""));
    }
    free(ta);
    free(tb);
    free(tc);
    /* greedy decoding does not depend on the seed */
    CHECK(answer_file(prompts, a, 1, 0) == 0);
    CHECK(answer_file(prompts, b, 2, 0) == 0);
    ta = read_text(a), tb = read_text(b);
    CHECK(ta && tb);
    if (ta && tb) {
        /* only the recorded seed differs: compare the assistant contents */
        json_t *ja = json_loads(strtok(ta, "\n"), 0, NULL), *jb = json_loads(strtok(tb, "\n"), 0, NULL);
        json_t *ma = json_object_get(ja, "messages"), *mb = json_object_get(jb, "messages");
        CHECK(json_equal(ma, mb));
        json_decref(ja);
        json_decref(jb);
    }
    free(ta);
    free(tb);
}

TEST(answers_fill_only_unanswered_records_and_keep_their_fields) {
    const char *in = sft_test_tmp_path("in.jsonl"), *out = sft_test_tmp_path("out.jsonl");
    const char *answered = "{\"id\": 3, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": "
                           "\"assistant\", \"content\": \"Hello\"}]}";
    char text[1024];
    snprintf(
        text, sizeof text,
        "{\"id\": 1, \"tag\": [1, 2], \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
        "{\"role\": \"user\", \"content\": \"Say hi\"}]}\n%s\n",
        answered);
    sft_test_write_text(in, text);
    const char *inputs[] = {in};
    sft_data_io io = {inputs, 1, SFT_FORMAT_AUTO, 0, out, NULL, 0};
    sft_synth_options o = model_options(3);
    sft_synth_summary s;
    sft_err err;
    CHECK(sft_data_answer(&io, NULL, SFT_FORMAT_AUTO, &o, &s, &err) == 0);
    CHECK_INT(s.records, 2);
    CHECK_INT(s.created, 1);
    CHECK_INT(s.unchanged, 1);
    char *result = read_text(out);
    CHECK(result != NULL);
    if (!result) return;
    char *second = strchr(result, '\n');
    *second++ = 0;
    json_t *first = json_loads(result, 0, NULL);
    CHECK(first != NULL);
    json_t *tag = json_pack("[ii]", 1, 2);
    CHECK(json_equal(json_object_get(first, "tag"), tag));
    json_decref(tag);
    json_t *msgs = json_object_get(first, "messages");
    CHECK_INT(json_array_size(msgs), 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(msgs, 2), "role")), "assistant");
    CHECK(json_object_get(first, "generation") != NULL);
    /* the answered record is written back byte for byte */
    second[strcspn(second, "\n")] = 0;
    CHECK_STR(second, answered);
    json_decref(first);
    free(result);
}

TEST(alpaca_records_get_their_output_filled) {
    const char *in = sft_test_tmp_path("alpaca.jsonl"), *out = sft_test_tmp_path("alpaca_out.jsonl");
    sft_test_write_text(in, "{\"instruction\": \"Add\", \"input\": \"2 and 3\", \"output\": \"\", \"id\": \"q\"}\n");
    const char *inputs[] = {in};
    sft_data_io io = {inputs, 1, SFT_FORMAT_AUTO, 0, out, NULL, 0};
    sft_synth_options o = model_options(3);
    sft_synth_summary s;
    sft_err err;
    CHECK(sft_data_answer(&io, NULL, SFT_FORMAT_AUTO, &o, &s, &err) == 0);
    char *result = read_text(out);
    json_t *j = result ? json_loads(result, 0, NULL) : NULL;
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "input")), "2 and 3");
    CHECK(json_string_length(json_object_get(j, "output")) > 0);
    CHECK_STR(json_string_value(json_object_get(j, "id")), "q");
    json_decref(j);
    free(result);
}

TEST(self_instruct_filters_follow_the_paper) {
    sft_err err;
    CHECK(sft_self_instruct_rejects("Write a short poem about autumn leaves.", &err) == -1);
    CHECK_STR(sft_synth_reason_name(sft_self_instruct_rejects("Sort this.", &err)), "too_short");
    CHECK_STR(sft_synth_reason_name(sft_self_instruct_rejects("Draw a picture of a cat for me.", &err)),
              "not_a_text_task");
    CHECK_STR(sft_synth_reason_name(sft_self_instruct_rejects("- a list item, not a task", &err)), "empty");
    CHECK_STR(sft_synth_reason_name(sft_self_instruct_rejects("", &err)), "empty");
}

TEST(self_instruct_reproduces_and_tags_origins) {
    const char *seeds = sft_test_tmp_path("seeds.jsonl"), *a = sft_test_tmp_path("si_a.jsonl"), *b = sft_test_tmp_path("si_b.jsonl");
    sft_test_write_text(seeds, "{\"instruction\": \"Write a haiku about the sea.\", \"output\": \"x\"}\n"
                      "{\"instruction\": \"Explain why the sky is blue.\", \"output\": \"x\"}\n");
    const char *inputs[] = {seeds};
    sft_self_instruct_options si;
    sft_self_instruct_options_default(&si);
    si.count = 1;
    si.max_attempts = 2;
    sft_synth_options o = model_options(5);
    o.max_new_tokens = 20;
    sft_synth_summary s;
    sft_err err;
    sft_data_io io = {inputs, 1, SFT_FORMAT_AUTO, 0, a, NULL, 0};
    CHECK(sft_data_self_instruct(&io, &si, &o, &s, &err) == 0);
    io.output = b;
    CHECK(sft_data_self_instruct(&io, &si, &o, &s, &err) == 0);
    char *ta = read_text(a), *tb = read_text(b);
    CHECK(ta && tb);
    if (ta && tb) {
        CHECK_STR(ta, tb);
        if (s.created) {
            CHECK(strstr(ta, "\"method\":\"self-instruct\""));
            CHECK(strstr(ta, "\"prompt_instructions\":[\""));
            CHECK(strstr(ta, "seeds.jsonl:1") || strstr(ta, "seeds.jsonl:2"));
        }
    }
    /* it stops at the count or after max_attempts model calls */
    CHECK(s.created == 1 || s.attempts == 2);
    free(ta);
    free(tb);
}

TEST(evol_prompts_hold_the_method_and_the_instruction) {
    char *p = sft_evol_prompt(SFT_EVOL_REASONING, "Add 2 and 3.");
    CHECK(p && strstr(p, "I want you act as a Prompt Rewriter."));
    CHECK(p && strstr(p, "explicitly request multiple-step reasoning"));
    CHECK(p && strstr(p, "#The Given Prompt#:\nAdd 2 and 3.\n#Rewritten Prompt#:\n"));
    free(p);
    p = sft_evol_prompt(SFT_EVOL_BREADTH, "Add 2 and 3.");
    CHECK(p && strstr(p, "I want you act as a Prompt Creator."));
    CHECK(p && strstr(p, "#Given Prompt#:\nAdd 2 and 3.\n#Created Prompt#:\n"));
    free(p);
}

TEST(evolutions_are_eliminated_as_in_the_paper) {
    sft_err err;
    const char *orig = "List three uses of a paperclip.";
    CHECK(sft_evol_eliminates(
              orig, "List three unusual uses of a paperclip in an office, with a reason for each.",
              "First, as a cable tidy; second, as a bookmark; third, to reset a router.", &err) == -1);
    CHECK_STR(sft_synth_reason_name(sft_evol_eliminates(orig, "", NULL, &err)), "empty");
    CHECK_STR(sft_synth_reason_name(sft_evol_eliminates(orig, "Paperclips?", NULL, &err)), "too_short");
    CHECK_STR(sft_synth_reason_name(sft_evol_eliminates(orig, "list three uses of a  Paperclip", NULL, &err)),
              "copies_prompt");
    CHECK_STR(sft_synth_reason_name(
                  sft_evol_eliminates(orig, "#Rewritten Prompt#: list three uses of a stapler", NULL, &err)),
              "copies_prompt");
    CHECK_STR(sft_synth_reason_name(sft_evol_eliminates(orig, "List five uses of a stapler at school.",
                                                        "Sorry, I cannot.", &err)),
              "refused_answer");
    CHECK_STR(sft_synth_reason_name(sft_evol_eliminates(orig, "List five uses of a stapler at school.",
                                                        "... the, and; of the!", &err)),
              "empty_answer");
}

TEST(evolve_points_each_new_record_to_its_origin) {
    const char *in = sft_test_tmp_path("evol_in.jsonl"), *a = sft_test_tmp_path("evol_a.jsonl"), *b = sft_test_tmp_path("evol_b.jsonl");
    sft_test_write_text(in, "{\"id\": \"r1\", \"messages\": [{\"role\": \"user\", \"content\": \"Add 2 and 3.\"}, "
                   "{\"role\": \"assistant\", \"content\": \"5\"}]}\n");
    const char *inputs[] = {in};
    sft_evolve_options eo;
    sft_evolve_options_default(&eo);
    eo.variants = 2;
    sft_synth_options o = model_options(9);
    o.model_dir = LLAMA3;
    o.max_new_tokens = 4;
    sft_synth_summary s;
    sft_err err;
    sft_data_io io = {inputs, 1, SFT_FORMAT_AUTO, 0, a, NULL, 0};
    int rc = sft_data_evolve(&io, &eo, &o, &s, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    CHECK(rc == 0);
    CHECK_INT(s.created + s.rejected, 2);
    /* Seeds are per record and variant: one variant reproduces the first of two. */
    io.output = b;
    eo.variants = 1;
    sft_synth_summary s1;
    CHECK(sft_data_evolve(&io, &eo, &o, &s1, &err) == 0);
    char *ta = read_text(a), *tb = read_text(b);
    CHECK(ta && tb);
    if (ta && tb) {
        CHECK(strncmp(ta, tb, strlen(tb)) == 0);
        /* the original first, then its evolutions */
        CHECK(strncmp(ta, "{\"id\": \"r1\"", 11) == 0);
        if (s.created) {
            CHECK(strstr(ta, "\"id\":\"r1-evol"));
            CHECK(strstr(ta, "\"origin\":{\"file\":"));
            CHECK(strstr(ta, "\"augmentation\":\"evol: "));
        }
    }
    free(ta);
    free(tb);
}
