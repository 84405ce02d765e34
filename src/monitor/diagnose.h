/* diagnose.h: reading training curves the way the seed chapter asks, and
 * saying in plain words what they mean.
 *
 * Findings (SPEC.md, diagnosis.json): loss_spike, divergence, non_finite,
 * overfitting, underfitting, plateau, exploding_gradients,
 * frequent_clipping. Each carries a severity, the step range, numeric
 * evidence, a message that says what was seen and advice that says what to
 * try. The verdict is "failing" with any critical finding, "warning" with
 * any warning, else "healthy" (a healthy run may carry info findings such
 * as a plateau).
 *
 * Rules are defined on logged points, not on step numbers, and compare
 * values relative to the curve's own level and noise (estimated robustly
 * from the median absolute deviation of differences), so they hold across
 * loss scales (0.5 to 11 nats), lengths, noise levels and logging
 * intervals. Point rules (spike, exploding gradients) are causal: a point
 * is judged only against the points before it, so the live monitor and an
 * offline `sft diagnose` of the same file find the same events. Curve rules
 * (divergence, plateau, underfitting, overfitting, frequent clipping)
 * describe the curve so far. The default thresholds and their sources are
 * documented at sft_diagnose_config_default (diagnose.c) and in
 * docs/diagnosis.md. Everything is deterministic. */
#ifndef SFT_MONITOR_DIAGNOSE_H
#define SFT_MONITOR_DIAGNOSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/err.h"
#include "monitor/curve.h"

typedef struct sft_diagnose_config {
    /* loss_spike: a loss far above the recent level. */
    int64_t spike_window;            /* trailing points judged against (128: OLMo-core skip-step) */
    int64_t spike_min_history;       /* points needed before judging (10) */
    double spike_sigma;          /* robust z-score threshold (6: OLMo-core sigma_factor) */
    double spike_min_ratio;      /* and loss >= this x the recent level (1.2) */
    double spike_min_rise;       /* and at least this many nats above it (0.1) */
    double spike_critical_ratio; /* critical when >= this x the window mean ... (2: LLM Foundry) */
    int64_t spike_patience;          /* ... for more than this many points in a row (4: LLM Foundry) */
    /* divergence: a sustained rise of the training loss. */
    double divergence_rise;     /* relative rise of the smoothed loss above its minimum (0.2) */
    double divergence_min_rise; /* and at least this many nats (0.1) */
    double divergence_start_ratio; /* or a level this x the first logged loss (2: LLM Foundry's multiple) */
    /* overfitting: validation up while training does not go up. */
    double overfit_rise;  /* last validation loss above the best by this fraction (0.02) */
    int64_t overfit_patience; /* evaluations after the best one (2) */
    /* underfitting: both curves flat at their starting level, or still falling steadily. */
    double underfit_min_improvement;  /* relative improvement below which a curve is flat (0.1) */
    double underfit_slow_improvement; /* below this, a curve with no knee is undertrained (0.5) */
    double underfit_late_rate;        /* late slope / mean slope above which there is no knee (0.6) */
    /* plateau (info). */
    double plateau_tolerance;    /* no improvement beyond this fraction ... (0.02) */
    double plateau_min_fraction; /* ... over at least this fraction of the run (0.25) */
    /* exploding_gradients. */
    int64_t grad_window;            /* trailing points for the median (128) */
    double grad_spike_ratio;    /* norm >= this x trailing median (10) */
    double grad_critical_ratio; /* critical at this ratio (100) */
    int64_t grad_growth_window;     /* points over which growth is measured (32) */
    double grad_growth;         /* median of the last quarter / first quarter (8) */
    /* frequent_clipping. */
    int64_t clip_window;      /* trailing optimizer steps (50) */
    double clip_fraction; /* clipped fraction that counts as frequent (0.5) */
    double clip_min_excess; /* and the median recent norm at least this x the threshold (1.5) */
} sft_diagnose_config;

void sft_diagnose_config_default(sft_diagnose_config *cfg);

/* The thresholds by name (flags --spike-sigma, YAML keys spike_sigma), for
 * the CLI and the run configuration: this table is the one list of their
 * names (`sft train` and `sft diagnose` take their flags from it).
 * `is_int` members are int64_t from 1 to SFT_DIAGNOSE_INT_MAX, others
 * double > 0. */
#define SFT_DIAGNOSE_INT_MAX 1000000
typedef struct {
    const char *name; /* the YAML key; the flag is the same with '-' for '_' */
    size_t offset;    /* into sft_diagnose_config */
    int is_int;
    const char *help; /* meaning and source (the default is printed from sft_diagnose_config_default) */
} sft_diagnose_param;

const sft_diagnose_param *sft_diagnose_params(size_t *count);
/* Sets one threshold by its YAML key; an unknown key or a value out of range
 * is an error naming the nearest key / the valid range. */
int sft_diagnose_config_set(sft_diagnose_config *cfg, const char *key, double value, sft_err *err);

typedef enum { SFT_SEVERITY_INFO, SFT_SEVERITY_WARNING, SFT_SEVERITY_CRITICAL } sft_severity;
const char *sft_severity_name(sft_severity s);

#define SFT_FINDING_EVIDENCE_MAX 12

typedef struct sft_finding {
    char kind[32];
    sft_severity severity;
    int64_t step, end_step;
    size_t evidence_count;
    struct {
        char key[32];
        double value;
    } evidence[SFT_FINDING_EVIDENCE_MAX];
    /* During training: the records of the step's batch ("file:line ..."),
     * set by the training loop for loss_spike and non_finite; else empty. */
    char records[512];
    char message[768];
    char advice[384];
    int first_raised; /* set by sft_diagnose_update: raised for the first time by this call */
} sft_finding;

/* The number of an evidence key, or NAN when absent. */
double sft_finding_evidence(const sft_finding *f, const char *key);

typedef struct sft_diagnosis {
    const char *verdict; /* "healthy", "warning", "failing" */
    int has_best;
    int64_t best_step;
    double best_val_loss;
    sft_finding *findings; /* ordered by step, then kind */
    size_t finding_count, finding_cap;
} sft_diagnosis;

void sft_diagnosis_init(sft_diagnosis *d);
void sft_diagnosis_free(sft_diagnosis *d);

/* Diagnoses a whole curve. out is (re)filled; call sft_diagnosis_free after. */
int sft_diagnose(const sft_curve *c, const sft_diagnose_config *cfg, sft_diagnosis *out, sft_err *err);

/* Live use: the training loop keeps one tracker and calls sft_diagnose_update
 * after each step and evaluation with the curve so far. It fills `out` like
 * sft_diagnose and marks with first_raised the findings not reported by an
 * earlier call: a point event (loss_spike, exploding_gradients) is new by its
 * kind and step; a curve finding is new by its kind, or again when its
 * severity rises. Point rules are scanned incrementally (only new points),
 * so a call costs O(window) for them plus a linear pass for the curve rules.
 * The curve may only grow between calls. */
typedef struct sft_diagnose_tracker sft_diagnose_tracker;
sft_diagnose_tracker *sft_diagnose_tracker_new(sft_err *err);
void sft_diagnose_tracker_free(sft_diagnose_tracker *t);
int sft_diagnose_update(sft_diagnose_tracker *t, const sft_curve *c, const sft_diagnose_config *cfg,
                        sft_diagnosis *out, size_t *first_raised_count, sft_err *err);

/* One finding as a JSON object (no newline); `type_finding` prefixes
 * "type":"finding" for metrics.jsonl. Non-finite numbers are written as the
 * strings "NaN", "Infinity", "-Infinity". */
void sft_finding_write_json(FILE *f, const sft_finding *finding, int type_finding);
/* diagnosis.json (SPEC.md), indented, with a final newline. */
void sft_diagnosis_write_json(FILE *f, const sft_diagnosis *d);
/* Writes path atomically. */
int sft_diagnosis_save(const char *path, const sft_diagnosis *d, sft_err *err);
/* The plain-text report of `sft diagnose`: verdict, best step, each finding. */
void sft_diagnosis_print_text(FILE *f, const sft_diagnosis *d, const char *source_name);

#endif
