/* chart.c: the layout of a line chart and its SVG and cairo renderings
 * (see chart.h). */
#include "monitor/chart.h"

#include <cairo/cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

/* Text in the PNGs goes through cairo's toy API to fontconfig, which keeps
 * some allocations of its configuration until exit without a pointer
 * LeakSanitizer can see. Sanitizer builds (gcc and clang define
 * __SANITIZE_ADDRESS__ / have __has_feature(address_sanitizer)) leave them
 * out of the leak report, and only them. */
#if defined(__SANITIZE_ADDRESS__)
#define SFT_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SFT_LSAN 1
#endif
#endif
#ifdef SFT_LSAN
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
/* Quiet about it: tests read the programs' stderr. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }
#endif

/* ---- drawing backends ---------------------------------------------------------- */

typedef struct canvas canvas;
struct canvas {
    void (*line)(canvas *cv, double x1, double y1, double x2, double y2, const char *color, double width, int dashed);
    /* A polyline; n >= 2. */
    void (*path)(canvas *cv, const double *xs, const double *ys, size_t n, const char *color, double width,
                 double opacity);
    void (*dot)(canvas *cv, double x, double y, double r, const char *color);
    /* anchor: -1 start, 0 middle, 1 end; rotated: -90 degrees. */
    void (*text)(canvas *cv, double x, double y, const char *s, int anchor, double size, const char *color, int rotated);
    void (*rect)(canvas *cv, double x, double y, double w, double h, const char *fill);
    /* Group with a tooltip around the next marks (SVG only). */
    void (*begin_tooltip)(canvas *cv, const char *tooltip);
    void (*end_tooltip)(canvas *cv);
    FILE *svg;
    cairo_t *cr;
};

static void svg_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void svg_line(canvas *cv, double x1, double y1, double x2, double y2, const char *color, double width,
                     int dashed) {
    fprintf(cv->svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.2g\"%s/>\n",
            x1, y1, x2, y2, color, width, dashed ? " stroke-dasharray=\"5,4\"" : "");
}

static void svg_path(canvas *cv, const double *xs, const double *ys, size_t n, const char *color, double width,
                     double opacity) {
    fputs("<polyline fill=\"none\" points=\"", cv->svg);
    for (size_t i = 0; i < n; i++) fprintf(cv->svg, "%s%.1f,%.1f", i ? " " : "", xs[i], ys[i]);
    fprintf(cv->svg, "\" stroke=\"%s\" stroke-width=\"%.2g\" stroke-opacity=\"%.2g\" stroke-linejoin=\"round\"/>\n",
            color, width, opacity);
}

static void svg_dot(canvas *cv, double x, double y, double r, const char *color) {
    fprintf(cv->svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n", x, y, r, color);
}

static void svg_text(canvas *cv, double x, double y, const char *s, int anchor, double size, const char *color,
                     int rotated) {
    const char *a = anchor < 0 ? "start" : anchor > 0 ? "end" : "middle";
    fprintf(cv->svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"%s\" text-anchor=\"%s\"", x, y, size,
            color, a);
    if (rotated) fprintf(cv->svg, " transform=\"rotate(-90 %.1f %.1f)\"", x, y);
    fputc('>', cv->svg);
    svg_escape(cv->svg, s);
    fputs("</text>\n", cv->svg);
}

static void svg_rect(canvas *cv, double x, double y, double w, double h, const char *fill) {
    fprintf(cv->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x, y, w, h, fill);
}

static void svg_begin_tooltip(canvas *cv, const char *tooltip) {
    fputs("<g><title>", cv->svg);
    svg_escape(cv->svg, tooltip);
    fputs("</title>\n", cv->svg);
}

static void svg_end_tooltip(canvas *cv) { fputs("</g>\n", cv->svg); }

static void cairo_color(cairo_t *cr, const char *hex, double alpha) {
    unsigned r = 0, g = 0, b = 0;
    if (hex && hex[0] == '#' && strlen(hex) == 7) sscanf(hex + 1, "%2x%2x%2x", &r, &g, &b);
    cairo_set_source_rgba(cr, r / 255.0, g / 255.0, b / 255.0, alpha);
}

static void cr_line(canvas *cv, double x1, double y1, double x2, double y2, const char *color, double width,
                    int dashed) {
    cairo_t *cr = cv->cr;
    static const double dash[] = {5, 4};
    cairo_set_dash(cr, dash, dashed ? 2 : 0, 0);
    cairo_color(cr, color, 1);
    cairo_set_line_width(cr, width);
    cairo_move_to(cr, x1, y1);
    cairo_line_to(cr, x2, y2);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

static void cr_path(canvas *cv, const double *xs, const double *ys, size_t n, const char *color, double width,
                    double opacity) {
    cairo_t *cr = cv->cr;
    cairo_color(cr, color, opacity);
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_move_to(cr, xs[0], ys[0]);
    for (size_t i = 1; i < n; i++) cairo_line_to(cr, xs[i], ys[i]);
    cairo_stroke(cr);
}

static void cr_dot(canvas *cv, double x, double y, double r, const char *color) {
    cairo_color(cv->cr, color, 1);
    cairo_arc(cv->cr, x, y, r, 0, 2 * M_PI);
    cairo_fill(cv->cr);
}

static void cr_text(canvas *cv, double x, double y, const char *s, int anchor, double size, const char *color,
                    int rotated) {
    cairo_t *cr = cv->cr;
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    cairo_text_extents_t ext;
    cairo_text_extents(cr, s, &ext);
    double shift = anchor < 0 ? 0 : anchor > 0 ? ext.x_advance : ext.x_advance / 2;
    cairo_color(cr, color, 1);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (rotated) cairo_rotate(cr, -M_PI / 2);
    cairo_move_to(cr, -shift, 0);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

static void cr_rect(canvas *cv, double x, double y, double w, double h, const char *fill) {
    cairo_color(cv->cr, fill, 1);
    cairo_rectangle(cv->cr, x, y, w, h);
    cairo_fill(cv->cr);
}

static void cr_nothing(canvas *cv, const char *tooltip) { (void)cv, (void)tooltip; }
static void cr_end_nothing(canvas *cv) { (void)cv; }

/* ---- layout ------------------------------------------------------------------------- */

typedef struct {
    double left, right, top, bottom; /* plot area in pixels */
    double x0, x1, y0, y1;           /* data range (y in log10 when log_y) */
    int log_y;
} frame;

static int usable(const sft_chart *c, double y) { return isfinite(y) && (!c->log_y || y > 0); }

int sft_chart_has_data(const sft_chart *c) {
    for (int s = 0; s < c->series_count; s++)
        for (size_t i = 0; i < c->series[s].n; i++)
            if (isfinite(c->series[s].x[i]) && usable(c, c->series[s].y[i])) return 1;
    return 0;
}

static double px(const frame *f, double x) { return f->left + (x - f->x0) / (f->x1 - f->x0) * (f->right - f->left); }

static double py(const frame *f, double y) {
    double t = f->log_y ? log10(y) : y;
    double v = f->bottom - (t - f->y0) / (f->y1 - f->y0) * (f->bottom - f->top);
    return v < f->top - 4 ? f->top - 4 : v > f->bottom + 4 ? f->bottom + 4 : v;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about `count` ticks. */
static double nice_step(double range, int count) {
    double raw = range / count, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void format_tick(char *buf, size_t cap, double v) {
    if (fabs(v) < 1e-12) v = 0;
    snprintf(buf, cap, "%.4g", v);
}

/* The legend: on the title row, right-aligned, when it fits there; else in
 * rows under the title, left to right. Text widths are estimated (about
 * 6.5 px a character at 11 px, 8 px at the title's 14 px) so that the SVG
 * and the PNG place it alike. Returns the rows used under the title. */
#define LEGEND_LEFT 64.0
/* Legend entry i: series i, or (i == series_count) the reference line. */
static const char *legend_text(const sft_chart *c, int i) {
    return i < c->series_count ? c->series[i].label : c->hline_label;
}

static int legend_layout(const sft_chart *c, double *entry_x, double *entry_y) {
    double right = c->width - 16, total = 0;
    int entries = c->series_count + 1;
    for (int s = 0; s < entries; s++)
        if (legend_text(c, s)) total += 6.5 * (double)strlen(legend_text(c, s)) + 28;
    double title_end = LEGEND_LEFT + (c->title ? 8.0 * (double)strlen(c->title) + 16 : 0);
    if (right - total >= title_end) {
        double x = right - total;
        for (int s = 0; s < entries; s++) {
            if (!legend_text(c, s)) continue;
            entry_x[s] = x, entry_y[s] = 16;
            x += 6.5 * (double)strlen(legend_text(c, s)) + 28;
        }
        return 0;
    }
    int rows = 1;
    double x = LEGEND_LEFT;
    for (int s = 0; s < entries; s++) {
        if (!legend_text(c, s)) continue;
        double w = 6.5 * (double)strlen(legend_text(c, s)) + 28;
        if (x > LEGEND_LEFT && x + w > right) rows++, x = LEGEND_LEFT;
        entry_x[s] = x, entry_y[s] = 16 + 16.0 * rows;
        x += w;
    }
    return rows;
}

static void layout(const sft_chart *c, frame *f) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < c->series_count; s++)
        for (size_t i = 0; i < c->series[s].n; i++) {
            double x = c->series[s].x[i], y = c->series[s].y[i];
            if (!isfinite(x) || !usable(c, y)) continue;
            double t = c->log_y ? log10(y) : y;
            if (x < xmin) xmin = x;
            if (x > xmax) xmax = x;
            if (t < ymin) ymin = t;
            if (t > ymax) ymax = t;
        }
    if (c->hline_label && usable(c, c->hline_y)) {
        double t = c->log_y ? log10(c->hline_y) : c->hline_y;
        if (t < ymin) ymin = t;
        if (t > ymax) ymax = t;
    }
    if (!(xmin <= xmax)) xmin = 0, xmax = 1;
    if (!(ymin <= ymax)) ymin = 0, ymax = 1;
    if (xmax == xmin) xmin -= 1, xmax += 1;
    if (ymax == ymin) {
        double pad = fabs(ymin) > 0 ? fabs(ymin) * 0.1 : 1;
        ymin -= pad, ymax += pad;
    }
    double pad = (ymax - ymin) * 0.05;
    f->x0 = xmin, f->x1 = xmax, f->y0 = ymin - pad, f->y1 = ymax + pad;
    f->log_y = c->log_y;
    double entry_x[SFT_CHART_MAX_SERIES + 1], entry_y[SFT_CHART_MAX_SERIES + 1];
    int legend_rows = legend_layout(c, entry_x, entry_y);
    f->left = LEGEND_LEFT, f->right = c->width - 16, f->top = 34 + 16.0 * legend_rows, f->bottom = c->height - 40;
}

static void draw(canvas *cv, const sft_chart *c) {
    frame f;
    layout(c, &f);
    cv->rect(cv, 0, 0, c->width, c->height, "#ffffff");
    if (c->title) cv->text(cv, f.left, 20, c->title, -1, 14, "#222222", 0);
    /* A source that did not record this quantity (HF Trainer has no
     * tokens/s, a CSV may have no learning rate): say so, draw no axes. */
    if (!sft_chart_has_data(c)) {
        cv->text(cv, c->width / 2, c->height / 2, "no values recorded in this run", 0, 13, "#777777", 0);
        return;
    }
    /* Grid and ticks. */
    char label[32];
    if (f.log_y) {
        /* Powers of ten; over a range of a few decades also 2 and 5 times
         * them, and over less than one decade every integer multiple, so
         * that a log axis always has labelled ticks to read values by. */
        static const double every[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, some[] = {1, 2, 5}, decades_only[] = {1};
        double span = f.y1 - f.y0;
        const double *mult = span > 4 ? decades_only : span > 1.2 ? some : every;
        int mult_count = span > 4 ? 1 : span > 1.2 ? 3 : 9;
        for (double e = floor(f.y0); e <= f.y1; e += 1)
            for (int k = 0; k < mult_count; k++) {
                double y = mult[k] * pow(10, e), t = log10(y);
                if (t < f.y0 || t > f.y1) continue;
                double yy = py(&f, y);
                cv->line(cv, f.left, yy, f.right, yy, k ? "#f0f0f0" : "#e0e0e0", 1, 0);
                format_tick(label, sizeof label, y);
                cv->text(cv, f.left - 6, yy + 4, label, 1, 11, "#555555", 0);
            }
    } else {
        double step = nice_step(f.y1 - f.y0, 5);
        for (double y = ceil(f.y0 / step) * step; y <= f.y1 + step * 1e-9; y += step) {
            double yy = py(&f, y);
            cv->line(cv, f.left, yy, f.right, yy, "#e5e5e5", 1, 0);
            format_tick(label, sizeof label, y);
            cv->text(cv, f.left - 6, yy + 4, label, 1, 11, "#555555", 0);
        }
    }
    double xstep = nice_step(f.x1 - f.x0, 6);
    for (double x = ceil(f.x0 / xstep) * xstep; x <= f.x1 + xstep * 1e-9; x += xstep) {
        double xx = px(&f, x);
        cv->line(cv, xx, f.top, xx, f.bottom, "#f0f0f0", 1, 0);
        format_tick(label, sizeof label, x);
        cv->text(cv, xx, f.bottom + 16, label, 0, 11, "#555555", 0);
    }
    cv->line(cv, f.left, f.bottom, f.right, f.bottom, "#888888", 1, 0);
    cv->line(cv, f.left, f.top, f.left, f.bottom, "#888888", 1, 0);
    if (c->x_label) cv->text(cv, (f.left + f.right) / 2, c->height - 6, c->x_label, 0, 12, "#333333", 0);
    if (c->y_label) cv->text(cv, 16, (f.top + f.bottom) / 2, c->y_label, 0, 12, "#333333", 1);

    if (c->hline_label && usable(c, c->hline_y)) {
        double yy = py(&f, c->hline_y);
        cv->line(cv, f.left, yy, f.right, yy, "#d62728", 1.2, 1);
    }
    /* Series: lines broken at non-finite values, then dots (smaller when
     * they are dense, so that they do not merge into a band). */
    size_t cap = 0;
    for (int s = 0; s < c->series_count; s++)
        if (c->series[s].n > cap) cap = c->series[s].n;
    double *xs = malloc((cap ? cap : 1) * sizeof *xs), *ys = malloc((cap ? cap : 1) * sizeof *ys);
    for (int s = 0; s < c->series_count && xs && ys; s++) {
        const sft_chart_series *se = &c->series[s];
        double opacity = se->opacity > 0 ? se->opacity : 1;
        double spacing = (f.right - f.left) / (double)(se->n ? se->n : 1);
        double radius = spacing / 2 < 1.4 ? 1.4 : spacing / 2 > 2.8 ? 2.8 : spacing / 2;
        size_t run = 0;
        for (size_t i = 0; i <= se->n; i++) {
            int ok = i < se->n && isfinite(se->x[i]) && usable(c, se->y[i]);
            if (ok) {
                xs[run] = px(&f, se->x[i]);
                ys[run++] = py(&f, se->y[i]);
                continue;
            }
            if (se->width > 0 && run >= 2) cv->path(cv, xs, ys, run, se->color, se->width, opacity);
            if (se->points)
                for (size_t k = 0; k < run; k++) cv->dot(cv, xs[k], ys[k], radius, se->color);
            run = 0;
        }
    }
    free(xs);
    free(ys);
    /* Marks (findings, best step) over the lines; labels that would overlap
     * go one row lower. */
    double row_end[4] = {-1e9, -1e9, -1e9, -1e9};
    for (int m = 0; m < c->mark_count; m++) {
        const sft_chart_mark *mk = &c->marks[m];
        if (!(mk->x >= f.x0 && mk->x <= f.x1)) continue;
        double xx = px(&f, mk->x);
        if (mk->tooltip) cv->begin_tooltip(cv, mk->tooltip);
        cv->line(cv, xx, f.top, xx, f.bottom, mk->color, 1.5, mk->dashed);
        cv->dot(cv, xx, f.top, 4, mk->color);
        if (mk->label) {
            double w = 6.0 * (double)strlen(mk->label) + 8;
            int row = 0;
            while (row < 3 && row_end[row] > xx) row++;
            row_end[row] = xx + w;
            /* Near the right edge the label goes to the left of its line. */
            int left = xx + w > f.right;
            cv->text(cv, left ? xx - 4 : xx + 4, f.top + 12 + 12 * row, mk->label, left ? 1 : -1, 10, mk->color, 0);
        }
        if (mk->tooltip) cv->end_tooltip(cv);
    }
    /* Legend: a short line of the series' colour (a dot for a series of
     * dots only), then its label. */
    double entry_x[SFT_CHART_MAX_SERIES + 1], entry_y[SFT_CHART_MAX_SERIES + 1];
    legend_layout(c, entry_x, entry_y);
    for (int s = 0; s < c->series_count; s++) {
        const sft_chart_series *se = &c->series[s];
        if (!se->label) continue;
        double x = entry_x[s], y = entry_y[s];
        double seg_x[2] = {x, x + 16}, seg_y[2] = {y, y};
        if (se->width > 0) cv->path(cv, seg_x, seg_y, 2, se->color, 3, se->opacity > 0 ? se->opacity : 1);
        else cv->dot(cv, x + 8, y, 3.2, se->color);
        cv->text(cv, x + 20, y + 4, se->label, -1, 11, "#333333", 0);
    }
    /* The reference line (the clipping threshold) is named in the legend,
     * where its label hides no data. */
    if (c->hline_label) {
        double x = entry_x[c->series_count], y = entry_y[c->series_count];
        cv->line(cv, x, y, x + 16, y, "#d62728", 1.5, 1);
        cv->text(cv, x + 20, y + 4, c->hline_label, -1, 11, "#333333", 0);
    }
}

int sft_chart_overlay(sft_chart *c, const sft_chart_curve *curves, int n) {
    static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    int added = 0;
    for (int i = 0; i < n && c->series_count < SFT_CHART_MAX_SERIES; i++, added++) {
        int k = c->series_count;
        c->series[c->series_count++] = (sft_chart_series){.x = curves[i].x,
                                                          .y = curves[i].y,
                                                          .n = curves[i].n,
                                                          .color = palette[k % 10],
                                                          .width = 1.8,
                                                          .opacity = 1,
                                                          .points = 1,
                                                          .label = curves[i].label};
    }
    return added;
}

void sft_chart_svg(FILE *f, const sft_chart *c) {
    canvas cv = {svg_line, svg_path, svg_dot, svg_text, svg_rect, svg_begin_tooltip, svg_end_tooltip, f, NULL};
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" "
            "style=\"max-width:%.0fpx\" font-family=\"sans-serif\" role=\"img\"",
            c->width, c->height, c->width);
    if (c->title) {
        fputs(" aria-label=\"", f);
        svg_escape(f, c->title);
        fputc('"', f);
    }
    fputs(">\n", f);
    draw(&cv, c);
    fputs("</svg>\n", f);
}

typedef struct {
    char *data;
    size_t len, cap;
} png_buffer;

static cairo_status_t png_write(void *closure, const unsigned char *data, unsigned int length) {
    png_buffer *b = closure;
    if (b->len + length > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->len + length) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return CAIRO_STATUS_NO_MEMORY;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, length);
    b->len += length;
    return CAIRO_STATUS_SUCCESS;
}

int sft_chart_png(const char *path, const sft_chart *c, sft_err *err) {
    /* Drawn at twice the size for sharp lines on high-density screens. */
    const double scale = 2;
    cairo_surface_t *surface =
        cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)(c->width * scale), (int)(c->height * scale));
    cairo_t *cr = cairo_create(surface);
    cairo_scale(cr, scale, scale);
    canvas cv = {cr_line, cr_path, cr_dot, cr_text, cr_rect, cr_nothing, cr_end_nothing, NULL, cr};
    draw(&cv, c);
    cairo_status_t status = cairo_status(cr);
    cairo_destroy(cr);
    png_buffer buf = {0};
    if (status == CAIRO_STATUS_SUCCESS) status = cairo_surface_write_to_png_stream(surface, png_write, &buf);
    cairo_surface_destroy(surface);
    if (status != CAIRO_STATUS_SUCCESS) {
        free(buf.data);
        return sft_errf(err, "%s: drawing the chart failed: %s", path, cairo_status_to_string(status));
    }
    int rc = sft_write_file_atomic(path, buf.data, buf.len, err);
    free(buf.data);
    return rc;
}
