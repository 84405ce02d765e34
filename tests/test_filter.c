/* test_filter.c: `sft data filter` on planted junk, one kind per rule, among
 * clean records that look hard (lists, code, numbers-only answers, CJK text,
 * a curly apostrophe that is not a refusal); precision and recall printed. */
#include <unistd.h>

#include "data/pipeline.h"
#include "io/file.h"
#include "test.h"

typedef struct {
    const char *json; /* the record without its id */
    const char *rule; /* expected rule, or NULL when clean */
} planted;

static const planted cases[] = {
    /* clean */
    {"\"instruction\": \"What is 17 + 25?\", \"output\": \"42\"", NULL},
    {"\"instruction\": \"List three fruits.\", \"output\": \"Here are three fruits that are easy to find in "
     "most shops all year round and keep well:\\n- apple\\n- banana\\n- cherry\"",
     NULL},
    {"\"instruction\": \"Write a C loop.\", \"output\": \"Here is a loop that counts from zero to nine and "
     "prints every number on its own line, as asked in the question:\\n```c\\nfor (int i = 0; i < 10; "
     "i++)\\n    printf(\\\"%d\\\\n\\\", i);\\n```\"",
     NULL},
    {"\"instruction\": \"用中文回答：天空是什么颜色？\", \"output\": \"天空通常是蓝色的\"", NULL},
    {"\"instruction\": \"Say something nice.\", \"output\": \"It’s a lovely day, and you’re doing great.\"",
     NULL},
    {"\"instruction\": \"Explain rain.\", \"output\": \"Rain forms when water vapour in the air cools, "
     "condenses into droplets around tiny particles, and the droplets grow heavy enough to fall to the "
     "ground.\"",
     NULL},
    {"\"instruction\": \"Translate to French: good morning\", \"input\": \"\", \"output\": \"Bonjour.\"",
     NULL},
    /* junk */
    {"\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": "
     "\"Hello\"}, {\"role\": \"user\", \"content\": \"And then?\"}]",
     "no_answer"},
    {"\"instruction\": \"Describe the sea.\", \"output\": \"   \\n\\t \"", "empty_turn"},
    {"\"instruction\": \"   \", \"output\": \"Something.\"", "empty_turn"},
    {"\"instruction\": \"Why is the sky blue?\", \"output\": \"I'm sorry, but I cannot answer questions "
     "about the weather.\"",
     "refusal"},
    {"\"instruction\": \"Your opinion?\", \"output\": \"As an AI language model, I do not have opinions.\"",
     "refusal"},
    {"\"instruction\": \"Opinion?\", \"output\": \"I’m sorry, but I can’t help with that request.\"",
     "refusal"},
    {"\"instruction\": \"Tell a story.\", \"output\": \"the cat sat on the mat the cat sat on the mat the "
     "cat sat on the mat the cat sat on the mat the cat sat on the mat.\"",
     "repetition"},
    {"\"instruction\": \"Describe binary.\", \"output\": \"Binary data "
     "\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006 is stored here.\"",
     "nonprintable"},
    {"\"instruction\": \"Explain tides.\", \"output\": \"Tides are caused mainly by the gravitational pull "
     "of the moon on the oceans of the earth, which raises a bulge of water on the side facing the moon and, "
     "at the same time,\"",
     "cut_off"},
    {"\"instruction\": \"Explain wind.\", \"output\": \"Wind is air that moves from areas of high pressure "
     "to areas of low pressure, and the greater the difference between them the stronger the wind becomes "
     "because\"",
     "cut_off"},
    {"\"instruction\": \"Скажи что-нибудь.\", \"output\": \"Привет, как дела у тебя сегодня?\"", "script"},
    {"\"instruction\": \"Visit http://spam.example now\", \"output\": \"Sure.\"", "drop_regex"},
};
#define CASES (sizeof cases / sizeof cases[0])

TEST(planted_junk_rejected_by_its_rule_and_clean_records_kept) {
    char in[128], out[128], rej[128];
    snprintf(in, sizeof in, "/tmp/sft_test_filter_%d.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/sft_test_filter_out_%d.jsonl", (int)getpid());
    snprintf(rej, sizeof rej, "/tmp/sft_test_filter_rej_%d.jsonl", (int)getpid());
    /* Two files: alpaca and messages records cannot share one. */
    char in2[128];
    snprintf(in2, sizeof in2, "/tmp/sft_test_filter2_%d.jsonl", (int)getpid());
    FILE *f = fopen(in, "w"), *f2 = fopen(in2, "w");
    for (size_t i = 0; i < CASES; i++)
        fprintf(strstr(cases[i].json, "\"messages\"") ? f2 : f, "{\"id\": %zu, %s}\n", i, cases[i].json);
    fclose(f);
    fclose(f2);
    const char *inputs[] = {in, in2};
    sft_data_io io = {.inputs = inputs, .input_count = 2, .output = out};
    sft_filter_options o;
    sft_filter_options_default(&o);
    o.rejected = rej;
    o.scripts = "Latin,Han";
    o.drop_regex[o.drop_regex_count++] = "https?://";
    sft_filter_summary s;
    sft_err err = {0};
    CHECK_INT(sft_data_filter(&io, &o, &s, &err), 0);
    if (err.msg[0]) printf("  %s\n", err.msg);

    /* Which rule rejected which id. */
    const char *got_rule[CASES] = {0};
    static char rule_store[CASES][32];
    sft_reader_options ro = {0};
    sft_reader *r = sft_reader_open(rej, &ro, &err);
    CHECK(r != NULL);
    json_t *j;
    size_t line;
    while (r && sft_reader_next_json(r, &j, &line, &err) == 1) {
        int64_t id = (int64_t)json_integer_value(json_object_get(j, "id"));
        const char *rule = json_string_value(json_object_get(j, "_filter_rule"));
        CHECK(json_object_get(j, "_filter_detail") != NULL);
        if (id >= 0 && (size_t)id < CASES && rule) {
            snprintf(rule_store[id], sizeof rule_store[id], "%s", rule);
            got_rule[id] = rule_store[id];
        }
        json_decref(j);
    }
    sft_reader_close(r);
    int tp = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < CASES; i++) {
        if (got_rule[i] && cases[i].rule) tp++;
        if (got_rule[i] && !cases[i].rule) {
            fp++;
            printf("  clean record %zu rejected by %s\n", i, got_rule[i]);
        }
        if (!got_rule[i] && cases[i].rule) {
            fn++;
            printf("  junk record %zu (%s) kept\n", i, cases[i].rule);
        }
        if (got_rule[i] && cases[i].rule) CHECK_STR(got_rule[i], cases[i].rule);
    }
    printf("  filter: %zu records, %zu kept, %zu rejected; precision %.3f recall %.3f\n", s.records, s.kept,
           s.rejected, tp + fp ? (double)tp / (tp + fp) : 1.0, tp + fn ? (double)tp / (tp + fn) : 1.0);
    CHECK_INT(fp, 0);
    CHECK_INT(fn, 0);
    size_t sum = 0;
    for (int k = 0; k < SFT_RULE_COUNT; k++)
        sum += s.per_rule[k];
    CHECK_INT(sum, s.rejected);
    CHECK_INT(s.per_rule[SFT_RULE_REFUSAL], 3);
    unlink(in);
    unlink(in2);
    unlink(out);
    unlink(rej);
}

TEST(length_rules_and_keep_regex) {
    char in[128], out[128];
    snprintf(in, sizeof in, "/tmp/sft_test_filter_len_%d.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/sft_test_filter_len_out_%d.jsonl", (int)getpid());
    FILE *f = fopen(in, "w");
    fprintf(f,
            "{\"prompt\": \"h\u00e9llo\", \"completion\": \"fine answer\"}\n"); /* 5 chars, 6 bytes: kept */
    fprintf(f, "{\"prompt\": \"hell\", \"completion\": \"fine answer\"}\n");    /* too_short */
    fprintf(f, "{\"prompt\": \"hello there\", \"completion\": \"fine.\"}\n");   /* short_answer */
    fprintf(f,
            "{\"prompt\": \"hello there, this is long\", \"completion\": \"fine answer\"}\n"); /* too_long */
    fclose(f);
    const char *inputs[] = {in};
    sft_data_io io = {.inputs = inputs, .input_count = 1, .output = out};
    sft_filter_options o;
    sft_filter_options_default(&o);
    o.min_chars = 5;
    o.min_answer_chars = 6;
    o.max_chars = 20;
    sft_filter_summary s;
    sft_err err = {0};
    CHECK_INT(sft_data_filter(&io, &o, &s, &err), 0);
    CHECK_INT(s.per_rule[SFT_RULE_TOO_SHORT], 1);
    CHECK_INT(s.per_rule[SFT_RULE_SHORT_ANSWER], 1);
    CHECK_INT(s.per_rule[SFT_RULE_TOO_LONG], 1);
    CHECK_INT(s.kept, 1);
    o.min_chars = 0;
    o.min_answer_chars = 0;
    o.max_chars = 0;
    o.keep_regex[o.keep_regex_count++] = "^hello there$";
    CHECK_INT(sft_data_filter(&io, &o, &s, &err), 0);
    CHECK_INT(s.kept, 1);
    CHECK_INT(s.per_rule[SFT_RULE_KEEP_REGEX], 3);
    /* A bad regex is an error naming it, and nothing is written. */
    unlink(out);
    o.drop_regex[o.drop_regex_count++] = "(unclosed";
    CHECK_INT(sft_data_filter(&io, &o, &s, &err), -1);
    CHECK_ERR_HAS(err.msg, "--drop-regex '(unclosed'");
    CHECK(!sft_file_exists(out));
    unlink(in);
}
