/* tensorboard.c: TFRecord framing, hand-written protobuf encoding of
 * Event/Summary, and the reader of event files (see tensorboard.h).
 * Formats: tensorflow/tensorboard compat/proto/event.proto, summary.proto,
 * tensor.proto; tensorboard/summary/writer/record_writer.py. */
#include "monitor/tensorboard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/file.h"

/* ---- CRC-32C -------------------------------------------------------------- */

static uint32_t crc32c_table[256];
static int crc32c_table_ready;

static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
    crc32c_table_ready = 1;
}

uint32_t sft_crc32c(const void *data, size_t len) {
    if (!crc32c_table_ready) crc32c_init();
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) c = crc32c_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t sft_tfrecord_mask_crc(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---- protobuf encoding ---------------------------------------------------- */

/* A growable byte buffer for one message. */
typedef struct {
    uint8_t *bytes;
    size_t len, cap;
    int failed; /* out of memory at some point */
} pb_buf;

static void pb_put(pb_buf *b, const void *data, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->bytes, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->bytes = p;
        b->cap = cap;
    }
    memcpy(b->bytes + b->len, data, n);
    b->len += n;
}

static void pb_varint(pb_buf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    pb_put(b, tmp, n);
}

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static void pb_key(pb_buf *b, unsigned field, unsigned wire) { pb_varint(b, (uint64_t)field << 3 | wire); }

static void pb_fixed64(pb_buf *b, unsigned field, uint64_t bits) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(bits >> (8 * i));
    pb_key(b, field, WIRE_FIXED64);
    pb_put(b, le, 8);
}

static void pb_double(pb_buf *b, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    pb_fixed64(b, field, bits);
}

static void pb_float(pb_buf *b, unsigned field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    uint8_t le[4];
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(bits >> (8 * i));
    pb_key(b, field, WIRE_FIXED32);
    pb_put(b, le, 4);
}

static void pb_bytes(pb_buf *b, unsigned field, const void *data, size_t n) {
    pb_key(b, field, WIRE_LEN);
    pb_varint(b, n);
    pb_put(b, data, n);
}

/* ---- writer ----------------------------------------------------------------- */

struct sft_tb_writer {
    FILE *file;
    char path[4096];
};

static int write_record(sft_tb_writer *w, const pb_buf *event, sft_err *err) {
    if (event->failed) return sft_errf(err, "%s: out of memory encoding an event", w->path);
    uint8_t header[12], footer[4];
    uint64_t len = event->len;
    for (int i = 0; i < 8; i++) header[i] = (uint8_t)(len >> (8 * i));
    uint32_t len_crc = sft_tfrecord_mask_crc(sft_crc32c(header, 8));
    uint32_t data_crc = sft_tfrecord_mask_crc(sft_crc32c(event->bytes, event->len));
    for (int i = 0; i < 4; i++) header[8 + i] = (uint8_t)(len_crc >> (8 * i));
    for (int i = 0; i < 4; i++) footer[i] = (uint8_t)(data_crc >> (8 * i));
    /* A record is flushed whole so a reader following the file sees complete
     * records (TensorBoard waits for the rest of a partial one). */
    if (fwrite(header, 1, 12, w->file) != 12 || fwrite(event->bytes, 1, event->len, w->file) != event->len ||
        fwrite(footer, 1, 4, w->file) != 4 || fflush(w->file))
        return sft_err_errno(err, w->path);
    return 0;
}

sft_tb_writer *sft_tb_open(const char *dir, sft_err *err) {
    sft_tb_writer *w = calloc(1, sizeof *w);
    if (!w) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    double now = (double)time(NULL);
    /* The name TensorBoard's EventFileWriter uses; the counter keeps two
     * writers of one process in one second apart. */
    for (int counter = 0;; counter++) {
        char name[512];
        snprintf(name, sizeof name, "events.out.tfevents.%010ld.%s.%ld.%d", (long)now, host, (long)getpid(),
                 counter);
        if (sft_path_join(w->path, sizeof w->path, dir, name, err)) goto fail;
        if (!sft_file_exists(w->path)) break;
    }
    w->file = fopen(w->path, "wbx");
    if (!w->file) {
        sft_err_errno(err, w->path);
        goto fail;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pb_buf event = {0}, source = {0};
    static const char writer_name[] = "sft";
    pb_bytes(&source, 1, writer_name, strlen(writer_name));
    pb_double(&event, 1, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    static const char version[] = "brain.Event:2";
    pb_bytes(&event, 3, version, strlen(version));
    pb_bytes(&event, 10, source.bytes, source.len);
    event.failed |= source.failed;
    int rc = write_record(w, &event, err);
    free(event.bytes);
    free(source.bytes);
    if (rc) {
        fclose(w->file);
        unlink(w->path);
        goto fail;
    }
    return w;
fail:
    free(w);
    return NULL;
}

const char *sft_tb_path(const sft_tb_writer *w) { return w->path; }

int sft_tb_write_scalars(sft_tb_writer *w, int64_t step, double wall_time, const char *const *tags,
                         const float *values, size_t n, sft_err *err) {
    pb_buf summary = {0}, event = {0};
    for (size_t i = 0; i < n; i++) {
        pb_buf value = {0};
        pb_bytes(&value, 1, tags[i], strlen(tags[i]));
        pb_float(&value, 2, values[i]);
        pb_bytes(&summary, 1, value.bytes, value.len);
        summary.failed |= value.failed;
        free(value.bytes);
    }
    pb_double(&event, 1, wall_time);
    /* proto3 leaves a zero int64 out; readers take the missing field as 0. */
    if (step != 0) {
        pb_key(&event, 2, WIRE_VARINT);
        pb_varint(&event, (uint64_t)step);
    }
    pb_bytes(&event, 5, summary.bytes, summary.len);
    event.failed |= summary.failed;
    int rc = write_record(w, &event, err);
    free(summary.bytes);
    free(event.bytes);
    return rc;
}

int sft_tb_close(sft_tb_writer *w, sft_err *err) {
    if (!w) return 0;
    int rc = 0;
    if (fclose(w->file) != 0) rc = sft_err_errno(err, w->path);
    free(w);
    return rc;
}

/* ---- reader ------------------------------------------------------------------ */

static uint64_t load_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

int sft_tfrecord_next(const uint8_t *buf, size_t len, size_t *offset, size_t record_index,
                      const char *name, const uint8_t **data, size_t *data_len, sft_err *err) {
    size_t at = *offset;
    if (len - at < 12)
        return sft_errf(err, "%s: record %zu at byte offset %zu: truncated header (%zu of 12 bytes)", name,
                        record_index, at, len - at);
    uint32_t stored_len_crc = (uint32_t)load_le(buf + at + 8, 4);
    uint32_t len_crc = sft_tfrecord_mask_crc(sft_crc32c(buf + at, 8));
    if (stored_len_crc != len_crc)
        return sft_errf(err,
                        "%s: record %zu at byte offset %zu: length CRC mismatch (stored 0x%08x, computed "
                        "0x%08x): not a TFRecord/TensorBoard event file, or corrupt",
                        name, record_index, at, stored_len_crc, len_crc);
    uint64_t n = load_le(buf + at, 8);
    if (n > len - at - 12 || len - at - 12 - n < 4)
        return sft_errf(err, "%s: record %zu at byte offset %zu: truncated (length %llu, %zu bytes left)", name,
                        record_index, at, (unsigned long long)n, len - at - 12);
    uint32_t stored_data_crc = (uint32_t)load_le(buf + at + 12 + n, 4);
    uint32_t data_crc = sft_tfrecord_mask_crc(sft_crc32c(buf + at + 12, n));
    if (stored_data_crc != data_crc)
        return sft_errf(err,
                        "%s: record %zu at byte offset %zu: data CRC mismatch (stored 0x%08x, computed 0x%08x): "
                        "the record is corrupt",
                        name, record_index, at, stored_data_crc, data_crc);
    *data = buf + at + 12;
    *data_len = (size_t)n;
    *offset = at + 12 + (size_t)n + 4;
    return 0;
}

/* A cursor over one protobuf message. */
typedef struct {
    const uint8_t *p, *end;
} pb_reader;

typedef struct {
    unsigned field, wire;
    uint64_t varint;         /* WIRE_VARINT */
    uint64_t fixed;          /* WIRE_FIXED64 / WIRE_FIXED32 bits */
    const uint8_t *bytes;    /* WIRE_LEN */
    size_t len;
} pb_field;

static int pb_read_varint(pb_reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* 1: a field was read; 0: end of message; -1: malformed. */
static int pb_next(pb_reader *r, pb_field *f) {
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (pb_read_varint(r, &key)) return -1;
    f->field = (unsigned)(key >> 3);
    f->wire = (unsigned)(key & 7);
    if (f->field == 0) return -1;
    switch (f->wire) {
    case WIRE_VARINT:
        return pb_read_varint(r, &f->varint) ? -1 : 1;
    case WIRE_FIXED64:
        if (r->end - r->p < 8) return -1;
        f->fixed = load_le(r->p, 8);
        r->p += 8;
        return 1;
    case WIRE_FIXED32:
        if (r->end - r->p < 4) return -1;
        f->fixed = load_le(r->p, 4);
        r->p += 4;
        return 1;
    case WIRE_LEN: {
        uint64_t n;
        if (pb_read_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
        f->bytes = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    }
    default:
        return -1; /* groups (3, 4) do not occur in these messages */
    }
}

static double bits_to_float(uint64_t bits) {
    uint32_t b = (uint32_t)bits;
    float v;
    memcpy(&v, &b, 4);
    return v;
}

static double bits_to_double(uint64_t bits) {
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

enum { DT_FLOAT = 1, DT_DOUBLE = 2 };

/* The single number of a rank-0 (or one-element) float/double TensorProto.
 * 1: found; 0: not a numeric scalar; -1: malformed. */
static int tensor_scalar(const uint8_t *bytes, size_t len, double *out) {
    pb_reader r = {bytes, bytes + len};
    pb_field f;
    int rc, found = 0;
    uint64_t dtype = 0;
    double value = 0;
    while ((rc = pb_next(&r, &f)) == 1) {
        if (f.field == 1 && f.wire == WIRE_VARINT) dtype = f.varint;
        else if (f.field == 4 && f.wire == WIRE_LEN) { /* tensor_content: raw little-endian */
            if (f.len == 4) value = bits_to_float(load_le(f.bytes, 4)), found = 4;
            else if (f.len == 8) value = bits_to_double(load_le(f.bytes, 8)), found = 8;
        } else if (f.field == 5 && f.wire == WIRE_LEN && f.len >= 4) { /* packed float_val */
            value = bits_to_float(load_le(f.bytes, 4)), found = 4;
        } else if (f.field == 5 && f.wire == WIRE_FIXED32) {
            value = bits_to_float(f.fixed), found = 4;
        } else if (f.field == 6 && f.wire == WIRE_LEN && f.len >= 8) { /* packed double_val */
            value = bits_to_double(load_le(f.bytes, 8)), found = 8;
        } else if (f.field == 6 && f.wire == WIRE_FIXED64) {
            value = bits_to_double(f.fixed), found = 8;
        }
    }
    if (rc < 0) return -1;
    if (!found || (dtype != DT_FLOAT && dtype != DT_DOUBLE)) return 0;
    *out = value;
    return 1;
}

/* Which curve value a tag holds. */
enum { TAG_NONE, TAG_LOSS, TAG_GRAD_NORM, TAG_LR, TAG_EPOCH, TAG_VAL_LOSS };

static int tag_kind(const uint8_t *tag, size_t len) {
    static const struct {
        const char *tag;
        int kind;
    } tags[] = {
        {"train/loss", TAG_LOSS},       {"train/grad_norm", TAG_GRAD_NORM}, {"train/learning_rate", TAG_LR},
        {"train/epoch", TAG_EPOCH},     {"eval/loss", TAG_VAL_LOSS},        {"loss", TAG_LOSS},
        {"grad_norm", TAG_GRAD_NORM},   {"learning_rate", TAG_LR},          {"eval_loss", TAG_VAL_LOSS},
    };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (strlen(tags[i].tag) == len && !memcmp(tags[i].tag, tag, len)) return tags[i].kind;
    return TAG_NONE;
}

/* The point for `step`, created when missing. Events arrive in step order,
 * so the search from the end is short. */
static sft_train_point *train_at(sft_curve *c, int64_t step, sft_err *err) {
    for (size_t i = c->train_count; i-- > 0;) {
        if (c->train[i].step == step) return &c->train[i];
        if (c->train[i].step < step) break;
    }
    sft_train_point p = {.step = step};
    if (sft_curve_add_train(c, &p, err)) return NULL;
    return &c->train[c->train_count - 1];
}

static sft_eval_point *eval_at(sft_curve *c, int64_t step, sft_err *err) {
    for (size_t i = c->eval_count; i-- > 0;) {
        if (c->eval[i].step == step) return &c->eval[i];
        if (c->eval[i].step < step) break;
    }
    sft_eval_point p = {.step = step};
    if (sft_curve_add_eval(c, &p, err)) return NULL;
    return &c->eval[c->eval_count - 1];
}

static int read_summary(const uint8_t *bytes, size_t len, int64_t step, sft_curve *c, const char *where,
                        sft_err *err) {
    pb_reader r = {bytes, bytes + len};
    pb_field f;
    int rc;
    while ((rc = pb_next(&r, &f)) == 1) {
        if (f.field != 1 || f.wire != WIRE_LEN) continue;
        pb_reader vr = {f.bytes, f.bytes + f.len};
        pb_field vf;
        const uint8_t *tag = NULL;
        size_t tag_len = 0;
        int have_value = 0, vrc;
        double value = 0;
        const uint8_t *tensor = NULL;
        size_t tensor_len = 0;
        while ((vrc = pb_next(&vr, &vf)) == 1) {
            if (vf.field == 1 && vf.wire == WIRE_LEN) tag = vf.bytes, tag_len = vf.len;
            else if (vf.field == 2 && vf.wire == WIRE_FIXED32) value = bits_to_float(vf.fixed), have_value = 1;
            else if (vf.field == 8 && vf.wire == WIRE_LEN) tensor = vf.bytes, tensor_len = vf.len;
        }
        if (vrc < 0) return sft_errf(err, "%s: malformed Summary.Value protobuf", where);
        int kind = tag ? tag_kind(tag, tag_len) : TAG_NONE;
        if (kind == TAG_NONE) continue; /* text summaries, hparams, run totals */
        if (!have_value && tensor) {
            int trc = tensor_scalar(tensor, tensor_len, &value);
            if (trc < 0) return sft_errf(err, "%s: tag '%.*s': malformed TensorProto", where, (int)tag_len, tag);
            have_value = trc;
        }
        if (!have_value)
            return sft_errf(err, "%s: tag '%.*s' at step %lld holds no float scalar (simple_value or tensor)",
                            where, (int)tag_len, tag, (long long)step);
        if (kind == TAG_VAL_LOSS) {
            sft_eval_point *e = eval_at(c, step, err);
            if (!e) return -1;
            e->val_loss = value;
            continue;
        }
        sft_train_point *p = train_at(c, step, err);
        if (!p) return -1;
        switch (kind) {
        case TAG_LOSS: p->loss = value, p->has |= SFT_HAS_LOSS; break;
        case TAG_GRAD_NORM: p->grad_norm = value, p->has |= SFT_HAS_GRAD_NORM; break;
        case TAG_LR: p->lr = value, p->has |= SFT_HAS_LR; break;
        case TAG_EPOCH: p->epoch = value, p->has |= SFT_HAS_EPOCH; break;
        }
    }
    if (rc < 0) return sft_errf(err, "%s: malformed Summary protobuf", where);
    return 0;
}

int sft_tfevents_read(const char *path, sft_curve *c, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    const uint8_t *buf = (const uint8_t *)text;
    size_t offset = 0, index = 0;
    int rc = 0;
    while (offset < len) {
        size_t record_offset = offset;
        const uint8_t *data;
        size_t data_len;
        if ((rc = sft_tfrecord_next(buf, len, &offset, index, path, &data, &data_len, err))) break;
        char where[4200];
        snprintf(where, sizeof where, "%s: record %zu at byte offset %zu", path, index, record_offset);
        pb_reader r = {data, data + data_len};
        pb_field f;
        int64_t step = 0;
        const uint8_t *summary = NULL;
        size_t summary_len = 0;
        int frc, is_version = 0;
        while ((frc = pb_next(&r, &f)) == 1) {
            if (f.field == 2 && f.wire == WIRE_VARINT) step = (int64_t)f.varint;
            else if (f.field == 5 && f.wire == WIRE_LEN) summary = f.bytes, summary_len = f.len;
            else if (f.field == 3 && f.wire == WIRE_LEN) {
                is_version = f.len >= 12 && !memcmp(f.bytes, "brain.Event:", 12);
                if (!is_version) {
                    rc = sft_errf(err, "%s: file_version '%.*s' does not start with 'brain.Event:'", where,
                                  (int)f.len, f.bytes);
                    break;
                }
            }
        }
        if (rc) break;
        if (frc < 0) {
            rc = sft_errf(err, "%s: malformed Event protobuf", where);
            break;
        }
        if (index == 0 && !is_version) {
            rc = sft_errf(err, "%s: the first event has no file_version (expected \"brain.Event:2\")", where);
            break;
        }
        if (summary && (rc = read_summary(summary, summary_len, step, c, where, err))) break;
        index++;
    }
    free(text);
    if (rc) return -1;
    if (index == 0) return sft_errf(err, "%s: empty event file (no records)", path);
    /* HF logs train/epoch alone with its end-of-run totals: not a training point. */
    size_t kept = 0;
    for (size_t i = 0; i < c->train_count; i++)
        if (c->train[i].has & (SFT_HAS_LOSS | SFT_HAS_GRAD_NORM | SFT_HAS_LR)) c->train[kept++] = c->train[i];
    c->train_count = kept;
    sft_curve_sort(c);
    snprintf(c->source, sizeof c->source, "tfevents");
    return 0;
}
