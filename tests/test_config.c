/* test_config.c: config.json and generation_config.json (src/io/config.h):
 * the fixture configs saved by transformers 5, the older spelling
 * (top-level rope_theta / rope_scaling / torch_dtype), the defaults of each
 * transformers configuration class, llama3 RoPE scaling, eos lists, and the
 * errors for what sft does not support. */
#include <unistd.h>

#include "io/config.h"
#include "io/file.h"
#include "test.h"

#define FIXTURES "tests/fixtures/hf/models"

static int parse(const char *json, sft_model_config *cfg, sft_err *err) {
    return sft_config_parse(json, strlen(json), "config.json", cfg, err);
}

/* Parses a config that must fail and returns the message. */
static const char *parse_error(const char *json) {
    static sft_err err;
    sft_model_config cfg;
    memset(&err, 0, sizeof err);
    if (parse(json, &cfg, &err) == 0) snprintf(err.msg, sizeof err.msg, "(no error)");
    return err.msg;
}

/* ---- the fixtures ---------------------------------------------------- */

TEST(gpt2_tiny_fixture) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(sft_config_load(FIXTURES "/gpt2-tiny", &cfg, &err), 0);
    CHECK_STR(cfg.model_type, "gpt2");
    CHECK_INT(cfg.arch, SFT_ARCH_GPT2);
    CHECK_INT(cfg.vocab_size, 50257);
    CHECK_INT(cfg.hidden_size, 32);
    CHECK_INT(cfg.num_layers, 2);
    CHECK_INT(cfg.num_heads, 4);
    CHECK_INT(cfg.num_kv_heads, 4);
    CHECK_INT(cfg.head_dim, 8);
    CHECK_INT(cfg.intermediate_size, 128); /* n_inner null: 4 * n_embd */
    CHECK_INT(cfg.max_position_embeddings, 64);
    CHECK_NEAR(cfg.norm_eps, 1e-5, 0);
    CHECK_INT(cfg.tie_word_embeddings, 1);
    CHECK_INT(cfg.attention_bias, 1);
    CHECK_INT(cfg.o_proj_bias, 1);
    CHECK_INT(cfg.mlp_bias, 1);
    CHECK_STR(cfg.hidden_act, "gelu_new");
    CHECK_STR(cfg.dtype, "float32");
    CHECK_INT(cfg.bos_token_id, 50256);
    CHECK_INT(cfg.eos_count, 1);
    CHECK_INT(cfg.eos_token_ids[0], 50256);
    CHECK_INT(cfg.pad_token_id, -1);
    /* the fixture was saved with dropout off */
    CHECK_NEAR(cfg.attention_dropout, 0, 0);
    CHECK_NEAR(cfg.residual_dropout, 0, 0);
    CHECK_NEAR(cfg.embedding_dropout, 0, 0);
    CHECK_INT(cfg.sliding_window, 0);
}

TEST(llama3_tiny_fixture_transformers5_spelling) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(sft_config_load(FIXTURES "/llama3-tiny", &cfg, &err), 0);
    CHECK_STR(cfg.model_type, "llama");
    CHECK_INT(cfg.arch, SFT_ARCH_LLAMA);
    CHECK_INT(cfg.vocab_size, 128256);
    CHECK_INT(cfg.hidden_size, 32);
    CHECK_INT(cfg.num_heads, 4);
    CHECK_INT(cfg.num_kv_heads, 2);
    CHECK_INT(cfg.head_dim, 8);
    CHECK_INT(cfg.intermediate_size, 96);
    CHECK_INT(cfg.max_position_embeddings, 128);
    CHECK_NEAR(cfg.norm_eps, 1e-5, 0);
    CHECK_NEAR(cfg.rope_theta, 500000.0, 0);
    CHECK_INT(cfg.rope_type, SFT_ROPE_DEFAULT);
    CHECK_INT(cfg.tie_word_embeddings, 1);
    CHECK_INT(cfg.attention_bias, 0);
    CHECK_INT(cfg.o_proj_bias, 0);
    CHECK_INT(cfg.mlp_bias, 0);
    CHECK_STR(cfg.hidden_act, "silu");
    CHECK_STR(cfg.dtype, "bfloat16");
    CHECK_INT(cfg.bos_token_id, 128000);
    CHECK_INT(cfg.eos_count, 1);
    CHECK_INT(cfg.eos_token_ids[0], 128009);
}

TEST(llama2_tiny_fixture) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(sft_config_load(FIXTURES "/llama2-tiny", &cfg, &err), 0);
    CHECK_INT(cfg.vocab_size, 32000);
    CHECK_INT(cfg.hidden_size, 64);
    CHECK_INT(cfg.num_kv_heads, 4);
    CHECK_INT(cfg.head_dim, 16);
    CHECK_INT(cfg.intermediate_size, 172);
    CHECK_NEAR(cfg.norm_eps, 1e-6, 0);
    CHECK_NEAR(cfg.rope_theta, 10000.0, 0);
    CHECK_INT(cfg.tie_word_embeddings, 0);
    CHECK_STR(cfg.dtype, "float16");
    CHECK_INT(cfg.bos_token_id, 1);
    CHECK_INT(cfg.eos_token_ids[0], 2);
}

TEST(demo_model_config_older_spelling) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(sft_config_load("assets/demo-model", &cfg, &err), 0);
    CHECK_STR(cfg.dtype, "float32"); /* torch_dtype */
    CHECK_NEAR(cfg.rope_theta, 10000.0, 0);
    CHECK_INT(cfg.bos_token_id, -1); /* null */
    CHECK_INT(cfg.eos_token_ids[0], 364);
    CHECK_INT(cfg.pad_token_id, 362);
}

/* ---- both spellings ---------------------------------------------------- */

#define LLAMA_BODY                                                                                       \
    "\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4, \"num_hidden_layers\": 2," \
    "\"intermediate_size\": 128, \"vocab_size\": 1000, \"max_position_embeddings\": 131072"

TEST(older_and_transformers5_spellings_agree) {
    sft_model_config old_cfg, new_cfg;
    sft_err err;
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_theta\": 500000.0, \"torch_dtype\": \"bfloat16\"}", &old_cfg, &err), 0);
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0},"
                    "\"dtype\": \"bfloat16\"}",
                    &new_cfg, &err),
              0);
    CHECK_NEAR(old_cfg.rope_theta, 500000.0, 0);
    CHECK_STR(old_cfg.dtype, "bfloat16");
    CHECK(memcmp(&old_cfg, &new_cfg, sizeof old_cfg) == 0);
}

TEST(llama3_rope_scaling_older_spelling) {
    sft_model_config cfg;
    sft_err err;
    /* Llama 3.1 as published before transformers 5 */
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0,"
                    "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192,"
                    "\"rope_type\": \"llama3\"}, \"eos_token_id\": [128001, 128008, 128009]}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.rope_type, SFT_ROPE_LLAMA3);
    CHECK_NEAR(cfg.rope_theta, 500000.0, 0);
    CHECK_NEAR(cfg.rope_factor, 8.0, 0);
    CHECK_NEAR(cfg.rope_low_freq_factor, 1.0, 0);
    CHECK_NEAR(cfg.rope_high_freq_factor, 4.0, 0);
    CHECK_INT(cfg.rope_original_max_position, 8192);
    CHECK_INT(cfg.eos_count, 3);
    CHECK_INT(cfg.eos_token_ids[0], 128001);
    CHECK_INT(cfg.eos_token_ids[1], 128008);
    CHECK_INT(cfg.eos_token_ids[2], 128009);
}

TEST(llama3_rope_parameters_transformers5_spelling) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_parameters\": {\"factor\": 32.0, \"low_freq_factor\": 1.0,"
                    "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_theta\": 500000.0,"
                    "\"rope_type\": \"llama3\"}}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.rope_type, SFT_ROPE_LLAMA3);
    CHECK_NEAR(cfg.rope_theta, 500000.0, 0);
    CHECK_NEAR(cfg.rope_factor, 32.0, 0);
    CHECK_INT(cfg.rope_original_max_position, 8192);
}

TEST(llama3_legacy_type_key_and_default_original_max) {
    sft_model_config cfg;
    sft_err err;
    /* "type" is the key older configs used; a missing original length is max_position_embeddings */
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 8,"
                    "\"low_freq_factor\": 1, \"high_freq_factor\": 4}}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.rope_type, SFT_ROPE_LLAMA3);
    CHECK_NEAR(cfg.rope_theta, 10000.0, 0);
    CHECK_INT(cfg.rope_original_max_position, 131072);
    /* a top-level original_max_position_embeddings takes priority, as in transformers */
    CHECK_INT(parse("{" LLAMA_BODY ", \"original_max_position_embeddings\": 4096, \"rope_scaling\": {\"type\": "
                    "\"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
                    "\"original_max_position_embeddings\": 8192}}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.rope_original_max_position, 4096);
}

TEST(rope_scaling_wins_over_rope_parameters) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1.0},"
                    "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1,"
                    "\"high_freq_factor\": 4, \"rope_theta\": 500000.0}}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.rope_type, SFT_ROPE_LLAMA3);
    CHECK_NEAR(cfg.rope_theta, 500000.0, 0);
    /* rope_theta inside the dict wins over the top-level one */
    CHECK_INT(parse("{" LLAMA_BODY ", \"rope_theta\": 7.0, \"rope_parameters\": {\"rope_theta\": 9.0}}", &cfg, &err), 0);
    CHECK_NEAR(cfg.rope_theta, 9.0, 0);
}

/* ---- class defaults ---------------------------------------------------- */

TEST(gpt2_defaults_are_gpt2_small) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{\"model_type\": \"gpt2\"}", &cfg, &err), 0);
    CHECK_INT(cfg.vocab_size, 50257);
    CHECK_INT(cfg.hidden_size, 768);
    CHECK_INT(cfg.num_layers, 12);
    CHECK_INT(cfg.num_heads, 12);
    CHECK_INT(cfg.intermediate_size, 3072);
    CHECK_INT(cfg.max_position_embeddings, 1024);
    CHECK_INT(cfg.tie_word_embeddings, 1);
    CHECK_NEAR(cfg.residual_dropout, 0.1, 0);
    CHECK_NEAR(cfg.initializer_range, 0.02, 0);
    CHECK_STR(cfg.dtype, "");
}

TEST(gpt2_accepts_generic_names_and_n_inner) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{\"model_type\": \"gpt2\", \"hidden_size\": 64, \"num_attention_heads\": 2,"
                    "\"num_hidden_layers\": 3, \"max_position_embeddings\": 32, \"n_inner\": 100}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.hidden_size, 64);
    CHECK_INT(cfg.num_heads, 2);
    CHECK_INT(cfg.head_dim, 32);
    CHECK_INT(cfg.num_layers, 3);
    CHECK_INT(cfg.max_position_embeddings, 32);
    CHECK_INT(cfg.intermediate_size, 100);
}

TEST(llama_defaults) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{\"model_type\": \"llama\"}", &cfg, &err), 0);
    CHECK_INT(cfg.vocab_size, 32000);
    CHECK_INT(cfg.hidden_size, 4096);
    CHECK_INT(cfg.intermediate_size, 11008);
    CHECK_INT(cfg.num_layers, 32);
    CHECK_INT(cfg.num_kv_heads, 32);
    CHECK_INT(cfg.head_dim, 128);
    CHECK_INT(cfg.max_position_embeddings, 2048);
    CHECK_NEAR(cfg.norm_eps, 1e-6, 0);
    CHECK_NEAR(cfg.rope_theta, 10000.0, 0);
    CHECK_INT(cfg.tie_word_embeddings, 0);
    CHECK_INT(cfg.bos_token_id, 1);
    CHECK_INT(cfg.eos_token_ids[0], 2);
    CHECK_INT(cfg.sliding_window, 0);
}

TEST(llama_attention_bias_covers_o_proj_and_head_dim_is_explicit) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{" LLAMA_BODY ", \"attention_bias\": true, \"mlp_bias\": true, \"head_dim\": 32,"
                    "\"num_key_value_heads\": 2}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.attention_bias, 1);
    CHECK_INT(cfg.o_proj_bias, 1);
    CHECK_INT(cfg.mlp_bias, 1);
    CHECK_INT(cfg.head_dim, 32); /* not hidden/heads = 16 */
    CHECK_INT(cfg.num_kv_heads, 2);
}

TEST(mistral_defaults_and_sliding_window) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{\"model_type\": \"mistral\"}", &cfg, &err), 0);
    CHECK_INT(cfg.arch, SFT_ARCH_LLAMA);
    CHECK_INT(cfg.intermediate_size, 14336);
    CHECK_INT(cfg.num_kv_heads, 8); /* MistralConfig's default, not num_attention_heads */
    CHECK_INT(cfg.max_position_embeddings, 131072);
    CHECK_INT(cfg.sliding_window, 4096);
    CHECK_INT(cfg.sliding_window_first_layer, 0);
    CHECK_INT(cfg.attention_bias, 0);
    /* Mistral 7B v0.2 and later: no window; explicit null kv heads = num_attention_heads */
    CHECK_INT(parse("{\"model_type\": \"mistral\", \"sliding_window\": null, \"num_key_value_heads\": null}", &cfg, &err),
              0);
    CHECK_INT(cfg.sliding_window, 0);
    CHECK_INT(cfg.num_kv_heads, 32);
}

TEST(qwen2_defaults_biases_and_window) {
    sft_model_config cfg;
    sft_err err;
    CHECK_INT(parse("{\"model_type\": \"qwen2\"}", &cfg, &err), 0);
    CHECK_INT(cfg.vocab_size, 151936);
    CHECK_INT(cfg.intermediate_size, 22016);
    CHECK_INT(cfg.max_position_embeddings, 32768);
    CHECK_INT(cfg.attention_bias, 1); /* q, k, v always */
    CHECK_INT(cfg.o_proj_bias, 0);
    CHECK_INT(cfg.mlp_bias, 0);
    CHECK_INT(cfg.bos_token_id, -1);
    CHECK_INT(cfg.eos_count, 0);
    CHECK_INT(cfg.sliding_window, 0); /* use_sliding_window false */
    /* attention_bias false in a Qwen2 config does not remove the q/k/v biases */
    CHECK_INT(parse("{\"model_type\": \"qwen2\", \"attention_bias\": false}", &cfg, &err), 0);
    CHECK_INT(cfg.attention_bias, 1);
    /* with the window on, it covers the layers from max_window_layers */
    CHECK_INT(parse("{\"model_type\": \"qwen2\", \"num_hidden_layers\": 4, \"use_sliding_window\": true,"
                    "\"sliding_window\": 128, \"max_window_layers\": 2}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.sliding_window, 128);
    CHECK_INT(cfg.sliding_window_first_layer, 2);
    /* layer_types, as transformers 5 writes them */
    CHECK_INT(parse("{\"model_type\": \"qwen2\", \"num_hidden_layers\": 3, \"use_sliding_window\": true,"
                    "\"sliding_window\": 64, \"layer_types\": [\"full_attention\", \"sliding_attention\","
                    "\"sliding_attention\"]}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.sliding_window, 64);
    CHECK_INT(cfg.sliding_window_first_layer, 1);
    /* Qwen2.5 as published: layer_types all full, window unused */
    CHECK_INT(parse("{\"model_type\": \"qwen2\", \"num_hidden_layers\": 2, \"use_sliding_window\": false,"
                    "\"sliding_window\": 32768, \"max_window_layers\": 21, \"eos_token_id\": 151645,"
                    "\"layer_types\": [\"full_attention\", \"full_attention\"]}",
                    &cfg, &err),
              0);
    CHECK_INT(cfg.sliding_window, 0);
    CHECK_INT(cfg.eos_token_ids[0], 151645);
}

/* ---- errors ----------------------------------------------------------------- */

TEST(unknown_model_type_lists_supported_ones) {
    CHECK_STR(parse_error("{\"model_type\": \"falcon\"}"),
              "config.json: model_type 'falcon' is not supported (supported: gpt2, llama, mistral, qwen2)");
    CHECK_STR(parse_error("{\"hidden_size\": 8}"),
              "config.json: missing key 'model_type' (supported: gpt2, llama, mistral, qwen2)");
}

TEST(unsupported_rope_type_names_it) {
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}"),
              "config.json: rope_scaling: rope type 'linear' is not supported (sft supports 'default' and 'llama3')");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}"),
              "config.json: rope_parameters: rope type 'yarn' is not supported (sft supports 'default' and 'llama3')");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}"),
              "config.json: rope_scaling: rope type 'llama3' needs 'low_freq_factor'");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0,"
                          "\"low_freq_factor\": 4, \"high_freq_factor\": 4}}"),
              "config.json: rope_scaling: 'high_freq_factor' (4) must be greater than 'low_freq_factor' (4)");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"partial_rotary_factor\": 0.5}"),
              "config.json: 'partial_rotary_factor' 0.5 is not supported");
}

TEST(unsupported_activation_names_it) {
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"hidden_act\": \"gelu\"}"),
              "config.json: 'hidden_act' is 'gelu'; sft supports only silu for llama");
    CHECK_STR(parse_error("{\"model_type\": \"gpt2\", \"activation_function\": \"relu\"}"),
              "config.json: 'activation_function' is 'relu'; sft supports only gelu_new for gpt2");
}

TEST(bad_values_name_the_key) {
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"num_key_value_heads\": 3}"),
              "config.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3");
    CHECK_STR(parse_error("{\"model_type\": \"llama\", \"hidden_size\": -4}"),
              "config.json: 'hidden_size' must be a positive integer, got -4.0");
    CHECK_STR(parse_error("{\"model_type\": \"llama\", \"hidden_size\": \"64\"}"),
              "config.json: 'hidden_size' must be a positive integer, got \"64\"");
    CHECK_STR(parse_error("{\"model_type\": \"llama\", \"hidden_size\": 100, \"num_attention_heads\": 3}"),
              "config.json: hidden_size 100 is not a multiple of num_attention_heads 3");
    CHECK_STR(parse_error("{\"model_type\": \"gpt2\", \"n_embd\": 10, \"n_head\": 4}"),
              "config.json: n_embd 10 is not divisible by n_head 4");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"eos_token_id\": [1, \"x\"]}"),
              "config.json: 'eos_token_id' must be a token id or a list of token ids, got [1.0,\"x\"]");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"torch_dtype\": \"float64\"}"),
              "config.json: 'torch_dtype' is 'float64'; sft supports float32, float16 and bfloat16");
    CHECK_STR(parse_error("{" LLAMA_BODY ", \"tie_word_embeddings\": 1}"),
              "config.json: 'tie_word_embeddings' must be true or false, got 1.0");
    CHECK_STR(parse_error("{\"model_type\": \"gpt2\", \"scale_attn_by_inverse_layer_idx\": true}"),
              "config.json: 'scale_attn_by_inverse_layer_idx' true is not supported");
    CHECK_STR(parse_error("[1]"), "config.json: expected a JSON object");
    /* found by fuzz_config: 4 * n_embd used to overflow before the check */
    CHECK_STR(parse_error("{\"model_type\": \"gpt2\", \"n_embd\": 888151645}"),
              "config.json: n_embd 888151645 is too large (4 * n_embd overflows)");
}

TEST(invalid_json_names_file_line_and_column) {
    char path[256];
    snprintf(path, sizeof path, "build/test-tmp/config-%ld.json", (long)getpid());
    sft_err err;
    CHECK_INT(sft_mkdir_p("build/test-tmp", &err), 0);
    const char *text = "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 64,,\n}\n";
    CHECK_INT(sft_write_file_atomic(path, text, strlen(text), &err), 0);
    sft_model_config cfg;
    CHECK_INT(sft_config_load_file(path, &cfg, &err), -1);
    char expected[512];
    snprintf(expected, sizeof expected, "%s:3:21: invalid JSON: string or '}' expected near ','", path);
    CHECK_STR(err.msg, expected);
    unlink(path);
    CHECK_INT(sft_config_load("build/no-such-model", &cfg, &err), -1);
    CHECK_STR(err.msg, "build/no-such-model/config.json: No such file or directory");
}

/* ---- generation_config.json -------------------------------------------------- */

TEST(generation_config_fixture) {
    sft_model_config cfg;
    sft_generation_config gen;
    sft_err err;
    CHECK_INT(sft_config_load(FIXTURES "/llama3-tiny", &cfg, &err), 0);
    CHECK_INT(sft_generation_config_load(FIXTURES "/llama3-tiny", &cfg, &gen, &err), 0);
    CHECK_INT(gen.bos_token_id, 128000);
    CHECK_INT(gen.eos_count, 1);
    CHECK_INT(gen.eos_token_ids[0], 128009);
    CHECK_INT(gen.do_sample, 0);
    CHECK_NEAR(gen.temperature, 1.0, 0);
    CHECK_INT(gen.top_k, 50);
    CHECK_NEAR(gen.top_p, 1.0, 0);
    CHECK_INT(gen.max_new_tokens, 0);
}

TEST(generation_config_absent_takes_model_ids) {
    sft_model_config cfg;
    sft_generation_config gen;
    sft_err err;
    CHECK_INT(sft_config_load("assets/demo-model", &cfg, &err), 0);
    CHECK_INT(sft_generation_config_load("assets/demo-model", &cfg, &gen, &err), 0);
    CHECK_INT(gen.bos_token_id, -1);
    CHECK_INT(gen.eos_count, 1);
    CHECK_INT(gen.eos_token_ids[0], 364);
    CHECK_INT(gen.pad_token_id, 362);
    CHECK_INT(gen.top_k, 50);
}

TEST(generation_config_sampling_and_eos_list) {
    sft_model_config cfg;
    sft_generation_config gen;
    sft_err err;
    CHECK_INT(parse("{" LLAMA_BODY "}", &cfg, &err), 0);
    const char *text = "{\"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.9, \"top_k\": 0,"
                       "\"eos_token_id\": [128001, 128009], \"max_new_tokens\": 256}";
    CHECK_INT(sft_generation_config_parse(text, strlen(text), "generation_config.json", &cfg, &gen, &err), 0);
    CHECK_INT(gen.do_sample, 1);
    CHECK_NEAR(gen.temperature, 0.6, 0);
    CHECK_NEAR(gen.top_p, 0.9, 0);
    CHECK_INT(gen.top_k, 0);
    CHECK_INT(gen.eos_count, 2);
    CHECK_INT(gen.eos_token_ids[1], 128009);
    CHECK_INT(gen.max_new_tokens, 256);
    CHECK_INT(gen.bos_token_id, 1); /* not in the file: the model's */
    text = "{\"top_p\": 1.5}";
    CHECK_INT(sft_generation_config_parse(text, strlen(text), "generation_config.json", &cfg, &gen, &err), -1);
    CHECK_STR(err.msg, "generation_config.json: 'top_p' must be at most 1, got 1.5");
}
