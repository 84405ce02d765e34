/* file.c: whole-file reads, gzip, mmap and atomic writes (see file.h). */
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

int sft_read_file(const char *path, char **data, size_t *len, sft_err *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sft_err_errno(err, path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return sft_errf(err, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                fclose(f);
                return sft_err_errno(err, path);
            }
            break;
        }
        cap *= 2;
        char *grown = realloc(buf, cap + 1);
        if (!grown) {
            free(buf);
            fclose(f);
            return sft_errf(err, "%s: out of memory", path);
        }
        buf = grown;
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

static int gunzip(const char *path, const unsigned char *in, size_t in_len, char **data,
                  size_t *len, sft_err *err) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 16 + MAX_WBITS: expect a gzip header. */
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return sft_errf(err, "%s: zlib init failed", path);
    size_t cap = in_len * 4 + 1024, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        inflateEnd(&zs);
        return sft_errf(err, "%s: out of memory", path);
    }
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)in_len;
    int rc;
    do {
        if (n == cap) {
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            if (!grown) {
                free(buf);
                inflateEnd(&zs);
                return sft_errf(err, "%s: out of memory", path);
            }
            buf = grown;
        }
        zs.next_out = (unsigned char *)buf + n;
        zs.avail_out = (uInt)(cap - n);
        rc = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END) {
            free(buf);
            inflateEnd(&zs);
            return sft_errf(err, "%s: corrupt gzip data (zlib error %d)", path, rc);
        }
        if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
            free(buf);
            inflateEnd(&zs);
            return sft_errf(err, "%s: truncated gzip data", path);
        }
    } while (rc != Z_STREAM_END);
    inflateEnd(&zs);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int sft_read_file_maybe_gz(const char *path, char **data, size_t *len, sft_err *err) {
    if (sft_read_file(path, data, len, err)) return -1;
    const unsigned char *raw = (const unsigned char *)*data;
    if (*len >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        char *plain = NULL;
        size_t plain_len = 0;
        int rc = gunzip(path, raw, *len, &plain, &plain_len, err);
        free(*data);
        *data = NULL;
        *len = 0;
        if (rc) return -1;
        *data = plain;
        *len = plain_len;
    }
    return 0;
}

int sft_mmap_open(const char *path, sft_mmap *map, sft_err *err) {
    map->data = NULL;
    map->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sft_err_errno(err, path);
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return sft_err_errno(err, path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sft_errf(err, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return sft_err_errno(err, path);
        }
        map->data = p;
        map->len = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void sft_mmap_close(sft_mmap *map) {
    if (map->data) munmap(map->data, map->len);
    map->data = NULL;
    map->len = 0;
}

struct sft_atomic_file {
    FILE *f;
    char *path;
    char *tmp_path;
};

sft_atomic_file *sft_atomic_open(const char *path, sft_err *err) {
    sft_atomic_file *af = calloc(1, sizeof *af);
    size_t n = strlen(path) + 64;
    if (!af || !(af->path = strdup(path)) || !(af->tmp_path = malloc(n))) {
        if (af) free(af->path);
        free(af);
        sft_errf(err, "%s: out of memory", path);
        return NULL;
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        sft_err_errno(err, af->tmp_path);
        free(af->tmp_path);
        free(af->path);
        free(af);
        return NULL;
    }
    return af;
}

int sft_atomic_write(sft_atomic_file *f, const void *data, size_t len, sft_err *err) {
    if (len && fwrite(data, 1, len, f->f) != len) return sft_err_errno(err, f->tmp_path);
    return 0;
}

int sft_atomic_printf(sft_atomic_file *f, sft_err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = vfprintf(f->f, fmt, ap);
    va_end(ap);
    if (rc < 0) return sft_err_errno(err, f->tmp_path);
    return 0;
}

static void fsync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

static void atomic_free(sft_atomic_file *f) {
    free(f->tmp_path);
    free(f->path);
    free(f);
}

int sft_atomic_commit(sft_atomic_file *f, sft_err *err) {
    int rc = 0;
    if (fflush(f->f) || fsync(fileno(f->f))) rc = sft_err_errno(err, f->tmp_path);
    if (fclose(f->f) && !rc) rc = sft_err_errno(err, f->tmp_path);
    if (!rc && rename(f->tmp_path, f->path)) rc = sft_err_errno(err, f->path);
    if (rc)
        unlink(f->tmp_path);
    else
        fsync_parent_dir(f->path);
    atomic_free(f);
    return rc;
}

void sft_atomic_abort(sft_atomic_file *f) {
    if (!f) return;
    fclose(f->f);
    unlink(f->tmp_path);
    atomic_free(f);
}

int sft_write_file_atomic(const char *path, const void *data, size_t len, sft_err *err) {
    sft_atomic_file *f = sft_atomic_open(path, err);
    if (!f) return -1;
    if (sft_atomic_write(f, data, len, err)) {
        sft_atomic_abort(f);
        return -1;
    }
    return sft_atomic_commit(f, err);
}

int sft_copy_file(const char *from, const char *to, sft_err *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return sft_err_errno(err, from);
    sft_atomic_file *out = sft_atomic_open(to, err);
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (sft_atomic_write(out, buf, n, err)) {
            fclose(in);
            sft_atomic_abort(out);
            return -1;
        }
    }
    int read_failed = ferror(in);
    fclose(in);
    if (read_failed) {
        sft_atomic_abort(out);
        return sft_errf(err, "%s: read error", from);
    }
    return sft_atomic_commit(out, err);
}

int sft_path_join(char *out, size_t cap, const char *dir, const char *name, sft_err *err) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return sft_errf(err, "path too long: %s/%s", dir, name);
    return 0;
}

int sft_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int sft_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sft_mkdir_p(const char *path, sft_err *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return sft_errf(err, "bad folder path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char saved = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return sft_err_errno(err, buf);
            buf[i] = saved;
        }
    }
    if (!sft_dir_exists(path)) return sft_errf(err, "%s: exists and is not a folder", path);
    return 0;
}
