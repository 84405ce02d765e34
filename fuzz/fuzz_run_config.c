/* fuzz_run_config.c: libFuzzer target for the run configuration's YAML
 * loader (src/io/yaml.c through src/train/run_config.c). The input is a
 * run.yaml text; it must either fail with a message, or load into a config
 * whose resolved run.yaml (sft_run_config_to_yaml) loads back to an equal
 * config: the writer's quoting must survive any string the loader accepts.
 * Build: make fuzz; run: see fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/yaml.h"
#include "train/run_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int load(const char *text, size_t len, sft_run_config *cfg, sft_err *err) {
    sft_run_config_init(cfg);
    err->msg[0] = 0;
    sft_yaml_doc *doc = sft_yaml_load_string(text, len, "fuzz.yaml", err);
    if (!doc) return -1;
    int rc = sft_run_config_apply_yaml(cfg, doc, err);
    sft_yaml_free(doc);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sft_err err;
    sft_run_config cfg, again;
    if (load((const char *)data, size, &cfg, &err)) {
        if (!err.msg[0]) abort();
        sft_run_config_free(&cfg);
        return 0;
    }
    char *yaml = sft_run_config_to_yaml(&cfg, &err);
    if (!yaml) abort();
    if (load(yaml, strlen(yaml), &again, &err)) abort();
    if (!sft_run_config_equal(&cfg, &again)) abort();
    free(yaml);
    sft_run_config_free(&cfg);
    sft_run_config_free(&again);
    return 0;
}
