/* report.h: the report of a run: one self-contained report.html (inline SVG
 * charts and CSS, no scripts, no network; well-formed XML, so that it is
 * both HTML5 and XHTML) and PNG charts (loss.png, grad_norm.png, lr.png)
 * drawn with cairo.
 *
 * The page shows the verdict and best step; training loss (raw and
 * smoothed with TensorBoard's debiased exponential moving average) with the
 * validation loss on one chart, on a log axis when the loss spans more than
 * a factor of 20; the gradient norm before (and after) clipping with the
 * clipping threshold drawn (max_grad_norm from the metrics, else from
 * run.yaml) and the clipped steps marked; the learning rate; tokens/s; the
 * findings marked at their steps (hover for the message) and listed with
 * their advice; the best step marked; the configuration (run.yaml), the
 * manifest (manifest.json) and sample generations when the run dir has
 * them.
 *
 * samples.jsonl (in the run dir; the trainer writes it at evaluations):
 * one JSON object a line,
 *   {"step": S, "prompt": "...", "output": "...", "reference": "..."}
 * "output" is the model's generation for "prompt" at optimizer step S;
 * "reference" is the dataset's answer. "step" and "reference" are optional;
 * "response" and "completion" are accepted for "output". A line that is not
 * such an object is named on the page and skipped.
 *
 * A sweep: sft_report_compare_write overlays several runs' validation (and
 * smoothed training) curves on one chart each, with a table of the runs. */
#ifndef SFT_MONITOR_REPORT_H
#define SFT_MONITOR_REPORT_H

#include <stddef.h>

#include "io/err.h"

typedef struct sft_report_options {
    const char *out_dir;  /* NULL: the run dir (or the folder of the metrics file) */
    const char *out_html; /* the report's path (PNGs go beside it); overrides out_dir */
    int png;              /* also write loss.png, grad_norm.png, lr.png */
    /* Weight of the training loss's moving average, as TensorBoard's
     * smoothing slider, in [0, 1); 0: chosen from the number of points
     * (report.c, smoothing_weight); negative: no smoothed line. */
    double smoothing;
} sft_report_options;

/* PATH: a run dir or any file sft diagnose reads; a sweep dir (one with a
 * trials/ folder of run dirs) gets the comparison report. On success
 * html_path (if not NULL) receives the path of report.html (cap bytes). */
int sft_report_write(const char *path, const sft_report_options *o, char *html_path, size_t cap, sft_err *err);

/* One run of a comparison: path as sft_report_write takes it; name labels
 * it in the legend and the table (NULL: the path's last component). */
typedef struct sft_report_run {
    const char *name;
    const char *path;
} sft_report_run;

/* The comparison report of n runs (a sweep) into out_html, with
 * val_loss.png beside it when png is set. The best run is the one with the
 * lowest validation loss. A run that cannot be read is an error naming it. */
int sft_report_compare_write(const sft_report_run *runs, size_t n, const char *title, const char *out_html, int png,
                             sft_err *err);

/* A sweep's comparison (sft sweep): the run the sweep chose (by name; NULL:
 * the lowest validation loss, "": none qualified), the table sorted by best
 * validation loss, a status column (status[i] for runs[i], e.g. "excluded:
 * diverged"; NULL: none), and advice in words shown above the table. */
typedef struct sft_report_compare_options {
    const char *title;
    int png;
    const char *chosen;
    int sort_by_val_loss;
    const char *const *status;
    const char *const *advice;
    size_t advice_count;
} sft_report_compare_options;
int sft_report_compare_write_opts(const sft_report_run *runs, size_t n, const sft_report_compare_options *o,
                                  const char *out_html, sft_err *err);

/* TensorBoard's smoothing of a scalar chart, as the report draws it: the
 * debiased exponential moving average of v with weight w in [0, 1) into
 * out (report.c, ema_smooth). */
void sft_report_smooth(const double *v, size_t n, double w, double *out);

#endif
