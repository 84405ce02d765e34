/* test_monitor.c: the curve readers (metrics.jsonl, trainer_state.json, CSV,
 * format detection) with their edge cases and errors, and the live monitor:
 * sinks, findings written when first raised with the batch's records. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "monitor/metrics.h"
#include "monitor/readers.h"
#include "test.h"

static char dir[256];

static const char *make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/sft-test-monitor-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    return dir;
}

static void clean_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') snprintf(path, sizeof path, "%s/%s", dir, e->d_name), unlink(path);
    if (d) closedir(d);
    rmdir(dir);
}

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Reads `text` saved as `name`; returns the reader's status, err filled. */
static int read_text(const char *name, const char *text, sft_curve *c, sft_err *err) {
    sft_curve_init(c);
    return sft_curve_read(write_tmp(name, text), c, err);
}

TEST(jsonl_reads_spec_records_with_bare_nan_and_skips_other_types) {
    make_dir();
    sft_curve c;
    sft_err err;
    CHECK_INT(read_text("m.jsonl",
                        "{\"type\":\"train\",\"step\":1,\"epoch\":0.1,\"loss\":2.5,\"grad_norm\":1.5,\"grad_norm_clipped\":1,"
                        "\"clipped\":true,\"lr\":1e-4,\"tokens\":300,\"tokens_per_s\":900.5,\"elapsed_s\":0.3}\n"
                        "\n"
                        "{\"type\":\"finding\",\"kind\":\"loss_spike\",\"severity\":\"warning\",\"step\":1,"
                        "\"end_step\":1,\"evidence\":{\"loss\":2.5,\"records\":\"a.jsonl:4\"},\"message\":\"m\","
                        "\"advice\":\"a\"}\n"
                        "{\"type\":\"sample\",\"text\":\"hi\"}\n"
                        "{\"type\":\"train\",\"step\":2,\"loss\":NaN,\"grad_norm\":Infinity}\r\n"
                        "{\"type\":\"eval\",\"step\":2,\"val_loss\":2.75,\"val_tokens\":4096}\n",
                        &c, &err),
              0);
    CHECK_STR(c.source, "metrics.jsonl");
    CHECK_INT(c.train_count, 2);
    CHECK_INT(c.eval_count, 1);
    if (c.train_count != 2 || c.eval_count != 1) return;
    CHECK(c.train[0].clipped && (c.train[0].has & SFT_HAS_CLIPPED));
    CHECK_NEAR(c.train[0].grad_norm_clipped, 1, 0);
    CHECK_INT(c.train[0].tokens, 300);
    CHECK(isnan(c.train[1].loss) && isinf(c.train[1].grad_norm));
    CHECK(!(c.train[1].has & SFT_HAS_LR));
    CHECK_INT(c.eval[0].val_tokens, 4096);
    /* The finding line keeps the batch records it named. */
    CHECK_INT(c.note_count, 1);
    CHECK_STR(c.notes[0].kind, "loss_spike");
    CHECK_STR(c.notes[0].records, "a.jsonl:4");
    sft_curve_free(&c);
    clean_dir();
}

TEST(jsonl_partial_last_line_of_a_killed_run_is_ignored_but_a_bad_middle_line_is_an_error) {
    make_dir();
    sft_curve c;
    sft_err err;
    CHECK_INT(read_text("a.jsonl", "{\"type\":\"train\",\"step\":1,\"loss\":2}\n{\"type\":\"train\",\"st", &c, &err), 0);
    CHECK_INT(c.train_count, 1);
    sft_curve_free(&c);
    CHECK_INT(read_text("b.jsonl", "{\"type\":\"train\",\"step\":1,\"loss\":2}\n{\"type\":\"train\",\"st\n{}\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "b.jsonl:2:");
    CHECK_ERR_HAS(err.msg, "invalid JSON");
    sft_curve_free(&c);
    CHECK_INT(read_text("c.jsonl", "{\"step\":1,\"loss\":2}\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "c.jsonl:1: missing key 'type'");
    sft_curve_free(&c);
    CHECK_INT(read_text("d.jsonl", "{\"type\":\"train\",\"step\":1.5,\"loss\":2}\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "d.jsonl:1: 'step' must be an integer");
    sft_curve_free(&c);
    CHECK_INT(read_text("e.jsonl", "[1,2]\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "e.jsonl:1: expected a JSON object per line");
    sft_curve_free(&c);
    CHECK_INT(read_text("f.jsonl", "\n\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "no records");
    sft_curve_free(&c);
    clean_dir();
}

TEST(trainer_state_reads_log_history_and_python_nan) {
    make_dir();
    sft_curve c;
    sft_err err;
    CHECK_INT(read_text("trainer_state.json",
                        "{\"log_history\": [\n"
                        " {\"epoch\": 0.5, \"grad_norm\": NaN, \"learning_rate\": 1e-05, \"loss\": NaN, \"step\": 10},\n"
                        " {\"epoch\": 0.5, \"eval_loss\": 2.5, \"eval_runtime\": 1.0, \"step\": 10},\n"
                        " {\"epoch\": 1.0, \"step\": 20, \"train_loss\": 2.0, \"total_flos\": 1e30}\n"
                        "]}\n",
                        &c, &err),
              0);
    CHECK_STR(c.source, "trainer_state.json");
    CHECK_INT(c.train_count, 1);
    CHECK(isnan(c.train[0].loss) && isnan(c.train[0].grad_norm));
    CHECK_NEAR(c.train[0].lr, 1e-5, 0);
    CHECK_INT(c.eval_count, 1);
    CHECK_NEAR(c.eval[0].val_loss, 2.5, 0);
    sft_curve_free(&c);
    CHECK_INT(read_text("x.json", "{\"global_step\": 3}", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "no 'log_history' array");
    sft_curve_free(&c);
    CHECK_INT(read_text("y.json", "{\"log_history\": [{\"loss\": \"low\", \"step\": 1}]}", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "y.json: log_history[0]: 'loss' must be a number");
    sft_curve_free(&c);
    CHECK_INT(read_text("z.json", "{\"log_history\": [\n{\"loss\": 1,\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "z.json:");
    CHECK_ERR_HAS(err.msg, "invalid JSON");
    sft_curve_free(&c);
    clean_dir();
}

TEST(csv_takes_named_columns_empty_cells_quotes_and_synonyms) {
    make_dir();
    sft_curve c;
    sft_err err;
    CHECK_INT(read_text("run.csv",
                        "\xEF\xBB\xBF\"Step\", train_loss ,eval_loss,grad_norm,learning_rate,clipped,wall\r\n"
                        "1,3.5,,2.0,1e-4,true,x\r\n"
                        "2,\"3.25\",,,,false,y\r\n"
                        "3,,3.0,,,,z\r\n"
                        "4,nan,,inf,,,\r\n",
                        &c, &err),
              0);
    CHECK_STR(c.source, "csv");
    CHECK_INT(c.train_count, 3);
    CHECK_INT(c.eval_count, 1);
    CHECK_INT(c.train[0].step, 1);
    CHECK_NEAR(c.train[0].loss, 3.5, 0);
    CHECK(c.train[0].clipped && (c.train[0].has & SFT_HAS_CLIPPED) && (c.train[0].has & SFT_HAS_LR));
    CHECK_NEAR(c.train[1].loss, 3.25, 0);
    CHECK(!(c.train[1].has & SFT_HAS_GRAD_NORM) && !c.train[1].clipped);
    CHECK_INT(c.eval[0].step, 3);
    CHECK(isnan(c.train[2].loss) && isinf(c.train[2].grad_norm));
    sft_curve_free(&c);
    clean_dir();
}

TEST(csv_errors_name_line_and_column) {
    make_dir();
    sft_curve c;
    sft_err err;
    CHECK_INT(read_text("a.csv", "1,2.5\n2,2.4\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "a.csv:1: expected a header line");
    sft_curve_free(&c);
    CHECK_INT(read_text("b.csv", "step,loss\n1,2.5\n2,2.4,9\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "b.csv:3: 3 cells, but the header names 2 columns");
    sft_curve_free(&c);
    CHECK_INT(read_text("c.csv", "step,loss\n1.5,2.5\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "c.csv:2: step '1.5' is not a non-negative integer");
    sft_curve_free(&c);
    CHECK_INT(read_text("d.csv", "step,wall_time\n1,2.5\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "none of the columns loss, val_loss, grad_norm");
    sft_curve_free(&c);
    CHECK_INT(read_text("e.csv", "step,loss\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "no data rows");
    sft_curve_free(&c);
    CHECK_INT(read_text("f.csv", "step,loss\n1,\"2.5\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "f.csv:2: malformed CSV line");
    sft_curve_free(&c);
    CHECK_INT(read_text("g.csv", "step,loss\n,2.5\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "g.csv:2: the step cell is empty");
    sft_curve_free(&c);
    clean_dir();
}

TEST(format_is_told_from_content_when_the_name_does_not_say) {
    make_dir();
    sft_curve c;
    sft_err err;
    CHECK_INT(read_text("log1", "{\"type\":\"train\",\"step\":1,\"loss\":2}\n", &c, &err), 0);
    CHECK_STR(c.source, "metrics.jsonl");
    sft_curve_free(&c);
    CHECK_INT(read_text("log2", "{\n \"log_history\": [{\"loss\": 1, \"step\": 5}]\n}", &c, &err), 0);
    CHECK_STR(c.source, "trainer_state.json");
    sft_curve_free(&c);
    CHECK_INT(read_text("log3", "step,loss\n1,2\n", &c, &err), 0);
    CHECK_STR(c.source, "csv");
    sft_curve_free(&c);
    char *events;
    size_t len;
    CHECK_INT(sft_read_file("tests/fixtures/hf_trainer/sample_overfit.events.out.tfevents.1795849265.vm.417.1", &events,
                            &len, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/log4", dir);
    CHECK_INT(sft_write_file_atomic(path, events, len, &err), 0);
    free(events);
    sft_curve_init(&c);
    CHECK_INT(sft_curve_read(path, &c, &err), 0);
    CHECK_STR(c.source, "tfevents");
    sft_curve_free(&c);
    CHECK_INT(read_text("log5", "hello world\n", &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "cannot tell the format");
    sft_curve_free(&c);
    clean_dir();
}

/* A sink that counts what it gets. */
typedef struct {
    int train, eval, findings, spikes;
} counting_sink;

static int count_train(void *ctx, const sft_train_record *r, sft_err *err) {
    (void)r, (void)err;
    ((counting_sink *)ctx)->train++;
    return 0;
}
static int count_eval(void *ctx, const sft_eval_record *r, sft_err *err) {
    (void)r, (void)err;
    ((counting_sink *)ctx)->eval++;
    return 0;
}
static int count_finding(void *ctx, const sft_finding *f, sft_err *err) {
    (void)err;
    counting_sink *s = ctx;
    s->findings++;
    s->spikes += !strcmp(f->kind, "loss_spike");
    return 0;
}

TEST(monitor_raises_a_spike_once_with_the_batch_records_in_every_sink) {
    make_dir();
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    o.write_tensorboard = 0;
    sft_monitor *m = sft_monitor_open(dir, &o, &err);
    CHECK(m != NULL);
    counting_sink counts = {0};
    sft_metrics_sink sink = {&counts, count_train, count_eval, count_finding, NULL};
    CHECK_INT(sft_monitor_add_sink(m, &sink, &err), 0);
    int raised_at = -1;
    for (int s = 1; s <= 80; s++) {
        /* A falling curve with a little deterministic wiggle, and one spike. */
        double loss = 1.5 + 2.0 * exp(-s / 10.0) + 0.02 * sin(s * 1.7);
        if (s == 60) loss *= 2.5;
        sft_train_record r = {.step = s, .epoch = NAN, .loss = loss, .grad_norm = 0.5, .grad_norm_clipped = 0.5,
                              .lr = 1e-4, .tokens = 100, .tokens_per_s = 1000, .elapsed_s = s,
                              .batch_records = s == 60 ? "train.jsonl:17 train.jsonl:230" : NULL};
        CHECK_INT(sft_monitor_train(m, &r, &err), 0);
        for (size_t i = 0; i < sft_monitor_new_finding_count(m); i++) {
            const sft_finding *f = sft_monitor_new_finding(m, i);
            if (!strcmp(f->kind, "loss_spike")) {
                CHECK_INT(raised_at, -1);
                raised_at = s;
                CHECK_STR(f->records, "train.jsonl:17 train.jsonl:230");
            }
        }
    }
    CHECK_INT(raised_at, 60);
    CHECK_INT(counts.train, 80);
    CHECK_INT(counts.spikes, 1);
    /* The other findings the curve may draw are the plateau after its knee (info). */
    const sft_diagnosis *d = sft_monitor_diagnosis(m);
    CHECK_STR(d->verdict, "warning");
    int spikes = 0;
    for (size_t i = 0; i < d->finding_count; i++) {
        if (strcmp(d->findings[i].kind, "loss_spike")) {
            CHECK_STR(d->findings[i].kind, "plateau");
            continue;
        }
        /* The finding stays attached to its records in later diagnoses. */
        CHECK_STR(d->findings[i].records, "train.jsonl:17 train.jsonl:230");
        spikes++;
    }
    CHECK_INT(spikes, 1);
    CHECK_INT(sft_monitor_curve(m)->train_count, 80);
    CHECK_INT(sft_monitor_close(m, &err), 0);

    char path[512], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    CHECK_INT(sft_read_file(path, &text, &len, &err), 0);
    const char *line = strstr(text, "{\"type\":\"finding\",\"kind\":\"loss_spike\"");
    CHECK(line != NULL);
    if (line) {
        const char *end = strchr(line, '\n');
        json_t *j = sft_json_loadb(line, (size_t)(end - line), path, &err);
        CHECK(j != NULL);
        CHECK_STR(json_string_value(json_object_get(j, "kind")), "loss_spike");
        json_t *ev = json_object_get(j, "evidence");
        CHECK_STR(json_string_value(json_object_get(ev, "records")), "train.jsonl:17 train.jsonl:230");
        double step;
        CHECK_INT(sft_json_number(json_object_get(j, "step"), &step), 0);
        CHECK_NEAR(step, 60, 0);
        json_decref(j);
        /* The finding line comes right after the step that raised it. */
        const char *step60 = strstr(text, "{\"type\":\"train\",\"step\":60,");
        const char *step61 = strstr(text, "{\"type\":\"train\",\"step\":61,");
        CHECK(step60 && step61 && step60 < line && line < step61);
    }
    free(text);
    /* The file reads back as a curve; the finding line is skipped. */
    sft_curve c;
    sft_curve_init(&c);
    CHECK_INT(sft_curve_read(dir, &c, &err), 0);
    CHECK_INT(c.train_count, 80);
    /* ... and an offline diagnosis names the batch of the spike again. */
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    sft_diagnosis offline;
    sft_diagnosis_init(&offline);
    CHECK_INT(sft_diagnose(&c, &cfg, &offline, &err), 0);
    int named = 0;
    for (size_t i = 0; i < offline.finding_count; i++)
        named += !strcmp(offline.findings[i].kind, "loss_spike") &&
                 !strcmp(offline.findings[i].records, "train.jsonl:17 train.jsonl:230");
    CHECK_INT(named, 1);
    sft_diagnosis_free(&offline);
    sft_curve_free(&c);
    clean_dir();
}

TEST(monitor_without_live_diagnosis_writes_no_findings_or_diagnosis) {
    make_dir();
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    o.live_diagnosis = 0;
    o.write_tensorboard = 0;
    sft_monitor *m = sft_monitor_open(dir, &o, &err);
    CHECK(m != NULL);
    sft_train_record r = {.step = 1, .epoch = 0, .loss = NAN, .grad_norm = NAN, .lr = 1e-4};
    CHECK_INT(sft_monitor_train(m, &r, &err), 0);
    sft_eval_record v = {.step = 1, .epoch = 0, .val_loss = 2.0, .val_tokens = 10};
    CHECK_INT(sft_monitor_eval(m, &v, &err), 0);
    CHECK_INT(sft_monitor_new_finding_count(m), 0);
    CHECK_INT(sft_monitor_close(m, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/diagnosis.json", dir);
    CHECK(!sft_file_exists(path));
    clean_dir();
}

TEST(monitor_open_in_a_missing_dir_names_it) {
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    CHECK(sft_monitor_open("/tmp/sft-no-such-dir-for-monitor/run", &o, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "/tmp/sft-no-such-dir-for-monitor/run");
}

static int count_in(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) n++;
    return n;
}

TEST(resumed_monitor_continues_the_curve_without_reporting_old_findings_again) {
    make_dir();
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    o.write_tensorboard = 0;
    o.planned_steps = 100;
    for (int part = 0; part < 2; part++) {
        sft_monitor *m = sft_monitor_open(dir, &o, &err);
        CHECK(m != NULL);
        if (part == 1) CHECK_INT(sft_monitor_curve(m)->train_count, 60);
        for (int s = part ? 61 : 1; s <= (part ? 100 : 60); s++) {
            double loss = 1.5 + 2.0 * exp(-s / 10.0) + 0.02 * sin(s * 1.7);
            if (s == 50) loss *= 2.5;
            sft_train_record r = {.step = s, .epoch = NAN, .loss = loss, .grad_norm = 0.5, .grad_norm_clipped = 0.5,
                                  .lr = 1e-4};
            CHECK_INT(sft_monitor_train(m, &r, &err), 0);
            for (size_t i = 0; i < sft_monitor_new_finding_count(m); i++)
                CHECK(part == 0 || strcmp(sft_monitor_new_finding(m, i)->kind, "loss_spike"));
        }
        CHECK_INT(sft_monitor_finish(m, &err), 0);
        if (part == 1) {
            CHECK_INT(sft_monitor_curve(m)->train_count, 100);
            CHECK_STR(sft_monitor_diagnosis(m)->verdict, "warning");
        }
        CHECK_INT(sft_monitor_close(m, &err), 0);
    }
    char path[512], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    CHECK_INT(sft_read_file(path, &text, &len, &err), 0);
    CHECK_INT(count_in(text, "\"kind\":\"loss_spike\""), 1);
    CHECK_INT(count_in(text, "{\"type\":\"train\""), 100);
    free(text);
    clean_dir();
}

TEST(finish_judges_the_whole_run_when_the_planned_length_was_unknown) {
    make_dir();
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    o.write_tensorboard = 0;
    sft_monitor *m = sft_monitor_open(dir, &o, &err);
    /* A learning rate far too low: flat at the start's level. */
    for (int s = 1; s <= 120; s++) {
        sft_train_record r = {.step = s, .epoch = NAN, .loss = 10.5 - 0.002 * s + 0.05 * sin(s * 2.1), .grad_norm = 0.3,
                              .grad_norm_clipped = 0.3, .lr = 1e-7};
        CHECK_INT(sft_monitor_train(m, &r, &err), 0);
        CHECK_STR(sft_monitor_diagnosis(m)->verdict, "healthy"); /* not judged while the length is unknown */
    }
    CHECK_INT(sft_monitor_finish(m, &err), 0);
    CHECK_STR(sft_monitor_diagnosis(m)->verdict, "warning");
    CHECK_INT(sft_monitor_new_finding_count(m), 1);
    CHECK_STR(sft_monitor_new_finding(m, 0)->kind, "underfitting");
    CHECK_INT(sft_monitor_close(m, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/diagnosis.json", dir);
    json_t *j = sft_json_load_file(path, &err);
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "verdict")), "warning"));
    json_decref(j);
    clean_dir();
}
