/* regex.c: the tokenizer's regexes through PCRE2 (UTF + UCP, JIT compiled),
 * made to mean what they mean in Oniguruma, the engine the tokenizers
 * library compiles tokenizer.json patterns with (tokenizers/src/utils/onig.rs):
 *   - \s / \S are the Unicode White_Space property (PCRE2's \s also takes
 *     U+180E, which Unicode dropped from White_Space in 6.3);
 *   - \w is Unicode's word class (Alphabetic, marks, decimal digits,
 *     connector punctuation, join controls), \h is a hex digit (Ruby syntax);
 *   - ^ and $ are line anchors (Ruby syntax);
 *   - matches are iterated like the onig crate's find_iter.
 * Subjects that are not valid UTF-8 are matched with PCRE2_MATCH_INVALID_UTF:
 * invalid bytes never match, so they are left between matches, not lost. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* PCRE2's JIT code reads whole machine words at the end of a subject, past
 * its last byte; valgrind reports those reads as uses of uninitialised
 * memory. Under valgrind the interpreter runs instead (same matches). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

#define WORD_CLASS_BODY "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"

/* Rewrites Oniguruma escapes whose meaning differs in PCRE2. */
static int translate(const char *p, size_t len, tok_buf *out) {
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < len) {
            char n = p[i + 1];
            const char *rep = NULL;
            switch (n) {
            case 's':
                rep = "\\p{White_Space}";
                break;
            case 'S':
                rep = "\\P{White_Space}";
                break;
            case 'w':
                rep = in_class ? WORD_CLASS_BODY : "[" WORD_CLASS_BODY "]";
                break;
            case 'W':
                if (!in_class) rep = "[^" WORD_CLASS_BODY "]";
                break;
            case 'h':
                rep = in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
                break;
            case 'H':
                if (!in_class) rep = "[^0-9a-fA-F]";
                break;
            default:
                break;
            }
            if (rep) {
                if (tok_buf_append(out, rep, strlen(rep))) return -1;
            } else if (tok_buf_append(out, p + i, 2))
                return -1;
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            if (tok_buf_append(out, p + i, 1)) return -1;
            /* A ']' right after '[' or '[^' is a literal member. */
            if (i + 1 < len && p[i + 1] == '^') {
                if (tok_buf_append(out, "^", 1)) return -1;
                i++;
            }
            if (i + 1 < len && p[i + 1] == ']') {
                if (tok_buf_append(out, "]", 1)) return -1;
                i++;
            }
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && p[i + 1] == ':') {
            /* POSIX class [:alpha:] inside a class: copy through its ':]'. */
            const char *end = memmem(p + i + 2, len - i - 2, ":]", 2);
            if (end) {
                size_t n = (size_t)(end - (p + i)) + 2;
                if (tok_buf_append(out, p + i, n)) return -1;
                i += n - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        if (tok_buf_append(out, &c, 1)) return -1;
    }
    return 0;
}

int tok_regex_compile(tok_regex *re, const char *pattern, size_t len, int literal, sft_err *err) {
    re->code = NULL;
    tok_buf translated = {0};
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    const char *src = pattern;
    size_t src_len = len;
    if (literal) {
        options |= PCRE2_LITERAL;
    } else {
        options |= PCRE2_UCP | PCRE2_MULTILINE;
        if (translate(pattern, len, &translated)) {
            tok_buf_free(&translated);
            return sft_errf(err, "out of memory compiling a regex");
        }
        src = translated.data ? translated.data : "";
        src_len = translated.len;
    }
    if (!tok_utf8_is_valid(pattern, len)) {
        tok_buf_free(&translated);
        return sft_errf(err, "pattern is not valid UTF-8");
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        tok_buf_free(&translated);
        return sft_errf(err, "out of memory compiling a regex");
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int code;
    PCRE2_SIZE offset;
    re->code = pcre2_compile((PCRE2_SPTR)src, src_len, options, &code, &offset, cc);
    pcre2_compile_context_free(cc);
    tok_buf_free(&translated);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return sft_errf(err, "invalid regex /%.*s/: %s", (int)(len > 200 ? 200 : len), pattern, (char *)msg);
    }
    /* Without JIT support (some platforms) the interpreter gives the same matches, slower. */
    if (!UNDER_VALGRIND()) pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    return 0;
}

void tok_regex_free(tok_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

int tok_matcher_init(tok_matcher *m, sft_err *err) {
    memset(m, 0, sizeof *m);
    m->md = pcre2_match_data_create(1, NULL);
    m->mctx = pcre2_match_context_create(NULL);
    if (!m->md || !m->mctx) {
        tok_matcher_free(m);
        return sft_errf(err, "out of memory creating a regex matcher");
    }
    return 0;
}

/* JIT code runs on PCRE2's small default stack; a pattern that needs more
 * (deep backtracking over a long run) gets a large stack and one retry, so
 * that short texts do not pay for mapping one on every call. */
static int grow_jit_stack(tok_matcher *m) {
    if (m->jit_stack) return -1;
    m->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
    if (!m->jit_stack) return -1;
    pcre2_jit_stack_assign(m->mctx, NULL, m->jit_stack);
    return 0;
}

void tok_matcher_free(tok_matcher *m) {
    if (m->md) pcre2_match_data_free(m->md);
    if (m->mctx) pcre2_match_context_free(m->mctx);
    if (m->jit_stack) pcre2_jit_stack_free(m->jit_stack);
    memset(m, 0, sizeof *m);
}

void tok_find_begin(tok_find_iter *it, const tok_regex *re, tok_matcher *m, const char *text, size_t len) {
    it->re = re;
    it->m = m;
    it->text = text;
    it->len = len;
    it->last_end = 0;
    it->have_last = 0;
    it->last_match_end = 0;
}

int tok_find_next(tok_find_iter *it, size_t *start, size_t *end, sft_err *err) {
    for (;;) {
        if (it->last_end > it->len) return 0;
        int rc =
            pcre2_match(it->re->code, (PCRE2_SPTR)it->text, it->len, it->last_end, 0, it->m->md, it->m->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !grow_jit_stack(it->m))
            rc = pcre2_match(it->re->code, (PCRE2_SPTR)it->text, it->len, it->last_end, 0, it->m->md,
                             it->m->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sft_errf(err, "regex match failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(it->m->md);
        size_t s = ov[0], e = ov[1];
        if (s == e && it->have_last && it->last_match_end == e) {
            /* An empty match right after the previous one: step over one character. */
            it->last_end +=
                it->last_end < it->len ? tok_unit_len(it->text + it->last_end, it->len - it->last_end) : 1;
            continue;
        }
        it->last_end = e;
        it->have_last = 1;
        it->last_match_end = e;
        *start = s;
        *end = e;
        return 1;
    }
}
