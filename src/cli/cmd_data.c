/* cmd_data.c: `sft data SUB INPUT... -o OUTPUT [flags]`, the dataset pipeline
 * (src/data/pipeline.h): parses flags, calls the library, prints a summary.
 * Detected formats, progress and skipped lines go to stderr; summaries and
 * `stats` to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "data/pipeline.h"
#include "data/score.h"
#include "data/synth.h"
#include "io/file.h"
#include "io/suggest.h"
#include "model/ops.h"

#define MAX_INPUTS 256

/* Flags every subcommand that reads records shares. */
typedef struct {
    const char *output;
    const char *format;
    int skip_bad;
    int quiet;
    const char *inputs[MAX_INPUTS];
    int input_count;
} common_flags;

#define COMMON_ARGS(c)                                                                                       \
    {"output", SFT_ARG_STRING, &(c).output,                                                                  \
     "output file (also -o); .json writes a JSON array, else JSON lines", NULL},                             \
        {"format", SFT_ARG_STRING, &(c).format,                                                              \
         "input format: auto (default), alpaca, sharegpt, messages, prompt-completion, text", NULL},         \
        {"skip-bad-records", SFT_ARG_BOOL, &(c).skip_bad,                                                    \
         "skip and count bad lines instead of stopping at the first", NULL},                                 \
    {                                                                                                        \
        "quiet", SFT_ARG_BOOL, &(c).quiet, "no format or progress messages on stderr", NULL                  \
    }

/* argv with "-o X" spelled "--output X" (SPEC's short form). */
static char **expand_short_flags(int argc, char **argv) {
    char **out = malloc((size_t)(argc + 1) * sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < argc; i++)
        out[i] = !strcmp(argv[i], "-o") ? "--output" : argv[i];
    out[argc] = NULL;
    return out;
}

static int parse(int argc, char **argv, const sft_arg *table, common_flags *c, const char *usage,
                 int need_inputs, sft_err *err) {
    char **args = expand_short_flags(argc, argv);
    if (!args) return sft_errf(err, "out of memory");
    int rc = sft_args_parse(argc, args, table, c->inputs, MAX_INPUTS, &c->input_count, usage, err);
    free(args);
    if (rc) return rc;
    if (need_inputs && c->input_count == 0) return sft_errf(err, "no input file given (usage: %s)", usage);
    return 0;
}

static int make_io(const common_flags *c, sft_data_io *io, sft_err *err) {
    memset(io, 0, sizeof *io);
    io->inputs = c->inputs;
    io->input_count = c->input_count;
    io->skip_bad = c->skip_bad;
    io->output = c->output;
    io->log = c->quiet ? NULL : stderr;
    io->progress = !c->quiet && isatty(2);
    io->format = SFT_FORMAT_AUTO;
    if (c->format && sft_data_format_parse(c->format, &io->format, err))
        return sft_err_prefix(err, "--format");
    return 0;
}

static void print_skipped(size_t skipped) {
    if (skipped) printf("skipped bad records: %zu\n", skipped);
}

/* ------------------------------------------------------------------ convert */
static int cmd_convert(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    const char *to = NULL;
    sft_arg table[] = {
        {"to", SFT_ARG_STRING, &to, "target format: alpaca, sharegpt, messages, prompt-completion", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data convert INPUT... --to FORMAT -o OUTPUT";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    if (!to) return sft_errf(err, "convert needs --to alpaca|sharegpt|messages|prompt-completion");
    sft_data_format target;
    if (sft_data_format_parse(to, &target, err)) return sft_err_prefix(err, "--to");
    sft_each_summary s;
    if (sft_data_convert(&io, target, &s, err)) return -1;
    printf("converted %zu records to %s: %s\n", s.records, sft_data_format_name(target), io.output);
    print_skipped(s.skipped);
    return 0;
}

/* -------------------------------------------------------------------- stats */
static int cmd_stats(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    int as_json = 0;
    const char *html = NULL, *tokenizer = NULL, *template_name = NULL;
    sft_stats_options so = {NULL, 1024};
    sft_arg table[] = {
        {"json", SFT_ARG_BOOL, &as_json, "print JSON instead of text", NULL},
        {"html", SFT_ARG_STRING, &html, "also write an HTML page with the length histograms", NULL},
        {"tokenizer", SFT_ARG_STRING, &tokenizer, "count tokens with this model/tokenizer folder", NULL},
        {"template", SFT_ARG_STRING, &template_name, "chat template for record tokens (default auto)", NULL},
        {"max-len", SFT_ARG_INT, &so.max_len, "report records longer than N tokens (default 1024)", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data stats INPUT... [--json] [--html FILE] [--tokenizer DIR] [-o FILE]";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    if (!tokenizer && (template_name || so.max_len != 1024))
        return sft_errf(err, "--template and --max-len need --tokenizer DIR");
    if (tokenizer && !(so.tokens = sft_token_counter_open(tokenizer, template_name, err)))
        return sft_err_prefix(err, "--tokenizer %s", tokenizer);
    sft_stats *s;
    rc = sft_data_stats(&io, &so, &s, err);
    sft_token_counter_free(so.tokens);
    if (rc) return -1;
    char *text = NULL;
    size_t len = 0;
    if (as_json) {
        text = sft_stats_json(s);
        len = text ? strlen(text) : 0;
    } else {
        FILE *f = open_memstream(&text, &len);
        if (f) {
            sft_stats_print_text(s, f);
            fclose(f);
        }
    }
    rc = 0;
    if (!text)
        rc = sft_errf(err, "out of memory");
    else if (c.output)
        rc = sft_write_file_atomic(c.output, text, len, err);
    else
        fwrite(text, 1, len, stdout);
    free(text);
    if (!rc && html) {
        rc = sft_stats_write_html(s, html, err);
        if (!rc && !c.quiet) fprintf(stderr, "wrote %s\n", html);
    }
    sft_stats_free(s);
    return rc;
}

/* ------------------------------------------------------------------- filter */
static int cmd_filter(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_filter_options o;
    sft_filter_options_default(&o);
    int no_refusal = 0, no_cut = 0, list_phrases = 0;
    const char *tokenizer = NULL;
    long repeat_ngram = o.repeat_ngram, cut_min_words = o.cut_min_words;
    sft_arg_list keep = {0}, drop = {0};
    sft_score_options score_opts;
    sft_score_options_default(&score_opts);
    sft_arg table[] = {
        {"rejected", SFT_ARG_STRING, &o.rejected,
         "write rejected records here, with _filter_rule and _filter_detail", NULL},
        {"min-chars", SFT_ARG_INT, &o.min_chars, "reject a user or assistant turn shorter than N characters",
         NULL},
        {"max-chars", SFT_ARG_INT, &o.max_chars, "reject a user or assistant turn longer than N characters",
         NULL},
        {"min-answer-chars", SFT_ARG_INT, &o.min_answer_chars,
         "reject an assistant turn shorter than N characters", NULL},
        {"tokenizer", SFT_ARG_STRING, &tokenizer, "model/tokenizer folder for --min-tokens/--max-tokens",
         NULL},
        {"min-tokens", SFT_ARG_INT, &o.min_tokens, "reject a user or assistant turn shorter than N tokens",
         NULL},
        {"max-tokens", SFT_ARG_INT, &o.max_tokens, "reject a user or assistant turn longer than N tokens",
         NULL},
        {"allow-empty", SFT_ARG_BOOL, &o.allow_empty, "keep records with empty or white-space turns", NULL},
        {"no-refusal", SFT_ARG_BOOL, &no_refusal, "do not reject refusal/boilerplate answers", NULL},
        {"refusal-phrases", SFT_ARG_STRING, &o.refusal_file,
         "phrases file (one a line) instead of the built-in list", NULL},
        {"list-phrases", SFT_ARG_BOOL, &list_phrases, "print the built-in refusal phrases and exit", NULL},
        {"repeat-ngram", SFT_ARG_INT, &repeat_ngram, "n of the repeated word n-gram rule (default 3)", NULL},
        {"max-repeat-ratio", SFT_ARG_DOUBLE, &o.max_repeat_ratio,
         "reject answers whose repeated n-gram share exceeds X (default 0.3; 0 = off)", NULL},
        {"max-nonprintable", SFT_ARG_DOUBLE, &o.max_nonprintable_ratio,
         "reject records whose non-printable share exceeds X (default 0.01; 0 = off)", NULL},
        {"script", SFT_ARG_STRING, &o.scripts,
         "allowed scripts of the letters, e.g. Latin,Cyrillic (Unicode names)", NULL},
        {"min-script-share", SFT_ARG_DOUBLE, &o.min_script_share,
         "share of letters that must be in --script (default 0.5)", NULL},
        {"no-cut-check", SFT_ARG_BOOL, &no_cut, "do not reject answers that end mid sentence", NULL},
        {"cut-min-words", SFT_ARG_INT, &cut_min_words, "judge cut answers only from N words on (default 20)",
         NULL},
        {"min-score", SFT_ARG_DOUBLE, &o.min_score,
         "reject records whose heuristic score (sft data score) is below X", NULL},
        {"max-ppl", SFT_ARG_DOUBLE, &o.max_ppl, "reject records whose perplexity (sft_scores.ppl) exceeds X", NULL},
        {"max-ifd", SFT_ARG_DOUBLE, &o.max_ifd, "reject records whose IFD (sft_scores.ifd) exceeds X", NULL},
        {"model", SFT_ARG_STRING, &score_opts.model_dir,
         "compute ppl/IFD with this model for records that have none", NULL},
        {"adapter", SFT_ARG_STRING, &score_opts.adapter_dir, "PEFT adapter dir merged into --model", NULL},
        {"keep-regex", SFT_ARG_LIST, &keep, "keep only records with a message matching this PCRE2 regex",
         NULL},
        {"drop-regex", SFT_ARG_LIST, &drop, "reject records with a message matching this PCRE2 regex", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data filter INPUT... -o OUTPUT [--rejected FILE] [rules]";
    int rc = parse(argc, argv, table, &c, usage, 0, err);
    if (rc) return rc;
    if (list_phrases) {
        for (const char *const *p = sft_default_refusal_phrases; *p; p++)
            printf("%s\n", *p);
        return 1;
    }
    if (c.input_count == 0) return sft_errf(err, "no input file given (usage: %s)", usage);
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    o.check_refusal = !no_refusal;
    o.check_cut = !no_cut;
    o.repeat_ngram = (int)repeat_ngram;
    o.cut_min_words = (int)cut_min_words;
    if (keep.count > SFT_FILTER_MAX_REGEX || drop.count > SFT_FILTER_MAX_REGEX)
        return sft_errf(err, "at most %d --keep-regex and %d --drop-regex", SFT_FILTER_MAX_REGEX,
                        SFT_FILTER_MAX_REGEX);
    for (int i = 0; i < keep.count; i++)
        o.keep_regex[o.keep_regex_count++] = keep.items[i];
    for (int i = 0; i < drop.count; i++)
        o.drop_regex[o.drop_regex_count++] = drop.items[i];
    if (tokenizer && !(o.tokens = sft_token_counter_open(tokenizer, NULL, err)))
        return sft_err_prefix(err, "--tokenizer %s", tokenizer);
    if (score_opts.adapter_dir && !score_opts.model_dir) return sft_errf(err, "--adapter needs --model DIR");
    if (score_opts.model_dir) {
        score_opts.check_refusal = o.check_refusal;
        score_opts.refusal_file = o.refusal_file;
        score_opts.cut_min_words = o.cut_min_words;
        if (!(o.scorer = sft_scorer_open(&score_opts, err))) {
            sft_token_counter_free(o.tokens);
            return -1;
        }
    }
    sft_filter_summary s;
    rc = sft_data_filter(&io, &o, &s, err);
    sft_token_counter_free(o.tokens);
    sft_scorer_free(o.scorer);
    if (rc) return -1;
    printf("records %zu, kept %zu, rejected %zu\n", s.records, s.kept, s.rejected);
    for (int r = 0; r < SFT_RULE_COUNT; r++)
        if (s.per_rule[r]) printf("  %-14s %zu\n", sft_filter_rule_name(r), s.per_rule[r]);
    print_skipped(s.skipped);
    return 0;
}

/* -------------------------------------------------------------------- dedup */
static int cmd_dedup(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_dedup_options o;
    sft_dedup_options_default(&o);
    int exact_only = 0, near_only = 0;
    long shingle = o.shingle_words, num_perm = o.near_opts.num_perm;
    sft_arg table[] = {
        {"threshold", SFT_ARG_DOUBLE, &o.near_opts.threshold,
         "Jaccard similarity of near duplicates (default 0.8)", NULL},
        {"shingle", SFT_ARG_INT, &shingle, "words per shingle (default 5)", NULL},
        {"num-perm", SFT_ARG_INT, &num_perm, "MinHash permutations (default 128)", NULL},
        {"exact-only", SFT_ARG_BOOL, &exact_only, "exact duplicates only (normalised text)", NULL},
        {"near-only", SFT_ARG_BOOL, &near_only, "near duplicates only", NULL},
        {"prompt-only", SFT_ARG_BOOL, &o.prompt_only,
         "compare system and user messages only (same question, any answer)", NULL},
        {"report", SFT_ARG_STRING, &o.report, "write the clusters as JSON lines", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data dedup INPUT... -o OUTPUT [--threshold J] [--report FILE]";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    if (exact_only && near_only) return sft_errf(err, "--exact-only and --near-only exclude each other");
    if (exact_only) o.near = 0;
    if (near_only) o.exact = 0;
    if (num_perm < 1 || num_perm > 1024) return sft_errf(err, "--num-perm must be in 1..1024");
    o.shingle_words = (int)shingle;
    o.near_opts.num_perm = (int)num_perm;
    sft_dedup_summary s;
    if (sft_data_dedup(&io, &o, &s, err)) return -1;
    printf("records %zu, kept %zu, removed %zu exact + %zu near duplicates", s.records, s.kept,
           s.exact_removed, s.near_removed);
    if (o.near)
        printf(" (Jaccard >= %g, %d-word shingles, %d bands x %d rows, %zu candidate pairs verified)",
               o.near_opts.threshold, o.shingle_words, s.bands, s.rows, s.candidates);
    printf("\n");
    if (o.report) printf("clusters: %zu, listed in %s\n", s.clusters, o.report);
    print_skipped(s.skipped);
    return 0;
}

/* ------------------------------------------------------------ decontaminate */
static int cmd_decontaminate(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_decontam_options o;
    sft_decontam_options_default(&o);
    sft_arg_list against = {0};
    long ngram = o.ngram, min_ngram = o.min_ngram;
    sft_arg table[] = {
        {"against", SFT_ARG_LIST, &against,
         "evaluation data (any JSON lines/array: every string field counts)", NULL},
        {"ngram", SFT_ARG_INT, &ngram, "words per n-gram (default 13, as GPT-3)", NULL},
        {"min-ngram", SFT_ARG_INT, &min_ngram,
         "shorter evaluation texts of at least N words match whole (default 8)", NULL},
        {"report", SFT_ARG_STRING, &o.report, "write the evaluation items hit as JSON", NULL},
        {"rejected", SFT_ARG_STRING, &o.rejected, "write the removed training records here", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data decontaminate INPUT... --against EVAL... -o OUTPUT [--ngram N]";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    o.against = against.items;
    o.against_count = against.count;
    o.ngram = (int)ngram;
    o.min_ngram = (int)min_ngram;
    sft_decontam_summary s;
    if (sft_data_decontaminate(&io, &o, &s, err)) return -1;
    printf("records %zu, kept %zu, removed %zu sharing a %d-gram", s.records, s.kept, s.removed, o.ngram);
    if (o.min_ngram < o.ngram)
        printf(" (or a whole evaluation text of %d-%d words)", o.min_ngram, o.ngram - 1);
    printf(" with the evaluation data; %zu of %zu evaluation items hit\n", s.eval_items_hit, s.eval_items);
    if (o.report) printf("report: %s\n", o.report);
    print_skipped(s.skipped);
    return 0;
}

/* -------------------------------------------------------------------- split */
static int cmd_split(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_split_options o;
    sft_split_options_default(&o);
    long seed = (long)o.seed;
    int no_near = 0;
    sft_arg table[] = {
        {"val", SFT_ARG_DOUBLE, &o.val_fraction, "validation fraction (default 0.1)", NULL},
        {"test", SFT_ARG_DOUBLE, &o.test_fraction, "test fraction (default 0)", NULL},
        {"seed", SFT_ARG_INT, &seed, "shuffle seed (default 42)", NULL},
        {"stratify", SFT_ARG_STRING, &o.stratify, "keep the fractions within each value of this field", NULL},
        {"no-near", SFT_ARG_BOOL, &no_near, "do not keep near duplicates on the same side", NULL},
        {"threshold", SFT_ARG_DOUBLE, &o.near_opts.threshold,
         "Jaccard of near duplicates kept together (default 0.8)", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data split INPUT... -o DIR [--val X] [--test X] [--seed N] [--stratify FIELD]";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    o.seed = (uint64_t)seed;
    o.keep_near_together = !no_near;
    sft_split_summary s;
    if (sft_data_split(&io, &o, &s, err)) return -1;
    printf("records %zu: train %zu, val %zu", s.records, s.train, s.val);
    if (o.test_fraction > 0) printf(", test %zu", s.test);
    if (o.keep_near_together)
        printf(" (near duplicates kept together: %zu groups", s.clusters);
    else
        printf(" (%zu groups", s.clusters);
    printf(", %zu strata) in %s/\n", s.strata, io.output);
    print_skipped(s.skipped);
    return 0;
}

/* ----------------------------------------------------------------- generate */
/* Flags of the model-based steps (data/synth.h), shared by generate and augment. */
typedef struct {
    const char *model_dir, *adapter_dir, *template_name;
    double temperature, top_p;
    long top_k, max_new_tokens;
} synth_flags;

static void synth_flags_init(synth_flags *f, const sft_synth_options *defaults) {
    memset(f, 0, sizeof *f);
    f->temperature = defaults->temperature;
    f->top_p = defaults->top_p;
    f->max_new_tokens = defaults->max_new_tokens;
}

static void synth_flags_apply(const synth_flags *f, long seed, sft_synth_options *synth) {
    synth->model_dir = f->model_dir;
    synth->adapter_dir = f->adapter_dir;
    synth->template_name = f->template_name;
    synth->temperature = f->temperature;
    synth->top_p = f->top_p;
    synth->top_k = (int)f->top_k;
    synth->max_new_tokens = (int)f->max_new_tokens;
    synth->seed = (uint64_t)seed;
}

#define SYNTH_ARGS(f)                                                                                        \
    {"model", SFT_ARG_STRING, &(f).model_dir, "HF model dir that generates (local inference)", NULL},         \
        {"adapter", SFT_ARG_STRING, &(f).adapter_dir, "PEFT adapter dir, merged into --model", NULL},         \
        {"template", SFT_ARG_STRING, &(f).template_name, "chat template (default auto: the model's)", NULL},  \
        {"max-new-tokens", SFT_ARG_INT, &(f).max_new_tokens, "tokens per generation (default 256)", NULL},   \
        {"temperature", SFT_ARG_DOUBLE, &(f).temperature, "sampling temperature (default 0.7; 0 = greedy)",   \
         NULL},                                                                                              \
        {"top-p", SFT_ARG_DOUBLE, &(f).top_p, "nucleus sampling mass (default 0.9)", NULL},                  \
    {                                                                                                        \
        "top-k", SFT_ARG_INT, &(f).top_k, "sample from the k most likely tokens (default 0: off)", NULL      \
    }

static void print_synth_summary(const sft_synth_summary *s) {
    for (int r = 0; sft_synth_reason_name(r); r++)
        if (s->per_reason[r]) printf("  eliminated %-16s %zu\n", sft_synth_reason_name(r), s->per_reason[r]);
    if (s->unfinished) printf("  answers cut at --max-new-tokens: %zu\n", s->unfinished);
    print_skipped(s->skipped);
}

static int cmd_generate(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_generate_options o;
    sft_generate_options_default(&o);
    long seed = (long)o.seed, count = -1;
    const char *to = NULL, *instructions = NULL;
    int list = 0, self_instruct = 0;
    sft_synth_options synth;
    sft_synth_options_default(&synth);
    synth_flags so;
    synth_flags_init(&so, &synth);
    sft_self_instruct_options si;
    sft_self_instruct_options_default(&si);
    long prompt_instructions = si.prompt_instructions, prompt_generated = si.prompt_generated, max_attempts = 0;
    sft_arg table[] = {
        {"count", SFT_ARG_INT, &count, "records to write (default 1000; with --self-instruct 100)", NULL},
        {"seed", SFT_ARG_INT, &seed, "seed (default 1)", NULL},
        {"tasks", SFT_ARG_STRING, &o.tasks, "comma list of task families (default all; see --list)", NULL},
        {"to", SFT_ARG_STRING, &to, "record format: messages (default), alpaca, sharegpt, prompt-completion",
         NULL},
        {"max-number", SFT_ARG_INT, &o.max_number, "largest operand (default 99)", NULL},
        {"list", SFT_ARG_BOOL, &list, "list the task families and exit", NULL},
        {"unique", SFT_ARG_BOOL, &o.unique, "no two records with the same prompt", NULL},
        SYNTH_ARGS(so),
        {"instructions", SFT_ARG_STRING, &instructions, "with --model: answer these prompts, one a line", NULL},
        {"self-instruct", SFT_ARG_BOOL, &self_instruct,
         "with --model: new instructions from the INPUT records as seeds (Self-Instruct)", NULL},
        {"prompt-instructions", SFT_ARG_INT, &prompt_instructions,
         "instructions shown per self-instruct prompt (default 8)", NULL},
        {"prompt-generated", SFT_ARG_INT, &prompt_generated,
         "of which generated ones, once there are some (default 2)", NULL},
        {"similarity", SFT_ARG_DOUBLE, &si.similarity,
         "reject new instructions with word-set Jaccard >= X to the pool (default 0.7)", NULL},
        {"max-attempts", SFT_ARG_INT, &max_attempts, "self-instruct model calls before giving up (default 20 x count)",
         NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data generate -o OUTPUT [--count N] [--seed N] [--tasks a,b] [--to FORMAT]\n"
                        "       sft data generate --model DIR [INPUT... | --instructions FILE] -o OUTPUT\n"
                        "       sft data generate --model DIR --self-instruct SEEDS... -o OUTPUT [--count N]";
    int rc = parse(argc, argv, table, &c, usage, 0, err);
    if (rc) return rc;
    if (list) {
        for (int i = 0; sft_generate_task_names[i]; i++)
            printf("%-14s %s\n", sft_generate_task_names[i], sft_generate_task_descriptions[i]);
        return 1;
    }
    sft_data_format format = SFT_FORMAT_MESSAGES;
    if (to && sft_data_format_parse(to, &format, err)) return sft_err_prefix(err, "--to");
    if (so.model_dir) {
        if (o.tasks || o.unique || o.max_number != 99)
            return sft_errf(err, "--tasks, --unique and --max-number are for the built-in tasks, not --model");
        synth_flags_apply(&so, seed, &synth);
        sft_data_io io;
        if (make_io(&c, &io, err)) return -1;
        sft_synth_summary s;
        if (self_instruct) {
            if (instructions) return sft_errf(err, "--self-instruct takes seed records, not --instructions");
            si.count = count < 0 ? si.count : count;
            si.prompt_instructions = (int)prompt_instructions;
            si.prompt_generated = (int)prompt_generated;
            si.max_attempts = max_attempts;
            si.format = format;
            if (sft_data_self_instruct(&io, &si, &synth, &s, err)) return -1;
            printf("seeds %zu, new records %zu of %ld asked (%zu model calls, %zu candidates eliminated): %s\n",
                   s.records, s.created, si.count, s.attempts, s.rejected, io.output);
        } else {
            if (count >= 0) return sft_errf(err, "--count is for the built-in tasks or --self-instruct");
            if (sft_data_answer(&io, instructions, format, &synth, &s, err)) return -1;
            printf("records %zu, answered %zu, unchanged %zu: %s\n", s.records, s.created, s.unchanged, io.output);
        }
        print_synth_summary(&s);
        return 0;
    }
    if (self_instruct || instructions) return sft_errf(err, "--self-instruct and --instructions need --model DIR");
    if (c.input_count) return sft_errf(err, "generate takes no input file without --model (got '%s')", c.inputs[0]);
    o.count = count < 0 ? o.count : count;
    o.format = format;
    o.seed = (uint64_t)seed;
    if (sft_data_generate(&o, c.output, err)) return -1;
    printf("generated %ld records (%s, seed %ld): %s\n", o.count, sft_data_format_name(o.format), seed,
           c.output);
    return 0;
}

/* ------------------------------------------------------------------ augment */
static int cmd_augment(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_augment_options o;
    sft_augment_options_default(&o);
    long seed = (long)o.seed, variants = o.variants;
    int no_original = 0, no_prefix = 0, no_constraints = 0, no_system = 0, evolve = 0;
    const char *methods = NULL;
    sft_synth_options synth;
    sft_synth_options_default(&synth);
    synth_flags so;
    synth_flags_init(&so, &synth);
    sft_arg table[] = {
        {"evolve", SFT_ARG_BOOL, &evolve, "Evol-Instruct rewrites through --model instead of templates", NULL},
        {"evolve-methods", SFT_ARG_STRING, &methods,
         "comma list of constraints, deepen, concretize, reasoning, breadth (default all)", NULL},
        SYNTH_ARGS(so),
        {"variants", SFT_ARG_INT, &variants, "new records per record (default 1)", NULL},
        {"seed", SFT_ARG_INT, &seed, "seed (default 1)", NULL},
        {"no-original", SFT_ARG_BOOL, &no_original, "write only the new records", NULL},
        {"no-prefix", SFT_ARG_BOOL, &no_prefix, "no paraphrase prefixes", NULL},
        {"no-constraints", SFT_ARG_BOOL, &no_constraints, "no format/length constraints", NULL},
        {"no-system", SFT_ARG_BOOL, &no_system, "no system prompts", NULL},
        {"system-prompts", SFT_ARG_STRING, &o.system_file,
         "system prompts, one a line, instead of the built-in ones", NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data augment INPUT... -o OUTPUT [--variants N] [--seed N] [--evolve --model DIR]";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    if (evolve || so.model_dir) {
        if (!evolve || !so.model_dir) return sft_errf(err, "--evolve and --model DIR go together");
        if (no_prefix || no_constraints || no_system || o.system_file)
            return sft_errf(err, "--no-prefix/--no-constraints/--no-system/--system-prompts are template rewrites, "
                                 "not --evolve");
        sft_evolve_options eo;
        sft_evolve_options_default(&eo);
        eo.variants = (int)variants;
        eo.keep_original = !no_original;
        if (methods) {
            eo.methods = 0;
            char list[256];
            snprintf(list, sizeof list, "%s", methods);
            for (char *save = NULL, *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
                int k = 0;
                while (sft_evol_method_name(k) && strcmp(sft_evol_method_name(k), m))
                    k++;
                if (!sft_evol_method_name(k))
                    return sft_errf(err, "--evolve-methods: unknown method '%s' (constraints, deepen, concretize, "
                                         "reasoning, breadth)",
                                    m);
                eo.methods |= 1u << k;
            }
        }
        synth_flags_apply(&so, seed, &synth);
        sft_synth_summary ss;
        if (sft_data_evolve(&io, &eo, &synth, &ss, err)) return -1;
        printf("records %zu, evolved records %zu, eliminated %zu, written %zu", ss.records, ss.created, ss.rejected,
               ss.written);
        if (ss.unchanged) printf(" (%zu not single-turn: not evolved)", ss.unchanged);
        printf("\n");
        print_synth_summary(&ss);
        return 0;
    }
    o.seed = (uint64_t)seed;
    o.variants = (int)variants;
    o.keep_original = !no_original;
    o.prefixes = !no_prefix;
    o.constraints = !no_constraints;
    o.system_prompts = !no_system;
    sft_augment_summary s;
    if (sft_data_augment(&io, &o, &s, err)) return -1;
    printf("records %zu, new records %zu, written %zu", s.records, s.created, s.written);
    if (s.not_applicable) printf(" (%zu records had no applicable rewrite)", s.not_applicable);
    printf("\n");
    print_skipped(s.skipped);
    return 0;
}

/* -------------------------------------------------------------------- score */
static int cmd_score(int argc, char **argv, sft_err *err) {
    common_flags c = {0};
    sft_score_options o;
    sft_score_options_default(&o);
    long batch_size = o.batch_size, cut_min_words = o.cut_min_words, threads = 0;
    int no_refusal = 0;
    sft_arg table[] = {
        {"model", SFT_ARG_STRING, &o.model_dir, "also score with this HF model: ppl and IFD", NULL},
        {"adapter", SFT_ARG_STRING, &o.adapter_dir, "PEFT adapter dir, merged into the model", NULL},
        {"tokenizer", SFT_ARG_STRING, &o.tokenizer_dir, "tokenizer folder (default: the model's)", NULL},
        {"template", SFT_ARG_STRING, &o.template_name, "chat template (default auto: the tokenizer's)", NULL},
        {"max-len", SFT_ARG_INT, &o.max_len, "tokens per record, longer ones truncated as training (default 1024)",
         NULL},
        {"batch-size", SFT_ARG_INT, &batch_size, "packed rows of --max-len tokens per forward (default 4)", NULL},
        {"threads", SFT_ARG_INT, &threads, "worker threads (default: all cores)", NULL},
        {"no-refusal", SFT_ARG_BOOL, &no_refusal, "do not count refusal/boilerplate phrases", NULL},
        {"refusal-phrases", SFT_ARG_STRING, &o.refusal_file,
         "phrases file (one a line) instead of the built-in list", NULL},
        {"cut-min-words", SFT_ARG_INT, &cut_min_words, "judge cut answers only from N words on (default 20)",
         NULL},
        COMMON_ARGS(c),
        {NULL, 0, NULL, NULL, NULL}};
    const char *usage = "sft data score INPUT... -o OUTPUT [--model DIR [--adapter DIR]] [--tokenizer DIR]";
    int rc = parse(argc, argv, table, &c, usage, 1, err);
    if (rc) return rc;
    sft_data_io io;
    if (make_io(&c, &io, err)) return -1;
    if (threads < 0) return sft_errf(err, "--threads must be >= 0");
    if (batch_size < 1 || batch_size > 4096) return sft_errf(err, "--batch-size must be in 1..4096");
    sft_set_threads((int)threads);
    o.batch_size = (int)batch_size;
    o.cut_min_words = (int)cut_min_words;
    o.check_refusal = !no_refusal;
    sft_score_summary s;
    if (sft_data_score(&io, &o, &s, err)) return -1;
    size_t n = s.records;
    printf("records %zu, mean heuristic score %.3f", n, n ? s.heuristic_sum / (double)n : 0.0);
    if (o.model_dir) {
        printf("; with %s: ppl for %zu (mean loss %.4f), IFD for %zu (mean %.4f)", o.model_dir, s.with_model,
               s.with_model ? s.loss_sum / (double)s.with_model : 0.0, s.with_ifd,
               s.with_ifd ? s.ifd_sum / (double)s.with_ifd : 0.0);
        if (s.truncated) printf(", %zu truncated at --max-len %ld", s.truncated, o.max_len);
    }
    printf(": %s\n", io.output);
    for (int k = 0; k < SFT_HEUR_COUNT; k++)
        if (s.flagged[k]) printf("  %-14s %zu\n", sft_heuristic_name(k), s.flagged[k]);
    print_skipped(s.skipped);
    return 0;
}

/* ------------------------------------------------------------------ command */
typedef struct {
    const char *name;
    int (*fn)(int, char **, sft_err *);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"stats", cmd_stats, "records, formats, roles and turns, lengths, duplicates, empty fields, script mix"},
    {"filter", cmd_filter, "rule-based filtering; rejected records with their rule"},
    {"dedup", cmd_dedup, "exact and near-duplicate removal (MinHash LSH, verified Jaccard)"},
    {"decontaminate", cmd_decontaminate, "drop records sharing an n-gram with evaluation data"},
    {"split", cmd_split, "seeded train/val/test split, near duplicates on one side"},
    {"convert", cmd_convert, "between alpaca, sharegpt, messages and prompt-completion"},
    {"generate", cmd_generate, "synthetic tasks with verifiable answers; with --model, answers and self-instruct"},
    {"augment", cmd_augment, "template rewrites; with --evolve --model, Evol-Instruct"},
    {"score", cmd_score, "quality scores: heuristic; with --model, perplexity and IFD"},
};
#define SUBCOMMAND_COUNT (sizeof subcommands / sizeof subcommands[0])

static void data_usage(FILE *f) {
    fprintf(f, "usage: sft data SUB INPUT... -o OUTPUT [flags]   (sft data SUB --help)\n\n");
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++)
        fprintf(f, "  %-14s %s%s\n", subcommands[i].name, subcommands[i].summary,
                subcommands[i].fn ? "" : " [not built yet]");
}

int sft_cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    char name[64];
    snprintf(name, sizeof name, "data %s", argv[1]);
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++) {
        if (strcmp(argv[1], subcommands[i].name)) continue;
        if (!subcommands[i].fn) {
            fprintf(stderr, "sft data %s: not built yet: %s\n", argv[1], subcommands[i].summary);
            return 2;
        }
        sft_err err = {{0}};
        int rc = subcommands[i].fn(argc - 1, argv + 1, &err);
        if (rc == 1) return 0; /* --help or a listing was printed */
        if (rc) return sft_cli_fail(name, &err);
        return 0;
    }
    const char *names[SUBCOMMAND_COUNT];
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++)
        names[i] = subcommands[i].name;
    const char *near = sft_suggest(argv[1], names, SUBCOMMAND_COUNT);
    fprintf(stderr, "sft data: unknown subcommand '%s'%s%s%s\n", argv[1], near ? " (did you mean '" : "",
            near ? near : "", near ? "'?)" : "");
    return 2;
}
