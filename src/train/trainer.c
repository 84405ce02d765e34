/* trainer.c: the training loop of one run (see trainer.h): set-up and
 * validation, the optimizer step with accumulation, evaluation, best-model
 * export, checkpoints with exact resume, early stopping, signals, the live
 * progress line, and the run folder's run.yaml / manifest.json. */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/config.h"
#include "io/file.h"
#include "io/json.h"
#include "model/lora.h"
#include "model/ops.h"
#include "monitor/live.h"
#include "monitor/metrics.h"
#include "monitor/report.h"
#include "train/checkpoint.h"
#include "train/export.h"
#include "train/manifest.h"
#include "train/optim.h"
#include "train/samples.h"
#include "train/signals.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ----------------------------------------------------------- evaluation */

int sft_eval_dataset(sft_model *m, const sft_dataset *ds, int batch_size, int32_t pad_id, double *mean_loss,
                     int64_t *tokens, sft_err *err) {
    *mean_loss = NAN;
    *tokens = 0;
    sft_loader ld;
    if (sft_loader_init(&ld, ds, 0, INT32_MAX, pad_id, err)) return -1;
    sft_batch_buf buf = {0};
    size_t *items = malloc((size_t)batch_size * sizeof *items);
    int rc = -1, was_training = m->training;
    if (!items) {
        sft_errf(err, "out of memory");
        goto done;
    }
    m->training = 0;
    double sum = 0.0;
    int64_t count = 0;
    for (size_t start = 0; start < ld.item_count; start += (size_t)batch_size) {
        int n = (int)(ld.item_count - start < (size_t)batch_size ? ld.item_count - start : (size_t)batch_size);
        for (int i = 0; i < n; i++) items[i] = start + (size_t)i;
        if (sft_loader_batch(&ld, items, n, &buf, err)) goto done;
        if (!buf.supervised) continue;
        double loss;
        /* The forward divides by step_supervised_tokens; the batch's own count
         * gives its mean, which times that count is its sum. */
        if (sft_model_forward_loss(m, &buf.batch, &loss, NULL, err)) goto done;
        sum += loss * (double)buf.supervised;
        count += buf.supervised;
    }
    *mean_loss = count ? sum / (double)count : NAN;
    *tokens = count;
    rc = 0;
done:
    m->training = was_training;
    free(items);
    sft_batch_buf_free(&buf);
    sft_loader_free(&ld);
    return rc;
}

/* ------------------------------------------------------------- the run */

typedef struct trainer {
    const sft_run_config *cfg;
    const sft_train_options *opts;
    sft_train_result *res;
    FILE *log;
    sft_live *live; /* the progress line (monitor/live.h), NULL when off */

    sft_tokenizer *tok;
    sft_chat_template *tmpl;
    char template_error[SFT_ERR_MSG_MAX];
    const char *template_text; /* exported as chat_template.jinja */
    const char *template_note;
    sft_encoder enc;
    sft_model *model;
    sft_dataset train, val;
    int have_val;
    sft_loader loader;
    int32_t pad_id;
    sft_dtype save_dtype;
    sft_kernel_choice kernels; /* the run's dtype and the products that run it */
    int lora;
    char base_abs[4096];
    char *adapter_config; /* adapter_config.json text for checkpoints (LoRA) */
    size_t adapter_config_len;

    sft_adamw opt;
    sft_lr_schedule schedule;
    sft_trainer_state state;
    sft_ckpt_view *views;
    sft_monitor *monitor;
    sft_samples samples; /* validation prompts answered at each evaluation */
    char resume_ckpt[4096];

    int64_t total_steps;
    int64_t steps_per_epoch;
    int64_t last_eval_step, last_save_step;
    double last_val_loss;
    double session_start, session_step_time;
    int64_t session_steps;
    /* Test hook (SFT_TEST_NAN_AT_STEP=N): step N's loss is made NaN, so the
     * non-finite path and its finding can be exercised on a real run; 0: off. */
    int64_t test_nan_at_step;
} trainer;

static void say(trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(trainer *t, const char *fmt, ...) {
    if (!t->log) return;
    if (t->live) sft_live_clear(t->live); /* erase the live line first */
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->log, fmt, ap);
    va_end(ap);
    fflush(t->log);
}

/* The live line after a step; the time left is estimated from this
 * session's steps (a resumed run's earlier steps took no time here). */
static void progress_line(trainer *t, const sft_train_record *r) {
    if (!t->live) return;
    double per_step = t->session_steps ? t->session_step_time / (double)t->session_steps : NAN;
    sft_live_step(t->live, r, t->total_steps, per_step * (double)(t->total_steps - r->step));
}

static void print_new_findings(trainer *t) {
    size_t n = sft_monitor_new_finding_count(t->monitor);
    for (size_t i = 0; i < n; i++) {
        const sft_finding *f = sft_monitor_new_finding(t->monitor, i);
        if (t->live) {
            sft_live_finding(t->live, f);
            continue;
        }
        say(t, "finding [%s] %s at step %lld: %s\n  advice: %s\n", sft_severity_name(f->severity), f->kind,
            (long long)f->step, f->message, f->advice);
    }
}

/* The checkpoint views of the trainable set. */
static int build_views(trainer *t, sft_err *err) {
    const sft_param_set *set = t->model->trainable;
    t->views = calloc((size_t)set->count ? (size_t)set->count : 1, sizeof *t->views);
    if (!t->views) return sft_errf(err, "out of memory");
    for (int i = 0; i < set->count; i++) {
        const sft_tensor *s = &set->tensors[i];
        sft_ckpt_view *v = &t->views[i];
        v->name = s->name;
        v->ndim = s->ndim;
        for (int d = 0; d < s->ndim; d++) v->shape[d] = s->shape[d];
        v->offset = s->offset;
    }
    return 0;
}

static sft_ckpt_tensors ckpt_tensors(trainer *t) {
    const sft_param_set *set = t->model->trainable;
    return (sft_ckpt_tensors){.views = t->views,
                              .count = (size_t)set->count,
                              .params = set->data,
                              .adam_m = t->opt.m,
                              .adam_v = t->opt.v,
                              .numel = set->numel};
}

/* The run-specific fields a checkpoint carries beyond sft_trainer_state. */
static int state_extra(trainer *t, sft_err *err) {
    json_t *extra = json_object();
    if (!extra) return sft_errf(err, "out of memory");
    json_object_set_new(extra, "dropout_step", json_integer((json_int_t)t->model->dropout_step));
    json_object_set_new(extra, "items_per_epoch", json_integer((json_int_t)t->loader.item_count));
    json_object_set_new(extra, "last_val_loss", isfinite(t->last_val_loss) ? json_real(t->last_val_loss) : json_null());
    json_object_set_new(extra, "last_eval_step", json_integer((json_int_t)t->last_eval_step));
    json_object_set_new(extra, "dtype", json_string(sft_matmul_dtype_name(t->kernels.requested)));
    json_decref(t->state.extra);
    t->state.extra = extra;
    return 0;
}

static const char *const ckpt_support_files[] = {
    "config.json",       "generation_config.json", "tokenizer.json",  "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json",       "merges.txt",      "tokenizer.model",
    "added_tokens.json",
};

static int save_checkpoint(trainer *t, sft_err *err) {
    if (state_extra(t, err)) return -1;
    t->state.adam_step = t->opt.step;
    sft_ckpt_file files[16];
    size_t nf = 0;
    char paths[16][4200];
    if (t->lora) {
        files[nf++] = (sft_ckpt_file){.name = "adapter_config.json", .data = t->adapter_config,
                                      .len = t->adapter_config_len};
        /* the tokenizer travels with the adapter, as TRL saves it */
        for (size_t i = 2; i < sizeof ckpt_support_files / sizeof *ckpt_support_files; i++) {
            snprintf(paths[nf], sizeof paths[nf], "%s/%s", t->cfg->model, ckpt_support_files[i]);
            if (sft_file_exists(paths[nf]))
                files[nf] = (sft_ckpt_file){.name = ckpt_support_files[i], .src_path = paths[nf]}, nf++;
        }
    } else {
        for (size_t i = 0; i < sizeof ckpt_support_files / sizeof *ckpt_support_files; i++) {
            snprintf(paths[nf], sizeof paths[nf], "%s/%s", t->cfg->model, ckpt_support_files[i]);
            if (sft_file_exists(paths[nf]))
                files[nf] = (sft_ckpt_file){.name = ckpt_support_files[i], .src_path = paths[nf]}, nf++;
        }
    }
    if (t->template_text)
        files[nf++] = (sft_ckpt_file){.name = "chat_template.jinja", .data = t->template_text,
                                      .len = strlen(t->template_text)};
    sft_ckpt_tensors tensors = ckpt_tensors(t);
    sft_ckpt_save save = {.tensors = &tensors,
                          .weights_name = t->lora ? "adapter_model.safetensors" : NULL,
                          .files = files,
                          .file_count = nf,
                          .state = &t->state};
    if (sft_checkpoint_save(t->cfg->out, &save, t->res->last_checkpoint, sizeof t->res->last_checkpoint, err))
        return -1;
    t->last_save_step = t->state.step;
    return sft_checkpoint_prune(t->cfg->out, t->cfg->keep_checkpoints, t->state.best_step, err);
}

/* best/ or final/: an HF model dir (full) or a PEFT adapter dir (LoRA). */
static int export_dir(trainer *t, const char *name, char *out, size_t cap, sft_err *err) {
    if (sft_path_join(out, cap, t->cfg->out, name, err)) return -1;
    sft_export_source src = {.model_dir = t->cfg->model, .chat_template = t->template_text};
    if (t->lora) return sft_export_adapter(t->model, &src, t->base_abs, out, err);
    return sft_export_model(t->model, &src, (int)t->save_dtype, out, err);
}

static int evaluate(trainer *t, sft_err *err) {
    double loss;
    int64_t tokens;
    if (sft_eval_dataset(t->model, &t->val, (int)t->cfg->batch_size, t->pad_id, &loss, &tokens, err)) return -1;
    t->last_eval_step = t->state.step;
    t->last_val_loss = loss;
    if (!isfinite(t->res->first_val_loss)) t->res->first_val_loss = loss;
    t->res->final_val_loss = loss;
    sft_eval_record r = {.step = t->state.step, .epoch = t->state.epoch, .val_loss = loss, .val_tokens = tokens};
    if (sft_monitor_eval(t->monitor, &r, err)) return -1;
    if (t->samples.count) {
        char path[4200];
        if (sft_path_join(path, sizeof path, t->cfg->out, "samples.jsonl", err) ||
            sft_samples_write(&t->samples, t->model, t->state.step, path, err))
            return -1;
    }
    if (t->live) sft_live_eval(t->live, &r);
    print_new_findings(t);
    int improved_best = isfinite(loss) && (!isfinite(t->state.best_val_loss) || loss < t->state.best_val_loss);
    /* Early stopping counts as HF's EarlyStoppingCallback: an improvement
     * must beat the best by more than the threshold. */
    int improved_enough = isfinite(loss) && (!isfinite(t->state.best_val_loss) ||
                                             t->state.best_val_loss - loss > t->cfg->early_stopping_threshold);
    t->state.evals_without_improvement = improved_enough ? 0 : t->state.evals_without_improvement + 1;
    if (!t->live || !sft_live_is_terminal(t->live)) /* a log keeps a line per evaluation */
        say(t, "eval at step %lld: val_loss %.4f over %lld tokens%s\n", (long long)t->state.step, loss,
            (long long)tokens, improved_best ? " (best so far)" : "");
    if (improved_best) {
        t->state.best_val_loss = loss;
        t->state.best_step = t->state.step;
        if (export_dir(t, "best", t->res->best_dir, sizeof t->res->best_dir, err)) return -1;
    }
    return 0;
}

/* On resume into the same folder: drop the metrics lines past the
 * checkpoint (and a torn last line), so the file reads as one run. */
static int trim_metrics(const char *path, int64_t step, sft_err *err) {
    if (!sft_file_exists(path)) return 0;
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    char *out = malloc(len + 1);
    if (!out) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    size_t used = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break; /* a line without its newline was being written */
        size_t n = (size_t)(nl - line);
        sft_err ignored;
        json_t *j = sft_json_loadb_lenient(line, n, path, &ignored);
        int64_t s;
        if (j && !sft_json_get_int(j, "step", &s, path, &ignored) && s <= step) {
            memcpy(out + used, line, n + 1);
            used += n + 1;
        }
        json_decref(j);
        line = nl + 1;
    }
    int rc = sft_write_file_atomic(path, out, used, err);
    free(out);
    free(text);
    return rc;
}

static int read_adapter_config(trainer *t, sft_err *err) {
    char dir[] = "/tmp/sft-adapter-XXXXXX";
    if (!mkdtemp(dir)) return sft_err_errno(err, "/tmp");
    int rc = sft_lora_save(t->model, dir, t->base_abs, err);
    char path[256];
    if (!rc) {
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        rc = sft_read_file(path, &t->adapter_config, &t->adapter_config_len, err);
    }
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}

static sft_data_format data_format(int run_format) {
    return (sft_data_format)run_format; /* the run config lists the formats in records.h's order */
}

/* The validation prompts of samples.jsonl, with the eos ids generation
 * stops at: generation_config.json's and the tokenizer's eos token (a chat
 * model's end-of-turn), as `sft generate` uses them. */
static int setup_samples(trainer *t, sft_err *err) {
    const sft_run_config *cfg = t->cfg;
    if (!t->have_val || cfg->samples_per_eval <= 0 || !t->tmpl) return 0;
    sft_generation_config gen;
    if (sft_generation_config_load(cfg->model, &t->model->cfg, &gen, err)) return -1;
    int32_t eos_ids[SFT_MAX_EOS + 1];
    int eos_count = 0;
    for (int i = 0; i < gen.eos_count; i++) eos_ids[eos_count++] = gen.eos_token_ids[i];
    const char *eos = sft_tokenizer_eos_token(t->tok);
    int32_t eos_id = eos ? sft_tokenizer_token_to_id(t->tok, eos) : -1;
    int known = 0;
    for (int i = 0; i < eos_count; i++) known |= eos_ids[i] == eos_id;
    if (eos_id >= 0 && !known) eos_ids[eos_count++] = eos_id;
    /* The prompt and its answer must fit the model's positions (GPT-2). */
    int64_t max_prompt = cfg->max_len;
    int64_t positions = t->model->cfg.max_position_embeddings;
    if (positions > 0 && positions - cfg->sample_max_new_tokens < max_prompt)
        max_prompt = positions - cfg->sample_max_new_tokens;
    if (max_prompt < 1) return 0;
    return sft_samples_init(&t->samples, &t->val, &t->enc, (int)cfg->samples_per_eval,
                            (int)cfg->sample_max_new_tokens, (int)max_prompt, eos_ids, eos_count, err);
}

/* Everything read and checked; nothing written. */
static int setup(trainer *t, sft_err *err) {
    const sft_run_config *cfg = t->cfg;
    sft_set_threads((int)cfg->threads);
    if (!sft_dir_exists(cfg->model)) return sft_errf(err, "--model %s: no such folder", cfg->model);
    if (!realpath(cfg->model, t->base_abs)) return sft_err_errno(err, cfg->model);
    t->tok = sft_tokenizer_load(cfg->model, err);
    if (!t->tok) return sft_err_prefix(err, "%s", cfg->model);
    t->tmpl = sft_chat_template_for_tokenizer(t->tok, cfg->template_name, err);
    if (!t->tmpl) {
        /* Plain text data needs no template: the error waits for a chat record. */
        snprintf(t->template_error, sizeof t->template_error, "%s", err->msg);
    } else {
        t->template_text = sft_export_template_text(t->tok, t->tmpl, &t->template_note);
    }
    t->model = sft_model_load(cfg->model, err);
    if (!t->model) return sft_err_prefix(err, "%s", cfg->model);
    if (sft_kernels_select(cfg->dtype == SFT_RUN_DTYPE_BF16 ? SFT_MATMUL_BF16 : SFT_MATMUL_FP32, &t->kernels, err))
        return -1;
    t->model->kernels = t->kernels.kernels;
    if (t->kernels.note) say(t, "note: %s\n", t->kernels.note);
    if (sft_model_check_vocab(t->model, sft_tokenizer_vocab_size(t->tok), err))
        return sft_err_prefix(err, "%s", cfg->model);
    if (sft_encoder_init(&t->enc, t->tok, t->tmpl, cfg->model, err)) return -1;
    t->enc.template_error = t->tmpl ? NULL : t->template_error;
    t->pad_id = t->model->cfg.pad_token_id >= 0 ? t->model->cfg.pad_token_id : 0;
    if (cfg->save_dtype == SFT_RUN_SAVE_AUTO) t->save_dtype = sft_export_config_dtype(&t->model->cfg);
    else t->save_dtype = cfg->save_dtype == SFT_RUN_SAVE_BFLOAT16 ? SFT_DTYPE_BF16
                         : cfg->save_dtype == SFT_RUN_SAVE_FLOAT16 ? SFT_DTYPE_F16
                                                                   : SFT_DTYPE_F32;

    /* data */
    sft_dataset_options dopt = {.format = data_format(cfg->format),
                                .train_on_prompt = cfg->train_on_prompt,
                                .max_len = cfg->max_len,
                                .drop_overlong = cfg->overlong == SFT_RUN_OVERLONG_DROP,
                                .skip_bad = cfg->skip_bad_records,
                                .cache_dir = NULL};
    sft_dataset all;
    if (sft_dataset_load(&all, (const char *const *)cfg->data.items, cfg->data.count, &t->enc, &dopt, err))
        return -1;
    if (cfg->val_data) {
        t->train = all;
        const char *vp = cfg->val_data;
        if (sft_dataset_load(&t->val, &vp, 1, &t->enc, &dopt, err)) return -1;
        t->have_val = 1;
    } else if (cfg->val_split > 0) {
        if (sft_dataset_split(&all, cfg->val_split, (uint64_t)cfg->seed, &t->train, &t->val, err)) {
            sft_dataset_free(&all);
            return -1;
        }
        t->have_val = 1;
    } else {
        t->train = all;
    }
    const sft_dataset_stats *s = &t->train.stats;
    for (int i = 0; i < t->train.file_count; i++)
        say(t, "data: %s: %s%s, %lld records\n", t->train.files[i].path,
            sft_data_format_name(t->train.files[i].format), cfg->format == SFT_RUN_FORMAT_AUTO ? " (detected)" : "",
            (long long)t->train.files[i].records);
    if (s->skipped_bad)
        say(t, "data: skipped %lld malformed records (first: %s)\n", (long long)s->skipped_bad, s->first_skip);
    if (s->truncated) say(t, "data: truncated %lld records longer than max_len %lld\n", (long long)s->truncated, (long long)cfg->max_len);
    if (s->dropped_overlong)
        say(t, "data: dropped %lld records longer than max_len %lld\n", (long long)s->dropped_overlong, (long long)cfg->max_len);
    if (s->dropped_unsupervised)
        say(t, "data: dropped %lld records with no token to learn (no assistant token left)\n",
            (long long)s->dropped_unsupervised);
    if (t->train.count == 0)
        return sft_errf(err, "no usable training examples in %s (%lld records read, %lld dropped, %lld skipped)",
                        cfg->data.items[0], (long long)s->records,
                        (long long)(s->dropped_overlong + s->dropped_unsupervised), (long long)s->skipped_bad);
    if (t->have_val && t->val.count == 0)
        return sft_errf(err, "no usable validation examples in %s", cfg->val_data ? cfg->val_data : "the split");
    if (t->template_note) say(t, "note: %s\n", t->template_note);

    /* trainable set */
    if (cfg->lora_r > 0) {
        sft_lora_config lc = {.r = (int)cfg->lora_r, .alpha = cfg->lora_alpha, .dropout = cfg->lora_dropout};
        if (cfg->lora_targets.count == 0) {
            sft_lora_default_targets(t->model, &lc);
        } else {
            char list[1024] = "";
            size_t used = 0;
            for (int i = 0; i < cfg->lora_targets.count; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? "," : "",
                                         cfg->lora_targets.items[i]);
            if (sft_lora_parse_targets(t->model, list, &lc, err)) return sft_err_prefix(err, "--lora-targets");
        }
        lc.r = (int)cfg->lora_r, lc.alpha = cfg->lora_alpha, lc.dropout = cfg->lora_dropout;
        sft_rng init;
        sft_rng_seed(&init, (uint64_t)cfg->seed, SFT_RNG_STREAM_INIT);
        if (sft_lora_attach(t->model, &lc, sft_rng_next(&init), err)) return -1;
        sft_rng dropout;
        sft_rng_seed(&dropout, (uint64_t)cfg->seed, SFT_RNG_STREAM_DROPOUT);
        t->model->dropout_seed = sft_rng_next(&dropout);
        t->lora = 1;
        if (read_adapter_config(t, err)) return -1;
    } else if (sft_model_train_full(t->model, err)) {
        return -1;
    }
    t->model->training = 1;

    /* batches and plan */
    if (sft_loader_init(&t->loader, &t->train, cfg->packing, cfg->max_len, t->pad_id, err)) return -1;
    int64_t longest = t->loader.longest_item;
    for (size_t i = 0; t->have_val && i < t->val.count; i++)
        if (t->val.examples[i].len > longest) longest = t->val.examples[i].len;
    /* Limits the forward would only hit mid-run: check them before anything is written. */
    int64_t longest_example = 0;
    for (size_t i = 0; i < t->train.count; i++)
        if (t->train.examples[i].len > longest_example) longest_example = t->train.examples[i].len;
    for (size_t i = 0; t->have_val && i < t->val.count; i++)
        if (t->val.examples[i].len > longest_example) longest_example = t->val.examples[i].len;
    const sft_model_config *mc = &t->model->cfg;
    if (mc->arch == SFT_ARCH_GPT2 && longest_example > mc->max_position_embeddings)
        return sft_errf(err, "an example of %lld tokens is longer than the model's n_positions %d (config.json): use "
                             "--max-len %d or less",
                        (long long)longest_example, mc->max_position_embeddings, mc->max_position_embeddings);
    if (mc->sliding_window > 0 && longest_example > mc->sliding_window)
        return sft_errf(err, "an example of %lld tokens is longer than the model's sliding_window %d (config.json), "
                             "which sft does not implement: use --max-len %d or less",
                        (long long)longest_example, mc->sliding_window, mc->sliding_window);
    if (sft_model_plan(t->model, (int)cfg->batch_size, (int)longest, err)) return -1;
    int64_t per_step = cfg->batch_size * cfg->grad_accum;
    t->steps_per_epoch = ((int64_t)t->loader.item_count + per_step - 1) / per_step;
    t->total_steps = cfg->max_steps > 0 ? cfg->max_steps : (int64_t)ceil(cfg->epochs * (double)t->steps_per_epoch);
    if (t->total_steps < 1) t->total_steps = 1;
    if (cfg->packing)
        say(t, "data: %zu examples packed into %zu rows of %lld tokens (packing efficiency %.1f%%)\n",
            t->train.count, t->loader.item_count, (long long)cfg->max_len, 100.0 * t->loader.packing_efficiency);
    say(t, "data: %zu training examples (%lld tokens, %lld supervised); %lld optimizer steps of %lld x %lld "
           "sequences\n",
        t->train.count, (long long)t->train.stats.tokens, (long long)t->train.stats.supervised_tokens,
        (long long)t->total_steps, (long long)cfg->batch_size, (long long)cfg->grad_accum);
    if (t->have_val) say(t, "data: %zu validation examples\n", t->val.count);

    /* optimizer and schedule */
    if (sft_adamw_init(&t->opt, t->model->trainable, cfg->adam_beta1, cfg->adam_beta2, cfg->adam_eps,
                       cfg->weight_decay, err))
        return -1;
    sft_lr_kind kind = cfg->lr_schedule == SFT_RUN_SCHEDULE_COSINE   ? SFT_LR_COSINE
                       : cfg->lr_schedule == SFT_RUN_SCHEDULE_LINEAR ? SFT_LR_LINEAR
                                                                     : SFT_LR_CONSTANT;
    int64_t warmup = cfg->warmup_steps > 0 ? cfg->warmup_steps : (int64_t)ceil(cfg->warmup_ratio * (double)t->total_steps);
    t->schedule = (sft_lr_schedule){.kind = kind, .base_lr = cfg->lr, .warmup_steps = warmup,
                                    .total_steps = t->total_steps, .min_lr_ratio = cfg->min_lr_ratio};
    if (build_views(t, err)) return -1;
    if (setup_samples(t, err)) return -1;
    sft_trainer_state_init(&t->state, (uint64_t)cfg->seed);
    t->state.max_steps = t->total_steps;

    /* the checkpoint to resume, read now so a bad one stops us before any write */
    const char *resume = sft_run_config_resume_dir(cfg);
    if (resume) {
        if (sft_checkpoint_resolve(resume, t->resume_ckpt, sizeof t->resume_ckpt, err)) return -1;
        sft_ckpt_tensors tensors = ckpt_tensors(t);
        if (sft_checkpoint_load(t->resume_ckpt, &tensors, t->lora ? "adapter_model.safetensors" : NULL, &t->state,
                                err))
            return sft_err_prefix(err, "resuming from %s", t->resume_ckpt);
        int64_t v;
        sft_err ignored;
        const json_t *extra = t->state.extra;
        if (extra && !sft_json_get_int(extra, "items_per_epoch", &v, "trainer_state.json", &ignored) &&
            v != (int64_t)t->loader.item_count)
            return sft_errf(err,
                            "%s was written by a run with %lld training items per epoch, this one has %zu (other data, "
                            "max_len or packing): the data position cannot be restored",
                            t->resume_ckpt, (long long)v, t->loader.item_count);
        /* The dtype is part of the run: run.yaml and the manifest describe
         * the whole run with one, so a resume cannot change it (checkpoints
         * from before the key was recorded are fp32 runs). */
        const char *ckpt_dtype = "fp32", *run_dtype = sft_matmul_dtype_name(t->kernels.requested);
        if (extra && sft_json_get_string_opt(extra, "dtype", &ckpt_dtype, "trainer_state.json", err))
            return sft_err_prefix(err, "%s", t->resume_ckpt);
        if (strcmp(ckpt_dtype, run_dtype))
            return sft_errf(err,
                            "%s was written by a run with dtype %s, this one asks for dtype %s: resume with --dtype "
                            "%s (a run keeps one dtype)",
                            t->resume_ckpt, ckpt_dtype, run_dtype, ckpt_dtype);
        if (extra && !sft_json_get_int(extra, "dropout_step", &v, "trainer_state.json", &ignored))
            t->model->dropout_step = (uint64_t)v;
        if (extra && !sft_json_get_int(extra, "last_eval_step", &v, "trainer_state.json", &ignored))
            t->last_eval_step = v;
        double lv;
        if (extra && !sft_json_get_number(extra, "last_val_loss", &lv, "trainer_state.json", &ignored))
            t->last_val_loss = lv;
        t->opt.step = t->state.adam_step;
        t->state.max_steps = t->total_steps;
        t->last_save_step = t->state.step;
        t->res->resumed = 1;
    }
    return 0;
}

/* The run folder: refuses to overwrite another run, then run.yaml and
 * manifest.json. */
static int open_run_dir(trainer *t, sft_err *err) {
    const sft_run_config *cfg = t->cfg;
    char path[4200];
    if (!t->res->resumed && sft_dir_exists(cfg->out)) {
        const char *markers[] = {"metrics.jsonl", "checkpoints", "final", "best"};
        for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
            if (sft_path_join(path, sizeof path, cfg->out, markers[i], err)) return -1;
            if (sft_file_exists(path) || sft_dir_exists(path))
                return sft_errf(err, "%s already holds a run (%s): continue it with --resume, or choose another --out",
                                cfg->out, markers[i]);
        }
    }
    if (sft_mkdir_p(cfg->out, err)) return -1;
    if (!realpath(cfg->out, t->res->run_dir)) snprintf(t->res->run_dir, sizeof t->res->run_dir, "%s", cfg->out);
    /* run.yaml describes the run, not how this process started it: without
     * `resume`, so that `sft train -c run.yaml` re-runs it (and refuses to
     * overwrite it), while `-c run.yaml --resume` continues it. */
    sft_run_config resolved;
    if (sft_run_config_copy(&resolved, cfg, err)) return -1;
    free(resolved.resume);
    resolved.resume = NULL;
    /* threads 0 means "all cores": written as the count used, since the bits
     * of a run depend on it */
    if (resolved.threads == 0) resolved.threads = sft_get_threads();
    int yaml_rc = sft_path_join(path, sizeof path, cfg->out, "run.yaml", err);
    if (!yaml_rc) yaml_rc = sft_run_config_write_yaml(&resolved, path, err);
    sft_run_config_free(&resolved);
    if (yaml_rc) return -1;
    json_t *extra = json_object();
    json_t *data = json_object();
    if (!extra || !data) return sft_errf(err, "out of memory");
    json_object_set_new(data, "train_examples", json_integer((json_int_t)t->train.count));
    json_object_set_new(data, "val_examples", json_integer((json_int_t)t->val.count));
    json_object_set_new(data, "records", json_integer(t->train.stats.records));
    json_object_set_new(data, "skipped_bad", json_integer(t->train.stats.skipped_bad));
    json_object_set_new(data, "truncated", json_integer(t->train.stats.truncated));
    json_object_set_new(data, "dropped_overlong", json_integer(t->train.stats.dropped_overlong));
    json_object_set_new(data, "dropped_unsupervised", json_integer(t->train.stats.dropped_unsupervised));
    json_object_set_new(data, "train_tokens", json_integer(t->train.stats.tokens));
    json_object_set_new(data, "train_supervised_tokens", json_integer(t->train.stats.supervised_tokens));
    json_object_set_new(data, "packing_efficiency", json_real(t->loader.packing_efficiency));
    json_t *formats = json_array();
    for (int i = 0; i < t->train.file_count; i++)
        json_array_append_new(formats, json_string(sft_data_format_name(t->train.files[i].format)));
    json_object_set_new(data, "formats", formats);
    json_object_set_new(extra, "dataset", data);
    json_object_set_new(extra, "template", t->tmpl ? json_string(sft_chat_template_name(t->tmpl)) : json_null());
    json_object_set_new(extra, "total_steps", json_integer(t->total_steps));
    json_object_set_new(extra, "resumed_from", t->res->resumed ? json_string(t->resume_ckpt) : json_null());
    json_t *dtype = json_object();
    if (!dtype) {
        json_decref(extra);
        return sft_errf(err, "out of memory");
    }
    json_object_set_new(dtype, "requested", json_string(sft_matmul_dtype_name(t->kernels.requested)));
    json_object_set_new(dtype, "products", json_string(sft_matmul_dtype_name(t->kernels.products)));
    json_object_set_new(dtype, "product_kernel", json_string(t->kernels.product_kernel));
    json_object_set_new(extra, "dtype", dtype);
    sft_manifest man = {.program_version = t->opts->program_version ? t->opts->program_version : "unknown",
                        .command_line = t->opts->command_line,
                        .model_dir = cfg->model,
                        .data_files = (const char *const *)cfg->data.items,
                        .data_count = (size_t)cfg->data.count,
                        .val_data = cfg->val_data,
                        .seed = (uint64_t)cfg->seed,
                        .threads = sft_get_threads(),
                        .start_time = time(NULL),
                        .extra = extra};
    int rc = sft_path_join(path, sizeof path, cfg->out, "manifest.json", err);
    if (!rc) rc = sft_manifest_write(path, &man, err);
    json_decref(extra);
    if (rc) return -1;
    if (t->res->resumed) {
        /* Metrics and samples past the checkpoint belong to the interrupted tail. */
        if (sft_path_join(path, sizeof path, cfg->out, "metrics.jsonl", err) || trim_metrics(path, t->state.step, err))
            return -1;
        if (sft_path_join(path, sizeof path, cfg->out, "samples.jsonl", err) || trim_metrics(path, t->state.step, err))
            return -1;
    }
    sft_monitor_options mo;
    sft_monitor_options_default(&mo);
    mo.max_grad_norm = cfg->max_grad_norm;
    mo.planned_steps = t->total_steps;
    mo.diagnose = cfg->diagnose;
    t->monitor = sft_monitor_open(cfg->out, &mo, err);
    return t->monitor ? 0 : -1;
}

/* One optimizer step. Returns 0, or -1 with err set (non-finite with stop). */
static int train_step(trainer *t, size_t *items, sft_batch_buf *buf, char *records, size_t records_cap,
                      sft_err *err) {
    const sft_run_config *cfg = t->cfg;
    sft_loader *ld = &t->loader;
    if (t->state.data_cursor >= (int64_t)ld->item_count) {
        t->state.epoch_index++;
        t->state.data_cursor = 0;
    }
    sft_loader_set_epoch(ld, &t->state.rng[SFT_RNG_STREAM_DATA], t->state.epoch_index);
    int64_t per_step = cfg->batch_size * cfg->grad_accum;
    int64_t left = (int64_t)ld->item_count - t->state.data_cursor;
    int n = (int)(left < per_step ? left : per_step);
    int64_t step_supervised = 0;
    for (int i = 0; i < n; i++) {
        items[i] = (size_t)ld->order[t->state.data_cursor + i];
        step_supervised += sft_loader_item_supervised(ld, items[i]);
    }
    double t0 = now_s();
    sft_model_zero_grad(t->model);
    double loss = 0.0;
    int64_t real_tokens = 0;
    for (int off = 0; off < n; off += (int)cfg->batch_size) {
        int nb = n - off < (int)cfg->batch_size ? n - off : (int)cfg->batch_size;
        if (sft_loader_batch(ld, items + off, nb, buf, err)) return -1;
        buf->batch.step_supervised_tokens = step_supervised;
        double part;
        if (sft_model_forward_backward(t->model, &buf->batch, &part, err)) return -1;
        loss += part;
        real_tokens += buf->real_tokens;
    }
    if (t->test_nan_at_step == t->state.step + 1) loss = NAN;
    double lr = sft_lr_at(&t->schedule, (long)t->state.step);
    /* clip and AdamW in one pass; a non-finite loss or norm skips the update */
    sft_adamw_step_report opt_step =
        sft_adamw_step_clipped(&t->opt, t->model->trainable, lr, cfg->max_grad_norm, isfinite(loss));
    double grad_norm = opt_step.grad_norm;
    int finite = opt_step.applied;
    double dt = now_s() - t0;
    t->state.step++;
    t->state.data_cursor += n;
    t->state.epoch = (double)t->state.epoch_index + (double)t->state.data_cursor / (double)ld->item_count;
    t->state.tokens_seen += step_supervised;
    t->state.elapsed_s += dt;
    t->session_step_time += dt;
    t->session_steps++;
    if (!finite) t->state.skipped_steps++;
    sft_loader_describe(ld, items, n, records, records_cap);
    sft_train_record r = {.step = t->state.step,
                          .epoch = t->state.epoch,
                          .loss = loss,
                          .grad_norm = grad_norm,
                          .grad_norm_clipped = opt_step.grad_norm_clipped,
                          .clipped = opt_step.clipped,
                          .lr = lr,
                          .tokens = step_supervised,
                          .tokens_per_s = dt > 0 ? (double)real_tokens / dt : 0.0,
                          .elapsed_s = t->state.elapsed_s,
                          .batch_records = records};
    t->res->final_train_loss = loss;
    if (sft_monitor_train(t->monitor, &r, err)) return -1;
    progress_line(t, &r);
    print_new_findings(t);
    if (!finite && cfg->on_nonfinite == SFT_RUN_NONFINITE_STOP)
        return sft_errf(err,
                        "step %lld: the %s is not finite (loss %g, grad_norm %g); records of the step: %s. Lower the "
                        "learning rate, check these records, or pass --on-nonfinite skip",
                        (long long)t->state.step, isfinite(loss) ? "gradient norm" : "loss", loss, grad_norm, records);
    if (!finite) say(t, "step %lld: non-finite loss or gradient, step skipped (records: %s)\n", (long long)t->state.step, records);
    return 0;
}

static void fill_result_diagnosis(trainer *t) {
    const sft_diagnosis *d = sft_monitor_diagnosis(t->monitor);
    if (!d) return;
    snprintf(t->res->verdict, sizeof t->res->verdict, "%s", d->verdict ? d->verdict : "healthy");
    t->res->finding_count = 0;
    for (size_t i = 0; i < d->finding_count && t->res->finding_count < SFT_TRAIN_MAX_FINDINGS; i++) {
        int dup = 0;
        for (int j = 0; j < t->res->finding_count; j++) dup |= !strcmp(t->res->finding_kinds[j], d->findings[i].kind);
        if (!dup) snprintf(t->res->finding_kinds[t->res->finding_count++], 32, "%s", d->findings[i].kind);
    }
}

static int run_loop(trainer *t, sft_err *err) {
    const sft_run_config *cfg = t->cfg;
    int64_t per_step = cfg->batch_size * cfg->grad_accum;
    size_t *items = malloc((size_t)per_step * sizeof *items);
    char *records = malloc(480);
    sft_batch_buf buf = {0};
    int rc = -1;
    if (!items || !records) {
        sft_errf(err, "out of memory");
        goto done;
    }
    int64_t steps_this_call = 0;
    while (t->state.step < t->total_steps) {
        if (train_step(t, items, &buf, records, 480, err)) goto done;
        steps_this_call++;
        int64_t s = t->state.step;
        int last = s >= t->total_steps;
        if (t->have_val && cfg->eval_every > 0 && s % cfg->eval_every == 0 && !last) {
            if (evaluate(t, err)) goto done;
            if (cfg->early_stopping_patience > 0 && t->state.evals_without_improvement >= cfg->early_stopping_patience) {
                say(t, "early stopping at step %lld: no improvement of the validation loss in %lld evaluations "
                       "(best %.4f at step %lld)\n",
                    (long long)s, (long long)t->state.evals_without_improvement, t->state.best_val_loss,
                    (long long)t->state.best_step);
                t->res->stopped_early = 1;
                break;
            }
        }
        if (cfg->save_every > 0 && s % cfg->save_every == 0 && !last) {
            if (save_checkpoint(t, err)) goto done;
        }
        int sig = t->opts->handle_signals ? sft_signals_stop_requested() : 0;
        if (!last && (sig || (t->opts->stop_after_steps > 0 && steps_this_call >= t->opts->stop_after_steps))) {
            t->res->interrupted = sig ? sig : -1;
            break;
        }
    }
    if (t->res->interrupted) {
        if (t->last_save_step != t->state.step && save_checkpoint(t, err)) goto done;
        say(t, "stopped at step %lld of %lld; checkpoint %s (continue with --resume)\n", (long long)t->state.step,
            (long long)t->total_steps, t->res->last_checkpoint);
        rc = 0;
        goto done;
    }
    /* the end: a last evaluation, a last checkpoint, final/ */
    if (t->have_val && t->last_eval_step != t->state.step && evaluate(t, err)) goto done;
    if (t->last_save_step != t->state.step && save_checkpoint(t, err)) goto done;
    if (export_dir(t, "final", t->res->final_dir, sizeof t->res->final_dir, err)) goto done;
    rc = 0;
done:
    free(items);
    free(records);
    sft_batch_buf_free(&buf);
    return rc;
}

int sft_train_run(const sft_run_config *cfg, const sft_train_options *opts, sft_train_result *result,
                  sft_err *err) {
    static const sft_train_options quiet = {0};
    if (!opts) opts = &quiet;
    memset(result, 0, sizeof *result);
    result->best_step = -1;
    result->best_val_loss = result->first_val_loss = result->final_val_loss = result->final_train_loss = NAN;
    snprintf(result->verdict, sizeof result->verdict, "healthy");
    trainer t = {.cfg = cfg, .opts = opts, .res = result, .log = opts->log};
    t.last_eval_step = t.last_save_step = -1;
    t.last_val_loss = NAN;
    const char *nan_at = getenv("SFT_TEST_NAN_AT_STEP");
    if (nan_at) t.test_nan_at_step = strtoll(nan_at, NULL, 10);
    double start = now_s();
    int rc = -1, signals = 0;
    if (setup(&t, err)) goto done;
    if (open_run_dir(&t, err)) goto done;
    if (opts->log && opts->progress && !(t.live = sft_live_open(opts->log, NULL, err))) goto done;
    if (opts->handle_signals) {
        if (sft_signals_install("stopping after this step (a checkpoint will be saved); press Ctrl-C again to abort",
                                err))
            goto done;
        signals = 1;
    }
    result->total_steps = t.total_steps;
    result->train_examples = (int64_t)t.train.count;
    result->val_examples = (int64_t)t.val.count;
    result->packing_efficiency = t.loader.packing_efficiency;
    if (t.res->resumed)
        say(&t, "resuming from %s at step %lld of %lld\n", t.resume_ckpt, (long long)t.state.step,
            (long long)t.total_steps);
    rc = run_loop(&t, err);
    /* The last diagnosis over the whole run: a curve finding raised only now
     * (underfitting seen at the end) is printed like the others. */
    if (!rc && sft_monitor_finish(t.monitor, err)) rc = -1;
    if (!rc) print_new_findings(&t);
    if (t.live) sft_live_end(t.live);
    result->steps = t.state.step;
    result->best_step = t.state.best_step;
    result->best_val_loss = t.state.best_val_loss;
    result->skipped_steps = t.state.skipped_steps;
    if (!isfinite(result->final_val_loss)) result->final_val_loss = t.last_val_loss;
done:
    if (signals) sft_signals_uninstall();
    sft_live_free(t.live);
    t.live = NULL;
    if (t.monitor) {
        fill_result_diagnosis(&t);
        sft_err close_err;
        if (sft_monitor_close(t.monitor, &close_err) && rc == 0) {
            *err = close_err;
            rc = -1;
        }
        /* The run dir's report.html and PNG charts (monitor/report.h), also
         * for an interrupted run. A report that cannot be written does not
         * undo the training: it is said, not failed. */
        sft_err report_err;
        sft_report_options report_opts = {.png = 1};
        if (rc == 0 && sft_report_write(cfg->out, &report_opts, NULL, 0, &report_err))
            say(&t, "report not written: %s\n", report_err.msg);
    }
    result->wall_s = now_s() - start;
    sft_trainer_state_free(&t.state);
    sft_samples_free(&t.samples);
    free(t.views);
    sft_adamw_free(&t.opt);
    sft_loader_free(&t.loader);
    sft_dataset_free(&t.train);
    sft_dataset_free(&t.val);
    sft_model_free(t.model);
    sft_chat_template_free(t.tmpl);
    sft_tokenizer_free(t.tok);
    free(t.adapter_config);
    return rc;
}
