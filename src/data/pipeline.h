/* pipeline.h: the steps of `sft data` as library functions (the CLI parses
 * flags and calls these; the tests call them too).
 *
 * Every step streams its inputs record by record (records.h), keeps every
 * field of a record it passes on (unchanged records are written byte for
 * byte), names bad lines as FILE:LINE, and writes its outputs atomically:
 * on any error nothing appears under the final names. */
#ifndef SFT_DATA_PIPELINE_H
#define SFT_DATA_PIPELINE_H

#include <stdint.h>
#include <stdio.h>

#include "data/dedup.h"
#include "data/records.h"
#include "io/err.h"

/* Inputs and the main output shared by every step. */
typedef struct sft_data_io {
    const char *const *inputs;
    int input_count;
    sft_data_format format; /* AUTO: detected per file */
    int skip_bad;           /* skip and count bad lines instead of failing */
    const char *output;     /* NULL for steps that only report */
    FILE *log;              /* detected formats, progress, skipped lines; may be NULL */
    int progress;           /* 1: a progress line on log every second (a terminal) */
} sft_data_io;

/* Calls fn on every record of every input, in order. fn returns 0 to go on,
 * -1 on error. Counts records and skipped lines. allow_no_assistant as in
 * sft_reader_options. */
typedef int (*sft_record_fn)(sft_record *rec, void *ctx, sft_err *err);
typedef struct sft_each_summary {
    size_t records, skipped;
} sft_each_summary;
int sft_data_each(const sft_data_io *io, int allow_no_assistant, sft_record_fn fn, void *ctx,
                  sft_each_summary *summary, sft_err *err);

/* ---- tokens (--tokenizer DIR) ---- */
/* Counts tokens with a model's tokenizer: of a text (no special tokens), and
 * of a whole record rendered exactly as training renders it (chat template,
 * one BOS, EOS; train/dataset.h) with its supervised (assistant) tokens. */
typedef struct sft_token_counter sft_token_counter;
/* template_name: NULL/"auto" detects from the tokenizer; when the tokenizer has
 * no usable template, record counts are unavailable (see _has_template) but
 * text counts work. */
sft_token_counter *sft_token_counter_open(const char *tokenizer_dir, const char *template_name, sft_err *err);
void sft_token_counter_free(sft_token_counter *tc);
int sft_token_counter_has_template(const sft_token_counter *tc);
/* Why there is no template ("" when there is one). */
const char *sft_token_counter_template_note(const sft_token_counter *tc);
const char *sft_token_counter_template_name(const sft_token_counter *tc);
int sft_token_count_text(sft_token_counter *tc, const char *text, size_t len, size_t *tokens, sft_err *err);
int sft_token_count_record(sft_token_counter *tc, const sft_record *rec, size_t *tokens, size_t *supervised,
                           sft_err *err);

/* ---- convert ---- */
int sft_data_convert(const sft_data_io *io, sft_data_format to, sft_each_summary *summary, sft_err *err);

/* ---- dedup ---- */
typedef struct sft_dedup_options {
    int exact;         /* remove exact duplicates (normalised) */
    int near;          /* remove near duplicates (MinHash LSH, verified) */
    int shingle_words; /* default 5 */
    int prompt_only;   /* compare system+user messages only */
    sft_near_options near_opts;
    const char *report; /* JSONL of clusters, or NULL */
} sft_dedup_options;
void sft_dedup_options_default(sft_dedup_options *o);
typedef struct sft_dedup_summary {
    size_t records, kept, exact_removed, near_removed, clusters, candidates, skipped;
    int bands, rows;
} sft_dedup_summary;
int sft_data_dedup(const sft_data_io *io, const sft_dedup_options *o, sft_dedup_summary *s, sft_err *err);

/* ---- decontaminate ---- */
typedef struct sft_decontam_options {
    const char *const *against;
    int against_count;
    int ngram;            /* default 13 words (GPT-3, Brown et al. 2020, appendix C) */
    int min_ngram;        /* evaluation texts shorter than ngram words but at least this
                             long count as one n-gram of their own length; default 8 */
    const char *report;   /* JSON report of the evaluation items hit, or NULL */
    const char *rejected; /* the removed training records, or NULL */
} sft_decontam_options;
void sft_decontam_options_default(sft_decontam_options *o);
typedef struct sft_decontam_summary {
    size_t records, kept, removed, eval_items, eval_items_hit, skipped;
} sft_decontam_summary;
int sft_data_decontaminate(const sft_data_io *io, const sft_decontam_options *o, sft_decontam_summary *s,
                           sft_err *err);

/* ---- filter ---- */
#define SFT_FILTER_MAX_REGEX 16
typedef struct sft_filter_options {
    long min_chars, max_chars;     /* per user/assistant turn, 0 = off */
    long min_answer_chars;         /* per assistant turn, 0 = off */
    sft_token_counter *tokens;     /* for the token bounds below (NULL = off) */
    long min_tokens, max_tokens;   /* per user/assistant turn, 0 = off */
    int allow_empty;               /* keep empty/white-space turns */
    int check_refusal;             /* default 1 */
    const char *refusal_file;      /* one phrase a line (# comments); NULL = built-in list */
    int repeat_ngram;              /* default 3 */
    double max_repeat_ratio;       /* default 0.3 (0 = off) */
    double max_nonprintable_ratio; /* default 0.01 (0 = off) */
    const char *scripts;           /* comma list, NULL = off */
    double min_script_share;       /* default 0.5 */
    int check_cut;                 /* answers cut mid-sentence, default 1 */
    int cut_min_words;             /* only answers at least this long, default 20 */
    const char *keep_regex[SFT_FILTER_MAX_REGEX];
    int keep_regex_count;
    const char *drop_regex[SFT_FILTER_MAX_REGEX];
    int drop_regex_count;
    const char *rejected; /* rejected records with "_filter_rule", or NULL */
    /* Quality scores (data/score.h), read from a record's "sft_scores" and
     * computed when missing: the heuristic always, ppl/IFD with a scorer that
     * has a model. 0 = off. */
    double min_score; /* sft_scores.heuristic below this: low_score */
    double max_ppl;   /* sft_scores.ppl above this: high_ppl */
    double max_ifd;   /* sft_scores.ifd above this: high_ifd */
    struct sft_scorer *scorer; /* NULL: a heuristic-only one is made when needed */
} sft_filter_options;
void sft_filter_options_default(sft_filter_options *o);
/* The rules in the order they are tried; a record is rejected by the first that fires. */
enum {
    SFT_RULE_NO_ANSWER,
    SFT_RULE_EMPTY_TURN,
    SFT_RULE_TOO_SHORT,
    SFT_RULE_TOO_LONG,
    SFT_RULE_SHORT_ANSWER,
    SFT_RULE_NONPRINTABLE,
    SFT_RULE_SCRIPT,
    SFT_RULE_REFUSAL,
    SFT_RULE_REPETITION,
    SFT_RULE_CUT_OFF,
    SFT_RULE_DROP_REGEX,
    SFT_RULE_KEEP_REGEX,
    SFT_RULE_LOW_SCORE,
    SFT_RULE_HIGH_PPL,
    SFT_RULE_HIGH_IFD,
    SFT_RULE_COUNT
};
const char *sft_filter_rule_name(int rule);
typedef struct sft_filter_summary {
    size_t records, kept, rejected, skipped;
    size_t per_rule[SFT_RULE_COUNT];
} sft_filter_summary;
int sft_data_filter(const sft_data_io *io, const sft_filter_options *o, sft_filter_summary *s, sft_err *err);
/* The built-in refusal and boilerplate phrases (NULL-terminated). */
extern const char *const sft_default_refusal_phrases[];

/* ---- split ---- */
typedef struct sft_split_options {
    double val_fraction, test_fraction; /* of records; train gets the rest */
    uint64_t seed;
    const char *stratify;   /* a top-level field, or NULL */
    int keep_near_together; /* default 1: near duplicates on the same side */
    sft_near_options near_opts;
    int shingle_words;
    /* output names: io->output is a folder holding train/val/test + the input extension */
} sft_split_options;
void sft_split_options_default(sft_split_options *o);
typedef struct sft_split_summary {
    size_t records, train, val, test, clusters, strata, skipped;
} sft_split_summary;
int sft_data_split(const sft_data_io *io, const sft_split_options *o, sft_split_summary *s, sft_err *err);

/* ---- stats ---- */
typedef struct sft_stats sft_stats;
typedef struct sft_stats_options {
    sft_token_counter *tokens; /* NULL: characters only */
    long max_len;              /* for the share truncated (tokens), default 1024 as TRL's max_length */
} sft_stats_options;
int sft_data_stats(const sft_data_io *io, const sft_stats_options *o, sft_stats **out, sft_err *err);
void sft_stats_free(sft_stats *s);
void sft_stats_print_text(const sft_stats *s, FILE *f);
char *sft_stats_json(const sft_stats *s); /* malloc'ed */
int sft_stats_write_html(const sft_stats *s, const char *path, sft_err *err);

/* ---- generate ---- */
typedef struct sft_generate_options {
    long count; /* records */
    uint64_t seed;
    const char *tasks;      /* comma list of task families, NULL = all */
    sft_data_format format; /* messages (default), alpaca, sharegpt, prompt-completion */
    long max_number;        /* operands up to this, default 99 */
    int unique;             /* no two records with the same prompt (case and spacing aside) */
} sft_generate_options;
void sft_generate_options_default(sft_generate_options *o);
/* Task family names, NULL-terminated, with a one-line description each. */
extern const char *const sft_generate_task_names[];
extern const char *const sft_generate_task_descriptions[];
int sft_data_generate(const sft_generate_options *o, const char *output, sft_err *err);
/* The prompt and answer of record `index` of task `task` for a seed (the demo's held-out prompts). */
int sft_generate_one(const char *task, uint64_t seed, uint64_t index, long max_number, char *prompt,
                     size_t prompt_cap, char *answer, size_t answer_cap, sft_err *err);

/* ---- augment ---- */
typedef struct sft_augment_options {
    int variants; /* new records per record, default 1 */
    uint64_t seed;
    int keep_original;                         /* default 1 */
    int prefixes, constraints, system_prompts; /* which rewrites, default all 1 */
    const char *system_file;                   /* system prompts, one a line; NULL = built-in list */
} sft_augment_options;
void sft_augment_options_default(sft_augment_options *o);
typedef struct sft_augment_summary {
    size_t records, written, created, not_applicable, skipped;
} sft_augment_summary;
int sft_data_augment(const sft_data_io *io, const sft_augment_options *o, sft_augment_summary *s,
                     sft_err *err);

#endif
