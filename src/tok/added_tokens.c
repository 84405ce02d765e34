/* added_tokens.c: finding added tokens (tokenizer.json "added_tokens") in
 * text, as tokenizers/src/tokenizer/added_vocabulary.rs does: tokens with
 * normalized=false are matched in the raw text, the others in the
 * normalized text, both leftmost-longest (what its Aho-Corasick automaton
 * with MatchKind::LeftmostLongest yields), then single_word, lstrip and
 * rstrip are applied to each match. Added-token sets are small (hundreds),
 * so candidates are bucketed by first byte and compared directly. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

int tok_added_matcher_build(tok_added_matcher *m, const sft_tokenizer *tok, int normalized, sft_err *err) {
    memset(m, 0, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < tok->added_count; i++)
        if (!!tok->added[i].normalized == !!normalized) n++;
    if (!n) return 0;
    m->order = malloc(n * sizeof *m->order);
    m->pattern = calloc(tok->added_count, sizeof *m->pattern);
    m->pattern_len = calloc(tok->added_count, sizeof *m->pattern_len);
    if (!m->order || !m->pattern || !m->pattern_len) {
        tok_added_matcher_free(m);
        return sft_errf(err, "out of memory");
    }
    size_t counts[256] = {0};
    for (size_t i = 0; i < tok->added_count; i++) {
        const tok_added_token *t = &tok->added[i];
        if (!!t->normalized != !!normalized) continue;
        const char *p = normalized && t->normalized_content ? t->normalized_content : t->content;
        size_t len = normalized && t->normalized_content ? t->normalized_len : t->len;
        if (!len) continue;
        m->pattern[i] = p;
        m->pattern_len[i] = len;
        counts[(unsigned char)p[0]]++;
    }
    size_t at = 0;
    for (int b = 0; b < 256; b++) {
        m->bucket[b] = at;
        at += counts[b];
    }
    m->bucket[256] = at;
    size_t fill[256];
    memcpy(fill, m->bucket, sizeof fill);
    for (size_t i = 0; i < tok->added_count; i++)
        if (m->pattern[i]) m->order[fill[(unsigned char)m->pattern[i][0]]++] = i;
    m->count = at;
    return 0;
}

void tok_added_matcher_free(tok_added_matcher *m) {
    free(m->order);
    free(m->pattern);
    free(m->pattern_len);
    memset(m, 0, sizeof *m);
}

/* The leftmost match at or after `from`, the longest among those starting there. */
static int leftmost_longest(const tok_added_matcher *m, const char *text, size_t len, size_t from,
                            size_t *index, size_t *start, size_t *end) {
    for (size_t p = from; p < len; p++) {
        unsigned char b = (unsigned char)text[p];
        size_t lo = m->bucket[b], hi = m->bucket[b + 1];
        size_t best_len = 0, best = 0;
        for (size_t k = lo; k < hi; k++) {
            size_t i = m->order[k];
            size_t plen = m->pattern_len[i];
            if (plen > best_len && plen <= len - p && !memcmp(text + p, m->pattern[i], plen)) {
                best_len = plen;
                best = i;
            }
        }
        if (best_len) {
            *index = best;
            *start = p;
            *end = p + best_len;
            return 1;
        }
    }
    return 0;
}

/* Whether the character s[0..n) matches a one-character class regex. */
static int char_is(const tok_regex *re, tok_matcher *mt, const char *s, size_t n) {
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, 0, PCRE2_ANCHORED, mt->md, mt->mctx);
    return rc >= 0 && pcre2_get_ovector_pointer(mt->md)[1] == n;
}

static size_t prev_unit_start(const char *text, size_t at) {
    size_t p = at - 1;
    /* Back over continuation bytes to a lead byte, at most 3 of them. */
    while (p > 0 && at - p < 4 && ((unsigned char)text[p] & 0xC0) == 0x80)
        p--;
    if (tok_unit_len(text + p, at - p) != at - p) return at - 1; /* not one valid character */
    return p;
}

int tok_added_split(const sft_tokenizer *tok, const tok_added_matcher *m, tok_matcher *mt, const char *text,
                    size_t len, struct tok_added_split **out, size_t *count, size_t *cap) {
    *count = 0;
#define PUSH(ti, s, e)                                                                                       \
    do {                                                                                                     \
        if (*count == *cap) {                                                                                \
            size_t ncap = *cap ? *cap * 2 : 16;                                                              \
            struct tok_added_split *a = realloc(*out, ncap * sizeof *a);                                     \
            if (!a) return -1;                                                                               \
            *out = a;                                                                                        \
            *cap = ncap;                                                                                     \
        }                                                                                                    \
        (*out)[(*count)++] = (struct tok_added_split){(ti), (s), (e)};                                       \
    } while (0)
    if (!len) return 0;
    size_t start_offset = 0, from = 0, index, ms, me;
    while (m->count && leftmost_longest(m, text, len, from, &index, &ms, &me)) {
        from = me;
        const tok_added_token *t = &tok->added[index];
        size_t start = ms, stop = me;
        if (t->single_word) {
            int start_space = 1, stop_space = 1;
            if (start > 0) {
                size_t p = prev_unit_start(text, start);
                start_space = !char_is(&tok->word_char_regex, mt, text + p, start - p);
            }
            if (stop < len)
                stop_space =
                    !char_is(&tok->word_char_regex, mt, text + stop, tok_unit_len(text + stop, len - stop));
            if (!start_space || !stop_space) continue;
        }
        if (t->lstrip) {
            size_t s = start;
            while (s > 0) {
                size_t p = prev_unit_start(text, s);
                if (!char_is(&tok->space_char_regex, mt, text + p, s - p)) break;
                s = p;
            }
            start = s > start_offset ? s : start_offset;
        }
        if (t->rstrip) {
            while (stop < len) {
                size_t n = tok_unit_len(text + stop, len - stop);
                if (!char_is(&tok->space_char_regex, mt, text + stop, n)) break;
                stop += n;
            }
        }
        if (start_offset < start) PUSH(-1, start_offset, start);
        PUSH((long)index, start, stop);
        start_offset = stop;
    }
    if (start_offset < len) PUSH(-1, start_offset, len);
#undef PUSH
    return 0;
}
