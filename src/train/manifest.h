/* manifest.h: RUN/manifest.json, the record of what a run was made from:
 * program version and command line, the content hashes of the model's
 * weights and tokenizer and of every data file, seed, threads, start time
 * and host (SPEC.md, "A run directory"). Two runs with the same manifest
 * hashes and run.yaml trained on the same bytes.
 *
 * Also the key of the tokenized-data cache: the hashes of the data files,
 * the tokenizer, the chat template text and the max length (and any other
 * option that changes the tokens), so that a cache is reused exactly when
 * it would be rebuilt identically. Hashes are XXH3-128 (io/hash.h). */
#ifndef SFT_TRAIN_MANIFEST_H
#define SFT_TRAIN_MANIFEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "io/err.h"
#include "io/hash.h"

/* The hashes of a Hugging Face model dir: `weights` covers config.json and
 * every *.safetensors (and its index), `tokenizer` every tokenizer file
 * present (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
 * chat_template.jinja, ...). Each is a hash of (file name, file hash) pairs
 * in name order, so it does not depend on where the folder lies. `files`
 * (may be NULL) gets a new JSON object {name: hex hash} of the files used. */
int sft_model_dir_hashes(const char *dir, sft_hash128 *weights, sft_hash128 *tokenizer, json_t **files,
                         sft_err *err);

typedef struct sft_manifest {
    const char *program_version;
    const char *command_line; /* may be NULL */
    const char *model_dir;
    const char *const *data_files;
    size_t data_count;
    const char *val_data; /* may be NULL */
    uint64_t seed;
    int threads;
    time_t start_time;
    const json_t *extra; /* may be NULL: more top-level fields */
} sft_manifest;

/* Hashes everything the manifest names and writes it atomically. */
int sft_manifest_write(const char *path, const sft_manifest *manifest, sft_err *err);

typedef struct sft_tokenized_key_input {
    const char *const *data_files;
    size_t data_count;
    sft_hash128 tokenizer_hash;
    const char *template_text; /* the chat template source actually rendered with */
    int64_t max_len;
    const char *options; /* everything else that changes the tokens, e.g. "format=auto;train_on_prompt=0" */
} sft_tokenized_key_input;

int sft_tokenized_cache_key(const sft_tokenized_key_input *input, sft_hash128 *key, sft_err *err);

#endif
