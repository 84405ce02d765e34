/* live.h: the live view of a training run.
 *
 * On a terminal: one status line redrawn in place (carriage return and the
 * ANSI "erase line" sequence) with the step, a sparkline of the recent
 * training losses in Unicode block characters (U+2581..U+2588), the latest
 * validation loss, gradient norm, learning rate, tokens/s, the time left,
 * and the latest finding; a finding is also printed in full, with its
 * advice, above the line when it is first raised. The line never wraps: it
 * is cut to the terminal's width, dropping the least important fields first.
 * Redraws are limited to one per `min_redraw_s` (as tqdm's mininterval), so
 * a fast loop pays for formatting, not for terminal output.
 *
 * Not on a terminal (a log file, a pipe): plain lines, no control codes and
 * no sparkline, one per `plain_every` steps, and the findings.
 *
 * The training loop calls sft_live_step after each optimizer step (or adds
 * the view to its monitor as a sink, sft_live_sink). It costs a few
 * microseconds per call (tests/test_report.c measures it), far under 1% of
 * a training step. */
#ifndef SFT_MONITOR_LIVE_H
#define SFT_MONITOR_LIVE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/err.h"
#include "monitor/diagnose.h"
#include "monitor/metrics.h"

typedef struct sft_live_options {
    int tty;             /* -1: detect with isatty; 0: plain lines; 1: the redrawn line */
    int columns;         /* terminal width; 0: detect (TIOCGWINSZ, then $COLUMNS, then 100) */
    int sparkline_width; /* recent losses shown, one character each (24) */
    double min_redraw_s; /* terminal: at most one redraw per this many seconds (0.1) */
    int plain_every;     /* plain lines: one per this many steps (1); the last step always */
    int color;           /* -1: on a terminal unless $NO_COLOR is set; 0: never; 1: always */
} sft_live_options;

void sft_live_options_default(sft_live_options *o);

typedef struct sft_live sft_live;

/* out is not closed by sft_live_free. o may be NULL (defaults). */
sft_live *sft_live_open(FILE *out, const sft_live_options *o, sft_err *err);
void sft_live_free(sft_live *l);

/* After each optimizer step. total_steps: planned (0 when unknown); eta_s:
 * the caller's estimate of the time left, or NAN to let the view estimate
 * it from the records' elapsed_s. */
void sft_live_step(sft_live *l, const sft_train_record *r, int64_t total_steps, double eta_s);
/* After an evaluation: the value shown as "val" (nothing is printed). */
void sft_live_eval(sft_live *l, const sft_eval_record *r);
/* A finding first raised: printed in full above the line; the line then
 * shows it as the latest finding. */
void sft_live_finding(sft_live *l, const sft_finding *f);
/* Before printing anything else to the same stream: erases the live line
 * (on a terminal); the next step redraws it whatever min_redraw_s says. */
void sft_live_clear(sft_live *l);
/* The run is over: the last line stays, followed by a newline. */
void sft_live_end(sft_live *l);
/* Whether the view redraws one terminal line (else it writes plain lines,
 * and the caller prints what the line would have shown, e.g. evaluations). */
int sft_live_is_terminal(const sft_live *l);

/* The view as a monitor sink (metrics.h): steps, evaluations and findings
 * reach it through sft_monitor. The sink's close ends the line and frees l. */
void sft_live_sink(sft_live *l, int64_t total_steps, sft_metrics_sink *sink);

/* The sparkline of values (min to max of these values over 8 levels; a
 * non-finite value is '!'), NUL-terminated UTF-8 into out. Returns the
 * number of characters (display columns) written. */
size_t sft_sparkline(const double *values, size_t n, char *out, size_t cap);

/* The status line as the view would draw it now, without control codes
 * (tests; other views). */
void sft_live_format(const sft_live *l, int columns, char *out, size_t cap);

#endif
