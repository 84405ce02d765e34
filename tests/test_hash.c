/* test_hash.c: XXH3-128 content hashes: the reference digest, streaming
 * equals one-shot, files, hex, and the framing of multi-part keys. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "io/hash.h"
#include "test.h"

TEST(empty_input_has_the_reference_digest) {
    /* XXH3-128 of no bytes, as xxh128sum prints it. */
    char hex[SFT_HASH_HEX_CHARS];
    sft_hash_hex(sft_hash_bytes("", 0), hex);
    CHECK_STR(hex, "99aa06d3014798d86001c324468d497f");
}

TEST(streaming_in_pieces_equals_one_shot) {
    static unsigned char data[300000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 7919 + (i >> 9));
    sft_err err;
    sft_hasher *h = sft_hasher_new(&err);
    size_t pos = 0, step = 1;
    while (pos < sizeof data) {
        size_t n = step < sizeof data - pos ? step : sizeof data - pos;
        sft_hasher_update(h, data + pos, n);
        pos += n;
        step = step * 3 + 1;
    }
    CHECK(sft_hash_equal(sft_hasher_digest(h), sft_hash_bytes(data, sizeof data)));
    sft_hasher_free(h);
}

TEST(file_hash_equals_the_hash_of_its_bytes) {
    char dir[] = "/tmp/sft-test-hash-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    /* Larger than the 1 MiB read chunk, so several reads are joined. */
    size_t len = (3u << 20) + 17;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++) data[i] = (unsigned char)(i ^ (i >> 8));
    sft_err err;
    CHECK_INT(sft_write_file_atomic(path, data, len, &err), 0);
    sft_hash128 from_file;
    CHECK_INT(sft_hash_file(path, &from_file, &err), 0);
    CHECK(sft_hash_equal(from_file, sft_hash_bytes(data, len)));
    free(data);
    unlink(path);
    rmdir(dir);
    CHECK_INT(sft_hash_file("/nonexistent/blob", &from_file, &err), -1);
    CHECK_ERR_HAS(err.msg, "/nonexistent/blob");
}

TEST(hex_round_trips_and_rejects_junk) {
    sft_hash128 h = sft_hash_bytes("abc", 3), back;
    char hex[SFT_HASH_HEX_CHARS];
    sft_hash_hex(h, hex);
    sft_err err;
    CHECK_INT(sft_hash_from_hex(hex, &back, &err), 0);
    CHECK(sft_hash_equal(h, back));
    CHECK_INT(sft_hash_from_hex("xyz", &back, &err), -1);
    CHECK_STR(err.msg, "a content hash is 32 hex digits, got 'xyz'");
}

static sft_hash128 two_strings(const char *a, const char *b) {
    sft_err err;
    sft_hasher *h = sft_hasher_new(&err);
    sft_hasher_add_str(h, a);
    sft_hasher_add_str(h, b);
    sft_hash128 out = sft_hasher_digest(h);
    sft_hasher_free(h);
    return out;
}

TEST(parts_are_framed) {
    CHECK(!sft_hash_equal(two_strings("ab", "c"), two_strings("a", "bc")));
    CHECK(!sft_hash_equal(two_strings("", "x"), two_strings(NULL, "x")));
    CHECK(sft_hash_equal(two_strings("a", "b"), two_strings("a", "b")));
    sft_err err;
    sft_hasher *h1 = sft_hasher_new(&err), *h2 = sft_hasher_new(&err);
    sft_hasher_add_u64(h1, 1024);
    sft_hasher_add_bytes(h2, "\x00\x04\x00\x00\x00\x00\x00\x00", 8);
    CHECK(!sft_hash_equal(sft_hasher_digest(h1), sft_hasher_digest(h2)));
    sft_hasher_free(h1);
    sft_hasher_free(h2);
}

TEST(a_file_part_depends_on_content_not_path) {
    char dir[] = "/tmp/sft-test-hash-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a.jsonl", dir);
    snprintf(b, sizeof b, "%s/b.jsonl", dir);
    sft_err err;
    sft_write_file_atomic(a, "{\"text\": 1}\n", 12, &err);
    sft_write_file_atomic(b, "{\"text\": 1}\n", 12, &err);
    sft_hasher *ha = sft_hasher_new(&err), *hb = sft_hasher_new(&err);
    CHECK_INT(sft_hasher_add_file(ha, a, &err), 0);
    CHECK_INT(sft_hasher_add_file(hb, b, &err), 0);
    CHECK(sft_hash_equal(sft_hasher_digest(ha), sft_hasher_digest(hb)));
    sft_write_file_atomic(b, "{\"text\": 2}\n", 12, &err);
    sft_hasher_free(hb);
    hb = sft_hasher_new(&err);
    CHECK_INT(sft_hasher_add_file(hb, b, &err), 0);
    CHECK(!sft_hash_equal(sft_hasher_digest(ha), sft_hasher_digest(hb)));
    sft_hasher_free(ha);
    sft_hasher_free(hb);
    unlink(a);
    unlink(b);
    rmdir(dir);
}
