/* curve.h: the training curves of one run, whatever file they came from.
 *
 * A curve is two series ordered by step: training points (one per optimizer
 * step for sft's own runs, one per logging window for HF Trainer, whose
 * values are window averages) and evaluation points. Every reader
 * (readers.h) and the live monitor (metrics.h) fill this one struct, and
 * the diagnosis (diagnose.h) and the report read it.
 *
 * A value that the source did not record is marked absent with the `has`
 * bits; NaN is kept as a value, because a NaN loss is itself a finding. */
#ifndef SFT_MONITOR_CURVE_H
#define SFT_MONITOR_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

enum {
    SFT_HAS_EPOCH = 1u << 0,
    SFT_HAS_LOSS = 1u << 1,
    SFT_HAS_GRAD_NORM = 1u << 2,
    SFT_HAS_GRAD_NORM_CLIPPED = 1u << 3,
    SFT_HAS_CLIPPED = 1u << 4,
    SFT_HAS_LR = 1u << 5,
    SFT_HAS_TOKENS = 1u << 6,
    SFT_HAS_TOKENS_PER_S = 1u << 7,
    SFT_HAS_ELAPSED = 1u << 8,
    SFT_HAS_VAL_TOKENS = 1u << 9,
};

typedef struct sft_train_point {
    int64_t step;
    unsigned has; /* SFT_HAS_* bits */
    double epoch;
    double loss;
    double grad_norm;         /* before clipping */
    double grad_norm_clipped; /* after clipping */
    int clipped;              /* clipping fired at this step */
    double lr;
    int64_t tokens;      /* supervised tokens of the step */
    double tokens_per_s;
    double elapsed_s;
} sft_train_point;

typedef struct sft_eval_point {
    int64_t step;
    unsigned has; /* SFT_HAS_EPOCH, SFT_HAS_VAL_TOKENS */
    double epoch;
    double val_loss;
    int64_t val_tokens;
} sft_eval_point;

/* The batch records a finding named when it was raised during training
 * (metrics.jsonl keeps them in the finding line); a later diagnosis of the
 * same curve attaches them to the finding of that kind and step. */
typedef struct sft_curve_note {
    char kind[32];
    int64_t step;
    char records[512];
} sft_curve_note;

typedef struct sft_curve {
    sft_train_point *train;
    size_t train_count, train_cap;
    sft_eval_point *eval;
    size_t eval_count, eval_cap;
    double max_grad_norm; /* the clipping threshold when known, else 0 */
    /* 0: the curve is a whole run (files). While training: the planned
     * number of optimizer steps, or -1 when unknown. Judgments about the
     * whole run (underfitting) wait until enough of it is there. */
    int64_t planned_steps;
    char source[64];      /* "metrics.jsonl", "trainer_state.json", "tfevents", "csv" */
    sft_curve_note *notes;
    size_t note_count, note_cap;
} sft_curve;

void sft_curve_init(sft_curve *c);
void sft_curve_free(sft_curve *c);
int sft_curve_add_train(sft_curve *c, const sft_train_point *p, sft_err *err);
int sft_curve_add_eval(sft_curve *c, const sft_eval_point *p, sft_err *err);
int sft_curve_add_note(sft_curve *c, const char *kind, int64_t step, const char *records, sft_err *err);
/* Stable sort of both series by step (readers of files that may be out of order). */
void sft_curve_sort(sft_curve *c);

/* Whether a training point's clipping state is known, and what it is. */
int sft_train_point_clip_known(const sft_train_point *p, double max_grad_norm);
int sft_train_point_was_clipped(const sft_train_point *p, double max_grad_norm);

#endif
