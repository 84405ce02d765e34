/* filter.c: `sft data filter`, rule-based quality filtering of instruction
 * records (see pipeline.h for the options).
 *
 * The rules follow the heuristics of the data-curation literature, adapted to
 * chat turns: length bounds per turn (characters, or tokens of the model's
 * tokenizer), empty turns, unanswered prompts,
 * refusal/boilerplate phrases (the "As an AI language model" family removed
 * from ShareGPT-derived sets such as WizardLM/Vicuna unfiltered), the share of
 * repeated word n-grams (Gopher, Rae et al. 2021, "repetition removal"),
 * non-printable characters, the script of the letters, answers cut mid
 * sentence, and the user's own PCRE2 regexes. A record is rejected by the
 * first rule that fires, in the order of the SFT_RULE_* enum; the counts per
 * rule therefore add up to the rejected total. The text measures live in
 * rules.c, shared with the heuristic score of `sft data score`. */
#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "data/rules.h"
#include "data/score.h"
#include "data/text.h"
#include "io/json.h"

static const char *rule_names[SFT_RULE_COUNT] = {"no_answer",    "empty_turn",   "too_short",  "too_long",
                                                 "short_answer", "nonprintable", "script",     "refusal",
                                                 "repetition",   "cut_off",      "drop_regex", "keep_regex",
                                                 "low_score",    "high_ppl",     "high_ifd"};

const char *sft_filter_rule_name(int rule) {
    return rule >= 0 && rule < SFT_RULE_COUNT ? rule_names[rule] : "?";
}

/* Phrases that mark a refusal or assistant boilerplate rather than an answer;
 * matched case-insensitively in assistant turns, straight or curly apostrophe. */
const char *const sft_default_refusal_phrases[] = {"as an AI language model",
                                                   "as a language model",
                                                   "as an AI assistant, I",
                                                   "as a large language model",
                                                   "I'm sorry, but I cannot",
                                                   "I'm sorry, but I can't",
                                                   "I am sorry, but I cannot",
                                                   "I apologize, but I cannot",
                                                   "I apologize, but I can't",
                                                   "I cannot fulfill",
                                                   "I can't fulfill",
                                                   "I cannot provide",
                                                   "I can't assist with",
                                                   "I cannot assist with",
                                                   "I'm not able to provide",
                                                   "I am not able to provide",
                                                   "I'm unable to provide",
                                                   "I do not have personal opinions",
                                                   "I don't have personal opinions",
                                                   "I don't have the ability to",
                                                   "my knowledge cutoff",
                                                   "my training data",
                                                   "as of my last update",
                                                   "OpenAI",
                                                   "it is not appropriate for me",
                                                   "against my programming",
                                                   NULL};

void sft_filter_options_default(sft_filter_options *o) {
    memset(o, 0, sizeof *o);
    o->check_refusal = 1;
    o->repeat_ngram = 3;
    o->max_repeat_ratio = 0.3;
    o->max_nonprintable_ratio = 0.01;
    o->min_script_share = 0.5;
    o->check_cut = 1;
    o->cut_min_words = 20;
}

typedef struct {
    const sft_filter_options *opts;
    sft_text_rules *rules; /* refusal phrases and the text measures (rules.h) */
    sft_scorer *scorer;     /* for scores a record lacks */
    sft_scorer *own_scorer; /* heuristic-only, made when the caller gave none */
    pcre2_code *keep[SFT_FILTER_MAX_REGEX], *drop[SFT_FILTER_MAX_REGEX];
    pcre2_match_data *md;
    int scripts[SFT_SCRIPT_COUNT]; /* 1 = allowed */
    int script_filter;
    sft_writer *out, *rejected;
    sft_filter_summary *summary;
    char detail[256];
} filter_ctx;

static int matches(filter_ctx *c, pcre2_code *re, const char *s, size_t len) {
    return pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, c->md, NULL) >= 0;
}

/* A score of the record's "sft_scores": 1 with *value, 0 when the key is
 * missing, 2 when it is null (the score does not apply to the record). */
static int stored_score(const sft_record *rec, const char *key, double *value) {
    const json_t *scores = json_object_get(rec->json, "sft_scores");
    const json_t *v = json_is_object(scores) ? json_object_get(scores, key) : NULL;
    if (!v) return 0;
    if (json_is_null(v)) return 2;
    return sft_json_number(v, value) == 0 ? 1 : 0;
}

/* --min-score, --max-ppl, --max-ifd: on the record's stored scores, or on
 * scores computed now (heuristic always; ppl and IFD with a model). */
static int score_rules(filter_ctx *c, const sft_record *rec, sft_err *err) {
    const sft_filter_options *o = c->opts;
    if (o->min_score <= 0 && o->max_ppl <= 0 && o->max_ifd <= 0) return -1;
    double heuristic = 0, ppl = 0, ifd = 0;
    int have_h = o->min_score > 0 ? stored_score(rec, "heuristic", &heuristic) : 1;
    int have_ppl = o->max_ppl > 0 ? stored_score(rec, "ppl", &ppl) : 1;
    int have_ifd = o->max_ifd > 0 ? stored_score(rec, "ifd", &ifd) : 1;
    int need_model = !have_ppl || !have_ifd;
    if (need_model && !(c->scorer && sft_scorer_has_model(c->scorer))) {
        sft_errf(err, "the record has no sft_scores.%s: run `sft data score --model DIR` first, or give filter "
                 "--model DIR",
                 have_ppl ? "ifd" : "ppl");
        return -2;
    }
    if (!have_h || need_model) {
        sft_scorer *sc = c->scorer;
        if (!sc) {
            if (!c->own_scorer) {
                sft_score_options so;
                sft_score_options_default(&so);
                so.check_refusal = o->check_refusal;
                so.refusal_file = o->refusal_file;
                so.cut_min_words = o->cut_min_words;
                if (!(c->own_scorer = sft_scorer_open(&so, err))) return -2;
            }
            sc = c->own_scorer;
        }
        sft_record_scores s;
        const sft_record *one = rec;
        if (sft_scorer_run(sc, &one, 1, need_model, &s, err)) return -3; /* err names FILE:LINE */
        if (!have_h) heuristic = s.heuristic, have_h = 1;
        if (!have_ppl) have_ppl = s.has_model ? (ppl = s.ppl, 1) : 2;
        if (!have_ifd) have_ifd = s.has_ifd ? (ifd = s.ifd, 1) : 2;
    }
    if (o->min_score > 0 && heuristic < o->min_score) {
        snprintf(c->detail, sizeof c->detail, "heuristic score %.3f < %g", heuristic, o->min_score);
        return SFT_RULE_LOW_SCORE;
    }
    if (o->max_ppl > 0 && have_ppl == 1 && ppl > o->max_ppl) {
        snprintf(c->detail, sizeof c->detail, "perplexity %.4g > %g", ppl, o->max_ppl);
        return SFT_RULE_HIGH_PPL;
    }
    if (o->max_ifd > 0 && have_ifd == 1 && ifd > o->max_ifd) {
        snprintf(c->detail, sizeof c->detail, "IFD %.4f > %g", ifd, o->max_ifd);
        return SFT_RULE_HIGH_IFD;
    }
    return -1;
}

/* Returns the rule that rejects the record (detail in c->detail), or -1 to keep
 * it, or -2 on error (-3: an error that already names FILE:LINE). */
static int judge(filter_ctx *c, const sft_record *rec, sft_err *err) {
    const sft_filter_options *o = c->opts;
    long last_assistant = sft_record_last_assistant(rec);
    if (last_assistant < 0) {
        snprintf(c->detail, sizeof c->detail, "no assistant turn");
        return SFT_RULE_NO_ANSWER;
    }
    if (rec->messages[rec->message_count - 1].role == SFT_ROLE_USER) {
        snprintf(c->detail, sizeof c->detail, "the last user turn (message %zu) has no answer",
                 rec->message_count);
        return SFT_RULE_NO_ANSWER;
    }
    for (size_t i = 0; i < rec->message_count && !o->allow_empty; i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role != SFT_ROLE_SYSTEM && sft_text_is_blank(m->content, m->content_len)) {
            snprintf(c->detail, sizeof c->detail, "message %zu (%s) is empty or white space", i + 1,
                     sft_role_name(m->role));
            return SFT_RULE_EMPTY_TURN;
        }
    }
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role == SFT_ROLE_SYSTEM) continue;
        long chars = (long)sft_text_chars(m->content, m->content_len);
        if (o->min_chars && chars < o->min_chars) {
            snprintf(c->detail, sizeof c->detail, "message %zu (%s) has %ld characters < %ld", i + 1,
                     sft_role_name(m->role), chars, o->min_chars);
            return SFT_RULE_TOO_SHORT;
        }
        if (o->max_chars && chars > o->max_chars) {
            snprintf(c->detail, sizeof c->detail, "message %zu (%s) has %ld characters > %ld", i + 1,
                     sft_role_name(m->role), chars, o->max_chars);
            return SFT_RULE_TOO_LONG;
        }
        if (o->min_answer_chars && m->role == SFT_ROLE_ASSISTANT && chars < o->min_answer_chars) {
            snprintf(c->detail, sizeof c->detail, "answer (message %zu) has %ld characters < %ld", i + 1,
                     chars, o->min_answer_chars);
            return SFT_RULE_SHORT_ANSWER;
        }
    }
    for (size_t i = 0; i < rec->message_count && o->tokens && (o->min_tokens || o->max_tokens); i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role == SFT_ROLE_SYSTEM) continue;
        size_t tokens;
        if (sft_token_count_text(o->tokens, m->content, m->content_len, &tokens, err)) return -2;
        if (o->min_tokens && (long)tokens < o->min_tokens) {
            snprintf(c->detail, sizeof c->detail, "message %zu (%s) has %zu tokens < %ld", i + 1,
                     sft_role_name(m->role), tokens, o->min_tokens);
            return SFT_RULE_TOO_SHORT;
        }
        if (o->max_tokens && (long)tokens > o->max_tokens) {
            snprintf(c->detail, sizeof c->detail, "message %zu (%s) has %zu tokens > %ld", i + 1,
                     sft_role_name(m->role), tokens, o->max_tokens);
            return SFT_RULE_TOO_LONG;
        }
    }
    if (o->max_nonprintable_ratio > 0) {
        size_t bad, chars;
        sft_record_nonprintable(rec, &bad, &chars);
        if (chars && (double)bad / (double)chars > o->max_nonprintable_ratio) {
            snprintf(c->detail, sizeof c->detail, "%zu of %zu characters are not printable (> %g)", bad,
                     chars, o->max_nonprintable_ratio);
            return SFT_RULE_NONPRINTABLE;
        }
    }
    if (c->script_filter) {
        uint64_t counts[SFT_SCRIPT_COUNT] = {0};
        for (size_t i = 0; i < rec->message_count; i++)
            if (sft_text_script_counts(rec->messages[i].content, rec->messages[i].content_len, counts, err))
                return -2;
        uint64_t total = 0, allowed = 0;
        int top = 0;
        for (int k = 0; k < SFT_SCRIPT_COUNT; k++) {
            total += counts[k];
            if (c->scripts[k]) allowed += counts[k];
            if (counts[k] > counts[top]) top = k;
        }
        /* Records without letters (numbers, code symbols) have no script to judge. */
        if (total && (double)allowed / (double)total < o->min_script_share) {
            snprintf(c->detail, sizeof c->detail,
                     "%.0f%% of the letters are in the allowed scripts (mostly %s)",
                     100.0 * (double)allowed / (double)total, sft_script_name(top));
            return SFT_RULE_SCRIPT;
        }
    }
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role != SFT_ROLE_ASSISTANT) continue;
        size_t start, end;
        if (sft_text_rules_refusal(c->rules, m->content, m->content_len, &start, &end)) {
            snprintf(c->detail, sizeof c->detail, "answer (message %zu) says \"%.*s\"", i + 1,
                     (int)(end - start > 120 ? 120 : end - start), m->content + start);
            return SFT_RULE_REFUSAL;
        }
    }
    if (o->max_repeat_ratio > 0)
        for (size_t i = 0; i < rec->message_count; i++) {
            const sft_message *m = &rec->messages[i];
            if (m->role != SFT_ROLE_ASSISTANT) continue;
            double ratio =
                sft_text_rules_repeat_ratio(c->rules, m->content, m->content_len, o->repeat_ngram, err);
            if (ratio < 0) return -2;
            if (ratio > o->max_repeat_ratio) {
                snprintf(c->detail, sizeof c->detail,
                         "%.0f%% of the word %d-grams of message %zu repeat (> %.0f%%)", 100 * ratio,
                         o->repeat_ngram, i + 1, 100 * o->max_repeat_ratio);
                return SFT_RULE_REPETITION;
            }
        }
    if (o->check_cut) {
        const sft_message *answer = &rec->messages[last_assistant];
        int cut = sft_text_rules_looks_cut(c->rules, answer->content, answer->content_len, o->cut_min_words, err);
        if (cut < 0) return -2;
        if (cut) {
            const sft_message *m = &rec->messages[last_assistant];
            size_t tail = m->content_len > 40 ? 40 : m->content_len;
            snprintf(c->detail, sizeof c->detail, "the answer ends mid sentence: \"...%.*s\"", (int)tail,
                     m->content + m->content_len - tail);
            return SFT_RULE_CUT_OFF;
        }
    }
    for (int r = 0; r < o->drop_regex_count; r++)
        for (size_t i = 0; i < rec->message_count; i++)
            if (matches(c, c->drop[r], rec->messages[i].content, rec->messages[i].content_len)) {
                snprintf(c->detail, sizeof c->detail, "message %zu matches --drop-regex '%s'", i + 1,
                         o->drop_regex[r]);
                return SFT_RULE_DROP_REGEX;
            }
    if (o->keep_regex_count) {
        int any = 0;
        for (int r = 0; r < o->keep_regex_count && !any; r++)
            for (size_t i = 0; i < rec->message_count && !any; i++)
                any = matches(c, c->keep[r], rec->messages[i].content, rec->messages[i].content_len);
        if (!any) {
            snprintf(c->detail, sizeof c->detail, "no message matches a --keep-regex");
            return SFT_RULE_KEEP_REGEX;
        }
    }
    return score_rules(c, rec, err);
}

static int filter_one(sft_record *rec, void *p, sft_err *err) {
    filter_ctx *c = p;
    int rule = judge(c, rec, err);
    if (rule == -2) return sft_err_prefix(err, "%s:%zu", rec->path, rec->line);
    if (rule == -3) return -1;
    if (rule < 0) {
        c->summary->kept++;
        return sft_writer_put_record(c->out, rec, err);
    }
    c->summary->rejected++;
    c->summary->per_rule[rule]++;
    if (!c->rejected) return 0;
    json_t *copy = json_copy(rec->json);
    json_object_set_new(copy, "_filter_rule", json_string(rule_names[rule]));
    json_object_set_new(copy, "_filter_detail", json_string(c->detail));
    int rc = sft_writer_put_json(c->rejected, copy, err);
    json_decref(copy);
    return rc;
}

int sft_data_filter(const sft_data_io *io, const sft_filter_options *o, sft_filter_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "filter needs an output file (-o)");
    if (o->repeat_ngram < 1) return sft_errf(err, "--repeat-ngram must be at least 1");
    if ((o->min_tokens || o->max_tokens) && !o->tokens)
        return sft_errf(err, "--min-tokens/--max-tokens need --tokenizer DIR");
    filter_ctx c = {0};
    c.opts = o;
    c.summary = s;
    c.scorer = o->scorer;
    int rc = 0;
    if (!(c.rules = sft_text_rules_new(o->check_refusal, o->refusal_file, err))) rc = -1;
    for (int r = 0; r < o->keep_regex_count && !rc; r++)
        if (!(c.keep[r] = sft_regex_compile(o->keep_regex[r], 0, "--keep-regex", err))) rc = -1;
    for (int r = 0; r < o->drop_regex_count && !rc; r++)
        if (!(c.drop[r] = sft_regex_compile(o->drop_regex[r], 0, "--drop-regex", err))) rc = -1;
    if (!rc && o->scripts) {
        c.script_filter = 1;
        char list[512];
        snprintf(list, sizeof list, "%s", o->scripts);
        for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            int k = sft_script_parse(name);
            if (k < 0) {
                rc = sft_errf(err,
                              "--script: unknown script '%s' (Unicode names: Latin, Cyrillic, Greek, Arabic, "
                              "Hebrew, Devanagari, Han, Hiragana, Katakana, Hangul, Thai, ...)",
                              name);
                break;
            }
            c.scripts[k] = 1;
        }
    }
    if (!rc) c.md = sft_text_rules_match_data(c.rules);
    if (!rc && !(c.out = sft_writer_open(io->output, err))) rc = -1;
    if (!rc && o->rejected && !(c.rejected = sft_writer_open(o->rejected, err))) rc = -1;
    if (!rc) {
        sft_each_summary each;
        rc = sft_data_each(io, 1, filter_one, &c, &each, err);
        s->records = each.records;
        s->skipped = each.skipped;
    }
    if (!rc && c.rejected) {
        rc = sft_writer_commit(c.rejected, err);
        c.rejected = NULL;
    }
    if (!rc) {
        rc = sft_writer_commit(c.out, err);
        c.out = NULL;
    }
    sft_writer_abort(c.rejected);
    sft_writer_abort(c.out);
    sft_text_rules_free(c.rules);
    sft_scorer_free(c.own_scorer);
    for (int r = 0; r < SFT_FILTER_MAX_REGEX; r++) {
        pcre2_code_free(c.keep[r]);
        pcre2_code_free(c.drop[r]);
    }
    return rc;
}
