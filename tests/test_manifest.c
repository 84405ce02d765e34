/* test_manifest.c: model-dir content hashes, manifest.json and the
 * tokenized-data cache key. */
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "test.h"
#include "train/manifest.h"

#define GPT2 "tests/fixtures/hf/models/gpt2-tiny"
#define LLAMA "tests/fixtures/hf/models/llama2-tiny"

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static char *temp_dir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/sft-test-manifest-XXXXXX");
    return mkdtemp(buf);
}

static void copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    sft_err err;
    CHECK_INT(sft_read_file(from, &data, &len, &err), 0);
    CHECK_INT(sft_write_file_atomic(to, data, len, &err), 0);
    free(data);
}

TEST(model_hashes_depend_on_content_not_location) {
    sft_hash128 w1, t1, w2, t2, w3, t3;
    sft_err err;
    json_t *files = NULL;
    CHECK_INT(sft_model_dir_hashes(GPT2, &w1, &t1, &files, &err), 0);
    CHECK(json_object_get(files, "model.safetensors") != NULL);
    CHECK(json_object_get(files, "tokenizer.json") != NULL);
    CHECK(json_object_get(files, "generation_config.json") == NULL); /* does not change the weights */
    json_decref(files);
    CHECK_INT(sft_model_dir_hashes(LLAMA, &w2, &t2, NULL, &err), 0);
    CHECK(!sft_hash_equal(w1, w2));
    CHECK(!sft_hash_equal(t1, t2));
    CHECK(!sft_hash_equal(w1, t1));

    char dir[64];
    CHECK(temp_dir(dir, sizeof dir) != NULL);
    const char *names[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "chat_template.jinja"};
    for (int i = 0; i < 5; i++) {
        char from[256], to[256];
        snprintf(from, sizeof from, "%s/%s", GPT2, names[i]);
        snprintf(to, sizeof to, "%s/%s", dir, names[i]);
        copy_file(from, to);
    }
    CHECK_INT(sft_model_dir_hashes(dir, &w3, &t3, NULL, &err), 0);
    CHECK(sft_hash_equal(w1, w3));
    CHECK(sft_hash_equal(t1, t3));
    /* A changed chat template changes the tokenizer hash only. */
    char path[256];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    CHECK_INT(sft_write_file_atomic(path, "{{ messages }}", 14, &err), 0);
    CHECK_INT(sft_model_dir_hashes(dir, &w3, &t3, NULL, &err), 0);
    CHECK(sft_hash_equal(w1, w3));
    CHECK(!sft_hash_equal(t1, t3));
    /* Without weights it is not a model dir. */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    CHECK_INT(sft_model_dir_hashes(dir, &w3, &t3, NULL, &err), -1);
    char expected[256];
    snprintf(expected, sizeof expected, "%s: not a model dir (no *.safetensors weights found)", dir);
    CHECK_STR(err.msg, expected);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    CHECK_INT(sft_model_dir_hashes("/nonexistent/model", &w3, &t3, NULL, &err), -1);
    CHECK_ERR_HAS(err.msg, "/nonexistent/model");
}

TEST(manifest_records_hashes_seed_threads_time_and_host) {
    char dir[64], data_path[128], manifest_path[128];
    CHECK(temp_dir(dir, sizeof dir) != NULL);
    snprintf(data_path, sizeof data_path, "%s/train.jsonl", dir);
    snprintf(manifest_path, sizeof manifest_path, "%s/manifest.json", dir);
    sft_err err;
    const char *records = "{\"text\": \"hello\"}\n";
    CHECK_INT(sft_write_file_atomic(data_path, records, strlen(records), &err), 0);
    const char *data_files[] = {data_path};
    json_t *extra = json_pack("{s:s}", "run_name", "demo");
    sft_manifest m = {"0.1.0", "sft train --model " GPT2, GPT2, data_files, 1, NULL, 42, 2, 1795000000, extra};
    CHECK_INT(sft_manifest_write(manifest_path, &m, &err), 0);
    json_decref(extra);
    json_t *root = sft_json_load_file(manifest_path, &err);
    CHECK(root != NULL);
    const char *s;
    int64_t n;
    CHECK_INT(sft_json_get_string(root, "version", &s, "manifest", &err), 0);
    CHECK_STR(s, "0.1.0");
    CHECK_INT(sft_json_get_string(root, "start_time", &s, "manifest", &err), 0);
    CHECK_STR(s, "2026-11-18T11:06:40Z");
    CHECK_INT(sft_json_get_int(root, "seed", &n, "manifest", &err), 0);
    CHECK_INT(n, 42);
    CHECK_INT(sft_json_get_int(root, "threads", &n, "manifest", &err), 0);
    CHECK_INT(n, 2);
    CHECK_INT(sft_json_get_string(root, "host", &s, "manifest", &err), 0);
    CHECK(strlen(s) > 0);
    CHECK_INT(sft_json_get_string(root, "run_name", &s, "manifest", &err), 0);
    CHECK(json_is_null(json_object_get(root, "val_data")));
    const json_t *model = json_object_get(root, "model");
    sft_hash128 w, t;
    CHECK_INT(sft_model_dir_hashes(GPT2, &w, &t, NULL, &err), 0);
    char hex[SFT_HASH_HEX_CHARS];
    sft_hash_hex(w, hex);
    CHECK_INT(sft_json_get_string(model, "weights_hash", &s, "model", &err), 0);
    CHECK_STR(s, hex);
    const json_t *entry = json_array_get(json_object_get(root, "data"), 0);
    sft_hash128 data_hash;
    CHECK_INT(sft_hash_file(data_path, &data_hash, &err), 0);
    sft_hash_hex(data_hash, hex);
    CHECK_INT(sft_json_get_string(entry, "hash", &s, "data", &err), 0);
    CHECK_STR(s, hex);
    CHECK_INT(sft_json_get_int(entry, "bytes", &n, "data", &err), 0);
    CHECK_INT(n, strlen(records));
    json_decref(root);

    /* A missing data file: an error naming it, and no manifest written. */
    unlink(manifest_path);
    const char *missing[] = {"/nonexistent/train.jsonl"};
    sft_manifest bad = {"0.1.0", NULL, GPT2, missing, 1, NULL, 1, 1, 0, NULL};
    CHECK_INT(sft_manifest_write(manifest_path, &bad, &err), -1);
    CHECK_ERR_HAS(err.msg, "/nonexistent/train.jsonl");
    CHECK(!sft_file_exists(manifest_path));
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TEST(tokenized_cache_key_changes_with_each_input) {
    char dir[64], a[128], b[128];
    CHECK(temp_dir(dir, sizeof dir) != NULL);
    snprintf(a, sizeof a, "%s/a.jsonl", dir);
    snprintf(b, sizeof b, "%s/b.jsonl", dir);
    sft_err err;
    sft_write_file_atomic(a, "{\"text\": \"x\"}\n", 14, &err);
    sft_write_file_atomic(b, "{\"text\": \"x\"}\n", 14, &err);
    const char *files_a[] = {a}, *files_b[] = {b};
    sft_hash128 tok = sft_hash_bytes("tokenizer", 9);
    sft_tokenized_key_input in = {files_a, 1, tok, "{{ chatml }}", 512, "format=auto"};
    sft_hash128 base, other;
    CHECK_INT(sft_tokenized_cache_key(&in, &base, &err), 0);
    sft_tokenized_key_input same_content = in;
    same_content.data_files = files_b;
    CHECK_INT(sft_tokenized_cache_key(&same_content, &other, &err), 0);
    CHECK(sft_hash_equal(base, other)); /* content, not the path */
    sft_tokenized_key_input changed = in;
    changed.max_len = 1024;
    CHECK_INT(sft_tokenized_cache_key(&changed, &other, &err), 0);
    CHECK(!sft_hash_equal(base, other));
    changed = in;
    changed.template_text = "{{ llama3 }}";
    CHECK_INT(sft_tokenized_cache_key(&changed, &other, &err), 0);
    CHECK(!sft_hash_equal(base, other));
    changed = in;
    changed.tokenizer_hash.low ^= 1;
    CHECK_INT(sft_tokenized_cache_key(&changed, &other, &err), 0);
    CHECK(!sft_hash_equal(base, other));
    changed = in;
    changed.options = "format=alpaca";
    CHECK_INT(sft_tokenized_cache_key(&changed, &other, &err), 0);
    CHECK(!sft_hash_equal(base, other));
    sft_write_file_atomic(a, "{\"text\": \"y\"}\n", 14, &err);
    CHECK_INT(sft_tokenized_cache_key(&in, &other, &err), 0);
    CHECK(!sft_hash_equal(base, other));
    changed = in;
    const char *two[] = {b, b};
    changed.data_files = two;
    changed.data_count = 2;
    CHECK_INT(sft_tokenized_cache_key(&changed, &other, &err), 0);
    CHECK(!sft_hash_equal(base, other));
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}
