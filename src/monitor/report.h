/* report.h: the report of a run: one self-contained report.html (inline SVG
 * charts, no scripts, no network) and PNG charts (loss.png, grad_norm.png,
 * lr.png) drawn with cairo.
 *
 * The page shows the verdict and best step; training loss (raw and
 * smoothed) with the validation loss on one chart; the gradient norm before
 * (and after) clipping with the clipping threshold drawn; the learning rate;
 * tokens/s; the findings marked at their steps (hover for the message) and
 * listed with their advice; the best step marked; the configuration
 * (run.yaml), the manifest (manifest.json) and sample generations
 * (samples.jsonl: one JSON object per line with "prompt" and "response" or
 * "completion", and optionally "step") when the run dir has them. */
#ifndef SFT_MONITOR_REPORT_H
#define SFT_MONITOR_REPORT_H

#include "io/err.h"

typedef struct sft_report_options {
    const char *out_dir; /* NULL: the run dir (or the folder of the metrics file) */
    int png;             /* also write loss.png, grad_norm.png, lr.png */
} sft_report_options;

/* PATH: a run dir or any file sft diagnose reads. On success *html_path (if
 * not NULL) receives the path of report.html (cap bytes). */
int sft_report_write(const char *path, const sft_report_options *o, char *html_path, size_t cap, sft_err *err);

#endif
