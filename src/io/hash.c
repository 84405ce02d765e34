/* hash.c: XXH3-128 content hashes through libxxhash (see hash.h). */
#include "io/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* Part framing tags (part of the key format: changing them changes every key). */
enum { TAG_BYTES = 1, TAG_STRING = 2, TAG_NULL = 3, TAG_U64 = 4, TAG_HASH = 5, TAG_FILE = 6 };

struct sft_hasher {
    XXH3_state_t *state;
};

static sft_hash128 from_xxh(XXH128_hash_t h) {
    sft_hash128 out = {h.high64, h.low64};
    return out;
}

sft_hash128 sft_hash_bytes(const void *data, size_t len) {
    return from_xxh(XXH3_128bits(data, len));
}

sft_hasher *sft_hasher_new(sft_err *err) {
    sft_hasher *h = calloc(1, sizeof *h);
    if (h) h->state = XXH3_createState();
    if (!h || !h->state) {
        free(h);
        sft_errf(err, "out of memory");
        return NULL;
    }
    XXH3_128bits_reset(h->state);
    return h;
}

void sft_hasher_free(sft_hasher *h) {
    if (!h) return;
    XXH3_freeState(h->state);
    free(h);
}

void sft_hasher_update(sft_hasher *h, const void *data, size_t len) {
    if (len) XXH3_128bits_update(h->state, data, len);
}

static void add_le64(sft_hasher *h, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    sft_hasher_update(h, b, 8);
}

static void add_tag(sft_hasher *h, unsigned char tag) {
    sft_hasher_update(h, &tag, 1);
}

void sft_hasher_add_bytes(sft_hasher *h, const void *data, size_t len) {
    add_tag(h, TAG_BYTES);
    add_le64(h, len);
    sft_hasher_update(h, data, len);
}

void sft_hasher_add_str(sft_hasher *h, const char *s) {
    if (!s) {
        add_tag(h, TAG_NULL);
        return;
    }
    size_t len = strlen(s);
    add_tag(h, TAG_STRING);
    add_le64(h, len);
    sft_hasher_update(h, s, len);
}

void sft_hasher_add_u64(sft_hasher *h, uint64_t v) {
    add_tag(h, TAG_U64);
    add_le64(h, v);
}

void sft_hasher_add_hash(sft_hasher *h, sft_hash128 hash) {
    add_tag(h, TAG_HASH);
    add_le64(h, hash.high);
    add_le64(h, hash.low);
}

sft_hash128 sft_hasher_digest(const sft_hasher *h) {
    return from_xxh(XXH3_128bits_digest(h->state));
}

/* Streams a file into `h` (unframed); *size gets its length. */
static int stream_file(sft_hasher *h, const char *path, uint64_t *size, sft_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sft_err_errno(err, path);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return sft_errf(err, "%s: out of memory", path);
    }
    *size = 0;
    for (;;) {
        ssize_t got = read(fd, buf, CHUNK);
        if (got < 0) {
            if (errno == EINTR) continue;
            sft_err_errno(err, path);
            free(buf);
            close(fd);
            return -1;
        }
        if (got == 0) break;
        sft_hasher_update(h, buf, (size_t)got);
        *size += (uint64_t)got;
    }
    free(buf);
    close(fd);
    return 0;
}

int sft_hash_file(const char *path, sft_hash128 *out, sft_err *err) {
    sft_hasher *h = sft_hasher_new(err);
    if (!h) return -1;
    uint64_t size;
    int rc = stream_file(h, path, &size, err);
    if (!rc) *out = sft_hasher_digest(h);
    sft_hasher_free(h);
    return rc;
}

int sft_hasher_add_file(sft_hasher *h, const char *path, sft_err *err) {
    /* The file's own hash goes in (not its bytes), so that the part has a
     * fixed size and a key can be rebuilt from a manifest's hashes. */
    sft_hash128 content;
    if (sft_hash_file(path, &content, err)) return -1;
    add_tag(h, TAG_FILE);
    add_le64(h, content.high);
    add_le64(h, content.low);
    return 0;
}

void sft_hash_hex(sft_hash128 hash, char out[SFT_HASH_HEX_CHARS]) {
    snprintf(out, SFT_HASH_HEX_CHARS, "%016llx%016llx", (unsigned long long)hash.high,
             (unsigned long long)hash.low);
}

int sft_hash_from_hex(const char *hex, sft_hash128 *out, sft_err *err) {
    if (strlen(hex) != 32) return sft_errf(err, "a content hash is 32 hex digits, got '%s'", hex);
    uint64_t words[2] = {0, 0};
    for (int i = 0; i < 32; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return sft_errf(err, "a content hash is 32 lowercase hex digits, got '%s'", hex);
        words[i / 16] = (words[i / 16] << 4) | (uint64_t)v;
    }
    out->high = words[0];
    out->low = words[1];
    return 0;
}

int sft_hash_equal(sft_hash128 a, sft_hash128 b) {
    return a.high == b.high && a.low == b.low;
}
