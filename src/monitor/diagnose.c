/* diagnose.c: the rules that turn training curves into findings (see
 * diagnose.h for the contract, docs/diagnosis.md for the user's view).
 *
 * Point rules judge each logged point against the points before it:
 *   loss_spike           robust z-score of the loss over the trailing window,
 *                        the noise scale taken from the median absolute
 *                        deviation (MAD) of successive differences so that the
 *                        fast early fall does not hide a spike; the level is
 *                        the median of the last 8 points.
 *   exploding_gradients  norm / trailing median, and growth of the norm over a
 *                        window (median of the last quarter / first quarter).
 * Curve rules work on the log of the training loss, cut into blocks of
 * at least 5 points (20 blocks for long runs) whose medians give a
 * smoothed level that ignores isolated spikes; the noise of a block level
 * comes from the MAD of second differences (robust to the trend). Working in
 * log space makes "rose by 20%" mean the same at loss 11 and at loss 0.5. */
#include "monitor/diagnose.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json.h"
#include "io/suggest.h"

/* ---- configuration ------------------------------------------------------------ */

void sft_diagnose_config_default(sft_diagnose_config *cfg) {
    *cfg = (sft_diagnose_config){
        /* OLMo-core's SkipStepOptimizer skips a step whose loss is more than
         * sigma_factor=6 standard deviations above the mean of the last
         * rolling_interval_length=128 steps; we use the same 6 and 128 with a
         * robust (median/MAD) scale, so earlier spikes do not widen it. */
        .spike_window = 128,
        .spike_min_history = 10,
        .spike_sigma = 6.0,
        /* On a nearly noiseless curve any wiggle has a huge z-score; a spike
         * must also be a visible jump: 20% and 0.1 nats above the level. */
        .spike_min_ratio = 1.2,
        .spike_min_rise = 0.1,
        /* LLM Foundry's KillLossSpike: outlier_multiplier=2 times the window
         * mean, patience=4 (5 outliers in a row stop the run). */
        .spike_critical_ratio = 2.0,
        .spike_patience = 4,
        /* A 20% sustained rise of the smoothed loss (and 0.1 nats) is far
         * beyond what a healthy schedule does, and the 6-sigma noise guard
         * keeps very noisy curves from tripping it. */
        .divergence_rise = 0.2,
        .divergence_min_rise = 0.1,
        /* A loss that climbs to twice where it started (the multiple LLM
         * Foundry's spike rule uses) before it ever fell. */
        .divergence_start_ratio = 2.0,
        /* Validation losses are token-weighted means over a fixed set, so a
         * 2% rise held over 2 evaluations is not noise (HF's
         * EarlyStoppingCallback stops on any non-improvement after
         * `patience` evaluations; we ask for a margin as well). */
        .overfit_rise = 0.02,
        .overfit_patience = 2,
        .underfit_min_improvement = 0.1,
        .underfit_slow_improvement = 0.5,
        .underfit_late_rate = 0.6,
        .plateau_tolerance = 0.02,
        .plateau_min_fraction = 0.25,
        /* Gradient-norm spikes of 2-5x the median are routine in healthy
         * runs; 10x is not, and 100x precedes overflow. */
        .grad_window = 128,
        .grad_spike_ratio = 10.0,
        .grad_critical_ratio = 100.0,
        .grad_growth_window = 32,
        .grad_growth = 8.0,
        .clip_window = 50,
        .clip_fraction = 0.5,
        /* A norm that sits at the threshold is trimmed by a few percent when
         * clipped: the clip then barely changes the update. Only a median
         * norm half again above the threshold (updates cut by a third or
         * more) means the clip, not the schedule, sizes the steps. */
        .clip_min_excess = 1.5,
    };
}

#define PARAM_INT(name, help) {#name, offsetof(sft_diagnose_config, name), 1, help}
#define PARAM_DBL(name, help) {#name, offsetof(sft_diagnose_config, name), 0, help}
static const sft_diagnose_param params[] = {
    PARAM_INT(spike_window, "loss_spike: trailing points (OLMo-core skip-step interval)"),
    PARAM_INT(spike_min_history, "loss_spike: points needed before judging"),
    PARAM_DBL(spike_sigma, "loss_spike: robust z-score threshold (OLMo-core sigma_factor)"),
    PARAM_DBL(spike_min_ratio, "loss_spike: minimum loss / recent level (a visible jump, not only many sigmas)"),
    PARAM_DBL(spike_min_rise, "loss_spike: minimum rise above the recent level in nats"),
    PARAM_DBL(spike_critical_ratio, "loss_spike: critical multiple of the window mean (LLM Foundry)"),
    PARAM_INT(spike_patience, "loss_spike: critical after more than this many points in a row (LLM Foundry)"),
    PARAM_DBL(divergence_rise, "divergence: relative rise of the smoothed loss above its minimum"),
    PARAM_DBL(divergence_min_rise, "divergence: minimum rise in nats"),
    PARAM_DBL(divergence_start_ratio, "divergence: a sustained level this x the first logged loss"),
    PARAM_DBL(overfit_rise, "overfitting: validation rise above its best, as a fraction"),
    PARAM_INT(overfit_patience, "overfitting: evaluations after the best one"),
    PARAM_DBL(underfit_min_improvement, "underfitting: relative improvement below which a curve is flat"),
    PARAM_DBL(underfit_slow_improvement, "underfitting: below this improvement a curve with no knee is undertrained"),
    PARAM_DBL(underfit_late_rate, "underfitting: late slope / mean slope meaning no knee"),
    PARAM_DBL(plateau_tolerance, "plateau: relative change that counts as flat"),
    PARAM_DBL(plateau_min_fraction, "plateau: minimum fraction of the run"),
    PARAM_INT(grad_window, "exploding_gradients: trailing points for the median norm"),
    PARAM_DBL(grad_spike_ratio, "exploding_gradients: norm / trailing median"),
    PARAM_DBL(grad_critical_ratio, "exploding_gradients: critical norm / trailing median"),
    PARAM_INT(grad_growth_window, "exploding_gradients: points over which growth is measured"),
    PARAM_DBL(grad_growth, "exploding_gradients: growth of the median norm across that window"),
    PARAM_INT(clip_window, "frequent_clipping: trailing steps"),
    PARAM_DBL(clip_fraction, "frequent_clipping: clipped fraction that counts as frequent"),
    PARAM_DBL(clip_min_excess, "frequent_clipping: a warning needs the median recent norm at least this x the threshold"),
};

const sft_diagnose_param *sft_diagnose_params(size_t *count) {
    *count = sizeof params / sizeof params[0];
    return params;
}

int sft_diagnose_config_set(sft_diagnose_config *cfg, const char *key, double value, sft_err *err) {
    size_t n = sizeof params / sizeof params[0];
    for (size_t i = 0; i < n; i++) {
        if (strcmp(params[i].name, key)) continue;
        char *field = (char *)cfg + params[i].offset;
        if (params[i].is_int) {
            if (!(value >= 1 && value <= SFT_DIAGNOSE_INT_MAX) || value != floor(value))
                return sft_errf(err, "diagnosis threshold '%s' must be an integer from 1 to %d, got %g", key,
                                SFT_DIAGNOSE_INT_MAX, value);
            *(int64_t *)field = (int64_t)value;
        } else {
            if (!(value > 0) || !isfinite(value))
                return sft_errf(err, "diagnosis threshold '%s' must be a positive number, got %g", key, value);
            *(double *)field = value;
        }
        return 0;
    }
    const char *names[sizeof params / sizeof params[0]];
    for (size_t i = 0; i < n; i++) names[i] = params[i].name;
    const char *near = sft_suggest(key, names, n);
    if (near) return sft_errf(err, "unknown diagnosis threshold '%s' (did you mean '%s'?)", key, near);
    return sft_errf(err, "unknown diagnosis threshold '%s'", key);
}

const char *sft_severity_name(sft_severity s) {
    switch (s) {
    case SFT_SEVERITY_CRITICAL: return "critical";
    case SFT_SEVERITY_WARNING: return "warning";
    default: return "info";
    }
}

/* ---- small statistics ------------------------------------------------------------ */

/* The k-th smallest of v[0..n) (Hoare's selection; v is reordered). */
static double select_kth(double *v, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

/* Median of n values (n > 0), using scratch (n doubles). */
static double median_of(const double *v, size_t n, double *scratch) {
    memcpy(scratch, v, n * sizeof *v);
    double upper = select_kth(scratch, n, n / 2);
    if (n % 2) return upper;
    /* The lower middle is the largest value left of n/2 after selection. */
    double lower = scratch[0];
    for (size_t i = 1; i < n / 2; i++)
        if (scratch[i] > lower) lower = scratch[i];
    return 0.5 * (lower + upper);
}

/* Median absolute deviation about the median; scratch holds 2n doubles. */
static double mad_of(const double *v, size_t n, double *scratch) {
    double med = median_of(v, n, scratch);
    double *dev = scratch + n;
    for (size_t i = 0; i < n; i++) dev[i] = fabs(v[i] - med);
    return median_of(dev, n, scratch);
}

/* Noise of one point from the MAD of first differences over v[0..n). The
 * median removes a steady trend; 1.4826 turns a MAD into a Gaussian sigma and
 * the difference of two points has sqrt(2) times the noise of one. */
static double noise_from_differences(const double *v, size_t n, double *scratch) {
    if (n < 3) return 0;
    double *d = scratch;
    for (size_t i = 1; i < n; i++) d[i - 1] = v[i] - v[i - 1];
    return 1.4826 * mad_of(d, n - 1, scratch + n) / sqrt(2.0);
}

/* Noise from second differences (robust to a curving trend): var = 6 sigma^2. */
static double noise_from_second_differences(const double *v, size_t n, double *scratch) {
    if (n < 4) return 0;
    double *d = scratch;
    for (size_t i = 1; i + 1 < n; i++) d[i - 1] = v[i + 1] - 2 * v[i] + v[i - 1];
    return 1.4826 * mad_of(d, n - 2, scratch + n) / sqrt(6.0);
}

/* ---- findings --------------------------------------------------------------------- */

void sft_diagnosis_init(sft_diagnosis *d) { memset(d, 0, sizeof *d), d->verdict = "healthy"; }

void sft_diagnosis_free(sft_diagnosis *d) {
    free(d->findings);
    memset(d, 0, sizeof *d);
    d->verdict = "healthy";
}

static sft_finding *add_finding(sft_finding **items, size_t *count, size_t *cap, const char *kind,
                                sft_severity severity, int64_t step, int64_t end_step, sft_err *err) {
    if (*count == *cap) {
        size_t new_cap = *cap ? *cap * 2 : 16;
        sft_finding *p = realloc(*items, new_cap * sizeof *p);
        if (!p) {
            sft_errf(err, "out of memory recording findings");
            return NULL;
        }
        *items = p;
        *cap = new_cap;
    }
    sft_finding *f = &(*items)[(*count)++];
    memset(f, 0, sizeof *f);
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    f->severity = severity;
    f->step = step;
    f->end_step = end_step;
    return f;
}

static void evidence_set(sft_finding *f, const char *key, double value) {
    for (size_t i = 0; i < f->evidence_count; i++)
        if (!strcmp(f->evidence[i].key, key)) {
            f->evidence[i].value = value;
            return;
        }
    if (f->evidence_count == SFT_FINDING_EVIDENCE_MAX) return;
    snprintf(f->evidence[f->evidence_count].key, sizeof f->evidence[0].key, "%s", key);
    f->evidence[f->evidence_count++].value = value;
}

double sft_finding_evidence(const sft_finding *f, const char *key) {
    for (size_t i = 0; i < f->evidence_count; i++)
        if (!strcmp(f->evidence[i].key, key)) return f->evidence[i].value;
    return NAN;
}

#define EV(f, key) sft_finding_evidence((f), (key))

/* ---- the series the rules read ------------------------------------------------------ */

typedef struct {
    double *value; /* loss (finite), or grad norm (finite, > 0) */
    int64_t *step;
    size_t n;
} series;

static void series_free(series *s) {
    free(s->value);
    free(s->step);
}

/* ---- point rules (causal, incremental) ----------------------------------------------- */

/* The point events found so far, and how far each rule has scanned. */
typedef struct {
    sft_finding *items;
    size_t count, cap;
    size_t spike_next, grad_next;         /* next series index to judge */
    double grad_floor;                    /* lowest median of a completed 16-point block of norms */
    long spike_open, grad_open;           /* items index of the finding a next event would extend */
    size_t spike_open_last, grad_open_last; /* series index of that finding's last point */
    int spike_run_critical;               /* points of the open spike at >= critical ratio */
} point_events;

static void spike_message(sft_finding *f, const sft_diagnose_config *cfg) {
    double loss = EV(f, "loss"), level = EV(f, "recent_level"), points = EV(f, "points");
    int n = snprintf(f->message, sizeof f->message,
                     "The training loss jumped to %.4g at step %lld, %.1fx its recent level of %.4g "
                     "(robust z-score %.1f against the previous %.0f logged points)",
                     loss, (long long)f->step, loss / level, level, EV(f, "robust_z"), EV(f, "window"));
    if (points > 1 && n > 0 && (size_t)n < sizeof f->message)
        n += snprintf(f->message + n, sizeof f->message - n, "; it stayed high for %.0f logged points, to step %lld",
                      points, (long long)f->end_step);
    if (f->severity == SFT_SEVERITY_CRITICAL && n > 0 && (size_t)n < sizeof f->message)
        n += snprintf(f->message + n, sizeof f->message - n,
                      ", more than %lld in a row at over %.3gx the window mean", (long long)cfg->spike_patience,
                      cfg->spike_critical_ratio);
    if (n > 0 && (size_t)n < sizeof f->message) snprintf(f->message + n, sizeof f->message - n, ".");
    snprintf(f->advice, sizeof f->advice,
             "Inspect the records of that batch for broken, mislabeled or very long examples, and check the "
             "tokenizer and chat template. If spikes repeat, lower the learning rate or lengthen the warmup, "
             "raise the batch size (or --grad-accum), and keep gradient clipping on (--max-grad-norm 1).");
}

static void grad_message(sft_finding *f) {
    double growth = EV(f, "growth");
    int n = snprintf(f->message, sizeof f->message,
                     "The gradient norm reached %.4g at step %lld, %.1fx its trailing median of %.4g", EV(f, "grad_norm"),
                     (long long)f->step, EV(f, "ratio"), EV(f, "trailing_median"));
    double settled = EV(f, "settled_level"), above = EV(f, "above_settled");
    if (settled > 0 && above >= 2 && n > 0 && (size_t)n < sizeof f->message)
        n += snprintf(f->message + n, sizeof f->message - n, ", %.1fx the settled level of %.4g", above, settled);
    if (isfinite(growth) && growth > 1 && n > 0 && (size_t)n < sizeof f->message)
        n += snprintf(f->message + n, sizeof f->message - n, "; it grew %.1fx within %.0f logged points", growth,
                      EV(f, "growth_window"));
    if (f->end_step != f->step && n > 0 && (size_t)n < sizeof f->message)
        n += snprintf(f->message + n, sizeof f->message - n, " (until step %lld)", (long long)f->end_step);
    if (n > 0 && (size_t)n < sizeof f->message)
        snprintf(f->message + n, sizeof f->message - n, ": the updates are becoming unstable.");
    snprintf(f->advice, sizeof f->advice,
             "Lower the learning rate (or lengthen the warmup), keep gradient clipping on (--max-grad-norm 1), "
             "and check the data around those steps for broken or extreme records.");
}

static int scan_spikes(point_events *ev, const series *loss, const sft_diagnose_config *cfg, double *scratch,
                       sft_err *err) {
    size_t min_history = (size_t)(cfg->spike_min_history > 2 ? cfg->spike_min_history : 3);
    for (size_t k = ev->spike_next; k < loss->n; k++) {
        ev->spike_next = k + 1;
        if (k < min_history) continue;
        size_t lo = k > (size_t)cfg->spike_window ? k - (size_t)cfg->spike_window : 0, h = k - lo;
        const double *hist = loss->value + lo;
        size_t recent = h < 8 ? h : 8;
        double level = median_of(hist + h - recent, recent, scratch);
        double sigma = noise_from_differences(hist, h, scratch);
        double x = loss->value[k];
        if (sigma < 1e-12) sigma = 1e-12;
        double z = (x - level) / sigma;
        if (!(z >= cfg->spike_sigma && x >= level * cfg->spike_min_ratio && x - level >= cfg->spike_min_rise))
            continue;
        double mean = 0;
        for (size_t i = 0; i < h; i++) mean += hist[i];
        mean /= (double)h;
        int critical_point = x >= cfg->spike_critical_ratio * mean;
        sft_finding *f;
        if (ev->spike_open >= 0 && ev->spike_open_last + 1 == k) {
            f = &ev->items[ev->spike_open];
            f->end_step = loss->step[k];
            if (x > EV(f, "loss")) evidence_set(f, "loss", x);
            if (z > EV(f, "robust_z")) evidence_set(f, "robust_z", z);
            evidence_set(f, "points", EV(f, "points") + 1);
            ev->spike_run_critical = critical_point ? ev->spike_run_critical + 1 : 0;
        } else {
            f = add_finding(&ev->items, &ev->count, &ev->cap, "loss_spike", SFT_SEVERITY_WARNING, loss->step[k],
                            loss->step[k], err);
            if (!f) return -1;
            evidence_set(f, "loss", x);
            evidence_set(f, "recent_level", level);
            evidence_set(f, "robust_z", z);
            evidence_set(f, "window_mean", mean);
            evidence_set(f, "window", (double)h);
            evidence_set(f, "points", 1);
            ev->spike_open = (long)(f - ev->items);
            ev->spike_run_critical = critical_point;
        }
        ev->spike_open_last = k;
        if (ev->spike_run_critical > cfg->spike_patience) f->severity = SFT_SEVERITY_CRITICAL;
        spike_message(f, cfg);
    }
    return 0;
}

/* Points per block of the settled gradient-norm level (the floor). */
#define GRAD_FLOOR_BLOCK 16

static int scan_grad_norms(point_events *ev, const series *g, const sft_diagnose_config *cfg, double *scratch,
                           sft_err *err) {
    for (size_t k = ev->grad_next; k < g->n; k++) {
        ev->grad_next = k + 1;
        /* The settled level: norms start high and fall; a slow exponential
         * growth hides from a trailing median but not from this floor. */
        double floor_before = ev->grad_floor;
        if ((k + 1) % GRAD_FLOOR_BLOCK == 0) {
            double m = median_of(g->value + k + 1 - GRAD_FLOOR_BLOCK, GRAD_FLOOR_BLOCK, scratch);
            if (ev->grad_floor == 0 || m < ev->grad_floor) ev->grad_floor = m;
        }
        if (k < 10) continue;
        size_t lo = k > (size_t)cfg->grad_window ? k - (size_t)cfg->grad_window : 0;
        double median = median_of(g->value + lo, k - lo, scratch);
        double ratio = g->value[k] / median;
        double growth = 0;
        size_t window = (size_t)cfg->grad_growth_window;
        if (window >= 8 && k + 1 >= window) {
            size_t q = window / 4;
            double first = median_of(g->value + k + 1 - window, q, scratch);
            double last = median_of(g->value + k + 1 - q, q, scratch);
            growth = last / first;
        }
        double recent = median_of(g->value + k - 7, 8, scratch);
        double above_floor = floor_before > 0 ? recent / floor_before : 0;
        if (!(ratio >= cfg->grad_spike_ratio || growth >= cfg->grad_growth || above_floor >= cfg->grad_spike_ratio))
            continue;
        sft_finding *f;
        if (ev->grad_open >= 0 && ev->grad_open_last + 1 == k) {
            f = &ev->items[ev->grad_open];
            f->end_step = g->step[k];
            if (g->value[k] > EV(f, "grad_norm")) evidence_set(f, "grad_norm", g->value[k]);
            if (ratio > EV(f, "ratio")) evidence_set(f, "ratio", ratio);
            if (growth > EV(f, "growth")) evidence_set(f, "growth", growth);
            if (above_floor > EV(f, "above_settled")) evidence_set(f, "above_settled", above_floor);
        } else {
            f = add_finding(&ev->items, &ev->count, &ev->cap, "exploding_gradients", SFT_SEVERITY_WARNING,
                            g->step[k], g->step[k], err);
            if (!f) return -1;
            evidence_set(f, "grad_norm", g->value[k]);
            evidence_set(f, "trailing_median", median);
            evidence_set(f, "ratio", ratio);
            evidence_set(f, "growth", growth);
            evidence_set(f, "growth_window", (double)window);
            evidence_set(f, "settled_level", floor_before);
            evidence_set(f, "above_settled", above_floor);
            ev->grad_open = (long)(f - ev->items);
        }
        ev->grad_open_last = k;
        if (EV(f, "ratio") >= cfg->grad_critical_ratio) f->severity = SFT_SEVERITY_CRITICAL;
        grad_message(f);
    }
    return 0;
}

/* ---- curve rules -------------------------------------------------------------------- */

/* The log-loss curve cut into blocks (see the file comment). */
typedef struct {
    size_t n;            /* finite losses */
    double *log_loss;    /* n */
    size_t block_size, block_count, offset; /* points before `offset` belong to no block */
    double *level;       /* block_count medians of log loss */
    double level_noise;  /* standard deviation of one block level */
    double start;        /* log loss at the start: median of the first 3 points */
} blocks;

static void blocks_free(blocks *b) {
    free(b->log_loss);
    free(b->level);
}

static int64_t block_first_step(const blocks *b, const series *s, size_t j) {
    return s->step[b->offset + j * b->block_size];
}

static int64_t block_last_step(const blocks *b, const series *s, size_t j) {
    return s->step[b->offset + (j + 1) * b->block_size - 1];
}

/* Curve rules need this many finite losses. */
#define CURVE_MIN_POINTS 20

static int blocks_build(blocks *b, const series *s, double *scratch, sft_err *err) {
    memset(b, 0, sizeof *b);
    b->n = s->n;
    if (s->n < CURVE_MIN_POINTS) return 0;
    b->log_loss = malloc(s->n * sizeof *b->log_loss);
    b->block_size = s->n / 20 > 5 ? s->n / 20 : 5;
    b->block_count = s->n / b->block_size;
    b->level = malloc(b->block_count * sizeof *b->level);
    if (!b->log_loss || !b->level) return sft_errf(err, "out of memory");
    for (size_t i = 0; i < s->n; i++) b->log_loss[i] = log(s->value[i] > 1e-8 ? s->value[i] : 1e-8);
    /* Blocks end at the last point, so the newest data always counts fully. */
    b->offset = s->n - b->block_count * b->block_size;
    for (size_t j = 0; j < b->block_count; j++)
        b->level[j] = median_of(b->log_loss + b->offset + j * b->block_size, b->block_size, scratch);
    /* 1.2533 = sqrt(pi/2): the standard error of a median relative to a mean's. */
    b->level_noise = 1.2533 * noise_from_second_differences(b->log_loss, s->n, scratch) / sqrt((double)b->block_size);
    b->start = median_of(b->log_loss, 3, scratch);
    return 0;
}

typedef struct {
    sft_finding **items;
    size_t *count, *cap;
} finding_list;

static sft_finding *list_add(finding_list *l, const char *kind, sft_severity sev, int64_t step, int64_t end_step,
                             sft_err *err) {
    return add_finding(l->items, l->count, l->cap, kind, sev, step, end_step, err);
}

static int rule_non_finite(const sft_curve *c, finding_list *out, sft_err *err) {
    size_t count = 0, first = 0, last = 0;
    int64_t last_finite_step = -1;
    double last_finite_loss = NAN;
    const char *what = NULL;
    double first_value = 0;
    for (size_t i = 0; i < c->train_count; i++) {
        const sft_train_point *p = &c->train[i];
        int bad_loss = (p->has & SFT_HAS_LOSS) && !isfinite(p->loss);
        int bad_grad = (p->has & SFT_HAS_GRAD_NORM) && !isfinite(p->grad_norm);
        if (!bad_loss && !bad_grad) {
            if ((p->has & SFT_HAS_LOSS) && !count) last_finite_step = p->step, last_finite_loss = p->loss;
            continue;
        }
        if (!count++) {
            first = i;
            what = bad_loss ? "training loss" : "gradient norm";
            first_value = bad_loss ? p->loss : p->grad_norm;
        }
        last = i;
    }
    size_t eval_count = 0;
    int64_t eval_step = 0;
    for (size_t i = 0; i < c->eval_count; i++)
        if (!isfinite(c->eval[i].val_loss) && !eval_count++) eval_step = c->eval[i].step;
    if (!count && !eval_count) return 0;
    int64_t step = count ? c->train[first].step : eval_step;
    int64_t end = count ? c->train[last].step : eval_step;
    if (count && eval_count && eval_step < step) step = eval_step;
    sft_finding *f = list_add(out, "non_finite", SFT_SEVERITY_CRITICAL, step, end, err);
    if (!f) return -1;
    evidence_set(f, "nonfinite_train_points", (double)count);
    evidence_set(f, "train_points", (double)c->train_count);
    evidence_set(f, "nonfinite_eval_points", (double)eval_count);
    if (last_finite_step >= 0) {
        evidence_set(f, "last_finite_step", (double)last_finite_step);
        evidence_set(f, "last_finite_loss", last_finite_loss);
    }
    if (count) {
        char value[16];
        snprintf(value, sizeof value, "%s", isnan(first_value) ? "NaN" : first_value > 0 ? "+Inf" : "-Inf");
        int n = snprintf(f->message, sizeof f->message, "The %s became %s at step %lld (%zu of %zu logged steps are not finite",
                         what, value, (long long)c->train[first].step, count, c->train_count);
        if (n > 0 && (size_t)n < sizeof f->message) {
            if (last_finite_step >= 0)
                snprintf(f->message + n, sizeof f->message - n, "; the last finite loss was %.4g at step %lld).",
                         last_finite_loss, (long long)last_finite_step);
            else
                snprintf(f->message + n, sizeof f->message - n, ").");
        }
    } else {
        snprintf(f->message, sizeof f->message, "The validation loss is not finite at step %lld (%zu evaluations).",
                 (long long)eval_step, eval_count);
    }
    snprintf(f->advice, sizeof f->advice,
             "Training cannot recover from NaN weights: resume from the last finite checkpoint with a lower "
             "learning rate (or longer warmup) and gradient clipping on, and inspect the records of that batch "
             "and the tokenizer/template for empty or corrupt examples.");
    return 0;
}

/* A loss that climbs from the very first steps never has a lower block to
 * rise from (with a coarse logging interval the climb fits inside the first
 * block, whose median is already high). The reference is then the first
 * logged loss, or the median of the first three when lower: two blocks in a
 * row (or the newest) at divergence_start_ratio times it is a divergence at
 * any noise level a healthy run has, since no healthy run sits at twice its
 * initial loss. */
static int rule_divergence_from_start(const blocks *b, const series *s, const sft_diagnose_config *cfg,
                                      finding_list *out, int *found, sft_err *err) {
    size_t nb = b->block_count;
    double start = b->log_loss[0] < b->start ? b->log_loss[0] : b->start;
    double min_log_rise = log(cfg->divergence_start_ratio);
    for (size_t j = 0; j < nb; j++) {
        if (b->level[j] - start < min_log_rise) continue;
        size_t end = j;
        while (end + 1 < nb && b->level[end + 1] - start >= min_log_rise) end++;
        if (end == j && j + 1 < nb) continue;
        double peak = b->level[j];
        for (size_t k = j; k <= end; k++)
            if (b->level[k] > peak) peak = b->level[k];
        int64_t end_step = end + 1 == nb ? s->step[s->n - 1] : block_last_step(b, s, end);
        sft_finding *f = list_add(out, "divergence", SFT_SEVERITY_CRITICAL, block_first_step(b, s, j), end_step, err);
        if (!f) return -1;
        double start_loss = exp(start), peak_loss = exp(peak);
        evidence_set(f, "start_loss", start_loss);
        evidence_set(f, "min_loss", start_loss);
        evidence_set(f, "min_step", (double)s->step[0]);
        evidence_set(f, "loss", peak_loss);
        evidence_set(f, "rise", peak_loss / start_loss - 1);
        evidence_set(f, "points", (double)((end - j + 1) * b->block_size));
        snprintf(f->message, sizeof f->message,
                 "The smoothed training loss climbed from where it started, %.4g at step %lld, to %.4g between steps "
                 "%lld and %lld (%.1fx): training is diverging from its first steps.",
                 start_loss, (long long)s->step[0], peak_loss, (long long)f->step, (long long)f->end_step,
                 peak_loss / start_loss);
        snprintf(f->advice, sizeof f->advice,
                 "The learning rate is far too high for this model: lower it 10x or more, use a warmup, keep "
                 "gradient clipping on; if a lower rate does the same, check the data, tokenizer and template.");
        *found = 1;
        return 0;
    }
    return 0;
}

static int rule_divergence(const blocks *b, const series *s, const sft_diagnose_config *cfg, finding_list *out,
                           int *found, sft_err *err) {
    *found = 0;
    if (b->block_count < 3) return 0;
    double min_log_rise = log1p(cfg->divergence_rise);
    if (6 * b->level_noise > min_log_rise) min_log_rise = 6 * b->level_noise;
    size_t nb = b->block_count;
    double run_min = b->level[0];
    size_t run_min_at = 0;
    for (size_t j = 1; j < nb; j++) {
        int risen = b->level[j] - run_min >= min_log_rise &&
                    exp(b->level[j]) - exp(run_min) >= cfg->divergence_min_rise;
        if (!risen) {
            if (b->level[j] < run_min) run_min = b->level[j], run_min_at = j;
            continue;
        }
        /* Sustained: two blocks in a row, or the newest block. */
        size_t end = j;
        while (end + 1 < nb && b->level[end + 1] - run_min >= min_log_rise &&
               exp(b->level[end + 1]) - exp(run_min) >= cfg->divergence_min_rise)
            end++;
        if (end == j && j + 1 < nb) continue;
        double peak = b->level[j];
        for (size_t k = j; k <= end; k++)
            if (b->level[k] > peak) peak = b->level[k];
        int above_start = peak >= b->start;
        int64_t end_step = end + 1 == nb ? s->step[s->n - 1] : block_last_step(b, s, end);
        sft_finding *f = list_add(out, "divergence", above_start ? SFT_SEVERITY_CRITICAL : SFT_SEVERITY_WARNING,
                                  block_first_step(b, s, j), end_step, err);
        if (!f) return -1;
        double min_loss = exp(run_min), peak_loss = exp(peak), start_loss = exp(b->start);
        evidence_set(f, "start_loss", start_loss);
        evidence_set(f, "min_loss", min_loss);
        evidence_set(f, "min_step", (double)block_last_step(b, s, run_min_at));
        evidence_set(f, "loss", peak_loss);
        evidence_set(f, "rise", peak_loss / min_loss - 1);
        evidence_set(f, "points", (double)((end - j + 1) * b->block_size));
        snprintf(f->message, sizeof f->message,
                 "The smoothed training loss rose from its low of %.4g (around step %lld) to %.4g between steps %lld "
                 "and %lld (+%.0f%%)%s: training is diverging.",
                 min_loss, (long long)block_last_step(b, s, run_min_at), peak_loss, (long long)f->step,
                 (long long)f->end_step, 100 * (peak_loss / min_loss - 1),
                 above_start ? ", back above where it started" : "");
        snprintf(f->advice, sizeof f->advice,
                 "Lower the learning rate (try 3-10x lower) or lengthen the warmup, keep gradient clipping on, raise "
                 "the batch size; if it began suddenly, check the data, tokenizer and template around step %lld.",
                 (long long)f->step);
        *found = 1;
        return 0;
    }
    return rule_divergence_from_start(b, s, cfg, out, found, err);
}

static int rule_plateau(const blocks *b, const series *s, const sft_diagnose_config *cfg, finding_list *out,
                        sft_err *err) {
    size_t nb = b->block_count;
    if (nb < 4) return 0;
    double tol = -log1p(-cfg->plateau_tolerance);
    if (3 * b->level_noise > tol) tol = 3 * b->level_noise;
    size_t min_blocks = (size_t)ceil(cfg->plateau_min_fraction * (double)nb);
    if (min_blocks < 3) min_blocks = 3;
    for (size_t i = 0; i + min_blocks <= nb; i++) {
        int flat = 1;
        for (size_t j = i + 1; j < nb && flat; j++) flat = fabs(b->level[j] - b->level[i]) <= tol;
        if (!flat) continue;
        /* A curve flat from its start is underfitting, not a plateau. */
        if (b->start - b->level[i] < -log1p(-cfg->underfit_min_improvement)) return 0;
        sft_finding *f = list_add(out, "plateau", SFT_SEVERITY_INFO, block_first_step(b, s, i), s->step[s->n - 1], err);
        if (!f) return -1;
        double level = exp(b->level[i]), last = exp(b->level[nb - 1]);
        double fraction = (double)((nb - i) * b->block_size) / (double)s->n;
        evidence_set(f, "loss", level);
        evidence_set(f, "last_loss", last);
        evidence_set(f, "change", last / level - 1);
        evidence_set(f, "fraction_of_run", fraction);
        snprintf(f->message, sizeof f->message,
                 "The training loss has stayed near %.4g since step %lld (the last %.0f%% of the logged run, change "
                 "%+.1f%%): it has converged at this learning rate.",
                 level, (long long)f->step, 100 * fraction, 100 * (last / level - 1));
        snprintf(f->advice, sizeof f->advice,
                 "Further steps bring little: keep the checkpoint with the best validation loss, stop earlier next "
                 "time, or decay the learning rate further to settle lower.");
        return 0;
    }
    return 0;
}

static int rule_underfitting(const blocks *b, const series *s, const sft_curve *c, const sft_diagnose_config *cfg,
                             double *scratch, finding_list *out, sft_err *err) {
    size_t nb = b->block_count;
    if (nb < 4) return 0;
    double best = b->start;
    for (size_t j = 0; j < nb; j++)
        if (b->level[j] < best) best = b->level[j];
    double end = b->level[nb - 1];
    double improvement = 1 - exp(best - b->start), end_improvement = 1 - exp(end - b->start);
    double val_first = NAN, val_best = NAN;
    for (size_t i = 0; i < c->eval_count; i++) {
        double v = c->eval[i].val_loss;
        if (!isfinite(v)) continue;
        if (isnan(val_first)) val_first = v;
        if (isnan(val_best) || v < val_best) val_best = v;
    }
    /* Warmup keeps a live curve flat for a while and every curve is "still
     * falling" early on: judge flatness from 30% of the planned run, the
     * missing knee only at its end. */
    double progress = 1;
    if (c->planned_steps < 0) return 0;
    if (c->planned_steps > 0) progress = (double)s->step[s->n - 1] / (double)c->planned_steps;
    if (progress < 0.3) return 0;
    int has_val = isfinite(val_first) && c->eval_count >= 2;
    double val_improvement = has_val ? 1 - val_best / val_first : NAN;
    double start_loss = exp(b->start), end_loss = exp(end);

    /* Flat: the end is not clearly more than underfit_min_improvement below
     * the start, allowing two standard deviations of the noise of the two
     * levels (the start is the median of the first 5 points). */
    double start5 = median_of(b->log_loss, 5, scratch);
    double start_noise = 1.2533 * b->level_noise * sqrt((double)b->block_size) / sqrt(5.0);
    double flat_noise = 2 * sqrt(start_noise * start_noise + b->level_noise * b->level_noise);
    int train_flat = start5 - end < -log1p(-cfg->underfit_min_improvement) + flat_noise;
    if (train_flat && (!has_val || val_improvement < cfg->underfit_min_improvement)) {
        sft_finding *f = list_add(out, "underfitting", SFT_SEVERITY_WARNING, s->step[0], s->step[s->n - 1], err);
        if (!f) return -1;
        evidence_set(f, "start_loss", start_loss);
        evidence_set(f, "best_loss", exp(best));
        evidence_set(f, "end_loss", end_loss);
        evidence_set(f, "improvement", improvement);
        if (has_val) evidence_set(f, "val_improvement", val_improvement);
        int n = snprintf(f->message, sizeof f->message,
                         "The training loss only went from %.4g to %.4g over %zu logged points (%.1f%% better at best)",
                         start_loss, end_loss, s->n, 100 * improvement);
        if (has_val && n > 0 && (size_t)n < sizeof f->message)
            n += snprintf(f->message + n, sizeof f->message - n, " and the validation loss from %.4g to %.4g", val_first,
                          val_best);
        if (n > 0 && (size_t)n < sizeof f->message)
            snprintf(f->message + n, sizeof f->message - n, ": both are flat at a high level, the model is barely learning.");
        snprintf(f->advice, sizeof f->advice,
                 "Raise the learning rate (try 3-10x higher), train longer, or give the model more capacity (a bigger "
                 "model or a higher LoRA rank); check that the loss mask covers the assistant tokens.");
        return 0;
    }
    if (progress < 0.9 || end_improvement >= cfg->underfit_slow_improvement || end >= b->start) return 0;
    /* No knee: the last 30% of the run still falls at most of the average rate. */
    size_t late_from = (size_t)floor(0.7 * (double)(nb - 1));
    if (late_from >= nb - 1) return 0;
    double late_rate = (b->level[late_from] - end) / (double)(nb - 1 - late_from);
    double mean_rate = (b->start - end) / ((double)nb - 0.5);
    double late_drop = b->level[late_from] - end;
    if (!(mean_rate > 0) || late_rate / mean_rate < cfg->underfit_late_rate || late_drop < 4 * b->level_noise) return 0;
    sft_finding *f = list_add(out, "underfitting", SFT_SEVERITY_WARNING, s->step[0], s->step[s->n - 1], err);
    if (!f) return -1;
    evidence_set(f, "start_loss", start_loss);
    evidence_set(f, "end_loss", end_loss);
    evidence_set(f, "improvement", end_improvement);
    evidence_set(f, "late_rate_ratio", late_rate / mean_rate);
    if (has_val) evidence_set(f, "val_improvement", val_improvement);
    snprintf(f->message, sizeof f->message,
             "The training loss is still falling steadily at the end (from %.4g to %.4g, %.1f%% better; the last 30%% "
             "of the run fell at %.0f%% of the average rate): training stopped long before it converged.",
             start_loss, end_loss, 100 * end_improvement, 100 * late_rate / mean_rate);
    snprintf(f->advice, sizeof f->advice,
             "Train longer (more epochs or steps) or raise the learning rate; the curve has no knee yet, so the model "
             "is far from what it can learn from this data.");
    return 0;
}

/* Median training loss of the few points logged up to `step`. */
static double train_level_at(const series *s, int64_t step, double *scratch) {
    size_t hi = 0;
    while (hi < s->n && s->step[hi] <= step) hi++;
    if (hi == 0) return NAN;
    size_t m = s->n / 20 > 5 ? s->n / 20 : 5;
    if (m > hi) m = hi;
    return median_of(s->value + hi - m, m, scratch);
}

static int rule_overfitting(const sft_curve *c, const series *loss, const sft_diagnose_config *cfg, double *scratch,
                            finding_list *out, sft_err *err) {
    size_t best = 0, finite = 0, after = 0;
    double best_val = INFINITY;
    for (size_t i = 0; i < c->eval_count; i++) {
        double v = c->eval[i].val_loss;
        if (!isfinite(v)) continue;
        finite++;
        if (v < best_val) best_val = v, best = i, after = 0;
        else after++;
    }
    if (finite < 3 || after < (size_t)cfg->overfit_patience) return 0;
    const sft_eval_point *last = NULL;
    for (size_t i = c->eval_count; i-- > 0 && !last;)
        if (isfinite(c->eval[i].val_loss)) last = &c->eval[i];
    double rise = last->val_loss / best_val - 1;
    if (rise < cfg->overfit_rise || last->val_loss - best_val < 1e-3) return 0;
    const sft_eval_point *b = &c->eval[best];
    double train_best = train_level_at(loss, b->step, scratch), train_last = train_level_at(loss, last->step, scratch);
    int train_known = isfinite(train_best) && isfinite(train_last);
    /* A rising training loss makes this divergence, not memorization. */
    if (train_known && train_last > train_best) return 0;
    sft_finding *f = list_add(out, "overfitting", SFT_SEVERITY_WARNING, b->step, last->step, err);
    if (!f) return -1;
    evidence_set(f, "best_step", (double)b->step);
    evidence_set(f, "best_val_loss", best_val);
    evidence_set(f, "val_loss", last->val_loss);
    evidence_set(f, "rise", rise);
    evidence_set(f, "evals_since_best", (double)after);
    int n = snprintf(f->message, sizeof f->message,
                     "The validation loss rose from its best %.4g at step %lld to %.4g at step %lld (+%.1f%% over %zu "
                     "evaluations)",
                     best_val, (long long)b->step, last->val_loss, (long long)last->step, 100 * rise, after);
    if (train_known) {
        evidence_set(f, "train_loss_at_best", train_best);
        evidence_set(f, "train_loss", train_last);
        evidence_set(f, "gap", last->val_loss - train_last);
        evidence_set(f, "gap_at_best", best_val - train_best);
        if (n > 0 && (size_t)n < sizeof f->message)
            n += snprintf(f->message + n, sizeof f->message - n,
                          " while the training loss fell from %.4g to %.4g; the gap between them grew from %.3g to %.3g",
                          train_best, train_last, best_val - train_best, last->val_loss - train_last);
    }
    if (n > 0 && (size_t)n < sizeof f->message)
        snprintf(f->message + n, sizeof f->message - n, ": the model is memorizing the training set.");
    snprintf(f->advice, sizeof f->advice,
             "Keep the checkpoint of step %lld (the best validation loss), stop earlier or train fewer epochs, add "
             "more or more varied data, or regularize (weight decay, LoRA dropout, a lower learning rate).",
             (long long)b->step);
    return 0;
}

static int rule_frequent_clipping(const sft_curve *c, const sft_diagnose_config *cfg, finding_list *out,
                                  sft_err *err) {
    size_t window = (size_t)cfg->clip_window, known = 0, clipped_total = 0;
    unsigned char *clipped = malloc(c->train_count ? c->train_count : 1);
    int64_t *steps = malloc((c->train_count ? c->train_count : 1) * sizeof *steps);
    if (!clipped || !steps) {
        free(clipped);
        free(steps);
        return sft_errf(err, "out of memory");
    }
    for (size_t i = 0; i < c->train_count; i++) {
        if (!sft_train_point_clip_known(&c->train[i], c->max_grad_norm)) continue;
        clipped[known] = (unsigned char)sft_train_point_was_clipped(&c->train[i], c->max_grad_norm);
        clipped_total += clipped[known];
        steps[known++] = c->train[i].step;
    }
    size_t in_window = 0, periods = 0;
    int64_t first = 0, last = 0;
    double max_fraction = 0, end_fraction = 0;
    int holds = 0;
    for (size_t k = 0; k < known; k++) {
        in_window += clipped[k];
        if (k >= window) in_window -= clipped[k - window];
        size_t width = k + 1 < window ? k + 1 : window;
        holds = 0;
        if (width < 10) continue;
        double fraction = (double)in_window / (double)width;
        end_fraction = fraction;
        holds = fraction >= cfg->clip_fraction;
        if (!holds) continue;
        if (!periods) first = steps[k];
        if (!periods || steps[k - 1] != last) periods++;
        last = steps[k];
        if (fraction > max_fraction) max_fraction = fraction;
    }
    free(clipped);
    int64_t last_known_step = known ? steps[known - 1] : 0;
    free(steps);
    if (!periods) return 0;
    /* How much the clip cut: the median pre-clip norm of the last window of
     * steps whose norm was logged, over the threshold (NaN when unknown).
     * The threshold is the curve's, else what clipped steps were cut to
     * (metrics.jsonl logs the norm after clipping). */
    double excess = NAN;
    if (c->train_count) {
        size_t n = 0, cut_count = 0, start = c->train_count > window ? c->train_count - window : 0;
        double *norms = malloc(4 * (c->train_count - start) * sizeof *norms);
        if (!norms) return sft_errf(err, "out of memory");
        double *cut_to = norms + 2 * (c->train_count - start);
        for (size_t i = start; i < c->train_count; i++) {
            const sft_train_point *p = &c->train[i];
            if (!(p->has & SFT_HAS_GRAD_NORM) || !isfinite(p->grad_norm)) continue;
            norms[n++] = p->grad_norm;
            if ((p->has & SFT_HAS_GRAD_NORM_CLIPPED) && isfinite(p->grad_norm_clipped) &&
                sft_train_point_was_clipped(p, c->max_grad_norm))
                cut_to[cut_count++] = p->grad_norm_clipped;
        }
        double threshold = c->max_grad_norm > 0 ? c->max_grad_norm
                           : cut_count          ? median_of(cut_to, cut_count, norms + n)
                                                : NAN;
        if (n && threshold > 0) excess = median_of(norms, n, norms + n) / threshold;
        free(norms);
    }
    int trims_little = holds && isfinite(excess) && excess < cfg->clip_min_excess;
    /* Clipping during warmup and the fast early fall is common and harmless;
     * while a run is in progress, only its later three quarters warn. */
    int early = 0;
    if (c->planned_steps > 0) early = (double)last_known_step < 0.25 * (double)c->planned_steps;
    else if (c->planned_steps < 0) early = known < 4 * window;
    sft_finding *f = list_add(out, "frequent_clipping",
                              holds && !early && !trims_little ? SFT_SEVERITY_WARNING : SFT_SEVERITY_INFO, first, last,
                              err);
    if (!f) return -1;
    evidence_set(f, "clipped_fraction", holds ? end_fraction : max_fraction);
    evidence_set(f, "window", (double)(known < window ? known : window));
    evidence_set(f, "clipped_steps", (double)clipped_total);
    evidence_set(f, "steps", (double)known);
    if (c->max_grad_norm > 0) evidence_set(f, "max_grad_norm", c->max_grad_norm);
    if (isfinite(excess)) evidence_set(f, "median_norm_ratio", excess);
    if (holds)
        snprintf(f->message, sizeof f->message,
                 "Gradient clipping fired on %.0f%% of the last %zu steps (since step %lld; %zu of %zu steps clipped in "
                 "all): the clip, not the learning-rate schedule, is setting the size of most updates.",
                 100 * end_fraction, known < window ? known : window, (long long)first, clipped_total, known);
    if (trims_little)
        snprintf(f->message, sizeof f->message,
                 "Gradient clipping fired on %.0f%% of the last %zu steps (since step %lld; %zu of %zu steps clipped in "
                 "all), but the median norm is only %.2fx the clipping threshold: the clip trims the updates a little, "
                 "it does not set their size.",
                 100 * end_fraction, known < window ? known : window, (long long)first, clipped_total, known, excess);
    else if (holds && early) {
        size_t n = strlen(f->message);
        snprintf(f->message + n, sizeof f->message - n, " This early in a run it is common; watch whether it settles.");
    }
    if (!holds)
        snprintf(f->message, sizeof f->message,
                 "Gradient clipping fired on most steps between step %lld and step %lld (up to %.0f%% of %zu steps), "
                 "then settled.",
                 (long long)first, (long long)last, 100 * max_fraction, known < window ? known : window);
    if (trims_little)
        snprintf(f->advice, sizeof f->advice,
                 "Nothing needs to change while the loss falls; if it stalls, a somewhat higher --max-grad-norm lets "
                 "the schedule size the updates again.");
    else if (!holds)
        snprintf(f->advice, sizeof f->advice,
                 "Nothing needs to change: clipping in the warmup and the fast early fall is common. If it comes back "
                 "late in training, lower the learning rate or check the data for very long or broken records.");
    else
        snprintf(f->advice, sizeof f->advice,
                 "Lower the learning rate or lengthen the warmup, and check the data for very long or broken records; "
                 "if the norms are steady and the loss falls, a higher --max-grad-norm is also fine.");
    return 0;
}

/* ---- assembling a diagnosis ------------------------------------------------------------ */

static int cmp_finding(const void *a, const void *b) {
    const sft_finding *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    int k = strcmp(x->kind, y->kind);
    if (k) return k;
    return (x->end_step > y->end_step) - (x->end_step < y->end_step);
}

/* What a diagnosis keeps between calls on a growing curve: the finite
 * series (appended to, never rebuilt), the point events, a scratch buffer,
 * and the findings of the last pass of the curve rules. */
typedef struct {
    point_events events;
    series loss, grad;
    size_t loss_cap, grad_cap;
    size_t train_seen; /* curve training points already appended to the series */
    double *scratch;
    size_t scratch_cap;
    sft_finding *curve_findings;
    size_t curve_count, curve_cap;
    int curve_pass_done;
    size_t pass_train_count, pass_eval_count;
    int64_t pass_planned_steps;
} diagnose_state;

static void state_init(diagnose_state *st) {
    memset(st, 0, sizeof *st);
    st->events.spike_open = st->events.grad_open = -1;
}

static void state_free(diagnose_state *st) {
    free(st->events.items);
    series_free(&st->loss);
    series_free(&st->grad);
    free(st->scratch);
    free(st->curve_findings);
}

static int series_push(series *s, size_t *cap, double value, int64_t step, sft_err *err) {
    if (s->n == *cap) {
        size_t new_cap = *cap ? 2 * *cap : 256;
        double *v = realloc(s->value, new_cap * sizeof *v);
        if (v) s->value = v;
        int64_t *st = v ? realloc(s->step, new_cap * sizeof *st) : NULL;
        if (!v || !st) return sft_errf(err, "out of memory");
        s->step = st;
        *cap = new_cap;
    }
    s->value[s->n] = value;
    s->step[s->n++] = step;
    return 0;
}

/* Appends the curve's new training points to the finite series. */
static int state_extend(diagnose_state *st, const sft_curve *c, sft_err *err) {
    for (; st->train_seen < c->train_count; st->train_seen++) {
        const sft_train_point *p = &c->train[st->train_seen];
        if ((p->has & SFT_HAS_LOSS) && isfinite(p->loss) && series_push(&st->loss, &st->loss_cap, p->loss, p->step, err))
            return -1;
        if ((p->has & SFT_HAS_GRAD_NORM) && isfinite(p->grad_norm) && p->grad_norm > 0 &&
            series_push(&st->grad, &st->grad_cap, p->grad_norm, p->step, err))
            return -1;
    }
    size_t need = 4 * (c->train_count + c->eval_count + 16);
    if (need > st->scratch_cap) {
        double *p = realloc(st->scratch, 2 * need * sizeof *p);
        if (!p) return sft_errf(err, "out of memory");
        st->scratch = p;
        st->scratch_cap = 2 * need;
    }
    return 0;
}

/* The curve rules look at the whole curve (linear cost): during training
 * they run again when the curve grew by 1%, an evaluation arrived, or the
 * run reached its planned end; point rules and NaN checks run every call. */
static int curve_pass_due(const diagnose_state *st, const sft_curve *c) {
    if (!st->curve_pass_done || c->planned_steps == 0 || c->planned_steps != st->pass_planned_steps) return 1;
    if (c->eval_count != st->pass_eval_count) return 1;
    if (c->planned_steps > 0 && c->train_count && c->train[c->train_count - 1].step >= c->planned_steps) return 1;
    return c->train_count >= st->pass_train_count + 1 + st->pass_train_count / 100;
}

static int curve_pass(diagnose_state *st, const sft_curve *c, const sft_diagnose_config *cfg, sft_err *err) {
    st->curve_count = 0;
    finding_list list = {&st->curve_findings, &st->curve_count, &st->curve_cap};
    blocks b = {0};
    int rc = -1, diverged = 0;
    if (blocks_build(&b, &st->loss, st->scratch, err)) goto done;
    if (b.block_count) {
        if (rule_divergence(&b, &st->loss, cfg, &list, &diverged, err)) goto done;
        if (!diverged && (rule_plateau(&b, &st->loss, cfg, &list, err) ||
                          rule_underfitting(&b, &st->loss, c, cfg, st->scratch, &list, err)))
            goto done;
    }
    if (rule_overfitting(c, &st->loss, cfg, st->scratch, &list, err)) goto done;
    if (rule_frequent_clipping(c, cfg, &list, err)) goto done;
    st->curve_pass_done = 1;
    st->pass_train_count = c->train_count;
    st->pass_eval_count = c->eval_count;
    st->pass_planned_steps = c->planned_steps;
    rc = 0;
done:
    blocks_free(&b);
    return rc;
}

static int copy_findings(finding_list *list, const sft_finding *items, size_t count, sft_err *err) {
    for (size_t i = 0; i < count; i++) {
        sft_finding *f = list_add(list, items[i].kind, items[i].severity, 0, 0, err);
        if (!f) return -1;
        *f = items[i];
    }
    return 0;
}

static int diagnose_with(diagnose_state *st, const sft_curve *c, const sft_diagnose_config *cfg, sft_diagnosis *out,
                         sft_err *err) {
    sft_diagnosis_free(out);
    if (c->train_count < st->train_seen) return sft_errf(err, "the curve shrank between two diagnoses");
    if (state_extend(st, c, err)) return -1;
    if (scan_spikes(&st->events, &st->loss, cfg, st->scratch, err) ||
        scan_grad_norms(&st->events, &st->grad, cfg, st->scratch, err))
        return -1;
    if (curve_pass_due(st, c) && curve_pass(st, c, cfg, err)) return -1;
    finding_list list = {&out->findings, &out->finding_count, &out->finding_cap};
    if (copy_findings(&list, st->events.items, st->events.count, err) || rule_non_finite(c, &list, err) ||
        copy_findings(&list, st->curve_findings, st->curve_count, err))
        return -1;

    if (out->finding_count) qsort(out->findings, out->finding_count, sizeof *out->findings, cmp_finding);
    for (size_t i = 0; i < out->finding_count; i++)
        for (size_t k = 0; k < c->note_count && !out->findings[i].records[0]; k++)
            if (c->notes[k].step == out->findings[i].step && !strcmp(c->notes[k].kind, out->findings[i].kind))
                snprintf(out->findings[i].records, sizeof out->findings[i].records, "%s", c->notes[k].records);
    out->verdict = "healthy";
    for (size_t i = 0; i < out->finding_count; i++) {
        if (out->findings[i].severity == SFT_SEVERITY_CRITICAL) out->verdict = "failing";
        else if (out->findings[i].severity == SFT_SEVERITY_WARNING && strcmp(out->verdict, "failing"))
            out->verdict = "warning";
    }
    for (size_t i = 0; i < c->eval_count; i++) {
        double v = c->eval[i].val_loss;
        if (isfinite(v) && (!out->has_best || v < out->best_val_loss)) {
            out->has_best = 1;
            out->best_val_loss = v;
            out->best_step = c->eval[i].step;
        }
    }
    return 0;
}

int sft_diagnose(const sft_curve *c, const sft_diagnose_config *cfg, sft_diagnosis *out, sft_err *err) {
    diagnose_state st;
    state_init(&st);
    int rc = diagnose_with(&st, c, cfg, out, err);
    state_free(&st);
    return rc;
}

struct sft_diagnose_tracker {
    diagnose_state state;
    struct reported {
        char kind[32];
        int64_t step;
        sft_severity severity;
    } *reported;
    size_t reported_count, reported_cap;
};

static int is_point_kind(const char *kind) {
    return !strcmp(kind, "loss_spike") || !strcmp(kind, "exploding_gradients");
}

sft_diagnose_tracker *sft_diagnose_tracker_new(sft_err *err) {
    sft_diagnose_tracker *t = calloc(1, sizeof *t);
    if (!t) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    state_init(&t->state);
    return t;
}

void sft_diagnose_tracker_free(sft_diagnose_tracker *t) {
    if (!t) return;
    state_free(&t->state);
    free(t->reported);
    free(t);
}

int sft_diagnose_update(sft_diagnose_tracker *t, const sft_curve *c, const sft_diagnose_config *cfg,
                        sft_diagnosis *out, size_t *first_raised_count, sft_err *err) {
    *first_raised_count = 0;
    if (diagnose_with(&t->state, c, cfg, out, err)) return -1;
    for (size_t i = 0; i < out->finding_count; i++) {
        sft_finding *f = &out->findings[i];
        int point = is_point_kind(f->kind);
        struct reported *seen = NULL;
        for (size_t r = 0; r < t->reported_count && !seen; r++)
            if (!strcmp(t->reported[r].kind, f->kind) && (!point || t->reported[r].step == f->step))
                seen = &t->reported[r];
        if (seen && f->severity <= seen->severity) continue;
        if (!seen) {
            if (t->reported_count == t->reported_cap) {
                size_t cap = t->reported_cap ? 2 * t->reported_cap : 16;
                struct reported *p = realloc(t->reported, cap * sizeof *p);
                if (!p) return sft_errf(err, "out of memory");
                t->reported = p;
                t->reported_cap = cap;
            }
            seen = &t->reported[t->reported_count++];
            snprintf(seen->kind, sizeof seen->kind, "%s", f->kind);
            seen->step = f->step;
        }
        seen->severity = f->severity;
        f->first_raised = 1;
        (*first_raised_count)++;
    }
    return 0;
}

/* ---- output ------------------------------------------------------------------------------ */

/* The shortest decimal that reads back as the same double; integers plain. */
static void write_number(FILE *f, double v) {
    if (isnan(v)) fputs("\"NaN\"", f);
    else if (isinf(v)) fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", f);
    else if (v == floor(v) && fabs(v) < 1e15) fprintf(f, "%.0f", v);
    else {
        char buf[40];
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(buf, sizeof buf, "%.*g", digits, v);
            if (strtod(buf, NULL) == v) break;
        }
        fputs(buf, f);
    }
}

void sft_finding_write_json(FILE *f, const sft_finding *x, int type_finding) {
    fputs("{", f);
    if (type_finding) fputs("\"type\":\"finding\",", f);
    fputs("\"kind\":", f);
    sft_json_write_string(f, x->kind, strlen(x->kind));
    fprintf(f, ",\"severity\":\"%s\",\"step\":%lld,\"end_step\":%lld,\"evidence\":{", sft_severity_name(x->severity),
            (long long)x->step, (long long)x->end_step);
    for (size_t i = 0; i < x->evidence_count; i++) {
        if (i) fputc(',', f);
        sft_json_write_string(f, x->evidence[i].key, strlen(x->evidence[i].key));
        fputc(':', f);
        write_number(f, x->evidence[i].value);
    }
    if (x->records[0]) {
        fputs(x->evidence_count ? ",\"records\":" : "\"records\":", f);
        sft_json_write_string(f, x->records, strlen(x->records));
    }
    fputs("},\"message\":", f);
    sft_json_write_string(f, x->message, strlen(x->message));
    fputs(",\"advice\":", f);
    sft_json_write_string(f, x->advice, strlen(x->advice));
    fputs("}", f);
}

void sft_diagnosis_write_json(FILE *f, const sft_diagnosis *d) {
    fprintf(f, "{\n  \"verdict\": \"%s\",\n  \"best_step\": ", d->verdict);
    if (d->has_best) fprintf(f, "%lld", (long long)d->best_step);
    else fputs("null", f);
    fputs(",\n  \"best_val_loss\": ", f);
    if (d->has_best) write_number(f, d->best_val_loss);
    else fputs("null", f);
    fputs(",\n  \"findings\": [", f);
    for (size_t i = 0; i < d->finding_count; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        sft_finding_write_json(f, &d->findings[i], 0);
    }
    fputs(d->finding_count ? "\n  ]\n}\n" : "]\n}\n", f);
}

int sft_diagnosis_save(const char *path, const sft_diagnosis *d, sft_err *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) return sft_err_errno(err, "open_memstream");
    sft_diagnosis_write_json(mem, d);
    if (fclose(mem)) {
        free(text);
        return sft_errf(err, "%s: out of memory", path);
    }
    int rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

void sft_diagnosis_print_text(FILE *f, const sft_diagnosis *d, const char *source_name) {
    size_t warnings = 0, criticals = 0;
    for (size_t i = 0; i < d->finding_count; i++) {
        warnings += d->findings[i].severity == SFT_SEVERITY_WARNING;
        criticals += d->findings[i].severity == SFT_SEVERITY_CRITICAL;
    }
    fprintf(f, "%s: %s", source_name, d->verdict);
    if (d->finding_count)
        fprintf(f, " (%zu finding%s: %zu critical, %zu warning)", d->finding_count, d->finding_count == 1 ? "" : "s",
                criticals, warnings);
    fputc('\n', f);
    if (d->has_best) fprintf(f, "best step: %lld (validation loss %.4g)\n", (long long)d->best_step, d->best_val_loss);
    else fputs("best step: none (no validation loss recorded)\n", f);
    /* Most severe first; by step within a severity. */
    for (int sev = SFT_SEVERITY_CRITICAL; sev >= SFT_SEVERITY_INFO; sev--)
    for (size_t i = 0; i < d->finding_count; i++) {
        const sft_finding *x = &d->findings[i];
        if ((int)x->severity != sev) continue;
        fprintf(f, "\n[%s] %s at step %lld", sft_severity_name(x->severity), x->kind, (long long)x->step);
        if (x->end_step != x->step) fprintf(f, "-%lld", (long long)x->end_step);
        fprintf(f, "\n  %s\n  advice: %s\n", x->message, x->advice);
        if (x->records[0]) fprintf(f, "  records: %s\n", x->records);
    }
}
