/* chart.h: line charts of training curves, drawn once and rendered two ways:
 * as inline SVG for report.html (tooltips on markers through <title>) and as
 * PNG through cairo (https://www.cairographics.org/). One layout (axes, 1-2-5
 * ticks or powers of ten on a log axis, legend, markers) feeds both, so the
 * two pictures agree. Non-finite values break a line instead of bending it. */
#ifndef SFT_MONITOR_CHART_H
#define SFT_MONITOR_CHART_H

#include <stddef.h>
#include <stdio.h>

#include "io/err.h"

#define SFT_CHART_MAX_SERIES 32
#define SFT_CHART_MAX_MARKS 64

typedef struct {
    const double *x, *y;
    size_t n;
    const char *color; /* "#rrggbb" */
    double width;      /* line width in pixels; 0 draws no line */
    double opacity;    /* 0 means 1 */
    int points;        /* draw a dot at each point */
    const char *label; /* legend text */
} sft_chart_series;

/* A vertical mark at x (a finding, the best step), with a tooltip in SVG. */
typedef struct {
    double x;
    const char *color;
    const char *label;   /* short text drawn at the top, may be NULL */
    const char *tooltip; /* SVG <title>, may be NULL */
    int dashed;
} sft_chart_mark;

typedef struct {
    const char *title;
    const char *x_label, *y_label;
    int log_y; /* log scale (values <= 0 are left out) */
    double width, height;
    sft_chart_series series[SFT_CHART_MAX_SERIES];
    int series_count;
    sft_chart_mark marks[SFT_CHART_MAX_MARKS];
    int mark_count;
    double hline_y; /* a horizontal reference (the clipping threshold) when hline_label is set */
    const char *hline_label;
} sft_chart;

/* One named curve of an overlay (a run of a sweep, a validation curve). */
typedef struct {
    const char *label;
    const double *x, *y;
    size_t n;
} sft_chart_curve;

/* Overlays n curves in one call: each gets the next colour of a
 * categorical palette (Tableau 10, as matplotlib's default cycle), a line
 * with a dot per point, and a legend entry (the legend wraps onto more rows
 * when it does not fit). Returns how many were added: the chart holds at
 * most SFT_CHART_MAX_SERIES series. */
int sft_chart_overlay(sft_chart *c, const sft_chart_curve *curves, int n);

/* Whether the chart has any finite point to draw. */
int sft_chart_has_data(const sft_chart *c);
/* Writes an <svg> element. */
void sft_chart_svg(FILE *f, const sft_chart *c);
/* Writes a PNG file (atomically). */
int sft_chart_png(const char *path, const sft_chart *c, sft_err *err);

#endif
