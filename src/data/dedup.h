/* dedup.h: exact and near-duplicate detection of instruction records.
 *
 * Exact: a 64-bit XXH3 of the record's messages (role and normalised content:
 * NFKC, case folded, white space collapsed; text.h), so "Hello  World" and
 * "hello world" are the same record whatever their format or other fields.
 *
 * Near: MinHash (Broder 1997) over the set of word shingles (n consecutive
 * words, default 5) of all message contents, with LSH banding (Leskovec,
 * Rajaraman, Ullman, "Mining of Massive Datasets", ch. 3): b bands of r rows;
 * records sharing a band are candidates, and every candidate is verified with
 * the exact Jaccard similarity of the two shingle sets, so no pair below the
 * threshold is ever called a duplicate. r is chosen as large as possible
 * while a pair at the threshold still becomes a candidate with probability
 * >= 0.999, which keeps verification work low without losing recall.
 *
 * Clustering is greedy and streaming: each record is compared with the kept
 * records before it ("leaders"); it joins the most similar leader with
 * Jaccard >= threshold, or becomes a leader itself. So every removed record
 * has a kept record at least that similar, and the first record of each
 * cluster is the one kept. Memory: the leaders' shingle sets and band keys. */
#ifndef SFT_DATA_DEDUP_H
#define SFT_DATA_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "data/records.h"
#include "data/text.h"
#include "io/err.h"

/* A multimap from 64-bit keys to 32-bit values (open addressing, linear
 * probing; a key may appear many times). */
typedef struct sft_u64map {
    uint64_t *keys;
    uint32_t *values; /* value + 1; 0 marks an empty slot */
    size_t cap, count;
} sft_u64map;
int sft_u64map_add(sft_u64map *m, uint64_t key, uint32_t value);
/* Calls fn for each value of key until fn returns non-zero (which is returned). */
int sft_u64map_each(const sft_u64map *m, uint64_t key, int (*fn)(uint32_t value, void *ctx), void *ctx);
/* The first value stored for key, or -1. */
long sft_u64map_first(const sft_u64map *m, uint64_t key);
void sft_u64map_free(sft_u64map *m);

/* Reusable buffers for the per-record text work. */
typedef struct sft_text_scratch {
    sft_buf joined, normalized;
    sft_spans words;
} sft_text_scratch;
void sft_text_scratch_free(sft_text_scratch *s);

/* The exact-duplicate key of a record (see the header comment). */
int sft_record_exact_hash(const sft_record *rec, sft_text_scratch *s, uint64_t *out, sft_err *err);
/* The record's shingle set (sorted, unique) over all message contents;
 * with `prompt_only`, over the system and user messages only. */
int sft_record_shingles(const sft_record *rec, size_t shingle_words, int prompt_only, sft_text_scratch *s,
                        sft_u64s *out, sft_err *err);
/* Normalised words of an arbitrary text. */
int sft_text_normalized_words(const char *text, size_t len, sft_text_scratch *s, sft_err *err);

typedef struct sft_near_options {
    double threshold; /* Jaccard, default 0.8 */
    int num_perm;     /* MinHash permutations, default 128 */
    uint64_t seed;    /* for the permutations, default 1 */
} sft_near_options;

typedef struct sft_near_index sft_near_index;
sft_near_index *sft_near_index_new(const sft_near_options *opts, sft_err *err);
void sft_near_index_free(sft_near_index *idx);
/* Compares a shingle set with the leaders: *leader = the most similar leader
 * with Jaccard >= threshold (and *jaccard its similarity), or -1 and the set
 * becomes leader number sft_near_index_leaders()-1. */
int sft_near_index_assign(sft_near_index *idx, const uint64_t *set, size_t count, long *leader,
                          double *jaccard, sft_err *err);
/* The same in two halves, so that signatures can be computed in parallel:
 * _signature only reads the index (any thread); _assign_signed must be called
 * in record order. signature holds sft_near_index_num_perm() values. */
int sft_near_index_num_perm(const sft_near_index *idx);
void sft_near_index_signature(const sft_near_index *idx, const uint64_t *set, size_t count,
                              uint32_t *signature);
int sft_near_index_assign_signed(sft_near_index *idx, const uint64_t *set, size_t count,
                                 const uint32_t *signature, long *leader, double *jaccard, sft_err *err);
/* Batches verify in parallel too: _best (read-only, any thread) finds the
 * best match among the leaders numbered below `below` (those that existed
 * before the batch); _assign_from then, in record order, looks only at the
 * leaders numbered `from` on (made within the batch) and keeps the better of
 * the two, which gives exactly the result of _assign_signed. */
int sft_near_index_best(const sft_near_index *idx, const uint64_t *set, size_t count,
                        const uint32_t *signature, size_t below, long *leader, double *jaccard,
                        size_t *verified);
int sft_near_index_assign_from(sft_near_index *idx, const uint64_t *set, size_t count,
                               const uint32_t *signature, size_t from, long prior_leader,
                               double prior_jaccard, long *leader, double *jaccard, sft_err *err);
void sft_near_index_add_candidates(sft_near_index *idx, size_t n);
size_t sft_near_index_leaders(const sft_near_index *idx);
/* Verified candidate pairs and the LSH shape, for reports and benchmarks. */
size_t sft_near_index_candidates(const sft_near_index *idx);
void sft_near_index_shape(const sft_near_index *idx, int *bands, int *rows);

#endif
