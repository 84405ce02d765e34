/* err.h: the one error type of sft.
 *
 * Library functions never print and never exit. A function that can fail
 * takes an `sft_err *err` as its last argument, fills it on failure and
 * returns -1 (or NULL). Callers add context on the way up with
 * sft_err_prefix ("model.safetensors: " + "tensor 'wte': ..."), and the CLI
 * prints the message once, at the top. */
#ifndef SFT_IO_ERR_H
#define SFT_IO_ERR_H

#include <stddef.h>

#define SFT_ERR_MSG_MAX 2048

typedef struct sft_err {
    char msg[SFT_ERR_MSG_MAX];
} sft_err;

/* Sets the message (printf-style); returns -1 so that `return sft_errf(...)`
 * reads naturally. `err` may be NULL. */
int sft_errf(sft_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context to an existing message: "CONTEXT: old message". Returns -1. */
int sft_err_prefix(sft_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the message from errno: "PATH: strerror(errno)". Returns -1. */
int sft_err_errno(sft_err *err, const char *what);

#endif
