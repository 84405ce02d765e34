/* json.h: the project's one JSON reader, a thin layer over jansson.
 *
 * Documents are decoded with JSON_ALLOW_NUL (strings may hold U+0000; use
 * json_string_length) and JSON_DECODE_INT_AS_REAL, because real HF files
 * hold integers past 64 bits (tokenizer_config.json's model_max_length is
 * 1e30). Read numbers with sft_json_int / sft_json_number below, which
 * accept both jansson number kinds, never with json_integer_value.
 *
 * Python writes NaN and Infinity as bare words (trainer_state.json); the
 * _lenient loaders turn those words, outside strings, into the strings
 * "NaN", "Infinity" and "-Infinity", which sft_json_number reads back. */
#ifndef SFT_IO_JSON_H
#define SFT_IO_JSON_H

#include <jansson.h>
#include <stdint.h>

#include "io/err.h"

/* Error messages name `name` (usually the path) with line and column. */
json_t *sft_json_load_file(const char *path, sft_err *err);
json_t *sft_json_loadb(const char *text, size_t len, const char *name, sft_err *err);
json_t *sft_json_load_file_lenient(const char *path, sft_err *err);
json_t *sft_json_loadb_lenient(const char *text, size_t len, const char *name, sft_err *err);

/* Numbers: 0 on success; -1 when j is not a number (or, for _int, not integral
 * or out of int64 range). sft_json_number also accepts "NaN"/"Infinity"/"-Infinity". */
int sft_json_number(const json_t *j, double *out);
int sft_json_int(const json_t *j, int64_t *out);

/* Object member accessors with an error that names `ctx` and the key.
 * Missing keys: *_opt leave *out unchanged and return 0; the others fail. */
int sft_json_get_int(const json_t *obj, const char *key, int64_t *out, const char *ctx, sft_err *err);
int sft_json_get_int_opt(const json_t *obj, const char *key, int64_t *out, const char *ctx, sft_err *err);
int sft_json_get_number(const json_t *obj, const char *key, double *out, const char *ctx, sft_err *err);
int sft_json_get_number_opt(const json_t *obj, const char *key, double *out, const char *ctx, sft_err *err);
int sft_json_get_bool_opt(const json_t *obj, const char *key, int *out, const char *ctx, sft_err *err);
/* The string stays owned by obj. */
int sft_json_get_string(const json_t *obj, const char *key, const char **out, const char *ctx, sft_err *err);
int sft_json_get_string_opt(const json_t *obj, const char *key, const char **out, const char *ctx, sft_err *err);

/* Appends the JSON encoding of a string (with quotes) to a FILE; bytes that
 * are not valid UTF-8 are written as U+FFFD. */
#include <stdio.h>
void sft_json_write_string(FILE *f, const char *s, size_t len);

#endif
