/* test_safetensors.c: the safetensors reader and writer (src/io/safetensors.h):
 * the fixture checkpoints written by transformers, round trips in each dtype,
 * a sharded checkpoint, the float16/bfloat16 conversions, and every way a
 * file can lie about itself, each with its exact error message. */
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"
#include "io/safetensors.h"
#include "test.h"

#define FIXTURES "tests/fixtures/hf/models"

/* A private scratch folder per process: several test runs may share the tree. */
static const char *scratch_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "build/test-tmp/safetensors-%ld", (long)getpid());
        sft_err err;
        if (sft_mkdir_p(dir, &err)) fprintf(stderr, "%s\n", err.msg);
    }
    return dir;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

__attribute__((destructor)) static void remove_scratch_dir(void) {
    if (scratch_dir()[0] && sft_dir_exists(scratch_dir())) nftw(scratch_dir(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void scratch_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", scratch_dir(), name);
}

/* Writes an 8-byte length, the header text as given and `data_len` data bytes. */
static void write_raw(const char *path, uint64_t declared_len, const char *header, size_t data_len) {
    FILE *f = fopen(path, "wb");
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)(declared_len >> (8 * i));
    fwrite(len_bytes, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xFF), f);
    fclose(f);
}

/* Opens a file made of `header` (its true length) and `data_len` bytes; expects failure. */
static void expect_error(const char *name, const char *header, size_t data_len, const char *expected_suffix) {
    char path[512], expected[2048];
    scratch_path(path, sizeof path, name);
    write_raw(path, strlen(header), header, data_len);
    sft_err err = {{0}};
    sft_safetensors *st = sft_safetensors_open(path, &err);
    CHECK(st == NULL);
    snprintf(expected, sizeof expected, "%s: %s", path, expected_suffix);
    CHECK_STR(err.msg, expected);
    sft_safetensors_close(st);
    unlink(path);
}

static void check_shape(const sft_tensor_info *t, int ndim, int64_t d0, int64_t d1) {
    CHECK(t != NULL);
    if (!t) return;
    CHECK_INT(t->ndim, ndim);
    CHECK_INT(t->shape[0], d0);
    if (ndim > 1) CHECK_INT(t->shape[1], d1);
}

static double tensor_sum(const sft_tensor_info *t, float *first, float *last) {
    float *v = malloc((size_t)t->numel * sizeof *v);
    sft_tensor_to_f32(t, v);
    double sum = 0;
    for (int64_t i = 0; i < t->numel; i++) sum += v[i];
    *first = v[0];
    *last = v[t->numel - 1];
    free(v);
    return sum;
}

/* ---- the fixtures, as transformers saved them ----------------------- */

TEST(reads_gpt2_tiny_f32) {
    sft_err err;
    sft_safetensors *st = sft_safetensors_open_dir(FIXTURES "/gpt2-tiny", &err);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(sft_safetensors_count(st), 28);
    const sft_tensor_info *wte = sft_safetensors_find(st, "transformer.wte.weight");
    check_shape(wte, 2, 50257, 32);
    CHECK_INT(wte->dtype, SFT_DTYPE_F32);
    CHECK_INT(wte->numel, 50257 * 32);
    CHECK_INT(wte->nbytes, 50257 * 32 * 4);
    /* Conv1D weights are stored [in, out] */
    check_shape(sft_safetensors_find(st, "transformer.h.0.attn.c_attn.weight"), 2, 32, 96);
    check_shape(sft_safetensors_find(st, "transformer.h.1.mlp.c_proj.weight"), 2, 128, 32);
    check_shape(sft_safetensors_find(st, "transformer.ln_f.bias"), 1, 32, 0);
    CHECK(sft_safetensors_find(st, "lm_head.weight") == NULL); /* tied */
    /* values checked with torch.frombuffer on the same bytes */
    float first, last;
    double sum = tensor_sum(sft_safetensors_find(st, "transformer.wpe.weight"), &first, &last);
    CHECK(first == 0.02261623553931713f);
    CHECK(last == 0.01706376112997532f);
    CHECK_NEAR(sum, 0.20941686585865682, 1e-6);
    /* file order is offset order: the first tensor starts the buffer */
    CHECK_STR(sft_safetensors_at(st, 0)->name, "transformer.h.0.attn.c_attn.bias");
    sft_safetensors_close(st);
}

TEST(reads_llama3_tiny_bf16) {
    sft_err err;
    sft_safetensors *st = sft_safetensors_open(FIXTURES "/llama3-tiny/model.safetensors", &err);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(sft_safetensors_count(st), 20);
    const sft_tensor_info *emb = sft_safetensors_find(st, "model.embed_tokens.weight");
    check_shape(emb, 2, 128256, 32);
    CHECK_INT(emb->dtype, SFT_DTYPE_BF16);
    check_shape(sft_safetensors_find(st, "model.layers.1.self_attn.k_proj.weight"), 2, 16, 32); /* GQA: 2 KV heads */
    check_shape(sft_safetensors_find(st, "model.norm.weight"), 1, 32, 0);
    float first, last;
    double sum = tensor_sum(emb, &first, &last);
    CHECK(first == 0.049560546875f);
    CHECK(last == 0.007720947265625f);
    CHECK_NEAR(sum, -34.85108343684442, 1e-4);
    sft_safetensors_close(st);
}

TEST(reads_llama2_tiny_f16) {
    sft_err err;
    sft_safetensors *st = sft_safetensors_open_dir(FIXTURES "/llama2-tiny", &err);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(sft_safetensors_count(st), 21);
    const sft_tensor_info *q = sft_safetensors_find(st, "model.layers.0.self_attn.q_proj.weight");
    check_shape(q, 2, 64, 64);
    CHECK_INT(q->dtype, SFT_DTYPE_F16);
    check_shape(sft_safetensors_find(st, "lm_head.weight"), 2, 32000, 64); /* untied */
    check_shape(sft_safetensors_find(st, "model.layers.1.mlp.down_proj.weight"), 2, 64, 172);
    float first, last;
    double sum = tensor_sum(q, &first, &last);
    CHECK(first == -0.00878143310546875f);
    CHECK(last == 0.01690673828125f);
    CHECK_NEAR(sum, -1.1363884210586548, 1e-5);
    sft_safetensors_close(st);
}

TEST(reads_lora_adapter) {
    sft_err err;
    sft_safetensors *st = sft_safetensors_open(FIXTURES "/llama2-tiny-lora/adapter_model.safetensors", &err);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(sft_safetensors_count(st), 28); /* 2 layers x 7 projections x (A, B) */
    check_shape(sft_safetensors_find(st, "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"), 2, 8, 172);
    const sft_tensor_info *b = sft_safetensors_find(st, "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
    check_shape(b, 2, 64, 8);
    float first, last;
    double sum = tensor_sum(b, &first, &last);
    CHECK(first == 0.09738770872354507f);
    CHECK(last == 0.23566864430904388f);
    CHECK_NEAR(sum, 0.5244108460174175, 1e-6);
    sft_safetensors_close(st);
}

TEST(open_dir_without_weights_names_both_files) {
    sft_err err;
    CHECK(sft_safetensors_open_dir("tests/fixtures/hf/tokenizers/gpt2-chatml", &err) == NULL);
    CHECK_STR(err.msg, "tests/fixtures/hf/tokenizers/gpt2-chatml: no model.safetensors or model.safetensors.index.json");
}

/* ---- conversions ------------------------------------------------------ */

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

TEST(bf16_rounds_to_nearest_even) {
    CHECK_INT(sft_f32_to_bf16(1.0f), 0x3F80);
    CHECK_INT(sft_f32_to_bf16(-2.0f), 0xC000);
    /* exactly halfway between 0x3F80 and 0x3F81: the even one */
    CHECK_INT(sft_f32_to_bf16(f32_from_bits(0x3F808000)), 0x3F80);
    /* halfway between 0x3F81 and 0x3F82: the even one, upward */
    CHECK_INT(sft_f32_to_bf16(f32_from_bits(0x3F818000)), 0x3F82);
    CHECK_INT(sft_f32_to_bf16(f32_from_bits(0x3F808001)), 0x3F81); /* just past halfway */
    CHECK_INT(sft_f32_to_bf16(INFINITY), 0x7F80);
    CHECK_INT(sft_f32_to_bf16(-INFINITY), 0xFF80);
    CHECK_INT(sft_f32_to_bf16(f32_from_bits(0x7F7FFFFF)), 0x7F80); /* FLT_MAX rounds to inf, as torch */
    CHECK(isnan(sft_bf16_to_f32(sft_f32_to_bf16(NAN))));
    /* a NaN whose payload sits only in the dropped bits must stay NaN */
    CHECK(isnan(sft_bf16_to_f32(sft_f32_to_bf16(f32_from_bits(0x7F800001)))));
    /* every bf16 value survives bf16 -> f32 -> bf16 */
    int mismatches = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = sft_bf16_to_f32((uint16_t)h);
        if (isnan(f) ? !isnan(sft_bf16_to_f32(sft_f32_to_bf16(f))) : sft_f32_to_bf16(f) != h) mismatches++;
    }
    CHECK_INT(mismatches, 0);
}

TEST(f16_rounds_to_nearest_even_with_subnormals) {
    CHECK_INT(sft_f32_to_f16(1.0f), 0x3C00);
    CHECK_INT(sft_f32_to_f16(-0.0f), 0x8000);
    CHECK_INT(sft_f32_to_f16(0.1f), 0x2E66);
    CHECK_INT(sft_f32_to_f16(65504.0f), 0x7BFF);  /* largest finite */
    CHECK_INT(sft_f32_to_f16(65519.0f), 0x7BFF);  /* below half an ulp past it */
    CHECK_INT(sft_f32_to_f16(65520.0f), 0x7C00);  /* the tie rounds to even = infinity */
    CHECK_INT(sft_f32_to_f16(1e10f), 0x7C00);
    CHECK_INT(sft_f32_to_f16(-INFINITY), 0xFC00);
    CHECK_INT(sft_f32_to_f16(0x1p-24f), 0x0001);        /* smallest subnormal */
    CHECK_INT(sft_f32_to_f16(0x1p-25f), 0x0000);        /* half of it: tie to even 0 */
    CHECK_INT(sft_f32_to_f16(0x1.8p-25f), 0x0001);      /* 0.75 units */
    CHECK_INT(sft_f32_to_f16(0x1.8p-24f), 0x0002);      /* 1.5 units: tie to even 2 */
    CHECK_INT(sft_f32_to_f16(0x1.4p-23f), 0x0002);      /* 2.5 units: tie to even 2 */
    CHECK_INT(sft_f32_to_f16(0x1.ff8p-15f), 0x03FF);    /* largest subnormal */
    CHECK_INT(sft_f32_to_f16(0x1.ffcp-15f), 0x0400);    /* 1023.5 units: tie rounds up into the smallest normal */
    CHECK_INT(sft_f32_to_f16(1.0f + 0x1p-11f), 0x3C00); /* tie between 1 and 1+2^-10 */
    CHECK_INT(sft_f32_to_f16(1.0f + 0x1.8p-10f), 0x3C02);
    CHECK(isnan(sft_f16_to_f32(sft_f32_to_f16(NAN))));
    CHECK(isnan(sft_f16_to_f32(sft_f32_to_f16(f32_from_bits(0x7F800001)))));
    CHECK(sft_f16_to_f32(0x7C00) == INFINITY);
    CHECK(sft_f16_to_f32(0x0001) == 0x1p-24f);
    int mismatches = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = sft_f16_to_f32((uint16_t)h);
        if (isnan(f) ? !isnan(sft_f16_to_f32(sft_f32_to_f16(f))) : sft_f32_to_f16(f) != h) mismatches++;
    }
    CHECK_INT(mismatches, 0);
}

/* ---- writing ------------------------------------------------------------ */

static const float sample_values[] = {0.0f, -0.0f, 1.0f, -1.5f, 3.14159265f, 1e-6f, -65504.0f, 1e-8f,
                                      0.1f, 100.25f, 2.5e-3f, -7.0f};

static void roundtrip(sft_dtype dtype) {
    char path[512];
    scratch_path(path, sizeof path, "roundtrip.safetensors");
    float scalar = 42.0f;
    sft_tensor_out out[3] = {
        {.name = "z.weight", .ndim = 2, .shape = {3, 4}, .data = sample_values},
        {.name = "a.scalar", .ndim = 0, .data = &scalar},
        {.name = "m.empty", .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    sft_err err;
    CHECK_INT(sft_safetensors_write(path, out, 3, dtype, &err), 0);
    sft_safetensors *st = sft_safetensors_open(path, &err);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(sft_safetensors_count(st), 3);
    /* stored in the order given */
    CHECK_STR(sft_safetensors_at(st, 0)->name, "z.weight");
    CHECK_STR(sft_safetensors_at(st, 1)->name, "a.scalar");
    CHECK_STR(sft_safetensors_at(st, 2)->name, "m.empty");
    const sft_tensor_info *w = sft_safetensors_find(st, "z.weight");
    check_shape(w, 2, 3, 4);
    CHECK_INT(w->dtype, dtype);
    float back[12];
    sft_tensor_to_f32(w, back);
    int wrong = 0;
    for (int i = 0; i < 12; i++) {
        float want = sample_values[i];
        if (dtype == SFT_DTYPE_F16) want = sft_f16_to_f32(sft_f32_to_f16(want));
        if (dtype == SFT_DTYPE_BF16) want = sft_bf16_to_f32(sft_f32_to_bf16(want));
        if (memcmp(&back[i], &want, 4)) wrong++;
    }
    CHECK_INT(wrong, 0);
    const sft_tensor_info *s = sft_safetensors_find(st, "a.scalar");
    CHECK_INT(s->ndim, 0);
    CHECK_INT(s->numel, 1);
    sft_tensor_to_f32(s, back);
    CHECK(back[0] == 42.0f);
    CHECK_INT(sft_safetensors_find(st, "m.empty")->numel, 0);
    sft_safetensors_close(st);

    /* the header: padded with spaces to a multiple of 8, format pt */
    char *bytes;
    size_t len;
    CHECK_INT(sft_read_file(path, &bytes, &len, &err), 0);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | (unsigned char)bytes[i];
    CHECK_INT(header_len % 8, 0);
    CHECK(strstr(bytes + 8, "{\"__metadata__\":{\"format\":\"pt\"},\"z.weight\":{") == bytes + 8);
    CHECK(bytes[8 + header_len - 1] == '}' || bytes[8 + header_len - 1] == ' ');
    CHECK_INT(len, 8 + header_len + 13 * sft_dtype_size(dtype));
    free(bytes);
    unlink(path);
}

TEST(roundtrip_f32) { roundtrip(SFT_DTYPE_F32); }
TEST(roundtrip_f16) { roundtrip(SFT_DTYPE_F16); }
TEST(roundtrip_bf16) { roundtrip(SFT_DTYPE_BF16); }

TEST(write_rejects_duplicate_names_and_leaves_no_file) {
    char path[512];
    scratch_path(path, sizeof path, "dup.safetensors");
    float v[2] = {1, 2};
    sft_tensor_out out[2] = {{.name = "w", .ndim = 1, .shape = {2}, .data = v},
                             {.name = "w", .ndim = 1, .shape = {2}, .data = v}};
    sft_err err;
    CHECK_INT(sft_safetensors_write(path, out, 2, SFT_DTYPE_F32, &err), -1);
    char expected[600];
    snprintf(expected, sizeof expected, "%s: tensor 'w' given twice", path);
    CHECK_STR(err.msg, expected);
    CHECK(!sft_file_exists(path));
}

TEST(write_escapes_names_in_the_header) {
    char path[512];
    scratch_path(path, sizeof path, "escape.safetensors");
    float v = 1;
    sft_tensor_out out[1] = {{.name = "quote\"back\\slash", .ndim = 1, .shape = {1}, .data = &v}};
    sft_err err;
    CHECK_INT(sft_safetensors_write(path, out, 1, SFT_DTYPE_F32, &err), 0);
    sft_safetensors *st = sft_safetensors_open(path, &err);
    CHECK(st && sft_safetensors_find(st, "quote\"back\\slash"));
    sft_safetensors_close(st);
    unlink(path);
}

/* ---- sharded checkpoints ------------------------------------------------- */

static void write_two_shards(const char *dir) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8}, c[3] = {9, 10, 11};
    sft_tensor_out shard1[2] = {{.name = "embed.weight", .ndim = 2, .shape = {2, 3}, .data = a},
                                {.name = "norm.weight", .ndim = 1, .shape = {2}, .data = b}};
    sft_tensor_out shard2[1] = {{.name = "head.weight", .ndim = 1, .shape = {3}, .data = c}};
    char path[512];
    sft_err err;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    CHECK_INT(sft_safetensors_write(path, shard1, 2, SFT_DTYPE_BF16, &err), 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    CHECK_INT(sft_safetensors_write(path, shard2, 1, SFT_DTYPE_F32, &err), 0);
}

static void write_index(const char *dir, const char *weight_map) {
    char path[512], text[1024];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 28}, \"weight_map\": {%s}}", weight_map);
    sft_err err;
    CHECK_INT(sft_write_file_atomic(path, text, strlen(text), &err), 0);
}

TEST(reads_sharded_checkpoint_through_index) {
    char dir[512];
    scratch_path(dir, sizeof dir, "sharded");
    sft_err err;
    CHECK_INT(sft_mkdir_p(dir, &err), 0);
    write_two_shards(dir);
    write_index(dir, "\"head.weight\": \"model-00002-of-00002.safetensors\", "
                     "\"embed.weight\": \"model-00001-of-00002.safetensors\", "
                     "\"norm.weight\": \"model-00001-of-00002.safetensors\"");
    sft_safetensors *st = sft_safetensors_open_dir(dir, &err);
    CHECK(st != NULL);
    if (!st) return;
    CHECK_INT(sft_safetensors_count(st), 3);
    CHECK_STR(sft_safetensors_at(st, 0)->name, "embed.weight"); /* shard 1 first */
    CHECK_STR(sft_safetensors_at(st, 2)->name, "head.weight");
    const sft_tensor_info *embed = sft_safetensors_find(st, "embed.weight");
    check_shape(embed, 2, 2, 3);
    CHECK_INT(embed->dtype, SFT_DTYPE_BF16);
    float v[6];
    sft_tensor_to_f32(embed, v);
    CHECK(v[5] == 6.0f);
    const sft_tensor_info *head = sft_safetensors_find(st, "head.weight");
    CHECK_INT(head->dtype, SFT_DTYPE_F32);
    sft_tensor_to_f32(head, v);
    CHECK(v[0] == 9.0f && v[2] == 11.0f);
    sft_safetensors_close(st);
}

TEST(sharded_index_naming_a_tensor_its_shard_lacks_names_both) {
    char dir[512], expected[1400];
    scratch_path(dir, sizeof dir, "sharded-missing");
    sft_err err;
    CHECK_INT(sft_mkdir_p(dir, &err), 0);
    write_two_shards(dir);
    write_index(dir, "\"head.weight\": \"model-00002-of-00002.safetensors\", "
                     "\"embed.weight\": \"model-00001-of-00002.safetensors\", "
                     "\"norm.weight\": \"model-00001-of-00002.safetensors\", "
                     "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"");
    CHECK(sft_safetensors_open_dir(dir, &err) == NULL);
    snprintf(expected, sizeof expected,
             "%s/model.safetensors.index.json: tensor 'lm_head.weight' is listed in shard "
             "'model-00002-of-00002.safetensors', but that shard has no such tensor",
             dir);
    CHECK_STR(err.msg, expected);
}

TEST(sharded_tensor_missing_from_index_is_an_error) {
    char dir[512], expected[1400];
    scratch_path(dir, sizeof dir, "sharded-unlisted");
    sft_err err;
    CHECK_INT(sft_mkdir_p(dir, &err), 0);
    write_two_shards(dir);
    write_index(dir, "\"head.weight\": \"model-00002-of-00002.safetensors\", "
                     "\"embed.weight\": \"model-00001-of-00002.safetensors\"");
    CHECK(sft_safetensors_open_dir(dir, &err) == NULL);
    snprintf(expected, sizeof expected,
             "%s/model.safetensors.index.json: shard 'model-00001-of-00002.safetensors' holds tensor "
             "'norm.weight', which the weight_map does not list",
             dir);
    CHECK_STR(err.msg, expected);
}

TEST(sharded_missing_shard_file_names_index_and_shard) {
    char dir[512], expected[1400];
    scratch_path(dir, sizeof dir, "sharded-noshard");
    sft_err err;
    CHECK_INT(sft_mkdir_p(dir, &err), 0);
    write_index(dir, "\"w\": \"model-00009-of-00009.safetensors\"");
    CHECK(sft_safetensors_open_dir(dir, &err) == NULL);
    snprintf(expected, sizeof expected,
             "%s/model.safetensors.index.json: %s/model-00009-of-00009.safetensors: No such file or directory", dir,
             dir);
    CHECK_STR(err.msg, expected);
}

TEST(sharded_index_cannot_escape_its_folder) {
    char dir[512], expected[1400];
    scratch_path(dir, sizeof dir, "sharded-escape");
    sft_err err;
    CHECK_INT(sft_mkdir_p(dir, &err), 0);
    write_index(dir, "\"w\": \"../model.safetensors\"");
    CHECK(sft_safetensors_open_dir(dir, &err) == NULL);
    snprintf(expected, sizeof expected,
             "%s/model.safetensors.index.json: weight_map entry 'w' names '../model.safetensors', which is not a "
             "file beside the index",
             dir);
    CHECK_STR(err.msg, expected);
}

/* ---- bad files, each with its exact error ------------------------------- */

#define ONE_F32_PAIR "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

TEST(valid_minimal_file_opens) {
    char path[512];
    scratch_path(path, sizeof path, "minimal.safetensors");
    write_raw(path, strlen(ONE_F32_PAIR), ONE_F32_PAIR, 8);
    sft_err err;
    sft_safetensors *st = sft_safetensors_open(path, &err);
    CHECK(st != NULL);
    sft_safetensors_close(st);
    unlink(path);
}

TEST(empty_file_is_rejected) {
    char path[512], expected[600];
    scratch_path(path, sizeof path, "empty.safetensors");
    FILE *f = fopen(path, "wb");
    fclose(f);
    sft_err err;
    CHECK(sft_safetensors_open(path, &err) == NULL);
    snprintf(expected, sizeof expected,
             "%s: empty file, not a safetensors file (expected an 8-byte header length)", path);
    CHECK_STR(err.msg, expected);
    unlink(path);
}

TEST(file_shorter_than_header_length_is_rejected) {
    char path[512], expected[600];
    scratch_path(path, sizeof path, "short.safetensors");
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    sft_err err;
    CHECK(sft_safetensors_open(path, &err) == NULL);
    snprintf(expected, sizeof expected, "%s: truncated: 3 bytes, shorter than the 8-byte header length", path);
    CHECK_STR(err.msg, expected);
    unlink(path);
}

TEST(truncated_file_names_the_cut_tensor) {
    /* two tensors declared, the data of the second cut short */
    expect_error("truncated.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}",
                 11,
                 "tensor 'b': data_offsets [8, 16] run past the end of the file (the data buffer holds 11 bytes): "
                 "the file is truncated");
}

TEST(header_length_past_end_of_file) {
    char path[512], expected[600];
    scratch_path(path, sizeof path, "hdrlen.safetensors");
    write_raw(path, 1000, ONE_F32_PAIR, 8);
    sft_err err;
    CHECK(sft_safetensors_open(path, &err) == NULL);
    snprintf(expected, sizeof expected,
             "%s: header length 1000 runs past the end of the file (%zu bytes after the length)", path,
             strlen(ONE_F32_PAIR) + 8);
    CHECK_STR(err.msg, expected);
    unlink(path);
}

TEST(header_length_over_100_mb) {
    char path[512], expected[600];
    scratch_path(path, sizeof path, "hdrhuge.safetensors");
    write_raw(path, 100000001ull, ONE_F32_PAIR, 8);
    sft_err err;
    CHECK(sft_safetensors_open(path, &err) == NULL);
    snprintf(expected, sizeof expected, "%s: header length 100000001 exceeds the safetensors limit of 100000000 bytes",
             path);
    CHECK_STR(err.msg, expected);
    /* a length with the top bit set must not wrap around either */
    write_raw(path, 0xFFFFFFFFFFFFFFF8ull, ONE_F32_PAIR, 8);
    CHECK(sft_safetensors_open(path, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "exceeds the safetensors limit");
    unlink(path);
}

TEST(header_not_json) {
    expect_error("notjson.safetensors", "{\"a\": {\"dtype\": \"F32\", ", 0,
                 "header is not valid JSON (header byte 23): string or '}' expected near end of file");
}

TEST(header_not_an_object) {
    expect_error("array.safetensors", "[1, 2]", 0, "header is not a JSON object");
}

TEST(header_with_duplicate_names) {
    expect_error("dup.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, "header lists a tensor name twice (duplicate object key near '\"a\"')");
}

TEST(overlapping_offsets) {
    expect_error("overlap.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a', which ends at 8");
}

TEST(gapped_offsets) {
    expect_error("gap.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                 20, "tensor 'b': data_offsets [12, 20] leave a gap of 4 bytes after tensor 'a', which ends at 8");
}

TEST(first_tensor_not_at_start_of_data) {
    expect_error("gap0.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                 "tensor 'a': data_offsets [4, 12] leave a gap of 4 bytes at the start of the data");
}

TEST(offsets_ending_before_they_begin) {
    expect_error("reversed.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
                 8, "tensor 'b': data_offsets [8, 0] end before they begin");
}

TEST(size_not_matching_shape_and_dtype) {
    expect_error("size.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 8,
                 "tensor 'a': data_offsets [0, 8] hold 8 bytes, but shape [2, 3] of dtype BF16 needs 12");
}

TEST(unknown_dtype) {
    expect_error("q4.safetensors", "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                 "tensor 'a': unknown dtype 'Q4_K' (safetensors dtypes: F32, F16, BF16, F64, I64, I32, I16, I8, "
                 "U64, U32, U16, U8, BOOL, F8_E5M2, F8_E4M3, F8_E8M0, F6_E2M3, F6_E3M2, F4, C64)");
}

TEST(valid_dtype_sft_does_not_read_names_tensor_and_dtype) {
    expect_error("i64.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"position_ids\":{\"dtype\":\"I64\",\"shape\":[1,2],\"data_offsets\":[8,24]}}",
                 24, "tensor 'position_ids' has dtype I64; sft reads only F32, F16 and BF16 tensors");
    expect_error("bool.safetensors", "{\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3,
                 "tensor 'mask' has dtype BOOL; sft reads only F32, F16 and BF16 tensors");
}

TEST(trailing_bytes_after_last_tensor) {
    expect_error("trailing.safetensors", ONE_F32_PAIR, 10,
                 "2 trailing bytes after the last tensor (the tensors end at byte 8 of a 10-byte data buffer)");
}

TEST(shape_and_offsets_must_have_the_right_types) {
    expect_error("negshape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                 "tensor 'a': 'shape' must be a list of non-negative integers");
    expect_error("floatshape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
                 "tensor 'a': 'shape' must be a list of non-negative integers");
    expect_error("offsets3.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8,
                 "tensor 'a': 'data_offsets' must be [begin, end], two non-negative integers");
    expect_error("nodtype.safetensors", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                 "tensor 'a': 'dtype' must be a string");
    expect_error("entry.safetensors", "{\"a\":[1]}", 0,
                 "tensor 'a': expected an object with dtype, shape and data_offsets");
    expect_error("overflow.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                 "tensor 'a': shape overflows the size of a buffer");
    expect_error("ninedims.safetensors",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 "tensor 'a': shape has 9 dimensions, sft reads at most 8");
}

TEST(metadata_must_map_strings_to_strings) {
    expect_error("meta.safetensors",
                 "{\"__metadata__\":{\"format\":\"pt\",\"step\":3},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                 8,
                 "'__metadata__' entry 'step' must be a string");
    expect_error("meta2.safetensors", "{\"__metadata__\":\"pt\"}", 0,
                 "'__metadata__' must be an object mapping strings to strings");
}

TEST(header_with_no_tensors_and_no_data_is_valid) {
    char path[512];
    scratch_path(path, sizeof path, "none.safetensors");
    write_raw(path, 8, "{}      ", 0);
    sft_err err;
    sft_safetensors *st = sft_safetensors_open(path, &err);
    CHECK(st != NULL);
    if (st) CHECK_INT(sft_safetensors_count(st), 0);
    sft_safetensors_close(st);
    unlink(path);
}

TEST(buffer_entry_point_matches_file_reader) {
    char *bytes;
    size_t len;
    sft_err err;
    CHECK_INT(sft_read_file(FIXTURES "/llama2-tiny/model.safetensors", &bytes, &len, &err), 0);
    sft_safetensors *st = sft_safetensors_open_buffer(bytes, len, "mem", &err);
    CHECK(st != NULL);
    if (st) CHECK_INT(sft_safetensors_count(st), 21);
    sft_safetensors_close(st);
    CHECK(sft_safetensors_open_buffer(bytes, len - 1, "mem", &err) == NULL);
    CHECK_STR(err.msg, "mem: tensor 'model.norm.weight': data_offsets [8390144, 8390272] run past the end of the "
                       "file (the data buffer holds 8390271 bytes): the file is truncated");
    free(bytes);
}
