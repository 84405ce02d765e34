/* tensorboard.h: TensorBoard event files, written and read without
 * TensorFlow.
 *
 * An event file is a TFRecord stream (tensorflow record_writer.py): each
 * record is  uint64 length (little-endian) | uint32 masked CRC-32C of those
 * 8 bytes | data | uint32 masked CRC-32C of data, where
 * mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Each record's data is a
 * serialized tensorboard.Event protobuf (event.proto): wall_time (1, double),
 * step (2, int64), file_version (3, string: the first event says
 * "brain.Event:2"), summary (5). A Summary (summary.proto) holds repeated
 * Value (1) {tag (1), simple_value (2, float) or tensor (8, TensorProto)}.
 * The protobuf wire format is written and parsed by hand. */
#ifndef SFT_MONITOR_TENSORBOARD_H
#define SFT_MONITOR_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"
#include "monitor/curve.h"

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of a buffer, and the
 * TFRecord mask applied to the stored CRCs. */
uint32_t sft_crc32c(const void *data, size_t len);
uint32_t sft_tfrecord_mask_crc(uint32_t crc);

/* The writer: one file DIR/events.out.tfevents.<unix time>.<host>.<pid>.0,
 * appended and flushed event by event so TensorBoard can follow a live run. */
typedef struct sft_tb_writer sft_tb_writer;

sft_tb_writer *sft_tb_open(const char *dir, sft_err *err);
const char *sft_tb_path(const sft_tb_writer *w);
/* One event at `step` holding n scalars (Summary.Value.simple_value). */
int sft_tb_write_scalars(sft_tb_writer *w, int64_t step, double wall_time, const char *const *tags,
                         const float *values, size_t n, sft_err *err);
/* Closes and frees w (NULL is fine); -1 when the final flush failed. */
int sft_tb_close(sft_tb_writer *w, sft_err *err);

/* Reads one TFRecord at *offset of buf, checking both CRCs. On success
 * data and data_len point into buf and *offset moves past the record.
 * Errors name `name`, the record index and its byte offset. */
int sft_tfrecord_next(const uint8_t *buf, size_t len, size_t *offset, size_t record_index,
                      const char *name, const uint8_t **data, size_t *data_len, sft_err *err);

/* Reads the scalars of an event file into c: train/loss, train/grad_norm,
 * train/learning_rate, train/epoch and eval/loss (and HF's older untagged
 * names), by step. Text summaries, hparams and other tags are skipped;
 * scalars may be simple_value or a float/double tensor (float_val,
 * double_val or tensor_content). */
int sft_tfevents_read(const char *path, sft_curve *c, sft_err *err);

#endif
