/* postprocess.c: tokenizer.json post-processors (tokenizers/src/processors):
 *   ByteLevel           offsets trimmed of leading/trailing spaces when
 *                       trim_offsets (byte_level.rs process_offsets);
 *   TemplateProcessing  the "single" template's special tokens around the
 *                       sequence when special tokens are asked for (BOS for
 *                       Llama 2 and 3);
 *   Sequence            of these, in order.
 * They run on every encoding, as in tokenizers (TemplateProcessing only adds
 * tokens with add_special_tokens). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

static void free_pieces(tok_template_piece *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(p[i].ids);
        for (size_t k = 0; k < p[i].count; k++)
            free(p[i].tokens[k]);
        free(p[i].tokens);
    }
    free(p);
}

/* Fills a special piece from special_tokens[id]. */
static int special_piece(tok_template_piece *piece, const char *id, const json_t *specials, sft_err *err) {
    const json_t *st = json_object_get(specials, id);
    const json_t *ids = json_object_get(st, "ids"), *tokens = json_object_get(st, "tokens");
    if (!json_is_array(ids) || !json_is_array(tokens) || json_array_size(ids) != json_array_size(tokens))
        return sft_errf(
            err,
            "post_processor TemplateProcessing: special token \"%s\" is missing from special_tokens "
            "(or its ids and tokens differ in length)",
            id);
    size_t n = json_array_size(ids);
    piece->ids = calloc(n ? n : 1, sizeof *piece->ids);
    piece->tokens = calloc(n ? n : 1, sizeof *piece->tokens);
    if (!piece->ids || !piece->tokens) return sft_errf(err, "out of memory");
    for (size_t k = 0; k < n; k++) {
        int64_t v;
        const json_t *t = json_array_get(tokens, k);
        if (sft_json_int(json_array_get(ids, k), &v) || v < 0 || v > INT32_MAX || !json_is_string(t))
            return sft_errf(err, "post_processor TemplateProcessing: special token \"%s\": bad ids/tokens",
                            id);
        piece->ids[k] = (int32_t)v;
        piece->tokens[k] = strdup(json_string_value(t));
        if (!piece->tokens[k]) return sft_errf(err, "out of memory");
        piece->count = k + 1;
    }
    return 0;
}

/* A template piece: {"SpecialToken": {"id": ...}}, {"Sequence": {"id": "A"}}, or the
 * string forms "$A", "$B", "$", "$0", "[CLS]", each with an optional ":type_id". */
static int parse_piece(tok_template_piece *piece, const json_t *j, const json_t *specials, sft_err *err) {
    memset(piece, 0, sizeof *piece);
    if (json_is_string(j)) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", json_string_value(j));
        char *colon = strrchr(buf, ':');
        if (colon && colon != buf) *colon = 0;
        if (buf[0] == '$') {
            piece->is_sequence = 1;
            piece->sequence_index = !strcmp(buf + 1, "B") || !strcmp(buf + 1, "b") ? 1 : 0;
            return 0;
        }
        return special_piece(piece, buf, specials, err);
    }
    const json_t *seq = json_object_get(j, "Sequence"), *sp = json_object_get(j, "SpecialToken");
    if (seq) {
        const char *id = json_string_value(json_object_get(seq, "id"));
        if (!id || (strcmp(id, "A") && strcmp(id, "B")))
            return sft_errf(err, "post_processor TemplateProcessing: Sequence id must be \"A\" or \"B\"");
        piece->is_sequence = 1;
        piece->sequence_index = !strcmp(id, "B");
        return 0;
    }
    const char *id = sp ? json_string_value(json_object_get(sp, "id")) : NULL;
    if (!id)
        return sft_errf(err, "post_processor TemplateProcessing: expected SpecialToken or Sequence pieces");
    return special_piece(piece, id, specials, err);
}

static int load_one(sft_tokenizer *tok, size_t *cap, const json_t *j, int depth, sft_err *err) {
    if (!json_is_object(j)) return sft_errf(err, "post_processor: expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return sft_errf(err, "post_processor: missing \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *items = json_object_get(j, "processors");
        if (!json_is_array(items))
            return sft_errf(err, "post_processor Sequence: expected a list \"processors\"");
        if (depth > 8) return sft_errf(err, "post_processor Sequence: nested too deeply");
        for (size_t i = 0; i < json_array_size(items); i++)
            if (load_one(tok, cap, json_array_get(items, i), depth + 1, err)) return -1;
        return 0;
    }
    if (strcmp(type, "ByteLevel") && strcmp(type, "TemplateProcessing"))
        return sft_errf(err,
                        "post_processor type \"%s\" is not supported (sft supports Sequence, ByteLevel, "
                        "TemplateProcessing)",
                        type);
    if (tok->post_count == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        tok_postprocessor *l = realloc(tok->post, n * sizeof *l);
        if (!l) return sft_errf(err, "out of memory");
        tok->post = l;
        *cap = n;
    }
    tok_postprocessor *p = &tok->post[tok->post_count];
    memset(p, 0, sizeof *p);
    if (!strcmp(type, "ByteLevel")) {
        p->type = TOK_POST_BYTE_LEVEL;
        const json_t *t = json_object_get(j, "trim_offsets"), *a = json_object_get(j, "add_prefix_space");
        p->trim_offsets = t ? json_is_true(t) : 1;
        p->add_prefix_space = a ? json_is_true(a) : 1;
        tok->post_count++;
        return 0;
    }
    p->type = TOK_POST_TEMPLATE;
    tok->post_count++; /* counted first so that a failure below frees what was parsed */
    const json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single))
        return sft_errf(err, "post_processor TemplateProcessing: expected a list \"single\"");
    size_t n = json_array_size(single);
    p->single = calloc(n ? n : 1, sizeof *p->single);
    if (!p->single) return sft_errf(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        p->single_count = i + 1;
        if (parse_piece(&p->single[i], json_array_get(single, i), specials, err)) return -1;
        if (p->single[i].is_sequence && p->single[i].sequence_index == 1)
            return sft_errf(err, "post_processor TemplateProcessing: the single template names sequence B");
    }
    return 0;
}

int tok_postprocessor_load(sft_tokenizer *tok, const json_t *j, sft_err *err) {
    if (!j || json_is_null(j)) return 0;
    size_t cap = 0;
    return load_one(tok, &cap, j, 0, err);
}

void tok_postprocessors_free(tok_postprocessor *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (list[i].type == TOK_POST_TEMPLATE) free_pieces(list[i].single, list[i].single_count);
    free(list);
}

/* Counts the leading (or trailing) characters of a token that are the
 * byte-level space 'Ġ' or Unicode white space; returns their byte length
 * in the original text ('Ġ' stands for one byte). */
static size_t space_run(const sft_tokenizer *tok, tok_matcher *mt, const char *s, size_t len, int from_end,
                        size_t *chars) {
    size_t bytes = 0, i = 0, end = len;
    *chars = 0;
    while (from_end ? end > 0 : i < len) {
        size_t at, n;
        if (from_end) {
            at = end - 1;
            while (at > 0 && end - at < 4 && ((unsigned char)s[at] & 0xC0) == 0x80)
                at--;
            n = end - at;
        } else {
            at = i;
            n = tok_unit_len(s + i, len - i);
        }
        int is_space;
        if (n == 2 && (unsigned char)s[at] == 0xC4 && (unsigned char)s[at + 1] == 0xA0) { /* U+0120 'Ġ' */
            is_space = 1;
            bytes += 1;
        } else {
            int rc = pcre2_match(tok->space_char_regex.code, (PCRE2_SPTR)(s + at), n, 0, PCRE2_ANCHORED,
                                 mt->md, mt->mctx);
            is_space = rc >= 0 && pcre2_get_ovector_pointer(mt->md)[1] == n;
            if (is_space) bytes += n;
        }
        if (!is_space) break;
        (*chars)++;
        if (from_end)
            end = at;
        else
            i += n;
    }
    return bytes;
}

static void trim_offsets(const sft_tokenizer *tok, tok_ctx *ctx, const tok_postprocessor *p) {
    sft_encoding *e = ctx->out;
    for (size_t i = 0; i < e->count; i++) {
        const char *t = tok_encoding_token(ctx, i);
        if (!t) continue;
        size_t len = strlen(t), lead_chars, trail_chars;
        size_t lead = space_run(tok, &ctx->matcher, t, len, 0, &lead_chars);
        size_t trail = space_run(tok, &ctx->matcher, t, len, 1, &trail_chars);
        size_t *o = &e->offsets[2 * i];
        if (lead_chars) {
            int is_first = i == 0 || o[0] == 0;
            if (!(is_first && p->add_prefix_space && lead_chars == 1))
                o[0] = o[0] + lead < o[1] ? o[0] + lead : o[1];
        }
        if (trail_chars && o[1] >= trail) o[1] = o[1] - trail > o[0] ? o[1] - trail : o[0];
    }
}

int tok_postprocess(const sft_tokenizer *tok, tok_ctx *ctx, int add_special, sft_err *err) {
    for (size_t k = 0; k < tok->post_count; k++) {
        const tok_postprocessor *p = &tok->post[k];
        if (p->type == TOK_POST_BYTE_LEVEL) {
            if (p->trim_offsets) trim_offsets(tok, ctx, p);
            continue;
        }
        if (!add_special) continue;
        if (tok_encoding_wrap(ctx, p->single, p->single_count, err)) return -1;
    }
    return 0;
}
