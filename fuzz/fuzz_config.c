/* fuzz_config.c: libFuzzer target for the config.json and
 * generation_config.json readers (src/io/config.c). The input is the JSON
 * text; each reader must either fail with a message or return a
 * configuration whose sizes are consistent (positive, heads dividing as the
 * model code assumes).
 * Build: make fuzz; run: see fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>

#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sft_err err;
    err.msg[0] = 0;
    sft_model_config cfg;
    int loaded = sft_config_parse((const char *)data, size, "fuzz", &cfg, &err) == 0;
    if (!loaded && !err.msg[0]) abort();
    if (loaded) {
        if (cfg.vocab_size <= 0 || cfg.hidden_size <= 0 || cfg.num_layers <= 0 || cfg.num_heads <= 0 ||
            cfg.num_kv_heads <= 0 || cfg.head_dim <= 0 || cfg.intermediate_size <= 0)
            abort();
        if (cfg.num_heads % cfg.num_kv_heads) abort();
        if (cfg.eos_count < 0 || cfg.eos_count > SFT_MAX_EOS) abort();
        if (cfg.arch == SFT_ARCH_LLAMA && (cfg.rope_theta <= 0 || cfg.head_dim % 2)) abort();
    }
    sft_generation_config gen;
    err.msg[0] = 0;
    if (sft_generation_config_parse((const char *)data, size, "fuzz", loaded ? &cfg : NULL, &gen, &err) == 0) {
        if (gen.eos_count < 0 || gen.eos_count > SFT_MAX_EOS || gen.top_p > 1.0) abort();
    } else if (!err.msg[0]) {
        abort();
    }
    return 0;
}
