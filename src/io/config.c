/* config.c: config.json and generation_config.json read the way
 * transformers reads them (see config.h).
 *
 * Defaults are those of the transformers configuration classes
 * (configuration_gpt2.py, configuration_llama.py, configuration_mistral.py,
 * configuration_qwen2.py): a key a checkpoint leaves out takes the class
 * default, and a JSON null means the same as an absent key. RoPE follows
 * modeling_rope_utils.py: the legacy `rope_scaling` wins over
 * `rope_parameters` when both are set; rope_theta comes from that dict, then
 * from the top level, then 10000; the type from `rope_type`, then the legacy
 * `type`, then "default"; llama3's original_max_position_embeddings from a
 * top-level key, then the dict, then max_position_embeddings. Values sft
 * cannot compute with exactly (another activation, another RoPE type,
 * partial rotary embeddings) are errors naming the key and the value. */
#include "io/config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json.h"

#define SUPPORTED_MODEL_TYPES "gpt2, llama, mistral, qwen2"

/* The JSON text of a value for an error message, shortened. */
static const char *value_text(const json_t *v, char *buf, size_t cap) {
    char *dump = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!dump) {
        snprintf(buf, cap, "?");
        return buf;
    }
    if (strlen(dump) > 60) snprintf(buf, cap, "%.57s...", dump);
    else snprintf(buf, cap, "%s", dump);
    free(dump);
    return buf;
}

/* A member, NULL when absent or null (transformers treats both alike). */
static const json_t *member(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An integer in [min, INT_MAX]; *out unchanged when absent. */
static int read_int(const json_t *obj, const char *key, int *out, int64_t min, const char *name, sft_err *err) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    int64_t value;
    char text[80];
    if (json_is_boolean(v) || sft_json_int(v, &value) || value < min || value > INT_MAX) {
        if (min == 1) return sft_errf(err, "%s: '%s' must be a positive integer, got %s", name, key, value_text(v, text, sizeof text));
        return sft_errf(err, "%s: '%s' must be an integer >= %lld, got %s", name, key, (long long)min,
                        value_text(v, text, sizeof text));
    }
    *out = (int)value;
    return 0;
}

/* A finite number >= min; *out unchanged when absent. */
static int read_number(const json_t *obj, const char *key, double *out, double min, const char *name, sft_err *err) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    double value;
    char text[80];
    if (!json_is_number(v) || sft_json_number(v, &value) || !isfinite(value) || value < min)
        return sft_errf(err, "%s: '%s' must be a number >= %g, got %s", name, key, min, value_text(v, text, sizeof text));
    *out = value;
    return 0;
}

static int read_bool(const json_t *obj, const char *key, int *out, const char *name, sft_err *err) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    char text[80];
    if (!json_is_boolean(v))
        return sft_errf(err, "%s: '%s' must be true or false, got %s", name, key, value_text(v, text, sizeof text));
    *out = json_is_true(v);
    return 0;
}

/* A string; *out unchanged when absent. The string stays owned by obj. */
static int read_string(const json_t *obj, const char *key, const char **out, const char *name, sft_err *err) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    char text[80];
    if (!json_is_string(v))
        return sft_errf(err, "%s: '%s' must be a string, got %s", name, key, value_text(v, text, sizeof text));
    *out = json_string_value(v);
    return 0;
}

/* eos_token_id and friends: a number or a list of numbers (Llama 3.1 and
 * Qwen2 list several end tokens). Absent: *count unchanged. */
static int read_token_ids(const json_t *obj, const char *key, int *ids, int *count, const char *name, sft_err *err) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    char text[80];
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n > SFT_MAX_EOS)
            return sft_errf(err, "%s: '%s' lists %zu token ids, sft keeps at most %d", name, key, n, SFT_MAX_EOS);
        for (size_t i = 0; i < n; i++) {
            const json_t *item = json_array_get(v, i);
            int64_t id;
            if (json_is_boolean(item) || sft_json_int(item, &id) || id < 0 || id > INT_MAX)
                return sft_errf(err, "%s: '%s' must be a token id or a list of token ids, got %s", name, key,
                                value_text(v, text, sizeof text));
            ids[i] = (int)id;
        }
        *count = (int)n;
        return 0;
    }
    int64_t id;
    if (json_is_boolean(v) || sft_json_int(v, &id) || id < 0 || id > INT_MAX)
        return sft_errf(err, "%s: '%s' must be a token id or a list of token ids, got %s", name, key,
                        value_text(v, text, sizeof text));
    ids[0] = (int)id;
    *count = 1;
    return 0;
}

/* A single token id (bos, pad): -1 stays when absent. */
static int read_token_id(const json_t *obj, const char *key, int *out, const char *name, sft_err *err) {
    const json_t *v = member(obj, key);
    if (!v) return 0;
    int64_t id;
    char text[80];
    if (json_is_boolean(v) || sft_json_int(v, &id) || id < 0 || id > INT_MAX)
        return sft_errf(err, "%s: '%s' must be a token id, got %s", name, key, value_text(v, text, sizeof text));
    *out = (int)id;
    return 0;
}

static int copy_string(char *dst, size_t cap, const char *src, const char *key, const char *name, sft_err *err) {
    if (strlen(src) >= cap) return sft_errf(err, "%s: '%s' value '%.40s...' is too long", name, key, src);
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

/* dtype (transformers 5) or torch_dtype (older): the dtype the weights were saved in. */
static int read_dtype(const json_t *root, sft_model_config *cfg, const char *name, sft_err *err) {
    const char *key = member(root, "dtype") ? "dtype" : "torch_dtype";
    const char *dtype = NULL;
    if (read_string(root, key, &dtype, name, err)) return -1;
    if (!dtype) return 0;
    if (strcmp(dtype, "float32") && strcmp(dtype, "float16") && strcmp(dtype, "bfloat16"))
        return sft_errf(err, "%s: '%s' is '%s'; sft supports float32, float16 and bfloat16", name, key, dtype);
    return copy_string(cfg->dtype, sizeof cfg->dtype, dtype, key, name, err);
}

static int read_gpt2(const json_t *root, sft_model_config *cfg, const char *name, sft_err *err) {
    /* GPT2Config defaults; hidden_size etc. are attribute_map aliases that
     * transformers applies after the GPT-2 names, so they win. */
    cfg->vocab_size = 50257;
    cfg->max_position_embeddings = 1024;
    cfg->hidden_size = 768;
    cfg->num_layers = 12;
    cfg->num_heads = 12;
    cfg->norm_eps = 1e-5;
    cfg->tie_word_embeddings = 1;
    cfg->bos_token_id = 50256;
    cfg->eos_token_ids[0] = 50256;
    cfg->eos_count = 1;
    cfg->attention_dropout = cfg->residual_dropout = cfg->embedding_dropout = 0.1;
    int inner = 0;
    if (read_int(root, "vocab_size", &cfg->vocab_size, 1, name, err) ||
        read_int(root, "n_positions", &cfg->max_position_embeddings, 1, name, err) ||
        read_int(root, "max_position_embeddings", &cfg->max_position_embeddings, 1, name, err) ||
        read_int(root, "n_embd", &cfg->hidden_size, 1, name, err) ||
        read_int(root, "hidden_size", &cfg->hidden_size, 1, name, err) ||
        read_int(root, "n_layer", &cfg->num_layers, 1, name, err) ||
        read_int(root, "num_hidden_layers", &cfg->num_layers, 1, name, err) ||
        read_int(root, "n_head", &cfg->num_heads, 1, name, err) ||
        read_int(root, "num_attention_heads", &cfg->num_heads, 1, name, err) ||
        read_int(root, "n_inner", &inner, 1, name, err) ||
        read_number(root, "layer_norm_epsilon", &cfg->norm_eps, 0, name, err) ||
        read_number(root, "attn_pdrop", &cfg->attention_dropout, 0, name, err) ||
        read_number(root, "resid_pdrop", &cfg->residual_dropout, 0, name, err) ||
        read_number(root, "embd_pdrop", &cfg->embedding_dropout, 0, name, err))
        return -1;
    /* n_inner null means 4 * n_embd (GPT2MLP) */
    if (!inner && cfg->hidden_size > INT_MAX / 4)
        return sft_errf(err, "%s: n_embd %d is too large (4 * n_embd overflows)", name, cfg->hidden_size);
    cfg->intermediate_size = inner ? inner : 4 * cfg->hidden_size;
    if (cfg->hidden_size % cfg->num_heads)
        return sft_errf(err, "%s: n_embd %d is not divisible by n_head %d", name, cfg->hidden_size, cfg->num_heads);
    cfg->num_kv_heads = cfg->num_heads;
    cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    cfg->attention_bias = cfg->o_proj_bias = cfg->mlp_bias = 1; /* Conv1D layers all carry biases */

    const char *act = "gelu_new";
    if (read_string(root, "activation_function", &act, name, err)) return -1;
    if (strcmp(act, "gelu_new"))
        return sft_errf(err, "%s: 'activation_function' is '%s'; sft supports only gelu_new for gpt2", name, act);
    if (copy_string(cfg->hidden_act, sizeof cfg->hidden_act, act, "activation_function", name, err)) return -1;

    /* variants of the attention that sft does not compute */
    int scale_attn_weights = 1, scale_by_layer = 0, cross_attention = 0;
    if (read_bool(root, "scale_attn_weights", &scale_attn_weights, name, err) ||
        read_bool(root, "scale_attn_by_inverse_layer_idx", &scale_by_layer, name, err) ||
        read_bool(root, "add_cross_attention", &cross_attention, name, err))
        return -1;
    if (!scale_attn_weights) return sft_errf(err, "%s: 'scale_attn_weights' false is not supported", name);
    if (scale_by_layer) return sft_errf(err, "%s: 'scale_attn_by_inverse_layer_idx' true is not supported", name);
    if (cross_attention) return sft_errf(err, "%s: 'add_cross_attention' true is not supported", name);
    return 0;
}

static int read_rope(const json_t *root, sft_model_config *cfg, const char *name, sft_err *err) {
    /* rope_scaling (legacy) wins when set; an empty dict counts as unset */
    const char *dict_key = "rope_scaling";
    const json_t *params = member(root, "rope_scaling");
    if (!params || (json_is_object(params) && json_object_size(params) == 0)) {
        dict_key = "rope_parameters";
        params = member(root, "rope_parameters");
    }
    char text[80];
    if (params && !json_is_object(params))
        return sft_errf(err, "%s: '%s' must be an object, got %s", name, dict_key, value_text(params, text, sizeof text));

    cfg->rope_theta = 10000.0;
    if (read_number(root, "rope_theta", &cfg->rope_theta, 0, name, err)) return -1;
    if (!params) {
        cfg->rope_type = SFT_ROPE_DEFAULT;
    } else {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "%s: %s", name, dict_key);
        /* per-layer-type dicts ({"full_attention": {...}, ...}) belong to other families */
        const json_t *full = json_object_get(params, "full_attention");
        if (json_is_object(full) || json_is_object(json_object_get(params, "sliding_attention")))
            return sft_errf(err, "%s: per-layer-type RoPE parameters are not supported", ctx);
        if (read_number(params, "rope_theta", &cfg->rope_theta, 0, ctx, err)) return -1;
        const char *type = "default";
        const char *type_key = member(params, "rope_type") ? "rope_type" : "type";
        if (read_string(params, type_key, &type, ctx, err)) return -1;
        double partial = 1.0;
        if (read_number(params, "partial_rotary_factor", &partial, 0, ctx, err)) return -1;
        if (partial != 1.0) return sft_errf(err, "%s: 'partial_rotary_factor' %g is not supported", ctx, partial);
        if (!strcmp(type, "default")) {
            cfg->rope_type = SFT_ROPE_DEFAULT;
        } else if (!strcmp(type, "llama3")) {
            cfg->rope_type = SFT_ROPE_LLAMA3;
            static const char *required[] = {"factor", "low_freq_factor", "high_freq_factor"};
            for (size_t i = 0; i < 3; i++)
                if (!member(params, required[i]))
                    return sft_errf(err, "%s: rope type 'llama3' needs '%s'", ctx, required[i]);
            cfg->rope_original_max_position = cfg->max_position_embeddings;
            if (read_number(params, "factor", &cfg->rope_factor, 0, ctx, err) ||
                read_number(params, "low_freq_factor", &cfg->rope_low_freq_factor, 0, ctx, err) ||
                read_number(params, "high_freq_factor", &cfg->rope_high_freq_factor, 0, ctx, err) ||
                read_int(params, "original_max_position_embeddings", &cfg->rope_original_max_position, 1, ctx, err) ||
                read_int(root, "original_max_position_embeddings", &cfg->rope_original_max_position, 1, name, err))
                return -1;
            if (cfg->rope_factor <= 0) return sft_errf(err, "%s: 'factor' must be positive", ctx);
            /* the smoothing between the two bands divides by their difference */
            if (cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor)
                return sft_errf(err, "%s: 'high_freq_factor' (%g) must be greater than 'low_freq_factor' (%g)", ctx,
                                cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
            if (cfg->rope_low_freq_factor <= 0) return sft_errf(err, "%s: 'low_freq_factor' must be positive", ctx);
        } else {
            return sft_errf(err, "%s: rope type '%s' is not supported (sft supports 'default' and 'llama3')", ctx, type);
        }
    }
    double partial = 1.0;
    if (read_number(root, "partial_rotary_factor", &partial, 0, name, err)) return -1;
    if (partial != 1.0) return sft_errf(err, "%s: 'partial_rotary_factor' %g is not supported", name, partial);
    if (cfg->rope_theta <= 0) return sft_errf(err, "%s: 'rope_theta' must be positive", name);
    return 0;
}

/* Qwen2: a window only when use_sliding_window; then on the layers that
 * layer_types marks "sliding_attention" (default: i >= max_window_layers). */
static int read_qwen2_window(const json_t *root, sft_model_config *cfg, const char *name, sft_err *err) {
    int use_window = 0, window = 4096, max_window_layers = 28;
    if (read_bool(root, "use_sliding_window", &use_window, name, err) ||
        read_int(root, "max_window_layers", &max_window_layers, 0, name, err))
        return -1;
    if (json_object_get(root, "sliding_window") && !member(root, "sliding_window")) window = 0; /* explicit null */
    if (read_int(root, "sliding_window", &window, 1, name, err)) return -1;
    const json_t *layer_types = member(root, "layer_types");
    int first_sliding = -1;
    if (layer_types) {
        if (!json_is_array(layer_types) || (int)json_array_size(layer_types) != cfg->num_layers)
            return sft_errf(err, "%s: 'layer_types' must list one entry per layer (%d)", name, cfg->num_layers);
        for (int i = 0; i < cfg->num_layers; i++) {
            const char *type = json_string_value(json_array_get(layer_types, (size_t)i));
            int sliding = type && !strcmp(type, "sliding_attention");
            if (!type || (!sliding && strcmp(type, "full_attention")))
                return sft_errf(err, "%s: 'layer_types' entry %d must be \"full_attention\" or \"sliding_attention\"",
                                name, i);
            if (sliding && first_sliding < 0) first_sliding = i;
            if (!sliding && first_sliding >= 0)
                return sft_errf(err, "%s: 'layer_types' with full attention after sliding attention is not supported",
                                name);
        }
    } else {
        first_sliding = max_window_layers < cfg->num_layers ? max_window_layers : -1;
    }
    if (use_window && window > 0 && first_sliding >= 0) {
        cfg->sliding_window = window;
        cfg->sliding_window_first_layer = first_sliding;
    }
    return 0;
}

static int read_llama_family(const json_t *root, const char *model_type, sft_model_config *cfg, const char *name,
                             sft_err *err) {
    int is_mistral = !strcmp(model_type, "mistral"), is_qwen2 = !strcmp(model_type, "qwen2");
    /* class defaults: LlamaConfig, MistralConfig, Qwen2Config */
    cfg->vocab_size = is_qwen2 ? 151936 : 32000;
    cfg->hidden_size = 4096;
    cfg->intermediate_size = is_mistral ? 14336 : is_qwen2 ? 22016 : 11008;
    cfg->num_layers = 32;
    cfg->num_heads = 32;
    cfg->max_position_embeddings = is_mistral ? 4096 * 32 : is_qwen2 ? 32768 : 2048;
    cfg->norm_eps = 1e-6;
    cfg->tie_word_embeddings = 0;
    cfg->bos_token_id = is_qwen2 ? -1 : 1;
    if (!is_qwen2) {
        cfg->eos_token_ids[0] = 2;
        cfg->eos_count = 1;
    }
    if (read_int(root, "vocab_size", &cfg->vocab_size, 1, name, err) ||
        read_int(root, "hidden_size", &cfg->hidden_size, 1, name, err) ||
        read_int(root, "intermediate_size", &cfg->intermediate_size, 1, name, err) ||
        read_int(root, "num_hidden_layers", &cfg->num_layers, 1, name, err) ||
        read_int(root, "num_attention_heads", &cfg->num_heads, 1, name, err) ||
        read_int(root, "max_position_embeddings", &cfg->max_position_embeddings, 1, name, err) ||
        read_number(root, "rms_norm_eps", &cfg->norm_eps, 0, name, err) ||
        read_number(root, "attention_dropout", &cfg->attention_dropout, 0, name, err))
        return -1;
    /* num_key_value_heads: Mistral's signature default is 8, an explicit
     * null means num_attention_heads; Llama and Qwen2 default to the heads. */
    cfg->num_kv_heads = cfg->num_heads;
    if (is_mistral && !json_object_get(root, "num_key_value_heads")) cfg->num_kv_heads = 8;
    cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    if (read_int(root, "num_key_value_heads", &cfg->num_kv_heads, 1, name, err) ||
        read_int(root, "head_dim", &cfg->head_dim, 1, name, err))
        return -1;
    /* LlamaConfig.validate_architecture raises on this one */
    if (!is_mistral && !is_qwen2 && cfg->hidden_size % cfg->num_heads)
        return sft_errf(err, "%s: hidden_size %d is not a multiple of num_attention_heads %d", name, cfg->hidden_size,
                        cfg->num_heads);
    if (cfg->head_dim == 0)
        return sft_errf(err, "%s: hidden_size %d / num_attention_heads %d gives a head dimension of 0", name,
                        cfg->hidden_size, cfg->num_heads);
    if (cfg->num_heads % cfg->num_kv_heads)
        return sft_errf(err, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", name,
                        cfg->num_heads, cfg->num_kv_heads);
    if (cfg->head_dim % 2) return sft_errf(err, "%s: head_dim %d must be even for rotary embeddings", name, cfg->head_dim);

    const char *act = "silu";
    if (read_string(root, "hidden_act", &act, name, err)) return -1;
    if (strcmp(act, "silu"))
        return sft_errf(err, "%s: 'hidden_act' is '%s'; sft supports only silu for %s", name, act, model_type);
    if (copy_string(cfg->hidden_act, sizeof cfg->hidden_act, act, "hidden_act", name, err)) return -1;

    /* biases: Llama's attention_bias covers q, k, v and o; Qwen2 has q, k, v
     * biases always and none on o; Mistral has none */
    if (is_qwen2) {
        cfg->attention_bias = 1;
        cfg->o_proj_bias = 0;
    } else if (!is_mistral) {
        if (read_bool(root, "attention_bias", &cfg->attention_bias, name, err) ||
            read_bool(root, "mlp_bias", &cfg->mlp_bias, name, err))
            return -1;
        cfg->o_proj_bias = cfg->attention_bias;
    }

    if (is_mistral) {
        cfg->sliding_window = 4096;
        if (json_object_get(root, "sliding_window") && !member(root, "sliding_window")) cfg->sliding_window = 0;
        if (read_int(root, "sliding_window", &cfg->sliding_window, 1, name, err)) return -1;
    } else if (is_qwen2) {
        if (read_qwen2_window(root, cfg, name, err)) return -1;
    }
    return read_rope(root, cfg, name, err);
}

static int parse_config_json(const json_t *root, const char *name, sft_model_config *cfg, sft_err *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_token_id = -1;
    cfg->pad_token_id = -1;
    cfg->initializer_range = 0.02;
    if (!json_is_object(root)) return sft_errf(err, "%s: expected a JSON object", name);
    const char *model_type = NULL;
    if (read_string(root, "model_type", &model_type, name, err)) return -1;
    if (!model_type) return sft_errf(err, "%s: missing key 'model_type' (supported: " SUPPORTED_MODEL_TYPES ")", name);
    int rc;
    if (!strcmp(model_type, "gpt2")) {
        cfg->arch = SFT_ARCH_GPT2;
        rc = read_gpt2(root, cfg, name, err);
    } else if (!strcmp(model_type, "llama") || !strcmp(model_type, "mistral") || !strcmp(model_type, "qwen2")) {
        cfg->arch = SFT_ARCH_LLAMA;
        rc = read_llama_family(root, model_type, cfg, name, err);
    } else {
        return sft_errf(err, "%s: model_type '%s' is not supported (supported: " SUPPORTED_MODEL_TYPES ")", name,
                        model_type);
    }
    if (rc) return -1;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", model_type);
    if (read_number(root, "initializer_range", &cfg->initializer_range, 0, name, err) ||
        read_bool(root, "tie_word_embeddings", &cfg->tie_word_embeddings, name, err) ||
        read_token_id(root, "bos_token_id", &cfg->bos_token_id, name, err) ||
        read_token_id(root, "pad_token_id", &cfg->pad_token_id, name, err) ||
        read_dtype(root, cfg, name, err))
        return -1;
    /* an explicit null clears the class default (Qwen2 writes eos, GPT-2 both) */
    if (json_is_null(json_object_get(root, "bos_token_id"))) cfg->bos_token_id = -1;
    if (json_is_null(json_object_get(root, "eos_token_id"))) cfg->eos_count = 0;
    if (read_token_ids(root, "eos_token_id", cfg->eos_token_ids, &cfg->eos_count, name, err)) return -1;
    return 0;
}

int sft_config_parse(const char *text, size_t len, const char *name, sft_model_config *cfg, sft_err *err) {
    json_t *root = sft_json_loadb(text, len, name, err);
    if (!root) return -1;
    int rc = parse_config_json(root, name, cfg, err);
    json_decref(root);
    return rc;
}

int sft_config_load_file(const char *path, sft_model_config *cfg, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    int rc = sft_config_parse(text, len, path, cfg, err);
    free(text);
    return rc;
}

int sft_config_load(const char *dir, sft_model_config *cfg, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "config.json", err)) return -1;
    return sft_config_load_file(path, cfg, err);
}

/* ---- generation_config.json ------------------------------------------- */

static void generation_defaults(const sft_model_config *cfg, sft_generation_config *gen) {
    memset(gen, 0, sizeof *gen);
    gen->bos_token_id = cfg ? cfg->bos_token_id : -1;
    gen->pad_token_id = cfg ? cfg->pad_token_id : -1;
    if (cfg) {
        memcpy(gen->eos_token_ids, cfg->eos_token_ids, sizeof gen->eos_token_ids);
        gen->eos_count = cfg->eos_count;
    }
    /* GenerationConfig defaults */
    gen->temperature = 1.0;
    gen->top_k = 50;
    gen->top_p = 1.0;
}

/* Keys the file leaves out keep the model config's ids, as transformers
 * does when it reconciles the two configs before generating. */
int sft_generation_config_parse(const char *text, size_t len, const char *name, const sft_model_config *cfg,
                                sft_generation_config *gen, sft_err *err) {
    generation_defaults(cfg, gen);
    json_t *root = sft_json_loadb(text, len, name, err);
    if (!root) return -1;
    int rc = 0;
    if (!json_is_object(root)) rc = sft_errf(err, "%s: expected a JSON object", name);
    if (!rc)
        rc = read_token_id(root, "bos_token_id", &gen->bos_token_id, name, err) ||
                     read_token_id(root, "pad_token_id", &gen->pad_token_id, name, err) ||
                     read_token_ids(root, "eos_token_id", gen->eos_token_ids, &gen->eos_count, name, err) ||
                     read_bool(root, "do_sample", &gen->do_sample, name, err) ||
                     read_number(root, "temperature", &gen->temperature, 0, name, err) ||
                     read_int(root, "top_k", &gen->top_k, 0, name, err) ||
                     read_number(root, "top_p", &gen->top_p, 0, name, err) ||
                     read_int(root, "max_new_tokens", &gen->max_new_tokens, 0, name, err)
                 ? -1
                 : 0;
    if (!rc && gen->top_p > 1.0) rc = sft_errf(err, "%s: 'top_p' must be at most 1, got %g", name, gen->top_p);
    json_decref(root);
    return rc;
}

int sft_generation_config_load(const char *dir, const sft_model_config *cfg, sft_generation_config *gen,
                               sft_err *err) {
    char path[4096];
    generation_defaults(cfg, gen);
    if (sft_path_join(path, sizeof path, dir, "generation_config.json", err)) return -1;
    if (!sft_file_exists(path)) return 0;
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    int rc = sft_generation_config_parse(text, len, path, cfg, gen, err);
    free(text);
    return rc;
}
