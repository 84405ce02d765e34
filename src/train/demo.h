/* demo.h: `sft demo` (and `make run`), the embedded default: offline, with
 * nothing from the user, it shows the whole product on a laptop's two cores
 * in a few minutes.
 *
 *  1. data: generated instruction records of tasks with checkable answers
 *     (data/pipeline.h, sft_data_generate: arithmetic, max, sorting,
 *     reversing, capitals, counting, unit conversion), a validation set, and
 *     held-out prompts whose exact text no training record has;
 *  2. a small Llama-family model from scratch (assets/demo-model: the
 *     bundled 365-token tokenizer and config.json; sft init's library call);
 *  3. the exact-match accuracy of greedy generation on the held-out prompts;
 *  4. the training: a sweep of three learning rates (train/sweep.h), all of
 *     them trained at once, one thread each, with a live line; the one with
 *     the lowest validation loss is chosen and its best checkpoint becomes
 *     SWEEP/best. The sweep IS the training: on two cores three one-thread
 *     runs side by side cost about what one run on two threads would, give
 *     the comparison for free, and keep working under load (OpenMP teams
 *     stall when other processes take their cores; single threads do not);
 *  5. the accuracy again, with the chosen model; demo.json with the numbers.
 *
 * OUT/ (default runs/demo):
 *   data/train.jsonl, data/val.jsonl, data/heldout.jsonl
 *   model/          the initial model (HF dir)
 *   sweep/          the sweep (sweep.h): trials/NAME/, best/, summary.json, report.html
 *   demo.json       the numbers below
 * A folder from an earlier demo (it has demo.json) is replaced; any other
 * non-empty folder is refused. */
#ifndef SFT_TRAIN_DEMO_H
#define SFT_TRAIN_DEMO_H

#include <stdint.h>
#include <stdio.h>

#include "io/err.h"

typedef struct sft_demo_options {
    const char *out_dir;    /* default "runs/demo" */
    const char *assets_dir; /* default "assets/demo-model" */
    FILE *log;              /* progress and results; NULL: quiet */
    int progress;           /* the sweep's live line */
    int64_t records;        /* training records before the held-out prompts are taken out (0: default) */
    int64_t max_steps;      /* per learning rate (0: default) */
    int64_t threads;        /* for the sweep as a whole (0: every core) */
    uint64_t seed;
} sft_demo_options;

void sft_demo_options_default(sft_demo_options *o);

#define SFT_DEMO_MAX_TASKS 16

typedef struct sft_demo_result {
    int task_count;
    char task_names[SFT_DEMO_MAX_TASKS][24];
    int heldout_per_task[SFT_DEMO_MAX_TASKS];
    int correct_before[SFT_DEMO_MAX_TASKS], correct_after[SFT_DEMO_MAX_TASKS];
    int heldout, total_before, total_after;
    double accuracy_before, accuracy_after;
    int64_t train_records, val_records, dropped_heldout;
    double first_val_loss, last_val_loss, best_val_loss;
    int64_t first_val_step, last_val_step, best_step;
    double chosen_lr;
    char chosen_trial[160];
    double wall_s;
    char sweep_dir[4096];
    char report_path[4200], trial_report_path[4400], best_dir[4200];
} sft_demo_result;

int sft_demo_run(const sft_demo_options *o, sft_demo_result *r, sft_err *err);

#endif
