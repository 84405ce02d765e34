/* text.c: Unicode normalisation (utf8proc), words and scripts (PCRE2 Unicode
 * properties), n-gram hashes (xxHash XXH3) and set similarity (see text.h).
 *
 * The regular expressions are compiled once (pthread_once) and JIT-compiled;
 * each call gets its own match data, so the helpers are thread-safe. */
#include "data/text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>
#include <xxhash.h>

int sft_buf_append(sft_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

void sft_buf_free(sft_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

int sft_u64s_push(sft_u64s *v, uint64_t x) {
    if (v->count == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        uint64_t *p = realloc(v->items, cap * sizeof *p);
        if (!p) return -1;
        v->items = p;
        v->cap = cap;
    }
    v->items[v->count++] = x;
    return 0;
}

void sft_u64s_free(sft_u64s *v) {
    free(v->items);
    memset(v, 0, sizeof *v);
}

void sft_spans_free(sft_spans *s) {
    free(s->items);
    memset(s, 0, sizeof *s);
}

uint64_t sft_hash64(const void *data, size_t len, uint64_t seed) {
    return XXH3_64bits_withSeed(data, len, seed);
}

static int is_unicode_space(int32_t cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return 1;
    if (cp < 0x80) return 0;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

/* Appends s with runs of white space collapsed to one space (ends trimmed). */
static int collapse_space(const char *s, size_t len, sft_buf *out) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    int pending_space = 0;
    while (i < len) {
        int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0) n = 1, cp = 0xFFFD;
        if (is_unicode_space(cp)) {
            pending_space = out->len > 0;
        } else {
            if (pending_space && sft_buf_append(out, " ", 1)) return -1;
            pending_space = 0;
            if (sft_buf_append(out, s + i, (size_t)n)) return -1;
        }
        i += (size_t)n;
    }
    return 0;
}

int sft_text_normalize(const char *s, size_t len, sft_buf *out, sft_err *err) {
    out->len = 0;
    if (sft_buf_append(out, "", 0)) return sft_errf(err, "out of memory");
    size_t i = 0;
    while (i < len && !((unsigned char)s[i] & 0x80))
        i++;
    if (i == len) {
        /* ASCII: NFKC is the identity and case folding is tolower; the output
         * is never longer than the input. */
        if (sft_buf_append(out, s, len)) return sft_errf(err, "out of memory");
        size_t o = 0;
        int pending_space = 0;
        for (i = 0; i < len; i++) {
            char c = s[i];
            if (c == ' ' || (c >= 0x09 && c <= 0x0D)) {
                pending_space = o > 0;
                continue;
            }
            if (pending_space) out->data[o++] = ' ';
            pending_space = 0;
            out->data[o++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        out->len = o;
        out->data[o] = 0;
        return 0;
    }
    /* utf8proc refuses invalid UTF-8; replace bad bytes with U+FFFD first. */
    sft_buf valid = {0};
    const uint8_t *p = (const uint8_t *)s;
    for (i = 0; i < len;) {
        int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        int rc =
            n <= 0 ? sft_buf_append(&valid, "\xEF\xBF\xBD", 3) : sft_buf_append(&valid, s + i, (size_t)n);
        if (rc) {
            sft_buf_free(&valid);
            return sft_errf(err, "out of memory");
        }
        i += n <= 0 ? 1 : (size_t)n;
    }
    utf8proc_uint8_t *mapped = NULL;
    utf8proc_ssize_t m =
        utf8proc_map((const utf8proc_uint8_t *)valid.data, (utf8proc_ssize_t)valid.len, &mapped,
                     UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD);
    sft_buf_free(&valid);
    if (m < 0) return sft_errf(err, "Unicode normalisation failed: %s", utf8proc_errmsg(m));
    int rc = collapse_space((const char *)mapped, (size_t)m, out);
    free(mapped);
    if (rc) return sft_errf(err, "out of memory");
    return 0;
}

/* ---------------------------------------------------------------- regexes */

static const char *script_names[SFT_SCRIPT_COUNT] = {
    "Latin",      "Cyrillic", "Greek",    "Armenian", "Georgian", "Hebrew",  "Arabic",
    "Devanagari", "Bengali",  "Gurmukhi", "Gujarati", "Tamil",    "Telugu",  "Kannada",
    "Malayalam",  "Sinhala",  "Thai",     "Lao",      "Khmer",    "Myanmar", "Tibetan",
    "Ethiopic",   "Hangul",   "Hiragana", "Katakana", "Han",      "Other"};

static pcre2_code *word_re, *script_re;
static char regex_error[256];
static pthread_once_t regex_once = PTHREAD_ONCE_INIT;

static pcre2_code *compile(const char *pattern) {
    int code;
    PCRE2_SIZE offset;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &offset, NULL);
    if (!re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(regex_error, sizeof regex_error, "internal regex: %s", (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when JIT is absent */
    return re;
}

static void compile_regexes(void) {
#define NOSPACE "\\p{Han}\\p{Hiragana}\\p{Katakana}\\p{Thai}\\p{Lao}\\p{Khmer}\\p{Myanmar}"
    word_re = compile("[" NOSPACE "]|(?:(?![" NOSPACE "])[\\p{L}\\p{N}\\p{M}])+");
    /* One capture group per script, in enum order; the last catches every other letter. */
    char pattern[2048] = "";
    for (int s = 0; s < SFT_SCRIPT_OTHER; s++) {
        char part[64];
        snprintf(part, sizeof part, "%s(\\p{%s}+)", s ? "|" : "", script_names[s]);
        strcat(pattern, part);
    }
    strcat(pattern, "|(\\p{L}+)");
    script_re = compile(pattern);
}

static int regexes_ready(sft_err *err) {
    pthread_once(&regex_once, compile_regexes);
    if (!word_re || !script_re) return sft_errf(err, "%s", regex_error);
    return 0;
}

int sft_text_words(const char *s, size_t len, sft_spans *out, sft_err *err) {
    out->count = 0;
    if (regexes_ready(err)) return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(word_re, NULL);
    if (!md) return sft_errf(err, "out of memory");
    size_t at = 0;
    int rc = 0;
    while (at < len) {
        int m = pcre2_match(word_re, (PCRE2_SPTR)s, len, at, 0, md, NULL);
        if (m < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (out->count == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 64;
            sft_span *p = realloc(out->items, cap * sizeof *p);
            if (!p) {
                rc = sft_errf(err, "out of memory");
                break;
            }
            out->items = p;
            out->cap = cap;
        }
        out->items[out->count++] = (sft_span){(uint32_t)ov[0], (uint32_t)(ov[1] - ov[0])};
        at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    pcre2_match_data_free(md);
    return rc;
}

int sft_text_ngram_hashes(const char *s, const sft_spans *words, size_t n, sft_u64s *out) {
    out->count = 0;
    if (words->count == 0 || n == 0) return 0;
    /* Hash each word once, then each n-gram as the hash of its word hashes. */
    uint64_t *wh = malloc(words->count * sizeof *wh);
    if (!wh) return -1;
    for (size_t i = 0; i < words->count; i++)
        wh[i] = XXH3_64bits(s + words->items[i].start, words->items[i].len);
    size_t grams = words->count >= n ? words->count - n + 1 : 1;
    size_t width = words->count >= n ? n : words->count;
    int rc = 0;
    for (size_t i = 0; i < grams && !rc; i++)
        rc = sft_u64s_push(out, XXH3_64bits(wh + i, width * sizeof *wh));
    free(wh);
    return rc;
}

/* Quicksort (median of three) with insertion sort below 16 elements: typed,
 * so no comparison callback; shingle sets are sorted once per record. */
static void sort_u64(uint64_t *v, size_t n) {
    while (n > 16) {
        uint64_t a = v[0], b = v[n / 2], c = v[n - 1];
        uint64_t pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t i = 0, j = n - 1;
        for (;;) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i >= j) break;
            uint64_t t = v[i];
            v[i] = v[j];
            v[j] = t;
            i++;
            j--;
        }
        /* Recurse into the smaller part, loop on the larger: O(log n) stack. */
        size_t left = j + 1;
        if (left < n - left) {
            sort_u64(v, left);
            v += left;
            n -= left;
        } else {
            sort_u64(v + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

void sft_u64s_sort_unique(sft_u64s *v) {
    if (v->count < 2) return;
    sort_u64(v->items, v->count);
    size_t o = 1;
    for (size_t i = 1; i < v->count; i++)
        if (v->items[i] != v->items[o - 1]) v->items[o++] = v->items[i];
    v->count = o;
}

double sft_jaccard_sorted(const uint64_t *a, size_t na, const uint64_t *b, size_t nb) {
    if (na == 0 && nb == 0) return 1.0;
    size_t i = 0, j = 0, both = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j])
            both++, i++, j++;
        else if (a[i] < b[j])
            i++;
        else
            j++;
    }
    return (double)both / (double)(na + nb - both);
}

const char *sft_script_name(int script) {
    return script >= 0 && script < SFT_SCRIPT_COUNT ? script_names[script] : "?";
}

int sft_script_parse(const char *name) {
    for (int s = 0; s < SFT_SCRIPT_COUNT; s++)
        if (!strcasecmp(name, script_names[s])) return s;
    return -1;
}

/* Code points in a valid-or-not UTF-8 range (continuation bytes do not start one). */
static size_t count_code_points(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

int sft_text_script_counts(const char *s, size_t len, uint64_t counts[SFT_SCRIPT_COUNT], sft_err *err) {
    if (regexes_ready(err)) return -1;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(script_re, NULL);
    if (!md) return sft_errf(err, "out of memory");
    size_t at = 0;
    while (at < len) {
        int m = pcre2_match(script_re, (PCRE2_SPTR)s, len, at, 0, md, NULL);
        if (m < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        /* The group that matched is the highest-numbered one set (m - 1). */
        int group = m - 1;
        if (group >= 1 && group <= SFT_SCRIPT_COUNT)
            counts[group - 1] += count_code_points(s + ov[0], ov[1] - ov[0]);
        at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    pcre2_match_data_free(md);
    return 0;
}

size_t sft_text_chars(const char *s, size_t len) {
    return count_code_points(s, len);
}

size_t sft_text_nonprintable(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x80) {
            unsigned char c = p[i++];
            bad += (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
            continue;
        }
        int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0) {
            bad++;
            i++;
            continue;
        }
        i += (size_t)n;
        utf8proc_category_t c = utf8proc_category(cp);
        bad += c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CN || c == UTF8PROC_CATEGORY_CO ||
               c == UTF8PROC_CATEGORY_CS || cp == 0xFFFD;
    }
    return bad;
}

int sft_text_is_blank(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0) return 0;
        if (!is_unicode_space(cp)) return 0;
        i += (size_t)n;
    }
    return 1;
}
