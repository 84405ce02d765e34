/* test_labelled_runs.c: the diagnosis on curves of real `sft train` runs
 * (tests/fixtures/runs, made by tests/helpers/make_labelled_runs.sh: a tiny
 * Llama on generated arithmetic records), one run per label, each in both
 * forms: the metrics.jsonl the run wrote (one point per optimizer step, with
 * the findings raised live) and the same curve as HF Trainer's
 * trainer_state.json (logged every 5 steps, averaged as HF does). Every
 * label must come out right in both forms and the healthy run must draw no
 * warning; the findings raised during training must name the label too.
 * Also: the trainer_state.json writer (HF's layout, Python's float repr)
 * reads back to the same curve and diagnosis. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "monitor/diagnose.h"
#include "monitor/readers.h"
#include "test.h"

#define RUNS "tests/fixtures/runs"

typedef struct {
    const char *run;      /* folder under RUNS */
    const char *kind;     /* the finding the label means; NULL: healthy */
    const char *verdict;  /* the verdict it must get */
    const char *allowed;  /* other kinds that may reach warning or critical */
} labelled_run;

/* A learning rate 300x too high also spikes and clips; with one 1000x too low
 * the norm of the large early gradients stays above the clip (2-3x) for the
 * whole run, which is what frequent_clipping says. */
static const labelled_run runs[] = {
    {"healthy", NULL, "healthy", ""},
    {"lr_too_high", "divergence", "failing", "loss_spike exploding_gradients frequent_clipping"},
    {"overfitting", "overfitting", "warning", ""},
    {"lr_too_low", "underfitting", "warning", "frequent_clipping"},
    {"nan", "non_finite", "failing", "loss_spike"},
};
#define RUN_COUNT (sizeof runs / sizeof runs[0])

static const sft_diagnose_config *defaults(void) {
    static sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    return &cfg;
}

static int word_in(const char *words, const char *word) {
    size_t n = strlen(word);
    for (const char *p = words; (p = strstr(p, word)); p += n)
        if ((p == words || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return 1;
    return 0;
}

static const sft_finding *find_kind(const sft_diagnosis *d, const char *kind) {
    for (size_t i = 0; i < d->finding_count; i++)
        if (!strcmp(d->findings[i].kind, kind)) return &d->findings[i];
    return NULL;
}

/* Diagnoses one file of a run; 1 when its label is right. */
static int diagnose_file(const labelled_run *r, const char *file, sft_curve *curve, sft_diagnosis *d) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s/%s", RUNS, r->run, file);
    sft_err err;
    sft_curve_init(curve);
    sft_diagnosis_init(d);
    if (sft_curve_read(path, curve, &err) || sft_diagnose(curve, defaults(), d, &err)) {
        fprintf(stderr, "  %s: %s\n", path, err.msg);
        return 0;
    }
    int ok = !strcmp(d->verdict, r->verdict) && (!r->kind || find_kind(d, r->kind));
    for (size_t i = 0; i < d->finding_count; i++) {
        const sft_finding *f = &d->findings[i];
        if (f->severity == SFT_SEVERITY_INFO || (r->kind && !strcmp(f->kind, r->kind))) continue;
        if (!word_in(r->allowed, f->kind)) ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "  %s: verdict %s, expected %s %s; findings:", path, d->verdict, r->verdict,
                r->kind ? r->kind : "(none)");
        for (size_t i = 0; i < d->finding_count; i++)
            fprintf(stderr, " %s(%s)", d->findings[i].kind, sft_severity_name(d->findings[i].severity));
        fprintf(stderr, "\n");
    }
    return ok;
}

TEST(every_real_run_gets_its_label_from_metrics_jsonl) {
    for (size_t i = 0; i < RUN_COUNT; i++) {
        sft_curve c;
        sft_diagnosis d;
        CHECK(diagnose_file(&runs[i], "metrics.jsonl", &c, &d));
        CHECK(c.train_count >= 150); /* one point per optimizer step */
        sft_diagnosis_free(&d);
        sft_curve_free(&c);
    }
}

TEST(every_real_run_gets_its_label_from_trainer_state_json) {
    for (size_t i = 0; i < RUN_COUNT; i++) {
        sft_curve c;
        sft_diagnosis d;
        CHECK(diagnose_file(&runs[i], "trainer_state.json", &c, &d));
        CHECK_STR(c.source, "trainer_state.json");
        CHECK(c.train_count >= 30 && c.train_count <= 80); /* every 5 steps */
        sft_diagnosis_free(&d);
        sft_curve_free(&c);
    }
}

/* The two forms agree on the evaluations, hence on the best step. */
TEST(both_forms_agree_on_the_best_step) {
    for (size_t i = 0; i < RUN_COUNT; i++) {
        sft_curve a, b;
        sft_diagnosis da, db;
        diagnose_file(&runs[i], "metrics.jsonl", &a, &da);
        diagnose_file(&runs[i], "trainer_state.json", &b, &db);
        CHECK_INT(a.eval_count, b.eval_count);
        CHECK_INT(da.has_best, db.has_best);
        CHECK_INT(da.best_step, db.best_step);
        sft_diagnosis_free(&da);
        sft_diagnosis_free(&db);
        sft_curve_free(&a);
        sft_curve_free(&b);
    }
}

/* The finding lines metrics.jsonl got while the run trained. */
typedef struct {
    char kinds[16][32];
    char severities[16][16];
    char records[16][512];
    int count;
} live_findings;

static void read_live_findings(const char *run, live_findings *out) {
    memset(out, 0, sizeof *out);
    char path[256], *text;
    size_t len;
    sft_err err;
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", RUNS, run);
    if (sft_read_file(path, &text, &len, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, "\"type\":\"finding\"") || out->count == 16) continue;
        json_t *j = sft_json_loadb_lenient(line, strlen(line), path, &err);
        if (!j) continue;
        const char *kind = json_string_value(json_object_get(j, "kind"));
        const char *severity = json_string_value(json_object_get(j, "severity"));
        const char *records = json_string_value(json_object_get(json_object_get(j, "evidence"), "records"));
        snprintf(out->kinds[out->count], 32, "%s", kind ? kind : "");
        snprintf(out->severities[out->count], 16, "%s", severity ? severity : "");
        snprintf(out->records[out->count], 512, "%s", records ? records : "");
        out->count++;
        json_decref(j);
    }
    free(text);
}

TEST(findings_were_raised_live_while_the_runs_trained) {
    for (size_t i = 0; i < RUN_COUNT; i++) {
        live_findings live;
        read_live_findings(runs[i].run, &live);
        int has_label = 0, warned = 0;
        for (int k = 0; k < live.count; k++) {
            has_label |= runs[i].kind && !strcmp(live.kinds[k], runs[i].kind);
            warned |= strcmp(live.severities[k], "info") != 0;
        }
        if (runs[i].kind) CHECK(has_label);
        else CHECK(!warned); /* the healthy run was never warned about, not even midway */
    }
}

/* --on-nonfinite stop: the run ended at the NaN step, and the finding names
 * the records of that batch (file and line) so they can be inspected. */
TEST(the_nan_run_stopped_at_its_step_and_named_the_batch_records) {
    sft_curve c;
    sft_diagnosis d;
    CHECK(diagnose_file(&runs[4], "metrics.jsonl", &c, &d));
    CHECK_INT(c.train[c.train_count - 1].step, 150);
    CHECK(isnan(c.train[c.train_count - 1].loss));
    const sft_finding *f = find_kind(&d, "non_finite");
    CHECK(f && f->step == 150);
    CHECK(f && strstr(f->records, "data/train.jsonl:") == f->records);
    CHECK(f && strstr(f->message, "step 150"));
    live_findings live;
    read_live_findings("nan", &live);
    int named = 0;
    for (int k = 0; k < live.count; k++)
        named |= !strcmp(live.kinds[k], "non_finite") && strstr(live.records[k], "data/train.jsonl:") != NULL;
    CHECK(named);
    sft_diagnosis_free(&d);
    sft_curve_free(&c);
}

TEST(overfitting_run_names_its_early_best_step) {
    sft_curve c;
    sft_diagnosis d;
    CHECK(diagnose_file(&runs[2], "metrics.jsonl", &c, &d));
    const sft_finding *f = find_kind(&d, "overfitting");
    CHECK(d.has_best && d.best_step < c.train[c.train_count - 1].step / 4);
    CHECK(f && sft_finding_evidence(f, "best_step") == (double)d.best_step);
    sft_diagnosis_free(&d);
    sft_curve_free(&c);
}

/* ---- the trainer_state.json writer ---------------------------------------------- */

static char *write_state(const sft_curve *c, int64_t logging_steps, char *path, size_t cap) {
    snprintf(path, cap, "/tmp/sft-test-state-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    sft_err err;
    sft_trainer_state_options o = {.logging_steps = logging_steps, .eval_steps = 20, .train_batch_size = 8};
    if (sft_trainer_state_write(c, &o, path, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, &err)) return NULL;
    return text;
}

TEST(trainer_state_written_per_step_reads_back_to_the_same_curve_and_diagnosis) {
    for (size_t i = 0; i < RUN_COUNT; i++) {
        sft_curve a, b;
        sft_diagnosis da, db;
        diagnose_file(&runs[i], "metrics.jsonl", &a, &da);
        char path[64];
        char *text = write_state(&a, 1, path, sizeof path);
        CHECK(text != NULL);
        free(text);
        sft_err err;
        sft_curve_init(&b);
        CHECK_INT(sft_trainer_state_read(path, &b, &err), 0);
        unlink(path);
        CHECK_INT(b.train_count, a.train_count);
        CHECK_INT(b.eval_count, a.eval_count);
        int same = b.train_count == a.train_count;
        for (size_t k = 0; same && k < a.train_count; k++) {
            const sft_train_point *x = &a.train[k], *y = &b.train[k];
            same = x->step == y->step && x->grad_norm == y->grad_norm && x->lr == y->lr && x->epoch == y->epoch &&
                   (x->loss == y->loss || (isnan(x->loss) && isnan(y->loss)));
        }
        CHECK(same); /* Python's repr is the shortest text that reads back exactly */
        sft_diagnosis_init(&db);
        CHECK_INT(sft_diagnose(&b, defaults(), &db, &err), 0);
        CHECK_STR(db.verdict, da.verdict);
        /* trainer_state.json has no clipping flags (HF does not log them),
         * so frequent_clipping is the one finding it cannot carry. */
        size_t expected = 0;
        for (size_t k = 0; k < da.finding_count; k++) expected += strcmp(da.findings[k].kind, "frequent_clipping") != 0;
        CHECK_INT(db.finding_count, expected);
        sft_diagnosis_free(&da);
        sft_diagnosis_free(&db);
        sft_curve_free(&a);
        sft_curve_free(&b);
    }
}

/* HF's logging window: the loss is the window's mean, the norm and learning
 * rate those of its last step; a last, shorter window is kept. */
TEST(trainer_state_averages_the_loss_over_each_logging_window) {
    sft_curve c;
    sft_curve_init(&c);
    sft_err err;
    for (int k = 1; k <= 7; k++) {
        sft_train_point p = {.step = k, .has = SFT_HAS_LOSS | SFT_HAS_GRAD_NORM | SFT_HAS_LR | SFT_HAS_EPOCH,
                             .loss = k, .grad_norm = 10 * k, .lr = 0.001 * k, .epoch = 0.25 * k};
        sft_curve_add_train(&c, &p, &err);
    }
    sft_eval_point e = {.step = 3, .val_loss = 1e-5};
    sft_curve_add_eval(&c, &e, &err);
    char path[64];
    char *text = write_state(&c, 3, path, sizeof path);
    CHECK(text != NULL);
    if (!text) return;
    /* steps 1-3: mean 2, then its evaluation; 4-6: mean 5; 7 alone */
    const char *expected =
        "  \"log_history\": [\n"
        "    {\n      \"epoch\": 0.75,\n      \"grad_norm\": 30.0,\n      \"learning_rate\": 0.003,\n"
        "      \"loss\": 2.0,\n      \"step\": 3\n    },\n"
        "    {\n      \"eval_loss\": 1e-05,\n      \"step\": 3\n    },\n"
        "    {\n      \"epoch\": 1.5,\n      \"grad_norm\": 60.0,\n      \"learning_rate\": 0.006,\n"
        "      \"loss\": 5.0,\n      \"step\": 6\n    },\n"
        "    {\n      \"epoch\": 1.75,\n      \"grad_norm\": 70.0,\n      \"learning_rate\": 0.007,\n"
        "      \"loss\": 7.0,\n      \"step\": 7\n    },\n";
    CHECK(strstr(text, expected) != NULL);
    CHECK(strstr(text, "\"best_global_step\": 3,\n  \"best_metric\": 1e-05,\n") != NULL);
    CHECK(strstr(text, "\"train_loss\": 4.0\n") != NULL);
    CHECK(strstr(text, "\"logging_steps\": 3,\n  \"max_steps\": 7,\n") != NULL);
    CHECK(strstr(text, "\"num_train_epochs\": 2,\n") != NULL);
    free(text);
    unlink(path);
    sft_curve_free(&c);
}

/* Python's float repr: fixed notation for exponents -4..15, else
 * scientific with a two-digit exponent; NaN and Infinity bare. */
TEST(trainer_state_numbers_are_written_as_python_writes_them) {
    const double values[] = {1e16, 123456789.0, 1e15, 0.0001, 0.1, -2.5e-7, 1.0 / 3, NAN, -INFINITY, 0.0};
    const char *texts[] = {"1e+16", "123456789.0", "1000000000000000.0", "0.0001", "0.1", "-2.5e-07",
                           "0.3333333333333333", "NaN", "-Infinity", "0.0"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        sft_curve c;
        sft_curve_init(&c);
        sft_err err;
        sft_train_point p = {.step = 1, .has = SFT_HAS_LOSS, .loss = values[i]};
        sft_curve_add_train(&c, &p, &err);
        char path[64], want[64];
        char *text = write_state(&c, 1, path, sizeof path);
        snprintf(want, sizeof want, "\"loss\": %s,\n", texts[i]);
        CHECK(text && strstr(text, want));
        if (text && !strstr(text, want)) fprintf(stderr, "  expected %s\n", want);
        free(text);
        unlink(path);
        sft_curve_free(&c);
    }
}

TEST(trainer_state_writer_refuses_a_logging_interval_below_one) {
    sft_curve c;
    sft_curve_init(&c);
    sft_err err;
    sft_trainer_state_options o = {.logging_steps = 0};
    CHECK_INT(sft_trainer_state_write(&c, &o, "/tmp/sft-never-written.json", &err), -1);
    CHECK_ERR_HAS(err.msg, "logging_steps must be >= 1");
    CHECK(!sft_file_exists("/tmp/sft-never-written.json"));
}
