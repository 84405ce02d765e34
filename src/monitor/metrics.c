/* metrics.c: the monitor and its two file sinks, metrics.jsonl and the
 * TensorBoard event file (see metrics.h). */
#include "monitor/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "io/file.h"
#include "monitor/readers.h"
#include "monitor/tensorboard.h"

/* ---- metrics.jsonl --------------------------------------------------------------- */

/* Shortest round-trip decimal; non-finite as Python's json writes it. */
static void put_number(FILE *f, double v) {
    if (isnan(v)) fputs("NaN", f);
    else if (isinf(v)) fputs(v > 0 ? "Infinity" : "-Infinity", f);
    else {
        char buf[40];
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(buf, sizeof buf, "%.*g", digits, v);
            if (strtod(buf, NULL) == v) break;
        }
        fputs(buf, f);
    }
}

void sft_metrics_write_train_line(FILE *f, const sft_train_record *r) {
    fprintf(f, "{\"type\":\"train\",\"step\":%lld,\"epoch\":", (long long)r->step);
    put_number(f, r->epoch);
    fputs(",\"loss\":", f);
    put_number(f, r->loss);
    fputs(",\"grad_norm\":", f);
    put_number(f, r->grad_norm);
    fputs(",\"grad_norm_clipped\":", f);
    put_number(f, r->grad_norm_clipped);
    fprintf(f, ",\"clipped\":%s,\"lr\":", r->clipped ? "true" : "false");
    put_number(f, r->lr);
    fprintf(f, ",\"tokens\":%lld,\"tokens_per_s\":", (long long)r->tokens);
    put_number(f, r->tokens_per_s);
    fputs(",\"elapsed_s\":", f);
    put_number(f, r->elapsed_s);
    fputs("}\n", f);
}

void sft_metrics_write_eval_line(FILE *f, const sft_eval_record *r) {
    fprintf(f, "{\"type\":\"eval\",\"step\":%lld,\"epoch\":", (long long)r->step);
    put_number(f, r->epoch);
    fputs(",\"val_loss\":", f);
    put_number(f, r->val_loss);
    fprintf(f, ",\"val_tokens\":%lld}\n", (long long)r->val_tokens);
}

typedef struct {
    FILE *file;
    char path[4096];
} jsonl_sink;

static int jsonl_done(jsonl_sink *s, sft_err *err) {
    if (fflush(s->file) || ferror(s->file)) return sft_err_errno(err, s->path);
    return 0;
}

static int jsonl_train(void *ctx, const sft_train_record *r, sft_err *err) {
    sft_metrics_write_train_line(((jsonl_sink *)ctx)->file, r);
    return jsonl_done(ctx, err);
}

static int jsonl_eval(void *ctx, const sft_eval_record *r, sft_err *err) {
    sft_metrics_write_eval_line(((jsonl_sink *)ctx)->file, r);
    return jsonl_done(ctx, err);
}

static int jsonl_finding(void *ctx, const sft_finding *f, sft_err *err) {
    jsonl_sink *s = ctx;
    sft_finding_write_json(s->file, f, 1);
    fputc('\n', s->file);
    return jsonl_done(s, err);
}

static int jsonl_close(void *ctx, sft_err *err) {
    jsonl_sink *s = ctx;
    int rc = fclose(s->file) ? sft_err_errno(err, s->path) : 0;
    free(s);
    return rc;
}

int sft_metrics_jsonl_sink_open(const char *path, sft_metrics_sink *sink, sft_err *err) {
    jsonl_sink *s = calloc(1, sizeof *s);
    if (!s) return sft_errf(err, "out of memory");
    snprintf(s->path, sizeof s->path, "%s", path);
    /* Appended, not written atomically: the file is a log that grows with the
     * run, and every line is flushed whole. */
    if (!(s->file = fopen(path, "a"))) {
        free(s);
        return sft_err_errno(err, path);
    }
    *sink = (sft_metrics_sink){s, jsonl_train, jsonl_eval, jsonl_finding, jsonl_close};
    return 0;
}

/* ---- TensorBoard --------------------------------------------------------------------- */

static double wall_time_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

static int tb_train(void *ctx, const sft_train_record *r, sft_err *err) {
    const char *tags[4];
    float values[4];
    size_t n = 0;
    tags[n] = "train/loss", values[n++] = (float)r->loss;
    tags[n] = "train/grad_norm", values[n++] = (float)r->grad_norm;
    tags[n] = "train/learning_rate", values[n++] = (float)r->lr;
    if (!isnan(r->epoch)) tags[n] = "train/epoch", values[n++] = (float)r->epoch;
    return sft_tb_write_scalars(ctx, r->step, wall_time_now(), tags, values, n, err);
}

static int tb_eval(void *ctx, const sft_eval_record *r, sft_err *err) {
    const char *tag = "eval/loss";
    float value = (float)r->val_loss;
    return sft_tb_write_scalars(ctx, r->step, wall_time_now(), &tag, &value, 1, err);
}

static int tb_close(void *ctx, sft_err *err) { return sft_tb_close(ctx, err); }

int sft_tensorboard_sink_open(const char *dir, sft_metrics_sink *sink, sft_err *err) {
    sft_tb_writer *w = sft_tb_open(dir, err);
    if (!w) return -1;
    *sink = (sft_metrics_sink){w, tb_train, tb_eval, NULL, tb_close};
    return 0;
}

/* ---- the monitor ------------------------------------------------------------------------- */

#define MONITOR_MAX_SINKS 8

struct sft_monitor {
    sft_monitor_options options;
    char diagnosis_path[4096];
    sft_metrics_sink sinks[MONITOR_MAX_SINKS];
    int sink_count;
    sft_curve curve;
    sft_diagnose_tracker *tracker;
    sft_diagnosis diagnosis;
    const sft_finding *fresh[64];
    size_t fresh_count;
    int finished; /* sft_monitor_finish ran */
};

void sft_monitor_options_default(sft_monitor_options *o) {
    memset(o, 0, sizeof *o);
    o->write_jsonl = o->write_tensorboard = o->live_diagnosis = o->write_diagnosis = 1;
    sft_diagnose_config_default(&o->diagnose);
}

int sft_monitor_add_sink(sft_monitor *m, const sft_metrics_sink *sink, sft_err *err) {
    if (m->sink_count == MONITOR_MAX_SINKS) return sft_errf(err, "too many metrics sinks (at most %d)", MONITOR_MAX_SINKS);
    m->sinks[m->sink_count++] = *sink;
    return 0;
}

static void close_sinks(sft_monitor *m, sft_err *err, int *rc) {
    for (int i = 0; i < m->sink_count; i++) {
        sft_err ignored;
        if (m->sinks[i].close && m->sinks[i].close(m->sinks[i].ctx, *rc ? &ignored : err)) *rc = -1;
    }
    m->sink_count = 0;
}

static void monitor_free(sft_monitor *m) {
    sft_curve_free(&m->curve);
    sft_diagnose_tracker_free(m->tracker);
    sft_diagnosis_free(&m->diagnosis);
    free(m);
}

static int preload(sft_monitor *m, const char *path, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    free(text);
    if (len == 0) return 0;
    char source[sizeof m->curve.source];
    memcpy(source, m->curve.source, sizeof source);
    if (sft_metrics_jsonl_read(path, &m->curve, err)) return sft_err_prefix(err, "resuming the metrics");
    memcpy(m->curve.source, source, sizeof source);
    if (!m->tracker) return 0;
    size_t raised;
    return sft_diagnose_update(m->tracker, &m->curve, &m->options.diagnose, &m->diagnosis, &raised, err);
}

sft_monitor *sft_monitor_open(const char *run_dir, const sft_monitor_options *o, sft_err *err) {
    sft_monitor *m = calloc(1, sizeof *m);
    if (!m) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    m->options = *o;
    sft_curve_init(&m->curve);
    m->curve.max_grad_norm = o->max_grad_norm;
    m->curve.planned_steps = o->planned_steps > 0 ? o->planned_steps : -1;
    snprintf(m->curve.source, sizeof m->curve.source, "live");
    sft_diagnosis_init(&m->diagnosis);
    char path[4096];
    sft_metrics_sink sink;
    if (o->write_diagnosis && sft_path_join(m->diagnosis_path, sizeof m->diagnosis_path, run_dir, "diagnosis.json", err))
        goto fail;
    if (o->live_diagnosis && !(m->tracker = sft_diagnose_tracker_new(err))) goto fail;
    if (o->write_jsonl) {
        if (sft_path_join(path, sizeof path, run_dir, "metrics.jsonl", err)) goto fail;
        /* A resumed run continues its curve: the live diagnosis sees the
         * whole run, and what was reported before is not reported again. */
        if (sft_file_exists(path) && preload(m, path, err)) goto fail;
        if (sft_metrics_jsonl_sink_open(path, &sink, err) || sft_monitor_add_sink(m, &sink, err)) goto fail;
    }
    if (o->write_tensorboard) {
        if (sft_tensorboard_sink_open(run_dir, &sink, err) || sft_monitor_add_sink(m, &sink, err)) goto fail;
    }
    return m;
fail:;
    int rc = -1;
    close_sinks(m, err, &rc);
    monitor_free(m);
    return NULL;
}

static int is_batch_kind(const char *kind) {
    return !strcmp(kind, "loss_spike") || !strcmp(kind, "non_finite") || !strcmp(kind, "exploding_gradients");
}

/* Re-diagnoses the curve so far and hands first-raised findings to the sinks. */
static int monitor_diagnose(sft_monitor *m, int64_t step, const char *batch_records, sft_err *err) {
    m->fresh_count = 0;
    if (!m->tracker) return 0;
    size_t raised;
    if (sft_diagnose_update(m->tracker, &m->curve, &m->options.diagnose, &m->diagnosis, &raised, err)) return -1;
    for (size_t i = 0; i < m->diagnosis.finding_count; i++) {
        sft_finding *f = &m->diagnosis.findings[i];
        if (!f->first_raised) continue;
        /* The batch of the step that raised it; kept in the curve so later
         * diagnoses (and sft diagnose of metrics.jsonl) name it too. */
        if (batch_records && batch_records[0] && f->step == step && is_batch_kind(f->kind) && !f->records[0]) {
            if (sft_curve_add_note(&m->curve, f->kind, f->step, batch_records, err)) return -1;
            snprintf(f->records, sizeof f->records, "%s", batch_records);
        }
        if (m->fresh_count < sizeof m->fresh / sizeof m->fresh[0]) m->fresh[m->fresh_count++] = f;
        for (int s = 0; s < m->sink_count; s++)
            if (m->sinks[s].on_finding && m->sinks[s].on_finding(m->sinks[s].ctx, f, err)) return -1;
    }
    return 0;
}

int sft_monitor_train(sft_monitor *m, const sft_train_record *r, sft_err *err) {
    for (int s = 0; s < m->sink_count; s++)
        if (m->sinks[s].on_train && m->sinks[s].on_train(m->sinks[s].ctx, r, err)) return -1;
    sft_train_point p = {
        .step = r->step, .epoch = r->epoch, .loss = r->loss, .grad_norm = r->grad_norm,
        .grad_norm_clipped = r->grad_norm_clipped, .clipped = r->clipped, .lr = r->lr, .tokens = r->tokens,
        .tokens_per_s = r->tokens_per_s, .elapsed_s = r->elapsed_s,
        .has = SFT_HAS_LOSS | SFT_HAS_GRAD_NORM | SFT_HAS_GRAD_NORM_CLIPPED | SFT_HAS_CLIPPED | SFT_HAS_LR |
               SFT_HAS_TOKENS | SFT_HAS_TOKENS_PER_S | SFT_HAS_ELAPSED,
    };
    if (!isnan(r->epoch)) p.has |= SFT_HAS_EPOCH;
    if (sft_curve_add_train(&m->curve, &p, err)) return -1;
    return monitor_diagnose(m, r->step, r->batch_records, err);
}

int sft_monitor_eval(sft_monitor *m, const sft_eval_record *r, sft_err *err) {
    for (int s = 0; s < m->sink_count; s++)
        if (m->sinks[s].on_eval && m->sinks[s].on_eval(m->sinks[s].ctx, r, err)) return -1;
    sft_eval_point e = {.step = r->step, .epoch = r->epoch, .val_loss = r->val_loss, .val_tokens = r->val_tokens,
                        .has = SFT_HAS_VAL_TOKENS};
    if (!isnan(r->epoch)) e.has |= SFT_HAS_EPOCH;
    if (sft_curve_add_eval(&m->curve, &e, err)) return -1;
    if (monitor_diagnose(m, r->step, NULL, err)) return -1;
    if (m->tracker && m->diagnosis_path[0] && sft_diagnosis_save(m->diagnosis_path, &m->diagnosis, err)) return -1;
    return 0;
}

size_t sft_monitor_new_finding_count(const sft_monitor *m) { return m->fresh_count; }

const sft_finding *sft_monitor_new_finding(const sft_monitor *m, size_t i) {
    return i < m->fresh_count ? m->fresh[i] : NULL;
}

const sft_diagnosis *sft_monitor_diagnosis(const sft_monitor *m) { return &m->diagnosis; }
const sft_curve *sft_monitor_curve(const sft_monitor *m) { return &m->curve; }

int sft_monitor_finish(sft_monitor *m, sft_err *err) {
    if (m->finished) return 0;
    m->finished = 1;
    if (!m->tracker || (!m->curve.train_count && !m->curve.eval_count)) return 0;
    /* The run is over: judge it whole, as `sft diagnose` will. */
    m->curve.planned_steps = 0;
    if (monitor_diagnose(m, m->curve.train_count ? m->curve.train[m->curve.train_count - 1].step : 0, NULL, err))
        return -1;
    return m->diagnosis_path[0] ? sft_diagnosis_save(m->diagnosis_path, &m->diagnosis, err) : 0;
}

int sft_monitor_close(sft_monitor *m, sft_err *err) {
    if (!m) return 0;
    int rc = sft_monitor_finish(m, err);
    close_sinks(m, err, &rc);
    monitor_free(m);
    return rc;
}
