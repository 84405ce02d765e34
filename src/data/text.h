/* text.h: the Unicode text helpers of the data pipeline, on real Unicode
 * libraries: normalisation with utf8proc (NFKC, case folding), words and
 * scripts with PCRE2's Unicode properties (\p{L}, \p{Han}, ...), hashes with
 * xxHash (XXH3). The same definitions of "normalised text" and "word" serve
 * exact and near-duplicate detection, decontamination and the filters, so a
 * record counts as the same text everywhere. */
#ifndef SFT_DATA_TEXT_H
#define SFT_DATA_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "io/err.h"

/* A growable byte buffer. */
typedef struct sft_buf {
    char *data;
    size_t len, cap;
} sft_buf;
int sft_buf_append(sft_buf *b, const char *s, size_t n);
void sft_buf_free(sft_buf *b);

/* out = NFKC(casefold(s)) with every run of Unicode white space collapsed to
 * one ASCII space and the ends trimmed ("  Ｃafé\n\tX " -> "café x").
 * Invalid UTF-8 bytes become U+FFFD first. out is reset, NUL-terminated. */
int sft_text_normalize(const char *s, size_t len, sft_buf *out, sft_err *err);

/* Words: maximal runs of letters, digits and combining marks, except that each
 * character of a script written without spaces (Han, Hiragana, Katakana, Thai,
 * Lao, Khmer, Myanmar) is a word of its own, so that n-grams work for Chinese
 * or Japanese too. Punctuation and symbols separate words. */
typedef struct sft_span {
    uint32_t start, len; /* byte range */
} sft_span;
typedef struct sft_spans {
    sft_span *items;
    size_t count, cap;
} sft_spans;
int sft_text_words(const char *s, size_t len, sft_spans *out, sft_err *err); /* out reset */
void sft_spans_free(sft_spans *s);

/* 64-bit hashes (XXH3) of every run of n consecutive words; a text of fewer
 * than n (but at least one) words gives one hash of all its words. */
typedef struct sft_u64s {
    uint64_t *items;
    size_t count, cap;
} sft_u64s;
int sft_u64s_push(sft_u64s *v, uint64_t x);
void sft_u64s_free(sft_u64s *v);
int sft_text_ngram_hashes(const char *s, const sft_spans *words, size_t n, sft_u64s *out); /* out reset */
/* Sorts and removes repeats: the n-gram set. */
void sft_u64s_sort_unique(sft_u64s *v);
/* |A ∩ B| / |A ∪ B| of two sorted sets (1 when both are empty). */
double sft_jaccard_sorted(const uint64_t *a, size_t na, const uint64_t *b, size_t nb);

uint64_t sft_hash64(const void *data, size_t len, uint64_t seed);

/* Scripts counted by the stats and the script filter. SFT_SCRIPT_OTHER holds
 * letters of every script not listed. */
enum {
    SFT_SCRIPT_LATIN,
    SFT_SCRIPT_CYRILLIC,
    SFT_SCRIPT_GREEK,
    SFT_SCRIPT_ARMENIAN,
    SFT_SCRIPT_GEORGIAN,
    SFT_SCRIPT_HEBREW,
    SFT_SCRIPT_ARABIC,
    SFT_SCRIPT_DEVANAGARI,
    SFT_SCRIPT_BENGALI,
    SFT_SCRIPT_GURMUKHI,
    SFT_SCRIPT_GUJARATI,
    SFT_SCRIPT_TAMIL,
    SFT_SCRIPT_TELUGU,
    SFT_SCRIPT_KANNADA,
    SFT_SCRIPT_MALAYALAM,
    SFT_SCRIPT_SINHALA,
    SFT_SCRIPT_THAI,
    SFT_SCRIPT_LAO,
    SFT_SCRIPT_KHMER,
    SFT_SCRIPT_MYANMAR,
    SFT_SCRIPT_TIBETAN,
    SFT_SCRIPT_ETHIOPIC,
    SFT_SCRIPT_HANGUL,
    SFT_SCRIPT_HIRAGANA,
    SFT_SCRIPT_KATAKANA,
    SFT_SCRIPT_HAN,
    SFT_SCRIPT_OTHER,
    SFT_SCRIPT_COUNT
};
const char *sft_script_name(int script); /* Unicode names: "Latin", "Han", ... */
int sft_script_parse(const char *name);  /* -1 when unknown (case-insensitive) */
/* Adds the number of letters (code points of \p{L}) of each script in s. */
int sft_text_script_counts(const char *s, size_t len, uint64_t counts[SFT_SCRIPT_COUNT], sft_err *err);

/* Code points in s (an invalid byte counts as one). */
size_t sft_text_chars(const char *s, size_t len);
/* Code points that no reader wants in training text: controls other than tab
 * and newlines, unassigned, private use, surrogates, U+FFFD and invalid bytes. */
size_t sft_text_nonprintable(const char *s, size_t len);
/* 1 when s holds only white space (Unicode) or is empty. */
int sft_text_is_blank(const char *s, size_t len);

#endif
