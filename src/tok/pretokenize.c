/* pretokenize.c: tokenizer.json pre-tokenizers (tokenizers/src/pre_tokenizers):
 *   ByteLevel  (byte_level.rs): optional prefix space, the GPT-2 split regex
 *              when use_regex, then every byte mapped to its printable stand-in
 *              (GPT-2's bytes_to_unicode);
 *   Split      (split.rs): a String or Regex pattern, the five split
 *              behaviours, invert; Llama 3 and Qwen2 split with their regex
 *              then apply ByteLevel(use_regex=false);
 *   Metaspace  (metaspace.rs): spaces to "▁", prepend_scheme always / first /
 *              never, split on "▁" or not (newer Llama-2-style files);
 *   Digits     (digits.rs): numeric characters split off one by one or in
 *              runs (SmolLM), i.e. a Split on \p{N};
 *   Sequence   of these.
 * Each step splits or rewrites a piece and hands every resulting piece to
 * the next step, depth first, and the last step to the BPE model; that gives
 * the same pieces in the same order as tokenizers' breadth-first passes
 * without holding the whole text's pieces at once. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
 * others are shifted to U+0100 and up, in byte order. */
const uint16_t tok_byte_to_cp[256] = {

    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274, 275,
    276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287, 288, 33,  34,  35,  36,  37,  38,  39,
    40,  41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51,  52,  53,  54,  55,  56,  57,  58,  59,
    60,  61,  62,  63,  64,  65,  66,  67,  68,  69,  70,  71,  72,  73,  74,  75,  76,  77,  78,  79,
    80,  81,  82,  83,  84,  85,  86,  87,  88,  89,  90,  91,  92,  93,  94,  95,  96,  97,  98,  99,
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 124, 125, 126, 289, 290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301,
    302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199,
    200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219,
    220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,

};

int tok_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp < 256 || cp > 323) return -1;
    /* The shifted bytes, in order: 0-32, 127-160, 173. */
    uint32_t n = cp - 256;
    if (n <= 32) return (int)n;
    if (n <= 32 + 34) return (int)(127 + n - 33);
    return n == 67 ? 173 : -1;
}

/* ---------- loading ---------- */

static int parse_pattern(const json_t *j, const char *what, tok_regex *re, sft_err *err) {
    const json_t *pattern = json_object_get(j, "pattern");
    const json_t *str = json_object_get(pattern, "String"), *rx = json_object_get(pattern, "Regex");
    if (!json_is_string(str) && !json_is_string(rx))
        return sft_errf(err, "%s: expected \"pattern\": {\"String\": ...} or {\"Regex\": ...}", what);
    const json_t *p = str ? str : rx;
    if (tok_regex_compile(re, json_string_value(p), json_string_length(p), str != NULL, err))
        return sft_err_prefix(err, "%s", what);
    return 0;
}

static int parse_bool(const json_t *j, const char *key, int dflt, int *out, const char *what, sft_err *err) {
    const json_t *v = json_object_get(j, key);
    *out = dflt;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return sft_errf(err, "%s.%s: expected true or false", what, key);
    *out = json_is_true(v);
    return 0;
}

static int parse_replacement(const json_t *j, char *out, size_t *out_len, const char *what, sft_err *err) {
    const json_t *r = json_object_get(j, "replacement");
    if (!json_is_string(r)) return sft_errf(err, "%s: expected a one-character string \"replacement\"", what);
    size_t len = json_string_length(r);
    const char *s = json_string_value(r);
    if (!len || len > 4 || tok_utf8_valid_len((const unsigned char *)s, len) != (int)len)
        return sft_errf(err, "%s.replacement \"%s\": expected exactly one character", what, s);
    memcpy(out, s, len);
    out[len] = 0;
    *out_len = len;
    return 0;
}

static int parse_prepend_scheme(const json_t *j, enum tok_prepend_scheme *out, const char *what,
                                sft_err *err) {
    const json_t *s = json_object_get(j, "prepend_scheme");
    const json_t *legacy = json_object_get(j, "add_prefix_space");
    *out = TOK_PREPEND_ALWAYS;
    if (s && !json_is_null(s)) {
        const char *v = json_string_value(s);
        if (v && !strcmp(v, "always"))
            *out = TOK_PREPEND_ALWAYS;
        else if (v && !strcmp(v, "first"))
            *out = TOK_PREPEND_FIRST;
        else if (v && !strcmp(v, "never"))
            *out = TOK_PREPEND_NEVER;
        else
            return sft_errf(err, "%s.prepend_scheme: expected \"always\", \"first\" or \"never\"", what);
    }
    /* Files written before prepend_scheme existed say add_prefix_space. */
    if (json_is_false(legacy)) *out = TOK_PREPEND_NEVER;
    return 0;
}

static int load_one(sft_tokenizer *tok, size_t *cap, const json_t *j, int depth, sft_err *err) {
    if (!json_is_object(j)) return sft_errf(err, "pre_tokenizer: expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return sft_errf(err, "pre_tokenizer: missing \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *items = json_object_get(j, "pretokenizers");
        if (!json_is_array(items))
            return sft_errf(err, "pre_tokenizer Sequence: expected a list \"pretokenizers\"");
        if (depth > 8) return sft_errf(err, "pre_tokenizer Sequence: nested too deeply");
        for (size_t i = 0; i < json_array_size(items); i++)
            if (load_one(tok, cap, json_array_get(items, i), depth + 1, err)) return -1;
        return 0;
    }
    if (strcmp(type, "Split") && strcmp(type, "ByteLevel") && strcmp(type, "Metaspace") &&
        strcmp(type, "Digits"))
        return sft_errf(
            err,
            "pre_tokenizer type \"%s\" is not supported (sft supports Sequence, Split, ByteLevel, Metaspace, "
            "Digits)",
            type);
    if (tok->pretokenizer_count == TOK_MAX_STEPS)
        return sft_errf(err, "pre_tokenizer: more than %d steps", TOK_MAX_STEPS);
    if (tok->pretokenizer_count == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        tok_pretokenizer *l = realloc(tok->pretokenizers, n * sizeof *l);
        if (!l) return sft_errf(err, "out of memory");
        tok->pretokenizers = l;
        *cap = n;
    }
    tok_pretokenizer *p = &tok->pretokenizers[tok->pretokenizer_count];
    memset(p, 0, sizeof *p);
    if (!strcmp(type, "Split")) {
        p->type = TOK_PRE_SPLIT;
        const char *b = json_string_value(json_object_get(j, "behavior"));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        int found = -1;
        for (int i = 0; i < 5 && b; i++)
            if (!strcmp(b, names[i])) found = i;
        if (found < 0)
            return sft_errf(
                err, "pre_tokenizer Split.behavior: expected one of Removed, Isolated, MergedWithPrevious, "
                     "MergedWithNext, Contiguous");
        p->behavior = (enum tok_split_behavior)found;
        if (parse_bool(j, "invert", 0, &p->invert, "pre_tokenizer Split", err)) return -1;
        if (parse_pattern(j, "pre_tokenizer Split", &p->pattern, err)) return -1;
        tok->pretokenizer_count++;
        return 0;
    }
    if (!strcmp(type, "Digits")) {
        /* char::is_numeric (categories Nd, Nl, No), each character its own match. */
        int individual;
        if (parse_bool(j, "individual_digits", 0, &individual, "pre_tokenizer Digits", err)) return -1;
        p->type = TOK_PRE_SPLIT;
        p->behavior = individual ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        if (tok_regex_compile(&p->pattern, "\\p{N}", 5, 0, err))
            return sft_err_prefix(err, "pre_tokenizer Digits");
        tok->pretokenizer_count++;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->type = TOK_PRE_BYTE_LEVEL;
        if (parse_bool(j, "add_prefix_space", 1, &p->add_prefix_space, "pre_tokenizer ByteLevel", err) ||
            parse_bool(j, "use_regex", 1, &p->use_regex, "pre_tokenizer ByteLevel", err))
            return -1;
        if (p->use_regex && !tok->have_gpt2_regex) {
            if (tok_regex_compile(&tok->gpt2_regex, GPT2_PATTERN, strlen(GPT2_PATTERN), 0, err)) return -1;
            tok->have_gpt2_regex = 1;
        }
        tok->pretokenizer_count++;
        return 0;
    }
    p->type = TOK_PRE_METASPACE;
    if (parse_replacement(j, p->replacement, &p->replacement_len, "pre_tokenizer Metaspace", err) ||
        parse_prepend_scheme(j, &p->prepend_scheme, "pre_tokenizer Metaspace", err) ||
        parse_bool(j, "split", 1, &p->split, "pre_tokenizer Metaspace", err))
        return -1;
    tok->pretokenizer_count++;
    return 0;
}

int tok_pretokenizer_load(sft_tokenizer *tok, const json_t *j, sft_err *err) {
    if (!j || json_is_null(j)) return 0;
    size_t cap = 0;
    return load_one(tok, &cap, j, 0, err);
}

void tok_pretokenizers_free(tok_pretokenizer *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (list[i].type == TOK_PRE_SPLIT) tok_regex_free(&list[i].pattern);
    free(list);
}

/* ---------- running ---------- */

struct tok_seg {
    size_t start, end;
    int is_match;
};

static int segs_reserve(tok_ctx *ctx, size_t step, int which, size_t n) {
    if (n <= ctx->segs_cap[step][which]) return 0;
    size_t cap = ctx->segs_cap[step][which] ? ctx->segs_cap[step][which] : 64;
    while (cap < n)
        cap *= 2;
    struct tok_seg *s = realloc(ctx->segs[step][which], cap * sizeof *s);
    if (!s) return -1;
    ctx->segs[step][which] = s;
    ctx->segs_cap[step][which] = cap;
    return 0;
}

static int push_seg(tok_ctx *ctx, size_t step, int which, size_t *n, size_t start, size_t end, int is_match) {
    if (segs_reserve(ctx, step, which, *n + 1)) return -1;
    ctx->segs[step][which][(*n)++] = (struct tok_seg){start, end, is_match};
    return 0;
}

static tok_view subview(const tok_view *v, size_t start, size_t end) {
    tok_view r = {v->text + start, v->align + start, end - start};
    return r;
}

/* Maps every byte to its byte-level character (byte_level.rs pre_tokenize):
 * the first byte of a character keeps that character's alignment, the
 * following bytes are insertions aligned like the character's last byte. */
static int byte_level_transform(tok_nstr *out, const tok_view *v, sft_err *err) {
    if (tok_nstr_reserve(out, v->len * 2 + 1)) return sft_errf(err, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < v->len;) {
        size_t n = tok_unit_len(v->text + i, v->len - i);
        for (size_t k = 0; k < n; k++) {
            uint16_t cp = tok_byte_to_cp[(unsigned char)v->text[i + k]];
            tok_span a = k == 0 ? v->align[i] : v->align[i + n - 1];
            if (cp < 0x80) {
                out->text[o] = (char)cp;
                out->align[o++] = a;
            } else {
                out->text[o] = (char)(0xC0 | (cp >> 6));
                out->text[o + 1] = (char)(0x80 | (cp & 0x3F));
                out->align[o] = out->align[o + 1] = a;
                o += 2;
            }
        }
        i += n;
    }
    out->len = o;
    return 0;
}

static int next_step(const sft_tokenizer *tok, tok_ctx *ctx, const tok_view *v, size_t step, sft_err *err) {
    if (!v->len) return 0; /* tokenizers drops empty splits */
    return tok_pretokenize_and_model(tok, ctx, v, step + 1, err);
}

/* Splits v by the matches in segs[step][0] (gaps included, flags set) with a
 * split behaviour (normalizer.rs NormalizedString::split), then runs the
 * next step on each piece; with byte_level set, each piece is first mapped
 * to its byte-level characters (ByteLevel splits, then transforms). */
static int split_and_continue(const sft_tokenizer *tok, tok_ctx *ctx, const tok_view *v, size_t step,
                              size_t nseg, enum tok_split_behavior behavior, int byte_level, sft_err *err) {
    struct tok_seg *in = ctx->segs[step][0];
    size_t nout = 0;
    if (behavior == TOK_SPLIT_ISOLATED || behavior == TOK_SPLIT_REMOVED) {
        if (segs_reserve(ctx, step, 1, nseg)) return sft_errf(err, "out of memory");
        for (size_t i = 0; i < nseg; i++)
            if (behavior == TOK_SPLIT_ISOLATED || !in[i].is_match) ctx->segs[step][1][nout++] = in[i];
    } else if (behavior == TOK_SPLIT_CONTIGUOUS) {
        int prev = 0;
        for (size_t i = 0; i < nseg; i++) {
            if (in[i].is_match == prev && nout)
                ctx->segs[step][1][nout - 1].end = in[i].end;
            else if (push_seg(ctx, step, 1, &nout, in[i].start, in[i].end, 0))
                return sft_errf(err, "out of memory");
            prev = in[i].is_match;
        }
    } else if (behavior == TOK_SPLIT_MERGED_WITH_PREVIOUS) {
        int prev = 0;
        for (size_t i = 0; i < nseg; i++) {
            if (in[i].is_match && !prev && nout)
                ctx->segs[step][1][nout - 1].end = in[i].end;
            else if (push_seg(ctx, step, 1, &nout, in[i].start, in[i].end, 0))
                return sft_errf(err, "out of memory");
            prev = in[i].is_match;
        }
    } else { /* MergedWithNext: the same fold from the right */
        int prev = 0;
        for (size_t k = nseg; k-- > 0;) {
            if (in[k].is_match && !prev && nout)
                ctx->segs[step][1][nout - 1].start = in[k].start;
            else if (push_seg(ctx, step, 1, &nout, in[k].start, in[k].end, 0))
                return sft_errf(err, "out of memory");
            prev = in[k].is_match;
        }
        struct tok_seg *o = ctx->segs[step][1];
        for (size_t a = 0, b = nout ? nout - 1 : 0; a < b; a++, b--) {
            struct tok_seg t = o[a];
            o[a] = o[b];
            o[b] = t;
        }
    }
    for (size_t i = 0; i < nout; i++) {
        struct tok_seg s = ctx->segs[step][1][i];
        if (s.end <= s.start) continue;
        tok_view piece = subview(v, s.start, s.end);
        if (byte_level) {
            tok_nstr *out = &ctx->level[step][1];
            if (byte_level_transform(out, &piece, err)) return -1;
            piece = (tok_view){out->text, out->align, out->len};
        }
        if (next_step(tok, ctx, &piece, step, err)) return -1;
    }
    return 0;
}

/* Fills segs[step][0] with the matches of re in v and the gaps between them. */
static int find_segments(tok_ctx *ctx, const tok_regex *re, const tok_view *v, size_t step, int invert,
                         size_t *nseg, sft_err *err) {
    size_t n = 0, prev = 0, s, e;
    tok_find_iter it;
    tok_find_begin(&it, re, &ctx->matcher, v->text, v->len);
    int rc;
    while ((rc = tok_find_next(&it, &s, &e, err)) == 1) {
        if (prev != s && push_seg(ctx, step, 0, &n, prev, s, invert)) return sft_errf(err, "out of memory");
        if (push_seg(ctx, step, 0, &n, s, e, !invert)) return sft_errf(err, "out of memory");
        prev = e;
    }
    if (rc < 0) return -1;
    if (prev != v->len && push_seg(ctx, step, 0, &n, prev, v->len, invert))
        return sft_errf(err, "out of memory");
    *nseg = n;
    return 0;
}

static int run_metaspace(const sft_tokenizer *tok, tok_ctx *ctx, const tok_pretokenizer *p, const tok_view *v,
                         size_t step, sft_err *err) {
    tok_nstr *out = &ctx->level[step][0];
    size_t rl = p->replacement_len;
    if (tok_nstr_reserve(out, v->len * rl + rl + 1)) return sft_errf(err, "out of memory");
    /* Room for a prepended replacement at the front. */
    size_t o = rl;
    for (size_t i = 0; i < v->len; i++) {
        if (v->text[i] == ' ') {
            memcpy(out->text + o, p->replacement, rl);
            for (size_t k = 0; k < rl; k++)
                out->align[o + k] = v->align[i];
            o += rl;
        } else {
            out->text[o] = v->text[i];
            out->align[o++] = v->align[i];
        }
    }
    size_t begin = rl;
    int starts = o - rl >= rl && !memcmp(out->text + rl, p->replacement, rl);
    int prepend = !starts && (p->prepend_scheme == TOK_PREPEND_ALWAYS ||
                              (p->prepend_scheme == TOK_PREPEND_FIRST && v->len && v->align[0].start == 0));
    if (prepend && o > rl) {
        memcpy(out->text, p->replacement, rl);
        for (size_t k = 0; k < rl; k++)
            out->align[k] = out->align[rl];
        begin = 0;
    }
    tok_view whole = {out->text + begin, out->align + begin, o - begin};
    if (!p->split) return next_step(tok, ctx, &whole, step, err);
    /* Split on the replacement character, each one merged with what follows. */
    size_t n = 0, prev = 0;
    for (size_t i = 0; i + rl <= whole.len;) {
        if (!memcmp(whole.text + i, p->replacement, rl)) {
            if (prev < i && push_seg(ctx, step, 0, &n, prev, i, 0)) return sft_errf(err, "out of memory");
            if (push_seg(ctx, step, 0, &n, i, i + rl, 1)) return sft_errf(err, "out of memory");
            i += rl;
            prev = i;
        } else {
            i += tok_unit_len(whole.text + i, whole.len - i);
        }
    }
    if (prev < whole.len && push_seg(ctx, step, 0, &n, prev, whole.len, 0))
        return sft_errf(err, "out of memory");
    return split_and_continue(tok, ctx, &whole, step, n, TOK_SPLIT_MERGED_WITH_NEXT, 0, err);
}

int tok_pretokenize_and_model(const sft_tokenizer *tok, tok_ctx *ctx, const tok_view *piece, size_t step,
                              sft_err *err) {
    if (step == tok->pretokenizer_count) return tok_bpe_tokenize(&tok->bpe, ctx, piece, err);
    const tok_pretokenizer *p = &tok->pretokenizers[step];
    size_t nseg;
    if (p->type == TOK_PRE_SPLIT) {
        if (find_segments(ctx, &p->pattern, piece, step, p->invert, &nseg, err)) return -1;
        return split_and_continue(tok, ctx, piece, step, nseg, p->behavior, 0, err);
    }
    if (p->type == TOK_PRE_METASPACE) return run_metaspace(tok, ctx, p, piece, step, err);
    /* ByteLevel */
    tok_view v = *piece;
    if (p->add_prefix_space && v.len && v.text[0] != ' ') {
        tok_nstr *pre = &ctx->level[step][0];
        if (tok_nstr_reserve(pre, v.len + 2)) return sft_errf(err, "out of memory");
        pre->text[0] = ' ';
        pre->align[0] = v.align[0];
        memcpy(pre->text + 1, v.text, v.len);
        memcpy(pre->align + 1, v.align, v.len * sizeof *v.align);
        pre->len = v.len + 1;
        v = (tok_view){pre->text, pre->align, pre->len};
    }
    if (p->use_regex) {
        if (find_segments(ctx, &tok->gpt2_regex, &v, step, 0, &nseg, err)) return -1;
        return split_and_continue(tok, ctx, &v, step, nseg, TOK_SPLIT_ISOLATED, 1, err);
    }
    tok_nstr *out = &ctx->level[step][1];
    if (byte_level_transform(out, &v, err)) return -1;
    tok_view t = {out->text, out->align, out->len};
    return next_step(tok, ctx, &t, step, err);
}
