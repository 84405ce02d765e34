/* test_records.c: the instruction-data formats (records.h): detection, the
 * mapping of each format to messages, JSON arrays, gzip, bad lines with
 * FILE:LINE, wrong record shapes, skipping, conversion and byte-exact
 * pass-through of unchanged records. */
#include <unistd.h>
#include <zlib.h>

#include "data/records.h"
#include "io/file.h"
#include "test.h"

/* Writes text to a fresh temporary file ending in suffix; returns its path (static). */
static const char *temp_file(const char *text, const char *suffix) {
    static char path[256];
    static int counter;
    snprintf(path, sizeof path, "/tmp/sft_test_records_%d_%d%s", (int)getpid(), counter++, suffix);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Reads every record of a file; returns the count, -1 on error (msg in err). */
static int read_all(const char *path, sft_data_format format, int skip_bad, sft_record *last,
                    sft_data_format *detected, size_t *skipped, sft_err *err) {
    sft_reader_options opts = {.format = format, .skip_bad = skip_bad};
    sft_reader *r = sft_reader_open(path, &opts, err);
    if (!r) return -1;
    sft_record rec;
    sft_record_init(&rec);
    int n = 0, rc;
    while ((rc = sft_reader_next(r, &rec, err)) == 1) {
        n++;
        if (last) {
            sft_record_free(last);
            sft_record_init(last);
            sft_record_from_json(last, json_incref(rec.json), rec.format, 0, "copy", err);
            last->line = rec.line;
        }
    }
    if (detected) *detected = sft_reader_format(r);
    if (skipped) *skipped = sft_reader_skipped(r);
    sft_record_free(&rec);
    sft_reader_close(r);
    return rc < 0 ? -1 : n;
}

static void check_message(const sft_record *rec, size_t i, sft_role role, const char *content) {
    CHECK(i < rec->message_count);
    if (i >= rec->message_count) return;
    CHECK_INT(rec->messages[i].role, role);
    CHECK_STR(rec->messages[i].content, content);
    CHECK_INT(rec->messages[i].content_len, strlen(content));
}

TEST(alpaca_detected_and_input_joined_with_blank_line) {
    const char *p = temp_file("{\"id\": 7, \"instruction\": \"Translate\", \"input\": \"chat\", \"output\": "
                              "\"cat\", \"system\": \"Be brief.\"}\n"
                              "\n"
                              "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}\n",
                              ".jsonl");
    sft_err err = {0};
    sft_record last;
    sft_record_init(&last);
    sft_data_format f;
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, NULL, &f, NULL, &err), 2);
    CHECK_INT(f, SFT_FORMAT_ALPACA);
    /* First record: system, user = instruction + "\n\n" + input, assistant. */
    sft_reader_options opts = {0};
    sft_reader *r = sft_reader_open(p, &opts, &err);
    sft_record rec;
    sft_record_init(&rec);
    CHECK_INT(sft_reader_next(r, &rec, &err), 1);
    CHECK_INT(rec.message_count, 3);
    check_message(&rec, 0, SFT_ROLE_SYSTEM, "Be brief.");
    check_message(&rec, 1, SFT_ROLE_USER, "Translate\n\nchat");
    check_message(&rec, 2, SFT_ROLE_ASSISTANT, "cat");
    CHECK_INT(rec.line, 1);
    CHECK_INT(sft_reader_next(r, &rec, &err), 1);
    CHECK_INT(rec.line, 3); /* the blank line is skipped but counted */
    CHECK_INT(rec.message_count, 2);
    check_message(&rec, 0, SFT_ROLE_USER, "Say hi");
    CHECK_INT(sft_reader_next(r, &rec, &err), 0);
    sft_record_free(&rec);
    sft_record_free(&last);
    sft_reader_close(r);
    unlink(p);
}

TEST(sharegpt_roles_including_user_assistant_spellings) {
    const char *p =
        temp_file("{\"conversations\": [{\"from\": \"system\", \"value\": \"S\"}, {\"from\": \"human\", "
                  "\"value\": \"Q1\"}, {\"from\": \"gpt\", \"value\": \"A1\"}, {\"from\": \"user\", "
                  "\"value\": \"Q2\"}, {\"from\": \"assistant\", \"value\": \"A2\"}]}\n",
                  ".jsonl");
    sft_err err = {0};
    sft_record rec;
    sft_record_init(&rec);
    sft_data_format f;
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, &rec, &f, NULL, &err), 1);
    CHECK_INT(f, SFT_FORMAT_SHAREGPT);
    CHECK_INT(rec.message_count, 5);
    check_message(&rec, 0, SFT_ROLE_SYSTEM, "S");
    check_message(&rec, 1, SFT_ROLE_USER, "Q1");
    check_message(&rec, 2, SFT_ROLE_ASSISTANT, "A1");
    check_message(&rec, 3, SFT_ROLE_USER, "Q2");
    check_message(&rec, 4, SFT_ROLE_ASSISTANT, "A2");
    sft_record_free(&rec);
    unlink(p);
}

TEST(messages_prompt_completion_and_text_map_to_messages) {
    sft_err err = {0};
    sft_record rec;
    sft_record_init(&rec);
    sft_data_format f;
    const char *p = temp_file("{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": "
                              "\"assistant\", \"content\": \"4\"}]}\n",
                              ".jsonl");
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, &rec, &f, NULL, &err), 1);
    CHECK_INT(f, SFT_FORMAT_MESSAGES);
    check_message(&rec, 0, SFT_ROLE_USER, "2+2?");
    check_message(&rec, 1, SFT_ROLE_ASSISTANT, "4");
    unlink(p);

    p = temp_file("{\"prompt\": \"The sky is\", \"completion\": \" blue.\"}\n", ".jsonl");
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, &rec, &f, NULL, &err), 1);
    CHECK_INT(f, SFT_FORMAT_PROMPT_COMPLETION);
    check_message(&rec, 0, SFT_ROLE_USER, "The sky is");
    check_message(&rec, 1, SFT_ROLE_ASSISTANT, " blue.");
    unlink(p);

    /* TRL's conversational prompt-completion: lists of messages. */
    p = temp_file("{\"prompt\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", "
                  "\"content\": \"Q\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"A\"}]}\n",
                  ".jsonl");
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, &rec, &f, NULL, &err), 1);
    CHECK_INT(rec.message_count, 3);
    check_message(&rec, 2, SFT_ROLE_ASSISTANT, "A");
    unlink(p);

    p = temp_file("{\"text\": \"Once upon a time.\"}\n", ".jsonl");
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, &rec, &f, NULL, &err), 1);
    CHECK_INT(f, SFT_FORMAT_TEXT);
    CHECK_INT(rec.message_count, 1);
    check_message(&rec, 0, SFT_ROLE_ASSISTANT, "Once upon a time.");
    sft_record_free(&rec);
    unlink(p);
}

TEST(json_array_elements_keep_their_line_numbers) {
    const char *p = temp_file("[\n  {\"instruction\": \"a\",\n   \"output\": \"b\"},\n  {\"instruction\": "
                              "\"c [x] {y}\", \"output\": \"d \\\"}\\\"\"}\n]\n",
                              ".json");
    sft_err err = {0};
    sft_reader_options opts = {0};
    sft_reader *r = sft_reader_open(p, &opts, &err);
    sft_record rec;
    sft_record_init(&rec);
    CHECK_INT(sft_reader_next(r, &rec, &err), 1);
    CHECK_INT(rec.line, 2);
    check_message(&rec, 0, SFT_ROLE_USER, "a");
    CHECK_INT(sft_reader_next(r, &rec, &err), 1);
    CHECK_INT(rec.line, 4);
    check_message(&rec, 0, SFT_ROLE_USER, "c [x] {y}");
    check_message(&rec, 1, SFT_ROLE_ASSISTANT, "d \"}\"");
    CHECK_INT(sft_reader_next(r, &rec, &err), 0);
    sft_record_free(&rec);
    sft_reader_close(r);
    unlink(p);
}

TEST(gzip_jsonl_is_read_transparently) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/sft_test_records_gz_%d.jsonl.gz", (int)getpid());
    gzFile gz = gzopen(path, "wb");
    gzputs(gz, "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");
    gzclose(gz);
    sft_err err = {0};
    CHECK_INT(read_all(path, SFT_FORMAT_AUTO, 0, NULL, NULL, NULL, &err), 2);
    unlink(path);
}

TEST(bad_json_line_names_file_and_line) {
    const char *p = temp_file("{\"text\": \"ok\"}\n{\"text\": \"broken\"\n{\"text\": \"ok\"}\n", ".jsonl");
    sft_err err = {0};
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, NULL, NULL, NULL, &err), -1);
    char expect[300];
    snprintf(expect, sizeof expect, "%s:2: invalid JSON", p);
    CHECK_ERR_HAS(err.msg, expect);
    /* Skipping counts it and goes on. */
    size_t skipped = 0;
    CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 1, NULL, NULL, &skipped, &err), 2);
    CHECK_INT(skipped, 1);
    unlink(p);
}

TEST(wrong_shapes_say_what_was_expected) {
    struct {
        const char *text;
        const char *expect;
    } cases[] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", ":1: record has no assistant turn"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}, {\"role\": "
         "\"assistant\", \"content\": \"x\"}]}\n",
         ":1: messages[0].content must be a string"},
        {"{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}\n",
         "unknown role 'robot' (expected system, user or assistant)"},
        {"{\"conversations\": [{\"from\": \"bot\", \"value\": \"hi\"}]}\n", "unknown role 'bot'"},
        {"{\"instruction\": 5, \"output\": \"x\"}\n", ":1: 'instruction' must be a string, got a number"},
        {"{\"question\": \"q\", \"answer\": \"a\"}\n",
         ":1: cannot tell the data format (first key 'question')"},
        {"[1, 2]\n", ":1: expected a JSON object"},
        {"{\"text\": \"a\"}\n{\"instruction\": \"b\", \"output\": \"c\"}\n",
         ":2: expected a text record ('text') like the first record at line 1"},
        {"{\"instruction\": \"a\", \"output\": \"b\", \"history\": [[\"q\", \"a\"]]}\n", "'history'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = temp_file(cases[i].text, ".jsonl");
        sft_err err = {0};
        CHECK_INT(read_all(p, SFT_FORMAT_AUTO, 0, NULL, NULL, NULL, &err), -1);
        CHECK_ERR_HAS(err.msg, cases[i].expect);
        CHECK_ERR_HAS(err.msg, p);
        unlink(p);
    }
}

TEST(forced_format_rejects_records_without_its_keys) {
    const char *p = temp_file("{\"text\": \"a\"}\n", ".jsonl");
    sft_err err = {0};
    CHECK_INT(read_all(p, SFT_FORMAT_ALPACA, 0, NULL, NULL, NULL, &err), -1);
    CHECK_ERR_HAS(err.msg, "alpaca record has no 'instruction'");
    unlink(p);
}

TEST(format_names_parse_with_suggestion) {
    sft_data_format f;
    sft_err err = {0};
    CHECK_INT(sft_data_format_parse("prompt-completion", &f, &err), 0);
    CHECK_INT(f, SFT_FORMAT_PROMPT_COMPLETION);
    CHECK_INT(sft_data_format_parse("sharegtp", &f, &err), -1);
    CHECK_ERR_HAS(err.msg, "did you mean 'sharegpt'");
}

/* Builds a record in `to` from a record text in any format; returns the dump. */
static char *convert_text(const char *text, sft_data_format to, sft_err *err) {
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    sft_record rec;
    sft_record_init(&rec);
    char *out = NULL;
    if (sft_record_from_json(&rec, j, sft_data_format_detect(j), 0, "x.jsonl:3", err) == 0) {
        json_t *built =
            sft_record_build(rec.json, rec.format, rec.messages, rec.message_count, to, "x.jsonl:3", err);
        if (built) out = sft_record_dumps(built);
        json_decref(built);
    }
    sft_record_free(&rec);
    return out;
}

TEST(convert_keeps_other_fields_in_place) {
    sft_err err = {0};
    char *s = convert_text(
        "{\"id\": 17, \"instruction\": \"Q\", \"input\": \"ctx\", \"output\": \"A\", \"score\": 0.1}",
        SFT_FORMAT_MESSAGES, &err);
    CHECK_STR(s, "{\"id\":17,\"messages\":[{\"role\":\"user\",\"content\":\"Q\\n\\nctx\"},{\"role\":"
                 "\"assistant\",\"content\":\"A\"}],\"score\":0.1}");
    free(s);
    s = convert_text(
        "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": "
        "\"Q\", \"name\": \"bob\"}, {\"role\": \"assistant\", \"content\": \"A\"}], \"id\": \"x1\"}",
        SFT_FORMAT_SHAREGPT, &err);
    CHECK_STR(s, "{\"conversations\":[{\"from\":\"system\",\"value\":\"S\"},{\"from\":\"human\",\"value\":"
                 "\"Q\",\"name\":\"bob\"},{\"from\":\"gpt\",\"value\":\"A\"}],\"id\":\"x1\"}");
    free(s);
    s = convert_text("{\"conversations\": [{\"from\": \"system\", \"value\": \"S\"}, {\"from\": \"human\", "
                     "\"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}",
                     SFT_FORMAT_ALPACA, &err);
    CHECK_STR(s, "{\"instruction\":\"Q\",\"input\":\"\",\"output\":\"A\",\"system\":\"S\"}");
    free(s);
    s = convert_text("{\"messages\": [{\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", "
                     "\"content\": \"A\"}]}",
                     SFT_FORMAT_PROMPT_COMPLETION, &err);
    CHECK_STR(s, "{\"prompt\":\"Q\",\"completion\":\"A\"}");
    free(s);
}

TEST(convert_refuses_what_the_target_cannot_hold) {
    sft_err err = {0};
    const char *multi = "{\"messages\": [{\"role\": \"user\", \"content\": \"Q1\"}, {\"role\": "
                        "\"assistant\", \"content\": \"A1\"}, {\"role\": \"user\", \"content\": \"Q2\"}, "
                        "{\"role\": \"assistant\", \"content\": \"A2\"}]}";
    CHECK(convert_text(multi, SFT_FORMAT_ALPACA, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "x.jsonl:3: 4 messages");
    CHECK_ERR_HAS(err.msg, "cannot be written as alpaca");
    CHECK(convert_text(multi, SFT_FORMAT_PROMPT_COMPLETION, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "exactly one assistant message");
    CHECK(convert_text(multi, SFT_FORMAT_TEXT, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "chat template");
}

TEST(writer_passes_unchanged_records_byte_for_byte_and_is_atomic) {
    /* Odd spacing, unicode escapes, a real with many digits and a big integer must survive. */
    const char *line =
        "{ \"id\":12345678901234567890123, \"text\" : \"caf\\u00e9 \\ud83d\\ude00\",\"x\":1.10}";
    char input_text[512];
    snprintf(input_text, sizeof input_text, "%s\n", line);
    const char *in = temp_file(input_text, ".jsonl");
    char inpath[256];
    snprintf(inpath, sizeof inpath, "%s", in);
    char out[256];
    snprintf(out, sizeof out, "/tmp/sft_test_records_out_%d.jsonl", (int)getpid());
    sft_err err = {0};
    sft_reader_options opts = {0};
    sft_reader *r = sft_reader_open(inpath, &opts, &err);
    sft_record rec;
    sft_record_init(&rec);
    CHECK_INT(sft_reader_next(r, &rec, &err), 1);
    sft_writer *w = sft_writer_open(out, &err);
    CHECK(w != NULL);
    CHECK_INT(sft_writer_put_record(w, &rec, &err), 0);
    CHECK(!sft_file_exists(out)); /* nothing under the final name before commit */
    CHECK_INT(sft_writer_commit(w, &err), 0);
    char *data;
    size_t len;
    CHECK_INT(sft_read_file(out, &data, &len, &err), 0);
    CHECK_STR(data, input_text);
    free(data);
    /* A JSON array output is valid JSON that reads back. */
    char out_json[256];
    snprintf(out_json, sizeof out_json, "/tmp/sft_test_records_out_%d.json", (int)getpid());
    w = sft_writer_open(out_json, &err);
    sft_writer_put_record(w, &rec, &err);
    sft_writer_put_record(w, &rec, &err);
    CHECK_INT(sft_writer_commit(w, &err), 0);
    CHECK_INT(read_all(out_json, SFT_FORMAT_AUTO, 0, NULL, NULL, NULL, &err), 2);
    /* Aborting leaves nothing. */
    char out2[256];
    snprintf(out2, sizeof out2, "/tmp/sft_test_records_abort_%d.jsonl", (int)getpid());
    w = sft_writer_open(out2, &err);
    sft_writer_put_record(w, &rec, &err);
    sft_writer_abort(w);
    CHECK(!sft_file_exists(out2));
    sft_record_free(&rec);
    sft_reader_close(r);
    unlink(inpath);
    unlink(out);
    unlink(out_json);
}

TEST(integers_stay_integers_when_reserialised) {
    json_error_t jerr;
    sft_err err = {0};
    const char *p = temp_file("{\"id\": 3, \"text\": \"t\", \"w\": 2.5}\n", ".jsonl");
    sft_reader_options opts = {0};
    sft_reader *r = sft_reader_open(p, &opts, &err);
    sft_record rec;
    sft_record_init(&rec);
    CHECK_INT(sft_reader_next(r, &rec, &err), 1);
    char *s = sft_record_dumps(rec.json);
    CHECK_STR(s, "{\"id\":3,\"text\":\"t\",\"w\":2.5}");
    free(s);
    (void)jerr;
    sft_record_free(&rec);
    sft_reader_close(r);
    unlink(p);
}
