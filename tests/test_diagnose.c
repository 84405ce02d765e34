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
#include "io/json.h"
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

/* ---- the same curves through the files other tools read ------------------------------- */

static char tmp_dir[256];

static const char *test_dir(void) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sft-test-diagnose-XXXXXX");
        if (!mkdtemp(tmp_dir)) tmp_dir[0] = 0;
    }
    return tmp_dir;
}

static void write_jsonl(const sft_curve *c, const char *path) {
    FILE *f = fopen(path, "w");
    size_t e = 0;
    for (size_t i = 0; i < c->train_count; i++) {
        const sft_train_point *p = &c->train[i];
        sft_train_record r = {.step = p->step, .epoch = 0.5, .loss = p->loss, .grad_norm = p->grad_norm,
                              .grad_norm_clipped = p->clipped ? 1.0 : p->grad_norm, .clipped = p->clipped,
                              .lr = p->lr, .tokens = 1000, .tokens_per_s = 5000, .elapsed_s = (double)i};
        sft_metrics_write_train_line(f, &r);
        for (; e < c->eval_count && c->eval[e].step <= p->step; e++) {
            sft_eval_record v = {.step = c->eval[e].step, .epoch = 0.5, .val_loss = c->eval[e].val_loss,
                                 .val_tokens = 4096};
            sft_metrics_write_eval_line(f, &v);
        }
    }
    fclose(f);
}

/* HF Trainer's layout; Python writes NaN bare. */
static void fput_py_number(FILE *f, double v) {
    if (isnan(v)) fputs("NaN", f);
    else if (isinf(v)) fputs(v > 0 ? "Infinity" : "-Infinity", f);
    else fprintf(f, "%.17g", v);
}

static void write_trainer_state(const sft_curve *c, const char *path) {
    FILE *f = fopen(path, "w");
    fprintf(f, "{\n  \"best_metric\": null,\n  \"epoch\": 2.0,\n  \"global_step\": %lld,\n  \"log_history\": [\n",
            (long long)c->train[c->train_count - 1].step);
    size_t e = 0;
    int first = 1;
    for (size_t i = 0; i < c->train_count; i++) {
        const sft_train_point *p = &c->train[i];
        fprintf(f, "%s    {\n      \"epoch\": 0.5,\n      \"grad_norm\": ", first ? "" : ",\n");
        first = 0;
        fput_py_number(f, p->grad_norm);
        fprintf(f, ",\n      \"learning_rate\": 0.0001,\n      \"loss\": ");
        fput_py_number(f, p->loss);
        fprintf(f, ",\n      \"step\": %lld\n    }", (long long)p->step);
        for (; e < c->eval_count && c->eval[e].step <= p->step; e++) {
            fprintf(f, ",\n    {\n      \"epoch\": 0.5,\n      \"eval_loss\": ");
            fput_py_number(f, c->eval[e].val_loss);
            fprintf(f, ",\n      \"eval_runtime\": 0.03,\n      \"step\": %lld\n    }", (long long)c->eval[e].step);
        }
    }
    fprintf(f, ",\n    {\n      \"epoch\": 2.0,\n      \"step\": %lld,\n      \"train_loss\": 2.5\n    }\n  ],\n"
               "  \"max_steps\": %lld\n}\n",
            (long long)c->train[c->train_count - 1].step, (long long)c->train[c->train_count - 1].step);
    fclose(f);
}

static void kinds_of(const sft_diagnosis *d, char *out, size_t cap) {
    out[0] = 0;
    for (size_t i = 0; i < d->finding_count; i++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s/%s@%lld", i ? " " : "", d->findings[i].kind,
                 sft_severity_name(d->findings[i].severity), (long long)d->findings[i].step);
    }
}

TEST(labelled_corpus_reads_back_from_metrics_jsonl_and_trainer_state_json) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    const char *dir = test_dir();
    CHECK(dir[0]);
    for (int kind = 0; kind < LABEL_COUNT; kind++)
        for (size_t a = 0; a < 4; a += 3) {
            curve_spec s = {(label)kind, scales[a][0], scales[a][1], a ? 150 : 600, a ? 0.1 : 0.04, a ? 5 : 1,
                            100 + a};
            sft_curve c;
            generate(&s, &c);
            sft_diagnosis direct, from_jsonl, from_state;
            sft_diagnosis_init(&direct);
            sft_diagnosis_init(&from_jsonl);
            sft_diagnosis_init(&from_state);
            sft_err err;
            CHECK_INT(sft_diagnose(&c, &cfg, &direct, &err), 0);
            char jsonl[512], state[512];
            snprintf(jsonl, sizeof jsonl, "%s/metrics-%d-%zu.jsonl", dir, kind, a);
            snprintf(state, sizeof state, "%s/trainer_state-%d-%zu.json", dir, kind, a);
            write_jsonl(&c, jsonl);
            write_trainer_state(&c, state);

            sft_curve back;
            sft_curve_init(&back);
            CHECK_INT(sft_curve_read(jsonl, &back, &err), 0);
            CHECK_INT(back.train_count, c.train_count);
            CHECK_INT(back.eval_count, c.eval_count);
            CHECK_INT(sft_diagnose(&back, &cfg, &from_jsonl, &err), 0);
            char want[4096], got[4096];
            kinds_of(&direct, want, sizeof want);
            kinds_of(&from_jsonl, got, sizeof got);
            CHECK_STR(got, want);
            CHECK(check_label(&s, &from_jsonl));
            sft_curve_free(&back);

            /* trainer_state.json has no clipping flags: HF does not log them. */
            sft_curve_init(&back);
            CHECK_INT(sft_curve_read(state, &back, &err), 0);
            CHECK_INT(back.train_count, c.train_count);
            CHECK_INT(back.eval_count, c.eval_count);
            CHECK_INT(sft_diagnose(&back, &cfg, &from_state, &err), 0);
            if (kind != LABEL_CLIPPING) CHECK(check_label(&s, &from_state));
            else CHECK(!has_kind(&from_state, "frequent_clipping"));
            sft_curve_free(&back);
            unlink(jsonl);
            unlink(state);
            sft_diagnosis_free(&direct);
            sft_diagnosis_free(&from_jsonl);
            sft_diagnosis_free(&from_state);
            sft_curve_free(&c);
        }
    rmdir(dir);
}

/* ---- shapes the rules were not tuned on ---------------------------------------------- */

/* Healthy curves of other shapes: power-law decay, multi-epoch steps (the
 * training loss drops at each epoch boundary of a small SFT set), heavy-tailed
 * noise, a warmup bump. None may draw a warning. */
TEST(healthy_curves_of_other_shapes_get_no_warning) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    for (int shape = 0; shape < 4; shape++)
        for (int v = 0; v < 6; v++) {
            rng r = {1000 + (uint64_t)(shape * 10 + v)};
            size_t n = (size_t)(80 + 300 * v);
            double start = 1.2 + 1.9 * v, end = 0.5 + 0.2 * v;
            sft_curve c;
            sft_curve_init(&c);
            sft_err err;
            for (size_t k = 0; k < n; k++) {
                double t = (double)(k + 1) / (double)n, loss;
                switch (shape) {
                case 0: loss = end + (start - end) / pow(1 + t / 0.02, 0.7); break;
                case 1: loss = end * (1.15 - 0.1 * floor(3 * t - 1e-9)) + (start - end) * exp(-t / 0.05); break;
                case 2: loss = end + (start - end) * exp(-t / 0.1); break;
                default: loss = end + (start - end) * exp(-t / 0.1) * (t < 0.02 ? 1.04 : 1); break;
                }
                double noise = 0.05 * rng_normal(&r);
                if (shape == 2) noise = 0.03 * rng_normal(&r) / sqrt(0.3 + rng_uniform(&r)); /* heavy tails */
                sft_train_point p = {.step = (int64_t)k + 1, .has = SFT_HAS_LOSS | SFT_HAS_GRAD_NORM,
                                     .loss = loss * (1 + noise), .grad_norm = 0.5 * exp(0.3 * rng_normal(&r))};
                sft_curve_add_train(&c, &p, &err);
                if ((k + 1) % (n / 8) == 0) {
                    double val = (shape == 1 ? end * 1.1 : loss * 1.05) + (start - end) * exp(-t / 0.05) * 0.1;
                    sft_eval_point e = {.step = p.step, .val_loss = val * (1 + 0.003 * rng_normal(&r))};
                    sft_curve_add_eval(&c, &e, &err);
                }
            }
            sft_diagnosis d;
            sft_diagnosis_init(&d);
            CHECK_INT(sft_diagnose(&c, &cfg, &d, &err), 0);
            curve_spec s = {LABEL_HEALTHY, start, end, n, 0.05, 1, (uint64_t)(shape * 10 + v)};
            int ok = check_label(&s, &d);
            if (!ok) fprintf(stderr, "    (shape %d)\n", shape);
            CHECK(ok);
            sft_diagnosis_free(&d);
            sft_curve_free(&c);
        }
}

TEST(steady_fall_without_a_knee_is_underfitting) {
    /* A learning rate somewhat too low: 11 -> 8 in a straight line. */
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    rng r = {7};
    sft_curve c;
    sft_curve_init(&c);
    sft_err err;
    for (int k = 0; k < 300; k++) {
        sft_train_point p = {.step = k + 1, .has = SFT_HAS_LOSS, .loss = (11 - 3.0 * k / 299) * (1 + 0.03 * rng_normal(&r))};
        sft_curve_add_train(&c, &p, &err);
    }
    sft_diagnosis d;
    sft_diagnosis_init(&d);
    CHECK_INT(sft_diagnose(&c, &cfg, &d, &err), 0);
    CHECK_INT(d.finding_count, 1);
    CHECK_STR(d.findings[0].kind, "underfitting");
    CHECK(strstr(d.findings[0].message, "still falling") != NULL);
    CHECK_STR(d.verdict, "warning");
    sft_diagnosis_free(&d);
    sft_curve_free(&c);
}

/* ---- the real HF Trainer runs --------------------------------------------------------------- */

static void diagnose_file(const char *path, sft_diagnosis *d) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    sft_curve c;
    sft_curve_init(&c);
    sft_err err;
    sft_diagnosis_init(d);
    int rc = sft_curve_read(path, &c, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    CHECK_INT(rc, 0);
    CHECK_INT(sft_diagnose(&c, &cfg, d, &err), 0);
    sft_curve_free(&c);
}

/* A learning rate far too high can drive the loss up from the very first
 * steps: no lower level comes before the climb, and with a coarse logging
 * interval the climb fits inside the first block of points. Found as a
 * divergence (back above the start) at every scale, length, noise level and
 * interval, even when a decaying learning rate brings the loss back later. */
TEST(loss_climbing_from_the_first_steps_is_divergence) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    const int intervals[] = {1, 5, 20};
    int failures = 0;
    for (int v = 0; v < 4; v++)
        for (int ii = 0; ii < 3; ii++)
            for (int noise_level = 0; noise_level < 3; noise_level++) {
                rng r = {500 + (uint64_t)(v * 100 + ii * 10 + noise_level)};
                double start = 1.0 + 3.3 * v, end = 0.5 + 0.3 * v, noise = 0.01 + 0.045 * noise_level;
                size_t points = (size_t)(40 + 320 * v);
                int interval = intervals[ii];
                sft_curve c;
                sft_curve_init(&c);
                sft_err err;
                for (size_t k = 0; k < points; k++) {
                    double sum = 0, t = 0;
                    for (int j = 0; j < interval; j++) {
                        /* the loss of step 1 is the initial model's, before any update */
                        size_t step = k * (size_t)interval + (size_t)j;
                        t = (double)step / (double)(points * (size_t)interval);
                        double loss = t < 0.3 ? start * (1 + 3 * (t < 0.05 ? t / 0.05 : 1))
                                              : end + (4 * start - end) * exp(-(t - 0.3) / 0.1);
                        sum += loss * (1 + noise * rng_normal(&r));
                    }
                    sft_train_point p = {.step = (int64_t)((k + 1) * (size_t)interval), .has = SFT_HAS_LOSS,
                                         .loss = sum / interval};
                    sft_curve_add_train(&c, &p, &err);
                }
                sft_diagnosis d;
                sft_diagnosis_init(&d);
                CHECK_INT(sft_diagnose(&c, &cfg, &d, &err), 0);
                int ok = has_kind(&d, "divergence") && !strcmp(d.verdict, "failing");
                if (!ok) {
                    fprintf(stderr, "  start %.3g, %zu points, interval %d, noise %.2f: verdict %s\n", start, points,
                            interval, noise, d.verdict);
                    failures++;
                }
                sft_diagnosis_free(&d);
                sft_curve_free(&c);
            }
    CHECK_INT(failures, 0);
}

/* Clipping that fires on most steps while the norm sits at the threshold
 * trims the updates by a few percent (info); a norm twice the threshold means
 * the clip sizes every update (warning). */
TEST(frequent_clipping_warns_only_when_the_clip_cuts_deep) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    const double levels[] = {1.05, 2.0};
    for (int i = 0; i < 2; i++) {
        rng r = {77};
        sft_curve c;
        sft_curve_init(&c);
        sft_err err;
        for (int k = 0; k < 400; k++) {
            double t = (k + 1) / 400.0, norm = levels[i] * exp(0.1 * rng_normal(&r));
            sft_train_point p = {.step = k + 1,
                                 .has = SFT_HAS_LOSS | SFT_HAS_GRAD_NORM | SFT_HAS_GRAD_NORM_CLIPPED | SFT_HAS_CLIPPED,
                                 .loss = (0.8 + 3 * exp(-t / 0.08)) * (1 + 0.03 * rng_normal(&r)),
                                 .grad_norm = norm, .clipped = norm > 1.0,
                                 .grad_norm_clipped = norm > 1.0 ? 1.0 : norm};
            sft_curve_add_train(&c, &p, &err);
        }
        sft_diagnosis d;
        sft_diagnosis_init(&d);
        CHECK_INT(sft_diagnose(&c, &cfg, &d, &err), 0);
        const sft_finding *f = NULL;
        for (size_t k = 0; k < d.finding_count; k++)
            if (!strcmp(d.findings[k].kind, "frequent_clipping")) f = &d.findings[k];
        CHECK(f != NULL);
        if (f) {
            CHECK_INT(f->severity, i == 0 ? SFT_SEVERITY_INFO : SFT_SEVERITY_WARNING);
            /* the threshold is read from the clipped norms (metrics.jsonl has no max_grad_norm) */
            CHECK_NEAR(sft_finding_evidence(f, "median_norm_ratio"), levels[i], 0.05 * levels[i]);
        }
        sft_diagnosis_free(&d);
        sft_curve_free(&c);
    }
}

TEST(hf_trainer_healthy_run_is_healthy_from_state_and_tfevents) {
    const char *paths[] = {"tests/fixtures/hf_trainer/sample_healthy.trainer_state.json",
                           "tests/fixtures/hf_trainer/sample_healthy.events.out.tfevents.1795849259.vm.417.0"};
    for (int i = 0; i < 2; i++) {
        sft_diagnosis d;
        diagnose_file(paths[i], &d);
        CHECK_STR(d.verdict, "healthy");
        for (size_t k = 0; k < d.finding_count; k++) CHECK_INT(d.findings[k].severity, SFT_SEVERITY_INFO);
        CHECK(d.has_best);
        CHECK_INT(d.best_step, 376);
        CHECK_NEAR(d.best_val_loss, 1.0639230012893677, 1e-6); /* float32 in the event file */
        sft_diagnosis_free(&d);
    }
}

TEST(hf_trainer_overfit_run_is_overfitting_from_state_and_tfevents) {
    const char *paths[] = {"tests/fixtures/hf_trainer/sample_overfit.trainer_state.json",
                           "tests/fixtures/hf_trainer/sample_overfit.events.out.tfevents.1795849265.vm.417.1"};
    for (int i = 0; i < 2; i++) {
        sft_diagnosis d;
        diagnose_file(paths[i], &d);
        CHECK_STR(d.verdict, "warning");
        CHECK(has_kind(&d, "overfitting"));
        CHECK_INT(d.best_step, 50);
        CHECK_NEAR(d.best_val_loss, 3.387317419052124, 1e-6);
        for (size_t k = 0; k < d.finding_count; k++) {
            const sft_finding *f = &d.findings[k];
            if (strcmp(f->kind, "overfitting")) {
                CHECK_INT(f->severity, SFT_SEVERITY_INFO);
                continue;
            }
            CHECK_INT(f->step, 50);
            CHECK_INT(f->end_step, 120);
            CHECK_NEAR(sft_finding_evidence(f, "best_val_loss"), 3.387317419052124, 1e-6);
            CHECK_NEAR(sft_finding_evidence(f, "val_loss"), 3.7627599239349365, 1e-6);
            CHECK(strstr(f->message, "step 50") && strstr(f->advice, "step 50"));
        }
        sft_diagnosis_free(&d);
    }
}

/* ---- live use -------------------------------------------------------------------------------- */

TEST(live_updates_raise_each_finding_once_and_end_as_the_offline_diagnosis) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    label kinds[] = {LABEL_SPIKE, LABEL_OVERFIT, LABEL_NAN, LABEL_EXPLODING};
    for (size_t q = 0; q < sizeof kinds / sizeof kinds[0]; q++) {
        curve_spec s = {kinds[q], 6.0, 0.9, 300, 0.04, 1, 77};
        sft_curve full, so_far;
        generate(&s, &full);
        sft_curve_init(&so_far);
        so_far.max_grad_norm = full.max_grad_norm;
        so_far.planned_steps = full.train[full.train_count - 1].step;
        sft_err err;
        sft_diagnose_tracker *t = sft_diagnose_tracker_new(&err);
        sft_diagnosis live;
        sft_diagnosis_init(&live);
        size_t raised_total = 0, e = 0;
        char raised_log[8192] = "";
        for (size_t i = 0; i < full.train_count; i++) {
            sft_curve_add_train(&so_far, &full.train[i], &err);
            for (; e < full.eval_count && full.eval[e].step <= full.train[i].step; e++)
                sft_curve_add_eval(&so_far, &full.eval[e], &err);
            size_t raised;
            CHECK_INT(sft_diagnose_update(t, &so_far, &cfg, &live, &raised, &err), 0);
            raised_total += raised;
            for (size_t k = 0; k < live.finding_count; k++)
                if (live.findings[k].first_raised) {
                    size_t n = strlen(raised_log);
                    snprintf(raised_log + n, sizeof raised_log - n, "%s@%lld ", live.findings[k].kind,
                             (long long)live.findings[k].step);
                }
        }
        sft_diagnosis offline;
        sft_diagnosis_init(&offline);
        CHECK_INT(sft_diagnose(&full, &cfg, &offline, &err), 0);
        char a[4096], b[4096];
        kinds_of(&live, a, sizeof a);
        kinds_of(&offline, b, sizeof b);
        CHECK_STR(a, b);
        /* The label's finding was raised live, and point events only once each. */
        CHECK(strstr(raised_log, label_name[kinds[q]]) != NULL);
        for (size_t k = 0; k < offline.finding_count; k++) {
            if (strcmp(offline.findings[k].kind, "loss_spike")) continue;
            char key[64];
            snprintf(key, sizeof key, "loss_spike@%lld ", (long long)offline.findings[k].step);
            const char *first = strstr(raised_log, key);
            CHECK(first && !strstr(first + 1, key));
        }
        CHECK(raised_total >= 1);
        sft_diagnosis_free(&live);
        sft_diagnosis_free(&offline);
        sft_diagnose_tracker_free(t);
        sft_curve_free(&so_far);
        sft_curve_free(&full);
    }
}

TEST(diagnosis_is_deterministic_and_json_is_valid) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    curve_spec s = {LABEL_NAN, 2.5, 0.5, 400, 0.05, 1, 5};
    sft_curve c;
    generate(&s, &c);
    char *text[2] = {NULL, NULL};
    size_t len[2];
    for (int i = 0; i < 2; i++) {
        sft_diagnosis d;
        sft_diagnosis_init(&d);
        sft_err err;
        CHECK_INT(sft_diagnose(&c, &cfg, &d, &err), 0);
        FILE *f = open_memstream(&text[i], &len[i]);
        sft_diagnosis_write_json(f, &d);
        fclose(f);
        sft_diagnosis_free(&d);
    }
    CHECK_STR(text[0], text[1]);
    /* Strict JSON (no bare NaN): jansson without the lenient loader reads it. */
    json_error_t jerr;
    json_t *j = json_loads(text[0], 0, &jerr);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "verdict")), "failing");
    json_t *findings = json_object_get(j, "findings");
    CHECK(json_array_size(findings) >= 1);
    size_t i;
    json_t *f;
    json_array_foreach(findings, i, f) {
        CHECK(json_is_string(json_object_get(f, "kind")) && json_is_string(json_object_get(f, "message")) &&
              json_is_string(json_object_get(f, "advice")) && json_is_object(json_object_get(f, "evidence")) &&
              json_is_integer(json_object_get(f, "step")) && json_is_integer(json_object_get(f, "end_step")));
    }
    json_decref(j);
    free(text[0]);
    free(text[1]);
    sft_curve_free(&c);
}

TEST(thresholds_are_settable_by_name_with_suggestions) {
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    sft_err err;
    CHECK_INT(sft_diagnose_config_set(&cfg, "spike_sigma", 4.5, &err), 0);
    CHECK_NEAR(cfg.spike_sigma, 4.5, 0);
    CHECK_INT(sft_diagnose_config_set(&cfg, "clip_window", 20, &err), 0);
    CHECK_INT(cfg.clip_window, 20);
    CHECK_INT(sft_diagnose_config_set(&cfg, "spike_sigm", 3, &err), -1);
    CHECK_ERR_HAS(err.msg, "did you mean 'spike_sigma'");
    CHECK_INT(sft_diagnose_config_set(&cfg, "clip_window", 2.5, &err), -1);
    CHECK_ERR_HAS(err.msg, "integer");
    CHECK_INT(sft_diagnose_config_set(&cfg, "overfit_rise", -1, &err), -1);
}

TEST(healthy_runs_watched_live_never_raise_a_warning) {
    /* Early on every curve is still falling and warmup can keep it flat: the
     * live diagnosis must not call that underfitting or anything else. */
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    for (size_t a = 0; a < 4; a++) {
        curve_spec s = {LABEL_HEALTHY, scales[a][0], scales[a][1], a % 2 ? 150 : 400, noises[a % 3], 1, 300 + a};
        sft_curve full, so_far;
        generate(&s, &full);
        sft_curve_init(&so_far);
        so_far.max_grad_norm = full.max_grad_norm;
        so_far.planned_steps = full.train[full.train_count - 1].step;
        sft_err err;
        sft_diagnose_tracker *t = sft_diagnose_tracker_new(&err);
        sft_diagnosis live;
        sft_diagnosis_init(&live);
        size_t e = 0;
        int warned = 0;
        for (size_t i = 0; i < full.train_count; i++) {
            sft_curve_add_train(&so_far, &full.train[i], &err);
            for (; e < full.eval_count && full.eval[e].step <= full.train[i].step; e++)
                sft_curve_add_eval(&so_far, &full.eval[e], &err);
            size_t raised;
            CHECK_INT(sft_diagnose_update(t, &so_far, &cfg, &live, &raised, &err), 0);
            for (size_t k = 0; k < live.finding_count; k++)
                if (live.findings[k].first_raised && live.findings[k].severity != SFT_SEVERITY_INFO && !warned++)
                    fprintf(stderr, "  scale %zu, point %zu: %s\n", a, i, live.findings[k].message);
        }
        CHECK_INT(warned, 0);
        sft_diagnosis_free(&live);
        sft_diagnose_tracker_free(t);
        sft_curve_free(&so_far);
        sft_curve_free(&full);
    }
}
