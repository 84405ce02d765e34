/* readers.h: training curves from the files that runs leave behind.
 *
 * - sft's metrics.jsonl (SPEC.md): {"type":"train"|"eval"|"finding", ...};
 *   bare NaN/Infinity are accepted (sft and Python write them so).
 * - HF Trainer's trainer_state.json: `log_history` entries with
 *   loss/grad_norm/learning_rate (train, averages over the logging window)
 *   or eval_loss (evaluation); other entries (run totals) are skipped.
 * - TensorBoard event files (tensorboard.h).
 * - CSV with a header naming step and any of loss (or train_loss),
 *   val_loss (or eval_loss), grad_norm, grad_norm_clipped, lr (or
 *   learning_rate), epoch, clipped; empty cells mean "not logged".
 * - A run dir: its metrics.jsonl, else trainer_state.json, else its
 *   events.out.tfevents.* files (merged; a resumed run writes several).
 * Errors name the file and the line (JSON lines, CSV), the entry
 * (log_history[i]) or the record's byte offset (event files). */
#ifndef SFT_MONITOR_READERS_H
#define SFT_MONITOR_READERS_H

#include "io/err.h"
#include "monitor/curve.h"

/* Any of the above, told apart by name and content. c must be initialized;
 * points are appended. */
int sft_curve_read(const char *path, sft_curve *c, sft_err *err);

int sft_metrics_jsonl_read(const char *path, sft_curve *c, sft_err *err);

/* The other direction: a curve written as HF Trainer's trainer_state.json,
 * so that tools made for HF runs read sft's (and tests can feed the reader
 * real runs in both forms). The layout is the one transformers writes
 * (json.dumps(indent=2, sort_keys=True), Python's float repr, bare NaN):
 * `log_history` holds, per logging window of `logging_steps` optimizer
 * steps, {"epoch","grad_norm","learning_rate","loss","step"} with the
 * loss averaged over the window and the norm and learning rate of its last
 * step (as HF logs them; a last, shorter window is logged too, so that a run
 * that stopped early keeps its last steps); {"epoch","eval_loss","step"} per
 * evaluation; and the run totals HF appends at the end (train_loss: the
 * mean step loss, train_runtime and train_steps_per_second when the curve
 * has elapsed times). What sft does not count (FLOPs, input tokens) is 0,
 * HF's own value when it does not count them; timings sft does not log
 * (eval_runtime, samples per second) are left out. best_metric and
 * best_global_step are the minimal validation loss and its step. */
typedef struct sft_trainer_state_options {
    int64_t logging_steps;    /* >= 1; HF's default is 500, sft logs every step (1) */
    int64_t eval_steps;       /* written as is; 0: null */
    int64_t save_steps;       /* written as is */
    int64_t train_batch_size; /* written as is */
} sft_trainer_state_options;
int sft_trainer_state_write(const sft_curve *c, const sft_trainer_state_options *o, const char *path, sft_err *err);
int sft_trainer_state_read(const char *path, sft_curve *c, sft_err *err);
int sft_metrics_csv_read(const char *path, sft_curve *c, sft_err *err);

#endif
