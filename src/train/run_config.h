/* run_config.h: the configuration of one training run (`sft train`).
 *
 * One table (sft_run_keys) describes every training key: its YAML name, type,
 * range, default and help line (the diagnosis thresholds join it from the
 * monitor's own table, sft_diagnose_params, so their names live in one
 * place). The YAML loader (-c run.yaml), the flag
 * parser (src/cli/run_flags.h: `--max-grad-norm` is `max_grad_norm:`), the
 * `--help` text and the writer of the resolved run.yaml all walk that one
 * table, so the four can never disagree about a key.
 *
 * Order of precedence: defaults < YAML file < flags. After both are applied,
 * sft_run_config_finish() resolves the automatic defaults (lr), normalises
 * (warmup) and checks the combinations; from then on the struct is what the
 * training loop reads, and sft_run_config_write_yaml() writes it so that
 * `sft train -c RUN/run.yaml` re-runs the same run.
 *
 * Defaults follow TRL's SFTConfig / HF TrainingArguments where those have
 * one (batch 8, 3 epochs, max length 1024, linear schedule, AdamW betas
 * 0.9/0.999, eps 1e-8, clip 1.0, seed 42); see the table in run_config.c
 * and `sft train --help`. */
#ifndef SFT_TRAIN_RUN_CONFIG_H
#define SFT_TRAIN_RUN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/err.h"
#include "io/yaml.h"
#include "monitor/diagnose.h"

/* Closed sets of values; the order matches the choice lists in the table. */
typedef enum {
    SFT_RUN_FORMAT_AUTO,
    SFT_RUN_FORMAT_ALPACA,
    SFT_RUN_FORMAT_SHAREGPT,
    SFT_RUN_FORMAT_MESSAGES,
    SFT_RUN_FORMAT_PROMPT_COMPLETION,
    SFT_RUN_FORMAT_TEXT,
} sft_run_format;

typedef enum { SFT_RUN_SCHEDULE_LINEAR, SFT_RUN_SCHEDULE_COSINE, SFT_RUN_SCHEDULE_CONSTANT } sft_run_schedule;
typedef enum { SFT_RUN_OVERLONG_TRUNCATE, SFT_RUN_OVERLONG_DROP } sft_run_overlong;
typedef enum { SFT_RUN_NONFINITE_STOP, SFT_RUN_NONFINITE_SKIP } sft_run_nonfinite;
/* auto = the dtype of the model's own weights (config.json torch_dtype). */
typedef enum {
    SFT_RUN_SAVE_AUTO,
    SFT_RUN_SAVE_FLOAT32,
    SFT_RUN_SAVE_BFLOAT16,
    SFT_RUN_SAVE_FLOAT16
} sft_run_save_dtype;

/* The precision of the matrix products (model/ops.h: sft_kernels_for_dtype). */
typedef enum { SFT_RUN_DTYPE_FP32, SFT_RUN_DTYPE_BF16 } sft_run_dtype;

/* An owned list of strings (data files, LoRA target modules). */
typedef struct sft_str_list {
    char **items;
    int count;
} sft_str_list;

/* The most keys the table may hold (sizes the per-key origin array). */
#define SFT_RUN_KEY_MAX 96

/* Where a key's value came from. */
typedef enum { SFT_RUN_FROM_DEFAULT, SFT_RUN_FROM_FILE, SFT_RUN_FROM_FLAG } sft_run_origin;

/* The value `resume` holds for "the latest checkpoint of `out`" (`--resume`
 * without a folder, `resume: true`). */
#define SFT_RUN_RESUME_LATEST "true"

typedef struct sft_run_config {
    /* model and data */
    char *model;       /* HF model dir */
    sft_str_list data; /* training files (JSONL or JSON array) */
    char *val_data;    /* NULL: none */
    double val_split;  /* 0: none */
    int format;        /* sft_run_format */
    char *template_name; /* "auto": the model's own chat template */
    int64_t max_len;
    int packing;
    int train_on_prompt;
    int overlong; /* sft_run_overlong */
    int skip_bad_records;
    /* length and batches */
    double epochs;
    int64_t max_steps; /* 0: from epochs */
    int64_t batch_size;
    int64_t grad_accum;
    /* learning rate */
    double lr; /* NaN until sft_run_config_finish picks the automatic default */
    int lr_schedule; /* sft_run_schedule */
    int64_t warmup_steps;
    double warmup_ratio;
    double min_lr_ratio;
    /* optimizer */
    double weight_decay;
    double adam_beta1;
    double adam_beta2;
    double adam_eps;
    double max_grad_norm; /* 0: no clipping */
    int on_nonfinite;     /* sft_run_nonfinite */
    /* evaluation and checkpoints */
    int64_t seed;
    int64_t eval_every;       /* 0: only at the end */
    int64_t save_every;       /* 0: only at the end */
    int64_t keep_checkpoints; /* 0: keep all */
    int64_t early_stopping_patience; /* 0: off */
    double early_stopping_threshold;
    int64_t samples_per_eval;       /* validation prompts answered at each evaluation (0: none) */
    int64_t sample_max_new_tokens;  /* length limit of those answers */
    /* LoRA (lora_r 0: full fine-tuning) */
    int64_t lora_r;
    double lora_alpha;
    double lora_dropout;
    sft_str_list lora_targets; /* empty: the model family's default */
    /* the run */
    int64_t threads; /* 0: all cores (sft_run_config_finish resolves it to the count) */
    int dtype;       /* sft_run_dtype */
    char *out;
    char *resume; /* NULL: fresh run; SFT_RUN_RESUME_LATEST or a run/checkpoint dir */
    int save_dtype; /* sft_run_save_dtype */
    /* the thresholds of the live diagnosis (monitor/diagnose.h); each is a
     * key of its own (spike_sigma, clip_window, ...) */
    sft_diagnose_config diagnose;

    unsigned char origin[SFT_RUN_KEY_MAX]; /* sft_run_origin per table index */
} sft_run_config;

typedef enum {
    SFT_KEY_STRING, /* char *: a path or a name; null resets it */
    SFT_KEY_INT,    /* int64_t */
    SFT_KEY_NUMBER, /* double, finite */
    SFT_KEY_BOOL,   /* int 0/1 */
    SFT_KEY_CHOICE, /* int: index into choices */
    SFT_KEY_LIST,   /* sft_str_list: a YAML list or one scalar; flags repeat */
    SFT_KEY_RESUME, /* char *: true / false / a folder */
} sft_run_key_type;

typedef struct sft_run_key {
    const char *name; /* the YAML key; the flag is "--" + name with '_' written '-' */
    sft_run_key_type type;
    size_t offset; /* of the field in sft_run_config */
    const char *metavar;
    const char *const *choices; /* SFT_KEY_CHOICE: NULL-terminated */
    /* Allowed range for INT and NUMBER: lo..hi, each end open or closed. */
    double lo, hi;
    int lo_open, hi_open;
    int split_commas; /* LIST: "a,b" is two items (lora_targets), not one path */
    const char *help;
    const char *default_text; /* help's "default:" when it is not a plain value */
    const char *group;
} sft_run_key;

/* The table, in the order of --help and run.yaml. */
const sft_run_key *sft_run_keys(size_t *count);
/* NULL when `name` is not a key. */
const sft_run_key *sft_run_key_find(const char *name);
/* "max_grad_norm" -> "max-grad-norm". */
void sft_run_key_flag_name(const sft_run_key *key, char *out, size_t cap);

/* Defaults. */
void sft_run_config_init(sft_run_config *cfg);
void sft_run_config_free(sft_run_config *cfg);
/* Deep copy; 0 or -1 (out of memory). */
int sft_run_config_copy(sft_run_config *dst, const sft_run_config *src, sft_err *err);

/* Applies every key of a YAML mapping (unknown key: an error suggesting the
 * nearest; wrong type or out of range: an error naming the key, the expected
 * type and FILE:LINE:COLUMN). An empty document changes nothing. */
int sft_run_config_apply_yaml(sft_run_config *cfg, const sft_yaml_doc *doc, sft_err *err);
int sft_run_config_load_yaml(sft_run_config *cfg, const char *path, sft_err *err);
/* The same for one mapping node (a sweep file's training keys); `file`
 * names it in errors. */
int sft_run_config_apply_mapping(sft_run_config *cfg, const sft_yaml_node *mapping, const char *file, sft_err *err);

/* Sets one key from the text of a flag (`where` names it in errors, e.g.
 * "--max-len"). Lists: each call appends one value (split at commas for
 * lora_targets); call sft_run_config_clear_list first to replace the file's. */
int sft_run_config_set_text(sft_run_config *cfg, const sft_run_key *key, const char *text, const char *where,
                            sft_run_origin origin, sft_err *err);
void sft_run_config_clear_list(sft_run_config *cfg, const sft_run_key *key);

/* After YAML and flags: picks the automatic defaults (lr by full/LoRA,
 * threads 0 -> the number of cores), normalises (warmup_steps replaces the
 * default warmup_ratio), and checks that the run can start (required keys
 * present, combinations valid). */
int sft_run_config_finish(sft_run_config *cfg, sft_err *err);

/* The folder `--resume` points to (cfg->out for SFT_RUN_RESUME_LATEST), NULL when not resuming. */
const char *sft_run_config_resume_dir(const sft_run_config *cfg);

/* Value equality of every key (origins are not compared). */
int sft_run_config_equal(const sft_run_config *a, const sft_run_config *b);
/* The name of the first key whose values differ, NULL when equal. */
const char *sft_run_config_first_difference(const sft_run_config *a, const sft_run_config *b);

/* The resolved configuration as YAML text (malloc'ed), every key present,
 * each with its help line as a comment; reloads to an equal config. */
char *sft_run_config_to_yaml(const sft_run_config *cfg, sft_err *err);
/* Written atomically (io/file.h). */
int sft_run_config_write_yaml(const sft_run_config *cfg, const char *path, sft_err *err);

/* One key's value as YAML text ("2e-05", "[]", "null", ...). */
void sft_run_config_format_value(const sft_run_config *cfg, const sft_run_key *key, char *out, size_t cap);

/* `--help` from the table: flags grouped, with metavar, help and default.
 * `extra_usage` lines (may be NULL) are printed between usage and keys. */
void sft_run_config_print_help(FILE *out, const char *usage);

#endif
