/* file.h: the project's file helpers. Every file sft produces under a final
 * name is written through sft_atomic_* (temporary name in the same folder,
 * fsync, rename, fsync of the folder), so a crash at any instant leaves
 * either the old file or the complete new one, never a half-written one. */
#ifndef SFT_IO_FILE_H
#define SFT_IO_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

/* Reads a whole file; *data is malloc'ed and NUL-terminated (not counted in *len). */
int sft_read_file(const char *path, char **data, size_t *len, sft_err *err);

/* Reads a whole file, gunzipping it when it starts with the gzip magic. */
int sft_read_file_maybe_gz(const char *path, char **data, size_t *len, sft_err *err);

/* A read-only memory map of a whole file. An empty file maps to data=NULL, len=0. */
typedef struct sft_mmap {
    void *data;
    size_t len;
} sft_mmap;

int sft_mmap_open(const char *path, sft_mmap *map, sft_err *err);
void sft_mmap_close(sft_mmap *map);

/* Atomic writer: write to PATH.tmp.PID, then commit (fsync + rename) or abort (unlink). */
typedef struct sft_atomic_file sft_atomic_file;

sft_atomic_file *sft_atomic_open(const char *path, sft_err *err);
int sft_atomic_write(sft_atomic_file *f, const void *data, size_t len, sft_err *err);
int sft_atomic_printf(sft_atomic_file *f, sft_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Both commit and abort free f. */
int sft_atomic_commit(sft_atomic_file *f, sft_err *err);
void sft_atomic_abort(sft_atomic_file *f);

/* One-shot atomic write of a buffer. */
int sft_write_file_atomic(const char *path, const void *data, size_t len, sft_err *err);

/* Copies a file to `to`, atomically (streamed, so any size). */
int sft_copy_file(const char *from, const char *to, sft_err *err);

/* out = dir + "/" + name; an error when it does not fit. */
int sft_path_join(char *out, size_t cap, const char *dir, const char *name, sft_err *err);

int sft_file_exists(const char *path);
int sft_dir_exists(const char *path);
/* mkdir -p; existing folders are fine. */
int sft_mkdir_p(const char *path, sft_err *err);

#endif
