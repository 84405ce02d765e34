/* report.c: report.html and the PNG charts of a run (see report.h). */
#include "monitor/report.h"

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

static void html_escape(FILE *f, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case 0: fputs("\xEF\xBF\xBD", f); break;
        default: fputc(s[i], f);
        }
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
    int has_grad, has_grad_clipped, has_lr, has_speed;
    size_t smoothing; /* half-width of the moving average, 0: none */
} curve_arrays;

static void arrays_free(curve_arrays *a) {
    free(a->step), free(a->loss), free(a->smoothed), free(a->grad), free(a->grad_clipped);
    free(a->lr), free(a->speed), free(a->eval_step), free(a->val);
}

static int arrays_build(const sft_curve *c, curve_arrays *a, sft_err *err) {
    memset(a, 0, sizeof *a);
    size_t n = c->train_count ? c->train_count : 1, m = c->eval_count ? c->eval_count : 1;
    double **train_arrays[] = {&a->step, &a->loss, &a->smoothed, &a->grad, &a->grad_clipped, &a->lr, &a->speed};
    for (size_t i = 0; i < sizeof train_arrays / sizeof *train_arrays; i++)
        if (!(*train_arrays[i] = malloc(n * sizeof(double)))) return sft_errf(err, "out of memory");
    if (!(a->eval_step = malloc(m * sizeof(double))) || !(a->val = malloc(m * sizeof(double))))
        return sft_errf(err, "out of memory");
    a->n = c->train_count;
    a->eval_n = c->eval_count;
    /* Smoothing: a centered moving average over about 4% of the run, so the
     * smoothed line does not lag the fast early fall as an EMA would. */
    size_t half = a->n / 50;
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
    }
    for (size_t i = 0; i < a->n; i++) {
        size_t lo = i > half ? i - half : 0, hi = i + half < a->n ? i + half : a->n - 1, count = 0;
        double sum = 0;
        for (size_t k = lo; k <= hi; k++)
            if (isfinite(a->loss[k])) sum += a->loss[k], count++;
        a->smoothed[i] = isfinite(a->loss[i]) && count ? sum / (double)count : NAN;
    }
    a->smoothing = half;
    for (size_t i = 0; i < a->eval_n; i++) {
        a->eval_step[i] = (double)c->eval[i].step;
        a->val[i] = c->eval[i].val_loss;
    }
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
        ch->title = "Loss";
        ch->y_label = "loss (nats)";
        if (a->smoothing) {
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
        ch->series[ch->series_count++] = (sft_chart_series){a->step, a->grad, a->n, COLOR_GRAD, 1.2, 1, 0, "before clipping"};
        if (a->has_grad_clipped)
            ch->series[ch->series_count++] =
                (sft_chart_series){a->step, a->grad_clipped, a->n, COLOR_GRAD_CLIPPED, 1.2, 0.8, 0, "after clipping"};
        if (c->max_grad_norm > 0) ch->hline_y = c->max_grad_norm, ch->hline_label = "clipping threshold";
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

static void write_samples(FILE *f, const char *text, size_t len) {
    int shown = 0;
    fputs("<h2>Sample generations</h2>\n", f);
    for (size_t at = 0; at < len && shown < 20;) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        sft_err ignored;
        json_t *j = end > at ? sft_json_loadb(text + at, end - at, "samples.jsonl", &ignored) : NULL;
        at = end + 1;
        if (!json_is_object(j)) {
            json_decref(j);
            continue;
        }
        const char *prompt = json_string_value(json_object_get(j, "prompt"));
        const char *response = json_string_value(json_object_get(j, "response"));
        if (!response) response = json_string_value(json_object_get(j, "completion"));
        double step;
        fputs("<div class=\"sample\">", f);
        if (!sft_json_number(json_object_get(j, "step"), &step)) fprintf(f, "<p class=\"meta\">step %.0f</p>", step);
        if (prompt) fputs("<p class=\"meta\">prompt</p><pre>", f), html_text(f, prompt), fputs("</pre>", f);
        if (response) fputs("<p class=\"meta\">response</p><pre>", f), html_text(f, response), fputs("</pre>", f);
        fputs("</div>\n", f);
        json_decref(j);
        shown++;
    }
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
    ".sample{margin:10px 0}figure{margin:12px 0}footer{color:#999;font-size:12px;margin-top:32px}";

static void write_html(FILE *f, const char *name, const sft_curve *c, const sft_diagnosis *d, const curve_arrays *a,
                       const char *run_dir, int png) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>sft report: ", f);
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
            if (a->smoothing) fprintf(f, " (smoothed %.4g)", a->smoothed[i]);
            fputs("</td></tr>\n", f);
            break;
        }
    if (a->eval_n) fprintf(f, "<tr><td>final validation loss</td><td>%.4g</td></tr>\n", a->val[a->eval_n - 1]);
    if (a->n && (c->train[a->n - 1].has & SFT_HAS_ELAPSED))
        fprintf(f, "<tr><td>training time</td><td>%.1f s</td></tr>\n", c->train[a->n - 1].elapsed_s);
    if (c->max_grad_norm > 0) fprintf(f, "<tr><td>max grad norm</td><td>%.4g</td></tr>\n", c->max_grad_norm);
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

int sft_report_write(const char *path, const sft_report_options *o, char *html_path, size_t cap, sft_err *err) {
    char run_dir[4096];
    if (sft_dir_exists(path)) snprintf(run_dir, sizeof run_dir, "%s", path);
    else {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", path);
        snprintf(run_dir, sizeof run_dir, "%s", dirname(copy));
    }
    const char *out_dir = o && o->out_dir ? o->out_dir : run_dir;
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
    if (sft_diagnose(&c, &cfg, &d, err) || arrays_build(&c, &a, err)) goto done;
    if (sft_mkdir_p(out_dir, err)) goto done;
    char out_path[4096];
    if (png) {
        static const struct {
            chart_kind kind;
            const char *file;
        } pngs[] = {{CHART_LOSS, "loss.png"}, {CHART_GRAD, "grad_norm.png"}, {CHART_LR, "lr.png"}};
        for (size_t i = 0; i < 3; i++) {
            sft_chart ch;
            make_chart(pngs[i].kind, &a, &c, &d, &ch);
            if (sft_path_join(out_path, sizeof out_path, out_dir, pngs[i].file, err) ||
                sft_chart_png(out_path, &ch, err))
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
    if (sft_path_join(out_path, sizeof out_path, out_dir, "report.html", err) ||
        sft_write_file_atomic(out_path, html, html_len, err))
        goto done;
    if (html_path) snprintf(html_path, cap, "%s", out_path);
    rc = 0;
done:
    free(html);
    arrays_free(&a);
    sft_diagnosis_free(&d);
    sft_curve_free(&c);
    return rc;
}
