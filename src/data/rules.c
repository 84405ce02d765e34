/* rules.c: the text measures of filter's rules and score's heuristic (see
 * rules.h). */
#include "data/rules.h"

#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "data/text.h"
#include "io/file.h"

struct sft_text_rules {
    char *refusal_pattern; /* NULL: refusals not checked */
    pcre2_code *refusal;
    pcre2_match_data *md;
    sft_buf normalized;
    sft_spans words, tail;
    sft_u64s grams;
};

pcre2_code *sft_regex_compile(const char *pattern, uint32_t flags, const char *what, sft_err *err) {
    int code;
    PCRE2_SIZE offset;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | flags, &code, &offset, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        sft_errf(err, "%s '%s': %s at offset %zu", what, pattern, (char *)msg, (size_t)offset);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

/* One alternation of literal phrases; "'" also matches the curly apostrophe. */
static int append_phrase(sft_buf *re, const char *phrase, size_t len) {
    if (re->len && sft_buf_append(re, "|", 1)) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)phrase[i];
        int rc;
        if (c == '\'')
            rc = sft_buf_append(re, "['\xE2\x80\x99]", 6);
        else if (c < 0x80 &&
                 !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ')) {
            char esc[2] = {'\\', (char)c};
            rc = sft_buf_append(re, esc, 2);
        } else if (c == ' ')
            rc = sft_buf_append(re, "\\s+", 3);
        else
            rc = sft_buf_append(re, (const char *)&c, 1);
        if (rc) return -1;
    }
    return 0;
}

/* The refusal phrases as one PCRE2 alternation (NUL-terminated in out). */
static int refusal_pattern(const char *refusal_file, sft_buf *re, sft_err *err) {
    int rc = 0;
    if (refusal_file) {
        char *text;
        size_t len;
        if (sft_read_file(refusal_file, &text, &len, err)) return -1;
        char *line = text;
        while (line && *line && !rc) {
            char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) : strlen(line);
            while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
                n--;
            while (n && (*line == ' ' || *line == '\t'))
                line++, n--;
            if (n && line[0] != '#' && append_phrase(re, line, n)) rc = sft_errf(err, "out of memory");
            line = nl ? nl + 1 : NULL;
        }
        free(text);
        if (!rc && re->len == 0)
            rc = sft_errf(err, "%s: no phrases (one phrase a line; lines starting with # are comments)",
                          refusal_file);
    } else {
        for (const char *const *p = sft_default_refusal_phrases; *p && !rc; p++)
            if (append_phrase(re, *p, strlen(*p))) rc = sft_errf(err, "out of memory");
    }
    if (!rc && sft_buf_append(re, "", 1)) rc = sft_errf(err, "out of memory");
    return rc;
}

static sft_text_rules *rules_from_pattern(const char *pattern, sft_err *err) {
    sft_text_rules *r = calloc(1, sizeof *r);
    if (!r) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    if (pattern) {
        if (!(r->refusal_pattern = strdup(pattern))) {
            sft_errf(err, "out of memory");
            sft_text_rules_free(r);
            return NULL;
        }
        if (!(r->refusal = sft_regex_compile(pattern, PCRE2_CASELESS, "refusal phrases", err))) {
            sft_text_rules_free(r);
            return NULL;
        }
    }
    if (!(r->md = pcre2_match_data_create(32, NULL))) {
        sft_errf(err, "out of memory");
        sft_text_rules_free(r);
        return NULL;
    }
    return r;
}

sft_text_rules *sft_text_rules_new(int check_refusal, const char *refusal_file, sft_err *err) {
    if (!check_refusal) return rules_from_pattern(NULL, err);
    sft_buf re = {0};
    sft_text_rules *r = refusal_pattern(refusal_file, &re, err) ? NULL : rules_from_pattern(re.data, err);
    sft_buf_free(&re);
    return r;
}

sft_text_rules *sft_text_rules_clone(const sft_text_rules *r, sft_err *err) {
    return rules_from_pattern(r->refusal_pattern, err);
}

void sft_text_rules_free(sft_text_rules *r) {
    if (!r) return;
    free(r->refusal_pattern);
    pcre2_code_free(r->refusal);
    pcre2_match_data_free(r->md);
    sft_buf_free(&r->normalized);
    sft_spans_free(&r->words);
    sft_spans_free(&r->tail);
    sft_u64s_free(&r->grams);
    free(r);
}

pcre2_match_data *sft_text_rules_match_data(sft_text_rules *r) {
    return r->md;
}

int sft_text_rules_refusal(sft_text_rules *r, const char *s, size_t len, size_t *start, size_t *end) {
    if (!r->refusal || pcre2_match(r->refusal, (PCRE2_SPTR)s, len, 0, 0, r->md, NULL) < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    *start = ov[0];
    *end = ov[1];
    return 1;
}

/* Gopher's repetition measure on words: the share of word n-grams that repeat
 * an earlier n-gram of the same text. */
double sft_text_rules_repeat_ratio(sft_text_rules *r, const char *s, size_t len, int n, sft_err *err) {
    if (sft_text_normalize(s, len, &r->normalized, err)) return -1;
    if (sft_text_words(r->normalized.data, r->normalized.len, &r->words, err)) return -1;
    if (r->words.count < (size_t)n + 9) return 0;
    if (sft_text_ngram_hashes(r->normalized.data, &r->words, (size_t)n, &r->grams)) {
        sft_errf(err, "out of memory");
        return -1;
    }
    size_t total = r->grams.count;
    sft_u64s_sort_unique(&r->grams);
    return (double)(total - r->grams.count) / (double)total;
}

/* The last visible character of an answer that ends mid sentence: a letter or
 * a joining mark (, : - ( /; not ";", which ends lines of code). Answers with
 * a code block, or whose last line is a list item or table row, end where they
 * like and are not judged. */
int sft_text_rules_looks_cut(sft_text_rules *r, const char *s, size_t len, int min_words, sft_err *err) {
    if (memmem(s, len, "```", 3)) return 0;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == '\t'))
        len--;
    if (!len) return 0;
    size_t line_start = len;
    while (line_start && s[line_start - 1] != '\n')
        line_start--;
    const char *last_line = s + line_start;
    while (*last_line == ' ' || *last_line == '\t')
        last_line++;
    if (*last_line == '-' || *last_line == '*' || *last_line == '|' || *last_line == '#') return 0;
    if (*last_line >= '0' && *last_line <= '9') {
        const char *p = last_line;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p == '.' || *p == ')') return 0;
    }
    if (sft_text_words(s, len, &r->words, err)) return -1;
    if (r->words.count < (size_t)min_words) return 0;
    /* The last code point. */
    size_t at = len - 1;
    while (at && ((unsigned char)s[at] & 0xC0) == 0x80)
        at--;
    unsigned char last = (unsigned char)s[at];
    if (last < 0x80) {
        if (strchr(",:-(/", last)) return 1;
        return (last >= 'a' && last <= 'z') || (last >= 'A' && last <= 'Z');
    }
    /* Non-ASCII: a letter of any script ends mid sentence; CJK full stops and the like do not. */
    int cut = 0;
    if (sft_text_words(s + at, len - at, &r->tail, err)) return -1;
    if (r->tail.count == 1) {
        uint64_t counts[SFT_SCRIPT_COUNT] = {0};
        if (sft_text_script_counts(s + at, len - at, counts, err)) return -1;
        for (int k = 0; k < SFT_SCRIPT_COUNT; k++)
            cut |= counts[k] > 0;
        /* Han/Kana texts end without a full stop far more often than cut; leave them. */
        if (counts[SFT_SCRIPT_HAN] || counts[SFT_SCRIPT_HIRAGANA] || counts[SFT_SCRIPT_KATAKANA]) cut = 0;
    }
    return cut;
}

void sft_record_nonprintable(const sft_record *rec, size_t *bad, size_t *chars) {
    *bad = *chars = 0;
    for (size_t i = 0; i < rec->message_count; i++) {
        *bad += sft_text_nonprintable(rec->messages[i].content, rec->messages[i].content_len);
        *chars += sft_text_chars(rec->messages[i].content, rec->messages[i].content_len);
    }
}
