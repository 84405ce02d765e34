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
int sft_trainer_state_read(const char *path, sft_curve *c, sft_err *err);
int sft_metrics_csv_read(const char *path, sft_curve *c, sft_err *err);

#endif
