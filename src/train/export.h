/* export.h: what a training run hands to other tools: Hugging Face model
 * dirs (config.json, model.safetensors, tokenizer files,
 * generation_config.json, chat_template.jinja) that transformers'
 * from_pretrained loads, and PEFT adapter dirs (adapter_config.json,
 * adapter_model.safetensors, plus the tokenizer files, as TRL saves them)
 * that PeftModel.from_pretrained loads.
 *
 * Every dir is assembled under a temporary name beside its final one and
 * swapped into place (train/checkpoint.h's sft_dir_begin/commit): a crash
 * leaves the previous export or the new one, never a mixture.
 *
 * The chat template written is the one training rendered with: the model's
 * own text when the template was detected from it (or names the same
 * renderer), else the built-in Jinja text of the chosen family. GGUF export
 * is not implemented. */
#ifndef SFT_TRAIN_EXPORT_H
#define SFT_TRAIN_EXPORT_H

#include "io/err.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "tok/template.h"
#include "tok/tokenizer.h"

/* "auto" (-1: the dtype config.json names), "float32", "bfloat16", "float16". */
int sft_export_dtype_parse(const char *name, int *dtype, sft_err *err);
/* The dtype config.json of a model names (float32 when it names none). */
sft_dtype sft_export_config_dtype(const sft_model_config *cfg);

typedef struct sft_export_source {
    const char *model_dir; /* config.json, generation_config.json and tokenizer files come from here */
    /* The Jinja text to write as chat_template.jinja; NULL: the source's own file, if any. */
    const char *chat_template;
} sft_export_source;

/* The Jinja text to export for a template used in training: the
 * tokenizer's own when it renders as `tmpl` does, else the family's
 * built-in text; NULL (with *note set) when sft has none for that family. */
const char *sft_export_template_text(const sft_tokenizer *tok, const sft_chat_template *tmpl, const char **note);

/* A full model dir of m's weights (LoRA adapters must be merged first) in
 * `dtype` (-1: the source config's dtype), replacing out_dir atomically. */
int sft_export_model(const sft_model *m, const sft_export_source *src, int dtype, const char *out_dir,
                     sft_err *err);

/* A PEFT adapter dir of m's adapters; base_model is written as
 * base_model_name_or_path. */
int sft_export_adapter(const sft_model *m, const sft_export_source *src, const char *base_model,
                       const char *out_dir, sft_err *err);

/* Fills an already created folder (no atomic swap): the pieces of the two
 * functions above, for writers that assemble a folder themselves. */
int sft_export_model_files(const sft_model *m, const sft_export_source *src, int dtype, const char *dir,
                           sft_err *err);
int sft_export_support_files(const sft_export_source *src, const char *dir, int with_config, sft_err *err);

/* `sft export`: from a checkpoint dir (or any HF model / PEFT adapter dir)
 * to an HF model dir, merging an adapter into its base with `merge` (an
 * adapter without merge is re-exported as an adapter dir). */
typedef struct sft_export_request {
    const char *checkpoint;
    const char *out_dir;
    int merge;
    int dtype;               /* -1: auto */
    const char *base_model;  /* NULL: adapter_config.json's base_model_name_or_path */
} sft_export_request;

int sft_export_checkpoint(const sft_export_request *req, sft_err *err);

#endif
