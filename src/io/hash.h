/* hash.h: content hashes, for manifest.json (which model, tokenizer and data
 * a run used) and for the keys of on-disk caches (the tokenized dataset is
 * keyed by the hashes of the data files, the tokenizer, the template and the
 * max length).
 *
 * XXH3-128 from libxxhash (https://github.com/Cyan4973/xxHash, Debian's
 * libxxhash-dev): non-cryptographic, 128 bits so that accidental collisions
 * are out of reach, and fast enough (tens of GB/s) that hashing a model's
 * weights costs less than reading them. Hex digests use xxHash's canonical
 * (big-endian) form, the same digits `xxh128sum` prints. */
#ifndef SFT_IO_HASH_H
#define SFT_IO_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

typedef struct sft_hash128 {
    uint64_t high, low;
} sft_hash128;

#define SFT_HASH_HEX_CHARS 33 /* 32 hex digits + NUL */

/* One-shot hashes. */
sft_hash128 sft_hash_bytes(const void *data, size_t len);
/* The hash of a file's bytes (streamed, so any size works). */
int sft_hash_file(const char *path, sft_hash128 *out, sft_err *err);

void sft_hash_hex(sft_hash128 hash, char out[SFT_HASH_HEX_CHARS]);
int sft_hash_from_hex(const char *hex, sft_hash128 *out, sft_err *err);
int sft_hash_equal(sft_hash128 a, sft_hash128 b);

/* A streaming hasher for keys made of several parts. The add_* functions
 * frame each part (a type byte and a length), so ("ab", "c") and ("a", "bc")
 * hash differently and a key cannot be forged by moving bytes between parts. */
typedef struct sft_hasher sft_hasher;

sft_hasher *sft_hasher_new(sft_err *err);
void sft_hasher_free(sft_hasher *h);
/* Raw bytes, unframed (sft_hash_file's stream is exactly these). */
void sft_hasher_update(sft_hasher *h, const void *data, size_t len);
void sft_hasher_add_bytes(sft_hasher *h, const void *data, size_t len);
void sft_hasher_add_str(sft_hasher *h, const char *s); /* NULL is distinct from "" */
void sft_hasher_add_u64(sft_hasher *h, uint64_t v);
void sft_hasher_add_hash(sft_hasher *h, sft_hash128 hash);
/* A file's content hash as one part (its path is not part of the key). */
int sft_hasher_add_file(sft_hasher *h, const char *path, sft_err *err);
sft_hash128 sft_hasher_digest(const sft_hasher *h);

#endif
