/* run_config.c: the table of training keys and everything that walks it:
 * defaults, YAML loading, setting from flag text, the checks of combinations,
 * the resolved run.yaml writer and --help (see run_config.h). */
#include "train/run_config.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "io/suggest.h"

static const char *const format_choices[] = {"auto", "alpaca", "sharegpt", "messages", "prompt-completion",
                                             "text", NULL};
static const char *const schedule_choices[] = {"linear", "cosine", "constant", NULL};
static const char *const overlong_choices[] = {"truncate", "drop", NULL};
static const char *const nonfinite_choices[] = {"stop", "skip", NULL};
static const char *const save_dtype_choices[] = {"auto", "float32", "bfloat16", "float16", NULL};
static const char *const dtype_choices[] = {"fp32", "bf16", NULL};

#define OFF(field) offsetof(sft_run_config, field)
#define ANY -INFINITY, INFINITY, 0, 0
/* The default learning rate when none is given: TRL's SFTConfig default for
 * full fine-tuning, and the value the LoRA paper's recipes and PEFT's
 * examples use (adapters need a ~10x larger step). */
#define DEFAULT_LR_FULL 2e-5
#define DEFAULT_LR_LORA 2e-4

static const sft_run_key base_keys[] = {
    /* model and data */
    {"model", SFT_KEY_STRING, OFF(model), "DIR", NULL, ANY, 0,
     "Hugging Face model dir (config.json, model.safetensors, tokenizer.json)", "required", "model and data"},
    {"data", SFT_KEY_LIST, OFF(data), "FILE", NULL, ANY, 0, "training data, JSONL or a JSON array (repeatable)",
     "required", "model and data"},
    {"val_data", SFT_KEY_STRING, OFF(val_data), "FILE", NULL, ANY, 0,
     "validation data (instead of val_split)", "none", "model and data"},
    {"val_split", SFT_KEY_NUMBER, OFF(val_split), "FRACTION", NULL, 0, 1, 0, 1, 0,
     "hold out this fraction of the training data for validation (seeded)", "0 (none)", "model and data"},
    {"format", SFT_KEY_CHOICE, OFF(format), NULL, format_choices, ANY, 0,
     "record format; auto detects it per file", NULL, "model and data"},
    {"template", SFT_KEY_STRING, OFF(template_name), "NAME", NULL, ANY, 0,
     "chat template: auto (the model's own), chatml, llama3, llama2, alpaca, ...", NULL, "model and data"},
    {"max_len", SFT_KEY_INT, OFF(max_len), "N", NULL, 2, 1 << 24, 0, 0, 0,
     "maximum tokens per sequence (per packed row with packing)", NULL, "model and data"},
    {"packing", SFT_KEY_BOOL, OFF(packing), NULL, NULL, ANY, 0,
     "pack records into rows of max_len tokens (attention kept within each record)", NULL, "model and data"},
    {"train_on_prompt", SFT_KEY_BOOL, OFF(train_on_prompt), NULL, NULL, ANY, 0,
     "loss on every token, not only on the assistant's (end-of-turn token included)", NULL, "model and data"},
    {"overlong", SFT_KEY_CHOICE, OFF(overlong), NULL, overlong_choices, ANY, 0,
     "records longer than max_len are truncated or dropped (counted either way)", NULL, "model and data"},
    {"skip_bad_records", SFT_KEY_BOOL, OFF(skip_bad_records), NULL, NULL, ANY, 0,
     "skip and count malformed records instead of stopping at the first", NULL, "model and data"},
    /* length and batches */
    {"epochs", SFT_KEY_NUMBER, OFF(epochs), "N", NULL, 0, INFINITY, 1, 0, 0,
     "passes over the training data (fractions allowed)", NULL, "length and batches"},
    {"max_steps", SFT_KEY_INT, OFF(max_steps), "N", NULL, 0, INFINITY, 0, 0, 0,
     "stop after N optimizer steps (overrides epochs)", "0 (from epochs)", "length and batches"},
    {"batch_size", SFT_KEY_INT, OFF(batch_size), "N", NULL, 1, 1 << 20, 0, 0, 0, "sequences per micro-batch",
     NULL, "length and batches"},
    {"grad_accum", SFT_KEY_INT, OFF(grad_accum), "N", NULL, 1, 1 << 20, 0, 0, 0,
     "micro-batches per optimizer step (the loss is normalised over all of their tokens)", NULL,
     "length and batches"},
    /* learning rate */
    {"lr", SFT_KEY_NUMBER, OFF(lr), "X", NULL, 0, INFINITY, 1, 0, 0, "peak learning rate",
     "2e-05, or 0.0002 with LoRA", "learning rate"},
    {"lr_schedule", SFT_KEY_CHOICE, OFF(lr_schedule), NULL, schedule_choices, ANY, 0,
     "decay after warmup: linear, cosine (both to min_lr_ratio * lr) or constant", NULL, "learning rate"},
    {"warmup_steps", SFT_KEY_INT, OFF(warmup_steps), "N", NULL, 0, INFINITY, 0, 0, 0,
     "linear warmup steps (overrides warmup_ratio when > 0)", NULL, "learning rate"},
    {"warmup_ratio", SFT_KEY_NUMBER, OFF(warmup_ratio), "X", NULL, 0, 1, 0, 1, 0,
     "warmup as a fraction of all optimizer steps", NULL, "learning rate"},
    {"min_lr_ratio", SFT_KEY_NUMBER, OFF(min_lr_ratio), "X", NULL, 0, 1, 0, 0, 0,
     "the learning rate decays to this fraction of lr", NULL, "learning rate"},
    /* optimizer */
    {"weight_decay", SFT_KEY_NUMBER, OFF(weight_decay), "X", NULL, 0, INFINITY, 0, 0, 0,
     "AdamW decoupled weight decay (not applied to biases and norms)", NULL, "optimizer"},
    {"adam_beta1", SFT_KEY_NUMBER, OFF(adam_beta1), "X", NULL, 0, 1, 0, 1, 0, "AdamW beta1", NULL, "optimizer"},
    {"adam_beta2", SFT_KEY_NUMBER, OFF(adam_beta2), "X", NULL, 0, 1, 0, 1, 0, "AdamW beta2", NULL, "optimizer"},
    {"adam_eps", SFT_KEY_NUMBER, OFF(adam_eps), "X", NULL, 0, INFINITY, 1, 0, 0, "AdamW epsilon", NULL,
     "optimizer"},
    {"max_grad_norm", SFT_KEY_NUMBER, OFF(max_grad_norm), "X", NULL, 0, INFINITY, 0, 0, 0,
     "clip the global gradient L2 norm to this (0 disables clipping)", NULL, "optimizer"},
    {"on_nonfinite", SFT_KEY_CHOICE, OFF(on_nonfinite), NULL, nonfinite_choices, ANY, 0,
     "a NaN/Inf loss or gradient stops the run, or skips that step (counted)", NULL, "optimizer"},
    /* evaluation and checkpoints */
    {"seed", SFT_KEY_INT, OFF(seed), "N", NULL, 0, INFINITY, 0, 0, 0,
     "seeds data order, validation split, dropout and initialisation", NULL, "evaluation and checkpoints"},
    {"eval_every", SFT_KEY_INT, OFF(eval_every), "N", NULL, 0, INFINITY, 0, 0, 0,
     "evaluate every N optimizer steps, and at the end (0: only at the end)", NULL,
     "evaluation and checkpoints"},
    {"save_every", SFT_KEY_INT, OFF(save_every), "N", NULL, 0, INFINITY, 0, 0, 0,
     "checkpoint every N optimizer steps, and at the end (0: only at the end)", NULL,
     "evaluation and checkpoints"},
    {"keep_checkpoints", SFT_KEY_INT, OFF(keep_checkpoints), "N", NULL, 0, INFINITY, 0, 0, 0,
     "keep the last N checkpoints plus the best (0: keep all)", NULL, "evaluation and checkpoints"},
    {"early_stopping_patience", SFT_KEY_INT, OFF(early_stopping_patience), "N", NULL, 0, INFINITY, 0, 0, 0,
     "stop after N evaluations without improvement of the validation loss (0: off)", NULL,
     "evaluation and checkpoints"},
    {"early_stopping_threshold", SFT_KEY_NUMBER, OFF(early_stopping_threshold), "X", NULL, 0, INFINITY, 0, 0,
     0, "the least decrease of the validation loss that counts as an improvement", NULL,
     "evaluation and checkpoints"},
    {"samples_per_eval", SFT_KEY_INT, OFF(samples_per_eval), "N", NULL, 0, 1000, 0, 0, 0,
     "at each evaluation, greedy answers to N fixed validation prompts go to samples.jsonl and the report (0: "
     "none)",
     NULL, "evaluation and checkpoints"},
    {"sample_max_new_tokens", SFT_KEY_INT, OFF(sample_max_new_tokens), "N", NULL, 1, 4096, 0, 0, 0,
     "the most tokens of each sample answer", NULL, "evaluation and checkpoints"},
    /* LoRA */
    {"lora_r", SFT_KEY_INT, OFF(lora_r), "N", NULL, 0, 65536, 0, 0, 0,
     "LoRA rank; 0 trains all weights (full fine-tuning)", NULL, "LoRA"},
    {"lora_alpha", SFT_KEY_NUMBER, OFF(lora_alpha), "X", NULL, 0, INFINITY, 1, 0, 0,
     "LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)", NULL, "LoRA"},
    {"lora_dropout", SFT_KEY_NUMBER, OFF(lora_dropout), "X", NULL, 0, 1, 0, 1, 0,
     "dropout on the LoRA branch input", NULL, "LoRA"},
    {"lora_targets", SFT_KEY_LIST, OFF(lora_targets), "a,b,...", NULL, ANY, 1,
     "module names that get adapters (q_proj,v_proj, ...)", "the family's PEFT default", "LoRA"},
    /* the run */
    {"threads", SFT_KEY_INT, OFF(threads), "N", NULL, 0, 4096, 0, 0, 0,
     "worker threads; 0: all cores (results are bit-identical for a given count)", "0 (all cores)", "run"},
    {"dtype", SFT_KEY_CHOICE, OFF(dtype), NULL, dtype_choices, ANY, 0,
     "precision of the matrix products: fp32, or bf16 (bfloat16 operands, float32 accumulation, weights and "
     "optimizer; without AVX512_BF16 it runs fp32 and says so)",
     NULL, "run"},
    {"out", SFT_KEY_STRING, OFF(out), "DIR", NULL, ANY, 0,
     "the run folder (run.yaml, metrics.jsonl, checkpoints/, best/, final/)", "required", "run"},
    {"resume", SFT_KEY_RESUME, OFF(resume), "[DIR]", NULL, ANY, 0,
     "continue from the latest checkpoint of DIR (a run or checkpoint folder; alone: of --out)", "no", "run"},
    {"save_dtype", SFT_KEY_CHOICE, OFF(save_dtype), NULL, save_dtype_choices, ANY, 0,
     "dtype of exported weights (auto: the model's own)", NULL, "run"},
};
#define BASE_KEY_COUNT (sizeof base_keys / sizeof base_keys[0])

/* The whole table: the keys above, then one per diagnosis threshold, taken
 * from the monitor's own list (sft_diagnose_params) so that a threshold added
 * there is a flag and a YAML key of `sft train` without a second list of
 * names. Built once, before first use. */
#define DIAGNOSIS_GROUP "diagnosis thresholds (the live diagnosis; docs/diagnosis.md)"
static sft_run_key keys[SFT_RUN_KEY_MAX];
static size_t key_count;
static pthread_once_t keys_built = PTHREAD_ONCE_INIT;

static void build_keys(void) {
    memcpy(keys, base_keys, sizeof base_keys);
    key_count = BASE_KEY_COUNT;
    size_t param_count;
    const sft_diagnose_param *params = sft_diagnose_params(&param_count);
    for (size_t i = 0; i < param_count && key_count < SFT_RUN_KEY_MAX; i++) {
        const sft_diagnose_param *p = &params[i];
        size_t offset = offsetof(sft_run_config, diagnose) + p->offset;
        keys[key_count++] = p->is_int ? (sft_run_key){p->name, SFT_KEY_INT, offset, "N", NULL, 1,
                                                      SFT_DIAGNOSE_INT_MAX, 0, 0, 0, p->help, NULL, DIAGNOSIS_GROUP}
                                      : (sft_run_key){p->name, SFT_KEY_NUMBER, offset, "X", NULL, 0, INFINITY,
                                                      1, 0, 0, p->help, NULL, DIAGNOSIS_GROUP};
    }
}

static size_t table_size(void) {
    pthread_once(&keys_built, build_keys);
    return key_count;
}
#define KEY_COUNT (table_size())

const sft_run_key *sft_run_keys(size_t *count) {
    *count = KEY_COUNT;
    return keys;
}

const sft_run_key *sft_run_key_find(const char *name) {
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

void sft_run_key_flag_name(const sft_run_key *key, char *out, size_t cap) {
    size_t i = 0;
    for (; key->name[i] && i + 1 < cap; i++) out[i] = key->name[i] == '_' ? '-' : key->name[i];
    if (cap) out[i] = 0;
}

static size_t key_index(const sft_run_key *key) {
    return (size_t)(key - keys);
}

#define FIELD(cfg, key, type) ((type *)((char *)(cfg) + (key)->offset))
#define CFIELD(cfg, key, type) ((const type *)((const char *)(cfg) + (key)->offset))

static void list_clear(sft_str_list *list) {
    for (int i = 0; i < list->count; i++) free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int list_append(sft_str_list *list, const char *text, size_t len, sft_err *err) {
    char **grown = realloc(list->items, (size_t)(list->count + 1) * sizeof *grown);
    if (!grown) return sft_errf(err, "out of memory");
    list->items = grown;
    char *copy = strndup(text, len);
    if (!copy) return sft_errf(err, "out of memory");
    list->items[list->count++] = copy;
    return 0;
}

static int set_string(char **field, const char *text, sft_err *err) {
    char *copy = NULL;
    if (text && !(copy = strdup(text))) return sft_errf(err, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

void sft_run_config_init(sft_run_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->format = SFT_RUN_FORMAT_AUTO;
    cfg->template_name = strdup("auto");
    cfg->max_len = 1024;
    cfg->overlong = SFT_RUN_OVERLONG_TRUNCATE;
    cfg->epochs = 3;
    cfg->batch_size = 8;
    cfg->grad_accum = 1;
    cfg->lr = NAN;
    cfg->lr_schedule = SFT_RUN_SCHEDULE_LINEAR;
    /* 3% warmup: the Alpaca / TRL recipes' value; it keeps the first AdamW
     * steps (whose second moment is still tiny) from overshooting. */
    cfg->warmup_ratio = 0.03;
    cfg->adam_beta1 = 0.9;
    cfg->adam_beta2 = 0.999;
    cfg->adam_eps = 1e-8;
    cfg->max_grad_norm = 1.0;
    cfg->on_nonfinite = SFT_RUN_NONFINITE_STOP;
    cfg->seed = 42;
    cfg->eval_every = 100;
    cfg->save_every = 500;
    cfg->keep_checkpoints = 3;
    /* A handful of short greedy answers: a glance at what the model says,
     * costing a small fraction of an evaluation. */
    cfg->samples_per_eval = 3;
    cfg->sample_max_new_tokens = 48;
    /* PEFT-style defaults; alpha 16 with the common ranks 8..16 keeps the
     * scale alpha/r between 1 and 2. */
    cfg->lora_alpha = 16;
    cfg->lora_dropout = 0.05;
    cfg->save_dtype = SFT_RUN_SAVE_AUTO;
    sft_diagnose_config_default(&cfg->diagnose);
}

void sft_run_config_free(sft_run_config *cfg) {
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const sft_run_key *key = &keys[i];
        if (key->type == SFT_KEY_STRING || key->type == SFT_KEY_RESUME) {
            free(*FIELD(cfg, key, char *));
            *FIELD(cfg, key, char *) = NULL;
        } else if (key->type == SFT_KEY_LIST) {
            list_clear(FIELD(cfg, key, sft_str_list));
        }
    }
}

int sft_run_config_copy(sft_run_config *dst, const sft_run_config *src, sft_err *err) {
    *dst = *src;
    /* Detach the owned fields first so that a failure can free dst safely. */
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const sft_run_key *key = &keys[i];
        if (key->type == SFT_KEY_STRING || key->type == SFT_KEY_RESUME) *FIELD(dst, key, char *) = NULL;
        if (key->type == SFT_KEY_LIST) memset(FIELD(dst, key, sft_str_list), 0, sizeof(sft_str_list));
    }
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const sft_run_key *key = &keys[i];
        if (key->type == SFT_KEY_STRING || key->type == SFT_KEY_RESUME) {
            if (set_string(FIELD(dst, key, char *), *CFIELD(src, key, char *), err)) goto fail;
        } else if (key->type == SFT_KEY_LIST) {
            const sft_str_list *from = CFIELD(src, key, sft_str_list);
            for (int j = 0; j < from->count; j++)
                if (list_append(FIELD(dst, key, sft_str_list), from->items[j], strlen(from->items[j]), err))
                    goto fail;
        }
    }
    return 0;
fail:
    sft_run_config_free(dst);
    return -1;
}

void sft_run_config_clear_list(sft_run_config *cfg, const sft_run_key *key) {
    if (key->type == SFT_KEY_LIST) list_clear(FIELD(cfg, key, sft_str_list));
}

/* The violated bound: "must be >= 1", "must be <= 4096", "must be > 0";
 * fractions show their interval: "must be in [0, 1)". */
static void range_text(const sft_run_key *key, double v, char *out, size_t cap) {
    if (!isinf(key->hi) && !isinf(key->lo) && key->hi <= 1)
        snprintf(out, cap, "must be in %c%.15g, %.15g%c", key->lo_open ? '(' : '[', key->lo, key->hi,
                 key->hi_open ? ')' : ']');
    else if (key->lo_open ? !(v > key->lo) : !(v >= key->lo))
        snprintf(out, cap, "must be %s %.15g", key->lo_open ? ">" : ">=", key->lo);
    else
        snprintf(out, cap, "must be %s %.15g", key->hi_open ? "<" : "<=", key->hi);
}

static int in_range(const sft_run_key *key, double v) {
    if (key->lo_open ? !(v > key->lo) : !(v >= key->lo)) return 0;
    if (key->hi_open ? !(v < key->hi) : !(v <= key->hi)) return 0;
    return 1;
}

static void choices_text(const sft_run_key *key, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (const char *const *c = key->choices; *c && n < cap; c++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", c == key->choices ? "" : "|", *c);
}

/* Appends `text` to a list; split at commas for keys like lora_targets.
 * Empty items ("a,,b", a trailing comma) are mistakes, not names. */
static int list_add_text(sft_run_config *cfg, const sft_run_key *key, const char *text, const char *where,
                         sft_err *err) {
    sft_str_list *list = FIELD(cfg, key, sft_str_list);
    if (!key->split_commas) {
        if (!*text) return sft_errf(err, "%s must not be empty", where);
        return list_append(list, text, strlen(text), err);
    }
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (!len) return sft_errf(err, "%s expects comma-separated names, got '%s'", where, text);
        if (list_append(list, p, len, err)) return -1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

int sft_run_config_set_text(sft_run_config *cfg, const sft_run_key *key, const char *text, const char *where,
                            sft_run_origin origin, sft_err *err) {
    char expect[256];
    switch (key->type) {
    case SFT_KEY_STRING:
        if (!*text) return sft_errf(err, "%s must not be empty", where);
        if (set_string(FIELD(cfg, key, char *), text, err)) return -1;
        break;
    case SFT_KEY_RESUME: {
        int b;
        if (!*text) return sft_errf(err, "%s must not be empty", where);
        if (!sft_yaml_scalar_bool(text, &b)) {
            if (set_string(FIELD(cfg, key, char *), b ? SFT_RUN_RESUME_LATEST : NULL, err)) return -1;
        } else if (set_string(FIELD(cfg, key, char *), text, err)) {
            return -1;
        }
        break;
    }
    case SFT_KEY_INT: {
        int64_t v;
        if (sft_yaml_scalar_int(text, &v)) return sft_errf(err, "%s expects an integer, got '%s'", where, text);
        if (!in_range(key, (double)v)) {
            range_text(key, (double)v, expect, sizeof expect);
            return sft_errf(err, "%s %s, got %s", where, expect, text);
        }
        *FIELD(cfg, key, int64_t) = v;
        break;
    }
    case SFT_KEY_NUMBER: {
        double v;
        if (sft_yaml_scalar_number(text, &v)) return sft_errf(err, "%s expects a number, got '%s'", where, text);
        if (!isfinite(v)) return sft_errf(err, "%s must be a finite number, got '%s'", where, text);
        if (!in_range(key, v)) {
            range_text(key, v, expect, sizeof expect);
            return sft_errf(err, "%s %s, got %s", where, expect, text);
        }
        *FIELD(cfg, key, double) = v;
        break;
    }
    case SFT_KEY_BOOL: {
        int b;
        if (sft_yaml_scalar_bool(text, &b))
            return sft_errf(err, "%s expects true or false, got '%s'", where, text);
        *FIELD(cfg, key, int) = b;
        break;
    }
    case SFT_KEY_CHOICE: {
        int found = -1;
        for (int i = 0; key->choices[i]; i++)
            if (!strcmp(key->choices[i], text)) found = i;
        if (found < 0) {
            choices_text(key, expect, sizeof expect);
            size_t n = 0;
            while (key->choices[n]) n++;
            const char *near = sft_suggest(text, (const char *const *)key->choices, n);
            if (near)
                return sft_errf(err, "%s expects one of %s, got '%s' (did you mean '%s'?)", where, expect, text,
                                near);
            return sft_errf(err, "%s expects one of %s, got '%s'", where, expect, text);
        }
        *FIELD(cfg, key, int) = found;
        break;
    }
    case SFT_KEY_LIST:
        if (list_add_text(cfg, key, text, where, err)) return -1;
        break;
    }
    cfg->origin[key_index(key)] = (unsigned char)origin;
    return 0;
}

/* Resets a key to its default (a YAML null). */
static int reset_to_default(sft_run_config *cfg, const sft_run_key *key, sft_err *err) {
    sft_run_config defaults;
    sft_run_config_init(&defaults);
    int rc = 0;
    switch (key->type) {
    case SFT_KEY_STRING:
    case SFT_KEY_RESUME:
        rc = set_string(FIELD(cfg, key, char *), *CFIELD(&defaults, key, char *), err);
        break;
    case SFT_KEY_LIST:
        list_clear(FIELD(cfg, key, sft_str_list));
        break;
    case SFT_KEY_INT:
        *FIELD(cfg, key, int64_t) = *CFIELD(&defaults, key, int64_t);
        break;
    case SFT_KEY_NUMBER:
        *FIELD(cfg, key, double) = *CFIELD(&defaults, key, double);
        break;
    case SFT_KEY_BOOL:
    case SFT_KEY_CHOICE:
        *FIELD(cfg, key, int) = *CFIELD(&defaults, key, int);
        break;
    }
    sft_run_config_free(&defaults);
    cfg->origin[key_index(key)] = SFT_RUN_FROM_DEFAULT;
    return rc;
}

static const char *type_name(const sft_run_key *key) {
    switch (key->type) {
    case SFT_KEY_STRING:
        return "a string";
    case SFT_KEY_RESUME:
        return "true, false or a folder";
    case SFT_KEY_INT:
        return "an integer";
    case SFT_KEY_NUMBER:
        return "a number";
    case SFT_KEY_BOOL:
        return "true or false";
    case SFT_KEY_CHOICE:
        return "one name";
    case SFT_KEY_LIST:
        return key->split_commas ? "a list of names" : "a file path or a list of file paths";
    }
    return "?";
}

static int apply_node(sft_run_config *cfg, const sft_run_key *key, const sft_yaml_node *value, const char *file,
                      sft_err *err) {
    char where[1024];
    snprintf(where, sizeof where, "%s:%d:%d: %s", file, value->line, value->column, key->name);
    if (sft_yaml_is_null(value)) return reset_to_default(cfg, key, err);
    if (key->type == SFT_KEY_LIST) {
        /* A YAML list replaces the defaults; so does a single scalar. */
        sft_run_config_clear_list(cfg, key);
        if (value->kind == SFT_YAML_SCALAR) return sft_run_config_set_text(cfg, key, value->value, where,
                                                                            SFT_RUN_FROM_FILE, err);
        if (value->kind != SFT_YAML_SEQUENCE)
            return sft_errf(err, "%s expects %s, got a %s", where, type_name(key), sft_yaml_kind_name(value->kind));
        for (size_t i = 0; i < value->count; i++) {
            const sft_yaml_node *item = value->items[i];
            char item_where[1100];
            snprintf(item_where, sizeof item_where, "%s:%d:%d: %s[%zu]", file, item->line, item->column,
                     key->name, i);
            if (item->kind != SFT_YAML_SCALAR || sft_yaml_is_null(item))
                return sft_errf(err, "%s expects a string, got %s", item_where,
                                item->kind == SFT_YAML_SCALAR ? "null" : sft_yaml_kind_name(item->kind));
            if (sft_run_config_set_text(cfg, key, item->value, item_where, SFT_RUN_FROM_FILE, err)) return -1;
        }
        cfg->origin[key_index(key)] = SFT_RUN_FROM_FILE;
        return 0;
    }
    if (value->kind != SFT_YAML_SCALAR)
        return sft_errf(err, "%s expects %s, got a %s", where, type_name(key), sft_yaml_kind_name(value->kind));
    if (key->type == SFT_KEY_RESUME && !value->plain) {
        /* Quoted, resume: "yes" is a folder named yes, not a boolean. */
        if (!*value->value) return sft_errf(err, "%s must not be empty", where);
        if (set_string(FIELD(cfg, key, char *), value->value, err)) return -1;
        cfg->origin[key_index(key)] = SFT_RUN_FROM_FILE;
        return 0;
    }
    return sft_run_config_set_text(cfg, key, value->value, where, SFT_RUN_FROM_FILE, err);
}

int sft_run_config_apply_yaml(sft_run_config *cfg, const sft_yaml_doc *doc, sft_err *err) {
    const sft_yaml_node *root = sft_yaml_root(doc);
    if (!root) return 0;
    return sft_run_config_apply_mapping(cfg, root, sft_yaml_name(doc), err);
}

int sft_run_config_apply_mapping(sft_run_config *cfg, const sft_yaml_node *root, const char *file, sft_err *err) {
    if (root->kind != SFT_YAML_MAPPING)
        return sft_errf(err, "%s:%d:%d: expected a mapping of training keys (key: value lines), got a %s", file,
                        root->line, root->column, sft_yaml_kind_name(root->kind));
    const char *names[SFT_RUN_KEY_MAX];
    for (size_t i = 0; i < KEY_COUNT; i++) names[i] = keys[i].name;
    for (size_t i = 0; i < root->count; i++) {
        const sft_yaml_node *k = root->keys[i];
        const sft_run_key *key = sft_run_key_find(k->value);
        if (!key) {
            const char *near = sft_suggest(k->value, names, KEY_COUNT);
            if (near)
                return sft_errf(err, "%s:%d:%d: unknown key '%s' (did you mean '%s'?)", file, k->line, k->column,
                                k->value, near);
            return sft_errf(err, "%s:%d:%d: unknown key '%s' (see sft train --help)", file, k->line, k->column,
                            k->value);
        }
        if (apply_node(cfg, key, root->items[i], file, err)) return -1;
    }
    return 0;
}

int sft_run_config_load_yaml(sft_run_config *cfg, const char *path, sft_err *err) {
    sft_yaml_doc *doc = sft_yaml_load_file(path, err);
    if (!doc) return -1;
    int rc = sft_run_config_apply_yaml(cfg, doc, err);
    sft_yaml_free(doc);
    return rc;
}

int sft_run_config_finish(sft_run_config *cfg, sft_err *err) {
    if (!cfg->model)
        return sft_errf(err, "no model given: --model DIR (or model: in the YAML file)");
    if (cfg->data.count == 0)
        return sft_errf(err, "no training data given: --data FILE (repeatable; or data: in the YAML file)");
    if (!cfg->out) return sft_errf(err, "no run folder given: --out DIR (or out: in the YAML file)");
    if (cfg->val_data && cfg->val_split > 0)
        return sft_errf(err, "val_data and val_split are both set; give one of them (val_data: %s, val_split: %g)",
                        cfg->val_data, cfg->val_split);
    const size_t warmup_ratio_index = key_index(sft_run_key_find("warmup_ratio"));
    if (cfg->warmup_steps > 0 && cfg->warmup_ratio > 0) {
        if (cfg->origin[warmup_ratio_index] != SFT_RUN_FROM_DEFAULT)
            return sft_errf(err,
                            "warmup_steps and warmup_ratio are both set; give one of them (warmup_steps: %lld, "
                            "warmup_ratio: %g)",
                            (long long)cfg->warmup_steps, cfg->warmup_ratio);
        /* warmup_steps replaces the default ratio; written as 0 so that the
         * resolved run.yaml says what the run does. */
        cfg->warmup_ratio = 0;
    }
    if (cfg->early_stopping_patience > 0 && !cfg->val_data && cfg->val_split <= 0)
        return sft_errf(err, "early_stopping_patience needs validation data (val_data or val_split)");
    if (cfg->early_stopping_patience > 0 && cfg->eval_every == 0)
        return sft_errf(err, "early_stopping_patience counts evaluations, but eval_every is 0 (only a final one)");
    if (cfg->lora_r == 0 && cfg->lora_targets.count > 0)
        return sft_errf(err, "lora_targets is set but lora_r is 0 (full fine-tuning); set lora_r to use LoRA");
    if (!cfg->template_name || !*cfg->template_name)
        return sft_errf(err, "template must be a name (auto for the model's own)");
    if (isnan(cfg->lr)) cfg->lr = cfg->lora_r > 0 ? DEFAULT_LR_LORA : DEFAULT_LR_FULL;
    /* The resolved count goes into run.yaml: bit-identical results (and an
     * exact resume) need the same thread count, wherever the run is repeated. */
    if (cfg->threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = cores > 0 ? (cores < 4096 ? cores : 4096) : 1;
    }
    return 0;
}

const char *sft_run_config_resume_dir(const sft_run_config *cfg) {
    if (!cfg->resume) return NULL;
    if (!strcmp(cfg->resume, SFT_RUN_RESUME_LATEST)) return cfg->out;
    return cfg->resume;
}

static int strings_equal(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return !strcmp(a, b);
}

static int key_equal(const sft_run_config *a, const sft_run_config *b, const sft_run_key *key) {
    switch (key->type) {
    case SFT_KEY_STRING:
    case SFT_KEY_RESUME:
        return strings_equal(*CFIELD(a, key, char *), *CFIELD(b, key, char *));
    case SFT_KEY_INT:
        return *CFIELD(a, key, int64_t) == *CFIELD(b, key, int64_t);
    case SFT_KEY_NUMBER: {
        double x = *CFIELD(a, key, double), y = *CFIELD(b, key, double);
        return x == y || (isnan(x) && isnan(y));
    }
    case SFT_KEY_BOOL:
    case SFT_KEY_CHOICE:
        return *CFIELD(a, key, int) == *CFIELD(b, key, int);
    case SFT_KEY_LIST: {
        const sft_str_list *x = CFIELD(a, key, sft_str_list), *y = CFIELD(b, key, sft_str_list);
        if (x->count != y->count) return 0;
        for (int i = 0; i < x->count; i++)
            if (strcmp(x->items[i], y->items[i])) return 0;
        return 1;
    }
    }
    return 0;
}

const char *sft_run_config_first_difference(const sft_run_config *a, const sft_run_config *b) {
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (!key_equal(a, b, &keys[i])) return keys[i].name;
    return NULL;
}

int sft_run_config_equal(const sft_run_config *a, const sft_run_config *b) {
    return sft_run_config_first_difference(a, b) == NULL;
}

/* The shortest decimal that reads back as the same double; whole numbers
 * below 1e15 without an exponent (10, not 1e+01). */
static void format_number(double v, char *out, size_t cap) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, cap, "%.*g", precision, v);
        if (strtod(out, NULL) == v) break;
    }
    if (strstr(out, "e+") && v == floor(v) && fabs(v) < 1e15) snprintf(out, cap, "%.0f", v);
}

void sft_run_config_format_value(const sft_run_config *cfg, const sft_run_key *key, char *out, size_t cap) {
    switch (key->type) {
    case SFT_KEY_STRING: {
        const char *s = *CFIELD(cfg, key, char *);
        if (!s)
            snprintf(out, cap, "null");
        else
            sft_yaml_quote(out, cap, s);
        break;
    }
    case SFT_KEY_RESUME: {
        const char *s = *CFIELD(cfg, key, char *);
        if (!s)
            snprintf(out, cap, "false");
        else if (!strcmp(s, SFT_RUN_RESUME_LATEST))
            snprintf(out, cap, "true");
        else
            sft_yaml_quote(out, cap, s);
        break;
    }
    case SFT_KEY_INT:
        snprintf(out, cap, "%lld", (long long)*CFIELD(cfg, key, int64_t));
        break;
    case SFT_KEY_NUMBER: {
        double v = *CFIELD(cfg, key, double);
        if (isnan(v))
            snprintf(out, cap, "null");
        else
            format_number(v, out, cap);
        break;
    }
    case SFT_KEY_BOOL:
        snprintf(out, cap, "%s", *CFIELD(cfg, key, int) ? "true" : "false");
        break;
    case SFT_KEY_CHOICE:
        snprintf(out, cap, "%s", key->choices[*CFIELD(cfg, key, int)]);
        break;
    case SFT_KEY_LIST: {
        /* Flow style: [a, "b c"]; fine for one line of help and for YAML. */
        const sft_str_list *list = CFIELD(cfg, key, sft_str_list);
        size_t n = 0;
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "[");
        for (int i = 0; i < list->count; i++) {
            if (i) n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, ", ");
            n += sft_yaml_quote(out + (n < cap ? n : cap), n < cap ? cap - n : 0, list->items[i]);
        }
        snprintf(out + (n < cap ? n : cap), n < cap ? cap - n : 0, "]");
        break;
    }
    }
}

/* A growing text buffer for the YAML writer. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} text_buf;

static void buf_add(text_buf *b, const char *s) {
    size_t n = strlen(s);
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

char *sft_run_config_to_yaml(const sft_run_config *cfg, sft_err *err) {
    text_buf b = {0};
    buf_add(&b, "# sft run configuration, fully resolved: every key with the value this run used.\n"
                "# Re-run it with: sft train -c run.yaml   (flags given after -c override it)\n");
    const char *group = NULL;
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const sft_run_key *key = &keys[i];
        if (!group || strcmp(group, key->group)) {
            group = key->group;
            buf_add(&b, "\n# --- ");
            buf_add(&b, group);
            buf_add(&b, " ---\n");
        }
        buf_add(&b, "# ");
        buf_add(&b, key->help);
        buf_add(&b, "\n");
        buf_add(&b, key->name);
        buf_add(&b, ":");
        if (key->type == SFT_KEY_LIST && CFIELD(cfg, key, sft_str_list)->count > 0) {
            /* Block style for lists: one file per line reads and diffs well. */
            const sft_str_list *list = CFIELD(cfg, key, sft_str_list);
            buf_add(&b, "\n");
            for (int j = 0; j < list->count; j++) {
                size_t need = sft_yaml_quote(NULL, 0, list->items[j]) + 1;
                char *quoted = malloc(need);
                if (!quoted) {
                    b.failed = 1;
                    break;
                }
                sft_yaml_quote(quoted, need, list->items[j]);
                buf_add(&b, "  - ");
                buf_add(&b, quoted);
                buf_add(&b, "\n");
                free(quoted);
            }
            continue;
        }
        size_t need = 64;
        if (key->type == SFT_KEY_STRING || key->type == SFT_KEY_RESUME) {
            const char *s = *CFIELD(cfg, key, char *);
            if (s) need = sft_yaml_quote(NULL, 0, s) + 1;
        }
        char *value = malloc(need < 64 ? 64 : need);
        if (!value) {
            b.failed = 1;
            break;
        }
        sft_run_config_format_value(cfg, key, value, need < 64 ? 64 : need);
        buf_add(&b, " ");
        buf_add(&b, value);
        buf_add(&b, "\n");
        free(value);
    }
    if (b.failed) {
        free(b.data);
        sft_errf(err, "out of memory");
        return NULL;
    }
    return b.data;
}

int sft_run_config_write_yaml(const sft_run_config *cfg, const char *path, sft_err *err) {
    char *text = sft_run_config_to_yaml(cfg, err);
    if (!text) return sft_err_prefix(err, "%s", path);
    int rc = sft_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

void sft_run_config_print_help(FILE *out, const char *usage) {
    sft_run_config defaults;
    sft_run_config_init(&defaults);
    fprintf(out, "usage: %s\n", usage);
    fprintf(out, "\nEvery flag is also a key of the YAML file given with -c (--max-grad-norm X is\n"
                 "max_grad_norm: X); flags override the file. Booleans: --packing, --packing=false.\n");
    fprintf(out, "\n  %-30s %s\n", "-c, --config FILE", "read the keys from a YAML file (e.g. a run's run.yaml)");
    const char *group = NULL;
    for (size_t i = 0; i < KEY_COUNT; i++) {
        const sft_run_key *key = &keys[i];
        if (!group || strcmp(group, key->group)) {
            group = key->group;
            fprintf(out, "\n%s:\n", group);
        }
        char flag[64], left[400], value[256];
        sft_run_key_flag_name(key, flag, sizeof flag);
        if (key->type == SFT_KEY_CHOICE) {
            choices_text(key, value, sizeof value);
            snprintf(left, sizeof left, "--%s %s", flag, value);
        } else if (key->metavar) {
            snprintf(left, sizeof left, "--%s %s", flag, key->metavar);
        } else {
            snprintf(left, sizeof left, "--%s", flag);
        }
        if (key->default_text)
            snprintf(value, sizeof value, "%s", key->default_text);
        else
            sft_run_config_format_value(&defaults, key, value, sizeof value);
        char note[300];
        if (key->default_text && !strcmp(key->default_text, "required"))
            snprintf(note, sizeof note, "(required)");
        else
            snprintf(note, sizeof note, "(default: %s)", value);
        if (strlen(left) > 30)
            fprintf(out, "  %s\n  %-30s %s %s\n", left, "", key->help, note);
        else
            fprintf(out, "  %-30s %s %s\n", left, key->help, note);
    }
    fprintf(out, "\n  %-30s %s\n", "--help", "show this help");
    sft_run_config_free(&defaults);
}
