/* test_io_basics.c: errors, atomic files, gzip and the JSON layer. */
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "test.h"

TEST(err_prefix_adds_context_once) {
    sft_err err;
    sft_errf(&err, "tensor '%s': bad shape", "wte");
    sft_err_prefix(&err, "%s", "model.safetensors");
    CHECK_STR(err.msg, "model.safetensors: tensor 'wte': bad shape");
}

TEST(atomic_write_replaces_whole_file) {
    sft_err err;
    const char *path = "build/test-tmp/atomic.txt";
    CHECK_INT(sft_mkdir_p("build/test-tmp", &err), 0);
    CHECK_INT(sft_write_file_atomic(path, "old", 3, &err), 0);
    sft_atomic_file *f = sft_atomic_open(path, &err);
    CHECK(f != NULL);
    sft_atomic_write(f, "half", 4, &err);
    sft_atomic_abort(f); /* a failed writer leaves the old file untouched */
    char *data;
    size_t len;
    CHECK_INT(sft_read_file(path, &data, &len, &err), 0);
    CHECK_STR(data, "old");
    free(data);
    CHECK_INT(sft_write_file_atomic(path, "new!", 4, &err), 0);
    CHECK_INT(sft_read_file(path, &data, &len, &err), 0);
    CHECK_STR(data, "new!");
    free(data);
    unlink(path);
}

TEST(read_missing_file_names_it) {
    sft_err err;
    char *data;
    size_t len;
    CHECK_INT(sft_read_file("build/no/such/file", &data, &len, &err), -1);
    CHECK_ERR_HAS(err.msg, "build/no/such/file");
}

TEST(gz_corpus_decompresses) {
    sft_err err;
    char *data;
    size_t len;
    CHECK_INT(sft_read_file_maybe_gz("tests/fixtures/hf/corpus/reference_corpus.json.gz", &data, &len, &err), 0);
    CHECK(len > 1000000);
    CHECK(data[0] == '{');
    free(data);
}

TEST(json_error_names_file_line_column) {
    sft_err err;
    const char *text = "{\n  \"a\": 1,\n  \"b\": }\n";
    json_t *j = sft_json_loadb(text, strlen(text), "cfg.json", &err);
    CHECK(j == NULL);
    CHECK_ERR_HAS(err.msg, "cfg.json:3:");
    CHECK_ERR_HAS(err.msg, "invalid JSON");
}

TEST(json_reads_huge_integers_as_numbers) {
    /* tokenizer_config.json's model_max_length is past 64 bits. */
    sft_err err;
    const char *text = "{\"model_max_length\": 1000000000000000019884624838656, \"id\": 128009}";
    json_t *j = sft_json_loadb(text, strlen(text), "tc.json", &err);
    CHECK(j != NULL);
    int64_t id = 0;
    CHECK_INT(sft_json_get_int(j, "id", &id, "tc.json", &err), 0);
    CHECK_INT(id, 128009);
    int64_t big;
    CHECK_INT(sft_json_get_int(j, "model_max_length", &big, "tc.json", &err), -1);
    CHECK_ERR_HAS(err.msg, "'model_max_length' must be an integer");
    json_decref(j);
}

TEST(json_lenient_reads_python_nan) {
    sft_err err;
    const char *text = "{\"loss\": NaN, \"g\": -Infinity, \"s\": \"NaN in a string\"}";
    json_t *j = sft_json_loadb_lenient(text, strlen(text), "trainer_state.json", &err);
    CHECK(j != NULL);
    double loss = 0, g = 0;
    CHECK_INT(sft_json_get_number(j, "loss", &loss, "x", &err), 0);
    CHECK(isnan(loss));
    CHECK_INT(sft_json_get_number(j, "g", &g, "x", &err), 0);
    CHECK(isinf(g) && g < 0);
    CHECK_STR(json_string_value(json_object_get(j, "s")), "NaN in a string");
    json_decref(j);
}
