/* checkpoint.h: checkpoints of a training run, written so that a crash at
 * any instant leaves the previous checkpoint loadable.
 *
 * Layout (SPEC.md, "A run directory"):
 *   RUN/checkpoints/step-N/model.safetensors      weights, float32 (or adapter_model.safetensors)
 *                          optimizer.safetensors  AdamW moments: "exp_avg/NAME", "exp_avg_sq/NAME"
 *                          trainer_state.json     step, epoch, data cursor, RNG states, best, ...
 *                          (any extra files the caller adds: config.json, adapter_config.json)
 *   RUN/best/, RUN/final/                         exported model dirs, replaced atomically
 *
 * A folder is never written in place: it is built under a temporary name
 * beside its final one (".step-N.tmp-PID"), every file and the folder are
 * fsynced, and only then is it renamed into place (an existing folder of
 * that name is swapped out with renameat2(RENAME_EXCHANGE), or, where the
 * file system lacks it, renamed aside first and restored by the recovery
 * step if a crash falls in between). Old checkpoints are renamed to a
 * ".trash-" name before they are deleted, so a half-deleted folder never
 * looks like a checkpoint. Temporary and trash folders left by a crash are
 * removed the next time the run's checkpoints are listed or written.
 *
 * Test hook: with SFT_TEST_CRASH_AT=POINT in the environment the writer
 * calls abort() at that point (sft_checkpoint_crash_points lists them), so
 * tests can kill a save at every stage in a child process; with
 * SFT_TEST_NO_RENAME_EXCHANGE=1 the rename-aside path is used. */
#ifndef SFT_TRAIN_CHECKPOINT_H
#define SFT_TRAIN_CHECKPOINT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "io/err.h"
#include "io/safetensors.h"
#include "train/rng.h"

/* One named tensor inside the flat buffers (offset and sizes in floats). */
typedef struct sft_ckpt_view {
    const char *name;
    int ndim;
    int64_t shape[SFT_MAX_DIMS];
    size_t offset;
} sft_ckpt_view;

/* The flat parameter buffer and the two AdamW moment buffers, all laid out
 * alike (numel floats each), with the named views into them. Saving reads
 * them; loading fills them. adam_m / adam_v may be NULL: not saved, or not
 * loaded. */
typedef struct sft_ckpt_tensors {
    const sft_ckpt_view *views;
    size_t count;
    float *params;
    float *adam_m;
    float *adam_v;
    size_t numel;
} sft_ckpt_tensors;

/* The RNG streams a checkpoint carries, indexed by sft_rng_stream. */
#define SFT_CKPT_RNG_COUNT 6

/* Everything the training loop needs besides the tensors to continue a run
 * bit for bit. Fields the loop adds later go in `extra` (a JSON object of
 * further top-level keys, owned by the state), which is written and read
 * back unchanged, so the format grows without a new struct version.
 *
 * The data position is (epoch_index, data_cursor): the loop derives each
 * epoch's order from the data stream and the epoch index (sft_rng_derive),
 * so these two numbers locate the next record exactly. */
typedef struct sft_trainer_state {
    int64_t step;        /* optimizer steps completed ("global_step") */
    double epoch;        /* fractional epochs completed, as HF logs it */
    int64_t epoch_index; /* the epoch being read (0-based) */
    int64_t data_cursor; /* records of that epoch already consumed */
    int64_t max_steps;   /* the run's planned total */
    int64_t adam_step;   /* AdamW's step count (differs from step after skipped steps) */
    int64_t tokens_seen; /* supervised tokens trained on so far */
    int64_t skipped_steps; /* non-finite steps skipped (on_nonfinite: skip) */
    double elapsed_s;    /* training time so far, for ETA and tokens/s across resumes */
    int64_t best_step;   /* -1: no evaluation yet */
    double best_val_loss; /* NaN: no evaluation yet */
    int64_t evals_without_improvement; /* early stopping counter */
    sft_rng rng[SFT_CKPT_RNG_COUNT];   /* [sft_rng_stream]; index 0 unused */
    json_t *extra;
} sft_trainer_state;

/* A fresh state: step 0, no best, RNG streams seeded from `seed`. */
void sft_trainer_state_init(sft_trainer_state *state, uint64_t seed);
void sft_trainer_state_free(sft_trainer_state *state);

/* trainer_state.json as text (malloc'ed) and back. Loading checks every
 * field's type and names the file in errors. */
char *sft_trainer_state_to_json(const sft_trainer_state *state, sft_err *err);
int sft_trainer_state_from_json(sft_trainer_state *state, const char *text, size_t len, const char *name,
                                sft_err *err);

/* A small file to put into a checkpoint: given bytes, or a copy of src_path. */
typedef struct sft_ckpt_file {
    const char *name;
    const void *data;
    size_t len;
    const char *src_path; /* used when data is NULL */
} sft_ckpt_file;

typedef struct sft_ckpt_save {
    const sft_ckpt_tensors *tensors;
    const char *weights_name; /* NULL: "model.safetensors" */
    const sft_ckpt_file *files;
    size_t file_count;
    const sft_trainer_state *state; /* its step names the folder */
} sft_ckpt_save;

/* Writes RUN/checkpoints/step-N atomically (N = state->step); an existing
 * step-N is replaced. `saved_dir` (may be NULL) gets the final path. */
int sft_checkpoint_save(const char *run_dir, const sft_ckpt_save *save, char *saved_dir, size_t cap, sft_err *err);

/* Loads a checkpoint folder: the weights into tensors->params (every view
 * must be present with its shape; a tensor the views do not name is an
 * error), the moments when adam_m/adam_v are given, and the state.
 * weights_name NULL: the weights file the checkpoint records. */
int sft_checkpoint_load(const char *ckpt_dir, const sft_ckpt_tensors *tensors, const char *weights_name,
                        sft_trainer_state *state, sft_err *err);

/* The valid checkpoints of a run, ascending by step (malloc'ed; NULL when
 * none). Valid: step-N holding a readable trainer_state.json for step N and
 * the weights file. Leftovers of crashed writes are cleaned up first. */
int sft_checkpoint_list(const char *run_dir, int64_t **steps, size_t *count, sft_err *err);
/* The newest valid checkpoint's folder; 1 when there is none, 0 when found. */
int sft_checkpoint_latest(const char *run_dir, char *ckpt_dir, size_t cap, int64_t *step, sft_err *err);
/* For --resume PATH: PATH itself when it is a checkpoint folder, else the
 * latest checkpoint of the run folder PATH; an error when there is none. */
int sft_checkpoint_resolve(const char *path, char *ckpt_dir, size_t cap, sft_err *err);
/* Keeps the newest `keep_last` checkpoints (0: all) and best_step (-1:
 * none), deleting the others. */
int sft_checkpoint_prune(const char *run_dir, int64_t keep_last, int64_t best_step, sft_err *err);

/* Atomic replacement of a whole folder (best/, final/, a checkpoint):
 * begin makes an empty temporary folder beside final_dir and returns its
 * path; the caller fills it; commit fsyncs it and puts it in place of
 * final_dir (whose old content is then removed); abort deletes it. */
int sft_dir_begin(const char *final_dir, char *tmp_dir, size_t cap, sft_err *err);
int sft_dir_commit(const char *tmp_dir, const char *final_dir, sft_err *err);
void sft_dir_abort(const char *tmp_dir);
/* Finishes or undoes what a crash interrupted around final_dir: restores a
 * folder left renamed aside, removes temporary and trash folders. */
int sft_dir_recover(const char *final_dir, sft_err *err);

/* NULL-terminated names of the SFT_TEST_CRASH_AT points, in write order. */
extern const char *const sft_checkpoint_crash_points[];

#endif
