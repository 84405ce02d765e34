/* rules.h: the text measures behind `sft data filter`'s rules, shared with
 * `sft data score`'s heuristic score so that both judge a record the same
 * way: refusal/boilerplate phrases, Gopher's repeated n-gram share (Rae et
 * al. 2021), answers cut mid sentence, and PCRE2 regexes compiled the way the
 * pipeline wants them (UTF-8, Unicode properties, invalid UTF-8 tolerated).
 *
 * A rules object holds scratch buffers and PCRE2 match data: one per thread. */
#ifndef SFT_DATA_RULES_H
#define SFT_DATA_RULES_H

#include <stddef.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "data/records.h"
#include "io/err.h"

/* A pattern compiled for the pipeline (JIT when available); `what` names it in
 * errors ("--drop-regex 'x(': missing closing parenthesis at offset 2"). */
pcre2_code *sft_regex_compile(const char *pattern, uint32_t flags, const char *what, sft_err *err);

typedef struct sft_text_rules sft_text_rules;

/* check_refusal: build the refusal matcher from refusal_file (one phrase a
 * line, # comments) or, when NULL, from sft_default_refusal_phrases. */
sft_text_rules *sft_text_rules_new(int check_refusal, const char *refusal_file, sft_err *err);
void sft_text_rules_free(sft_text_rules *r);
/* Another object with the same phrases (for another thread). */
sft_text_rules *sft_text_rules_clone(const sft_text_rules *r, sft_err *err);

/* 1 when s holds a refusal phrase (case-insensitive, straight or curly
 * apostrophe), with its byte range; 0 when not or when refusals are off. */
int sft_text_rules_refusal(sft_text_rules *r, const char *s, size_t len, size_t *start, size_t *end);
/* The share of word n-grams of s that repeat an earlier n-gram of s, on the
 * normalised text; 0 for texts of fewer than n + 9 words (under 10 n-grams:
 * too short to judge). -1 on error. */
double sft_text_rules_repeat_ratio(sft_text_rules *r, const char *s, size_t len, int n, sft_err *err);
/* 1 when an answer ends mid sentence: its last character is a letter (of a
 * script written with full stops) or one of , : - ( /, it has min_words
 * words or more, no code block, and its last line is not a list item, table
 * row or heading. -1 on error. */
int sft_text_rules_looks_cut(sft_text_rules *r, const char *s, size_t len, int min_words, sft_err *err);
/* Match data for the caller's own regexes. */
pcre2_match_data *sft_text_rules_match_data(sft_text_rules *r);

/* Non-printable characters (text.h's definition) and characters over all
 * messages of a record. */
void sft_record_nonprintable(const sft_record *rec, size_t *bad, size_t *chars);

#endif
