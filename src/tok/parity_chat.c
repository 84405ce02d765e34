/* parity_chat.c: chat-template parity checks (see parity_chat.h). Each
 * failure line says where the first difference is and shows both sides, so
 * that a mismatch can be read without a debugger. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/parity.h"
#include "tok/parity_chat.h"
#include "tok/template_json.h"

/* A short printable excerpt of s[at - 20 .. at + 20) with escapes. */
static void excerpt(char *buf, size_t cap, const char *s, size_t len, size_t at) {
    size_t from = at > 20 ? at - 20 : 0, to = at + 20 < len ? at + 20 : len, n = 0;
    for (size_t i = from; i < to && n + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') n += (size_t)snprintf(buf + n, cap - n, "\\n");
        else if (c == '"' || c == '\\') n += (size_t)snprintf(buf + n, cap - n, "\\%c", c);
        else if (c < 0x20) n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
        else buf[n++] = (char)c;
    }
    buf[n < cap ? n : cap - 1] = 0;
}

static void check_text(sft_parity *p, const char *label, size_t index, const char *field, const char *got,
                       size_t got_len, const json_t *want) {
    if (!json_is_string(want)) {
        sft_parity_line(p, 0, "%s chat[%zu] %s: the reference has no string '%s'", label, index, field, field);
        return;
    }
    const char *w = json_string_value(want);
    size_t wlen = json_string_length(want);
    if (got_len == wlen && !memcmp(got, w, wlen)) {
        sft_parity_line(p, 1, "%s chat[%zu] %s (%zu bytes)", label, index, field, wlen);
        return;
    }
    size_t at = 0;
    while (at < got_len && at < wlen && got[at] == w[at]) at++;
    char a[128], b[128];
    excerpt(a, sizeof a, got, got_len, at);
    excerpt(b, sizeof b, w, wlen, at);
    sft_parity_line(p, 0, "%s chat[%zu] %s differs at byte %zu (%zu vs %zu bytes): got \"%s\", expected \"%s\"", label,
                    index, field, at, got_len, wlen, a, b);
}

/* Compares an int sequence with a JSON array of integers. */
static void check_ints(sft_parity *p, const char *label, size_t index, const char *field, const int32_t *ids,
                       const uint8_t *mask, size_t n, const json_t *want) {
    if (!json_is_array(want)) {
        sft_parity_line(p, 0, "%s chat[%zu] %s: the reference has no array '%s'", label, index, field, field);
        return;
    }
    size_t wn = json_array_size(want);
    for (size_t i = 0; i < n && i < wn; i++) {
        int64_t w;
        if (sft_json_int(json_array_get(want, i), &w)) {
            sft_parity_line(p, 0, "%s chat[%zu] %s[%zu]: the reference is not an integer", label, index, field, i);
            return;
        }
        long long got = ids ? ids[i] : mask[i];
        if (got != w) {
            sft_parity_line(p, 0, "%s chat[%zu] %s differ at token %zu: got %lld, expected %lld (%zu vs %zu tokens)",
                            label, index, field, i, got, (long long)w, n, wn);
            return;
        }
    }
    if (n != wn) {
        sft_parity_line(p, 0, "%s chat[%zu] %s: %zu tokens, expected %zu (equal up to the shorter)", label, index,
                        field, n, wn);
        return;
    }
    sft_parity_line(p, 1, "%s chat[%zu] %s (%zu tokens)", label, index, field, n);
}

int sft_parity_check_chats_with(const json_t *chats, const sft_chat_template *tmpl, const sft_tokenizer *tok,
                                const char *label, sft_parity *p, sft_err *err) {
    if (!json_is_array(chats)) return sft_errf(err, "%s: 'chat' must be an array", label);
    sft_chat_message *messages = NULL;
    size_t cap = 0, count;
    sft_chat_encoding enc = {0};
    sft_chat_render gen = {0};
    int rc = 0;
    for (size_t i = 0; i < json_array_size(chats); i++) {
        const json_t *chat = json_array_get(chats, i);
        if (sft_chat_messages_from_json(json_object_get(chat, "messages"), &messages, &cap, &count, err)) {
            rc = sft_err_prefix(err, "%s chat[%zu]", label, i);
            break;
        }
        /* The text (and, with a tokenizer, ids and mask) of the whole chat. */
        sft_err cerr;
        int failed = tok ? sft_chat_encode(tmpl, tok, messages, count, 0, &enc, &cerr)
                         : sft_chat_render_messages(tmpl, messages, count, 0, &enc.render, &cerr);
        if (failed) {
            sft_parity_line(p, 0, "%s chat[%zu]: %s", label, i, cerr.msg);
            continue;
        }
        check_text(p, label, i, "text", enc.render.text, enc.render.len, json_object_get(chat, "text"));
        if (tok) {
            check_ints(p, label, i, "ids", enc.tokens.ids, NULL, enc.tokens.count, json_object_get(chat, "ids"));
            /* A reference made where transformers could not build a mask
             * says so in assistant_mask_error: nothing to compare then. */
            const json_t *mask = json_object_get(chat, "assistant_mask");
            if (mask || !json_object_get(chat, "assistant_mask_error"))
                check_ints(p, label, i, "assistant_mask", NULL, enc.assistant_mask, enc.tokens.count, mask);
        }
        /* The generation prompt after all but the last message. */
        const json_t *want_gen = json_object_get(chat, "text_gen_prompt");
        if (want_gen) {
            if (sft_chat_render_messages(tmpl, messages, count - 1, 1, &gen, &cerr))
                sft_parity_line(p, 0, "%s chat[%zu] text_gen_prompt: %s", label, i, cerr.msg);
            else
                check_text(p, label, i, "text_gen_prompt", gen.text, gen.len, want_gen);
        }
    }
    free(messages);
    sft_chat_encoding_free(&enc);
    sft_chat_render_free(&gen);
    return rc;
}

int sft_parity_check_chats(const json_t *chats, const sft_tokenizer *tok, const char *label, sft_parity *p,
                           sft_err *err) {
    sft_chat_template *tmpl = sft_chat_template_for_tokenizer(tok, NULL, err);
    if (!tmpl) return sft_err_prefix(err, "%s", label);
    int rc = sft_parity_check_chats_with(chats, tmpl, tok, label, p, err);
    sft_chat_template_free(tmpl);
    return rc;
}
