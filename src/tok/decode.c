/* decode.c: ids back to text, as tokenizers' Tokenizer::decode: each id
 * becomes its token string (added tokens first, unknown ids dropped, special
 * tokens dropped when asked), then the decoder chain of tokenizer.json runs
 * over the list of strings (tokenizers/src/decoders): ByteLevel, Metaspace,
 * Replace, ByteFallback, Fuse, Strip, or a Sequence of them; the results
 * are concatenated. Without a decoder the tokens are joined by spaces. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ---------- loading ---------- */

static int load_one(tok_decoder **list, size_t *count, size_t *cap, const json_t *j, int depth,
                    sft_err *err) {
    if (!json_is_object(j)) return sft_errf(err, "decoder: expected an object");
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return sft_errf(err, "decoder: missing \"type\"");
    if (!strcmp(type, "Sequence")) {
        const json_t *items = json_object_get(j, "decoders");
        if (!json_is_array(items)) return sft_errf(err, "decoder Sequence: expected a list \"decoders\"");
        if (depth > 8) return sft_errf(err, "decoder Sequence: nested too deeply");
        for (size_t i = 0; i < json_array_size(items); i++)
            if (load_one(list, count, cap, json_array_get(items, i), depth + 1, err)) return -1;
        return 0;
    }
    static const char *names[] = {"ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip"};
    int type_index = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(type, names[i])) type_index = i;
    if (type_index < 0)
        return sft_errf(
            err,
            "decoder type \"%s\" is not supported (sft supports Sequence, ByteLevel, Metaspace, Replace, "
            "ByteFallback, Fuse, Strip)",
            type);
    if (*count == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        tok_decoder *l = realloc(*list, n * sizeof *l);
        if (!l) return sft_errf(err, "out of memory");
        *list = l;
        *cap = n;
    }
    tok_decoder *d = &(*list)[*count];
    memset(d, 0, sizeof *d);
    switch (type_index) {
    case 0:
        d->type = TOK_DEC_BYTE_LEVEL;
        break;
    case 1: {
        d->type = TOK_DEC_METASPACE;
        const json_t *r = json_object_get(j, "replacement");
        size_t len = json_string_length(r);
        if (!json_is_string(r) || !len || len > 4 ||
            tok_utf8_valid_len((const unsigned char *)json_string_value(r), len) != (int)len)
            return sft_errf(err, "decoder Metaspace: expected a one-character string \"replacement\"");
        memcpy(d->replacement, json_string_value(r), len);
        d->replacement_len = len;
        d->prepend_scheme = TOK_PREPEND_ALWAYS;
        const char *s = json_string_value(json_object_get(j, "prepend_scheme"));
        if (s && !strcmp(s, "first"))
            d->prepend_scheme = TOK_PREPEND_FIRST;
        else if (s && !strcmp(s, "never"))
            d->prepend_scheme = TOK_PREPEND_NEVER;
        else if (s && strcmp(s, "always"))
            return sft_errf(err,
                            "decoder Metaspace.prepend_scheme: expected \"always\", \"first\" or \"never\"");
        if (json_is_false(json_object_get(j, "add_prefix_space"))) d->prepend_scheme = TOK_PREPEND_NEVER;
        break;
    }
    case 2: {
        d->type = TOK_DEC_REPLACE;
        const json_t *pattern = json_object_get(j, "pattern"), *content = json_object_get(j, "content");
        const json_t *str = json_object_get(pattern, "String"), *rx = json_object_get(pattern, "Regex");
        if (!json_is_string(content) || !(json_is_string(str) || json_is_string(rx)))
            return sft_errf(
                err, "decoder Replace: expected \"pattern\": {\"String\" or \"Regex\": ...} and \"content\"");
        const json_t *p = str ? str : rx;
        if (tok_regex_compile(&d->pattern, json_string_value(p), json_string_length(p), str != NULL, err))
            return sft_err_prefix(err, "decoder Replace");
        (*count)++;
        d->content_len = json_string_length(content);
        d->content = malloc(d->content_len + 1);
        if (!d->content) return sft_errf(err, "out of memory");
        memcpy(d->content, json_string_value(content), d->content_len + 1);
        return 0;
    }
    case 3:
        d->type = TOK_DEC_BYTE_FALLBACK;
        break;
    case 4:
        d->type = TOK_DEC_FUSE;
        break;
    default: {
        d->type = TOK_DEC_STRIP;
        const json_t *c = json_object_get(j, "content");
        size_t len = json_string_length(c);
        int64_t start = 0, stop = 0;
        if (!json_is_string(c) || !len || len > 4 ||
            tok_utf8_valid_len((const unsigned char *)json_string_value(c), len) != (int)len)
            return sft_errf(err, "decoder Strip: expected a one-character string \"content\"");
        if (sft_json_get_int(j, "start", &start, "decoder Strip", err) ||
            sft_json_get_int(j, "stop", &stop, "decoder Strip", err))
            return -1;
        if (start < 0 || stop < 0) return sft_errf(err, "decoder Strip: start and stop must be >= 0");
        d->content = malloc(len + 1);
        if (!d->content) return sft_errf(err, "out of memory");
        memcpy(d->content, json_string_value(c), len + 1);
        d->content_len = len;
        d->strip_start = (size_t)start;
        d->strip_stop = (size_t)stop;
        break;
    }
    }
    (*count)++;
    return 0;
}

int tok_decoder_load(tok_decoder **list, size_t *count, const json_t *j, sft_err *err) {
    *list = NULL;
    *count = 0;
    if (!j || json_is_null(j)) return 0;
    size_t cap = 0;
    if (load_one(list, count, &cap, j, 0, err)) {
        tok_decoders_free(*list, *count);
        *list = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

void tok_decoders_free(tok_decoder *list, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (list[i].type == TOK_DEC_REPLACE) tok_regex_free(&list[i].pattern);
        free(list[i].content);
    }
    free(list);
}

/* ---------- the chain ---------- */

/* A list of strings in one arena. */
typedef struct {
    tok_buf text;
    size_t *off, *len;
    size_t count, cap;
} strlist;

static int strlist_push(strlist *l, const char *s, size_t len) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (o) l->off = o;
        size_t *n = realloc(l->len, cap * sizeof *n);
        if (n) l->len = n;
        if (!o || !n) return -1;
        l->cap = cap;
    }
    l->off[l->count] = l->text.len;
    l->len[l->count] = len;
    /* Reserve even for "" so that every item points into an allocated arena. */
    if (tok_buf_reserve(&l->text, len + 1) || tok_buf_append(&l->text, s, len)) return -1;
    l->count++;
    return 0;
}

/* Starts a new string at the end of the arena; extend with tok_buf_append, close with strlist_close. */
static int strlist_open(strlist *l) {
    return strlist_push(l, "", 0);
}
static void strlist_close(strlist *l) {
    l->len[l->count - 1] = l->text.len - l->off[l->count - 1];
}

static void strlist_free(strlist *l) {
    tok_buf_free(&l->text);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static const char *item(const strlist *l, size_t i) {
    return l->text.data + l->off[i];
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* byte_fallback.rs: the byte a "<0xNN>" token stands for, or -1. (Rust's
 * u8::from_str_radix also takes a leading '+', hence "<0x+F>".) */
static int fallback_byte(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int flush_bytes(strlist *out, tok_buf *bytes) {
    if (!bytes->len) return 0;
    int rc = 0;
    if (tok_utf8_is_valid(bytes->data, bytes->len))
        rc = strlist_push(out, bytes->data, bytes->len);
    else
        for (size_t k = 0; k < bytes->len && !rc; k++)
            rc = strlist_push(out, "\xEF\xBF\xBD", 3);
    bytes->len = 0;
    return rc;
}

static int run_decoder(const tok_decoder *d, tok_matcher *mt, const strlist *in, strlist *out, sft_err *err) {
    out->count = 0;
    out->text.len = 0;
    switch (d->type) {
    case TOK_DEC_BYTE_LEVEL: {
        tok_buf bytes = {0};
        int rc = 0;
        for (size_t i = 0; i < in->count && !rc; i++) {
            const char *s = item(in, i);
            size_t len = in->len[i], mark = bytes.len;
            int all = 1;
            for (size_t k = 0; k < len && all;) {
                int n = tok_utf8_valid_len((const unsigned char *)s + k, len - k);
                int b = n ? tok_cp_to_byte(tok_utf8_decode((const unsigned char *)s + k)) : -1;
                if (b < 0) {
                    all = 0;
                    break;
                }
                char c = (char)b;
                rc = tok_buf_append(&bytes, &c, 1);
                k += (size_t)n;
            }
            /* A token with a character outside the byte alphabet is taken as it is. */
            if (!all) {
                bytes.len = mark;
                rc = tok_buf_append(&bytes, s, len);
            }
        }
        if (!rc && !(rc = strlist_open(out)) && !(rc = tok_buf_reserve(&out->text, bytes.len * 3 + 1))) {
            out->text.len +=
                tok_utf8_lossy(bytes.data ? bytes.data : "", bytes.len, out->text.data + out->text.len);
            strlist_close(out);
        }
        tok_buf_free(&bytes);
        return rc ? sft_errf(err, "out of memory") : 0;
    }
    case TOK_DEC_METASPACE:
        for (size_t i = 0; i < in->count; i++) {
            const char *s = item(in, i);
            size_t len = in->len[i];
            if (strlist_open(out)) return sft_errf(err, "out of memory");
            for (size_t k = 0; k < len;) {
                size_t n = tok_unit_len(s + k, len - k);
                int rc = 0;
                if (n == d->replacement_len && !memcmp(s + k, d->replacement, n)) {
                    if (!(i == 0 && d->prepend_scheme != TOK_PREPEND_NEVER))
                        rc = tok_buf_append(&out->text, " ", 1);
                } else
                    rc = tok_buf_append(&out->text, s + k, n);
                if (rc) return sft_errf(err, "out of memory");
                k += n;
            }
            strlist_close(out);
        }
        return 0;
    case TOK_DEC_REPLACE:
        for (size_t i = 0; i < in->count; i++) {
            const char *s = item(in, i);
            size_t len = in->len[i], last = 0, ms, me;
            if (strlist_open(out)) return sft_errf(err, "out of memory");
            tok_find_iter it;
            tok_find_begin(&it, &d->pattern, mt, s, len);
            int rc;
            while ((rc = tok_find_next(&it, &ms, &me, err)) == 1) {
                if (tok_buf_append(&out->text, s + last, ms - last) ||
                    tok_buf_append(&out->text, d->content, d->content_len))
                    return sft_errf(err, "out of memory");
                last = me;
            }
            if (rc < 0) return -1;
            if (tok_buf_append(&out->text, s + last, len - last)) return sft_errf(err, "out of memory");
            strlist_close(out);
        }
        return 0;
    case TOK_DEC_BYTE_FALLBACK: {
        tok_buf bytes = {0};
        int rc = 0;
        for (size_t i = 0; i < in->count && !rc; i++) {
            int b = fallback_byte(item(in, i), in->len[i]);
            if (b >= 0) {
                char c = (char)b;
                rc = tok_buf_append(&bytes, &c, 1);
            } else {
                rc = flush_bytes(out, &bytes);
                if (!rc) rc = strlist_push(out, item(in, i), in->len[i]);
            }
        }
        if (!rc) rc = flush_bytes(out, &bytes);
        tok_buf_free(&bytes);
        return rc ? sft_errf(err, "out of memory") : 0;
    }
    case TOK_DEC_FUSE:
        if (strlist_open(out)) return sft_errf(err, "out of memory");
        for (size_t i = 0; i < in->count; i++)
            if (tok_buf_append(&out->text, item(in, i), in->len[i])) return sft_errf(err, "out of memory");
        strlist_close(out);
        return 0;
    case TOK_DEC_STRIP:
        for (size_t i = 0; i < in->count; i++) {
            const char *s = item(in, i);
            size_t len = in->len[i], cl = d->content_len;
            size_t begin = 0, end = len;
            for (size_t k = 0; k < d->strip_start && begin + cl <= end && !memcmp(s + begin, d->content, cl);
                 k++)
                begin += cl;
            for (size_t k = 0;
                 k < d->strip_stop && end >= begin + cl && !memcmp(s + end - cl, d->content, cl); k++)
                end -= cl;
            if (strlist_push(out, s + begin, end - begin)) return sft_errf(err, "out of memory");
        }
        return 0;
    }
    return 0;
}

int sft_tokenizer_decode(const sft_tokenizer *tok, const int32_t *ids, size_t count, int skip_special,
                         char **text, size_t *len, sft_err *err) {
    *text = NULL;
    *len = 0;
    strlist a = {0}, b = {0};
    tok_matcher mt;
    if (tok_matcher_init(&mt, err)) return -1;
    int rc = -1;
    for (size_t i = 0; i < count; i++) {
        size_t tlen;
        const char *t = tok_id_string(tok, ids[i], &tlen);
        if (!t) continue; /* an id outside the vocabulary decodes to nothing, as in tokenizers */
        if (skip_special && tok_is_special(tok, t, tlen)) continue;
        if (strlist_push(&a, t, tlen)) {
            sft_errf(err, "out of memory");
            goto done;
        }
    }
    strlist *cur = &a, *next = &b;
    for (size_t k = 0; k < tok->decoder_count; k++) {
        if (run_decoder(&tok->decoders[k], &mt, cur, next, err)) goto done;
        strlist *t = cur;
        cur = next;
        next = t;
    }
    tok_buf joined = {0};
    for (size_t i = 0; i < cur->count; i++) {
        if (!tok->decoder_count && i && tok_buf_append(&joined, " ", 1)) goto oom;
        if (tok_buf_append(&joined, item(cur, i), cur->len[i])) goto oom;
    }
    if (tok_buf_append(&joined, "", 1)) goto oom;
    *text = joined.data;
    *len = joined.len - 1;
    rc = 0;
    goto done;
oom:
    tok_buf_free(&joined);
    sft_errf(err, "out of memory");
done:
    strlist_free(&a);
    strlist_free(&b);
    tok_matcher_free(&mt);
    return rc;
}
