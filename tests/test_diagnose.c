/* test_diagnose.c: the diagnosis rules on a labelled corpus of synthetic
 * curves, and on the two real HF Trainer runs of tests/fixtures/hf_trainer.
 *
 * A seeded generator draws curves of every label (healthy, divergence from a
 * learning rate far too high, loss spikes, NaN, overfitting from tiny data and
 * many epochs, underfitting from a learning rate far too low, exploding
 * gradients, frequent clipping) across loss scales (start 1 to 11, end 0.5 to
 * 1.7), lengths (40 to 2500 logged points), noise (1% to 10% per step) and
 * logging intervals (1, 5, 20 steps; values averaged over the interval as HF
 * Trainer does). Every curve must get its label (and only findings its label
 * allows), healthy ones no warning at all. A subset goes through the
 * metrics.jsonl and trainer_state.json files and must read back to the same
 * diagnosis. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "monitor/diagnose.h"
#include "monitor/metrics.h"
#include "monitor/readers.h"
#include "test.h"

/* ---- a seeded generator ----------------------------------------------------------- */

typedef struct {
    uint64_t state;
} rng;

static uint64_t rng_next(rng *r) { /* splitmix64 */
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) / 9007199254740992.0; }

static double rng_normal(rng *r) {
    double u = rng_uniform(r), v = rng_uniform(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

typedef enum {
    LABEL_HEALTHY,
    LABEL_DIVERGENCE,
    LABEL_SPIKE,
    LABEL_NAN,
    LABEL_OVERFIT,
    LABEL_UNDERFIT,
    LABEL_EXPLODING,
    LABEL_CLIPPING,
    LABEL_COUNT
} label;

static const char *label_name[LABEL_COUNT] = {"healthy",     "divergence",  "loss_spike",         "non_finite",
                                              "overfitting", "underfitting", "exploding_gradients", "frequent_clipping"};

/* Findings a curve of each label may carry besides its own. */
static const char *allowed_extra[LABEL_COUNT] = {
    "plateau frequent_clipping",                       /* healthy: info only (checked separately) */
    "loss_spike exploding_gradients frequent_clipping", /* divergence */
    "plateau",                                         /* loss_spike */
    "plateau loss_spike",                              /* non_finite */
    "plateau",                                         /* overfitting */
    "",                                                /* underfitting */
    "frequent_clipping loss_spike plateau",            /* exploding_gradients */
    "plateau",                                         /* frequent_clipping */
};

typedef struct {
    label kind;
    double start_loss, final_loss; /* the scale */
    size_t points;                 /* logged training points */
    double noise;                  /* relative per-step noise of the loss */
    int interval;                  /* steps per logged point */
    uint64_t seed;
} curve_spec;

static double healthy_loss(const curve_spec *s, double t) { /* t in [0, 1] */
    double tail = 1 - 0.05 * t; /* a slow decline after the knee */
    return s->final_loss * tail + (s->start_loss - s->final_loss) * exp(-t / 0.08);
}

static double healthy_grad(double t, rng *r) {
    return (0.4 + 2.1 * exp(-t / 0.05)) * exp(0.25 * rng_normal(r));
}

/* Fills c with the curve `s` describes. */
static void generate(const curve_spec *s, sft_curve *c) {
    sft_curve_init(c);
    c->max_grad_norm = 1.0;
    rng r = {s->seed * 7919 + (uint64_t)s->kind};
    size_t steps = s->points * (size_t)s->interval;
    double t_turn = 0.2 + 0.15 * rng_uniform(&r);   /* divergence / overfitting onset */
    double t_nan = 0.5 + 0.4 * rng_uniform(&r);     /* NaN onset */
    int above_start = rng_uniform(&r) < 0.5;        /* divergence back above the start or not */
    double overfit_rise = 0.08 + 0.3 * rng_uniform(&r);
    size_t spikes[3];
    int spike_count = 1 + (int)(rng_uniform(&r) * 3);
    for (int i = 0; i < spike_count; i++)
        spikes[i] = (size_t)((0.3 + 0.65 * rng_uniform(&r)) * (double)s->points);
    size_t eval_every = s->points / 12 ? s->points / 12 : 1;
    sft_err err;
    for (size_t k = 0; k < s->points; k++) {
        double loss_sum = 0, grad = 0, t = 0;
        for (int j = 0; j < s->interval; j++) {
            size_t step = k * (size_t)s->interval + (size_t)j + 1;
            t = (double)step / (double)steps;
            double loss = healthy_loss(s, t);
            grad = healthy_grad(t, &r);
            switch (s->kind) {
            case LABEL_DIVERGENCE:
                if (t > t_turn) {
                    double low = healthy_loss(s, t_turn);
                    double top = above_start ? s->start_loss * 1.05 : low * 1.6;
                    loss = low + (top - low) * (t - t_turn) / (1 - t_turn);
                }
                break;
            case LABEL_OVERFIT: /* memorization: the training loss goes towards zero */
                loss = 0.02 * s->final_loss + (s->start_loss - 0.02 * s->final_loss) * exp(-t / 0.12);
                break;
            case LABEL_UNDERFIT: loss = s->start_loss * (1 - 0.04 * t); break;
            case LABEL_EXPLODING:
                if (t > 0.6) grad *= exp(log(1000.0) * (t - 0.6) / 0.4);
                break;
            case LABEL_CLIPPING:
                if (t > 0.3) grad = 2.0 * exp(0.25 * rng_normal(&r));
                break;
            default: break;
            }
            loss_sum += loss * (1 + s->noise * rng_normal(&r));
        }
        sft_train_point p = {.step = (int64_t)((k + 1) * (size_t)s->interval),
                             .has = SFT_HAS_LOSS | SFT_HAS_GRAD_NORM | SFT_HAS_CLIPPED | SFT_HAS_LR};
        p.loss = loss_sum / s->interval;
        p.grad_norm = grad;
        p.clipped = grad > c->max_grad_norm;
        p.lr = 1e-4;
        if (s->kind == LABEL_SPIKE)
            for (int i = 0; i < spike_count; i++)
                if (spikes[i] == k) p.loss *= 1.8 + 1.2 * rng_uniform(&r);
        if (s->kind == LABEL_NAN && t > t_nan) p.loss = NAN, p.grad_norm = NAN;
        sft_curve_add_train(c, &p, &err);
        if ((k + 1) % eval_every == 0 || k + 1 == s->points) {
            double v;
            double true_train = healthy_loss(s, t);
            switch (s->kind) {
            case LABEL_OVERFIT: {
                double best = healthy_loss(s, t_turn) * 1.1;
                v = t < t_turn ? true_train * 1.1 : best * (1 + overfit_rise * (t - t_turn) / (1 - t_turn));
                break;
            }
            case LABEL_UNDERFIT: v = s->start_loss * (1 - 0.03 * t) * 1.02; break;
            case LABEL_DIVERGENCE: v = (t > t_turn ? p.loss : true_train) * 1.05; break;
            default: v = true_train * 1.05; break;
            }
            if (s->kind == LABEL_NAN && t > t_nan) v = NAN;
            sft_eval_point e = {.step = p.step, .val_loss = v * (1 + 0.002 * rng_normal(&r))};
            sft_curve_add_eval(c, &e, &err);
        }
    }
}

static int has_kind(const sft_diagnosis *d, const char *kind) {
    for (size_t i = 0; i < d->finding_count; i++)
        if (!strcmp(d->findings[i].kind, kind)) return 1;
    return 0;
}

static int word_in(const char *words, const char *word) {
    size_t n = strlen(word);
    for (const char *p = words; (p = strstr(p, word)); p += n)
        if ((p == words || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return 1;
    return 0;
}

/* Checks one diagnosis against its label; prints the curve spec on failure. */
static int check_label(const curve_spec *s, const sft_diagnosis *d) {
    int ok = 1;
    if (s->kind == LABEL_HEALTHY) {
        ok = !strcmp(d->verdict, "healthy");
        for (size_t i = 0; i < d->finding_count; i++) ok &= d->findings[i].severity == SFT_SEVERITY_INFO;
    } else {
        ok = has_kind(d, label_name[s->kind]) && strcmp(d->verdict, "healthy");
        for (size_t i = 0; i < d->finding_count; i++) {
            const char *k = d->findings[i].kind;
            /* The generator's gradient norms start above the clip (as real
             * ones do) and most curves settle: info findings are fine. */
            int info_ok = d->findings[i].severity == SFT_SEVERITY_INFO &&
                          (!strcmp(k, "plateau") || !strcmp(k, "frequent_clipping"));
            if (strcmp(k, label_name[s->kind]) && !word_in(allowed_extra[s->kind], k) && !info_ok) ok = 0;
        }
    }
    if (!ok) {
        fprintf(stderr, "  label %s, scale %.3g->%.3g, %zu points, noise %.2f, interval %d, seed %llu: verdict %s\n",
                label_name[s->kind], s->start_loss, s->final_loss, s->points, s->noise, s->interval,
                (unsigned long long)s->seed, d->verdict);
        for (size_t i = 0; i < d->finding_count; i++)
            fprintf(stderr, "    [%s] %s: %s\n", sft_severity_name(d->findings[i].severity), d->findings[i].kind,
                    d->findings[i].message);
    }
    return ok;
}

static const double scales[][2] = {{11.0, 1.65}, {6.0, 0.9}, {2.5, 0.5}, {1.0, 0.5}};
static const size_t lengths[] = {40, 150, 600, 2500};
static const double noises[] = {0.01, 0.04, 0.1};
static const int intervals[] = {1, 5, 20};

/* Runs the whole grid of one label; returns the number of wrong diagnoses. */
static int run_label(label kind, int *total) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    int wrong = 0;
    uint64_t seed = 1;
    for (size_t a = 0; a < 4; a++)
        for (size_t l = 0; l < 4; l++)
            for (size_t z = 0; z < 3; z++, seed++) {
                curve_spec s = {kind, scales[a][0], scales[a][1], lengths[l], noises[z], intervals[(a + l + z) % 3],
                                seed};
                /* Long runs logged every 20 steps would be 50000 steps; keep the test fast. */
                if (s.points >= 2500 && s.interval == 20) s.interval = 5;
                sft_curve c;
                generate(&s, &c);
                sft_diagnosis d;
                sft_diagnosis_init(&d);
                sft_err err;
                CHECK_INT(sft_diagnose(&c, &cfg, &d, &err), 0);
                if (!check_label(&s, &d)) wrong++;
                (*total)++;
                sft_diagnosis_free(&d);
                sft_curve_free(&c);
            }
    return wrong;
}

#define LABEL_TEST(name, kind)                                                     \
    TEST(name) {                                                                   \
        int total = 0;                                                             \
        int wrong = run_label(kind, &total);                                       \
        if (wrong) fprintf(stderr, "  %d of %d curves misdiagnosed\n", wrong, total); \
        CHECK_INT(wrong, 0);                                                       \
    }

LABEL_TEST(healthy_curves_get_no_warning_at_any_scale_length_noise_interval, LABEL_HEALTHY)
LABEL_TEST(lr_too_high_curves_are_divergence, LABEL_DIVERGENCE)
LABEL_TEST(spiked_curves_are_loss_spike, LABEL_SPIKE)
LABEL_TEST(nan_curves_are_non_finite, LABEL_NAN)
LABEL_TEST(tiny_data_many_epochs_curves_are_overfitting, LABEL_OVERFIT)
LABEL_TEST(lr_too_low_curves_are_underfitting, LABEL_UNDERFIT)
LABEL_TEST(growing_gradient_norms_are_exploding_gradients, LABEL_EXPLODING)
LABEL_TEST(clipped_most_steps_is_frequent_clipping, LABEL_CLIPPING)
