/* init_dir.c: a randomly initialised Hugging Face model dir (sft init):
 * config.json as given, model.safetensors with transformers'
 * initialisation (model.c: sft_model_init_weights) in the config's dtype,
 * generation_config.json from the config's token ids, and the tokenizer's
 * files. The dir is assembled under a temporary name and renamed into
 * place, so an interrupted init leaves nothing under the final name. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "model/model.h"
#include "tok/tokenizer.h"

static const char *const tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
    "merges.txt",     "tokenizer.model",       "added_tokens.json",
};

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int write_generation_config(const char *path, const sft_model_config *cfg, sft_err *err) {
    char text[512], ids[256] = "null";
    size_t n = 0;
    if (cfg->eos_count == 1) snprintf(ids, sizeof ids, "%d", cfg->eos_token_ids[0]);
    if (cfg->eos_count > 1) {
        n += snprintf(ids + n, sizeof ids - n, "[");
        for (int i = 0; i < cfg->eos_count && n < sizeof ids - 16; i++)
            n += snprintf(ids + n, sizeof ids - n, "%s%d", i ? ", " : "", cfg->eos_token_ids[i]);
        snprintf(ids + n, sizeof ids - n, "]");
    }
    char bos[32] = "null", pad[32] = "null";
    if (cfg->bos_token_id >= 0) snprintf(bos, sizeof bos, "%d", cfg->bos_token_id);
    if (cfg->pad_token_id >= 0) snprintf(pad, sizeof pad, "%d", cfg->pad_token_id);
    int len = snprintf(text, sizeof text,
                       "{\n  \"bos_token_id\": %s,\n  \"eos_token_id\": %s,\n  \"pad_token_id\": %s\n}\n",
                       bos, ids, pad);
    return sft_write_file_atomic(path, text, (size_t)len, err);
}

int sft_model_init_dir(const char *config_path, const char *tokenizer_dir, const char *out_dir, uint64_t seed,
                       sft_err *err) {
    sft_model_config cfg;
    if (sft_config_load_file(config_path, &cfg, err)) return -1;
    if (sft_dir_exists(out_dir)) {
        DIR *d = opendir(out_dir);
        int empty = 1;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
        if (d) closedir(d);
        if (!empty) return sft_errf(err, "%s already exists and is not empty: choose another --out", out_dir);
        rmdir(out_dir);
    }
    sft_tokenizer *tok = sft_tokenizer_load(tokenizer_dir, err);
    if (!tok) return -1;
    size_t vocab = sft_tokenizer_vocab_size(tok);
    sft_tokenizer_free(tok);
    sft_model *m = sft_model_create(&cfg, err);
    if (!m) return sft_err_prefix(err, "%s", config_path);
    if (sft_model_check_vocab(m, vocab, err)) {
        sft_model_free(m);
        return sft_err_prefix(err, "%s and %s", config_path, tokenizer_dir);
    }
    sft_model_init_weights(m, seed);

    char tmp[4096], path[4400], from[4400];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid()) >= (int)sizeof tmp) {
        sft_errf(err, "%s: path too long", out_dir);
        sft_model_free(m);
        return -1;
    }
    int rc = -1;
    if (sft_mkdir_p(tmp, err)) goto done;
    sft_dtype dtype = !strcmp(cfg.dtype, "bfloat16")  ? SFT_DTYPE_BF16
                      : !strcmp(cfg.dtype, "float16") ? SFT_DTYPE_F16
                                                      : SFT_DTYPE_F32;
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (sft_model_save_weights(m, path, dtype, err)) goto done;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if (sft_copy_file(config_path, path, err)) goto done;
    snprintf(path, sizeof path, "%s/generation_config.json", tmp);
    if (write_generation_config(path, &m->cfg, err)) goto done;
    for (size_t i = 0; i < sizeof tokenizer_files / sizeof tokenizer_files[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", tokenizer_dir, tokenizer_files[i]);
        if (!sft_file_exists(from)) continue;
        snprintf(path, sizeof path, "%s/%s", tmp, tokenizer_files[i]);
        if (sft_copy_file(from, path, err)) goto done;
    }
    if (rename(tmp, out_dir)) {
        sft_err_errno(err, out_dir);
        goto done;
    }
    rc = 0;
done:
    if (rc) remove_tree(tmp);
    sft_model_free(m);
    return rc;
}
