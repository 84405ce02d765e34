/* live.c: the live view of a training run (see live.h). The terminal line
 * uses only "\r" and ECMA-48's "erase in line" (CSI K) and "select graphic
 * rendition" (CSI m) for the finding's colour, which every terminal
 * emulator in use understands; colour follows https://no-color.org. */
#include "monitor/live.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define ERASE_LINE "\r\033[K"

struct sft_live {
    FILE *out;
    int tty, color, fixed_columns, plain_every;
    double min_redraw_s;

    /* The recent losses, a ring of sparkline_width values. */
    double *recent;
    size_t recent_cap, recent_count, recent_next;

    int has_step;
    sft_train_record last; /* batch_records not kept */
    int64_t total_steps;
    double eta_s; /* the caller's, NAN when it gave none */

    int has_val;
    double val_loss;

    int has_finding;
    char finding_kind[32];
    sft_severity finding_severity;
    int64_t finding_step;

    /* The time-left estimate from the wall clock between steps (evaluations
     * and checkpoints included: the time the user actually waits). */
    int has_rate_origin;
    int64_t rate_origin_step;
    double rate_origin_s;

    int line_shown;   /* the terminal line is on screen */
    int force_redraw; /* the next step redraws whatever the clock says */
    double last_draw_s;
    int64_t last_plain_step;

    int64_t sink_total_steps;
};

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sft_live_options_default(sft_live_options *o) {
    memset(o, 0, sizeof *o);
    o->tty = -1;
    o->columns = 0;
    o->sparkline_width = 24;
    o->min_redraw_s = 0.1;
    o->plain_every = 1;
    o->color = -1;
}

sft_live *sft_live_open(FILE *out, const sft_live_options *o, sft_err *err) {
    sft_live_options defaults;
    if (!o) {
        sft_live_options_default(&defaults);
        o = &defaults;
    }
    if (!out) {
        sft_errf(err, "live view: no output stream");
        return NULL;
    }
    if (o->sparkline_width < 0 || o->sparkline_width > 512) {
        sft_errf(err, "live view: sparkline_width %d must be in [0, 512]", o->sparkline_width);
        return NULL;
    }
    sft_live *l = calloc(1, sizeof *l);
    if (!l) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    l->out = out;
    l->tty = o->tty >= 0 ? o->tty != 0 : isatty(fileno(out));
    const char *no_color = getenv("NO_COLOR");
    l->color = o->color >= 0 ? o->color != 0 : l->tty && !(no_color && *no_color);
    l->fixed_columns = o->columns;
    l->plain_every = o->plain_every > 0 ? o->plain_every : 1;
    l->min_redraw_s = o->min_redraw_s > 0 ? o->min_redraw_s : 0;
    l->recent_cap = (size_t)o->sparkline_width;
    if (l->recent_cap && !(l->recent = calloc(l->recent_cap, sizeof *l->recent))) {
        free(l);
        sft_errf(err, "out of memory");
        return NULL;
    }
    l->eta_s = NAN;
    l->last_plain_step = -1;
    l->force_redraw = 1;
    return l;
}

void sft_live_free(sft_live *l) {
    if (!l) return;
    free(l->recent);
    free(l);
}

/* ------------------------------------------------------------- sparkline */

size_t sft_sparkline(const double *values, size_t n, char *out, size_t cap) {
    if (!cap) return 0;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(values[i])) {
            if (values[i] < lo) lo = values[i];
            if (values[i] > hi) hi = values[i];
        }
    size_t len = 0, chars = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(values[i])) {
            if (len + 2 > cap) break;
            out[len++] = '!';
            chars++;
            continue;
        }
        /* Eight levels, U+2581 (lower one eighth block) to U+2588 (full
         * block); a flat window sits at mid height. */
        int level = hi > lo ? (int)floor((values[i] - lo) / (hi - lo) * 7.0 + 0.5) : 3;
        if (len + 4 > cap) break;
        out[len++] = (char)0xE2;
        out[len++] = (char)0x96;
        out[len++] = (char)(0x81 + level);
        chars++;
    }
    out[len] = '\0';
    return chars;
}

/* ------------------------------------------------------------- the line */

static void format_duration(double s, char *out, size_t cap) {
    if (!isfinite(s) || s < 0) {
        snprintf(out, cap, "?");
        return;
    }
    long v = (long)(s + 0.5);
    if (v >= 86400) snprintf(out, cap, "%ldd%02ldh", v / 86400, (v % 86400) / 3600);
    else if (v >= 3600) snprintf(out, cap, "%ldh%02ldm", v / 3600, (v % 3600) / 60);
    else if (v >= 60) snprintf(out, cap, "%ldm%02lds", v / 60, v % 60);
    else snprintf(out, cap, "%lds", v);
}

/* A loss: four decimals at the usual scales, significant digits beyond. */
static void format_loss(double v, char *out, size_t cap) {
    if (isnan(v)) snprintf(out, cap, "nan");
    else if (isinf(v)) snprintf(out, cap, v > 0 ? "inf" : "-inf");
    else if (fabs(v) >= 1000 || (v != 0 && fabs(v) < 0.001)) snprintf(out, cap, "%.4g", v);
    else snprintf(out, cap, "%.4f", v);
}

typedef struct {
    char text[160];
    int columns;  /* display columns (UTF-8 characters; all of ours are one column wide) */
    int priority; /* dropped first when the line is too long: the highest */
    int finding;  /* coloured by the finding's severity */
} field;

static int display_columns(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static double time_left(const sft_live *l) {
    if (isfinite(l->eta_s)) return l->eta_s;
    if (!l->has_rate_origin || l->total_steps <= 0 || l->last.step <= l->rate_origin_step) return NAN;
    double per_step = (monotonic_s() - l->rate_origin_s) / (double)(l->last.step - l->rate_origin_step);
    int64_t left = l->total_steps - l->last.step;
    return per_step * (double)(left > 0 ? left : 0);
}

/* The fields of the line in display order (at most 9); terminal: with the
 * sparkline and the latest finding. */
static int line_fields(const sft_live *l, int terminal, field *f) {
    int n = 0;
    memset(f, 0, 9 * sizeof *f);
    char num[64];
    if (l->total_steps > 0) {
        int width = snprintf(NULL, 0, "%lld", (long long)l->total_steps);
        snprintf(f[n].text, sizeof f[n].text, "step %*lld/%lld", width, (long long)l->last.step,
                 (long long)l->total_steps);
    } else {
        snprintf(f[n].text, sizeof f[n].text, "step %lld", (long long)l->last.step);
    }
    f[n++].priority = 0;
    if (terminal && l->recent_count >= 2) {
        double ordered[512];
        size_t count = l->recent_count, first = (l->recent_next + l->recent_cap - count) % l->recent_cap;
        for (size_t i = 0; i < count; i++) ordered[i] = l->recent[(first + i) % l->recent_cap];
        sft_sparkline(ordered, count, f[n].text, sizeof f[n].text);
        f[n++].priority = 5;
    }
    format_loss(l->last.loss, num, sizeof num);
    snprintf(f[n].text, sizeof f[n].text, "loss %s", num);
    f[n++].priority = 1;
    if (l->has_val) {
        format_loss(l->val_loss, num, sizeof num);
        snprintf(f[n].text, sizeof f[n].text, "val %s", num);
        f[n++].priority = 4;
    }
    snprintf(f[n].text, sizeof f[n].text, "grad %.3g", l->last.grad_norm);
    if (l->last.clipped) strcat(f[n].text, " (clipped)");
    f[n++].priority = 6;
    snprintf(f[n].text, sizeof f[n].text, "lr %.2e", l->last.lr);
    f[n++].priority = 7;
    if (l->last.tokens_per_s > 0) {
        snprintf(f[n].text, sizeof f[n].text, "%.0f tok/s", l->last.tokens_per_s);
        f[n++].priority = 8;
    }
    double left = time_left(l);
    if (l->total_steps > 0) {
        format_duration(left, num, sizeof num);
        snprintf(f[n].text, sizeof f[n].text, "ETA %s", num);
        f[n++].priority = 2;
    }
    if (terminal && l->has_finding) {
        snprintf(f[n].text, sizeof f[n].text, "%s %s@%lld", l->finding_severity == SFT_SEVERITY_CRITICAL ? "!!" : "!",
                 l->finding_kind, (long long)l->finding_step);
        f[n].finding = 1;
        f[n++].priority = 3;
    }
    for (int i = 0; i < n; i++) f[i].columns = display_columns(f[i].text);
    return n;
}

/* Joins the fields with two spaces, dropping the least important ones until
 * the line fits in max_columns (0: no limit); the colour codes (when
 * colour is on) take no column. */
static void join_fields(field *f, int n, int max_columns, int color, sft_severity severity, char *out, size_t cap) {
    int keep[16];
    for (int i = 0; i < n; i++) keep[i] = 1;
    for (;;) {
        int total = 0, kept = 0, worst = -1;
        for (int i = 0; i < n; i++) {
            if (!keep[i]) continue;
            total += f[i].columns + (kept ? 2 : 0);
            kept++;
            if (worst < 0 || f[i].priority > f[worst].priority) worst = i;
        }
        if (max_columns <= 0 || total <= max_columns || kept <= 1) break;
        keep[worst] = 0;
    }
    size_t len = 0;
    int columns = 0;
    out[0] = '\0';
    for (int i = 0; i < n && len + 1 < cap; i++) {
        if (!keep[i]) continue;
        if (columns) {
            len += (size_t)snprintf(out + len, cap - len, "  ");
            columns += 2;
        }
        const char *on = "", *off = "";
        if (color && f[i].finding) {
            on = severity == SFT_SEVERITY_CRITICAL ? "\033[1;31m" : severity == SFT_SEVERITY_WARNING ? "\033[33m" : "\033[36m";
            off = "\033[0m";
        }
        /* Cut a field that alone is wider than the terminal, at a character boundary. */
        const char *s = f[i].text;
        size_t bytes = strlen(s);
        if (max_columns > 0 && columns + f[i].columns > max_columns) {
            int room = max_columns - columns, seen = 0;
            bytes = 0;
            while (s[bytes] && seen < room) {
                bytes++;
                while (((unsigned char)s[bytes] & 0xC0) == 0x80) bytes++;
                seen++;
            }
        }
        int w = snprintf(out + len, cap - len, "%s%.*s%s", on, (int)bytes, s, off);
        if (w < 0 || (size_t)w >= cap - len) {
            out[len] = '\0';
            break;
        }
        len += (size_t)w;
        columns += f[i].columns;
    }
}

static int terminal_columns(const sft_live *l) {
    if (l->fixed_columns > 0) return l->fixed_columns;
    struct winsize ws;
    if (ioctl(fileno(l->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *env = getenv("COLUMNS");
    int c = env ? atoi(env) : 0;
    return c > 0 ? c : 100;
}

void sft_live_format(const sft_live *l, int columns, char *out, size_t cap) {
    if (!cap) return;
    out[0] = '\0';
    if (!l->has_step) return;
    field f[16];
    int n = line_fields(l, l->tty, f);
    join_fields(f, n, columns, 0, l->finding_severity, out, cap);
}

static void draw(sft_live *l) {
    char line[2048];
    field f[16];
    int n = line_fields(l, 1, f);
    /* One column short of the width: writing the last column makes some
     * terminals wrap at once, and the next \r would redraw one row too low. */
    join_fields(f, n, terminal_columns(l) - 1, l->color, l->finding_severity, line, sizeof line);
    fputs(ERASE_LINE, l->out);
    fputs(line, l->out);
    fflush(l->out);
    l->line_shown = 1;
    l->force_redraw = 0;
    l->last_draw_s = monotonic_s();
}

static void plain_line(sft_live *l) {
    char line[1024];
    field f[16];
    int n = line_fields(l, 0, f);
    join_fields(f, n, 0, 0, l->finding_severity, line, sizeof line);
    fprintf(l->out, "%s\n", line);
    fflush(l->out);
    l->last_plain_step = l->last.step;
}

void sft_live_step(sft_live *l, const sft_train_record *r, int64_t total_steps, double eta_s) {
    l->has_step = 1;
    l->last = *r;
    l->last.batch_records = NULL;
    l->total_steps = total_steps;
    l->eta_s = eta_s;
    if (l->recent_cap) {
        l->recent[l->recent_next] = r->loss;
        l->recent_next = (l->recent_next + 1) % l->recent_cap;
        if (l->recent_count < l->recent_cap) l->recent_count++;
    }
    /* The rate origin is the first step seen: the steps before it (a resumed
     * run) took no time of this session. */
    if (!l->has_rate_origin) {
        l->has_rate_origin = 1;
        l->rate_origin_step = r->step;
        l->rate_origin_s = monotonic_s();
    }
    int last = total_steps > 0 && r->step >= total_steps;
    if (l->tty) {
        if (l->force_redraw || last || monotonic_s() - l->last_draw_s >= l->min_redraw_s) draw(l);
    } else if (last || r->step % l->plain_every == 0) {
        plain_line(l);
    }
}

void sft_live_eval(sft_live *l, const sft_eval_record *r) {
    l->has_val = 1;
    l->val_loss = r->val_loss;
    l->force_redraw = 1;
}

void sft_live_clear(sft_live *l) {
    if (l->tty && l->line_shown) {
        fputs(ERASE_LINE, l->out);
        fflush(l->out);
    }
    l->line_shown = 0;
    l->force_redraw = 1;
}

void sft_live_finding(sft_live *l, const sft_finding *f) {
    sft_live_clear(l);
    const char *on = "", *off = "";
    if (l->color) {
        on = f->severity == SFT_SEVERITY_CRITICAL ? "\033[1;31m" : f->severity == SFT_SEVERITY_WARNING ? "\033[33m" : "\033[36m";
        off = "\033[0m";
    }
    fprintf(l->out, "%sfinding [%s] %s at step %lld%s: %s\n", on, sft_severity_name(f->severity), f->kind,
            (long long)f->step, off, f->message);
    if (f->advice[0]) fprintf(l->out, "  advice: %s\n", f->advice);
    if (f->records[0]) fprintf(l->out, "  records: %s\n", f->records);
    fflush(l->out);
    /* An info finding (a plateau) does not displace a warning from the line. */
    if (!l->has_finding || f->severity >= l->finding_severity || l->finding_severity == SFT_SEVERITY_INFO) {
        l->has_finding = 1;
        snprintf(l->finding_kind, sizeof l->finding_kind, "%s", f->kind);
        l->finding_severity = f->severity;
        l->finding_step = f->step;
    }
    if (l->tty && l->has_step) draw(l);
}

void sft_live_end(sft_live *l) {
    if (!l->has_step) return;
    if (l->tty) {
        draw(l);
        fputc('\n', l->out);
        l->line_shown = 0;
        l->force_redraw = 1;
    } else if (l->last_plain_step != l->last.step) {
        plain_line(l);
    }
    fflush(l->out);
}

int sft_live_is_terminal(const sft_live *l) { return l->tty; }

/* ------------------------------------------------------------- as a sink */

static int sink_train(void *ctx, const sft_train_record *r, sft_err *err) {
    (void)err;
    sft_live *l = ctx;
    sft_live_step(l, r, l->sink_total_steps, NAN);
    return 0;
}

static int sink_eval(void *ctx, const sft_eval_record *r, sft_err *err) {
    (void)err;
    sft_live_eval(ctx, r);
    return 0;
}

static int sink_finding(void *ctx, const sft_finding *f, sft_err *err) {
    (void)err;
    sft_live_finding(ctx, f);
    return 0;
}

static int sink_close(void *ctx, sft_err *err) {
    (void)err;
    sft_live_end(ctx);
    sft_live_free(ctx);
    return 0;
}

void sft_live_sink(sft_live *l, int64_t total_steps, sft_metrics_sink *sink) {
    l->sink_total_steps = total_steps;
    sink->ctx = l;
    sink->on_train = sink_train;
    sink->on_eval = sink_eval;
    sink->on_finding = sink_finding;
    sink->close = sink_close;
}
