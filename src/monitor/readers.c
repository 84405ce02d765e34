/* readers.c: metrics.jsonl, trainer_state.json, CSV and run-dir readers
 * (see readers.h; event files are read in tensorboard.c). */
#include "monitor/readers.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/file.h"
#include "io/json.h"
#include "monitor/tensorboard.h"

/* ---- metrics.jsonl ----------------------------------------------------------- */

static int jsonl_record(const json_t *rec, const char *ctx, sft_curve *c, sft_err *err) {
    const char *type;
    if (sft_json_get_string(rec, "type", &type, ctx, err)) return -1;
    if (!strcmp(type, "train")) {
        sft_train_point p = {0};
        int64_t tokens = -1;
        p.epoch = p.grad_norm = p.grad_norm_clipped = p.lr = p.tokens_per_s = p.elapsed_s = NAN;
        if (sft_json_get_int(rec, "step", &p.step, ctx, err) || sft_json_get_number(rec, "loss", &p.loss, ctx, err) ||
            sft_json_get_number_opt(rec, "epoch", &p.epoch, ctx, err) ||
            sft_json_get_number_opt(rec, "grad_norm", &p.grad_norm, ctx, err) ||
            sft_json_get_number_opt(rec, "grad_norm_clipped", &p.grad_norm_clipped, ctx, err) ||
            sft_json_get_number_opt(rec, "lr", &p.lr, ctx, err) ||
            sft_json_get_int_opt(rec, "tokens", &tokens, ctx, err) ||
            sft_json_get_number_opt(rec, "tokens_per_s", &p.tokens_per_s, ctx, err) ||
            sft_json_get_number_opt(rec, "elapsed_s", &p.elapsed_s, ctx, err))
            return -1;
        int clipped = -1;
        if (sft_json_get_bool_opt(rec, "clipped", &clipped, ctx, err)) return -1;
        p.has = SFT_HAS_LOSS;
        /* An absent member leaves the NaN marker; a logged NaN is a string "NaN". */
        const json_t *v;
        if ((v = json_object_get(rec, "epoch")) && !json_is_null(v)) p.has |= SFT_HAS_EPOCH;
        if ((v = json_object_get(rec, "grad_norm")) && !json_is_null(v)) p.has |= SFT_HAS_GRAD_NORM;
        if ((v = json_object_get(rec, "grad_norm_clipped")) && !json_is_null(v)) p.has |= SFT_HAS_GRAD_NORM_CLIPPED;
        if ((v = json_object_get(rec, "lr")) && !json_is_null(v)) p.has |= SFT_HAS_LR;
        if ((v = json_object_get(rec, "tokens_per_s")) && !json_is_null(v)) p.has |= SFT_HAS_TOKENS_PER_S;
        if ((v = json_object_get(rec, "elapsed_s")) && !json_is_null(v)) p.has |= SFT_HAS_ELAPSED;
        if (tokens >= 0) p.tokens = tokens, p.has |= SFT_HAS_TOKENS;
        if (clipped >= 0) p.clipped = clipped, p.has |= SFT_HAS_CLIPPED;
        return sft_curve_add_train(c, &p, err);
    }
    if (!strcmp(type, "eval")) {
        sft_eval_point e = {0};
        int64_t tokens = -1;
        e.epoch = NAN;
        if (sft_json_get_int(rec, "step", &e.step, ctx, err) ||
            sft_json_get_number(rec, "val_loss", &e.val_loss, ctx, err) ||
            sft_json_get_number_opt(rec, "epoch", &e.epoch, ctx, err) ||
            sft_json_get_int_opt(rec, "val_tokens", &tokens, ctx, err))
            return -1;
        if (!isnan(e.epoch)) e.has |= SFT_HAS_EPOCH;
        if (tokens >= 0) e.val_tokens = tokens, e.has |= SFT_HAS_VAL_TOKENS;
        return sft_curve_add_eval(c, &e, err);
    }
    if (!strcmp(type, "finding")) {
        /* Findings are re-derived from the curve; only the batch records
         * they named are kept, to attach them again. */
        const char *kind = NULL, *records = NULL;
        int64_t step = 0;
        const json_t *evidence = json_object_get(rec, "evidence");
        if (sft_json_get_string(rec, "kind", &kind, ctx, err) || sft_json_get_int(rec, "step", &step, ctx, err))
            return -1;
        if (json_is_object(evidence) && sft_json_get_string_opt(evidence, "records", &records, ctx, err)) return -1;
        return records ? sft_curve_add_note(c, kind, step, records, err) : 0;
    }
    return 0; /* other record types are not curves */
}

int sft_metrics_jsonl_read(const char *path, sft_curve *c, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    size_t line_no = 0, records = 0;
    int rc = 0;
    for (size_t at = 0; at < len && !rc;) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        line_no++;
        int complete = end < len;
        const char *line = text + at;
        size_t line_len = end - at;
        at = end + 1;
        size_t k = 0;
        while (k < line_len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == line_len) continue;
        json_t *rec = sft_json_loadb_lenient(line, line_len, path, err);
        if (!rec) {
            /* A run killed mid-write leaves a partial last line: the records
             * before it are whole (each line is flushed), so read those. */
            if (!complete) break;
            /* The loader says "PATH:1:COL: ..."; name the real line. */
            char detail[SFT_ERR_MSG_MAX];
            const char *rest = err->msg + strlen(path);
            if (!strncmp(rest, ":1:", 3)) rest += 3;
            snprintf(detail, sizeof detail, "%s", rest);
            rc = sft_errf(err, "%s:%zu:%s", path, line_no, detail);
            break;
        }
        char ctx[4200];
        snprintf(ctx, sizeof ctx, "%s:%zu", path, line_no);
        if (!json_is_object(rec)) rc = sft_errf(err, "%s: expected a JSON object per line", ctx);
        else rc = jsonl_record(rec, ctx, c, err);
        json_decref(rec);
        records++;
    }
    free(text);
    if (rc) return -1;
    if (!records) return sft_errf(err, "%s: no records (an empty metrics file)", path);
    sft_curve_sort(c);
    snprintf(c->source, sizeof c->source, "metrics.jsonl");
    return 0;
}

/* ---- trainer_state.json ---------------------------------------------------------- */

int sft_trainer_state_read(const char *path, sft_curve *c, sft_err *err) {
    json_t *root = sft_json_load_file_lenient(path, err);
    if (!root) return -1;
    const json_t *history = json_is_object(root) ? json_object_get(root, "log_history") : NULL;
    if (!json_is_array(history)) {
        json_decref(root);
        return sft_errf(err, "%s: no 'log_history' array: not an HF Trainer trainer_state.json", path);
    }
    int rc = 0;
    size_t i;
    const json_t *entry;
    json_array_foreach(history, i, entry) {
        char ctx[4200];
        snprintf(ctx, sizeof ctx, "%s: log_history[%zu]", path, i);
        if (!json_is_object(entry)) {
            rc = sft_errf(err, "%s: expected an object", ctx);
            break;
        }
        int has_loss = json_object_get(entry, "loss") != NULL;
        int has_eval = json_object_get(entry, "eval_loss") != NULL;
        if (!has_loss && !has_eval) continue; /* run totals (train_loss, train_runtime, ...) */
        int64_t step;
        double epoch = NAN;
        if ((rc = sft_json_get_int(entry, "step", &step, ctx, err)) ||
            (rc = sft_json_get_number_opt(entry, "epoch", &epoch, ctx, err)))
            break;
        if (has_loss) {
            sft_train_point p = {.step = step, .epoch = epoch, .has = SFT_HAS_LOSS};
            p.grad_norm = p.lr = NAN;
            if ((rc = sft_json_get_number(entry, "loss", &p.loss, ctx, err)) ||
                (rc = sft_json_get_number_opt(entry, "grad_norm", &p.grad_norm, ctx, err)) ||
                (rc = sft_json_get_number_opt(entry, "learning_rate", &p.lr, ctx, err)))
                break;
            if (json_object_get(entry, "grad_norm") && !json_is_null(json_object_get(entry, "grad_norm")))
                p.has |= SFT_HAS_GRAD_NORM;
            if (json_object_get(entry, "learning_rate") && !json_is_null(json_object_get(entry, "learning_rate")))
                p.has |= SFT_HAS_LR;
            if (!isnan(epoch)) p.has |= SFT_HAS_EPOCH;
            if ((rc = sft_curve_add_train(c, &p, err))) break;
        }
        if (has_eval) {
            sft_eval_point e = {.step = step, .epoch = epoch};
            if ((rc = sft_json_get_number(entry, "eval_loss", &e.val_loss, ctx, err))) break;
            if (!isnan(epoch)) e.has |= SFT_HAS_EPOCH;
            if ((rc = sft_curve_add_eval(c, &e, err))) break;
        }
    }
    json_decref(root);
    if (rc) return -1;
    if (!c->train_count && !c->eval_count)
        return sft_errf(err, "%s: log_history holds no loss or eval_loss entries", path);
    sft_curve_sort(c);
    snprintf(c->source, sizeof c->source, "trainer_state.json");
    return 0;
}

/* ---- CSV ------------------------------------------------------------------------------ */

enum { COL_IGNORED, COL_STEP, COL_LOSS, COL_VAL_LOSS, COL_GRAD_NORM, COL_GRAD_NORM_CLIPPED, COL_LR, COL_EPOCH, COL_CLIPPED };

static int column_kind(const char *name) {
    static const struct {
        const char *name;
        int kind;
    } names[] = {
        {"step", COL_STEP},         {"loss", COL_LOSS},         {"train_loss", COL_LOSS},
        {"val_loss", COL_VAL_LOSS}, {"eval_loss", COL_VAL_LOSS}, {"grad_norm", COL_GRAD_NORM},
        {"grad_norm_clipped", COL_GRAD_NORM_CLIPPED}, {"lr", COL_LR}, {"learning_rate", COL_LR},
        {"epoch", COL_EPOCH},       {"clipped", COL_CLIPPED},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].name)) return names[i].kind;
    return COL_IGNORED;
}

#define CSV_MAX_COLUMNS 64

/* Splits one line in place into cells (commas; double quotes around a cell
 * are removed, "" inside quotes is a quote). Returns the cell count or -1. */
static int csv_split(char *line, char **cells) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == CSV_MAX_COLUMNS) return -1;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '"') {
            char *out = ++p;
            cells[n++] = out;
            for (;;) {
                if (!*p) return -1; /* unterminated quote */
                if (*p == '"' && p[1] == '"') *out++ = '"', p += 2;
                else if (*p == '"') {
                    p++;
                    break;
                } else *out++ = *p++;
            }
            *out = 0;
            while (*p == ' ' || *p == '\t') p++;
            if (*p && *p != ',') return -1;
        } else {
            cells[n++] = p;
            while (*p && *p != ',') p++;
            char *end = p;
            while (end > cells[n - 1] && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
            if (*p == ',') {
                *end = 0;
                p++;
                continue;
            }
            *end = 0;
            return n;
        }
        if (*p == ',') {
            p++;
            continue;
        }
        return n;
    }
}

/* 1: a number; 0: empty cell; -1: not a number. */
static int csv_number(const char *cell, double *out) {
    if (!*cell) return 0;
    char *end;
    errno = 0;
    double v = strtod(cell, &end);
    if (end == cell || *end) return -1;
    *out = v;
    return 1;
}

int sft_metrics_csv_read(const char *path, sft_curve *c, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    int kinds[CSV_MAX_COLUMNS];
    int columns = 0, rc = 0, has_step = 0, has_value = 0;
    size_t line_no = 0, rows = 0;
    char *cells[CSV_MAX_COLUMNS];
    char *p = text;
    while (*p && !rc) {
        char *line = p;
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0, p = nl + 1;
        else p += strlen(p);
        line_no++;
        if (line_no == 1 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
            (unsigned char)line[2] == 0xBF)
            line += 3; /* a UTF-8 byte-order mark from spreadsheet exports */
        char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (!*s) continue;
        int n = csv_split(line, cells);
        if (n < 0) {
            rc = sft_errf(err, "%s:%zu: malformed CSV line (unterminated quote or more than %d cells)", path, line_no,
                          CSV_MAX_COLUMNS);
            break;
        }
        if (!columns) {
            columns = n;
            for (int i = 0; i < n; i++) {
                kinds[i] = column_kind(cells[i]);
                has_step |= kinds[i] == COL_STEP;
                has_value |= kinds[i] == COL_LOSS || kinds[i] == COL_VAL_LOSS || kinds[i] == COL_GRAD_NORM;
                double ignored;
                if (csv_number(cells[i], &ignored) == 1) {
                    rc = sft_errf(err, "%s:%zu: expected a header line naming the columns (step,loss,val_loss,"
                                  "grad_norm,...), found the number '%s'", path, line_no, cells[i]);
                    break;
                }
            }
            if (!rc && !has_step)
                rc = sft_errf(err, "%s:%zu: the header has no 'step' column (expected step and any of loss, "
                              "val_loss, grad_norm, lr, epoch)", path, line_no);
            else if (!rc && !has_value)
                rc = sft_errf(err, "%s:%zu: the header has none of the columns loss, val_loss, grad_norm", path,
                              line_no);
            continue;
        }
        if (n != columns) {
            rc = sft_errf(err, "%s:%zu: %d cells, but the header names %d columns", path, line_no, n, columns);
            break;
        }
        sft_train_point tp = {0};
        sft_eval_point ep = {0};
        int have_train = 0, have_eval = 0, have_step = 0;
        for (int i = 0; i < n && !rc; i++) {
            double v = 0;
            int got = csv_number(cells[i], &v);
            if (kinds[i] == COL_IGNORED) continue;
            if (kinds[i] == COL_CLIPPED && got < 0) {
                if (!strcasecmp(cells[i], "true")) v = 1, got = 1;
                else if (!strcasecmp(cells[i], "false")) v = 0, got = 1;
            }
            if (got < 0) {
                rc = sft_errf(err, "%s:%zu: column %d: '%s' is not a number", path, line_no, i + 1, cells[i]);
                break;
            }
            if (!got) continue;
            switch (kinds[i]) {
            case COL_STEP:
                if (!(v >= 0 && v < 9.2e18) || v != floor(v)) {
                    rc = sft_errf(err, "%s:%zu: step '%s' is not a non-negative integer", path, line_no, cells[i]);
                    break;
                }
                tp.step = ep.step = (int64_t)v;
                have_step = 1;
                break;
            case COL_LOSS: tp.loss = v, tp.has |= SFT_HAS_LOSS, have_train = 1; break;
            case COL_VAL_LOSS: ep.val_loss = v, have_eval = 1; break;
            case COL_GRAD_NORM: tp.grad_norm = v, tp.has |= SFT_HAS_GRAD_NORM, have_train = 1; break;
            case COL_GRAD_NORM_CLIPPED:
                tp.grad_norm_clipped = v, tp.has |= SFT_HAS_GRAD_NORM_CLIPPED, have_train = 1;
                break;
            case COL_LR: tp.lr = v, tp.has |= SFT_HAS_LR, have_train = 1; break;
            case COL_EPOCH:
                tp.epoch = ep.epoch = v;
                tp.has |= SFT_HAS_EPOCH;
                ep.has |= SFT_HAS_EPOCH;
                break;
            case COL_CLIPPED: tp.clipped = v != 0, tp.has |= SFT_HAS_CLIPPED, have_train = 1; break;
            }
        }
        if (rc) break;
        if ((have_train || have_eval) && !have_step) {
            rc = sft_errf(err, "%s:%zu: the step cell is empty", path, line_no);
            break;
        }
        if (have_train && (rc = sft_curve_add_train(c, &tp, err))) break;
        if (have_eval && (rc = sft_curve_add_eval(c, &ep, err))) break;
        rows++;
    }
    free(text);
    if (rc) return -1;
    if (!columns) return sft_errf(err, "%s: empty CSV file (expected a header line)", path);
    if (!rows) return sft_errf(err, "%s: no data rows after the header", path);
    sft_curve_sort(c);
    snprintf(c->source, sizeof c->source, "csv");
    return 0;
}

/* ---- format detection ------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_run_dir(const char *dir, sft_curve *c, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "metrics.jsonl", err)) return -1;
    if (sft_file_exists(path)) return sft_metrics_jsonl_read(path, c, err);
    if (sft_path_join(path, sizeof path, dir, "trainer_state.json", err)) return -1;
    if (sft_file_exists(path)) return sft_trainer_state_read(path, c, err);
    DIR *d = opendir(dir);
    if (!d) return sft_err_errno(err, dir);
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20)) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 8;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                rc = sft_errf(err, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[count] = strdup(e->d_name))) {
            rc = sft_errf(err, "out of memory");
            break;
        }
        count++;
    }
    closedir(d);
    if (!rc && !count)
        rc = sft_errf(err, "%s: no metrics.jsonl, trainer_state.json or events.out.tfevents.* file in this folder", dir);
    if (!rc) qsort(names, count, sizeof *names, cmp_names);
    for (size_t i = 0; i < count && !rc; i++) {
        if (!(rc = sft_path_join(path, sizeof path, dir, names[i], err))) rc = sft_tfevents_read(path, c, err);
    }
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    return rc ? -1 : 0;
}

int sft_curve_read(const char *path, sft_curve *c, sft_err *err) {
    if (sft_dir_exists(path)) return read_run_dir(path, c, err);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strstr(base, "tfevents")) return sft_tfevents_read(path, c, err);
    if (ends_with(base, ".csv")) return sft_metrics_csv_read(path, c, err);
    if (ends_with(base, ".jsonl")) return sft_metrics_jsonl_read(path, c, err);
    if (ends_with(base, ".json")) return sft_trainer_state_read(path, c, err);
    /* Otherwise by content. */
    FILE *f = fopen(path, "rb");
    if (!f) return sft_err_errno(err, path);
    unsigned char head[512];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 12) {
        uint32_t stored = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 | (uint32_t)head[11] << 24;
        if (stored == sft_tfrecord_mask_crc(sft_crc32c(head, 8))) return sft_tfevents_read(path, c, err);
    }
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')) i++;
    if (i < n && head[i] == '{') {
        /* One object per line starts with "type"; trainer_state.json is one document. */
        size_t k = i;
        while (k < n && head[k] != '\n') k++;
        if (memmem(head + i, k - i, "\"type\"", 6)) return sft_metrics_jsonl_read(path, c, err);
        return sft_trainer_state_read(path, c, err);
    }
    if (n && memmem(head, n, "step", 4) && memchr(head, ',', n)) return sft_metrics_csv_read(path, c, err);
    return sft_errf(err,
                    "%s: cannot tell the format: expected a run folder, metrics.jsonl, trainer_state.json, a "
                    "TensorBoard event file or a CSV with a step column",
                    path);
}

/* ---- trainer_state.json writer ---------------------------------------------------- */

/* A double as Python's repr writes it (the shortest digits that read back
 * as the same double; fixed notation for exponents -4..15, else 1e-05 /
 * 1.5e+16), and NaN / Infinity bare, as json.dumps does. */
static void write_py_float(FILE *f, double v) {
    if (isnan(v)) {
        fputs("NaN", f);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "Infinity" : "-Infinity", f);
        return;
    }
    if (v == 0) {
        fputs(signbit(v) ? "-0.0" : "0.0", f);
        return;
    }
    char sci[40];
    for (int precision = 0; precision <= 16; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision, v);
        if (strtod(sci, NULL) == v) break;
    }
    /* sci is "-D.DDDe+XX": split into sign, digits and exponent. */
    const char *p = sci;
    int negative = *p == '-';
    if (negative) p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exponent = atoi(p + 1);
    if (negative) fputc('-', f);
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            fputs("0.", f);
            for (int i = -1; i > exponent; i--) fputc('0', f);
            fputs(digits, f);
        } else {
            for (int i = 0; i <= exponent; i++) fputc(i < (int)nd ? digits[i] : '0', f);
            fputc('.', f);
            if ((int)nd > exponent + 1) fputs(digits + exponent + 1, f);
            else fputc('0', f);
        }
        return;
    }
    fputc(digits[0], f);
    if (nd > 1) fprintf(f, ".%s", digits + 1);
    fprintf(f, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
}

/* One log_history entry's members, sorted by key as sort_keys=True does:
 * callers pass them in that order. */
typedef struct {
    const char *key;
    int is_int;
    double number;
    int64_t integer;
} entry_member;

static void write_entry(FILE *f, const entry_member *m, size_t n, int last) {
    fputs("    {\n", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "      \"%s\": ", m[i].key);
        if (m[i].is_int) fprintf(f, "%lld", (long long)m[i].integer);
        else write_py_float(f, m[i].number);
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    fputs(last ? "    }\n" : "    },\n", f);
}

int sft_trainer_state_write(const sft_curve *c, const sft_trainer_state_options *o, const char *path, sft_err *err) {
    if (o->logging_steps < 1)
        return sft_errf(err, "%s: logging_steps must be >= 1, got %lld", path, (long long)o->logging_steps);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    const sft_train_point *last_train = c->train_count ? &c->train[c->train_count - 1] : NULL;
    int64_t global_step = last_train ? last_train->step : 0;
    if (c->eval_count && c->eval[c->eval_count - 1].step > global_step) global_step = c->eval[c->eval_count - 1].step;
    double epoch = last_train && (last_train->has & SFT_HAS_EPOCH) ? last_train->epoch : 0.0;
    const sft_eval_point *best = NULL; /* the earliest minimal validation loss */
    for (size_t i = 0; i < c->eval_count; i++)
        if (isfinite(c->eval[i].val_loss) && (!best || c->eval[i].val_loss < best->val_loss)) best = &c->eval[i];
    int have_best = best != NULL;

    fputs("{\n", f);
    if (have_best) fprintf(f, "  \"best_global_step\": %lld,\n  \"best_metric\": ", (long long)best->step);
    else fputs("  \"best_global_step\": null,\n  \"best_metric\": ", f);
    if (have_best) write_py_float(f, best->val_loss);
    else fputs("null", f);
    fputs(",\n  \"best_model_checkpoint\": null,\n  \"epoch\": ", f);
    write_py_float(f, epoch);
    fputs(",\n  \"eval_steps\": ", f);
    if (o->eval_steps > 0) fprintf(f, "%lld", (long long)o->eval_steps);
    else fputs("null", f);
    fprintf(f,
            ",\n  \"global_step\": %lld,\n  \"is_hyper_param_search\": false,\n  \"is_local_process_zero\": true,\n"
            "  \"is_world_process_zero\": true,\n  \"log_history\": [\n",
            (long long)global_step);

    /* Train windows and evaluations merged by step; at one step the train
     * entry comes first (HF logs, then evaluates). */
    size_t ti = 0, ei = 0;
    double loss_sum = 0;
    size_t loss_count = 0;
    double sum = 0;
    size_t in_window = 0;
    while (ti < c->train_count || ei < c->eval_count) {
        int take_train = ti < c->train_count && (ei >= c->eval_count || c->train[ti].step <= c->eval[ei].step);
        if (take_train) {
            const sft_train_point *p = &c->train[ti++];
            if (p->has & SFT_HAS_LOSS) {
                sum += p->loss;
                in_window++;
                loss_sum += p->loss;
                loss_count++;
            }
            int window_ends = p->step % o->logging_steps == 0 || ti == c->train_count;
            if (!window_ends || !in_window) continue;
            entry_member m[5];
            size_t n = 0;
            if (p->has & SFT_HAS_EPOCH) m[n++] = (entry_member){"epoch", 0, p->epoch, 0};
            if (p->has & SFT_HAS_GRAD_NORM) m[n++] = (entry_member){"grad_norm", 0, p->grad_norm, 0};
            if (p->has & SFT_HAS_LR) m[n++] = (entry_member){"learning_rate", 0, p->lr, 0};
            m[n++] = (entry_member){"loss", 0, sum / (double)in_window, 0};
            m[n++] = (entry_member){"step", 1, 0, p->step};
            write_entry(f, m, n, 0);
            sum = 0;
            in_window = 0;
        } else {
            const sft_eval_point *e = &c->eval[ei++];
            entry_member m[3];
            size_t n = 0;
            if (e->has & SFT_HAS_EPOCH) m[n++] = (entry_member){"epoch", 0, e->epoch, 0};
            m[n++] = (entry_member){"eval_loss", 0, e->val_loss, 0};
            m[n++] = (entry_member){"step", 1, 0, e->step};
            write_entry(f, m, n, 0);
        }
    }
    /* The run totals (HF's last entry). */
    entry_member m[6];
    size_t n = 0;
    m[n++] = (entry_member){"epoch", 0, epoch, 0};
    m[n++] = (entry_member){"step", 1, 0, global_step};
    m[n++] = (entry_member){"total_flos", 0, 0.0, 0};
    m[n++] = (entry_member){"train_loss", 0, loss_count ? loss_sum / (double)loss_count : NAN, 0};
    if (last_train && (last_train->has & SFT_HAS_ELAPSED) && last_train->elapsed_s > 0) {
        /* HF rounds these: runtime to 4 decimals, speed to 3. */
        m[n++] = (entry_member){"train_runtime", 0, round(last_train->elapsed_s * 1e4) / 1e4, 0};
        m[n++] = (entry_member){"train_steps_per_second", 0,
                                round((double)global_step / last_train->elapsed_s * 1e3) / 1e3, 0};
    }
    write_entry(f, m, n, 1);

    int64_t max_steps = c->planned_steps > 0 ? c->planned_steps : global_step;
    fprintf(f,
            "  ],\n  \"logging_steps\": %lld,\n  \"max_steps\": %lld,\n  \"num_input_tokens_seen\": 0,\n"
            "  \"num_train_epochs\": %lld,\n  \"save_steps\": %lld,\n",
            (long long)o->logging_steps, (long long)max_steps, (long long)ceil(epoch), (long long)o->save_steps);
    fputs("  \"stateful_callbacks\": {\n    \"TrainerControl\": {\n      \"args\": {\n"
          "        \"should_epoch_stop\": false,\n        \"should_evaluate\": false,\n"
          "        \"should_log\": false,\n        \"should_save\": false,\n"
          "        \"should_training_stop\": false\n      },\n      \"attributes\": {}\n    }\n  },\n",
          f);
    fprintf(f,
            "  \"total_flos\": 0.0,\n  \"train_batch_size\": %lld,\n  \"trial_name\": null,\n"
            "  \"trial_params\": null\n}\n",
            (long long)o->train_batch_size);
    if (fclose(f)) {
        free(text);
        return sft_errf(err, "out of memory");
    }
    int rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}
