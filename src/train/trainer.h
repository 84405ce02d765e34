/* trainer.h: one supervised fine-tuning run, as a library call: `sft train`,
 * `sft sweep` and `sft demo` are thin layers over sft_train_run.
 *
 * The loop (after HF Trainer / TRL's SFTTrainer, with llm.c's flat buffers):
 * each optimizer step takes the next batch_size x grad_accum items of the
 * epoch's seeded order, counts their supervised tokens, and runs the
 * micro-batches with the loss of each divided by that step-wide count, so
 * that the gradient is that of the mean over every supervised token of the
 * step whatever the split into micro-batches; then the global gradient norm,
 * clipping, the learning rate of the schedule and one AdamW step.
 * Evaluation (token-weighted mean over the whole validation set) runs every
 * eval_every steps and at the end; the best evaluation is exported to
 * RUN/best/ at once; checkpoints every save_every steps and at the end;
 * early stopping on the validation loss; SIGINT/SIGTERM finish the step,
 * save and return. A resumed run restores the trainable weights, both Adam
 * moments and its step, the data position, the RNG streams, the dropout
 * counter, the best so far and the early-stopping counter, so that N steps
 * plus a resume for N more equal 2N steps in one run bit for bit (same
 * thread count).
 *
 * Everything the run reads is validated (model, tokenizer, template, every
 * data record, the checkpoint to resume) before anything is written into
 * the run folder. */
#ifndef SFT_TRAIN_TRAINER_H
#define SFT_TRAIN_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "io/err.h"
#include "model/model.h"
#include "train/dataset.h"
#include "train/run_config.h"

typedef struct sft_train_options {
    /* Where messages go (data summary, findings, checkpoints, the end);
     * NULL: quiet. */
    FILE *log;
    /* A live progress line per step on `log`: redrawn with \r when log is a
     * terminal, one plain line per step otherwise. */
    int progress;
    /* > 0: stop as an interruption would after this many optimizer steps of
     * this call (a checkpoint is saved; resume continues the same run). */
    int64_t stop_after_steps;
    /* Stop gracefully on SIGINT/SIGTERM (the CLI sets it; a library caller
     * with its own handlers leaves it 0). */
    int handle_signals;
    const char *program_version; /* for manifest.json; may be NULL */
    const char *command_line;    /* for manifest.json; may be NULL */
} sft_train_options;

#define SFT_TRAIN_MAX_FINDINGS 16

typedef struct sft_train_result {
    int64_t steps;       /* optimizer steps completed (including those before a resume) */
    int64_t total_steps; /* planned */
    int64_t best_step;   /* -1: no evaluation */
    double best_val_loss;  /* NaN: no evaluation */
    double first_val_loss; /* the first evaluation of this call; NaN when none */
    double final_val_loss; /* the last evaluation; NaN when none */
    double final_train_loss; /* the last step's loss */
    int64_t skipped_steps;   /* non-finite steps skipped */
    int stopped_early;       /* early stopping ended the run */
    int interrupted;         /* a signal number, or -1 for stop_after_steps; 0 when the run finished */
    int resumed;             /* continued from a checkpoint */
    double wall_s;
    char verdict[16];        /* the diagnosis: healthy, warning, failing */
    int finding_count;
    char finding_kinds[SFT_TRAIN_MAX_FINDINGS][32];
    char run_dir[1024];
    char best_dir[1100];       /* "" when there is no best */
    char final_dir[1100];      /* "" when the run did not finish */
    char last_checkpoint[1200]; /* "" when none was written */
    /* the training data */
    int64_t train_examples, val_examples;
    double packing_efficiency;
} sft_train_result;

/* Runs (or resumes) the run `cfg` describes; cfg must have passed
 * sft_run_config_finish. 0 when the run finished, stopped early or was
 * interrupted (result->interrupted says which); -1 with err set otherwise
 * (bad input, a non-finite loss with on_nonfinite: stop, a full disk). */
int sft_train_run(const sft_run_config *cfg, const sft_train_options *opts, sft_train_result *result,
                  sft_err *err);

/* The validation loss of a planned model over a whole dataset: the sum of
 * -log p over every supervised token divided by their count (dropout off).
 * The model must be planned for batch_size x the longest example. */
int sft_eval_dataset(sft_model *m, const sft_dataset *ds, int batch_size, int32_t pad_id, double *mean_loss,
                     int64_t *tokens, sft_err *err);

#endif
