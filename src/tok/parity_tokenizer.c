/* parity_tokenizer.c: `sft parity` for tokenizers (see parity.h). Every
 * string of a tokenizer_* entry is encoded with and without special tokens
 * and decoded; ids, token strings, offsets and the decoded text must equal
 * the reference made by the tokenizers library. Its offsets are Python
 * character offsets, so ours (bytes) are converted the way tokenizers'
 * BytesToCharOffsetConverter does. A failure line shows where the first
 * difference is, with both sides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "tok/parity.h"
#include "tok/parity_chat.h"
#include "tok/tokenizer.h"

/* A short quoted excerpt of a string for failure lines. */
static void quote(char *buf, size_t cap, const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            n += (size_t)snprintf(buf + n, cap - n, "\\n");
        else if (c == '"' || c == '\\')
            n += (size_t)snprintf(buf + n, cap - n, "\\%c", c);
        else if (c < 0x20)
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
        else
            buf[n++] = (char)c;
    }
    if (n + 8 >= cap) n += (size_t)snprintf(buf + n, cap - n, "...");
    buf[n < cap ? n : cap - 1] = 0;
}

/* Compares ids with a JSON array; on a mismatch writes what differs into why. */
static int same_ids(const int32_t *ids, size_t n, const json_t *want, const sft_tokenizer *tok, char *why,
                    size_t cap) {
    if (!json_is_array(want)) {
        snprintf(why, cap, "the reference has no id list");
        return 0;
    }
    size_t wn = json_array_size(want);
    for (size_t i = 0; i < n && i < wn; i++) {
        int64_t w;
        if (sft_json_int(json_array_get(want, i), &w) || w != ids[i]) {
            const char *got = sft_tokenizer_id_to_token(tok, ids[i]);
            const char *exp = sft_tokenizer_id_to_token(tok, (int32_t)w);
            char a[64], b[64];
            quote(a, sizeof a, got ? got : "?", got ? strlen(got) : 1);
            quote(b, sizeof b, exp ? exp : "?", exp ? strlen(exp) : 1);
            snprintf(why, cap, "differ at token %zu: got %d \"%s\", expected %lld \"%s\" (%zu vs %zu tokens)",
                     i, ids[i], a, (long long)w, b, n, wn);
            return 0;
        }
    }
    if (n != wn) {
        snprintf(why, cap, "%zu tokens, expected %zu (equal up to the shorter)", n, wn);
        return 0;
    }
    return 1;
}

static int same_tokens(const sft_encoding *enc, const json_t *want, char *why, size_t cap) {
    if (!json_is_array(want) || json_array_size(want) != enc->count) {
        snprintf(why, cap, "%zu tokens, the reference has %zu", enc->count, json_array_size(want));
        return 0;
    }
    for (size_t i = 0; i < enc->count; i++) {
        const json_t *w = json_array_get(want, i);
        const char *got = enc->tokens[i] ? enc->tokens[i] : "";
        if (!json_is_string(w) || strlen(got) != json_string_length(w) ||
            memcmp(got, json_string_value(w), strlen(got))) {
            char a[64], b[64];
            quote(a, sizeof a, got, strlen(got));
            quote(b, sizeof b, json_is_string(w) ? json_string_value(w) : "?",
                  json_is_string(w) ? json_string_length(w) : 1);
            snprintf(why, cap, "token %zu is \"%s\", expected \"%s\"", i, a, b);
            return 0;
        }
    }
    return 1;
}

/* Byte index -> index of the character holding it (BytesToCharOffsetConverter's map). */
static size_t *char_map(const char *text, size_t len, size_t *chars_out) {
    size_t *map = malloc((len + 1) * sizeof *map);
    if (!map) return NULL;
    size_t chars = 0;
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        unsigned char c = (unsigned char)text[i];
        if (c >= 0xF0)
            n = 4;
        else if (c >= 0xE0)
            n = 3;
        else if (c >= 0xC0)
            n = 2;
        for (size_t k = 0; k < n && i + k < len; k++)
            map[i + k] = chars;
        chars++;
        i += n;
    }
    *chars_out = chars;
    return map;
}

/* Byte offsets -> Python character offsets, as BytesToCharOffsetConverter::convert. */
static void char_offsets(const size_t *map, size_t len, size_t start, size_t end, size_t *cs, size_t *ce) {
    if (start >= len) {
        *cs = start; /* not in the map: tokenizers leaves the offsets as they are */
        *ce = end;
        return;
    }
    *cs = map[start];
    *ce = end < len ? map[end] : (end ? map[end - 1] + 1 : *cs + 1);
}

static int same_offsets(const sft_encoding *enc, const char *text, size_t len, const json_t *want, char *why,
                        size_t cap) {
    if (!json_is_array(want) || json_array_size(want) != enc->count) {
        snprintf(why, cap, "%zu offsets, the reference has %zu", enc->count, json_array_size(want));
        return 0;
    }
    size_t chars;
    size_t *map = char_map(text, len, &chars);
    if (!map) {
        snprintf(why, cap, "out of memory");
        return 0;
    }
    int ok = 1;
    for (size_t i = 0; i < enc->count && ok; i++) {
        size_t cs, ce;
        int64_t ws, we;
        char_offsets(map, len, enc->offsets[2 * i], enc->offsets[2 * i + 1], &cs, &ce);
        const json_t *w = json_array_get(want, i);
        if (sft_json_int(json_array_get(w, 0), &ws) || sft_json_int(json_array_get(w, 1), &we) ||
            (size_t)ws != cs || (size_t)we != ce) {
            snprintf(why, cap, "token %zu \"%s\" at characters [%zu, %zu), expected [%lld, %lld)", i,
                     enc->tokens[i] ? enc->tokens[i] : "", cs, ce, (long long)ws, (long long)we);
            ok = 0;
        }
    }
    free(map);
    return ok;
}

static void check_string(const sft_tokenizer *tok, const char *key, size_t i, const json_t *item,
                         sft_parity *p, sft_encoding *enc) {
    const json_t *text_j = json_object_get(item, "text");
    if (!json_is_string(text_j)) {
        sft_parity_line(p, 0, "%s strings[%zu]: no 'text'", key, i);
        return;
    }
    const char *text = json_string_value(text_j);
    size_t len = json_string_length(text_j);
    char shown[48], why[512];
    quote(shown, sizeof shown, text, len);
    sft_err err;
    if (sft_tokenizer_encode(tok, text, len, 0, enc, &err)) {
        sft_parity_line(p, 0, "%s strings[%zu] \"%s\": %s", key, i, shown, err.msg);
        return;
    }
    int ok = same_ids(enc->ids, enc->count, json_object_get(item, "ids"), tok, why, sizeof why);
    sft_parity_line(p, ok, "%s strings[%zu] \"%s\" ids%s%s", key, i, shown, ok ? "" : ": ", ok ? "" : why);
    ok = same_tokens(enc, json_object_get(item, "tokens"), why, sizeof why);
    sft_parity_line(p, ok, "%s strings[%zu] \"%s\" tokens%s%s", key, i, shown, ok ? "" : ": ", ok ? "" : why);
    if (json_object_get(item, "offsets")) {
        ok = same_offsets(enc, text, len, json_object_get(item, "offsets"), why, sizeof why);
        sft_parity_line(p, ok, "%s strings[%zu] \"%s\" offsets%s%s", key, i, shown, ok ? "" : ": ",
                        ok ? "" : why);
    }
    const json_t *want_dec = json_object_get(item, "decoded");
    if (want_dec) {
        char *dec;
        size_t dec_len;
        if (sft_tokenizer_decode(tok, enc->ids, enc->count, 0, &dec, &dec_len, &err)) {
            sft_parity_line(p, 0, "%s strings[%zu] \"%s\" decoded: %s", key, i, shown, err.msg);
        } else {
            ok = json_is_string(want_dec) && json_string_length(want_dec) == dec_len &&
                 !memcmp(dec, json_string_value(want_dec), dec_len);
            char got[96];
            quote(got, sizeof got, dec, dec_len);
            sft_parity_line(p, ok, "%s strings[%zu] \"%s\" decoded%s%s%s", key, i, shown,
                            ok ? "" : ": got \"", ok ? "" : got, ok ? "" : "\"");
            free(dec);
        }
    }
    if (json_object_get(item, "ids_with_special")) {
        if (sft_tokenizer_encode(tok, text, len, 1, enc, &err)) {
            sft_parity_line(p, 0, "%s strings[%zu] \"%s\" ids_with_special: %s", key, i, shown, err.msg);
            return;
        }
        ok = same_ids(enc->ids, enc->count, json_object_get(item, "ids_with_special"), tok, why, sizeof why);
        sft_parity_line(p, ok, "%s strings[%zu] \"%s\" ids_with_special%s%s", key, i, shown, ok ? "" : ": ",
                        ok ? "" : why);
    }
}

static sft_tokenizer *load_from_entry(const json_t *entry, const char *dir, const char *label, sft_err *err) {
    const char *sub = json_string_value(json_object_get(entry, "dir"));
    if (!sub) {
        sft_errf(err, "%s: no 'dir' naming the tokenizer folder", label);
        return NULL;
    }
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, sub, err)) return NULL;
    return sft_tokenizer_load(path, err);
}

int sft_parity_check_tokenizer(const json_t *entry, const char *key, const char *dir, sft_parity *p,
                               sft_err *err) {
    sft_tokenizer *tok = load_from_entry(entry, dir, key, err);
    if (!tok) return -1;
    const json_t *strings = json_object_get(entry, "strings");
    sft_encoding enc = {0};
    for (size_t i = 0; i < json_array_size(strings); i++)
        check_string(tok, key, i, json_array_get(strings, i), p, &enc);
    sft_encoding_free(&enc);
    int rc = 0;
    const json_t *chats = json_object_get(entry, "chat");
    if (chats) rc = sft_parity_check_chats(chats, tok, key, p, err);
    sft_tokenizer_free(tok);
    return rc;
}

/* The strings of the corpus for one tokenizer: ids and decoded text. */
static void check_corpus_strings(const sft_tokenizer *tok, const char *name, const json_t *strings,
                                 const json_t *ids, const json_t *decoded, sft_parity *p, long *failed_out) {
    sft_encoding enc = {0};
    long failed = 0;
    size_t n = json_array_size(strings);
    char label[160];
    snprintf(label, sizeof label, "corpus %s", name);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(strings, i);
        char shown[48], why[512];
        quote(shown, sizeof shown, json_string_value(s), json_string_length(s));
        sft_err err;
        int ok;
        if (sft_tokenizer_encode(tok, json_string_value(s), json_string_length(s), 0, &enc, &err)) {
            sft_parity_line(p, 0, "%s strings[%zu] \"%s\": %s", label, i, shown, err.msg);
            failed++;
            continue;
        }
        ok = same_ids(enc.ids, enc.count, json_array_get(ids, i), tok, why, sizeof why);
        sft_parity_line(p, ok, "%s strings[%zu] \"%s\" ids%s%s", label, i, shown, ok ? "" : ": ",
                        ok ? "" : why);
        failed += !ok;
        const json_t *want = json_array_get(decoded, i);
        if (!want) continue;
        char *dec;
        size_t dec_len;
        if (sft_tokenizer_decode(tok, enc.ids, enc.count, 0, &dec, &dec_len, &err)) {
            sft_parity_line(p, 0, "%s strings[%zu] decoded: %s", label, i, err.msg);
            failed++;
            continue;
        }
        ok = json_is_string(want) && json_string_length(want) == dec_len &&
             !memcmp(dec, json_string_value(want), dec_len);
        char got[96];
        quote(got, sizeof got, dec, dec_len);
        sft_parity_line(p, ok, "%s strings[%zu] \"%s\" decoded%s%s%s", label, i, shown, ok ? "" : ": got \"",
                        ok ? "" : got, ok ? "" : "\"");
        failed += !ok;
        free(dec);
    }
    sft_encoding_free(&enc);
    *failed_out = failed;
}

int sft_parity_check_corpus(const char *dir, sft_parity *p, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "corpus/reference_corpus.json.gz", err)) return -1;
    if (!sft_file_exists(path)) return 0;
    char *text;
    size_t len;
    if (sft_read_file_maybe_gz(path, &text, &len, err)) return -1;
    json_t *corpus = sft_json_loadb(text, len, path, err);
    free(text);
    if (!corpus) return -1;
    const json_t *strings = json_object_get(corpus, "strings");
    json_t *toks = json_object_get(corpus, "tokenizers");
    int rc = 0;
    if (!json_is_array(strings) || !json_is_object(toks)) {
        json_decref(corpus);
        return sft_errf(err, "%s: expected {\"strings\": [...], \"tokenizers\": {...}}", path);
    }
    const char *name;
    json_t *entry;
    json_object_foreach(toks, name, entry) {
        char label[160];
        snprintf(label, sizeof label, "corpus %s", name);
        long checks_before = p->checks, failures_before = p->failures, string_failures = 0;
        sft_err terr;
        sft_tokenizer *tok = load_from_entry(entry, dir, label, &terr);
        if (!tok) {
            sft_parity_line(p, 0, "%s: %s", label, terr.msg);
            continue;
        }
        const json_t *ids = json_object_get(entry, "ids"), *decoded = json_object_get(entry, "decoded");
        if (!json_is_array(ids) || json_array_size(ids) != json_array_size(strings)) {
            sft_parity_line(p, 0, "%s: 'ids' must have one list per corpus string", label);
        } else {
            check_corpus_strings(tok, name, strings, ids, decoded, p, &string_failures);
        }
        const json_t *chats = json_object_get(entry, "chat");
        if (chats && sft_parity_check_chats(chats, tok, label, p, &terr))
            sft_parity_line(p, 0, "%s chats: %s", label, terr.msg);
        sft_tokenizer_free(tok);
        long failed = p->failures - failures_before;
        fprintf(p->out, "%s %s: %zu strings, %zu chats, %ld checks, %ld failed\n", failed ? "FAIL" : "ok  ",
                label, json_array_size(strings), json_array_size(chats), p->checks - checks_before, failed);
    }
    json_decref(corpus);
    return rc;
}
