/* safetensors.h: reading and writing the safetensors format
 * (https://github.com/huggingface/safetensors, format.md): an 8-byte
 * little-endian header length N, N bytes of JSON header
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the byte buffer. Reading memory-maps the file and validates it as
 * strictly as the reference reader; sharded checkpoints are read through
 * model.safetensors.index.json. Writing pads the header with spaces to a
 * multiple of 8, adds __metadata__ {"format": "pt"} and is atomic. */
#ifndef SFT_IO_SAFETENSORS_H
#define SFT_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

typedef enum { SFT_DTYPE_F32, SFT_DTYPE_F16, SFT_DTYPE_BF16 } sft_dtype;

#define SFT_MAX_DIMS 8

typedef struct sft_tensor_info {
    char *name;
    sft_dtype dtype;
    int ndim;
    int64_t shape[SFT_MAX_DIMS];
    int64_t numel;
    const void *data; /* points into the mapped file */
    size_t nbytes;
} sft_tensor_info;

/* A set of tensors from one file or from all shards of a checkpoint. */
typedef struct sft_safetensors sft_safetensors;

sft_safetensors *sft_safetensors_open(const char *path, sft_err *err);
/* DIR/model.safetensors, or DIR/model.safetensors.index.json with its shards. */
sft_safetensors *sft_safetensors_open_dir(const char *dir, sft_err *err);
/* Parses a safetensors image already in memory (validated exactly as a
 * file); `name` names it in errors. The tensors point into `data`, which
 * the caller keeps alive and unchanged until sft_safetensors_close. */
sft_safetensors *sft_safetensors_open_buffer(const void *data, size_t len, const char *name, sft_err *err);
void sft_safetensors_close(sft_safetensors *st);

size_t sft_safetensors_count(const sft_safetensors *st);
const sft_tensor_info *sft_safetensors_at(const sft_safetensors *st, size_t i);
/* NULL when absent. */
const sft_tensor_info *sft_safetensors_find(const sft_safetensors *st, const char *name);

/* Converts a tensor to float32 (out holds numel floats). */
void sft_tensor_to_f32(const sft_tensor_info *t, float *out);

size_t sft_dtype_size(sft_dtype dtype);
const char *sft_dtype_name(sft_dtype dtype); /* "F32", "F16", "BF16" */
/* Round-to-nearest-even conversions. */
uint16_t sft_f32_to_bf16(float x);
float sft_bf16_to_f32(uint16_t x);
uint16_t sft_f32_to_f16(float x);
float sft_f16_to_f32(uint16_t x);

/* Writing: tensors given as float32, stored in `dtype`. */
typedef struct sft_tensor_out {
    const char *name;
    int ndim;
    int64_t shape[SFT_MAX_DIMS];
    const float *data;
} sft_tensor_out;

int sft_safetensors_write(const char *path, const sft_tensor_out *tensors, size_t count, sft_dtype dtype,
                          sft_err *err);

#endif
