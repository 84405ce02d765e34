/* fuzz_safetensors.c: libFuzzer target for the safetensors reader
 * (src/io/safetensors.c). The input is a whole file image; the reader must
 * reject it with an error or accept it, and then every tensor it accepted
 * must lie inside the input, be found by name, and convert to float32
 * without touching memory outside it (ASan checks that). For F16 and BF16
 * data it also checks that converting to float32 and back is the identity
 * (NaN excepted), the property the writer relies on.
 * Build: make fuzz; run: see fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sft_err err;
    err.msg[0] = 0;
    sft_safetensors *st = sft_safetensors_open_buffer(data, size, "fuzz", &err);
    if (!st) {
        if (!err.msg[0]) abort(); /* a failure must say why */
        return 0;
    }
    for (size_t i = 0; i < sft_safetensors_count(st); i++) {
        const sft_tensor_info *t = sft_safetensors_at(st, i);
        if (sft_safetensors_find(st, t->name) != t) abort();
        const uint8_t *begin = t->data;
        if (begin < data || begin + t->nbytes > data + size) abort();
        if ((size_t)t->numel * sft_dtype_size(t->dtype) != t->nbytes) abort();
        float *values = malloc(((size_t)t->numel + 1) * sizeof *values);
        if (!values) abort();
        sft_tensor_to_f32(t, values);
        for (int64_t k = 0; k < t->numel && t->dtype != SFT_DTYPE_F32; k++) {
            uint16_t stored;
            memcpy(&stored, begin + 2 * k, 2);
            if (values[k] != values[k]) continue; /* NaN payloads may be quieted */
            uint16_t back = t->dtype == SFT_DTYPE_F16 ? sft_f32_to_f16(values[k]) : sft_f32_to_bf16(values[k]);
            if (back != stored) abort();
        }
        free(values);
    }
    sft_safetensors_close(st);
    return 0;
}
