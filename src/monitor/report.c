/* report.c: report.html and the PNG charts of a run (see report.h). */
#include "monitor/report.h"

#include <dirent.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json.h"
#include "io/yaml.h"
#include "monitor/chart.h"
#include "monitor/curve.h"
#include "monitor/diagnose.h"
#include "monitor/readers.h"

#define COLOR_TRAIN "#1f77b4"
#define COLOR_VAL "#ff7f0e"
#define COLOR_GRAD "#9467bd"
#define COLOR_GRAD_CLIPPED "#17becf"
#define COLOR_LR "#2ca02c"
#define COLOR_SPEED "#8c564b"
#define COLOR_BEST "#2ca02c"
#define COLOR_CLIPPED "#d62728"

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n || n > len) return 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return n;
}

/* Text for the page: escaped, and XML-clean (a run.yaml or a generation may
 * hold any bytes): control characters other than tab and newlines, and
 * bytes that are not UTF-8, become U+FFFD. */
static void html_escape(FILE *f, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t n = utf8_sequence(u + i, len - i);
            if (n) fwrite(s + i, 1, n, f), i += n;
            else fputs("\xEF\xBF\xBD", f), i++;
            continue;
        }
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\t': case '\n': fputc(c, f); break;
        case '\r': break;
        default:
            if (c < 0x20 || c == 0x7F) fputs("\xEF\xBF\xBD", f);
            else fputc(c, f);
        }
        i++;
    }
}

static void html_text(FILE *f, const char *s) { html_escape(f, s, strlen(s)); }

static const char *severity_color(sft_severity s) {
    return s == SFT_SEVERITY_CRITICAL ? "#d62728" : s == SFT_SEVERITY_WARNING ? "#e377c2" : "#7f7f7f";
}

/* The series the charts draw, as doubles by step. */
typedef struct {
    size_t n, eval_n;
    double *step, *loss, *smoothed, *grad, *grad_clipped, *lr, *speed;
    double *eval_step, *val;
    double *clip_step, *clip_grad; /* the steps where clipping fired */
    size_t clip_n, clip_known;     /* clipped steps; steps whose clipping state is known */
    char clip_label[64];
    char threshold_label[64];
    int has_grad, has_grad_clipped, has_lr, has_speed;
    double smoothing; /* the EMA weight used; 0: no smoothed line */
    int log_loss;     /* the loss spans more than LOG_LOSS_RATIO */
} curve_arrays;

/* A loss curve that falls (or climbs) by more than this factor is drawn on a
 * log axis: on a linear one its late part, where the findings are, would be
 * a flat line at the bottom. */
#define LOG_LOSS_RATIO 20.0

static void arrays_free(curve_arrays *a) {
    free(a->step), free(a->loss), free(a->smoothed), free(a->grad), free(a->grad_clipped);
    free(a->lr), free(a->speed), free(a->eval_step), free(a->val), free(a->clip_step), free(a->clip_grad);
}

/* The weight of the smoothing average when the caller gives none: an EMA
 * spanning about 1/40 of the points (span N, weight 1 - 2/(N+1), the usual
 * span-to-weight relation), at most 0.99, so that runs of 200 and of 20000
 * steps are smoothed to about the same visual degree. Under 80 points (HF
 * Trainer's logging windows, already averages) there is nothing to smooth:
 * 0, and only the raw line is drawn. */
static double smoothing_weight(size_t points) {
    if (points < 80) return 0;
    double span = (double)points / 40.0, w = 1.0 - 2.0 / (span + 1.0);
    return w > 0.99 ? 0.99 : w;
}

/* TensorBoard's smoothing of a scalar chart (its line chart's
 * resmoothDataset): an exponential moving average debiased as Adam's
 * moments are, last = w*last + (1-w)*v shown as last / (1 - w^k) after k
 * finite values, so that the start is not pulled towards 0. Non-finite
 * values pass through and do not enter the average; a constant series is
 * left as it is. */
static void ema_smooth(const double *v, size_t n, double w, double *out) {
    int constant = 1;
    for (size_t i = 1; i < n && constant; i++) constant = v[i] == v[0];
    double last = 0;
    int accumulated = 0;
    for (size_t i = 0; i < n; i++) {
        if (constant || !isfinite(v[i])) {
            out[i] = v[i];
            continue;
        }
        last = last * w + (1 - w) * v[i];
        accumulated++;
        out[i] = last / (1 - pow(w, accumulated));
    }
}

void sft_report_smooth(const double *v, size_t n, double w, double *out) { ema_smooth(v, n, w, out); }

static int arrays_build(const sft_curve *c, double smoothing, curve_arrays *a, sft_err *err) {
    memset(a, 0, sizeof *a);
    size_t n = c->train_count ? c->train_count : 1, m = c->eval_count ? c->eval_count : 1;
    double **train_arrays[] = {&a->step,         &a->loss, &a->smoothed, &a->grad,      &a->grad_clipped,
                               &a->lr,           &a->speed, &a->clip_step, &a->clip_grad};
    for (size_t i = 0; i < sizeof train_arrays / sizeof *train_arrays; i++)
        if (!(*train_arrays[i] = malloc(n * sizeof(double)))) return sft_errf(err, "out of memory");
    if (!(a->eval_step = malloc(m * sizeof(double))) || !(a->val = malloc(m * sizeof(double))))
        return sft_errf(err, "out of memory");
    a->n = c->train_count;
    a->eval_n = c->eval_count;
    for (size_t i = 0; i < a->n; i++) {
        const sft_train_point *p = &c->train[i];
        a->step[i] = (double)p->step;
        a->loss[i] = p->has & SFT_HAS_LOSS ? p->loss : NAN;
        a->grad[i] = p->has & SFT_HAS_GRAD_NORM ? p->grad_norm : NAN;
        a->grad_clipped[i] = p->has & SFT_HAS_GRAD_NORM_CLIPPED ? p->grad_norm_clipped : NAN;
        a->lr[i] = p->has & SFT_HAS_LR ? p->lr : NAN;
        a->speed[i] = p->has & SFT_HAS_TOKENS_PER_S ? p->tokens_per_s : NAN;
        a->has_grad |= isfinite(a->grad[i]);
        a->has_lr |= isfinite(a->lr[i]);
        a->has_speed |= isfinite(a->speed[i]) && a->speed[i] > 0;
        a->has_grad_clipped |= isfinite(a->grad_clipped[i]) && a->grad_clipped[i] != a->grad[i];
        if (sft_train_point_clip_known(p, c->max_grad_norm)) {
            a->clip_known++;
            if (sft_train_point_was_clipped(p, c->max_grad_norm)) {
                a->clip_step[a->clip_n] = a->step[i];
                a->clip_grad[a->clip_n++] = a->grad[i];
            }
        }
    }
    if (a->clip_n)
        snprintf(a->clip_label, sizeof a->clip_label, "clipped (%zu of %zu steps)", a->clip_n, a->clip_known);
    snprintf(a->threshold_label, sizeof a->threshold_label, "clipping threshold %.4g", c->max_grad_norm);
    a->smoothing = smoothing < 0 || a->n < 3 ? 0 : smoothing > 0 ? smoothing : smoothing_weight(a->n);
    if (a->smoothing >= 1) a->smoothing = 0.999;
    if (a->smoothing > 0) ema_smooth(a->loss, a->n, a->smoothing, a->smoothed);
    else memcpy(a->smoothed, a->loss, a->n * sizeof *a->loss);
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < a->eval_n; i++) {
        a->eval_step[i] = (double)c->eval[i].step;
        a->val[i] = c->eval[i].val_loss;
        if (isfinite(a->val[i]) && a->val[i] > 0) lo = fmin(lo, a->val[i]), hi = fmax(hi, a->val[i]);
    }
    for (size_t i = 0; i < a->n; i++)
        if (isfinite(a->loss[i]) && a->loss[i] > 0) lo = fmin(lo, a->loss[i]), hi = fmax(hi, a->loss[i]);
    a->log_loss = hi > 0 && hi / lo > LOG_LOSS_RATIO;
    return 0;
}

static void add_marks(sft_chart *ch, const sft_diagnosis *d) {
    if (d->has_best && ch->mark_count < SFT_CHART_MAX_MARKS)
        ch->marks[ch->mark_count++] = (sft_chart_mark){(double)d->best_step, COLOR_BEST, "best", "best validation loss", 1};
    for (size_t i = 0; i < d->finding_count && ch->mark_count < SFT_CHART_MAX_MARKS; i++) {
        const sft_finding *f = &d->findings[i];
        ch->marks[ch->mark_count++] =
            (sft_chart_mark){(double)f->step, severity_color(f->severity), f->kind, f->message, 0};
    }
}

typedef enum { CHART_LOSS, CHART_GRAD, CHART_LR, CHART_SPEED } chart_kind;

static void make_chart(chart_kind kind, const curve_arrays *a, const sft_curve *c, const sft_diagnosis *d,
                       sft_chart *ch) {
    memset(ch, 0, sizeof *ch);
    ch->width = 860;
    ch->height = kind == CHART_LOSS ? 340 : 260;
    ch->x_label = "step";
    switch (kind) {
    case CHART_LOSS:
        ch->title = a->log_loss ? "Loss (log scale)" : "Loss";
        ch->y_label = "loss (nats)";
        ch->log_y = a->log_loss;
        if (a->smoothing > 0) {
            ch->series[ch->series_count++] = (sft_chart_series){a->step, a->loss, a->n, COLOR_TRAIN, 1, 0.3, 0, "train (raw)"};
            ch->series[ch->series_count++] = (sft_chart_series){a->step, a->smoothed, a->n, COLOR_TRAIN, 2, 1, 0, "train (smoothed)"};
        } else {
            ch->series[ch->series_count++] = (sft_chart_series){a->step, a->loss, a->n, COLOR_TRAIN, 2, 1, 0, "train"};
        }
        if (a->eval_n)
            ch->series[ch->series_count++] = (sft_chart_series){a->eval_step, a->val, a->eval_n, COLOR_VAL, 2, 1, 1, "validation"};
        add_marks(ch, d);
        break;
    case CHART_GRAD: {
        ch->title = "Gradient norm";
        ch->y_label = "global L2 norm";
        /* After clipping underneath: where no clipping fired the two are
         * the same line, and the norm before clipping is the one to read. */
        if (a->has_grad_clipped)
            ch->series[ch->series_count++] =
                (sft_chart_series){a->step, a->grad_clipped, a->n, COLOR_GRAD_CLIPPED, 2.5, 0.5, 0, "after clipping"};
        ch->series[ch->series_count++] = (sft_chart_series){a->step, a->grad, a->n, COLOR_GRAD, 1.2, 1, 0, "before clipping"};
        if (a->clip_n)
            ch->series[ch->series_count++] =
                (sft_chart_series){a->clip_step, a->clip_grad, a->clip_n, COLOR_CLIPPED, 0, 1, 1, a->clip_label};
        if (c->max_grad_norm > 0) ch->hline_y = c->max_grad_norm, ch->hline_label = a->threshold_label;
        /* A wide range (an explosion) reads better on a log axis. */
        double lo = INFINITY, hi = 0;
        for (size_t i = 0; i < a->n; i++)
            if (isfinite(a->grad[i]) && a->grad[i] > 0) lo = a->grad[i] < lo ? a->grad[i] : lo, hi = a->grad[i] > hi ? a->grad[i] : hi;
        ch->log_y = hi > 0 && hi / lo > 50;
        for (size_t i = 0; i < d->finding_count && ch->mark_count < SFT_CHART_MAX_MARKS; i++) {
            const sft_finding *f = &d->findings[i];
            if (strcmp(f->kind, "exploding_gradients") && strcmp(f->kind, "frequent_clipping") &&
                strcmp(f->kind, "non_finite"))
                continue;
            ch->marks[ch->mark_count++] = (sft_chart_mark){(double)f->step, severity_color(f->severity), f->kind, f->message, 0};
        }
        break;
    }
    case CHART_LR:
        ch->title = "Learning rate";
        ch->y_label = "learning rate";
        ch->series[ch->series_count++] = (sft_chart_series){a->step, a->lr, a->n, COLOR_LR, 1.8, 1, 0, NULL};
        break;
    case CHART_SPEED:
        ch->title = "Throughput";
        ch->y_label = "tokens/s";
        ch->series[ch->series_count++] = (sft_chart_series){a->step, a->speed, a->n, COLOR_SPEED, 1.2, 1, 0, NULL};
        break;
    }
}

/* A file of the run dir, whole; NULL when it is not there. */
static char *run_file(const char *run_dir, const char *name, size_t *len) {
    char path[4096];
    sft_err ignored;
    if (sft_path_join(path, sizeof path, run_dir, name, &ignored) || !sft_file_exists(path)) return NULL;
    char *text = NULL;
    if (sft_read_file(path, &text, len, &ignored)) return NULL;
    return text;
}

static double run_yaml_max_grad_norm(const char *run_dir) {
    char path[4096];
    sft_err ignored;
    if (sft_path_join(path, sizeof path, run_dir, "run.yaml", &ignored) || !sft_file_exists(path)) return 0;
    sft_yaml_doc *doc = sft_yaml_load_file(path, &ignored);
    if (!doc) return 0;
    double value = 0;
    const sft_yaml_node *root = sft_yaml_root(doc);
    const sft_yaml_node *node = root && root->kind == SFT_YAML_MAPPING ? sft_yaml_get(root, "max_grad_norm") : NULL;
    if (node && node->kind == SFT_YAML_SCALAR && sft_yaml_scalar_number(node->value, &value)) value = 0;
    sft_yaml_free(doc);
    return value > 0 && isfinite(value) ? value : 0;
}

/* A string member of a sample, or NULL. */
static const char *sample_text(json_t *j, const char *const *keys) {
    for (; *keys; keys++) {
        const char *v = json_string_value(json_object_get(j, *keys));
        if (v) return v;
    }
    return NULL;
}

/* samples.jsonl (report.h): each sample as prompt / output / reference,
 * under its step; the latest SAMPLES_SHOWN (the trainer appends a few at
 * every evaluation: the newest say most), the earlier ones counted. */
#define SAMPLES_SHOWN 60
static void write_samples(FILE *f, const char *text, size_t len) {
    static const char *const prompt_keys[] = {"prompt", NULL};
    static const char *const output_keys[] = {"output", "response", "completion", NULL};
    static const char *const reference_keys[] = {"reference", NULL};
    size_t earlier = 0, line = 0, lines = 0;
    for (size_t at = 0; at < len; at++) lines += text[at] == '\n' || (at + 1 == len);
    size_t first_line = lines > SAMPLES_SHOWN ? lines - SAMPLES_SHOWN + 1 : 1;
    fputs("<h2>Sample generations</h2>\n", f);
    for (size_t at = 0; at < len;) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        size_t start = at;
        at = end + 1;
        line++;
        while (start < end && (text[start] == ' ' || text[start] == '\t' || text[start] == '\r')) start++;
        if (start == end) continue;
        sft_err parse_err;
        json_t *j = sft_json_loadb(text + start, end - start, "samples.jsonl", &parse_err);
        const char *prompt = json_is_object(j) ? sample_text(j, prompt_keys) : NULL;
        const char *output = json_is_object(j) ? sample_text(j, output_keys) : NULL;
        if (!prompt || !output) {
            fprintf(f, "<p class=\"meta\">samples.jsonl line %zu skipped: ", line);
            if (!j) html_text(f, parse_err.msg);
            else html_text(f, "expected an object with string members \"prompt\" and \"output\"");
            fputs("</p>\n", f);
            json_decref(j);
            continue;
        }
        if (line < first_line) {
            earlier++;
            json_decref(j);
            continue;
        }
        const char *reference = sample_text(j, reference_keys);
        double step;
        fputs("<div class=\"sample\">", f);
        if (!sft_json_number(json_object_get(j, "step"), &step)) fprintf(f, "<p class=\"meta\">step %.0f</p>", step);
        fputs("<table class=\"sample\"><tr><th>prompt</th><td><pre>", f);
        html_text(f, prompt);
        fputs("</pre></td></tr>\n<tr><th>output</th><td><pre>", f);
        html_text(f, output);
        fputs("</pre></td></tr>\n", f);
        if (reference) {
            fprintf(f, "<tr><th>reference</th><td><pre%s>", strcmp(reference, output) ? "" : " class=\"match\"");
            html_text(f, reference);
            fputs("</pre></td></tr>\n", f);
        }
        fputs("</table></div>\n", f);
        json_decref(j);
    }
    if (earlier) fprintf(f, "<p class=\"meta\">%zu earlier samples in samples.jsonl, not shown</p>\n", earlier);
}

static const char *css =
    "body{font-family:sans-serif;max-width:920px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}"
    "h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}"
    ".verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}"
    ".healthy{background:#2ca02c}.warning{background:#e08a00}.failing{background:#d62728}"
    "table{border-collapse:collapse}td{padding:2px 14px 2px 0;vertical-align:top}td:first-child{color:#666}"
    ".finding{border-left:4px solid #999;padding:4px 10px;margin:10px 0;background:#fafafa}"
    ".finding.critical{border-color:#d62728}.finding.warning{border-color:#e08a00}.finding p{margin:4px 0}"
    ".advice{color:#444}.meta{color:#777;font-size:13px;margin:2px 0}"
    "pre{background:#f6f6f6;padding:8px;overflow-x:auto;white-space:pre-wrap;font-size:12px}"
    ".sample{margin:10px 0}table.sample{width:100%;table-layout:fixed}table.sample th{width:80px;text-align:left;"
    "vertical-align:top;color:#666;font-weight:normal;padding:8px 8px 0 0}table.sample pre{margin:2px 0}"
    "pre.match{background:#eaf6ea}figure{margin:12px 0}footer{color:#999;font-size:12px;margin-top:32px}"
    ".best{font-weight:bold}table.runs td,table.runs th{padding:2px 14px 2px 0;text-align:left}"
    "table.runs th{color:#666;font-weight:normal;border-bottom:1px solid #ddd}";

/* The page opens as HTML5 that is also well-formed XML (the XHTML
 * namespace, every element closed), so that an XML parser can check it. */
static const char *html_head = "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
                               "<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width\"/>\n"
                               "<title>sft report: ";

static void write_html(FILE *f, const char *name, const sft_curve *c, const sft_diagnosis *d, const curve_arrays *a,
                       const char *run_dir, int png) {
    fputs(html_head, f);
    html_text(f, name);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", css);
    html_text(f, name);
    fprintf(f, "</h1>\n<p><span class=\"verdict %s\">%s</span></p>\n<table>\n", d->verdict, d->verdict);
    fprintf(f, "<tr><td>source</td><td>%s</td></tr>\n", c->source);
    if (a->n)
        fprintf(f, "<tr><td>training points</td><td>%zu (steps %lld to %lld)</td></tr>\n", a->n,
                (long long)c->train[0].step, (long long)c->train[a->n - 1].step);
    fprintf(f, "<tr><td>evaluations</td><td>%zu</td></tr>\n", a->eval_n);
    if (d->has_best)
        fprintf(f, "<tr><td>best step</td><td>%lld (validation loss %.4g)</td></tr>\n", (long long)d->best_step,
                d->best_val_loss);
    else fputs("<tr><td>best step</td><td>none (no validation loss)</td></tr>\n", f);
    for (size_t i = a->n; i-- > 0;)
        if (isfinite(a->smoothed[i])) {
            fprintf(f, "<tr><td>final training loss</td><td>%.4g", a->loss[i]);
            if (a->smoothing > 0) fprintf(f, " (smoothed %.4g)", a->smoothed[i]);
            fputs("</td></tr>\n", f);
            break;
        }
    if (a->eval_n) fprintf(f, "<tr><td>final validation loss</td><td>%.4g</td></tr>\n", a->val[a->eval_n - 1]);
    if (a->n && (c->train[a->n - 1].has & SFT_HAS_ELAPSED))
        fprintf(f, "<tr><td>training time</td><td>%.1f s</td></tr>\n", c->train[a->n - 1].elapsed_s);
    if (c->max_grad_norm > 0) fprintf(f, "<tr><td>max grad norm</td><td>%.4g</td></tr>\n", c->max_grad_norm);
    if (a->clip_known)
        fprintf(f, "<tr><td>clipped steps</td><td>%zu of %zu (%.0f%%)</td></tr>\n", a->clip_n, a->clip_known,
                100.0 * (double)a->clip_n / (double)a->clip_known);
    if (a->smoothing > 0)
        fprintf(f, "<tr><td>smoothing</td><td>exponential moving average, weight %.3g (as TensorBoard's slider)</td>"
                   "</tr>\n", a->smoothing);
    fputs("</table>\n<h2>Findings</h2>\n", f);
    if (!d->finding_count) fputs("<p>None: the curves look like a healthy run.</p>\n", f);
    for (int sev = SFT_SEVERITY_CRITICAL; sev >= SFT_SEVERITY_INFO; sev--)
    for (size_t i = 0; i < d->finding_count; i++) {
        const sft_finding *x = &d->findings[i];
        if ((int)x->severity != sev) continue;
        fprintf(f, "<div class=\"finding %s\"><p><b>%s</b> (%s) at step %lld", sft_severity_name(x->severity), x->kind,
                sft_severity_name(x->severity), (long long)x->step);
        if (x->end_step != x->step) fprintf(f, " to %lld", (long long)x->end_step);
        fputs("</p><p>", f);
        html_text(f, x->message);
        fputs("</p><p class=\"advice\">", f);
        html_text(f, x->advice);
        fputs("</p>", f);
        if (x->records[0]) fputs("<p class=\"meta\">records: ", f), html_text(f, x->records), fputs("</p>", f);
        fputs("</div>\n", f);
    }
    fputs("<h2>Curves</h2>\n", f);
    chart_kind kinds[] = {CHART_LOSS, CHART_GRAD, CHART_LR, CHART_SPEED};
    for (size_t k = 0; k < 4; k++) {
        sft_chart ch;
        make_chart(kinds[k], a, c, d, &ch);
        if (!sft_chart_has_data(&ch)) continue;
        fputs("<figure>\n", f);
        sft_chart_svg(f, &ch);
        fputs("</figure>\n", f);
    }
    if (png) fputs("<p class=\"meta\">PNG charts: <a href=\"loss.png\">loss.png</a>, <a href=\"grad_norm.png\">"
                   "grad_norm.png</a>, <a href=\"lr.png\">lr.png</a></p>\n", f);
    size_t len;
    char *text;
    if ((text = run_file(run_dir, "run.yaml", &len))) {
        fputs("<h2>Configuration (run.yaml)</h2>\n<pre>", f);
        html_escape(f, text, len);
        fputs("</pre>\n", f);
        free(text);
    }
    if ((text = run_file(run_dir, "manifest.json", &len))) {
        fputs("<h2>Manifest</h2>\n<pre>", f);
        html_escape(f, text, len);
        fputs("</pre>\n", f);
        free(text);
    }
    if ((text = run_file(run_dir, "samples.jsonl", &len))) {
        write_samples(f, text, len);
        free(text);
    }
    fputs("<footer>Written by sft report. Hover a marker for its finding.</footer>\n</body>\n</html>\n", f);
}

/* Writes html_len bytes of the page to out_path and the PNGs beside it. */
static int write_run_report(const char *path, const char *run_dir, const char *out_dir, const char *out_path,
                            const sft_report_options *o, sft_err *err) {
    int png = o ? o->png : 1;
    sft_curve c;
    sft_curve_init(&c);
    sft_diagnosis d;
    sft_diagnosis_init(&d);
    curve_arrays a = {0};
    char *html = NULL;
    size_t html_len = 0;
    int rc = -1;
    if (sft_curve_read(path, &c, err)) goto done;
    if (!c.max_grad_norm) c.max_grad_norm = run_yaml_max_grad_norm(run_dir);
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    if (sft_diagnose(&c, &cfg, &d, err) || arrays_build(&c, o ? o->smoothing : 0, &a, err)) goto done;
    if (sft_mkdir_p(out_dir, err)) goto done;
    char png_path[4096];
    if (png) {
        static const struct {
            chart_kind kind;
            const char *file;
        } pngs[] = {{CHART_LOSS, "loss.png"}, {CHART_GRAD, "grad_norm.png"}, {CHART_LR, "lr.png"}};
        for (size_t i = 0; i < 3; i++) {
            sft_chart ch;
            make_chart(pngs[i].kind, &a, &c, &d, &ch);
            if (sft_path_join(png_path, sizeof png_path, out_dir, pngs[i].file, err) ||
                sft_chart_png(png_path, &ch, err))
                goto done;
        }
    }
    FILE *mem = open_memstream(&html, &html_len);
    if (!mem) {
        sft_err_errno(err, "open_memstream");
        goto done;
    }
    char name[4096];
    snprintf(name, sizeof name, "%s", path);
    size_t nl = strlen(name);
    while (nl > 1 && name[nl - 1] == '/') name[--nl] = 0;
    write_html(mem, name, &c, &d, &a, run_dir, png);
    if (fclose(mem)) {
        sft_errf(err, "out of memory writing the report");
        goto done;
    }
    if (sft_write_file_atomic(out_path, html, html_len, err)) goto done;
    rc = 0;
done:
    free(html);
    arrays_free(&a);
    sft_diagnosis_free(&d);
    sft_curve_free(&c);
    return rc;
}

/* The folder part of a path ("." for a bare name). */
static void parent_dir(const char *path, char *out, size_t cap) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(out, cap, "%s", dirname(copy));
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A sweep dir (SPEC.md: SWEEP/trials/NAME/ are run dirs): its trials, sorted
 * by name. Returns the count (0: not a sweep), -1 on error. */
static int sweep_trials(const char *dir, char ***names_out, sft_err *err) {
    char trials[4096];
    *names_out = NULL;
    if (sft_path_join(trials, sizeof trials, dir, "trials", err)) return -1;
    if (!sft_dir_exists(trials)) return 0;
    DIR *d = opendir(trials);
    if (!d) return sft_err_errno(err, trials);
    char **names = NULL;
    int count = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char sub[4096];
        if (e->d_name[0] == '.' || sft_path_join(sub, sizeof sub, trials, e->d_name, err) || !sft_dir_exists(sub))
            continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, (size_t)cap * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        if (!(names[count] = strdup(sub))) break;
        count++;
    }
    closedir(d);
    if (e) {
        for (int i = 0; i < count; i++) free(names[i]);
        free(names);
        return sft_errf(err, "out of memory");
    }
    qsort(names, (size_t)count, sizeof *names, compare_names);
    *names_out = names;
    return count;
}

int sft_report_write(const char *path, const sft_report_options *o, char *html_path, size_t cap, sft_err *err) {
    char run_dir[4096], out_dir[4096], out_path[4096];
    int is_dir = sft_dir_exists(path);
    if (is_dir) snprintf(run_dir, sizeof run_dir, "%s", path);
    else parent_dir(path, run_dir, sizeof run_dir);
    if (o && o->out_html) {
        snprintf(out_path, sizeof out_path, "%s", o->out_html);
        parent_dir(o->out_html, out_dir, sizeof out_dir);
    } else {
        snprintf(out_dir, sizeof out_dir, "%s", o && o->out_dir ? o->out_dir : run_dir);
        if (sft_path_join(out_path, sizeof out_path, out_dir, "report.html", err)) return -1;
    }
    char **trials = NULL;
    int trial_count = is_dir ? sweep_trials(path, &trials, err) : 0;
    if (trial_count < 0) return -1;
    int rc;
    if (trial_count > 0) {
        sft_report_run *runs = calloc((size_t)trial_count, sizeof *runs);
        if (!runs) rc = sft_errf(err, "out of memory");
        else {
            for (int i = 0; i < trial_count; i++) runs[i].path = trials[i];
            if (sft_mkdir_p(out_dir, err)) rc = -1;
            else rc = sft_report_compare_write(runs, (size_t)trial_count, path, out_path, o ? o->png : 1, err);
            free(runs);
        }
        for (int i = 0; i < trial_count; i++) free(trials[i]);
        free(trials);
    } else {
        rc = write_run_report(path, run_dir, out_dir, out_path, o, err);
    }
    if (rc) return -1;
    if (html_path) snprintf(html_path, cap, "%s", out_path);
    return 0;
}

/* ---------------------------------------------------------- comparison */

typedef struct {
    char name[256];
    sft_curve curve;
    sft_diagnosis diagnosis;
    curve_arrays arrays;
    double final_train_loss; /* the last smoothed training loss */
} compared_run;

static void run_name(const char *path, char *out, size_t cap) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    snprintf(out, cap, "%s", basename(copy));
}

/* Table order: as given, or by best validation loss (runs without one last). */
static const compared_run *sort_base;
static int by_val_loss(const void *a, const void *b) {
    const sft_diagnosis *x = &sort_base[*(const size_t *)a].diagnosis, *y = &sort_base[*(const size_t *)b].diagnosis;
    if (x->has_best != y->has_best) return x->has_best ? -1 : 1;
    if (x->has_best && x->best_val_loss != y->best_val_loss) return x->best_val_loss < y->best_val_loss ? -1 : 1;
    return (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

static void write_compare_html(FILE *f, const char *title, compared_run *runs, size_t n, int best, const sft_chart *val,
                               const sft_chart *train, const sft_report_compare_options *o) {
    int png = o->png;
    fputs(html_head, f);
    html_text(f, title);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", css);
    html_text(f, title);
    fputs("</h1>\n", f);
    if (best >= 0) {
        fputs("<p>Best run: <b>", f);
        html_text(f, runs[best].name);
        fprintf(f, "</b>, validation loss %.4g at step %lld.</p>\n", runs[best].diagnosis.best_val_loss,
                (long long)runs[best].diagnosis.best_step);
    } else if (o->chosen && !*o->chosen) {
        fputs("<p>No run qualified: no best run.</p>\n", f);
    } else {
        fputs("<p>No run recorded a validation loss: no best run.</p>\n", f);
    }
    if (o->advice_count) {
        fputs("<h2>Advice</h2>\n<ul class=\"advice\">\n", f);
        for (size_t k = 0; k < o->advice_count; k++) {
            fputs("<li>", f);
            html_text(f, o->advice[k]);
            fputs("</li>\n", f);
        }
        fputs("</ul>\n", f);
    }
    size_t order[n ? n : 1];
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (o->sort_by_val_loss) {
        sort_base = runs;
        qsort(order, n, sizeof *order, by_val_loss);
    }
    int with_status = 0;
    for (size_t i = 0; o->status && i < n; i++) with_status |= o->status[i] != NULL;
    fprintf(f, "<table class=\"runs\">\n<tr><th>run</th><th>best validation loss</th><th>best step</th>"
               "<th>final training loss (smoothed)</th><th>verdict</th><th>findings</th>%s</tr>\n",
            with_status ? "<th>status</th>" : "");
    for (size_t oi = 0; oi < n; oi++) {
        size_t i = order[oi];
        const compared_run *r = &runs[i];
        fprintf(f, "<tr%s><td>", (int)i == best ? " class=\"best\"" : "");
        html_text(f, r->name);
        if (r->diagnosis.has_best)
            fprintf(f, "</td><td>%.4g</td><td>%lld</td>", r->diagnosis.best_val_loss, (long long)r->diagnosis.best_step);
        else fputs("</td><td>-</td><td>-</td>", f);
        if (isfinite(r->final_train_loss)) fprintf(f, "<td>%.4g</td>", r->final_train_loss);
        else fputs("<td>-</td>", f);
        fprintf(f, "<td><span class=\"verdict %s\">%s</span></td><td>", r->diagnosis.verdict, r->diagnosis.verdict);
        for (size_t k = 0, shown = 0; k < r->diagnosis.finding_count; k++) {
            const sft_finding *x = &r->diagnosis.findings[k];
            int repeat = 0;
            for (size_t j = 0; j < k; j++) repeat |= !strcmp(r->diagnosis.findings[j].kind, x->kind);
            if (repeat) continue;
            fprintf(f, "%s<span title=\"", shown++ ? ", " : "");
            html_text(f, x->message);
            fprintf(f, "\">%s</span>", x->kind);
        }
        fputs("</td>", f);
        if (with_status) {
            fputs("<td>", f);
            if (o->status[i]) html_text(f, o->status[i]);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n<h2>Curves</h2>\n", f);
    const sft_chart *charts[] = {val, train};
    for (int k = 0; k < 2; k++) {
        if (!sft_chart_has_data(charts[k])) continue;
        fputs("<figure>\n", f);
        sft_chart_svg(f, charts[k]);
        fputs("</figure>\n", f);
    }
    if (png && sft_chart_has_data(val)) fputs("<p class=\"meta\">PNG chart: <a href=\"val_loss.png\">val_loss.png</a></p>\n", f);
    fputs("<footer>Written by sft report. Each run has its own report.html in its run dir.</footer>\n</body>\n</html>\n", f);
}

int sft_report_compare_write(const sft_report_run *in, size_t n, const char *title, const char *out_html, int png,
                             sft_err *err) {
    sft_report_compare_options o = {.title = title, .png = png};
    return sft_report_compare_write_opts(in, n, &o, out_html, err);
}

int sft_report_compare_write_opts(const sft_report_run *in, size_t n, const sft_report_compare_options *o,
                                  const char *out_html, sft_err *err) {
    const char *title = o->title;
    int png = o->png;
    if (!n) return sft_errf(err, "%s: no runs to compare", out_html);
    compared_run *runs = calloc(n, sizeof *runs);
    sft_chart_curve *val_curves = calloc(n, sizeof *val_curves), *train_curves = calloc(n, sizeof *train_curves);
    char *html = NULL;
    size_t html_len = 0;
    int rc = -1, best = -1;
    if (!runs || !val_curves || !train_curves) {
        sft_errf(err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        sft_curve_init(&runs[i].curve);
        sft_diagnosis_init(&runs[i].diagnosis);
    }
    int log_val = 0, log_train = 0;
    for (size_t i = 0; i < n; i++) {
        compared_run *r = &runs[i];
        if (in[i].name) snprintf(r->name, sizeof r->name, "%s", in[i].name);
        else run_name(in[i].path, r->name, sizeof r->name);
        sft_diagnose_config cfg;
        sft_diagnose_config_default(&cfg);
        if (sft_curve_read(in[i].path, &r->curve, err) || sft_diagnose(&r->curve, &cfg, &r->diagnosis, err) ||
            arrays_build(&r->curve, 0, &r->arrays, err)) {
            sft_err_prefix(err, "run %s", r->name);
            goto done;
        }
        r->final_train_loss = NAN;
        for (size_t k = r->arrays.n; k-- > 0;)
            if (isfinite(r->arrays.smoothed[k])) {
                r->final_train_loss = r->arrays.smoothed[k];
                break;
            }
        if (o->chosen) {
            if (!strcmp(o->chosen, r->name)) best = (int)i;
        } else if (r->diagnosis.has_best &&
                   (best < 0 || r->diagnosis.best_val_loss < runs[best].diagnosis.best_val_loss)) {
            best = (int)i;
        }
        val_curves[i] = (sft_chart_curve){r->name, r->arrays.eval_step, r->arrays.val, r->arrays.eval_n};
        train_curves[i] = (sft_chart_curve){r->name, r->arrays.step, r->arrays.smoothed, r->arrays.n};
        log_train |= r->arrays.log_loss;
    }
    /* One axis for all runs: log when the validation losses together span
     * more than LOG_LOSS_RATIO (a diverged learning rate next to good ones). */
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < runs[i].arrays.eval_n; k++) {
            double v = runs[i].arrays.val[k];
            if (isfinite(v) && v > 0) lo = fmin(lo, v), hi = fmax(hi, v);
        }
    log_val = hi > 0 && hi / lo > LOG_LOSS_RATIO;
    sft_chart val = {.title = log_val ? "Validation loss (log scale)" : "Validation loss", .x_label = "step",
                     .y_label = "validation loss (nats)", .log_y = log_val, .width = 860, .height = 360};
    sft_chart_overlay(&val, val_curves, (int)n);
    char best_label[300];
    if (best >= 0 && best < val.series_count && val.mark_count < SFT_CHART_MAX_MARKS) {
        snprintf(best_label, sizeof best_label, "best: %s", runs[best].name);
        val.marks[val.mark_count++] = (sft_chart_mark){(double)runs[best].diagnosis.best_step,
                                                       val.series[best].color, best_label, best_label, 1};
    }
    sft_chart train = {.title = log_train ? "Training loss, smoothed (log scale)" : "Training loss, smoothed",
                       .x_label = "step", .y_label = "training loss (nats)", .log_y = log_train, .width = 860,
                       .height = 320};
    sft_chart_overlay(&train, train_curves, (int)n);
    for (int s = 0; s < train.series_count; s++) train.series[s].points = 0;
    char out_dir[4096], png_path[4096];
    parent_dir(out_html, out_dir, sizeof out_dir);
    if (sft_mkdir_p(out_dir, err)) goto done;
    if (png && sft_chart_has_data(&val) &&
        (sft_path_join(png_path, sizeof png_path, out_dir, "val_loss.png", err) || sft_chart_png(png_path, &val, err)))
        goto done;
    FILE *mem = open_memstream(&html, &html_len);
    if (!mem) {
        sft_err_errno(err, "open_memstream");
        goto done;
    }
    write_compare_html(mem, title ? title : "sft sweep", runs, n, best, &val, &train, o);
    if (fclose(mem)) {
        sft_errf(err, "out of memory writing the report");
        goto done;
    }
    if (sft_write_file_atomic(out_html, html, html_len, err)) goto done;
    rc = 0;
done:
    free(html);
    for (size_t i = 0; runs && i < n; i++) {
        arrays_free(&runs[i].arrays);
        sft_diagnosis_free(&runs[i].diagnosis);
        sft_curve_free(&runs[i].curve);
    }
    free(runs);
    free(val_curves);
    free(train_curves);
    return rc;
}
