/* dataset.h: instruction data to training batches.
 *
 * Records (data/records.h, any of the five formats) are rendered with the
 * chat template (tok/template.h) and tokenized once; each becomes an example
 * of token ids and already-shifted targets: targets[i] = ids[i+1] when token
 * i+1 carries loss, else -100 (SFT_IGNORE_INDEX). Loss is on the assistant's
 * tokens (its end-of-turn token included, the template's generation spans,
 * exactly transformers' assistant mask), or on every token with
 * train_on_prompt. Plain `text` records are not wrapped in a template: they
 * are tokenized as they are, the EOS token appended, loss on every token (TRL's
 * language-modeling format). Every example starts with exactly one BOS when
 * the tokenizer's post-processor adds one (a template that writes BOS and a
 * tokenizer that adds another give one, not two), and none otherwise.
 *
 * Examples longer than max_len are truncated (or dropped); examples left with
 * no supervised token are dropped; both are counted in the stats.
 *
 * The tokenized examples are cached on disk, keyed by the content hashes of
 * the data files, the tokenizer files and the template, with max_len and the
 * masking options: $SFT_CACHE_DIR, else ~/.cache/sft. A cache file carries a
 * checksum; a damaged one is rebuilt.
 *
 * Batches: without packing, a micro-batch holds batch_size examples padded
 * to its longest one only (padding has target -100 and counts nowhere). With
 * packing, examples are packed once (best-fit decreasing) into rows of at
 * most max_len tokens; positions restart at 0 for each example and the seq
 * ids keep attention inside each example (model.h's sft_batch), so a packed
 * row computes exactly what the examples would alone. The order of items
 * (examples, or packed rows) in each epoch is a permutation drawn from the
 * data RNG stream derived for that epoch: (epoch, cursor) locates the next
 * item exactly, which is what a checkpoint stores. */
#ifndef SFT_TRAIN_DATASET_H
#define SFT_TRAIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "data/records.h"
#include "io/err.h"
#include "io/hash.h"
#include "model/model.h"
#include "tok/template.h"
#include "tok/tokenizer.h"
#include "train/rng.h"

/* How records become token ids. */
typedef struct sft_encoder {
    const sft_tokenizer *tok;
    const sft_chat_template *tmpl;
    int32_t bos_id;  /* -1: the tokenizer has no BOS */
    int add_bos;     /* the tokenizer's post-processor adds BOS: every example starts with one */
    int32_t eos_id;  /* appended to plain text records; -1 when none */
    sft_hash128 key; /* content hash of the tokenizer files and the template */
    /* Why there is no template (tmpl NULL): named in the error of a chat record. */
    const char *template_error;
} sft_encoder;

/* tokenizer_dir: the folder the tokenizer was loaded from (its files are
 * hashed for the cache key). */
int sft_encoder_init(sft_encoder *enc, const sft_tokenizer *tok, const sft_chat_template *tmpl,
                     const char *tokenizer_dir, sft_err *err);

/* One record's ids and loss mask (1 = the token carries loss), before
 * truncation. Buffers grow as needed and are reused across calls. */
typedef struct sft_encoded {
    int32_t *ids;
    uint8_t *mask;
    size_t count, cap;
    sft_chat_encoding chat; /* scratch */
    sft_chat_message *messages;
    size_t message_cap;
} sft_encoded;

int sft_encode_record(const sft_encoder *enc, const sft_record *rec, int train_on_prompt, sft_encoded *out,
                      sft_err *err);
/* The prompt of a conversation for generation: the messages rendered with
 * the template's generation prompt, under the same BOS rule (mask all 1). */
int sft_encode_prompt(const sft_encoder *enc, const sft_chat_message *messages, size_t count, sft_encoded *out,
                      sft_err *err);
void sft_encoded_free(sft_encoded *e);

typedef struct sft_dataset_options {
    sft_data_format format; /* AUTO: detected per file */
    int train_on_prompt;
    int64_t max_len;
    int drop_overlong; /* 0: truncate to max_len */
    int skip_bad;      /* count malformed records instead of failing */
    /* The cache folder; NULL: $SFT_CACHE_DIR, else ~/.cache/sft; "" disables the cache. */
    const char *cache_dir;
} sft_dataset_options;

typedef struct sft_example {
    int64_t offset;     /* into the dataset's ids / targets */
    int32_t len;        /* tokens */
    int32_t supervised; /* targets != -100 */
    int32_t file;       /* index into the dataset's files */
    int32_t pad_;
    int64_t line; /* 1-based line (or array element's line) in that file */
} sft_example;

typedef struct sft_dataset_file {
    char *path;
    sft_data_format format; /* the detected or forced format */
    int64_t records;        /* records read (good ones) */
} sft_dataset_file;

typedef struct sft_dataset_stats {
    int64_t records;              /* records read and encoded */
    int64_t skipped_bad;          /* malformed records skipped (skip_bad) */
    int64_t truncated;            /* longer than max_len, cut */
    int64_t dropped_overlong;     /* longer than max_len, dropped */
    int64_t dropped_unsupervised; /* no token carries loss */
    int64_t tokens;               /* kept examples' tokens */
    int64_t supervised_tokens;
    char first_skip[512]; /* the first skipped record's error */
} sft_dataset_stats;

typedef struct sft_dataset {
    sft_example *examples;
    size_t count, cap;
    int32_t *ids, *targets;
    size_t token_count, token_cap;
    sft_dataset_file *files;
    int file_count;
    sft_dataset_stats stats;
    int cache_hit;        /* loaded from the cache */
    int cache_rebuilt;    /* a cache file was there but damaged */
    char cache_path[1024]; /* "" when not cached */
} sft_dataset;

/* Reads, encodes and caches every record of the files. Errors name
 * "FILE:LINE". */
int sft_dataset_load(sft_dataset *ds, const char *const *paths, int path_count, const sft_encoder *enc,
                     const sft_dataset_options *opts, sft_err *err);
void sft_dataset_free(sft_dataset *ds);

/* Moves a seeded fraction of the examples (at least 1, at most count - 1)
 * into val, leaving the rest in train (both in their original order).
 * `from` is left empty. */
int sft_dataset_split(sft_dataset *from, double fraction, uint64_t seed, sft_dataset *train, sft_dataset *val,
                      sft_err *err);

/* "FILE:LINE" of an example, into out. */
void sft_dataset_where(const sft_dataset *ds, size_t example, char *out, size_t cap);

/* ---- batches ---- */

/* The items of an epoch (examples, or packed rows of examples), in CSR form:
 * item i holds examples item_examples[item_start[i] .. item_start[i+1]). */
typedef struct sft_loader {
    const sft_dataset *ds;
    int packing;
    int64_t max_len;
    size_t item_count;
    size_t *item_start;    /* item_count + 1 */
    size_t *item_examples; /* ds->count */
    int64_t *order;        /* the current epoch's permutation */
    int64_t order_epoch;   /* -1: none yet */
    int32_t pad_id;
    int64_t longest_item;  /* tokens */
    double packing_efficiency; /* tokens / (rows * max_len); 1 without packing */
} sft_loader;

int sft_loader_init(sft_loader *ld, const sft_dataset *ds, int packing, int64_t max_len, int32_t pad_id,
                    sft_err *err);
void sft_loader_free(sft_loader *ld);
/* The permutation of epoch `epoch` from the data stream (not advanced). */
void sft_loader_set_epoch(sft_loader *ld, const sft_rng *data_stream, int64_t epoch);
/* Tokens and supervised tokens of one item. */
int64_t sft_loader_item_tokens(const sft_loader *ld, size_t item);
int64_t sft_loader_item_supervised(const sft_loader *ld, size_t item);

/* A micro-batch being assembled; buffers reused across calls. */
typedef struct sft_batch_buf {
    sft_batch batch;
    int32_t *tokens, *targets, *pos, *seq;
    size_t cap;
    int64_t supervised; /* targets != -100 of this micro-batch */
    int64_t real_tokens; /* non-padding tokens */
} sft_batch_buf;

/* Builds a batch of the given items (indices into the loader's items, not
 * the order), padded to the longest; step_supervised_tokens is left to the
 * caller (the count over the whole optimizer step). */
int sft_loader_batch(const sft_loader *ld, const size_t *items, int n, sft_batch_buf *out, sft_err *err);
void sft_batch_buf_free(sft_batch_buf *b);

/* "FILE:LINE FILE:LINE ..." of the items' examples; when they do not all fit
 * in cap, the list ends with "(+N more)". */
void sft_loader_describe(const sft_loader *ld, const size_t *items, int n, char *out, size_t cap);

#endif
