/* test_tensorboard.c: the TensorBoard event files sft writes, decoded here
 * independently of the library (a bitwise CRC-32C and a protobuf walker of
 * this file's own), and the library's reader on HF Trainer's real files and
 * on scalars written as tensors, corrupt and truncated files.
 * Formats: tensorboard compat/proto event.proto, summary.proto, tensor.proto;
 * record_writer.py (TFRecord framing with masked CRC-32C). */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "monitor/metrics.h"
#include "monitor/readers.h"
#include "monitor/tensorboard.h"
#include "test.h"

/* ---- the test's own decoding ------------------------------------------------------- */

/* CRC-32C bit by bit (Castagnoli, reflected 0x82F63B78): slow and obviously right. */
static uint32_t ref_crc32c(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    return ~crc;
}

static uint32_t ref_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

typedef struct {
    const uint8_t *p, *end;
} walker;

typedef struct {
    unsigned field, wire;
    uint64_t num;
    const uint8_t *data;
    size_t len;
} pbf;

static int walk(walker *w, pbf *f) {
    if (w->p >= w->end) return 0;
    uint64_t key = 0, v = 0;
    int shift = 0;
    do key |= (uint64_t)(*w->p & 0x7F) << shift, shift += 7; while (*w->p++ & 0x80);
    f->field = (unsigned)(key >> 3);
    f->wire = (unsigned)(key & 7);
    if (f->wire == 0) {
        shift = 0;
        do v |= (uint64_t)(*w->p & 0x7F) << shift, shift += 7; while (*w->p++ & 0x80);
        f->num = v;
    } else if (f->wire == 1) f->num = le(w->p, 8), w->p += 8;
    else if (f->wire == 5) f->num = le(w->p, 4), w->p += 4;
    else if (f->wire == 2) {
        shift = 0;
        do v |= (uint64_t)(*w->p & 0x7F) << shift, shift += 7; while (*w->p++ & 0x80);
        f->data = w->p, f->len = (size_t)v, w->p += v;
    } else return -1;
    return w->p <= w->end ? 1 : -1;
}

typedef struct {
    double wall_time;
    int64_t step;
    char file_version[32];
    char writer[32];
    int values;
    char tags[8][32];
    float simple[8];
    int unknown_fields;
} event;

static void decode_event(const uint8_t *data, size_t len, event *e) {
    memset(e, 0, sizeof *e);
    walker w = {data, data + len};
    pbf f;
    int rc;
    while ((rc = walk(&w, &f)) == 1) {
        if (f.field == 1 && f.wire == 1) memcpy(&e->wall_time, &f.num, 8);
        else if (f.field == 2 && f.wire == 0) e->step = (int64_t)f.num;
        else if (f.field == 3 && f.wire == 2) snprintf(e->file_version, sizeof e->file_version, "%.*s", (int)f.len, f.data);
        else if (f.field == 10 && f.wire == 2) {
            walker s = {f.data, f.data + f.len};
            pbf g;
            while (walk(&s, &g) == 1)
                if (g.field == 1 && g.wire == 2) snprintf(e->writer, sizeof e->writer, "%.*s", (int)g.len, g.data);
        } else if (f.field == 5 && f.wire == 2) {
            walker s = {f.data, f.data + f.len};
            pbf v;
            while (walk(&s, &v) == 1) {
                CHECK_INT(v.field, 1); /* Summary.value */
                walker vw = {v.data, v.data + v.len};
                pbf x;
                int i = e->values++;
                while (walk(&vw, &x) == 1) {
                    if (x.field == 1 && x.wire == 2) snprintf(e->tags[i], sizeof e->tags[i], "%.*s", (int)x.len, x.data);
                    else if (x.field == 2 && x.wire == 5) {
                        uint32_t bits = (uint32_t)x.num;
                        memcpy(&e->simple[i], &bits, 4);
                    } else e->unknown_fields++;
                }
            }
        } else e->unknown_fields++;
    }
    CHECK_INT(rc, 0);
}

/* Splits a file into records, checking both CRCs of each; returns the count. */
static int split_records(const uint8_t *buf, size_t len, const uint8_t **data, size_t *lens, int max) {
    size_t at = 0;
    int n = 0;
    while (at < len && n < max) {
        CHECK(len - at >= 16);
        uint64_t l = le(buf + at, 8);
        CHECK_INT(le(buf + at + 8, 4), ref_mask(ref_crc32c(buf + at, 8)));
        CHECK(at + 12 + l + 4 <= len);
        CHECK_INT(le(buf + at + 12 + l, 4), ref_mask(ref_crc32c(buf + at + 12, l)));
        data[n] = buf + at + 12;
        lens[n++] = (size_t)l;
        at += 12 + l + 4;
    }
    CHECK_INT(at, len); /* nothing after the last record */
    return n;
}

static char dir_buf[256];

static const char *fresh_dir(void) {
    snprintf(dir_buf, sizeof dir_buf, "/tmp/sft-test-tb-XXXXXX");
    CHECK(mkdtemp(dir_buf) != NULL);
    return dir_buf;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') snprintf(path, sizeof path, "%s/%s", dir, e->d_name), unlink(path);
    if (d) closedir(d);
    rmdir(dir);
}

/* ---- the writer ------------------------------------------------------------------------- */

TEST(crc32c_matches_the_standard_check_value) {
    /* CRC-32C of "123456789" is 0xE3069283 (RFC 3720, iSCSI). */
    CHECK_INT(sft_crc32c("123456789", 9), 0xE3069283u);
    CHECK_INT(ref_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
    uint8_t bytes[300];
    for (int i = 0; i < 300; i++) bytes[i] = (uint8_t)(i * 7 + 3);
    CHECK_INT(sft_crc32c(bytes, 300), ref_crc32c(bytes, 300));
    CHECK_INT(sft_tfrecord_mask_crc(0x12345678u), ref_mask(0x12345678u));
}

TEST(written_event_file_decodes_record_by_record) {
    const char *dir = fresh_dir();
    sft_err err;
    time_t before = time(NULL);
    sft_tb_writer *w = sft_tb_open(dir, &err);
    CHECK(w != NULL);
    const char *name = strrchr(sft_tb_path(w), '/') + 1;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char want_prefix[512];
    snprintf(want_prefix, sizeof want_prefix, "events.out.tfevents.%010ld.%s.%ld.", (long)before, host, (long)getpid());
    /* The same second, or the next one if the clock ticked in between. */
    int name_ok = !strncmp(name, want_prefix, strlen(want_prefix));
    snprintf(want_prefix, sizeof want_prefix, "events.out.tfevents.%010ld.%s.%ld.", (long)before + 1, host,
             (long)getpid());
    CHECK(name_ok || !strncmp(name, want_prefix, strlen(want_prefix)));

    const char *train_tags[] = {"train/loss", "train/grad_norm", "train/learning_rate"};
    float values[][3] = {{10.75f, 3.5f, 1e-4f}, {2.125f, 0.875f, 2e-5f}, {NAN, INFINITY, 0.0f}};
    int64_t steps[] = {0, 7, 123456789012LL};
    for (int i = 0; i < 3; i++) CHECK_INT(sft_tb_write_scalars(w, steps[i], 1.7e9 + i, train_tags, values[i], 3, &err), 0);
    const char *eval_tag = "eval/loss";
    float eval_value = 1.0625f;
    CHECK_INT(sft_tb_write_scalars(w, 7, 1.7e9 + 5, &eval_tag, &eval_value, 1, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s", sft_tb_path(w));
    CHECK_INT(sft_tb_close(w, &err), 0);

    char *buf;
    size_t len;
    CHECK_INT(sft_read_file(path, &buf, &len, &err), 0);
    const uint8_t *data[16];
    size_t lens[16];
    int n = split_records((const uint8_t *)buf, len, data, lens, 16);
    CHECK_INT(n, 5);
    event e;
    decode_event(data[0], lens[0], &e);
    CHECK_STR(e.file_version, "brain.Event:2");
    CHECK_STR(e.writer, "sft");
    CHECK(e.wall_time >= (double)before - 1 && e.wall_time <= (double)time(NULL) + 1);
    CHECK_INT(e.values, 0);
    CHECK_INT(e.unknown_fields, 0);
    for (int i = 0; i < 3; i++) {
        decode_event(data[1 + i], lens[1 + i], &e);
        CHECK_NEAR(e.wall_time, 1.7e9 + i, 0);
        CHECK_INT(e.step, steps[i]);
        CHECK_STR(e.file_version, "");
        CHECK_INT(e.values, 3);
        CHECK_INT(e.unknown_fields, 0);
        for (int k = 0; k < 3; k++) {
            CHECK_STR(e.tags[k], train_tags[k]);
            /* Bit for bit, NaN and Inf included. */
            CHECK(!memcmp(&e.simple[k], &values[i][k], 4));
        }
    }
    decode_event(data[4], lens[4], &e);
    CHECK_INT(e.step, 7);
    CHECK_INT(e.values, 1);
    CHECK_STR(e.tags[0], "eval/loss");
    CHECK(e.simple[0] == 1.0625f);
    free(buf);
    remove_dir(dir);
}

TEST(monitor_writes_hf_tags_to_tensorboard_and_spec_lines_to_metrics_jsonl) {
    const char *dir = fresh_dir();
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    o.max_grad_norm = 1.0;
    sft_monitor *m = sft_monitor_open(dir, &o, &err);
    CHECK(m != NULL);
    for (int s = 1; s <= 30; s++) {
        sft_train_record r = {.step = s, .epoch = s / 32.0, .loss = 3.0 / s + 1, .grad_norm = 0.5 + 0.01 * s,
                              .grad_norm_clipped = 0.5 + 0.01 * s, .clipped = 0, .lr = 1e-4 * s / 32, .tokens = 100 + s,
                              .tokens_per_s = 1234.5, .elapsed_s = 0.25 * s};
        CHECK_INT(sft_monitor_train(m, &r, &err), 0);
        if (s % 10 == 0) {
            sft_eval_record v = {.step = s, .epoch = s / 32.0, .val_loss = 1.5 + 3.0 / s, .val_tokens = 4096};
            CHECK_INT(sft_monitor_eval(m, &v, &err), 0);
        }
    }
    CHECK_INT(sft_monitor_close(m, &err), 0);

    /* The event file: one per run dir, HF's tags, values as float32. */
    DIR *d = opendir(dir);
    struct dirent *de;
    char tb_path[512] = "";
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, "events.out.tfevents.", 20)) snprintf(tb_path, sizeof tb_path, "%s/%s", dir, de->d_name);
    closedir(d);
    CHECK(tb_path[0]);
    char *buf;
    size_t len;
    CHECK_INT(sft_read_file(tb_path, &buf, &len, &err), 0);
    const uint8_t *data[64];
    size_t lens[64];
    int n = split_records((const uint8_t *)buf, len, data, lens, 64);
    CHECK_INT(n, 1 + 30 + 3);
    int train_seen = 0, eval_seen = 0;
    for (int i = 1; i < n; i++) {
        event e;
        decode_event(data[i], lens[i], &e);
        if (e.values == 1) {
            CHECK_STR(e.tags[0], "eval/loss");
            CHECK(e.simple[0] == (float)(1.5 + 3.0 / (double)e.step));
            eval_seen++;
            continue;
        }
        CHECK_INT(e.values, 4);
        CHECK_STR(e.tags[0], "train/loss");
        CHECK_STR(e.tags[1], "train/grad_norm");
        CHECK_STR(e.tags[2], "train/learning_rate");
        CHECK_STR(e.tags[3], "train/epoch");
        double s = (double)e.step;
        CHECK(e.simple[0] == (float)(3.0 / s + 1));
        CHECK(e.simple[1] == (float)(0.5 + 0.01 * s));
        CHECK(e.simple[2] == (float)(1e-4 * s / 32));
        CHECK(e.simple[3] == (float)(s / 32.0));
        train_seen++;
    }
    CHECK_INT(train_seen, 30);
    CHECK_INT(eval_seen, 3);
    free(buf);

    /* metrics.jsonl: SPEC.md's keys, in order, one object per line. */
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    CHECK_INT(sft_read_file(path, &buf, &len, &err), 0);
    char *line = strtok(buf, "\n");
    int lines = 0;
    while (line) {
        json_t *j = sft_json_loadb(line, strlen(line), path, &err);
        CHECK(j != NULL);
        const char *type = json_string_value(json_object_get(j, "type"));
        if (lines == 0) {
            CHECK_STR(line, "{\"type\":\"train\",\"step\":1,\"epoch\":0.03125,\"loss\":4,\"grad_norm\":0.51,"
                            "\"grad_norm_clipped\":0.51,\"clipped\":false,\"lr\":3.125e-06,\"tokens\":101,"
                            "\"tokens_per_s\":1234.5,\"elapsed_s\":0.25}");
        }
        if (type && !strcmp(type, "eval")) {
            CHECK_INT(json_object_size(j), 5);
            double v;
            CHECK_INT(sft_json_number(json_object_get(j, "val_loss"), &v), 0);
        } else {
            CHECK_STR(type, "train");
            CHECK_INT(json_object_size(j), 11);
        }
        json_decref(j);
        lines++;
        line = strtok(NULL, "\n");
    }
    CHECK_INT(lines, 33);
    free(buf);
    /* diagnosis.json was written at the evaluations, and reads as JSON. */
    snprintf(path, sizeof path, "%s/diagnosis.json", dir);
    json_t *diag = sft_json_load_file(path, &err);
    CHECK(diag != NULL);
    CHECK_STR(json_string_value(json_object_get(diag, "verdict")), "healthy");
    double best;
    CHECK_INT(sft_json_number(json_object_get(diag, "best_step"), &best), 0);
    CHECK_NEAR(best, 30, 0);
    json_decref(diag);
    remove_dir(dir);
}

/* ---- the reader ------------------------------------------------------------------------------ */

TEST(reader_takes_hf_scalars_by_step_and_skips_text_summaries) {
    sft_err err;
    sft_curve tb, state;
    sft_curve_init(&tb);
    sft_curve_init(&state);
    CHECK_INT(sft_tfevents_read("tests/fixtures/hf_trainer/sample_overfit.events.out.tfevents.1795849265.vm.417.1", &tb,
                                &err), 0);
    CHECK_INT(sft_trainer_state_read("tests/fixtures/hf_trainer/sample_overfit.trainer_state.json", &state, &err), 0);
    CHECK_INT(tb.eval_count, state.eval_count);
    CHECK_INT(state.train_count, 24);
    /* HF also logs train/epoch alone with the run totals: not a point. */
    CHECK_INT(tb.train_count, 24);
    size_t matched = 0;
    for (size_t i = 0; i < tb.train_count; i++) {
        CHECK(tb.train[i].has & SFT_HAS_LOSS);
        const sft_train_point *s = &state.train[matched++];
        CHECK_INT(tb.train[i].step, s->step);
        CHECK(tb.train[i].loss == (double)(float)s->loss);
        CHECK(tb.train[i].grad_norm == (double)(float)s->grad_norm);
        CHECK(tb.train[i].lr == (double)(float)s->lr);
    }
    CHECK_INT(matched, 24);
    for (size_t i = 0; i < tb.eval_count; i++) {
        CHECK_INT(tb.eval[i].step, state.eval[i].step);
        CHECK(tb.eval[i].val_loss == (double)(float)state.eval[i].val_loss);
    }
    sft_curve_free(&tb);
    sft_curve_free(&state);
}

/* A tiny encoder for hand-made event files (tensor-valued scalars). */
typedef struct {
    uint8_t b[512];
    size_t n;
} enc;

static void put_varint(enc *e, uint64_t v) {
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        e->b[e->n++] = c | (v ? 0x80 : 0);
    } while (v);
}

static void put_len(enc *e, unsigned field, const void *data, size_t n) {
    put_varint(e, field << 3 | 2);
    put_varint(e, n);
    memcpy(e->b + e->n, data, n);
    e->n += n;
}

static void put_record(FILE *f, const enc *e) {
    uint8_t h[12];
    for (int i = 0; i < 8; i++) h[i] = (uint8_t)((uint64_t)e->n >> (8 * i));
    uint32_t c = ref_mask(ref_crc32c(h, 8));
    memcpy(h + 8, &c, 4);
    fwrite(h, 1, 12, f);
    fwrite(e->b, 1, e->n, f);
    c = ref_mask(ref_crc32c(e->b, e->n));
    fwrite(&c, 1, 4, f);
}

static void put_scalar_event(FILE *f, int64_t step, const char *tag, const enc *tensor) {
    enc value = {0}, summary = {0}, event = {0};
    put_len(&value, 1, tag, strlen(tag));
    put_len(&value, 8, tensor->b, tensor->n);
    put_len(&summary, 1, value.b, value.n);
    put_varint(&event, 2 << 3 | 0);
    put_varint(&event, (uint64_t)step);
    put_len(&event, 5, summary.b, summary.n);
    put_record(f, &event);
}

TEST(reader_accepts_scalars_as_float_val_double_val_and_tensor_content) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/events.out.tfevents.1.host", dir);
    FILE *f = fopen(path, "wb");
    enc first = {0};
    put_len(&first, 3, "brain.Event:2", 13);
    put_record(f, &first);
    float fv = 2.5f;
    double dv = 0.001953125;
    enc t1 = {0}, t2 = {0}, t3 = {0}, t4 = {0};
    /* dtype DT_FLOAT (1), packed float_val (5) */
    put_varint(&t1, 1 << 3), put_varint(&t1, 1), put_len(&t1, 5, &fv, 4);
    /* DT_DOUBLE (2), packed double_val (6) */
    put_varint(&t2, 1 << 3), put_varint(&t2, 2), put_len(&t2, 6, &dv, 8);
    /* DT_FLOAT, tensor_content (4) */
    float cv = 1.25f;
    put_varint(&t3, 1 << 3), put_varint(&t3, 1), put_len(&t3, 4, &cv, 4);
    /* DT_FLOAT, unpacked float_val (field 5, wire type 5) */
    float uv = 0.75f;
    put_varint(&t4, 1 << 3), put_varint(&t4, 1), put_varint(&t4, 5 << 3 | 5);
    memcpy(t4.b + t4.n, &uv, 4), t4.n += 4;
    put_scalar_event(f, 10, "train/loss", &t1);
    put_scalar_event(f, 10, "train/learning_rate", &t2);
    put_scalar_event(f, 10, "eval/loss", &t3);
    put_scalar_event(f, 20, "train/loss", &t4);
    fclose(f);
    sft_curve c;
    sft_curve_init(&c);
    sft_err err;
    CHECK_INT(sft_curve_read(path, &c, &err), 0);
    CHECK_INT(c.train_count, 2);
    CHECK_INT(c.train[0].step, 10);
    CHECK(c.train[0].loss == 2.5);
    CHECK(c.train[0].lr == 0.001953125);
    CHECK(c.train[1].loss == 0.75);
    CHECK_INT(c.eval_count, 1);
    CHECK(c.eval[0].val_loss == 1.25);
    sft_curve_free(&c);
    remove_dir(dir);
}

static int copy_fixture(const char *dst, long flip_at, size_t keep) {
    sft_err err;
    char *buf;
    size_t len;
    if (sft_read_file("tests/fixtures/hf_trainer/sample_overfit.events.out.tfevents.1795849265.vm.417.1", &buf, &len,
                      &err))
        return -1;
    if (flip_at >= 0) buf[flip_at] ^= 0x20;
    FILE *f = fopen(dst, "wb");
    fwrite(buf, 1, keep && keep < len ? keep : len, f);
    fclose(f);
    free(buf);
    return 0;
}

TEST(corrupt_and_truncated_event_files_name_the_record_and_offset) {
    const char *dir = fresh_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/events.out.tfevents.2.host", dir);
    /* Record 0 is 72 bytes of data: 12 + 72 + 4 = 88 bytes; record 1 starts there. */
    sft_err err;
    sft_curve c;
    CHECK_INT(copy_fixture(path, 88 + 12 + 40, 0), 0);
    sft_curve_init(&c);
    CHECK_INT(sft_curve_read(path, &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "record 1 at byte offset 88: data CRC mismatch");
    CHECK_ERR_HAS(err.msg, path);
    sft_curve_free(&c);

    CHECK_INT(copy_fixture(path, 88 + 3, 0), 0);
    sft_curve_init(&c);
    CHECK_INT(sft_curve_read(path, &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "record 1 at byte offset 88: length CRC mismatch");
    sft_curve_free(&c);

    CHECK_INT(copy_fixture(path, -1, 88 + 50), 0);
    sft_curve_init(&c);
    CHECK_INT(sft_curve_read(path, &c, &err), -1);
    CHECK_ERR_HAS(err.msg, "record 1 at byte offset 88: truncated");
    sft_curve_free(&c);
    remove_dir(dir);
}
