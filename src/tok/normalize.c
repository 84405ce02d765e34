/* normalize.c: tokenizer.json normalizers (tokenizers/src/normalizers):
 * Sequence, Prepend and Replace (String or Regex pattern), the legacy
 * Llama 2 form being Sequence[Prepend("▁"), Replace(" ", "▁")], and the
 * Unicode forms NFC (Qwen2), NFD, NFKC, NFKD through utf8proc.
 *
 * Alignments follow NormalizedString::prepend and ::replace: prepended text
 * takes the original range of the first character; replacement text takes
 * the range of the last byte of what it replaced. A Unicode normalization
 * that changes a run of characters (a starter, its combining marks and
 * whatever composes with them) aligns the run's result to the whole run;
 * text the normalization leaves alone keeps its own alignments. Any other
 * normalizer type is refused by name rather than skipped (skipping would
 * change ids). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_internal.h"

int tok_nstr_reserve(tok_nstr *s, size_t cap) {
    if (cap <= s->cap) return 0;
    size_t n = s->cap ? s->cap : 256;
    while (n < cap)
        n *= 2;
    char *t = realloc(s->text, n);
    if (t) s->text = t;
    tok_span *a = realloc(s->align, n * sizeof *a);
    if (a) s->align = a;
    if (!t || !a) return -1;
    s->cap = n;
    return 0;
}

void tok_nstr_set_original(tok_nstr *s, const char *text, size_t len, size_t base) {
    memcpy(s->text, text, len);
    for (size_t k = 0; k < len;) {
        size_t n = tok_unit_len(text + k, len - k);
        tok_span a = {(uint32_t)(base + k), (uint32_t)(base + k + n)};
        for (size_t b = 0; b < n; b++)
            s->align[k + b] = a;
        k += n;
    }
    s->len = len;
}

void tok_nstr_free(tok_nstr *s) {
    free(s->text);
    free(s->align);
    memset(s, 0, sizeof *s);
}

static int load_one(tok_normalizer **list, size_t *count, size_t *cap, const json_t *j, int depth,
                    sft_err *err) {
    if (!json_is_object(j)) return sft_errf(err, "normalizer: expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return sft_errf(err, "normalizer: missing \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *items = json_object_get(j, "normalizers");
        if (!json_is_array(items))
            return sft_errf(err, "normalizer Sequence: expected a list \"normalizers\"");
        if (depth > 8) return sft_errf(err, "normalizer Sequence: nested too deeply");
        for (size_t i = 0; i < json_array_size(items); i++)
            if (load_one(list, count, cap, json_array_get(items, i), depth + 1, err)) return -1;
        return 0;
    }
    if (*count == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        tok_normalizer *l = realloc(*list, n * sizeof *l);
        if (!l) return sft_errf(err, "out of memory");
        *list = l;
        *cap = n;
    }
    tok_normalizer *nm = &(*list)[*count];
    memset(nm, 0, sizeof *nm);
    if (!strcmp(type, "Prepend")) {
        const json_t *p = json_object_get(j, "prepend");
        if (!json_is_string(p)) return sft_errf(err, "normalizer Prepend: expected a string \"prepend\"");
        nm->type = TOK_NORM_PREPEND;
        nm->text_len = json_string_length(p);
        nm->text = malloc(nm->text_len + 1);
        if (!nm->text) return sft_errf(err, "out of memory");
        memcpy(nm->text, json_string_value(p), nm->text_len + 1);
        (*count)++;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const json_t *pattern = json_object_get(j, "pattern"), *content = json_object_get(j, "content");
        const json_t *str = json_object_get(pattern, "String"), *rx = json_object_get(pattern, "Regex");
        if (!json_is_string(content) || !(json_is_string(str) || json_is_string(rx)))
            return sft_errf(
                err,
                "normalizer Replace: expected \"pattern\": {\"String\" or \"Regex\": ...} and \"content\"");
        nm->type = TOK_NORM_REPLACE;
        const json_t *p = str ? str : rx;
        if (tok_regex_compile(&nm->pattern, json_string_value(p), json_string_length(p), str != NULL, err))
            return sft_err_prefix(err, "normalizer Replace");
        nm->text_len = json_string_length(content);
        nm->text = malloc(nm->text_len + 1);
        (*count)++; /* counted now so that a failure frees the compiled pattern */
        if (!nm->text) return sft_errf(err, "out of memory");
        memcpy(nm->text, json_string_value(content), nm->text_len + 1);
        return 0;
    }
    static const struct {
        const char *name;
        int options;
    } forms[] = {
        {"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
        {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
        {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
        {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (!strcmp(type, forms[i].name)) {
            nm->type = TOK_NORM_UNICODE;
            nm->unicode_options = forms[i].options;
            (*count)++;
            return 0;
        }
    return sft_errf(err,
                    "normalizer type \"%s\" is not supported (sft supports Sequence, Prepend, Replace, NFC, "
                    "NFD, NFKC, NFKD)",
                    type);
}

int tok_normalizer_load(tok_normalizer **list, size_t *count, const json_t *j, sft_err *err) {
    *list = NULL;
    *count = 0;
    if (!j || json_is_null(j)) return 0;
    size_t cap = 0;
    if (load_one(list, count, &cap, j, 0, err)) {
        tok_normalizers_free(*list, *count);
        *list = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

void tok_normalizers_free(tok_normalizer *list, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(list[i].text);
        if (list[i].type == TOK_NORM_REPLACE) tok_regex_free(&list[i].pattern);
    }
    free(list);
}

static void swap_nstr(tok_nstr *a, tok_nstr *b) {
    tok_nstr t = *a;
    *a = *b;
    *b = t;
}

/* utf8proc's normal form of text[0..len); NULL when it is not valid UTF-8 (or out of memory). */
static char *unicode_form(const char *text, size_t len, int options, size_t *out_len) {
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t n =
        utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len, &out, (utf8proc_option_t)options);
    if (n < 0) return NULL;
    *out_len = (size_t)n;
    return (char *)out;
}

/* Appends a run to tmp: unchanged with its alignments, or its normal form aligned to the whole run. */
static int emit_run(const tok_nstr *s, size_t start, size_t end, int options, tok_nstr *tmp) {
    size_t n = 0;
    char *norm = unicode_form(s->text + start, end - start, options, &n);
    if (!norm || (n == end - start && !memcmp(norm, s->text + start, n))) {
        free(norm);
        if (tok_nstr_reserve(tmp, tmp->len + (end - start) + 1)) return -1;
        memcpy(tmp->text + tmp->len, s->text + start, end - start);
        memcpy(tmp->align + tmp->len, s->align + start, (end - start) * sizeof *s->align);
        tmp->len += end - start;
        return 0;
    }
    if (tok_nstr_reserve(tmp, tmp->len + n + 1)) {
        free(norm);
        return -1;
    }
    tok_span whole = {s->align[start].start, s->align[end - 1].end};
    memcpy(tmp->text + tmp->len, norm, n);
    for (size_t k = 0; k < n; k++)
        tmp->align[tmp->len + k] = whole;
    tmp->len += n;
    free(norm);
    return 0;
}

/* Whether the two runs [a, b) and [b, c) compose across their boundary. */
static int runs_interact(const tok_nstr *s, size_t a, size_t b, size_t c, int options) {
    size_t n_all = 0, n_left = 0, n_right = 0;
    char *all = unicode_form(s->text + a, c - a, options, &n_all);
    char *left = unicode_form(s->text + a, b - a, options, &n_left);
    char *right = unicode_form(s->text + b, c - b, options, &n_right);
    int interact =
        all && left && right &&
        (n_all != n_left + n_right || memcmp(all, left, n_left) || memcmp(all + n_left, right, n_right));
    free(all);
    free(left);
    free(right);
    return interact;
}

static int apply_unicode(const tok_normalizer *nm, tok_nstr *s, tok_nstr *tmp, sft_err *err) {
    size_t n = 0;
    char *whole = unicode_form(s->text, s->len, nm->unicode_options, &n);
    int same = whole && n == s->len && !memcmp(whole, s->text, n);
    free(whole);
    if (same) return 0; /* already normal: the common case, alignments untouched */
    /* Runs: a starter (or an invalid byte) with the combining marks after it. */
    tmp->len = 0;
    size_t run = 0, prev_run = 0, i = 0;
    int have_prev = 0;
    while (i <= s->len) {
        size_t next = i;
        int boundary = i == s->len;
        if (!boundary) {
            int vl = tok_utf8_valid_len((const unsigned char *)s->text + i, s->len - i);
            next = i + (vl ? (size_t)vl : 1);
            boundary = !vl || utf8proc_get_property(
                                  (utf8proc_int32_t)tok_utf8_decode((const unsigned char *)s->text + i))
                                      ->combining_class == 0;
        }
        if (boundary && i > run) {
            /* [run, i) is complete: merge it into the pending group when they compose. */
            if (have_prev && (nm->unicode_options & UTF8PROC_COMPOSE) &&
                runs_interact(s, prev_run, run, i, nm->unicode_options)) {
                /* keep prev_run: the group grows to [prev_run, i) */
            } else {
                if (have_prev && emit_run(s, prev_run, run, nm->unicode_options, tmp))
                    return sft_errf(err, "out of memory");
                prev_run = run;
                have_prev = 1;
            }
            run = i;
        }
        if (i == s->len) break;
        i = next;
    }
    if (have_prev && emit_run(s, prev_run, s->len, nm->unicode_options, tmp))
        return sft_errf(err, "out of memory");
    swap_nstr(s, tmp);
    return 0;
}

static int apply(const tok_normalizer *nm, tok_matcher *matcher, tok_nstr *s, tok_nstr *tmp, sft_err *err) {
    if (nm->type == TOK_NORM_UNICODE) return apply_unicode(nm, s, tmp, err);
    if (nm->type == TOK_NORM_PREPEND) {
        if (!s->len) return 0;
        if (tok_nstr_reserve(tmp, s->len + nm->text_len)) return sft_errf(err, "out of memory");
        memcpy(tmp->text, nm->text, nm->text_len);
        for (size_t k = 0; k < nm->text_len; k++)
            tmp->align[k] = s->align[0];
        memcpy(tmp->text + nm->text_len, s->text, s->len);
        memcpy(tmp->align + nm->text_len, s->align, s->len * sizeof *s->align);
        tmp->len = s->len + nm->text_len;
        swap_nstr(s, tmp);
        return 0;
    }
    /* Replace */
    tmp->len = 0;
    tok_find_iter it;
    tok_find_begin(&it, &nm->pattern, matcher, s->text, s->len);
    size_t last = 0, ms, me;
    int rc;
    while ((rc = tok_find_next(&it, &ms, &me, err)) == 1) {
        size_t need = tmp->len + (ms - last) + nm->text_len;
        if (tok_nstr_reserve(tmp, need + 1)) return sft_errf(err, "out of memory");
        memcpy(tmp->text + tmp->len, s->text + last, ms - last);
        memcpy(tmp->align + tmp->len, s->align + last, (ms - last) * sizeof *s->align);
        tmp->len += ms - last;
        tok_span a = me > 0 ? s->align[me - 1] : (tok_span){0, 0};
        memcpy(tmp->text + tmp->len, nm->text, nm->text_len);
        for (size_t k = 0; k < nm->text_len; k++)
            tmp->align[tmp->len + k] = a;
        tmp->len += nm->text_len;
        last = me;
    }
    if (rc < 0) return -1;
    if (tok_nstr_reserve(tmp, tmp->len + (s->len - last) + 1)) return sft_errf(err, "out of memory");
    memcpy(tmp->text + tmp->len, s->text + last, s->len - last);
    memcpy(tmp->align + tmp->len, s->align + last, (s->len - last) * sizeof *s->align);
    tmp->len += s->len - last;
    swap_nstr(s, tmp);
    return 0;
}

int tok_normalize(const sft_tokenizer *tok, tok_ctx *ctx, tok_nstr *s, sft_err *err) {
    for (size_t i = 0; i < tok->normalizer_count; i++)
        if (apply(&tok->normalizers[i], &ctx->matcher, s, &ctx->tmp, err)) return -1;
    return 0;
}

int tok_normalize_string(const sft_tokenizer *tok, const char *text, size_t len, char **out, size_t *out_len,
                         sft_err *err) {
    tok_matcher matcher;
    if (tok_matcher_init(&matcher, err)) return -1;
    tok_nstr s = {0}, tmp = {0};
    int rc = -1;
    if (tok_nstr_reserve(&s, len + 1)) {
        sft_errf(err, "out of memory");
        goto done;
    }
    tok_nstr_set_original(&s, text, len, 0);
    for (size_t i = 0; i < tok->normalizer_count; i++)
        if (apply(&tok->normalizers[i], &matcher, &s, &tmp, err)) goto done;
    *out = malloc(s.len + 1);
    if (!*out) {
        sft_errf(err, "out of memory");
        goto done;
    }
    memcpy(*out, s.text, s.len);
    (*out)[s.len] = 0;
    *out_len = s.len;
    rc = 0;
done:
    tok_nstr_free(&s);
    tok_nstr_free(&tmp);
    tok_matcher_free(&matcher);
    return rc;
}
