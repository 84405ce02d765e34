/* fuzz_template.c: libFuzzer target for chat-template detection and
 * rendering (src/tok/template.c): the scanners that read a model's Jinja
 * text (markers, default system prompt, literal text between tags, the
 * normalised spelling) and the renderers and mask over arbitrary messages.
 *
 * Input: TEMPLATE \0 MESSAGES, where MESSAGES is split at \1 into contents
 * whose roles cycle user, assistant (a leading \2 makes the first a system
 * message). Detection must fail with a message or give a renderer; every
 * renderer's output must hold its spans in order inside the text, and the
 * mask over made-up token offsets must be 0/1.
 * Build: make fuzz; run: see fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tok/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MESSAGES 16

static void check_render(const sft_chat_template *t, const sft_chat_message *m, size_t n) {
    sft_chat_render r = {0};
    sft_err err;
    for (int gen = 0; gen < 2; gen++) {
        err.msg[0] = 0;
        if (sft_chat_render_messages(t, m, n, gen, &r, &err)) {
            if (!err.msg[0]) abort();
            continue;
        }
        if (strlen(r.text) > r.len) abort();
        size_t prev_end = 0;
        for (size_t k = 0; k < r.span_count; k++) {
            if (r.spans[k].start < prev_end || r.spans[k].end < r.spans[k].start || r.spans[k].end > r.len) abort();
            prev_end = r.spans[k].end;
        }
        /* Tokens of 1..4 bytes, cut anywhere (even inside characters). */
        size_t count = 0, *offsets = malloc((r.len + 1) * 2 * sizeof *offsets);
        uint8_t *mask = malloc(r.len + 1);
        for (size_t at = 0; at < r.len; count++) {
            size_t w = 1 + (at * 7 + (unsigned char)r.text[at]) % 4;
            if (at + w > r.len) w = r.len - at;
            offsets[2 * count] = at;
            offsets[2 * count + 1] = at + w;
            at += w;
        }
        sft_chat_assistant_mask(r.text, r.len, r.spans, r.span_count, offsets, count, mask);
        for (size_t i = 0; i < count; i++)
            if (mask[i] > 1) abort();
        free(offsets);
        free(mask);
    }
    sft_chat_render_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t template_len = nul ? (size_t)(nul - data) : size;
    char *text = malloc(template_len + 1);
    memcpy(text, data, template_len);
    text[template_len] = 0;

    sft_chat_message messages[MAX_MESSAGES];
    size_t n = 0;
    if (nul) {
        const char *p = (const char *)nul + 1, *end = (const char *)data + size;
        int system_first = p < end && *p == 2;
        if (system_first) p++;
        while (n < MAX_MESSAGES) {
            const char *cut = memchr(p, 1, (size_t)(end - p));
            const char *stop = cut ? cut : end;
            messages[n].role = n == 0 && system_first ? SFT_ROLE_SYSTEM
                                                      : ((n - system_first) % 2 ? SFT_ROLE_ASSISTANT : SFT_ROLE_USER);
            messages[n].content = p;
            messages[n].content_len = (size_t)(stop - p);
            n++;
            if (!cut) break;
            p = cut + 1;
        }
    }

    sft_err err;
    err.msg[0] = 0;
    sft_chat_template *t = sft_chat_template_new(NULL, text, "<s>", "</s>", &err);
    if (!t && !err.msg[0]) abort();
    if (t) {
        check_render(t, messages, n);
        sft_chat_template_free(t);
    }
    /* Every renderer by name over the same messages. */
    size_t names;
    const char *const *name = sft_chat_template_names(&names);
    for (size_t i = 0; i < names; i++) {
        t = sft_chat_template_new(name[i], NULL, "<s>", "</s>", &err);
        if (!t) abort();
        check_render(t, messages, n);
        sft_chat_template_free(t);
    }
    free(text);
    return 0;
}
