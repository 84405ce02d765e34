/* export.c: Hugging Face model dirs and PEFT adapter dirs from a model in
 * memory or from a checkpoint (see export.h). */
#include "train/export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/file.h"
#include "io/json.h"
#include "model/lora.h"
#include "train/checkpoint.h"

/* The files a tokenizer may consist of (whichever the source has are copied). */
static const char *const tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt",     "tokenizer.model",       "added_tokens.json",
};
#define TOKENIZER_FILE_COUNT (sizeof tokenizer_files / sizeof tokenizer_files[0])

int sft_export_dtype_parse(const char *name, int *dtype, sft_err *err) {
    if (!strcmp(name, "auto")) *dtype = -1;
    else if (!strcmp(name, "float32")) *dtype = SFT_DTYPE_F32;
    else if (!strcmp(name, "bfloat16")) *dtype = SFT_DTYPE_BF16;
    else if (!strcmp(name, "float16")) *dtype = SFT_DTYPE_F16;
    else return sft_errf(err, "unknown dtype '%s' (expected auto, float32, bfloat16 or float16)", name);
    return 0;
}

sft_dtype sft_export_config_dtype(const sft_model_config *cfg) {
    if (!strcmp(cfg->dtype, "bfloat16")) return SFT_DTYPE_BF16;
    if (!strcmp(cfg->dtype, "float16")) return SFT_DTYPE_F16;
    return SFT_DTYPE_F32;
}

static const char *dtype_config_name(sft_dtype d) {
    return d == SFT_DTYPE_BF16 ? "bfloat16" : d == SFT_DTYPE_F16 ? "float16" : "float32";
}

/* ------------------------------------------------------- chat templates */

/* Does `text` detect as the renderer `name`? */
static int detects_as(const sft_tokenizer *tok, const char *text, const char *name) {
    sft_err ignored;
    sft_chat_template *t =
        sft_chat_template_new(NULL, text, sft_tokenizer_bos_token(tok), sft_tokenizer_eos_token(tok), &ignored);
    int same = t && !strcmp(sft_chat_template_name(t), name);
    sft_chat_template_free(t);
    return same;
}

const char *sft_export_template_text(const sft_tokenizer *tok, const sft_chat_template *tmpl, const char **note) {
    *note = NULL;
    if (!tmpl) return sft_tokenizer_chat_template(tok);
    const char *name = sft_chat_template_name(tmpl);
    const char *own = sft_tokenizer_chat_template(tok);
    if (own && detects_as(tok, own, name)) return own;
    /* The renderer's own Jinja text (with {% generation %} blocks), checked to
     * detect back to the same renderer before it is written. */
    const char *builtin = sft_chat_template_jinja(tmpl);
    if (builtin && detects_as(tok, builtin, name)) return builtin;
    *note = "sft has no Jinja text for this chat template, so the export carries no chat_template.jinja: "
            "render prompts with the same template (sft chat --template NAME) when using the model";
    return NULL;
}

/* ------------------------------------------------------------ files */

static int copy_if_present(const char *from_dir, const char *to_dir, const char *name, sft_err *err) {
    char from[4096], to[4096];
    if (sft_path_join(from, sizeof from, from_dir, name, err) || sft_path_join(to, sizeof to, to_dir, name, err))
        return -1;
    if (!sft_file_exists(from)) return 0;
    return sft_copy_file(from, to, err);
}

/* Reals that hold integers back to integers: the project's JSON reader reads
 * every number as a real (json.h), and config.json must keep 365, not 365.0. */
static void integers_back(json_t *j) {
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            double d;
            if (json_is_real(v) && !sft_json_number(v, &d) && isfinite(d) && d == floor(d) && fabs(d) < 9.0e15)
                json_object_set_new(j, k, json_integer((json_int_t)d));
            else
                integers_back(v);
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            double d;
            if (json_is_real(v) && !sft_json_number(v, &d) && isfinite(d) && d == floor(d) && fabs(d) < 9.0e15)
                json_array_set_new(j, i, json_integer((json_int_t)d));
            else
                integers_back(v);
        }
    }
}

/* config.json: copied as it is, or with its dtype key rewritten when the
 * weights are stored in another dtype (both spellings: torch_dtype, dtype). */
static int write_config(const char *src_dir, const char *dir, int dtype, sft_err *err) {
    char from[4096], to[4096];
    if (sft_path_join(from, sizeof from, src_dir, "config.json", err) ||
        sft_path_join(to, sizeof to, dir, "config.json", err))
        return -1;
    sft_model_config cfg;
    if (sft_config_load_file(from, &cfg, err)) return -1;
    if (dtype < 0 || (sft_dtype)dtype == sft_export_config_dtype(&cfg)) return sft_copy_file(from, to, err);
    json_t *root = sft_json_load_file(from, err);
    if (!root) return -1;
    integers_back(root);
    const char *name = dtype_config_name((sft_dtype)dtype);
    int had = 0;
    if (json_object_get(root, "torch_dtype")) json_object_set_new(root, "torch_dtype", json_string(name)), had = 1;
    if (json_object_get(root, "dtype")) json_object_set_new(root, "dtype", json_string(name)), had = 1;
    if (!had) json_object_set_new(root, "torch_dtype", json_string(name));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return sft_errf(err, "out of memory");
    size_t len = strlen(text);
    char *with_newline = realloc(text, len + 2);
    if (!with_newline) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    with_newline[len] = '\n';
    int rc = sft_write_file_atomic(to, with_newline, len + 1, err);
    free(with_newline);
    return rc;
}

/* generation_config.json: the source's, else one from config.json's ids. */
static int write_generation_config(const char *src_dir, const char *dir, sft_err *err) {
    char from[4096], to[4096];
    if (sft_path_join(from, sizeof from, src_dir, "generation_config.json", err) ||
        sft_path_join(to, sizeof to, dir, "generation_config.json", err))
        return -1;
    if (sft_file_exists(from)) return sft_copy_file(from, to, err);
    sft_model_config cfg;
    if (sft_config_load(src_dir, &cfg, err)) return -1;
    char text[512], eos[256] = "null";
    size_t n = 0;
    if (cfg.eos_count == 1) snprintf(eos, sizeof eos, "%d", cfg.eos_token_ids[0]);
    if (cfg.eos_count > 1) {
        n += (size_t)snprintf(eos + n, sizeof eos - n, "[");
        for (int i = 0; i < cfg.eos_count && n < sizeof eos - 16; i++)
            n += (size_t)snprintf(eos + n, sizeof eos - n, "%s%d", i ? ", " : "", cfg.eos_token_ids[i]);
        snprintf(eos + n, sizeof eos - n, "]");
    }
    char bos[32] = "null", pad[32] = "null";
    if (cfg.bos_token_id >= 0) snprintf(bos, sizeof bos, "%d", cfg.bos_token_id);
    if (cfg.pad_token_id >= 0) snprintf(pad, sizeof pad, "%d", cfg.pad_token_id);
    int len = snprintf(text, sizeof text,
                       "{\n  \"bos_token_id\": %s,\n  \"eos_token_id\": %s,\n  \"pad_token_id\": %s\n}\n", bos, eos,
                       pad);
    return sft_write_file_atomic(to, text, (size_t)len, err);
}

int sft_export_support_files(const sft_export_source *src, const char *dir, int with_config, sft_err *err) {
    for (size_t i = 0; i < TOKENIZER_FILE_COUNT; i++)
        if (copy_if_present(src->model_dir, dir, tokenizer_files[i], err)) return -1;
    if (src->chat_template) {
        char to[4096];
        if (sft_path_join(to, sizeof to, dir, "chat_template.jinja", err) ||
            sft_write_file_atomic(to, src->chat_template, strlen(src->chat_template), err))
            return -1;
    } else if (copy_if_present(src->model_dir, dir, "chat_template.jinja", err)) {
        return -1;
    }
    if (with_config && write_generation_config(src->model_dir, dir, err)) return -1;
    return 0;
}

int sft_export_model_files(const sft_model *m, const sft_export_source *src, int dtype, const char *dir,
                           sft_err *err) {
    if (m->lora_r) return sft_errf(err, "the model carries a LoRA adapter: merge it before exporting a full model");
    sft_dtype d = dtype < 0 ? sft_export_config_dtype(&m->cfg) : (sft_dtype)dtype;
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "model.safetensors", err) ||
        sft_model_save_weights(m, path, d, err))
        return -1;
    if (write_config(src->model_dir, dir, dtype, err)) return -1;
    return sft_export_support_files(src, dir, 1, err);
}

int sft_export_model(const sft_model *m, const sft_export_source *src, int dtype, const char *out_dir,
                     sft_err *err) {
    char tmp[4096];
    if (sft_dir_begin(out_dir, tmp, sizeof tmp, err)) return -1;
    if (sft_export_model_files(m, src, dtype, tmp, err) || sft_dir_commit(tmp, out_dir, err)) {
        sft_dir_abort(tmp);
        return sft_err_prefix(err, "exporting %s", out_dir);
    }
    return 0;
}

int sft_export_adapter(const sft_model *m, const sft_export_source *src, const char *base_model,
                       const char *out_dir, sft_err *err) {
    char tmp[4096];
    if (sft_dir_begin(out_dir, tmp, sizeof tmp, err)) return -1;
    if (sft_lora_save(m, tmp, base_model, err) || sft_export_support_files(src, tmp, 0, err) ||
        sft_dir_commit(tmp, out_dir, err)) {
        sft_dir_abort(tmp);
        return sft_err_prefix(err, "exporting %s", out_dir);
    }
    return 0;
}

/* ------------------------------------------------------- sft export */

int sft_export_checkpoint(const sft_export_request *req, sft_err *err) {
    char path[4096];
    if (!sft_dir_exists(req->checkpoint)) return sft_errf(err, "%s: no such folder", req->checkpoint);
    if (sft_path_join(path, sizeof path, req->checkpoint, "adapter_config.json", err)) return -1;
    int is_adapter = sft_file_exists(path);
    sft_model *m = NULL;
    char *base = NULL;
    int rc = -1;
    if (!is_adapter) {
        if (req->merge)
            return sft_errf(err, "%s holds a full model (no adapter_config.json): there is no adapter to merge",
                            req->checkpoint);
        m = sft_model_load(req->checkpoint, err);
        if (!m) return sft_err_prefix(err, "%s", req->checkpoint);
        sft_export_source src = {.model_dir = req->checkpoint};
        rc = sft_export_model(m, &src, req->dtype, req->out_dir, err);
        sft_model_free(m);
        return rc;
    }
    /* An adapter: find its base model. */
    if (req->base_model) {
        base = strdup(req->base_model);
    } else {
        json_t *cfg = sft_json_load_file(path, err);
        if (!cfg) return -1;
        const char *name = NULL;
        if (sft_json_get_string_opt(cfg, "base_model_name_or_path", &name, path, err)) {
            json_decref(cfg);
            return -1;
        }
        base = name && *name ? strdup(name) : NULL;
        json_decref(cfg);
        if (!base)
            return sft_errf(err, "%s names no base_model_name_or_path: give the base model with --base DIR", path);
    }
    if (!base) return sft_errf(err, "out of memory");
    if (!sft_dir_exists(base)) {
        sft_errf(err, "%s: the adapter's base model %s is not a folder here (give it with --base DIR)", path, base);
        goto done;
    }
    m = sft_model_load(base, err);
    if (!m) {
        sft_err_prefix(err, "base model of %s", req->checkpoint);
        goto done;
    }
    if (sft_lora_load(m, req->checkpoint, err)) goto done;
    /* Tokenizer files and template: the checkpoint's when it carries them
     * (a training export does), else the base model's. */
    char tok_path[4096];
    if (sft_path_join(tok_path, sizeof tok_path, req->checkpoint, "tokenizer.json", err)) goto done;
    const char *support = sft_file_exists(tok_path) ? req->checkpoint : base;
    char *template_text = NULL;
    char tmpl_path[4096];
    if (sft_path_join(tmpl_path, sizeof tmpl_path, req->checkpoint, "chat_template.jinja", err)) goto done;
    if (sft_file_exists(tmpl_path)) {
        size_t len;
        if (sft_read_file(tmpl_path, &template_text, &len, err)) goto done;
    }
    if (req->merge) {
        sft_lora_merge(m);
        char tmp[4096];
        if (sft_dir_begin(req->out_dir, tmp, sizeof tmp, err)) {
            free(template_text);
            goto done;
        }
        /* config.json and generation_config.json are the base model's;
         * tokenizer and template follow the adapter. */
        sft_export_source support_src = {.model_dir = support, .chat_template = template_text};
        sft_dtype d = req->dtype < 0 ? sft_export_config_dtype(&m->cfg) : (sft_dtype)req->dtype;
        char wpath[4400];
        int bad = sft_path_join(wpath, sizeof wpath, tmp, "model.safetensors", err) ||
                  sft_model_save_weights(m, wpath, d, err) || write_config(base, tmp, req->dtype, err) ||
                  write_generation_config(base, tmp, err) || sft_export_support_files(&support_src, tmp, 0, err) ||
                  sft_dir_commit(tmp, req->out_dir, err);
        if (bad) {
            sft_dir_abort(tmp);
            free(template_text);
            sft_err_prefix(err, "exporting %s", req->out_dir);
            goto done;
        }
    } else {
        sft_export_source src = {.model_dir = support, .chat_template = template_text};
        if (sft_export_adapter(m, &src, base, req->out_dir, err)) {
            free(template_text);
            goto done;
        }
    }
    free(template_text);
    rc = 0;
done:
    sft_model_free(m);
    free(base);
    return rc;
}
