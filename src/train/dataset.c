/* dataset.c: records -> tokenized examples (masking, BOS, truncation), the
 * on-disk cache of tokenized datasets, the seeded validation split, packing
 * and micro-batch assembly (see dataset.h). */
#include "train/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "train/manifest.h"

/* ------------------------------------------------------------ encoder */

static int hash_optional_file(sft_hasher *h, const char *dir, const char *name, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, name, err)) return -1;
    sft_hasher_add_str(h, name);
    if (!sft_file_exists(path)) {
        sft_hasher_add_str(h, NULL);
        return 0;
    }
    return sft_hasher_add_file(h, path, err);
}

int sft_encoder_init(sft_encoder *enc, const sft_tokenizer *tok, const sft_chat_template *tmpl,
                     const char *tokenizer_dir, sft_err *err) {
    memset(enc, 0, sizeof *enc);
    enc->tok = tok;
    enc->tmpl = tmpl;
    enc->bos_id = enc->eos_id = -1;
    const char *bos = sft_tokenizer_bos_token(tok), *eos = sft_tokenizer_eos_token(tok);
    if (bos) enc->bos_id = sft_tokenizer_token_to_id(tok, bos);
    if (eos) enc->eos_id = sft_tokenizer_token_to_id(tok, eos);
    /* Does the post-processor add BOS? Then the model was trained with one
     * in front of every sequence. */
    sft_encoding e = {0};
    if (sft_tokenizer_encode(tok, "", 0, 1, &e, err)) return -1;
    if (enc->bos_id >= 0 && e.count > 0 && e.ids[0] == enc->bos_id) enc->add_bos = 1;
    sft_encoding_free(&e);

    sft_hasher *h = sft_hasher_new(err);
    if (!h) return -1;
    int rc = 0;
    if (tokenizer_dir) {
        rc = hash_optional_file(h, tokenizer_dir, "tokenizer.json", err);
        if (!rc) rc = hash_optional_file(h, tokenizer_dir, "tokenizer_config.json", err);
        if (!rc) rc = hash_optional_file(h, tokenizer_dir, "chat_template.jinja", err);
    }
    sft_hasher_add_str(h, tmpl ? sft_chat_template_name(tmpl) : NULL);
    enc->key = sft_hasher_digest(h);
    sft_hasher_free(h);
    return rc;
}

static int encoded_reserve(sft_encoded *e, size_t n, sft_err *err) {
    if (n <= e->cap) return 0;
    size_t cap = e->cap ? e->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *ids = realloc(e->ids, cap * sizeof *ids);
    if (!ids) return sft_errf(err, "out of memory for %zu tokens", n);
    e->ids = ids;
    uint8_t *mask = realloc(e->mask, cap);
    if (!mask) return sft_errf(err, "out of memory for %zu tokens", n);
    e->mask = mask;
    e->cap = cap;
    return 0;
}

/* Copies ids and mask into out with exactly one BOS: repeated leading BOS
 * tokens (a template that writes BOS under a tokenizer that also adds one)
 * are dropped, and one is added when the tokenizer expects it and the text
 * did not start with it. Plain text gets a final EOS so the model learns to
 * stop. */
static int finish_encoding(const sft_encoder *enc, const int32_t *ids, size_t n, const uint8_t *mask,
                           int train_on_prompt, int plain_text, sft_encoded *out, sft_err *err) {
    size_t skip = 0;
    if (enc->bos_id >= 0)
        while (skip + 1 < n && ids[skip] == enc->bos_id && ids[skip + 1] == enc->bos_id) skip++;
    int prepend = enc->add_bos && (n == skip || ids[skip] != enc->bos_id);
    int append_eos = plain_text && enc->eos_id >= 0 && (n == 0 || ids[n - 1] != enc->eos_id);
    size_t total = (size_t)prepend + (n - skip) + (size_t)append_eos;
    if (encoded_reserve(out, total, err)) return -1;
    size_t k = 0;
    if (prepend) out->ids[k] = enc->bos_id, out->mask[k] = 0, k++;
    for (size_t i = skip; i < n; i++, k++) {
        out->ids[k] = ids[i];
        out->mask[k] = train_on_prompt || !mask ? 1 : mask[i];
    }
    if (append_eos) out->ids[k] = enc->eos_id, out->mask[k] = 1, k++;
    out->count = k;
    return 0;
}

int sft_encode_record(const sft_encoder *enc, const sft_record *rec, int train_on_prompt, sft_encoded *out,
                      sft_err *err) {
    out->count = 0;
    const int32_t *ids;
    const uint8_t *mask = NULL;
    size_t n;
    sft_encoding *plain = &out->chat.tokens;
    if (rec->format == SFT_FORMAT_TEXT) {
        /* Language-modeling text: no template; the post-processor's
         * specials (BOS) and a final EOS so the model learns to stop. */
        if (rec->message_count != 1) return sft_errf(err, "a text record must hold one text");
        if (sft_tokenizer_encode(enc->tok, rec->messages[0].content, rec->messages[0].content_len, 1, plain, err))
            return -1;
        ids = plain->ids;
        n = plain->count;
    } else {
        if (!enc->tmpl)
            return sft_errf(err, "no chat template to render a %s record: %s", sft_data_format_name(rec->format),
                            enc->template_error ? enc->template_error : "none given");
        if (rec->message_count > out->message_cap) {
            sft_chat_message *m = realloc(out->messages, rec->message_count * sizeof *m);
            if (!m) return sft_errf(err, "out of memory");
            out->messages = m;
            out->message_cap = rec->message_count;
        }
        for (size_t i = 0; i < rec->message_count; i++)
            out->messages[i] = (sft_chat_message){rec->messages[i].role, rec->messages[i].content,
                                                  rec->messages[i].content_len};
        if (sft_chat_encode(enc->tmpl, enc->tok, out->messages, rec->message_count, 0, &out->chat, err)) return -1;
        ids = out->chat.tokens.ids;
        n = out->chat.tokens.count;
        mask = out->chat.assistant_mask;
    }
    return finish_encoding(enc, ids, n, mask, train_on_prompt, rec->format == SFT_FORMAT_TEXT, out, err);
}

int sft_encode_prompt(const sft_encoder *enc, const sft_chat_message *messages, size_t count, sft_encoded *out,
                      sft_err *err) {
    out->count = 0;
    if (!enc->tmpl)
        return sft_errf(err, "no chat template to render the prompt: %s",
                        enc->template_error ? enc->template_error : "none given");
    if (sft_chat_encode(enc->tmpl, enc->tok, messages, count, 1, &out->chat, err)) return -1;
    return finish_encoding(enc, out->chat.tokens.ids, out->chat.tokens.count, NULL, 1, 0, out, err);
}

void sft_encoded_free(sft_encoded *e) {
    free(e->ids);
    free(e->mask);
    sft_chat_encoding_free(&e->chat);
    free(e->messages);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------ dataset */

static int ds_add_example(sft_dataset *ds, const int32_t *ids, const int32_t *targets, size_t len, int32_t sup,
                          int32_t file, int64_t line, sft_err *err) {
    if (ds->count == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 256;
        sft_example *e = realloc(ds->examples, cap * sizeof *e);
        if (!e) return sft_errf(err, "out of memory");
        ds->examples = e;
        ds->cap = cap;
    }
    if (ds->token_count + len > ds->token_cap) {
        size_t cap = ds->token_cap ? ds->token_cap : 4096;
        while (cap < ds->token_count + len) cap *= 2;
        int32_t *a = realloc(ds->ids, cap * sizeof *a);
        if (!a) return sft_errf(err, "out of memory");
        ds->ids = a;
        int32_t *b = realloc(ds->targets, cap * sizeof *b);
        if (!b) return sft_errf(err, "out of memory");
        ds->targets = b;
        ds->token_cap = cap;
    }
    memcpy(ds->ids + ds->token_count, ids, len * sizeof *ids);
    memcpy(ds->targets + ds->token_count, targets, len * sizeof *targets);
    ds->examples[ds->count++] = (sft_example){.offset = (int64_t)ds->token_count, .len = (int32_t)len,
                                              .supervised = sup, .file = file, .line = line};
    ds->token_count += len;
    ds->stats.tokens += (int64_t)len;
    ds->stats.supervised_tokens += sup;
    return 0;
}

/* Copies a message into a fixed buffer, cut to fit. */
static void copy_cut(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void note_skip(sft_dataset *ds, const char *msg) {
    if (!ds->stats.skipped_bad++) copy_cut(ds->stats.first_skip, sizeof ds->stats.first_skip, msg);
}

/* Reads and encodes one file into ds. */
static int load_file(sft_dataset *ds, int file_index, const sft_encoder *enc, const sft_dataset_options *o,
                     sft_err *err) {
    sft_dataset_file *file = &ds->files[file_index];
    sft_reader_options ro = {.format = o->format, .skip_bad = o->skip_bad, .allow_no_assistant = 0};
    sft_reader *r = sft_reader_open(file->path, &ro, err);
    if (!r) return -1;
    sft_record rec;
    sft_record_init(&rec);
    sft_encoded e = {0};
    int32_t *targets = NULL;
    size_t targets_cap = 0;
    int rc = -1, got;
    while ((got = sft_reader_next(r, &rec, err)) == 1) {
        sft_err rec_err;
        if (sft_encode_record(enc, &rec, o->train_on_prompt, &e, &rec_err)) {
            char msg[SFT_ERR_MSG_MAX + 64];
            snprintf(msg, sizeof msg, "%s:%zu: %s", file->path, rec.line, rec_err.msg);
            if (!o->skip_bad) {
                sft_errf(err, "%s", msg);
                goto done;
            }
            note_skip(ds, msg);
            continue;
        }
        ds->stats.records++;
        file->records++;
        size_t n = e.count;
        if ((int64_t)n > o->max_len) {
            if (o->drop_overlong) {
                ds->stats.dropped_overlong++;
                continue;
            }
            ds->stats.truncated++;
            n = (size_t)o->max_len;
        }
        if (n > targets_cap) {
            int32_t *t = realloc(targets, n * sizeof *t);
            if (!t) {
                sft_errf(err, "out of memory");
                goto done;
            }
            targets = t;
            targets_cap = n;
        }
        /* Shifted labels: position i predicts token i+1 when it carries loss. */
        int32_t sup = 0;
        for (size_t i = 0; i < n; i++) {
            targets[i] = i + 1 < n && e.mask[i + 1] ? e.ids[i + 1] : SFT_IGNORE_INDEX;
            sup += targets[i] != SFT_IGNORE_INDEX;
        }
        if (!sup) {
            ds->stats.dropped_unsupervised++;
            continue;
        }
        if (ds_add_example(ds, e.ids, targets, n, sup, file_index, (int64_t)rec.line, err)) goto done;
    }
    if (got < 0) goto done;
    file->format = sft_reader_format(r);
    if (sft_reader_skipped(r)) {
        if (!ds->stats.skipped_bad)
            copy_cut(ds->stats.first_skip, sizeof ds->stats.first_skip, sft_reader_first_skip(r));
        ds->stats.skipped_bad += (int64_t)sft_reader_skipped(r);
    }
    rc = 0;
done:
    free(targets);
    sft_encoded_free(&e);
    sft_record_free(&rec);
    sft_reader_close(r);
    return rc;
}

/* ------------------------------------------------------------ cache */

/* Cache file layout (little-endian, native):
 *   "SFTDSET1"
 *   u64 example count, u64 token count, u64 file count
 *   stats: 7 x i64, u32 length + first_skip bytes
 *   files: per file u32 format, i64 records
 *   examples (sizeof sft_example each), ids, targets (i32 each)
 *   XXH3-128 of everything above (16 bytes)
 * Paths are not stored: the cache key is the files' content, not their names. */
#define CACHE_MAGIC "SFTDSET1"

static const char *cache_root(const sft_dataset_options *o, char *buf, size_t cap) {
    if (o->cache_dir) return *o->cache_dir ? o->cache_dir : NULL;
    const char *env = getenv("SFT_CACHE_DIR");
    if (env && *env) return env;
    const char *home = getenv("HOME");
    if (!home || !*home) return NULL;
    snprintf(buf, cap, "%s/.cache/sft", home);
    return buf;
}

typedef struct {
    char *data;
    size_t len, cap;
} membuf;

static int mb_put(membuf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int cache_write(const sft_dataset *ds, const char *path, sft_err *err) {
    membuf b = {0};
    uint64_t head[3] = {ds->count, ds->token_count, (uint64_t)ds->file_count};
    const sft_dataset_stats *s = &ds->stats;
    int64_t st[7] = {s->records, s->skipped_bad, s->truncated, s->dropped_overlong, s->dropped_unsupervised,
                     s->tokens, s->supervised_tokens};
    uint32_t skip_len = (uint32_t)strlen(s->first_skip);
    int bad = mb_put(&b, CACHE_MAGIC, 8) || mb_put(&b, head, sizeof head) || mb_put(&b, st, sizeof st) ||
              mb_put(&b, &skip_len, 4) || mb_put(&b, s->first_skip, skip_len);
    for (int i = 0; i < ds->file_count && !bad; i++) {
        uint32_t f = (uint32_t)ds->files[i].format;
        bad = mb_put(&b, &f, 4) || mb_put(&b, &ds->files[i].records, 8);
    }
    if (!bad)
        bad = mb_put(&b, ds->examples, ds->count * sizeof *ds->examples) ||
              mb_put(&b, ds->ids, ds->token_count * sizeof *ds->ids) ||
              mb_put(&b, ds->targets, ds->token_count * sizeof *ds->targets);
    if (!bad) {
        sft_hash128 h = sft_hash_bytes(b.data, b.len);
        bad = mb_put(&b, &h, sizeof h);
    }
    if (bad) {
        free(b.data);
        return sft_errf(err, "out of memory writing the dataset cache");
    }
    int rc = sft_write_file_atomic(path, b.data, b.len, err);
    free(b.data);
    return rc;
}

/* 1: loaded; 0: no usable cache file (absent or damaged: *damaged set). */
static int cache_read(sft_dataset *ds, const char *path, int *damaged) {
    *damaged = 0;
    if (!sft_file_exists(path)) return 0;
    sft_mmap map;
    sft_err ignored;
    if (sft_mmap_open(path, &map, &ignored)) {
        *damaged = 1;
        return 0;
    }
    const char *p = map.data, *end = p ? p + map.len : NULL;
    int ok = 0;
    uint64_t head[3];
    int64_t st[7];
    uint32_t skip_len;
#define TAKE(dst, n)                                                                                               \
    do {                                                                                                           \
        if ((size_t)(end - p) < (size_t)(n)) goto out;                                                             \
        memcpy((dst), p, (n));                                                                                     \
        p += (n);                                                                                                  \
    } while (0)
    if (map.len < 8 + sizeof(sft_hash128)) goto out;
    sft_hash128 want, got = sft_hash_bytes(map.data, map.len - sizeof want);
    memcpy(&want, end - sizeof want, sizeof want);
    if (!sft_hash_equal(want, got)) goto out;
    end -= sizeof want;
    if (memcmp(p, CACHE_MAGIC, 8)) goto out;
    p += 8;
    TAKE(head, sizeof head);
    if (head[2] != (uint64_t)ds->file_count) goto out;
    TAKE(st, sizeof st);
    TAKE(&skip_len, 4);
    if (skip_len >= sizeof ds->stats.first_skip) goto out;
    TAKE(ds->stats.first_skip, skip_len);
    ds->stats.first_skip[skip_len] = 0;
    for (int i = 0; i < ds->file_count; i++) {
        uint32_t f;
        TAKE(&f, 4);
        ds->files[i].format = (sft_data_format)f;
        TAKE(&ds->files[i].records, 8);
    }
    if ((size_t)(end - p) != head[0] * sizeof(sft_example) + 2 * head[1] * sizeof(int32_t)) goto out;
    ds->examples = malloc(head[0] ? head[0] * sizeof(sft_example) : 1);
    ds->ids = malloc(head[1] ? head[1] * sizeof(int32_t) : 1);
    ds->targets = malloc(head[1] ? head[1] * sizeof(int32_t) : 1);
    if (!ds->examples || !ds->ids || !ds->targets) goto out;
    TAKE(ds->examples, head[0] * sizeof(sft_example));
    TAKE(ds->ids, head[1] * sizeof(int32_t));
    TAKE(ds->targets, head[1] * sizeof(int32_t));
    ds->count = ds->cap = head[0];
    ds->token_count = ds->token_cap = head[1];
    for (size_t i = 0; i < ds->count; i++) {
        const sft_example *e = &ds->examples[i];
        if (e->offset < 0 || e->len <= 0 || (uint64_t)e->offset + (uint64_t)e->len > head[1] || e->file < 0 ||
            e->file >= ds->file_count)
            goto out;
    }
    ds->stats.records = st[0], ds->stats.skipped_bad = st[1], ds->stats.truncated = st[2];
    ds->stats.dropped_overlong = st[3], ds->stats.dropped_unsupervised = st[4];
    ds->stats.tokens = st[5], ds->stats.supervised_tokens = st[6];
    ok = 1;
#undef TAKE
out:
    if (!ok) {
        *damaged = 1;
        free(ds->examples), free(ds->ids), free(ds->targets);
        ds->examples = NULL, ds->ids = ds->targets = NULL;
        ds->count = ds->cap = ds->token_count = ds->token_cap = 0;
        memset(&ds->stats, 0, sizeof ds->stats);
    }
    sft_mmap_close(&map);
    return ok;
}

/* The cache key (manifest.h's): data files, tokenizer and template, max_len
 * and every option that changes the tokens. */
static int cache_key(const char *const *paths, int n, const sft_encoder *enc, const sft_dataset_options *o,
                     sft_hash128 *key, sft_err *err) {
    char options[256];
    snprintf(options, sizeof options, "format=%s;template=%s;train_on_prompt=%d;overlong=%s;skip_bad=%d;bos=%d",
             sft_data_format_name(o->format), enc->tmpl ? sft_chat_template_name(enc->tmpl) : "none",
             o->train_on_prompt, o->drop_overlong ? "drop" : "truncate", o->skip_bad, enc->add_bos);
    sft_tokenized_key_input in = {.data_files = paths,
                                  .data_count = (size_t)n,
                                  .tokenizer_hash = enc->key,
                                  .template_text = sft_tokenizer_chat_template(enc->tok),
                                  .max_len = o->max_len,
                                  .options = options};
    return sft_tokenized_cache_key(&in, key, err);
}

int sft_dataset_load(sft_dataset *ds, const char *const *paths, int path_count, const sft_encoder *enc,
                     const sft_dataset_options *o, sft_err *err) {
    memset(ds, 0, sizeof *ds);
    if (path_count <= 0) return sft_errf(err, "no data files given");
    if (o->max_len < 2) return sft_errf(err, "max_len %lld is too short (at least 2 tokens)", (long long)o->max_len);
    ds->files = calloc((size_t)path_count, sizeof *ds->files);
    if (!ds->files) return sft_errf(err, "out of memory");
    ds->file_count = path_count;
    for (int i = 0; i < path_count; i++) {
        ds->files[i].path = strdup(paths[i]);
        if (!ds->files[i].path) goto oom;
        if (!sft_file_exists(paths[i])) {
            sft_errf(err, "%s: no such data file", paths[i]);
            goto fail;
        }
    }
    char root_buf[4096];
    const char *root = cache_root(o, root_buf, sizeof root_buf);
    if (root) {
        sft_hash128 key;
        char hex[SFT_HASH_HEX_CHARS], name[128];
        if (cache_key(paths, path_count, enc, o, &key, err)) goto fail;
        sft_hash_hex(key, hex);
        snprintf(name, sizeof name, "tokenized/%s.bin", hex);
        if (sft_path_join(ds->cache_path, sizeof ds->cache_path, root, name, err)) goto fail;
        int damaged;
        if (cache_read(ds, ds->cache_path, &damaged)) {
            ds->cache_hit = 1;
            return 0;
        }
        ds->cache_rebuilt = damaged;
    }
    for (int i = 0; i < path_count; i++)
        if (load_file(ds, i, enc, o, err)) goto fail;
    if (ds->cache_path[0]) {
        /* A cache that cannot be written (read-only home) only costs time. */
        char dir[1200];
        snprintf(dir, sizeof dir, "%s", ds->cache_path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        sft_err ignored;
        if (sft_mkdir_p(dir, &ignored) || cache_write(ds, ds->cache_path, &ignored)) ds->cache_path[0] = 0;
    }
    return 0;
oom:
    sft_errf(err, "out of memory");
fail:
    sft_dataset_free(ds);
    return -1;
}

void sft_dataset_free(sft_dataset *ds) {
    free(ds->examples);
    free(ds->ids);
    free(ds->targets);
    for (int i = 0; i < ds->file_count; i++) free(ds->files[i].path);
    free(ds->files);
    memset(ds, 0, sizeof *ds);
}

static int copy_files(sft_dataset *dst, const sft_dataset *src, sft_err *err) {
    dst->files = calloc((size_t)src->file_count ? (size_t)src->file_count : 1, sizeof *dst->files);
    if (!dst->files) return sft_errf(err, "out of memory");
    dst->file_count = src->file_count;
    for (int i = 0; i < src->file_count; i++) {
        dst->files[i] = src->files[i];
        dst->files[i].path = strdup(src->files[i].path);
        if (!dst->files[i].path) return sft_errf(err, "out of memory");
    }
    return 0;
}

int sft_dataset_split(sft_dataset *from, double fraction, uint64_t seed, sft_dataset *train, sft_dataset *val,
                      sft_err *err) {
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    size_t n = from->count;
    if (n < 2)
        return sft_errf(err, "val_split %g needs at least 2 usable training examples, the data has %zu", fraction, n);
    size_t n_val = (size_t)(fraction * (double)n + 0.5);
    if (n_val < 1) n_val = 1;
    if (n_val > n - 1) n_val = n - 1;
    int64_t *perm = malloc(n * sizeof *perm);
    uint8_t *is_val = calloc(n, 1);
    if (!perm || !is_val) {
        free(perm), free(is_val);
        return sft_errf(err, "out of memory");
    }
    sft_rng rng;
    sft_rng_seed(&rng, seed, SFT_RNG_STREAM_VAL_SPLIT);
    sft_rng_permutation(&rng, perm, n);
    for (size_t i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    free(perm);
    int rc = -1;
    if (copy_files(train, from, err) || copy_files(val, from, err)) goto done;
    train->stats = from->stats;
    train->stats.tokens = train->stats.supervised_tokens = 0;
    for (size_t i = 0; i < n; i++) {
        const sft_example *e = &from->examples[i];
        sft_dataset *to = is_val[i] ? val : train;
        if (ds_add_example(to, from->ids + e->offset, from->targets + e->offset, (size_t)e->len, e->supervised,
                           e->file, e->line, err))
            goto done;
    }
    train->cache_hit = from->cache_hit;
    train->cache_rebuilt = from->cache_rebuilt;
    snprintf(train->cache_path, sizeof train->cache_path, "%s", from->cache_path);
    rc = 0;
done:
    free(is_val);
    if (rc) {
        sft_dataset_free(train);
        sft_dataset_free(val);
    } else {
        sft_dataset_free(from);
    }
    return rc;
}

void sft_dataset_where(const sft_dataset *ds, size_t example, char *out, size_t cap) {
    const sft_example *e = &ds->examples[example];
    snprintf(out, cap, "%s:%lld", ds->files[e->file].path, (long long)e->line);
}

/* ------------------------------------------------------------ loader */

/* Best-fit decreasing: examples by length, longest first, each into the row
 * whose free space is the smallest that still holds it (rows bucketed by
 * free space, so a placement costs at most max_len bucket probes). */
static int pack_rows(sft_loader *ld, sft_err *err) {
    const sft_dataset *ds = ld->ds;
    size_t n = ds->count, L = (size_t)ld->max_len;
    size_t *by_len = malloc((n ? n : 1) * sizeof *by_len);
    /* rows: next pointer per row to chain rows of equal free space. */
    size_t *row_of = malloc((n ? n : 1) * sizeof *row_of);
    size_t *row_free = malloc((n ? n : 1) * sizeof *row_free);
    size_t *row_next = malloc((n ? n : 1) * sizeof *row_next);
    size_t *bucket = malloc((L + 1) * sizeof *bucket);
    size_t *count_by_len = calloc(L + 2, sizeof *count_by_len);
    int rc = -1;
    if (!by_len || !row_of || !row_free || !row_next || !bucket || !count_by_len) {
        sft_errf(err, "out of memory packing %zu examples", n);
        goto done;
    }
    /* counting sort, descending length, stable by index */
    for (size_t i = 0; i < n; i++) count_by_len[ds->examples[i].len]++;
    size_t at = 0;
    for (size_t len = L + 1; len-- > 0;) {
        size_t c = count_by_len[len];
        count_by_len[len] = at;
        at += c;
    }
    for (size_t i = 0; i < n; i++) by_len[count_by_len[ds->examples[i].len]++] = i;
    const size_t NONE = (size_t)-1;
    for (size_t f = 0; f <= L; f++) bucket[f] = NONE;
    size_t rows = 0;
    for (size_t k = 0; k < n; k++) {
        size_t ex = by_len[k], len = (size_t)ds->examples[ex].len, row = NONE;
        for (size_t f = len; f <= L; f++)
            if (bucket[f] != NONE) {
                row = bucket[f];
                bucket[f] = row_next[row];
                break;
            }
        if (row == NONE) row = rows++, row_free[row] = L;
        row_free[row] -= len;
        row_of[ex] = row;
        row_next[row] = bucket[row_free[row]];
        bucket[row_free[row]] = row;
    }
    /* CSR: rows in creation order, examples within a row in dataset order */
    ld->item_count = rows;
    ld->item_start = calloc(rows + 1, sizeof *ld->item_start);
    ld->item_examples = malloc((n ? n : 1) * sizeof *ld->item_examples);
    if (!ld->item_start || !ld->item_examples) {
        sft_errf(err, "out of memory packing %zu examples", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) ld->item_start[row_of[i] + 1]++;
    for (size_t r = 0; r < rows; r++) ld->item_start[r + 1] += ld->item_start[r];
    size_t *fill = row_next; /* reuse as cursors */
    for (size_t r = 0; r < rows; r++) fill[r] = ld->item_start[r];
    for (size_t i = 0; i < n; i++) ld->item_examples[fill[row_of[i]]++] = i;
    ld->packing_efficiency = rows ? (double)ds->token_count / ((double)rows * (double)L) : 1.0;
    rc = 0;
done:
    free(by_len), free(row_of), free(row_free), free(row_next), free(bucket), free(count_by_len);
    return rc;
}

int sft_loader_init(sft_loader *ld, const sft_dataset *ds, int packing, int64_t max_len, int32_t pad_id,
                    sft_err *err) {
    memset(ld, 0, sizeof *ld);
    ld->ds = ds;
    ld->packing = packing;
    ld->max_len = max_len;
    ld->pad_id = pad_id;
    ld->order_epoch = -1;
    ld->packing_efficiency = 1.0;
    for (size_t i = 0; i < ds->count; i++)
        if (ds->examples[i].len > max_len)
            return sft_errf(err, "example %zu has %d tokens, more than max_len %lld", i, ds->examples[i].len,
                            (long long)max_len);
    if (packing) {
        if (pack_rows(ld, err)) {
            sft_loader_free(ld);
            return -1;
        }
    } else {
        size_t n = ds->count;
        ld->item_count = n;
        ld->item_start = malloc((n + 1) * sizeof *ld->item_start);
        ld->item_examples = malloc((n ? n : 1) * sizeof *ld->item_examples);
        if (!ld->item_start || !ld->item_examples) {
            sft_loader_free(ld);
            return sft_errf(err, "out of memory");
        }
        for (size_t i = 0; i <= n; i++) ld->item_start[i] = i;
        for (size_t i = 0; i < n; i++) ld->item_examples[i] = i;
    }
    ld->order = malloc((ld->item_count ? ld->item_count : 1) * sizeof *ld->order);
    if (!ld->order) {
        sft_loader_free(ld);
        return sft_errf(err, "out of memory");
    }
    for (size_t i = 0; i < ld->item_count; i++) {
        int64_t t = sft_loader_item_tokens(ld, i);
        if (t > ld->longest_item) ld->longest_item = t;
    }
    return 0;
}

void sft_loader_free(sft_loader *ld) {
    free(ld->item_start);
    free(ld->item_examples);
    free(ld->order);
    memset(ld, 0, sizeof *ld);
}

void sft_loader_set_epoch(sft_loader *ld, const sft_rng *data_stream, int64_t epoch) {
    if (ld->order_epoch == epoch) return;
    sft_rng r;
    sft_rng_derive(data_stream, (uint64_t)epoch, &r);
    sft_rng_permutation(&r, ld->order, ld->item_count);
    ld->order_epoch = epoch;
}

int64_t sft_loader_item_tokens(const sft_loader *ld, size_t item) {
    int64_t t = 0;
    for (size_t k = ld->item_start[item]; k < ld->item_start[item + 1]; k++)
        t += ld->ds->examples[ld->item_examples[k]].len;
    return t;
}

int64_t sft_loader_item_supervised(const sft_loader *ld, size_t item) {
    int64_t s = 0;
    for (size_t k = ld->item_start[item]; k < ld->item_start[item + 1]; k++)
        s += ld->ds->examples[ld->item_examples[k]].supervised;
    return s;
}

int sft_loader_batch(const sft_loader *ld, const size_t *items, int n, sft_batch_buf *out, sft_err *err) {
    if (n <= 0) return sft_errf(err, "an empty batch");
    int64_t T = 1;
    for (int i = 0; i < n; i++) {
        int64_t t = sft_loader_item_tokens(ld, items[i]);
        if (t > T) T = t;
    }
    size_t need = (size_t)n * (size_t)T;
    if (need > out->cap) {
        int32_t *a = realloc(out->tokens, need * sizeof *a), *b = a ? realloc(out->targets, need * sizeof *b) : NULL;
        if (a) out->tokens = a;
        if (b) out->targets = b;
        int32_t *c = b ? realloc(out->pos, need * sizeof *c) : NULL;
        if (c) out->pos = c;
        int32_t *d = c ? realloc(out->seq, need * sizeof *d) : NULL;
        if (d) out->seq = d;
        if (!d) return sft_errf(err, "out of memory for a %d x %lld batch", n, (long long)T);
        out->cap = need;
    }
    const sft_dataset *ds = ld->ds;
    out->supervised = out->real_tokens = 0;
    for (int r = 0; r < n; r++) {
        size_t t = 0, base = (size_t)r * (size_t)T;
        int32_t seq = 0;
        for (size_t k = ld->item_start[items[r]]; k < ld->item_start[items[r] + 1]; k++, seq++) {
            const sft_example *e = &ds->examples[ld->item_examples[k]];
            memcpy(out->tokens + base + t, ds->ids + e->offset, (size_t)e->len * sizeof(int32_t));
            memcpy(out->targets + base + t, ds->targets + e->offset, (size_t)e->len * sizeof(int32_t));
            for (int32_t j = 0; j < e->len; j++) {
                out->pos[base + t + (size_t)j] = j;
                out->seq[base + t + (size_t)j] = seq;
            }
            t += (size_t)e->len;
            out->supervised += e->supervised;
        }
        out->real_tokens += (int64_t)t;
        /* Padding: its own "record" (attends only to padding), no loss. */
        for (; t < (size_t)T; t++) {
            out->tokens[base + t] = ld->pad_id;
            out->targets[base + t] = SFT_IGNORE_INDEX;
            out->pos[base + t] = 0;
            out->seq[base + t] = -1;
        }
    }
    out->batch = (sft_batch){.B = n, .T = (int)T, .tokens = out->tokens, .targets = out->targets, .pos = out->pos,
                             .seq = out->seq, .step_supervised_tokens = out->supervised};
    return 0;
}

void sft_batch_buf_free(sft_batch_buf *b) {
    free(b->tokens), free(b->targets), free(b->pos), free(b->seq);
    memset(b, 0, sizeof *b);
}

void sft_loader_describe(const sft_loader *ld, const size_t *items, int n, char *out, size_t cap) {
    size_t used = 0, total = 0, written = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < n; i++) total += ld->item_start[items[i] + 1] - ld->item_start[items[i]];
    /* Room kept for " (+N more)" when not every record fits: the reader
     * must know the list is not the whole batch. */
    const size_t more_room = 24;
    for (int i = 0; i < n; i++)
        for (size_t k = ld->item_start[items[i]]; k < ld->item_start[items[i] + 1]; k++) {
            char where[1100];
            sft_dataset_where(ld->ds, ld->item_examples[k], where, sizeof where);
            size_t w = strlen(where) + (used ? 1 : 0);
            size_t reserve = written + 1 < total ? more_room : 0;
            if (used + w + reserve + 1 > cap) {
                if (used + more_room <= cap)
                    snprintf(out + used, cap - used, "%s(+%zu more)", used ? " " : "", total - written);
                return;
            }
            used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? " " : "", where);
            written++;
        }
}
