/* metrics.h: the monitor is a sink (DESIGN.md). The training loop emits
 * records (a train step, an evaluation, a finding) into an sft_monitor; the
 * monitor hands each record to its sinks: the metrics.jsonl writer, the
 * TensorBoard writer, and any added later (the live view). It also keeps the
 * curve so far and runs the live diagnosis on it, so that a finding is
 * written to metrics.jsonl when first raised and diagnosis.json is rewritten
 * at each evaluation. The same diagnosis code runs offline on files
 * (readers.h).
 *
 * metrics.jsonl follows SPEC.md exactly, one object per line, appended and
 * flushed line by line (a crash loses at most the line being written). A
 * non-finite number is written as a bare NaN / Infinity / -Infinity, as
 * Python's json module writes and reads it (strict JSON has no NaN);
 * readers.h accepts it. */
#ifndef SFT_MONITOR_METRICS_H
#define SFT_MONITOR_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "io/err.h"
#include "monitor/curve.h"
#include "monitor/diagnose.h"

/* One optimizer step. */
typedef struct sft_train_record {
    int64_t step;
    double epoch;
    double loss;              /* mean over the supervised tokens of the step */
    double grad_norm;         /* global L2 norm before clipping */
    double grad_norm_clipped; /* after clipping */
    int clipped;
    double lr;
    int64_t tokens; /* supervised tokens of the step */
    double tokens_per_s;
    double elapsed_s;
    /* Optional (NULL): the batch's records, "FILE:LINE FILE:LINE ...". A
     * loss_spike, non_finite or exploding_gradients finding first raised at
     * this step carries them, so the examples can be inspected. */
    const char *batch_records;
} sft_train_record;

typedef struct sft_eval_record {
    int64_t step;
    double epoch;
    double val_loss; /* token-weighted mean */
    int64_t val_tokens;
} sft_eval_record;

/* A consumer of records. Any callback may be NULL. A callback returns -1
 * with err set when it could not consume the record (a full disk). */
typedef struct sft_metrics_sink {
    void *ctx;
    int (*on_train)(void *ctx, const sft_train_record *r, sft_err *err);
    int (*on_eval)(void *ctx, const sft_eval_record *r, sft_err *err);
    int (*on_finding)(void *ctx, const sft_finding *f, sft_err *err);
    int (*close)(void *ctx, sft_err *err); /* also frees ctx */
} sft_metrics_sink;

/* The metrics.jsonl sink: appends to path (created if missing). */
int sft_metrics_jsonl_sink_open(const char *path, sft_metrics_sink *sink, sft_err *err);
/* One record as its metrics.jsonl line (with the newline). */
void sft_metrics_write_train_line(FILE *f, const sft_train_record *r);
void sft_metrics_write_eval_line(FILE *f, const sft_eval_record *r);

/* The TensorBoard sink: a new event file in dir. Tags: train/loss,
 * train/grad_norm, train/learning_rate, train/epoch, eval/loss (HF Trainer's). */
int sft_tensorboard_sink_open(const char *dir, sft_metrics_sink *sink, sft_err *err);

typedef struct sft_monitor_options {
    int write_jsonl;       /* DIR/metrics.jsonl */
    int write_tensorboard; /* DIR/events.out.tfevents.* */
    int live_diagnosis;    /* diagnose after each record; findings into the sinks */
    int write_diagnosis;   /* DIR/diagnosis.json at each evaluation (and at close) */
    double max_grad_norm;  /* the clipping threshold, 0 when off */
    int64_t planned_steps; /* optimizer steps the run will make, 0 when unknown */
    sft_diagnose_config diagnose;
} sft_monitor_options;

/* Everything on, default thresholds. */
void sft_monitor_options_default(sft_monitor_options *o);

typedef struct sft_monitor sft_monitor;

/* Opens the sinks under run_dir (which must exist). When run_dir already has
 * a metrics.jsonl (a resumed run, trimmed to its checkpoint), its records
 * become the start of the curve, and the findings in them count as reported. */
sft_monitor *sft_monitor_open(const char *run_dir, const sft_monitor_options *o, sft_err *err);
/* Adds a sink (the live view); the monitor closes it. At most 8 sinks. */
int sft_monitor_add_sink(sft_monitor *m, const sft_metrics_sink *sink, sft_err *err);

/* Record a step / an evaluation: every sink gets it, then the live diagnosis
 * runs; findings first raised by this record go to every sink's on_finding
 * and are returned by sft_monitor_new_findings until the next record. */
int sft_monitor_train(sft_monitor *m, const sft_train_record *r, sft_err *err);
int sft_monitor_eval(sft_monitor *m, const sft_eval_record *r, sft_err *err);
/* Findings first raised by the latest record (to print them). */
size_t sft_monitor_new_finding_count(const sft_monitor *m);
const sft_finding *sft_monitor_new_finding(const sft_monitor *m, size_t i);
/* The latest diagnosis and curve (valid until the next record). */
const sft_diagnosis *sft_monitor_diagnosis(const sft_monitor *m);
const sft_curve *sft_monitor_curve(const sft_monitor *m);

/* The run is over: diagnoses the whole run one last time (findings first
 * raised now still reach the sinks and sft_monitor_new_finding) and writes
 * diagnosis.json; sft_monitor_diagnosis then holds the final verdict. */
int sft_monitor_finish(sft_monitor *m, sft_err *err);
/* Finishes (when not done yet), closes every sink; frees m. */
int sft_monitor_close(sft_monitor *m, sft_err *err);

#endif
