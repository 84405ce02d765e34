/* sweep.h: `sft sweep`, a grid of training runs (a learning-rate sweep, or
 * any training key), each a full run dir, with the best model chosen by
 * minimal validation loss and a comparison report.
 *
 * SWEEP/ (SPEC.md, "Sweep output"):
 *   sweep.yaml     the resolved sweep: every training key of the base run,
 *                  the swept values (sweep:), parallel, prune; re-runs with
 *                  `sft sweep -c sweep.yaml`
 *   sweep.json     the sweep's state: each trial's params, status (pending,
 *                  running, finished, pruned, failed), steps, wall time and
 *                  result; what --resume continues from
 *   trials/NAME/   one run dir per trial (sft train's layout)
 *   best/          the chosen trial's best checkpoint (HF model or PEFT
 *                  adapter dir), copied atomically
 *   summary.json   {"metric", "best", "trials": [...]} exactly as SPEC.md
 *   report.html, val_loss.png   the comparison, with advice in words
 *
 * Trials run one after another with all threads, or `parallel` at a time
 * with the threads split between them. Each trial runs in a child process
 * (fork): the library that trains keeps process-wide state (the OpenMP
 * thread count, signal handlers), and a child of its own keeps trials
 * apart. GNU OpenMP cannot be used in a child forked after the parent ran
 * a parallel region, so a caller must not train or generate in its own
 * process before sft_sweep_run (sft_fork_call runs such work in a child).
 *
 * Selection: the trial with the minimal validation loss at any evaluation
 * (its best checkpoint, not its last); values equal to 1e-9 relative are a
 * tie, won by the smaller learning rate, then by the earlier trial. Trials
 * that failed, went non-finite or diverged (a non_finite or divergence
 * finding) are excluded and reported.
 *
 * Pruning (off by default): successive halving (Jamieson & Talwalkar 2016;
 * Li et al., Hyperband, 2018). Every trial trains to a first budget of
 * max_steps / factor^(rungs-1) steps; the best 1/factor of them (by best
 * validation loss so far) continue to factor times that budget, and so on
 * until the survivors reach max_steps. The learning-rate schedule is the
 * full run's, so a survivor continues exactly as an unpruned run would.
 *
 * An interrupted sweep (SIGINT/SIGTERM, a crash, a kill) resumes with
 * resume set: finished and pruned trials are not run again, an unfinished
 * trial continues from its latest checkpoint (or starts over when it had
 * none), and the selection and report are made over all trials. */
#ifndef SFT_TRAIN_SWEEP_H
#define SFT_TRAIN_SWEEP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/err.h"
#include "io/yaml.h"
#include "train/run_config.h"

#define SFT_SWEEP_MAX_AXES 8
#define SFT_SWEEP_MAX_TRIALS 256
#define SFT_SWEEP_MAX_ADVICE 12

/* One swept training key and its values, as text (a flag's spelling). */
typedef struct sft_sweep_axis {
    const sft_run_key *key;
    sft_str_list values;
} sft_sweep_axis;

typedef enum { SFT_SWEEP_PRUNE_NONE, SFT_SWEEP_PRUNE_HALVING } sft_sweep_prune;

typedef struct sft_sweep_config {
    /* Every trial starts from base (not finished: a trial that sweeps
     * lora_r gets the LoRA default learning rate); base.out is the sweep
     * folder, base.threads the threads of the whole sweep. base.resume set:
     * continue the sweep in base.out. */
    sft_run_config base;
    sft_sweep_axis axes[SFT_SWEEP_MAX_AXES];
    int axis_count;
    int64_t parallel; /* trials at a time (>= 1) */
    int prune;        /* sft_sweep_prune */
    int64_t prune_factor;
} sft_sweep_config;

void sft_sweep_config_init(sft_sweep_config *c);
void sft_sweep_config_free(sft_sweep_config *c);

/* The values of one axis from "v1,v2,..." (each checked as the key's type
 * and range); a key given again replaces its values. `where` names the
 * source in errors ("--lr", "sweep.yaml:4:5"). */
int sft_sweep_set_values(sft_sweep_config *c, const char *key, const char *comma_list, const char *where,
                         sft_err *err);
/* "key=v1,v2" (the --sweep flag). */
int sft_sweep_set_spec(sft_sweep_config *c, const char *spec, const char *where, sft_err *err);
/* "LO:HI:N": N learning rates spaced evenly in log between LO and HI
 * (both included), each rounded to 3 significant digits. */
int sft_sweep_set_lr_range(sft_sweep_config *c, const char *range, const char *where, sft_err *err);

/* The keys of a sweep file besides the training keys (NULL-terminated). */
extern const char *const sft_sweep_file_keys[];
/* A sweep YAML file: any training key (the base run); `sweep:` a mapping
 * of key -> list of values; `lr:` as a list is a swept lr; `lr_range:
 * "LO:HI:N"`; `parallel:`, `prune: none|halving`, `prune_factor:`. */
int sft_sweep_apply_yaml(sft_sweep_config *c, const sft_yaml_doc *doc, sft_err *err);
int sft_sweep_load_yaml(sft_sweep_config *c, const char *path, sft_err *err);

/* Checks the sweep (something to sweep, validation data, the combinations
 * of every trial, pruning's needs) without touching the disk. */
int sft_sweep_config_check(const sft_sweep_config *c, sft_err *err);

/* sweep.yaml's text (malloc'ed). */
char *sft_sweep_config_to_yaml(const sft_sweep_config *c, sft_err *err);

typedef struct sft_sweep_options {
    FILE *log;          /* per-trial lines, the progress line, the summary; NULL: quiet */
    int progress;       /* the trainer's live line (one trial at a time) or a line of all running trials */
    int handle_signals; /* SIGINT/SIGTERM stop the running trials at a checkpoint */
    const char *program_version, *command_line;
    /* Test hook: trial number stop_trial (1-based, in plan order) stops as
     * an interruption after stop_after_steps steps of its call. */
    int stop_trial;
    int64_t stop_after_steps;
} sft_sweep_options;

typedef enum {
    SFT_TRIAL_PENDING,
    SFT_TRIAL_RUNNING, /* started, not finished: resumes from its checkpoint */
    SFT_TRIAL_FINISHED,
    SFT_TRIAL_PRUNED,
    SFT_TRIAL_FAILED, /* stopped by an error (a non-finite loss with on_nonfinite stop, a crash) */
} sft_trial_status;
const char *sft_trial_status_name(int status);

#define SFT_SWEEP_MAX_KINDS 16

typedef struct sft_sweep_trial {
    char name[160];
    char params_json[1024]; /* {"lr": X, "key": value, ...} */
    double lr;
    int status;          /* sft_trial_status */
    int64_t steps;       /* optimizer steps done */
    int64_t total_steps; /* planned; 0 before the first start */
    double best_val_loss; /* NaN: no evaluation */
    int64_t best_step;    /* -1: none */
    double first_val_loss, final_train_loss;
    double wall_s; /* summed over every process that ran it */
    char verdict[16];
    int kind_count;
    char kinds[SFT_SWEEP_MAX_KINDS][32];
    int stopped_early;
    int excluded;          /* not a candidate for best */
    char why_excluded[96]; /* "diverged", "non-finite loss", "failed: ..." */
    char error[512];       /* the failure, when failed */
    int ran_now;           /* this call trained it (0: finished before a resume) */
} sft_sweep_trial;

typedef struct sft_sweep_result {
    sft_sweep_trial *trials;
    int trial_count;
    int best;        /* index into trials, -1: none qualifies */
    int interrupted; /* a signal number, -1 for the test hook; 0 when the sweep finished */
    int resumed;
    double wall_s;
    char sweep_dir[4096];
    char best_dir[4200]; /* "" when none */
    char summary_path[4200], report_path[4200];
    int advice_count;
    char advice[SFT_SWEEP_MAX_ADVICE][640];
} sft_sweep_result;

/* Runs (or, with c->base.resume, continues) the sweep. 0 when it finished
 * (even when no trial qualifies: result->best is -1) or was interrupted
 * (result->interrupted); -1 with err on bad input, a trial that fails
 * before its first step (bad data, a bad model), or an unwritable folder. */
int sft_sweep_run(const sft_sweep_config *c, const sft_sweep_options *o, sft_sweep_result *result, sft_err *err);
void sft_sweep_result_free(sft_sweep_result *r);

/* The comparison report of a sweep folder from its sweep.json: the page
 * sft sweep writes (the choice, each trial's status, the advice), for
 * `sft report SWEEP`. out_html NULL: SWEEP/report.html; html_path (cap
 * bytes, may be NULL) receives the path written. */
int sft_sweep_report(const char *sweep_dir, const char *out_html, char *html_path, size_t cap, sft_err *err);

/* Runs fn(ctx, out, out_size, err) in a child process and copies back its
 * return value, out (out_size bytes) and err: work that uses OpenMP,
 * kept out of a process that forks afterwards. */
typedef int (*sft_child_fn)(void *ctx, void *out, size_t out_size, sft_err *err);
int sft_fork_call(sft_child_fn fn, void *ctx, void *out, size_t out_size, sft_err *err);

#endif
